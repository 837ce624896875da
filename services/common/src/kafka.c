/*
 * The Kafka adapter of svc/kafka.h: librdkafka consumer and producer driven by the libuv loop
 * through queue io-events on a pipe, with rebalances, delivery reports, errors and statistics
 * delivered on the loop thread, and closes that never block the loop.
 */
#include "svc/kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svc/log.h"

/* Idle polling period: keeps max.poll.interval.ms satisfied on a quiet topic. */
#define KQ_IDLE_POLL_MS 1000
/* While closing: how often to check whether the close has finished. */
#define KQ_CLOSE_CHECK_MS 20

typedef enum { ST_OPEN = 0, ST_CLOSING, ST_DESTROYING, ST_DONE } state_t;

static void set_err(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t size, const char *fmt, ...) {
  if (errstr == NULL || size == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errstr, size, fmt, ap);
  va_end(ap);
}

svc_err_t kq_err_from_rd(rd_kafka_resp_err_t err) {
  switch (err) {
  case RD_KAFKA_RESP_ERR_NO_ERROR: return SVC_OK;
  case RD_KAFKA_RESP_ERR__QUEUE_FULL: return SVC_EAGAIN;
  case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
  case RD_KAFKA_RESP_ERR__TIMED_OUT:
  case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT: return SVC_ETIMEDOUT;
  case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
  case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT: return SVC_ECANCELED;
  case RD_KAFKA_RESP_ERR__INVALID_ARG: return SVC_EINVAL;
  case RD_KAFKA_RESP_ERR__DESTROY: return SVC_ECLOSED;
  case RD_KAFKA_RESP_ERR__BAD_MSG: return SVC_EDECODE;
  default: return SVC_EKAFKA;
  }
}

/* ---- shared glue ------------------------------------------------------------ */

/* librdkafka's log lines, from any librdkafka thread. */
static void rd_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  svc_log_level_t l = level <= 3 ? SVC_LOG_ERROR : level <= 4 ? SVC_LOG_WARN
                      : level <= 6 ? SVC_LOG_INFO : SVC_LOG_DEBUG;
  SVC_LOG(l, "librdkafka", "client=%s facility=%s text=\"%s\"", rd_kafka_name(rk), fac,
          buf);
}

static svc_err_t conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, char *errstr,
                          size_t errstr_size) {
  char rderr[512];
  if (rd_kafka_conf_set(conf, key, val, rderr, sizeof rderr) != RD_KAFKA_CONF_OK) {
    set_err(errstr, errstr_size, "librdkafka property %s=\"%s\": %s", key, val, rderr);
    return SVC_ECONFIG;
  }
  return SVC_OK;
}

static svc_err_t conf_set_props(rd_kafka_conf_t *conf, const char *const *props, char *errstr,
                                size_t errstr_size) {
  for (size_t i = 0; props != NULL && props[i] != NULL; i += 2) {
    if (props[i + 1] == NULL) {
      set_err(errstr, errstr_size, "librdkafka property %s has no value (props must be pairs)",
              props[i]);
      return SVC_EINVAL;
    }
    svc_err_t rc = conf_set(conf, props[i], props[i + 1], errstr, errstr_size);
    if (rc != SVC_OK) return rc;
  }
  return SVC_OK;
}

/* Reads and discards every wakeup byte librdkafka wrote. */
static void drain_pipe(int fd) {
  char buf[256];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    break; /* EAGAIN: empty */
  }
}

static int make_pipe(int fds[2]) {
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return -1;
  return 0;
}

static void close_pipe(int fds[2]) {
  if (fds[0] >= 0) close(fds[0]);
  if (fds[1] >= 0) close(fds[1]);
  fds[0] = fds[1] = -1;
}

/*
 * Wires a librdkafka queue into the loop, for the consumer and the producer alike: librdkafka
 * writes `wake` into a non-blocking pipe when the queue goes from empty to non-empty, uv_poll
 * watches the pipe's read end, and an idle timer polls every KQ_IDLE_POLL_MS anyway (so that
 * a quiet topic still keeps max.poll.interval.ms satisfied). Each handle initialised counts in
 * *handles_open, so that the caller's close path closes exactly those. `who` names the client
 * in errors ("kafka consumer").
 */
static svc_err_t wire_queue(uv_loop_t *loop, rd_kafka_queue_t *q, int fds[2], char wake,
                            uv_poll_t *poll, uv_poll_cb poll_cb, uv_timer_t *timer,
                            uv_timer_cb timer_cb, void *data, int *handles_open, const char *who,
                            char *errstr, size_t errstr_size) {
  if (make_pipe(fds) != 0) {
    set_err(errstr, errstr_size, "%s: pipe: %s", who, strerror(errno));
    return SVC_EIO;
  }
  rd_kafka_queue_io_event_enable(q, fds[1], &wake, 1); /* the payload is copied */
  int uerr = uv_poll_init(loop, poll, fds[0]);
  if (uerr == 0) {
    (*handles_open)++;
    poll->data = data;
    uerr = uv_timer_init(loop, timer);
  }
  if (uerr == 0) {
    (*handles_open)++;
    timer->data = data;
    uerr = uv_poll_start(poll, UV_READABLE, poll_cb);
  }
  if (uerr == 0) uerr = uv_timer_start(timer, timer_cb, KQ_IDLE_POLL_MS, KQ_IDLE_POLL_MS);
  if (uerr != 0) {
    set_err(errstr, errstr_size, "%s: libuv: %s", who, uv_strerror(uerr));
    return svc_err_from_uv(uerr);
  }
  return SVC_OK;
}

