/*
 * Chooses the kernel variant once per process: probes the CPU (cpuid) and the OS (xgetbv: is
 * the AVX / AVX-512 register state saved on context switch?), honours MOE_KERNELS, and keeps a
 * one-line reason, logged once through the engine's log callback (moe/log.h). Also the
 * OpenBLAS wrapper and the q8_0 format check,
 * which belong to no variant. Built without ISA flags: it must run on any x86-64.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/log-impl.h"
#include "kernels/kernels-impl.h"
#include "moe/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KERN__X86 1
#endif

/* ---- CPU probe ------------------------------------------------------------------------ */

typedef struct {
  bool avx2;   /* AVX2 + FMA + F16C, YMM state enabled */
  bool avx512; /* AVX-512 F/BW/VL/DQ/VNNI, ZMM and opmask state enabled */
} kern__cpu_t;

#ifdef KERN__X86
static uint64_t kern__xgetbv0(void) {
  uint32_t lo, hi;
  /* xgetbv needs no ISA flag: the assembler knows the mnemonic and OSXSAVE was checked. */
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}
#endif

static kern__cpu_t kern__cpu_probe(void) {
  kern__cpu_t cpu = {false, false};
#ifdef KERN__X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return cpu;
  bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (!osxsave || !avx) return cpu;
  uint64_t xcr0 = kern__xgetbv0();
  bool ymm_os = (xcr0 & 0x6) == 0x6;    /* SSE and AVX state */
  bool zmm_os = (xcr0 & 0xe6) == 0xe6;  /* plus opmask, ZMM_Hi256, Hi16_ZMM */
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return cpu;
  bool avx2 = (b >> 5) & 1;
  bool f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
  bool vnni = (c >> 11) & 1;
  cpu.avx2 = ymm_os && avx2 && fma && f16c;
  cpu.avx512 = cpu.avx2 && zmm_os && f && dq && bw && vl && vnni;
#endif
  return cpu;
}

/* ---- variants ------------------------------------------------------------------------- */

typedef struct {
  const kern_ops_t *ops;
  bool (*usable)(const kern__cpu_t *);
} kern__variant_t;

static bool kern__always(const kern__cpu_t *cpu) { return (void)cpu, true; }
#ifdef MOE_KERN_HAVE_AVX2
static bool kern__has_avx2(const kern__cpu_t *cpu) { return cpu->avx2; }
#endif
#ifdef MOE_KERN_HAVE_AVX512
static bool kern__has_avx512(const kern__cpu_t *cpu) { return cpu->avx512; }
#endif

/* Worst to best: the probe picks the last usable one. */
static const kern__variant_t kern__variants[] = {
  {&kern__ops_ref, kern__always},
#ifdef MOE_KERN_HAVE_AVX2
  {&kern__ops_avx2, kern__has_avx2},
#endif
#ifdef MOE_KERN_HAVE_AVX512
  {&kern__ops_avx512, kern__has_avx512},
#endif
};
#define KERN__N_VARIANTS ((int)(sizeof kern__variants / sizeof kern__variants[0]))

static const char *const kern__known_names[] = {"ref", "avx2", "avx512"};

static kern__cpu_t kern__cpu;
static pthread_once_t kern__cpu_once = PTHREAD_ONCE_INIT;

static void kern__cpu_init(void) { kern__cpu = kern__cpu_probe(); }

const kern_ops_t *kern_ops_find(const char *name) {
  pthread_once(&kern__cpu_once, kern__cpu_init);
  for (int i = 0; i < KERN__N_VARIANTS; i++)
    if (strcmp(kern__variants[i].ops->name, name) == 0)
      return kern__variants[i].usable(&kern__cpu) ? kern__variants[i].ops : NULL;
  return NULL;
}

int kern_ops_list(const kern_ops_t **out, int max) {
  pthread_once(&kern__cpu_once, kern__cpu_init);
  int n = 0;
  for (int i = 0; i < KERN__N_VARIANTS; i++) {
    if (!kern__variants[i].usable(&kern__cpu)) continue;
    if (n < max) out[n] = kern__variants[i].ops;
    n++;
  }
  return n;
}

