/*
 * The micro-batcher: collects items (decoded events) on the loop thread and hands them on in
 * batches of at most max_size, no later than max_wait_ms after the first item of a batch
 * arrived. A full batch is emitted at once, inside wk_batcher_add; a partial one when its
 * uv_timer fires. Bounded size keeps inference and the PostgreSQL transaction small; bounded
 * wait keeps latency low when traffic is thin.
 *
 * Lifecycle: caller-allocated, wk_batcher_init / wk_batcher_close like a libuv handle; the
 * memory may be freed in (or after) the close callback. Threads: the loop thread only.
 */
#ifndef WK_BATCHER_H
#define WK_BATCHER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_batcher_s wk_batcher_t;

/*
 * Receives one batch: `items` (n of them, 1 <= n <= max_size, in the order added) is a
 * malloc'd array whose ownership passes to the callback (free() it). The batcher is empty
 * again when this is called, so the callback may add items or flush.
 */
typedef void (*wk_batch_cb)(wk_batcher_t *b, void **items, size_t n);
typedef void (*wk_batcher_close_cb)(wk_batcher_t *b);

struct wk_batcher_s {
  void *data; /* for the user */
  /* private */
  uv_timer_t timer;
  wk_batch_cb cb;
  wk_batcher_close_cb close_cb;
  size_t max_size;
  uint64_t max_wait_ms;
  void **items; /* (max_size) or NULL while empty */
  size_t n;
  int closing;
};

/*
 * Returns SVC_OK, SVC_EINVAL when max_size is 0, or SVC_EUV when the timer cannot be
 * initialised. A failed init needs no close.
 */
svc_err_t wk_batcher_init(wk_batcher_t *b, uv_loop_t *loop, size_t max_size,
                          uint64_t max_wait_ms, wk_batch_cb cb);

/* Adds one item (borrowed until it is handed to the callback). May emit a full batch. */
void wk_batcher_add(wk_batcher_t *b, void *item);

/* Emits the pending items now, if there are any. */
void wk_batcher_flush(wk_batcher_t *b);

/*
 * Takes the pending items without emitting them (e.g. on partition revocation, when they will
 * be consumed again): returns the malloc'd array (caller frees) and their count in *n, or NULL
 * with *n = 0 when empty.
 */
void **wk_batcher_take(wk_batcher_t *b, size_t *n);

size_t wk_batcher_pending(const wk_batcher_t *b);

/*
 * Closes the timer; close_cb (may be NULL) runs on a later loop iteration, after which the
 * memory may be freed. Pending items must have been flushed or taken first (aborts otherwise:
 * silently dropping events would break exactly-once).
 */
void wk_batcher_close(wk_batcher_t *b, wk_batcher_close_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* WK_BATCHER_H */
