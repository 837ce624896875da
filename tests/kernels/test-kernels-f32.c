/*
 * The fp32 row helpers of every variant against the reference (and the reference against
 * closed forms), at lengths that are not multiples of any vector width, in place and not;
 * and kern_sgemm (OpenBLAS) against a naive product.
 */
#include "test.h"
#include "kern-test-util.h"

#include "kernels/kernels-impl.h"

static const int64_t lens[] = {1, 7, 15, 16, 17, 31, 33, 100, 1027};
#define N_LENS ((int)(sizeof lens / sizeof lens[0]))

TEST(ref_closed_forms) {
  float x[3] = {0.0f, 1.0f, -2.0f}, y[3];
  kern__silu_f32_ref(3, x, y);
  ASSERT_NEAR(y[0], 0.0, 1e-7);
  ASSERT_NEAR(y[1], 1.0 / (1.0 + exp(-1.0)), 1e-7);
  kern__gelu_f32_ref(3, x, y);
  ASSERT_NEAR(y[1], 0.8413447460685429, 1e-6); /* Phi(1) */
  ASSERT_NEAR(y[2], -2.0 * 0.022750131948179, 1e-6);
  kern__softmax_f32_ref(3, x, y);
  double z = 1.0 + exp(1.0) + exp(-2.0);
  ASSERT_NEAR(y[1], exp(1.0) / z, 1e-7);
  float g[3] = {1.0f, 2.0f, 3.0f};
  kern__rmsnorm_f32_ref(3, x, g, 0.0f, y);
  double rms = sqrt(5.0 / 3.0);
  ASSERT_NEAR(y[2], -2.0 / rms * 3.0, 1e-6);
  kern__layernorm_f32_ref(3, x, NULL, NULL, 0.0f, y);
  double mean = -1.0 / 3.0, var = (1.0 / 9 + 16.0 / 9 + 25.0 / 9) / 3.0;
  ASSERT_NEAR(y[0], (0.0 - mean) / sqrt(var), 1e-6);
}

static void near_all(const char *what, const char *name, int64_t n, const float *got,
                     const float *want, double tol) {
  for (int64_t i = 0; i < n; i++) {
    double a = got[i], b = want[i], s = fabs(b) > 1.0 ? fabs(b) : 1.0;
    ASSERT_MSG(fabs(a - b) <= tol * s, "%s %s n=%lld i=%lld: %.9g vs %.9g", name, what,
               (long long)n, (long long)i, a, b);
  }
}

TEST(variants_match_ref) {
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  rng_t r = {11};
  for (int li = 0; li < N_LENS; li++) {
    int64_t n = lens[li];
    float *x = xalloc(n * sizeof(float)), *x2 = xalloc(n * sizeof(float));
    float *g = xalloc(n * sizeof(float)), *b = xalloc(n * sizeof(float));
    float *want = xalloc(n * sizeof(float)), *got = xalloc(n * sizeof(float));
    rng_fill(&r, x, n, 12.0f);
    rng_fill(&r, x2, n, 3.0f);
    rng_fill(&r, g, n, 2.0f);
    rng_fill(&r, b, n, 1.0f);
    double mag = 0;
    for (int64_t i = 0; i < n; i++) mag += fabs((double)x[i] * x2[i]);
    for (int j = 0; j < nv; j++) {
      const kern_ops_t *o = v[j];
      const char *nm = o->name;
      double d = o->dot_f32(n, x, x2), dr = kern__dot_f32_ref(n, x, x2);
      ASSERT_MSG(fabs(d - dr) <= TOL_F32_SUM_REL * mag + 1e-30, "%s dot n=%lld", nm, (long long)n);

      memcpy(want, x2, n * sizeof(float)), memcpy(got, x2, n * sizeof(float));
      kern__axpy_f32_ref(n, 0.3f, x, want), o->axpy_f32(n, 0.3f, x, got);
      near_all("axpy", nm, n, got, want, 1e-6);
      memcpy(want, x2, n * sizeof(float)), memcpy(got, x2, n * sizeof(float));
      kern__add_f32_ref(n, x, want), o->add_f32(n, x, got);
      near_all("add", nm, n, got, want, 0);
      kern__mul_f32_ref(n, x, want), o->mul_f32(n, x, got);
      near_all("mul", nm, n, got, want, 0);
      kern__scale_f32_ref(n, -1.5f, want), o->scale_f32(n, -1.5f, got);
      near_all("scale", nm, n, got, want, 0);

      kern__silu_f32_ref(n, x, want), o->silu_f32(n, x, got);
      near_all("silu", nm, n, got, want, TOL_F32_ELEM);
      memcpy(got, x, n * sizeof(float));
      o->silu_f32(n, got, got); /* in place */
      near_all("silu in place", nm, n, got, want, TOL_F32_ELEM);
      kern__gelu_f32_ref(n, x, want), o->gelu_f32(n, x, got);
      near_all("gelu", nm, n, got, want, TOL_F32_ELEM);
      kern__softmax_f32_ref(n, x, want), o->softmax_f32(n, x, got);
      near_all("softmax", nm, n, got, want, TOL_F32_ELEM);
      double sum = 0;
      for (int64_t i = 0; i < n; i++) sum += got[i];
      ASSERT_NEAR(sum, 1.0, 1e-5);
      kern__rmsnorm_f32_ref(n, x, g, 1e-5f, want), o->rmsnorm_f32(n, x, g, 1e-5f, got);
      near_all("rmsnorm", nm, n, got, want, 1e-5);
      kern__rmsnorm_f32_ref(n, x, NULL, 1e-5f, want);
      memcpy(got, x, n * sizeof(float));
      o->rmsnorm_f32(n, got, NULL, 1e-5f, got);
      near_all("rmsnorm in place", nm, n, got, want, 1e-5);
      kern__layernorm_f32_ref(n, x, g, b, 1e-5f, want), o->layernorm_f32(n, x, g, b, 1e-5f, got);
      near_all("layernorm", nm, n, got, want, 1e-5);
      memcpy(got, x, n * sizeof(float));
      o->layernorm_f32(n, got, NULL, NULL, 1e-5f, got);
      kern__layernorm_f32_ref(n, x, NULL, NULL, 1e-5f, want);
      near_all("layernorm in place", nm, n, got, want, 1e-5);
    }
    free(x), free(x2), free(g), free(b), free(want), free(got);
  }
}

