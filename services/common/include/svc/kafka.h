/*
 * Kafka on the libuv loop: a consumer (kq_consumer) and a producer (kq_producer) whose
 * callbacks all run on the loop thread and which never block it.
 *
 * How the loop is woken: librdkafka writes a byte to a non-blocking pipe whenever the
 * consumer queue (or, for the producer, the main queue) goes from empty to non-empty
 * (rd_kafka_queue_io_event_enable); a uv_poll watches the read end. On readable we drain the
 * pipe and call rd_kafka_consumer_poll(rk, 0) / rd_kafka_poll(rk, 0) at most `max_per_wakeup`
 * times. Because librdkafka only writes on the empty -> non-empty edge, a wakeup that stops at
 * the bound schedules another pass on the next loop iteration (a 0 ms timer) instead of
 * waiting for a byte that will not come. The same timer also polls once a second while idle,
 * because librdkafka counts max.poll.interval.ms from the last poll call, not from the last
 * message: a quiet topic must not get the consumer thrown out of its group.
 *
 * Threads: every function here is for the loop thread only, unless it says otherwise, and
 * every callback runs on the loop thread. librdkafka's own log lines are forwarded to SVC_LOG
 * from librdkafka's threads (the logger is thread-safe).
 *
 * Errors: librdkafka codes are mapped to svc_err_t at this boundary (kq_err_from_rd); the
 * librdkafka text goes into the log line or the caller's errstr.
 */
#ifndef SVC_KAFKA_H
#define SVC_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Maps a librdkafka error to svc_err_t (NO_ERROR -> SVC_OK). Thread-safe. */
svc_err_t kq_err_from_rd(rd_kafka_resp_err_t err);

/* ---- consumer ------------------------------------------------------------- */

/*
 * The public part of a consumer: `data` is the user's. Everything else is private; create with
 * kq_consumer_new, release with kq_consumer_close.
 */
typedef struct kq_consumer_s {
  void *data;
} kq_consumer_t;

typedef enum {
  KQ_REBALANCE_ASSIGN = 0, /* partitions added to this member */
  KQ_REBALANCE_REVOKE = 1, /* partitions taken away in an orderly rebalance */
  KQ_REBALANCE_LOST = 2    /* partitions lost (session timed out): another member may already
                              own them, so work in flight for them must not be committed */
} kq_rebalance_kind_t;

typedef enum {
  KQ_REBALANCE_DONE = 0,  /* apply the (possibly edited) list now */
  KQ_REBALANCE_DEFER = 1  /* the user will call kq_consumer_rebalance_done later */
} kq_rebalance_action_t;

/*
 * A message for the user, who now owns it and must call rd_kafka_message_destroy(msg) on
 * every path (it may keep it, e.g. in a batch, until then). Messages handed out no longer
 * count against librdkafka's fetch queue limits, so a user that cannot keep up must say so
 * with kq_consumer_pause. Only messages without error are delivered here; consumer errors go
 * to on_error. The callback may call kq_consumer_close, kq_consumer_pause and
 * kq_consumer_resume.
 */
typedef void (*kq_message_cb)(kq_consumer_t *cons, rd_kafka_message_t *msg);

/*
 * A rebalance. `parts` is librdkafka's list, valid only during the callback.
 * - ASSIGN: the user may set parts->elems[i].offset to where consumption should start (e.g.
 *   the next offsets stored in PostgreSQL); RD_KAFKA_OFFSET_INVALID means "the committed
 *   offset, else auto.offset.reset". Return DONE to assign now. To look the offsets up
 *   asynchronously, copy the list (rd_kafka_topic_partition_list_copy), return DEFER, and call
 *   kq_consumer_rebalance_done with the copy when the offsets are known: nothing is fetched
 *   for these partitions until then. librdkafka allows the assign call outside the callback;
 *   it must come within max.poll.interval.ms.
 * - REVOKE / LOST: the user stops using these partitions (drop per-partition state; a batch in
 *   flight for a LOST partition must not be committed). DEFER works the same way.
 * With the cooperative protocol (the default, see kq_consumer_new) the lists are increments:
 * partitions not listed keep flowing. Without a rebalance callback, lists are applied as given.
 * During kq_consumer_close, REVOKE is still reported but DEFER is treated as DONE, and a
 * deferred rebalance not completed by then is completed with the list as it was given.
 */
typedef kq_rebalance_action_t (*kq_rebalance_cb)(kq_consumer_t *cons, kq_rebalance_kind_t kind,
                                                 rd_kafka_topic_partition_list_t *parts);

/* A consumer or client error: `fatal` means the consumer is unusable and must be closed. */
typedef void (*kq_consumer_error_cb)(kq_consumer_t *cons, svc_err_t err, const char *reason,
                                     bool fatal);

/* librdkafka statistics JSON (lag per partition is in topics.*.partitions.*.consumer_lag). */
typedef void (*kq_consumer_stats_cb)(kq_consumer_t *cons, const char *json, size_t len);

