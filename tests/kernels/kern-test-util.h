/*
 * Helpers shared by the kernel tests: a seeded generator (tests are reproducible), random
 * fp32 rows and quantized blocks, and the named tolerances every SIMD variant is held to.
 */
#ifndef SLUICE_TEST_KERN_UTIL_H
#define SLUICE_TEST_KERN_UTIL_H

#include <stdint.h>
#include <stdlib.h>

#include "kernels/kernels.h"

/* Float results of quantized dot products: |variant - ref| <= TOL_DOT_REL * sum over blocks
 * of |d_w d_a isum|, since only the order and fusing of the float scale-and-add differ. */
#define TOL_DOT_REL 2e-6
/* fp32 dot / norms accumulated in float by a variant and in double by ref, relative to
 * sum |x_i y_i|. */
#define TOL_F32_SUM_REL 2e-6
/* Elementwise transcendental helpers (silu, softmax): relative, with an absolute floor of
 * 1e-6 (ASSERT_NEAR semantics). */
#define TOL_F32_ELEM 2e-6

typedef struct {
  uint64_t s;
} rng_t;

static inline uint64_t rng_next(rng_t *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}

/* Uniform in [lo, hi). */
static inline float rng_uniform(rng_t *r, float lo, float hi) {
  return lo + (hi - lo) * (float)((double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0));
}

static inline int rng_int(rng_t *r, int lo, int hi) {
  return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static inline void rng_fill(rng_t *r, float *x, int64_t n, float scale) {
  for (int64_t i = 0; i < n; i++) x[i] = rng_uniform(r, -scale, scale);
}

/* Random q8_0 blocks with quants in [-127, 127] and scales in [lo, hi]. */
static inline void rng_q8(rng_t *r, blk_q8_0 *b, int64_t nb, float lo, float hi) {
  for (int64_t i = 0; i < nb; i++) {
    b[i].d = kern_fp32_to_fp16(rng_uniform(r, lo, hi));
    for (int j = 0; j < KERN_QK; j++) b[i].qs[j] = (int8_t)rng_int(r, -127, 127);
  }
}

static inline void rng_q4(rng_t *r, blk_q4_0 *b, int64_t nb, float lo, float hi) {
  for (int64_t i = 0; i < nb; i++) {
    b[i].d = kern_fp32_to_fp16(rng_uniform(r, lo, hi));
    for (int j = 0; j < KERN_QK / 2; j++) b[i].qs[j] = (uint8_t)rng_int(r, 0, 255);
  }
}

/* malloc that the test treats as infallible; 64-byte aligned for packed weights. */
static inline void *xalloc(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, n ? n : 64) != 0) abort();
  return p;
}

#endif /* SLUICE_TEST_KERN_UTIL_H */
