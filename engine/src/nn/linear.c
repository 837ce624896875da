/*
 * The linear layer, y = x W^T + b, in each weight format: fp32 through OpenBLAS (GEMV for a
 * single row, GEMM otherwise), q8_0 and q4_0 through the kernel table's packed GEMMs with the
 * activations quantized to q8_0 once per row, and the SwiGLU feed-forward built from it.
 */
#include <cblas.h>

#include "kernels/kernels.h"
#include "nn/nn.h"

size_t moe__quant_row_bytes(moe_quant_t quant, int k) {
  switch (quant) {
  case MOE_QUANT_Q8_0: return (size_t)(k / KERN_QK) * sizeof(blk_q8_0);
  case MOE_QUANT_Q4_0: return (size_t)(k / KERN_QK) * sizeof(blk_q4_0);
  default: return 0;
  }
}

void *moe__quantize_rows(moe__arena_t *arena, const float *x, int m, int k) {
  const kern_ops_t *ops = kern_ops();
  const size_t row = moe__quant_row_bytes(MOE_QUANT_Q8_0, k);
  char *xq = moe__arena_alloc(arena, row * (size_t)m);
  if (xq == NULL) return NULL;
  for (int r = 0; r < m; r++)
    ops->quantize_row_q8_0(x + (size_t)r * k, (blk_q8_0 *)(xq + row * (size_t)r), k);
  return xq;
}

static void add_bias(const moe__linear_t *lin, int m, float *y) {
  if (lin->bias == NULL) return;
  for (int r = 0; r < m; r++) {
    float *yr = y + (size_t)r * lin->n;
    for (int j = 0; j < lin->n; j++) yr[j] += lin->bias[j];
  }
}

int moe__linear_forward_q8(const moe__linear_t *lin, const void *xq, int m, float *y) {
  const kern_ops_t *ops = kern_ops();
  if (lin->quant == MOE_QUANT_Q8_0)
    ops->gemm_q8_0_packed(m, lin->n, lin->k, xq, lin->wq, y, lin->n);
  else
    ops->gemm_q4_0_packed(m, lin->n, lin->k, xq, lin->wq, y, lin->n);
  add_bias(lin, m, y);
  return MOE_OK;
}

int moe__linear_forward(const moe__linear_t *lin, moe__arena_t *arena, const float *x, int m,
                        float *y) {
  if (m == 0) return MOE_OK;
  if (lin->quant != MOE_QUANT_F32) {
    void *xq = moe__quantize_rows(arena, x, m, lin->k);
    if (xq == NULL) return MOE_ENOMEM;
    return moe__linear_forward_q8(lin, xq, m, y);
  }
  /* A small layer (the encoder input, a router, a head) goes row by row through the same GEMV
   * whatever m is, so that a row's output does not depend on the rows batched with it: GEMV and
   * GEMM round differently in the last bits, and the q8_0 quantization of the activations
   * downstream turns that into whole rounding steps (measured on the C-MAPSS model over 3,017
   * windows: scores moved by up to 8.0e-4 of their value with the batch, 7.6e-6 row by row;
   * test-fault-models). A large layer keeps the GEMM, whose cache blocking it needs. The cost:
   * batch-256 throughput of the fraud model 1.35 M rows/s instead of 1.73 M (bench-engine-model),
   * C-MAPSS -6 %, the text models and batch 1 unchanged. */
  if (m == 1 || (size_t)lin->n * (size_t)lin->k <= MOE__LINEAR_ROWWISE_MAX) {
    for (int r = 0; r < m; r++)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, lin->n, lin->k, 1.0f, lin->w, lin->k,
                  x + (size_t)r * lin->k, 1, 0.0f, y + (size_t)r * lin->n, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, lin->n, lin->k, 1.0f, x, lin->k,
                lin->w, lin->k, 0.0f, y, lin->n);
  }
  add_bias(lin, m, y);
  return MOE_OK;
}

int moe__ffn_forward(const moe__ffn_t *ffn, moe__arena_t *arena, const float *x, const void *xq,
                     int m, float *y) {
  if (m == 0) return MOE_OK;
  const int f = ffn->d_ff;
  float *gu = MOE__ARENA_FLOATS(arena, (size_t)m * 2 * f);
  float *h = MOE__ARENA_FLOATS(arena, (size_t)m * f);
  if (gu == NULL || h == NULL) return MOE_ENOMEM;
  int rc = (xq != NULL && ffn->gate_up.quant != MOE_QUANT_F32)
               ? moe__linear_forward_q8(&ffn->gate_up, xq, m, gu)
               : moe__linear_forward(&ffn->gate_up, arena, x, m, gu);
  if (rc != MOE_OK) return rc;
  const kern_ops_t *ops = kern_ops();
  for (int r = 0; r < m; r++) {
    const float *g = gu + (size_t)r * 2 * f;
    float *hr = h + (size_t)r * f;
    ops->silu_f32(f, g, hr);
    ops->mul_f32(f, g + f, hr);
  }
  return moe__linear_forward(&ffn->down, arena, h, m, y);
}
