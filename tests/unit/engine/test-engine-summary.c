/*
 * The sensor pool "summary" and moe_input_t.n_steps: moe__sensor_summary against a plain
 * double-precision computation (mean, least-squares slope by the textbook formula), for all
 * steps and for 1, 2, some and all observed steps; moe__sensor_pool_steps against hand-worked
 * conv geometries; the config ("pool" accepted or refused by name, "conv": [] accepted); a
 * model file whose enc.in has the mean pool's shape refused under pool "summary"; and through
 * the public API, an exported summary model scores rows of different n_steps as the trainer
 * does, ignores its unobserved steps, refuses n_steps outside [0, window] naming the row and
 * value, and explains a row (moe_session_attribute) with its n_steps, while a mean-pool model
 * ignores n_steps altogether.
 */
#include "test.h"

#include <stdio.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "moe/model-impl.h"
#include "moe/moe.h"
#include "moe/train.h"
#include "nn/nn.h"

/* moe__sensor_summary (float) against the double reference: relative to the values' scale,
 * the float sums of up to 40 terms of size ~2 round to a few 1e-7. */
#define SUMMARY_TOL 2e-5
/* The trainer (float, libm) against the engine (float kernels) on the exported fp32 model, as
 * in test-train-sensor. */
#define EXPORT_TOL 1e-4

static uint64_t lcg = 2026;
static double urand(void) {
  lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(lcg >> 11) / 9007199254740992.0;
}

/* ---- moe__sensor_summary ----------------------------------------------------------------- */

/* The reference: over steps t - n .. t - 1 of channel i, the mean, and the least-squares slope
 * b = sum (u - u_bar)(x - x_bar) / sum (u - u_bar)^2 (u = 0 .. n - 1), times t - 1. */
static void summary_ref(const float *x, int t, int c, int n, double *y) {
  const int s0 = t - n;
  for (int i = 0; i < c; i++) {
    double xbar = 0, ubar = 0;
    for (int u = 0; u < n; u++) {
      xbar += x[(size_t)(s0 + u) * c + i];
      ubar += u;
    }
    xbar /= n;
    ubar /= n;
    double sxy = 0, sxx = 0;
    for (int u = 0; u < n; u++) {
      sxy += (u - ubar) * (x[(size_t)(s0 + u) * c + i] - xbar);
      sxx += (u - ubar) * (u - ubar);
    }
    y[i] = x[(size_t)(t - 1) * c + i];
    y[c + i] = xbar;
    y[2 * c + i] = n > 1 ? (t - 1) * sxy / sxx : 0.0;
  }
}

