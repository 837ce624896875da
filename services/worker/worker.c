/*
 * The worker core's event loop, the same for every pipeline (pipeline.h): Kafka in, the
 * pipeline's accept (validation, per-key state) and the DLQ, micro-batches, the pipeline's
 * process (scoring, rows) on the thread pool, one PostgreSQL statement per batch (stmt.h),
 * restore on assignment, in-process recovery, the outbox relay, model reloads, metrics and
 * health, graceful stop. The contract is in worker.h.
 */
#include "worker.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "batcher.h"
#include "pipeline.h"
#include "schema.h"
#include "stmt.h"
#include "svc/db.h"
#include "svc/http.h"
#include "svc/kafka.h"
#include "svc/log.h"
#include "svc/metrics.h"

/* ---- metrics -------------------------------------------------------------------------- */

#define WK_METRICS(XX)                                                                       \
  XX(WK_M_EVENTS_IN, "sluice_events_in_total", SVC_COUNTER, "events", "topic", 4,            \
     SVC_BUCKETS_NONE, "Events consumed from Kafka.")                                        \
  XX(WK_M_SCORED, "sluice_events_scored_total", SVC_COUNTER, "events", "", 0,                \
     SVC_BUCKETS_NONE, "Events scored and committed to PostgreSQL.")                         \
  XX(WK_M_DEAD, "sluice_events_dead_lettered_total", SVC_COUNTER, "events", "reason", 16,    \
     SVC_BUCKETS_NONE, "Events sent to the dead-letter topic, by reason.")                   \
  XX(WK_M_DLQ_FAILED, "sluice_dlq_send_failures_total", SVC_COUNTER, "events", "", 0,        \
     SVC_BUCKETS_NONE, "Dead-letter records that could not be queued or delivered.")         \
  XX(WK_M_ALERTS, "sluice_alerts_total", SVC_COUNTER, "alerts", "", 0, SVC_BUCKETS_NONE,     \
     "Alerts written to the outbox.")                                                        \
  XX(WK_M_DUPLICATES, "sluice_results_duplicate_total", SVC_COUNTER, "events", "", 0,        \
     SVC_BUCKETS_NONE, "Results not inserted because their event id was already stored.")    \
  XX(WK_M_BATCHES, "sluice_batches_committed_total", SVC_COUNTER, "batches", "", 0,          \
     SVC_BUCKETS_NONE, "Batch transactions committed.")                                      \
  XX(WK_M_BATCH_SIZE, "sluice_batch_size", SVC_HISTOGRAM, "events", "", 0,                   \
     SVC_BUCKETS_EXP(1, 2, 12), "Events per batch (scored and dead-lettered).")              \
  XX(WK_M_INFER, "sluice_inference_seconds", SVC_HISTOGRAM, "seconds", "", 0,                \
     SVC_BUCKETS_EXP(1e-5, 2, 24), "Time to score one batch with the model.")                \
  XX(WK_M_EXPLAIN, "sluice_explain_seconds", SVC_HISTOGRAM, "seconds", "", 0,               \
     SVC_BUCKETS_EXP(1e-5, 2, 24), "Time to explain the explained rows of one batch.")       \
  XX(WK_M_EXPLAINED, "sluice_events_explained_total", SVC_COUNTER, "events", "", 0,          \
     SVC_BUCKETS_NONE, "Results stored with their top contributing features.")               \
  XX(WK_M_E2E, "sluice_end_to_end_seconds", SVC_HISTOGRAM, "seconds", "", 0,                 \
     SVC_BUCKETS_EXP(1e-4, 2, 24),                                                           \
     "From the Kafka record's timestamp to the commit of its result.")                       \
  XX(WK_M_COMMIT, "sluice_pg_commit_seconds", SVC_HISTOGRAM, "seconds", "", 0,               \
     SVC_BUCKETS_EXP(1e-4, 2, 20), "Time of one batch statement in PostgreSQL.")             \
  XX(WK_M_CONSUME_DELAY, "sluice_consume_delay_seconds", SVC_HISTOGRAM, "seconds", "", 0,     \
     SVC_BUCKETS_EXP(1e-4, 2, 24),                                                           \
     "From the Kafka record's timestamp to its arrival in the worker.")                      \
  XX(WK_M_QUEUE, "sluice_batch_queue_seconds", SVC_HISTOGRAM, "seconds", "", 0,             \
     SVC_BUCKETS_EXP(1e-4, 2, 20),                                                           \
     "From a batch's sealing to its statement being sent (scoring and waiting for the "      \
     "commit before it).")                                                                   \
  XX(WK_M_LAG, "sluice_consumer_lag", SVC_GAUGE, "messages", "topic,partition", 1024,        \
     SVC_BUCKETS_NONE, "Messages behind the partition's high watermark.")                   \
  XX(WK_M_PAUSED, "sluice_consumer_paused", SVC_GAUGE, "", "", 0, SVC_BUCKETS_NONE,          \
     "1 while fetching is paused because scored batches wait for PostgreSQL.")             \
  XX(WK_M_PAUSES, "sluice_backpressure_pauses_total", SVC_COUNTER, "pauses", "", 0,          \
     SVC_BUCKETS_NONE, "Times fetching was paused for back-pressure.")                      \
  XX(WK_M_PARTITIONS, "sluice_partitions_assigned", SVC_GAUGE, "partitions", "", 0,          \
     SVC_BUCKETS_NONE, "Partitions currently assigned to this worker.")                      \
  XX(WK_M_KEYS, "sluice_keys_in_memory", SVC_GAUGE, "keys", "", 0, SVC_BUCKETS_NONE,        \
     "Keys (cards, devices) whose state the pipeline holds in memory.")                      \
  XX(WK_M_EXPERT_LOAD, "sluice_expert_load_total", SVC_COUNTER, "rows", "expert", 512,       \
     SVC_BUCKETS_NONE,                                                                       \
     "Rows routed to each routed expert (index over all MoE blocks, block by block).")       \
  XX(WK_M_PUBLISHED, "sluice_alerts_published_total", SVC_COUNTER, "alerts", "", 0,         \
     SVC_BUCKETS_NONE, "Outbox alerts published to the alerts topic (at least once).")      \
  XX(WK_M_PUBLISH_FAILED, "sluice_alert_publish_failures_total", SVC_COUNTER, "alerts", "", 0, \
     SVC_BUCKETS_NONE, "Outbox alerts whose publication failed (retried on the next pass).") \
  XX(WK_M_MODEL, "sluice_model_info", SVC_GAUGE, "", "version", 64, SVC_BUCKETS_NONE,        \
     "The serving model version (value 1).")                                                 \
  XX(WK_M_RELOADS, "sluice_model_reloads_total", SVC_COUNTER, "reloads", "", 0,             \
     SVC_BUCKETS_NONE, "Model files loaded and swapped in while running.")                  \
  XX(WK_M_RELOAD_FAILED, "sluice_model_reload_failures_total", SVC_COUNTER, "reloads", "", 0, \
     SVC_BUCKETS_NONE, "Model files refused while running (the serving model stays).")      \
  XX(WK_M_RECOVERIES, "sluice_recoveries_total", SVC_COUNTER, "recoveries", "cause", 8,       \
     SVC_BUCKETS_NONE, "In-process recoveries from PostgreSQL, by cause.")                  \
  XX(WK_M_RECOVERING, "sluice_recovering", SVC_GAUGE, "", "", 0, SVC_BUCKETS_NONE,           \
     "1 while in-memory state is discarded and waits to be restored from PostgreSQL.")      \
  XX(WK_M_KAFKA_DOWN, "sluice_kafka_unavailable", SVC_GAUGE, "", "", 0, SVC_BUCKETS_NONE,    \
     "1 while the consumer has reported errors for longer than kafka.error_grace.")

enum { WK_METRICS(SVC_METRIC_ENUM) WK_M__COUNT };
static const svc_metric_def_t wk_metric_defs[] = {WK_METRICS(SVC_METRIC_DEF)};

enum {
  WK_READY_MODEL = 0,
  WK_READY_PARTITIONS = 1,
  WK_READY_DATABASE = 2,
  WK_READY_STATE = 3, /* false while recovering: memory is being restored from PostgreSQL */
  WK_READY_KAFKA = 4, /* false while the consumer keeps failing (kafka.error_grace) */
  WK_READY__COUNT
};
static const char *const wk_ready_names[] = {"model", "partitions", "database", "state",
                                             "kafka"};

/* ---- state ---------------------------------------------------------------------------- */

typedef struct wk_event_s {
  rd_kafka_message_t *msg; /* owned until the batch commits (back-pressure on fetching) */
  void *pev;               /* the pipeline's event; NULL: dead-lettered or skipped, only its
                              offset is committed */
} wk_event_t;

typedef struct wk_worker_s wk_worker_t;

/*
 * A loaded model (the pipeline's). Reference-counted on the loop thread: the worker holds one
 * reference to the serving model and every batch holds one to the model it was scored with,
 * so a swap affects only new batches and the old model is freed when its last batch is done.
 * The pipeline's process runs one batch at a time, so a model's scratch is never shared.
 */
typedef struct wk_model_s {
  int refs;
  const wk_pipeline_ops_t *ops;
  wk_pmodel_t *pm;
  const char *version; /* ops->model_version(pm) */
  size_t load_size;    /* ops->model_load_size(pm) */
} wk_model_t;

typedef struct wk_batch_s {
  wk_worker_t *w;
  wk_model_t *model;   /* the model this batch is scored with (one reference) */
  unsigned gen;        /* w->gen when batched; an older batch belongs to discarded state */
  wk_event_t **ev;
  size_t n;
  size_t n_rows;       /* accepted events, handed to the pipeline's process */
  void **pevs;         /* (n_rows) their pipeline events, in order */
  const rd_kafka_message_t **msgs; /* (n_rows) and their records */
  int64_t *load;       /* (load_size + 1) rows per expert */
  wk_batch_stats_t stats;
  svc_err_t score_err;
  char score_errstr[256];
  uint64_t sealed_ns; /* when on_batch sealed it (of the oldest part, for a merged batch) */
  uint64_t commit_start_ns;
  const char *sql;            /* the built statement, borrowed from w->stmt */
  const char *const *params;  /* its parameters in binary (wk_stmt_render) */
  const int *lengths, *formats;
  int n_params;
  /* pg.lanes 2: the sql/params above are the RESULTS part (borrowed from w->stmt until sent);
   * the STATE part is copied here, since it is sent later, after the RESULTS commit
   * (state_values is the one allocation the lengths, formats and values live in). */
  const char *state_sql;
  const char **state_values;
  int *state_lengths, *state_formats;
  int state_n_params;
  long tx1_results, tx1_outbox; /* what the RESULTS part inserted */
  uv_work_t work;
  struct wk_batch_s *next;
} wk_batch_t;

