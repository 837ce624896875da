/*
 * The kernel layer of libmoe: one table of function pointers (kern_ops_t) per instruction-set
 * variant (scalar "ref", "avx2", "avx512" with VNNI), chosen once per process by a CPU probe
 * or forced with MOE_KERNELS=ref|avx2|avx512. The layers in nn/ and moe/ call only through
 * this table, so that the scalar reference in ref.c stays the specification that every SIMD
 * variant is tested against (tests/kernels/).
 *
 * Conventions for every function below:
 *   - k (the input / reduction dimension) is a multiple of KERN_QK (32) for quantized data;
 *     n and m are any value >= 0. Float helpers accept any n >= 0.
 *   - Weights are PyTorch Linear layout: n rows (output features), each of k inputs.
 *     Activations are m rows of k. y = act * w^T is m x n with row stride ldy >= n, and is
 *     overwritten (not accumulated into).
 *   - Pointers need no alignment unless stated; outputs may not alias inputs unless stated.
 *   - Every function is thread-safe and reentrant: no global mutable state, no allocation.
 *     The AVX-512 GEMMs stage scales and panels on the stack: up to 16 KiB (packed) and
 *     52 KiB (gemm_q8_0 on row-format weights), so a thread needs a stack of 64 KiB or more
 *     to spare for them.
 *   - Integer parts are exact: the int32 sum of products inside one block is the same in every
 *     variant; only the float arithmetic after it (scales, accumulation order) may differ, within
 *     the tolerances named in tests/kernels/.
 */
#ifndef MOE_KERNELS_KERNELS_H
#define MOE_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quant/blocks.h"

typedef struct kern_ops_s {
  const char *name; /* "ref", "avx2", "avx512" */

  /* ---- quantization (k a multiple of 32) ---- */
  /* x[k] -> k/32 blocks. Each block's scale is max|x| / 127 rounded to fp16 (saturating at
   * 65504, beyond which quants clamp to +-127), and the quants are round-to-nearest-even of
   * x / (that rounded scale), so qs is in [-127, 127]; an all-zero block gets scale 0 and zero
   * quants, as does a block whose scale underflows fp16. Every variant produces bit-identical
   * blocks. Non-finite input gives an unspecified (but memory-safe) block; callers validate
   * their floats first. */
  void (*quantize_row_q8_0)(const float *x, blk_q8_0 *y, int64_t k);
  void (*dequantize_row_q8_0)(const blk_q8_0 *x, float *y, int64_t k);
  /* Scale d = v / -8 (rounded to fp16, saturating like q8_0) where v is the first value of
   * largest magnitude, so that v maps to q = 0 and the rest to floor(x / d + 8.5) clamped to
   * [0, 15] (ggml's Q4_0 rule). */
  void (*quantize_row_q4_0)(const float *x, blk_q4_0 *y, int64_t k);
  void (*dequantize_row_q4_0)(const blk_q4_0 *x, float *y, int64_t k);

  /* ---- quantized dot products and matrix products ---- */
  /* sum over blocks b of d_w[b] * d_a[b] * (int32 sum of w.qs * a.qs in block b). */
  float (*vec_dot_q8_0_q8_0)(int64_t k, const blk_q8_0 *w, const blk_q8_0 *a);
  float (*vec_dot_q4_0_q8_0)(int64_t k, const blk_q4_0 *w, const blk_q8_0 *a);
  /* y[i * ldy + j] = vec_dot(k, w + j * k/32, act + i * k/32) for i < m, j < n. */
  void (*gemm_q8_0)(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act, const blk_q8_0 *w,
                    float *y, int64_t ldy);
  void (*gemm_q4_0)(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act, const blk_q4_0 *w,
                    float *y, int64_t ldy);

  /* ---- prepacked weights: the fast path for a model's fixed weights ----
   * pack_* copies an n x k weight matrix into this variant's private layout (e.g. 16 output
   * rows interleaved for VNNI), once, at model load. `dst` must be 64-byte aligned and hold
   * pack_size_*(n, k) bytes; it is plain data (no pointers) owned by the caller. gemm_*_packed
   * computes exactly what gemm_* computes on the unpacked matrix. A packed buffer is only
   * valid with the same kern_ops_t that packed it (ref's layout is the plain block array). */
  size_t (*pack_size_q8_0)(int64_t n, int64_t k);
  void (*pack_q8_0)(int64_t n, int64_t k, const blk_q8_0 *w, void *dst);
  void (*gemm_q8_0_packed)(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                           const void *wp, float *y, int64_t ldy);
  size_t (*pack_size_q4_0)(int64_t n, int64_t k);
  void (*pack_q4_0)(int64_t n, int64_t k, const blk_q4_0 *w, void *dst);
  void (*gemm_q4_0_packed)(int64_t m, int64_t n, int64_t k, const blk_q8_0 *act,
                           const void *wp, float *y, int64_t ldy);

  /* ---- fp32 row helpers used by the layers (y may equal x where marked "in place ok") ---- */
  float (*dot_f32)(int64_t n, const float *x, const float *y);
  void (*axpy_f32)(int64_t n, float a, const float *x, float *y);  /* y += a * x */
  void (*add_f32)(int64_t n, const float *x, float *y);            /* y += x */
  void (*mul_f32)(int64_t n, const float *x, float *y);            /* y *= x, elementwise */
  void (*scale_f32)(int64_t n, float s, float *y);                 /* y *= s */
  /* y = x * sigmoid(x); in place ok. */
  void (*silu_f32)(int64_t n, const float *x, float *y);
  /* y = 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default (exact) GELU; in place ok. SIMD
   * variants may approximate erf (|error| in y within the test's TOL_F32_ELEM). */
  void (*gelu_f32)(int64_t n, const float *x, float *y);
  /* y = softmax(x), max-subtracted; n >= 1; in place ok. */
  void (*softmax_f32)(int64_t n, const float *x, float *y);
  /* y = x / sqrt(mean(x^2) + eps) * g (g NULL: 1); in place ok. */
  void (*rmsnorm_f32)(int64_t n, const float *x, const float *g, float eps, float *y);
  /* y = (x - mean) / sqrt(var + eps) * g + b (biased variance; g / b NULL: 1 / 0); in place ok. */
  void (*layernorm_f32)(int64_t n, const float *x, const float *g, const float *b, float eps,
                        float *y);
} kern_ops_t;

