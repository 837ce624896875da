/*
 * The fault pipeline (wk_pipeline_fault): decoding, per-device windows and alert state, the
 * fault models' adapter, the rows of fault_results / fault_state and the alerts' outbox rows.
 * The contract is in pipeline-fault.h and pipeline.h.
 *
 * Who touches what (pipeline.h's threads): a device's window and last_offset belong to accept
 * (loop thread); its alert state machine belongs to process (thread pool, one batch at a time,
 * batches in consumption order). An event carries everything process needs from accept's side
 * (a reference to its device, the encoded window state after the event was folded, the window
 * to score), so process never reads what accept is changing. The device table itself is only
 * touched on the loop thread (accept, event_free, restore, discard, revoke); a device is
 * reference-counted by the table and by the events that point at it, so dropping it from the
 * table (revoke, discard) never frees memory an accepted event still uses.
 */
#include "pipeline-fault.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault-alert.h"
#include "fault-input.h"
#include "fault-window.h"
#include "moe/moe.h"

const char *const wk_fault_late_policy_names[] = {"dlq", "count", NULL};

const char wk_fault_schema_sql[] =
    "CREATE TABLE fault_results (\n"
    "  event_id text COLLATE \"C\" NOT NULL,\n"
    "  kind text COLLATE \"C\" NOT NULL,\n"
    "  device_id text COLLATE \"C\" NOT NULL,\n"
    "  model_version text NOT NULL,\n"
    "  score real NOT NULL,\n"
    "  alert_phase text NOT NULL,\n"
    "  event_time timestamptz NOT NULL,\n"
    "  window_start timestamptz NOT NULL,\n"
    "  input real[] NOT NULL,\n"
    "  topic text NOT NULL,\n"
    "  partition integer NOT NULL,\n"
    "  kafka_offset bigint NOT NULL,\n"
    "  scored_at timestamptz NOT NULL DEFAULT now(),\n"
    "  PRIMARY KEY (event_id, kind)\n"
    ");\n"
    "CREATE INDEX fault_results_device ON fault_results (device_id, event_time);\n"
    /* A sensor model's input is a whole window (6 KB for C-MAPSS, 100 x 15): stored out of line
     * without compression, because compressing it was a third of the commit's time (1.7-1.9 s
     * instead of 2.6-2.8 s for the 18,731 windows of FD001; 60 % more disk for the column). */
    "ALTER TABLE fault_results ALTER COLUMN input SET STORAGE EXTERNAL;\n"
    "CREATE TABLE fault_state (\n"
    "  device_id text COLLATE \"C\" NOT NULL,\n"
    "  kind text COLLATE \"C\" NOT NULL,\n"
    "  topic text NOT NULL,\n"
    "  partition integer NOT NULL,\n"
    "  last_offset bigint NOT NULL,\n"
    "  window_state bytea NOT NULL,\n"
    "  alert_state bytea NOT NULL,\n"
    "  updated_at timestamptz NOT NULL DEFAULT now(),\n"
    "  PRIMARY KEY (device_id, kind)\n"
    ");\n"
    "CREATE INDEX fault_state_partition ON fault_state (topic, partition);\n";

const svc_metric_def_t wk_fault_metric_defs[] = {WK_FAULT_METRICS(SVC_METRIC_DEF)};
const size_t wk_fault_n_metric_defs = sizeof wk_fault_metric_defs / sizeof wk_fault_metric_defs[0];

void wk_fault_settings_default(wk_fault_settings_t *s) {
  memset(s, 0, sizeof *s);
  s->window_stride = 1;
  s->window_lateness_ms = 5 * 60000;
  s->window_period_ms = 60000;
  s->window_max_fill = 2;
  s->alert_enter = -1;
  s->alert_clear = -1;
  s->alert_min_fire_ms = 0;
  s->alert_min_clear_ms = 0;
  s->late_policy = WK_FAULT_LATE_DLQ;
}

/* ---- tables ------------------------------------------------------------------------------ */

enum { FT_RESULTS = 0, FT_STATE = 1 };

static const wk_col_t ft_result_cols[] = {
    {"event_id", WK_COL_TEXT},      {"kind", WK_COL_TEXT},
    {"device_id", WK_COL_TEXT},     {"model_version", WK_COL_TEXT},
    {"score", WK_COL_FLOAT4},       {"alert_phase", WK_COL_TEXT},
    {"event_time", WK_COL_TIME_MS}, {"window_start", WK_COL_TIME_MS},
    {"input", WK_COL_REALS},        {"topic", WK_COL_TEXT},
    {"partition", WK_COL_INT4},     {"kafka_offset", WK_COL_INT8}};

static const wk_col_t ft_state_cols[] = {
    {"device_id", WK_COL_TEXT},   {"kind", WK_COL_TEXT},           {"topic", WK_COL_TEXT},
    {"partition", WK_COL_INT4},   {"last_offset", WK_COL_INT8},    {"window_state", WK_COL_BYTEA},
    {"alert_state", WK_COL_BYTEA}};

const wk_table_t wk_fault_tables[] = {
    {.name = "fault_results",
     .role = WK_TABLE_RESULTS,
     .cols = ft_result_cols,
     .n_cols = sizeof ft_result_cols / sizeof ft_result_cols[0],
     .key_cols = 0,
     .on_conflict = "ON CONFLICT (event_id, kind) DO NOTHING"},
    /* Forward only: a stale or repeated batch never rolls a device back; a device that moved
     * to another partition (the topic was re-partitioned) takes the newer row whatever its
     * offset. */
    {.name = "fault_state",
     .role = WK_TABLE_STATE,
     .cols = ft_state_cols,
     .n_cols = sizeof ft_state_cols / sizeof ft_state_cols[0],
     .key_cols = 2,
     .on_conflict = "ON CONFLICT (device_id, kind) DO UPDATE SET topic = EXCLUDED.topic, "
                    "partition = EXCLUDED.partition, last_offset = EXCLUDED.last_offset, "
                    "window_state = EXCLUDED.window_state, alert_state = EXCLUDED.alert_state, "
                    "updated_at = now() WHERE t.last_offset < EXCLUDED.last_offset OR "
                    "t.partition <> EXCLUDED.partition OR t.topic <> EXCLUDED.topic"}};
