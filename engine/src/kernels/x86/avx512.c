/*
 * The AVX-512 variant (F/BW/VL/DQ + VNNI): the quantized GEMM / GEMV that the engine spends
 * its time in, plus quantization and fp32 row helpers. Only this file (and avx2.c) may use
 * these intrinsics; dispatch.c selects it after probing the CPU.
 *
 * VNNI's vpdpbusd multiplies unsigned by signed bytes. Weights are therefore repacked once
 * (pack_q8_0) as u8 = q + 128, and the +128 is undone per block with an exact int32
 * correction, -128 * sum(x), which is where the block accumulator starts. q4_0 quants are
 * already unsigned (0..15) and start at -8 * sum(x). The packed layout puts 16 output rows
 * side by side, 4 consecutive inputs per 32-bit lane, so that one vpdpbusd advances 16 dot
 * products by 4 inputs with the activation bytes broadcast from memory; after 8 of them a lane
 * holds the exact int32 sum of one block, which is then scaled in float. A tile is up to 4
 * activation rows x 3 groups (48 outputs) for GEMM, 1 row x 4 groups for GEMV, all in
 * registers. Row-format weights (gemm_q8_0 / gemm_q4_0) are packed on the fly into a stack
 * buffer, a panel at a time.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels-impl.h"

/* Round to nearest even without raising the inexact exception. */
#define KERN__RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

#define KERN__AI static inline __attribute__((always_inline))

/* ---- packed layout ---------------------------------------------------------------------
 * Per group of 16 output rows (the last zero-padded): the fp16 scales of every block,
 * d[kb][16], padded to 64 bytes, then the quants of every block. q8_0: per block 8
 * lane groups of 64 bytes, byte (c * 4 + t) of group j = w[row c][4 j + t] + 128. q4_0: per block
 * 4 units of 64 bytes, byte (c * 4 + t) of unit j holds input 8 j + t in its low nibble and
 * 8 j + 4 + t in its high nibble (so a unit feeds two vpdpbusd with a mask and a shift). */
#define KERN__GR 16                  /* output rows per group */
#define KERN__Q8_BLK_BYTES 512       /* quant bytes per block per group */
#define KERN__Q4_BLK_BYTES 256

static size_t kern__dpad(int64_t kb) { return ((size_t)kb * 32 + 63) & ~(size_t)63; }

static size_t kern__gstride(int64_t kb, size_t blk_bytes) {
  return kern__dpad(kb) + (size_t)kb * blk_bytes;
}

static size_t pack_size_q8_0_avx512(int64_t n, int64_t k) {
  if (n <= 0 || k <= 0) return 0;
  return (size_t)((n + KERN__GR - 1) / KERN__GR) * kern__gstride(k / KERN_QK, KERN__Q8_BLK_BYTES);
}

static size_t pack_size_q4_0_avx512(int64_t n, int64_t k) {
  if (n <= 0 || k <= 0) return 0;
  return (size_t)((n + KERN__GR - 1) / KERN__GR) * kern__gstride(k / KERN_QK, KERN__Q4_BLK_BYTES);
}

/* Packs blocks [b0, b0 + nbc) of rows [row0, row0 + 16 * ng) (clipped at n) of a row-format
 * q8_0 matrix with kb blocks per row into groups of stride gstride, nbc blocks each. */
static void kern__pack_q8_panel(const blk_q8_0 *w, int64_t n, int64_t kb, int64_t row0,
                                int64_t ng, int64_t b0, int64_t nbc, uint8_t *dst,
                                size_t gstride) {
  size_t dpad = kern__dpad(nbc);
  for (int64_t g = 0; g < ng; g++) {
    uint8_t *base = dst + (size_t)g * gstride;
    uint16_t *d = (uint16_t *)base;
    uint8_t *q = base + dpad;
    int64_t first = row0 + g * KERN__GR;
    int64_t span = (int64_t)(KERN__GR - 1) * kb * (int64_t)sizeof(blk_q8_0);
    if (first + KERN__GR <= n && span < INT32_MAX) {
      /* A full group: gather lane c's 4 bytes from row c (one 32-bit gather per lane group),
       * add 128 with an xor, and take the scales from the gathered block heads. */
      __m512i stride = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                            12, 13, 14, 15),
                                          _mm512_set1_epi32((int)(kb * (int64_t)sizeof(blk_q8_0))));
      const __m512i bias = _mm512_set1_epi8((char)0x80);
      for (int64_t b = 0; b < nbc; b++) {
        const uint8_t *head = (const uint8_t *)&w[first * kb + b0 + b];
        __m512i dv = _mm512_i32gather_epi32(stride, (const void *)head, 1);
        _mm256_storeu_si256((__m256i *)(d + b * KERN__GR), _mm512_cvtepi32_epi16(dv));
        uint8_t *qb = q + (size_t)b * KERN__Q8_BLK_BYTES;
        for (int j = 0; j < 8; j++) {
          __m512i v = _mm512_i32gather_epi32(stride, (const void *)(head + 2 + 4 * j), 1);
          _mm512_store_si512((void *)(qb + j * 64), _mm512_xor_si512(v, bias));
        }
      }
      continue;
    }
    for (int64_t b = 0; b < nbc; b++) {
      for (int c = 0; c < KERN__GR; c++) {
        int64_t row = row0 + g * KERN__GR + c;
        uint8_t *qb = q + (size_t)b * KERN__Q8_BLK_BYTES;
        if (row >= n) {
          d[b * KERN__GR + c] = 0;
          for (int j = 0; j < 8; j++) memset(qb + j * 64 + c * 4, 128, 4);
          continue;
        }
        const blk_q8_0 *src = &w[row * kb + b0 + b];
        d[b * KERN__GR + c] = src->d;
        for (int j = 0; j < 8; j++)
          for (int t = 0; t < 4; t++)
            qb[j * 64 + c * 4 + t] = (uint8_t)(src->qs[4 * j + t] + 128);
      }
    }
  }
}

