/*
 * Tests of svc/histogram.h: quantile estimates against the exact nearest-rank quantiles of
 * known distributions, Prometheus bucket placement (le is inclusive), edge values (zero,
 * negative, overflow, NaN), bound validation, and exact counts under concurrent recording.
 */
#include <pthread.h>

#include "svc/histogram.h"
#include "test.h"

/* The value of rank ceil(q n) (at least 1) in sorted[]: the definition the sketch promises. */
static double exact_quantile(const double *sorted, size_t n, double q) {
  size_t rank = (size_t)ceil(q * (double)n);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* xorshift64*: a fixed, portable sequence so the test is reproducible. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rng_uniform(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}

static svc_hist_t *new_default(void) {
  double bounds[24];
  char err[128];
  ASSERT_OK(svc_hist_bounds_exp(1e-5, 2.0, 24, bounds));
  svc_hist_t *h = svc_hist_new(bounds, 24, err, sizeof err);
  ASSERT_NOT_NULL(h);
  return h;
}

static void check_quantiles(svc_hist_t *h, double *vals, size_t n) {
  qsort(vals, n, sizeof *vals, cmp_double);
  static const double qs[] = {0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0};
  for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
    double want = exact_quantile(vals, n, qs[i]);
    double got = svc_hist_quantile(h, qs[i]);
    ASSERT_MSG(fabs(got - want) <= SVC_HIST_REL_ERR * fabs(want) * 1.0001,
               "q=%g: estimate %.9g, exact %.9g", qs[i], got, want);
  }
}

TEST(quantiles_uniform_integers) {
  svc_hist_t *h = new_default();
  enum { N = 10000 };
  static double vals[N];
  /* 1..N in a scrambled order: the sketch must not depend on arrival order. */
  for (size_t i = 0; i < N; i++) vals[i] = (double)((i * 7919) % N + 1);
  for (size_t i = 0; i < N; i++) svc_hist_observe(h, vals[i]);
  check_quantiles(h, vals, N);
  svc_hist_stats_t st;
  svc_hist_stats(h, &st);
  ASSERT_EQ(st.count, N);
  ASSERT_EQ(st.sum, (double)N * (N + 1) / 2);
  ASSERT_EQ(st.min, 1);
  ASSERT_EQ(st.max, N);
  svc_hist_free(h);
}

TEST(quantiles_exponential_latencies) {
  svc_hist_t *h = new_default();
  enum { N = 50000 };
  static double vals[N];
  /* Exponential with a 2 ms mean, the shape of service latencies. */
  for (size_t i = 0; i < N; i++) {
    vals[i] = -0.002 * log(1.0 - rng_uniform());
    svc_hist_observe(h, vals[i]);
  }
  check_quantiles(h, vals, N);
  svc_hist_free(h);
}

TEST(quantiles_lognormal_wide_range) {
  svc_hist_t *h = new_default();
  enum { N = 20000 };
  static double vals[N];
  /* Spanning about 8 decades, so that many fine buckets are exercised. */
  for (size_t i = 0; i < N; i++) {
    double u1 = rng_uniform(), u2 = rng_uniform();
    double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
    vals[i] = exp(3.0 * z);
    svc_hist_observe(h, vals[i]);
  }
  check_quantiles(h, vals, N);
  svc_hist_free(h);
}

TEST(single_value_is_exact) {
  svc_hist_t *h = new_default();
  for (int i = 0; i < 100; i++) svc_hist_observe(h, 0.0123);
  ASSERT_EQ(svc_hist_quantile(h, 0.5), 0.0123);
  ASSERT_EQ(svc_hist_quantile(h, 0.99), 0.0123);
  svc_hist_free(h);
}

TEST(empty_and_bad_q) {
  svc_hist_t *h = new_default();
  ASSERT(isnan(svc_hist_quantile(h, 0.5)));
  svc_hist_observe(h, 1.0);
  ASSERT(isnan(svc_hist_quantile(h, -0.1)));
  ASSERT(isnan(svc_hist_quantile(h, 1.5)));
  ASSERT(isnan(svc_hist_quantile(h, NAN)));
  ASSERT_EQ(svc_hist_quantile(h, 0.5), 1.0);
  svc_hist_reset(h);
  ASSERT(isnan(svc_hist_quantile(h, 0.5)));
  svc_hist_stats_t st;
  svc_hist_stats(h, &st);
  ASSERT_EQ(st.count, 0);
  ASSERT(isnan(st.min));
  svc_hist_free(h);
}

