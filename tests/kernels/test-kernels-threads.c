/*
 * The kernels are reentrant and the variant choice is made once: several threads asking for
 * kern_ops() at the same moment get the same table, and GEMMs running concurrently on shared
 * packed weights give bit-identical results to the same GEMMs run alone.
 */
#include <pthread.h>

#include "test.h"
#include "kern-test-util.h"

#define N_THREADS 4
enum { M = 9, N = 40, K = 32 * 7 };

typedef struct {
  const kern_ops_t *seen;
  const kern_ops_t *ops;
  const blk_q8_0 *act;
  const void *wp;
  float y[M * N];
} job_t;

static pthread_barrier_t barrier;

static void *worker(void *arg) {
  job_t *j = arg;
  pthread_barrier_wait(&barrier);
  j->seen = kern_ops();
  for (int rep = 0; rep < 50; rep++) j->ops->gemm_q8_0_packed(M, N, K, j->act, j->wp, j->y, N);
  return NULL;
}

TEST(concurrent_choice_and_gemm) {
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  rng_t r = {77};
  blk_q8_0 *w = xalloc(N * K / 32 * sizeof *w);
  rng_q8(&r, w, N * K / 32, -0.1f, 0.1f);
  for (int iv = 0; iv < nv; iv++) {
    const kern_ops_t *o = v[iv];
    void *wp = xalloc(o->pack_size_q8_0(N, K));
    o->pack_q8_0(N, K, w, wp);
    static job_t jobs[N_THREADS];
    blk_q8_0 *acts[N_THREADS];
    pthread_t th[N_THREADS];
    ASSERT_OK(pthread_barrier_init(&barrier, NULL, N_THREADS));
    for (int t = 0; t < N_THREADS; t++) {
      acts[t] = xalloc(M * K / 32 * sizeof(blk_q8_0));
      rng_q8(&r, acts[t], M * K / 32, 0.0f, 0.2f);
      jobs[t] = (job_t){.ops = o, .act = acts[t], .wp = wp};
      ASSERT_OK(pthread_create(&th[t], NULL, worker, &jobs[t]));
    }
    for (int t = 0; t < N_THREADS; t++) ASSERT_OK(pthread_join(th[t], NULL));
    ASSERT_OK(pthread_barrier_destroy(&barrier));
    float alone[M * N];
    for (int t = 0; t < N_THREADS; t++) {
      ASSERT(jobs[t].seen == kern_ops());
      o->gemm_q8_0_packed(M, N, K, acts[t], wp, alone, N);
      ASSERT_MSG(memcmp(alone, jobs[t].y, sizeof alone) == 0, "%s thread %d", o->name, t);
      free(acts[t]);
    }
    free(wp);
  }
  free(w);
}
