/*
 * One metrics table per service, and the registry built from it. Each metric is declared once,
 * in an X-macro table with its name, type, unit, label names, series bound, histogram buckets
 * and help text; the same table gives the service an enum of metric ids and the definitions
 * the registry validates. The registry exposes the metrics in the Prometheus text format 0.0.4
 * (for /metrics) and as a plain-text INFO dump (for /info and logs).
 *
 *   #define WK_METRICS(XX)                                                                \
 *     XX(WK_M_EVENTS_IN, "sluice_events_in_total", SVC_COUNTER, "events", "topic", 8,      \
 *        SVC_BUCKETS_NONE, "Events consumed from Kafka.")                                 \
 *     XX(WK_M_INFER_SECONDS, "sluice_inference_seconds", SVC_HISTOGRAM, "seconds", "", 0, \
 *        SVC_BUCKETS_EXP(1e-5, 2, 24), "Time to score one batch.")
 *   enum { WK_METRICS(SVC_METRIC_ENUM) WK_M__COUNT };
 *   static const svc_metric_def_t wk_metric_defs[] = { WK_METRICS(SVC_METRIC_DEF) };
 *
 * Series: a metric without labels has exactly one series, created with the registry. A
 * labelled metric has one series per distinct tuple of label values, created on first use and
 * never more than its max_series; past the bound (or for invalid label values) no series is
 * created, the update is dropped, and the built-in counter sluice_metrics_series_dropped_total
 * says so. Series live as long as the registry, so callers may keep the handles (for example
 * one per assigned partition). A gauge series can be cleared (hidden from the output until it
 * is set again), e.g. the lag of a partition that was revoked.
 *
 * Threads: every update (svc_counter_add, svc_gauge_*, svc_histogram_observe and the svc_metric_*
 * shorthands) and svc_metrics_series may be called from any thread at any time. Counters are
 * sharded per thread over cache lines, so worker threads bumping one counter do not contend;
 * updates never lock and never allocate (series creation takes a mutex once per new series).
 * Rendering may run on any thread (e.g. the HTTP thread) concurrently with updates.
 */
#ifndef SVC_METRICS_H
#define SVC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "svc/histogram.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SVC_COUNTER = 1, /* monotonically increasing integer; name must end in _total */
  SVC_GAUGE,       /* a double that is set or moved both ways */
  SVC_HISTOGRAM    /* observations into fixed log-spaced buckets + quantile sketch */
} svc_metric_type_t;

/* Fixed log-spaced buckets: upper bounds start * factor^i for i in [0, count). */
typedef struct svc_buckets_s {
  double start;
  double factor;
  unsigned count;
} svc_buckets_t;

#define SVC_BUCKETS_NONE {0, 0, 0}
#define SVC_BUCKETS_EXP(start, factor, count) {(start), (factor), (count)}

/* Label bound used when a definition says 0. */
#define SVC_METRICS_DEFAULT_MAX_SERIES 64
/* Hard limits: labels per metric, series per metric, bytes per label value. */
#define SVC_METRICS_MAX_LABELS 8
#define SVC_METRICS_MAX_SERIES 4096
#define SVC_METRICS_MAX_VALUE_LEN 256

typedef struct svc_metric_def_s {
  const char *name;   /* [a-zA-Z_:][a-zA-Z0-9_:]*, unique, e.g. "sluice_events_in_total" */
  svc_metric_type_t type;
  const char *unit;   /* e.g. "seconds", "bytes", "events"; "" when dimensionless */
  const char *labels; /* comma-separated label names, e.g. "topic,partition"; "" for none */
  unsigned max_series; /* bound on label tuples; 0 = SVC_METRICS_DEFAULT_MAX_SERIES */
  svc_buckets_t buckets; /* histograms only; SVC_BUCKETS_NONE otherwise */
  const char *help;   /* one line, shown in # HELP */
} svc_metric_def_t;

