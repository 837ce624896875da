/*
 * bench-kernels: how fast libmoe's quantized kernels run on this machine, and how close that
 * is to the machine's own limits measured in the same run. Pinned to one core (BENCH_CPU,
 * default the last online CPU), single-threaded OpenBLAS. Prints a table per variant, then one
 * JSON line of headline figures as the last line (bench/engine/run merges it with the model
 * benchmark's).
 *
 * Figures: GEMV (batch 1) with a weight matrix sized to sit in L2, in L3 and in memory,
 * reported as GB/s of weight bytes and as a fraction of that level's measured read bandwidth;
 * GEMM at batch 16 and 256 as Gop/s
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
  int streams;
} read_ctx_t;

static void run_read(void *ctx, int64_t iters) {
  read_ctx_t *c = ctx;
  g_sink += bench_read_avx512(c->buf, c->bytes, iters, c->streams);
}

/* The better of one sequential stream and four interleaved ones. */
static double read_bw(size_t bytes) {
  void *buf = xalloc(bytes);
  memset(buf, 1, bytes);
  read_ctx_t c1 = {buf, bytes, 1}, c4 = {buf, bytes, 4};
  double t1 = time_per_iter(run_read, &c1), t4 = time_per_iter(run_read, &c4);
  if (getenv("BENCH_VERBOSE"))
    printf("  read %zu KiB: 1 stream %.1f GB/s, 4 streams %.1f GB/s\n", bytes >> 10,
           (double)bytes / t1 / 1e9, (double)bytes / t4 / 1e9);
  free(buf);
  return (double)bytes / (t1 < t4 ? t1 : t4);
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
  double gemv_int8_l3_frac, gemv_int8_l3_gbps, gemv_int8_mem_frac, gemv_int8_mem_gbps;
  double sgemm_b1_gflops, sgemm_b256_gflops, sgemm_b256_fma_frac;
  int have;
} headline_t;

/* Where a case's weights live, for the bandwidth fraction of batch-1 cases. */
typedef enum { AT_L2, AT_L3, AT_MEM } level_t;
static const char *const level_names[] = {"L2", "L3", "mem"};

typedef struct {
  int64_t m;
  int q4;
  int64_t n, k;
  level_t at;
} case_t;

/* GEMV (batch 1) weights sized for each level: about 0.55 MiB (inside this machine's 1 MiB
 * L2), 8.5 MiB (inside the 32 MiB shared L3, where its read bandwidth was measured) and
 * 68 MiB (memory). GEMM at batch 16 and 256 on 1024 x 1024 weights (compute-bound). */
static const case_t g_cases[] = {
  {1, 0, 512, 1024, AT_L2},    {1, 1, 512, 2048, AT_L2},
  {1, 0, 4096, 2048, AT_L3},   {1, 1, 4096, 4096, AT_L3},
  {1, 0, 16384, 4096, AT_MEM}, {1, 1, 16384, 8192, AT_MEM},
  {16, 0, 1024, 1024, AT_L2},  {256, 0, 1024, 1024, AT_L2},
  {16, 1, 1024, 1024, AT_L2},  {256, 1, 1024, 1024, AT_L2},
};

static void rand_q8(blk_q8_0 *b, int64_t nb, float scale) {
  for (int64_t i = 0; i < nb; i++) {
    b[i].d = kern_fp32_to_fp16(scale * (0.5f + 0.5f * frand()));
    for (int j = 0; j < 32; j++) b[i].qs[j] = (int8_t)(frand() * 127.0f);
  }
}

static void rand_q4(blk_q4_0 *b, int64_t nb, float scale) {
  for (int64_t i = 0; i < nb; i++) {
    b[i].d = kern_fp32_to_fp16(scale * (0.5f + 0.5f * frand()));
    for (int j = 0; j < 16; j++) {
      (void)frand();
      b[i].qs[j] = (uint8_t)(g_rng >> 17);
    }
  }
}

