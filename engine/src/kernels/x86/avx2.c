/*
 * The AVX2 variant (AVX2 + FMA + F16C, no AVX-512): for x86-64 machines without AVX-512 VNNI.
 * Int8 products use vpmaddubsw on |w| and sign(w) * a, exact because neither operand is -128
 * (blocks.h) so each pair sum stays within int16 (2 * 127 * 127 < 32768). Packed weights put
 * 8 output rows side by side, 4 consecutive inputs per 32-bit lane (the AVX-512 layout at half
 * width, with q8_0 quants kept signed), so that a broadcast of 4 activation bytes advances 8
 * dot products; after a block's 8 steps each lane holds that block's exact int32 sum.
 * Operations not specialised here point at the reference implementations.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels-impl.h"

/* Round to nearest even without raising the inexact exception. */
#define KERN__RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

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

/* ---- packed layout and GEMM ------------------------------------------------------------
 * Per group of 8 output rows (the last zero-padded): fp16 scales d[kb][8] padded to 32
 * bytes, then per block 8 lanes-groups of 32 bytes, byte (c * 4 + t) of group j = row c's
 * input 4 j + t (q8_0: the signed quant; q4_0: 4 groups, low nibble input 8 j + t, high nibble
 * 8 j + 4 + t, as in avx512.c). */
#define KERN__AI static inline __attribute__((always_inline))
#define KERN__GR8 8
#define KERN__Q8_BLK8 256
#define KERN__Q4_BLK8 128
#define KERN__MC8 16
#define KERN__KC8 128

static size_t kern__dpad8(int64_t kb) { return ((size_t)kb * 16 + 31) & ~(size_t)31; }

static size_t kern__gstride8(int64_t kb, size_t blk) { return kern__dpad8(kb) + (size_t)kb * blk; }

static size_t pack_size_q8_0_avx2(int64_t n, int64_t k) {
  if (n <= 0 || k <= 0) return 0;
  return (size_t)((n + KERN__GR8 - 1) / KERN__GR8) * kern__gstride8(k / KERN_QK, KERN__Q8_BLK8);
}

static size_t pack_size_q4_0_avx2(int64_t n, int64_t k) {
  if (n <= 0 || k <= 0) return 0;
  return (size_t)((n + KERN__GR8 - 1) / KERN__GR8) * kern__gstride8(k / KERN_QK, KERN__Q4_BLK8);
}

static void pack_q8_0_avx2(int64_t n, int64_t k, const blk_q8_0 *w, void *dst) {
  if (n <= 0 || k <= 0) return;
  int64_t kb = k / KERN_QK, ng = (n + KERN__GR8 - 1) / KERN__GR8;
  size_t dpad = kern__dpad8(kb), gstride = kern__gstride8(kb, KERN__Q8_BLK8);
  for (int64_t g = 0; g < ng; g++) {
    uint8_t *base = (uint8_t *)dst + (size_t)g * gstride;
    uint16_t *d = (uint16_t *)base;
    for (int64_t b = 0; b < kb; b++) {
      uint8_t *qb = base + dpad + (size_t)b * KERN__Q8_BLK8;
      for (int c = 0; c < KERN__GR8; c++) {
        int64_t row = g * KERN__GR8 + c;
        const blk_q8_0 *src = row < n ? &w[row * kb + b] : NULL;
        d[b * KERN__GR8 + c] = src ? src->d : 0;
        for (int j = 0; j < 8; j++)
          for (int t = 0; t < 4; t++)
            qb[j * 32 + c * 4 + t] = src ? (uint8_t)src->qs[4 * j + t] : 0;
      }
    }
  }
}

