/*
 * Block formats and quantization: fp16 conversion, q8_0 / q4_0 round-trip error bounds, edge
 * cases (zero blocks, huge values, -128 rejection), and every compiled variant's quantizer
 * producing exactly the reference's blocks.
 */
#include <float.h>

#include "test.h"
#include "kern-test-util.h"

#include "kernels/kernels-impl.h"

TEST(fp16_roundtrip_every_half) {
  /* Every finite half converts to fp32 and back to the same bits; NaNs stay NaN. */
  for (uint32_t h = 0; h < 0x10000u; h++) {
    float f = kern_fp16_to_fp32((uint16_t)h);
    uint16_t back = kern_fp32_to_fp16(f);
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0) {
      ASSERT(isnan(f));
      ASSERT_EQ(back & 0x7c00u, 0x7c00u);
      ASSERT_NE(back & 0x3ffu, 0);
    } else {
      ASSERT_EQ(back, h);
    }
  }
}

TEST(fp16_known_values_and_rounding) {
  ASSERT_EQ(kern_fp32_to_fp16(1.0f), 0x3c00);
  ASSERT_EQ(kern_fp32_to_fp16(-2.0f), 0xc000);
  ASSERT_EQ(kern_fp32_to_fp16(65504.0f), 0x7bff);
  ASSERT_EQ(kern_fp32_to_fp16(65520.0f), 0x7c00);          /* halfway to 65536: ties to even, inf */
  ASSERT_EQ(kern_fp32_to_fp16(65519.0f), 0x7bff);
  ASSERT_EQ(kern_fp32_to_fp16(1e10f), 0x7c00);
  ASSERT_EQ(kern_fp32_to_fp16(5.9604644775390625e-08f), 0x0001); /* smallest subnormal */
  ASSERT_EQ(kern_fp32_to_fp16(2.98023223876953125e-08f), 0x0000); /* half of it: ties to even */
  ASSERT_EQ(kern_fp32_to_fp16(1.0f + 1.0f / 2048.0f), 0x3c00); /* tie, even stays */
  ASSERT_EQ(kern_fp32_to_fp16(1.0f + 3.0f / 2048.0f), 0x3c02); /* tie, odd rounds up */
  ASSERT_EQ(kern_fp32_to_fp16(-0.0f), 0x8000);
  ASSERT_NEAR(kern_fp16_to_fp32(0x3555), 0.333251953125, 0.0);
  /* Every fp32 in a sweep rounds to the nearest half (checked against both neighbours). */
  rng_t r = {0x1234};
  for (int i = 0; i < 200000; i++) {
    float f = rng_uniform(&r, -70000.0f, 70000.0f) * (i % 3 == 0 ? 1e-6f : 1.0f);
    uint16_t h = kern_fp32_to_fp16(f);
    if ((h & 0x7c00u) == 0x7c00u) {
      ASSERT_OP(fabsf(f), >=, 65504.0f);
      continue;
    }
    double e = fabs((double)kern_fp16_to_fp32(h) - (double)f);
    double up = fabs((double)kern_fp16_to_fp32((uint16_t)(h + 1)) - (double)f);
    ASSERT_OP(e, <=, up);
    if ((h & 0x7fffu) != 0) {
      double dn = fabs((double)kern_fp16_to_fp32((uint16_t)(h - 1)) - (double)f);
      ASSERT_OP(e, <=, dn);
    }
  }
}

TEST(q8_0_roundtrip_error_bound) {
  rng_t r = {42};
  const int64_t k = 32 * 37;
  float *x = xalloc(k * sizeof(float)), *y = xalloc(k * sizeof(float));
  blk_q8_0 *q = xalloc(k / 32 * sizeof(blk_q8_0));
  rng_fill(&r, x, k, 3.0f);
  kern__quantize_row_q8_0_ref(x, q, k);
  kern__dequantize_row_q8_0_ref(q, y, k);
  for (int64_t b = 0; b < k / 32; b++) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
    float d = kern_fp16_to_fp32(q[b].d);
    /* The stored scale is amax / 127 rounded to fp16 (relative error <= 2^-11). */
    ASSERT_NEAR(d, amax / 127.0f, amax / 127.0f * 4.9e-4);
    for (int i = 0; i < 32; i++) {
      ASSERT_OP(q[b].qs[i], >=, -127);
      /* Half a quantization step, plus the clamp of the largest value when d rounded down. */
      ASSERT_OP(fabsf(y[b * 32 + i] - x[b * 32 + i]), <=, 0.5f * d + amax * 4.9e-4f + 1e-7f);
    }
  }
  free(x), free(y), free(q);
}