const size_t wk_fault_n_tables = 2;

/* ---- types -------------------------------------------------------------------------------- */

typedef enum { FK_NONE = 0, FK_TABULAR = 1, FK_SENSOR = 2 } fk_kind_t;

static const char *fk_kind_name(fk_kind_t k) { return k == FK_SENSOR ? "rul" : "failure"; }

typedef struct fdev_s {
  struct fdev_s *next; /* hash chain */
  char *id;
  uint64_t hash;
  int refs;            /* the table's + accepted events'; loop thread only */
  bool in_table;
  /* accept's side (loop thread) */
  int32_t partition;
  int64_t last_offset; /* newest offset folded (or stored); -1 before any */
  wk_fault_window_t win; /* sensor models only */
  bool has_win;
  /* process's side (thread pool; restore/discard while no process is in flight) */
  wk_fault_alert_t alert;
  uint64_t mark; /* process's batch number when its state row was added */
} fdev_t;

typedef enum { FE_FOLD = 1, FE_SCORE = 2 } fe_action_t;

typedef struct fevent_s {
  fdev_t *dev; /* referenced */
  fe_action_t action;
  char *event_id;
  int64_t t_ms, window_start_ms, offset;
  int32_t partition;
  Sluice__V1__Envelope *env; /* tabular: the reading, inputs built by process's model */
  float *window;             /* sensor SCORE: [T, C] */
  uint8_t *win_state;        /* sensor FOLD/SCORE: the window's encoding after this event */
  size_t win_state_len;
} fevent_t;

struct wk_pmodel_s {
  moe_model_t *model;
  moe_session_t *sess;
  fk_kind_t kind;
  int max_batch;
  char *version;
  wk_fault_tab_map_t map; /* tabular */
  bool has_map;
  wk_fault_alert_cfg_t alert;
  int n_outputs, load_size;
  /* process's scratch (one process call at a time) */
  moe_input_t *rows;
  float *scores;
  int32_t *load;
  float *numeric;   /* (max_batch, n_numeric) */
  int32_t *cat;     /* (max_batch, n_categorical) */
  size_t n_numeric, n_categorical;
};

struct wk_pipeline_s {
  wk_pipeline_env_t env;
  wk_fault_settings_t set;
  char *domain, *topic, *alerts_topic;
  char *restore_sql; /* qualified by the schema: the core runs it without a search_path */
  /* Fixed by the first model opened: later models must match (pipeline-fault.h). */
  pthread_mutex_t lock;
  fk_kind_t kind;
  size_t n_inputs;      /* tabular: n_numeric + n_categorical */
  char **input_names;   /* (n_inputs) tabular numeric then categorical; sensor channels */
  size_t n_channels;
  wk_fault_window_cfg_t wcfg; /* sensor: channels = input_names */
  wk_fault_tab_map_t amap;    /* tabular: the first model's map, for accept's checks */
  bool has_amap;
  /* the device table (loop thread) */
  fdev_t **buckets;
  size_t n_buckets, n_devs;
  /* process's batch counter */
  uint64_t batch_no;
  /* the DLQ reason of each window refusal */
  wk_reject_reason_t win_reason[WK_FAULT_WIN__COUNT];
  /* counters (accept: loop thread; process: thread pool) */
  _Atomic uint64_t n_win[WK_FAULT_WIN__COUNT];
  _Atomic uint64_t n_replayed, n_fired, n_cleared, n_scored;
  svc_series_t *m_win[WK_FAULT_WIN__COUNT], *m_replayed, *m_fired, *m_cleared, *m_devices;
  svc_metrics_t *metrics; /* NULL until wk_fault_pipeline_metrics */
  int metric_base;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (p == NULL) abort();
  return p;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d == NULL) abort();
  memcpy(d, s, n);
  return d;
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *phase_name(wk_alert_phase_t ph) {
  switch (ph) {
  case WK_ALERT_PENDING: return "pending";
  case WK_ALERT_FIRING: return "firing";
  case WK_ALERT_CLEARING: return "clearing";
  default: return "idle";
  }
}

/* ---- the device table (loop thread) -------------------------------------------------------- */

static void dev_unref(fdev_t *d) {
  if (--d->refs > 0) return;
  if (d->has_win) wk_fault_window_close(&d->win);
  free(d->id);
  free(d);
}

static fdev_t *dev_find(wk_pipeline_t *p, const char *id, uint64_t h) {
  for (fdev_t *d = p->buckets[h & (p->n_buckets - 1)]; d != NULL; d = d->next)
    if (d->hash == h && strcmp(d->id, id) == 0) return d;
  return NULL;
}

static void dev_grow(wk_pipeline_t *p) {
  size_t nb = p->n_buckets * 2;
  fdev_t **b = xcalloc(nb, sizeof *b);
  for (size_t i = 0; i < p->n_buckets; i++) {
    fdev_t *d = p->buckets[i];
    while (d != NULL) {
      fdev_t *next = d->next;
      d->next = b[d->hash & (nb - 1)];
      b[d->hash & (nb - 1)] = d;
      d = next;
    }
  }
  free(p->buckets);
  p->buckets = b;
  p->n_buckets = nb;
}

