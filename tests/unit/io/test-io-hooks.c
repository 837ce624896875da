/*
 * Tests of the engine's host hooks: the allocator table (moe_set_allocator), the fault-injection
 * counter that fails allocation N, the live-allocation count, aligned allocations, and the log
 * callback with its level filter.
 */
#include "test.h"

#include <stdint.h>

#include "core/alloc-impl.h"
#include "core/log-impl.h"
#include "moe/error.h"

/* ---- allocator ------------------------------------------------------------ */

typedef struct {
  int n_malloc, n_realloc, n_free;
  size_t last_size;
} host_t;

static void *host_malloc(void *user, size_t size) {
  host_t *h = user;
  h->n_malloc++;
  h->last_size = size;
  return malloc(size);
}

static void *host_realloc(void *user, void *ptr, size_t size) {
  host_t *h = user;
  h->n_realloc++;
  h->last_size = size;
  return realloc(ptr, size);
}

static void host_free(void *user, void *ptr) {
  host_t *h = user;
  h->n_free++;
  free(ptr);
}

TEST(host_allocator_sees_every_call) {
  host_t h = {0};
  moe_allocator_t a = {host_malloc, host_realloc, host_free, &h};
  moe_set_allocator(&a);
  void *p = moe__malloc(10);
  ASSERT_NOT_NULL(p);
  ASSERT_EQ(h.n_malloc, 1);
  ASSERT_EQ(h.last_size, 10);
  p = moe__realloc(p, 100);
  ASSERT_EQ(h.n_realloc, 1);
  ASSERT_EQ(h.last_size, 100);
  int *z = moe__calloc(4, sizeof(int));
  ASSERT_EQ(h.n_malloc, 2);
  for (int i = 0; i < 4; i++) ASSERT_EQ(z[i], 0);
  char *s = moe__strdup("hello");
  ASSERT_STR_EQ(s, "hello");
  char *s2 = moe__strndup("hello", 3);
  ASSERT_STR_EQ(s2, "hel");
  int v[3] = {7, 8, 9};
  int *d = moe__memdup(v, sizeof v);
  ASSERT_EQ(d[2], 9);
  /* Zero-size requests still give a unique non-NULL block. */
  void *zero = moe__malloc(0);
  ASSERT_NOT_NULL(zero);
  ASSERT_EQ(h.last_size, 1);
  moe__free(zero);
  moe__free(d);
  moe__free(s2);
  moe__free(s);
  moe__free(z);
  moe__free(p);
  moe__free(NULL); /* no-op, not passed on */
  ASSERT_EQ(h.n_free, 6);
  moe_set_allocator(NULL);
  void *q = moe__malloc(8);
  ASSERT_EQ(h.n_malloc, 6); /* libc again */
  moe__free(q);
  ASSERT_EQ(h.n_free, 6);
}

TEST(overflow_is_refused) {
  ASSERT_NULL(moe__calloc(SIZE_MAX / 2, 4));
  ASSERT_NULL(moe__reallocarray(NULL, SIZE_MAX / 8, 16));
  ASSERT_NULL(moe__malloc_aligned(SIZE_MAX - 8, 64));
}

TEST(fault_arm_fails_exactly_allocation_n) {
  moe_alloc_fault_arm(3);
  void *a = moe__malloc(1);
  void *b = moe__calloc(1, 1);
  ASSERT_EQ(moe_alloc_fault_fired(), 0);
  void *c = moe__realloc(NULL, 1); /* number 3 */
  ASSERT_EQ(moe_alloc_fault_fired(), 1);
  void *d = moe__malloc(1);
  ASSERT_NOT_NULL(a);
  ASSERT_NOT_NULL(b);
  ASSERT_NULL(c);
  ASSERT_NOT_NULL(d); /* only one failure */
  ASSERT_EQ(moe_alloc_count(), 4);
  /* Re-arming restarts the count and clears the fired flag. */
  moe_alloc_fault_arm(1);
  ASSERT_EQ(moe_alloc_fault_fired(), 0);
  ASSERT_EQ(moe_alloc_count(), 0);
  void *e = moe__realloc(d, 64);
  ASSERT_NULL(e); /* a failed realloc keeps the old block */
  ASSERT_EQ(moe_alloc_fault_fired(), 1);
  moe_alloc_fault_disarm();
  moe__free(a);
  moe__free(b);
  moe__free(d);
  /* Disarmed: nothing fails. */
  moe_alloc_fault_arm(0);
  for (int i = 0; i < 10; i++) {
    void *p = moe__malloc(8);
    ASSERT_NOT_NULL(p);
    moe__free(p);
  }
  ASSERT_EQ(moe_alloc_fault_fired(), 0);
}