static void pack_q8_0_avx512(int64_t n, int64_t k, const blk_q8_0 *w, void *dst) {
  if (n <= 0 || k <= 0) return;
  int64_t kb = k / KERN_QK;
  kern__pack_q8_panel(w, n, kb, 0, (n + KERN__GR - 1) / KERN__GR, 0, kb, (uint8_t *)dst,
                      kern__gstride(kb, KERN__Q8_BLK_BYTES));
}

/* Packs blocks [b0, b0 + nbc) of rows [row0, row0 + 16 * ng) (clipped at n) of a row-format
 * q4_0 matrix with kb blocks per row, like kern__pack_q8_panel. */
static void kern__pack_q4_panel(const blk_q4_0 *w, int64_t n, int64_t kb, int64_t row0,
                                int64_t ng, int64_t b0, int64_t nbc, uint8_t *dst,
                                size_t gstride) {
  size_t dpad = kern__dpad(nbc);
  for (int64_t g = 0; g < ng; g++) {
    uint8_t *base = dst + (size_t)g * gstride;
    uint16_t *d = (uint16_t *)base;
    uint8_t *q = base + dpad;
    for (int64_t b = 0; b < nbc; b++) {
      for (int c = 0; c < KERN__GR; c++) {
        int64_t row = row0 + g * KERN__GR + c;
        uint8_t *qb = q + (size_t)b * KERN__Q4_BLK_BYTES;
        uint8_t v[KERN_QK];
        if (row < n) {
          const blk_q4_0 *src = &w[row * kb + b0 + b];
          d[b * KERN__GR + c] = src->d;
          for (int i = 0; i < KERN_QK / 2; i++) {
            v[i] = src->qs[i] & 0x0f;
            v[i + KERN_QK / 2] = src->qs[i] >> 4;
          }
        } else {
          d[b * KERN__GR + c] = 0;
          memset(v, 8, sizeof v); /* q = 8 is the value 0 */
        }
        for (int j = 0; j < 4; j++)
          for (int t = 0; t < 4; t++)
            qb[j * 64 + c * 4 + t] = (uint8_t)(v[8 * j + t] | (v[8 * j + 4 + t] << 4));
      }
    }
  }
}

static void pack_q4_0_avx512(int64_t n, int64_t k, const blk_q4_0 *w, void *dst) {
  if (n <= 0 || k <= 0) return;
  int64_t kb = k / KERN_QK;
  kern__pack_q4_panel(w, n, kb, 0, (n + KERN__GR - 1) / KERN__GR, 0, kb, (uint8_t *)dst,
                      kern__gstride(kb, KERN__Q4_BLK_BYTES));
}

/* ---- micro-kernels ---------------------------------------------------------------------
 * R activation rows x C groups of 16 output rows, over nb blocks. dx / cx hold each row's
 * block scale (fp32) and int32 correction at stride ldp; xa points at each row's first block.
 * Results go to y (or are added to it when acc), masked to the n - col0 valid columns. */

typedef struct {
  const blk_q8_0 *xa[4];
  const float *dx[4];
  const int32_t *cx[4];
  const uint8_t *w; /* group 0 of this panel */
  size_t gstride, dpad;
  int64_t nb;
  float *y;
  int64_t ldy, ncol; /* valid columns from y's first */
  int acc;
} kern__tile_t;

static inline int32_t kern__load_i32(const int8_t *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

KERN__AI void kern__tile_store(const kern__tile_t *t, int R, int C, __m512 f[4][4]) {
  _Pragma("GCC unroll 4")
  for (int r = 0; r < R; r++) {
    _Pragma("GCC unroll 4")
    for (int c = 0; c < C; c++) {
      int64_t left = t->ncol - 16 * c;
      if (left <= 0) break;
      __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
      float *yp = t->y + r * t->ldy + 16 * c;
      __m512 v = f[r][c];
      if (t->acc) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, yp));
      _mm512_mask_storeu_ps(yp, m, v);
    }
  }
}

