/*
 * Tests of svc/metrics.h: table validation with precise errors, the Prometheus 0.0.4 text
 * format checked by an independent line parser (HELP/TYPE before samples, label escaping,
 * cumulative _bucket lines ending in +Inf, _sum/_count), bounded label series, gauge clearing,
 * the INFO dump, and exact counter totals under concurrent increments from many threads.
 */
#include <pthread.h>
#include <stdbool.h>

#include "svc/metrics.h"
#include "test.h"

#define T_METRICS(XX)                                                                       \
  XX(T_EVENTS, "t_events_in_total", SVC_COUNTER, "events", "", 0, SVC_BUCKETS_NONE,         \
     "Events consumed.")                                                                    \
  XX(T_DLQ, "t_dead_lettered_total", SVC_COUNTER, "events", "reason", 3, SVC_BUCKETS_NONE,  \
     "Events sent to the DLQ, by reason.")                                                  \
  XX(T_LAG, "t_consumer_lag", SVC_GAUGE, "messages", "topic,partition", 16,                 \
     SVC_BUCKETS_NONE, "Consumer lag per partition.")                                       \
  XX(T_LATENCY, "t_inference_seconds", SVC_HISTOGRAM, "seconds", "", 0,                     \
     SVC_BUCKETS_EXP(0.001, 10, 4), "Time to score one batch;\nsecond line \\ backslash.")  \
  XX(T_BATCH, "t_batch_size", SVC_HISTOGRAM, "events", "pipeline", 4,                       \
     SVC_BUCKETS_EXP(1, 2, 10), "Events per batch.")

enum { T_METRICS(SVC_METRIC_ENUM) T__COUNT };
static const svc_metric_def_t t_defs[] = {T_METRICS(SVC_METRIC_DEF)};

static svc_metrics_t *new_registry(void) {
  char err[256] = "";
  svc_metrics_t *m = svc_metrics_new(t_defs, T__COUNT, err, sizeof err);
  ASSERT_MSG(m != NULL, "svc_metrics_new: %s", err);
  return m;
}

/* ---- an independent parser of the text format ---------------------------------------- */

typedef struct sample_s {
  char name[128];
  char labels[8][2][128]; /* unescaped (name, value) pairs */
  int n_labels;
  double value;
} sample_t;

typedef struct family_s {
  char name[128];
  char type[32];
  char help[256];
} family_t;

/* Parses one sample line strictly; returns false on any deviation from 0.0.4. */
static bool parse_sample(const char *line, sample_t *s) {
  memset(s, 0, sizeof *s);
  size_t n = 0;
  while ((line[n] >= 'a' && line[n] <= 'z') || (line[n] >= 'A' && line[n] <= 'Z') ||
         line[n] == '_' || line[n] == ':' || (n > 0 && line[n] >= '0' && line[n] <= '9'))
    n++;
  if (n == 0 || n >= sizeof s->name) return false;
  memcpy(s->name, line, n);
  const char *p = line + n;
  if (*p == '{') {
    p++;
    while (*p != '}') {
      if (s->n_labels == 8) return false;
      size_t k = 0;
      while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
             (k > 0 && *p >= '0' && *p <= '9')) {
        s->labels[s->n_labels][0][k++] = *p++;
      }
      if (k == 0 || *p++ != '=' || *p++ != '"') return false;
      size_t v = 0;
      while (*p != '"') {
        if (*p == '\0' || *p == '\n') return false;
        char c = *p++;
        if (c == '\\') {
          c = *p++;
          if (c == 'n') c = '\n';
          else if (c != '\\' && c != '"') return false;
        }
        s->labels[s->n_labels][1][v++] = c;
      }
      p++;
      s->n_labels++;
      if (*p == ',') p++;
      else if (*p != '}') return false;
    }
    p++;
  }
  if (*p++ != ' ') return false;
  if (strcmp(p, "+Inf") == 0) s->value = INFINITY;
  else if (strcmp(p, "-Inf") == 0) s->value = -INFINITY;
  else if (strcmp(p, "NaN") == 0) s->value = NAN;
  else {
    char *end;
    s->value = strtod(p, &end);
    if (end == p || *end != '\0') return false;
  }
  return true;
}

