/*
 * The AVX2 variant (AVX2 + FMA + F16C, no AVX-512): for x86-64 machines without AVX-512 VNNI.
 * Int8 products use vpmaddubsw on |w| and sign(w) * a, exact because neither operand is -128
 * (blocks.h) so each pair sum stays within int16 (2 * 127 * 127 < 32768). Weight packing keeps
 * the reference layout: without VNNI a 16-row interleave buys little over 4-row blocking.
 * Operations not specialised here point at the reference implementations.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels-impl.h"

static float kern__hsum256(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

/* int32 lane sums (8 lanes) of w * a over one block, from unsigned |w| and signed sign(a, w). */
static inline __m256i kern__isum_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

static float vec_dot_q8_0_q8_0_avx2(int64_t k, const blk_q8_0 *w, const blk_q8_0 *a) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / KERN_QK; b++) {
    __m256i wq = _mm256_loadu_si256((const __m256i *)w[b].qs);
    __m256i aq = _mm256_loadu_si256((const __m256i *)a[b].qs);
    __m256i s = kern__isum_u8s8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(aq, wq));
    __m256 d = _mm256_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(a[b].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
  }
  return kern__hsum256(acc);
}

static float vec_dot_q4_0_q8_0_avx2(int64_t k, const blk_q4_0 *w, const blk_q8_0 *a) {
  __m256 acc = _mm256_setzero_ps();
  const __m128i lo4 = _mm_set1_epi8(0x0f);
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t b = 0; b < k / KERN_QK; b++) {
    __m128i v = _mm_loadu_si128((const __m128i *)w[b].qs);
    __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), lo4), _mm_and_si128(v, lo4));
    __m256i aq = _mm256_loadu_si256((const __m256i *)a[b].qs);
    /* q - 8 is in [-8, 7]: sign-transfer again, |q - 8| <= 8 keeps pairs far inside int16. */
    __m256i wq = _mm256_sub_epi8(q, eight);
    __m256i s = kern__isum_u8s8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(aq, wq));
    __m256 d = _mm256_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(a[b].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
  }
  return kern__hsum256(acc);
}

/* Four weight rows per pass share each activation block load. */
static void gemm_q8_0_avx2(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                           const blk_q8_0 *w, float *y, int64_t ldy) {
  int64_t kb = k / KERN_QK;
  for (int64_t i = 0; i < m; i++) {
    const blk_q8_0 *a = act + i * kb;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
      for (int64_t b = 0; b < kb; b++) {
        __m256i aq = _mm256_loadu_si256((const __m256i *)a[b].qs);
        float da = _cvtsh_ss(a[b].d);
        for (int r = 0; r < 4; r++) {
          const blk_q8_0 *wb = &w[(j + r) * kb + b];
          __m256i wq = _mm256_loadu_si256((const __m256i *)wb->qs);
          __m256i s = kern__isum_u8s8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(aq, wq));
          acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(_cvtsh_ss(wb->d) * da),
                                   acc[r]);
        }
      }
      for (int r = 0; r < 4; r++) y[i * ldy + j + r] = kern__hsum256(acc[r]);
    }
    for (; j < n; j++) y[i * ldy + j] = vec_dot_q8_0_q8_0_avx2(k, w + j * kb, a);
  }
}

static void gemm_q4_0_avx2(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                           const blk_q4_0 *w, float *y, int64_t ldy) {
  int64_t kb = k / KERN_QK;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++)
      y[i * ldy + j] = vec_dot_q4_0_q8_0_avx2(k, w + j * kb, act + i * kb);
}

static void gemm_q8_0_packed_avx2(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                  const void *wp, float *y, int64_t ldy) {
  gemm_q8_0_avx2(m, n, k, act, (const blk_q8_0 *)wp, y, ldy);
}

static void gemm_q4_0_packed_avx2(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                  const void *wp, float *y, int64_t ldy) {
  gemm_q4_0_avx2(m, n, k, act, (const blk_q4_0 *)wp, y, ldy);
}

static void quantize_row_q8_0_avx2(const float *x, blk_q8_0 *y, int64_t k) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (int64_t b = 0; b < k / KERN_QK; b++, x += KERN_QK) {
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      m = _mm256_max_ps(m, _mm256_and_ps(v[i], absmask));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    /* kern__scale_round with F16C: the same round-to-nearest-even, without the branches. */
    uint16_t dh = _cvtss_sh(fminf(_mm_cvtss_f32(h) / 127.0f, KERN__FP16_MAX), _MM_FROUND_TO_NEAREST_INT);
    float d = _cvtsh_ss(dh);
    __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    y[b].d = dh;
    for (int i = 0; i < 4; i++) {
      __m256 q = _mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      __m256i qi = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(q, lo), hi));
      __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
      int64_t p8 = _mm_cvtsi128_si64(_mm_packs_epi16(p16, p16));
      memcpy(y[b].qs + 8 * i, &p8, 8);
    }
  }
}

static float dot_f32_avx2(int64_t n, const float *x, const float *y) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
  }
  float s = kern__hsum256(_mm256_add_ps(a0, a1));
  for (; i < n; i++) s += x[i] * y[i];
  return s;
}

static void axpy_f32_avx2(int64_t n, float a, const float *x, float *y) {
  __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

const kern_ops_t kern__ops_avx2 = {
  .name = "avx2",
  .quantize_row_q8_0 = quantize_row_q8_0_avx2,
  .dequantize_row_q8_0 = kern__dequantize_row_q8_0_ref,
  .quantize_row_q4_0 = kern__quantize_row_q4_0_ref,
  .dequantize_row_q4_0 = kern__dequantize_row_q4_0_ref,
  .vec_dot_q8_0_q8_0 = vec_dot_q8_0_q8_0_avx2,
  .vec_dot_q4_0_q8_0 = vec_dot_q4_0_q8_0_avx2,
  .gemm_q8_0 = gemm_q8_0_avx2,
  .gemm_q4_0 = gemm_q4_0_avx2,
  .pack_size_q8_0 = kern__pack_size_q8_0_ref,
  .pack_q8_0 = kern__pack_q8_0_ref,
  .gemm_q8_0_packed = gemm_q8_0_packed_avx2,
  .pack_size_q4_0 = kern__pack_size_q4_0_ref,
  .pack_q4_0 = kern__pack_q4_0_ref,
  .gemm_q4_0_packed = gemm_q4_0_packed_avx2,
  .dot_f32 = dot_f32_avx2,
  .axpy_f32 = axpy_f32_avx2,
  .add_f32 = kern__add_f32_ref,
  .mul_f32 = kern__mul_f32_ref,
  .scale_f32 = kern__scale_f32_ref,
  .silu_f32 = kern__silu_f32_ref,
  .gelu_f32 = kern__gelu_f32_ref,
  .softmax_f32 = kern__softmax_f32_ref,
  .rmsnorm_f32 = kern__rmsnorm_f32_ref,
  .layernorm_f32 = kern__layernorm_f32_ref,
};