TEST(live_count) {
  int64_t live0 = moe_alloc_live();
  void *a = moe__malloc(8);
  void *b = moe__realloc(NULL, 8);
  ASSERT_EQ(moe_alloc_live(), live0 + 2);
  b = moe__realloc(b, 800); /* moving a block does not change the count */
  ASSERT_EQ(moe_alloc_live(), live0 + 2);
  moe__free(a);
  moe__free(b);
  ASSERT_EQ(moe_alloc_live(), live0);
}

TEST(aligned_allocations) {
  size_t aligns[] = {8, 16, 64, 256, 4096};
  for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
    for (size_t size = 1; size < 300; size += 37) {
      unsigned char *p = moe__malloc_aligned(size, aligns[i]);
      ASSERT_NOT_NULL(p);
      ASSERT_EQ((uintptr_t)p % aligns[i], 0);
      memset(p, 0xAB, size); /* ASan checks the whole block is ours */
      moe__free_aligned(p);
    }
  }
  moe__free_aligned(NULL);
  moe_alloc_fault_arm(1);
  ASSERT_NULL(moe__malloc_aligned(16, 64));
  moe_alloc_fault_disarm();
}

/* ---- log -------------------------------------------------------------------- */

typedef struct {
  int n;
  moe_log_level_t level;
  char msg[2048];
} sink_t;

static void sink_cb(moe_log_level_t level, const char *msg, void *user) {
  sink_t *s = user;
  s->n++;
  s->level = level;
  snprintf(s->msg, sizeof s->msg, "%s", msg);
}

static int g_evaluated;
static int side_effect(void) { return ++g_evaluated; }

TEST(log_callback_and_levels) {
  sink_t s = {0};
  ASSERT_EQ(moe__log_enabled(MOE_LOG_ERROR), 0); /* no callback: nothing is enabled */
  MOE_LOG(MOE_LOG_ERROR, "dropped %d", side_effect());
  ASSERT_EQ(g_evaluated, 0);
  moe_log_set(sink_cb, &s);
  ASSERT_EQ(moe_log_get_level(), MOE_LOG_INFO);
  MOE_LOG(MOE_LOG_INFO, "kernels: %s, %d threads", "avx2", 4);
  ASSERT_EQ(s.n, 1);
  ASSERT_EQ(s.level, MOE_LOG_INFO);
  ASSERT_STR_EQ(s.msg, "kernels: avx2, 4 threads");
  /* Below the level: not formatted, arguments not evaluated. */
  MOE_LOG(MOE_LOG_DEBUG, "debug %d", side_effect());
  ASSERT_EQ(s.n, 1);
  ASSERT_EQ(g_evaluated, 0);
  moe_log_set_level(MOE_LOG_DEBUG);
  MOE_LOG(MOE_LOG_DEBUG, "debug %d", side_effect());
  ASSERT_EQ(s.n, 2);
  ASSERT_EQ(g_evaluated, 1);
  ASSERT_STR_EQ(s.msg, "debug 1");
  moe_log_set_level(MOE_LOG_ERROR);
  MOE_LOG(MOE_LOG_WARN, "warn");
  ASSERT_EQ(s.n, 2);
  MOE_LOG(MOE_LOG_ERROR, "error");
  ASSERT_EQ(s.n, 3);
  ASSERT_EQ(s.level, MOE_LOG_ERROR);
  moe_log_set_level(MOE_LOG_NONE);
  MOE_LOG(MOE_LOG_ERROR, "error");
  ASSERT_EQ(s.n, 3);
  moe_log_set_level(MOE_LOG_INFO);
  /* Long lines are cut, marked with "...", and stay NUL-terminated. */
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  MOE_LOG(MOE_LOG_INFO, "%s", big);
  ASSERT_EQ(s.n, 4);
  ASSERT_EQ(strlen(s.msg), 1023);
  ASSERT_STR_EQ(s.msg + 1020, "...");
  moe_log_set(NULL, NULL);
  MOE_LOG(MOE_LOG_ERROR, "gone");
  ASSERT_EQ(s.n, 4);
  ASSERT_STR_EQ(moe_log_level_name(MOE_LOG_WARN), "warn");
  ASSERT_STR_EQ(moe_log_level_name((moe_log_level_t)42), "?");
}