static const char *label(const sample_t *s, const char *name) {
  for (int i = 0; i < s->n_labels; i++)
    if (strcmp(s->labels[i][0], name) == 0) return s->labels[i][1];
  return NULL;
}

/* Splits the text into lines and checks the grammar; fills samples and families. */
static int parse_exposition(char *text, sample_t *samples, int max_samples, family_t *fams,
                            int *n_fams) {
  int n = 0;
  *n_fams = 0;
  family_t *cur = NULL;
  ASSERT_MSG(text[strlen(text) - 1] == '\n', "exposition must end with a line feed");
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    if (strncmp(line, "# HELP ", 7) == 0) {
      cur = &fams[(*n_fams)++];
      memset(cur, 0, sizeof *cur);
      const char *sp = strchr(line + 7, ' ');
      ASSERT_NOT_NULL(sp);
      memcpy(cur->name, line + 7, (size_t)(sp - (line + 7)));
      snprintf(cur->help, sizeof cur->help, "%s", sp + 1);
    } else if (strncmp(line, "# TYPE ", 7) == 0) {
      ASSERT_MSG(cur != NULL, "TYPE before HELP: %s", line);
      size_t k = strlen(cur->name);
      ASSERT_MSG(strncmp(line + 7, cur->name, k) == 0 && line[7 + k] == ' ',
                 "TYPE for another family: %s", line);
      snprintf(cur->type, sizeof cur->type, "%s", line + 8 + k);
      ASSERT_MSG(strcmp(cur->type, "counter") == 0 || strcmp(cur->type, "gauge") == 0 ||
                     strcmp(cur->type, "histogram") == 0,
                 "bad type: %s", line);
    } else {
      ASSERT_MSG(line[0] != '#', "unexpected comment: %s", line);
      ASSERT(n < max_samples);
      ASSERT_MSG(parse_sample(line, &samples[n]), "malformed sample line: \"%s\"", line);
      ASSERT_MSG(cur != NULL && cur->type[0], "sample before its TYPE: %s", line);
      /* The sample must belong to the family just declared. */
      const char *nm = samples[n].name;
      size_t k = strlen(cur->name);
      bool ok = strncmp(nm, cur->name, k) == 0 &&
                (nm[k] == '\0' || (strcmp(cur->type, "histogram") == 0 &&
                                   (strcmp(nm + k, "_bucket") == 0 ||
                                    strcmp(nm + k, "_sum") == 0 ||
                                    strcmp(nm + k, "_count") == 0)));
      ASSERT_MSG(ok, "sample %s outside family %s", nm, cur->name);
      n++;
    }
  }
  return n;
}

static const sample_t *find(const sample_t *s, int n, const char *name, const char *lname,
                            const char *lvalue) {
  for (int i = 0; i < n; i++) {
    if (strcmp(s[i].name, name) != 0) continue;
    if (lname == NULL) return &s[i];
    const char *v = label(&s[i], lname);
    if (v && strcmp(v, lvalue) == 0) return &s[i];
  }
  return NULL;
}

/* ---- tests ---------------------------------------------------------------------------- */

