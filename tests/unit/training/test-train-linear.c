/*
 * The convex start of a text bag (moe_trainer_fit_linear): after it, the model must score the
 * minimiser of the L2-penalised, class-weighted multinomial logistic loss on its bag features.
 * The test reads the coefficients back out of the model's own predictions (a row of one piece
 * pools to that piece alone, a row of [PAD] to nothing), computes the features and the objective's
 * gradient itself, and checks that the gradient vanishes (the problem is strictly convex in the
 * coefficients, so that is the one solution) while it did not at the start. Also: a model that
 * does not fit is refused with the reason, and moe_fit_opts_t.judge_start keeps the start when
 * fine-tuning does not beat it on validation. And against scikit-learn: TF-IDF (sublinear, smoothed
 * IDF, L2) + LogisticRegression(C, class_weight "balanced") on the rows of
 * tests/golden/train/fixtures/linear-bag.txt (gen_linear_golden.py) gives the probabilities the
 * trainer's fit gives, with moe_trainer_set_idf's piece weights.
 */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe/moe.h"
#include "moe/train.h"
#include "train-synth.h"

enum { L = 10, V = 40, K = 3, N = 240 };

#define CFG_FMT                                                                                            \
  "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"t\",\"quant\":\"f32\",\"d_model\":8,"     \
  "\"encoder\":{\"kind\":\"text\",\"vocab_size\":40,\"max_len\":10,\"n_layer\":0,\"n_head\":1,\"d_ff\":8," \
  "\"window\":[],\"n_global\":0,\"pool\":\"bag\",\"head_norm\":%s},"                                       \
  "\"moe\":[{\"n_expert\":2,\"top_k\":1,\"n_shared\":1,\"d_ff\":8,\"score\":\"softmax\"}],"                \
  "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"a\",\"b\",\"c\"]}}"

/* Class k rows usually hold piece 1 + k (sometimes another class's), plus noise pieces 4..39;
 * classes are unbalanced (1/2, 1/3, 1/6 of the rows). */
static void make(int n, uint64_t seed, int32_t *tok, int32_t *nt, int32_t *lab) {
  uint64_t st = seed;
  memset(tok, 0, (size_t)n * L * sizeof(int32_t));
  for (int r = 0; r < n; r++) {
    const double u = synth_u(&st);
    const int y = u < 0.5 ? 0 : u < 5.0 / 6 ? 1 : 2;
    const int len = 2 + (int)(synth_u(&st) * (L - 1));
    int32_t *t = tok + (size_t)r * L;
    for (int i = 0; i < len; i++) t[i] = 4 + (int)(synth_u(&st) * (V - 4));
    t[(int)(synth_u(&st) * len)] = synth_u(&st) < 0.75 ? 1 + y : 1 + (int)(synth_u(&st) * K);
    nt[r] = len;
    lab[r] = y;
  }
}

/* Bag features as MODEL_FORMAT.md defines them (no idf): x[r][t] = (1 + ln c_t) / norm. */
static void features(const int32_t *tok, const int32_t *nt, int n, double *x) {
  memset(x, 0, (size_t)n * V * sizeof(double));
  for (int r = 0; r < n; r++) {
    double c[V] = {0}, ss = 0;
    for (int i = 0; i < nt[r]; i++)
      if (tok[(size_t)r * L + i] != 0) c[tok[(size_t)r * L + i]] += 1;
    for (int t = 0; t < V; t++)
      if (c[t] > 0) ss += (1 + log(c[t])) * (1 + log(c[t]));
    for (int t = 0; t < V; t++)
      if (c[t] > 0) x[(size_t)r * V + t] = (1 + log(c[t])) / sqrt(ss);
  }
}

/* Largest component of the objective's gradient (over B and b) at the model's current solution,
 * B and b read back from the trainer's predictions. */
