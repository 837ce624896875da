/*
 * The per-session scratch arena (see arena.h): a bump allocator over one block, with overflow
 * chunks that are folded into one bigger block at the next reset.
 */
#include "core/arena.h"

#include "core/alloc-impl.h"
#include "moe/error.h"

struct moe__arena_chunk_s {
  moe__arena_chunk_t *next;
  size_t size;
  size_t used;
  /* data follows, aligned by the header padding below */
};

/* The chunk header is padded so that data after it keeps MOE__ARENA_ALIGN alignment. */
#define CHUNK_HDR (((sizeof(moe__arena_chunk_t) + MOE__ARENA_ALIGN - 1) / MOE__ARENA_ALIGN) * MOE__ARENA_ALIGN)

static size_t round_up(size_t n) {
  return (n + MOE__ARENA_ALIGN - 1) & ~(size_t)(MOE__ARENA_ALIGN - 1);
}

static void *aligned_block(size_t n) { return moe__malloc_aligned(n, MOE__ARENA_ALIGN); }

static void aligned_free(void *p) { moe__free_aligned(p); }

int moe__arena_init(moe__arena_t *arena, size_t size) {
  arena->base = NULL;
  arena->size = 0;
  arena->used = 0;
  arena->extra = NULL;
  arena->extra_used = 0;
  if (size > 0) {
    arena->base = aligned_block(round_up(size));
    if (arena->base == NULL) return MOE_ENOMEM;
    arena->size = round_up(size);
  }
  return MOE_OK;
}

static void free_extra(moe__arena_t *arena) {
  moe__arena_chunk_t *c = arena->extra;
  while (c != NULL) {
    moe__arena_chunk_t *next = c->next;
    aligned_free(c);
    c = next;
  }
  arena->extra = NULL;
  arena->extra_used = 0;
}

void moe__arena_close(moe__arena_t *arena) {
  free_extra(arena);
  aligned_free(arena->base);
  arena->base = NULL;
  arena->size = arena->used = 0;
}

void *moe__arena_alloc(moe__arena_t *arena, size_t n) {
  n = round_up(n == 0 ? 1 : n);
  if (arena->used + n <= arena->size) {
    void *p = arena->base + arena->used;
    arena->used += n;
    return p;
  }
  moe__arena_chunk_t *c = arena->extra;
  if (c == NULL || c->used + n > c->size) {
    /* Chunks at least double what this batch has needed so far, to keep their number small. */
    size_t want = n > arena->size + arena->extra_used ? n : arena->size + arena->extra_used;
    if (want < 65536) want = 65536;
    c = aligned_block(CHUNK_HDR + want);
    if (c == NULL) return NULL;
    c->size = want;
    c->used = 0;
    c->next = arena->extra;
    arena->extra = c;
  }
  void *p = (char *)c + CHUNK_HDR + c->used;
  c->used += n;
  arena->extra_used += n;
  return p;
}

int moe__arena_reset(moe__arena_t *arena) {
  if (arena->extra != NULL) {
    size_t high = arena->used + arena->extra_used;
    free_extra(arena);
    aligned_free(arena->base);
    arena->size = 0;
    arena->base = aligned_block(high);
    if (arena->base == NULL) {
      arena->used = 0;
      return MOE_ENOMEM;
    }
    arena->size = high;
  }
  arena->used = 0;
  return MOE_OK;
}