/* ---- consumer --------------------------------------------------------------- */

typedef struct {
  kq_consumer_t pub; /* first: the public pointer is the private one */
  uv_loop_t *loop;
  rd_kafka_t *rk;
  rd_kafka_queue_t *q;       /* the consumer queue (main queue forwarded to it) */
  rd_kafka_queue_t *close_q; /* events during rd_kafka_consumer_close_queue */
  int fds[2];
  uv_poll_t poll;
  uv_timer_t timer;
  uv_work_t destroy_work;
  int handles_open;
  state_t state;
  unsigned max_per_wakeup;
  kq_message_cb on_message;
  kq_rebalance_cb on_rebalance;
  kq_consumer_error_cb on_error;
  kq_consumer_stats_cb on_stats;
  kq_consumer_close_cb close_cb;
  /* Back-pressure (kq_consumer_pause): */
  bool paused;
  rd_kafka_topic_partition_list_t *pending; /* assigned by the group while paused, not applied */
  rd_kafka_message_t **stash;               /* fetched before the pause took effect */
  size_t n_stash, cap_stash;
  uint64_t close_timeout_ms, close_deadline;
  bool close_timed_out;
  /* A rebalance the user deferred and has not completed yet (completed at close if need be). */
  rd_kafka_topic_partition_list_t *deferred;
  kq_rebalance_kind_t deferred_kind;
} cons_t;

static bool is_cooperative(cons_t *c) {
  const char *proto = rd_kafka_rebalance_protocol(c->rk);
  return proto != NULL && strcmp(proto, "COOPERATIVE") == 0;
}

/* Assigns or unassigns in librdkafka, incrementally under the cooperative protocol. */
static svc_err_t rd_apply(cons_t *c, bool assign, const rd_kafka_topic_partition_list_t *parts) {
  const char *what = assign ? "assign" : "unassign";
  if (is_cooperative(c)) {
    rd_kafka_error_t *e = assign ? rd_kafka_incremental_assign(c->rk, parts)
                                 : rd_kafka_incremental_unassign(c->rk, parts);
    if (e != NULL) {
      SVC_LOG(SVC_LOG_ERROR, "kafka incremental rebalance failed", "op=%s err=\"%s\"", what,
              rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
      return SVC_EKAFKA;
    }
    return SVC_OK;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, assign ? parts : NULL);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    SVC_LOG(SVC_LOG_ERROR, "kafka rebalance failed", "op=%s err=\"%s\"", what,
            rd_kafka_err2str(err));
    return kq_err_from_rd(err);
  }
  return SVC_OK;
}

/* Drops stashed messages of partitions that are going away: they must not be delivered. */
static void stash_drop(cons_t *c, const rd_kafka_topic_partition_list_t *parts) {
  size_t w = 0;
  for (size_t i = 0; i < c->n_stash; i++) {
    rd_kafka_message_t *m = c->stash[i];
    if (rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt), m->partition)) {
      rd_kafka_message_destroy(m);
      continue;
    }
    c->stash[w++] = m;
  }
  c->n_stash = w;
}

/*
 * Applies a rebalance. While paused, assignments are held back in c->pending (assigning and
 * pausing right after can lose the assigned offset in librdkafka, issue 2190) and applied by
 * kq_consumer_resume; revocations remove held-back partitions and unassign the rest.
 */
static svc_err_t apply_rebalance(cons_t *c, kq_rebalance_kind_t kind,
                                 const rd_kafka_topic_partition_list_t *parts) {
  bool coop = is_cooperative(c);
  if (kind == KQ_REBALANCE_ASSIGN) {
    if (!c->paused || c->state != ST_OPEN) return rd_apply(c, true, parts);
    if (!coop || c->pending == NULL) {
      if (c->pending != NULL) rd_kafka_topic_partition_list_destroy(c->pending);
      c->pending = rd_kafka_topic_partition_list_copy(parts);
    } else {
      for (int k = 0; k < parts->cnt; k++) {
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(
            c->pending, parts->elems[k].topic, parts->elems[k].partition);
        tp->offset = parts->elems[k].offset;
      }
    }
    SVC_LOG(SVC_LOG_INFO, "kafka assignment held back while paused", "partitions=%d",
            parts->cnt);
    return SVC_OK;
  }
  stash_drop(c, parts);
  if (c->pending == NULL) return rd_apply(c, false, parts);
  if (!coop) {
    rd_kafka_topic_partition_list_destroy(c->pending);
    c->pending = NULL;
    return rd_apply(c, false, parts);
  }
  rd_kafka_topic_partition_list_t *rest = rd_kafka_topic_partition_list_new(parts->cnt);
  for (int k = 0; k < parts->cnt; k++) {
    const rd_kafka_topic_partition_t *tp = &parts->elems[k];
    if (!rd_kafka_topic_partition_list_del(c->pending, tp->topic, tp->partition))
      rd_kafka_topic_partition_list_add(rest, tp->topic, tp->partition);
  }
  /* Even an empty list is passed on: librdkafka waits for every rebalance to be acknowledged. */
  svc_err_t rc = rd_apply(c, false, rest);
  rd_kafka_topic_partition_list_destroy(rest);
  return rc;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  cons_t *c = opaque;
  kq_rebalance_kind_t kind = KQ_REBALANCE_ASSIGN;
  if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
    kind = rd_kafka_assignment_lost(rk) ? KQ_REBALANCE_LOST : KQ_REBALANCE_REVOKE;
  SVC_LOG(SVC_LOG_INFO, "kafka rebalance", "client=%s kind=%s partitions=%d protocol=%s",
          rd_kafka_name(rk),
          kind == KQ_REBALANCE_ASSIGN ? "assign" : kind == KQ_REBALANCE_LOST ? "lost" : "revoke",
          parts->cnt, rd_kafka_rebalance_protocol(rk) ? rd_kafka_rebalance_protocol(rk) : "NONE");
  kq_rebalance_action_t action = KQ_REBALANCE_DONE;
  bool tell = c->on_rebalance != NULL &&
              (c->state == ST_OPEN || kind != KQ_REBALANCE_ASSIGN);
  if (tell) action = c->on_rebalance(&c->pub, kind, parts);
  if (action == KQ_REBALANCE_DEFER && c->state == ST_OPEN) {
    if (c->deferred != NULL) rd_kafka_topic_partition_list_destroy(c->deferred);
    c->deferred = rd_kafka_topic_partition_list_copy(parts);
    c->deferred_kind = kind;
    return;
  }
  apply_rebalance(c, kind, parts);
}