KERN__AI void kern__tile_q8(const kern__tile_t *t, int R, int C) {
  __m512 f[4][4];
  _Pragma("GCC unroll 4")
  for (int r = 0; r < R; r++)
    _Pragma("GCC unroll 4")
    for (int c = 0; c < C; c++) f[r][c] = _mm512_setzero_ps();
  for (int64_t b = 0; b < t->nb; b++) {
    __m512 dw[4];
    __m512i s[4][4];
    const uint8_t *q = t->w + t->dpad + (size_t)b * KERN__Q8_BLK_BYTES;
    _Pragma("GCC unroll 4")
    for (int c = 0; c < C; c++)
      dw[c] = _mm512_cvtph_ps(
          _mm256_load_si256((const __m256i *)(t->w + c * t->gstride + (size_t)b * 32)));
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++) {
      __m512i c0 = _mm512_set1_epi32(t->cx[r][b]);
      _Pragma("GCC unroll 4")
      for (int c = 0; c < C; c++) s[r][c] = c0;
    }
    _Pragma("GCC unroll 8")
    for (int j = 0; j < 8; j++) {
      __m512i wv[4];
      _Pragma("GCC unroll 4")
      for (int c = 0; c < C; c++)
        wv[c] = _mm512_load_si512((const void *)(q + c * t->gstride + j * 64));
      _Pragma("GCC unroll 4")
      for (int r = 0; r < R; r++) {
        __m512i xv = _mm512_set1_epi32(kern__load_i32(t->xa[r][b].qs + 4 * j));
        _Pragma("GCC unroll 4")
        for (int c = 0; c < C; c++) s[r][c] = _mm512_dpbusd_epi32(s[r][c], wv[c], xv);
      }
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++) {
      __m512 sx = _mm512_set1_ps(t->dx[r][b]);
      _Pragma("GCC unroll 4")
      for (int c = 0; c < C; c++)
        f[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][c]), _mm512_mul_ps(dw[c], sx), f[r][c]);
    }
  }
  kern__tile_store(t, R, C, f);
}

/* With one activation row (GEMV) registers are plentiful, so the high nibbles are used in place
 * (v & 0xf0 = 16 q) into a second accumulator that is divided by 16 at the block's end (exact:
 * it is a multiple of 16). That saves the shift, and two independent chains hide latency. */
KERN__AI void kern__tile_q4(const kern__tile_t *t, int R, int C) {
  const int split = R == 1;
  const __m512i lo4 = _mm512_set1_epi8(0x0f), hi4 = _mm512_set1_epi8((char)0xf0);
  __m512 f[4][4];
  _Pragma("GCC unroll 4")
  for (int r = 0; r < R; r++)
    _Pragma("GCC unroll 4")
    for (int c = 0; c < C; c++) f[r][c] = _mm512_setzero_ps();
  for (int64_t b = 0; b < t->nb; b++) {
    __m512 dw[4];
    __m512i s[4][4], sh[4];
    const uint8_t *q = t->w + t->dpad + (size_t)b * KERN__Q4_BLK_BYTES;
    _Pragma("GCC unroll 4")
    for (int c = 0; c < C; c++)
      dw[c] = _mm512_cvtph_ps(
          _mm256_load_si256((const __m256i *)(t->w + c * t->gstride + (size_t)b * 32)));
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++) {
      __m512i c0 = _mm512_set1_epi32(t->cx[r][b]);
      _Pragma("GCC unroll 4")
      for (int c = 0; c < C; c++) s[r][c] = c0;
    }
    if (split) {
      _Pragma("GCC unroll 4")
      for (int c = 0; c < C; c++) sh[c] = _mm512_setzero_si512();
    }
    _Pragma("GCC unroll 8")
    for (int j = 0; j < 4; j++) {
      __m512i wl[4], wh[4];
      _Pragma("GCC unroll 4")
      for (int c = 0; c < C; c++) {
        __m512i v = _mm512_load_si512((const void *)(q + c * t->gstride + j * 64));
        wl[c] = _mm512_and_si512(v, lo4);
        wh[c] = split ? _mm512_and_si512(v, hi4) : _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
      }
      _Pragma("GCC unroll 4")
      for (int r = 0; r < R; r++) {
        __m512i xl = _mm512_set1_epi32(kern__load_i32(t->xa[r][b].qs + 8 * j));
        __m512i xh = _mm512_set1_epi32(kern__load_i32(t->xa[r][b].qs + 8 * j + 4));
        _Pragma("GCC unroll 4")
        for (int c = 0; c < C; c++) {
          s[r][c] = _mm512_dpbusd_epi32(s[r][c], wl[c], xl);
          if (split) sh[c] = _mm512_dpbusd_epi32(sh[c], wh[c], xh);
          else s[r][c] = _mm512_dpbusd_epi32(s[r][c], wh[c], xh);
        }
      }
    }
    if (split) {
      _Pragma("GCC unroll 4")
      for (int c = 0; c < C; c++) s[0][c] = _mm512_add_epi32(s[0][c], _mm512_srai_epi32(sh[c], 4));
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++) {
      __m512 sx = _mm512_set1_ps(t->dx[r][b]);
      _Pragma("GCC unroll 4")
      for (int c = 0; c < C; c++)
        f[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][c]), _mm512_mul_ps(dw[c], sx), f[r][c]);
    }
  }
  kern__tile_store(t, R, C, f);
}

