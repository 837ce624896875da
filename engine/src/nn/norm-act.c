/*
 * Norms (RMS norm, layer norm) and the pointwise activations (GELU, SiLU, sigmoid, softmax)
 * that the layers apply row by row, through the kernel table's fp32 helpers where it has them.
 */
#include <math.h>

#include "kernels/kernels.h"
#include "nn/nn.h"

void moe__norm_forward(const moe__norm_t *norm, const float *x, int m, float *y) {
  const kern_ops_t *ops = kern_ops();
  const int d = norm->d;
  for (int r = 0; r < m; r++) {
    if (norm->kind == MOE__NORM_RMS)
      ops->rmsnorm_f32(d, x + (size_t)r * d, norm->w, norm->eps, y + (size_t)r * d);
    else
      ops->layernorm_f32(d, x + (size_t)r * d, norm->w, norm->b, norm->eps, y + (size_t)r * d);
  }
}

void moe__gelu(float *x, size_t n) { kern_ops()->gelu_f32((int64_t)n, x, x); }

float moe__sigmoid(float x) {
  /* Split by sign so that exp never overflows. */
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

void moe__silu(float *x, size_t n) { kern_ops()->silu_f32((int64_t)n, x, x); }

void moe__softmax(float *x, int n) { kern_ops()->softmax_f32(n, x, x); }