TEST(edge_values) {
  svc_hist_t *h = new_default();
  svc_hist_observe(h, NAN); /* ignored */
  svc_hist_observe(h, 0.0);
  svc_hist_observe(h, -3.0);
  svc_hist_observe(h, 5.0);
  svc_hist_observe(h, 1e15); /* above the sketch: answered by the exact max */
  svc_hist_stats_t st;
  svc_hist_stats(h, &st);
  ASSERT_EQ(st.count, 4);
  ASSERT_EQ(st.min, -3.0);
  ASSERT_EQ(st.max, 1e15);
  ASSERT_EQ(st.sum, 1e15 + 2.0);
  /* Ranks 1 and 2 are in the zero bucket: estimate 0 (not below the true min). */
  ASSERT_EQ(svc_hist_quantile(h, 0.25), 0.0);
  ASSERT_EQ(svc_hist_quantile(h, 0.5), 0.0);
  ASSERT_NEAR(svc_hist_quantile(h, 0.75), 5.0, SVC_HIST_REL_ERR);
  ASSERT_EQ(svc_hist_quantile(h, 1.0), 1e15);
  svc_hist_free(h);
}

TEST(buckets_le_inclusive) {
  const double bounds[] = {1.0, 2.0, 5.0};
  char err[128];
  svc_hist_t *h = svc_hist_new(bounds, 3, err, sizeof err);
  ASSERT_NOT_NULL(h);
  const double obs[] = {0.5, 1.0, 1.0000001, 2.0, 4.9, 5.0, 5.1, 100.0, -1.0};
  for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) svc_hist_observe(h, obs[i]);
  uint64_t cum[4];
  double sum;
  svc_hist_cumulative(h, cum, &sum);
  ASSERT_EQ(cum[0], 3); /* -1, 0.5, 1.0 */
  ASSERT_EQ(cum[1], 5); /* + 1.0000001, 2.0 */
  ASSERT_EQ(cum[2], 7); /* + 4.9, 5.0 */
  ASSERT_EQ(cum[3], 9); /* +Inf: everything */
  ASSERT_NEAR(sum, 0.5 + 1.0 + 1.0000001 + 2.0 + 4.9 + 5.0 + 5.1 + 100.0 - 1.0, 1e-12);
  ASSERT_EQ(svc_hist_n_bounds(h), 3);
  ASSERT_EQ(svc_hist_bounds(h)[2], 5.0);
  svc_hist_free(h);
}

TEST(bound_validation) {
  char err[128];
  double b[SVC_HIST_MAX_BOUNDS + 1];
  const double not_increasing[] = {1.0, 1.0};
  ASSERT_NULL(svc_hist_new(not_increasing, 2, err, sizeof err));
  ASSERT_STR_CONTAINS(err, "bound 1");
  const double not_finite[] = {1.0, INFINITY};
  ASSERT_NULL(svc_hist_new(not_finite, 2, err, sizeof err));
  ASSERT_STR_CONTAINS(err, "not finite");
  ASSERT_NULL(svc_hist_new(not_increasing, 0, err, sizeof err));
  ASSERT_STR_CONTAINS(err, "0 bucket bounds");
  ASSERT_NE(svc_hist_bounds_exp(0.0, 2.0, 4, b), 0);
  ASSERT_NE(svc_hist_bounds_exp(1.0, 1.0, 4, b), 0);
  ASSERT_NE(svc_hist_bounds_exp(1.0, 2.0, 0, b), 0);
  ASSERT_NE(svc_hist_bounds_exp(1.0, 2.0, SVC_HIST_MAX_BOUNDS + 1, b), 0);
  ASSERT_NE(svc_hist_bounds_exp(1e300, 1e10, 8, b), 0);
  ASSERT_OK(svc_hist_bounds_exp(0.001, 10.0, 4, b));
  ASSERT_NEAR(b[3], 1.0, 1e-12);
  svc_hist_free(NULL);
}

enum { N_THREADS = 4, PER_THREAD = 100000 };

static void *record_many(void *arg) {
  svc_hist_t *h = arg;
  for (int i = 0; i < PER_THREAD; i++) svc_hist_observe(h, (double)(i % 1000) * 1e-3);
  return NULL;
}

TEST(concurrent_recording_is_exact) {
  svc_hist_t *h = new_default();
  pthread_t th[N_THREADS];
  for (int i = 0; i < N_THREADS; i++) ASSERT_OK(pthread_create(&th[i], NULL, record_many, h));
  for (int i = 0; i < N_THREADS; i++) ASSERT_OK(pthread_join(th[i], NULL));
  svc_hist_stats_t st;
  svc_hist_stats(h, &st);
  ASSERT_EQ(st.count, (uint64_t)N_THREADS * PER_THREAD);
  /* Each thread adds 100 cycles of 0..0.999: sum 499.5 per cycle. */
  ASSERT_NEAR(st.sum, N_THREADS * (PER_THREAD / 1000) * 499.5, 1e-9);
  ASSERT_NEAR(svc_hist_quantile(h, 0.5), 0.499, SVC_HIST_REL_ERR);
  svc_hist_free(h);
}
