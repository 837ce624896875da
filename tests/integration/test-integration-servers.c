/*
 * The servers that scripts/test starts are real and reachable: PostgreSQL answers a query and
 * can create, write and read a table; the Kafka broker answers a metadata request and
 * round-trips a record. Every other integration test builds on these two facts.
 */
#include "test.h"

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

TEST(postgres_answers) {
  const char *dsn = test_require_env("SLUICE_PG_DSN");
  PGconn *conn = PQconnectdb(dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "connect %s: %s", dsn, PQerrorMessage(conn));
  PGresult *res = PQexec(conn, "SELECT current_setting('server_version_num')::int");
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  ASSERT_OP(atoi(PQgetvalue(res, 0, 0)), >=, 150000);
  PQclear(res);

  res = PQexec(conn, "CREATE TEMP TABLE t (id int primary key, v text);"
                     "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;");
  ASSERT_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQerrorMessage(conn));
  PQclear(res);
  res = PQexec(conn, "SELECT count(*), sum(id) FROM t");
  ASSERT_EQ(atoi(PQgetvalue(res, 0, 0)), 100);
  ASSERT_EQ(atoi(PQgetvalue(res, 0, 1)), 5050);
  PQclear(res);
  PQfinish(conn);
}

TEST(kafka_answers_and_round_trips) {
  const char *brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  char err[512], topic[128];
  test_unique_name(topic, sizeof topic, "test-servers");

  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err), RD_KAFKA_CONF_OK);
  rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_MSG(prod != NULL, "producer: %s", err);

  const struct rd_kafka_metadata *md = NULL;
  ASSERT_EQ(rd_kafka_metadata(prod, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(md->broker_cnt, 1);
  rd_kafka_metadata_destroy(md);

  ASSERT_EQ(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("k", 1),
                              RD_KAFKA_V_VALUE("hello", 5), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_flush(prod, 15000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(prod);

  conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", topic, err, sizeof err);
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err);
  rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  ASSERT_MSG(cons != NULL, "consumer: %s", err);
  rd_kafka_poll_set_consumer(cons);
  rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
  ASSERT_EQ(rd_kafka_subscribe(cons, subs), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(subs);

  int got = 0;
  double deadline = test_now_s() + 30;
  while (!got && test_now_s() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 200);
    if (m == NULL) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ASSERT_EQ(m->len, 5);
      ASSERT(memcmp(m->payload, "hello", 5) == 0);
      got = 1;
    }
    rd_kafka_message_destroy(m);
  }
  ASSERT_MSG(got, "record not consumed within 30 s from %s", topic);
  rd_kafka_consumer_close(cons);
  rd_kafka_destroy(cons);
}