static double grad_max(moe_trainer_t *tr, const double *x, const int32_t *lab, const double *cw, double lambda) {
  static int32_t ptok[V * L], pnt[V];
  static float ps[V * K];
  memset(ptok, 0, sizeof ptok);
  for (int t = 0; t < V; t++) {
    ptok[(size_t)t * L] = t; /* row 0 is [PAD] alone: the zero vector, logits = b */
    pnt[t] = 1;
  }
  moe_train_data_t probe = {.n_rows = V, .tokens = ptok, .n_tokens = pnt};
  if (moe_trainer_predict(tr, &probe, ps) != MOE_OK) {
    printf("  predict: %s\n", moe_trainer_error(tr));
    return INFINITY;
  }
  double B[V][K], b[K];
  for (int k = 0; k < K; k++) b[k] = log(ps[k]);
  for (int t = 1; t < V; t++) {
    double mean = 0;
    for (int k = 0; k < K; k++) mean += (B[t][k] = log(ps[(size_t)t * K + k]) - b[k]) / K;
    for (int k = 0; k < K; k++) B[t][k] -= mean; /* the L2 optimum has sum_k B[t][k] = 0 */
  }
  for (int k = 0; k < K; k++) B[0][k] = 0;
  double G[V][K] = {{0}}, gb[K] = {0};
  for (int r = 0; r < N; r++) {
    double z[K], mx = -INFINITY, s = 0;
    for (int k = 0; k < K; k++) {
      z[k] = b[k];
      for (int t = 0; t < V; t++) z[k] += x[(size_t)r * V + t] * B[t][k];
      mx = fmax(mx, z[k]);
    }
    for (int k = 0; k < K; k++) s += exp(z[k] - mx);
    for (int k = 0; k < K; k++) {
      const double e = cw[lab[r]] / N * (exp(z[k] - mx) / s - (k == lab[r]));
      gb[k] += e;
      for (int t = 0; t < V; t++) G[t][k] += e * x[(size_t)r * V + t];
    }
  }
  double worst = 0;
  for (int k = 0; k < K; k++) {
    worst = fmax(worst, fabs(gb[k]));
    for (int t = 0; t < V; t++) worst = fmax(worst, fabs(G[t][k] + lambda * B[t][k]));
  }
  return worst;
}

TEST(linear_start_is_the_penalised_optimum) {
  static int32_t tok[N * L], nt[N], lab[N];
  static double x[N * V];
  make(N, 7, tok, nt, lab);
  features(tok, nt, N, x);
  double cnt[K] = {0}, cw[K];
  for (int r = 0; r < N; r++) cnt[lab[r]] += 1;
  float cwf[K];
  for (int k = 0; k < K; k++) cwf[k] = (float)(cw[k] = N / (K * cnt[k])); /* "balanced" */
  char cfg[1024], err[256];
  snprintf(cfg, sizeof cfg, CFG_FMT, "false");
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.class_weight = cwf;
  o.label_smoothing = 0.3f; /* for fine-tuning only: the convex fit has none */
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(cfg, 1, &o, &tr, err, sizeof err));
  const double C = 3.0, lambda = 1.0 / (C * N);
  const double g0 = grad_max(tr, x, lab, cw, lambda);
  moe_train_data_t d = {.n_rows = N, .label = lab, .tokens = tok, .n_tokens = nt};
  moe_linear_opts_t lo = {.c = C, .max_iter = 2000, .tol = 1e-9};
  moe_linear_result_t res;
  ASSERT_OK(moe_trainer_fit_linear(tr, &d, &lo, &res));
  const double g1 = grad_max(tr, x, lab, cw, lambda);
  printf("  linear: %d iterations, %d pieces, objective %.6f; gradient max %.2e at the start, %.2e after "
         "(solver's own %.2e)\n",
         res.iterations, res.n_pieces, res.objective, g0, g1, res.grad_max);
  ASSERT_OP(g0, >, 1e-2);
  ASSERT_OP(g1, <, 2e-5);
  ASSERT_EQ(res.n_pieces, V - 1); /* every piece but [PAD] occurs in 240 rows */
  double acc;
  ASSERT_OK(moe_trainer_eval(tr, &d, MOE_METRIC_ACCURACY, &acc));
  ASSERT_OP(acc, >, 0.7);
  moe_trainer_free(tr);
}