typedef void (*kern__tile_fn)(const kern__tile_t *);

#define KERN__TILE_INSTANCES(X) \
  X(1, 1) X(1, 2) X(1, 3) X(1, 4) X(2, 1) X(2, 2) X(2, 3) X(3, 1) X(3, 2) X(3, 3) \
  X(4, 1) X(4, 2) X(4, 3)
#define KERN__DEF_TILE(R, C)                                                            \
  static void kern__tile_q8_##R##x##C(const kern__tile_t *t) { kern__tile_q8(t, R, C); } \
  static void kern__tile_q4_##R##x##C(const kern__tile_t *t) { kern__tile_q4(t, R, C); }
KERN__TILE_INSTANCES(KERN__DEF_TILE)
#undef KERN__DEF_TILE

/* [R - 1][C - 1]; R x C combinations without an instance are never requested. */
static const kern__tile_fn kern__tiles_q8[4][4] = {
  {kern__tile_q8_1x1, kern__tile_q8_1x2, kern__tile_q8_1x3, kern__tile_q8_1x4},
  {kern__tile_q8_2x1, kern__tile_q8_2x2, kern__tile_q8_2x3, NULL},
  {kern__tile_q8_3x1, kern__tile_q8_3x2, kern__tile_q8_3x3, NULL},
  {kern__tile_q8_4x1, kern__tile_q8_4x2, kern__tile_q8_4x3, NULL},
};
static const kern__tile_fn kern__tiles_q4[4][4] = {
  {kern__tile_q4_1x1, kern__tile_q4_1x2, kern__tile_q4_1x3, kern__tile_q4_1x4},
  {kern__tile_q4_2x1, kern__tile_q4_2x2, kern__tile_q4_2x3, NULL},
  {kern__tile_q4_3x1, kern__tile_q4_3x2, kern__tile_q4_3x3, NULL},
  {kern__tile_q4_4x1, kern__tile_q4_4x2, kern__tile_q4_4x3, NULL},
};

/* ---- drivers ---------------------------------------------------------------------------- */

/* Activation rows x blocks whose scales / corrections are staged at once (16 KiB on the
 * stack; KERN__STAGE >= MC x KC for both settings). Few rows: long k-chunks, so that each
 * weight group streams sequentially (GEMV). Many rows: more rows per pass over the weights,
 * which then come from L3 fewer times. */
#define KERN__STAGE 2048
#define KERN__MC_FEW 16
#define KERN__KC_FEW 128
#define KERN__MC_MANY 64
#define KERN__KC_MANY 32

/* The exact int32 sum of a block's 32 quants. */
static int32_t kern__block_sum(const int8_t *qs) {
  __m256i v = _mm256_loadu_si256((const __m256i *)qs);
  __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), v);
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
  return _mm_cvtsi128_si32(h);
}

static void kern__zero_y(int64_t m, int64_t n, float *y, int64_t ldy) {
  for (int64_t i = 0; i < m; i++) memset(y + i * ldy, 0, (size_t)n * sizeof(float));
}

/* Runs every tile of rows [r0, r0 + mr) x groups [0, ng) of one packed panel whose blocks are
 * chunk [b0, b0 + nbc); dx / cx are staged for those rows and blocks. */
static void kern__run_panel(const kern__tile_fn tiles[4][4], int64_t mr, int64_t kb_act,
                            const blk_q8_0 *act_r0, int64_t b0, const float *dx,
                            const int32_t *cx, int64_t kc, const uint8_t *w, size_t gstride,
                            size_t dpad, int64_t nbc, int64_t ng, int64_t col0, int64_t n,
                            float *y_r0, int64_t ldy, int acc) {
  int cmax = mr == 1 ? 4 : 3;
  for (int64_t g = 0; g < ng; g += cmax) {
    int gc = (int)(ng - g < cmax ? ng - g : cmax);
    for (int64_t r = 0; r < mr; r += 4) {
      int rr = (int)(mr - r < 4 ? mr - r : 4);
      int cc = gc;
      for (int c0 = 0; c0 < gc; c0 += cc) {
        int cn = gc - c0 < cc ? gc - c0 : cc;
        kern__tile_t t;
        for (int i = 0; i < rr; i++) {
          t.xa[i] = act_r0 + (r + i) * kb_act + b0;
          t.dx[i] = dx + (r + i) * kc;
          t.cx[i] = cx + (r + i) * kc;
        }
        t.w = w + (size_t)(g + c0) * gstride;
        t.gstride = gstride;
        t.dpad = dpad;
        t.nb = nbc;
        int64_t c_first = col0 + (g + c0) * KERN__GR;
        t.y = y_r0 + r * ldy + c_first;
        t.ldy = ldy;
        t.ncol = n - c_first;
        t.acc = acc;
        tiles[rr - 1][cn - 1](&t);
      }
    }
  }
}

