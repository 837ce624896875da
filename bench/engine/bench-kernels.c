/*
 * bench-kernels: how fast libmoe's quantized kernels run on this machine, and how close that
 * is to the machine's own limits measured in the same run. Pinned to one core (BENCH_CPU,
 * default the last online CPU), single-threaded OpenBLAS. Prints a table per variant, then one
 * JSON line of headline figures as the last line (bench/engine/run merges it with the model
 * benchmark's).
 *
 * Figures: GEMV (batch 1) with a weight matrix sized to sit in L2, reported as GB/s of weight
 * bytes and as a fraction of the measured L2 read bandwidth; GEMM at batch 16 and 256 as Gop/s
 * (2 ops per multiply-add) and a fraction of the measured VNNI (int8) or FMA (fp32) peak. Each
 * figure is the best of several timed repetitions, because the machine is shared.
 */
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "bench-limits.h"
#include "kernels/kernels.h"

/* ---- timing --------------------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Many short repetitions, best kept: another process time-sharing the core halves a
 * repetition that overlaps it, and a repetition shorter than a scheduler slice often
 * escapes it entirely. */
static double g_min_time = 0.002; /* seconds per repetition */
static int g_reps = 40;

typedef void (*bench_fn)(void *ctx, int64_t iters);

/* Seconds per call of fn: calibrates an iteration count to g_min_time, then the best of
 * g_reps repetitions. */
static double time_per_iter(bench_fn fn, void *ctx) {
  int64_t iters = 1;
  for (;;) {
    double t0 = now_s();
    fn(ctx, iters);
    double t = now_s() - t0;
    if (t >= g_min_time * 0.5 || iters > ((int64_t)1 << 40)) {
      iters = (int64_t)((double)iters * g_min_time / (t > 1e-9 ? t : 1e-9)) + 1;
      break;
    }
    iters *= 4;
  }
  double best = 1e30;
  for (int r = 0; r < g_reps; r++) {
    double t0 = now_s();
    fn(ctx, iters);
    double t = (now_s() - t0) / (double)iters;
    if (t < best) best = t;
  }
  return best;
}