struct wk_worker_s {
  wk_worker_opts_t o;
  const wk_pipeline_ops_t *ops;
  wk_pipeline_t *pipe;
  svc_metric_def_t *metric_defs; /* the core's then the pipeline's (the registry borrows it) */
  uv_loop_t loop;
  svc_metrics_t *metrics;
  svc_http_t *http;
  wk_model_t *model; /* the serving model (one reference) */
  struct wk_reload_s *reloading; /* a model load running on the thread pool */
  int reload_again;              /* another reload was asked for meanwhile */
  uv_signal_t sig_hup;
  uv_fs_poll_t model_poll;
  int model_poll_on;
  char **infos;                  /* every /info header built, freed at exit (HTTP may read) */
  size_t n_infos;
  kq_consumer_t *cons;
  kq_producer_t *prod;
  db_conn_t *db;       /* batches, restores: one statement at a time, in order */
  db_conn_t *relay_db; /* the alert relay's session (its advisory lock) */
  db_conn_t *results_db; /* pg.lanes 2: the RESULTS parts of batches; NULL otherwise */
  rd_kafka_topic_partition_list_t *kcommit; /* offsets for Kafka's next commit, or NULL */
  uint64_t kcommit_last_ms;
  int db_up;             /* bit 0: db connected, bit 1: results_db connected */
  wk_batcher_t batcher;
  int batcher_open;
  wk_stmt_t *stmt;
  wk_event_t *free_events; /* recycled event holders (event_new), linked through pev */
  /* Batches move queue -> scoring (thread pool) -> ready (scored, waiting for the database)
   * -> committing (sent). Scoring the next batch overlaps the commit of the previous one;
   * commits stay one at a time and in order. At most one of scoring/ready is set, so the one
   * statement builder (stmt) is never needed by two batches at once: a sent statement has
   * been copied by db_conn_query_prepared. */
  wk_batch_t *queue_head, *queue_tail, *scoring, *ready, *committing;
  /* pg.lanes 2: the batch whose RESULTS part runs on results_db, and one whose RESULTS part
   * committed and whose STATE part waits for the batch in `committing` to finish. */
  wk_batch_t *lane_results, *half_done;
  size_t n_queued;  /* batches waiting behind the one in flight */
  size_t n_pending_events; /* events in batches not yet committed (queued to committing) */
  int paused;       /* fetching paused for back-pressure */
  rd_kafka_topic_partition_list_t *pending_revoke;
  kq_rebalance_kind_t pending_kind;
  uv_signal_t sig_term, sig_int;
  uv_timer_t lag_timer;
  uv_timer_t relay_timer;
  int relay_busy, relay_lock;
  int db_close_deferred; /* the producer is closed; relay_db closes once the relay is idle */
  int handles_open;
  int stopping, closing, fatal;
  char fatal_msg[512];
  /* In-process recovery (see worker.h). */
  unsigned gen;            /* bumped when in-memory state is discarded */
  int recovering;          /* state discarded; waiting to restore from PostgreSQL */
  int restoring;           /* the restore queries are running */
  int restore_again;       /* partitions were assigned during the restore: restore again */
  int edb_streak;          /* commits the server rejected since the last good one */
  struct wk_assign_s *assign_wait; /* assignments whose restore queries could not be sent */
  struct wk_assign_s *restore_wait; /* assignments waiting for process to return */
  int n_assigning;         /* assignments restoring keys: the pump holds meanwhile */
  int discard_pending;     /* a recovery's discard waits for process to return */
  uv_timer_t recover_timer;
  uint64_t kafka_err_since; /* uv_now of the first consumer error since the last message */
  int kafka_down;
  svc_series_t *m_reloads, *m_reload_failed, *m_recovering, *m_kafka_down;
  size_t n_load_series;
  svc_series_t *m_events_in, *m_scored, *m_alerts, *m_dupes, *m_batches, *m_dlq_failed;
  svc_series_t *m_batch_size, *m_infer, *m_e2e, *m_commit, *m_parts, *m_keys;
  svc_series_t *m_consume_delay, *m_queue;
  svc_series_t *m_published, *m_publish_failed, *m_explain, *m_explained, *m_paused, *m_pauses;
  svc_series_t **m_load; /* (load_size) */
  /* The /info header, built once setup is done and read by the HTTP thread. */
  _Atomic(char *) info_text;
};

static void worker_begin_close(wk_worker_t *w);
static void restore_wait_flush(wk_worker_t *w);
static void worker_recover(wk_worker_t *w, const char *cause, const char *detail);
static void worker_settle(wk_worker_t *w);
static void kafka_ok(wk_worker_t *w);

static void model_unref(wk_model_t *m) {
  if (m == NULL || --m->refs > 0) return;
  m->ops->model_free(m->pm);
  free(m);
}

/* /info: the worker's identity and settings, then the metrics (svc/http.h). HTTP thread. */
static size_t worker_info(void *data, char *buf, size_t size) {
  wk_worker_t *w = data;
  const char *text = atomic_load_explicit(&w->info_text, memory_order_acquire);
  int n = snprintf(buf, size, "%s", text ? text : "# worker\nstate:starting\n");
  return n < 0 ? 0 : (size_t)n;
}

static void worker_pump(wk_worker_t *w);

/* No batch anywhere between the batcher and PostgreSQL. */
static bool worker_idle(const wk_worker_t *w) {
  return w->queue_head == NULL && w->scoring == NULL && w->ready == NULL &&
         w->committing == NULL && w->lane_results == NULL && w->half_done == NULL;
}

/* ---- helpers -------------------------------------------------------------------------- */

/*
 * Event holders are recycled through a free list (loop thread only): an allocation and a free
 * per event were a measurable share of the worker's CPU (bench/pipeline/README.md). The list
 * only grows to the most events ever held at once, which back-pressure bounds.
 */
static wk_event_t *event_new(wk_worker_t *w) {
  wk_event_t *ev = w->free_events;
  if (ev != NULL) {
    w->free_events = ev->pev; /* the free list links through pev */
    ev->pev = NULL;
    return ev;
  }
  return calloc(1, sizeof *ev);
}

static void event_free(wk_worker_t *w, wk_event_t *ev) {
  if (ev == NULL) return;
  if (ev->pev) w->ops->event_free(w->pipe, ev->pev);
  if (ev->msg) rd_kafka_message_destroy(ev->msg);
  ev->msg = NULL;
  ev->pev = w->free_events;
  w->free_events = ev;
}

static void batch_free(wk_batch_t *b) {
  if (b == NULL) return;
  b->w->n_pending_events -= b->n;
  model_unref(b->model);
  for (size_t i = 0; i < b->n; i++) event_free(b->w, b->ev[i]);
  free(b->ev);
  free(b->state_values);
  free(b->pevs);
  free(b->msgs);
  free(b->load);
  free(b);
}

static void worker_drop_pending(wk_worker_t *w);

/* Stops the worker after an error it cannot recover from in process (see worker.h). */
static void worker_fatal(wk_worker_t *w, const char *what, const char *detail) {
  if (!w->fatal) {
    w->fatal = 1;
    snprintf(w->fatal_msg, sizeof w->fatal_msg, "%s: %s", what, detail);
    SVC_LOG(SVC_LOG_ERROR, "fatal: stopping the worker", "what=\"%s\" detail=\"%s\"", what,
            detail);
  }
  if (w->http) {
    svc_http_set_ready(w->http, WK_READY_PARTITIONS, false);
    svc_http_set_live(w->http, false, "fatal error; see the log");
  }
  w->stopping = 1;
  worker_drop_pending(w);
  if (worker_idle(w)) worker_begin_close(w);
}

/* Drops work not yet sent to PostgreSQL: it was never committed and will be consumed again. */
static void worker_drop_pending(wk_worker_t *w) {
  while (w->queue_head) {
    wk_batch_t *b = w->queue_head;
    w->queue_head = b->next;
    batch_free(b);
  }
  w->queue_tail = NULL;
  w->n_queued = 0;
  if (w->ready) { /* scored but never sent */
    batch_free(w->ready);
    w->ready = NULL;
  }
  if (w->half_done) { /* results stored, offsets not: consumed again, its results kept */
    batch_free(w->half_done);
    w->half_done = NULL;
  }
  if (w->batcher_open) {
    size_t n;
    void **items = wk_batcher_take(&w->batcher, &n);
    for (size_t i = 0; i < n; i++) event_free(w, items[i]);
    free(items);
  }
}

/* ---- the model: load, swap ------------------------------------------------------------ */

/*
 * Loads the model file through the pipeline, which refuses a file that does not fit it (task,
 * inputs, encoder) with errstr naming the file and the fault. Runs on the thread pool for a
 * reload (model_open may run on any thread).
 */
static svc_err_t model_load(wk_worker_t *w, wk_model_t **out, char *errstr,
                            size_t errstr_size) {
  wk_model_t *m = calloc(1, sizeof *m);
  if (m == NULL) return SVC_ENOMEM;
  m->refs = 1;
  m->ops = w->ops;
  svc_err_t err = w->ops->model_open(w->pipe, w->o.model_path, &m->pm, errstr, errstr_size);
  if (err) {
    free(m);
    return err;
  }
  m->version = w->ops->model_version(m->pm);
  m->load_size = w->ops->model_load_size ? w->ops->model_load_size(m->pm) : 0;
  *out = m;
  return SVC_OK;
}

/* The /info header for the serving model. Old headers stay allocated until exit: the HTTP
 * thread may still be reading one. */
static void worker_info_build(wk_worker_t *w) {
  const wk_model_t *m = w->model;
  char **infos = realloc(w->infos, (w->n_infos + 1) * sizeof *infos);
  if (infos == NULL) return;
  w->infos = infos;
  char *info = NULL, model_lines[1024] = "";
  if (w->ops->model_info) w->ops->model_info(m->pm, model_lines, sizeof model_lines);
  if (asprintf(&info,
               "# worker\nstate:running\npipeline:%s\ntopic:%s\ngroup:%s\ndlq_topic:%s\n"
               "alerts_topic:%s\npg_schema:%s\nmodel_version:%s\n%sbatch_max:%zu\n"
               "batch_wait_ms:%" PRIu64 "\npg_lanes:%d\n",
               w->ops->domain, w->o.topic, w->o.group, w->o.dlq_topic, w->o.alerts_topic,
               w->o.pg_schema, m->version, model_lines, w->o.batch_max,
               w->o.batch_wait_ms, w->o.pg_lanes) < 0)
    return;
  w->infos[w->n_infos++] = info;
  atomic_store_explicit(&w->info_text, info, memory_order_release);
}

/* Makes m the serving model for new batches; batches holding the old one finish with it. */
static svc_err_t model_install(wk_worker_t *w, wk_model_t *m) {
  size_t need = m->load_size;
  if (need > w->n_load_series) {
    svc_series_t **s = realloc(w->m_load, (need + 1) * sizeof *s);
    if (s == NULL) return SVC_ENOMEM;
    w->m_load = s;
    for (size_t i = w->n_load_series; i < need; i++) {
      char expert[24];
      snprintf(expert, sizeof expert, "%zu", i);
      w->m_load[i] = svc_metrics_series1(w->metrics, WK_M_EXPERT_LOAD, expert);
    }
    w->n_load_series = need;
  }
  wk_model_t *old = w->model;
  if (old) svc_gauge_clear(svc_metrics_series1(w->metrics, WK_M_MODEL, old->version));
  w->model = m;
  svc_gauge_set(svc_metrics_series1(w->metrics, WK_M_MODEL, m->version), 1);
  svc_http_set_ready(w->http, WK_READY_MODEL, true);
  char lines[1024] = "";
  if (w->ops->model_info) w->ops->model_info(m->pm, lines, sizeof lines);
  for (char *c = lines; *c; c++) /* "a:1\nb:2\n" -> "a=1 b=2 " for the log line */
    *c = *c == '\n' ? ' ' : *c == ':' ? '=' : *c;
  SVC_LOG(SVC_LOG_INFO, old ? "model swapped in" : "model loaded",
          "pipeline=%s version=%s previous=%s %s", w->ops->domain, m->version,
          old ? old->version : "", lines);
  model_unref(old);
  if (w->cons) worker_info_build(w); /* at start, setup builds it once everything is up */
  return SVC_OK;
}

typedef struct wk_reload_s {
  wk_worker_t *w;
  uv_work_t work;
  wk_model_t *m;
  svc_err_t err;
  char errstr[512];
  const char *why;
} wk_reload_t;

static void model_reload(wk_worker_t *w, const char *why);
static void on_model_changed(uv_fs_poll_t *h, int status, const uv_stat_t *prev,
                             const uv_stat_t *curr);

static void reload_work(uv_work_t *req) {
  wk_reload_t *r = req->data;
  r->err = model_load(r->w, &r->m, r->errstr, sizeof r->errstr);
}

static void after_reload(uv_work_t *req, int status) {
  wk_reload_t *r = req->data;
  wk_worker_t *w = r->w;
  w->reloading = NULL;
  if (w->closing) {
    model_unref(r->m);
    free(r);
    return;
  }
  svc_err_t err = status != 0 ? SVC_EUV : r->err;
  if (err == SVC_OK) err = model_install(w, r->m);
  if (err == SVC_OK) {
    svc_counter_add(w->m_reloads, 1);
  } else {
    if (r->err == SVC_OK) model_unref(r->m);
    svc_counter_add(w->m_reload_failed, 1);
    /* The loader quotes names; the log line quotes the detail (logfmt), so swap the quotes. */
    for (char *p = r->errstr; *p; p++)
      if (*p == '"') *p = '\'';
    SVC_LOG(SVC_LOG_ERROR, "model reload refused; the serving model stays",
            "trigger=%s err=%s detail=\"%s\" serving=%s", r->why, svc_err_name(err),
            status != 0 ? uv_strerror(status) : r->errstr, w->model->version);
  }
  free(r);
  if (w->reload_again) {
    w->reload_again = 0;
    model_reload(w, "changed_while_loading");
  }
}

