/*
 * The smoke pipeline of smoke.h: producer -> Kafka topic -> kq_consumer in a group -> batches
 * of events written to PostgreSQL with the next offsets in the same transaction -> a final
 * check of the stored id set. Everything runs on one libuv loop, as the worker will.
 */
#include "smoke.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/v1/envelope.pb-c.h"
#include "svc/db.h"
#include "svc/kafka.h"
#include "svc/log.h"

/* ---- a growing string -------------------------------------------------------- */

typedef struct {
  char *s;
  size_t len, cap;
} sb_t;

static void sb_printf(sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sb_t *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (b->s != NULL && (size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + (size_t)n + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (s == NULL) abort();
    b->s = s;
    b->cap = cap;
  }
}

static void sb_reset(sb_t *b) {
  b->len = 0;
  if (b->s) b->s[0] = '\0';
}

/* ---- run state ----------------------------------------------------------------- */

typedef struct {
  sb_t ids, parts, offs, amounts, cards; /* PostgreSQL array literals under construction */
  int64_t n;                             /* events in the batch */
  int64_t *next_off;                     /* per partition; -1: untouched by this batch */
  bool any;                              /* at least one message (event or not) */
} batch_t;

typedef struct {
  smoke_opts_t o;
  smoke_report_t *rep;
  uv_loop_t loop;
  db_conn_t *db;
  kq_producer_t *prod;
  kq_consumer_t *cons;
  uv_timer_t produce_timer, batch_timer, deadline;
  int timers_open;
  int64_t next_to_send;
  batch_t batch;
  bool started, done_storing, failed, tearing_down;
  svc_err_t rc;
  char *err;
  size_t err_size;
  double t_start, t_last_dr, t_done;
  int32_t *seen;
  /* Per partition, the next offset the offsets table holds once every submitted batch has
   * committed: -1 no row yet, >= 0 a row; the fence of the next batch expects exactly this. */
  int64_t *expected_next;
} smoke_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void teardown(smoke_t *s);

static void fail(smoke_t *s, svc_err_t rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(smoke_t *s, svc_err_t rc, const char *fmt, ...) {
  if (!s->failed) {
    s->failed = true;
    s->rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, s->err_size, fmt, ap);
    va_end(ap);
    SVC_LOG(SVC_LOG_ERROR, "smoke run failed", "err=\"%s\"", s->err);
  }
  teardown(s);
}

/* ---- teardown -------------------------------------------------------------------- */

static void timer_closed(uv_handle_t *h) {
  smoke_t *s = h->data;
  s->timers_open--;
}

static void cons_closed(kq_consumer_t *cons) {
  smoke_t *s = cons->data;
  s->cons = NULL;
}

static void prod_closed(kq_producer_t *prod, size_t n_undelivered) {
  smoke_t *s = prod->data;
  if (n_undelivered > 0)
    SVC_LOG(SVC_LOG_WARN, "smoke producer closed with undelivered records", "n=%zu", n_undelivered);
  s->prod = NULL;
}

static void db_closed(db_conn_t *conn) {
  smoke_t *s = conn->data;
  s->db = NULL;
}

static void tables_dropped(db_conn_t *conn, svc_err_t err, const PGresult *res, const char *msg,
                           void *arg) {
  (void)res;
  (void)arg;
  if (err != SVC_OK)
    SVC_LOG(SVC_LOG_WARN, "smoke could not drop its tables", "err=\"%s\"", msg);
  db_conn_close(conn, db_closed);
}

static void teardown(smoke_t *s) {
  if (s->tearing_down) return;
  s->tearing_down = true;
  uv_close((uv_handle_t *)&s->produce_timer, timer_closed);
  uv_close((uv_handle_t *)&s->batch_timer, timer_closed);
  uv_close((uv_handle_t *)&s->deadline, timer_closed);
  if (s->cons != NULL) kq_consumer_close(s->cons, cons_closed);
  if (s->prod != NULL) kq_producer_close(s->prod, 5000, prod_closed);
  if (s->db == NULL) return;
  if (!s->o.keep_tables && s->started && db_conn_status(s->db) == DB_STATUS_CONNECTED) {
    char sql[256];
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s; DROP TABLE IF EXISTS %s",
             s->rep->events_table, s->rep->offsets_table);
    if (db_conn_exec(s->db, sql, tables_dropped, s) == SVC_OK) return;
  }
  db_conn_close(s->db, db_closed);
}