static void pack_q4_0_avx2(int64_t n, int64_t k, const blk_q4_0 *w, void *dst) {
  if (n <= 0 || k <= 0) return;
  int64_t kb = k / KERN_QK, ng = (n + KERN__GR8 - 1) / KERN__GR8;
  size_t dpad = kern__dpad8(kb), gstride = kern__gstride8(kb, KERN__Q4_BLK8);
  for (int64_t g = 0; g < ng; g++) {
    uint8_t *base = (uint8_t *)dst + (size_t)g * gstride;
    uint16_t *d = (uint16_t *)base;
    for (int64_t b = 0; b < kb; b++) {
      uint8_t *qb = base + dpad + (size_t)b * KERN__Q4_BLK8;
      for (int c = 0; c < KERN__GR8; c++) {
        int64_t row = g * KERN__GR8 + c;
        uint8_t v[KERN_QK];
        if (row < n) {
          const blk_q4_0 *src = &w[row * kb + b];
          d[b * KERN__GR8 + c] = src->d;
          for (int i = 0; i < KERN_QK / 2; i++) {
            v[i] = src->qs[i] & 0x0f;
            v[i + KERN_QK / 2] = src->qs[i] >> 4;
          }
        } else {
          d[b * KERN__GR8 + c] = 0;
          memset(v, 8, sizeof v); /* q = 8 is the value 0 */
        }
        for (int j = 0; j < 4; j++)
          for (int t = 0; t < 4; t++)
            qb[j * 32 + c * 4 + t] = (uint8_t)(v[8 * j + t] | (v[8 * j + 4 + t] << 4));
      }
    }
  }
}

typedef struct {
  const blk_q8_0 *xa[2];
  const float *dx[2];
  const int32_t *cx[2];
  const uint8_t *w; /* group 0 of this tile, scales of the chunk's first block */
  size_t gstride, dpad;
  int64_t nb;
  float *y;
  int64_t ldy, ncol;
  int acc;
} kern__tile8_t;

static inline int32_t kern__load_i32(const int8_t *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

KERN__AI void kern__tile8_store(const kern__tile8_t *t, int R, int C, __m256 f[2][3]) {
  _Pragma("GCC unroll 2")
  for (int r = 0; r < R; r++) {
    _Pragma("GCC unroll 3")
    for (int c = 0; c < C; c++) {
      int64_t left = t->ncol - 8 * c;
      if (left <= 0) break;
      float *yp = t->y + r * t->ldy + 8 * c;
      if (left >= 8) {
        __m256 v = f[r][c];
        if (t->acc) v = _mm256_add_ps(v, _mm256_loadu_ps(yp));
        _mm256_storeu_ps(yp, v);
      } else {
        float tmp[8];
        _mm256_storeu_ps(tmp, f[r][c]);
        for (int64_t i = 0; i < left; i++) yp[i] = t->acc ? yp[i] + tmp[i] : tmp[i];
      }
    }
  }
}

/* Q4: 1 for q4_0 (unsigned nibbles, start at -8 sum x), 0 for q8_0 (sign transfer, start 0). */
KERN__AI void kern__tile8(const kern__tile8_t *t, int R, int C, int Q4) {
  const __m256i ones16 = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(0x0f);
  const size_t blk = Q4 ? KERN__Q4_BLK8 : KERN__Q8_BLK8;
  __m256 f[2][3];
  _Pragma("GCC unroll 2")
  for (int r = 0; r < R; r++)
    _Pragma("GCC unroll 3")
    for (int c = 0; c < C; c++) f[r][c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < t->nb; b++) {
    __m256i s[2][3];
    const uint8_t *q = t->w + t->dpad + (size_t)b * blk;
    _Pragma("GCC unroll 2")
    for (int r = 0; r < R; r++) {
      __m256i c0 = Q4 ? _mm256_set1_epi32(t->cx[r][b]) : _mm256_setzero_si256();
      _Pragma("GCC unroll 3")
      for (int c = 0; c < C; c++) s[r][c] = c0;
    }
    for (int j = 0; j < (Q4 ? 4 : 8); j++) {
      __m256i u[3], sg[3], u2[3];
      _Pragma("GCC unroll 3")
      for (int c = 0; c < C; c++) {
        __m256i v = _mm256_load_si256((const __m256i *)(q + c * t->gstride + j * 32));
        if (Q4) {
          u[c] = _mm256_and_si256(v, lo4);
          u2[c] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
        } else {
          sg[c] = v;
          u[c] = _mm256_sign_epi8(v, v);
        }
      }
      _Pragma("GCC unroll 2")
      for (int r = 0; r < R; r++) {
        if (Q4) {
          __m256i xl = _mm256_set1_epi32(kern__load_i32(t->xa[r][b].qs + 8 * j));
          __m256i xh = _mm256_set1_epi32(kern__load_i32(t->xa[r][b].qs + 8 * j + 4));
          _Pragma("GCC unroll 3")
          for (int c = 0; c < C; c++) {
            /* Nibbles <= 15: a pair sum is at most 2 * 15 * 128, so two products may share one
             * int16 before widening. */
            __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(u[c], xl),
                                         _mm256_maddubs_epi16(u2[c], xh));
            s[r][c] = _mm256_add_epi32(s[r][c], _mm256_madd_epi16(p, ones16));
          }
        } else {
          __m256i xv = _mm256_set1_epi32(kern__load_i32(t->xa[r][b].qs + 4 * j));
          _Pragma("GCC unroll 3")
          for (int c = 0; c < C; c++) {
            __m256i p = _mm256_maddubs_epi16(u[c], _mm256_sign_epi8(xv, sg[c]));
            s[r][c] = _mm256_add_epi32(s[r][c], _mm256_madd_epi16(p, ones16));
          }
        }
      }
    }
    _Pragma("GCC unroll 3")
    for (int c = 0; c < C; c++) {
      __m256 dw = _mm256_cvtph_ps(
          _mm_load_si128((const __m128i *)(t->w + c * t->gstride + (size_t)b * 16)));
      _Pragma("GCC unroll 2")
      for (int r = 0; r < R; r++)
        f[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r][c]),
                                  _mm256_mul_ps(dw, _mm256_set1_ps(t->dx[r][b])), f[r][c]);
    }
  }
  kern__tile8_store(t, R, C, f);
}

