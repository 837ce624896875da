/*
 * kq_producer and kq_consumer on a libuv loop against the real broker: delivery reports with
 * their opaque and headers arrive on the loop thread, a consumer whose rebalance callback
 * defers the assignment (as the worker does while it reads offsets from PostgreSQL) starts
 * exactly at the offsets it chose, a second member joining the group takes over part of the
 * partitions (cooperative rebalance) after which each member sees only its own partitions,
 * and both close without blocking the loop. Back-pressure: a consumer paused before its
 * assignment receives nothing until resumed, a pause from inside the message callback stops
 * delivery at once, and after resuming every record arrives exactly once and in order.
 */
#include "test.h"

#include <pthread.h>

#include "svc/kafka.h"
#include "svc/log.h"

#define N_PARTS 4
#define N_FIRST 200
#define N_SECOND 200

typedef struct member_s member_t;

typedef struct {
  uv_loop_t loop;
  const char *brokers;
  char topic[100], group[128];
  pthread_t loop_thread;
  kq_producer_t *prod;
  int delivered, delivery_errors;
  unsigned char seen_opaque[N_FIRST + N_SECOND];
  int closed;
  uv_timer_t deadline, stage_timer;
  int stage;
  member_t *a, *b;
} ctx_t;

struct member_s {
  ctx_t *ctx;
  kq_consumer_t *cons;
  unsigned assigned;            /* bitmask of partitions */
  int n_assign, n_revoke;
  int got_first[N_FIRST];       /* how often each first-round record arrived */
  int got_second;
  int foreign;                  /* messages from partitions not assigned to us */
  uv_timer_t defer_timer;
  rd_kafka_topic_partition_list_t *deferred;
  int first_offset;             /* where the deferred assignment starts (partition 0 of A: 10) */
  bool closed;
};

static void on_delivery(kq_producer_t *prod, const rd_kafka_message_t *msg, svc_err_t err,
                        void *opaque) {
  ctx_t *c = prod->data;
  ASSERT(pthread_equal(pthread_self(), c->loop_thread));
  if (err != SVC_OK) {
    c->delivery_errors++;
    return;
  }
  intptr_t i = (intptr_t)opaque;
  ASSERT(i >= 0 && i < N_FIRST + N_SECOND);
  c->seen_opaque[i]++;
  c->delivered++;
  ASSERT_OP(msg->offset, >=, 0);
}

static void produce_range(ctx_t *c, int from, int to) {
  for (int i = from; i < to; i++) {
    char key[32], val[64], origin[16];
    snprintf(key, sizeof key, "k%d", i);
    snprintf(val, sizeof val, "value-%d", i);
    snprintf(origin, sizeof origin, "%d", i * 7);
    kq_header_t hdrs[2] = {{"origin-offset", origin, strlen(origin)}, {"null-header", NULL, 0}};
    kq_record_t r = {.topic = c->topic, .partition = i % N_PARTS, .key = key,
                     .key_len = strlen(key), .value = val, .value_len = strlen(val),
                     .headers = hdrs, .n_headers = 2, .opaque = (void *)(intptr_t)i};
    ASSERT_OK(kq_producer_send(c->prod, &r));
  }
}