TEST(exposition_format) {
  svc_metrics_t *m = new_registry();
  svc_metric_add(m, T_EVENTS, 41);
  svc_metric_add(m, T_EVENTS, 1);
  svc_counter_add(svc_metrics_series1(m, T_DLQ, "decode"), 3);
  svc_counter_add(svc_metrics_series1(m, T_DLQ, "we\"ird\\val\nue"), 1);
  const char *lag_labels[] = {"sluice.fraud.events", "3"};
  svc_gauge_set(svc_metrics_series(m, T_LAG, lag_labels), 17);
  svc_gauge_add(svc_metrics_series(m, T_LAG, lag_labels), 0.5);
  const double obs[] = {0.0005, 0.001, 0.002, 0.05, 3.0};
  for (size_t i = 0; i < 5; i++) svc_metric_observe(m, T_LATENCY, obs[i]);

  size_t len;
  char *text = svc_metrics_prometheus(m, &len);
  ASSERT_EQ(len, strlen(text));
  /* Literal checks of details a parser might forgive. */
  ASSERT_STR_CONTAINS(text, "# HELP t_inference_seconds Time to score one batch;\\nsecond line "
                            "\\\\ backslash.\n# TYPE t_inference_seconds histogram\n");
  ASSERT_STR_CONTAINS(text, "t_dead_lettered_total{reason=\"we\\\"ird\\\\val\\nue\"} 1\n");
  ASSERT_STR_CONTAINS(text, "t_inference_seconds_bucket{le=\"0.001\"} 2\n");
  ASSERT_STR_CONTAINS(text, "t_inference_seconds_bucket{le=\"+Inf\"} 5\n");
  ASSERT_STR_CONTAINS(text, "t_events_in_total 42\n");
  ASSERT_STR_CONTAINS(text, "t_consumer_lag{topic=\"sluice.fraud.events\",partition=\"3\"} 17.5\n");

  sample_t samples[128];
  family_t fams[16];
  int n_fams;
  int n = parse_exposition(text, samples, 128, fams, &n_fams);
  ASSERT_EQ(n_fams, T__COUNT + 1); /* + the registry's own dropped counter */
  for (int i = 0; i < T__COUNT; i++) ASSERT_STR_EQ(fams[i].name, t_defs[i].name);
  ASSERT_STR_EQ(fams[T_LAG].type, "gauge");
  ASSERT_STR_EQ(fams[T_BATCH].type, "histogram");

  ASSERT_EQ(find(samples, n, "t_events_in_total", NULL, NULL)->value, 42);
  ASSERT_EQ(find(samples, n, "t_dead_lettered_total", "reason", "decode")->value, 3);
  const sample_t *weird = find(samples, n, "t_dead_lettered_total", "reason", "we\"ird\\val\nue");
  ASSERT_NOT_NULL(weird);
  ASSERT_EQ(weird->value, 1);

  /* Histogram: le ascending, cumulative, ends with +Inf == _count; _sum is the sum. */
  double prev_le = -INFINITY, prev_count = 0;
  int n_buckets = 0;
  for (int i = 0; i < n; i++) {
    if (strcmp(samples[i].name, "t_inference_seconds_bucket") != 0) continue;
    const char *le = label(&samples[i], "le");
    ASSERT_NOT_NULL(le);
    double b = strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, NULL);
    ASSERT_OP(b, >, prev_le);
    ASSERT_OP(samples[i].value, >=, prev_count);
    prev_le = b;
    prev_count = samples[i].value;
    n_buckets++;
  }
  ASSERT_EQ(n_buckets, 5); /* 4 finite bounds + +Inf */
  ASSERT(isinf(prev_le));
  ASSERT_EQ(find(samples, n, "t_inference_seconds_count", NULL, NULL)->value, prev_count);
  ASSERT_EQ(prev_count, 5);
  ASSERT_NEAR(find(samples, n, "t_inference_seconds_sum", NULL, NULL)->value, 3.0535, 1e-12);
  /* le="1" holds 0.0005, 0.001, 0.002, 0.05. */
  const sample_t *le1 = find(samples, n, "t_inference_seconds_bucket", "le", "1");
  ASSERT_NOT_NULL(le1);
  ASSERT_EQ(le1->value, 4);
  /* A labelled histogram with no series yet renders only its HELP and TYPE. */
  ASSERT_NULL(find(samples, n, "t_batch_size_count", NULL, NULL));
  ASSERT_EQ(find(samples, n, "sluice_metrics_series_dropped_total", NULL, NULL)->value, 0);
  free(text);
  svc_metrics_free(m);
}

TEST(series_bound_and_invalid_values) {
  svc_metrics_t *m = new_registry();
  svc_series_t *a = svc_metrics_series1(m, T_DLQ, "decode");
  ASSERT_NOT_NULL(a);
  ASSERT(svc_metrics_series1(m, T_DLQ, "decode") == a); /* same tuple, same series */
  ASSERT_NOT_NULL(svc_metrics_series1(m, T_DLQ, "validate"));
  ASSERT_NOT_NULL(svc_metrics_series1(m, T_DLQ, "oversize"));
  ASSERT_NULL(svc_metrics_series1(m, T_DLQ, "fourth")); /* max_series 3 */
  ASSERT_NULL(svc_metrics_series1(m, T_DLQ, "\xff\xfe")); /* not UTF-8 */
  ASSERT_NULL(svc_metrics_series1(m, T_DLQ, NULL));
  svc_counter_add(NULL, 5); /* a dropped series is a no-op */
  ASSERT_EQ(svc_counter_value(a), 0);

  char *text = svc_metrics_prometheus(m, NULL);
  ASSERT_STR_CONTAINS(text, "sluice_metrics_series_dropped_total 3\n");
  ASSERT(strstr(text, "fourth") == NULL);
  free(text);
  svc_metrics_free(m);
}