static void kern__stage(int64_t mr, const blk_q8_0 *act_r0, int64_t kb, int64_t b0,
                        int64_t nbc, int32_t corr, float *dx, int32_t *cx, int64_t kc) {
  for (int64_t r = 0; r < mr; r++) {
    for (int64_t b = 0; b < nbc; b++) {
      const blk_q8_0 *blk = &act_r0[r * kb + b0 + b];
      dx[r * kc + b] = _cvtsh_ss(blk->d);
      cx[r * kc + b] = corr * kern__block_sum(blk->qs);
    }
  }
}

static void kern__gemm_packed(const kern__tile_fn tiles[4][4], int32_t corr, size_t blk_bytes,
                              int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                              const uint8_t *wp, float *y, int64_t ldy) {
  if (m <= 0 || n <= 0) return;
  int64_t kb = k / KERN_QK;
  if (kb == 0) {
    kern__zero_y(m, n, y, ldy);
    return;
  }
  int64_t ng = (n + KERN__GR - 1) / KERN__GR;
  size_t dpad = kern__dpad(kb), gstride = kern__gstride(kb, blk_bytes);
  float dx[KERN__STAGE];
  int32_t cx[KERN__STAGE];
  int64_t mc = m <= KERN__MC_FEW ? KERN__MC_FEW : KERN__MC_MANY;
  int64_t kc = m <= KERN__MC_FEW ? KERN__KC_FEW : KERN__KC_MANY;
  for (int64_t r0 = 0; r0 < m; r0 += mc) {
    int64_t mr = m - r0 < mc ? m - r0 : mc;
    for (int64_t b0 = 0; b0 < kb; b0 += kc) {
      int64_t nbc = kb - b0 < kc ? kb - b0 : kc;
      kern__stage(mr, act + r0 * kb, kb, b0, nbc, corr, dx, cx, kc);
      /* A k-chunk of a packed matrix: scales and quants of block b0 onwards, same strides. */
      const uint8_t *w = wp + (size_t)b0 * 32;
      size_t dpad_chunk = dpad - (size_t)b0 * 32 + (size_t)b0 * blk_bytes;
      kern__run_panel(tiles, mr, kb, act + r0 * kb, b0, dx, cx, kc, w, gstride, dpad_chunk, nbc,
                      ng, 0, n, y + r0 * ldy, ldy, b0 > 0);
    }
  }
}

static void gemm_q8_0_packed_avx512(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                    const void *wp, float *y, int64_t ldy) {
  kern__gemm_packed(kern__tiles_q8, -128, KERN__Q8_BLK_BYTES, m, n, k, act, wp, y, ldy);
}

static void gemm_q4_0_packed_avx512(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                    const void *wp, float *y, int64_t ldy) {
  kern__gemm_packed(kern__tiles_q4, -8, KERN__Q4_BLK_BYTES, m, n, k, act, wp, y, ldy);
}

/* ---- row-format dot products ------------------------------------------------------------ */

static float kern__hsum256(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

static float vec_dot_q8_0_q8_0_avx512(int64_t k, const blk_q8_0 *w, const blk_q8_0 *a) {
  __m256 acc = _mm256_setzero_ps();
  int64_t nb = k / KERN_QK;
  for (int64_t b = 0; b < nb; b++) {
    __m256i wq = _mm256_loadu_si256((const __m256i *)w[b].qs);
    __m256i aq = _mm256_loadu_si256((const __m256i *)a[b].qs);
    /* |w| * (a with w's sign) = w * a, exact because neither is -128 (blocks.h). */
    __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(wq),
                                    _mm256_sign_epi8(aq, wq));
    __m256 d = _mm256_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(a[b].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
  }
  return kern__hsum256(acc);
}

static float vec_dot_q4_0_q8_0_avx512(int64_t k, const blk_q4_0 *w, const blk_q8_0 *a) {
  __m256 acc = _mm256_setzero_ps();
  const __m128i lo4 = _mm_set1_epi8(0x0f);
  int64_t nb = k / KERN_QK;
  for (int64_t b = 0; b < nb; b++) {
    __m128i v = _mm_loadu_si128((const __m128i *)w[b].qs);
    __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), lo4), _mm_and_si128(v, lo4));
    __m256i aq = _mm256_loadu_si256((const __m256i *)a[b].qs);
    __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, aq);
    __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), aq);
    __m256 d = _mm256_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(a[b].d));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s, c)), d, acc);
  }
  return kern__hsum256(acc);
}

