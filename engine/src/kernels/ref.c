/*
 * The scalar reference kernels: the specification of every operation in kern_ops_t. Built
 * without ISA flags and never deleted; every SIMD variant is tested against these on random
 * data (tests/kernels/). Clarity beats speed here; reductions accumulate in double where that
 * makes the specification more accurate than any variant needs to be.
 */
#include <math.h>
#include <string.h>

#include "kernels/kernels-impl.h"

/* ---- quantization --------------------------------------------------------------------- */

/* Clamped in float before the conversion to int, so that saturated scales (huge inputs) give
 * the end of the range instead of an undefined float-to-int conversion. */
static float kern__clampf(float v, float lo, float hi) { return !(v >= lo) ? lo : v > hi ? hi : v; }

void kern__quantize_row_q8_0_ref(const float *x, blk_q8_0 *y, int64_t k) {
  for (int64_t b = 0; b < k / KERN_QK; b++, x += KERN_QK) {
    float amax = 0.0f;
    for (int i = 0; i < KERN_QK; i++) amax = fmaxf(amax, fabsf(x[i]));
    /* Quantize with the scale as it will be stored (rounded to fp16), not the exact one, so
     * that dequantization reconstructs what was quantized. */
    float d = kern__scale_round(amax / 127.0f);
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = kern_fp32_to_fp16(d);
    for (int i = 0; i < KERN_QK; i++)
      y[b].qs[i] = (int8_t)kern__clampf(nearbyintf(x[i] * id), -127.0f, 127.0f);
  }
}

void kern__dequantize_row_q8_0_ref(const blk_q8_0 *x, float *y, int64_t k) {
  for (int64_t b = 0; b < k / KERN_QK; b++, y += KERN_QK) {
    float d = kern_fp16_to_fp32(x[b].d);
    for (int i = 0; i < KERN_QK; i++) y[i] = (float)x[b].qs[i] * d;
  }
}

void kern__quantize_row_q4_0_ref(const float *x, blk_q4_0 *y, int64_t k) {
  for (int64_t b = 0; b < k / KERN_QK; b++, x += KERN_QK) {
    /* The signed value of largest magnitude (the first, on ties) maps to q = 0 exactly. */
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < KERN_QK; i++) {
      if (fabsf(x[i]) > amax) {
        amax = fabsf(x[i]);
        vmax = x[i];
      }
    }
    float d = kern__scale_round(vmax / -8.0f);
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = kern_fp32_to_fp16(d);
    for (int i = 0; i < KERN_QK / 2; i++) {
      /* floor(v + 8.5) is round-half-up of v + 8; v is in [-8, 8] up to the fp16 rounding. */
      int lo = (int)kern__clampf(floorf(x[i] * id + 8.5f), 0.0f, 15.0f);
      int hi = (int)kern__clampf(floorf(x[i + KERN_QK / 2] * id + 8.5f), 0.0f, 15.0f);
      y[b].qs[i] = (uint8_t)(lo | (hi << 4));
    }
  }
}

void kern__dequantize_row_q4_0_ref(const blk_q4_0 *x, float *y, int64_t k) {
  for (int64_t b = 0; b < k / KERN_QK; b++, y += KERN_QK) {
    float d = kern_fp16_to_fp32(x[b].d);
    for (int i = 0; i < KERN_QK / 2; i++) {
      y[i] = (float)((x[b].qs[i] & 0x0f) - 8) * d;
      y[i + KERN_QK / 2] = (float)((x[b].qs[i] >> 4) - 8) * d;
    }
  }
}

/* ---- dot products and GEMM ------------------------------------------------------------ */

int32_t kern__block_isum_q8_0_ref(const blk_q8_0 *w, const blk_q8_0 *a) {
  int32_t s = 0;
  for (int i = 0; i < KERN_QK; i++) s += (int32_t)w->qs[i] * (int32_t)a->qs[i];
  return s;
}

int32_t kern__block_isum_q4_0_ref(const blk_q4_0 *w, const blk_q8_0 *a) {
  int32_t s = 0;
  for (int i = 0; i < KERN_QK / 2; i++) {
    s += ((w->qs[i] & 0x0f) - 8) * (int32_t)a->qs[i];
    s += ((w->qs[i] >> 4) - 8) * (int32_t)a->qs[i + KERN_QK / 2];
  }
  return s;
}

float kern__vec_dot_q8_0_q8_0_ref(int64_t k, const blk_q8_0 *w, const blk_q8_0 *a) {
  float sum = 0.0f;
  for (int64_t b = 0; b < k / KERN_QK; b++)
    sum += kern_fp16_to_fp32(w[b].d) * kern_fp16_to_fp32(a[b].d) *
           (float)kern__block_isum_q8_0_ref(&w[b], &a[b]);
  return sum;
}

float kern__vec_dot_q4_0_q8_0_ref(int64_t k, const blk_q4_0 *w, const blk_q8_0 *a) {
  float sum = 0.0f;
  for (int64_t b = 0; b < k / KERN_QK; b++)
    sum += kern_fp16_to_fp32(w[b].d) * kern_fp16_to_fp32(a[b].d) *
           (float)kern__block_isum_q4_0_ref(&w[b], &a[b]);
  return sum;
}

void kern__gemm_q8_0_ref(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                         const blk_q8_0 *w, float *y, int64_t ldy) {
  int64_t nb = k / KERN_QK;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++)
      y[i * ldy + j] = kern__vec_dot_q8_0_q8_0_ref(k, w + j * nb, act + i * nb);
}