TEST(gauge_clear_hides_until_set) {
  svc_metrics_t *m = new_registry();
  const char *lbl[] = {"t", "0"};
  svc_series_t *g = svc_metrics_series(m, T_LAG, lbl);
  char *text = svc_metrics_prometheus(m, NULL);
  ASSERT(strstr(text, "t_consumer_lag{") == NULL); /* created, never set: hidden */
  free(text);
  svc_gauge_set(g, 5);
  text = svc_metrics_prometheus(m, NULL);
  ASSERT_STR_CONTAINS(text, "t_consumer_lag{topic=\"t\",partition=\"0\"} 5\n");
  free(text);
  svc_gauge_clear(g);
  text = svc_metrics_prometheus(m, NULL);
  ASSERT(strstr(text, "t_consumer_lag{") == NULL);
  free(text);
  ASSERT_EQ(svc_gauge_value(g), 5);
  svc_metrics_free(m);
}

TEST(info_dump) {
  svc_metrics_t *m = new_registry();
  for (int i = 1; i <= 100; i++) svc_histogram_observe(svc_metrics_series1(m, T_BATCH, "fraud"), i);
  svc_metric_add(m, T_EVENTS, 7);
  char *text = svc_metrics_info(m, NULL);
  ASSERT_STR_CONTAINS(text, "# t_events_in_total (counter, events): Events consumed.\n");
  ASSERT_STR_CONTAINS(text, "t_events_in_total:7\n");
  ASSERT_STR_CONTAINS(text, "t_batch_size{pipeline=\"fraud\"}:count=100 sum=5050 min=1 p50=");
  const char *line = strstr(text, "t_batch_size{");
  const char *p50 = strstr(line, "p50=");
  ASSERT_NEAR(strtod(p50 + 4, NULL), 50, SVC_HIST_REL_ERR);
  const char *p99 = strstr(line, "p99=");
  ASSERT_NEAR(strtod(p99 + 4, NULL), 99, SVC_HIST_REL_ERR);
  ASSERT_STR_CONTAINS(text, " max=100\n");
  free(text);
  svc_metrics_free(m);
}

static void expect_invalid(svc_metric_def_t d, const char *why) {
  char err[256] = "";
  svc_metrics_t *m = svc_metrics_new(&d, 1, err, sizeof err);
  ASSERT_MSG(m == NULL, "definition accepted, expected \"%s\"", why);
  ASSERT_STR_CONTAINS(err, why);
  ASSERT_STR_CONTAINS(err, "metric 0");
}