static void cons_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  cons_t *c = opaque;
  bool fatal = err == RD_KAFKA_RESP_ERR__FATAL;
  char fbuf[512];
  if (fatal) {
    rd_kafka_fatal_error(rk, fbuf, sizeof fbuf);
    reason = fbuf;
  }
  SVC_LOG(fatal ? SVC_LOG_ERROR : SVC_LOG_WARN, "kafka consumer error",
          "client=%s code=%s err=\"%s\" fatal=%s", rd_kafka_name(rk),
          rd_kafka_err2name((rd_kafka_resp_err_t)err), reason, fatal ? "true" : "false");
  if (c->on_error != NULL && c->state == ST_OPEN)
    c->on_error(&c->pub, kq_err_from_rd((rd_kafka_resp_err_t)err), reason, fatal);
}

static int cons_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk;
  cons_t *c = opaque;
  if (c->on_stats != NULL && c->state == ST_OPEN) c->on_stats(&c->pub, json, len);
  return 0; /* librdkafka frees json */
}

static void cons_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *offsets, void *opaque) {
  (void)rk;
  (void)opaque;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
    SVC_LOG(SVC_LOG_WARN, "kafka offset commit failed", "partitions=%d err=\"%s\"",
            offsets ? offsets->cnt : 0, rd_kafka_err2str(err));
}

static void cons_timer_cb(uv_timer_t *t);
static void cons_close_step(cons_t *c);

/* Serves the consumer queue: at most max_per_wakeup messages, then yields to the loop. */
static void cons_drain(cons_t *c) {
  drain_pipe(c->fds[0]);
  if (c->state == ST_CLOSING) {
    cons_close_step(c);
    return;
  }
  if (c->state != ST_OPEN) return;
  unsigned n = 0;
  while (n < c->max_per_wakeup && c->state == ST_OPEN) {
    /* While paused we still poll (rebalances, max.poll.interval.ms) but hand out nothing. */
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
    if (m == NULL) break;
    n++;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        const char *topic = m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "";
        SVC_LOG(SVC_LOG_WARN, "kafka consume error", "topic=%s partition=%d err=\"%s\"", topic,
                (int)m->partition, rd_kafka_message_errstr(m));
        if (c->on_error != NULL)
          c->on_error(&c->pub, kq_err_from_rd(m->err), rd_kafka_message_errstr(m), false);
      }
      rd_kafka_message_destroy(m);
      continue;
    }
    if (c->paused) {
      if (c->n_stash == c->cap_stash) {
        size_t cap = c->cap_stash ? 2 * c->cap_stash : 64;
        rd_kafka_message_t **v = realloc(c->stash, cap * sizeof *v);
        if (v == NULL) abort();
        c->stash = v;
        c->cap_stash = cap;
      }
      c->stash[c->n_stash++] = m;
      continue;
    }
    c->on_message(&c->pub, m);
  }
  /* Stopped at the bound with the queue maybe non-empty: librdkafka writes a wakeup byte only
   * on the empty -> non-empty edge, so come back on the next loop iteration by ourselves. */
  if (c->state == ST_OPEN && n == c->max_per_wakeup)
    uv_timer_start(&c->timer, cons_timer_cb, 0, KQ_IDLE_POLL_MS);
}

static void cons_poll_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  cons_t *c = h->data;
  if (status < 0)
    SVC_LOG(SVC_LOG_WARN, "kafka wakeup pipe poll error", "err=\"%s\"", uv_strerror(status));
  cons_drain(c);
}

static void cons_timer_cb(uv_timer_t *t) { cons_drain(t->data); }

static void cons_handle_closed(uv_handle_t *h) {
  cons_t *c = h->data;
  if (--c->handles_open > 0) return;
  close_pipe(c->fds);
  free(c->stash);
  c->state = ST_DONE;
  if (c->close_cb != NULL) c->close_cb(&c->pub);
  free(c);
}

static void cons_destroy_work(uv_work_t *w) {
  cons_t *c = w->data;
  /* After the finished close this only joins librdkafka's threads. */
  rd_kafka_destroy_flags(c->rk, c->close_timed_out ? RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE : 0);
}