/* Below this many activation rows, packing a panel costs more than it saves. */
#define KERN__PACK_MIN_ROWS 4
#define KERN__UP_GROUPS 2  /* groups per on-the-fly panel */
#define KERN__UP_KC 32     /* blocks per on-the-fly panel: 2 x 32 x 544 B = 34 KiB */

/* Row-format weights: below KERN__PACK_MIN_ROWS activation rows, one dot product per output;
 * otherwise a panel of 2 groups x 32 blocks is packed on the stack and reused by every row. */
static void kern__gemm_rows(int q4, int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                            const void *w, float *y, int64_t ldy) {
  if (m <= 0 || n <= 0) return;
  int64_t kb = k / KERN_QK;
  if (m < KERN__PACK_MIN_ROWS || kb == 0) {
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++)
        y[i * ldy + j] =
            q4 ? vec_dot_q4_0_q8_0_avx512(k, (const blk_q4_0 *)w + j * kb, act + i * kb)
               : vec_dot_q8_0_q8_0_avx512(k, (const blk_q8_0 *)w + j * kb, act + i * kb);
    return;
  }
  _Alignas(64) uint8_t panel[KERN__UP_GROUPS * (KERN__UP_KC * 32 + KERN__UP_KC * 512)];
  float dx[KERN__STAGE];
  int32_t cx[KERN__STAGE];
  const int64_t kc = KERN__UP_KC, mc = KERN__STAGE / KERN__UP_KC;
  int64_t ng = (n + KERN__GR - 1) / KERN__GR;
  size_t blk = q4 ? KERN__Q4_BLK_BYTES : KERN__Q8_BLK_BYTES;
  for (int64_t b0 = 0; b0 < kb; b0 += KERN__UP_KC) {
    int64_t nbc = kb - b0 < KERN__UP_KC ? kb - b0 : KERN__UP_KC;
    size_t dpad = kern__dpad(nbc), gstride = kern__gstride(nbc, blk);
    for (int64_t g = 0; g < ng; g += KERN__UP_GROUPS) {
      int64_t gn = ng - g < KERN__UP_GROUPS ? ng - g : KERN__UP_GROUPS;
      if (q4) kern__pack_q4_panel(w, n, kb, g * KERN__GR, gn, b0, nbc, panel, gstride);
      else kern__pack_q8_panel(w, n, kb, g * KERN__GR, gn, b0, nbc, panel, gstride);
      for (int64_t r0 = 0; r0 < m; r0 += mc) {
        int64_t mr = m - r0 < mc ? m - r0 : mc;
        kern__stage(mr, act + r0 * kb, kb, b0, nbc, q4 ? -8 : -128, dx, cx, kc);
        kern__run_panel(q4 ? kern__tiles_q4 : kern__tiles_q8, mr, kb, act + r0 * kb, b0, dx, cx,
                        kc, panel, gstride, dpad, nbc, gn, g * KERN__GR, n, y + r0 * ldy, ldy,
                        b0 > 0);
      }
    }
  }
}

static void gemm_q8_0_avx512(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                             const blk_q8_0 *w, float *y, int64_t ldy) {
  kern__gemm_rows(0, m, n, k, act, w, y, ldy);
}

static void gemm_q4_0_avx512(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                             const blk_q4_0 *w, float *y, int64_t ldy) {
  kern__gemm_rows(1, m, n, k, act, w, y, ldy);
}

/* ---- quantization ------------------------------------------------------------------------ */

/* Quantizes 32 values with the block scale's reciprocal in every lane of id. */
static inline void kern__quant_q8_store(__m512 v0, __m512 v1, __m512 id, int8_t *qs) {
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  /* Clamped in float before the conversion (which rounds to nearest even, like the ref's
   * nearbyintf under the default rounding mode): a saturated scale leaves values far outside
   * int32, and clamp-then-round equals round-then-clamp at integer bounds. */
  __m512 q0 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, id), lo), hi);
  __m512 q1 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, id), lo), hi);
  _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q0)));
  _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q1)));
}

/* Two blocks per step: their |x| maxima are reduced side by side (block A ends in lane 0, B
 * in lane 8) and the scale arithmetic runs once on the vector, with the same IEEE operations
 * as the reference (amax / 127, fp16 rounding to nearest even, 1 / d). */
