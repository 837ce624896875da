/*
 * The per-session scratch arena: every intermediate tensor of a batch is carved out of it with
 * a pointer bump, and the whole arena is reset once per batch. When a batch needs more than the
 * arena holds, overflow chunks are allocated for that batch only; the next reset replaces
 * everything by one block of the high-water size, so that a session in steady state never
 * calls the allocator.
 */
#ifndef MOE_CORE_ARENA_H
#define MOE_CORE_ARENA_H

#include <stddef.h>

/* Every allocation is aligned to this many bytes (a cache line, and enough for AVX-512). */
#define MOE__ARENA_ALIGN 64

typedef struct moe__arena_chunk_s moe__arena_chunk_t;

typedef struct moe__arena_s {
  char *base;                 /* the main block, size bytes */
  size_t size;
  size_t used;                /* bytes of base handed out since the last reset */
  moe__arena_chunk_t *extra;  /* overflow chunks of this batch, newest first */
  size_t extra_used;          /* bytes handed out from overflow chunks */
} moe__arena_t;

/* Prepares an arena with an initial block of `size` bytes (0: none yet). MOE_ENOMEM on failure. */
int moe__arena_init(moe__arena_t *arena, size_t size);
void moe__arena_close(moe__arena_t *arena);

/* n bytes, MOE__ARENA_ALIGN-aligned, uninitialised; NULL when out of memory. n == 0 is allowed. */
void *moe__arena_alloc(moe__arena_t *arena, size_t n);

/* Forgets every allocation. Grows the main block to the last batch's high water if it overflowed. */
int moe__arena_reset(moe__arena_t *arena);

/* Typed helper: count floats. */
#define MOE__ARENA_FLOATS(arena, count) ((float *)moe__arena_alloc((arena), (size_t)(count) * sizeof(float)))

#endif /* MOE_CORE_ARENA_H */
