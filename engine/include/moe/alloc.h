/*
 * libmoe's allocator hook. Every allocation the engine makes goes through one table of
 * host-replaceable functions, so that a host can account for or cap engine memory, and so
 * that tests can make allocation number N fail and check that every init path cleans up
 * (STYLE.md section 6). The engine's large per-batch scratch comes from arenas, so this is
 * not a hot path.
 */
#ifndef MOE_ALLOC_H
#define MOE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The host's allocation functions. All three are required. They follow the C library's
 * contracts (malloc may return NULL on failure; realloc(NULL, n) allocates; free(NULL) is a
 * no-op), except that the engine never calls malloc or realloc with size 0. Memory must be
 * aligned for any C object (alignof(max_align_t)). `user` is passed back unchanged. The
 * functions may be called from any thread that uses the engine, concurrently.
 */
typedef struct moe_allocator_s {
  void *(*malloc_fn)(void *user, size_t size);
  void *(*realloc_fn)(void *user, void *ptr, size_t size);
  void (*free_fn)(void *user, void *ptr);
  void *user;
} moe_allocator_t;

/*
 * Installs `alloc` (copied), or the C library's functions when `alloc` is NULL. Call it once,
 * before any other engine call and while no engine object exists: memory allocated by one
 * allocator is freed by whichever is installed at the time of the free. Not thread-safe.
 */
void moe_set_allocator(const moe_allocator_t *alloc);

/* ---- fault injection (tests) --------------------------------------------
 *
 * Typical use: for (n = 1;; n++) { moe_alloc_fault_arm(n); err = thing_init(...);
 * if (!moe_alloc_fault_fired()) break; assert(err == MOE_ENOMEM); } moe_alloc_fault_disarm();
 *
 * These calls are thread-safe (atomics) but the count is process-wide, so use them in
 * single-threaded tests.
 */

/*
 * Arms the hook: allocation number `n` (1-based, counted from this call, every malloc,
 * calloc and realloc counts) fails by returning NULL without calling the host allocator.
 * Later allocations succeed again. n == 0 disarms. Resets the counter and the fired flag.
 */
void moe_alloc_fault_arm(uint64_t n);
/* Disarms the hook; allocations succeed again. The counter keeps running. */
void moe_alloc_fault_disarm(void);
/* Non-zero when the armed allocation has been reached and failed since the last arm. */
int moe_alloc_fault_fired(void);
/* Allocations attempted since the last arm (or since start), including the failed one. */
uint64_t moe_alloc_count(void);
/*
 * Engine allocations not yet freed (successful malloc/calloc/realloc(NULL, n) minus frees of
 * non-NULL pointers), counted since process start. Tests compare it before and after.
 */
int64_t moe_alloc_live(void);

#ifdef __cplusplus
}
#endif
#endif /* MOE_ALLOC_H */