static void quantize_row_q8_0_avx512(const float *x, blk_q8_0 *y, int64_t k) {
  int64_t nb = k / KERN_QK, b = 0;
  for (; b + 2 <= nb; b += 2) {
    const float *xb = x + b * KERN_QK;
    __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
    __m512 v2 = _mm512_loadu_ps(xb + 32), v3 = _mm512_loadu_ps(xb + 48);
    __m512 a = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1));
    __m512 c = _mm512_max_ps(_mm512_abs_ps(v2), _mm512_abs_ps(v3));
    __m512 m = _mm512_max_ps(_mm512_shuffle_f32x4(a, c, 0x44), _mm512_shuffle_f32x4(a, c, 0xee));
    m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0xb1));
    m = _mm512_max_ps(m, _mm512_permute_ps(m, 0x4e));
    m = _mm512_max_ps(m, _mm512_permute_ps(m, 0xb1));
    __m512 d = _mm512_min_ps(_mm512_div_ps(m, _mm512_set1_ps(127.0f)),
                             _mm512_set1_ps(KERN__FP16_MAX));
    __m256i dh = _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT);
    __m512 dr = _mm512_cvtph_ps(dh);
    __mmask16 nz = _mm512_cmp_ps_mask(dr, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    __m512 id = _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), dr);
    y[b].d = (uint16_t)_mm256_extract_epi16(dh, 0);
    y[b + 1].d = (uint16_t)_mm256_extract_epi16(dh, 8);
    kern__quant_q8_store(v0, v1, _mm512_permutexvar_ps(_mm512_setzero_si512(), id), y[b].qs);
    kern__quant_q8_store(v2, v3, _mm512_permutexvar_ps(_mm512_set1_epi32(8), id), y[b + 1].qs);
  }
  for (; b < nb; b++) {
    const float *xb = x + b * KERN_QK;
    __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    /* kern__scale_round with F16C: the same round-to-nearest-even, without the branches. */
    uint16_t dh = _cvtss_sh(fminf(amax / 127.0f, KERN__FP16_MAX), _MM_FROUND_TO_NEAREST_INT);
    float d = _cvtsh_ss(dh);
    y[b].d = dh;
    kern__quant_q8_store(v0, v1, _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f), y[b].qs);
  }
}

static void dequantize_row_q8_0_avx512(const blk_q8_0 *x, float *y, int64_t k) {
  for (int64_t b = 0; b < k / KERN_QK; b++, y += KERN_QK) {
    __m512 d = _mm512_set1_ps(_cvtsh_ss(x[b].d));
    __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x[b].qs));
    __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(x[b].qs + 16)));
    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
    _mm512_storeu_ps(y + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
  }
}

/* ---- fp32 helpers ------------------------------------------------------------------------ */

static float dot_f32_avx512(int64_t n, const float *x, const float *y) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  for (; i < n; i++) s += x[i] * y[i];
  return s;
}

static void axpy_f32_avx512(int64_t n, float a, const float *x, float *y) {
  __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

static void add_f32_avx512(int64_t n, const float *x, float *y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += x[i];
}

static void mul_f32_avx512(int64_t n, const float *x, float *y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  for (; i < n; i++) y[i] *= x[i];
}

static void scale_f32_avx512(int64_t n, float s, float *y) {
  __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), vs));
  for (; i < n; i++) y[i] *= s;
}

/* exp(x) to about 2 ulp: x = n ln2 + r with |r| <= ln2 / 2, a degree-7 Taylor polynomial for
 * e^r (truncation error < 1e-8 relative), and 2^n applied by vscalefps, which also gives 0 and
 * inf for out-of-range x without a separate clamp. */
static inline __m512 kern__exp512(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(128.0f)), _mm512_set1_ps(-160.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e),
                                  KERN__RNE);
  __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
  r = _mm512_fnmadd_ps(n, ln2_lo, r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

static void silu_f32_avx512(int64_t n, const float *x, float *y) {
  const __m512 one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m512 e = kern__exp512(_mm512_sub_ps(_mm512_setzero_ps(), v));
    _mm512_storeu_ps(y + i, _mm512_div_ps(v, _mm512_add_ps(one, e)));
  }
  for (; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

/* GELU with erf from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7 absolute): 1 + erf(z) is
 * formed directly as t-poly * e^(-z^2) for z < 0 and 2 minus it for z >= 0, so the negative
 * tail keeps its absolute accuracy instead of cancelling against 1. */
static void gelu_f32_avx512(int64_t n, const float *x, float *y) {
  const __m512 p = _mm512_set1_ps(0.3275911f), one = _mm512_set1_ps(1.0f);
  const __m512 a1 = _mm512_set1_ps(0.254829592f), a2 = _mm512_set1_ps(-0.284496736f);
  const __m512 a3 = _mm512_set1_ps(1.421413741f), a4 = _mm512_set1_ps(-1.453152027f);
  const __m512 a5 = _mm512_set1_ps(1.061405429f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m512 z = _mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f));
    __m512 a = _mm512_abs_ps(z);
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(p, a, one));
    __m512 q = _mm512_fmadd_ps(a5, t, a4);
    q = _mm512_fmadd_ps(q, t, a3);
    q = _mm512_fmadd_ps(q, t, a2);
    q = _mm512_fmadd_ps(q, t, a1);
    q = _mm512_mul_ps(q, t);
    __m512 e = kern__exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
    __m512 tail = _mm512_mul_ps(q, e);
    __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 onep = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0f), tail), tail);
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), onep));
  }
  for (; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

static void softmax_f32_avx512(int64_t n, const float *x, float *y) {
  int64_t i = 0;
  float mx = -INFINITY;
  __m512 vm = _mm512_set1_ps(-INFINITY);
  for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
  mx = _mm512_reduce_max_ps(vm);
  for (; i < n; i++) mx = fmaxf(mx, x[i]);
  __m512 vmx = _mm512_set1_ps(mx), vs = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    __m512 e = kern__exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx));
    _mm512_storeu_ps(y + i, e);
    vs = _mm512_add_ps(vs, e);
  }
  float s = _mm512_reduce_add_ps(vs);
  for (; i < n; i++) {
    y[i] = expf(x[i] - mx);
    s += y[i];
  }
  scale_f32_avx512(n, 1.0f / s, y);
}

