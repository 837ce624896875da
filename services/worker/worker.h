/*
 * The fraud worker: one libuv loop that consumes sluice.fraud.events, validates each event
 * (bad ones go to the dead-letter topic with reason and origin headers), updates the card's
 * velocity state, builds the model input, micro-batches, scores each batch with the model on
 * libuv's thread pool, decides, and writes each batch exactly once into PostgreSQL in one
 * statement (results, changed card state, alerts into the outbox, next offsets). On partition
 * assignment it restores the partitions' offsets and card state from PostgreSQL and seeks
 * there; Kafka's own committed offsets are written afterwards for lag monitoring only.
 *
 * Batches are committed one at a time, in order, so that a batch is committed only after
 * every earlier batch (offsets never skip an uncommitted event); scoring the next batch
 * overlaps the commit of the previous one. A failed or unknown commit
 * (PostgreSQL down, connection lost mid-commit) stops the worker with a non-zero status: the
 * in-memory card state is then ahead of the database, and a restart restores both from the
 * last committed batch (crash-only recovery; the orchestrator restarts the process).
 *
 * Operations: /metrics, /healthz, /readyz (model loaded, partitions assigned, database
 * connected), /info; SIGTERM/SIGINT stop gracefully: consumption pauses, pending events are
 * scored and committed, the consumer leaves its group, the DLQ producer flushes.
 */
#ifndef WK_WORKER_H
#define WK_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_worker_opts_s {
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
  size_t max_queued_events;   /* fetching pauses while this many events wait for scoring or
                                 PostgreSQL, and resumes at half */
  double review_threshold;    /* < 0: half the block threshold */
  double block_threshold;     /* < 0: the model card's threshold */
  double explain_threshold;   /* explain rows scoring at least this; < 0: the review threshold */
  const char *domain;         /* "fraud" */
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