static void deadline_hit(uv_timer_t *t) {
  smoke_t *s = t->data;
  fail(s, SVC_ETIMEDOUT,
       "timed out after %" PRId64 " ms: produced %" PRId64 ", delivered %" PRId64
       ", consumed %" PRId64 ", stored %" PRId64 " of %" PRId64,
       s->o.timeout_ms, s->rep->produced, s->rep->delivered, s->rep->consumed, s->rep->stored,
       s->o.events);
}

/* ---- verification ------------------------------------------------------------------- */

static void offsets_checked(db_conn_t *conn, svc_err_t err, const PGresult *res, const char *msg,
                            void *arg) {
  (void)conn;
  smoke_t *s = arg;
  if (err != SVC_OK) {
    fail(s, err, "reading stored offsets: %s", msg);
    return;
  }
  s->rep->offsets_sum = PQgetisnull(res, 0, 0) ? 0 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
  smoke_report_t *r = s->rep;
  r->ok = r->produced == s->o.events && r->delivered == s->o.events &&
          r->decode_errors == 0 && r->rows == s->o.events && r->distinct_ids == s->o.events &&
          r->duplicates == 0 && r->missing == 0 && r->unexpected == 0 &&
          r->offsets_sum == s->o.events;
  teardown(s);
}

static void ids_checked(db_conn_t *conn, svc_err_t err, const PGresult *res, const char *msg,
                        void *arg) {
  smoke_t *s = arg;
  if (err != SVC_OK) {
    fail(s, err, "reading stored ids: %s", msg);
    return;
  }
  smoke_report_t *r = s->rep;
  size_t plen = strlen(r->run_id);
  int rows = PQntuples(res);
  r->distinct_ids = rows;
  for (int k = 0; k < rows; k++) {
    const char *id = PQgetvalue(res, k, 0);
    int64_t count = strtoll(PQgetvalue(res, k, 1), NULL, 10);
    r->rows += count;
    if (count > 1) r->duplicates += count - 1;
    char *end = NULL;
    long long i = -1;
    if (strncmp(id, r->run_id, plen) == 0 && id[plen] == '-' && id[plen + 1] != '\0')
      i = strtoll(id + plen + 1, &end, 10);
    if (i < 0 || i >= s->o.events || end == NULL || *end != '\0') {
      r->unexpected += count;
      continue;
    }
    s->seen[i] += (int32_t)count;
  }
  for (int64_t i = 0; i < s->o.events; i++)
    if (s->seen[i] == 0) r->missing++;
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT sum(next_offset) FROM %s", r->offsets_table);
  if (db_conn_query(conn, sql, 0, NULL, offsets_checked, s) != SVC_OK)
    fail(s, SVC_ENOTCONN, "database went away before verification");
}

static void verify(smoke_t *s) {
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT event_id, count(*) FROM %s GROUP BY event_id",
           s->rep->events_table);
  if (db_conn_query(s->db, sql, 0, NULL, ids_checked, s) != SVC_OK)
    fail(s, SVC_ENOTCONN, "database went away before verification");
}

/* ---- batches ------------------------------------------------------------------------- */

static void batch_clear(smoke_t *s) {
  batch_t *b = &s->batch;
  sb_reset(&b->ids);
  sb_reset(&b->parts);
  sb_reset(&b->offs);
  sb_reset(&b->amounts);
  sb_reset(&b->cards);
  b->n = 0;
  b->any = false;
  for (int64_t p = 0; p < s->o.partitions; p++) b->next_off[p] = -1;
}