static void *xalloc(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, n ? n : 64) != 0) {
    fprintf(stderr, "bench-kernels: out of memory allocating %zu bytes\n", n);
    exit(1);
  }
  return p;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
  g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
  return (float)((double)(g_rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static volatile uint64_t g_sink;

/* ---- machine limits ------------------------------------------------------------------- */

typedef struct {
  const void *buf;
  size_t bytes;
} read_ctx_t;

static void run_read(void *ctx, int64_t iters) {
  read_ctx_t *c = ctx;
  g_sink += bench_read_avx512(c->buf, c->bytes, iters);
}

static double read_bw(size_t bytes) {
  void *buf = xalloc(bytes);
  memset(buf, 1, bytes);
  read_ctx_t c = {buf, bytes};
  double t = time_per_iter(run_read, &c);
  free(buf);
  return (double)bytes / t;
}

static void run_vnni(void *ctx, int64_t iters) { (void)ctx, g_sink += (uint64_t)bench_vnni_chain(iters * 1000); }
static void run_fma(void *ctx, int64_t iters) { (void)ctx, g_sink += (uint64_t)bench_fma_chain(iters * 1000); }

/* ---- kernels -------------------------------------------------------------------------- */

typedef struct {
  const kern_ops_t *ops;
  int q4, packed;
  int64_t m, n, k;
  const blk_q8_0 *act;
  const void *w; /* packed or row format */
  float *y;
} gemm_ctx_t;

static void run_gemm(void *ctx, int64_t iters) {
  gemm_ctx_t *c = ctx;
  for (int64_t i = 0; i < iters; i++) {
    if (c->q4 && c->packed) c->ops->gemm_q4_0_packed(c->m, c->n, c->k, c->act, c->w, c->y, c->n);
    else if (c->q4) c->ops->gemm_q4_0(c->m, c->n, c->k, c->act, c->w, c->y, c->n);
    else if (c->packed) c->ops->gemm_q8_0_packed(c->m, c->n, c->k, c->act, c->w, c->y, c->n);
    else c->ops->gemm_q8_0(c->m, c->n, c->k, c->act, (const blk_q8_0 *)c->w, c->y, c->n);
  }
}

typedef struct {
  int64_t m, n, k;
  const float *a, *w;
  float *y;
} sgemm_ctx_t;

static void run_sgemm(void *ctx, int64_t iters) {
  sgemm_ctx_t *c = ctx;
  for (int64_t i = 0; i < iters; i++) kern_sgemm(c->m, c->n, c->k, c->a, c->k, c->w, c->k, 0.0f, c->y, c->n);
}

typedef struct {
  const kern_ops_t *ops;
  const float *x;
  blk_q8_0 *q;
  int64_t k, m;
} quant_ctx_t;

static void run_quant(void *ctx, int64_t iters) {
  quant_ctx_t *c = ctx;
  for (int64_t i = 0; i < iters; i++)
    for (int64_t r = 0; r < c->m; r++) c->ops->quantize_row_q8_0(c->x + r * c->k, c->q + r * (c->k / 32), c->k);
}

typedef struct {
  double l2, l3, mem, vnni, fma; /* bytes/s, bytes/s, bytes/s, op/s, flop/s */
} limits_t;

typedef struct {
  double gemv_int8_l2_frac, gemv_int8_gbps, gemv_int4_l2_frac, gemv_int4_gbps;
  double gemm_int8_b16_frac, gemm_int8_b256_frac, gemm_int8_b256_gops, gemm_int8_b16_gops;
  double gemm_int4_b256_frac, gemm_int4_b256_gops;
  double sgemm_b1_gflops, sgemm_b256_gflops, sgemm_b256_fma_frac;
  int have;
} headline_t;

static const int64_t g_batches[] = {1, 16, 256};

/* The weight shape for batch m and format: GEMV (batch 1) weights are sized to sit in L2 (1 MiB
 * per core on this machine: 512 x 1024 int8 or 512 x 2048 int4, about 0.55 MiB either way);
 * GEMM at batch 16 and 256 uses 1024 x 1024. */
static void shape_for(int64_t m, int q4, int64_t *n, int64_t *k) {
  *n = m == 1 ? 512 : 1024;
  *k = m == 1 && q4 ? 2048 : 1024;
}

/* One variant at one shape: quantization, then int8 or int4, row-format and packed, at every
 * batch whose shape_for is (n, k). */
static void bench_variant(const kern_ops_t *ops, const limits_t *lim, int64_t n, int64_t k,
                          headline_t *h) {
  int64_t kb = k / 32, mmax = 256;
  float *xf = xalloc((size_t)(mmax * k) * sizeof(float));
  float *wf = xalloc((size_t)(n * k) * sizeof(float));
  for (int64_t i = 0; i < mmax * k; i++) xf[i] = frand();
  for (int64_t i = 0; i < n * k; i++) wf[i] = frand() * 0.05f;
  blk_q8_0 *act = xalloc((size_t)(mmax * kb) * sizeof(blk_q8_0));
  blk_q8_0 *w8 = xalloc((size_t)(n * kb) * sizeof(blk_q8_0));
  blk_q4_0 *w4 = xalloc((size_t)(n * kb) * sizeof(blk_q4_0));
  for (int64_t r = 0; r < n; r++) {
    ops->quantize_row_q8_0(wf + r * k, w8 + r * kb, k);
    ops->quantize_row_q4_0(wf + r * k, w4 + r * kb, k);
  }
  void *p8 = xalloc(ops->pack_size_q8_0(n, k)), *p4 = xalloc(ops->pack_size_q4_0(n, k));
  ops->pack_q8_0(n, k, w8, p8);
  ops->pack_q4_0(n, k, w4, p4);
  float *y = xalloc((size_t)(mmax * n) * sizeof(float));

  quant_ctx_t qc = {ops, xf, act, k, mmax};
  double tq = time_per_iter(run_quant, &qc) / (double)mmax;
  printf("  %-7s quantize_row_q8_0 k=%lld: %.3f us/row (%.2f GB/s of fp32 in)\n", ops->name,
         (long long)k, tq * 1e6, (double)k * 4 / tq / 1e9);

  int is_ref = strcmp(ops->name, "ref") == 0;
  for (int q4 = 0; q4 <= 1; q4++) {
    for (int packed = 1; packed >= 0; packed--) {
      for (size_t bi = 0; bi < sizeof g_batches / sizeof g_batches[0]; bi++) {
        int64_t m = g_batches[bi], sn, sk;
        shape_for(m, q4, &sn, &sk);
        if (sn != n || sk != k) continue;
        if (is_ref && m > 16) continue; /* the specification is not a speed contender */
        gemm_ctx_t c = {ops, q4, packed, m, n, k, act, packed ? (q4 ? p4 : p8) : (q4 ? (void *)w4 : (void *)w8), y};
        double t = time_per_iter(run_gemm, &c);
        double wbytes = (double)(n * kb) * (q4 ? sizeof(blk_q4_0) : sizeof(blk_q8_0));
        double gops = 2.0 * (double)m * (double)n * (double)k / t;
        double gbps = wbytes / t;
        printf("  %-7s %s %-6s %4lldx%-4lld b=%-3lld: %9.2f us/row %11.0f rows/s %7.1f Gop/s (%.3f of VNNI) "
               "%6.1f GB/s weights (%.3f of L2)\n",
               ops->name, q4 ? "int4" : "int8", packed ? "packed" : "rows", (long long)n,
               (long long)k, (long long)m,
               t / (double)m * 1e6, (double)m / t, gops / 1e9, gops / lim->vnni, gbps / 1e9,
               gbps / lim->l2);
        if (!packed || strcmp(ops->name, "avx512") != 0) continue;
        h->have = 1;
        if (!q4 && m == 1) h->gemv_int8_l2_frac = gbps / lim->l2, h->gemv_int8_gbps = gbps / 1e9;
        if (q4 && m == 1) h->gemv_int4_l2_frac = gbps / lim->l2, h->gemv_int4_gbps = gbps / 1e9;
        if (!q4 && m == 16) h->gemm_int8_b16_frac = gops / lim->vnni, h->gemm_int8_b16_gops = gops / 1e9;
        if (!q4 && m == 256) h->gemm_int8_b256_frac = gops / lim->vnni, h->gemm_int8_b256_gops = gops / 1e9;
        if (q4 && m == 256) h->gemm_int4_b256_frac = gops / lim->vnni, h->gemm_int4_b256_gops = gops / 1e9;
      }
    }
  }
  free(xf), free(wf), free(act), free(w8), free(w4), free(p8), free(p4), free(y);
}

static void bench_sgemm(const limits_t *lim, int64_t n, int64_t k, headline_t *h) {
  int64_t mmax = 256;
  float *a = xalloc((size_t)(mmax * k) * sizeof(float)), *w = xalloc((size_t)(n * k) * sizeof(float));
  float *y = xalloc((size_t)(mmax * n) * sizeof(float));
  for (int64_t i = 0; i < mmax * k; i++) a[i] = frand();
  for (int64_t i = 0; i < n * k; i++) w[i] = frand();
  for (size_t bi = 0; bi < sizeof g_batches / sizeof g_batches[0]; bi++) {
    int64_t m = g_batches[bi];
    sgemm_ctx_t c = {m, n, k, a, w, y};
    double t = time_per_iter(run_sgemm, &c);
    double gf = 2.0 * (double)m * (double)n * (double)k / t;
    printf("  openblas fp32 sgemm  b=%-3lld: %9.2f us/row %11.0f rows/s %7.1f GFLOP/s (%.3f of FMA) "
           "%6.1f GB/s weights\n",
           (long long)m, t / (double)m * 1e6, (double)m / t, gf / 1e9, gf / lim->fma,
           (double)(n * k) * 4 / t / 1e9);
    if (m == 1) h->sgemm_b1_gflops = gf / 1e9;
    if (m == 256) h->sgemm_b256_gflops = gf / 1e9, h->sgemm_b256_fma_frac = gf / lim->fma;
  }
  free(a), free(w), free(y);
}

/* ---- main ------------------------------------------------------------------------------ */

static int pin_cpu(void) {
  const char *env = getenv("BENCH_CPU");
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int cpu = env ? atoi(env) : (int)(ncpu > 0 ? ncpu - 1 : 0);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    fprintf(stderr, "bench-kernels: cannot pin to CPU %d; running unpinned\n", cpu);
    return -1;
  }
  return cpu;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && strcmp(argv[1], "--quick") == 0) g_reps = 8;
  if (getenv("BENCH_REPS")) g_reps = atoi(getenv("BENCH_REPS")) > 0 ? atoi(getenv("BENCH_REPS")) : 1;
  int cpu = pin_cpu();
  openblas_set_num_threads(1);
  printf("bench-kernels: pinned to CPU %d; %s\n", cpu, kern_ops_reason());

  limits_t lim = {0};
  if (kern_ops_find("avx512") == NULL) {
    fprintf(stderr, "bench-kernels: this CPU lacks AVX-512 VNNI; the limit loops need it\n");
    return 1;
  }
  /* L2 is 1 MiB or more on every AVX-512 part we target; 256 KiB sits in it with room to
   * spare (the figure is flat from 128 to 512 KiB here). L3 from 8 MiB (past L2, inside a
   * shared L3); memory from 256 MiB (a repetition is then one pass, about 10 ms). */
  lim.l2 = read_bw((size_t)256 << 10);
  lim.l3 = read_bw((size_t)8 << 20);
  lim.mem = read_bw((size_t)256 << 20);
  lim.vnni = 16.0 * 64 * 2 * 1000 / time_per_iter(run_vnni, NULL);
  lim.fma = 16.0 * 16 * 2 * 1000 / time_per_iter(run_fma, NULL);
  printf("machine (one core): L2 read %.1f GB/s, L3 read %.1f GB/s, memory read %.1f GB/s, "
         "int8 VNNI peak %.0f Gop/s, fp32 FMA peak %.0f GFLOP/s\n",
         lim.l2 / 1e9, lim.l3 / 1e9, lim.mem / 1e9, lim.vnni / 1e9, lim.fma / 1e9);

  headline_t h = {0};
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  static const int64_t shapes[][2] = {{512, 1024}, {512, 2048}, {1024, 1024}};
  for (int i = 0; i < nv; i++) {
    printf("variant %s\n", v[i]->name);
    for (int s = 0; s < 3; s++) bench_variant(v[i], &lim, shapes[s][0], shapes[s][1], &h);
  }
  bench_sgemm(&lim, 1024, 1024, &h);

  printf("{\"l2_read_gbps\":%.1f,\"l3_read_gbps\":%.1f,\"mem_read_gbps\":%.1f,"
         "\"vnni_peak_gops\":%.0f,\"fma_peak_gflops\":%.0f,"
         "\"gemv_int8_l2_bw_frac\":%.3f,\"gemv_int8_gbps\":%.1f,"
         "\"gemv_int4_l2_bw_frac\":%.3f,\"gemv_int4_gbps\":%.1f,"
         "\"gemm_int8_b16_vnni_frac\":%.3f,\"gemm_int8_b16_gops\":%.1f,"
         "\"gemm_int8_b256_vnni_frac\":%.3f,\"gemm_int8_b256_gops\":%.1f,"
         "\"gemm_int4_b256_vnni_frac\":%.3f,\"gemm_int4_b256_gops\":%.1f,"
         "\"sgemm_b1_gflops\":%.1f,\"sgemm_b256_gflops\":%.1f,\"sgemm_b256_fma_frac\":%.3f}\n",
         lim.l2 / 1e9, lim.l3 / 1e9, lim.mem / 1e9, lim.vnni / 1e9, lim.fma / 1e9,
         h.gemv_int8_l2_frac, h.gemv_int8_gbps, h.gemv_int4_l2_frac, h.gemv_int4_gbps,
         h.gemm_int8_b16_frac, h.gemm_int8_b16_gops, h.gemm_int8_b256_frac, h.gemm_int8_b256_gops,
         h.gemm_int4_b256_frac, h.gemm_int4_b256_gops, h.sgemm_b1_gflops, h.sgemm_b256_gflops, h.sgemm_b256_fma_frac);
  return h.have ? 0 : 1;
}