/*
 * The variant for this process: MOE_KERNELS if set and usable, else the best the CPU and OS
 * support (avx512 needs AVX-512 F/BW/VL/VNNI with ZMM state enabled by the OS; avx2 needs
 * AVX2/FMA/F16C with YMM state). Chosen once, thread-safe, never NULL. If MOE_KERNELS names
 * an unknown or unsupported variant, the best supported one is used and kern_ops_reason()
 * says so; a host that wants to refuse to start calls kern_init() first.
 */
const kern_ops_t *kern_ops(void);

/*
 * Makes the choice now (idempotent, thread-safe). Returns 0, or MOE_EINVAL when MOE_KERNELS
 * names no known variant and MOE_EUNSUPPORTED when it names one this build or CPU cannot run,
 * with the reason in errstr. kern_ops() works either way.
 */
int kern_init(char *errstr, size_t errstr_size);

/* One line saying which variant was chosen and why, for the host to log. Static storage. */
const char *kern_ops_reason(void);

/* The variant called `name` if compiled in and supported by this CPU, else NULL. */
const kern_ops_t *kern_ops_find(const char *name);

/* Fills out[0..max) with every usable variant, "ref" first; returns how many there are. */
int kern_ops_list(const kern_ops_t **out, int max);

/*
 * fp32 GEMM through OpenBLAS: y[m x n] = a[m x k] * w[n x k]^T + beta * y, row-major with
 * leading dimensions lda >= k, ldw >= k, ldy >= n. beta 0 ignores y's previous content (NaN
 * included). Threads: whatever OpenBLAS is configured with (OPENBLAS_NUM_THREADS).
 */
void kern_sgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *w,
                int64_t ldw, float beta, float *y, int64_t ldy);

/*
 * Returns 0 when every quant of the n-block array is inside the format (q8_0: no -128), or
 * 1 + the index of the first bad block. For model loaders: a file is untrusted input.
 */
int64_t kern_q8_0_check(const blk_q8_0 *x, int64_t n_blocks);

#endif /* MOE_KERNELS_KERNELS_H */