static void on_message(kq_consumer_t *cons, rd_kafka_message_t *m) {
  member_t *mb = cons->data;
  ASSERT(pthread_equal(pthread_self(), mb->ctx->loop_thread));
  if (!(mb->assigned & (1u << m->partition))) mb->foreign++;
  int i = -1;
  ASSERT_EQ(sscanf((const char *)m->payload, "value-%d", &i), 1);
  ASSERT_EQ(m->partition, i % N_PARTS);
  rd_kafka_headers_t *h = NULL;
  ASSERT_EQ(rd_kafka_message_headers(m, &h), RD_KAFKA_RESP_ERR_NO_ERROR);
  const void *hv;
  size_t hl;
  ASSERT_EQ(rd_kafka_header_get_last(h, "origin-offset", &hv, &hl), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(atoi((const char *)hv), i * 7);
  ASSERT_EQ(rd_kafka_header_get_last(h, "null-header", &hv, &hl), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_NULL(hv);
  if (i < N_FIRST) mb->got_first[i]++;
  else mb->got_second++;
  rd_kafka_message_destroy(m);
}

static void defer_fire(uv_timer_t *t) {
  member_t *mb = t->data;
  /* Member A starts partition 0 at offset 10 (so the first 10 records of partition 0 must
   * never arrive) and the rest at 0; member B starts where A's first round ended (50), as if
   * it had read A's stored offsets. */
  for (int k = 0; k < mb->deferred->cnt; k++) {
    rd_kafka_topic_partition_t *tp = &mb->deferred->elems[k];
    tp->offset = mb->first_offset < 0 ? (tp->partition == 0 ? 10 : 0) : mb->first_offset;
    mb->assigned |= 1u << tp->partition;
  }
  ASSERT_OK(kq_consumer_rebalance_done(mb->cons, KQ_REBALANCE_ASSIGN, mb->deferred));
  rd_kafka_topic_partition_list_destroy(mb->deferred);
  mb->deferred = NULL;
}

static kq_rebalance_action_t on_rebalance(kq_consumer_t *cons, kq_rebalance_kind_t kind,
                                          rd_kafka_topic_partition_list_t *parts) {
  member_t *mb = cons->data;
  ASSERT(pthread_equal(pthread_self(), mb->ctx->loop_thread));
  if (kind == KQ_REBALANCE_ASSIGN) {
    mb->n_assign++;
    if (parts->cnt == 0) return KQ_REBALANCE_DONE;
    ASSERT_NULL(mb->deferred);
    mb->deferred = rd_kafka_topic_partition_list_copy(parts);
    uv_timer_start(&mb->defer_timer, defer_fire, 100, 0);
    return KQ_REBALANCE_DEFER;
  }
  mb->n_revoke++;
  for (int k = 0; k < parts->cnt; k++) mb->assigned &= ~(1u << parts->elems[k].partition);
  return KQ_REBALANCE_DONE;
}

static void member_start(ctx_t *c, member_t *mb, int first_offset) {
  memset(mb, 0, sizeof *mb);
  mb->ctx = c;
  mb->first_offset = first_offset;
  uv_timer_init(&c->loop, &mb->defer_timer);
  mb->defer_timer.data = mb;
  const char *topics[] = {c->topic, NULL};
  kq_consumer_opts_t o = {.brokers = c->brokers, .group_id = c->group, .topics = topics,
                          .session_timeout_ms = 10000, .max_per_wakeup = 7,
                          .on_message = on_message, .on_rebalance = on_rebalance, .data = mb};
  char err[512];
  ASSERT_MSG(kq_consumer_new(&c->loop, &o, &mb->cons, err, sizeof err) == SVC_OK, "%s", err);
}

static void handle_closed(uv_handle_t *h) { (void)h; }

static void member_closed(kq_consumer_t *cons) {
  member_t *mb = cons->data;
  mb->closed = true;
  mb->ctx->closed++;
  uv_close((uv_handle_t *)&mb->defer_timer, handle_closed);
}

static void producer_closed(kq_producer_t *prod, size_t n_undelivered) {
  ctx_t *c = prod->data;
  ASSERT_EQ(n_undelivered, 0);
  c->closed++;
}

static int count_first(const member_t *mb) {
  int n = 0;
  for (int i = 0; i < N_FIRST; i++) n += mb->got_first[i];
  return n;
}

static void stage_tick(uv_timer_t *t) {
  ctx_t *c = t->data;
  member_t *a = c->a, *b = c->b;
  switch (c->stage) {
  case -1: /* round one is on the broker (so that offset 10 of partition 0 exists): A joins */
    if (c->delivered < N_FIRST) return;
    member_start(c, a, -1);
    c->stage = 0;
    return;
  case 0: /* A alone reads round one from its chosen offsets */
    if (count_first(a) < N_FIRST - 10 || c->delivered < N_FIRST) return;
    ASSERT_EQ(a->assigned, 0xF);
    ASSERT_STR_EQ(kq_consumer_protocol(a->cons), "COOPERATIVE");
    member_start(c, b, N_FIRST / N_PARTS);
    c->stage = 1;
    return;
  case 1: /* B joins: the partitions are split, none twice, none lost */
    if (a->deferred || b->deferred || b->assigned == 0 || (a->assigned | b->assigned) != 0xF ||
        (a->assigned & b->assigned) != 0)
      return;
    ASSERT_OP(a->n_revoke, >=, 1);
    produce_range(c, N_FIRST, N_FIRST + N_SECOND);
    c->stage = 2;
    return;
  case 2:
    if (a->got_second + b->got_second < N_SECOND) return;
    c->stage = 3;
    uv_timer_stop(&c->stage_timer);
    uv_close((uv_handle_t *)&c->stage_timer, handle_closed);
    kq_producer_close(c->prod, 10000, producer_closed);
    kq_consumer_close(a->cons, member_closed);
    kq_consumer_close(b->cons, member_closed);
    return;
  }
}

static void deadline_hit(uv_timer_t *t) {
  ctx_t *c = t->data;
  TEST__FAIL("deadline: stage %d, delivered %d, A first %d second %d assigned %x, B second %d assigned %x",
             c->stage, c->delivered, c->stage >= 0 ? count_first(c->a) : 0,
             c->a->got_second, c->a->assigned, c->b->got_second, c->b->assigned);
}

TEST(produce_consume_defer_and_rebalance) {
  static ctx_t c;
  static member_t a, b;
  memset(&c, 0, sizeof c);
  c.brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  c.a = &a;
  c.b = &b;
  c.loop_thread = pthread_self();
  test_unique_name(c.topic, sizeof c.topic, "test-kq-loop");
  snprintf(c.group, sizeof c.group, "%s-g", c.topic);
  char err[512];
  ASSERT_MSG(kq_topic_create(c.brokers, c.topic, N_PARTS, 1, 15000, err, sizeof err) == SVC_OK,
             "%s", err);
  ASSERT_OK(uv_loop_init(&c.loop));
  kq_producer_opts_t po = {.brokers = c.brokers, .on_delivery = on_delivery, .data = &c};
  ASSERT_MSG(kq_producer_new(&c.loop, &po, &c.prod, err, sizeof err) == SVC_OK, "%s", err);
  produce_range(&c, 0, N_FIRST);
  c.stage = -1;
  uv_timer_init(&c.loop, &c.stage_timer);
  c.stage_timer.data = &c;
  uv_timer_start(&c.stage_timer, stage_tick, 50, 50);
  uv_timer_init(&c.loop, &c.deadline);
  c.deadline.data = &c;
  uv_timer_start(&c.deadline, deadline_hit, 90000, 0);
  uv_unref((uv_handle_t *)&c.deadline);
  double t0 = test_now_s();
  ASSERT_EQ(uv_run(&c.loop, UV_RUN_DEFAULT), 0);
  printf("loop ran %.2f s\n", test_now_s() - t0);

  ASSERT_EQ(c.closed, 3);
  ASSERT(a.closed && b.closed);
  ASSERT_EQ(c.delivered, N_FIRST + N_SECOND);
  ASSERT_EQ(c.delivery_errors, 0);
  for (int i = 0; i < N_FIRST + N_SECOND; i++) ASSERT_EQ(c.seen_opaque[i], 1);
  /* A's deferred assignment started partition 0 at offset 10: records 0, 4, ..., 36 skipped. */
  for (int i = 0; i < N_FIRST; i++) {
    int want = (i % N_PARTS == 0 && i / N_PARTS < 10) ? 0 : 1;
    ASSERT_MSG(a.got_first[i] == want, "record %d arrived %d times at A, want %d", i,
               a.got_first[i], want);
    ASSERT_EQ(b.got_first[i], 0);
  }
  ASSERT_EQ(a.got_second + b.got_second, N_SECOND);
  ASSERT_OP(b.got_second, >, 0);
  ASSERT_OP(a.got_second, >, 0);
  ASSERT_EQ(a.foreign, 0);
  ASSERT_EQ(b.foreign, 0);
  uv_close((uv_handle_t *)&c.deadline, handle_closed);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&c.loop));
}

