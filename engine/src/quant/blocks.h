/*
 * The quantized block formats of libmoe's weights and activations, and the scalar fp16 <-> fp32
 * conversions that go with them. A row of k values (k a multiple of KERN_QK = 32, along the
 * input dimension) is stored as k/32 consecutive blocks, each with its own scale, in the
 * manner of ggml's Q8_0 and Q4_0. These structs are the interchange format: what model files
 * hold and what every kernel variant accepts; a variant may additionally repack weights into a
 * private layout (kernels.h: pack_q8_0 / pack_q4_0).
 *
 * The scale is fp16 (IEEE binary16, stored as raw bits) rather than fp32 because it keeps a
 * block at 34 / 18 bytes: the weight stream of a GEMV is what bounds its speed, and fp16 loses
 * nothing that matters for a scale whose quants carry only 8 or 4 bits.
 */
#ifndef MOE_QUANT_BLOCKS_H
#define MOE_QUANT_BLOCKS_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

/* Values per block, for every quantized format. */
#define KERN_QK 32

/*
 * int8 block: value[i] = qs[i] * d. Quantization maps the block's largest magnitude to 127,
 * so qs is always in [-127, 127]. The SIMD kernels rely on that: qs == -128 is outside the
 * format (a model loader must reject it; see kern_q8_0_check).
 */
typedef struct {
  uint16_t d;           /* fp16 scale */
  int8_t qs[KERN_QK];   /* quants in [-127, 127] */
} blk_q8_0;
static_assert(sizeof(blk_q8_0) == 2 + KERN_QK, "blk_q8_0 must be packed: 34 bytes");

/*
 * int4 block: value[i] = (q[i] - 8) * d with q[i] in [0, 15]. Byte j of qs holds element j in
 * its low nibble and element j + 16 in its high nibble (ggml's Q4_0 order), so a 16-byte load
 * splits into the two halves of the block with one mask and one shift.
 */
typedef struct {
  uint16_t d;                /* fp16 scale */
  uint8_t qs[KERN_QK / 2];   /* packed nibbles */
} blk_q4_0;
static_assert(sizeof(blk_q4_0) == 2 + KERN_QK / 2, "blk_q4_0 must be packed: 18 bytes");

/* ---- fp16 <-> fp32, scalar reference ---------------------------------------------------- */

static inline uint32_t kern__f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float kern__f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Exact for every binary16 value, including subnormals, infinities and NaN. */
static inline float kern_fp16_to_fp32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return kern__f32_from_bits(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    /* Zero or subnormal: man * 2^-24, exact in fp32. */
    float f = (float)man * 5.9604644775390625e-08f;
    return sign ? -f : f;
  }
  return kern__f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Round to nearest even, overflow to infinity, NaN stays NaN: the rounding of F16C's vcvtps2ph
 * with imm 0, so that the scalar and SIMD quantizers store identical scales. */
static inline uint16_t kern_fp32_to_fp16(float f) {
  uint32_t u = kern__f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65536: inf */
  if (a < 0x38800000u) {
    /* Result is subnormal or zero: add 0.5 in the float domain so that the FPU rounds to
     * nearest even at the 2^-24 quantum, then take the low bits. */
    float r = kern__f32_from_bits(a) + 0.5f;
    return (uint16_t)(sign | (uint16_t)(kern__f32_bits(r) - 0x3f000000u));
  }
  uint32_t odd = (a >> 13) & 1u;
  a += 0xc8000fffu + odd; /* rebias exponent (-112 << 23) and round half to even */
  return (uint16_t)(sign | (uint16_t)(a >> 13));
}

#endif /* MOE_QUANT_BLOCKS_H */