void kern__gemm_q4_0_ref(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                         const blk_q4_0 *w, float *y, int64_t ldy) {
  int64_t nb = k / KERN_QK;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++)
      y[i * ldy + j] = kern__vec_dot_q4_0_q8_0_ref(k, w + j * nb, act + i * nb);
}

/* The reference "packed" layout is the plain block array. */
size_t kern__pack_size_q8_0_ref(int64_t n, int64_t k) {
  return (size_t)(n * (k / KERN_QK)) * sizeof(blk_q8_0);
}

void kern__pack_q8_0_ref(int64_t n, int64_t k, const blk_q8_0 *w, void *dst) {
  if (n > 0 && k > 0) memcpy(dst, w, kern__pack_size_q8_0_ref(n, k));
}

void kern__gemm_q8_0_packed_ref(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                const void *wp, float *y, int64_t ldy) {
  kern__gemm_q8_0_ref(m, n, k, act, (const blk_q8_0 *)wp, y, ldy);
}

size_t kern__pack_size_q4_0_ref(int64_t n, int64_t k) {
  return (size_t)(n * (k / KERN_QK)) * sizeof(blk_q4_0);
}

void kern__pack_q4_0_ref(int64_t n, int64_t k, const blk_q4_0 *w, void *dst) {
  if (n > 0 && k > 0) memcpy(dst, w, kern__pack_size_q4_0_ref(n, k));
}

void kern__gemm_q4_0_packed_ref(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                const void *wp, float *y, int64_t ldy) {
  kern__gemm_q4_0_ref(m, n, k, act, (const blk_q4_0 *)wp, y, ldy);
}

/* ---- fp32 row helpers ----------------------------------------------------------------- */

float kern__dot_f32_ref(int64_t n, const float *x, const float *y) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)y[i];
  return (float)s;
}

void kern__axpy_f32_ref(int64_t n, float a, const float *x, float *y) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void kern__add_f32_ref(int64_t n, const float *x, float *y) {
  for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void kern__mul_f32_ref(int64_t n, const float *x, float *y) {
  for (int64_t i = 0; i < n; i++) y[i] *= x[i];
}

void kern__scale_f32_ref(int64_t n, float s, float *y) {
  for (int64_t i = 0; i < n; i++) y[i] *= s;
}

void kern__silu_f32_ref(int64_t n, const float *x, float *y) {
  for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

void kern__gelu_f32_ref(int64_t n, const float *x, float *y) {
  for (int64_t i = 0; i < n; i++)
    y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void kern__softmax_f32_ref(int64_t n, const float *x, float *y) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, x[i]);
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) {
    y[i] = expf(x[i] - mx);
    s += y[i];
  }
  float inv = (float)(1.0 / s);
  for (int64_t i = 0; i < n; i++) y[i] *= inv;
}

void kern__rmsnorm_f32_ref(int64_t n, const float *x, const float *g, float eps, float *y) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
  float r = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + (double)eps));
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * r * (g ? g[i] : 1.0f);
}

void kern__layernorm_f32_ref(int64_t n, const float *x, const float *g, const float *b,
                             float eps, float *y) {
  double s = 0.0, ss = 0.0;
  int64_t nn = n > 0 ? n : 1;
  for (int64_t i = 0; i < n; i++) s += x[i];
  double mean = s / (double)nn;
  for (int64_t i = 0; i < n; i++) ss += ((double)x[i] - mean) * ((double)x[i] - mean);
  float r = (float)(1.0 / sqrt(ss / (double)nn + (double)eps));
  float mf = (float)mean;
  for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mf) * r * (g ? g[i] : 1.0f) + (b ? b[i] : 0.0f);
}

/* ---- the table ------------------------------------------------------------------------ */

const kern_ops_t kern__ops_ref = {
  .name = "ref",
  .quantize_row_q8_0 = kern__quantize_row_q8_0_ref,
  .dequantize_row_q8_0 = kern__dequantize_row_q8_0_ref,
  .quantize_row_q4_0 = kern__quantize_row_q4_0_ref,
  .dequantize_row_q4_0 = kern__dequantize_row_q4_0_ref,
  .vec_dot_q8_0_q8_0 = kern__vec_dot_q8_0_q8_0_ref,
  .vec_dot_q4_0_q8_0 = kern__vec_dot_q4_0_q8_0_ref,
  .gemm_q8_0 = kern__gemm_q8_0_ref,
  .gemm_q4_0 = kern__gemm_q4_0_ref,
  .pack_size_q8_0 = kern__pack_size_q8_0_ref,
  .pack_q8_0 = kern__pack_q8_0_ref,
  .gemm_q8_0_packed = kern__gemm_q8_0_packed_ref,
  .pack_size_q4_0 = kern__pack_size_q4_0_ref,
  .pack_q4_0 = kern__pack_q4_0_ref,
  .gemm_q4_0_packed = kern__gemm_q4_0_packed_ref,
  .dot_f32 = kern__dot_f32_ref,
  .axpy_f32 = kern__axpy_f32_ref,
  .add_f32 = kern__add_f32_ref,
  .mul_f32 = kern__mul_f32_ref,
  .scale_f32 = kern__scale_f32_ref,
  .silu_f32 = kern__silu_f32_ref,
  .gelu_f32 = kern__gelu_f32_ref,
  .softmax_f32 = kern__softmax_f32_ref,
  .rmsnorm_f32 = kern__rmsnorm_f32_ref,
  .layernorm_f32 = kern__layernorm_f32_ref,
};