/* ---- back-pressure ---------------------------------------------------------------- */

#define N_PAUSE 2000

typedef struct {
  uv_loop_t loop;
  kq_producer_t *prod;
  kq_consumer_t *cons;
  int delivered;
  int assigned_reported;
  int got;
  int seen[N_PAUSE];
  int last[2];          /* last record index per partition, to check order */
  int out_of_order;
  int got_at_pause;
  int paused_mid_stream;
  int stage;
  double stage_since;
  uv_timer_t tick;
  int closed;
} bp_t;

static void bp_delivery(kq_producer_t *prod, const rd_kafka_message_t *msg, svc_err_t err,
                        void *opaque) {
  (void)msg;
  (void)opaque;
  bp_t *b = prod->data;
  ASSERT_OK(err);
  b->delivered++;
}

static void bp_message(kq_consumer_t *cons, rd_kafka_message_t *m) {
  bp_t *b = cons->data;
  ASSERT(!kq_consumer_paused(cons));
  int i = -1;
  ASSERT_EQ(sscanf((const char *)m->payload, "p%d", &i), 1);
  ASSERT(i >= 0 && i < N_PAUSE);
  b->seen[i]++;
  if (i <= b->last[m->partition]) b->out_of_order++;
  b->last[m->partition] = i;
  b->got++;
  rd_kafka_message_destroy(m);
  if (b->got == N_PAUSE / 4 && !b->paused_mid_stream) {
    /* Pausing from inside the message callback stops delivery at once. */
    b->paused_mid_stream = 1;
    ASSERT_OK(kq_consumer_pause(cons));
    b->got_at_pause = b->got;
    b->stage_since = test_now_s();
  }
}