TEST(linear_start_survives_a_bad_fine_tune) {
  static int32_t tok[N * L], nt[N], lab[N], vtok[N * L], vnt[N], vlab[N];
  make(N, 11, tok, nt, lab);
  make(N, 12, vtok, vnt, vlab);
  char cfg[1024], err[256];
  snprintf(cfg, sizeof cfg, CFG_FMT, "false");
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.lr = 0.9f; /* far too large: the epochs wander off */
  o.clip_norm = 0;
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(cfg, 1, &o, &tr, err, sizeof err));
  moe_train_data_t d = {.n_rows = N, .label = lab, .tokens = tok, .n_tokens = nt};
  moe_train_data_t v = {.n_rows = N, .label = vlab, .tokens = vtok, .n_tokens = vnt};
  moe_linear_opts_t lo = {.c = 10, .max_iter = 500, .tol = 1e-7};
  moe_linear_result_t res;
  ASSERT_OK(moe_trainer_fit_linear(tr, &d, &lo, &res));
  double f_start, f_end, f_epoch1;
  ASSERT_OK(moe_trainer_eval(tr, &v, MOE_METRIC_MACRO_F1, &f_start));
  moe_fit_opts_t fo = {.epochs = 1, .batch_size = 8, .metric = MOE_METRIC_MACRO_F1};
  moe_fit_result_t fr;
  /* Without judge_start epoch 1 is kept whatever it scores. */
  ASSERT_OK(moe_trainer_fit(tr, &d, &v, &fo, &fr));
  ASSERT_OK(moe_trainer_eval(tr, &v, MOE_METRIC_MACRO_F1, &f_epoch1));
  ASSERT_EQ(fr.best_epoch, 1);
  ASSERT_OK(moe_trainer_fit_linear(tr, &d, &lo, &res));
  fo.judge_start = 1;
  fo.epochs = 3;
  ASSERT_OK(moe_trainer_fit(tr, &d, &v, &fo, &fr));
  ASSERT_OK(moe_trainer_eval(tr, &v, MOE_METRIC_MACRO_F1, &f_end));
  printf("  judge_start: validation macro-F1 %.4f at the start, %.4f after one epoch at lr 0.9, %.4f kept "
         "(best epoch %d)\n",
         f_start, f_epoch1, f_end, fr.best_epoch);
  ASSERT_OP(f_epoch1, <, f_start);
  ASSERT_EQ(fr.best_epoch, 0);
  ASSERT_NEAR(fr.best_metric, f_start, 1e-12);
  ASSERT_NEAR(f_end, f_start, 1e-12);
  moe_trainer_free(tr);
}

TEST(linear_start_refuses_a_head_norm) {
  char cfg[1024], err[256];
  snprintf(cfg, sizeof cfg, CFG_FMT, "true");
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(cfg, 1, NULL, &tr, err, sizeof err));
  int32_t tok[L] = {5, 6}, nt[1] = {2}, lab[1] = {0};
  moe_train_data_t d = {.n_rows = 1, .label = lab, .tokens = tok, .n_tokens = nt};
  moe_linear_opts_t lo = {.c = 1, .max_iter = 10, .tol = 0};
  moe_linear_result_t res;
  ASSERT_EQ(moe_trainer_fit_linear(tr, &d, &lo, &res), MOE_EINVAL);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "\"head_norm\": false");
  moe_trainer_free(tr);
  snprintf(cfg, sizeof cfg, CFG_FMT, "false");
  ASSERT_OK(moe_trainer_new(cfg, 1, NULL, &tr, err, sizeof err));
  lab[0] = 3;
  ASSERT_EQ(moe_trainer_fit_linear(tr, &d, &lo, &res), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "row 0: label outside [0, n_labels)");
  lo.c = 0;
  lab[0] = 0;
  ASSERT_EQ(moe_trainer_fit_linear(tr, &d, &lo, &res), MOE_EINVAL);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "c 0 (> 0)");
  moe_trainer_free(tr);
}

