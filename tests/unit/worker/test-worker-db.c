/*
 * Integration tests against the real PostgreSQL (SLUICE_PG_DSN): the versioned migrations
 * (fresh apply, idempotent re-run, a new version, an edited migration refused, a database
 * ahead of the worker refused, concurrent starts) and the per-batch statement (every part
 * written with exact values, awkward strings intact, duplicates merged or skipped, and a
 * re-applied or stale batch changing nothing). Each test works in its own schema.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>

#include "pipeline-fraud.h"
#include "schema.h"
#include "test.h"
#include "velocity.h"

static PGconn *connect_db(void) {
  const char *dsn = test_require_env("SLUICE_PG_DSN");
  PGconn *conn = PQconnectdb(dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "connect: %s", PQerrorMessage(conn));
  PQclear(PQexec(conn, "SET client_min_messages TO warning"));
  return conn;
}

static void unique_schema(char *buf, size_t size, const char *prefix) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(buf, size, "%s_%ld_%ld%09ld", prefix, (long)getpid(), (long)ts.tv_sec,
           (long)ts.tv_nsec);
}

static void drop_schema(PGconn *conn, const char *schema) {
  char sql[256];
  snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS \"%s\" CASCADE", schema);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
  PQclear(res);
}

/* Runs a query expected to return one value; returns it as a malloc'd string ("" for NULL). */
static char *query1(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *query1(PGconn *conn, const char *fmt, ...) {
  char sql[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
  ASSERT_MSG(PQntuples(res) == 1, "%s: %d rows", sql, PQntuples(res));
  char *v = strdup(PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
  PQclear(res);
  return v;
}

static long query_long(PGconn *conn, const char *fmt, const char *schema) {
  char sql[1024];
  snprintf(sql, sizeof sql, fmt, schema);
  char *v = query1(conn, "%s", sql);
  long x = atol(v);
  free(v);
  return x;
}

/* ---- migrations ----------------------------------------------------------------------- */

TEST(migrations_versioned_and_idempotent) {
  PGconn *conn = connect_db();
  char schema[96], err[512];
  unique_schema(schema, sizeof schema, "wk_mig");
  int applied = -1;
  ASSERT_MSG(wk_schema_migrate(conn, schema, &applied, err, sizeof err) == SVC_OK, "%s", err);
  ASSERT_EQ(applied, (int)wk_n_migrations);
  ASSERT_EQ(query_long(conn,
                       "SELECT count(*) FROM information_schema.tables WHERE table_schema = '%s' "
                       "AND table_name IN ('results', 'card_state', 'outbox', 'kafka_offsets', "
                       "'schema_migrations')",
                       schema),
            5);
  /* Migration 3: results keeps only its primary key (each index costs every event an insert). */
  ASSERT_EQ(query_long(conn,
                       "SELECT count(*) FROM pg_indexes WHERE schemaname = '%s' "
                       "AND tablename = 'results'",
                       schema),
            1);

  /* Again: nothing to do. */
  ASSERT_OK(wk_schema_migrate(conn, schema, &applied, err, sizeof err));
  ASSERT_EQ(applied, 0);

  /* A new version is applied alone, and recorded. */
  wk_migration_t more[8];
  memcpy(more, wk_migrations, wk_n_migrations * sizeof *more);
  int v_next = wk_migrations[wk_n_migrations - 1].version + 1;
  more[wk_n_migrations] = (wk_migration_t){v_next, "a test table", "CREATE TABLE extra (x int)"};
  ASSERT_MSG(wk_schema_migrate_list(conn, schema, more, wk_n_migrations + 1, &applied, err,
                                    sizeof err) == SVC_OK,
             "%s", err);
  ASSERT_EQ(applied, 1);
  ASSERT_EQ(query_long(conn, "SELECT max(version) FROM \"%s\".schema_migrations", schema), v_next);
  ASSERT_EQ(query_long(conn, "SELECT count(*) FROM \"%s\".extra", schema), 0);

  /* The worker without that version meets a database that is ahead. */
  ASSERT_EQ(wk_schema_migrate(conn, schema, &applied, err, sizeof err), SVC_ESTATE);
  ASSERT_STR_CONTAINS(err, "this worker knows up to");

  /* An applied migration whose text changed is refused. */
  more[wk_n_migrations].sql = "CREATE TABLE extra (x bigint)";
  ASSERT_EQ(wk_schema_migrate_list(conn, schema, more, wk_n_migrations + 1, &applied, err,
                                   sizeof err),
            SVC_ESTATE);
  ASSERT_STR_CONTAINS(err, "checksum differs");

  /* A failing migration is rolled back and named; earlier ones stay. */
  more[wk_n_migrations].sql = "CREATE TABLE extra (x int)";
  more[wk_n_migrations + 1] = (wk_migration_t){v_next + 1, "broken", "CREATE TABLE extra (y int)"};
  ASSERT_EQ(wk_schema_migrate_list(conn, schema, more, wk_n_migrations + 2, &applied, err,
                                   sizeof err),
            SVC_EDB);
  ASSERT_STR_CONTAINS(err, "(broken) failed");
  ASSERT_STR_CONTAINS(err, "already exists");
  ASSERT_EQ(query_long(conn, "SELECT max(version) FROM \"%s\".schema_migrations", schema), v_next);
  ASSERT_EQ(PQtransactionStatus(conn), PQTRANS_IDLE);

  /* Bad names and lists. */
  ASSERT_EQ(wk_schema_migrate(conn, "Robert'); DROP", &applied, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "has 'R' at byte 0");
  wk_migration_t backwards[2] = {{2, "b", "SELECT 1"}, {1, "a", "SELECT 1"}};
  ASSERT_EQ(wk_schema_migrate_list(conn, schema, backwards, 2, &applied, err, sizeof err),
            SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "versions must increase");

  drop_schema(conn, schema);
  PQfinish(conn);
}

typedef struct race_s {
  const char *schema;
  int applied;
  svc_err_t err;
  char errstr[512];
} race_t;

static void *migrate_thread(void *p) {
  race_t *r = p;
  PGconn *conn = connect_db();
  r->err = wk_schema_migrate(conn, r->schema, &r->applied, r->errstr, sizeof r->errstr);
  PQfinish(conn);
  return NULL;
}

TEST(concurrent_starts_migrate_once) {
  char schema[96];
  unique_schema(schema, sizeof schema, "wk_race");
  race_t r[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    r[i] = (race_t){.schema = schema};
    ASSERT_OK(pthread_create(&th[i], NULL, migrate_thread, &r[i]));
  }
  int total = 0;
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(pthread_join(th[i], NULL));
    ASSERT_MSG(r[i].err == SVC_OK, "worker %d: %s", i, r[i].errstr);
    total += r[i].applied;
  }
  ASSERT_EQ(total, (int)wk_n_migrations);
  PGconn *conn = connect_db();
  drop_schema(conn, schema);
  PQfinish(conn);
}

/* ---- the batch statement -------------------------------------------------------------- */

typedef struct counts_s {
  long results, states, outbox, offsets;
} counts_t;

/* Sends the fraud statement as the worker renders it (binary parameters). */
static wk_stmt_counts_t run_batch(PGconn *conn, wk_stmt_t *tx) {
  const char *sql;
  const char *const *params;
  const int *lengths = NULL, *formats = NULL;
  int n_params;
  wk_stmt_render(tx, &sql, &n_params, &params, &lengths, &formats);
  PGresult *res = PQexecParams(conn, sql, n_params, NULL, params, lengths, formats, 0);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "batch: %s", PQresultErrorMessage(res));
  ASSERT_EQ(PQntuples(res), 1);
  ASSERT_EQ(PQnfields(res), 4);
  const char *cols[4];
  for (int i = 0; i < 4; i++) cols[i] = PQgetvalue(res, 0, i);
  wk_stmt_counts_t c;
  ASSERT_OK(wk_stmt_parse_counts(cols, &c));
  PQclear(res);
  return c;
}

static const char *const awkward_id = "ev \"quoted\", {braced} \\back\\ ü";

static void add_batch(wk_stmt_t *tx, const wk_velocity_t *v_old, const wk_velocity_t *v_new) {
  static const float input[3] = {1.5f, -0.25f, 3.4028235e38f};
  wk_result_row_t r = {.domain = "fraud", .event_id = awkward_id, .key = "card-1",
                       .score = 0.875f, .decision = WK_DECISION_BLOCK, .model_version = "fraud-v3",
                       .experts_json = "[{\"layer\":0,\"expert\":3,\"weight\":0.61}]",
                       .top_features_json = "[{\"name\":\"V14\",\"contribution\":-0.2}]",
                       .input = input, .n_input = 3, .event_time_ms = 1700000000123,
                       .topic = "sluice.fraud.events", .partition = 0, .offset = 10};
  wk_fraud_add_result(tx, &r);
  r.event_id = "ev-2";
  r.key = NULL;
  r.score = 0.01f;
  r.decision = WK_DECISION_ALLOW;
  r.experts_json = NULL;
  r.top_features_json = NULL;
  r.partition = 1;
  r.offset = 7;
  wk_fraud_add_result(tx, &r);
  wk_fraud_add_result(tx, &r); /* a duplicate inside the batch */

  uint8_t buf_old[WK_VEL_ENCODED_MAX], buf_new[WK_VEL_ENCODED_MAX];
  size_t len_old = wk_velocity_encode(v_old, buf_old, sizeof buf_old);
  size_t len_new = wk_velocity_encode(v_new, buf_new, sizeof buf_new);
  wk_state_row_t s = {.card_id = "card-1", .topic = "sluice.fraud.events", .partition = 0,
                      .last_offset = 9, .state = buf_old, .state_len = len_old};
  wk_fraud_add_state(tx, &s);
  s.last_offset = 10;
  s.state = buf_new;
  s.state_len = len_new;
  wk_fraud_add_state(tx, &s); /* same card, newer: replaces */
  s.card_id = "card-2";
  s.partition = 1;
  s.last_offset = 7;
  wk_fraud_add_state(tx, &s);

  static const uint8_t payload[] = {0x0a, 0x00, 0xff, 0x5c, 0x22};
  wk_outbox_row_t o = {.alert_id = "fraud:ev-1", .domain = "fraud", .key = "card-1",
                       .topic = "sluice.fraud.alerts", .payload = payload,
                       .payload_len = sizeof payload};
  wk_stmt_add_outbox(tx, &o);

  wk_stmt_add_offset(tx, "sluice.fraud.events", 0, 10);
  wk_stmt_add_offset(tx, "sluice.fraud.events", 0, 11); /* same partition: the highest wins */
  wk_stmt_add_offset(tx, "sluice.fraud.events", 1, 8);
}

/* The fraud statement as the worker sends it (the generic builder over wk_fraud_tables). */
TEST(batch_statement_exactly_once_binary) {
  PGconn *conn = connect_db();
  char schema[96], err[512];
  unique_schema(schema, sizeof schema, "wk_batch");
  ASSERT_MSG(wk_schema_migrate(conn, schema, NULL, err, sizeof err) == SVC_OK, "%s", err);

  wk_velocity_t v_old, v_new;
  wk_velocity_init(&v_old);
  wk_velocity_update(&v_old, 1700000000000, 10.0);
  v_new = v_old;
  wk_velocity_update(&v_new, 1700000000123, 99.0);

  wk_stmt_t *tx = NULL;
  ASSERT_OK(wk_stmt_new(schema, "fraud-workers", wk_fraud_tables, WK_FRAUD_N_TABLES, &tx, err,
                        sizeof err));
  add_batch(tx, &v_old, &v_new);
  ASSERT_EQ(wk_stmt_n_rows(tx, WK_FRAUD_TABLE_RESULTS), 3);
  ASSERT_EQ(wk_stmt_n_rows(tx, WK_FRAUD_TABLE_CARDS), 2);
  wk_stmt_counts_t c = run_batch(conn, tx);
  ASSERT_EQ(c.results, 2); /* the in-batch duplicate was skipped */
  ASSERT_EQ(c.states, 2);
  ASSERT_EQ(c.outbox, 1);
  ASSERT_EQ(c.offsets, 2);

  /* Every value as written. */
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT key || '|' || score || '|' || decision || '|' || model_version || '|' || "
           "experts::text || '|' || input::text || '|' || "
           "(extract(epoch from event_time) * 1000)::bigint || '|' || topic || '|' || partition "
           "|| '|' || \"offset\" FROM \"%s\".results WHERE event_id = $1",
           schema);
  const char *p[] = {awkward_id};
  PGresult *res = PQexecParams(conn, sql, 1, NULL, p, NULL, NULL, 0);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s",
             PQresultErrorMessage(res));
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0),
                "card-1|0.875|block|fraud-v3|[{\"layer\": 0, \"expert\": 3, \"weight\": 0.61}]|"
                "{1.5,-0.25,3.4028235e+38}|1700000000123|sluice.fraud.events|0|10");
  PQclear(res);
  char *v = query1(conn, "SELECT key || '|' || decision || '|' || experts::text || '|' || "
                         "top_features::text FROM \"%s\".results WHERE event_id = 'ev-2'",
                   schema);
  ASSERT_STR_EQ(v, "|allow|[]|[]");
  free(v);

  /* The state bytes are the newer encoding, and decode to it. */
  snprintf(sql, sizeof sql,
           "SELECT state, last_offset FROM \"%s\".card_state WHERE card_id = 'card-1'", schema);
  res = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1); /* binary: raw bytes */
  ASSERT_EQ(PQntuples(res), 1);
  wk_velocity_t back;
  ASSERT_OK(wk_velocity_decode(&back, (const uint8_t *)PQgetvalue(res, 0, 0),
                               (size_t)PQgetlength(res, 0, 0), err, sizeof err));
  ASSERT_EQ(memcmp(&back, &v_new, sizeof back), 0);
  PQclear(res);

  v = query1(conn, "SELECT encode(payload, 'hex') || '|' || topic FROM \"%s\".outbox", schema);
  ASSERT_STR_EQ(v, "0a00ff5c22|sluice.fraud.alerts");
  free(v);
  v = query1(conn,
             "SELECT string_agg(topic || ':' || partition || '=' || next_offset, ',' ORDER BY "
             "partition) FROM \"%s\".kafka_offsets WHERE consumer_group = 'fraud-workers'",
             schema);
  ASSERT_STR_EQ(v, "sluice.fraud.events:0=11,sluice.fraud.events:1=8");
  free(v);
  char *before = query1(conn,
                        "SELECT (SELECT string_agg(updated_at::text, ',' ORDER BY card_id) FROM "
                        "\"%s\".card_state) || (SELECT max(updated_at)::text FROM "
                        "\"%s\".kafka_offsets)",
                        schema, schema);

  /* The same batch again (a retry after an unknown commit outcome): nothing changes. */
  c = run_batch(conn, tx);
  ASSERT_EQ(c.results, 0);
  ASSERT_EQ(c.states, 0);
  ASSERT_EQ(c.outbox, 0);
  ASSERT_EQ(c.offsets, 0);
  char *after = query1(conn,
                       "SELECT (SELECT string_agg(updated_at::text, ',' ORDER BY card_id) FROM "
                       "\"%s\".card_state) || (SELECT max(updated_at)::text FROM "
                       "\"%s\".kafka_offsets)",
                       schema, schema);
  ASSERT_STR_EQ(after, before);
  free(before);
  free(after);
  ASSERT_EQ(query_long(conn, "SELECT count(*) FROM \"%s\".results", schema), 2);

  /* A stale batch (older state and offsets, e.g. from a zombie worker) changes nothing. */
  wk_stmt_reset(tx);
  uint8_t buf_old[WK_VEL_ENCODED_MAX];
  size_t len_old = wk_velocity_encode(&v_old, buf_old, sizeof buf_old);
  wk_state_row_t s = {.card_id = "card-1", .topic = "sluice.fraud.events", .partition = 0,
                      .last_offset = 9, .state = buf_old, .state_len = len_old};
  wk_fraud_add_state(tx, &s);
  wk_stmt_add_offset(tx, "sluice.fraud.events", 0, 10);
  c = run_batch(conn, tx);
  ASSERT_EQ(c.states, 0);
  ASSERT_EQ(c.offsets, 0);
  ASSERT_EQ(query_long(conn,
                       "SELECT last_offset FROM \"%s\".card_state WHERE card_id = 'card-1'",
                       schema),
            10);

  /* The next batch moves them forward; an empty result set is fine. */
  s.last_offset = 12;
  wk_stmt_reset(tx);
  wk_fraud_add_state(tx, &s);
  wk_stmt_add_offset(tx, "sluice.fraud.events", 0, 13);
  c = run_batch(conn, tx);
  ASSERT_EQ(c.results, 0);
  ASSERT_EQ(c.states, 1);
  ASSERT_EQ(c.offsets, 1);

  wk_stmt_free(tx);
  drop_schema(conn, schema);
  PQfinish(conn);
}

