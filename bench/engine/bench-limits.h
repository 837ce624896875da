/*
 * Machine limits measured by bench-kernels in the same run as the kernels, so that every
 * kernel figure can be printed as a fraction of what this core can do right now: read
 * bandwidth from a cache level or memory, the int8 VNNI peak and the fp32 FMA peak. The loops
 * live in bench-limits-x86.c, the only bench file built with AVX-512 flags; callers check
 * kern_ops_find("avx512") before calling them.
 */
#ifndef SLUICE_BENCH_LIMITS_H
#define SLUICE_BENCH_LIMITS_H

#include <stddef.h>
#include <stdint.h>

/* Reads `bytes` (a multiple of 512, 64-byte aligned) `passes` times with 512-bit loads, as
 * one sequential stream (streams 1) or four interleaved ones (streams 4); returns a value
 * derived from the data so that the reads cannot be optimised away. */
uint64_t bench_read_avx512(const void *buf, size_t bytes, int64_t passes, int streams);

/* `iters` iterations of 16 independent vpdpbusd chains: 16 * 64 multiply-adds each. Returns
 * a checksum. */
int64_t bench_vnni_chain(int64_t iters);

/* `iters` iterations of 16 independent 512-bit FMA chains: 16 * 16 multiply-adds each. */
float bench_fma_chain(int64_t iters);

#endif /* SLUICE_BENCH_LIMITS_H */