TEST(summary_matches_plain_least_squares) {
  enum { M = 5, TMAX = 40, CMAX = 6 };
  static const int shapes[][2] = {{1, 3}, {2, 1}, {7, 4}, {40, 6}, {13, 2}};
  float x[M * TMAX * CMAX], y[M * 3 * CMAX];
  double ref[3 * CMAX];
  int32_t steps[M];
  double worst = 0;
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    const int t = shapes[k][0], c = shapes[k][1];
    for (int i = 0; i < M * t * c; i++) x[i] = (float)(4 * urand() - 2);
    /* A trend on channel 0 of every row, so that the rise is not only noise. */
    for (int r = 0; r < M; r++)
      for (int s = 0; s < t; s++) x[((size_t)r * t + s) * c] += 0.1f * (float)s * (float)(r - 2);
    /* NULL (all t), then per row: 1, 2, some, all. */
    for (int with = 0; with < 2; with++) {
      const int some = t > 2 ? 2 + (int)(urand() * (t - 2)) : t;
      const int32_t pick[M] = {1, t >= 2 ? 2 : 1, some, t, t > 3 ? t - 1 : t};
      memcpy(steps, pick, sizeof steps);
      moe__sensor_summary(x, M, t, c, with ? steps : NULL, y);
      for (int r = 0; r < M; r++) {
        const int n = with ? steps[r] : t;
        summary_ref(x + (size_t)r * t * c, t, c, n, ref);
        for (int j = 0; j < 3 * c; j++) {
          const double got = y[(size_t)r * 3 * c + j], e = fabs(got - ref[j]) / (1 + fabs(ref[j]));
          worst = fmax(worst, e);
          ASSERT_MSG(e <= SUMMARY_TOL, "t %d c %d row %d (n %d) feature %d (%s): %.8g, reference %.8g", t, c, r, n,
                     j % c, j < c ? "last" : j < 2 * c ? "mean" : "rise", got, ref[j]);
        }
        /* One observed step: no trend. */
        if (n == 1)
          for (int i = 0; i < c; i++) ASSERT_EQ(y[(size_t)r * 3 * c + 2 * c + i] == 0.0f, 1);
      }
    }
  }
  /* A straight line x = a + b s rises by exactly b (t - 1) over any observed part. */
  enum { TL = 9 };
  float line[TL], yl[3];
  for (int s = 0; s < TL; s++) line[s] = 1.5f - 0.25f * (float)s;
  for (int32_t n = 2; n <= TL; n++) {
    moe__sensor_summary(line, 1, TL, 1, &n, yl);
    ASSERT_NEAR(yl[2], -0.25 * (TL - 1), 1e-5);
    ASSERT_NEAR(yl[1], 1.5 - 0.25 * (TL - 1 - (n - 1) / 2.0), 1e-5);
    ASSERT_NEAR(yl[0], 1.5 - 0.25 * (TL - 1), 1e-6);
  }
  printf("  moe__sensor_summary vs double reference: max relative error %.2e\n", worst);
}

/* ---- moe__sensor_pool_steps and the config --------------------------------------------- */

#define CFG_PRE                                                                                             \
  "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"sum\",\"quant\":\"f32\",\"d_model\":8,"      \
  "\"encoder\":{\"kind\":\"sensor\",\"window\":12,\"channels\":[{\"name\":\"a\",\"mean\":0,\"std\":1}],"
#define CFG_POST "},\"moe\":[],\"task\":{\"kind\":\"regression\",\"labels\":[\"y\"]}}"

/* Parses a config; returns the code, the message in err. */
static int parse(const char *json, moe__config_t *cfg, moe_json_doc_t **doc, char *err, size_t err_size) {
  ASSERT_OK(moe_json_parse(json, strlen(json), NULL, doc, err, err_size));
  memset(cfg, 0, sizeof *cfg);
  return moe__config_parse(moe_json_root(*doc), cfg, err, err_size);
}