static void cons_destroy_done(uv_work_t *w, int status) {
  (void)status;
  cons_t *c = w->data;
  c->rk = NULL;
  SVC_LOG(SVC_LOG_DEBUG, "kafka consumer destroyed");
  uv_close((uv_handle_t *)&c->poll, cons_handle_closed);
  uv_close((uv_handle_t *)&c->timer, cons_handle_closed);
}

/* While closing: serve the close queue and finish once librdkafka says the close is done. */
static void cons_close_step(cons_t *c) {
  for (;;) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(c->close_q, 0);
    if (ev == NULL) break;
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) {
      /* Served as an event rather than through rebalance_cb: apply it the same way. */
      rebalance_cb(c->rk, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev), c);
    }
    rd_kafka_event_destroy(ev);
  }
  /* Messages fetched before the close are not delivered any more. */
  for (;;) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(c->q, 0);
    if (ev == NULL) break;
    rd_kafka_event_destroy(ev);
  }
  if (!rd_kafka_consumer_closed(c->rk)) {
    if (uv_now(c->loop) < c->close_deadline) return;
    /* Leaving the group is stuck: give up on it rather than on the process. The group notices
     * the departure after session.timeout.ms instead. */
    SVC_LOG(SVC_LOG_WARN, "kafka consumer close did not finish, destroying without it",
            "client=%s timeout_ms=%llu", rd_kafka_name(c->rk),
            (unsigned long long)c->close_timeout_ms);
    c->close_timed_out = true;
  }
  c->state = ST_DESTROYING;
  for (size_t i = 0; i < c->n_stash; i++) rd_kafka_message_destroy(c->stash[i]);
  c->n_stash = 0;
  if (c->pending != NULL) rd_kafka_topic_partition_list_destroy(c->pending);
  c->pending = NULL;
  uv_timer_stop(&c->timer);
  uv_poll_stop(&c->poll);
  rd_kafka_queue_io_event_enable(c->close_q, -1, NULL, 0);
  rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
  rd_kafka_queue_destroy(c->close_q);
  rd_kafka_queue_destroy(c->q);
  c->close_q = c->q = NULL;
  SVC_LOG(SVC_LOG_INFO, "kafka consumer left the group", "client=%s", rd_kafka_name(c->rk));
  c->destroy_work.data = c;
  int rc = uv_queue_work(c->loop, &c->destroy_work, cons_destroy_work, cons_destroy_done);
  if (rc != 0) {
    /* No thread pool: destroy inline, it is quick after the close finished. */
    cons_destroy_work(&c->destroy_work);
    cons_destroy_done(&c->destroy_work, 0);
  }
}

/*
 * Asks the cluster for the subscribed topics' partition leaders before subscribing, so that
 * they are known when the group hands the partitions out. Without it the assignment can come
 * first: a partition that has no stored offset then has to look its start up (ListOffsets)
 * while librdkafka has no leader for it, and librdkafka waits a fixed 500 ms before it tries
 * again. Measured on a fresh worker (fraud, 4000 events/s): half of the partitions started
 * fetching 513 ms after the assignment, and the first second's events waited up to 340 ms
 * (p99 of the whole run 345 ms against 50 ms once warm). Best effort, bounded: a broker that is
 * down only costs this wait (the consumer then starts as before). Regex subscriptions ("^...")
 * are left to librdkafka.
 */
static void warm_metadata(rd_kafka_t *rk, const char *const *topics, size_t n_topics) {
  const int timeout_ms = 2000;
  for (size_t i = 0; i < n_topics; i++) {
    if (topics[i][0] == '^') continue;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[i], NULL);
    if (rkt == NULL) continue;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      SVC_LOG(SVC_LOG_WARN, "kafka topic metadata not fetched before subscribing",
              "topic=%s err=\"%s\"", topics[i], rd_kafka_err2str(err));
    if (md != NULL) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
  }
}

