/*
 * Tests of the micro-batcher on a real libuv loop: full batches emitted at once and in order,
 * partial batches emitted by the timer after the wait (and not before the loop runs), the
 * timer restarting per batch, take() for revocation, re-entrant adds from the callback, and a
 * clean close.
 */
#include "batcher.h"
#include "test.h"

typedef struct seen_s {
  size_t n_batches;
  size_t sizes[16];
  intptr_t items[64];
  size_t n_items;
  uint64_t emitted_at_ms[16];
  int reenter; /* items to add from inside the callback */
  int closed;
} seen_t;

static void on_batch(wk_batcher_t *b, void **items, size_t n) {
  seen_t *s = b->data;
  ASSERT(s->n_batches < 16);
  s->sizes[s->n_batches] = n;
  s->emitted_at_ms[s->n_batches] = uv_now(b->timer.loop);
  s->n_batches++;
  for (size_t i = 0; i < n; i++) s->items[s->n_items++] = (intptr_t)items[i];
  free(items);
  ASSERT_EQ(wk_batcher_pending(b), 0);
  while (s->reenter > 0) {
    s->reenter--;
    wk_batcher_add(b, (void *)(intptr_t)(1000 + s->reenter));
  }
}

static void on_close(wk_batcher_t *b) {
  seen_t *s = b->data;
  s->closed = 1;
}

TEST(full_batches_emit_at_once_in_order) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  seen_t s = {0};
  wk_batcher_t b = {.data = &s};
  ASSERT_OK(wk_batcher_init(&b, &loop, 4, 10000, on_batch));
  for (intptr_t i = 1; i <= 10; i++) wk_batcher_add(&b, (void *)i);
  ASSERT_EQ(s.n_batches, 2);
  ASSERT_EQ(s.sizes[0], 4);
  ASSERT_EQ(s.sizes[1], 4);
  ASSERT_EQ(wk_batcher_pending(&b), 2);
  for (intptr_t i = 0; i < 8; i++) ASSERT_EQ(s.items[i], i + 1);
  wk_batcher_flush(&b);
  ASSERT_EQ(s.n_batches, 3);
  ASSERT_EQ(s.sizes[2], 2);
  ASSERT_EQ(s.items[9], 10);
  wk_batcher_flush(&b); /* nothing pending: no empty batch */
  ASSERT_EQ(s.n_batches, 3);
  wk_batcher_close(&b, on_close);
  ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
  ASSERT_EQ(s.closed, 1);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST(partial_batch_emitted_by_timer) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  seen_t s = {0};
  wk_batcher_t b = {.data = &s};
  ASSERT_OK(wk_batcher_init(&b, &loop, 100, 30, on_batch));
  uv_update_time(&loop);
  uint64_t t0 = uv_now(&loop);
  for (intptr_t i = 1; i <= 3; i++) wk_batcher_add(&b, (void *)i);
  ASSERT_EQ(s.n_batches, 0); /* not before the loop runs */
  /* The loop ends once the timer has fired: nothing else keeps it alive. */
  ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
  ASSERT_EQ(s.n_batches, 1);
  ASSERT_EQ(s.sizes[0], 3);
  ASSERT_OP(s.emitted_at_ms[0] - t0, >=, 30);

  /* The next batch gets its own wait, from its own first item. */
  uv_update_time(&loop);
  uint64_t t1 = uv_now(&loop);
  wk_batcher_add(&b, (void *)(intptr_t)4);
  ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
  ASSERT_EQ(s.n_batches, 2);
  ASSERT_EQ(s.sizes[1], 1);
  ASSERT_OP(s.emitted_at_ms[1] - t1, >=, 30);
  ASSERT_EQ(s.items[3], 4);

  wk_batcher_close(&b, NULL);
  ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
  ASSERT_OK(uv_loop_close(&loop));
}

TEST(take_and_reentrant_add) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  seen_t s = {0};
  wk_batcher_t b = {.data = &s};
  ASSERT_OK(wk_batcher_init(&b, &loop, 2, 20, on_batch));
  wk_batcher_add(&b, (void *)(intptr_t)1);
  size_t n;
  void **items = wk_batcher_take(&b, &n);
  ASSERT_EQ(n, 1);
  ASSERT_EQ((intptr_t)items[0], 1);
  free(items);
  ASSERT_NULL(wk_batcher_take(&b, &n));
  ASSERT_EQ(n, 0);
  /* take() stopped the timer: running the loop emits nothing. */
  ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
  ASSERT_EQ(s.n_batches, 0);

  /* A callback that adds three items: one more full batch inside, one pending. */
  s.reenter = 3;
  wk_batcher_add(&b, (void *)(intptr_t)5);
  wk_batcher_add(&b, (void *)(intptr_t)6);
  ASSERT_EQ(s.n_batches, 2);
  ASSERT_EQ(wk_batcher_pending(&b), 1);
  ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT)); /* the timer emits the last one */
  ASSERT_EQ(s.n_batches, 3);
  ASSERT_EQ(s.n_items, 5);

  ASSERT_EQ(wk_batcher_init(&b, &loop, 0, 20, on_batch), SVC_EINVAL);
  wk_batcher_close(&b, NULL);
  ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
  ASSERT_OK(uv_loop_close(&loop));
}
