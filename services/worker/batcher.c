/*
 * The micro-batcher on a uv_timer. The contract is in batcher.h.
 */
#include "batcher.h"

#include <stdio.h>
#include <stdlib.h>

static void batcher__oom(void) {
  fprintf(stderr, "wk_batcher: out of memory\n");
  abort();
}

static void batcher__on_timer(uv_timer_t *t) {
  wk_batcher_t *b = t->data;
  wk_batcher_flush(b);
}

svc_err_t wk_batcher_init(wk_batcher_t *b, uv_loop_t *loop, size_t max_size,
                          uint64_t max_wait_ms, wk_batch_cb cb) {
  if (max_size == 0) return SVC_EINVAL;
  void *data = b->data;
  *b = (wk_batcher_t){0};
  b->data = data;
  if (uv_timer_init(loop, &b->timer) != 0) return SVC_EUV;
  b->timer.data = b;
  b->cb = cb;
  b->max_size = max_size;
  b->max_wait_ms = max_wait_ms;
  return SVC_OK;
}

void **wk_batcher_take(wk_batcher_t *b, size_t *n) {
  void **items = b->items;
  *n = b->n;
  b->items = NULL;
  b->n = 0;
  uv_timer_stop(&b->timer);
  return items;
}

void wk_batcher_flush(wk_batcher_t *b) {
  size_t n;
  void **items = wk_batcher_take(b, &n);
  if (items != NULL) b->cb(b, items, n);
}

void wk_batcher_add(wk_batcher_t *b, void *item) {
  if (b->closing) {
    fprintf(stderr, "wk_batcher_add: batcher is closing\n");
    abort();
  }
  if (b->items == NULL) {
    b->items = malloc(b->max_size * sizeof *b->items);
    if (b->items == NULL) batcher__oom();
    /* The wait runs from the first item of the batch. */
    uv_timer_start(&b->timer, batcher__on_timer, b->max_wait_ms, 0);
  }
  b->items[b->n++] = item;
  if (b->n == b->max_size) wk_batcher_flush(b);
}

size_t wk_batcher_pending(const wk_batcher_t *b) { return b->n; }

static void batcher__on_close(uv_handle_t *h) {
  wk_batcher_t *b = h->data;
  if (b->close_cb) b->close_cb(b);
}

void wk_batcher_close(wk_batcher_t *b, wk_batcher_close_cb close_cb) {
  if (b->n != 0) {
    fprintf(stderr, "wk_batcher_close: %zu items still pending\n", b->n);
    abort();
  }
  b->closing = 1;
  b->close_cb = close_cb;
  uv_close((uv_handle_t *)&b->timer, batcher__on_close);
}