/* The device `id`, created empty when new (NULL only when a sensor window cannot be made). */
static fdev_t *dev_get(wk_pipeline_t *p, const char *id, int32_t partition) {
  uint64_t h = fnv1a(id);
  fdev_t *d = dev_find(p, id, h);
  if (d != NULL) return d;
  d = xcalloc(1, sizeof *d);
  d->id = xstrdup(id);
  d->hash = h;
  d->refs = 1;
  d->in_table = true;
  d->partition = partition;
  d->last_offset = -1;
  wk_fault_alert_init(&d->alert);
  if (p->kind == FK_SENSOR) {
    if (wk_fault_window_init(&d->win, &p->wcfg) != SVC_OK) abort();
    d->has_win = true;
  }
  if (p->n_devs + 1 > p->n_buckets) dev_grow(p);
  d->next = p->buckets[h & (p->n_buckets - 1)];
  p->buckets[h & (p->n_buckets - 1)] = d;
  p->n_devs++;
  svc_gauge_set(p->m_devices, (double)p->n_devs);
  return d;
}

/* Drops from the table every device (all) or those last seen on one of parts[n_parts]; an
 * accepted event that still points at one keeps it alive until event_free. */
static void dev_sweep(wk_pipeline_t *p, const int32_t *parts, size_t n_parts, bool all) {
  for (size_t i = 0; i < p->n_buckets; i++) {
    fdev_t **pp = &p->buckets[i];
    while (*pp != NULL) {
      fdev_t *d = *pp;
      bool drop = all;
      for (size_t k = 0; !drop && k < n_parts; k++) drop = d->partition == parts[k];
      if (!drop) {
        pp = &d->next;
        continue;
      }
      *pp = d->next;
      d->next = NULL;
      d->in_table = false;
      p->n_devs--;
      dev_unref(d);
    }
  }
  svc_gauge_set(p->m_devices, (double)p->n_devs);
}

/* ---- create / destroy ---------------------------------------------------------------------- */

static svc_err_t fault_create(const wk_pipeline_env_t *env, wk_pipeline_t **out, char *errstr,
                              size_t errstr_size) {
  *out = NULL;
  wk_fault_settings_t def;
  const wk_fault_settings_t *set = env->settings;
  if (set == NULL) {
    wk_fault_settings_default(&def);
    set = &def;
  }
  if (set->window_stride < 1 || set->window_lateness_ms < 0 || set->window_period_ms < 0 ||
      set->window_max_fill < 0 || set->alert_min_fire_ms < 0 || set->alert_min_clear_ms < 0 ||
      (set->late_policy != WK_FAULT_LATE_DLQ && set->late_policy != WK_FAULT_LATE_COUNT)) {
    snprintf(errstr, errstr_size,
             "fault settings out of range (fault.window.stride >= 1, durations and "
             "fault.window.max_fill >= 0, fault.late_policy dlq or count)");
    return SVC_ECONFIG;
  }
  if (env->batch_max < 1 || env->batch_max > 65536) {
    snprintf(errstr, errstr_size, "fault pipeline: batch_max %zu is not in 1..65536",
             env->batch_max);
    return SVC_ECONFIG;
  }
  wk_pipeline_t *p = xcalloc(1, sizeof *p);
  p->env = *env;
  p->set = *set;
  p->env.settings = &p->set;
  p->domain = xstrdup(env->domain ? env->domain : "fault");
  p->topic = xstrdup(env->topic ? env->topic : "sluice.fault.events");
  p->alerts_topic = xstrdup(env->alerts_topic ? env->alerts_topic : "sluice.fault.alerts");
  p->env.domain = p->domain;
  p->env.topic = p->topic;
  p->env.alerts_topic = p->alerts_topic;
  const char *schema = env->pg_schema ? env->pg_schema : "sluice";
  size_t sql_len = strlen(schema) + 200;
  p->restore_sql = xcalloc(sql_len, 1);
  snprintf(p->restore_sql, sql_len,
           "SELECT device_id, kind, partition, last_offset, window_state, alert_state FROM "
           "\"%s\".fault_state WHERE topic = $1 AND partition = ANY($2)",
           schema);
  pthread_mutex_init(&p->lock, NULL);
  p->n_buckets = 64;
  p->buckets = xcalloc(p->n_buckets, sizeof *p->buckets);
  p->win_reason[WK_FAULT_WIN_OK] = WK_REJECT_NONE;
  p->win_reason[WK_FAULT_WIN_LATE] = WK_REJECT_LATE;
  p->win_reason[WK_FAULT_WIN_DUPLICATE] = WK_REJECT_DUPLICATE;
  p->win_reason[WK_FAULT_WIN_TOO_OLD] = WK_REJECT_TOO_OLD;
  wk_fault_pipeline_metrics(p, env->metrics, env->metric_base);
  (void)errstr;
  *out = p;
  return SVC_OK;
}

/* Hooks the pipeline's metrics into a registry built with wk_fault_metric_defs at `base`. */
void wk_fault_pipeline_metrics(wk_pipeline_t *p, svc_metrics_t *m, int base) {
  if (m == NULL) return;
  p->metrics = m;
  p->metric_base = base;
  for (int s = 0; s < WK_FAULT_WIN__COUNT; s++)
    p->m_win[s] = svc_metrics_series1(m, base + WK_FAULT_M_WINDOW_EVENTS,
                                      wk_fault_win_status_name((wk_fault_win_status_t)s));
  p->m_replayed = svc_metrics_series1(m, base + WK_FAULT_M_WINDOW_EVENTS, "replayed");
  p->m_devices = svc_metrics_series(m, base + WK_FAULT_M_DEVICES, NULL);
}

static void fault_destroy(wk_pipeline_t *p) {
  if (p == NULL) return;
  dev_sweep(p, NULL, 0, true);
  free(p->buckets);
  for (size_t i = 0; i < p->n_inputs; i++) free(p->input_names[i]);
  free(p->input_names);
  if (p->has_amap) wk_fault_tab_map_close(&p->amap);
  pthread_mutex_destroy(&p->lock);
  free(p->domain);
  free(p->topic);
  free(p->alerts_topic);
  free(p->restore_sql);
  free(p);
}

/* ---- models ---------------------------------------------------------------------------------- */

