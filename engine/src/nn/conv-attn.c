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

void moe__conv1d_pack(int c_out, int c_in, int kernel, const float *src, float *dst) {
  for (int o = 0; o < c_out; o++)
    for (int i = 0; i < c_in; i++)
      for (int j = 0; j < kernel; j++)
        dst[((size_t)o * kernel + j) * c_in + i] = src[((size_t)o * c_in + i) * kernel + j];
}

void moe__sensor_summary(const float *x, int m, int t, int c, const int32_t *n_steps, float *y) {
  for (int r = 0; r < m; r++) {
    const int n = n_steps != NULL ? n_steps[r] : t, s0 = t - n;
    /* slope = sum_s (s - centre) x_s / sum_s (s - centre)^2 over steps s0..t-1 */
    const double centre = s0 + 0.5 * (n - 1);
    double den = 0;
    for (int s = s0; s < t; s++) den += (s - centre) * (s - centre);
    const float rise_w = den > 0 ? (float)((t - 1) / den) : 0.0f;
    const float *xr = x + (size_t)r * t * c;
    float *last = y + (size_t)r * 3 * c, *mean = last + c, *rise = mean + c;
    memcpy(last, xr + (size_t)(t - 1) * c, (size_t)c * sizeof(float));
    memset(mean, 0, 2 * (size_t)c * sizeof(float));
    for (int s = s0; s < t; s++) {
      const float ws = (float)(s - centre) * rise_w;
      for (int i = 0; i < c; i++) {
        mean[i] += xr[(size_t)s * c + i];
        rise[i] += ws * xr[(size_t)s * c + i];
      }
    }
    for (int i = 0; i < c; i++) mean[i] /= (float)n;
  }
}

int moe__conv1d_forward(const moe__conv1d_t *conv, moe__arena_t *arena, const float *x, int m,
                        int t_in, float *y) {
  const int t_out = moe__conv1d_out_len(conv, t_in);
  const int ck = conv->c_in * conv->kernel;
  const int rows = m * t_out;
  float *col = MOE__ARENA_FLOATS(arena, (size_t)rows * ck);
  if (col == NULL) return MOE_ENOMEM;
  /* col[(s, t), j * c_in + i] = x[s, t * stride + j, i], matching the packed weight's (kernel,
   * c_in) flattening so that y = col W^T: the kernel's input time steps are contiguous in x, so
   * each row is one copy. */
  const size_t span = (size_t)ck * sizeof(float);
  for (int s = 0; s < m; s++) {
    const float *xs = x + (size_t)s * t_in * conv->c_in;
    for (int t = 0; t < t_out; t++)
      memcpy(col + ((size_t)s * t_out + t) * ck, xs + (size_t)t * conv->stride * conv->c_in, span);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, conv->c_out, ck, 1.0f, col, ck,
              conv->w, ck, 0.0f, y, conv->c_out);
  for (int r = 0; r < rows; r++)
    for (int o = 0; o < conv->c_out; o++) y[(size_t)r * conv->c_out + o] += conv->b[o];
  return MOE_OK;
}

/*
 * One block of queries [i0, i1) of one head against the keys [klo, khi] plus the global keys
 * [0, ng) (ng <= klo), by GEMMs: S = Q K^T (scaled), mask, softmax per row, O = P V.
 * s: (i1 - i0) x (ng + khi - klo + 1) scratch.
 */
static void attend_block(const kern_ops_t *ops, const float *qkv, int d, int dh, int h, int half,
                         int n_global, int i0, int i1, int ng, int klo, int khi, float *s, float *out) {
  const int bq = i1 - i0, nw = khi - klo + 1, nk = ng + nw;
  const int ld = 3 * d;
  const float scale = 1.0f / sqrtf((float)dh);
  const float *q = qkv + (size_t)i0 * ld + (size_t)h * dh;
  const float *k = qkv + d + (size_t)h * dh;
  const float *v = qkv + 2 * (size_t)d + (size_t)h * dh;
  if (ng > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, ng, dh, scale, q, ld, k, ld, 0.0f, s, nk);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, nw, dh, scale, q, ld, k + (size_t)klo * ld, ld, 0.0f,
              s + ng, nk);
  for (int r = 0; r < bq; r++) {
    const int i = i0 + r;
    float *sr = s + (size_t)r * nk + ng;
    /* Global queries see every key; others their window, plus keys that are global. */
    if (i >= n_global)
      for (int j = klo; j <= khi; j++)
        if ((j < i - half || j > i + half) && j >= n_global) sr[j - klo] = -INFINITY;
    ops->softmax_f32(nk, s + (size_t)r * nk, s + (size_t)r * nk);
  }
  float *o = out + (size_t)i0 * d + (size_t)h * dh;
  if (ng > 0) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, dh, ng, 1.0f, s, nk, v, ld, 0.0f, o, d);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, dh, nw, 1.0f, s + ng, nk, v + (size_t)klo * ld, ld,
              ng > 0 ? 1.0f : 0.0f, o, d);
}

void moe__attention_windowed(const float *qkv, int n, int d, int n_head, int window, int n_global,
                             float *scores, float *out) {
  const int dh = d / n_head;
  const int half = window / 2;
  const int g = n_global < n ? n_global : n;
  const kern_ops_t *ops = kern_ops();
  for (int h = 0; h < n_head; h++) {
    /* The global queries attend to everything. */
    if (g > 0) attend_block(ops, qkv, d, dh, h, half, n_global, 0, g, 0, 0, n - 1, scores, out);
    /* The others in blocks: the union of a block's windows is one contiguous key range. */
    for (int i0 = g; i0 < n; i0 += MOE__ATTN_BLOCK) {
      const int i1 = i0 + MOE__ATTN_BLOCK < n ? i0 + MOE__ATTN_BLOCK : n;
      const int klo = i0 - half > 0 ? i0 - half : 0;
      const int khi = i1 - 1 + half < n - 1 ? i1 - 1 + half : n - 1;
      const int ng = g < klo ? g : klo;
      attend_block(ops, qkv, d, dh, h, half, n_global, i0, i1, ng, klo, khi, scores, out);
    }
  }
}
