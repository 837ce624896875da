/*
 * The metrics registry: validation of a service's metrics table, bounded labelled series,
 * per-thread sharded counters, and the Prometheus 0.0.4 and INFO renderings. The contract is
 * in svc/metrics.h.
 */
#include "svc/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Counter shards: a power of two, each on its own cache line. */
#define MET__N_SHARDS 16
#define MET__CACHE_LINE 64
#define MET__DROPPED_NAME "sluice_metrics_series_dropped_total"

typedef struct met__shard_s {
  _Atomic uint64_t v;
  char pad[MET__CACHE_LINE - sizeof(uint64_t)];
} met__shard_t;

struct svc_series_s {
  svc_metric_type_t type;
  char **values;            /* (n_labels) owned copies */
  char *label_text;         /* `a="x",b="y"` escaped, "" without labels */
  _Atomic int visible;      /* gauges: 0 after svc_gauge_clear until the next set */
  met__shard_t *shards;     /* counters: (MET__N_SHARDS), cache-line aligned */
  _Atomic uint64_t gauge;   /* gauges: double bits */
  svc_hist_t *hist;         /* histograms */
};

typedef struct met__metric_s {
  const svc_metric_def_t *def;
  size_t n_labels;
  char *label_names[SVC_METRICS_MAX_LABELS];
  unsigned max_series;
  double bounds[SVC_HIST_MAX_BOUNDS];
  _Atomic(svc_series_t *) *series; /* (max_series) append-only */
  _Atomic size_t n_series;
} met__metric_t;

struct svc_metrics_s {
  size_t n_metrics;
  met__metric_t *metrics;
  pthread_mutex_t create_lock; /* serialises series creation only */
  _Atomic uint64_t dropped;
};

static _Atomic unsigned met__next_shard;
static _Thread_local unsigned met__shard = UINT32_MAX;

static void *met__xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (p == NULL) {
    fprintf(stderr, "svc_metrics: out of memory allocating %zu x %zu bytes\n", n, size);
    abort();
  }
  return p;
}

static char *met__xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = met__xcalloc(1, n);
  memcpy(p, s, n);
  return p;
}

static void met__misuse(const char *what) {
  fprintf(stderr, "svc_metrics: programming error: %s\n", what);
  abort();
}

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

/* ---- a growable string ---------------------------------------------------------------- */

typedef struct met__buf_s {
  char *p;
  size_t len, cap;
} met__buf_t;

static void buf_reserve(met__buf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (p == NULL) met__misuse("out of memory rendering metrics");
  b->p = p;
  b->cap = cap;
  b->p[b->len] = '\0';
}