static kq_rebalance_action_t bp_rebalance(kq_consumer_t *cons, kq_rebalance_kind_t kind,
                                          rd_kafka_topic_partition_list_t *parts) {
  bp_t *b = cons->data;
  if (kind == KQ_REBALANCE_ASSIGN && parts->cnt > 0) {
    b->assigned_reported += parts->cnt;
    b->stage_since = test_now_s();
  }
  return KQ_REBALANCE_DONE;
}

static void bp_cons_closed(kq_consumer_t *cons) { ((bp_t *)cons->data)->closed++; }
static void bp_prod_closed(kq_producer_t *prod, size_t n) {
  ASSERT_EQ(n, 0);
  ((bp_t *)prod->data)->closed++;
}

static void bp_tick(uv_timer_t *t) {
  bp_t *b = t->data;
  double now = test_now_s();
  switch (b->stage) {
  case 0: /* assigned while paused: nothing may arrive */
    if (b->assigned_reported < 2 || now - b->stage_since < 1.0) return;
    ASSERT_EQ(b->got, 0);
    ASSERT_OK(kq_consumer_resume(b->cons));
    b->stage = 1;
    return;
  case 1: /* paused mid-stream by the callback: delivery stays stopped */
    if (!b->paused_mid_stream || now - b->stage_since < 0.5) return;
    ASSERT_EQ(b->got, b->got_at_pause);
    ASSERT(kq_consumer_paused(b->cons));
    ASSERT_OK(kq_consumer_resume(b->cons));
    b->stage = 2;
    return;
  case 2:
    if (b->got < N_PAUSE) return;
    b->stage = 3;
    uv_close((uv_handle_t *)t, NULL);
    kq_consumer_close(b->cons, bp_cons_closed);
    kq_producer_close(b->prod, 5000, bp_prod_closed);
    return;
  }
}