typedef void (*kern__tile8_fn)(const kern__tile8_t *);
#define KERN__TILE8_INSTANCES(X) X(1, 1) X(1, 2) X(1, 3) X(2, 1) X(2, 2)
#define KERN__DEF_TILE8(R, C)                                                                  \
  static void kern__tile8_q8_##R##x##C(const kern__tile8_t *t) { kern__tile8(t, R, C, 0); } \
  static void kern__tile8_q4_##R##x##C(const kern__tile8_t *t) { kern__tile8(t, R, C, 1); }
KERN__TILE8_INSTANCES(KERN__DEF_TILE8)
#undef KERN__DEF_TILE8

/* [R - 1][C - 1]: one-row tiles take up to 3 groups, two-row tiles up to 2. */
static const kern__tile8_fn kern__tiles8_q8[2][3] = {
  {kern__tile8_q8_1x1, kern__tile8_q8_1x2, kern__tile8_q8_1x3},
  {kern__tile8_q8_2x1, kern__tile8_q8_2x2, NULL},
};
static const kern__tile8_fn kern__tiles8_q4[2][3] = {
  {kern__tile8_q4_1x1, kern__tile8_q4_1x2, kern__tile8_q4_1x3},
  {kern__tile8_q4_2x1, kern__tile8_q4_2x2, NULL},
};

static int32_t kern__block_sum8(const int8_t *qs) {
  __m256i v = _mm256_loadu_si256((const __m256i *)qs);
  __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1));
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
  return _mm_cvtsi128_si32(h);
}