svc_err_t kq_consumer_new(uv_loop_t *loop, const kq_consumer_opts_t *o, kq_consumer_t **out,
                          char *errstr, size_t errstr_size) {
  *out = NULL;
  if (o->brokers == NULL || o->group_id == NULL || o->topics == NULL || o->topics[0] == NULL ||
      o->on_message == NULL) {
    set_err(errstr, errstr_size, "kafka consumer: brokers, group_id, topics and on_message are required");
    return SVC_EINVAL;
  }
  cons_t *c = calloc(1, sizeof *c);
  if (c == NULL) return SVC_ENOMEM;
  c->pub.data = o->data;
  c->loop = loop;
  c->fds[0] = c->fds[1] = -1;
  c->max_per_wakeup = o->max_per_wakeup ? o->max_per_wakeup : 500;
  c->on_message = o->on_message;
  c->on_rebalance = o->on_rebalance;
  c->on_error = o->on_error;
  c->on_stats = o->on_stats;
  c->close_timeout_ms = o->close_timeout_ms > 0 ? (uint64_t)o->close_timeout_ms : 10000;
  svc_err_t rc;
  char num[32], rderr[512];
  rd_kafka_topic_partition_list_t *subs = NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if ((rc = conf_set(conf, "bootstrap.servers", o->brokers, errstr, errstr_size)) ||
      (rc = conf_set(conf, "group.id", o->group_id, errstr, errstr_size)) ||
      (rc = conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size)) ||
      (rc = conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size)) ||
      (rc = conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", errstr, errstr_size)) ||
      (rc = conf_set(conf, "heartbeat.interval.ms", "3000", errstr, errstr_size)) ||
      (rc = conf_set(conf, "enable.partition.eof", "false", errstr, errstr_size)) ||
      (rc = conf_set(conf, "isolation.level", "read_committed", errstr, errstr_size)) ||
      /* Fetch requests are small and latency is the point: no Nagle delay on them. */
      (rc = conf_set(conf, "socket.nagle.disable", "true", errstr, errstr_size)) ||
      (rc = conf_set(conf, "auto.offset.reset", o->auto_offset_reset ? o->auto_offset_reset : "earliest",
                     errstr, errstr_size)))
    goto fail;
  snprintf(num, sizeof num, "%d", o->session_timeout_ms > 0 ? o->session_timeout_ms : 30000);
  if ((rc = conf_set(conf, "session.timeout.ms", num, errstr, errstr_size))) goto fail;
  snprintf(num, sizeof num, "%d", o->max_poll_interval_ms > 0 ? o->max_poll_interval_ms : 300000);
  if ((rc = conf_set(conf, "max.poll.interval.ms", num, errstr, errstr_size))) goto fail;
  if (o->statistics_interval_ms > 0) {
    snprintf(num, sizeof num, "%d", o->statistics_interval_ms);
    if ((rc = conf_set(conf, "statistics.interval.ms", num, errstr, errstr_size))) goto fail;
  }
  if (o->group_instance_id != NULL &&
      (rc = conf_set(conf, "group.instance.id", o->group_instance_id, errstr, errstr_size)))
    goto fail;
  if ((rc = conf_set_props(conf, o->props, errstr, errstr_size))) goto fail;
  rd_kafka_conf_set_opaque(conf, c);
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  rd_kafka_conf_set_error_cb(conf, cons_error_cb);
  rd_kafka_conf_set_stats_cb(conf, cons_stats_cb);
  rd_kafka_conf_set_offset_commit_cb(conf, cons_commit_cb);
  rd_kafka_conf_set_log_cb(conf, rd_log_cb);

  c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rderr, sizeof rderr);
  if (c->rk == NULL) {
    set_err(errstr, errstr_size, "kafka consumer: %s", rderr);
    rc = SVC_ECONFIG;
    goto fail;
  }
  conf = NULL; /* owned by rk now */
  /* Errors, stats and rebalances from the main queue arrive through the consumer queue. */
  rd_kafka_poll_set_consumer(c->rk);
  c->q = rd_kafka_queue_get_consumer(c->rk);
  rc = wire_queue(loop, c->q, c->fds, 'k', &c->poll, cons_poll_cb, &c->timer, cons_timer_cb, c,
                  &c->handles_open, "kafka consumer", errstr, errstr_size);
  if (rc != SVC_OK) goto fail;

  size_t n_topics = 0;
  while (o->topics[n_topics] != NULL) n_topics++;
  warm_metadata(c->rk, o->topics, n_topics);
  subs = rd_kafka_topic_partition_list_new((int)n_topics);
  for (size_t i = 0; i < n_topics; i++)
    rd_kafka_topic_partition_list_add(subs, o->topics[i], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, subs);
  rd_kafka_topic_partition_list_destroy(subs);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    set_err(errstr, errstr_size, "kafka consumer: subscribe: %s", rd_kafka_err2str(err));
    rc = kq_err_from_rd(err);
    goto fail;
  }
  SVC_LOG(SVC_LOG_INFO, "kafka consumer started", "client=%s group=%s topics=%zu first_topic=%s",
          rd_kafka_name(c->rk), o->group_id, n_topics, o->topics[0]);
  *out = &c->pub;
  return SVC_OK;

fail:
  if (conf != NULL) rd_kafka_conf_destroy(conf);
  if (c->rk != NULL) {
    if (c->q != NULL) {
      rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
      rd_kafka_queue_destroy(c->q);
    }
    /* Not subscribed yet (or subscribe failed): close returns at once. */
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    c->rk = NULL;
  }
  if (c->handles_open > 0) {
    /* The handles were initialised: free the rest in their close callbacks. */
    c->close_cb = NULL;
    uv_close((uv_handle_t *)&c->poll, cons_handle_closed);
    if (c->handles_open > 1) uv_close((uv_handle_t *)&c->timer, cons_handle_closed);
    return rc;
  }
  close_pipe(c->fds);
  free(c);
  return rc;
}

svc_err_t kq_consumer_rebalance_done(kq_consumer_t *cons, kq_rebalance_kind_t kind,
                                     const rd_kafka_topic_partition_list_t *parts) {
  cons_t *c = (cons_t *)cons;
  if (c->state != ST_OPEN) return SVC_ECLOSED;
  if (c->deferred != NULL) {
    rd_kafka_topic_partition_list_destroy(c->deferred);
    c->deferred = NULL;
  }
  return apply_rebalance(c, kind, parts);
}

svc_err_t kq_consumer_commit(kq_consumer_t *cons, const rd_kafka_topic_partition_list_t *offsets) {
  cons_t *c = (cons_t *)cons;
  if (c->state != ST_OPEN) return SVC_ECLOSED;
  rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, offsets, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    SVC_LOG(SVC_LOG_WARN, "kafka commit failed", "err=\"%s\"", rd_kafka_err2str(err));
    return kq_err_from_rd(err);
  }
  return SVC_OK;
}

