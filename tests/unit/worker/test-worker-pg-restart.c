/*
 * PostgreSQL restarted for real (pg_ctl restart -m fast) in the middle of a stream: the
 * worker must recover in process (it never exits), /readyz must go not-ready and then ready
 * again, and in the end every event has exactly one correct result with a gapless card
 * history. Restarts the shared server, so ctest runs it alone (RUN_SERIAL).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "worker-harness.h"

typedef struct watch_s {
  unsigned port;
  atomic_int stop;
  atomic_int saw_not_ready, saw_ready_after;
  char reason[4096];
} watch_t;

/* Polls /readyz every 10 ms: remembers a 503 (and its text) and a 200 after it. */
static void *watch_ready(void *arg) {
  watch_t *wt = arg;
  static char body[4096];
  while (!atomic_load(&wt->stop)) {
    int status;
    wp_http(wt->port, "/readyz", &status, body, sizeof body);
    if (status == 503 && !atomic_load(&wt->saw_not_ready)) {
      snprintf(wt->reason, sizeof wt->reason, "%s", body);
      atomic_store(&wt->saw_not_ready, 1);
    } else if (status == 200 && atomic_load(&wt->saw_not_ready)) {
      atomic_store(&wt->saw_ready_after, 1);
    }
    usleep(10000);
  }
  return NULL;
}

TEST(postgres_restart_recovers_in_process) {
  hx_ctx_t c;
  hx_init(&c, "pgr");
  fm_write(c.model, hx_inputs, HX_N_INPUTS, "fraud-pgr-1", 0.5, "binary");
  hx_model_t m;
  hx_model_open(&m, c.model);
  PGconn *conn = wp_db(&c);
  hx_produce(&c, 0, 1500);
  pid_t pid = hx_start(&c);
  hx_wait_results(conn, &c, 300, pid, 60);
  int status;
  static char body[4096];
  wp_http(c.port, "/readyz", &status, body, sizeof body);
  ASSERT_EQ(status, 200);

  watch_t wt = {.port = c.port};
  pthread_t th;
  ASSERT_OK(pthread_create(&th, NULL, watch_ready, &wt));
  wp_pg_restart();
  PQfinish(conn);
  hx_produce(&c, 1500, 1500); /* the stream goes on while the worker reconnects */
  conn = wp_db(&c);
  hx_wait_results(conn, &c, 3000, pid, 60);
  for (int i = 0; i < 500 && !atomic_load(&wt.saw_ready_after); i++) usleep(10000);
  atomic_store(&wt.stop, 1);
  pthread_join(th, NULL);
  fprintf(stderr, "readiness during the restart: %s", wt.reason);
  ASSERT_MSG(atomic_load(&wt.saw_not_ready), "/readyz never reported not-ready");
  ASSERT_MSG(atomic_load(&wt.saw_ready_after), "/readyz did not become ready again");
  ASSERT(strstr(wt.reason, "database") != NULL || strstr(wt.reason, "state") != NULL);
  ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0); /* recovered in process: never exited */
  ASSERT_OP(wp_metric(c.port, "sluice_recoveries_total{cause=\"connection_lost\"} "), >=, 1);
  ASSERT_EQ((int)wp_metric(c.port, "sluice_recovering "), 0);

  long per_version[1];
  wp_wait_offsets(conn, c.schema, 3000, 10);
  hx_check_results(conn, &c, 0, 3000, &m, 1, per_version);
  ASSERT_EQ(wp_stop(pid), 0);
  hx_model_close(&m);
  wp_drop(conn, &c);
  unlink(c.model);
}