/* Under `conv`, observed steps n -> pooled steps, as worked out by hand in the table. */
static void expect_steps(const char *conv, const int (*cases)[2], int n_cases) {
  char json[1024], err[256];
  snprintf(json, sizeof json, CFG_PRE "\"conv\":%s,\"pool\":\"summary\"" CFG_POST, conv);
  moe__config_t cfg;
  moe_json_doc_t *doc;
  const int rc = parse(json, &cfg, &doc, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s: %s", conv, err);
  ASSERT(cfg.sensor_summary);
  for (int k = 0; k < n_cases; k++)
    ASSERT_MSG(moe__sensor_pool_steps(&cfg, cases[k][0]) == cases[k][1], "%s: n_steps %d: %d pooled steps, expected %d",
               conv, cases[k][0], moe__sensor_pool_steps(&cfg, cases[k][0]), cases[k][1]);
  moe__config_close(&cfg);
  moe_json_free(doc);
}

TEST(pool_steps_hand_worked) {
  /* No conv: the pool reads the observed steps themselves; 0 and 12 mean all 12. */
  static const int none[][2] = {{0, 12}, {1, 1}, {2, 2}, {7, 7}, {11, 11}, {12, 12}};
  expect_steps("[]", none, 6);
  /* k5 s1 then k3 s1: 12 -> 8 -> 6 steps. Layer-1 step s reads inputs s .. s+4, layer-2 step s
   * reads layer-1 steps s .. s+2, so with inputs 12-n .. 11 observed layer 2 reads only
   * observed inputs from step 12-n on: 6 - (12 - n) = n - 6 steps, at least 1 (the last, which
   * then also reads unobserved inputs). */
  static const int k5k3[][2] = {{0, 6}, {1, 1}, {5, 1}, {6, 1}, {7, 1}, {8, 2}, {10, 4}, {11, 5}, {12, 6}};
  expect_steps("[{\"out\":2,\"kernel\":5,\"stride\":1},{\"out\":3,\"kernel\":3,\"stride\":1}]", k5k3, 9);
  /* k3 s2: 12 -> 5 steps, step s reads inputs 2s .. 2s+2 (input 11 is never read). First
   * observed input 12-n: pooled from step ceil((12-n)/2): n 6 -> steps 3, 4; n 5 -> step 4 only;
   * n 7 -> ceil(2.5) = 3 -> 2 steps; n 9 -> ceil(1.5) = 2 -> 3; n 10 -> 1 -> 4; n 11 -> 1 -> 4. */
  static const int s2[][2] = {{0, 5}, {1, 1}, {2, 1}, {5, 1}, {6, 2}, {7, 2}, {8, 3}, {9, 3}, {10, 4}, {11, 4}, {12, 5}};
  expect_steps("[{\"out\":2,\"kernel\":3,\"stride\":2}]", s2, 11);
  /* k3 s1 then k3 s2 (the gradcheck's stack): 12 -> 10 -> 4; layer-2 step s reads layer-1
   * steps 2s .. 2s+2, which read inputs 2s .. 2s+4. n 9 (inputs 3..): 2s >= 3 -> s >= 2: 2 steps. */
  static const int k3s2[][2] = {{0, 4}, {1, 1}, {7, 1}, {8, 2}, {9, 2}, {10, 3}, {11, 3}, {12, 4}};
  expect_steps("[{\"out\":2,\"kernel\":3,\"stride\":1},{\"out\":2,\"kernel\":3,\"stride\":2}]", k3s2, 8);
}

TEST(pool_config_accepted_and_refused) {
  char err[256];
  moe__config_t cfg;
  moe_json_doc_t *doc;
  /* Default "mean"; "summary" accepted with and without conv layers. */
  ASSERT_OK(parse(CFG_PRE "\"conv\":[{\"out\":2,\"kernel\":3,\"stride\":1}]" CFG_POST, &cfg, &doc, err, sizeof err));
  ASSERT(!cfg.sensor_summary);
  ASSERT_EQ(cfg.n_conv, 1);
  moe__config_close(&cfg);
  moe_json_free(doc);
  ASSERT_OK(parse(CFG_PRE "\"conv\":[],\"pool\":\"summary\"" CFG_POST, &cfg, &doc, err, sizeof err));
  ASSERT(cfg.sensor_summary);
  ASSERT_EQ(cfg.n_conv, 0);
  moe__config_close(&cfg);
  moe_json_free(doc);
  ASSERT_OK(parse(CFG_PRE "\"conv\":[],\"pool\":\"mean\"" CFG_POST, &cfg, &doc, err, sizeof err));
  ASSERT(!cfg.sensor_summary);
  moe__config_close(&cfg);
  moe_json_free(doc);
  /* An unknown pool is named with its path and the allowed values. */
  int rc = parse(CFG_PRE "\"conv\":[],\"pool\":\"max\"" CFG_POST, &cfg, &doc, err, sizeof err);
  ASSERT_EQ(rc, MOE_ECONFIG);
  ASSERT_STR_CONTAINS(err, "config.encoder.pool");
  ASSERT_STR_CONTAINS(err, "\"max\"");
  moe__config_close(&cfg); /* frees what the parse allocated before the failure */
  moe_json_free(doc);
  rc = parse(CFG_PRE "\"conv\":[],\"pool\":3" CFG_POST, &cfg, &doc, err, sizeof err);
  ASSERT_EQ(rc, MOE_ECONFIG);
  ASSERT_STR_CONTAINS(err, "config.encoder.pool");
  moe__config_close(&cfg);
  moe_json_free(doc);
  /* The trainer refuses it the same way. */
  moe_trainer_t *tr = NULL;
  ASSERT_EQ(moe_trainer_new(CFG_PRE "\"conv\":[],\"pool\":\"last\"" CFG_POST, 1, NULL, &tr, err, sizeof err),
            MOE_ECONFIG);
  ASSERT_NULL(tr);
  ASSERT_STR_CONTAINS(err, "config.encoder.pool");
}

/* ---- whole models --------------------------------------------------------------------- */

enum { T = 16, C = 3, N = 48 };

#define MODEL_CFG(conv, pool)                                                                                \
  "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"sum\",\"quant\":\"f32\",\"d_model\":16,"     \
  "\"encoder\":{\"kind\":\"sensor\",\"window\":16,\"channels\":[{\"name\":\"temp\",\"mean\":60,\"std\":5},"    \
  "{\"name\":\"vib\",\"mean\":0,\"std\":2},{\"name\":\"cycle\",\"mean\":50,\"std\":30}],\"conv\":" conv          \
  ",\"activation\":\"silu\",\"pool\":\"" pool "\"},"                                                         \
  "\"moe\":[{\"n_expert\":4,\"top_k\":2,\"n_shared\":1,\"d_ff\":16,\"score\":\"softmax\"}],"                  \
  "\"task\":{\"kind\":\"regression\",\"labels\":[\"rul\",\"health\"]}}"
#define CONV_STACK "[{\"out\":6,\"kernel\":5,\"stride\":1},{\"out\":8,\"kernel\":3,\"stride\":2}]"

/* Synthetic windows whose later steps drift: rows of every n_steps (0 .. T) and targets that
 * depend on the observed drift, so that a short fit moves every part of the model. */
static void make_rows(float *win, int32_t *nst, float *tgt) {
  for (int r = 0; r < N; r++) {
    nst[r] = r % (T + 1);
    const int n = nst[r] == 0 ? T : nst[r];
    const double drift = 2 * urand() - 1;
    for (int t = 0; t < T; t++) {
      const int obs = t >= T - n ? t - (T - n) : 0; /* unobserved steps repeat the first reading */
      win[((size_t)r * T + t) * C] = (float)(60 + 5 * (drift * obs / 4.0 + 0.3 * (urand() - 0.5)));
      win[((size_t)r * T + t) * C + 1] = (float)(2 * (urand() - 0.5));
      win[((size_t)r * T + t) * C + 2] = (float)(10 + r + obs);
    }
    tgt[2 * r] = (float)drift;
    tgt[2 * r + 1] = (float)(n / (double)T);
  }
}

static void tmp_model_path(char *path, size_t size) {
  test_unique_name(path, size, "/tmp/test-engine-summary");
  strncat(path, ".safetensors", size - strlen(path) - 1);
}

/* Trains `cfg` briefly on rows with n_steps, exports it (fp32) and loads it in the engine. */
static void train_export_load(const char *cfg, float *win, int32_t *nst, float *tgt, moe_trainer_t **tr,
                              moe_model_t **model) {
  char err[256], path[256];
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.lr = 5e-3f;
  int rc = moe_trainer_new(cfg, 3, &o, tr, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s", err);
  const moe_train_data_t d = {.n_rows = N, .target = tgt, .window = win, .n_steps = nst};
  moe_fit_opts_t fo = {.epochs = 3, .batch_size = 8, .metric = MOE_METRIC_LOSS};
  moe_fit_result_t res;
  ASSERT_OK(moe_trainer_fit(*tr, &d, NULL, &fo, &res));
  tmp_model_path(path, sizeof path);
  ASSERT_OK(moe_trainer_export(*tr, path, MOE_QUANT_F32, err, sizeof err));
  rc = moe_model_load(path, model, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s", err);
  remove(path);
}

/* Engine scores of the rows with the given n_steps (NULL: the field left 0). */
static int run_rows(moe_session_t *sess, const float *win, const int32_t *nst, int n, float *scores) {
  moe_input_t rows[N];
  for (int r = 0; r < n; r++)
    rows[r] = (moe_input_t){.window = win + (size_t)r * T * C, .n_steps = nst != NULL ? nst[r] : 0};
  moe_output_t out = {.scores = scores};
  return moe_session_run(sess, rows, n, &out);
}

static void summary_model_case(const char *cfg, const char *label, bool no_conv) {
  float win[N * T * C], tgt[N * 2], s_tr[N * 2], s_eng[N * 2], s_all[N * 2];
  int32_t nst[N];
  make_rows(win, nst, tgt);
  moe_trainer_t *tr;
  moe_model_t *model;
  train_export_load(cfg, win, nst, tgt, &tr, &model);
  ASSERT_EQ(moe_model_sensor_window(model), T);
  const moe_train_data_t d = {.n_rows = N, .target = tgt, .window = win, .n_steps = nst};
  ASSERT_OK(moe_trainer_predict(tr, &d, s_tr));
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, N, &sess));
  ASSERT_OK(run_rows(sess, win, nst, N, s_eng));
  double worst = 0;
  for (int i = 0; i < N * 2; i++) {
    const double e = fabs((double)s_eng[i] - s_tr[i]);
    worst = fmax(worst, e);
    ASSERT_MSG(e <= EXPORT_TOL * (1 + fabs(s_tr[i])), "%s: row %d (n_steps %d) output %d: engine %.8g, trainer %.8g",
               label, i / 2, nst[i / 2], i % 2, s_eng[i], s_tr[i]);
  }
  /* n_steps reaches the pool: the same windows read whole score otherwise for partial rows,
   * and n_steps = window scores exactly as 0. */
  ASSERT_OK(run_rows(sess, win, NULL, N, s_all));
  int differ = 0;
  for (int r = 0; r < N; r++) {
    if (nst[r] == 0 || nst[r] == T) {
      ASSERT_EQ(memcmp(s_all + 2 * r, s_eng + 2 * r, 2 * sizeof(float)), 0);
      continue;
    }
    differ += s_all[2 * r] != s_eng[2 * r] || s_all[2 * r + 1] != s_eng[2 * r + 1];
  }
  ASSERT_OP(differ, >, N / 2);
  /* Without conv layers nothing reads an unobserved step: overwriting them changes no score. */
  if (no_conv) {
    float w2[N * T * C], s2[N * 2];
    memcpy(w2, win, sizeof w2);
    for (int r = 0; r < N; r++) {
      const int n = nst[r] == 0 ? T : nst[r];
      for (int t = 0; t < T - n; t++)
        for (int i = 0; i < C; i++) w2[((size_t)r * T + t) * C + i] += (float)(10 * urand() - 5);
    }
    ASSERT_OK(run_rows(sess, w2, nst, N, s2));
    ASSERT_EQ(memcmp(s2, s_eng, sizeof s2), 0);
  }
  /* Attributions (occlusion) of a partial row are deltas of the row as it is, n_steps and all:
   * the same as running the row and its occluded copies with that n_steps. */
  ASSERT_EQ(moe_model_n_attributions(model), C);
  for (int r = 3; r < 5; r++) {
    ASSERT(nst[r] > 0 && nst[r] < T);
    float attr[C], base[2], occ[2], w[T * C];
    const moe_input_t row = {.window = win + (size_t)r * T * C, .n_steps = nst[r]};
    ASSERT_OK(moe_session_attribute(sess, &row, 1, attr, C));
    moe_output_t o1 = {.scores = base};
    ASSERT_OK(moe_session_run(sess, &row, 1, &o1));
    ASSERT_NEAR(base[1], s_eng[2 * r + 1], 1e-6);
    static const float means[C] = {60, 0, 50};
    for (int f = 0; f < C; f++) {
      memcpy(w, row.window, sizeof w);
      for (int t = 0; t < T; t++) w[t * C + f] = means[f];
      const moe_input_t occluded = {.window = w, .n_steps = nst[r]};
      moe_output_t o2 = {.scores = occ};
      ASSERT_OK(moe_session_run(sess, &occluded, 1, &o2));
      ASSERT_MSG(fabs(attr[f] - (base[1] - occ[1])) <= 1e-5, "%s: row %d (n_steps %d) channel %d: attribution %.8g, "
                 "occlusion delta %.8g", label, r, nst[r], f, attr[f], base[1] - occ[1]);
    }
  }
  /* n_steps outside [0, window] is refused, naming the row and the value. */
  int32_t bad[N];
  memcpy(bad, nst, sizeof bad);
  bad[5] = T + 1;
  ASSERT_EQ(run_rows(sess, win, bad, N, s_all), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_session_error(sess), "row 5: n_steps is 17");
  bad[5] = nst[5];
  bad[9] = -2;
  ASSERT_EQ(run_rows(sess, win, bad, N, s_all), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_session_error(sess), "row 9: n_steps is -2");
  printf("  %-22s %d rows, n_steps 0..%d: max |engine - trainer| %.2e; %d partial rows score otherwise than whole\n",
         label, N, T, worst, differ);
  moe_session_free(sess);
  moe_model_free(model);
  moe_trainer_free(tr);
}

TEST(exported_summary_model_scores_as_trainer) {
  summary_model_case(MODEL_CFG(CONV_STACK, "summary"), "summary after convs", false);
}

TEST(exported_summary_model_no_conv_scores_as_trainer) {
  summary_model_case(MODEL_CFG("[]", "summary"), "summary, no conv", true);
}

/* Pool "mean" reads the whole window as it is: n_steps changes nothing (but is still checked). */
TEST(mean_pool_ignores_n_steps) {
  float win[N * T * C], tgt[N * 2], s_tr[N * 2], s_eng[N * 2], s_all[N * 2];
  int32_t nst[N];
  make_rows(win, nst, tgt);
  moe_trainer_t *tr;
  moe_model_t *model;
  train_export_load(MODEL_CFG(CONV_STACK, "mean"), win, nst, tgt, &tr, &model);
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, N, &sess));
  ASSERT_OK(run_rows(sess, win, nst, N, s_eng));
  ASSERT_OK(run_rows(sess, win, NULL, N, s_all));
  ASSERT_EQ(memcmp(s_eng, s_all, sizeof s_eng), 0);
  /* The trainer too: its predictions with and without n_steps are the same. */
  moe_train_data_t d = {.n_rows = N, .target = tgt, .window = win, .n_steps = nst};
  ASSERT_OK(moe_trainer_predict(tr, &d, s_tr));
  d.n_steps = NULL;
  ASSERT_OK(moe_trainer_predict(tr, &d, s_all));
  ASSERT_EQ(memcmp(s_tr, s_all, sizeof s_tr), 0);
  for (int i = 0; i < N * 2; i++) ASSERT_NEAR(s_eng[i], s_tr[i], EXPORT_TOL * (1 + fabs(s_tr[i])));
  nst[0] = T + 1;
  ASSERT_EQ(run_rows(sess, win, nst, N, s_eng), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_session_error(sess), "row 0: n_steps is 17");
  moe_session_free(sess);
  moe_model_free(model);
  moe_trainer_free(tr);
}

