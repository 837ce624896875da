/*
 * The sequence layers: the valid 1-D convolution of the sensor encoder (im2col + one GEMM for
 * the whole batch) and the windowed multi-head attention of the text encoder's transformer
 * blocks (local window per layer plus a few global tokens).
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "nn/nn.h"

int moe__conv1d_forward(const moe__conv1d_t *conv, moe__arena_t *arena, const float *x, int m,
                        int t_in, float *y) {
  const int t_out = moe__conv1d_out_len(conv, t_in);
  const int ck = conv->c_in * conv->kernel;
  const int rows = m * t_out;
  float *col = MOE__ARENA_FLOATS(arena, (size_t)rows * ck);
  if (col == NULL) return MOE_ENOMEM;
  /* col[(s, t), i * kernel + j] = x[s, t * stride + j, i], matching the weight's (c_in, kernel)
   * flattening so that y = col W^T. */
  for (int s = 0; s < m; s++) {
    const float *xs = x + (size_t)s * t_in * conv->c_in;
    for (int t = 0; t < t_out; t++) {
      float *c = col + ((size_t)s * t_out + t) * ck;
      for (int i = 0; i < conv->c_in; i++)
        for (int j = 0; j < conv->kernel; j++)
          c[i * conv->kernel + j] = xs[(size_t)(t * conv->stride + j) * conv->c_in + i];
    }
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, conv->c_out, ck, 1.0f, col, ck,
              conv->w, ck, 0.0f, y, conv->c_out);
  for (int r = 0; r < rows; r++)
    for (int o = 0; o < conv->c_out; o++) y[(size_t)r * conv->c_out + o] += conv->b[o];
  return MOE_OK;
}

/* The next key after j that query window [lo, hi] may see, or n: keys below n_global are global. */
static inline int next_key(int j, int lo, int hi, int n_global, int n) {
  j++;
  if (j >= n_global && j < lo) j = lo;
  if (j > hi && j >= n_global) j = n;
  return j;
}

void moe__attention_windowed(const float *qkv, int n, int d, int n_head, int window, int n_global,
                             float *scores, float *out) {
  const int dh = d / n_head;
  const int half = window / 2;
  const float scale = 1.0f / sqrtf((float)dh);
  const size_t ld = (size_t)3 * d;
  const kern_ops_t *ops = kern_ops();
  for (int h = 0; h < n_head; h++) {
    for (int i = 0; i < n; i++) {
      const float *q = qkv + (size_t)i * ld + (size_t)h * dh;
      float *o = out + (size_t)i * d + (size_t)h * dh;
      /* Global queries see every key; others see their window plus the global keys. */
      int lo = 0, hi = n - 1;
      if (i >= n_global) {
        lo = i - half < 0 ? 0 : i - half;
        hi = i + half > n - 1 ? n - 1 : i + half;
      }
      const int first = next_key(-1, lo, hi, n_global, n);
      float mx = -INFINITY;
      for (int j = first; j < n; j = next_key(j, lo, hi, n_global, n)) {
        const float *kk = qkv + (size_t)j * ld + d + (size_t)h * dh;
        scores[j] = ops->dot_f32(dh, q, kk) * scale;
        mx = scores[j] > mx ? scores[j] : mx;
      }
      float sum = 0.0f;
      for (int j = first; j < n; j = next_key(j, lo, hi, n_global, n)) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
      }
      const float inv = 1.0f / sum;
      memset(o, 0, (size_t)dh * sizeof(float));
      for (int j = first; j < n; j = next_key(j, lo, hi, n_global, n)) {
        ops->axpy_f32(dh, scores[j] * inv, qkv + (size_t)j * ld + 2 * (size_t)d + (size_t)h * dh, o);
      }
    }
  }
}