svc_err_t kq_consumer_pause(kq_consumer_t *cons) {
  cons_t *c = (cons_t *)cons;
  if (c->state != ST_OPEN) return SVC_ECLOSED;
  if (c->paused) return SVC_OK;
  c->paused = true;
  rd_kafka_topic_partition_list_t *cur = NULL;
  rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &cur);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && cur->cnt > 0) err = rd_kafka_pause_partitions(c->rk, cur);
  if (cur != NULL) rd_kafka_topic_partition_list_destroy(cur);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    SVC_LOG(SVC_LOG_ERROR, "kafka pause failed", "err=\"%s\"", rd_kafka_err2str(err));
    return kq_err_from_rd(err);
  }
  return SVC_OK;
}

svc_err_t kq_consumer_resume(kq_consumer_t *cons) {
  cons_t *c = (cons_t *)cons;
  if (c->state != ST_OPEN) return SVC_ECLOSED;
  if (!c->paused) return SVC_OK;
  c->paused = false;
  svc_err_t rc = SVC_OK;
  rd_kafka_topic_partition_list_t *cur = NULL;
  rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &cur);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && cur->cnt > 0) err = rd_kafka_resume_partitions(c->rk, cur);
  if (cur != NULL) rd_kafka_topic_partition_list_destroy(cur);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    SVC_LOG(SVC_LOG_ERROR, "kafka resume failed", "err=\"%s\"", rd_kafka_err2str(err));
    rc = kq_err_from_rd(err);
  }
  if (c->pending != NULL) {
    rd_kafka_topic_partition_list_t *p = c->pending;
    c->pending = NULL;
    svc_err_t r2 = rd_apply(c, true, p);
    rd_kafka_topic_partition_list_destroy(p);
    if (rc == SVC_OK) rc = r2;
  }
  /* Hand out what arrived before the pause took effect, in order, unless paused again. */
  size_t i = 0;
  while (i < c->n_stash && !c->paused && c->state == ST_OPEN) c->on_message(&c->pub, c->stash[i++]);
  if (i > 0) {
    memmove(c->stash, c->stash + i, (c->n_stash - i) * sizeof *c->stash);
    c->n_stash -= i;
  }
  if (c->state == ST_OPEN) uv_timer_start(&c->timer, cons_timer_cb, 0, KQ_IDLE_POLL_MS);
  return rc;
}

bool kq_consumer_paused(kq_consumer_t *cons) { return ((cons_t *)cons)->paused; }

const char *kq_consumer_protocol(kq_consumer_t *cons) {
  const char *p = rd_kafka_rebalance_protocol(((cons_t *)cons)->rk);
  return p != NULL ? p : "NONE";
}

rd_kafka_t *kq_consumer_rk(kq_consumer_t *cons) { return ((cons_t *)cons)->rk; }

void kq_consumer_close(kq_consumer_t *cons, kq_consumer_close_cb close_cb) {
  cons_t *c = (cons_t *)cons;
  if (c->state != ST_OPEN) return;
  c->state = ST_CLOSING;
  c->close_cb = close_cb;
  c->close_deadline = uv_now(c->loop) + c->close_timeout_ms;
  if (c->deferred != NULL) {
    /* A deferred rebalance never completed: the group waits for it, so complete it as given. */
    apply_rebalance(c, c->deferred_kind, c->deferred);
    rd_kafka_topic_partition_list_destroy(c->deferred);
    c->deferred = NULL;
  }
  if (c->pending != NULL) {
    /* The group waits for this assignment to be acknowledged; do so, so that it can end. */
    rd_apply(c, true, c->pending);
    rd_kafka_topic_partition_list_destroy(c->pending);
    c->pending = NULL;
  }
  c->close_q = rd_kafka_queue_new(c->rk);
  static const char wake = 'c';
  rd_kafka_queue_io_event_enable(c->close_q, c->fds[1], &wake, 1);
  rd_kafka_error_t *e = rd_kafka_consumer_close_queue(c->rk, c->close_q);
  if (e != NULL) {
    SVC_LOG(SVC_LOG_WARN, "kafka consumer close reported an error", "err=\"%s\"",
            rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  /* Also check on a timer: the close may finish without queueing anything. */
  uv_timer_start(&c->timer, cons_timer_cb, 0, KQ_CLOSE_CHECK_MS);
}

/* ---- producer --------------------------------------------------------------- */

typedef struct {
  kq_producer_t pub; /* first: the public pointer is the private one */
  uv_loop_t *loop;
  rd_kafka_t *rk;
  rd_kafka_queue_t *mainq;
  int fds[2];
  uv_poll_t poll;
  uv_timer_t timer;
  uv_work_t destroy_work;
  int handles_open;
  state_t state;
  unsigned max_per_wakeup;
  uint64_t close_deadline;
  bool flush_started;
  size_t n_purged;
  kq_delivery_cb on_delivery;
  kq_producer_error_cb on_error;
  kq_producer_close_cb close_cb;
} prod_t;

static void prod_timer_cb(uv_timer_t *t);
static void prod_close_step(prod_t *p);

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  prod_t *p = opaque;
  svc_err_t err = kq_err_from_rd(m->err);
  if (err == SVC_ECANCELED) p->n_purged++;
  if (err != SVC_OK && err != SVC_ECANCELED)
    SVC_LOG(SVC_LOG_WARN, "kafka delivery failed", "topic=%s err=\"%s\"",
            rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
  if (p->on_delivery != NULL) p->on_delivery(&p->pub, m, err, m->_private);
}

static void prod_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  prod_t *p = opaque;
  bool fatal = err == RD_KAFKA_RESP_ERR__FATAL;
  char fbuf[512];
  if (fatal) {
    rd_kafka_fatal_error(rk, fbuf, sizeof fbuf);
    reason = fbuf;
  }
  SVC_LOG(fatal ? SVC_LOG_ERROR : SVC_LOG_WARN, "kafka producer error",
          "client=%s code=%s err=\"%s\" fatal=%s", rd_kafka_name(rk),
          rd_kafka_err2name((rd_kafka_resp_err_t)err), reason, fatal ? "true" : "false");
  if (p->on_error != NULL) p->on_error(&p->pub, kq_err_from_rd((rd_kafka_resp_err_t)err), reason, fatal);
}

static void prod_serve(prod_t *p) {
  drain_pipe(p->fds[0]);
  unsigned n = 0;
  while (n < p->max_per_wakeup && p->rk != NULL && rd_kafka_poll(p->rk, 0) > 0) n++;
  if (p->state == ST_CLOSING) {
    prod_close_step(p);
    return;
  }
  if (p->state == ST_OPEN && n == p->max_per_wakeup)
    uv_timer_start(&p->timer, prod_timer_cb, 0, KQ_IDLE_POLL_MS);
}

static void prod_poll_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  if (status < 0)
    SVC_LOG(SVC_LOG_WARN, "kafka wakeup pipe poll error", "err=\"%s\"", uv_strerror(status));
  prod_serve(h->data);
}