/* A mean-pool file relabelled "pool": "summary": enc.in has C_last columns where the summary
 * needs 3 C_last, and the load names the tensor and the expected shape. */
TEST(summary_refuses_mean_pool_enc_in) {
  char err[512], path[256];
  static const struct {
    const char *mean_cfg, *conv;
    int d_in;
  } cases[2] = {{MODEL_CFG(CONV_STACK, "mean"), CONV_STACK, 8}, {MODEL_CFG("[]", "mean"), "[]", C}};
  for (int k = 0; k < 2; k++) {
    moe_trainer_t *tr;
    ASSERT_OK(moe_trainer_new(cases[k].mean_cfg, 1, NULL, &tr, err, sizeof err));
    tmp_model_path(path, sizeof path);
    ASSERT_OK(moe_trainer_export(tr, path, MOE_QUANT_F32, err, sizeof err));
    moe_trainer_free(tr);
    moe_st_file_t *f;
    ASSERT_OK(moe_st_open(path, &f, err, sizeof err));
    const char *cfg = moe_st_metadata_find(f, "config");
    ASSERT_NOT_NULL(cfg);
    const char *at = strstr(cfg, "\"pool\":\"mean\"");
    ASSERT_MSG(at != NULL, "exported config lacks the pool: %s", cfg);
    char relabelled[4096];
    snprintf(relabelled, sizeof relabelled, "%.*s\"pool\":\"summary\"%s", (int)(at - cfg), cfg,
             at + strlen("\"pool\":\"mean\""));
    const size_t n = moe_st_n_tensors(f);
    moe_st_tensor_t *ts = calloc(n, sizeof *ts);
    ASSERT_NOT_NULL(ts);
    for (size_t i = 0; i < n; i++) ts[i] = *moe_st_tensor_at(f, i);
    /* Every metadata entry kept, the config replaced. */
    const size_t n_meta = moe_st_n_metadata(f);
    moe_st_kv_t *meta = calloc(n_meta, sizeof *meta);
    ASSERT_NOT_NULL(meta);
    for (size_t i = 0; i < n_meta; i++) {
      meta[i] = *moe_st_metadata_at(f, i);
      if (strcmp(meta[i].key, "config") == 0) meta[i].value = relabelled;
    }
    void *buf;
    size_t len;
    ASSERT_OK(moe_st_write_memory(ts, n, meta, n_meta, &buf, &len, err, sizeof err));
    /* The untouched bytes still load (the rewrite itself is sound). */
    moe_model_t *model = NULL;
    for (size_t i = 0; i < n_meta; i++)
      if (strcmp(meta[i].key, "config") == 0) meta[i].value = cfg;
    void *buf0;
    size_t len0;
    ASSERT_OK(moe_st_write_memory(ts, n, meta, n_meta, &buf0, &len0, err, sizeof err));
    int rc = moe_model_load_memory(buf0, len0, &model, err, sizeof err);
    ASSERT_MSG(rc == MOE_OK, "%s", err);
    moe_model_free(model);
    model = (moe_model_t *)1;
    rc = moe_model_load_memory(buf, len, &model, err, sizeof err);
    ASSERT_MSG(rc == MOE_ESHAPE, "%s: expected MOE_ESHAPE, got %s: %s", cases[k].conv, moe_err_name(rc), err);
    ASSERT_NULL(model);
    ASSERT_STR_CONTAINS(err, "enc.in");
    ASSERT_STR_CONTAINS(err, "3 x last conv out");
    char want[64];
    snprintf(want, sizeof want, "[16, %d]", 3 * cases[k].d_in);
    ASSERT_MSG(strstr(err, want) != NULL, "%s: the message does not give the expected shape %s: %s", cases[k].conv, want,
               err);
    printf("  %s: %s\n", cases[k].conv, err);
    free(buf);
    free(buf0);
    free(meta);
    free(ts);
    moe_st_close(f);
    remove(path);
  }
}