/*
 * The model inputs and the card states travel as one flat value each and are cut per row on
 * the server: rows of different lengths (including none) and states of different sizes each
 * get exactly their own values back. The looked-up keys compare bytewise (collation "C").
 */
TEST(inputs_and_states_cut_per_row_binary) {
  PGconn *conn = connect_db();
  char schema[96], err[512];
  unique_schema(schema, sizeof schema, "wk_cut");
  ASSERT_MSG(wk_schema_migrate(conn, schema, NULL, err, sizeof err) == SVC_OK, "%s", err);
  wk_stmt_t *tx = NULL;
  ASSERT_OK(wk_stmt_new(schema, "g", wk_fraud_tables, WK_FRAUD_N_TABLES, &tx, err, sizeof err));
  enum { ROWS = 40 };
  float in[ROWS][ROWS];
  uint8_t st[ROWS][ROWS + 1];
  for (int i = 0; i < ROWS; i++) {
    char id[32], card[32];
    snprintf(id, sizeof id, "e%02d", i);
    snprintf(card, sizeof card, "c%02d", i);
    for (int j = 0; j < i; j++) in[i][j] = (float)(i * 100 + j) + 0.5f;
    for (int j = 0; j <= i; j++) st[i][j] = (uint8_t)(i * 7 + j);
    /* Row i has i inputs (row 0 none) and a state of i + 1 bytes. */
    wk_result_row_t r = {.domain = "fraud", .event_id = id, .score = 0.5f,
                         .decision = WK_DECISION_ALLOW, .model_version = "m", .input = in[i],
                         .n_input = (size_t)i, .event_time_ms = 1700000000000 + i,
                         .topic = "t", .partition = 0, .offset = i};
    wk_fraud_add_result(tx, &r);
    wk_state_row_t s = {.card_id = card, .topic = "t", .partition = 0, .last_offset = i,
                        .state = st[i], .state_len = (size_t)i + 1};
    wk_fraud_add_state(tx, &s);
  }
  wk_stmt_counts_t c = run_batch(conn, tx);
  ASSERT_EQ(c.results, ROWS);
  ASSERT_EQ(c.states, ROWS);
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT r.input, cs.state FROM \"%s\".results r JOIN \"%s\".card_state cs ON "
           "cs.last_offset = r.\"offset\" ORDER BY r.event_id",
           schema, schema);
  PGresult *res = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
  ASSERT_EQ(PQntuples(res), ROWS);
  for (int i = 0; i < ROWS; i++) {
    /* The expected text, written here from the same numbers: {0.5} style and \\x hex. */
    char want_in[2048] = "{", want_st[256] = "\\x";
    size_t n = 1;
    for (int j = 0; j < i; j++)
      n += (size_t)snprintf(want_in + n, sizeof want_in - n, "%s%d.5", j ? "," : "",
                            i * 100 + j);
    snprintf(want_in + n, sizeof want_in - n, "}");
    for (int j = 0; j <= i; j++) snprintf(want_st + 2 + 2 * j, 3, "%02x", st[i][j]);
    ASSERT_STR_EQ(PQgetvalue(res, i, 0), want_in);
    ASSERT_STR_EQ(PQgetvalue(res, i, 1), want_st);
  }
  PQclear(res);

  /* Awkward floats (subnormals, extremes, -0) as PostgreSQL reads the worker's literals equal
   * the same floats read from "%.9g" decimal, which round-trips a float exactly. */
  static const float odd[] = {1e-45f, -1e-45f, 1.1754942e-38f, 3.4028235e38f, -3.4028235e38f,
                              -0.0f, 0.1f, 16777217.0f, 2.5e-7f};
  enum { N_ODD = sizeof odd / sizeof odd[0] };
  wk_stmt_reset(tx);
  wk_result_row_t r = {.domain = "fraud", .event_id = "odd", .score = odd[0],
                       .decision = WK_DECISION_ALLOW, .model_version = "m", .input = odd,
                       .n_input = N_ODD, .event_time_ms = 1700000000000, .topic = "t",
                       .partition = 0, .offset = 99};
  wk_fraud_add_result(tx, &r);
  c = run_batch(conn, tx);
  ASSERT_EQ(c.results, 1);
  char dec[512] = "{";
  size_t n = 1;
  for (int i = 0; i < N_ODD; i++)
    n += (size_t)snprintf(dec + n, sizeof dec - n, "%s%.9g", i ? "," : "", (double)odd[i]);
  snprintf(dec + n, sizeof dec - n, "}");
  snprintf(sql, sizeof sql,
           "SELECT (input = $1::real[] AND score = ($1::real[])[1])::text FROM \"%s\".results "
           "WHERE event_id = 'odd'",
           schema);
  const char *pd[] = {dec};
  res = PQexecParams(conn, sql, 1, NULL, pd, NULL, NULL, 0);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s",
             PQresultErrorMessage(res));
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "true");
  PQclear(res);
  /* The looked-up keys have collation "C" (migration 2). */
  ASSERT_EQ(query_long(conn,
                       "SELECT count(*) FROM information_schema.columns WHERE table_schema = '%s'"
                       " AND collation_name = 'C' AND column_name IN ('event_id', 'card_id', "
                       "'alert_id') AND table_name IN ('results', 'card_state', 'outbox')",
                       schema),
            3);
  wk_stmt_free(tx);
  drop_schema(conn, schema);
  PQfinish(conn);
}

TEST(builder_errors) {
  wk_stmt_t *tx = NULL;
  char err[256];
  ASSERT_EQ(wk_stmt_new("bad-name", "g", wk_fraud_tables, WK_FRAUD_N_TABLES, &tx, err,
                        sizeof err),
            SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "'-' at byte 3");
  ASSERT_EQ(wk_stmt_new("ok", "", wk_fraud_tables, WK_FRAUD_N_TABLES, &tx, err, sizeof err),
            SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "consumer group is empty");
  ASSERT_NULL(tx);
  const char *bad[4] = {"1", "x", "2", "3"};
  wk_stmt_counts_t c;
  ASSERT_EQ(wk_stmt_parse_counts(bad, &c), SVC_EDECODE);
  ASSERT_STR_EQ(wk_decision_name(WK_DECISION_REVIEW), "review");
  ASSERT_NULL(wk_decision_name((wk_decision_t)9));
  wk_stmt_free(NULL);
}