static void prod_timer_cb(uv_timer_t *t) { prod_serve(t->data); }

static void prod_handle_closed(uv_handle_t *h) {
  prod_t *p = h->data;
  if (--p->handles_open > 0) return;
  close_pipe(p->fds);
  p->state = ST_DONE;
  if (p->close_cb != NULL) p->close_cb(&p->pub, p->n_purged);
  free(p);
}

static void prod_destroy_work(uv_work_t *w) {
  prod_t *p = w->data;
  rd_kafka_destroy(p->rk);
}

static void prod_destroy_done(uv_work_t *w, int status) {
  (void)status;
  prod_t *p = w->data;
  p->rk = NULL;
  uv_close((uv_handle_t *)&p->poll, prod_handle_closed);
  uv_close((uv_handle_t *)&p->timer, prod_handle_closed);
}

static void prod_close_step(prod_t *p) {
  if (p->state != ST_CLOSING) return;
  if (!p->flush_started) {
    /* flush(0) sends linger-held batches now and serves what is ready; it does not wait. */
    p->flush_started = true;
    rd_kafka_flush(p->rk, 0);
  }
  if (rd_kafka_outq_len(p->rk) > 0) {
    if (uv_now(p->loop) < p->close_deadline) return;
    /* Out of time: purge, and serve the purge reports right away. */
    SVC_LOG(SVC_LOG_WARN, "kafka producer flush timed out, purging",
            "outq=%d", rd_kafka_outq_len(p->rk));
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    while (rd_kafka_poll(p->rk, 0) > 0) {
    }
    if (rd_kafka_outq_len(p->rk) > 0) return; /* in-flight purges still to come */
  }
  p->state = ST_DESTROYING;
  uv_timer_stop(&p->timer);
  uv_poll_stop(&p->poll);
  rd_kafka_queue_io_event_enable(p->mainq, -1, NULL, 0);
  rd_kafka_queue_destroy(p->mainq);
  p->mainq = NULL;
  p->destroy_work.data = p;
  if (uv_queue_work(p->loop, &p->destroy_work, prod_destroy_work, prod_destroy_done) != 0) {
    rd_kafka_destroy(p->rk);
    prod_destroy_done(&p->destroy_work, 0);
  }
}

svc_err_t kq_producer_new(uv_loop_t *loop, const kq_producer_opts_t *o, kq_producer_t **out,
                          char *errstr, size_t errstr_size) {
  *out = NULL;
  if (o->brokers == NULL) {
    set_err(errstr, errstr_size, "kafka producer: brokers is required");
    return SVC_EINVAL;
  }
  prod_t *p = calloc(1, sizeof *p);
  if (p == NULL) return SVC_ENOMEM;
  p->pub.data = o->data;
  p->loop = loop;
  p->fds[0] = p->fds[1] = -1;
  p->max_per_wakeup = o->max_per_wakeup ? o->max_per_wakeup : 100;
  p->on_delivery = o->on_delivery;
  p->on_error = o->on_error;
  svc_err_t rc;
  char rderr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if ((rc = conf_set(conf, "bootstrap.servers", o->brokers, errstr, errstr_size)) ||
      (rc = conf_set(conf, "enable.idempotence", "true", errstr, errstr_size)) ||
      (rc = conf_set(conf, "linger.ms", "5", errstr, errstr_size)) ||
      (rc = conf_set(conf, "socket.nagle.disable", "true", errstr, errstr_size)) ||
      (rc = conf_set(conf, "message.timeout.ms", "30000", errstr, errstr_size)) ||
      (rc = conf_set_props(conf, o->props, errstr, errstr_size)))
    goto fail;
  rd_kafka_conf_set_opaque(conf, p);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
  rd_kafka_conf_set_error_cb(conf, prod_error_cb);
  rd_kafka_conf_set_log_cb(conf, rd_log_cb);
  p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof rderr);
  if (p->rk == NULL) {
    set_err(errstr, errstr_size, "kafka producer: %s", rderr);
    rc = SVC_ECONFIG;
    goto fail;
  }
  conf = NULL;
  p->mainq = rd_kafka_queue_get_main(p->rk);
  rc = wire_queue(loop, p->mainq, p->fds, 'p', &p->poll, prod_poll_cb, &p->timer, prod_timer_cb,
                  p, &p->handles_open, "kafka producer", errstr, errstr_size);
  if (rc != SVC_OK) goto fail;
  *out = &p->pub;
  return SVC_OK;

