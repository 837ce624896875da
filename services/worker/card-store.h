/*
 * The in-memory per-card state of the partitions this worker owns: a hash map from card id to
 * its velocity state, the partition the card's events arrive on, and the offset of the newest
 * event folded in. It is filled from PostgreSQL (card_state) when a partition is assigned,
 * updated by every event, and emptied per partition on revocation, so that memory follows the
 * assignment. Memory is about 700 bytes plus the id per card of the owned partitions.
 *
 * Threads: the loop thread only (plain data, no locking).
 */
#ifndef WK_CARD_STORE_H
#define WK_CARD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "velocity.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_card_s {
  char *id;
  int32_t partition;
  int64_t last_offset; /* newest event folded into vel; -1 when restored without events */
  wk_velocity_t vel;
  struct wk_card_s *next; /* private: hash chain */
} wk_card_t;

typedef struct wk_card_store_s {
  wk_card_t **buckets; /* (n_buckets), a power of two */
  size_t n_buckets;
  size_t n;
} wk_card_store_t;

void wk_card_store_init(wk_card_store_t *s);
/* Frees every card. */
void wk_card_store_close(wk_card_store_t *s);

/* The card, or NULL. The pointer is valid until the card is dropped. */
wk_card_t *wk_card_store_find(const wk_card_store_t *s, const char *id);

/*
 * The card, created empty (wk_velocity_init, last_offset -1) on `partition` if it is new;
 * *created (may be NULL) says which. Aborts on out-of-memory.
 */
wk_card_t *wk_card_store_get(wk_card_store_t *s, const char *id, int32_t partition,
                             int *created);

/* Drops every card of `partition`; returns how many. */
size_t wk_card_store_drop_partition(wk_card_store_t *s, int32_t partition);

#ifdef __cplusplus
}
#endif
#endif /* WK_CARD_STORE_H */
