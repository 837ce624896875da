/*
 * The worker core, the same for every pipeline (pipeline.h: fraud, fault, records): one libuv
 * loop that consumes the pipeline's topic, hands each record to the pipeline's accept (which
 * validates it and folds it into its key's state; bad ones go to the dead-letter topic with
 * reason and origin headers), micro-batches, runs the pipeline's process (scoring, the rows
 * of its tables) on libuv's thread pool, and writes each batch exactly once into PostgreSQL
 * in one statement (stmt.h: the pipeline's results and changed per-key state, alerts into
 * the outbox, next offsets). On partition assignment it restores the partitions' offsets and
 * the pipeline's per-key state from PostgreSQL and seeks there; Kafka's own committed
 * offsets are written afterwards for lag monitoring only. Alerts are relayed from the outbox
 * to their topic by one worker per schema.
 *
 * Batches are committed one at a time, in order, so that a batch is committed only after
 * every earlier batch (offsets never skip an uncommitted event); scoring the next batch
 * overlaps the commit of the previous one. A failed or unknown commit or a lost PostgreSQL
 * connection is recovered in process: fetching pauses, /readyz reports "state" not ready,
 * uncommitted batches and the pipeline's keys (possibly ahead of the database) are discarded,
 * and once PostgreSQL is connected again every assigned partition's offset and key states are
 * read back and the consumer is sought there and resumed. A statement the server rejects three
 * times in a row, or any other unexpected state, still stops the worker with a non-zero status
 * (crash-only fallback; a restart restores from the last committed batch).
 *
 * The model is reference-counted: SIGHUP or a change of the model file (polled every
 * model_watch_ms) loads the file again on the thread pool beside the serving model; a valid
 * one serves the batches started after the swap while batches in flight finish on the old
 * one; a refused file is logged and counted and the old model keeps serving.
 *
 * Operations: /metrics, /healthz, /readyz (model loaded, partitions assigned, database
 * connected, state in sync, Kafka reachable), /info; SIGTERM/SIGINT stop gracefully:
 * consumption pauses, pending events are scored and committed, the consumer leaves its group,
 * the DLQ producer flushes.
 */
#ifndef WK_WORKER_H
#define WK_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"
#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_worker_opts_s {
  const wk_pipeline_ops_t *pipeline; /* e.g. &wk_pipeline_fraud */
  const void *settings;       /* the pipeline's settings struct (env.settings), or NULL */
  const char *brokers;        /* Kafka bootstrap servers */
  const char *group;          /* consumer group; also the kafka_offsets key */
  const char *instance_id;    /* static group membership, or NULL/"" */
  const char *topic;          /* input, e.g. "sluice.fraud.events" */
  const char *dlq_topic;      /* e.g. "sluice.fraud.dlq" */
  const char *alerts_topic;   /* written into outbox rows, e.g. "sluice.fraud.alerts" */
  const char *pg_dsn;
  const char *pg_schema;      /* e.g. "sluice" */
  const char *http_address;
  unsigned http_port;         /* 0: ephemeral */
  const char *model_path;
  size_t batch_max;           /* events per batch at most */
  uint64_t batch_wait_ms;     /* longest wait of a partial batch */
  size_t max_event_bytes;     /* larger records are dead-lettered as oversize */
  const char *const *consumer_props; /* extra librdkafka properties {key, value, ..., NULL}
                                        (no key the worker sets itself), or NULL */
  const char *const *producer_props;
  int pg_lanes;               /* 1: one statement per batch on one session; 2: the RESULTS part
                                 of a batch on a second session beside the STATE part of the
                                 batch before (stmt.h) */
  size_t max_queued_events;   /* fetching pauses while this many events wait for scoring or
                                 PostgreSQL, and resumes at half */
  uint64_t model_watch_ms;    /* stat the model file this often and reload it on a change;
                                 0: only SIGHUP reloads */
  uint64_t kafka_error_grace_ms; /* consumer errors without any message for this long make
                                    the worker not-ready ("kafka") */
  /* Optional: re-reads the RELOADABLE settings on SIGHUP (before the model is reloaded) and
   * stores the current model.watch_interval in *watch_ms. Loop thread. */
  svc_err_t (*reload_settings)(void *data, uint64_t *watch_ms, char *errstr, size_t errstr_size);
  void *reload_data;
} wk_worker_opts_t;

/*
 * Runs the worker on a fresh loop until SIGTERM/SIGINT (returns SVC_OK after a graceful stop)
 * or a fatal error (returns it with errstr saying what happened: bad model, migration failure,
 * Kafka or PostgreSQL setup failure, a failed batch commit). Blocks the calling thread: it is
 * the program's main loop.
 */
svc_err_t wk_worker_run(const wk_worker_opts_t *opts, char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* WK_WORKER_H */