static void fault_model_free(wk_pmodel_t *m) {
  if (m == NULL) return;
  moe_session_free(m->sess);
  moe_model_free(m->model);
  if (m->has_map) wk_fault_tab_map_close(&m->map);
  free(m->version);
  free(m->rows);
  free(m->scores);
  free(m->load);
  free(m->numeric);
  free(m->cat);
  free(m);
}

static const char *enc_name(moe_encoder_kind_t e) {
  return e == MOE_ENCODER_TABULAR ? "tabular" : e == MOE_ENCODER_SENSOR ? "sensor-window" : "text";
}
static const char *task_name(moe_task_t t) {
  return t == MOE_TASK_BINARY ? "binary" : t == MOE_TASK_MULTICLASS ? "multiclass" : "regression";
}

/* The model's input names in order (tabular numeric then categorical; sensor channels). */
static size_t model_inputs(const moe_model_t *mm, fk_kind_t kind, const char **names, size_t cap) {
  size_t n = 0;
  if (kind == FK_TABULAR) {
    for (int i = 0; i < moe_model_n_numeric(mm) && n < cap; i++)
      names[n++] = moe_model_numeric_name(mm, i);
    for (int i = 0; i < moe_model_n_categorical(mm) && n < cap; i++)
      names[n++] = moe_model_categorical_name(mm, i);
  } else {
    for (int c = 0; c < moe_model_sensor_channels(mm) && n < cap; c++)
      names[n++] = moe_model_sensor_channel_name(mm, c);
  }
  return n;
}

static svc_err_t build_tab_map(const moe_model_t *mm, wk_fault_tab_map_t *map, char *errstr,
                               size_t errstr_size) {
  int nn = moe_model_n_numeric(mm), nc = moe_model_n_categorical(mm);
  const char **num = xcalloc((size_t)nn, sizeof *num), **cat = xcalloc((size_t)nc, sizeof *cat);
  const char ***vocab = xcalloc((size_t)nc, sizeof *vocab);
  size_t *vocab_n = xcalloc((size_t)nc, sizeof *vocab_n);
  for (int i = 0; i < nn; i++) num[i] = moe_model_numeric_name(mm, i);
  for (int i = 0; i < nc; i++) {
    cat[i] = moe_model_categorical_name(mm, i);
    int nv = moe_model_categorical_vocab_size(mm, i);
    vocab_n[i] = (size_t)(nv > 0 ? nv : 0);
    vocab[i] = xcalloc(vocab_n[i], sizeof *vocab[i]);
    for (int j = 0; j < nv; j++) vocab[i][j] = moe_model_categorical_value(mm, i, j);
  }
  svc_err_t rc = wk_fault_tab_map_init(map, num, (size_t)nn, cat,
                                       (const char *const *const *)vocab, vocab_n, (size_t)nc,
                                       errstr, errstr_size);
  for (int i = 0; i < nc; i++) free(vocab[i]);
  free(vocab);
  free(vocab_n);
  free(num);
  free(cat);
  return rc;
}

/*
 * Fixes the pipeline's kind and inputs from its first model, or checks that a later model has
 * the same (a window of another length or other channels cannot continue the devices' windows).
 */
static svc_err_t pin_inputs(wk_pipeline_t *p, const char *path, const moe_model_t *mm,
                            fk_kind_t kind, char *errstr, size_t errstr_size) {
  const char *names[256];
  size_t n = model_inputs(mm, kind, names, 256);
  svc_err_t rc = SVC_OK;
  pthread_mutex_lock(&p->lock);
  if (p->kind == FK_NONE) {
    if (kind == FK_TABULAR) {
      rc = build_tab_map(mm, &p->amap, errstr, errstr_size);
      if (rc != SVC_OK) goto out;
      p->has_amap = true;
    }
    p->input_names = xcalloc(n, sizeof *p->input_names);
    for (size_t i = 0; i < n; i++) p->input_names[i] = xstrdup(names[i]);
    p->n_inputs = n;
    if (kind == FK_SENSOR) {
      p->n_channels = n;
      int64_t period = p->set.window_period_ms;
      p->wcfg = (wk_fault_window_cfg_t){.length = (size_t)moe_model_sensor_window(mm),
                                        .stride = (size_t)p->set.window_stride,
                                        .period_ms = period,
                                        .tolerance_ms = period / 4,
                                        .lateness_ms = p->set.window_lateness_ms,
                                        .max_fill = (size_t)p->set.window_max_fill,
                                        .n_channels = n,
                                        .channels = (const char *const *)p->input_names};
      char why[256];
      if (wk_fault_window_cfg_check(&p->wcfg, why, sizeof why) != SVC_OK) {
        snprintf(errstr, errstr_size, "%s: fault.window settings do not fit this model (window "
                 "of %zu readings): %s", path, p->wcfg.length, why);
        rc = SVC_ECONFIG;
        for (size_t i = 0; i < n; i++) free(p->input_names[i]);
        free(p->input_names);
        p->input_names = NULL;
        p->n_inputs = p->n_channels = 0;
        if (p->has_amap) wk_fault_tab_map_close(&p->amap);
        p->has_amap = false;
        goto out;
      }
    }
    p->kind = kind;
    goto out;
  }
  if (p->kind != kind) {
    snprintf(errstr, errstr_size,
             "%s: a %s model cannot replace the %s model this worker serves (the devices' "
             "state depends on it; restart the worker to change)",
             path, kind == FK_SENSOR ? "sensor-window" : "tabular",
             p->kind == FK_SENSOR ? "sensor-window" : "tabular");
    rc = SVC_ECONFIG;
    goto out;
  }
  bool same = n == p->n_inputs;
  for (size_t i = 0; same && i < n; i++) same = strcmp(names[i], p->input_names[i]) == 0;
  if (kind == FK_SENSOR && (size_t)moe_model_sensor_window(mm) != p->wcfg.length) same = false;
  if (!same) {
    snprintf(errstr, errstr_size,
             "%s: its inputs (%zu%s) differ from those of the model this worker serves (%zu%s): "
             "the devices' windows and inputs would not fit; restart the worker to change",
             path, n, kind == FK_SENSOR ? " channels" : "", p->n_inputs,
             kind == FK_SENSOR ? " channels" : "");
    rc = SVC_ECONFIG;
  }
out:
  pthread_mutex_unlock(&p->lock);
  return rc;
}

