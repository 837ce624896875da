/*
 * A worker pipeline: everything domain-specific between "a Kafka record arrived" and "these
 * rows go into the batch statement". The worker core (worker.c) owns Kafka, batching, the
 * thread pool, the one PostgreSQL statement per batch, offsets, the outbox relay, recovery,
 * model reloads, metrics and health; it is the same for every domain. A pipeline owns
 * decoding and validation, its per-key state (cards, devices), its model adapter, scoring,
 * and the rows it adds to the statement: fraud (pipeline-fraud.c), fault (fault/
 * pipeline-fault.c) and records (records/pipeline-records.c) implement wk_pipeline_ops_t.
 *
 * Threads and order:
 *   - create/destroy, accept, event_free, committed, restore, discard, revoke: the loop thread.
 *   - model_open/model_free: any thread (reloads open on the thread pool).
 *   - process: the thread pool, ONE batch at a time, batches in consumption order; it may run
 *     while the loop thread calls accept for later records. A pipeline whose process needs
 *     state that accept also touches (e.g. an alert state machine fed by scores) keeps that
 *     state apart from accept's or guards it with its own mutex; restore/discard may run
 *     while no process call is in flight only (the core guarantees it by waiting: a recovery
 *     drops in-flight batches by generation, and restore runs once none is scoring).
 *
 * Exactly once: process adds the batch's result rows and the newest state of every key the
 * batch changed (with the offset of the newest event folded in, so that a stale or repeated
 * batch cannot roll state back); the core adds the offsets and sends all of it as one
 * statement. accept must fold an event into a key's state only when the record's offset is
 * past the key's stored last_offset (a replay after restore only rebuilds the features).
 * Outbox rows need stable ids (the same alert always has the same id).
 *
 * Changes by CORE (the fault/records requests of to-core.txt):
 *   - ops.tables / ops.n_tables: the pipeline's tables, declared statically; the core builds
 *     the batch statement from them and process adds rows by index into this array.
 *   - ops.metric_defs / ops.n_metric_defs and env.metric_base: a pipeline's own metrics. The
 *     core appends them to its own table before svc_metrics_new; the pipeline's def i is
 *     metric id env->metric_base + i in env->metrics.
 *   - accept: NULL with rej->reason == WK_REJECT_NONE skips the record without a dead letter
 *     (the pipeline counts it); the core still commits past it.
 *   - restore_sql: a NULL function or a NULL return both mean "no per-key state": no query.
 *   - env.group: the consumer group (for logs; the core owns kafka_offsets).
 *   - ops.model_info (optional): the model's lines of /info.
 */
#ifndef WK_PIPELINE_H
#define WK_PIPELINE_H

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reject.h"
#include "schema.h"
#include "stmt.h"
#include "svc/error.h"
#include "svc/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_pipeline_s wk_pipeline_t; /* a pipeline's own state (opaque to the core) */
typedef struct wk_pmodel_s wk_pmodel_t;     /* a loaded model + what is derived from it */

/* What the core hands a pipeline when it creates it. Borrowed for the pipeline's lifetime. */
typedef struct wk_pipeline_env_s {
  const char *domain;        /* "fraud", "fault", "records": results are keyed by it */
  const char *topic;         /* input topic */
  const char *alerts_topic;  /* outbox rows are published here */
  const char *pg_schema;     /* schema of the tables (already checked) */
  size_t max_event_bytes;    /* larger records are rejected as OVERSIZE */
  size_t batch_max;          /* events per process call at most */
  const void *settings;      /* the pipeline's own settings struct (see each pipeline's header) */
  svc_metrics_t *metrics;    /* to register the pipeline's own series at create */
  int metric_base;           /* metric id of ops.metric_defs[0] in `metrics` */
  const char *group;         /* consumer group */
} wk_pipeline_env_t;

/* What one process call reports back, for the core's metrics (loop thread, after commit). */
typedef struct wk_batch_stats_s {
  size_t n_scored;         /* events scored (results added) */
  size_t n_alerts;         /* outbox rows added */
  size_t n_explained;      /* rows explained */
  uint64_t infer_ns;       /* time in the model */
  uint64_t explain_ns;     /* time in explanations */
  int64_t *expert_load;    /* (model_load_size) rows routed per expert; zeroed by the core */
} wk_batch_stats_t;