/* ---- the process-wide choice ---------------------------------------------------------- */

static const kern_ops_t *kern__chosen;
static int kern__init_err;
static char kern__errstr[192];
static char kern__reason[sizeof kern__errstr + 96];
static pthread_once_t kern__choice_once = PTHREAD_ONCE_INIT;

static void kern__choose_variant(void) {
  pthread_once(&kern__cpu_once, kern__cpu_init);
  const kern_ops_t *best = &kern__ops_ref;
  for (int i = 0; i < KERN__N_VARIANTS; i++)
    if (kern__variants[i].usable(&kern__cpu)) best = kern__variants[i].ops;

  const char *env = getenv("MOE_KERNELS");
  if (env == NULL || env[0] == '\0') {
    kern__chosen = best;
    snprintf(kern__reason, sizeof kern__reason,
             "kernels: %s (best supported by this CPU and build; MOE_KERNELS unset)", best->name);
    return;
  }
  const kern_ops_t *forced = kern_ops_find(env);
  if (forced != NULL) {
    kern__chosen = forced;
    snprintf(kern__reason, sizeof kern__reason, "kernels: %s (forced by MOE_KERNELS)",
             forced->name);
    return;
  }
  bool known = false;
  for (size_t i = 0; i < sizeof kern__known_names / sizeof kern__known_names[0]; i++)
    known = known || strcmp(env, kern__known_names[i]) == 0;
  kern__init_err = known ? MOE_EUNSUPPORTED : MOE_EINVAL;
  if (known)
    snprintf(kern__errstr, sizeof kern__errstr,
             "MOE_KERNELS=%.40s: that variant is not compiled into this build or not "
             "supported by this CPU", env);
  else
    snprintf(kern__errstr, sizeof kern__errstr,
             "MOE_KERNELS=%.40s: unknown kernel variant (expected ref, avx2 or avx512)", env);
  kern__chosen = best;
  snprintf(kern__reason, sizeof kern__reason, "kernels: %s (%s; using the best supported)",
           best->name, kern__errstr);
}

/* Chooses, then logs the choice once through the host's callback (if one is installed yet). */
static void kern__choose(void) {
  kern__choose_variant();
  MOE_LOG(kern__init_err != 0 ? MOE_LOG_WARN : MOE_LOG_INFO, "%s", kern__reason);
}

int kern_init(char *errstr, size_t errstr_size) {
  pthread_once(&kern__choice_once, kern__choose);
  if (kern__init_err != 0 && errstr != NULL && errstr_size > 0)
    snprintf(errstr, errstr_size, "%s", kern__errstr);
  return kern__init_err;
}

const kern_ops_t *kern_ops(void) {
  pthread_once(&kern__choice_once, kern__choose);
  return kern__chosen;
}

const char *kern_ops_reason(void) {
  pthread_once(&kern__choice_once, kern__choose);
  return kern__reason;
}

/* ---- fp32 GEMM through OpenBLAS ------------------------------------------------------- */

void kern_sgemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *w,
                int64_t ldw, float beta, float *y, int64_t ldy) {
  if (m <= 0 || n <= 0) return;
  if (beta == 0.0f) {
    /* BLAS may compute 0 * y, which keeps a NaN already in y; the contract says it is ignored. */
    for (int64_t i = 0; i < m; i++) memset(y + i * ldy, 0, (size_t)n * sizeof(float));
  }
  if (k <= 0) {
    if (beta != 0.0f && beta != 1.0f)
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) y[i * ldy + j] *= beta;
    return;
  }
  if (m == 1) {
    /* One row is a matrix-vector product; OpenBLAS's sgemm packs all of w first, which made
     * batch 1 about 10x slower than sgemv in bench-kernels. */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)n, (blasint)k, 1.0f, w, (blasint)ldw, a, 1,
                beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)k, 1.0f,
              a, (blasint)lda, w, (blasint)ldw, beta, y, (blasint)ldy);
}

/* ---- format check --------------------------------------------------------------------- */

int64_t kern_q8_0_check(const blk_q8_0 *x, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; b++)
    for (int i = 0; i < KERN_QK; i++)
      if (x[b].qs[i] == -128) return b + 1;
  return 0;
}