/* X-macro helpers: XX(id, name, type, unit, labels, max_series, buckets, help). */
#define SVC_METRIC_ENUM(id, name, type, unit, labels, max_series, buckets, help) id,
#define SVC_METRIC_DEF(id, name, type, unit, labels, max_series, buckets, help) \
  {name, type, unit, labels, max_series, buckets, help},

typedef struct svc_metrics_s svc_metrics_t;
typedef struct svc_series_s svc_series_t;

/*
 * Builds a registry from n_defs definitions; the table is borrowed and must outlive the
 * registry (it is normally a static const array). Validates every definition: names and label
 * names well-formed and unique, counters ending in _total, no label named "le" on histograms,
 * no reserved "__" label prefix, bucket spec present exactly for histograms and valid, bounds
 * within the limits above. On failure returns NULL and writes which metric and what was wrong
 * into errstr. Aborts on out-of-memory.
 */
svc_metrics_t *svc_metrics_new(const svc_metric_def_t *defs, size_t n_defs, char *errstr,
                               size_t errstr_size);

/* Frees the registry and every series; NULL is a no-op. No other thread may still use it. */
void svc_metrics_free(svc_metrics_t *m);

/*
 * The series of metric `id` for the given label values (one string per label name, in the
 * table's order; NULL for a metric without labels). Creates it on first use. Returns NULL
 * when the metric's series bound is reached or a value is invalid (NULL, not UTF-8, longer
 * than SVC_METRICS_MAX_VALUE_LEN); the drop is counted. Every update function accepts NULL
 * and does nothing, so callers need no branch. Any thread.
 */
svc_series_t *svc_metrics_series(svc_metrics_t *m, int id, const char *const *values);

/* The one-label shorthand of svc_metrics_series. */
svc_series_t *svc_metrics_series1(svc_metrics_t *m, int id, const char *value);

/* Updates. Calling one on a series of another type aborts (a programmer error). */
void svc_counter_add(svc_series_t *s, uint64_t n);
void svc_gauge_set(svc_series_t *s, double v);
void svc_gauge_add(svc_series_t *s, double v);
/* Hides a gauge series from the output until it is set again. */
void svc_gauge_clear(svc_series_t *s);
void svc_histogram_observe(svc_series_t *s, double v);

/* Shorthands for metrics without labels (abort if the metric has labels). */
void svc_metric_add(svc_metrics_t *m, int id, uint64_t n);
void svc_metric_set(svc_metrics_t *m, int id, double v);
void svc_metric_observe(svc_metrics_t *m, int id, double v);

/* Reading, for tests, benchmarks and the INFO dump. */
uint64_t svc_counter_value(const svc_series_t *s);
double svc_gauge_value(const svc_series_t *s);
/* The histogram behind a histogram series (borrowed; lives as long as the registry). */
const svc_hist_t *svc_series_hist(const svc_series_t *s);

/* Content type of svc_metrics_prometheus' output. */
#define SVC_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Renders every metric in the Prometheus text exposition format 0.0.4: for each metric in
 * table order "# HELP" and "# TYPE" lines, then one sample line per visible series (label
 * values escaped: backslash, double quote, newline); histograms as cumulative _bucket lines
 * with le bounds ending in "+Inf", then _sum and _count. Returns a NUL-terminated malloc'd
 * string that the caller frees, with its length in *len if len is not NULL. Any thread.
 */
char *svc_metrics_prometheus(svc_metrics_t *m, size_t *len);

/*
 * Renders a plain-text dump for humans, one line per series: counters and gauges as
 * "name{labels}:value", histograms as "name{labels}:count=.. sum=.. min=.. p50=.. p90=..
 * p99=.. max=.." (exact count; the rest to six significant digits), each metric preceded by a
 * "# name (type, unit): help" line. Same ownership and threads as svc_metrics_prometheus.
 */
char *svc_metrics_info(svc_metrics_t *m, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* SVC_METRICS_H */