TEST(linear_start_agrees_with_scikit_learn) {
  FILE *f = fopen("tests/golden/train/fixtures/linear-bag.txt", "r");
  ASSERT_MSG(f != NULL, "tests/golden/train/fixtures/linear-bag.txt is missing (gen_linear_golden.py)");
  int n, k, ml, vocab;
  double C;
  ASSERT_EQ(fscanf(f, "%d %d %d %d %lf", &n, &k, &ml, &vocab, &C), 5);
  ASSERT(n > 0 && n <= 1000 && k == 4 && ml > 0 && ml <= 64 && vocab > 0 && vocab <= 1000);
  int32_t *tok = calloc((size_t)n * ml, sizeof(int32_t)), *nt = calloc((size_t)n, sizeof(int32_t));
  int32_t *lab = calloc((size_t)n, sizeof(int32_t));
  double *want = calloc((size_t)n * k, sizeof(double));
  float *got = calloc((size_t)n * k, sizeof(float));
  ASSERT(tok && nt && lab && want && got);
  for (int r = 0; r < n; r++) {
    ASSERT_EQ(fscanf(f, "%d %d", &lab[r], &nt[r]), 2);
    ASSERT(nt[r] >= 1 && nt[r] <= ml);
    for (int i = 0; i < nt[r]; i++) ASSERT_EQ(fscanf(f, "%d", &tok[(size_t)r * ml + i]), 1);
  }
  for (int i = 0; i < n * k; i++) ASSERT_EQ(fscanf(f, "%lf", &want[i]), 1);
  fclose(f);
  char cfg[1024], err[256];
  snprintf(cfg, sizeof cfg,
           "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"t\",\"quant\":\"f32\",\"d_model\":8,"
           "\"encoder\":{\"kind\":\"text\",\"vocab_size\":%d,\"max_len\":%d,\"n_layer\":0,\"n_head\":1,\"d_ff\":8,"
           "\"window\":[],\"n_global\":0,\"pool\":\"bag\",\"idf\":true,\"head_norm\":false},"
           "\"moe\":[{\"n_expert\":2,\"top_k\":1,\"n_shared\":1,\"d_ff\":8,\"score\":\"softmax\"}],"
           "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"a\",\"b\",\"c\",\"d\"]}}",
           vocab, ml);
  double cnt[4] = {0};
  for (int r = 0; r < n; r++) cnt[lab[r]] += 1;
  float cw[4];
  for (int c = 0; c < k; c++) cw[c] = (float)(n / (k * cnt[c]));
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.class_weight = cw;
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(cfg, 1, &o, &tr, err, sizeof err));
  moe_train_data_t d = {.n_rows = n, .label = lab, .tokens = tok, .n_tokens = nt};
  ASSERT_OK(moe_trainer_set_idf(tr, &d));
  moe_linear_opts_t lo = {.c = C, .max_iter = 5000, .tol = 1e-10};
  moe_linear_result_t res;
  ASSERT_OK(moe_trainer_fit_linear(tr, &d, &lo, &res));
  ASSERT_OK(moe_trainer_predict(tr, &d, got));
  double worst = 0;
  for (int i = 0; i < n * k; i++) worst = fmax(worst, fabs(got[i] - want[i]));
  printf("  scikit-learn: %d rows, C %g, %d iterations; max |p - p_sklearn| %.2e\n", n, C, res.iterations, worst);
  ASSERT_OP(worst, <, 1e-4);
  moe_trainer_free(tr);
  free(tok);
  free(nt);
  free(lab);
  free(want);
  free(got);
}
