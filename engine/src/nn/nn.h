/*
 * libmoe's layers (internal): linear (fp32 through OpenBLAS, q8_0 / q4_0 through the kernel
 * table), norms, activations, the SwiGLU feed-forward, the 1-D convolution and the windowed
 * multi-head attention. Every function works on a batch of rows stored row-major, takes its
 * scratch from the session arena, and never allocates from the heap.
 *
 * The layers own nothing: the tensors they point at belong to the loaded model.
 */
#ifndef MOE_NN_H
#define MOE_NN_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "moe/moe.h"

/* ---- linear ----------------------------------------------------------------------------- */

/* y = x W^T + b. Quantized weights have k % 32 == 0; activations are quantized to q8_0 per row. */
typedef struct moe__linear_s {
  int n;             /* output features */
  int k;             /* input features */
  moe_quant_t quant; /* storage of the weight */
  float *w;          /* (n, k) when quant == MOE_QUANT_F32, else NULL */
  void *wq;          /* n x k packed by kern_ops()->pack_q8_0 / pack_q4_0, else NULL */
  float *bias;       /* (n) or NULL */
} moe__linear_t;

/*
 * fp32 layers of at most this many weights (64 KB) are computed row by row, so that their rows'
 * outputs are the same in any batch (linear.c says why); larger ones with one GEMM.
 */
#define MOE__LINEAR_ROWWISE_MAX 16384

/* x (m, k) -> y (m, n). y must not alias x. Returns MOE_ENOMEM when the arena cannot grow. */
int moe__linear_forward(const moe__linear_t *lin, moe__arena_t *arena, const float *x, int m,
                        float *y);

/*
 * The same for q8_0 activations already quantized (m rows of k/32 blocks, in the layout that
 * moe__quantize_rows produces): lets a caller quantize once and reuse the result for several
 * linears that read the same input. lin->quant must not be MOE_QUANT_F32.
 */
int moe__linear_forward_q8(const moe__linear_t *lin, const void *xq, int m, float *y);
/* Quantizes x (m, k), k % 32 == 0, into arena memory; NULL when out of memory. */
void *moe__quantize_rows(moe__arena_t *arena, const float *x, int m, int k);
/* Bytes of one quantized row of k values in each format (0 for MOE_QUANT_F32). */
size_t moe__quant_row_bytes(moe_quant_t quant, int k);

/* ---- norms and activations ------------------------------------------------------------ */

typedef enum { MOE__NORM_RMS = 0, MOE__NORM_LAYER = 1 } moe__norm_kind_t;

typedef struct moe__norm_s {
  moe__norm_kind_t kind;
  int d;
  float eps;
  float *w; /* (d) */
  float *b; /* (d) for layer norm, NULL for RMS norm */
} moe__norm_t;

/* x (m, d) -> y (m, d); y may alias x. */
void moe__norm_forward(const moe__norm_t *norm, const float *x, int m, float *y);

/* In place over n values. GELU is the exact erf form (PyTorch's default). */
void moe__gelu(float *x, size_t n);
void moe__silu(float *x, size_t n);
/* In place softmax over n values (max-subtracted). */
void moe__softmax(float *x, int n);
float moe__sigmoid(float x);

/* ---- SwiGLU feed-forward ------------------------------------------------------------- */

/*
 * y = down(silu(gate(x)) * up(x)). gate and up are stored as one linear of 2*d_ff outputs
 * (gate rows first) so that both come from one GEMM.
 */
typedef struct moe__ffn_s {
  int d_model;
  int d_ff;
  moe__linear_t gate_up; /* (2*d_ff, d_model) */
  moe__linear_t down;    /* (d_model, d_ff) */
} moe__ffn_t;

/* x (m, d_model) -> y (m, d_model). xq: x already quantized (or NULL to quantize here). */
int moe__ffn_forward(const moe__ffn_t *ffn, moe__arena_t *arena, const float *x, const void *xq,
                     int m, float *y);

/* ---- 1-D convolution --------------------------------------------------------------- */

typedef struct moe__conv1d_s {
  int c_in, c_out, kernel, stride;
  float *w; /* (c_out, kernel, c_in): repacked by moe__conv1d_pack from PyTorch's (c_out, c_in, kernel) */
  float *b; /* (c_out) */
} moe__conv1d_t;

/* Reorders a PyTorch Conv1d weight (c_out, c_in, kernel) into the (c_out, kernel, c_in) layout
 * of moe__conv1d_t, whose im2col rows are then plain copies of input time steps. */
void moe__conv1d_pack(int c_out, int c_in, int kernel, const float *src, float *dst);

static inline int moe__conv1d_out_len(const moe__conv1d_t *conv, int t_in) {
  return t_in < conv->kernel ? 0 : (t_in - conv->kernel) / conv->stride + 1;
}

/*
 * The sensor pool "summary": x (m, t, c) time major -> y (m, 3c) = per row [last (c), mean (c),
 * rise (c)] over the row's last n steps (n_steps[r], or all t when n_steps is NULL): last is
 * step t - 1, mean the average over the n steps and rise (t - 1) * the slope of their
 * least-squares line (0 for n = 1): the level now, the level over the window and its trend
 * per window length, in the channel's own units.
 */
void moe__sensor_summary(const float *x, int m, int t, int c, const int32_t *n_steps, float *y);

/*
 * Valid (unpadded) convolution of m independent sequences: x (m, t_in, c_in) time-major ->
 * y (m, t_out, c_out), by im2col and one GEMM over all m * t_out positions.
 */
int moe__conv1d_forward(const moe__conv1d_t *conv, moe__arena_t *arena, const float *x, int m,
                        int t_in, float *y);

/* ---- windowed multi-head attention ---------------------------------------------------- */

/*
 * Attention over one sequence of n tokens, given qkv (n, 3*d) (q, k, v blocks of d, heads of
 * d/n_head inside each). Token i attends to j when |i - j| <= window / 2, or when i or j is
 * one of the first n_global tokens (global tokens see and are seen by everything).
 * out (n, d). scores: scratch of MOE__ATTN_SCRATCH(n) floats. Queries run in blocks of
 * MOE__ATTN_BLOCK through GEMMs over the union of their windows.
 */
#define MOE__ATTN_BLOCK 32
#define MOE__ATTN_SCRATCH(n) ((size_t)((n) > MOE__ATTN_BLOCK ? (n) : MOE__ATTN_BLOCK) * 2 * (size_t)(n))
void moe__attention_windowed(const float *qkv, int n, int d, int n_head, int window, int n_global,
                             float *scores, float *out);

#endif /* MOE_NN_H */