TEST(q4_0_roundtrip_error_bound) {
  rng_t r = {43};
  const int64_t k = 32 * 41;
  float *x = xalloc(k * sizeof(float)), *y = xalloc(k * sizeof(float));
  blk_q4_0 *q = xalloc(k / 32 * sizeof(blk_q4_0));
  rng_fill(&r, x, k, 2.0f);
  kern__quantize_row_q4_0_ref(x, q, k);
  kern__dequantize_row_q4_0_ref(q, y, k);
  for (int64_t b = 0; b < k / 32; b++) {
    float vmax = 0.0f;
    for (int i = 0; i < 32; i++)
      if (fabsf(x[b * 32 + i]) > fabsf(vmax)) vmax = x[b * 32 + i];
    float d = kern_fp16_to_fp32(q[b].d);
    ASSERT_NEAR(d, -vmax / 8.0f, fabsf(vmax) / 8.0f * 4.9e-4);
    float ad = fabsf(d);
    for (int i = 0; i < 32; i++) {
      float xi = x[b * 32 + i], e = fabsf(y[b * 32 + i] - xi);
      /* The level +8 does not exist (q - 8 <= 7): values of the other sign near |vmax| clamp
       * to 7 and may be off by up to one step; everything else by half a step. */
      int clamped = xi / d > 7.4f;
      ASSERT_OP(e, <=, (clamped ? 1.0f : 0.5f) * ad + fabsf(vmax) * 4.9e-4f + 1e-7f);
    }
    /* The extreme value itself is exact. */
    for (int i = 0; i < 32; i++)
      if (x[b * 32 + i] == vmax) ASSERT_NEAR(y[b * 32 + i], vmax, 4.9e-4);
  }
  free(x), free(y), free(q);
}

TEST(zero_and_huge_blocks) {
  float x[96];
  blk_q8_0 q8[3];
  blk_q4_0 q4[3];
  for (int i = 0; i < 32; i++) x[i] = 0.0f;
  for (int i = 32; i < 64; i++) x[i] = (i % 2 ? 1e30f : -3e29f) * (float)(i - 31);
  for (int i = 64; i < 96; i++) x[i] = 1e-30f * (float)(i - 80);
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  for (int j = 0; j < nv; j++) {
    v[j]->quantize_row_q8_0(x, q8, 96);
    v[j]->quantize_row_q4_0(x, q4, 96);
    /* All-zero block: zero scale, zero quants (q4: the level 8 means 0). */
    ASSERT_EQ(kern_fp16_to_fp32(q8[0].d), 0);
    ASSERT_EQ(kern_fp16_to_fp32(q4[0].d), 0);
    for (int i = 0; i < 32; i++) ASSERT_EQ(q8[0].qs[i], 0);
    /* Huge block: the scale saturates at the largest finite fp16 instead of becoming inf,
     * and quants saturate at +-127. */
    ASSERT_EQ(q8[1].d, 0x7bff);
    ASSERT_EQ(q8[1].qs[31], 127);
    ASSERT_EQ(q8[1].qs[30], -127);
    ASSERT_OP(fabsf(kern_fp16_to_fp32(q4[1].d)), ==, 65504.0f);
    /* Tiny block: the scale underflows fp16 to 0; no NaN, no garbage. */
    ASSERT_EQ(kern_fp16_to_fp32(q8[2].d), 0);
    for (int i = 0; i < 32; i++) ASSERT_EQ(q8[2].qs[i], 0);
  }
}

TEST(q8_0_check_rejects_minus_128) {
  blk_q8_0 b[4];
  memset(b, 0, sizeof b);
  ASSERT_EQ(kern_q8_0_check(b, 4), 0);
  b[2].qs[17] = -128;
  ASSERT_EQ(kern_q8_0_check(b, 4), 3);
  ASSERT_EQ(kern_q8_0_check(b, 2), 0);
}

TEST(variants_quantize_exactly_like_ref) {
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  ASSERT_OP(nv, >=, 1);
  rng_t r = {7};
  for (int64_t k = 32; k <= 32 * 67; k += 32 * 11) {
    float *x = xalloc(k * sizeof(float));
    float *y0 = xalloc(k * sizeof(float)), *y1 = xalloc(k * sizeof(float));
    blk_q8_0 *a = xalloc(k / 32 * sizeof(blk_q8_0)), *b = xalloc(k / 32 * sizeof(blk_q8_0));
    blk_q4_0 *c = xalloc(k / 32 * sizeof(blk_q4_0)), *d = xalloc(k / 32 * sizeof(blk_q4_0));
    /* Mixed magnitudes, exact ties (x.5 * d) and repeated extremes of both signs. */
    rng_fill(&r, x, k, 10.0f);
    for (int64_t i = 0; i < k; i += 5) x[i] = (float)rng_int(&r, -20, 20) * 0.5f;
    for (int64_t i = 0; i < k; i += 64) x[i] = -x[i + 1];
    kern__quantize_row_q8_0_ref(x, a, k);
    kern__quantize_row_q4_0_ref(x, c, k);
    kern__dequantize_row_q8_0_ref(a, y0, k);
    for (int j = 0; j < nv; j++) {
      v[j]->quantize_row_q8_0(x, b, k);
      v[j]->quantize_row_q4_0(x, d, k);
      ASSERT_MSG(memcmp(a, b, k / 32 * sizeof(blk_q8_0)) == 0, "%s q8_0 k=%lld", v[j]->name,
                 (long long)k);
      ASSERT_MSG(memcmp(c, d, k / 32 * sizeof(blk_q4_0)) == 0, "%s q4_0 k=%lld", v[j]->name,
                 (long long)k);
      v[j]->dequantize_row_q8_0(b, y1, k);
      ASSERT(memcmp(y0, y1, k * sizeof(float)) == 0);
      v[j]->dequantize_row_q4_0(d, y1, k);
      float *y2 = xalloc(k * sizeof(float));
      kern__dequantize_row_q4_0_ref(c, y2, k);
      ASSERT(memcmp(y2, y1, k * sizeof(float)) == 0);
      free(y2);
    }
    free(x), free(y0), free(y1), free(a), free(b), free(c), free(d);
  }
}