/* Loads the model file again on the thread pool, beside the serving model; one at a time. */
static void model_reload(wk_worker_t *w, const char *why) {
  if (w->closing || w->stopping || w->fatal) return;
  if (w->reloading) {
    w->reload_again = 1;
    return;
  }
  wk_reload_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    svc_counter_add(w->m_reload_failed, 1);
    SVC_LOG(SVC_LOG_ERROR, "model reload refused; the serving model stays", "err=ENOMEM");
    return;
  }
  r->w = w;
  r->why = why;
  r->work.data = r;
  SVC_LOG(SVC_LOG_INFO, "reloading the model", "trigger=%s path=%s", why, w->o.model_path);
  int rc = uv_queue_work(&w->loop, &r->work, reload_work, after_reload);
  if (rc != 0) {
    free(r);
    svc_counter_add(w->m_reload_failed, 1);
    SVC_LOG(SVC_LOG_ERROR, "model reload refused; the serving model stays", "err=\"%s\"",
            uv_strerror(rc));
    return;
  }
  w->reloading = r;
}

/* (Re)starts the model file watch at w->o.model_watch_ms (0: stopped). */
static svc_err_t model_watch(wk_worker_t *w, char *errstr, size_t errstr_size) {
  uv_fs_poll_stop(&w->model_poll);
  if (w->o.model_watch_ms == 0) return SVC_OK;
  int rc = uv_fs_poll_start(&w->model_poll, on_model_changed, w->o.model_path,
                            (unsigned)w->o.model_watch_ms);
  if (rc != 0) {
    snprintf(errstr, errstr_size, "watching %s: %s", w->o.model_path, uv_strerror(rc));
    return SVC_EUV;
  }
  return SVC_OK;
}

/* SIGHUP: the reloadable settings first (model.watch_interval), then the model file. */
static void on_sighup(uv_signal_t *s, int signum) {
  (void)signum;
  wk_worker_t *w = s->data;
  if (w->o.reload_settings && !w->closing) {
    char e[512];
    uint64_t watch = w->o.model_watch_ms;
    if (w->o.reload_settings(w->o.reload_data, &watch, e, sizeof e) != SVC_OK) {
      SVC_LOG(SVC_LOG_ERROR, "settings reload refused; settings unchanged", "detail=\"%s\"", e);
    } else if (watch != w->o.model_watch_ms) {
      SVC_LOG(SVC_LOG_INFO, "model watch interval changed", "from_ms=%" PRIu64 " to_ms=%" PRIu64,
              w->o.model_watch_ms, watch);
      w->o.model_watch_ms = watch;
      if (model_watch(w, e, sizeof e) != SVC_OK)
        SVC_LOG(SVC_LOG_ERROR, "model file watch not started", "detail=\"%s\"", e);
    }
  }
  model_reload(w, "SIGHUP");
}

static void on_model_changed(uv_fs_poll_t *h, int status, const uv_stat_t *prev,
                             const uv_stat_t *curr) {
  (void)prev;
  (void)curr;
  wk_worker_t *w = h->data;
  if (status < 0) {
    /* Gone or unreadable (e.g. between an unlink and a rename): the next change reloads. */
    SVC_LOG(SVC_LOG_WARN, "model file unreadable; the serving model stays", "path=%s err=\"%s\"",
            w->o.model_path, uv_strerror(status));
    return;
  }
  model_reload(w, "file_changed");
}

/* ---- dead letters --------------------------------------------------------------------- */

static void relay_delivered(wk_worker_t *w, void *opaque, svc_err_t err);

/* Delivery reports of both uses of the producer: DLQ records (opaque NULL) and alerts. */
static void on_delivery(kq_producer_t *prod, const rd_kafka_message_t *msg, svc_err_t err,
                        void *opaque) {
  wk_worker_t *w = prod->data;
  if (opaque != NULL) {
    relay_delivered(w, opaque, err);
    return;
  }
  if (err != SVC_OK) {
    svc_counter_add(w->m_dlq_failed, 1);
    SVC_LOG(SVC_LOG_ERROR, "dead-letter record not delivered", "err=%s", svc_err_name(err));
  }
}

static void dlq_send(wk_worker_t *w, const rd_kafka_message_t *msg, const wk_reject_t *rej) {
  char partition[16], offset[24];
  snprintf(partition, sizeof partition, "%" PRId32, msg->partition);
  snprintf(offset, sizeof offset, "%" PRId64, msg->offset);
  const char *topic = rd_kafka_topic_name(msg->rkt);
  const char *reason = wk_reject_name(rej->reason);
  kq_header_t h[] = {
      {"sluice-dlq-reason", reason, strlen(reason)},
      {"sluice-dlq-detail", rej->detail, strlen(rej->detail)},
      {"sluice-origin-topic", topic, strlen(topic)},
      {"sluice-origin-partition", partition, strlen(partition)},
      {"sluice-origin-offset", offset, strlen(offset)},
  };
  kq_record_t rec = {.topic = w->o.dlq_topic, .partition = KQ_PARTITION_ANY, .key = msg->key,
                     .key_len = msg->key_len, .value = msg->payload, .value_len = msg->len,
                     .headers = h, .n_headers = sizeof h / sizeof h[0]};
  svc_err_t err = kq_producer_send(w->prod, &rec);
  if (err != SVC_OK) {
    /* The stream goes on regardless; the loss of this copy is counted and logged. */
    svc_counter_add(w->m_dlq_failed, 1);
    SVC_LOG(SVC_LOG_ERROR, "dead-letter record not queued", "err=%s topic=%s partition=%s offset=%s",
            svc_err_name(err), topic, partition, offset);
  }
  svc_counter_add(svc_metrics_series1(w->metrics, WK_M_DEAD, reason), 1);
  SVC_LOG(SVC_LOG_WARN, "event dead-lettered", "reason=%s detail=\"%s\" partition=%s offset=%s",
          reason, rej->detail, partition, offset);
}

/* ---- consuming ------------------------------------------------------------------------ */

/* The consumer works again (a message came): Kafka counts as available. */
static void kafka_ok(wk_worker_t *w) {
  w->kafka_err_since = 0;
  if (w->kafka_down) {
    w->kafka_down = 0;
    svc_gauge_set(w->m_kafka_down, 0);
    svc_http_set_ready(w->http, WK_READY_KAFKA, true);
    SVC_LOG(SVC_LOG_INFO, "Kafka available again");
  }
}

/* The wall clock in ms, to compare with Kafka timestamps (set by producers at send). */
static double wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void on_message(kq_consumer_t *cons, rd_kafka_message_t *msg) {
  wk_worker_t *w = cons->data;
  svc_counter_add(w->m_events_in, 1);
  wk_event_t *ev = event_new(w);
  if (ev == NULL) {
    rd_kafka_message_destroy(msg);
    worker_fatal(w, "consuming", "out of memory");
    return;
  }
  ev->msg = msg;
  rd_kafka_timestamp_type_t tstype;
  int64_t ts_ms = rd_kafka_message_timestamp(msg, &tstype);
  if (ts_ms > 0) svc_histogram_observe(w->m_consume_delay, (wall_ms() - (double)ts_ms) * 1e-3);
  if (w->kafka_err_since || w->kafka_down) kafka_ok(w);
  /* While recovering, the consumer is paused and will be sought back to PostgreSQL's offsets:
   * what was already fetched comes again then. */
  if (w->fatal || w->recovering) {
    event_free(w, ev);
    return;
  }
  wk_reject_t rej = {.reason = WK_REJECT_NONE};
  /* A tombstone (no value) is an empty value, which the pipeline refuses like any other. */
  static const uint8_t empty[1];
  const uint8_t *value = msg->payload ? msg->payload : empty;
  ev->pev = w->ops->accept(w->pipe, w->model->pm, msg, value, msg->payload ? msg->len : 0, &rej);
  if (ev->pev == NULL && rej.reason != WK_REJECT_NONE) dlq_send(w, msg, &rej);
  wk_batcher_add(&w->batcher, ev);
  if (w->stopping) wk_batcher_flush(&w->batcher);
}

/* ---- batches: score on the pool, commit on the loop ----------------------------------- */