static void batch_committed(db_conn_t *conn, svc_err_t err, const PGresult *res, const char *msg,
                            void *arg) {
  (void)conn;
  (void)res;
  smoke_t *s = conn->data;
  int64_t n = (int64_t)(intptr_t)arg;
  if (err != SVC_OK) {
    fail(s, err, "batch transaction of %" PRId64 " events failed: %s", n, msg);
    return;
  }
  s->rep->stored += n;
  s->rep->batches++;
  if (!s->done_storing && s->rep->stored >= s->o.events) {
    s->done_storing = true;
    s->t_done = now_s();
    SVC_LOG(SVC_LOG_INFO, "smoke: all events stored", "stored=%" PRId64 " batches=%" PRId64,
            s->rep->stored, s->rep->batches);
    verify(s);
  }
}

/*
 * Submits the current batch as one transaction: the events, then the next offsets. The offsets
 * are fenced: a partition that has a row is updated only where it still holds the offset this
 * member expects (db_txn_add_expect), and a partition without one is inserted (a row inserted
 * meanwhile by another member is a key conflict). Either way a member that lost the partition
 * commits nothing.
 */
static void batch_flush(smoke_t *s) {
  batch_t *b = &s->batch;
  if (!b->any || s->tearing_down) return;
  sb_t up = {0}, un = {0}, ue = {0}, ip = {0}, in = {0};
  long n_upd = 0, n_ins = 0;
  for (int64_t p = 0; p < s->o.partitions; p++) {
    if (b->next_off[p] < 0) continue;
    if (s->expected_next[p] >= 0) {
      const char *sep = n_upd++ ? "," : "";
      sb_printf(&up, "%s%" PRId64, sep, p);
      sb_printf(&un, "%s%" PRId64, sep, b->next_off[p]);
      sb_printf(&ue, "%s%" PRId64, sep, s->expected_next[p]);
    } else {
      const char *sep = n_ins++ ? "," : "";
      sb_printf(&ip, "%s%" PRId64, sep, p);
      sb_printf(&in, "%s%" PRId64, sep, b->next_off[p]);
    }
    s->expected_next[p] = b->next_off[p];
  }
  char ev_sql[512], upd_sql[512], ins_sql[512];
  snprintf(ev_sql, sizeof ev_sql,
           "INSERT INTO %s (event_id, kafka_partition, kafka_offset, amount, card_id) "
           "SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::float8[], $5::text[])",
           s->rep->events_table);
  snprintf(upd_sql, sizeof upd_sql,
           "UPDATE %s o SET next_offset = x.n "
           "FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS x(p, n, e) "
           "WHERE o.topic = $1 AND o.kafka_partition = x.p AND o.next_offset = x.e",
           s->rep->offsets_table);
  snprintf(ins_sql, sizeof ins_sql,
           "INSERT INTO %s (topic, kafka_partition, next_offset) "
           "SELECT $1, p, n FROM unnest($2::int[], $3::bigint[]) AS x(p, n)",
           s->rep->offsets_table);
  sb_t *lists[] = {&b->ids, &b->parts, &b->offs, &b->amounts, &b->cards, &up, &un, &ue, &ip, &in};
  char *arr[10];
  for (int k = 0; k < 10; k++) {
    sb_t tmp = {0};
    sb_printf(&tmp, "{%s}", lists[k]->s ? lists[k]->s : "");
    arr[k] = tmp.s;
  }
  db_txn_t *txn = db_txn_new();
  const char *ev_params[] = {arr[0], arr[1], arr[2], arr[3], arr[4]};
  db_txn_add(txn, ev_sql, 5, ev_params);
  if (n_upd > 0) {
    const char *params[] = {s->rep->topic, arr[5], arr[6], arr[7]};
    db_txn_add_expect(txn, upd_sql, 4, params, n_upd);
  }
  if (n_ins > 0) {
    const char *params[] = {s->rep->topic, arr[8], arr[9]};
    db_txn_add(txn, ins_sql, 3, params);
  }
  for (int k = 0; k < 10; k++) free(arr[k]);
  for (int k = 5; k < 10; k++) free(lists[k]->s);
  int64_t n = b->n;
  batch_clear(s);
  svc_err_t rc = db_conn_txn(s->db, txn, batch_committed, (void *)(intptr_t)n);
  if (rc != SVC_OK) fail(s, rc, "cannot submit a batch: %s", svc_strerror(rc));
}

