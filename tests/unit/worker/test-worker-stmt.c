/*
 * Integration test of the generic batch statement (stmt.h) on the real PostgreSQL
 * (SLUICE_PG_DSN): two small tables declared in a fresh schema (beside the worker's outbox and
 * kafka_offsets, from the migrations), a batch with every column type (NULLs, empty bytea,
 * empty reals, JSON, awkward text, float bit patterns) prepared and executed as the worker
 * does it (binary parameters), and every value read back exactly; then the exactly-once
 * behaviour: duplicates of a results row inside one batch and across batches are skipped, a
 * key twice in one batch is merged (no "cannot affect row a second time"), a re-applied batch
 * changes nothing, a stale batch cannot roll state or offsets back, and the counts say so.
 */
#include <libpq-fe.h>
#include <stdarg.h>

#include "schema.h"
#include "stmt.h"
#include "test.h"

static PGconn *connect_db(void) {
  const char *dsn = test_require_env("SLUICE_PG_DSN");
  PGconn *conn = PQconnectdb(dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "connect: %s", PQerrorMessage(conn));
  PQclear(PQexec(conn, "SET client_min_messages TO warning"));
  return conn;
}

static void exec_ok(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void exec_ok(PGconn *conn, const char *fmt, ...) {
  char sql[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK,
             "%s: %s", sql, PQresultErrorMessage(res));
  PQclear(res);
}

static PGresult *query(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static PGresult *query(PGconn *conn, const char *fmt, ...) {
  char sql[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
  return res;
}

static const wk_col_t res_cols[] = {
    {"id", WK_COL_TEXT},    {"doc", WK_COL_JSONB},  {"score", WK_COL_FLOAT4},
    {"n", WK_COL_INT4},     {"big", WK_COL_INT8},   {"flag", WK_COL_BOOL},
    {"at", WK_COL_TIME_MS}, {"blob", WK_COL_BYTEA}, {"vec", WK_COL_REALS},
    {"note", WK_COL_TEXT}};
static const wk_col_t state_cols[] = {
    {"key", WK_COL_TEXT}, {"partition", WK_COL_INT4}, {"last_offset", WK_COL_INT8},
    {"state", WK_COL_BYTEA}};
static const wk_table_t decl[] = {
    {.name = "things", .role = WK_TABLE_RESULTS, .cols = res_cols, .n_cols = 10, .key_cols = 0,
     .on_conflict = "ON CONFLICT (id) DO NOTHING"},
    {.name = "thing_state", .role = WK_TABLE_STATE, .cols = state_cols, .n_cols = 4,
     .key_cols = 1,
     .on_conflict = "ON CONFLICT (key) DO UPDATE SET partition = EXCLUDED.partition,\n"
                    "    last_offset = EXCLUDED.last_offset, state = EXCLUDED.state\n"
                    "  WHERE t.partition <> EXCLUDED.partition OR t.last_offset < "
                    "EXCLUDED.last_offset"}};

typedef struct fixture_s {
  PGconn *conn;
  char schema[96];
  wk_stmt_t *st;
  unsigned prepared; /* bit p: part p is prepared in the session */
} fixture_t;

static void fixture_open(fixture_t *f) {
  memset(f, 0, sizeof *f);
  f->conn = connect_db();
  test_unique_name(f->schema, sizeof f->schema, "wk_stmt");
  for (char *p = f->schema; *p; p++)
    if (*p == '-') *p = '_';
  char err[512];
  ASSERT_MSG(wk_schema_migrate(f->conn, f->schema, NULL, err, sizeof err) == SVC_OK, "%s", err);
  exec_ok(f->conn,
          "CREATE TABLE \"%s\".things (id text COLLATE \"C\" PRIMARY KEY, doc jsonb, score real,"
          " n integer, big bigint, flag boolean, at timestamptz, blob bytea, vec real[],"
          " note text)",
          f->schema);
  exec_ok(f->conn,
          "CREATE TABLE \"%s\".thing_state (key text COLLATE \"C\" PRIMARY KEY, partition "
          "integer NOT NULL, last_offset bigint NOT NULL, state bytea NOT NULL)",
          f->schema);
  ASSERT_OK(wk_stmt_new(f->schema, "grp", decl, 2, &f->st, err, sizeof err));
}

static void fixture_close(fixture_t *f) {
  exec_ok(f->conn, "DROP SCHEMA \"%s\" CASCADE", f->schema);
  wk_stmt_free(f->st);
  PQfinish(f->conn);
}

/* Prepares (once per session) and runs one part of the rendered statement as the worker does
 * (binary parameters); returns the counts. */
static wk_stmt_counts_t run_part(fixture_t *f, wk_stmt_part_t part) {
  const char *sql, *const *values;
  const int *lengths, *formats;
  int np;
  wk_stmt_part(f->st, part, &sql, &np, &values, &lengths, &formats);
  char name[32];
  snprintf(name, sizeof name, "stmt_part_%d", (int)part);
  if (!(f->prepared & (1u << part))) {
    PGresult *res = PQprepare(f->conn, name, sql, np, NULL);
    ASSERT_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "prepare part %d: %s\n%s", (int)part,
               PQresultErrorMessage(res), sql);
    PQclear(res);
    f->prepared |= 1u << part;
  }
  PGresult *res = PQexecPrepared(f->conn, name, np, values, lengths, formats, 0);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "part %d: %s", (int)part,
             PQresultErrorMessage(res));
  ASSERT_EQ(PQntuples(res), 1);
  ASSERT_EQ(PQnfields(res), 4);
  const char *cols[4] = {PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                         PQgetvalue(res, 0, 3)};
  wk_stmt_counts_t c;
  ASSERT_OK(wk_stmt_parse_counts(cols, &c));
  PQclear(res);
  return c;
}

/* Renders the batch and runs it whole, as one statement; returns the counts. */
static wk_stmt_counts_t run(fixture_t *f) {
  const char *sql, *const *values;
  const int *lengths, *formats;
  int np;
  wk_stmt_render(f->st, &sql, &np, &values, &lengths, &formats);
  wk_stmt_counts_t c = run_part(f, WK_STMT_ALL);
  wk_stmt_reset(f->st);
  return c;
}

static void add_state(wk_stmt_t *st, const char *key, int32_t part, int64_t off,
                      const char *state) {
  wk_stmt_row_begin(st, 1);
  wk_stmt_text(st, key);
  wk_stmt_int4(st, part);
  wk_stmt_int8(st, off);
  wk_stmt_bytes(st, (const uint8_t *)state, strlen(state));
  wk_stmt_row_end(st);
}

/* A results row with only an id and a note (the rest NULL). */
static void add_thing(wk_stmt_t *st, const char *id, const char *note) {
  wk_stmt_row_begin(st, 0);
  wk_stmt_text(st, id);
  for (int c = 1; c < 9; c++) wk_stmt_null(st);
  wk_stmt_text(st, note);
  wk_stmt_row_end(st);
}

static uint32_t float_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

TEST(every_column_type_reads_back_exactly) {
  fixture_t f;
  fixture_open(&f);
  static const uint8_t blob[] = {0x00, 0xff, '\\', 'x', '\'', 0x80};
  static const float vec[] = {1.5f, -0.0f, 3e-42f, 3.4028235e38f, 0.1f, -123456.789f};
  static const float scores[] = {0.1f, -0.0f, 1e-45f, 16777217.0f};
  static const char *const ids[] = {"plain", "quote\"back\\slash{brace},comma", "üñí©ødé", ""};
  for (int r = 0; r < 4; r++) {
    wk_stmt_row_begin(f.st, 0);
    wk_stmt_text(f.st, ids[r]);
    if (r == 1) wk_stmt_text(f.st, NULL);
    else wk_stmt_text(f.st, r == 0 ? "{\"k\": [1, 2], \"s\": \"a\\\"b\"}" : "[]");
    wk_stmt_float4(f.st, scores[r]);
    wk_stmt_int4(f.st, r == 0 ? INT32_MIN : r);
    wk_stmt_int8(f.st, r == 0 ? INT64_MAX : -r);
    wk_stmt_bool(f.st, r % 2 == 0);
    wk_stmt_int8(f.st, 1700000000123 + r);
    if (r == 1) wk_stmt_null(f.st); /* a NULL bytea */
    else if (r == 2) wk_stmt_bytes(f.st, NULL, 0); /* an empty one */
    else wk_stmt_bytes(f.st, blob + r, sizeof blob - (size_t)r);
    if (r == 1) wk_stmt_null(f.st);
    else if (r == 2) wk_stmt_reals(f.st, NULL, 0);
    else wk_stmt_reals(f.st, vec + r, 6 - (size_t)r);
    wk_stmt_text(f.st, r == 3 ? NULL : "note");
    wk_stmt_row_end(f.st);
  }
  add_state(f.st, "s1", 0, 5, "state-1");
  const uint8_t payload[] = {1, 0, 2};
  wk_outbox_row_t o = {.alert_id = "t:1", .domain = "t", .key = "s1", .topic = "t.alerts",
                       .payload = payload, .payload_len = 3};
  wk_stmt_add_outbox(f.st, &o);
  o.alert_id = "t:2";
  o.payload_len = 0;
  wk_stmt_add_outbox(f.st, &o);
  wk_stmt_add_offset(f.st, "topic", 0, 6);
  wk_stmt_counts_t c = run(&f);
  ASSERT_EQ(c.results, 4);
  ASSERT_EQ(c.states, 1);
  ASSERT_EQ(c.outbox, 2);
  ASSERT_EQ(c.offsets, 1);

  PGresult *res = query(f.conn,
                        "SELECT id, doc = '{\"k\":[1,2],\"s\":\"a\\\"b\"}'::jsonb, doc::text,"
                        " doc IS NULL, score::text, n, big, flag,"
                        " (extract(epoch FROM at) * 1000)::bigint, encode(blob, 'hex'),"
                        " blob IS NULL, cardinality(vec), vec IS NULL, note IS NULL"
                        " FROM \"%s\".things ORDER BY n",
                        f.schema);
  ASSERT_EQ(PQntuples(res), 4);
  /* ordered by n: INT32_MIN (row 0), 1, 2, 3 */
  for (int r = 0; r < 4; r++) {
    ASSERT_STR_EQ(PQgetvalue(res, r, 0), ids[r]);
    if (r == 0) ASSERT_STR_EQ(PQgetvalue(res, r, 1), "t");
    if (r == 1) ASSERT_STR_EQ(PQgetvalue(res, r, 3), "t");
    if (r >= 2) ASSERT_STR_EQ(PQgetvalue(res, r, 2), "[]");
    /* PostgreSQL prints the shortest text that reads back to the same float */
    ASSERT_EQ(float_bits(strtof(PQgetvalue(res, r, 4), NULL)), float_bits(scores[r]));
    ASSERT_EQ(atol(PQgetvalue(res, r, 5)), r == 0 ? (long)INT32_MIN : r);
    ASSERT_EQ(strtoll(PQgetvalue(res, r, 6), NULL, 10), r == 0 ? INT64_MAX : -(int64_t)r);
    ASSERT_STR_EQ(PQgetvalue(res, r, 7), r % 2 == 0 ? "t" : "f");
    ASSERT_EQ(strtoll(PQgetvalue(res, r, 8), NULL, 10), 1700000000123 + r);
    ASSERT_STR_EQ(PQgetvalue(res, r, 10), r == 1 ? "t" : "f");
    ASSERT_STR_EQ(PQgetvalue(res, r, 12), r == 1 ? "t" : "f");
    ASSERT_STR_EQ(PQgetvalue(res, r, 13), r == 3 ? "t" : "f");
  }
  ASSERT_STR_EQ(PQgetvalue(res, 0, 9), "00ff5c782780");
  ASSERT_STR_EQ(PQgetvalue(res, 2, 9), ""); /* empty, not NULL */
  ASSERT_STR_EQ(PQgetvalue(res, 3, 9), "782780");
  ASSERT_STR_EQ(PQgetvalue(res, 0, 11), "6");
  ASSERT_STR_EQ(PQgetvalue(res, 2, 11), "0"); /* an empty array, not NULL */
  ASSERT_STR_EQ(PQgetvalue(res, 3, 11), "3");
  PQclear(res);
  /* Every element of every vector, bit for bit. */
  res = query(f.conn,
              "SELECT n, o, x::text FROM \"%s\".things, unnest(vec) WITH ORDINALITY AS u(x, o)"
              " ORDER BY n, o",
              f.schema);
  ASSERT_EQ(PQntuples(res), 6 + 3);
  for (int i = 0; i < PQntuples(res); i++) {
    int r = atoi(PQgetvalue(res, i, 0)), k = atoi(PQgetvalue(res, i, 1)) - 1;
    if (r < 0) r = 0;
    ASSERT_EQ(float_bits(strtof(PQgetvalue(res, i, 2), NULL)), float_bits(vec[r + k]));
  }
  PQclear(res);
  res = query(f.conn,
              "SELECT alert_id, domain, key, topic, encode(payload, 'hex') FROM \"%s\".outbox"
              " ORDER BY alert_id",
              f.schema);
  ASSERT_EQ(PQntuples(res), 2);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 4), "010002");
  ASSERT_STR_EQ(PQgetvalue(res, 1, 4), "");
  ASSERT_STR_EQ(PQgetvalue(res, 0, 3), "t.alerts");
  PQclear(res);
  res = query(f.conn, "SELECT key, partition, last_offset, convert_from(state, 'UTF8') FROM "
                      "\"%s\".thing_state", f.schema);
  ASSERT_EQ(PQntuples(res), 1);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 3), "state-1");
  PQclear(res);
  res = query(f.conn, "SELECT consumer_group, topic, partition, next_offset FROM "
                      "\"%s\".kafka_offsets", f.schema);
  ASSERT_EQ(PQntuples(res), 1);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "grp");
  ASSERT_STR_EQ(PQgetvalue(res, 0, 3), "6");
  PQclear(res);
  fixture_close(&f);
}