static void buf_put(met__buf_t *b, const char *s, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_puts(met__buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void buf_printf(met__buf_t *b, const char *fmt,
                                                             ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  buf_reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/*
 * Prometheus' float syntax: the shortest %g that reads back to the same double, so 0.1 prints
 * as 0.1 and not 0.10000000000000001, and the special values as +Inf, -Inf, NaN.
 */
static void buf_double(met__buf_t *b, double v) {
  if (isnan(v)) {
    buf_puts(b, "NaN");
    return;
  }
  if (isinf(v)) {
    buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  char tmp[40];
  /* Whole numbers as integers: %g would pick "5.05e+03" for 5050 because it reads back. */
  if (v == floor(v) && fabs(v) < 1e15) {
    snprintf(tmp, sizeof tmp, "%.0f", v);
    buf_puts(b, tmp);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  buf_puts(b, tmp);
}

/* Label values: backslash, double quote and line feed are escaped (0.0.4). */
static void buf_label_value(met__buf_t *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\') buf_put(b, "\\\\", 2);
    else if (*v == '"') buf_put(b, "\\\"", 2);
    else if (*v == '\n') buf_put(b, "\\n", 2);
    else buf_put(b, v, 1);
  }
}

/* HELP text: backslash and line feed are escaped (0.0.4); quotes stay. */
static void buf_help(met__buf_t *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\') buf_put(b, "\\\\", 2);
    else if (*v == '\n') buf_put(b, "\\n", 2);
    else buf_put(b, v, 1);
  }
}

/* ---- validation ----------------------------------------------------------------------- */

static bool met__valid_name(const char *s, bool colon_ok) {
  if (s == NULL || *s == '\0') return false;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon_ok && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

static bool met__ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool met__valid_utf8(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p;
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      p++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t i = 1; i <= n; i++) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return false;
    p += n + 1;
  }
  return true;
}

__attribute__((format(printf, 5, 6))) static void met__err(char *errstr, size_t errstr_size,
                                                           size_t i, const char *name,
                                                           const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(errstr, errstr_size, "metric %zu (\"%s\"): %s", i, name ? name : "(null)", msg);
}

/* Splits def->labels into mm->label_names; returns false with errstr on a bad list. */
static bool met__parse_labels(met__metric_t *mm, size_t i, char *errstr, size_t errstr_size) {
  const svc_metric_def_t *d = mm->def;
  const char *s = d->labels ? d->labels : "";
  while (*s) {
    const char *comma = strchr(s, ',');
    size_t n = comma ? (size_t)(comma - s) : strlen(s);
    if (mm->n_labels == SVC_METRICS_MAX_LABELS) {
      met__err(errstr, errstr_size, i, d->name, "more than %d labels", SVC_METRICS_MAX_LABELS);
      return false;
    }
    char *name = met__xcalloc(1, n + 1);
    memcpy(name, s, n);
    mm->label_names[mm->n_labels++] = name;
    if (!met__valid_name(name, false)) {
      met__err(errstr, errstr_size, i, d->name, "label name \"%s\" is not [a-zA-Z_][a-zA-Z0-9_]*",
               name);
      return false;
    }
    if (strncmp(name, "__", 2) == 0) {
      met__err(errstr, errstr_size, i, d->name, "label name \"%s\" uses the reserved __ prefix",
               name);
      return false;
    }
    if (d->type == SVC_HISTOGRAM && strcmp(name, "le") == 0) {
      met__err(errstr, errstr_size, i, d->name, "a histogram may not have a label named \"le\"");
      return false;
    }
    for (size_t j = 0; j + 1 < mm->n_labels; j++) {
      if (strcmp(mm->label_names[j], name) == 0) {
        met__err(errstr, errstr_size, i, d->name, "label \"%s\" is listed twice", name);
        return false;
      }
    }
    if (comma == NULL) break;
    s = comma + 1;
    if (*s == '\0') {
      met__err(errstr, errstr_size, i, d->name, "label list \"%s\" ends with a comma", d->labels);
      return false;
    }
  }
  return true;
}

static bool met__validate(svc_metrics_t *m, size_t i, char *errstr, size_t errstr_size) {
  met__metric_t *mm = &m->metrics[i];
  const svc_metric_def_t *d = mm->def;
  if (!met__valid_name(d->name, true)) {
    met__err(errstr, errstr_size, i, d->name, "name is not [a-zA-Z_:][a-zA-Z0-9_:]*");
    return false;
  }
  if (strcmp(d->name, MET__DROPPED_NAME) == 0) {
    met__err(errstr, errstr_size, i, d->name, "name is reserved for the registry itself");
    return false;
  }
  for (size_t j = 0; j < i; j++) {
    if (strcmp(m->metrics[j].def->name, d->name) == 0) {
      met__err(errstr, errstr_size, i, d->name, "name already used by metric %zu", j);
      return false;
    }
  }
  if (d->help == NULL || d->help[0] == '\0') {
    met__err(errstr, errstr_size, i, d->name, "help text is missing");
    return false;
  }
  if (d->unit == NULL) {
    met__err(errstr, errstr_size, i, d->name, "unit is NULL (use \"\" when dimensionless)");
    return false;
  }
  switch (d->type) {
  case SVC_COUNTER:
    if (!met__ends_with(d->name, "_total")) {
      met__err(errstr, errstr_size, i, d->name, "a counter's name must end in _total");
      return false;
    }
    break;
  case SVC_GAUGE:
    break;
  case SVC_HISTOGRAM:
    if (met__ends_with(d->name, "_bucket") || met__ends_with(d->name, "_sum") ||
        met__ends_with(d->name, "_count")) {
      met__err(errstr, errstr_size, i, d->name,
               "a histogram's name may not end in _bucket, _sum or _count");
      return false;
    }
    break;
  default:
    met__err(errstr, errstr_size, i, d->name, "unknown type %d", (int)d->type);
    return false;
  }
  if (d->type == SVC_HISTOGRAM) {
    if (svc_hist_bounds_exp(d->buckets.start, d->buckets.factor, d->buckets.count,
                            mm->bounds) != 0) {
      met__err(errstr, errstr_size, i, d->name,
               "buckets (start %g, factor %g, count %u) need start > 0, factor > 1, "
               "count 1..%d",
               d->buckets.start, d->buckets.factor, d->buckets.count, SVC_HIST_MAX_BOUNDS);
      return false;
    }
  } else if (d->buckets.count != 0 || d->buckets.start != 0 || d->buckets.factor != 0) {
    met__err(errstr, errstr_size, i, d->name, "only histograms have buckets");
    return false;
  }
  if (!met__parse_labels(mm, i, errstr, errstr_size)) return false;
  mm->max_series = d->max_series ? d->max_series : SVC_METRICS_DEFAULT_MAX_SERIES;
  if (mm->n_labels == 0) mm->max_series = 1;
  if (mm->max_series > SVC_METRICS_MAX_SERIES) {
    met__err(errstr, errstr_size, i, d->name, "max_series %u is above the limit %d",
             d->max_series, SVC_METRICS_MAX_SERIES);
    return false;
  }
  return true;
}

/* ---- series --------------------------------------------------------------------------- */

static svc_series_t *met__series_new(const met__metric_t *mm, const char *const *values) {
  svc_series_t *s = met__xcalloc(1, sizeof *s);
  s->type = mm->def->type;
  met__buf_t text = {0};
  buf_reserve(&text, 0);
  if (mm->n_labels) s->values = met__xcalloc(mm->n_labels, sizeof *s->values);
  for (size_t i = 0; i < mm->n_labels; i++) {
    s->values[i] = met__xstrdup(values[i]);
    if (i) buf_puts(&text, ",");
    buf_puts(&text, mm->label_names[i]);
    buf_puts(&text, "=\"");
    buf_label_value(&text, values[i]);
    buf_puts(&text, "\"");
  }
  s->label_text = text.p;
  atomic_init(&s->visible, s->type != SVC_GAUGE || mm->n_labels == 0);
  atomic_init(&s->gauge, d2u(0.0));
  if (s->type == SVC_COUNTER) {
    s->shards = aligned_alloc(MET__CACHE_LINE, MET__N_SHARDS * sizeof *s->shards);
    if (s->shards == NULL) met__misuse("out of memory allocating counter shards");
    memset(s->shards, 0, MET__N_SHARDS * sizeof *s->shards);
  } else if (s->type == SVC_HISTOGRAM) {
    char err[128];
    s->hist = svc_hist_new(mm->bounds, mm->def->buckets.count, err, sizeof err);
    if (s->hist == NULL) met__misuse(err); /* bounds were validated at registry creation */
  }
  return s;
}

static void met__series_free(svc_series_t *s, size_t n_labels) {
  if (s == NULL) return;
  for (size_t i = 0; i < n_labels; i++) free(s->values[i]);
  free(s->values);
  free(s->label_text);
  free(s->shards);
  svc_hist_free(s->hist);
  free(s);
}

static svc_series_t *met__find(met__metric_t *mm, const char *const *values) {
  size_t n = atomic_load_explicit(&mm->n_series, memory_order_acquire);
  for (size_t i = 0; i < n; i++) {
    svc_series_t *s = atomic_load_explicit(&mm->series[i], memory_order_acquire);
    size_t j = 0;
    while (j < mm->n_labels && strcmp(s->values[j], values[j]) == 0) j++;
    if (j == mm->n_labels) return s;
  }
  return NULL;
}

svc_series_t *svc_metrics_series(svc_metrics_t *m, int id, const char *const *values) {
  if (id < 0 || (size_t)id >= m->n_metrics) met__misuse("metric id out of range");
  met__metric_t *mm = &m->metrics[id];
  if (mm->n_labels == 0) return atomic_load_explicit(&mm->series[0], memory_order_acquire);
  if (values == NULL) met__misuse("label values missing for a labelled metric");

  for (size_t i = 0; i < mm->n_labels; i++) {
    if (values[i] == NULL) {
      atomic_fetch_add_explicit(&m->dropped, 1, memory_order_relaxed);
      return NULL;
    }
  }
  svc_series_t *s = met__find(mm, values);
  if (s != NULL) return s;

  /* Only new tuples are checked in full: a series that exists was valid when created. */
  for (size_t i = 0; i < mm->n_labels; i++) {
    if (strlen(values[i]) > SVC_METRICS_MAX_VALUE_LEN || !met__valid_utf8(values[i])) {
      atomic_fetch_add_explicit(&m->dropped, 1, memory_order_relaxed);
      return NULL;
    }
  }
  pthread_mutex_lock(&m->create_lock);
  /* Another thread may have created it between the lock-free look and the lock. */
  s = met__find(mm, values);
  if (s == NULL) {
    size_t n = atomic_load_explicit(&mm->n_series, memory_order_relaxed);
    if (n < mm->max_series) {
      s = met__series_new(mm, values);
      atomic_store_explicit(&mm->series[n], s, memory_order_release);
      atomic_store_explicit(&mm->n_series, n + 1, memory_order_release);
    }
  }
  pthread_mutex_unlock(&m->create_lock);
  if (s == NULL) atomic_fetch_add_explicit(&m->dropped, 1, memory_order_relaxed);
  return s;
}

svc_series_t *svc_metrics_series1(svc_metrics_t *m, int id, const char *value) {
  const char *values[1] = {value};
  return svc_metrics_series(m, id, values);
}

/* ---- registry ------------------------------------------------------------------------- */

svc_metrics_t *svc_metrics_new(const svc_metric_def_t *defs, size_t n_defs, char *errstr,
                               size_t errstr_size) {
  svc_metrics_t *m = met__xcalloc(1, sizeof *m);
  pthread_mutex_init(&m->create_lock, NULL);
  m->n_metrics = n_defs;
  m->metrics = met__xcalloc(n_defs ? n_defs : 1, sizeof *m->metrics);
  for (size_t i = 0; i < n_defs; i++) {
    met__metric_t *mm = &m->metrics[i];
    mm->def = &defs[i];
    if (!met__validate(m, i, errstr, errstr_size)) goto fail;
    mm->series = met__xcalloc(mm->max_series, sizeof *mm->series);
    if (mm->n_labels == 0) {
      atomic_store(&mm->series[0], met__series_new(mm, NULL));
      atomic_store(&mm->n_series, 1);
    }
  }
  return m;

fail:
  svc_metrics_free(m);
  return NULL;
}

void svc_metrics_free(svc_metrics_t *m) {
  if (m == NULL) return;
  for (size_t i = 0; i < m->n_metrics; i++) {
    met__metric_t *mm = &m->metrics[i];
    size_t n = atomic_load(&mm->n_series);
    for (size_t j = 0; j < n; j++) met__series_free(atomic_load(&mm->series[j]), mm->n_labels);
    free(mm->series);
    for (size_t j = 0; j < mm->n_labels; j++) free(mm->label_names[j]);
  }
  free(m->metrics);
  pthread_mutex_destroy(&m->create_lock);
  free(m);
}

/* ---- updates -------------------------------------------------------------------------- */

static inline unsigned met__my_shard(void) {
  if (met__shard == UINT32_MAX)
    met__shard = atomic_fetch_add_explicit(&met__next_shard, 1, memory_order_relaxed) %
                 MET__N_SHARDS;
  return met__shard;
}

void svc_counter_add(svc_series_t *s, uint64_t n) {
  if (s == NULL) return;
  if (s->type != SVC_COUNTER) met__misuse("svc_counter_add on a series that is not a counter");
  atomic_fetch_add_explicit(&s->shards[met__my_shard()].v, n, memory_order_relaxed);
}

void svc_gauge_set(svc_series_t *s, double v) {
  if (s == NULL) return;
  if (s->type != SVC_GAUGE) met__misuse("svc_gauge_set on a series that is not a gauge");
  atomic_store_explicit(&s->gauge, d2u(v), memory_order_relaxed);
  atomic_store_explicit(&s->visible, 1, memory_order_relaxed);
}

void svc_gauge_add(svc_series_t *s, double v) {
  if (s == NULL) return;
  if (s->type != SVC_GAUGE) met__misuse("svc_gauge_add on a series that is not a gauge");
  uint64_t old = atomic_load_explicit(&s->gauge, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(&s->gauge, &old, d2u(u2d(old) + v),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
  atomic_store_explicit(&s->visible, 1, memory_order_relaxed);
}

void svc_gauge_clear(svc_series_t *s) {
  if (s == NULL) return;
  if (s->type != SVC_GAUGE) met__misuse("svc_gauge_clear on a series that is not a gauge");
  atomic_store_explicit(&s->visible, 0, memory_order_relaxed);
}

void svc_histogram_observe(svc_series_t *s, double v) {
  if (s == NULL) return;
  if (s->type != SVC_HISTOGRAM)
    met__misuse("svc_histogram_observe on a series that is not a histogram");
  svc_hist_observe(s->hist, v);
}

static svc_series_t *met__plain(svc_metrics_t *m, int id) {
  if (id < 0 || (size_t)id >= m->n_metrics) met__misuse("metric id out of range");
  if (m->metrics[id].n_labels != 0) met__misuse("svc_metric_* shorthand on a labelled metric");
  return atomic_load_explicit(&m->metrics[id].series[0], memory_order_relaxed);
}

void svc_metric_add(svc_metrics_t *m, int id, uint64_t n) { svc_counter_add(met__plain(m, id), n); }

void svc_metric_set(svc_metrics_t *m, int id, double v) { svc_gauge_set(met__plain(m, id), v); }

void svc_metric_observe(svc_metrics_t *m, int id, double v) {
  svc_histogram_observe(met__plain(m, id), v);
}

uint64_t svc_counter_value(const svc_series_t *s) {
  if (s == NULL || s->type != SVC_COUNTER) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < MET__N_SHARDS; i++)
    v += atomic_load_explicit(&s->shards[i].v, memory_order_relaxed);
  return v;
}

double svc_gauge_value(const svc_series_t *s) {
  if (s == NULL || s->type != SVC_GAUGE) return NAN;
  return u2d(atomic_load_explicit(&s->gauge, memory_order_relaxed));
}

const svc_hist_t *svc_series_hist(const svc_series_t *s) {
  return s != NULL && s->type == SVC_HISTOGRAM ? s->hist : NULL;
}

/* ---- rendering ------------------------------------------------------------------------ */

static const char *met__type_name(svc_metric_type_t t) {
  switch (t) {
  case SVC_COUNTER: return "counter";
  case SVC_GAUGE: return "gauge";
  case SVC_HISTOGRAM: return "histogram";
  }
  return "untyped";
}

/* `name{labels}` or `name{labels,extra}`, with the braces left out when both are empty. */
static void buf_series_name(met__buf_t *b, const char *name, const char *suffix,
                            const char *labels, const char *extra) {
  buf_puts(b, name);
  buf_puts(b, suffix);
  bool has_labels = labels[0] != '\0', has_extra = extra != NULL;
  if (!has_labels && !has_extra) return;
  buf_puts(b, "{");
  buf_puts(b, labels);
  if (has_labels && has_extra) buf_puts(b, ",");
  if (has_extra) buf_puts(b, extra);
  buf_puts(b, "}");
}

static void met__prom_series(met__buf_t *b, const met__metric_t *mm, const svc_series_t *s) {
  const char *name = mm->def->name;
  switch (s->type) {
  case SVC_COUNTER:
    buf_series_name(b, name, "", s->label_text, NULL);
    buf_printf(b, " %llu\n", (unsigned long long)svc_counter_value(s));
    break;
  case SVC_GAUGE:
    buf_series_name(b, name, "", s->label_text, NULL);
    buf_puts(b, " ");
    buf_double(b, svc_gauge_value(s));
    buf_puts(b, "\n");
    break;
  case SVC_HISTOGRAM: {
    size_t nb = svc_hist_n_bounds(s->hist);
    const double *bounds = svc_hist_bounds(s->hist);
    uint64_t cum[SVC_HIST_MAX_BOUNDS + 1];
    double sum;
    svc_hist_cumulative(s->hist, cum, &sum);
    for (size_t i = 0; i <= nb; i++) {
      met__buf_t le = {0};
      buf_puts(&le, "le=\"");
      buf_double(&le, i < nb ? bounds[i] : INFINITY);
      buf_puts(&le, "\"");
      buf_series_name(b, name, "_bucket", s->label_text, le.p);
      free(le.p);
      buf_printf(b, " %llu\n", (unsigned long long)cum[i]);
    }
    buf_series_name(b, name, "_sum", s->label_text, NULL);
    buf_puts(b, " ");
    buf_double(b, sum);
    buf_puts(b, "\n");
    buf_series_name(b, name, "_count", s->label_text, NULL);
    buf_printf(b, " %llu\n", (unsigned long long)cum[nb]);
    break;
  }
  }
}

char *svc_metrics_prometheus(svc_metrics_t *m, size_t *len) {
  met__buf_t b = {0};
  buf_reserve(&b, 4096);
  for (size_t i = 0; i < m->n_metrics; i++) {
    const met__metric_t *mm = &m->metrics[i];
    const svc_metric_def_t *d = mm->def;
    buf_printf(&b, "# HELP %s ", d->name);
    buf_help(&b, d->help);
    buf_printf(&b, "\n# TYPE %s %s\n", d->name, met__type_name(d->type));
    size_t n = atomic_load_explicit(&mm->n_series, memory_order_acquire);
    for (size_t j = 0; j < n; j++) {
      const svc_series_t *s = atomic_load_explicit(&mm->series[j], memory_order_acquire);
      if (!atomic_load_explicit(&s->visible, memory_order_relaxed)) continue;
      met__prom_series(&b, mm, s);
    }
  }
  buf_printf(&b,
             "# HELP " MET__DROPPED_NAME
             " Metric updates dropped because a label bound was reached or a label value was "
             "invalid.\n# TYPE " MET__DROPPED_NAME " counter\n" MET__DROPPED_NAME " %llu\n",
             (unsigned long long)atomic_load(&m->dropped));
  if (len) *len = b.len;
  return b.p;
}

char *svc_metrics_info(svc_metrics_t *m, size_t *len) {
  met__buf_t b = {0};
  buf_reserve(&b, 4096);
  for (size_t i = 0; i < m->n_metrics; i++) {
    const met__metric_t *mm = &m->metrics[i];
    const svc_metric_def_t *d = mm->def;
    buf_printf(&b, "# %s (%s%s%s): ", d->name, met__type_name(d->type), d->unit[0] ? ", " : "",
               d->unit);
    buf_help(&b, d->help);
    buf_puts(&b, "\n");
    size_t n = atomic_load_explicit(&mm->n_series, memory_order_acquire);
    for (size_t j = 0; j < n; j++) {
      const svc_series_t *s = atomic_load_explicit(&mm->series[j], memory_order_acquire);
      if (!atomic_load_explicit(&s->visible, memory_order_relaxed)) continue;
      buf_series_name(&b, d->name, "", s->label_text, NULL);
      buf_puts(&b, ":");
      if (s->type == SVC_COUNTER) {
        buf_printf(&b, "%llu", (unsigned long long)svc_counter_value(s));
      } else if (s->type == SVC_GAUGE) {
        buf_double(&b, svc_gauge_value(s));
      } else {
        svc_hist_stats_t st;
        svc_hist_stats(s->hist, &st);
        /* For humans: six significant digits (the quantiles carry 1% error anyway). */
        buf_printf(&b, "count=%llu sum=%.6g", (unsigned long long)st.count, st.sum);
        static const struct {
          const char *name;
          double q;
        } qs[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}};
        if (isnan(st.min)) buf_puts(&b, " min=NaN");
        else buf_printf(&b, " min=%.6g", st.min);
        for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
          /* Estimates carry 1% error: six digits say all they know. */
          double q = svc_hist_quantile(s->hist, qs[k].q);
          if (isnan(q)) buf_printf(&b, " %s=NaN", qs[k].name);
          else buf_printf(&b, " %s=%.6g", qs[k].name, q);
        }
        if (isnan(st.max)) buf_puts(&b, " max=NaN");
        else buf_printf(&b, " max=%.6g", st.max);
      }
      buf_puts(&b, "\n");
    }
  }
  buf_printf(&b, "# " MET__DROPPED_NAME " (counter): dropped metric updates\n" MET__DROPPED_NAME
                 ":%llu\n",
             (unsigned long long)atomic_load(&m->dropped));
  if (len) *len = b.len;
  return b.p;
}
