/*
 * Norms (RMS norm, layer norm) and the pointwise activations (GELU, SiLU, sigmoid, softmax)
 * that the layers apply row by row. Plain C: these are a small fraction of a forward pass,
 * whose time goes into the GEMMs.
 */
#include <math.h>

#include "nn/nn.h"

void moe__norm_forward(const moe__norm_t *norm, const float *x, int m, float *y) {
  const int d = norm->d;
  for (int r = 0; r < m; r++) {
    const float *xr = x + (size_t)r * d;
    float *yr = y + (size_t)r * d;
    if (norm->kind == MOE__NORM_RMS) {
      float ss = 0.0f;
      for (int i = 0; i < d; i++) ss += xr[i] * xr[i];
      float inv = 1.0f / sqrtf(ss / (float)d + norm->eps);
      for (int i = 0; i < d; i++) yr[i] = xr[i] * inv * norm->w[i];
    } else {
      float mean = 0.0f;
      for (int i = 0; i < d; i++) mean += xr[i];
      mean /= (float)d;
      float var = 0.0f;
      for (int i = 0; i < d; i++) var += (xr[i] - mean) * (xr[i] - mean);
      float inv = 1.0f / sqrtf(var / (float)d + norm->eps);
      for (int i = 0; i < d; i++) yr[i] = (xr[i] - mean) * inv * norm->w[i] + norm->b[i];
    }
  }
}

void moe__gelu(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

float moe__sigmoid(float x) {
  /* Split by sign so that exp never overflows. */
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

void moe__silu(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = x[i] * moe__sigmoid(x[i]);
}

void moe__softmax(float *x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  float sum = 0.0f;
  for (int i = 0; i < n; i++) {
    x[i] = expf(x[i] - mx);
    sum += x[i];
  }
  float inv = 1.0f / sum;
  for (int i = 0; i < n; i++) x[i] *= inv;
}