fail:
  if (conf != NULL) rd_kafka_conf_destroy(conf);
  if (p->rk != NULL) {
    if (p->mainq != NULL) {
      rd_kafka_queue_io_event_enable(p->mainq, -1, NULL, 0);
      rd_kafka_queue_destroy(p->mainq);
    }
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
  }
  if (p->handles_open > 0) {
    uv_close((uv_handle_t *)&p->poll, prod_handle_closed);
    if (p->handles_open > 1) uv_close((uv_handle_t *)&p->timer, prod_handle_closed);
    return rc;
  }
  close_pipe(p->fds);
  free(p);
  return rc;
}

svc_err_t kq_producer_send(kq_producer_t *prod, const kq_record_t *r) {
  prod_t *p = (prod_t *)prod;
  if (p->state != ST_OPEN) return SVC_ECLOSED;
  if (r->topic == NULL) return SVC_EINVAL;
  rd_kafka_headers_t *hdrs = NULL;
  if (r->n_headers > 0) {
    hdrs = rd_kafka_headers_new(r->n_headers);
    for (size_t i = 0; i < r->n_headers; i++)
      rd_kafka_header_add(hdrs, r->headers[i].name, -1, r->headers[i].value,
                          r->headers[i].value != NULL ? (ssize_t)r->headers[i].len : 0);
  }
  /* rd_kafka_producev's type-checking macros want plain variables. */
  void *key = (void *)r->key, *value = (void *)r->value;
  size_t key_len = key != NULL ? r->key_len : 0, value_len = value != NULL ? r->value_len : 0;
  void *opaque = r->opaque;
  int32_t partition = r->partition;
  int64_t ts = r->timestamp_ms;
  rd_kafka_resp_err_t err = rd_kafka_producev(
      p->rk, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_PARTITION(partition),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
      RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_HEADERS(hdrs),
      RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    /* On failure the headers are still ours. */
    if (hdrs != NULL) rd_kafka_headers_destroy(hdrs);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      SVC_LOG(SVC_LOG_WARN, "kafka produce failed", "topic=%s err=\"%s\"", r->topic,
              rd_kafka_err2str(err));
    return kq_err_from_rd(err);
  }
  return SVC_OK;
}

size_t kq_producer_outq_len(kq_producer_t *prod) {
  prod_t *p = (prod_t *)prod;
  return p->rk != NULL ? (size_t)rd_kafka_outq_len(p->rk) : 0;
}

rd_kafka_t *kq_producer_rk(kq_producer_t *prod) { return ((prod_t *)prod)->rk; }

void kq_producer_close(kq_producer_t *prod, int timeout_ms, kq_producer_close_cb close_cb) {
  prod_t *p = (prod_t *)prod;
  if (p->state != ST_OPEN) return;
  p->state = ST_CLOSING;
  p->close_cb = close_cb;
  p->close_deadline = uv_now(p->loop) + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
  /* The flush starts from the timer, not here: we may be inside a delivery report, that is
   * inside rd_kafka_poll, and rd_kafka_flush polls too. */
  uv_timer_start(&p->timer, prod_timer_cb, 0, KQ_CLOSE_CHECK_MS);
}

/* ---- administration ---------------------------------------------------------- */

svc_err_t kq_topic_create(const char *brokers, const char *topic, int partitions, int replication,
                          int timeout_ms, char *errstr, size_t errstr_size) {
  char rderr[512];
  svc_err_t rc = SVC_OK;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if ((rc = conf_set(conf, "bootstrap.servers", brokers, errstr, errstr_size)) != SVC_OK) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  rd_kafka_conf_set_log_cb(conf, rd_log_cb);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof rderr);
  if (rk == NULL) {
    rd_kafka_conf_destroy(conf);
    set_err(errstr, errstr_size, "kafka admin: %s", rderr);
    return SVC_ECONFIG;
  }
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, replication, rderr, sizeof rderr);
  if (nt == NULL) {
    set_err(errstr, errstr_size, "kafka admin: topic %s: %s", topic, rderr);
    rc = SVC_EINVAL;
    goto done;
  }
  rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_ms, rderr, sizeof rderr);
  rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, rderr, sizeof rderr);
  rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
  if (ev == NULL) {
    set_err(errstr, errstr_size, "kafka admin: creating topic %s timed out after %d ms", topic, timeout_ms);
    rc = SVC_ETIMEDOUT;
  } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    set_err(errstr, errstr_size, "kafka admin: creating topic %s: %s", topic, rd_kafka_event_error_string(ev));
    rc = kq_err_from_rd(rd_kafka_event_error(ev));
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; i++) {
      if (rd_kafka_topic_result_error(res[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_err(errstr, errstr_size, "kafka admin: creating topic %s: %s", topic,
                rd_kafka_topic_result_error_string(res[i]));
        rc = SVC_EKAFKA;
      }
    }
  }
  if (ev != NULL) rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(ao);
  rd_kafka_NewTopic_destroy(nt);
done:
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  return rc;
}