static char *state_of(fixture_t *f, const char *key) {
  PGresult *res = query(f->conn,
                        "SELECT partition || '/' || last_offset || '/' || "
                        "convert_from(state, 'UTF8') FROM \"%s\".thing_state WHERE key = '%s'",
                        f->schema, key);
  ASSERT_EQ(PQntuples(res), 1);
  char *v = strdup(PQgetvalue(res, 0, 0));
  PQclear(res);
  return v;
}

static long next_offset(fixture_t *f, int partition) {
  PGresult *res = query(f->conn,
                        "SELECT next_offset FROM \"%s\".kafka_offsets WHERE consumer_group = "
                        "'grp' AND topic = 'topic' AND partition = %d",
                        f->schema, partition);
  ASSERT_EQ(PQntuples(res), 1);
  long v = atol(PQgetvalue(res, 0, 0));
  PQclear(res);
  return v;
}

#define ASSERT_STATE(f, key, want)                                                           \
  do {                                                                                       \
    char *s__ = state_of((f), (key));                                                        \
    ASSERT_STR_EQ(s__, (want));                                                              \
    free(s__);                                                                               \
  } while (0)

/* Batch 1 of the exactly-once scenario. */
static void batch_one(fixture_t *f) {
  add_thing(f->st, "e1", "first");
  add_thing(f->st, "e2", "first");
  add_thing(f->st, "e1", "second copy"); /* a duplicate inside the batch: skipped */
  add_state(f->st, "a", 0, 10, "a@10");
  add_state(f->st, "b", 1, 11, "b@11");
  add_state(f->st, "a", 0, 12, "a@12"); /* the same key again: merged, the newest kept */
  wk_outbox_row_t o = {.alert_id = "t:a:1", .domain = "t", .key = "a", .topic = "t.alerts",
                       .payload = (const uint8_t *)"x", .payload_len = 1};
  wk_stmt_add_outbox(f->st, &o);
  wk_stmt_add_outbox(f->st, &o); /* the same alert id twice: once */
  wk_stmt_add_offset(f->st, "topic", 0, 13);
  wk_stmt_add_offset(f->st, "topic", 1, 12);
}