/*
 * The task a model was trained for, from its config's provenance ("task": "fault-ai4i"), into
 * buf; false when the file does not say. A plain scan, not a JSON parser: the provenance object
 * is written by `sluice train` and its "task" member is a plain string.
 */
static bool model_task(const moe_model_t *mm, char *buf, size_t size) {
  const char *js = moe_model_config_json(mm);
  const char *pv = js != NULL ? strstr(js, "\"provenance\"") : NULL;
  const char *t = pv != NULL ? strstr(pv, "\"task\"") : NULL;
  if (t == NULL) return false;
  t += strlen("\"task\"");
  while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r' || *t == ':') t++;
  if (*t++ != '"') return false;
  size_t n = 0;
  while (t[n] != '\0' && t[n] != '"' && n + 1 < size) n++;
  memcpy(buf, t, n);
  buf[n] = '\0';
  return t[n] == '"';
}

static svc_err_t fault_model_open(wk_pipeline_t *p, const char *path, wk_pmodel_t **out,
                                  char *errstr, size_t errstr_size) {
  *out = NULL;
  char why[512];
  moe_model_t *mm = NULL;
  int mrc = moe_model_load(path, &mm, why, sizeof why);
  if (mrc != 0) {
    snprintf(errstr, errstr_size, "%s: %s", path, why);
    return mrc == MOE_ENOENT ? SVC_ENOENT : mrc == MOE_EIO ? SVC_EIO
           : mrc == MOE_ENOMEM ? SVC_ENOMEM : SVC_ECONFIG;
  }
  wk_pmodel_t *m = xcalloc(1, sizeof *m);
  m->model = mm;
  svc_err_t rc = SVC_ECONFIG;
  moe_encoder_kind_t enc = moe_model_encoder(mm);
  moe_task_t task = moe_model_task(mm);
  char trained[64];
  if (model_task(mm, trained, sizeof trained) && strncmp(trained, "fault-", 6) != 0) {
    snprintf(errstr, errstr_size,
             "%s: trained for the task \"%s\", not a fault task (fault-ai4i, fault-cmapss, ...): "
             "the fault pipeline does not serve it", path, trained);
    goto fail;
  }
  if (enc == MOE_ENCODER_TABULAR && task == MOE_TASK_BINARY) {
    m->kind = FK_TABULAR;
  } else if (enc == MOE_ENCODER_SENSOR && task == MOE_TASK_REGRESSION &&
             moe_model_n_outputs(mm) == 1) {
    m->kind = FK_SENSOR;
  } else {
    snprintf(errstr, errstr_size,
             "%s: the fault pipeline serves a tabular binary model (failure probability, e.g. "
             "fault-ai4i) or a sensor-window regression model with one output (remaining useful "
             "life, e.g. fault-cmapss); this is a %s %s model with %d output(s)",
             path, enc_name(enc), task_name(task), moe_model_n_outputs(mm));
    goto fail;
  }
  m->version = xstrdup(moe_model_version(mm) ? moe_model_version(mm) : "");
  m->n_outputs = moe_model_n_outputs(mm);
  m->load_size = moe_model_load_size(mm);
  if (m->kind == FK_TABULAR) {
    rc = build_tab_map(mm, &m->map, why, sizeof why);
    if (rc != SVC_OK) {
      snprintf(errstr, errstr_size, "%s: %s", path, why);
      goto fail;
    }
    m->has_map = true;
    m->n_numeric = m->map.n_numeric;
    m->n_categorical = m->map.n_categorical;
  }

  /* The alert thresholds: -1 takes the model's own (pipeline-fault.h). */
  const wk_fault_settings_t *s = &p->set;
  wk_fault_alert_cfg_t ac = {.low_is_bad = m->kind == FK_SENSOR,
                             .min_fire_ms = s->alert_min_fire_ms,
                             .min_clear_ms = s->alert_min_clear_ms};
  if (m->kind == FK_TABULAR) {
    float thr = moe_model_threshold(mm);
    ac.enter = s->alert_enter >= 0 ? (float)s->alert_enter : thr;
    if (!(ac.enter > 0 && ac.enter <= 1)) {
      snprintf(errstr, errstr_size,
               "%s: fault.alert.enter is -1 but the model has no decision threshold in (0, 1] "
               "(%g): set fault.alert.enter", path, (double)thr);
      rc = SVC_ECONFIG;
      goto fail;
    }
    ac.clear = s->alert_clear >= 0 ? (float)s->alert_clear : ac.enter / 2;
  } else {
    ac.enter = s->alert_enter >= 0 ? (float)s->alert_enter : 30.0f;
    ac.clear = s->alert_clear >= 0 ? (float)s->alert_clear : ac.enter * 1.5f;
  }
  rc = wk_fault_alert_cfg_check(&ac, why, sizeof why);
  if (rc != SVC_OK) {
    snprintf(errstr, errstr_size, "%s: fault.alert.enter / fault.alert.clear: %s", path, why);
    goto fail;
  }
  m->alert = ac;

  rc = pin_inputs(p, path, mm, m->kind, errstr, errstr_size);
  if (rc != SVC_OK) goto fail;

  m->max_batch = (int)p->env.batch_max;
  if (moe_session_new(mm, m->max_batch, &m->sess) != 0) {
    snprintf(errstr, errstr_size, "%s: cannot create a scoring session for %d rows", path,
             m->max_batch);
    rc = SVC_ENOMEM;
    goto fail;
  }
  size_t mb = (size_t)m->max_batch;
  m->rows = xcalloc(mb, sizeof *m->rows);
  m->scores = xcalloc(mb * (size_t)m->n_outputs, sizeof *m->scores);
  m->load = xcalloc((size_t)(m->load_size > 0 ? m->load_size : 1), sizeof *m->load);
  if (m->kind == FK_TABULAR) {
    m->numeric = xcalloc(mb * (m->n_numeric ? m->n_numeric : 1), sizeof *m->numeric);
    m->cat = xcalloc(mb * (m->n_categorical ? m->n_categorical : 1), sizeof *m->cat);
  }
  *out = m;
  return SVC_OK;
fail:
  fault_model_free(m);
  return rc;
}