/* Pauses or resumes fetching on every partition currently assigned. */
static void worker_set_paused(wk_worker_t *w, bool pause) {
  rd_kafka_t *rk = kq_consumer_rk(w->cons);
  rd_kafka_topic_partition_list_t *parts = NULL;
  if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  if (pause) rd_kafka_pause_partitions(rk, parts);
  else rd_kafka_resume_partitions(rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  w->paused = pause;
  svc_gauge_set(w->m_paused, pause ? 1 : 0);
}

static void on_batch(wk_batcher_t *bt, void **items, size_t n) {
  wk_worker_t *w = bt->data;
  wk_batch_t *b = calloc(1, sizeof *b);
  if (b == NULL) {
    for (size_t i = 0; i < n; i++) event_free(w, items[i]);
    free(items);
    worker_fatal(w, "batching", "out of memory");
    return;
  }
  b->w = w;
  b->gen = w->gen;
  b->sealed_ns = uv_hrtime();
  b->ev = (wk_event_t **)items;
  b->n = n;
  if (w->queue_tail) w->queue_tail->next = b;
  else w->queue_head = b;
  w->queue_tail = b;
  w->n_queued++;
  w->n_pending_events += n;
  worker_pump(w);
  /* Messages handed to us no longer count against librdkafka's fetch budget: without this,
   * a database slower than the topic would pile batches up in memory without bound. */
  if (w->n_pending_events >= w->o.max_queued_events && !w->paused && w->cons) {
    worker_set_paused(w, true);
    svc_counter_add(w->m_pauses, 1);
  }
}

static void batch_build(wk_worker_t *w, wk_batch_t *b);
static void worker_settle(wk_worker_t *w);

/* Commits the server rejected in a row before the worker gives up (crash-only fallback). */
#define WK_MAX_EDB_STREAK 3

/* On the thread pool: the pipeline scores the batch and adds its rows, then the statement is
 * built. The loop thread touches neither the batch nor w->stmt meanwhile. */
static void score_work(uv_work_t *req) {
  wk_batch_t *b = req->data;
  wk_worker_t *w = b->w;
  wk_stmt_reset(w->stmt);
  b->stats.expert_load = b->load;
  b->score_err = w->ops->process(w->pipe, b->model->pm, b->pevs, b->msgs, b->n_rows, w->stmt,
                                 &b->stats, b->score_errstr, sizeof b->score_errstr);
  if (b->score_err == SVC_OK) batch_build(w, b);
}

static void on_committed(db_conn_t *db, svc_err_t err, const PGresult *res, const char *errmsg,
                         void *arg);

/*
 * Completes the batch statement in w->stmt (the pipeline's rows, if any, are in it): the next
 * offset of every partition the batch holds events of, dead letters included, then renders
 * it. Pure computation on the batch and immutable settings: on the thread pool after
 * process, or on the loop for a batch of dead letters only (only one batch is ever being
 * built, and w->stmt belongs to it).
 */
static void batch_build(wk_worker_t *w, wk_batch_t *b) {
  for (size_t i = 0; i < b->n; i++) {
    const rd_kafka_message_t *m = b->ev[i]->msg;
    wk_stmt_add_offset(w->stmt, w->o.topic, m->partition, m->offset + 1);
  }
  wk_stmt_render(w->stmt, &b->sql, &b->n_params, &b->params, &b->lengths, &b->formats);
  if (w->o.pg_lanes < 2) return;
  wk_stmt_part(w->stmt, WK_STMT_RESULTS, &b->sql, &b->n_params, &b->params, &b->lengths,
               &b->formats);
  const char *const *values;
  const int *lengths, *formats;
  wk_stmt_part(w->stmt, WK_STMT_STATE, &b->state_sql, &b->state_n_params, &values, &lengths,
               &formats);
  /* A copy of the STATE part's parameters, in one allocation (the pointers, lengths and
   * formats, then the values): w->stmt belongs to the next batch once the RESULTS part is
   * sent. Each value keeps a NUL after it (the one text parameter needs it). */
  size_t n = (size_t)b->state_n_params, total = 0;
  for (size_t i = 0; i < n; i++) total += (size_t)lengths[i] + 1;
  size_t head = n * (sizeof *b->state_values + 2 * sizeof(int));
  b->state_values = malloc(head + total + 1);
  if (b->state_values == NULL) abort();
  b->state_lengths = (int *)(b->state_values + n);
  b->state_formats = b->state_lengths + n;
  char *at = (char *)(b->state_formats + n);
  for (size_t i = 0; i < n; i++) {
    memcpy(at, values[i], (size_t)lengths[i]);
    at[lengths[i]] = '\0';
    b->state_values[i] = at;
    b->state_lengths[i] = lengths[i];
    b->state_formats[i] = formats[i];
    at += lengths[i] + 1;
  }
}

static void on_results_committed(db_conn_t *db, svc_err_t err, const PGresult *res,
                                 const char *errmsg, void *arg);

/*
 * Sends one statement of batch b on `db` and records it in `slot` (w->committing or
 * w->lane_results) until its callback; db_conn_query_prepared copies the parameters, so what
 * they point into may be reused right after. A prepared statement with binary parameters:
 * PostgreSQL plans it once per session (db prepares it again after a reconnect) and parses no
 * value of the batch. On the loop thread.
 */
static void statement_send(wk_worker_t *w, wk_batch_t *b, db_conn_t *db, const char *name,
                           const char *sql, int n_params, const char *const *values,
                           const int *lengths, const int *formats, db_result_cb cb,
                           wk_batch_t **slot, const char *what) {
  b->commit_start_ns = uv_hrtime();
  *slot = b;
  svc_err_t err =
      db_conn_query_prepared(db, name, sql, n_params, values, lengths, formats, cb, b);
  if (err != SVC_OK) {
    *slot = NULL;
    batch_free(b);
    if (err == SVC_ENOTCONN) worker_recover(w, "connection_lost", "PostgreSQL not connected");
    else worker_fatal(w, what, svc_strerror(err));
  }
}

/* The batch statement batch_build made (pg.lanes 1), or a batch's RESULTS part (pg.lanes 2,
 * on results_db): the first statement of a batch, so the end of its wait in line. */
static void batch_send(wk_worker_t *w, wk_batch_t *b) {
  svc_histogram_observe(w->m_queue, (double)(uv_hrtime() - b->sealed_ns) * 1e-9);
  if (w->o.pg_lanes >= 2)
    statement_send(w, b, w->results_db, "sluice_worker_results", b->sql, b->n_params,
                   b->params, b->lengths, b->formats, on_results_committed, &w->lane_results,
                   "sending the batch's results statement");
  else
    statement_send(w, b, w->db, "sluice_worker_batch", b->sql, b->n_params, b->params,
                   b->lengths, b->formats, on_committed, &w->committing,
                   "sending the batch transaction");
}

/* pg.lanes 2: the batch's STATE part, on w->db once the batch before it has committed. */
static void state_send(wk_worker_t *w, wk_batch_t *b) {
  statement_send(w, b, w->db, "sluice_worker_state", b->state_sql, b->state_n_params,
                 (const char *const *)b->state_values, b->state_lengths, b->state_formats,
                 on_committed, &w->committing, "sending the batch's state statement");
}

/*
 * Whether a built batch must wait: with one lane while a batch statement is in flight; with
 * two while a RESULTS part is in flight or a batch waits to send its STATE part (so RESULTS
 * never runs two batches ahead of the offsets).
 */
static bool send_lane_busy(const wk_worker_t *w) {
  if (w->o.pg_lanes >= 2) return w->lane_results != NULL || w->half_done != NULL;
  return w->committing != NULL;
}

/* The built batch waiting in w->ready goes out if its lane is free. */
static void send_ready(wk_worker_t *w) {
  if (w->ready == NULL || send_lane_busy(w) || w->fatal || w->recovering) return;
  wk_batch_t *b = w->ready;
  w->ready = NULL;
  batch_send(w, b);
}

/* A built batch: sent now if its lane is free, else it waits its turn. */
static void batch_ready(wk_worker_t *w, wk_batch_t *b) {
  w->ready = b;
  send_ready(w);
  worker_pump(w);
}

static void after_score(uv_work_t *req, int status) {
  wk_batch_t *b = req->data;
  wk_worker_t *w = b->w;
  w->scoring = NULL;
  /* Work that had to wait until the pipeline's process returned (pipeline.h: restore and
   * discard never run beside it). */
  if (w->discard_pending) {
    w->discard_pending = 0;
    if (w->ops->discard) w->ops->discard(w->pipe);
    svc_gauge_set(w->m_keys, (double)w->ops->n_keys(w->pipe));
  }
  restore_wait_flush(w);
  if (w->fatal) {
    batch_free(b);
    if (worker_idle(w)) worker_begin_close(w);
    return;
  }
  if (b->gen != w->gen) { /* scored from state discarded by a recovery */
    batch_free(b);
    worker_settle(w);
    return;
  }
  if (status != 0 || b->score_err != SVC_OK) {
    batch_free(b);
    worker_fatal(w, "scoring a batch", status != 0 ? uv_strerror(status) : b->score_errstr);
    return;
  }
  svc_histogram_observe(w->m_infer, (double)b->stats.infer_ns * 1e-9);
  if (b->stats.n_explained) {
    svc_histogram_observe(w->m_explain, (double)b->stats.explain_ns * 1e-9);
    svc_counter_add(w->m_explained, b->stats.n_explained);
  }
  for (size_t i = 0; i < b->model->load_size && i < w->n_load_series; i++)
    if (b->load[i]) svc_counter_add(w->m_load[i], (uint64_t)b->load[i]);
  batch_ready(w, b);
}

/*
 * Tops the head of the queue up to batch.max events with the events of the batches queued
 * behind it (in order; a batch only partly taken keeps the rest). Partial batches sealed by
 * batch.wait pile up exactly when the worker is behind (a commit in flight), and every
 * statement has a fixed cost in PostgreSQL, so merging them is what lets throughput grow with
 * the load instead of shrinking. Events stay in consumption order, so offsets and card states
 * still only move forward, and a merged batch is still one statement, one transaction.
 * Returns false when out of memory (nothing changed).
 */
static bool queue_merge_head(wk_worker_t *w) {
  wk_batch_t *h = w->queue_head;
  size_t max = w->o.batch_max;
  if (h->n >= max || h->next == NULL || h->next->gen != h->gen) return true;
  wk_event_t **ev = realloc(h->ev, max * sizeof *ev);
  if (ev == NULL) return false;
  h->ev = ev;
  while (h->n < max && h->next != NULL && h->next->gen == h->gen) {
    wk_batch_t *nx = h->next;
    size_t take = nx->n < max - h->n ? nx->n : max - h->n;
    memcpy(&h->ev[h->n], nx->ev, take * sizeof *nx->ev);
    h->n += take;
    if (take < nx->n) { /* the rest stays queued, still in order */
      memmove(nx->ev, &nx->ev[take], (nx->n - take) * sizeof *nx->ev);
      nx->n -= take;
      break;
    }
    h->next = nx->next;
    if (w->queue_tail == nx) w->queue_tail = h;
    w->n_queued--;
    free(nx->ev); /* the events now belong to h; n_pending_events is unchanged */
    free(nx);
  }
  return true;
}

static void worker_pump(wk_worker_t *w) {
  /* While an assignment restores keys, nothing new is scored: the pipeline's restore never
   * runs beside its process (pipeline.h). */
  if (w->scoring != NULL || w->ready != NULL || w->queue_head == NULL || w->closing ||
      w->recovering || w->n_assigning > 0)
    return;
  if (!queue_merge_head(w)) {
    worker_fatal(w, "merging batches", "out of memory");
    return;
  }
  /* While a commit is in flight, a partial batch with nothing queued behind it waits: the
   * batches sealed meanwhile are merged into it, so the next statement carries everything
   * that arrived during the commit. Scoring a 256-row batch takes well under a millisecond,
   * much less than the statement it saves. Full batches are scored at once, so scoring still
   * overlaps the commit when the worker is saturated. */
  if (send_lane_busy(w) && w->queue_head->n < w->o.batch_max &&
      w->queue_head->next == NULL && !w->stopping && w->pending_revoke == NULL)
    return;
  wk_batch_t *b = w->queue_head;
  w->queue_head = b->next;
  if (w->queue_head == NULL) w->queue_tail = NULL;
  w->n_queued--;
  b->next = NULL;
  /* The serving model now: a swap after this point does not affect this batch. */
  b->model = w->model;
  b->model->refs++;
  for (size_t i = 0; i < b->n; i++) b->n_rows += b->ev[i]->pev != NULL;
  if (b->n_rows == 0) {
    wk_stmt_reset(w->stmt);
    batch_build(w, b); /* only dead letters: their offsets still move */
    batch_ready(w, b);
    return;
  }
  w->scoring = b;
  b->pevs = malloc(b->n_rows * sizeof *b->pevs);
  b->msgs = malloc(b->n_rows * sizeof *b->msgs);
  b->load = calloc(b->model->load_size + 1, sizeof *b->load);
  if (b->pevs == NULL || b->msgs == NULL || b->load == NULL) {
    w->scoring = NULL;
    batch_free(b);
    worker_fatal(w, "preparing a batch", "out of memory");
    return;
  }
  size_t row = 0;
  for (size_t i = 0; i < b->n; i++)
    if (b->ev[i]->pev) {
      b->pevs[row] = b->ev[i]->pev;
      b->msgs[row++] = b->ev[i]->msg;
    }
  b->work.data = b;
  int rc = uv_queue_work(&w->loop, &b->work, score_work, after_score);
  if (rc != 0) {
    w->scoring = NULL;
    batch_free(b);
    worker_fatal(w, "queueing the scoring work", uv_strerror(rc));
  }
}

static void revoke_finish(wk_worker_t *w, bool call_done);
static void stop_maybe_close(wk_worker_t *w);

static void commit_failed(wk_worker_t *w, wk_batch_t *b, svc_err_t err, const char *errmsg);
static void batch_done(wk_worker_t *w, wk_batch_t *b, const PGresult *res);

/* Kafka offset commits at most this often: each is a write on the broker (its
 * __consumer_offsets log), and one per batch at 10,000 events/s (about 130 a second) cost the
 * broker more CPU than the events themselves. They are for lag tools only. */
#define WK_KAFKA_COMMIT_INTERVAL_MS 1000

/* Commits the offsets gathered in w->kcommit to Kafka when the interval has passed, or now
 * (before a revocation completes, and at close). */
static void kafka_commit(wk_worker_t *w, bool now) {
  if (w->kcommit == NULL) return;
  uint64_t t = uv_now(&w->loop);
  if (!now && t - w->kcommit_last_ms < WK_KAFKA_COMMIT_INTERVAL_MS) return;
  if (w->cons && w->kcommit->cnt > 0) kq_consumer_commit(w->cons, w->kcommit);
  rd_kafka_topic_partition_list_destroy(w->kcommit);
  w->kcommit = NULL;
  w->kcommit_last_ms = t;
}

/* The counts row of a batch statement (zeros if it is not one: only metrics depend on it). */
static wk_stmt_counts_t stmt_counts(const PGresult *res) {
  wk_stmt_counts_t c = {0};
  if (res != NULL && PQntuples(res) == 1 && PQnfields(res) == 4) {
    const char *cols[4] = {PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                           PQgetvalue(res, 0, 3)};
    wk_stmt_parse_counts(cols, &c);
  }
  return c;
}

/* pg.lanes 2: the RESULTS part of b committed (or failed). */
static void on_results_committed(db_conn_t *db, svc_err_t err, const PGresult *res,
                                 const char *errmsg, void *arg) {
  wk_batch_t *b = arg;
  wk_worker_t *w = b->w;
  w->lane_results = NULL;
  if (err != SVC_OK) {
    commit_failed(w, b, err, errmsg);
    return;
  }
  svc_histogram_observe(w->m_commit, (double)(uv_hrtime() - b->commit_start_ns) * 1e-9);
  wk_stmt_counts_t c = stmt_counts(res);
  b->tx1_results = c.results;
  b->tx1_outbox = c.outbox;
  if (b->gen != w->gen || w->fatal || w->recovering) {
    /* A recovery started meanwhile: its offsets are not written; consumed again. */
    batch_free(b);
    worker_settle(w);
    return;
  }
  if (w->committing == NULL) state_send(w, b);
  else w->half_done = b;
  send_ready(w);
  worker_pump(w);
}

static void on_committed(db_conn_t *db, svc_err_t err, const PGresult *res, const char *errmsg,
                         void *arg) {
  wk_batch_t *b = arg;
  wk_worker_t *w = b->w;
  w->committing = NULL;
  if (err != SVC_OK) {
    commit_failed(w, b, err, errmsg);
    return;
  }
  w->edb_streak = 0;
  /* The next statements go out first, so that PostgreSQL never waits for our bookkeeping. */
  if (w->half_done != NULL && !w->fatal && !w->recovering) {
    wk_batch_t *next = w->half_done;
    w->half_done = NULL;
    state_send(w, next);
  }
  send_ready(w);
  batch_done(w, b, res);
}

/* A statement of batch b failed: recover (or give up when the server keeps refusing it). */
static void commit_failed(wk_worker_t *w, wk_batch_t *b, svc_err_t err, const char *errmsg) {
  bool stale = b->gen != w->gen;
  batch_free(b);
  if (w->fatal) {
    if (worker_idle(w)) worker_begin_close(w);
    return;
  }
  if (!stale) {
    /* A statement the server rejects again and again is not a passing outage. */
    if (err == SVC_EDB && ++w->edb_streak >= WK_MAX_EDB_STREAK) {
      worker_fatal(w, "committing a batch (rejected repeatedly)",
                   errmsg ? errmsg : svc_strerror(err));
      return;
    }
    worker_recover(w, err == SVC_EDB ? "commit_rejected" : "commit_failed",
                   errmsg ? errmsg : svc_strerror(err));
  }
  worker_settle(w);
}

/* Batch b is committed (all of it): metrics, the pipeline's committed hook, Kafka's offsets. */
static void batch_done(wk_worker_t *w, wk_batch_t *b, const PGresult *res) {
  uint64_t now_ns = uv_hrtime();
  svc_histogram_observe(w->m_commit, (double)(now_ns - b->commit_start_ns) * 1e-9);
  wk_stmt_counts_t c = stmt_counts(res);
  if (w->o.pg_lanes >= 2) { /* the STATE part's row has zeros there */
    c.results = b->tx1_results;
    c.outbox = b->tx1_outbox;
  }
  svc_counter_add(w->m_batches, 1);
  svc_histogram_observe(w->m_batch_size, (double)b->n);
  size_t scored = b->stats.n_scored;
  svc_counter_add(w->m_scored, scored);
  if ((size_t)c.results < scored) svc_counter_add(w->m_dupes, scored - (size_t)c.results);
  svc_counter_add(w->m_alerts, (uint64_t)c.outbox);
  if (b->n_rows > 0 && w->ops->committed)
    w->ops->committed(w->pipe, b->model->pm, b->pevs, b->n_rows);
  svc_gauge_set(w->m_keys, (double)w->ops->n_keys(w->pipe));

  /* Kafka's committed offsets follow PostgreSQL's, for lag tools; the truth stays in PG. */
  if (w->kcommit == NULL) w->kcommit = rd_kafka_topic_partition_list_new(4);
  rd_kafka_topic_partition_list_t *offs = w->kcommit;
  double now_ms = wall_ms();
  for (size_t i = 0; i < b->n; i++) {
    const rd_kafka_message_t *m = b->ev[i]->msg;
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(offs, w->o.topic, m->partition);
    if (tp == NULL) tp = rd_kafka_topic_partition_list_add(offs, w->o.topic, m->partition);
    if (m->offset + 1 > tp->offset) tp->offset = m->offset + 1;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts_ms = rd_kafka_message_timestamp(m, &tstype);
    if (ts_ms > 0) svc_histogram_observe(w->m_e2e, (now_ms - (double)ts_ms) * 1e-3);
  }
  kafka_commit(w, false);
  SVC_LOG(SVC_LOG_DEBUG, "batch committed",
          "events=%zu accepted=%zu scored=%zu inserted=%ld states=%ld alerts=%ld", b->n,
          b->n_rows, scored, c.results, c.states, c.outbox);
  batch_free(b);

  if (w->pending_revoke && worker_idle(w)) revoke_finish(w, true);
  worker_pump(w);
  /* Resuming at half leaves work for the time the fetcher needs to get going again. */
  if (w->paused && !w->stopping && !w->recovering && w->cons &&
      w->n_pending_events <= w->o.max_queued_events / 2)
    worker_set_paused(w, false);
  stop_maybe_close(w);
}

/* After a batch left the pipeline without a commit: finish what waited for it. */
static void worker_settle(wk_worker_t *w) {
  if (w->pending_revoke && worker_idle(w)) revoke_finish(w, true);
  worker_pump(w);
  stop_maybe_close(w);
}

/* ---- rebalances ----------------------------------------------------------------------- */

/*
 * Restoring partitions from PostgreSQL: their next offsets (kafka_offsets) and the pipeline's
 * per-key state (its restore_sql; none for a pipeline without state). Two uses: a new assignment (the deferred rebalance completes afterwards, so
 * nothing is fetched before the offsets are known), and a recovery (every assigned partition
 * is restored and the paused consumer is sought back to the stored offsets, then resumed).
 */
typedef struct wk_assign_s {
  wk_worker_t *w;
  rd_kafka_topic_partition_list_t *parts;
  char *partitions; /* "{0,3,5}", an integer[] literal for the restore queries */
  int recover;      /* a recovery restore rather than an assignment */
  int holds_pump;   /* counted in w->n_assigning: no batch is scored until it is done */
  struct wk_assign_s *next; /* in w->assign_wait or w->restore_wait */
} wk_assign_t;

static void assign_free(wk_assign_t *a) {
  if (a->holds_pump) a->w->n_assigning--;
  if (a->parts) rd_kafka_topic_partition_list_destroy(a->parts);
  free(a->partitions);
  free(a);
}

/* A restore that failed on the database: an assignment waits for the connection to come back
 * (the recovery timer resends it); a recovery restore is simply started again. */
static void assign_retry(wk_assign_t *a, const char *what, const char *detail) {
  wk_worker_t *w = a->w;
  SVC_LOG(SVC_LOG_WARN, "restore from PostgreSQL failed; retrying once connected",
          "what=\"%s\" partitions=%s detail=\"%s\"", what, a->partitions, detail);
  if (a->recover) {
    w->restoring = 0;
    assign_free(a);
    return;
  }
  a->next = w->assign_wait;
  w->assign_wait = a;
}

static wk_assign_t *assign_new(wk_worker_t *w, const rd_kafka_topic_partition_list_t *parts,
                               int recover) {
  wk_assign_t *a = calloc(1, sizeof *a);
  if (a == NULL) return NULL;
  a->w = w;
  a->recover = recover;
  a->parts = rd_kafka_topic_partition_list_copy(parts);
  size_t cap = (size_t)parts->cnt * 12 + 3, len = 0; /* 11 chars per int32 and a comma */
  a->partitions = malloc(cap);
  if (a->partitions == NULL || a->parts == NULL) {
    assign_free(a);
    return NULL;
  }
  len += (size_t)snprintf(a->partitions + len, cap - len, "{");
  for (int i = 0; i < parts->cnt; i++)
    len += (size_t)snprintf(a->partitions + len, cap - len, "%s%" PRId32, i ? "," : "",
                            parts->elems[i].partition);
  snprintf(a->partitions + len, cap - len, "}");
  return a;
}

static void update_partitions_ready(wk_worker_t *w) {
  rd_kafka_topic_partition_list_t *now = NULL;
  if (w->cons && rd_kafka_assignment(kq_consumer_rk(w->cons), &now) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    svc_gauge_set(w->m_parts, now->cnt);
    svc_http_set_ready(w->http, WK_READY_PARTITIONS, now->cnt > 0 && !w->stopping);
    rd_kafka_topic_partition_list_destroy(now);
  }
}

/* The recovery restore is done: seek every restored partition to its stored offset, resume. */
static void recover_finish(wk_worker_t *w, wk_assign_t *a) {
  rd_kafka_t *rk = kq_consumer_rk(w->cons);
  if (a->parts->cnt > 0) {
    /* Asynchronous (timeout 0): the seek is queued before the resume below, and librdkafka
     * drops messages fetched before it. */
    rd_kafka_error_t *e = rd_kafka_seek_partitions(rk, a->parts, 0);
    if (e != NULL) {
      char msg[256];
      snprintf(msg, sizeof msg, "%s", rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
      worker_fatal(w, "seeking to the stored offsets", msg);
      return;
    }
  }
  w->recovering = 0;
  w->restoring = 0;
  svc_gauge_set(w->m_recovering, 0);
  svc_http_set_ready(w->http, WK_READY_STATE, true);
  if (!w->stopping) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_resume_partitions(rk, parts);
      rd_kafka_topic_partition_list_destroy(parts);
    }
  }
  SVC_LOG(SVC_LOG_WARN, "recovered: state restored from PostgreSQL, consuming again",
          "partitions=%s keys=%zu", a->partitions, w->ops->n_keys(w->pipe));
}