static void kern__gemm8_packed(const kern__tile8_fn tiles[2][3], int q4, size_t blk, int64_t m,
                               int64_t n, int64_t k, const blk_q8_0 *act, const uint8_t *wp,
                               float *y, int64_t ldy) {
  if (m <= 0 || n <= 0) return;
  int64_t kb = k / KERN_QK;
  if (kb == 0) {
    for (int64_t i = 0; i < m; i++) memset(y + i * ldy, 0, (size_t)n * sizeof(float));
    return;
  }
  int64_t ng = (n + KERN__GR8 - 1) / KERN__GR8;
  size_t dpad = kern__dpad8(kb), gstride = kern__gstride8(kb, blk);
  float dx[KERN__MC8 * KERN__KC8];
  int32_t cx[KERN__MC8 * KERN__KC8];
  for (int64_t r0 = 0; r0 < m; r0 += KERN__MC8) {
    int64_t mr = m - r0 < KERN__MC8 ? m - r0 : KERN__MC8;
    for (int64_t b0 = 0; b0 < kb; b0 += KERN__KC8) {
      int64_t nbc = kb - b0 < KERN__KC8 ? kb - b0 : KERN__KC8;
      for (int64_t r = 0; r < mr; r++)
        for (int64_t b = 0; b < nbc; b++) {
          const blk_q8_0 *blkp = &act[(r0 + r) * kb + b0 + b];
          dx[r * KERN__KC8 + b] = _cvtsh_ss(blkp->d);
          cx[r * KERN__KC8 + b] = q4 ? -8 * kern__block_sum8(blkp->qs) : 0;
        }
      const uint8_t *w = wp + (size_t)b0 * 16;
      size_t dpad_chunk = dpad - (size_t)b0 * 16 + (size_t)b0 * blk;
      int cmax = mr == 1 ? 3 : 2;
      for (int64_t g = 0; g < ng; g += cmax) {
        int gc = (int)(ng - g < cmax ? ng - g : cmax);
        for (int64_t r = 0; r < mr; r += 2) {
          int rr = (int)(mr - r < 2 ? mr - r : 2);
          for (int c0 = 0; c0 < gc; c0 += (rr == 2 ? 2 : 3)) {
            int cn = gc - c0 < (rr == 2 ? 2 : 3) ? gc - c0 : (rr == 2 ? 2 : 3);
            kern__tile8_t t;
            for (int i = 0; i < rr; i++) {
              t.xa[i] = act + (r0 + r + i) * kb + b0;
              t.dx[i] = dx + (r + i) * KERN__KC8;
              t.cx[i] = cx + (r + i) * KERN__KC8;
            }
            t.w = w + (size_t)(g + c0) * gstride;
            t.gstride = gstride;
            t.dpad = dpad_chunk;
            t.nb = nbc;
            int64_t col = (g + c0) * KERN__GR8;
            t.y = y + (r0 + r) * ldy + col;
            t.ldy = ldy;
            t.ncol = n - col;
            t.acc = b0 > 0;
            tiles[rr - 1][cn - 1](&t);
          }
        }
      }
    }
  }
}

static void gemm_q8_0_packed_avx2(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                  const void *wp, float *y, int64_t ldy) {
  kern__gemm8_packed(kern__tiles8_q8, 0, KERN__Q8_BLK8, m, n, k, act, wp, y, ldy);
}

static void gemm_q4_0_packed_avx2(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                  const void *wp, float *y, int64_t ldy) {
  kern__gemm8_packed(kern__tiles8_q4, 1, KERN__Q4_BLK8, m, n, k, act, wp, y, ldy);
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
    uint16_t dh =
        _cvtss_sh(fminf(_mm_cvtss_f32(h) / 127.0f, KERN__FP16_MAX), _MM_FROUND_TO_NEAREST_INT);
    float d = _cvtsh_ss(dh);
    __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    y[b].d = dh;
    for (int i = 0; i < 4; i++) {
      __m256 q = _mm256_round_ps(_mm256_mul_ps(v[i], id),
                                 KERN__RNE);
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

static void add_f32_avx2(int64_t n, const float *x, float *y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += x[i];
}

static void mul_f32_avx2(int64_t n, const float *x, float *y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] *= x[i];
}

static void scale_f32_avx2(int64_t n, float s, float *y) {
  __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vs));
  for (; i < n; i++) y[i] *= s;
}

/* exp(x) to about 2 ulp, as in avx512.c but without vscalefps: x is clamped to [-87.3, 88.3]
 * so that 2^n is a normal float built in the exponent bits (results below 1.2e-38 come out
 * as that instead of smaller; both are 0 to every caller here). */
