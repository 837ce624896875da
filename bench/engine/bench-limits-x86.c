/*
 * The loops that measure this core's limits (see bench-limits.h). Independent accumulators
 * everywhere, so that latency never limits: only load bandwidth or execution throughput.
 */
#include <immintrin.h>

#include "bench-limits.h"

uint64_t bench_read_avx512(const void *buf, size_t bytes, int64_t passes, int streams) {
  /* With 4 streams, one per quarter of the buffer, read side by side: a single sequential
   * stream can be limited by how many misses one prefetch stream keeps in flight rather than
   * by the cache's bandwidth, while DRAM may prefer one stream; the caller takes the best. */
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t q = streams == 4 ? bytes / 4 / 128 * 128 : 0;
  for (int64_t p = 0; p < passes; p++) {
    const char *c0 = (const char *)buf, *c1 = c0 + q, *c2 = c1 + q, *c3 = c2 + q;
    if (streams != 4) {
      for (size_t off = 0; off + 256 <= bytes; off += 256) {
        a0 = _mm512_add_epi32(a0, _mm512_load_si512((const void *)(c0 + off)));
        a1 = _mm512_add_epi32(a1, _mm512_load_si512((const void *)(c0 + off + 64)));
        a2 = _mm512_add_epi32(a2, _mm512_load_si512((const void *)(c0 + off + 128)));
        a3 = _mm512_add_epi32(a3, _mm512_load_si512((const void *)(c0 + off + 192)));
      }
    }
    for (size_t off = 0; off < q; off += 128) {
      a0 = _mm512_add_epi32(a0, _mm512_load_si512((const void *)(c0 + off)));
      a1 = _mm512_add_epi32(a1, _mm512_load_si512((const void *)(c1 + off)));
      a2 = _mm512_add_epi32(a2, _mm512_load_si512((const void *)(c2 + off)));
      a3 = _mm512_add_epi32(a3, _mm512_load_si512((const void *)(c3 + off)));
      a0 = _mm512_add_epi32(a0, _mm512_load_si512((const void *)(c0 + off + 64)));
      a1 = _mm512_add_epi32(a1, _mm512_load_si512((const void *)(c1 + off + 64)));
      a2 = _mm512_add_epi32(a2, _mm512_load_si512((const void *)(c2 + off + 64)));
      a3 = _mm512_add_epi32(a3, _mm512_load_si512((const void *)(c3 + off + 64)));
    }
    /* Keep the compiler from hoisting or merging passes. */
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3));
  }
  /* Summed as unsigned: the lanes wrap, which the intrinsic's signed reduction would make
   * undefined. */
  uint32_t lanes[16];
  _mm512_storeu_si512((void *)lanes,
                      _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
  uint32_t sum = 0;
  for (int i = 0; i < 16; i++) sum += lanes[i];
  return sum;
}

/* The chains are written in assembly: compiled C kept moving the accumulators between
 * registers, which costs issue slots and understated the peak. 16 chains cover vpdpbusd's
 * and vfmadd's latency (4-5 cycles) at up to 2 per cycle plus margin. */
#define BENCH_CHAIN16(insn)                                                    \
  insn " %%zmm16, %%zmm17, %%zmm0\n\t" insn " %%zmm16, %%zmm17, %%zmm1\n\t"    \
  insn " %%zmm16, %%zmm17, %%zmm2\n\t" insn " %%zmm16, %%zmm17, %%zmm3\n\t"    \
  insn " %%zmm16, %%zmm17, %%zmm4\n\t" insn " %%zmm16, %%zmm17, %%zmm5\n\t"    \
  insn " %%zmm16, %%zmm17, %%zmm6\n\t" insn " %%zmm16, %%zmm17, %%zmm7\n\t"    \
  insn " %%zmm16, %%zmm17, %%zmm8\n\t" insn " %%zmm16, %%zmm17, %%zmm9\n\t"    \
  insn " %%zmm16, %%zmm17, %%zmm10\n\t" insn " %%zmm16, %%zmm17, %%zmm11\n\t"  \
  insn " %%zmm16, %%zmm17, %%zmm12\n\t" insn " %%zmm16, %%zmm17, %%zmm13\n\t"  \
  insn " %%zmm16, %%zmm17, %%zmm14\n\t" insn " %%zmm16, %%zmm17, %%zmm15\n\t"

#define BENCH_CLOBBERS                                                          \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
  "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17"

int64_t bench_vnni_chain(int64_t iters) {
  int32_t out[16];
  if (iters <= 0) return 0;
  __asm__ volatile(
      "vpternlogd $0xff, %%zmm16, %%zmm16, %%zmm16\n\t"
      "vpternlogd $0xff, %%zmm17, %%zmm17, %%zmm17\n\t"
      "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
      "vmovdqa64 %%zmm0, %%zmm1\n\t vmovdqa64 %%zmm0, %%zmm2\n\t vmovdqa64 %%zmm0, %%zmm3\n\t"
      "vmovdqa64 %%zmm0, %%zmm4\n\t vmovdqa64 %%zmm0, %%zmm5\n\t vmovdqa64 %%zmm0, %%zmm6\n\t"
      "vmovdqa64 %%zmm0, %%zmm7\n\t vmovdqa64 %%zmm0, %%zmm8\n\t vmovdqa64 %%zmm0, %%zmm9\n\t"
      "vmovdqa64 %%zmm0, %%zmm10\n\t vmovdqa64 %%zmm0, %%zmm11\n\t vmovdqa64 %%zmm0, %%zmm12\n\t"
      "vmovdqa64 %%zmm0, %%zmm13\n\t vmovdqa64 %%zmm0, %%zmm14\n\t vmovdqa64 %%zmm0, %%zmm15\n\t"
      "1:\n\t" BENCH_CHAIN16("vpdpbusd")
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vpaddd %%zmm1, %%zmm0, %%zmm0\n\t vpaddd %%zmm15, %%zmm0, %%zmm0\n\t"
      "vmovdqu32 %%zmm0, %[out]\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(iters), [out] "=m"(out)
      :
      : BENCH_CLOBBERS, "cc");
  return out[0];
}

float bench_fma_chain(int64_t iters) {
  float out[16];
  if (iters <= 0) return 0;
  __asm__ volatile(
      "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
      "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
      "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
      "vmovdqa64 %%zmm0, %%zmm1\n\t vmovdqa64 %%zmm0, %%zmm2\n\t vmovdqa64 %%zmm0, %%zmm3\n\t"
      "vmovdqa64 %%zmm0, %%zmm4\n\t vmovdqa64 %%zmm0, %%zmm5\n\t vmovdqa64 %%zmm0, %%zmm6\n\t"
      "vmovdqa64 %%zmm0, %%zmm7\n\t vmovdqa64 %%zmm0, %%zmm8\n\t vmovdqa64 %%zmm0, %%zmm9\n\t"
      "vmovdqa64 %%zmm0, %%zmm10\n\t vmovdqa64 %%zmm0, %%zmm11\n\t vmovdqa64 %%zmm0, %%zmm12\n\t"
      "vmovdqa64 %%zmm0, %%zmm13\n\t vmovdqa64 %%zmm0, %%zmm14\n\t vmovdqa64 %%zmm0, %%zmm15\n\t"
      "1:\n\t" BENCH_CHAIN16("vfmadd231ps")
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vaddps %%zmm1, %%zmm0, %%zmm0\n\t"
      "vmovups %%zmm0, %[out]\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(iters), [out] "=m"(out)
      :
      : BENCH_CLOBBERS, "cc");
  return out[0];
}