static void batch_tick(uv_timer_t *t) { batch_flush(t->data); }

/* ---- consuming ------------------------------------------------------------------------ */

static void on_message(kq_consumer_t *cons, rd_kafka_message_t *m) {
  smoke_t *s = cons->data;
  batch_t *b = &s->batch;
  s->rep->consumed++;
  if (m->partition < 0 || m->partition >= s->o.partitions) {
    rd_kafka_message_destroy(m);
    fail(s, SVC_EKAFKA, "message from unexpected partition %d", (int)m->partition);
    return;
  }
  Sluice__V1__Envelope *env = sluice__v1__envelope__unpack(NULL, m->len, m->payload);
  bool valid = env != NULL && env->event_id != NULL && env->event_id[0] != '\0' &&
               env->payload_case == SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION &&
               env->transaction != NULL && env->transaction->card_id != NULL;
  if (!valid) {
    /* The worker would send it to the dead-letter topic; the smoke run counts it. */
    s->rep->decode_errors++;
    SVC_LOG(SVC_LOG_WARN, "smoke: undecodable event", "partition=%d offset=%" PRId64,
            (int)m->partition, (int64_t)m->offset);
  } else {
    const char *sep = b->n > 0 ? "," : "";
    sb_printf(&b->ids, "%s\"%s\"", sep, env->event_id);
    sb_printf(&b->parts, "%s%d", sep, (int)m->partition);
    sb_printf(&b->offs, "%s%" PRId64, sep, (int64_t)m->offset);
    sb_printf(&b->amounts, "%s%.17g", sep, env->transaction->amount);
    sb_printf(&b->cards, "%s\"%s\"", sep, env->transaction->card_id);
    b->n++;
  }
  b->any = true;
  b->next_off[m->partition] = m->offset + 1;
  if (env != NULL) sluice__v1__envelope__free_unpacked(env, NULL);
  rd_kafka_message_destroy(m);
  if (b->n >= s->o.batch_size) batch_flush(s);
}

typedef struct {
  smoke_t *s;
  rd_kafka_topic_partition_list_t *parts;
} assign_t;

static void offsets_loaded(db_conn_t *conn, svc_err_t err, const PGresult *res, const char *msg,
                           void *arg) {
  (void)conn;
  assign_t *a = arg;
  smoke_t *s = a->s;
  if (err != SVC_OK) {
    rd_kafka_topic_partition_list_destroy(a->parts);
    free(a);
    fail(s, err, "loading stored offsets on assignment: %s", msg);
    return;
  }
  for (int k = 0; k < a->parts->cnt; k++) {
    rd_kafka_topic_partition_t *tp = &a->parts->elems[k];
    tp->offset = RD_KAFKA_OFFSET_INVALID; /* nothing stored: auto.offset.reset (earliest) */
    for (int row = 0; row < PQntuples(res); row++) {
      if (atoi(PQgetvalue(res, row, 0)) == tp->partition)
        tp->offset = strtoll(PQgetvalue(res, row, 1), NULL, 10);
    }
    if (tp->partition >= 0 && tp->partition < s->o.partitions)
      s->expected_next[tp->partition] = tp->offset >= 0 ? tp->offset : -1;
    SVC_LOG(SVC_LOG_INFO, "smoke: partition starts at stored offset", "partition=%d offset=%" PRId64,
            (int)tp->partition, (int64_t)tp->offset);
  }
  if (s->cons != NULL && !s->tearing_down)
    kq_consumer_rebalance_done(s->cons, KQ_REBALANCE_ASSIGN, a->parts);
  rd_kafka_topic_partition_list_destroy(a->parts);
  free(a);
}