typedef struct kq_consumer_opts_s {
  const char *brokers;            /* bootstrap.servers; required */
  const char *group_id;           /* required */
  const char *const *topics;      /* NULL-terminated; required, at least one */
  const char *group_instance_id;  /* static membership when set (NULL: dynamic) */
  const char *auto_offset_reset;  /* NULL: "earliest" (nothing accepted is skipped) */
  int session_timeout_ms;         /* 0: 30000 */
  int max_poll_interval_ms;       /* 0: 300000 */
  int statistics_interval_ms;     /* 0: no statistics */
  /* Extra librdkafka properties, "key", "value", ..., NULL; applied last, so they override
   * every default above (including enable.auto.commit: be sure). */
  const char *const *props;
  unsigned max_per_wakeup;        /* messages handed out per loop wakeup; 0: 500 */
  int close_timeout_ms;           /* longest wait for leaving the group at close; 0: 10000 */
  kq_message_cb on_message;       /* required */
  kq_rebalance_cb on_rebalance;   /* optional */
  kq_consumer_error_cb on_error;  /* optional; errors are logged either way */
  kq_consumer_stats_cb on_stats;  /* optional */
  void *data;                     /* copied to cons->data */
} kq_consumer_opts_t;

/*
 * Creates a consumer on `loop` and subscribes it. Defaults, each chosen for the worker's
 * exactly-once design (offsets live in PostgreSQL, written in the batch transaction):
 *   enable.auto.commit=false, enable.auto.offset.store=false: Kafka's committed offsets are
 *     never the source of truth, so librdkafka must not advance them behind our back;
 *   partition.assignment.strategy=cooperative-sticky: a member joining or leaving moves only
 *     the partitions that must move, the others keep flowing with their in-memory per-key
 *     state intact (eager protocols stop the whole group on every change);
 *   session.timeout.ms=30000, heartbeat.interval.ms=3000: a dead member is noticed within
 *     30 s, and a restart of a statically named member (group.instance.id) within that time
 *     causes no rebalance at all;
 *   max.poll.interval.ms=300000 (we poll every wakeup and at least every second, so only a
 *     stalled loop trips it);
 *   enable.partition.eof=false; isolation.level=read_committed.
 * Before subscribing it fetches the topics' metadata (blocking, at most 2 s per topic, best
 * effort), so that partitions handed out at once can start fetching at once (kafka.c says
 * what the wait would otherwise be).
 * Returns SVC_OK, SVC_EINVAL (missing option) or SVC_ECONFIG (librdkafka rejected a property;
 * errstr says which), SVC_EKAFKA/SVC_EUV/SVC_EIO on setup failures. On failure nothing needs
 * closing (handles already opened are closed and freed by the loop's next run).
 */
svc_err_t kq_consumer_new(uv_loop_t *loop, const kq_consumer_opts_t *opts, kq_consumer_t **out,
                          char *errstr, size_t errstr_size);

/*
 * Completes a rebalance that the callback deferred: assigns (ASSIGN, with the offsets set in
 * `parts`) or unassigns (REVOKE/LOST). Does not take ownership of `parts`. Returns SVC_OK,
 * SVC_ECLOSED after close began (nothing done), or SVC_EKAFKA (logged).
 */
svc_err_t kq_consumer_rebalance_done(kq_consumer_t *cons, kq_rebalance_kind_t kind,
                                     const rd_kafka_topic_partition_list_t *parts);

/*
 * Back-pressure: stop / restart handing out messages (e.g. while a batch is being scored and
 * stored). Pausing pauses fetching of every assigned partition in librdkafka; the loop keeps
 * polling, so rebalances are still served and max.poll.interval.ms is kept. A message that
 * was already fetched when the pause took effect is kept and handed out first on resume.
 * Partitions assigned while paused are assigned only at resume (so keep pauses well below
 * max.poll.interval.ms); revoked ones are dropped together with their kept messages. Resume
 * continues each partition right after the last message handed out: nothing is skipped or
 * repeated. Both return SVC_OK (also when already in that state), SVC_ECLOSED, or SVC_EKAFKA.
 */
svc_err_t kq_consumer_pause(kq_consumer_t *cons);
svc_err_t kq_consumer_resume(kq_consumer_t *cons);
bool kq_consumer_paused(kq_consumer_t *cons);

/*
 * Commits `offsets` (next offsets to read) to Kafka asynchronously; the result is logged.
 * Only for lag monitoring: the worker's truth is in PostgreSQL. Returns SVC_OK or SVC_EKAFKA.
 */
svc_err_t kq_consumer_commit(kq_consumer_t *cons, const rd_kafka_topic_partition_list_t *offsets);

/* "COOPERATIVE" or "EAGER" (or "NONE" before the first rebalance). */
const char *kq_consumer_protocol(kq_consumer_t *cons);

/*
 * The librdkafka handle, for operations not wrapped here (rd_kafka_assignment, rd_kafka_seek,
 * pause/resume). Do not poll it, close it or destroy it. Valid until the close callback.
 */
rd_kafka_t *kq_consumer_rk(kq_consumer_t *cons);

typedef void (*kq_consumer_close_cb)(kq_consumer_t *cons);

