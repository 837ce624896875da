/*
 * Lock-free histograms: Prometheus buckets plus a DDSketch-style fine log-spaced sketch for
 * quantiles with bounded relative error. The contract is in svc/histogram.h.
 */
#include "svc/histogram.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct svc_hist_s {
  size_t n_bounds;
  double *bounds;               /* (n_bounds) strictly increasing, finite */
  _Atomic uint64_t *coarse;     /* (n_bounds + 1) non-cumulative; last is (bounds[n-1], +Inf) */
  _Atomic uint64_t *fine;       /* (hist__n_fine) bucket k - hist__k_lo */
  _Atomic uint64_t zero;        /* values <= SVC_HIST_FINE_MIN */
  _Atomic uint64_t over;        /* values > SVC_HIST_FINE_MAX */
  _Atomic uint64_t sum_bits;    /* double, updated by CAS */
  _Atomic uint64_t min_bits;    /* double; +Inf when empty */
  _Atomic uint64_t max_bits;    /* double; -Inf when empty */
};

/* ---- the fixed fine layout ------------------------------------------------------------ */

static double hist__gamma, hist__inv_log_gamma;
static long hist__k_lo, hist__k_hi;
static size_t hist__n_fine;

static void hist__layout_once(void) {
  hist__gamma = (1.0 + SVC_HIST_REL_ERR) / (1.0 - SVC_HIST_REL_ERR);
  hist__inv_log_gamma = 1.0 / log(hist__gamma);
  /* Bucket k covers (g^(k-1), g^k]; k_lo is the bucket of values just above FINE_MIN. */
  hist__k_lo = (long)floor(log(SVC_HIST_FINE_MIN) * hist__inv_log_gamma) + 1;
  hist__k_hi = (long)ceil(log(SVC_HIST_FINE_MAX) * hist__inv_log_gamma);
  hist__n_fine = (size_t)(hist__k_hi - hist__k_lo + 1);
}

static pthread_once_t hist__once = PTHREAD_ONCE_INIT;

