/*
 * Private declarations shared by the kernel variants and the dispatcher: each variant's table
 * and the scalar reference functions, which SIMD variants reuse for the operations they do not
 * specialise (so that a variant is always complete) and for their block-level tails.
 */
#ifndef MOE_KERNELS_IMPL_H
#define MOE_KERNELS_IMPL_H

#include "kernels/kernels.h"

extern const kern_ops_t kern__ops_ref;
#ifdef MOE_KERN_HAVE_AVX2
extern const kern_ops_t kern__ops_avx2;
#endif
#ifdef MOE_KERN_HAVE_AVX512
extern const kern_ops_t kern__ops_avx512;
#endif

/* The largest finite fp16: block scales saturate here (see quantize_row_q8_0_ref). */
#define KERN__FP16_MAX 65504.0f

/* The fp32 scale a quantizer stores for a block whose scale before rounding is `d` (>= 0 or,
 * for q4_0, signed): saturated to the fp16 range, rounded to fp16 and back. Every variant
 * quantizes with this rounded scale, so that quants agree exactly across variants. */
static inline float kern__scale_round(float d) {
  if (d > KERN__FP16_MAX) d = KERN__FP16_MAX;
  if (d < -KERN__FP16_MAX) d = -KERN__FP16_MAX;
  return kern_fp16_to_fp32(kern_fp32_to_fp16(d));
}

void kern__quantize_row_q8_0_ref(const float *x, blk_q8_0 *y, int64_t k);
void kern__dequantize_row_q8_0_ref(const blk_q8_0 *x, float *y, int64_t k);
void kern__quantize_row_q4_0_ref(const float *x, blk_q4_0 *y, int64_t k);
void kern__dequantize_row_q4_0_ref(const blk_q4_0 *x, float *y, int64_t k);
float kern__vec_dot_q8_0_q8_0_ref(int64_t k, const blk_q8_0 *w, const blk_q8_0 *a);
float kern__vec_dot_q4_0_q8_0_ref(int64_t k, const blk_q4_0 *w, const blk_q8_0 *a);
/* The int32 sum of products of one block pair: the exact part every variant must reproduce. */
int32_t kern__block_isum_q8_0_ref(const blk_q8_0 *w, const blk_q8_0 *a);
int32_t kern__block_isum_q4_0_ref(const blk_q4_0 *w, const blk_q8_0 *a);
void kern__gemm_q8_0_ref(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                         const blk_q8_0 *w, float *y, int64_t ldy);
void kern__gemm_q4_0_ref(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                         const blk_q4_0 *w, float *y, int64_t ldy);
size_t kern__pack_size_q8_0_ref(int64_t n, int64_t k);
void kern__pack_q8_0_ref(int64_t n, int64_t k, const blk_q8_0 *w, void *dst);
void kern__gemm_q8_0_packed_ref(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                const void *wp, float *y, int64_t ldy);
size_t kern__pack_size_q4_0_ref(int64_t n, int64_t k);
void kern__pack_q4_0_ref(int64_t n, int64_t k, const blk_q4_0 *w, void *dst);
void kern__gemm_q4_0_packed_ref(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                                const void *wp, float *y, int64_t ldy);
float kern__dot_f32_ref(int64_t n, const float *x, const float *y);
void kern__axpy_f32_ref(int64_t n, float a, const float *x, float *y);
void kern__add_f32_ref(int64_t n, const float *x, float *y);
void kern__mul_f32_ref(int64_t n, const float *x, float *y);
void kern__scale_f32_ref(int64_t n, float s, float *y);
void kern__silu_f32_ref(int64_t n, const float *x, float *y);
void kern__gelu_f32_ref(int64_t n, const float *x, float *y);
void kern__softmax_f32_ref(int64_t n, const float *x, float *y);
void kern__rmsnorm_f32_ref(int64_t n, const float *x, const float *g, float eps, float *y);
void kern__layernorm_f32_ref(int64_t n, const float *x, const float *g, const float *b,
                             float eps, float *y);

#endif /* MOE_KERNELS_IMPL_H */