/*
 * Leaves the group and releases everything, without blocking the loop: the close runs in
 * librdkafka's background (rd_kafka_consumer_close_queue) while the loop keeps serving its
 * events (a final REVOKE may be reported to on_rebalance; no more messages are delivered),
 * then rd_kafka_destroy runs on libuv's thread pool. `close_cb` (may be NULL) runs on the loop
 * thread when all is done; the consumer's memory is freed right after it returns. Leaving the
 * group takes a few milliseconds to a few hundred normally; if it has not finished after
 * close_timeout_ms the handle is destroyed without it (logged) and the group notices the
 * departure after session.timeout.ms. Messages you still hold (an unfinished batch) keep
 * references into the handle, and rd_kafka_destroy waits for them: `close_cb` comes only after
 * the last one is destroyed (the loop keeps running meanwhile).
 * Calling it twice is a no-op.
 */
void kq_consumer_close(kq_consumer_t *cons, kq_consumer_close_cb close_cb);

/* ---- producer -------------------------------------------------------------- */

typedef struct kq_producer_s {
  void *data;
} kq_producer_t;

typedef struct kq_header_s {
  const char *name;
  const void *value; /* may be NULL (a null header value) */
  size_t len;
} kq_header_t;

#define KQ_PARTITION_ANY (-1) /* the configured partitioner picks (by key) */

typedef struct kq_record_s {
  const char *topic;           /* required */
  int32_t partition;           /* KQ_PARTITION_ANY or a partition number */
  const void *key;             /* may be NULL */
  size_t key_len;
  const void *value;           /* may be NULL (a tombstone) */
  size_t value_len;
  const kq_header_t *headers;  /* n_headers entries, e.g. the DLQ's origin topic/partition/offset */
  size_t n_headers;
  int64_t timestamp_ms;        /* 0: now */
  void *opaque;                /* handed back in the delivery report */
} kq_record_t;

/*
 * A delivery report, on the loop thread: err is SVC_OK (msg->partition and msg->offset say
 * where it landed), SVC_ETIMEDOUT (message.timeout.ms passed), SVC_ECANCELED (purged at close)
 * or SVC_EKAFKA (see rd_kafka_err2str(msg->err), also logged). `msg` is borrowed for the call.
 */
typedef void (*kq_delivery_cb)(kq_producer_t *prod, const rd_kafka_message_t *msg, svc_err_t err,
                               void *opaque);
typedef void (*kq_producer_error_cb)(kq_producer_t *prod, svc_err_t err, const char *reason,
                                     bool fatal);

typedef struct kq_producer_opts_s {
  const char *brokers;                /* required */
  const char *const *props;           /* extra librdkafka properties, key, value, ..., NULL */
  unsigned max_per_wakeup;            /* rd_kafka_poll calls per wakeup; 0: 100 */
  kq_delivery_cb on_delivery;         /* optional (then failures are only logged) */
  kq_producer_error_cb on_error;      /* optional */
  void *data;
} kq_producer_opts_t;

/*
 * Creates a producer on `loop`. Defaults: enable.idempotence=true (acks=all, no duplicates or
 * reordering from retries: the DLQ and alert relay must not invent events), linger.ms=5,
 * message.timeout.ms=30000. Returns like kq_consumer_new.
 */
svc_err_t kq_producer_new(uv_loop_t *loop, const kq_producer_opts_t *opts, kq_producer_t **out,
                          char *errstr, size_t errstr_size);

/*
 * Queues one record (key, value and headers are copied). Returns SVC_OK (exactly one delivery
 * report will follow), SVC_EAGAIN when librdkafka's queue is full (retry after some delivery
 * reports), SVC_ECLOSED after close began, SVC_EINVAL/SVC_EKAFKA otherwise (logged; no report).
 */
svc_err_t kq_producer_send(kq_producer_t *prod, const kq_record_t *rec);

/* Records queued or in flight (not yet reported). */
size_t kq_producer_outq_len(kq_producer_t *prod);

rd_kafka_t *kq_producer_rk(kq_producer_t *prod);

/* n_undelivered: records purged because the flush did not finish within the timeout. */
typedef void (*kq_producer_close_cb)(kq_producer_t *prod, size_t n_undelivered);

/*
 * Flushes and releases the producer without blocking the loop: waits on the loop (serving
 * delivery reports) until every record is reported or `timeout_ms` passes, then purges what is
 * left (each gets a SVC_ECANCELED report), destroys the handle on the thread pool and calls
 * `close_cb` (may be NULL) on the loop thread; memory is freed right after it returns.
 * Calling it twice is a no-op.
 */
void kq_producer_close(kq_producer_t *prod, int timeout_ms, kq_producer_close_cb close_cb);

/* ---- administration (blocking; tools and tests only) ------------------------- */

/*
 * Creates `topic` with `partitions` partitions and replication factor `replication`, waiting
 * up to timeout_ms. BLOCKS the calling thread: call it before the loop runs, never from a loop
 * callback. Returns SVC_OK, SVC_EKAFKA (errstr has the broker's reason; an existing topic is an
 * error) or SVC_ETIMEDOUT.
 */
svc_err_t kq_topic_create(const char *brokers, const char *topic, int partitions, int replication,
                          int timeout_ms, char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* SVC_KAFKA_H */
