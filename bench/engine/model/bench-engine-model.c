/*
 * bench-engine-model: times one model file through libmoe at batch 1, 16 and 256 (one thread,
 * pinned to the CPU it starts on) and prints time per row and rows/s, then one JSON line.
 * The rows come from an inputs file (safetensors with "numeric" F32 (N, n_numeric) and
 * "categorical" I32 (N, n_categorical), or "window" / "tokens" + "n_tokens" for the other
 * encoders) so that the peers (run-model, peers.py) score the very same rows; --scores-out
 * writes the engine's scores of all N rows (raw float32) for them to compare against.
 *
 *   bench-engine-model MODEL INPUTS [--scores-out FILE] [--min-time SECONDS] [--repeats N]
 *                      [--only-batch B]
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "moe/moe.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of this thread: on a shared machine, what the work costs when it is not waiting for
 * the core (reported beside the wall-clock figures, which stay the headline). */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const moe_st_tensor_t *need(moe_st_file_t *f, const char *name) {
  const moe_st_tensor_t *t = moe_st_tensor_find(f, name);
  if (t == NULL) {
    fprintf(stderr, "bench-engine-model: inputs file has no tensor \"%s\"\n", name);
    exit(2);
  }
  return t;
}

int main(int argc, char **argv) {
  const char *scores_out = NULL;
  double min_time = 0.3;
  int repeats = 3;
  int only_batch = 0; /* for profiling: time just this batch size */
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL INPUTS [--scores-out FILE] [--min-time S] [--repeats N]\n", argv[0]);
    return 2;
  }
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--scores-out") == 0 && i + 1 < argc) scores_out = argv[++i];
    else if (strcmp(argv[i], "--min-time") == 0 && i + 1 < argc) min_time = atof(argv[++i]);
    else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) repeats = atoi(argv[++i]);
    else if (strcmp(argv[i], "--only-batch") == 0 && i + 1 < argc) only_batch = atoi(argv[++i]);
    else {
      fprintf(stderr, "bench-engine-model: unknown argument \"%s\"\n", argv[i]);
      return 2;
    }
  }
  /* One core: the figures are per core, and the machine is shared. */
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(sched_getcpu(), &set);
  sched_setaffinity(0, sizeof set, &set);

  char err[512];
  moe_model_t *model;
  int rc = moe_model_load(argv[1], &model, err, sizeof err);
  if (rc != MOE_OK) {
    fprintf(stderr, "bench-engine-model: %s: %s\n", argv[1], err);
    return 1;
  }
  moe_st_file_t *in;
  if ((rc = moe_st_open(argv[2], &in, err, sizeof err)) != MOE_OK) {
    fprintf(stderr, "bench-engine-model: %s: %s\n", argv[2], err);
    return 1;
  }
  int n = 0;
  moe_input_t *rows = NULL;
  switch (moe_model_encoder(model)) {
  case MOE_ENCODER_TABULAR: {
    const moe_st_tensor_t *num = need(in, "numeric"), *cat = need(in, "categorical");
    n = (int)num->shape[0];
    rows = calloc((size_t)n, sizeof *rows);
    for (int r = 0; r < n; r++) {
      rows[r].numeric = (const float *)num->data + (size_t)r * num->shape[1];
      rows[r].categorical = (const int32_t *)cat->data + (size_t)r * cat->shape[1];
    }
    break;
  }
  case MOE_ENCODER_SENSOR: {
    const moe_st_tensor_t *w = need(in, "window");
    n = (int)w->shape[0];
    rows = calloc((size_t)n, sizeof *rows);
    for (int r = 0; r < n; r++) rows[r].window = (const float *)w->data + (size_t)r * w->shape[1] * w->shape[2];
    break;
  }
  case MOE_ENCODER_TEXT: {
    const moe_st_tensor_t *tok = need(in, "tokens"), *len = need(in, "n_tokens");
    n = (int)tok->shape[0];
    rows = calloc((size_t)n, sizeof *rows);
    for (int r = 0; r < n; r++) {
      rows[r].tokens = (const int32_t *)tok->data + (size_t)r * tok->shape[1];
      rows[r].n_tokens = ((const int32_t *)len->data)[r];
    }
    break;
  }
  }
  const int n_out = moe_model_n_outputs(model);
  float *scores = calloc((size_t)n * n_out, sizeof(float));
  const int batches[3] = {1, 16, 256};
  double us_per_row[3], cpu_us_per_row[3];
  printf("model %s: %lld parameters, kernels %s, %d input rows\n", argv[1], (long long)moe_model_n_params(model),
         kern_ops()->name, n);
  for (int bi = 0; bi < 3; bi++) {
    const int b = batches[bi] < n ? batches[bi] : n;
    us_per_row[bi] = cpu_us_per_row[bi] = 0;
    if (only_batch > 0 && b != only_batch) continue;
    moe_session_t *sess;
    if (moe_session_new(model, b, &sess) != MOE_OK) return 1;
    double best = 1e30, best_cpu = 1e30;
    int at = 0;
    for (int rep = 0; rep < repeats + 1; rep++) {
      /* The first repeat warms caches and the arena and is not counted. */
      long done = 0;
      const double t0 = now_s(), c0 = cpu_s();
      double t;
      do {
        if (at + b > n) at = 0;
        moe_output_t out = {scores + (size_t)at * n_out, NULL, NULL, NULL};
        if ((rc = moe_session_run(sess, rows + at, b, &out)) != MOE_OK) {
          fprintf(stderr, "bench-engine-model: run failed: %s\n", moe_session_error(sess));
          return 1;
        }
        at += b;
        done += b;
        t = now_s() - t0;
      } while (t < (rep == 0 ? min_time / 3 : min_time));
      const double c = cpu_s() - c0;
      if (rep > 0 && t / (double)done < best) best = t / (double)done;
      if (rep > 0 && c / (double)done < best_cpu) best_cpu = c / (double)done;
    }
    us_per_row[bi] = best * 1e6;
    cpu_us_per_row[bi] = best_cpu * 1e6;
    printf("  batch %3d: %9.3f us/row  %12.0f rows/s   (cpu time %.3f us/row)\n", b, best * 1e6, 1.0 / best,
           best_cpu * 1e6);
    moe_session_free(sess);
  }
  if (scores_out != NULL) {
    moe_session_t *sess;
    if (moe_session_new(model, 256, &sess) != MOE_OK) return 1;
    for (int at = 0; at < n; at += 256) {
      int b = n - at < 256 ? n - at : 256;
      moe_output_t out = {scores + (size_t)at * n_out, NULL, NULL, NULL};
      if (moe_session_run(sess, rows + at, b, &out) != MOE_OK) return 1;
    }
    moe_session_free(sess);
    FILE *f = fopen(scores_out, "wb");
    if (f == NULL || fwrite(scores, sizeof(float), (size_t)n * n_out, f) != (size_t)n * n_out) {
      fprintf(stderr, "bench-engine-model: cannot write %s\n", scores_out);
      return 1;
    }
    fclose(f);
  }
  printf("{\"n_params\": %lld, \"kernels\": \"%s\", \"b1_us_per_row\": %.4f, \"b16_us_per_row\": %.4f, "
         "\"b256_us_per_row\": %.4f, \"b1_rows_per_s\": %.0f, \"b16_rows_per_s\": %.0f, \"b256_rows_per_s\": %.0f, "
         "\"b1_cpu_us_per_row\": %.4f, \"b16_cpu_us_per_row\": %.4f, \"b256_cpu_us_per_row\": %.4f}\n",
         (long long)moe_model_n_params(model), kern_ops()->name, us_per_row[0], us_per_row[1], us_per_row[2],
         1e6 / us_per_row[0], 1e6 / us_per_row[1], 1e6 / us_per_row[2], cpu_us_per_row[0], cpu_us_per_row[1],
         cpu_us_per_row[2]);
  free(scores);
  free(rows);
  moe_st_close(in);
  moe_model_free(model);
  return 0;
}
