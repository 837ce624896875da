/*
 * Histograms that any thread may record into without a lock, with two views of the same
 * observations: a fixed set of log-spaced upper bounds for Prometheus (`_bucket{le=...}`,
 * cumulative, plus +Inf), and a fine log-spaced sketch from which quantiles (p50, p99, ...) are
 * estimated with a relative error of at most SVC_HIST_REL_ERR for values in
 * [SVC_HIST_FINE_MIN, SVC_HIST_FINE_MAX]. The exact minimum, maximum, sum and count are kept
 * too, and quantile estimates are clamped to [min, max], so a distribution of one repeated
 * value gives that value exactly.
 *
 * The fine sketch follows the DDSketch idea: bucket k holds values in (g^(k-1), g^k] with
 * g = (1 + a) / (1 - a); answering 2 g^k / (g + 1) for a rank that falls in bucket k is within
 * a relative error a of every value in the bucket. Its layout is the same for every histogram
 * (about 2,400 counters, 19 KiB), so the memory is fixed and two histograms can be compared.
 *
 * Values at or below SVC_HIST_FINE_MIN (including zero and negative values) are counted in a
 * "zero" bucket whose quantile estimate is max(0, min); values above SVC_HIST_FINE_MAX in an
 * overflow bucket answered by the exact max. NaN observations are ignored.
 *
 * Threads: svc_hist_observe() may be called from any number of threads at once (relaxed
 * atomics; no lock, no allocation). Readers (quantile, snapshot) may run concurrently with
 * writers and see a slightly stale but internally usable state: the count used to rank a
 * quantile is the one they summed themselves.
 */
#ifndef SVC_HISTOGRAM_H
#define SVC_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_HIST_REL_ERR 0.01
#define SVC_HIST_FINE_MIN 1e-9
#define SVC_HIST_FINE_MAX 1e12
/* Upper bound on the Prometheus buckets of one histogram (+Inf not counted). */
#define SVC_HIST_MAX_BOUNDS 64

typedef struct svc_hist_s svc_hist_t;

/*
 * Creates a histogram whose Prometheus buckets are the `n_bounds` finite upper bounds in
 * `bounds` (strictly increasing, finite; copied). Returns NULL and writes the reason into
 * errstr on bad bounds (n_bounds 0 or above SVC_HIST_MAX_BOUNDS, not increasing, not finite).
 * Aborts on out-of-memory (services use an aborting allocator).
 */
svc_hist_t *svc_hist_new(const double *bounds, size_t n_bounds, char *errstr,
                         size_t errstr_size);

/*
 * Fills out[0..count-1] with start * factor^i: Prometheus' exponential buckets. Returns 0, or
 * -1 when start <= 0, factor <= 1, count is 0 or above SVC_HIST_MAX_BOUNDS, or a bound
 * overflows.
 */
int svc_hist_bounds_exp(double start, double factor, size_t count, double *out);

/* Frees the histogram; NULL is a no-op. No thread may be recording into it. */
void svc_hist_free(svc_hist_t *h);

/* Records one value. Any thread; lock-free; NaN is ignored. */
void svc_hist_observe(svc_hist_t *h, double v);

/* Forgets every observation. Not safe against concurrent svc_hist_observe (counts may survive). */
void svc_hist_reset(svc_hist_t *h);

/* Number of observations, sum, exact min and max (min/max are NaN when count is 0). */
typedef struct svc_hist_stats_s {
  uint64_t count;
  double sum;
  double min;
  double max;
} svc_hist_stats_t;

void svc_hist_stats(const svc_hist_t *h, svc_hist_stats_t *out);

/*
 * Estimate of the q-quantile (0 <= q <= 1) by nearest rank: the value of rank ceil(q * n)
 * (at least 1) among the n observations in sorted order, within SVC_HIST_REL_ERR of it.
 * NaN when the histogram is empty or q is outside [0, 1].
 */
double svc_hist_quantile(const svc_hist_t *h, double q);

/* The Prometheus bucket bounds (borrowed; valid until svc_hist_free). */
size_t svc_hist_n_bounds(const svc_hist_t *h);
const double *svc_hist_bounds(const svc_hist_t *h);

/*
 * Writes the cumulative Prometheus bucket counts into cum[0..n_bounds]: cum[i] is the number of
 * observations <= bounds[i], cum[n_bounds] is the +Inf bucket, equal to the count. Also
 * returns the sum in *sum so that _sum, _count and the buckets come from one read.
 */
void svc_hist_cumulative(const svc_hist_t *h, uint64_t *cum, double *sum);

#ifdef __cplusplus
}
#endif
#endif /* SVC_HISTOGRAM_H */
