/*
 * db_conn_query_prepared (svc/db.h, added for the worker's batch statement) against the real
 * PostgreSQL server: binary and text parameters in one statement, NULLs, a binary float4[]
 * built here byte by byte, the statement prepared once per session (pg_prepared_statements
 * shows one entry after several executions), a preparation the server rejects reported as
 * "preparing: ...", bad arguments refused, and after the server killed the session
 * (pg_terminate_backend) the statement is prepared again on the new one without the caller
 * doing anything.
 */
#include "test.h"

#include <arpa/inet.h>
#include <libpq-fe.h>

#include "svc/db.h"

typedef struct {
  int n;
  svc_err_t err[8];
  char val[8][128];
  char msg[8][512];
} got_t;

static got_t G;

static void on_result(db_conn_t *conn, svc_err_t err, const PGresult *res, const char *errmsg,
                      void *arg) {
  (void)conn;
  int i = (int)(intptr_t)arg;
  ASSERT(i >= 0 && i < 8);
  G.err[i] = err;
  G.n++;
  if (err == SVC_OK) {
    ASSERT_NOT_NULL(res);
    size_t len = 0;
    for (int c = 0; c < PQnfields(res); c++)
      len += (size_t)snprintf(G.val[i] + len, sizeof G.val[i] - len, "%s%s", c ? "|" : "",
                              PQgetisnull(res, 0, c) ? "(null)" : PQgetvalue(res, 0, c));
  } else {
    ASSERT_NOT_NULL(errmsg);
    snprintf(G.msg[i], sizeof G.msg[i], "%s", errmsg);
  }
}

static void run_until(uv_loop_t *loop, int n) {
  for (int spins = 0; G.n < n && spins < 100000; spins++) uv_run(loop, UV_RUN_ONCE);
  ASSERT_EQ(G.n, n);
}

static const char *const sql =
    "SELECT $1::int4 + 1, $2::text, $3::real[], coalesce($4::text, 'null'), "
    "(SELECT count(*) FROM pg_prepared_statements WHERE name = 'tp_stmt')";

/* int4 42 in binary, the text "héllo", float4[] {1.5, -2} in binary, NULL. */
static void send_stmt(db_conn_t *conn, int i) {
  uint32_t v42 = htonl(41);
  uint8_t arr[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x02, 0xbc, 0, 0, 0, 2, 0, 0, 0, 1,
                   0, 0, 0, 4, 0x3f, 0xc0, 0, 0, 0, 0, 0, 4, 0xc0, 0, 0, 0};
  const char *values[4] = {(const char *)&v42, "h\xc3\xa9llo", (const char *)arr, NULL};
  const int lengths[4] = {4, 0, (int)sizeof arr, 0};
  const int formats[4] = {1, 0, 1, 0};
  ASSERT_OK(db_conn_query_prepared(conn, "tp_stmt", sql, 4, values, lengths, formats, on_result,
                                   (void *)(intptr_t)i));
}

static void closed(db_conn_t *conn) { *(int *)conn->data = 1; }

TEST(prepared_binary_and_reprepared_after_reconnect) {
  const char *dsn = test_require_env("SLUICE_PG_DSN");
  memset(&G, 0, sizeof G);
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  int is_closed = 0;
  db_conn_t *conn;
  char err[512];
  db_conn_opts_t o = {.dsn = dsn, .reconnect_min_ms = 20, .data = &is_closed};
  ASSERT_MSG(db_conn_new(&loop, &o, &conn, err, sizeof err) == SVC_OK, "%s", err);

  /* Bad arguments: no name; a binary value without a length. */
  const char *v1[1] = {"x"};
  const int f1[1] = {1};
  ASSERT_EQ(db_conn_query_prepared(conn, "", sql, 1, v1, NULL, NULL, on_result, NULL),
            SVC_EINVAL);
  ASSERT_EQ(db_conn_query_prepared(conn, "n", "SELECT $1::bytea", 1, v1, NULL, f1, on_result,
                                   NULL),
            SVC_EINVAL);

  send_stmt(conn, 0);
  send_stmt(conn, 1);
  ASSERT_OK(db_conn_query_prepared(conn, "tp_bad", "SELEC $1::int", 1, v1, NULL, NULL,
                                   on_result, (void *)2));
  send_stmt(conn, 3);
  run_until(&loop, 4);
  for (int i = 0; i < 4; i++) {
    if (i == 2) continue;
    ASSERT_EQ(G.err[i], SVC_OK);
    /* Prepared once: one entry in the session's pg_prepared_statements, every time. */
    ASSERT_STR_EQ(G.val[i], "42|h\xc3\xa9llo|{1.5,-2}|null|1");
  }
  ASSERT_EQ(G.err[2], SVC_EDB);
  ASSERT_STR_CONTAINS(G.msg[2], "preparing: ");
  ASSERT_STR_CONTAINS(G.msg[2], "42601"); /* syntax_error */

  /* The server ends the session; the next request after the reconnect prepares again. */
  int pid = db_conn_backend_pid(conn);
  ASSERT(pid > 0);
  PGconn *admin = PQconnectdb(dsn);
  ASSERT_MSG(PQstatus(admin) == CONNECTION_OK, "%s", PQerrorMessage(admin));
  char kill[96];
  snprintf(kill, sizeof kill, "SELECT pg_terminate_backend(%d)", pid);
  PGresult *res = PQexec(admin, kill);
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  PQclear(res);
  PQfinish(admin);
  for (int spins = 0; spins < 100000; spins++) {
    if (db_conn_connects(conn) == 2 && db_conn_status(conn) == DB_STATUS_CONNECTED) break;
    /* A query notices the dead session sooner than waiting for the socket. */
    if (db_conn_status(conn) == DB_STATUS_CONNECTED && db_conn_pending(conn) == 0 &&
        db_conn_connects(conn) == 1)
      (void)db_conn_query(conn, "SELECT 1", 0, NULL, NULL, NULL);
    uv_run(&loop, UV_RUN_ONCE);
  }
  ASSERT_EQ(db_conn_connects(conn), 2);
  ASSERT(db_conn_backend_pid(conn) != pid);
  send_stmt(conn, 4);
  run_until(&loop, 5);
  ASSERT_EQ(G.err[4], SVC_OK);
  ASSERT_STR_EQ(G.val[4], "42|h\xc3\xa9llo|{1.5,-2}|null|1");

  db_conn_close(conn, closed);
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(is_closed, 1);
  ASSERT_OK(uv_loop_close(&loop));
}