/* One variant: activation quantization, then every case, row-format and packed weights. */
static void bench_variant(const kern_ops_t *ops, limits_t *lim, headline_t *h) {
  int is_ref = strcmp(ops->name, "ref") == 0, is_best = strcmp(ops->name, "avx512") == 0;
  {
    int64_t k = 1024, m = 256;
    float *xf = xalloc((size_t)(m * k) * sizeof(float));
    blk_q8_0 *act = xalloc((size_t)(m * k / 32) * sizeof(blk_q8_0));
    for (int64_t i = 0; i < m * k; i++) xf[i] = frand();
    quant_ctx_t qc = {ops, xf, act, k, m};
    double tq = time_per_iter(run_quant, &qc) / (double)m;
    printf("  %-7s quantize_row_q8_0 k=%lld: %.3f us/row (%.2f GB/s of fp32 in)\n", ops->name,
           (long long)k, tq * 1e6, (double)k * 4 / tq / 1e9);
    free(xf), free(act);
  }
  for (size_t ci = 0; ci < sizeof g_cases / sizeof g_cases[0]; ci++) {
    const case_t *cs = &g_cases[ci];
    int64_t m = cs->m, n = cs->n, k = cs->k, kb = k / 32;
    /* The specification is not a speed contender: only its small cases, for scale. */
    if (is_ref && (m > 16 || cs->at != AT_L2)) continue;
    blk_q8_0 *act = xalloc((size_t)(m * kb) * sizeof(blk_q8_0));
    rand_q8(act, m * kb, 0.01f);
    size_t wbytes = (size_t)(n * kb) * (cs->q4 ? sizeof(blk_q4_0) : sizeof(blk_q8_0));
    void *w = xalloc(wbytes);
    if (cs->q4) rand_q4(w, n * kb, 0.01f);
    else rand_q8(w, n * kb, 0.01f);
    size_t psize = cs->q4 ? ops->pack_size_q4_0(n, k) : ops->pack_size_q8_0(n, k);
    void *wp = xalloc(psize);
    if (cs->q4) ops->pack_q4_0(n, k, w, wp);
    else ops->pack_q8_0(n, k, w, wp);
    float *y = xalloc((size_t)(m * n) * sizeof(float));
    if (cs->at == AT_MEM) {
      /* The other core's memory traffic comes and goes: measure again next to the case and
       * keep the best figure seen (the conservative denominator). */
      double mem = read_bw((size_t)256 << 20);
      if (mem > lim->mem) lim->mem = mem;
    }
    double lvl = cs->at == AT_L2 ? lim->l2 : cs->at == AT_L3 ? lim->l3 : lim->mem;
    for (int packed = 1; packed >= 0; packed--) {
      gemm_ctx_t c = {ops, cs->q4, packed, m, n, k, act, packed ? wp : w, y};
      double t = time_per_iter(run_gemm, &c);
      double gops = 2.0 * (double)m * (double)n * (double)k / t, gbps = (double)wbytes / t;
      printf("  %-7s %s %-6s %5lldx%-5lld b=%-3lld: %9.2f us/row %9.0f rows/s %6.1f Gop/s "
             "(%.3f of VNNI)",
             ops->name, cs->q4 ? "int4" : "int8", packed ? "packed" : "rows", (long long)n,
             (long long)k, (long long)m, t / (double)m * 1e6, (double)m / t, gops / 1e9,
             gops / lim->vnni);
      if (m == 1)
        printf(" %6.1f GB/s weights (%.3f of %s read)", gbps / 1e9, gbps / lvl,
               level_names[cs->at]);
      printf("\n");
      if (!packed || !is_best) continue;
      h->have = 1;
      if (m == 1 && !cs->q4 && cs->at == AT_L2) h->gemv_int8_l2_frac = gbps / lvl, h->gemv_int8_gbps = gbps / 1e9;
      if (m == 1 && cs->q4 && cs->at == AT_L2) h->gemv_int4_l2_frac = gbps / lvl, h->gemv_int4_gbps = gbps / 1e9;
      if (m == 1 && !cs->q4 && cs->at == AT_L3) h->gemv_int8_l3_frac = gbps / lvl, h->gemv_int8_l3_gbps = gbps / 1e9;
      if (m == 1 && !cs->q4 && cs->at == AT_MEM) h->gemv_int8_mem_frac = gbps / lvl, h->gemv_int8_mem_gbps = gbps / 1e9;
      if (m == 16 && !cs->q4) h->gemm_int8_b16_frac = gops / lim->vnni, h->gemm_int8_b16_gops = gops / 1e9;
      if (m == 256 && !cs->q4) h->gemm_int8_b256_frac = gops / lim->vnni, h->gemm_int8_b256_gops = gops / 1e9;
      if (m == 256 && cs->q4) h->gemm_int4_b256_frac = gops / lim->vnni, h->gemm_int4_b256_gops = gops / 1e9;
    }
    free(act), free(w), free(wp), free(y);
  }
}

