/*
 * The Kafka adapter under faults that the real broker cannot give on demand, using librdkafka's
 * in-process mock cluster: a produce request rejected by the broker becomes an SVC_EKAFKA
 * delivery report on the loop thread; closing a producer whose broker is down purges the queue
 * after the timeout (every record reported SVC_ECANCELED) while the loop keeps running; and a
 * consumer limited to one message per wakeup still drains a backlog at loop speed (the bounded
 * drain re-arms itself instead of waiting for a wakeup byte that will not come), and hands
 * librdkafka's statistics to the stats hook; a member whose coordinator vanishes for longer than
 * the session timeout gets its partitions reported LOST (not REVOKE), then assigned again; a
 * consumer whose broker cannot be reached still starts, after the bounded wait for its topics'
 * leaders, and closes.
 */
#include "test.h"

#include <pthread.h>

#include "svc/kafka.h"
#include "svc/log.h"
/* After rdkafka.h (included by svc/kafka.h), as the mock header requires. */
#include <librdkafka/rdkafka_mock.h>

#define KAFKA_API_PRODUCE 0 /* ApiKey of ProduceRequest in the Kafka protocol */

typedef struct {
  int reports, ok, failed, canceled;
  svc_err_t last_err;
  int64_t last_offset;
  pthread_t loop_thread;
  int closed;
  size_t undelivered;
} pstate_t;

static void on_delivery(kq_producer_t *prod, const rd_kafka_message_t *m, svc_err_t err,
                        void *opaque) {
  pstate_t *s = prod->data;
  (void)opaque;
  ASSERT(pthread_equal(pthread_self(), s->loop_thread));
  s->reports++;
  s->last_err = err;
  s->last_offset = m->offset;
  if (err == SVC_OK) s->ok++;
  else if (err == SVC_ECANCELED) s->canceled++;
  else s->failed++;
}

static void on_closed(kq_producer_t *prod, size_t undelivered) {
  pstate_t *s = prod->data;
  s->closed++;
  s->undelivered = undelivered;
}

static const char *const mock_props[] = {"test.mock.num.brokers", "1", "enable.idempotence",
                                         "false", "retries", "0", NULL};

static void send_one(kq_producer_t *prod, const char *topic, int i) {
  char v[16];
  snprintf(v, sizeof v, "v%d", i);
  kq_record_t r = {.topic = topic, .partition = 0, .value = v, .value_len = strlen(v)};
  ASSERT_OK(kq_producer_send(prod, &r));
}

static void run_until(uv_loop_t *loop, int *counter, int want, double timeout_s) {
  double end = test_now_s() + timeout_s;
  while (*counter < want && test_now_s() < end) uv_run(loop, UV_RUN_ONCE);
  ASSERT_MSG(*counter >= want, "waited %.0f s: %d of %d", timeout_s, *counter, want);
}

static uint64_t last_tick, max_gap;
static void tick(uv_timer_t *t) {
  uint64_t now = uv_now(t->loop);
  if (last_tick != 0 && now - last_tick > max_gap) max_gap = now - last_tick;
  last_tick = now;
}

