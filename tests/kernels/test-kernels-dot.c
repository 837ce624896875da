/*
 * Quantized dot products and matrix products: the reference against an independent double
 * computation, then every compiled variant (kern_ops_list) against the reference on random
 * data of odd sizes, through the row-format and the packed paths. With every scale 1 the
 * float result is an exactly representable integer, so variants must match ref exactly:
 * that checks the int32 block sums (and the VNNI unsigned-offset corrections) bit for bit.
 */
#include "test.h"
#include "kern-test-util.h"

#include "kernels/kernels-impl.h"

/* sum over elements of |w_i a_i| (dequantized): the scale against which float reordering is
 * measured, since a variant may scale partial sums of a block before adding them. */
static double mag_q8(int64_t k, const blk_q8_0 *w, const blk_q8_0 *a) {
  double s = 0;
  for (int64_t b = 0; b < k / 32; b++) {
    int64_t is = 0;
    for (int i = 0; i < 32; i++) is += llabs((long long)w[b].qs[i] * a[b].qs[i]);
    s += fabs((double)kern_fp16_to_fp32(w[b].d) * kern_fp16_to_fp32(a[b].d)) * (double)is;
  }
  return s;
}

static double mag_q4(int64_t k, const blk_q4_0 *w, const blk_q8_0 *a) {
  double s = 0;
  for (int64_t b = 0; b < k / 32; b++) {
    int64_t is = 0;
    for (int i = 0; i < 16; i++) {
      is += llabs((long long)((w[b].qs[i] & 15) - 8) * a[b].qs[i]);
      is += llabs((long long)((w[b].qs[i] >> 4) - 8) * a[b].qs[i + 16]);
    }
    s += fabs((double)kern_fp16_to_fp32(w[b].d) * kern_fp16_to_fp32(a[b].d)) * (double)is;
  }
  return s;
}

TEST(ref_dot_matches_dequantized_double) {
  rng_t r = {1};
  const int64_t k = 32 * 29;
  blk_q8_0 *w = xalloc(k / 32 * sizeof *w), *a = xalloc(k / 32 * sizeof *a);
  blk_q4_0 *w4 = xalloc(k / 32 * sizeof *w4);
  float *fw = xalloc(k * sizeof(float)), *fa = xalloc(k * sizeof(float));
  rng_q8(&r, w, k / 32, -0.5f, 0.5f);
  rng_q8(&r, a, k / 32, 0.0f, 0.1f);
  rng_q4(&r, w4, k / 32, -0.5f, 0.5f);
  kern__dequantize_row_q8_0_ref(w, fw, k);
  kern__dequantize_row_q8_0_ref(a, fa, k);
  double s = 0, s4 = 0;
  for (int64_t i = 0; i < k; i++) s += (double)fw[i] * fa[i];
  kern__dequantize_row_q4_0_ref(w4, fw, k);
  for (int64_t i = 0; i < k; i++) s4 += (double)fw[i] * fa[i];
  ASSERT_NEAR(kern__vec_dot_q8_0_q8_0_ref(k, w, a), s, 1e-5 * mag_q8(k, w, a) / fmax(1, fabs(s)));
  ASSERT_NEAR(kern__vec_dot_q4_0_q8_0_ref(k, w4, a), s4,
              1e-5 * mag_q4(k, w4, a) / fmax(1, fabs(s4)));
  ASSERT_OP(fabs(s), >, 0.0);
  free(w), free(a), free(w4), free(fw), free(fa);
}

TEST(int_sums_exact_in_every_variant) {
  /* Scales 1: every partial sum is an integer below 2^24, so float order cannot matter. */
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  rng_t r = {2};
  for (int64_t k = 32; k <= 32 * 16; k += 32 * 5) {
    int64_t nb = k / 32;
    blk_q8_0 *w = xalloc(nb * sizeof *w), *a = xalloc(nb * sizeof *a);
    blk_q4_0 *w4 = xalloc(nb * sizeof *w4);
    rng_q8(&r, w, nb, 1.0f, 1.0f);
    rng_q8(&r, a, nb, 1.0f, 1.0f);
    rng_q4(&r, w4, nb, 1.0f, 1.0f);
    /* Extremes: +-127 against +-127, nibbles 0 and 15. */
    for (int i = 0; i < 32; i++) {
      w[0].qs[i] = (int8_t)(i % 2 ? 127 : -127);
      a[0].qs[i] = (int8_t)(i % 3 ? -127 : 127);
      w4[0].qs[i / 2] = (uint8_t)(i % 2 ? 0xf0 : 0x0f);
    }
    float e8 = kern__vec_dot_q8_0_q8_0_ref(k, w, a), e4 = kern__vec_dot_q4_0_q8_0_ref(k, w4, a);
    for (int j = 0; j < nv; j++) {
      ASSERT_MSG(v[j]->vec_dot_q8_0_q8_0(k, w, a) == e8, "%s k=%lld", v[j]->name, (long long)k);
      ASSERT_MSG(v[j]->vec_dot_q4_0_q8_0(k, w4, a) == e4, "%s k=%lld", v[j]->name, (long long)k);
    }
    free(w), free(a), free(w4);
  }
}