/* The pipeline's keys are restored (res NULL: it keeps none): finish the assignment or the
 * recovery. */
static void assign_restored(wk_assign_t *a, const PGresult *res) {
  wk_worker_t *w = a->w;
  int bad = res ? w->ops->restore(w->pipe, res) : 0;
  svc_gauge_set(w->m_keys, (double)w->ops->n_keys(w->pipe));
  if (a->recover) {
    if (w->restore_again) {
      /* Partitions came in during the restore: their fetched messages were dropped too. */
      w->restore_again = 0;
      w->restoring = 0;
    } else {
      recover_finish(w, a);
    }
    assign_free(a);
    return;
  }
  svc_err_t rc = kq_consumer_rebalance_done(w->cons, KQ_REBALANCE_ASSIGN, a->parts);
  if (rc != SVC_OK && rc != SVC_ECLOSED) worker_fatal(w, "assigning partitions", svc_strerror(rc));
  /* New partitions start fetching: hold them too while back-pressure, stopping or a recovery
   * holds (a recovery restores them again once it runs). */
  if (rc == SVC_OK && (w->paused || w->stopping || w->recovering)) {
    rd_kafka_topic_partition_list_t *now = NULL;
    rd_kafka_t *rk = kq_consumer_rk(w->cons);
    if (rd_kafka_assignment(rk, &now) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_pause_partitions(rk, now);
      rd_kafka_topic_partition_list_destroy(now);
    }
    if (w->recovering && w->restoring) w->restore_again = 1;
  }
  update_partitions_ready(w);
  SVC_LOG(SVC_LOG_INFO, "partitions assigned", "partitions=%s keys_restored=%d unreadable=%d",
          a->partitions, res ? PQntuples(res) : 0, bad);
  assign_free(a);
  worker_pump(w); /* batches held while the keys were restored */
}

/*
 * The end of a restore query that nothing waits for any more, or that failed: true when the
 * assignment was dropped (stopping: the consumer is leaving its group) or queued for a retry
 * (the database refused), so the caller stops there.
 */
static bool assign_query_over(wk_assign_t *a, svc_err_t err, const char *errmsg,
                              const char *what) {
  wk_worker_t *w = a->w;
  if (w->closing || w->cons == NULL || w->fatal) {
    if (a->recover) w->restoring = 0;
    assign_free(a);
    return true;
  }
  if (err != SVC_OK) {
    assign_retry(a, what, errmsg ? errmsg : svc_strerror(err));
    return true;
  }
  return false;
}

static void on_states(db_conn_t *db, svc_err_t err, const PGresult *res, const char *errmsg,
                      void *arg) {
  wk_assign_t *a = arg;
  if (assign_query_over(a, err, errmsg, "restoring key state")) return;
  assign_restored(a, res);
}

static void assign_states(wk_assign_t *a);

static void on_offsets(db_conn_t *db, svc_err_t err, const PGresult *res, const char *errmsg,
                       void *arg) {
  wk_assign_t *a = arg;
  wk_worker_t *w = a->w;
  if (assign_query_over(a, err, errmsg, "reading stored offsets")) return;
  /* PostgreSQL is the truth: a partition without a stored offset starts at the beginning. */
  for (int i = 0; i < a->parts->cnt; i++) a->parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
  for (int i = 0; i < PQntuples(res); i++) {
    int32_t p = (int32_t)atoi(PQgetvalue(res, i, 0));
    int64_t next = strtoll(PQgetvalue(res, i, 1), NULL, 10);
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(a->parts, w->o.topic, p);
    if (tp) tp->offset = next;
  }
  if (w->scoring != NULL) { /* restore once the batch being processed is back */
    a->next = w->restore_wait;
    w->restore_wait = a;
    return;
  }
  assign_states(a);
}