static void rmsnorm_f32_avx512(int64_t n, const float *x, const float *g, float eps, float *y) {
  float ss = dot_f32_avx512(n, x, x);
  float r = 1.0f / sqrtf(ss / (float)(n > 0 ? n : 1) + eps);
  if (g == NULL) {
    if (y != x) memmove(y, x, (size_t)(n > 0 ? n : 0) * sizeof(float));
    scale_f32_avx512(n, r, y);
    return;
  }
  __m512 vr = _mm512_set1_ps(r);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vr),
                                          _mm512_loadu_ps(g + i)));
  for (; i < n; i++) y[i] = x[i] * r * g[i];
}

static void layernorm_f32_avx512(int64_t n, const float *x, const float *g, const float *b,
                                 float eps, float *y) {
  int64_t nn = n > 0 ? n : 1, i = 0;
  __m512 vs = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) vs = _mm512_add_ps(vs, _mm512_loadu_ps(x + i));
  float s = _mm512_reduce_add_ps(vs);
  for (; i < n; i++) s += x[i];
  float mean = s / (float)nn;
  __m512 vmean = _mm512_set1_ps(mean), vv = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), vmean);
    vv = _mm512_fmadd_ps(d, d, vv);
  }
  float var = _mm512_reduce_add_ps(vv);
  for (; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
  float r = 1.0f / sqrtf(var / (float)nn + eps);
  __m512 vr = _mm512_set1_ps(r);
  for (i = 0; i + 16 <= n; i += 16) {
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmean), vr);
    if (g) v = _mm512_mul_ps(v, _mm512_loadu_ps(g + i));
    if (b) v = _mm512_add_ps(v, _mm512_loadu_ps(b + i));
    _mm512_storeu_ps(y + i, v);
  }
  for (; i < n; i++) y[i] = (x[i] - mean) * r * (g ? g[i] : 1.0f) + (b ? b[i] : 0.0f);
}

/* ---- the table ------------------------------------------------------------------------- */

const kern_ops_t kern__ops_avx512 = {
  .name = "avx512",
  .quantize_row_q8_0 = quantize_row_q8_0_avx512,
  .dequantize_row_q8_0 = dequantize_row_q8_0_avx512,
  /* Weights are quantized offline: q4_0 quantization is not worth a SIMD copy. */
  .quantize_row_q4_0 = kern__quantize_row_q4_0_ref,
  .dequantize_row_q4_0 = kern__dequantize_row_q4_0_ref,
  .vec_dot_q8_0_q8_0 = vec_dot_q8_0_q8_0_avx512,
  .vec_dot_q4_0_q8_0 = vec_dot_q4_0_q8_0_avx512,
  .gemm_q8_0 = gemm_q8_0_avx512,
  .gemm_q4_0 = gemm_q4_0_avx512,
  .pack_size_q8_0 = pack_size_q8_0_avx512,
  .pack_q8_0 = pack_q8_0_avx512,
  .gemm_q8_0_packed = gemm_q8_0_packed_avx512,
  .pack_size_q4_0 = pack_size_q4_0_avx512,
  .pack_q4_0 = pack_q4_0_avx512,
  .gemm_q4_0_packed = gemm_q4_0_packed_avx512,
  .dot_f32 = dot_f32_avx512,
  .axpy_f32 = axpy_f32_avx512,
  .add_f32 = add_f32_avx512,
  .mul_f32 = mul_f32_avx512,
  .scale_f32 = scale_f32_avx512,
  .silu_f32 = silu_f32_avx512,
  .gelu_f32 = gelu_f32_avx512,
  .softmax_f32 = softmax_f32_avx512,
  .rmsnorm_f32 = rmsnorm_f32_avx512,
  .layernorm_f32 = layernorm_f32_avx512,
};