static inline uint64_t d2u(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static inline double u2d(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static void *hist__xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (p == NULL) {
    fprintf(stderr, "svc_hist: out of memory allocating %zu x %zu bytes\n", n, size);
    abort();
  }
  return p;
}

/* ---- construction --------------------------------------------------------------------- */

int svc_hist_bounds_exp(double start, double factor, size_t count, double *out) {
  if (!(start > 0.0) || !isfinite(start) || !(factor > 1.0) || !isfinite(factor) ||
      count == 0 || count > SVC_HIST_MAX_BOUNDS)
    return -1;
  double b = start;
  for (size_t i = 0; i < count; i++) {
    if (!isfinite(b)) return -1;
    out[i] = b;
    b *= factor;
  }
  return 0;
}

svc_hist_t *svc_hist_new(const double *bounds, size_t n_bounds, char *errstr,
                         size_t errstr_size) {
  if (n_bounds == 0 || n_bounds > SVC_HIST_MAX_BOUNDS) {
    snprintf(errstr, errstr_size, "histogram: %zu bucket bounds given, need 1..%d", n_bounds,
             SVC_HIST_MAX_BOUNDS);
    return NULL;
  }
  for (size_t i = 0; i < n_bounds; i++) {
    if (!isfinite(bounds[i])) {
      snprintf(errstr, errstr_size, "histogram: bucket bound %zu is not finite", i);
      return NULL;
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      snprintf(errstr, errstr_size,
               "histogram: bucket bound %zu (%g) is not above bound %zu (%g)", i, bounds[i],
               i - 1, bounds[i - 1]);
      return NULL;
    }
  }
  pthread_once(&hist__once, hist__layout_once);
  svc_hist_t *h = hist__xcalloc(1, sizeof *h);
  h->n_bounds = n_bounds;
  h->bounds = hist__xcalloc(n_bounds, sizeof *h->bounds);
  memcpy(h->bounds, bounds, n_bounds * sizeof *bounds);
  h->coarse = hist__xcalloc(n_bounds + 1, sizeof *h->coarse);
  h->fine = hist__xcalloc(hist__n_fine, sizeof *h->fine);
  svc_hist_reset(h);
  return h;
}

void svc_hist_free(svc_hist_t *h) {
  if (h == NULL) return;
  free(h->fine);
  free(h->coarse);
  free(h->bounds);
  free(h);
}

void svc_hist_reset(svc_hist_t *h) {
  for (size_t i = 0; i <= h->n_bounds; i++) atomic_store_explicit(&h->coarse[i], 0, memory_order_relaxed);
  for (size_t i = 0; i < hist__n_fine; i++) atomic_store_explicit(&h->fine[i], 0, memory_order_relaxed);
  atomic_store(&h->zero, 0);
  atomic_store(&h->over, 0);
  atomic_store(&h->sum_bits, d2u(0.0));
  atomic_store(&h->min_bits, d2u(INFINITY));
  atomic_store(&h->max_bits, d2u(-INFINITY));
}

/* ---- recording ------------------------------------------------------------------------ */

void svc_hist_observe(svc_hist_t *h, double v) {
  if (isnan(v)) return;

  /* First bound >= v (Prometheus' le is inclusive); n_bounds when v is above all of them. */
  size_t lo = 0, hi = h->n_bounds;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (h->bounds[mid] >= v) hi = mid;
    else lo = mid + 1;
  }
  atomic_fetch_add_explicit(&h->coarse[lo], 1, memory_order_relaxed);

  if (v <= SVC_HIST_FINE_MIN) {
    atomic_fetch_add_explicit(&h->zero, 1, memory_order_relaxed);
  } else if (v > SVC_HIST_FINE_MAX) {
    atomic_fetch_add_explicit(&h->over, 1, memory_order_relaxed);
  } else {
    long k = (long)ceil(log(v) * hist__inv_log_gamma);
    /* Rounding at the edges of the range may step one bucket outside it. */
    if (k < hist__k_lo) k = hist__k_lo;
    if (k > hist__k_hi) k = hist__k_hi;
    atomic_fetch_add_explicit(&h->fine[k - hist__k_lo], 1, memory_order_relaxed);
  }

  uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, d2u(u2d(old) + v),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
  old = atomic_load_explicit(&h->min_bits, memory_order_relaxed);
  while (v < u2d(old) &&
         !atomic_compare_exchange_weak_explicit(&h->min_bits, &old, d2u(v), memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
  old = atomic_load_explicit(&h->max_bits, memory_order_relaxed);
  while (v > u2d(old) &&
         !atomic_compare_exchange_weak_explicit(&h->max_bits, &old, d2u(v), memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

/* ---- reading -------------------------------------------------------------------------- */

void svc_hist_stats(const svc_hist_t *h, svc_hist_stats_t *out) {
  uint64_t n = 0;
  for (size_t i = 0; i <= h->n_bounds; i++)
    n += atomic_load_explicit(&h->coarse[i], memory_order_relaxed);
  out->count = n;
  out->sum = u2d(atomic_load_explicit(&h->sum_bits, memory_order_relaxed));
  out->min = n ? u2d(atomic_load_explicit(&h->min_bits, memory_order_relaxed)) : NAN;
  out->max = n ? u2d(atomic_load_explicit(&h->max_bits, memory_order_relaxed)) : NAN;
}

double svc_hist_quantile(const svc_hist_t *h, double q) {
  if (!(q >= 0.0 && q <= 1.0)) return NAN;
  uint64_t zero = atomic_load_explicit(&h->zero, memory_order_relaxed);
  uint64_t over = atomic_load_explicit(&h->over, memory_order_relaxed);
  uint64_t n = zero + over;
  for (size_t i = 0; i < hist__n_fine; i++)
    n += atomic_load_explicit(&h->fine[i], memory_order_relaxed);
  if (n == 0) return NAN;

  double mn = u2d(atomic_load_explicit(&h->min_bits, memory_order_relaxed));
  double mx = u2d(atomic_load_explicit(&h->max_bits, memory_order_relaxed));
  uint64_t rank = (uint64_t)ceil(q * (double)n);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;

  double est;
  uint64_t seen = zero;
  if (rank <= seen) {
    est = 0.0;
  } else {
    est = mx; /* the overflow bucket, unless a fine bucket holds the rank */
    for (size_t i = 0; i < hist__n_fine; i++) {
      seen += atomic_load_explicit(&h->fine[i], memory_order_relaxed);
      if (rank <= seen) {
        double upper = pow(hist__gamma, (double)((long)i + hist__k_lo));
        est = 2.0 * upper / (hist__gamma + 1.0);
        break;
      }
    }
  }
  if (est < mn) est = mn;
  if (est > mx) est = mx;
  return est;
}

size_t svc_hist_n_bounds(const svc_hist_t *h) { return h->n_bounds; }

const double *svc_hist_bounds(const svc_hist_t *h) { return h->bounds; }

void svc_hist_cumulative(const svc_hist_t *h, uint64_t *cum, double *sum) {
  uint64_t acc = 0;
  for (size_t i = 0; i <= h->n_bounds; i++) {
    acc += atomic_load_explicit(&h->coarse[i], memory_order_relaxed);
    cum[i] = acc;
  }
  *sum = u2d(atomic_load_explicit(&h->sum_bits, memory_order_relaxed));
}