/* Checks y (m x n, stride ldy) of one variant against ref; the columns past n must be
 * untouched (canary). */
static void check_gemm(const char *what, const kern_ops_t *ops, int64_t m, int64_t n, int64_t k,
                       const float *yref, const float *y, int64_t ldy, const double *mag,
                       int exact) {
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      double e = yref[i * n + j], g = y[i * ldy + j];
      double tol = exact ? 0.0 : TOL_DOT_REL * mag[i * n + j] + 1e-30;
      ASSERT_MSG(fabs(g - e) <= tol, "%s %s m=%lld n=%lld k=%lld at (%lld,%lld): %.9g vs %.9g",
                 ops->name, what, (long long)m, (long long)n, (long long)k, (long long)i,
                 (long long)j, g, e);
    }
    for (int64_t j = n; j < ldy; j++) ASSERT_MSG(y[i * ldy + j] == -7.0f, "%s canary", what);
  }
}

static void run_gemm_case(rng_t *r, int64_t m, int64_t n, int64_t k, int unit_scales) {
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  int64_t nb = k / 32, ldy = n + 3;
  float lo = unit_scales ? 1.0f : -0.02f, hi = unit_scales ? 1.0f : 0.02f;
  blk_q8_0 *act = xalloc((size_t)(m * nb) * sizeof *act);
  blk_q8_0 *w = xalloc((size_t)(n * nb) * sizeof *w);
  blk_q4_0 *w4 = xalloc((size_t)(n * nb) * sizeof *w4);
  rng_q8(r, act, m * nb, unit_scales ? 1.0f : 0.0f, unit_scales ? 1.0f : 0.05f);
  rng_q8(r, w, n * nb, lo, hi);
  rng_q4(r, w4, n * nb, lo, hi);
  float *y8 = xalloc((size_t)(m * n + 1) * sizeof(float));
  float *y4 = xalloc((size_t)(m * n + 1) * sizeof(float));
  double *mag8 = xalloc((size_t)(m * n + 1) * sizeof(double));
  double *mag4 = xalloc((size_t)(m * n + 1) * sizeof(double));
  float *y = xalloc((size_t)(m * ldy + 1) * sizeof(float));
  kern__gemm_q8_0_ref(m, n, k, act, w, y8, n);
  kern__gemm_q4_0_ref(m, n, k, act, w4, y4, n);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      mag8[i * n + j] = mag_q8(k, w + j * nb, act + i * nb);
      mag4[i * n + j] = mag_q4(k, w4 + j * nb, act + i * nb);
      /* The GEMM is the dot product, by definition. */
      ASSERT(y8[i * n + j] == kern__vec_dot_q8_0_q8_0_ref(k, w + j * nb, act + i * nb));
    }
  for (int j = 0; j < nv; j++) {
    const kern_ops_t *o = v[j];
    for (int64_t i = 0; i < m * ldy; i++) y[i] = -7.0f;
    o->gemm_q8_0(m, n, k, act, w, y, ldy);
    check_gemm("gemm_q8_0", o, m, n, k, y8, y, ldy, mag8, unit_scales);
    for (int64_t i = 0; i < m * ldy; i++) y[i] = -7.0f;
    o->gemm_q4_0(m, n, k, act, w4, y, ldy);
    check_gemm("gemm_q4_0", o, m, n, k, y4, y, ldy, mag4, unit_scales);

    size_t sz8 = o->pack_size_q8_0(n, k), sz4 = o->pack_size_q4_0(n, k);
    ASSERT_OP(sz8, >=, (size_t)(n * nb) * 32); /* at least one byte per weight */
    void *p8 = xalloc(sz8), *p4 = xalloc(sz4);
    o->pack_q8_0(n, k, w, p8);
    o->pack_q4_0(n, k, w4, p4);
    for (int64_t i = 0; i < m * ldy; i++) y[i] = -7.0f;
    o->gemm_q8_0_packed(m, n, k, act, p8, y, ldy);
    check_gemm("gemm_q8_0_packed", o, m, n, k, y8, y, ldy, mag8, unit_scales);
    for (int64_t i = 0; i < m * ldy; i++) y[i] = -7.0f;
    o->gemm_q4_0_packed(m, n, k, act, p4, y, ldy);
    check_gemm("gemm_q4_0_packed", o, m, n, k, y4, y, ldy, mag4, unit_scales);
    free(p8), free(p4);
  }
  free(act), free(w), free(w4), free(y8), free(y4), free(mag8), free(mag4), free(y);
}

TEST(gemm_variants_match_ref_odd_shapes) {
  rng_t r = {3};
  const int64_t ms[] = {1, 2, 3, 4, 5, 7, 17, 20};
  const int64_t ns[] = {1, 15, 16, 17, 33, 70};
  const int64_t ks[] = {32, 96, 160};
  for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
    for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
      for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++)
        run_gemm_case(&r, ms[a], ns[b], ks[c], 0);
}

