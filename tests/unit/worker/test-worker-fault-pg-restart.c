/*
 * PostgreSQL restarted for real (pg_ctl restart -m fast) while sluice-worker --pipeline=fault
 * scores C-MAPSS engines: the worker recovers in process (drops its in-memory devices, which
 * may be ahead of the database, and restores them from fault_state), never exits, and in the
 * end every reading has exactly one correct result and the outbox exactly the alerts the
 * scores give (fault-harness.h). Restarts the shared server, so ctest runs it alone
 * (RUN_SERIAL).
 */
#include "test.h"

#include "fault-harness.h"

static fh_ctx_t ctx;

TEST(postgres_restart_recovers_in_process) {
  fh_ctx_t *c = &ctx;
  fh_init(c, "pgr", 6);
  PGconn *conn = wp_db(&c->w);
  /* The restart comes while the first part is being scored: it is produced up to 50 readings
   * past each engine's first window, the restart waits for 20 of them. */
  int cut = c->T + 50;
  long total = fh_produce(c, 0, cut);
  pid_t pid = fh_start(c);
  fh_wait_results(conn, c, 6 * (20 + 1), &pid, 1, 90);

  wp_pg_restart();
  PQfinish(conn);
  total += fh_produce(c, cut, FH_MAX_CYCLES + FH_HEALTHY); /* the stream goes on meanwhile */
  conn = wp_db(&c->w);
  fh_wait_results(conn, c, fh_expected_results(c), &pid, 1, 90);
  int status;
  ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0); /* recovered in process: never exited */
  ASSERT_OP(wp_metric(c->w.port, "sluice_recoveries_total{cause=\"connection_lost\"} "), >=, 1);
  int fired, cleared;
  fh_check(conn, c, &fired, &cleared);
  ASSERT_OP(fired, >=, 6);
  wp_wait_offsets(conn, c->w.schema, total, 10);
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c->w);
}