/* Sends the restore queries that waited for the pipeline's process to return. */
static void restore_wait_flush(wk_worker_t *w) {
  while (w->restore_wait) {
    wk_assign_t *a = w->restore_wait;
    w->restore_wait = a->next;
    a->next = NULL;
    assign_states(a);
  }
}

/* Sends the pipeline's restore query (none: the assignment is done). No process runs. */
static void assign_states(wk_assign_t *a) {
  wk_worker_t *w = a->w;
  if (w->closing || w->cons == NULL || w->fatal || w->db == NULL) {
    if (a->recover) w->restoring = 0;
    assign_free(a);
    return;
  }
  const char *sql = w->ops->restore_sql ? w->ops->restore_sql(w->pipe) : NULL;
  if (sql == NULL) { /* no per-key state */
    assign_restored(a, NULL);
    return;
  }
  const char *params[] = {w->o.topic, a->partitions};
  svc_err_t rc = db_conn_query(w->db, sql, 2, params, on_states, a);
  if (rc != SVC_OK) assign_retry(a, "restoring key state", svc_strerror(rc));
}

/* Sends the first restore query (offsets); on a refusal the restore waits for a retry. */
static void assign_start(wk_assign_t *a) {
  wk_worker_t *w = a->w;
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT partition, next_offset FROM \"%s\".kafka_offsets WHERE consumer_group = $1 "
           "AND topic = $2 AND partition = ANY($3::integer[])",
           w->o.pg_schema);
  const char *params[] = {w->o.group, w->o.topic, a->partitions};
  svc_err_t rc = w->db ? db_conn_query(w->db, sql, 3, params, on_offsets, a) : SVC_ENOTCONN;
  if (rc != SVC_OK) assign_retry(a, "reading stored offsets", svc_strerror(rc));
}

/*
 * Discards the in-memory state that may be ahead of PostgreSQL (batches not committed, the
 * pipeline's keys) after a failed or unknown commit or a lost connection, pauses fetching and reports
 * not-ready; the recovery timer restores from PostgreSQL once it is connected and no batch is
 * in flight. Results are ON CONFLICT DO NOTHING and offsets and card states only move forward,
 * so a batch whose commit outcome is unknown is harmless either way.
 */
static void worker_recover(wk_worker_t *w, const char *cause, const char *detail) {
  if (w->fatal || w->closing) return;
  w->gen++;
  if (w->recovering) {
    /* A failure during a restore: the restore in flight (if any) fails too and is redone. */
    return;
  }
  w->recovering = 1;
  svc_counter_add(svc_metrics_series1(w->metrics, WK_M_RECOVERIES, cause), 1);
  svc_gauge_set(w->m_recovering, 1);
  svc_http_set_ready(w->http, WK_READY_STATE, false);
  SVC_LOG(SVC_LOG_WARN, "recovering: discarding uncommitted work, restoring from PostgreSQL",
          "cause=%s detail=\"%s\"", cause, detail ? detail : "");
  if (w->cons) {
    rd_kafka_t *rk = kq_consumer_rk(w->cons);
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_pause_partitions(rk, parts);
      rd_kafka_topic_partition_list_destroy(parts);
    }
  }
  w->paused = 0; /* the recovery holds fetching now; back-pressure starts over */
  svc_gauge_set(w->m_paused, 0);
  worker_drop_pending(w);
  if (w->scoring != NULL) {
    w->discard_pending = 1; /* after_score discards, once process has returned */
  } else {
    if (w->ops->discard) w->ops->discard(w->pipe);
    svc_gauge_set(w->m_keys, (double)w->ops->n_keys(w->pipe));
  }
  /* A revocation waiting for commits: the new owner restores from PostgreSQL. */
  if (w->pending_revoke && worker_idle(w)) revoke_finish(w, true);
}

/* Every 100 ms: resend restores that could not be sent, and run a recovery's restore once
 * PostgreSQL is connected and the last batch in flight has returned. Also Kafka's readiness. */
static void on_recover_timer(uv_timer_t *t) {
  wk_worker_t *w = t->data;
  if (w->closing || w->fatal) return;
  if (w->kafka_err_since && !w->kafka_down &&
      uv_now(&w->loop) - w->kafka_err_since >= w->o.kafka_error_grace_ms) {
    w->kafka_down = 1;
    svc_gauge_set(w->m_kafka_down, 1);
    svc_http_set_ready(w->http, WK_READY_KAFKA, false);
    SVC_LOG(SVC_LOG_WARN, "Kafka unavailable: consumer errors without any message",
            "for_ms=%" PRIu64, uv_now(&w->loop) - w->kafka_err_since);
  }
  if (w->db == NULL || w->cons == NULL || db_conn_status(w->db) != DB_STATUS_CONNECTED) return;
  wk_assign_t *waiting = w->assign_wait;
  w->assign_wait = NULL;
  while (waiting) {
    wk_assign_t *a = waiting;
    waiting = a->next;
    a->next = NULL;
    assign_start(a);
  }
  if (!w->recovering || w->restoring || !worker_idle(w)) return;
  rd_kafka_topic_partition_list_t *parts = NULL;
  if (rd_kafka_assignment(kq_consumer_rk(w->cons), &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  wk_assign_t *a = assign_new(w, parts, 1);
  rd_kafka_topic_partition_list_destroy(parts);
  if (a == NULL) {
    worker_fatal(w, "recovering", "out of memory");
    return;
  }
  w->restoring = 1;
  w->restore_again = 0;
  if (a->parts->cnt == 0) {
    recover_finish(w, a);
    assign_free(a);
    return;
  }
  assign_start(a);
}

/* Drops the revoked partitions' state; completes the deferred rebalance when call_done. */
static void revoke_finish(wk_worker_t *w, bool call_done) {
  rd_kafka_topic_partition_list_t *parts = w->pending_revoke;
  w->pending_revoke = NULL;
  kafka_commit(w, true); /* while the partitions are still ours */
  size_t before = w->ops->n_keys(w->pipe);
  if (w->ops->revoke && parts->cnt > 0) {
    int32_t *ids = malloc((size_t)parts->cnt * sizeof *ids);
    if (ids != NULL) {
      for (int i = 0; i < parts->cnt; i++) ids[i] = parts->elems[i].partition;
      w->ops->revoke(w->pipe, ids, (size_t)parts->cnt);
      free(ids);
    }
  }
  size_t after = w->ops->n_keys(w->pipe);
  size_t dropped = before > after ? before - after : 0;
  for (int i = 0; i < parts->cnt; i++) {
    char p[16];
    snprintf(p, sizeof p, "%" PRId32, parts->elems[i].partition);
    const char *lbl[] = {w->o.topic, p};
    svc_gauge_clear(svc_metrics_series(w->metrics, WK_M_LAG, lbl));
  }
  svc_gauge_set(w->m_keys, (double)after);
  if (w->cons && call_done) kq_consumer_rebalance_done(w->cons, w->pending_kind, parts);
  SVC_LOG(SVC_LOG_INFO, "partitions released", "count=%d keys_dropped=%zu lost=%d", parts->cnt,
          dropped, w->pending_kind == KQ_REBALANCE_LOST);
  rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_topic_partition_list_t *now = NULL;
  if (w->cons && rd_kafka_assignment(kq_consumer_rk(w->cons), &now) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    svc_gauge_set(w->m_parts, now->cnt);
    svc_http_set_ready(w->http, WK_READY_PARTITIONS, now->cnt > 0 && !w->stopping);
    rd_kafka_topic_partition_list_destroy(now);
  }
}

static kq_rebalance_action_t on_rebalance(kq_consumer_t *cons, kq_rebalance_kind_t kind,
                                          rd_kafka_topic_partition_list_t *parts) {
  wk_worker_t *w = cons->data;
  if (kind == KQ_REBALANCE_ASSIGN) {
    wk_assign_t *a = assign_new(w, parts, 0);
    if (a == NULL) {
      worker_fatal(w, "assigning partitions", "out of memory");
      return KQ_REBALANCE_DONE;
    }
    kafka_ok(w);
    a->holds_pump = 1;
    w->n_assigning++;
    /* PostgreSQL down: the assignment waits (not fetching) until the connection is back. */
    assign_start(a);
    return KQ_REBALANCE_DEFER;
  }
  /* REVOKE / LOST: finish the batches that hold these partitions' events, then let go. */
  if (w->pending_revoke) {
    /* A second revocation while one is pending: merge them. */
    for (int i = 0; i < parts->cnt; i++)
      rd_kafka_topic_partition_list_add(w->pending_revoke, parts->elems[i].topic,
                                        parts->elems[i].partition);
  } else {
    w->pending_revoke = rd_kafka_topic_partition_list_copy(parts);
  }
  w->pending_kind = kind;
  if (w->batcher_open) wk_batcher_flush(&w->batcher);
  if (worker_idle(w)) {
    revoke_finish(w, false); /* nothing in flight: let go at once */
    return KQ_REBALANCE_DONE;
  }
  return KQ_REBALANCE_DEFER;
}

static void on_consumer_error(kq_consumer_t *cons, svc_err_t err, const char *reason, bool fatal) {
  wk_worker_t *w = cons->data;
  if (fatal) {
    worker_fatal(w, "Kafka consumer", reason);
    return;
  }
  /* librdkafka retries by itself; readiness turns false only if no message arrives within
   * kafka.error_grace of the first error (on_recover_timer). */
  if (w->kafka_err_since == 0) w->kafka_err_since = uv_now(&w->loop);
}

/* ---- the outbox relay ---------------------------------------------------------------- */

/*
 * Publishes unpublished outbox rows to their topic (key = the alert's key, header
 * sluice-alert-id = the stable alert id) and marks them published once Kafka acknowledged them.
 * At least once: a crash between the acknowledgement and the mark publishes the alert again
 * with the same id, for consumers to deduplicate. One relay per schema at a time: the worker
 * that holds a session advisory lock on its PostgreSQL connection (released if that connection
 * drops, so another worker takes over).
 */

#define WK_RELAY_BATCH 500

typedef struct wk_relay_s {
  wk_worker_t *w;
  size_t pending;       /* sends without a delivery report yet */
  size_t n_done;
  char *done_ids;       /* "{1,2,3}" being built: ids acknowledged by Kafka */
  size_t done_len, done_cap;
} wk_relay_t;

static void relay_free(wk_relay_t *r) {
  free(r->done_ids);
  free(r);
}

static void on_relay_db_closed(db_conn_t *db);

/* The relay's pass is over. When stopping, the database was only waiting for this: marking the
 * alerts the producer's final flush delivered, so that a clean stop publishes nothing twice. */
static void relay_idle(wk_worker_t *w) {
  w->relay_busy = 0;
  if (w->db_close_deferred && w->relay_db != NULL) {
    w->db_close_deferred = 0;
    db_conn_close(w->relay_db, on_relay_db_closed);
  }
}

static void on_relay_marked(db_conn_t *db, svc_err_t err, const PGresult *res,
                            const char *errmsg, void *arg) {
  wk_relay_t *r = arg;
  wk_worker_t *w = r->w;
  if (err == SVC_OK) svc_counter_add(w->m_published, r->n_done);
  else
    SVC_LOG(SVC_LOG_WARN, "published alerts not marked; they will be published again",
            "count=%zu err=\"%s\"", r->n_done, errmsg ? errmsg : svc_strerror(err));
  relay_free(r);
  relay_idle(w);
}

/* Every send of the pass has its report: mark the acknowledged rows. */
static void relay_finish(wk_relay_t *r) {
  wk_worker_t *w = r->w;
  if (r->n_done == 0 || w->relay_db == NULL) {
    relay_free(r);
    relay_idle(w);
    return;
  }
  r->done_ids[r->done_len - 1] = '}'; /* the trailing comma closes the array */
  r->done_ids[r->done_len] = '\0';
  char sql[256];
  snprintf(sql, sizeof sql,
           "UPDATE \"%s\".outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
           w->o.pg_schema);
  const char *params[] = {r->done_ids};
  if (db_conn_query(w->relay_db, sql, 1, params, on_relay_marked, r) != SVC_OK) {
    relay_free(r);
    relay_idle(w);
  }
}

/* opaque is the row's id, allocated per send, with the pass in front. */
typedef struct wk_relay_send_s {
  wk_relay_t *r;
  char id[24];
} wk_relay_send_t;

static void relay_delivered(wk_worker_t *w, void *opaque, svc_err_t err) {
  wk_relay_send_t *snd = opaque;
  wk_relay_t *r = snd->r;
  if (err == SVC_OK) {
    size_t n = strlen(snd->id);
    /* Room for "{", the id, "," and the final NUL. */
    if (r->done_len + n + 3 > r->done_cap) {
      size_t cap = r->done_cap ? r->done_cap * 2 : 256;
      while (cap < r->done_len + n + 3) cap *= 2;
      char *p = realloc(r->done_ids, cap);
      if (p == NULL) abort();
      r->done_ids = p;
      r->done_cap = cap;
    }
    if (r->done_len == 0) r->done_ids[r->done_len++] = '{';
    memcpy(r->done_ids + r->done_len, snd->id, n);
    r->done_len += n;
    r->done_ids[r->done_len++] = ',';
    r->n_done++;
  } else {
    svc_counter_add(w->m_publish_failed, 1);
  }
  free(snd);
  if (--r->pending == 0) relay_finish(r);
}

static int relay_hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static void on_relay_rows(db_conn_t *db, svc_err_t err, const PGresult *res, const char *errmsg,
                          void *arg) {
  wk_worker_t *w = arg;
  if (err != SVC_OK || w->prod == NULL || w->closing) {
    relay_idle(w);
    return;
  }
  int n = PQntuples(res);
  if (n == 0) {
    relay_idle(w);
    return;
  }
  wk_relay_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    relay_idle(w);
    return;
  }
  r->w = w;
  r->pending = 1; /* held by this function until every row is sent */
  for (int i = 0; i < n; i++) {
    const char *alert_id = PQgetvalue(res, i, 1), *key = PQgetvalue(res, i, 2);
    const char *topic = PQgetvalue(res, i, 3), *hex = PQgetvalue(res, i, 4);
    size_t hl = strlen(hex), len = hl / 2;
    uint8_t *payload = malloc(len + 1);
    wk_relay_send_t *snd = calloc(1, sizeof *snd);
    if (payload == NULL || snd == NULL) {
      free(payload);
      free(snd);
      break;
    }
    for (size_t j = 0; j < len; j++)
      payload[j] = (uint8_t)(relay_hex(hex[2 * j]) << 4 | relay_hex(hex[2 * j + 1]));
    snd->r = r;
    snprintf(snd->id, sizeof snd->id, "%s", PQgetvalue(res, i, 0));
    kq_header_t h[] = {{"sluice-alert-id", alert_id, strlen(alert_id)}};
    kq_record_t rec = {.topic = topic, .partition = KQ_PARTITION_ANY, .key = key,
                       .key_len = strlen(key), .value = payload, .value_len = len,
                       .headers = h, .n_headers = 1, .opaque = snd};
    svc_err_t se = kq_producer_send(w->prod, &rec);
    free(payload);
    if (se != SVC_OK) {
      /* Queue full or closing: the rest waits for the next pass. */
      svc_counter_add(w->m_publish_failed, 1);
      free(snd);
      break;
    }
    r->pending++;
  }
  if (--r->pending == 0) relay_finish(r);
}

static void relay_fetch(wk_worker_t *w) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT id, alert_id, key, topic, encode(payload, 'hex') FROM \"%s\".outbox "
           "WHERE published_at IS NULL ORDER BY id LIMIT %d",
           w->o.pg_schema, WK_RELAY_BATCH);
  if (db_conn_query(w->relay_db, sql, 0, NULL, on_relay_rows, w) != SVC_OK) relay_idle(w);
}

