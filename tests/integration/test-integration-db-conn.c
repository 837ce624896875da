/*
 * db_conn on a libuv loop against the real PostgreSQL server: queued queries run in order with
 * parameters and NULLs, server errors carry the SQLSTATE, scripts and transactions commit or
 * roll back as a whole, a row-count fence (db_txn_add_expect) rolls a transaction back, and when the server kills the backend (pg_terminate_backend from a
 * second connection, while a request is in flight and again while idle) the work in flight
 * fails with SVC_ECONNLOST, queued work with SVC_ENOTCONN, and the connection comes back on a
 * new backend by itself.
 */
#include "test.h"

#include <libpq-fe.h>

#include "svc/db.h"
#include "svc/log.h"

typedef struct {
  int seq;          /* order in which callbacks ran */
  int order[16];
  svc_err_t err[16];
  char val[16][64];
  char msg[16][512];
  int n;
} results_t;

static results_t R;

static void record(db_conn_t *conn, svc_err_t err, const PGresult *res, const char *errmsg,
                   void *arg) {
  (void)conn;
  int i = (int)(intptr_t)arg;
  ASSERT(i >= 0 && i < 16);
  R.order[i] = R.seq++;
  R.err[i] = err;
  R.n++;
  if (err == SVC_OK) {
    ASSERT_NOT_NULL(res);
    ASSERT_NULL(errmsg);
    if (PQntuples(res) > 0)
      snprintf(R.val[i], sizeof R.val[i], "%s", PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
  } else {
    ASSERT_NULL(res);
    ASSERT_NOT_NULL(errmsg);
    snprintf(R.msg[i], sizeof R.msg[i], "%s", errmsg);
  }
}

static void closed(db_conn_t *conn) { *(int *)conn->data = 1; }

TEST(queries_scripts_and_transactions) {
  const char *dsn = test_require_env("SLUICE_PG_DSN");
  memset(&R, 0, sizeof R);
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  int is_closed = 0;
  db_conn_t *conn;
  char err[512];
  db_conn_opts_t o = {.dsn = dsn, .data = &is_closed};
  ASSERT_MSG(db_conn_new(&loop, &o, &conn, err, sizeof err) == SVC_OK, "%s", err);
  ASSERT_EQ(db_conn_status(conn), DB_STATUS_CONNECTING);

  /* Queued while connecting; run in order once connected. */
  const char *p1[] = {"2", "3"};
  ASSERT_OK(db_conn_query(conn, "SELECT $1::int + $2::int", 2, p1, record, (void *)0));
  const char *p2[] = {NULL};
  ASSERT_OK(db_conn_query(conn, "SELECT coalesce($1::text, 'was null')", 1, p2, record, (void *)1));
  ASSERT_OK(db_conn_query(conn, "SELEC 1", 0, NULL, record, (void *)2));
  ASSERT_OK(db_conn_exec(conn,
                         "CREATE TEMP TABLE t (id int primary key, v text);"
                         "INSERT INTO t VALUES (1, 'a'), (2, 'b');"
                         "SELECT count(*) FROM t",
                         record, (void *)3));
  db_txn_t *ok = db_txn_new();
  const char *r3[] = {"3", "c"};
  const char *r4[] = {"4", "d"};
  db_txn_add(ok, "INSERT INTO t VALUES ($1::int, $2)", 2, r3);
  db_txn_add(ok, "INSERT INTO t VALUES ($1::int, $2)", 2, r4);
  db_txn_add(ok, "SELECT string_agg(v, '' ORDER BY id) FROM t", 0, NULL);
  ASSERT_EQ(db_txn_len(ok), 3);
  ASSERT_OK(db_conn_txn(conn, ok, record, (void *)4));
  db_txn_t *bad = db_txn_new();
  const char *r5[] = {"5", "e"};
  db_txn_add(bad, "INSERT INTO t VALUES ($1::int, $2)", 2, r5);
  db_txn_add(bad, "INSERT INTO t VALUES ($1::int, $2)", 2, r3); /* duplicate key */
  ASSERT_OK(db_conn_txn(conn, bad, record, (void *)5));
  ASSERT_OK(db_conn_query(conn, "SELECT string_agg(v, '' ORDER BY id) FROM t", 0, NULL, record, (void *)6));
  ASSERT_OK(db_conn_exec(conn, "SELECT 1; SELECT * FROM no_such_table; SELECT 3", record, (void *)7));
  ASSERT_OK(db_conn_query(conn, "SELECT 'still usable'", 0, NULL, record, (void *)8));
  /* Fencing: the first update matches one row, the second none (the value moved on), so the
   * whole transaction is rolled back; the next one expects the right count and commits. */
  db_txn_t *fenced = db_txn_new();
  const char *f1[] = {"x", "1"};
  const char *f2[] = {"y", "2", "moved-on"};
  db_txn_add_expect(fenced, "UPDATE t SET v = $1 WHERE id = $2::int", 2, f1, 1);
  db_txn_add_expect(fenced, "UPDATE t SET v = $1 WHERE id = $2::int AND v = $3", 3, f2, 1);
  ASSERT_OK(db_conn_txn(conn, fenced, record, (void *)9));
  db_txn_t *fine = db_txn_new();
  const char *f3[] = {"z", "2", "b"};
  db_txn_add_expect(fine, "UPDATE t SET v = $1 WHERE id = $2::int AND v = $3", 3, f3, 1);
  db_txn_add(fine, "SELECT string_agg(v, '' ORDER BY id) FROM t", 0, NULL);
  ASSERT_OK(db_conn_txn(conn, fine, record, (void *)10));
  ASSERT_EQ(db_conn_pending(conn), 11);

  while (R.n < 11 && uv_run(&loop, UV_RUN_ONCE)) {
  }
  ASSERT_EQ(R.n, 11);
  for (int i = 0; i < 11; i++) ASSERT_EQ(R.order[i], i);
  ASSERT_EQ(R.err[0], SVC_OK);
  ASSERT_STR_EQ(R.val[0], "5");
  ASSERT_STR_EQ(R.val[1], "was null");
  ASSERT_EQ(R.err[2], SVC_EDB);
  ASSERT_STR_CONTAINS(R.msg[2], "syntax error");
  ASSERT_STR_CONTAINS(R.msg[2], "(SQLSTATE 42601)");
  ASSERT_EQ(R.err[3], SVC_OK);
  ASSERT_STR_EQ(R.val[3], "2");
  ASSERT_EQ(R.err[4], SVC_OK);
  ASSERT_STR_EQ(R.val[4], "abcd");
  ASSERT_EQ(R.err[5], SVC_EDB);
  ASSERT_STR_CONTAINS(R.msg[5], "statement 2 of 2: ");
  ASSERT_STR_CONTAINS(R.msg[5], "(SQLSTATE 23505)");
  ASSERT_STR_EQ(R.val[6], "abcd"); /* row 5 was rolled back with its transaction */
  ASSERT_EQ(R.err[7], SVC_EDB);
  ASSERT_STR_CONTAINS(R.msg[7], "(SQLSTATE 42P01)");
  ASSERT_STR_EQ(R.val[8], "still usable");
  ASSERT_EQ(R.err[9], SVC_ECONFLICT);
  ASSERT_STR_CONTAINS(R.msg[9], "statement 2 of 2: expected 1 rows affected, got 0");
  ASSERT_EQ(R.err[10], SVC_OK);
  ASSERT_STR_EQ(R.val[10], "azcd"); /* the fenced transaction's first update was rolled back */
  ASSERT_EQ(db_conn_connects(conn), 1);

  db_conn_close(conn, closed);
  ASSERT_EQ(db_conn_query(conn, "SELECT 1", 0, NULL, record, (void *)9), SVC_ECLOSED);
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(is_closed, 1);
  ASSERT_OK(uv_loop_close(&loop));
}

/* ---- reconnect ----------------------------------------------------------------- */

typedef struct {
  const char *dsn;
  db_conn_t *conn;
  uv_timer_t timer;
  int step;
  int pids[4];
  int n_disconnected, n_connected;
  int refused_while_down; /* submissions refused with SVC_ENOTCONN while disconnected */
  int is_closed;
} rc_t;

static void terminate_backend(const char *dsn, int pid) {
  PGconn *side = PQconnectdb(dsn);
  ASSERT_MSG(PQstatus(side) == CONNECTION_OK, "%s", PQerrorMessage(side));
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", pid);
  PGresult *res = PQexec(side, sql);
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  PQfinish(side);
}

static void on_status(db_conn_t *conn, db_status_t st, const char *detail) {
  rc_t *t = conn->data;
  if (st == DB_STATUS_DISCONNECTED) {
    t->n_disconnected++;
    ASSERT(detail[0] != '\0');
    ASSERT_EQ(db_conn_query(conn, "SELECT 1", 0, NULL, record, (void *)15), SVC_ENOTCONN);
    t->refused_while_down++;
  } else if (st == DB_STATUS_CONNECTED) {
    t->pids[t->n_connected++] = db_conn_backend_pid(conn);
  } else if (st == DB_STATUS_CLOSED) {
    t->is_closed++;
  }
}

static void kill_tick(uv_timer_t *tm) {
  rc_t *t = tm->data;
  switch (t->step) {
  case 0: /* connected: start a long request, queue one behind it, then kill the backend */
    if (t->n_connected < 1) return;
    ASSERT_OK(db_conn_query(t->conn, "SELECT pg_sleep(30)", 0, NULL, record, (void *)0));
    ASSERT_OK(db_conn_query(t->conn, "SELECT 'queued'", 0, NULL, record, (void *)1));
    t->step = 1;
    return;
  case 1:
    terminate_backend(t->dsn, t->pids[0]);
    t->step = 2;
    return;
  case 2: /* back on a new backend: it works, then kill it again while idle */
    if (t->n_connected < 2 || R.n < 2) return;
    ASSERT_OK(db_conn_query(t->conn, "SELECT 'after reconnect'", 0, NULL, record, (void *)2));
    t->step = 3;
    return;
  case 3:
    if (R.n < 3) return;
    terminate_backend(t->dsn, t->pids[1]);
    t->step = 4;
    return;
  case 4:
    if (t->n_connected < 3) return;
    ASSERT_OK(db_conn_query(t->conn, "SELECT 'after idle kill'", 0, NULL, record, (void *)3));
    t->step = 5;
    return;
  case 5:
    if (R.n < 4) return;
    uv_timer_stop(tm);
    db_conn_close(t->conn, NULL);
    uv_close((uv_handle_t *)tm, NULL);
    return;
  }
}

TEST(reconnects_after_the_server_kills_the_backend) {
  static rc_t t;
  memset(&t, 0, sizeof t);
  memset(&R, 0, sizeof R);
  t.dsn = test_require_env("SLUICE_PG_DSN");
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  char err[512];
  db_conn_opts_t o = {.dsn = t.dsn, .reconnect_min_ms = 50, .reconnect_max_ms = 400,
                      .on_status = on_status, .data = &t};
  ASSERT_MSG(db_conn_new(&loop, &o, &t.conn, err, sizeof err) == SVC_OK, "%s", err);
  uv_timer_init(&loop, &t.timer);
  t.timer.data = &t;
  uv_timer_start(&t.timer, kill_tick, 100, 100);
  double t0 = test_now_s();
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_OP(test_now_s() - t0, <, 20); /* pg_sleep(30) was cut short, not waited for */
  ASSERT_EQ(R.err[0], SVC_ECONNLOST);
  ASSERT_STR_CONTAINS(R.msg[0], "outcome is unknown");
  ASSERT_EQ(R.err[1], SVC_ENOTCONN);
  ASSERT_STR_CONTAINS(R.msg[1], "was not sent");
  ASSERT_EQ(R.err[2], SVC_OK);
  ASSERT_STR_EQ(R.val[2], "after reconnect");
  ASSERT_EQ(R.err[3], SVC_OK);
  ASSERT_STR_EQ(R.val[3], "after idle kill");
  ASSERT_EQ(t.n_connected, 3);
  ASSERT_EQ(t.n_disconnected, 2);
  ASSERT_EQ(t.refused_while_down, 2);
  ASSERT_NE(t.pids[0], t.pids[1]);
  ASSERT_NE(t.pids[1], t.pids[2]);
  ASSERT_EQ(t.is_closed, 1);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST(bad_dsn_and_unreachable_server) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  db_conn_t *conn = NULL;
  char err[512];
  db_conn_opts_t bad = {.dsn = "host=localhost nosuchoption=1"};
  ASSERT_EQ(db_conn_new(&loop, &bad, &conn, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "postgres dsn: invalid connection option \"nosuchoption\"");
  ASSERT_NULL(conn);

  static rc_t t;
  memset(&t, 0, sizeof t);
  memset(&R, 0, sizeof R);
  /* Port 1 on loopback: connection refused at once. */
  db_conn_opts_t o = {.dsn = "host=127.0.0.1 port=1 user=nobody dbname=x",
                      .reconnect_min_ms = 50, .on_status = on_status, .data = &t};
  ASSERT_OK(db_conn_new(&loop, &o, &conn, err, sizeof err));
  t.conn = conn;
  ASSERT_OK(db_conn_query(conn, "SELECT 1", 0, NULL, record, (void *)0));
  while (t.n_disconnected < 2 && uv_run(&loop, UV_RUN_ONCE)) {
  }
  ASSERT_EQ(R.err[0], SVC_ENOTCONN);
  ASSERT_STR_CONTAINS(R.msg[0], "127.0.0.1");
  ASSERT_EQ(t.n_connected, 0);
  db_conn_close(conn, NULL);
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_OK(uv_loop_close(&loop));
}

/*
 * The session's application_name (a fallback: the dsn's own wins) and session options, added
 * after the dsn's own "options" so that both apply (the worker's results session turns
 * synchronous_commit off this way while a user's dsn may set other server options).
 */
TEST(application_name_and_session_options) {
  const char *dsn = test_require_env("SLUICE_PG_DSN");
  char with_opts[1024];
  snprintf(with_opts, sizeof with_opts, "%s options='-c statement_timeout=12345'", dsn);
  const char *dsns[2] = {dsn, with_opts};
  for (int k = 0; k < 2; k++) {
    memset(&R, 0, sizeof R);
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    int is_closed = 0;
    db_conn_t *conn;
    char err[512];
    db_conn_opts_t o = {.dsn = dsns[k], .application_name = "sluice-test app",
                        .session_options = "-c synchronous_commit=off", .data = &is_closed};
    ASSERT_MSG(db_conn_new(&loop, &o, &conn, err, sizeof err) == SVC_OK, "%s", err);
    ASSERT_OK(db_conn_query(conn, "SELECT current_setting('application_name')", 0, NULL,
                            record, (void *)0));
    ASSERT_OK(db_conn_query(conn, "SHOW synchronous_commit", 0, NULL, record, (void *)1));
    ASSERT_OK(db_conn_query(conn, "SHOW statement_timeout", 0, NULL, record, (void *)2));
    while (R.n < 3 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    ASSERT_EQ(R.n, 3);
    for (int i = 0; i < 3; i++) ASSERT_MSG(R.err[i] == SVC_OK, "query %d: %s", i, R.msg[i]);
    ASSERT_STR_EQ(R.val[0], "sluice-test app");
    ASSERT_STR_EQ(R.val[1], "off");
    /* The server's default (0) without the dsn's options; theirs with them. */
    ASSERT_STR_EQ(R.val[2], k == 0 ? "0" : "12345ms");
    db_conn_close(conn, closed);
    while (!is_closed && uv_run(&loop, UV_RUN_ONCE)) {
    }
    ASSERT_EQ(uv_loop_close(&loop), 0);
  }
}
