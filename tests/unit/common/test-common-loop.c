/*
 * Loop helpers: a watched signal raised in the process arrives as a callback on the loop
 * thread while the service's own handles keep it running, the watchers do not keep the loop alive by themselves, bad arguments are refused,
 * and svc_loop_close_all leaves a loop that closes cleanly.
 */
#include "test.h"

#include <pthread.h>
#include <signal.h>

#include "svc/loop.h"

typedef struct {
  int got[3];
  int closed;
  pthread_t loop_thread;
} sstate_t;

static void on_sig(svc_signals_t *sig, int signum) {
  sstate_t *s = sig->data;
  ASSERT(pthread_equal(pthread_self(), s->loop_thread));
  if (signum == SIGTERM) s->got[0]++;
  else if (signum == SIGHUP) s->got[1]++;
  else s->got[2]++;
}

static void closed(svc_signals_t *sig) { ((sstate_t *)sig->data)->closed++; }

TEST(signals_arrive_on_the_loop) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  sstate_t s = {.loop_thread = pthread_self()};
  svc_signals_t *sig;
  int sigs[] = {SIGTERM, SIGHUP};
  ASSERT_OK(svc_signals_new(&loop, sigs, 2, on_sig, &s, &sig));
  /* Nothing referenced on the loop: it returns at once. */
  ASSERT_EQ(uv_run(&loop, UV_RUN_NOWAIT), 0);
  /* Something else keeps the loop running, as the consumer does in a service. */
  uv_timer_t keep;
  uv_timer_init(&loop, &keep);
  uv_timer_start(&keep, (uv_timer_cb)abort, 100000, 0);
  raise(SIGHUP);
  raise(SIGTERM);
  raise(SIGTERM);
  double end = test_now_s() + 5;
  while ((s.got[0] < 1 || s.got[1] < 1) && test_now_s() < end) uv_run(&loop, UV_RUN_NOWAIT);
  uv_close((uv_handle_t *)&keep, NULL);
  ASSERT_OP(s.got[0], >=, 1); /* signals may coalesce */
  ASSERT_EQ(s.got[1], 1);
  ASSERT_EQ(s.got[2], 0);
  svc_signals_close(sig, closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(s.closed, 1);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST(bad_arguments_and_close_all) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  svc_signals_t *sig = (svc_signals_t *)&loop;
  int sigs[9] = {SIGTERM};
  ASSERT_EQ(svc_signals_new(&loop, sigs, 0, on_sig, NULL, &sig), SVC_EINVAL);
  ASSERT_NULL(sig);
  ASSERT_EQ(svc_signals_new(&loop, sigs, 9, on_sig, NULL, &sig), SVC_EINVAL);
  ASSERT_EQ(svc_signals_new(&loop, sigs, 1, NULL, NULL, &sig), SVC_EINVAL);
  uv_timer_t *t = malloc(sizeof *t);
  uv_timer_init(&loop, t);
  uv_timer_start(t, (uv_timer_cb)abort, 100000, 0);
  ASSERT_EQ(uv_loop_close(&loop), UV_EBUSY);
  ASSERT_OK(svc_loop_close_all(&loop));
  free(t);
}