TEST(pause_holds_back_and_resume_continues) {
  static bp_t b;
  memset(&b, 0, sizeof b);
  b.last[0] = b.last[1] = -1;
  const char *brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  char topic[100], err[512];
  test_unique_name(topic, sizeof topic, "test-kq-pause");
  ASSERT_MSG(kq_topic_create(brokers, topic, 2, 1, 15000, err, sizeof err) == SVC_OK, "%s", err);
  ASSERT_OK(uv_loop_init(&b.loop));
  kq_producer_opts_t po = {.brokers = brokers, .on_delivery = bp_delivery, .data = &b};
  ASSERT_MSG(kq_producer_new(&b.loop, &po, &b.prod, err, sizeof err) == SVC_OK, "%s", err);
  for (int i = 0; i < N_PAUSE; i++) {
    char v[16];
    snprintf(v, sizeof v, "p%d", i);
    kq_record_t r = {.topic = topic, .partition = i % 2, .value = v, .value_len = strlen(v) + 1};
    ASSERT_OK(kq_producer_send(b.prod, &r));
  }
  double end = test_now_s() + 30;
  while (b.delivered < N_PAUSE && test_now_s() < end) uv_run(&b.loop, UV_RUN_ONCE);
  ASSERT_EQ(b.delivered, N_PAUSE);

  const char *topics[] = {topic, NULL};
  kq_consumer_opts_t co = {.brokers = brokers, .group_id = topic, .topics = topics,
                           .on_message = bp_message, .on_rebalance = bp_rebalance, .data = &b};
  ASSERT_MSG(kq_consumer_new(&b.loop, &co, &b.cons, err, sizeof err) == SVC_OK, "%s", err);
  ASSERT_OK(kq_consumer_pause(b.cons)); /* before any assignment */
  uv_timer_init(&b.loop, &b.tick);
  b.tick.data = &b;
  uv_timer_start(&b.tick, bp_tick, 20, 20);
  ASSERT_EQ(uv_run(&b.loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(b.closed, 2);
  ASSERT_EQ(b.got, N_PAUSE);
  for (int i = 0; i < N_PAUSE; i++) ASSERT_MSG(b.seen[i] == 1, "record %d seen %d times", i, b.seen[i]);
  ASSERT_EQ(b.out_of_order, 0);
  ASSERT_OK(uv_loop_close(&b.loop));
}

/* ---- close with a deferred assignment ----------------------------------------------- */

typedef struct {
  int asked;
  int closed;
} dc_t;

static void dc_message(kq_consumer_t *cons, rd_kafka_message_t *m) {
  (void)cons;
  rd_kafka_message_destroy(m);
}

static kq_rebalance_action_t dc_rebalance(kq_consumer_t *cons, kq_rebalance_kind_t kind,
                                          rd_kafka_topic_partition_list_t *parts) {
  dc_t *d = cons->data;
  if (kind == KQ_REBALANCE_ASSIGN && parts->cnt > 0) {
    d->asked++;
    return KQ_REBALANCE_DEFER; /* and never complete it: the close must */
  }
  return KQ_REBALANCE_DONE;
}

static void dc_closed(kq_consumer_t *cons) { ((dc_t *)cons->data)->closed++; }

TEST(close_completes_a_deferred_assignment) {
  const char *brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  char topic[100], err[512];
  test_unique_name(topic, sizeof topic, "test-kq-defer-close");
  ASSERT_MSG(kq_topic_create(brokers, topic, 2, 1, 15000, err, sizeof err) == SVC_OK, "%s", err);
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  dc_t d = {0};
  const char *topics[] = {topic, NULL};
  kq_consumer_opts_t co = {.brokers = brokers, .group_id = topic, .topics = topics,
                           .session_timeout_ms = 45000, .on_message = dc_message,
                           .on_rebalance = dc_rebalance, .data = &d};
  kq_consumer_t *cons;
  ASSERT_MSG(kq_consumer_new(&loop, &co, &cons, err, sizeof err) == SVC_OK, "%s", err);
  double end = test_now_s() + 30;
  while (d.asked == 0 && test_now_s() < end) uv_run(&loop, UV_RUN_ONCE);
  ASSERT_EQ(d.asked, 1);
  double t0 = test_now_s();
  kq_consumer_close(cons, dc_closed);
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(d.closed, 1);
  /* Far below the 45 s session timeout that an unacknowledged rebalance would wait out. */
  ASSERT_OP(test_now_s() - t0, <, 10);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- closing from inside a delivery report ---------------------------------------------- */

typedef struct {
  int reports, ok, closed;
  size_t undelivered;
} cd_t;

static void cd_closed(kq_producer_t *prod, size_t n) {
  cd_t *d = prod->data;
  d->closed++;
  d->undelivered = n;
}

static void cd_delivery(kq_producer_t *prod, const rd_kafka_message_t *m, svc_err_t err,
                        void *opaque) {
  (void)m;
  (void)opaque;
  cd_t *d = prod->data;
  d->reports++;
  if (err == SVC_OK) d->ok++;
  if (d->reports == 1) kq_producer_close(prod, 10000, cd_closed); /* the rest still flush */
}

TEST(producer_closed_from_its_delivery_report_still_flushes) {
  const char *brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  char topic[100], err[512];
  test_unique_name(topic, sizeof topic, "test-kq-close-in-dr");
  ASSERT_MSG(kq_topic_create(brokers, topic, 1, 1, 15000, err, sizeof err) == SVC_OK, "%s", err);
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  cd_t d = {0};
  kq_producer_t *prod;
  const char *const props[] = {"linger.ms", "50", NULL};
  kq_producer_opts_t po = {.brokers = brokers, .props = props, .on_delivery = cd_delivery, .data = &d};
  ASSERT_MSG(kq_producer_new(&loop, &po, &prod, err, sizeof err) == SVC_OK, "%s", err);
  kq_record_t r = {.topic = topic, .partition = 0, .value = "x", .value_len = 1};
  for (int i = 0; i < 50; i++) ASSERT_OK(kq_producer_send(prod, &r));
  /* The first report closes the producer; the loop ends when the close has finished. */
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(d.closed, 1);
  ASSERT_EQ(d.reports, 50);
  ASSERT_EQ(d.ok, 50);
  ASSERT_EQ(d.undelivered, 0);
  ASSERT_OK(uv_loop_close(&loop));
}
