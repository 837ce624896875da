/*
 * db_conn against a server that accepts the TCP connection but never speaks (a listening
 * socket nobody accepts from): the connect attempt is abandoned after connect_timeout_ms (libpq
 * does not enforce its own timeout in non-blocking mode), queued work fails with SVC_ENOTCONN,
 * the status callback says why, and the next attempts back off exponentially up to the ceiling.
 */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "svc/db.h"

typedef struct {
  int disconnected;
  double at[8];
  char detail[256];
  svc_err_t qerr;
  char qmsg[256];
  int answered;
} tstate_t;

static void on_status(db_conn_t *conn, db_status_t st, const char *detail) {
  tstate_t *t = conn->data;
  if (st != DB_STATUS_DISCONNECTED) return;
  if (t->disconnected < 8) t->at[t->disconnected] = test_now_s();
  t->disconnected++;
  snprintf(t->detail, sizeof t->detail, "%s", detail);
}

static void on_result(db_conn_t *conn, svc_err_t err, const PGresult *res, const char *msg,
                      void *arg) {
  (void)res;
  (void)arg;
  tstate_t *t = conn->data;
  t->qerr = err;
  snprintf(t->qmsg, sizeof t->qmsg, "%s", msg ? msg : "");
  t->answered++;
}

TEST(silent_server_times_out_and_backs_off) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_OP(ls, >=, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(bind(ls, (struct sockaddr *)&addr, sizeof addr));
  ASSERT_OK(listen(ls, 16));
  socklen_t len = sizeof addr;
  ASSERT_OK(getsockname(ls, (struct sockaddr *)&addr, &len));
  char dsn[128];
  snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d user=u dbname=d sslmode=disable",
           ntohs(addr.sin_port));

  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  tstate_t t = {0};
  db_conn_t *conn;
  char err[256];
  db_conn_opts_t o = {.dsn = dsn, .connect_timeout_ms = 200, .reconnect_min_ms = 50,
                      .reconnect_max_ms = 100, .on_status = on_status, .data = &t};
  double t0 = test_now_s();
  ASSERT_OK(db_conn_new(&loop, &o, &conn, err, sizeof err));
  ASSERT_OK(db_conn_query(conn, "SELECT 1", 0, NULL, on_result, NULL));
  while (t.disconnected < 4 && test_now_s() < t0 + 10) uv_run(&loop, UV_RUN_ONCE);
  ASSERT_EQ(t.disconnected, 4);
  ASSERT_STR_CONTAINS(t.detail, "connection attempt timed out after 200 ms");
  ASSERT_EQ(t.answered, 1);
  ASSERT_EQ(t.qerr, SVC_ENOTCONN);
  ASSERT_STR_CONTAINS(t.qmsg, "was not sent");
  /* First attempt: the 200 ms timeout. Then a backoff of 50, 100, 100 (the ceiling) ms, each
   * +-20 %, before each further 200 ms attempt. */
  ASSERT_OP(t.at[0] - t0, >=, 0.19);
  ASSERT_OP(t.at[0] - t0, <, 2.0);
  ASSERT_OP(t.at[1] - t.at[0], >=, 0.2 + 0.04 - 0.01);
  ASSERT_OP(t.at[2] - t.at[1], >=, 0.2 + 0.08 - 0.01);
  ASSERT_OP(t.at[3] - t.at[2], >=, 0.2 + 0.08 - 0.01);
  ASSERT_OP(t.at[3] - t.at[2], <, 2.0); /* bounded by the ceiling, with slack for a busy machine */
  ASSERT_EQ(db_conn_connects(conn), 0);
  db_conn_close(conn, NULL);
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_OK(uv_loop_close(&loop));
  close(ls);
}