static const char *fault_model_version(const wk_pmodel_t *m) { return m->version; }
static size_t fault_model_load_size(const wk_pmodel_t *m) {
  return m->load_size > 0 ? (size_t)m->load_size : 0;
}

/* ---- accept (loop thread) ---------------------------------------------------------------------- */

static void count_win(wk_pipeline_t *p, wk_fault_win_status_t s) {
  atomic_fetch_add(&p->n_win[s], 1);
  svc_counter_add(p->m_win[s], 1);
}

static void *fault_accept(wk_pipeline_t *p, const wk_pmodel_t *serving,
                          const rd_kafka_message_t *msg, const uint8_t *value, size_t len,
                          wk_reject_t *rej) {
  (void)serving; /* the inputs are pinned by the first model (pin_inputs) */
  if (p->kind == FK_NONE) {
    wk_reject(rej, WK_REJECT_INVALID, "no fault model is loaded");
    return NULL;
  }
  Sluice__V1__Envelope *env = wk_fault_decode(value, len, p->env.max_event_bytes, rej);
  if (env == NULL) return NULL;
  const Sluice__V1__SensorReading *rd = env->sensor_reading;
  fevent_t *ev = NULL;
  float vals[WK_FAULT_WINDOW_MAX_CHANNELS];
  if (p->kind == FK_TABULAR) {
    /* Every input the model needs must be in the reading (never invented). */
    float num[256];
    int32_t cat[64];
    if (p->amap.n_numeric > 256 || p->amap.n_categorical > 64) abort();
    if (!wk_fault_tab_build(&p->amap, rd, num, cat, rej)) goto reject;
  } else if (!wk_fault_window_values(&p->wcfg, rd, vals, rej)) {
    goto reject;
  }

  fdev_t *d = dev_get(p, rd->device_id, msg->partition);
  if (d->partition != msg->partition) {
    /* The device moved to another partition (the topic was re-partitioned): offsets of two
     * partitions do not compare, so its stored one no longer says what was folded. */
    d->partition = msg->partition;
    d->last_offset = -1;
  }
  ev = xcalloc(1, sizeof *ev);
  ev->dev = d;
  d->refs++;
  ev->event_id = xstrdup(env->event_id);
  ev->t_ms = env->event_time_ms;
  ev->window_start_ms = env->event_time_ms;
  ev->offset = msg->offset;
  ev->partition = msg->partition;
  if (msg->offset <= d->last_offset) {
    /* Already folded into the stored state: a replay after a restore rebuilds nothing here
     * (the window came back from PostgreSQL) and must not score or alert twice. */
    atomic_fetch_add(&p->n_replayed, 1);
    svc_counter_add(p->m_replayed, 1);
    wk_reject(rej, WK_REJECT_NONE, "device %s: offset %" PRId64 " already folded (stored "
              "last offset %" PRId64 ")", d->id, (int64_t)msg->offset, d->last_offset);
    goto skip;
  }
  if (p->kind == FK_TABULAR) {
    d->last_offset = msg->offset;
    ev->action = FE_SCORE;
    ev->env = env;
    count_win(p, WK_FAULT_WIN_OK);
    return ev;
  }

  bool ready = false;
  char detail[200];
  wk_fault_win_status_t st =
      wk_fault_window_add(&d->win, &p->wcfg, env->event_time_ms, vals, &ready, detail, sizeof detail);
  count_win(p, st);
  if (st != WK_FAULT_WIN_OK) {
    /* count: skipped without a dead letter (pipeline.h), counted above. */
    wk_reject(rej, p->set.late_policy == WK_FAULT_LATE_COUNT ? WK_REJECT_NONE : p->win_reason[st],
              "device %s: %s", rd->device_id, detail);
    goto skip;
  }
  d->last_offset = msg->offset;
  ev->action = FE_FOLD;
  ev->win_state_len = wk_fault_window_encoded_size(&d->win);
  ev->win_state = xcalloc(ev->win_state_len, 1);
  wk_fault_window_encode(&d->win, ev->win_state, ev->win_state_len);
  if (ready) {
    size_t T = p->wcfg.length, C = p->n_channels;
    int64_t times[WK_FAULT_WINDOW_MAX_LEN];
    ev->window = xcalloc(T * C, sizeof *ev->window);
    if (wk_fault_window_copy(&d->win, ev->window, times) != T) abort(); /* ready => full */
    ev->window_start_ms = times[0];
    ev->t_ms = times[T - 1];
    ev->action = FE_SCORE;
  }
  sluice__v1__envelope__free_unpacked(env, NULL);
  return ev;

skip:
  dev_unref(ev->dev);
  free(ev->event_id);
  free(ev);
reject:
  sluice__v1__envelope__free_unpacked(env, NULL);
  return NULL;
}

static void fault_event_free(wk_pipeline_t *p, void *vev) {
  (void)p;
  fevent_t *ev = vev;
  if (ev == NULL) return;
  dev_unref(ev->dev);
  if (ev->env != NULL) sluice__v1__envelope__free_unpacked(ev->env, NULL);
  free(ev->event_id);
  free(ev->window);
  free(ev->win_state);
  free(ev);
}

