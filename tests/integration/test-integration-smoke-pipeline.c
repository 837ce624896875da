/*
 * The 10,000-event smoke pipeline against the real broker and database: events produced to a
 * fresh 4-partition topic, consumed in a group through kq_consumer on a libuv loop, written to
 * PostgreSQL in batch transactions with their next offsets. This test then checks the tables
 * itself, with its own connection and without the pipeline's counters: exactly the ids
 * "<run>-0" ... "<run>-9999" are stored, once each; each row's partition and offset are
 * distinct and the stored next offset of each partition is one past its highest stored
 * offset; and each row carries the amount and card id that event was produced with.
 */
#include "test.h"

#include <libpq-fe.h>

#include "smoke.h"

#define N_EVENTS 10000

static PGresult *q(PGconn *pg, const char *sql) {
  PGresult *res = PQexec(pg, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK,
             "%s: %s", sql, PQerrorMessage(pg));
  return res;
}

TEST(ten_thousand_events_stored_exactly_once) {
  const char *brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  const char *dsn = test_require_env("SLUICE_PG_DSN");
  char run_id[64];
  snprintf(run_id, sizeof run_id, "t%ld_%ld", (long)getpid(), (long)time(NULL));

  smoke_opts_t o = {.brokers = brokers, .dsn = dsn, .events = N_EVENTS, .batch_size = 500,
                    .partitions = 4, .timeout_ms = 90000, .run_id = run_id, .keep_tables = true};
  smoke_report_t rep;
  char err[1024] = "";
  svc_err_t rc = smoke_run(&o, &rep, err, sizeof err);
  smoke_report_print(&rep, stdout);
  ASSERT_MSG(rc == SVC_OK, "smoke_run: %s", err);

  PGconn *pg = PQconnectdb(dsn);
  ASSERT_MSG(PQstatus(pg) == CONNECTION_OK, "%s", PQerrorMessage(pg));
  char sql[512];

  /* The id set, read back and checked here. */
  snprintf(sql, sizeof sql, "SELECT event_id, amount, card_id FROM smoke_%s_events", run_id);
  PGresult *res = q(pg, sql);
  ASSERT_EQ(PQntuples(res), N_EVENTS);
  static int seen[N_EVENTS];
  memset(seen, 0, sizeof seen);
  char prefix[80];
  snprintf(prefix, sizeof prefix, "%s-", run_id);
  for (int r = 0; r < PQntuples(res); r++) {
    const char *id = PQgetvalue(res, r, 0);
    ASSERT_MSG(strncmp(id, prefix, strlen(prefix)) == 0, "foreign id %s", id);
    char *end;
    long i = strtol(id + strlen(prefix), &end, 10);
    ASSERT_MSG(*end == '\0' && i >= 0 && i < N_EVENTS, "unexpected id %s", id);
    seen[i]++;
    ASSERT_NEAR(atof(PQgetvalue(res, r, 1)), (double)(i % 10000) / 100.0, 1e-12);
    char card[32];
    snprintf(card, sizeof card, "card-%ld", i % 1000);
    ASSERT_STR_EQ(PQgetvalue(res, r, 2), card);
  }
  PQclear(res);
  for (int i = 0; i < N_EVENTS; i++) ASSERT_MSG(seen[i] == 1, "event %d stored %d times", i, seen[i]);

  /* Every (partition, offset) once, offsets within the partitions, and the stored next offsets
   * agree with what was stored. */
  snprintf(sql, sizeof sql,
           "SELECT count(DISTINCT (kafka_partition, kafka_offset)), min(kafka_partition), "
           "max(kafka_partition), min(kafka_offset) FROM smoke_%s_events", run_id);
  res = q(pg, sql);
  ASSERT_EQ(atoi(PQgetvalue(res, 0, 0)), N_EVENTS);
  ASSERT_EQ(atoi(PQgetvalue(res, 0, 1)), 0);
  ASSERT_EQ(atoi(PQgetvalue(res, 0, 2)), 3);
  ASSERT_EQ(atoi(PQgetvalue(res, 0, 3)), 0);
  PQclear(res);
  snprintf(sql, sizeof sql,
           "SELECT o.kafka_partition, o.next_offset, e.max_off, e.n FROM smoke_%s_offsets o "
           "JOIN (SELECT kafka_partition, max(kafka_offset) AS max_off, count(*) AS n "
           "FROM smoke_%s_events GROUP BY kafka_partition) e USING (kafka_partition) "
           "ORDER BY 1", run_id, run_id);
  res = q(pg, sql);
  ASSERT_EQ(PQntuples(res), 4);
  long total = 0;
  for (int r = 0; r < 4; r++) {
    long next = atol(PQgetvalue(res, r, 1));
    ASSERT_EQ(next, atol(PQgetvalue(res, r, 2)) + 1);
    ASSERT_EQ(next, atol(PQgetvalue(res, r, 3))); /* offsets 0..next-1, none skipped */
    total += next;
  }
  ASSERT_EQ(total, N_EVENTS);
  PQclear(res);

  /* The pipeline's own summary agrees. */
  ASSERT(rep.ok);
  ASSERT_EQ(rep.duplicates, 0);
  ASSERT_EQ(rep.missing, 0);
  ASSERT_OP(rep.batches, >=, N_EVENTS / 500);

  snprintf(sql, sizeof sql, "DROP TABLE smoke_%s_events; DROP TABLE smoke_%s_offsets", run_id, run_id);
  PQclear(q(pg, sql));
  PQfinish(pg);
}