static void on_relay_lock(db_conn_t *db, svc_err_t err, const PGresult *res, const char *errmsg,
                          void *arg) {
  wk_worker_t *w = arg;
  if (err == SVC_OK && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
    w->relay_lock = 1;
    SVC_LOG(SVC_LOG_INFO, "this worker relays the alert outbox", "schema=%s", w->o.pg_schema);
    if (!w->closing && w->relay_db) {
      relay_fetch(w);
      return;
    }
  }
  relay_idle(w);
}

static void on_relay_timer(uv_timer_t *t) {
  wk_worker_t *w = t->data;
  if (w->relay_busy || w->closing || w->relay_db == NULL || w->prod == NULL ||
      db_conn_status(w->relay_db) != DB_STATUS_CONNECTED)
    return;
  w->relay_busy = 1;
  if (w->relay_lock) {
    relay_fetch(w);
    return;
  }
  char key[160];
  snprintf(key, sizeof key, "sluice-relay:%s", w->o.pg_schema);
  const char *params[] = {key};
  if (db_conn_query(w->relay_db, "SELECT pg_try_advisory_lock(hashtext($1))", 1, params, on_relay_lock,
                    w) != SVC_OK)
    relay_idle(w);
}

/* ---- lag ------------------------------------------------------------------------------ */

static void on_lag_timer(uv_timer_t *t) {
  wk_worker_t *w = t->data;
  if (w->cons == NULL || w->closing) return;
  /* A stream that went quiet still gets its last offsets committed to Kafka. */
  kafka_commit(w, false);
  rd_kafka_t *rk = kq_consumer_rk(w->cons);
  rd_kafka_topic_partition_list_t *parts = NULL;
  if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  /* Both calls read librdkafka's cached state: nothing here waits on the network. */
  rd_kafka_position(rk, parts);
  for (int i = 0; i < parts->cnt; i++) {
    int64_t lo = 0, hi = 0;
    rd_kafka_topic_partition_t *tp = &parts->elems[i];
    if (rd_kafka_get_watermark_offsets(rk, tp->topic, tp->partition, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0 || tp->offset < 0)
      continue;
    char p[16];
    snprintf(p, sizeof p, "%" PRId32, tp->partition);
    const char *lbl[] = {tp->topic, p};
    svc_gauge_set(svc_metrics_series(w->metrics, WK_M_LAG, lbl), (double)(hi - tp->offset));
  }
  rd_kafka_topic_partition_list_destroy(parts);
}

/* ---- stopping ------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  wk_worker_t *w = h->data;
  w->handles_open--;
}

static void on_batcher_closed(wk_batcher_t *b) {
  wk_worker_t *w = b->data;
  w->handles_open--;
}

/* Last: the loop's own handles. The loop then runs out of work and returns. */
static void close_handles(wk_worker_t *w) {
  uv_close((uv_handle_t *)&w->sig_term, on_handle_closed);
  uv_close((uv_handle_t *)&w->sig_int, on_handle_closed);
  uv_close((uv_handle_t *)&w->lag_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->relay_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->recover_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->sig_hup, on_handle_closed);
  if (w->model_poll_on) {
    w->model_poll_on = 0;
    uv_close((uv_handle_t *)&w->model_poll, on_handle_closed);
  }
  if (w->batcher_open) {
    w->batcher_open = 0;
    wk_batcher_close(&w->batcher, on_batcher_closed);
  }
}

/* Every session closes through here; the loop's handles once the last one is closed. */
static void on_db_closed(db_conn_t *db) {
  wk_worker_t *w = db->data;
  if (db == w->db) w->db = NULL;
  else if (db == w->results_db) w->results_db = NULL;
  if (w->db == NULL && w->results_db == NULL && w->relay_db == NULL) close_handles(w);
}

static void on_relay_db_closed(db_conn_t *db) {
  wk_worker_t *w = db->data;
  w->relay_db = NULL;
  if (w->db == NULL && w->results_db == NULL) close_handles(w);
}

/* Closes both sessions: the relay's once its pass is over (relay_idle closes it then). */
static void close_databases(wk_worker_t *w) {
  if (w->db == NULL && w->results_db == NULL && w->relay_db == NULL) {
    close_handles(w);
    return;
  }
  if (w->relay_db && w->relay_busy) w->db_close_deferred = 1;
  else if (w->relay_db) db_conn_close(w->relay_db, on_relay_db_closed);
  if (w->results_db) db_conn_close(w->results_db, on_db_closed);
  if (w->db) db_conn_close(w->db, on_db_closed);
}

static void on_producer_closed(kq_producer_t *prod, size_t n_undelivered) {
  wk_worker_t *w = prod->data;
  w->prod = NULL;
  if (n_undelivered) {
    svc_counter_add(w->m_dlq_failed, n_undelivered);
    SVC_LOG(SVC_LOG_ERROR, "dead-letter records lost at shutdown", "count=%zu", n_undelivered);
  }
  close_databases(w);
}

static void on_consumer_closed(kq_consumer_t *cons) {
  wk_worker_t *w = cons->data;
  w->cons = NULL;
  if (w->prod) kq_producer_close(w->prod, 10000, on_producer_closed);
  else close_databases(w);
}

/* Starts closing Kafka, then PostgreSQL, then the loop's handles; once. */
static void worker_begin_close(wk_worker_t *w) {
  if (w->closing) return;
  w->closing = 1;
  if (w->pending_revoke) {
    rd_kafka_topic_partition_list_destroy(w->pending_revoke);
    w->pending_revoke = NULL;
  }
  while (w->assign_wait) {
    wk_assign_t *a = w->assign_wait;
    w->assign_wait = a->next;
    assign_free(a);
  }
  while (w->restore_wait) {
    wk_assign_t *a = w->restore_wait;
    w->restore_wait = a->next;
    assign_free(a);
  }
  kafka_commit(w, true);
  SVC_LOG(SVC_LOG_INFO, "closing Kafka and PostgreSQL clients");
  if (w->cons) kq_consumer_close(w->cons, on_consumer_closed);
  else on_consumer_closed(&(kq_consumer_t){.data = w});
}

static void stop_maybe_close(wk_worker_t *w) {
  if (!w->stopping || w->closing) return;
  if (w->batcher_open && wk_batcher_pending(&w->batcher) > 0) wk_batcher_flush(&w->batcher);
  if (worker_idle(w)) worker_begin_close(w);
}

static void on_signal(uv_signal_t *s, int signum) {
  wk_worker_t *w = s->data;
  if (w->stopping) {
    SVC_LOG(SVC_LOG_WARN, "second signal while stopping: still draining", "signal=%d", signum);
    return;
  }
  SVC_LOG(SVC_LOG_INFO, "stopping: draining pending events", "signal=%d", signum);
  w->stopping = 1;
  svc_http_set_ready(w->http, WK_READY_PARTITIONS, false);
  if (w->cons) {
    rd_kafka_t *rk = kq_consumer_rk(w->cons);
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_pause_partitions(rk, parts);
      rd_kafka_topic_partition_list_destroy(parts);
    }
  }
  stop_maybe_close(w);
}

/* The relay's own session: a new one does not hold the relay's advisory lock. Its outages
 * only delay alerts (they stay in the outbox), so readiness does not depend on it. */
static void on_relay_db_status(db_conn_t *db, db_status_t status, const char *detail) {
  wk_worker_t *w = db->data;
  if (status != DB_STATUS_CONNECTED) w->relay_lock = 0;
  if (status == DB_STATUS_DISCONNECTED)
    SVC_LOG(SVC_LOG_WARN, "PostgreSQL disconnected (alert relay)", "detail=\"%s\"",
            detail ? detail : "");
}

/* Both batch sessions (db, and results_db with pg.lanes 2): ready when every one is up. */
static void on_db_status(db_conn_t *db, db_status_t status, const char *detail) {
  wk_worker_t *w = db->data;
  int bit = db == w->results_db ? 2 : 1, want = w->o.pg_lanes >= 2 ? 3 : 1;
  if (status == DB_STATUS_CONNECTED) w->db_up |= bit;
  else w->db_up &= ~bit;
  if (w->http) svc_http_set_ready(w->http, WK_READY_DATABASE, w->db_up == want);
  if (status == DB_STATUS_DISCONNECTED) {
    SVC_LOG(SVC_LOG_WARN, "PostgreSQL disconnected", "detail=\"%s\"", detail ? detail : "");
    /* Whatever was in flight has an unknown outcome and queued batches cannot be sent: start
     * again from what PostgreSQL holds once it is back. */
    worker_recover(w, "connection_lost", detail);
  }
}

/* ---- setup ---------------------------------------------------------------------------- */

static svc_err_t worker_migrate(wk_worker_t *w, char *errstr, size_t errstr_size) {
  PGconn *conn = PQconnectdb(w->o.pg_dsn);
  if (PQstatus(conn) != CONNECTION_OK) {
    snprintf(errstr, errstr_size, "connecting to PostgreSQL for migrations: %s",
             PQerrorMessage(conn));
    PQfinish(conn);
    return SVC_EDB;
  }
  PQclear(PQexec(conn, "SET client_min_messages TO warning"));
  int applied = 0;
  svc_err_t err = wk_schema_migrate(conn, w->o.pg_schema, &applied, errstr, errstr_size);
  PQfinish(conn);
  if (err == SVC_OK)
    SVC_LOG(SVC_LOG_INFO, "database schema ready", "schema=%s migrations_applied=%d",
            w->o.pg_schema, applied);
  return err;
}