/* ---- process (thread pool) ----------------------------------------------------------------------- */

static svc_err_t score_rows(wk_pmodel_t *m, size_t n_rows, int64_t *expert_load, char *errstr,
                            size_t errstr_size) {
  for (size_t at = 0; at < n_rows; at += (size_t)m->max_batch) {
    size_t k = n_rows - at < (size_t)m->max_batch ? n_rows - at : (size_t)m->max_batch;
    moe_output_t out = {.scores = m->scores + at * (size_t)m->n_outputs,
                        .expert_load = expert_load != NULL && m->load_size > 0 ? m->load : NULL};
    int rc = moe_session_run(m->sess, m->rows + at, (int)k, &out);
    if (rc != 0) {
      snprintf(errstr, errstr_size, "scoring %zu fault rows: %s", k, moe_session_error(m->sess));
      return SVC_ESTATE;
    }
    if (out.expert_load != NULL)
      for (int e = 0; e < m->load_size; e++) expert_load[e] += m->load[e];
  }
  return SVC_OK;
}

static svc_err_t fault_process(wk_pipeline_t *p, const wk_pmodel_t *cm, void *const *evs,
                               const rd_kafka_message_t *const *msgs, size_t n, wk_stmt_t *stmt,
                               wk_batch_stats_t *stats, char *errstr, size_t errstr_size) {
  (void)msgs;
  wk_pmodel_t *m = (wk_pmodel_t *)cm; /* its scratch belongs to the one process call */
  const char *kind = fk_kind_name(m->kind);
  if (n > (size_t)m->max_batch) {
    snprintf(errstr, errstr_size, "fault batch of %zu events is larger than batch_max %d", n,
             m->max_batch);
    return SVC_EINVAL;
  }
  if (m->kind != p->kind) {
    snprintf(errstr, errstr_size, "fault model %s is not of the pipeline's kind", m->version);
    return SVC_EINVAL;
  }

  /* 1. Inputs of the events to score, in order, and one inference call. */
  size_t n_rows = 0;
  for (size_t i = 0; i < n; i++) {
    fevent_t *ev = evs[i];
    if (ev->action != FE_SCORE) continue;
    moe_input_t *row = &m->rows[n_rows];
    memset(row, 0, sizeof *row);
    if (m->kind == FK_TABULAR) {
      float *num = m->numeric + n_rows * m->n_numeric;
      int32_t *cat = m->cat + n_rows * m->n_categorical;
      wk_reject_t rej;
      if (!wk_fault_tab_build(&m->map, ev->env->sensor_reading, num, cat, &rej)) {
        snprintf(errstr, errstr_size, "event %s: %s", ev->event_id, rej.detail);
        return SVC_ESTATE;
      }
      row->numeric = num;
      row->categorical = cat;
    } else {
      row->window = ev->window;
    }
    n_rows++;
  }
  uint64_t t0 = now_ns();
  if (n_rows > 0) {
    svc_err_t rc = score_rows(m, n_rows, stats != NULL ? stats->expert_load : NULL, errstr,
                              errstr_size);
    if (rc != SVC_OK) return rc;
  }
  uint64_t t1 = now_ns();

  if (p->metrics != NULL && p->m_fired == NULL) {
    const char *fl[2] = {kind, "firing"}, *cl[2] = {kind, "cleared"};
    p->m_fired = svc_metrics_series(p->metrics, p->metric_base + WK_FAULT_M_ALERTS, fl);
    p->m_cleared = svc_metrics_series(p->metrics, p->metric_base + WK_FAULT_M_ALERTS, cl);
  }

  /* 2. In offset order: the alert state machine, result rows, outbox rows. */
  size_t r = 0, n_alerts = 0;
  float *input = NULL;
  size_t input_cap = 0;
  for (size_t i = 0; i < n; i++) {
    fevent_t *ev = evs[i];
    if (ev->action != FE_SCORE) continue;
    fdev_t *d = ev->dev;
    float score = m->scores[r * (size_t)m->n_outputs];
    wk_alert_event_t ae = wk_fault_alert_observe(&d->alert, &m->alert, score, ev->t_ms);
    if (ae == WK_ALERT_FIRED || ae == WK_ALERT_CLEARED) {
      uint8_t *buf = NULL;
      size_t len = 0;
      svc_err_t rc = wk_fault_alert_pack(&d->alert, &m->alert, ae, d->id, kind, score, ev->t_ms,
                                         ev->event_id, m->version, &buf, &len);
      if (rc != SVC_OK) {
        free(input);
        snprintf(errstr, errstr_size, "event %s: cannot pack its alert", ev->event_id);
        return rc;
      }
      char id[512];
      wk_fault_alert_id(id, sizeof id - 16, d->id, kind, d->alert.seq);
      strcat(id, ae == WK_ALERT_FIRED ? ":firing" : ":cleared");
      wk_outbox_row_t o = {.alert_id = id, .domain = p->domain, .key = d->id,
                           .topic = p->alerts_topic, .payload = buf, .payload_len = len};
      wk_stmt_add_outbox(stmt, &o);
      free(buf);
      n_alerts++;
      if (ae == WK_ALERT_FIRED) {
        atomic_fetch_add(&p->n_fired, 1);
        svc_counter_add(p->m_fired, 1);
      } else {
        atomic_fetch_add(&p->n_cleared, 1);
        svc_counter_add(p->m_cleared, 1);
      }
    }
    wk_stmt_row_begin(stmt, FT_RESULTS);
    wk_stmt_text(stmt, ev->event_id);
    wk_stmt_text(stmt, kind);
    wk_stmt_text(stmt, d->id);
    wk_stmt_text(stmt, m->version);
    wk_stmt_float4(stmt, score);
    wk_stmt_text(stmt, phase_name(d->alert.phase));
    wk_stmt_int8(stmt, ev->t_ms);
    wk_stmt_int8(stmt, ev->window_start_ms);
    if (m->kind == FK_TABULAR) {
      /* The model input as scored: numeric values, then categorical ids. */
      size_t k = m->n_numeric + m->n_categorical;
      if (k > input_cap) {
        free(input);
        input_cap = k;
        input = xcalloc(k, sizeof *input);
      }
      memcpy(input, m->numeric + r * m->n_numeric, m->n_numeric * sizeof *input);
      for (size_t c = 0; c < m->n_categorical; c++)
        input[m->n_numeric + c] = (float)m->cat[r * m->n_categorical + c];
      wk_stmt_reals(stmt, input, k);
    } else {
      wk_stmt_reals(stmt, ev->window, p->wcfg.length * p->n_channels);
    }
    wk_stmt_text(stmt, p->topic);
    wk_stmt_int4(stmt, ev->partition);
    wk_stmt_int8(stmt, ev->offset);
    wk_stmt_row_end(stmt);
    r++;
  }
  free(input);

  /* 3. The newest state of every device the batch changed: its newest folded event's window
   * and offset, the alert state after the whole batch. */
  uint64_t mark = ++p->batch_no;
  uint8_t alert_buf[WK_FAULT_ALERT_ENCODED_SIZE];
  for (size_t i = n; i-- > 0;) {
    fevent_t *ev = evs[i];
    if (ev->dev->mark == mark) continue;
    fdev_t *d = ev->dev;
    d->mark = mark;
    wk_fault_alert_encode(&d->alert, alert_buf, sizeof alert_buf);
    wk_stmt_row_begin(stmt, FT_STATE);
    wk_stmt_text(stmt, d->id);
    wk_stmt_text(stmt, kind);
    wk_stmt_text(stmt, p->topic);
    wk_stmt_int4(stmt, ev->partition);
    wk_stmt_int8(stmt, ev->offset);
    wk_stmt_bytes(stmt, ev->win_state, ev->win_state_len);
    wk_stmt_bytes(stmt, alert_buf, sizeof alert_buf);
    wk_stmt_row_end(stmt);
  }
  atomic_fetch_add(&p->n_scored, r);
  if (stats != NULL) {
    stats->n_scored += r;
    stats->n_alerts += n_alerts;
    stats->infer_ns += t1 - t0;
  }
  return SVC_OK;
}

