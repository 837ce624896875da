/*
 * The records worker while PostgreSQL restarts for real (pg_ctl restart -m fast) in the middle
 * of a stream of notes: the worker recovers in process (it never exits), counts the recovery,
 * and in the end every note has exactly one row with the right analysis and every offset is
 * accounted for (records-harness.h). Runs alone (RUN_SERIAL): it restarts the shared server.
 */
#include "records-harness.h"

TEST(postgres_restart_mid_stream_loses_and_repeats_nothing) {
  rh_ctx_t c;
  rh_init(&c, "pgr");
  rh_produce(&c, 0, 150);
  PGconn *conn = wp_db(&c.w);
  pid_t pid = rh_start(&c);
  rh_wait_rows(conn, &c, 20, &pid, 1, 60);
  wp_pg_restart();
  PQfinish(conn);
  rh_produce(&c, 150, 150); /* the stream goes on while the worker reconnects */
  conn = wp_db(&c.w);
  rh_wait_rows(conn, &c, 300, &pid, 1, 90);
  int status;
  ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0); /* recovered in process: never exited */
  ASSERT_OP(wp_metric(c.w.port, "sluice_recoveries_total{cause=\"connection_lost\"} "), >=, 1);
  rh_check(conn, &c, 0, 300, 0);
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c.w);
  rh_close(&c);
}