TEST(validation) {
  const svc_buckets_t none = SVC_BUCKETS_NONE, exp = SVC_BUCKETS_EXP(1, 2, 4);
  expect_invalid((svc_metric_def_t){"9bad", SVC_GAUGE, "", "", 0, none, "h"}, "name is not");
  expect_invalid((svc_metric_def_t){"x_events", SVC_COUNTER, "", "", 0, none, "h"},
                 "must end in _total");
  expect_invalid((svc_metric_def_t){"x", SVC_GAUGE, "", "", 0, none, ""}, "help text");
  expect_invalid((svc_metric_def_t){"x", SVC_GAUGE, "", "a,1b", 0, none, "h"},
                 "label name \"1b\"");
  expect_invalid((svc_metric_def_t){"x", SVC_GAUGE, "", "a,a", 0, none, "h"}, "listed twice");
  expect_invalid((svc_metric_def_t){"x", SVC_GAUGE, "", "a,", 0, none, "h"}, "ends with a comma");
  expect_invalid((svc_metric_def_t){"x", SVC_GAUGE, "", "__x", 0, none, "h"}, "reserved");
  expect_invalid((svc_metric_def_t){"x", SVC_HISTOGRAM, "", "le", 0, exp, "h"}, "\"le\"");
  expect_invalid((svc_metric_def_t){"x", SVC_HISTOGRAM, "", "", 0, none, "h"}, "buckets");
  expect_invalid((svc_metric_def_t){"x", SVC_GAUGE, "", "", 0, exp, "h"}, "only histograms");
  expect_invalid((svc_metric_def_t){"x_count", SVC_HISTOGRAM, "", "", 0, exp, "h"},
                 "may not end in");
  expect_invalid((svc_metric_def_t){"x", SVC_GAUGE, "", "a", 100000, none, "h"}, "max_series");
  expect_invalid((svc_metric_def_t){"x", SVC_GAUGE, NULL, "", 0, none, "h"}, "unit");
  expect_invalid((svc_metric_def_t){"sluice_metrics_series_dropped_total", SVC_COUNTER, "", "",
                                    0, none, "h"},
                 "reserved");

  const svc_metric_def_t dup[] = {{"x", SVC_GAUGE, "", "", 0, none, "h"},
                                  {"x", SVC_GAUGE, "", "", 0, none, "h"}};
  char err[256];
  ASSERT_NULL(svc_metrics_new(dup, 2, err, sizeof err));
  ASSERT_STR_CONTAINS(err, "metric 1 (\"x\"): name already used by metric 0");
  svc_metrics_free(NULL);
}

/* ---- concurrency ---------------------------------------------------------------------- */

enum { N_THREADS = 8, PER_THREAD = 200000 };

typedef struct worker_arg_s {
  svc_metrics_t *m;
  int idx;
} worker_arg_t;

static void *bump(void *p) {
  worker_arg_t *a = p;
  /* Every thread looks up (and races to create) the same labelled series, plus its own. */
  svc_series_t *shared = svc_metrics_series1(a->m, T_DLQ, "decode");
  const char *lbl[] = {"topic", a->idx % 2 ? "odd" : "even"};
  svc_series_t *lag = svc_metrics_series(a->m, T_LAG, lbl);
  for (int i = 0; i < PER_THREAD; i++) {
    svc_metric_add(a->m, T_EVENTS, 1);
    svc_counter_add(shared, 2);
    svc_gauge_add(lag, 1.0);
    if (i % 100 == 0) svc_metric_observe(a->m, T_LATENCY, 0.001);
  }
  return NULL;
}

TEST(concurrent_updates_exact_totals) {
  svc_metrics_t *m = new_registry();
  pthread_t th[N_THREADS];
  worker_arg_t args[N_THREADS];
  for (int i = 0; i < N_THREADS; i++) {
    args[i] = (worker_arg_t){m, i};
    ASSERT_OK(pthread_create(&th[i], NULL, bump, &args[i]));
  }
  /* Render while the threads run: must not crash or tear. */
  for (int i = 0; i < 5; i++) free(svc_metrics_prometheus(m, NULL));
  for (int i = 0; i < N_THREADS; i++) ASSERT_OK(pthread_join(th[i], NULL));

  ASSERT_EQ(svc_counter_value(svc_metrics_series(m, T_EVENTS, NULL)),
            (uint64_t)N_THREADS * PER_THREAD);
  ASSERT_EQ(svc_counter_value(svc_metrics_series1(m, T_DLQ, "decode")),
            2ull * N_THREADS * PER_THREAD);
  const char *even[] = {"topic", "even"};
  ASSERT_EQ(svc_gauge_value(svc_metrics_series(m, T_LAG, even)),
            (double)(N_THREADS / 2) * PER_THREAD);
  svc_hist_stats_t st;
  svc_hist_stats(svc_series_hist(svc_metrics_series(m, T_LATENCY, NULL)), &st);
  ASSERT_EQ(st.count, (uint64_t)N_THREADS * (PER_THREAD / 100));

  /* Exactly one series per distinct tuple despite the race. */
  char *text = svc_metrics_prometheus(m, NULL);
  const char *first = strstr(text, "t_dead_lettered_total{reason=\"decode\"}");
  ASSERT_NOT_NULL(first);
  ASSERT_NULL(strstr(first + 1, "t_dead_lettered_total{reason=\"decode\"}"));
  free(text);
  svc_metrics_free(m);
}
