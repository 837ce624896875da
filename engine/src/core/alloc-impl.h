/*
 * The engine's internal allocation entry points. Every engine allocation goes through these
 * (never malloc/free directly), so that the host allocator installed by moe_set_allocator()
 * and the test fault-injection hook (moe/alloc.h) see all of them.
 */
#ifndef MOE_CORE_ALLOC_IMPL_H
#define MOE_CORE_ALLOC_IMPL_H

#include <stddef.h>

#include "moe/alloc.h"

/*
 * malloc/calloc/realloc contracts, with these differences: a size of 0 is rounded up to 1 so
 * that NULL always means failure; calloc and reallocarray return NULL when n * size
 * overflows. moe__realloc returns the new pointer; on success the old one is dead, on failure
 * (NULL) the old block is untouched and still owned by the caller.
 */
void *moe__malloc(size_t size);
void *moe__calloc(size_t n, size_t size);
void *moe__realloc(void *ptr, size_t size);
void *moe__reallocarray(void *ptr, size_t n, size_t size);
void moe__free(void *ptr);

/* A NUL-terminated copy of s (or of its first n bytes), or NULL when out of memory. */
char *moe__strdup(const char *s);
char *moe__strndup(const char *s, size_t n);
/* A copy of n bytes, or NULL when out of memory (n == 0 gives a valid 1-byte block). */
void *moe__memdup(const void *p, size_t n);

/*
 * `size` bytes aligned to `align` (a power of two >= sizeof(void *)), for tensor data that
 * SIMD kernels read. Free only with moe__free_aligned(); moe__free_aligned(NULL) is a no-op.
 * Costs one allocation of size + align + sizeof(void *) from the hook.
 */
void *moe__malloc_aligned(size_t size, size_t align);
void moe__free_aligned(void *ptr);

#endif /* MOE_CORE_ALLOC_IMPL_H */