TEST(gemm_variants_exact_with_unit_scales) {
  rng_t r = {4};
  run_gemm_case(&r, 5, 37, 32 * 9, 1);
  run_gemm_case(&r, 1, 64, 32 * 4, 1);
}

TEST(gemm_long_k_crosses_chunks) {
  /* k beyond the variants' k-chunking (128 blocks packed, 32 on the fly) and m beyond the
   * 16-row staging. */
  rng_t r = {5};
  run_gemm_case(&r, 19, 33, 32 * 131, 0);
  run_gemm_case(&r, 1, 50, 32 * 300, 0);
}

TEST(gemm_empty_shapes) {
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  float y[4] = {5, 5, 5, 5};
  blk_q8_0 a[1] = {{0}};
  for (int j = 0; j < nv; j++) {
    v[j]->gemm_q8_0(0, 4, 32, a, a, y, 4);
    v[j]->gemm_q8_0(2, 0, 32, a, a, y, 4);
    ASSERT_EQ(y[0], 5);
    ASSERT_EQ(v[j]->pack_size_q8_0(0, 32), 0);
    /* k = 0: an empty sum is 0. */
    v[j]->gemm_q8_0_packed(1, 3, 0, a, a, y, 4);
    ASSERT_EQ(y[0], 0);
    ASSERT_EQ(y[2], 0);
    ASSERT_EQ(y[3], 5);
    y[0] = y[1] = y[2] = 5;
  }
}

TEST(gemm_zero_and_extreme_blocks) {
  /* Zero-scale and all-zero blocks contribute exactly 0; the largest scales and quants
   * (65504 * 127 on both sides) stay finite and agree with ref. */
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  enum { M = 3, N = 19, KB = 5, K = KB * 32 };
  blk_q8_0 act[M * KB], w[N * KB];
  blk_q4_0 w4[N * KB];
  rng_t r = {6};
  rng_q8(&r, act, M * KB, 0.0f, 1.0f);
  rng_q8(&r, w, N * KB, -1.0f, 1.0f);
  rng_q4(&r, w4, N * KB, -1.0f, 1.0f);
  for (int j = 0; j < N; j++) {
    w[j * KB + 1].d = 0;                           /* zero scale, random quants */
    memset(w[j * KB + 2].qs, 0, 32);               /* zero quants */
    w4[j * KB + 2].d = 0;
    w[j * KB + 3].d = kern_fp32_to_fp16(65504.0f); /* extremes */
    memset(w[j * KB + 3].qs, 127, 32);
  }
  for (int i = 0; i < M; i++) {
    act[i * KB + 3].d = kern_fp32_to_fp16(65504.0f);
    memset(act[i * KB + 3].qs, i == 1 ? 0x81 : 127, 32); /* 0x81 = -127 */
  }
  float ref8[M * N], ref4[M * N], y[M * N];
  kern__gemm_q8_0_ref(M, N, K, act, w, ref8, N);
  kern__gemm_q4_0_ref(M, N, K, act, w4, ref4, N);
  ASSERT(isfinite(ref8[N]) && ref8[N] < -1e13f); /* row 1: -127 * 127 * 32 * 65504^2 dominates */
  for (int j = 0; j < nv; j++) {
    const kern_ops_t *o = v[j];
    void *p8 = xalloc(o->pack_size_q8_0(N, K)), *p4 = xalloc(o->pack_size_q4_0(N, K));
    o->pack_q8_0(N, K, w, p8);
    o->pack_q4_0(N, K, w4, p4);
    for (int pass = 0; pass < 4; pass++) {
      if (pass == 0) o->gemm_q8_0(M, N, K, act, w, y, N);
      if (pass == 1) o->gemm_q8_0_packed(M, N, K, act, p8, y, N);
      if (pass == 2) o->gemm_q4_0(M, N, K, act, w4, y, N);
      if (pass == 3) o->gemm_q4_0_packed(M, N, K, act, p4, y, N);
      const float *want = pass < 2 ? ref8 : ref4;
      for (int i = 0; i < M * N; i++) {
        double mag = pass < 2 ? mag_q8(K, w + (i % N) * KB, act + (i / N) * KB)
                              : mag_q4(K, w4 + (i % N) * KB, act + (i / N) * KB);
        ASSERT_MSG(fabs((double)y[i] - want[i]) <= TOL_DOT_REL * mag + 1e-30,
                   "%s pass %d at %d: %.9g vs %.9g", o->name, pass, i, y[i], want[i]);
      }
    }
    free(p8), free(p4);
  }
}

TEST(gemm_random_shapes) {
  /* Random small shapes hit every tile size and tail combination of every variant. */
  rng_t r = {8};
  for (int it = 0; it < 60; it++)
    run_gemm_case(&r, rng_int(&r, 1, 13), rng_int(&r, 1, 60), 32 * rng_int(&r, 1, 9), it % 4 == 0);
}