TEST(silu_softmax_extremes) {
  /* Large magnitudes exercise exp's overflow / underflow handling in the SIMD versions. */
  float x[40], want[40], got[40];
  for (int i = 0; i < 40; i++) x[i] = (float)(i - 20) * 9.5f;
  float gx[64], gw[64], gg[64];
  for (int i = 0; i < 64; i++) gx[i] = (float)(i - 32) * 0.37f; /* erf's whole curve, both tails */
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  float sm[40];
  kern__softmax_f32_ref(40, x, sm);
  ASSERT_NEAR(sm[39], 1.0 / (1.0 + exp(-9.5)), 1e-6);
  for (int j = 0; j < nv; j++) {
    kern__silu_f32_ref(40, x, want);
    v[j]->silu_f32(40, x, got);
    near_all("silu extremes", v[j]->name, 40, got, want, TOL_F32_ELEM);
    kern__gelu_f32_ref(64, gx, gw);
    v[j]->gelu_f32(64, gx, gg);
    near_all("gelu sweep", v[j]->name, 64, gg, gw, TOL_F32_ELEM);
    v[j]->gelu_f32(40, x, got);
    kern__gelu_f32_ref(40, x, want);
    near_all("gelu extremes", v[j]->name, 40, got, want, TOL_F32_ELEM);
    v[j]->softmax_f32(40, x, got);
    near_all("softmax extremes", v[j]->name, 40, got, sm, TOL_F32_ELEM);
    ASSERT(got[0] >= 0.0f && got[0] < 1e-30f);
  }
}

TEST(sgemm_matches_naive) {
  rng_t r = {12};
  const int64_t m = 5, n = 7, k = 19, lda = 21, ldw = 20, ldy = 9;
  float a[5 * 21], w[7 * 20], y[5 * 9];
  rng_fill(&r, a, m * lda, 1.0f);
  rng_fill(&r, w, n * ldw, 1.0f);
  for (int i = 0; i < m * ldy; i++) y[i] = NAN; /* beta 0 must ignore it */
  kern_sgemm(m, n, k, a, lda, w, ldw, 0.0f, y, ldy);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t p = 0; p < k; p++) s += (double)a[i * lda + p] * w[j * ldw + p];
      ASSERT_NEAR(y[i * ldy + j], s, 1e-5);
    }
  float y1 = y[0];
  kern_sgemm(1, 1, k, a, lda, w, ldw, 1.0f, y, ldy); /* beta 1 accumulates */
  ASSERT_NEAR(y[0], 2.0 * y1, 1e-5);
}