TEST(broker_errors_and_purge_on_close) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  pstate_t s = {.loop_thread = pthread_self()};
  kq_producer_t *prod;
  char err[512];
  kq_producer_opts_t o = {.brokers = "mock", .props = mock_props, .on_delivery = on_delivery,
                          .data = &s};
  ASSERT_MSG(kq_producer_new(&loop, &o, &prod, err, sizeof err) == SVC_OK, "%s", err);
  rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(kq_producer_rk(prod));
  ASSERT_NOT_NULL(mc);
  ASSERT_EQ(rd_kafka_mock_topic_create(mc, "t", 2, 1), RD_KAFKA_RESP_ERR_NO_ERROR);

  /* The broker rejects the first produce request, the next one goes through. */
  rd_kafka_mock_push_request_errors(mc, KAFKA_API_PRODUCE, 1,
                                    RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  send_one(prod, "t", 0);
  run_until(&loop, &s.reports, 1, 10);
  ASSERT_EQ(s.failed, 1);
  ASSERT_EQ(s.last_err, SVC_EKAFKA);
  send_one(prod, "t", 1);
  run_until(&loop, &s.reports, 2, 10);
  ASSERT_EQ(s.ok, 1);
  ASSERT_EQ(s.last_offset, 0);

  /* Broker down: the close waits 300 ms on the loop, then purges and reports every record. */
  rd_kafka_mock_broker_set_down(mc, 1);
  for (int i = 0; i < 5; i++) send_one(prod, "t", 10 + i);
  ASSERT_OP(kq_producer_outq_len(prod), >=, 5); /* messages, plus requests and events */
  uv_timer_t ticker;
  uv_timer_init(&loop, &ticker);
  uv_timer_start(&ticker, tick, 10, 10);
  uv_unref((uv_handle_t *)&ticker);
  double t0 = test_now_s();
  kq_producer_close(prod, 300, on_closed);
  ASSERT_EQ(kq_producer_send(prod, &(kq_record_t){.topic = "t", .partition = 0}), SVC_ECLOSED);
  run_until(&loop, &s.closed, 1, 10);
  double took = test_now_s() - t0;
  ASSERT_OP(took, >=, 0.25);
  ASSERT_OP(took, <, 5);
  ASSERT_EQ(s.canceled, 5);
  ASSERT_EQ(s.undelivered, 5);
  ASSERT_OP(max_gap, <, 250); /* the loop kept turning during the close */
  uv_close((uv_handle_t *)&ticker, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}

typedef struct {
  int got;
  int assigned;
  int closed;
  int stats;
  int lost, revoked;
} cstate_t;

static void on_stats(kq_consumer_t *cons, const char *json, size_t len) {
  cstate_t *c = cons->data;
  ASSERT_OP(len, >, 10);
  ASSERT_EQ(json[0], '{');
  ASSERT_STR_CONTAINS(json, "\"consumer\"");
  c->stats++;
}

static void on_message(kq_consumer_t *cons, rd_kafka_message_t *m) {
  cstate_t *c = cons->data;
  c->got++;
  rd_kafka_message_destroy(m);
}

static kq_rebalance_action_t on_rebalance(kq_consumer_t *cons, kq_rebalance_kind_t kind,
                                          rd_kafka_topic_partition_list_t *parts) {
  cstate_t *c = cons->data;
  if (kind == KQ_REBALANCE_ASSIGN) c->assigned += parts->cnt;
  if (kind == KQ_REBALANCE_LOST) c->lost += parts->cnt;
  if (kind == KQ_REBALANCE_REVOKE) c->revoked += parts->cnt;
  return KQ_REBALANCE_DONE;
}

static void cons_closed(kq_consumer_t *cons) { ((cstate_t *)cons->data)->closed++; }

TEST(bounded_drain_rearms_itself) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  pstate_t s = {.loop_thread = pthread_self()};
  kq_producer_t *prod;
  char err[512];
  kq_producer_opts_t o = {.brokers = "mock", .props = mock_props, .on_delivery = on_delivery,
                          .data = &s};
  ASSERT_MSG(kq_producer_new(&loop, &o, &prod, err, sizeof err) == SVC_OK, "%s", err);
  rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(kq_producer_rk(prod));
  ASSERT_EQ(rd_kafka_mock_topic_create(mc, "backlog", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const int n = 300;
  for (int i = 0; i < n; i++) send_one(prod, "backlog", i);
  run_until(&loop, &s.ok, n, 20);

  cstate_t c = {0};
  const char *topics[] = {"backlog", NULL};
  kq_consumer_opts_t co = {.brokers = rd_kafka_mock_cluster_bootstraps(mc), .group_id = "g",
                           .topics = topics, .max_per_wakeup = 1, .on_message = on_message,
                           .on_rebalance = on_rebalance, .statistics_interval_ms = 100,
                           .on_stats = on_stats, .data = &c};
  kq_consumer_t *cons;
  ASSERT_MSG(kq_consumer_new(&loop, &co, &cons, err, sizeof err) == SVC_OK, "%s", err);
  run_until(&loop, &c.assigned, 1, 20);
  double t0 = test_now_s();
  run_until(&loop, &c.got, n, 20);
  /* One message per wakeup and only the 1 s idle poll would take n seconds. */
  ASSERT_OP(test_now_s() - t0, <, 10);
  ASSERT_EQ(c.got, n);
  run_until(&loop, &c.stats, 1, 5); /* the statistics hook fires on the loop thread too */
  kq_consumer_close(cons, cons_closed);
  kq_producer_close(prod, 1000, on_closed);
  run_until(&loop, &c.closed, 1, 20);
  run_until(&loop, &s.closed, 1, 20);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}

/* kq_consumer_new asks for the topics' leaders before subscribing (svc/kafka.h); with no broker
 * to answer, that wait is bounded and the consumer still starts, as before it, and closes. */
TEST(consumer_starts_without_a_broker) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  cstate_t c = {0};
  const char *topics[] = {"nowhere", NULL};
  kq_consumer_opts_t co = {.brokers = "127.0.0.1:1", .group_id = "g", .topics = topics,
                           .on_message = on_message, .close_timeout_ms = 500, .data = &c};
  kq_consumer_t *cons = NULL;
  char err[512];
  double t0 = test_now_s();
  ASSERT_MSG(kq_consumer_new(&loop, &co, &cons, err, sizeof err) == SVC_OK, "%s", err);
  /* 2 s per topic at most, with a wide margin for a loaded machine; never unbounded. */
  ASSERT_OP(test_now_s() - t0, <, 15);
  ASSERT_EQ(c.got, 0);
  kq_consumer_close(cons, cons_closed);
  run_until(&loop, &c.closed, 1, 20);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST(bad_options_are_reported) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  char err[512];
  kq_producer_t *prod = (kq_producer_t *)&loop;
  const char *const bad_props[] = {"linger.ms", "soon", NULL};
  kq_producer_opts_t o = {.brokers = "localhost:9092", .props = bad_props};
  ASSERT_EQ(kq_producer_new(&loop, &o, &prod, err, sizeof err), SVC_ECONFIG);
  ASSERT_NULL(prod);
  ASSERT_STR_CONTAINS(err, "librdkafka property linger.ms=\"soon\"");
  const char *const odd_props[] = {"linger.ms", NULL};
  o.props = odd_props;
  ASSERT_EQ(kq_producer_new(&loop, &o, &prod, err, sizeof err), SVC_EINVAL);
  ASSERT_STR_CONTAINS(err, "linger.ms has no value");
  kq_consumer_t *cons;
  kq_consumer_opts_t co = {.brokers = "localhost:9092"};
  ASSERT_EQ(kq_consumer_new(&loop, &co, &cons, err, sizeof err), SVC_EINVAL);
  ASSERT_STR_CONTAINS(err, "group_id, topics and on_message are required");
  ASSERT_EQ(kq_err_from_rd(RD_KAFKA_RESP_ERR__QUEUE_FULL), SVC_EAGAIN);
  ASSERT_EQ(kq_err_from_rd(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), SVC_ETIMEDOUT);
  ASSERT_EQ(kq_err_from_rd(RD_KAFKA_RESP_ERR__PURGE_QUEUE), SVC_ECANCELED);
  ASSERT_EQ(kq_err_from_rd(RD_KAFKA_RESP_ERR_NO_ERROR), SVC_OK);
  ASSERT_EQ(kq_err_from_rd(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED), SVC_EKAFKA);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST(session_loss_is_reported_as_lost_then_reassigned) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  pstate_t s = {.loop_thread = pthread_self()};
  kq_producer_t *prod;
  char err[512];
  kq_producer_opts_t o = {.brokers = "mock", .props = mock_props, .on_delivery = on_delivery,
                          .data = &s};
  ASSERT_MSG(kq_producer_new(&loop, &o, &prod, err, sizeof err) == SVC_OK, "%s", err);
  rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(kq_producer_rk(prod));
  ASSERT_EQ(rd_kafka_mock_topic_create(mc, "lost", 2, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  cstate_t c = {0};
  const char *topics[] = {"lost", NULL};
  const char *const props[] = {"heartbeat.interval.ms", "500", "reconnect.backoff.ms", "100",
                               "reconnect.backoff.max.ms", "500", NULL};
  kq_consumer_opts_t co = {.brokers = rd_kafka_mock_cluster_bootstraps(mc), .group_id = "gl",
                           .topics = topics, .session_timeout_ms = 3000, .props = props,
                           .on_message = on_message, .on_rebalance = on_rebalance, .data = &c};
  kq_consumer_t *cons;
  ASSERT_MSG(kq_consumer_new(&loop, &co, &cons, err, sizeof err) == SVC_OK, "%s", err);
  run_until(&loop, &c.assigned, 2, 20);
  /* The coordinator goes away for longer than the session timeout: the member must assume
   * its partitions are someone else's now (LOST, not an orderly REVOKE). */
  rd_kafka_mock_broker_set_down(mc, 1);
  run_until(&loop, &c.lost, 2, 20);
  ASSERT_EQ(c.revoked, 0);
  rd_kafka_mock_broker_set_up(mc, 1);
  run_until(&loop, &c.assigned, 4, 30);
  kq_consumer_close(cons, cons_closed);
  kq_producer_close(prod, 1000, on_closed);
  run_until(&loop, &c.closed, 1, 20);
  run_until(&loop, &s.closed, 1, 20);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}