static kq_rebalance_action_t on_rebalance(kq_consumer_t *cons, kq_rebalance_kind_t kind,
                                          rd_kafka_topic_partition_list_t *parts) {
  smoke_t *s = cons->data;
  if (kind != KQ_REBALANCE_ASSIGN) {
    /* Hand in what we have before the partitions go; should it land after the new owner read
     * the offsets, the fence in batch_flush makes it fail instead of duplicating. */
    batch_flush(s);
    return KQ_REBALANCE_DONE;
  }
  if (parts->cnt == 0 || s->tearing_down) return KQ_REBALANCE_DONE;
  /* Seek to the offsets stored in PostgreSQL: look them up, then assign. */
  assign_t *a = malloc(sizeof *a);
  if (a == NULL) abort();
  a->s = s;
  a->parts = rd_kafka_topic_partition_list_copy(parts);
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT kafka_partition, next_offset FROM %s WHERE topic = $1",
           s->rep->offsets_table);
  const char *params[] = {s->rep->topic};
  svc_err_t rc = db_conn_query(s->db, sql, 1, params, offsets_loaded, a);
  if (rc != SVC_OK) {
    rd_kafka_topic_partition_list_destroy(a->parts);
    free(a);
    fail(s, rc, "cannot look up stored offsets: %s", svc_strerror(rc));
    return KQ_REBALANCE_DONE;
  }
  return KQ_REBALANCE_DEFER;
}

static void on_cons_error(kq_consumer_t *cons, svc_err_t err, const char *reason, bool fatal) {
  if (fatal) fail(cons->data, err, "fatal consumer error: %s", reason);
}

/* ---- producing ---------------------------------------------------------------------- */

static void on_delivery(kq_producer_t *prod, const rd_kafka_message_t *msg, svc_err_t err,
                        void *opaque) {
  (void)msg;
  (void)opaque;
  smoke_t *s = prod->data;
  if (err != SVC_OK) {
    fail(s, err, "delivery failed: %s", rd_kafka_err2str(msg->err));
    return;
  }
  if (++s->rep->delivered == s->o.events) s->t_last_dr = now_s();
}

static void produce_tick(uv_timer_t *t) {
  smoke_t *s = t->data;
  while (s->next_to_send < s->o.events && !s->tearing_down) {
    int64_t i = s->next_to_send;
    char id[96], card[32];
    snprintf(id, sizeof id, "%s-%" PRId64, s->rep->run_id, i);
    snprintf(card, sizeof card, "card-%" PRId64, i % 1000);
    Sluice__V1__Transaction tx = SLUICE__V1__TRANSACTION__INIT;
    tx.has_amount = 1;
    tx.amount = (double)(i % 10000) / 100.0;
    tx.currency = "EUR";
    tx.card_id = card;
    tx.merchant_id = "smoke-merchant";
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    env.event_id = id;
    env.key = card;
    env.has_event_time_ms = 1;
    env.event_time_ms = (int64_t)time(NULL) * 1000;
    env.source = "sluice-smoke";
    env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
    env.transaction = &tx;
    uint8_t buf[512];
    size_t len = sluice__v1__envelope__get_packed_size(&env);
    if (len > sizeof buf) {
      fail(s, SVC_EINVAL, "event %" PRId64 " encodes to %zu bytes", i, len);
      return;
    }
    sluice__v1__envelope__pack(&env, buf);
    kq_record_t r = {.topic = s->rep->topic, .partition = KQ_PARTITION_ANY, .key = card,
                     .key_len = strlen(card), .value = buf, .value_len = len};
    svc_err_t rc = kq_producer_send(s->prod, &r);
    if (rc == SVC_EAGAIN) return; /* queue full: the next tick continues */
    if (rc != SVC_OK) {
      fail(s, rc, "cannot produce event %" PRId64 ": %s", i, svc_strerror(rc));
      return;
    }
    s->next_to_send++;
    s->rep->produced++;
  }
  if (s->next_to_send == s->o.events) uv_timer_stop(t);
}

/* ---- start ----------------------------------------------------------------------------- */