static svc_err_t worker_setup(wk_worker_t *w, char *errstr, size_t errstr_size) {
  svc_err_t err;
  char e[512];
  /* One registry: the core's metrics, then the pipeline's own (ids from WK_M__COUNT). */
  size_t n_defs = WK_M__COUNT + w->ops->n_metric_defs;
  w->metric_defs = calloc(n_defs, sizeof *w->metric_defs);
  if (w->metric_defs == NULL) return SVC_ENOMEM;
  memcpy(w->metric_defs, wk_metric_defs, sizeof wk_metric_defs);
  if (w->ops->n_metric_defs)
    memcpy(w->metric_defs + WK_M__COUNT, w->ops->metric_defs,
           w->ops->n_metric_defs * sizeof *w->metric_defs);
  w->metrics = svc_metrics_new(w->metric_defs, n_defs, e, sizeof e);
  if (w->metrics == NULL) {
    snprintf(errstr, errstr_size, "metrics table (pipeline %s): %s", w->ops->domain, e);
    return SVC_ECONFIG;
  }
  w->m_events_in = svc_metrics_series1(w->metrics, WK_M_EVENTS_IN, w->o.topic);
  w->m_scored = svc_metrics_series(w->metrics, WK_M_SCORED, NULL);
  w->m_alerts = svc_metrics_series(w->metrics, WK_M_ALERTS, NULL);
  w->m_dupes = svc_metrics_series(w->metrics, WK_M_DUPLICATES, NULL);
  w->m_batches = svc_metrics_series(w->metrics, WK_M_BATCHES, NULL);
  w->m_dlq_failed = svc_metrics_series(w->metrics, WK_M_DLQ_FAILED, NULL);
  w->m_batch_size = svc_metrics_series(w->metrics, WK_M_BATCH_SIZE, NULL);
  w->m_infer = svc_metrics_series(w->metrics, WK_M_INFER, NULL);
  w->m_e2e = svc_metrics_series(w->metrics, WK_M_E2E, NULL);
  w->m_commit = svc_metrics_series(w->metrics, WK_M_COMMIT, NULL);
  w->m_consume_delay = svc_metrics_series(w->metrics, WK_M_CONSUME_DELAY, NULL);
  w->m_queue = svc_metrics_series(w->metrics, WK_M_QUEUE, NULL);
  w->m_parts = svc_metrics_series(w->metrics, WK_M_PARTITIONS, NULL);
  w->m_keys = svc_metrics_series(w->metrics, WK_M_KEYS, NULL);
  w->m_published = svc_metrics_series(w->metrics, WK_M_PUBLISHED, NULL);
  w->m_explain = svc_metrics_series(w->metrics, WK_M_EXPLAIN, NULL);
  w->m_paused = svc_metrics_series(w->metrics, WK_M_PAUSED, NULL);
  w->m_pauses = svc_metrics_series(w->metrics, WK_M_PAUSES, NULL);
  svc_gauge_set(w->m_paused, 0);
  w->m_explained = svc_metrics_series(w->metrics, WK_M_EXPLAINED, NULL);
  w->m_publish_failed = svc_metrics_series(w->metrics, WK_M_PUBLISH_FAILED, NULL);
  svc_gauge_set(w->m_parts, 0);
  svc_gauge_set(w->m_keys, 0);
  w->m_reloads = svc_metrics_series(w->metrics, WK_M_RELOADS, NULL);
  w->m_reload_failed = svc_metrics_series(w->metrics, WK_M_RELOAD_FAILED, NULL);
  w->m_recovering = svc_metrics_series(w->metrics, WK_M_RECOVERING, NULL);
  w->m_kafka_down = svc_metrics_series(w->metrics, WK_M_KAFKA_DOWN, NULL);
  svc_gauge_set(w->m_recovering, 0);
  svc_gauge_set(w->m_kafka_down, 0);

  svc_http_config_t hc = {.bind_address = w->o.http_address, .port = w->o.http_port,
                          .metrics = w->metrics, .conditions = wk_ready_names,
                          .n_conditions = WK_READY__COUNT, .info = worker_info, .info_data = w};
  err = svc_http_new(&hc, &w->http, errstr, errstr_size);
  if (err) return err;
  svc_http_set_ready(w->http, WK_READY_STATE, true);
  svc_http_set_ready(w->http, WK_READY_KAFKA, true);

  wk_pipeline_env_t env = {.domain = w->ops->domain, .topic = w->o.topic,
                           .alerts_topic = w->o.alerts_topic, .pg_schema = w->o.pg_schema,
                           .max_event_bytes = w->o.max_event_bytes,
                           .batch_max = w->o.batch_max, .settings = w->o.settings,
                           .metrics = w->metrics, .metric_base = WK_M__COUNT,
                           .group = w->o.group};
  err = w->ops->create(&env, &w->pipe, errstr, errstr_size);
  if (err) return err;

  wk_model_t *m = NULL;
  err = model_load(w, &m, errstr, errstr_size);
  if (err) return err;
  err = model_install(w, m);
  if (err) {
    model_unref(m);
    return err;
  }

  err = worker_migrate(w, errstr, errstr_size);
  if (err) return err;
  err = wk_stmt_new(w->o.pg_schema, w->o.group, w->ops->tables, w->ops->n_tables, &w->stmt,
                    errstr, errstr_size);
  if (err) return err;

  if (uv_loop_init(&w->loop) != 0) {
    snprintf(errstr, errstr_size, "uv_loop_init failed");
    return SVC_EUV;
  }
  w->batcher.data = w;
  err = wk_batcher_init(&w->batcher, &w->loop, w->o.batch_max, w->o.batch_wait_ms, on_batch);
  if (err) {
    snprintf(errstr, errstr_size, "batcher: %s", svc_strerror(err));
    return err;
  }
  w->batcher_open = 1;
  w->handles_open++;
  uv_signal_init(&w->loop, &w->sig_term);
  uv_signal_init(&w->loop, &w->sig_int);
  uv_timer_init(&w->loop, &w->lag_timer);
  uv_timer_init(&w->loop, &w->relay_timer);
  uv_timer_init(&w->loop, &w->recover_timer);
  uv_signal_init(&w->loop, &w->sig_hup);
  w->sig_term.data = w->sig_int.data = w->lag_timer.data = w->relay_timer.data = w;
  w->recover_timer.data = w->sig_hup.data = w;
  w->handles_open += 6;
  uv_signal_start(&w->sig_term, on_signal, SIGTERM);
  uv_signal_start(&w->sig_int, on_signal, SIGINT);
  uv_signal_start(&w->sig_hup, on_sighup, SIGHUP);
  uv_timer_start(&w->recover_timer, on_recover_timer, 100, 100);
  uv_fs_poll_init(&w->loop, &w->model_poll);
  w->model_poll.data = w;
  w->model_poll_on = 1;
  w->handles_open++;
  err = model_watch(w, errstr, errstr_size);
  if (err) return err;
  uv_timer_start(&w->lag_timer, on_lag_timer, 2000, 2000);
  uv_timer_start(&w->relay_timer, on_relay_timer, 200, 200);

  /* pg_stat_activity and the server log then say which worker a session is. */
  char app_name[64];
  snprintf(app_name, sizeof app_name, "sluice-worker %s", w->ops->domain);
  db_conn_opts_t dbo = {.dsn = w->o.pg_dsn, .application_name = app_name,
                        .on_status = on_db_status, .data = w};
  err = db_conn_new(&w->loop, &dbo, &w->db, errstr, errstr_size);
  if (err) return err;
  if (w->o.pg_lanes >= 2) {
    /* The RESULTS parts run here, beside the STATE part of the batch before on w->db. */
    char results_app_name[64];
    snprintf(results_app_name, sizeof results_app_name, "sluice-worker %s results",
             w->ops->domain);
    /* Its commits need not wait for their WAL flush: the batch's STATE part commits after
     * its RESULTS part, durably, and a commit record later in the WAL is only flushed with
     * everything before it. So offsets are never durable without the results they cover,
     * and a crash that loses an unflushed RESULTS commit loses its STATE too (the batch is
     * consumed again). One WAL flush per batch instead of two on the path to the commit. */
    db_conn_opts_t xdbo = {.dsn = w->o.pg_dsn, .application_name = results_app_name,
                           .session_options = "-c synchronous_commit=off",
                           .on_status = on_db_status, .data = w};
    err = db_conn_new(&w->loop, &xdbo, &w->results_db, errstr, errstr_size);
    if (err) return err;
  }
  /* The relay has its own session: its queries and their commits (each one a WAL flush) no
   * longer queue between two batch statements, and its advisory lock lives there. */
  char relay_app_name[64];
  snprintf(relay_app_name, sizeof relay_app_name, "sluice-worker %s relay", w->ops->domain);
  db_conn_opts_t rdbo = {.dsn = w->o.pg_dsn, .application_name = relay_app_name,
                         .on_status = on_relay_db_status, .data = w};
  err = db_conn_new(&w->loop, &rdbo, &w->relay_db, errstr, errstr_size);
  if (err) return err;

  kq_producer_opts_t po = {.brokers = w->o.brokers, .props = w->o.producer_props,
                           .on_delivery = on_delivery, .data = w};
  err = kq_producer_new(&w->loop, &po, &w->prod, errstr, errstr_size);
  if (err) return err;

  const char *topics[] = {w->o.topic, NULL};
  kq_consumer_opts_t co = {.brokers = w->o.brokers, .group_id = w->o.group, .topics = topics,
                           .group_instance_id = (w->o.instance_id && w->o.instance_id[0])
                                                    ? w->o.instance_id
                                                    : NULL,
                           .props = w->o.consumer_props,
                           .on_message = on_message, .on_rebalance = on_rebalance,
                           .on_error = on_consumer_error, .data = w};
  err = kq_consumer_new(&w->loop, &co, &w->cons, errstr, errstr_size);
  if (err) return err;
  worker_info_build(w);
  SVC_LOG(SVC_LOG_INFO, "worker started", "pipeline=%s topic=%s group=%s http_port=%u "
          "batch_max=%zu batch_wait_ms=%" PRIu64, w->ops->domain, w->o.topic, w->o.group,
          svc_http_port(w->http), w->o.batch_max, w->o.batch_wait_ms);
  return SVC_OK;
}

svc_err_t wk_worker_run(const wk_worker_opts_t *opts, char *errstr, size_t errstr_size) {
  wk_worker_t *w = calloc(1, sizeof *w);
  if (w == NULL) return SVC_ENOMEM;
  w->o = *opts;
  w->ops = opts->pipeline;
  if (w->ops == NULL) {
    snprintf(errstr, errstr_size, "no pipeline selected");
    free(w);
    return SVC_ECONFIG;
  }
  svc_err_t err = worker_setup(w, errstr, errstr_size);
  int loop_ready = w->handles_open > 0;
  if (err != SVC_OK && loop_ready) {
    /* Setup failed after the loop came up: close what is open through the loop. */
    w->fatal = 1;
    snprintf(w->fatal_msg, sizeof w->fatal_msg, "%s", errstr);
    worker_begin_close(w);
  }
  if (loop_ready) {
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Anything still referenced by the loop (thread-pool work) has finished by now. */
    if (uv_loop_close(&w->loop) != 0) SVC_LOG(SVC_LOG_WARN, "loop closed with handles open");
  }
  if (err == SVC_OK && w->fatal) {
    snprintf(errstr, errstr_size, "%s", w->fatal_msg);
    err = SVC_EIO;
  }
  wk_stmt_free(w->stmt);
  while (w->free_events) {
    wk_event_t *ev = w->free_events;
    w->free_events = ev->pev;
    free(ev);
  }
  model_unref(w->model);
  if (w->pipe) w->ops->destroy(w->pipe);
  svc_http_free(w->http); /* first: no /info request may still read info_text */
  svc_metrics_free(w->metrics);
  free(w->metric_defs);
  for (size_t i = 0; i < w->n_infos; i++) free(w->infos[i]);
  free(w->infos);
  free(w->m_load);
  if (w->kcommit) rd_kafka_topic_partition_list_destroy(w->kcommit);
  free(w);
  return err;
}