/* ---- restore / discard / revoke (loop thread, no process in flight) ------------------------------ */

static const char *fault_restore_sql(wk_pipeline_t *p) { return p->restore_sql; }

static int fault_restore(wk_pipeline_t *p, const PGresult *res) {
  int bad = 0;
  const char *kind = fk_kind_name(p->kind);
  for (int i = 0; i < PQntuples(res); i++) {
    if (PQnfields(res) < 6 || strcmp(PQgetvalue(res, i, 1), kind) != 0) continue;
    const char *id = PQgetvalue(res, i, 0);
    char *end;
    long part = strtol(PQgetvalue(res, i, 2), &end, 10);
    if (*end != '\0' || p->kind == FK_NONE) {
      bad++;
      continue;
    }
    long long off = strtoll(PQgetvalue(res, i, 3), &end, 10);
    if (*end != '\0') {
      bad++;
      continue;
    }
    size_t wlen = 0, alen = 0;
    unsigned char *wb = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 4), &wlen);
    unsigned char *ab = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 5), &alen);
    fdev_t *d = dev_get(p, id, (int32_t)part);
    d->partition = (int32_t)part;
    char why[256];
    bool ok = wb != NULL && ab != NULL &&
              wk_fault_alert_decode(&d->alert, ab, alen, why, sizeof why) == SVC_OK;
    if (ok && d->has_win)
      ok = wk_fault_window_decode(&d->win, &p->wcfg, wb, wlen, why, sizeof why) == SVC_OK;
    if (ok) {
      d->last_offset = off;
    } else {
      /* Unreadable: the device starts afresh (the core logs the count). */
      bad++;
      wk_fault_alert_init(&d->alert);
      if (d->has_win) {
        wk_fault_window_close(&d->win);
        if (wk_fault_window_init(&d->win, &p->wcfg) != SVC_OK) abort();
      }
      d->last_offset = -1;
    }
    PQfreemem(wb);
    PQfreemem(ab);
  }
  return bad;
}

static void fault_discard(wk_pipeline_t *p) { dev_sweep(p, NULL, 0, true); }

static void fault_revoke(wk_pipeline_t *p, const int32_t *partitions, size_t n) {
  dev_sweep(p, partitions, n, false);
}

static size_t fault_n_keys(const wk_pipeline_t *p) { return p->n_devs; }

void wk_fault_pipeline_counts(const wk_pipeline_t *p, wk_fault_counts_t *out) {
  memset(out, 0, sizeof *out);
  for (int s = 0; s < WK_FAULT_WIN__COUNT; s++) out->window[s] = atomic_load(&p->n_win[s]);
  out->replayed = atomic_load(&p->n_replayed);
  out->fired = atomic_load(&p->n_fired);
  out->cleared = atomic_load(&p->n_cleared);
  out->scored = atomic_load(&p->n_scored);
  out->devices = p->n_devs;
}

const wk_pipeline_ops_t wk_pipeline_fault = {
    .domain = "fault",
    .tables = wk_fault_tables,
    .n_tables = 2,
    .metric_defs = wk_fault_metric_defs,
    .n_metric_defs = WK_FAULT_M__COUNT,
    .create = fault_create,
    .destroy = fault_destroy,
    .model_open = fault_model_open,
    .model_free = fault_model_free,
    .model_version = fault_model_version,
    .model_load_size = fault_model_load_size,
    .accept = fault_accept,
    .event_free = fault_event_free,
    .process = fault_process,
    .committed = NULL,
    .restore_sql = fault_restore_sql,
    .restore = fault_restore,
    .discard = fault_discard,
    .revoke = fault_revoke,
    .n_keys = fault_n_keys,
};
