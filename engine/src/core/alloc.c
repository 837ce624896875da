/*
 * The allocation hook behind moe__malloc and friends: a host-replaceable function table
 * (moe_set_allocator), a live-allocation counter, and the test hook that fails allocation
 * number N counted from when it was armed.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc-impl.h"

static void *libc_malloc(void *user, size_t size) {
  (void)user;
  return malloc(size);
}

static void *libc_realloc(void *user, void *ptr, size_t size) {
  (void)user;
  return realloc(ptr, size);
}

static void libc_free(void *user, void *ptr) {
  (void)user;
  free(ptr);
}

static moe_allocator_t g_alloc = {libc_malloc, libc_realloc, libc_free, NULL};

static atomic_uint_fast64_t g_count;     /* allocations attempted since the last arm */
static atomic_uint_fast64_t g_fail_at;   /* 0: disarmed */
static atomic_int g_fired;
static atomic_int_fast64_t g_live;

void moe_set_allocator(const moe_allocator_t *alloc) {
  if (alloc == NULL) {
    g_alloc = (moe_allocator_t){libc_malloc, libc_realloc, libc_free, NULL};
  } else {
    g_alloc = *alloc;
  }
}

void moe_alloc_fault_arm(uint64_t n) {
  atomic_store(&g_count, 0);
  atomic_store(&g_fired, 0);
  atomic_store(&g_fail_at, n);
}

void moe_alloc_fault_disarm(void) { atomic_store(&g_fail_at, 0); }

int moe_alloc_fault_fired(void) { return atomic_load(&g_fired); }

uint64_t moe_alloc_count(void) { return atomic_load(&g_count); }

int64_t moe_alloc_live(void) { return atomic_load(&g_live); }

/* Counts the attempt and reports whether the fault hook wants it to fail. */
static int should_fail(void) {
  uint64_t n = atomic_fetch_add(&g_count, 1) + 1;
  uint64_t at = atomic_load(&g_fail_at);
  if (at != 0 && n == at) {
    atomic_store(&g_fired, 1);
    return 1;
  }
  return 0;
}

void *moe__malloc(size_t size) {
  if (should_fail()) return NULL;
  void *p = g_alloc.malloc_fn(g_alloc.user, size ? size : 1);
  if (p != NULL) atomic_fetch_add(&g_live, 1);
  return p;
}

void *moe__calloc(size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  void *p = moe__malloc(n * size);
  if (p != NULL) memset(p, 0, n * size);
  return p;
}

void *moe__realloc(void *ptr, size_t size) {
  if (should_fail()) return NULL;
  void *p = g_alloc.realloc_fn(g_alloc.user, ptr, size ? size : 1);
  if (p != NULL && ptr == NULL) atomic_fetch_add(&g_live, 1);
  return p;
}

void *moe__reallocarray(void *ptr, size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  return moe__realloc(ptr, n * size);
}

void moe__free(void *ptr) {
  if (ptr == NULL) return;
  atomic_fetch_sub(&g_live, 1);
  g_alloc.free_fn(g_alloc.user, ptr);
}

char *moe__strndup(const char *s, size_t n) {
  char *d = moe__malloc(n + 1);
  if (d == NULL) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *moe__strdup(const char *s) { return moe__strndup(s, strlen(s)); }

void *moe__memdup(const void *p, size_t n) {
  void *d = moe__malloc(n);
  if (d != NULL && n != 0) memcpy(d, p, n);
  return d;
}

void *moe__malloc_aligned(size_t size, size_t align) {
  /* The block starts with room for the pointer that moe__free_aligned gives back. */
  if (size > SIZE_MAX - align - sizeof(void *)) return NULL;
  unsigned char *raw = moe__malloc(size + align + sizeof(void *));
  if (raw == NULL) return NULL;
  uintptr_t p = (uintptr_t)(raw + sizeof(void *));
  p = (p + (align - 1)) & ~(uintptr_t)(align - 1);
  memcpy((unsigned char *)p - sizeof(void *), &raw, sizeof(void *));
  return (void *)p;
}

void moe__free_aligned(void *ptr) {
  if (ptr == NULL) return;
  void *raw;
  memcpy(&raw, (unsigned char *)ptr - sizeof(void *), sizeof(void *));
  moe__free(raw);
}