TEST(exactly_once_merging_and_forward_only_state) {
  fixture_t f;
  fixture_open(&f);
  batch_one(&f);
  ASSERT_EQ(wk_stmt_n_rows(f.st, 1), 2u);
  wk_stmt_counts_t c = run(&f);
  ASSERT_EQ(c.results, 2);
  ASSERT_EQ(c.states, 2);
  ASSERT_EQ(c.outbox, 1);
  ASSERT_EQ(c.offsets, 2);
  ASSERT_STATE(&f, "a", "0/12/a@12");
  ASSERT_STATE(&f, "b", "1/11/b@11");
  PGresult *res = query(f.conn, "SELECT note FROM \"%s\".things WHERE id = 'e1'",
                        f.schema);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "first");
  PQclear(res);

  /* The same batch again (a replay after a crash): nothing changes, and the counts say so. */
  batch_one(&f);
  c = run(&f);
  ASSERT_EQ(c.results, 0);
  ASSERT_EQ(c.states, 0);
  ASSERT_EQ(c.outbox, 0);
  ASSERT_EQ(c.offsets, 0);
  ASSERT_STATE(&f, "a", "0/12/a@12");

  /* A stale batch (older offsets) cannot roll state or offsets back. */
  add_state(f.st, "a", 0, 11, "stale");
  add_state(f.st, "b", 1, 11, "same offset");
  wk_stmt_add_offset(f.st, "topic", 0, 5);
  c = run(&f);
  ASSERT_EQ(c.states, 0);
  ASSERT_EQ(c.offsets, 0);
  ASSERT_STATE(&f, "a", "0/12/a@12");
  ASSERT_STATE(&f, "b", "1/11/b@11");
  ASSERT_EQ(next_offset(&f, 0), 13);

  /* Newer state and offsets move forward; a key that moved to another partition is taken
   * over whatever its offset (the declaration's WHERE says so). */
  add_state(f.st, "a", 0, 20, "a@20");
  add_state(f.st, "b", 3, 2, "b moved");
  wk_stmt_add_offset(f.st, "topic", 0, 21);
  c = run(&f);
  ASSERT_EQ(c.states, 2);
  ASSERT_EQ(c.offsets, 1);
  ASSERT_STATE(&f, "a", "0/20/a@20");
  ASSERT_STATE(&f, "b", "3/2/b moved");
  ASSERT_EQ(next_offset(&f, 0), 21);
  ASSERT_EQ(next_offset(&f, 1), 12);

  /* An empty batch (only dead letters): offsets alone. */
  wk_stmt_add_offset(f.st, "topic", 1, 30);
  c = run(&f);
  ASSERT_EQ(c.results + c.states + c.outbox, 0);
  ASSERT_EQ(c.offsets, 1);
  ASSERT_EQ(next_offset(&f, 1), 30);

  /* Many rows and keys in one batch, past the builder's first allocations. */
  char id[32], key[32], val[32];
  for (int i = 0; i < 3000; i++) {
    snprintf(id, sizeof id, "bulk-%d", i);
    snprintf(key, sizeof key, "k%d", i % 700);
    snprintf(val, sizeof val, "v%d", i);
    add_thing(f.st, id, key);
    add_state(f.st, key, 2, 100 + i, val);
  }
  c = run(&f);
  ASSERT_EQ(c.results, 3000);
  ASSERT_EQ(c.states, 700);
  ASSERT_STATE(&f, "k5", "2/2905/v2805");
  fixture_close(&f);
}