static inline __m256 kern__exp256(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3f)), _mm256_set1_ps(-87.3f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), KERN__RNE);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  __m256i bits = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  __m256i e = _mm256_slli_epi32(bits, 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void silu_f32_avx2(int64_t n, const float *x, float *y) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 e = kern__exp256(_mm256_sub_ps(_mm256_setzero_ps(), v));
    _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
  }
  for (; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

static void softmax_f32_avx2(int64_t n, const float *x, float *y) {
  int64_t i = 0;
  __m256 vm = _mm256_set1_ps(-INFINITY);
  for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  float mx = _mm_cvtss_f32(h);
  for (; i < n; i++) mx = fmaxf(mx, x[i]);
  __m256 vmx = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 e = kern__exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
    _mm256_storeu_ps(y + i, e);
    vs = _mm256_add_ps(vs, e);
  }
  float s = kern__hsum256(vs);
  for (; i < n; i++) {
    y[i] = expf(x[i] - mx);
    s += y[i];
  }
  scale_f32_avx2(n, 1.0f / s, y);
}

/* GELU with erf from Abramowitz & Stegun 7.1.26, as gelu_f32_avx512. */
static void gelu_f32_avx2(int64_t n, const float *x, float *y) {
  const __m256 p = _mm256_set1_ps(0.3275911f), one = _mm256_set1_ps(1.0f);
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
    __m256 a = _mm256_and_ps(z, absmask);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(p, a, one));
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(1.061405429f), t, _mm256_set1_ps(-1.453152027f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.421413741f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.284496736f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0.254829592f));
    q = _mm256_mul_ps(q, t);
    __m256 e = kern__exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
    __m256 tail = _mm256_mul_ps(q, e);
    __m256 neg = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 onep = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), tail), tail, neg);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), onep));
  }
  for (; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

static void rmsnorm_f32_avx2(int64_t n, const float *x, const float *g, float eps, float *y) {
  float r = 1.0f / sqrtf(dot_f32_avx2(n, x, x) / (float)(n > 0 ? n : 1) + eps);
  __m256 vr = _mm256_set1_ps(r);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vr);
    if (g) v = _mm256_mul_ps(v, _mm256_loadu_ps(g + i));
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < n; i++) y[i] = x[i] * r * (g ? g[i] : 1.0f);
}

static void layernorm_f32_avx2(int64_t n, const float *x, const float *g, const float *b,
                               float eps, float *y) {
  int64_t nn = n > 0 ? n : 1, i = 0;
  __m256 vs = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) vs = _mm256_add_ps(vs, _mm256_loadu_ps(x + i));
  float s = kern__hsum256(vs);
  for (; i < n; i++) s += x[i];
  float mean = s / (float)nn;
  __m256 vmean = _mm256_set1_ps(mean), vv = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vmean);
    vv = _mm256_fmadd_ps(d, d, vv);
  }
  float var = kern__hsum256(vv);
  for (; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
  float r = 1.0f / sqrtf(var / (float)nn + eps);
  __m256 vr = _mm256_set1_ps(r);
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmean), vr);
    if (g) v = _mm256_mul_ps(v, _mm256_loadu_ps(g + i));
    if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < n; i++) y[i] = (x[i] - mean) * r * (g ? g[i] : 1.0f) + (b ? b[i] : 0.0f);
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
  .pack_size_q8_0 = pack_size_q8_0_avx2,
  .pack_q8_0 = pack_q8_0_avx2,
  .gemm_q8_0_packed = gemm_q8_0_packed_avx2,
  .pack_size_q4_0 = pack_size_q4_0_avx2,
  .pack_q4_0 = pack_q4_0_avx2,
  .gemm_q4_0_packed = gemm_q4_0_packed_avx2,
  .dot_f32 = dot_f32_avx2,
  .axpy_f32 = axpy_f32_avx2,
  .add_f32 = add_f32_avx2,
  .mul_f32 = mul_f32_avx2,
  .scale_f32 = scale_f32_avx2,
  .silu_f32 = silu_f32_avx2,
  .gelu_f32 = gelu_f32_avx2,
  .softmax_f32 = softmax_f32_avx2,
  .rmsnorm_f32 = rmsnorm_f32_avx2,
  .layernorm_f32 = layernorm_f32_avx2,
};