static const int64_t g_batches[] = {1, 16, 256};

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
  for (int i = 0; i < nv; i++) {
    printf("variant %s\n", v[i]->name);
    bench_variant(v[i], &lim, &h);
  }
  bench_sgemm(&lim, 1024, 1024, &h);

  /* Memory bandwidth is shared with the other core and swings the most: measure it again at
   * the end and keep the better figure (the conservative one for the fraction). */
  double mem2 = read_bw((size_t)256 << 20);
  if (mem2 > lim.mem) {
    lim.mem = mem2;
    printf("memory read re-measured: %.1f GB/s\n", lim.mem / 1e9);
  }
  h.gemv_int8_mem_frac = h.gemv_int8_mem_gbps * 1e9 / lim.mem;

  printf("{\"l2_read_gbps\":%.1f,\"l3_read_gbps\":%.1f,\"mem_read_gbps\":%.1f,"
         "\"vnni_peak_gops\":%.0f,\"fma_peak_gflops\":%.0f,"
         "\"gemv_int8_l2_bw_frac\":%.3f,\"gemv_int8_gbps\":%.1f,"
         "\"gemv_int4_l2_bw_frac\":%.3f,\"gemv_int4_gbps\":%.1f,"
         "\"gemv_int8_l3_bw_frac\":%.3f,\"gemv_int8_l3_gbps\":%.1f,"
         "\"gemv_int8_mem_bw_frac\":%.3f,\"gemv_int8_mem_gbps\":%.1f,"
         "\"gemm_int8_b16_vnni_frac\":%.3f,\"gemm_int8_b16_gops\":%.1f,"
         "\"gemm_int8_b256_vnni_frac\":%.3f,\"gemm_int8_b256_gops\":%.1f,"
         "\"gemm_int4_b256_vnni_frac\":%.3f,\"gemm_int4_b256_gops\":%.1f,"
         "\"sgemm_b1_gflops\":%.1f,\"sgemm_b256_gflops\":%.1f,\"sgemm_b256_fma_frac\":%.3f}\n",
         lim.l2 / 1e9, lim.l3 / 1e9, lim.mem / 1e9, lim.vnni / 1e9, lim.fma / 1e9,
         h.gemv_int8_l2_frac, h.gemv_int8_gbps, h.gemv_int4_l2_frac, h.gemv_int4_gbps,
         h.gemv_int8_l3_frac, h.gemv_int8_l3_gbps, h.gemv_int8_mem_frac, h.gemv_int8_mem_gbps,
         h.gemm_int8_b16_frac, h.gemm_int8_b16_gops, h.gemm_int8_b256_frac, h.gemm_int8_b256_gops,
         h.gemm_int4_b256_frac, h.gemm_int4_b256_gops, h.sgemm_b1_gflops, h.sgemm_b256_gflops, h.sgemm_b256_fma_frac);
  return h.have ? 0 : 1;
}