typedef struct wk_pipeline_ops_s {
  const char *domain; /* "fraud", ... */

  /* The tables process writes (stmt.h); wk_stmt_row_begin's `table` indexes this array. */
  const wk_table_t *tables;
  size_t n_tables;

  /* The pipeline's own metrics (may be NULL/0): ids env->metric_base + i. Their names must not
   * clash with the core's (worker.c's table, README.md). */
  const svc_metric_def_t *metric_defs;
  size_t n_metric_defs;

  svc_err_t (*create)(const wk_pipeline_env_t *env, wk_pipeline_t **out, char *errstr,
                      size_t errstr_size);
  void (*destroy)(wk_pipeline_t *p);

  /*
   * Loads a model file for this pipeline (validating that it fits: task, inputs, encoder) for
   * batches of up to env->batch_max events. SVC_OK; SVC_ENOENT/SVC_EIO when it cannot be read;
   * SVC_ECONFIG with errstr naming the file and what does not fit; SVC_ENOMEM.
   */
  svc_err_t (*model_open)(wk_pipeline_t *p, const char *path, wk_pmodel_t **out, char *errstr,
                          size_t errstr_size);
  void (*model_free)(wk_pmodel_t *m);
  const char *(*model_version)(const wk_pmodel_t *m);
  size_t (*model_load_size)(const wk_pmodel_t *m); /* per-expert load entries (0: none) */
  /* Optional: "name:value\n" lines about the model for /info (e.g. its thresholds), written
   * into buf (always NUL-terminated); returns the length. Loop thread. */
  size_t (*model_info)(const wk_pmodel_t *m, char *buf, size_t size);

  /*
   * Decodes and validates one record and folds it into its key's state. Returns the
   * pipeline's event (owned by the core until event_free), or NULL with *rej filled: the core
   * dead-letters the record with that reason and detail and commits past it (reason
   * WK_REJECT_NONE: skipped without a dead letter, still committed past). `serving` is the
   * model serving now (the batch may be scored with a newer one: events must not depend on
   * model internals beyond what the model's inputs name). `value` is never NULL (a tombstone
   * is an empty value).
   */
  void *(*accept)(wk_pipeline_t *p, const wk_pmodel_t *serving, const rd_kafka_message_t *msg,
                  const uint8_t *value, size_t len, wk_reject_t *rej);
  void (*event_free)(wk_pipeline_t *p, void *ev);

  /*
   * Scores n >= 1 accepted events (msgs[i] is event i's record) with model m and adds their
   * result, state and outbox rows to stmt. SVC_OK, or an error with errstr naming the event
   * (a failure here stops the worker: it is a bug or an engine failure, not bad input).
   */
  svc_err_t (*process)(wk_pipeline_t *p, const wk_pmodel_t *m, void *const *evs,
                       const rd_kafka_message_t *const *msgs, size_t n, wk_stmt_t *stmt,
                       wk_batch_stats_t *stats, char *errstr, size_t errstr_size);

  /* Optional: after the batch committed (e.g. decision counters). */
  void (*committed)(wk_pipeline_t *p, const wk_pmodel_t *m, void *const *evs, size_t n);

  /*
   * Restore on assignment or recovery. restore_sql returns a query with $1 = topic and
   * $2 = integer[] of partitions that selects the stored state of those partitions' keys;
   * restore loads its result rows (text format) and returns how many were unreadable (those
   * start afresh, logged). discard drops every in-memory key (recovery: memory may be ahead
   * of PostgreSQL); revoke drops the keys of revoked partitions (may be NULL: keys stay).
   * restore_sql NULL, or returning NULL: the pipeline keeps no per-key state (no query;
   * restore, discard and revoke may then be NULL too).
   */
  const char *(*restore_sql)(wk_pipeline_t *p);
  int (*restore)(wk_pipeline_t *p, const PGresult *res);
  void (*discard)(wk_pipeline_t *p);
  void (*revoke)(wk_pipeline_t *p, const int32_t *partitions, size_t n);
  size_t (*n_keys)(const wk_pipeline_t *p); /* keys in memory, for a gauge */
} wk_pipeline_ops_t;

extern const wk_pipeline_ops_t wk_pipeline_fraud;
extern const wk_pipeline_ops_t wk_pipeline_fault;
extern const wk_pipeline_ops_t wk_pipeline_records;

#ifdef __cplusplus
}
#endif
#endif /* WK_PIPELINE_H */