static void tables_created(db_conn_t *conn, svc_err_t err, const PGresult *res, const char *msg,
                           void *arg) {
  (void)res;
  (void)arg;
  smoke_t *s = conn->data;
  if (err != SVC_OK) {
    fail(s, err, "creating tables: %s", msg);
    return;
  }
  s->started = true;
  char errbuf[512];
  kq_producer_opts_t po = {.brokers = s->o.brokers, .on_delivery = on_delivery, .data = s};
  svc_err_t rc = kq_producer_new(&s->loop, &po, &s->prod, errbuf, sizeof errbuf);
  if (rc != SVC_OK) {
    fail(s, rc, "producer: %s", errbuf);
    return;
  }
  const char *topics[] = {s->rep->topic, NULL};
  kq_consumer_opts_t co = {.brokers = s->o.brokers, .group_id = s->rep->topic, .topics = topics,
                           .on_message = on_message, .on_rebalance = on_rebalance,
                           .on_error = on_cons_error, .data = s};
  rc = kq_consumer_new(&s->loop, &co, &s->cons, errbuf, sizeof errbuf);
  if (rc != SVC_OK) {
    fail(s, rc, "consumer: %s", errbuf);
    return;
  }
  s->t_start = now_s();
  uv_timer_start(&s->produce_timer, produce_tick, 0, 5);
  uv_timer_start(&s->batch_timer, batch_tick, (uint64_t)s->o.batch_wait_ms,
                 (uint64_t)s->o.batch_wait_ms);
}

static bool valid_run_id(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > 40) return false;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

svc_err_t smoke_run(const smoke_opts_t *opts, smoke_report_t *rep, char *errstr,
                    size_t errstr_size) {
  memset(rep, 0, sizeof *rep);
  smoke_t *s = calloc(1, sizeof *s);
  if (s == NULL) return SVC_ENOMEM;
  s->o = *opts;
  s->rep = rep;
  s->err = errstr;
  s->err_size = errstr_size;
  if (s->o.batch_wait_ms <= 0) s->o.batch_wait_ms = 100;
  if (s->o.partitions <= 0) s->o.partitions = 4;
  if (s->o.timeout_ms <= 0) s->o.timeout_ms = 120000;
  svc_err_t rc = SVC_OK;
  if (s->o.brokers == NULL || s->o.dsn == NULL || s->o.events < 1 || s->o.batch_size < 1 ||
      s->o.events > 100000000) {
    snprintf(errstr, errstr_size, "smoke: brokers and dsn are required, events must be in [1, 1e8] and batch_size >= 1");
    free(s);
    return SVC_EINVAL;
  }
  if (s->o.run_id != NULL && s->o.run_id[0] != '\0') {
    if (!valid_run_id(s->o.run_id)) {
      snprintf(errstr, errstr_size, "smoke: run id \"%s\" must be 1 to 40 of [a-z0-9_]", s->o.run_id);
      free(s);
      return SVC_EINVAL;
    }
    snprintf(rep->run_id, sizeof rep->run_id, "%s", s->o.run_id);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(rep->run_id, sizeof rep->run_id, "r%lx_%lx%lx", (unsigned long)getpid(),
             (unsigned long)ts.tv_sec, (unsigned long)ts.tv_nsec);
  }
  snprintf(rep->topic, sizeof rep->topic, "sluice-smoke-%s", rep->run_id);
  snprintf(rep->events_table, sizeof rep->events_table, "smoke_%s_events", rep->run_id);
  snprintf(rep->offsets_table, sizeof rep->offsets_table, "smoke_%s_offsets", rep->run_id);

  s->seen = calloc((size_t)s->o.events, sizeof *s->seen);
  s->batch.next_off = calloc((size_t)s->o.partitions, sizeof *s->batch.next_off);
  s->expected_next = calloc((size_t)s->o.partitions, sizeof *s->expected_next);
  if (s->seen == NULL || s->batch.next_off == NULL || s->expected_next == NULL) {
    rc = SVC_ENOMEM;
    goto out;
  }
  batch_clear(s);
  for (int64_t p = 0; p < s->o.partitions; p++) s->expected_next[p] = -1;

  rc = kq_topic_create(s->o.brokers, rep->topic, (int)s->o.partitions, 1, 15000, errstr, errstr_size);
  if (rc != SVC_OK) goto out;

  int uerr = uv_loop_init(&s->loop);
  if (uerr != 0) {
    snprintf(errstr, errstr_size, "smoke: libuv: %s", uv_strerror(uerr));
    rc = svc_err_from_uv(uerr);
    goto out;
  }
  uv_timer_t *timers[] = {&s->produce_timer, &s->batch_timer, &s->deadline};
  for (int k = 0; k < 3; k++) {
    uv_timer_init(&s->loop, timers[k]);
    timers[k]->data = s;
    s->timers_open++;
  }
  uv_timer_start(&s->deadline, deadline_hit, (uint64_t)s->o.timeout_ms, 0);

  db_conn_opts_t dbo = {.dsn = s->o.dsn, .data = s};
  rc = db_conn_new(&s->loop, &dbo, &s->db, errstr, errstr_size);
  if (rc != SVC_OK) {
    s->db = NULL;
    s->failed = true;
    s->rc = rc;
    teardown(s);
  } else {
    char sql[1024];
    snprintf(sql, sizeof sql,
             "CREATE TABLE %s (event_id text NOT NULL, kafka_partition int NOT NULL, "
             "kafka_offset bigint NOT NULL, amount double precision, card_id text, "
             "stored_at timestamptz NOT NULL DEFAULT now());"
             "CREATE TABLE %s (topic text NOT NULL, kafka_partition int NOT NULL, "
             "next_offset bigint NOT NULL, PRIMARY KEY (topic, kafka_partition))",
             rep->events_table, rep->offsets_table);
    rc = db_conn_exec(s->db, sql, tables_created, s);
    if (rc != SVC_OK) fail(s, rc, "cannot queue table creation: %s", svc_strerror(rc));
  }
  uv_run(&s->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&s->loop) != 0) SVC_LOG(SVC_LOG_WARN, "smoke: loop closed with handles open");
  rc = s->failed ? s->rc : SVC_OK;
  if (!s->failed && !s->done_storing) {
    snprintf(errstr, errstr_size, "smoke: the loop ended before all events were stored");
    rc = SVC_ESTATE;
  }
  if (s->t_last_dr > 0) rep->produce_s = s->t_last_dr - s->t_start;
  if (s->t_done > 0) {
    rep->pipeline_s = s->t_done - s->t_start;
    rep->events_per_s = rep->pipeline_s > 0 ? (double)s->o.events / rep->pipeline_s : 0;
  }