static long count_rows(fixture_t *f, const char *table) {
  PGresult *res = query(f->conn, "SELECT count(*) FROM \"%s\".%s", f->schema, table);
  long n = atol(PQgetvalue(res, 0, 0));
  PQclear(res);
  return n;
}

/*
 * pg.lanes 2: the batch as two statements. RESULTS writes results and alerts only, STATE the
 * state and offsets only, and together they store what the one statement stores. A crash
 * between them (RESULTS committed, STATE never) leaves results without the offsets that cover
 * them: the batch consumed again writes no second result or alert, and then state and offsets.
 */
TEST(two_parts_store_what_one_statement_stores) {
  fixture_t f;
  fixture_open(&f);
  const char *sql, *const *values;
  const int *lengths, *formats;
  int np;
  batch_one(&f);
  wk_stmt_render(f.st, &sql, &np, &values, &lengths, &formats);
  wk_stmt_counts_t r = run_part(&f, WK_STMT_RESULTS);
  ASSERT_EQ(r.results, 2);
  ASSERT_EQ(r.states, 0);
  ASSERT_EQ(r.outbox, 1);
  ASSERT_EQ(r.offsets, 0);
  ASSERT_EQ(count_rows(&f, "thing_state"), 0);
  ASSERT_EQ(count_rows(&f, "kafka_offsets"), 0);
  wk_stmt_counts_t s = run_part(&f, WK_STMT_STATE);
  ASSERT_EQ(s.results, 0);
  ASSERT_EQ(s.states, 2);
  ASSERT_EQ(s.outbox, 0);
  ASSERT_EQ(s.offsets, 2);
  ASSERT_STATE(&f, "a", "0/12/a@12");
  ASSERT_STATE(&f, "b", "1/11/b@11");
  ASSERT_EQ(count_rows(&f, "things"), 2);
  ASSERT_EQ(count_rows(&f, "outbox"), 1);
  wk_stmt_reset(f.st);

  /* The crash between the parts: RESULTS of the next batch only, then that batch again, whole. */
  add_thing(f.st, "e9", "after");
  add_state(f.st, "a", 0, 30, "a@30");
  wk_stmt_add_offset(f.st, "topic", 0, 31);
  wk_stmt_render(f.st, &sql, &np, &values, &lengths, &formats);
  r = run_part(&f, WK_STMT_RESULTS);
  ASSERT_EQ(r.results, 1);
  ASSERT_EQ(next_offset(&f, 0), 13);
  ASSERT_STATE(&f, "a", "0/12/a@12");
  wk_stmt_reset(f.st);
  add_thing(f.st, "e9", "replayed");
  add_state(f.st, "a", 0, 30, "a@30");
  wk_stmt_add_offset(f.st, "topic", 0, 31);
  wk_stmt_counts_t c = run(&f);
  ASSERT_EQ(c.results, 0);
  ASSERT_EQ(c.states, 1);
  ASSERT_EQ(c.offsets, 1);
  ASSERT_STATE(&f, "a", "0/30/a@30");
  ASSERT_EQ(next_offset(&f, 0), 31);
  PGresult *res = query(f.conn, "SELECT note FROM \"%s\".things WHERE id = 'e9'", f.schema);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "after");
  PQclear(res);
  fixture_close(&f);
}