out:
  free(s->seen);
  free(s->batch.next_off);
  free(s->expected_next);
  free(s->batch.ids.s);
  free(s->batch.parts.s);
  free(s->batch.offs.s);
  free(s->batch.amounts.s);
  free(s->batch.cards.s);
  free(s);
  return rc;
}

void smoke_report_print(const smoke_report_t *r, FILE *out) {
  fprintf(out, "sluice smoke run %s: %s\n", r->run_id, r->ok ? "OK" : "FAILED");
  fprintf(out, "  topic            %s\n", r->topic);
  fprintf(out, "  tables           %s, %s\n", r->events_table, r->offsets_table);
  fprintf(out, "  produced         %" PRId64 " (delivered %" PRId64 ")\n", r->produced, r->delivered);
  fprintf(out, "  consumed         %" PRId64 " (undecodable %" PRId64 ")\n", r->consumed, r->decode_errors);
  fprintf(out, "  stored           %" PRId64 " in %" PRId64 " batch transactions\n", r->stored, r->batches);
  fprintf(out, "  rows / distinct  %" PRId64 " / %" PRId64 "\n", r->rows, r->distinct_ids);
  fprintf(out, "  duplicates       %" PRId64 "\n", r->duplicates);
  fprintf(out, "  missing          %" PRId64 "\n", r->missing);
  fprintf(out, "  unexpected       %" PRId64 "\n", r->unexpected);
  fprintf(out, "  stored offsets   sum %" PRId64 "\n", r->offsets_sum);
  fprintf(out, "  produce time     %.3f s\n", r->produce_s);
  fprintf(out, "  pipeline time    %.3f s (%.0f events/s end to end)\n", r->pipeline_s, r->events_per_s);
}
