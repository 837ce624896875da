/*
 * The trainer end to end on the tabular model: training lowers the loss and reaches a high AUC
 * on a nearly separable synthetic task (binary), learns multiclass and regression tasks, is
 * deterministic for a seed, exports a model file that moe_model_load reads and that scores like
 * the trainer's own forward, reloads into a trainer (moe_trainer_load) unchanged, and rejects
 * bad input with messages that name what is wrong.
 */
#include "test.h"

#include <stdio.h>

#include "moe/moe.h"
#include "moe/train.h"
#include "train-synth.h"

/* Scores of the exported fp32 model against the trainer's forward: float GEMMs in another
 * summation order (OpenBLAS vs the engine's kernels), nothing else. */
#define EXPORT_TOL 2e-5

static char *make_config(int n_num, int cat_dim, int d_model, const char *task, int n_moe) {
  char *buf = malloc(8192);
  int k = snprintf(buf, 8192,
                   "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"t\",\"quant\":\"f32\","
                   "\"d_model\":%d,\"encoder\":{\"kind\":\"tabular\",\"numeric\":[",
                   d_model);
  for (int i = 0; i < n_num; i++)
    k += snprintf(buf + k, 8192 - k, "%s{\"name\":\"x%d\",\"mean\":%d,\"std\":%g}", i ? "," : "", i, i, 1 + i / 4.0);
  k += snprintf(buf + k, 8192 - k,
                "],\"categorical\":[{\"name\":\"c\",\"vocab\":[\"<unk>\",\"a\",\"b\",\"c\",\"d\"],\"dim\":%d}]},"
                "\"moe\":[",
                cat_dim);
  for (int b = 0; b < n_moe; b++)
    k += snprintf(buf + k, 8192 - k, "%s{\"n_expert\":4,\"top_k\":2,\"n_shared\":1,\"d_ff\":32,\"score\":\"%s\"}",
                  b ? "," : "", b % 2 ? "sigmoid" : "softmax");
  snprintf(buf + k, 8192 - k, "],\"task\":%s}", task);
  return buf;
}

static const char *BINARY = "{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}";

static void tmp_path(char *buf, size_t n, const char *tag) {
  test_unique_name(buf, n, "/tmp/test-train");
  size_t l = strlen(buf);
  snprintf(buf + l, n - l, "-%s.safetensors", tag);
}

TEST(binary_learns_and_exports) {
  char err[256], path[256];
  char *cfg = make_config(6, 4, 32, BINARY, 2);
  synth_t tr_set, va_set;
  synth_make(&tr_set, 3000, 6, 0, 0.1, 1);
  synth_make(&va_set, 800, 6, 0, 0.1, 2);
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.lr = 3e-3f;
  o.warmup_steps = 20;
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(cfg, 42, &o, &tr, err, sizeof err));
  double auc0, loss0;
  ASSERT_OK(moe_trainer_eval(tr, &va_set.data, MOE_METRIC_ROC_AUC, &auc0));
  ASSERT_OK(moe_trainer_eval(tr, &va_set.data, MOE_METRIC_LOSS, &loss0));
  moe_fit_opts_t fo = {.epochs = 6, .batch_size = 64, .patience = 3, .metric = MOE_METRIC_ROC_AUC};
  moe_fit_result_t res;
  ASSERT_OK(moe_trainer_fit(tr, &tr_set.data, &va_set.data, &fo, &res));
  double auc, loss, pr;
  ASSERT_OK(moe_trainer_eval(tr, &va_set.data, MOE_METRIC_ROC_AUC, &auc));
  ASSERT_OK(moe_trainer_eval(tr, &va_set.data, MOE_METRIC_LOSS, &loss));
  ASSERT_OK(moe_trainer_eval(tr, &va_set.data, MOE_METRIC_PR_AUC, &pr));
  printf("  binary: val loss %.4f -> %.4f, ROC AUC %.4f -> %.4f, PR AUC %.4f, best epoch %d of %d, %lld steps\n",
         loss0, loss, auc0, auc, pr, res.best_epoch, res.epochs_run, (long long)moe_trainer_steps(tr));
  ASSERT_OP(loss, <, 0.5 * loss0);
  ASSERT_OP(auc, >, 0.97);
  /* The best epoch's parameters are the ones restored. */
  ASSERT_NEAR(auc, res.best_metric, 1e-12);

  /* Export, load with the inference engine, compare scores and expert choices. */
  tmp_path(path, sizeof path, "f32");
  ASSERT_OK(moe_trainer_export(tr, path, MOE_QUANT_F32, err, sizeof err));
  moe_model_t *model;
  int rc = moe_model_load(path, &model, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "load: %s", err);
  ASSERT_EQ(moe_model_n_params(model),
            moe_trainer_n_params(tr) + 8 /* selection biases */);
  const int n = va_set.data.n_rows;
  float *s_tr = malloc(sizeof(float) * n), *s_eng = malloc(sizeof(float) * n);
  ASSERT_OK(moe_trainer_predict(tr, &va_set.data, s_tr));
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, n, &sess));
  moe_input_t *rows = malloc(sizeof(moe_input_t) * n);
  for (int r = 0; r < n; r++)
    rows[r] = (moe_input_t){.numeric = va_set.num + (size_t)r * 6, .categorical = va_set.cat + r};
  moe_output_t out = {.scores = s_eng};
  ASSERT_OK(moe_session_run(sess, rows, n, &out));
  double worst = 0;
  for (int r = 0; r < n; r++) worst = fmax(worst, fabs(s_tr[r] - s_eng[r]));
  printf("  export f32: max |trainer - engine| score difference %.2e over %d rows\n", worst, n);
  ASSERT_OP(worst, <=, EXPORT_TOL);

  /* Reload into a trainer: the same predictions, bit for bit (fp32 round trip). */
  moe_trainer_t *tr2;
  rc = moe_trainer_load(path, 1, &o, &tr2, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "trainer load: %s", err);
  ASSERT_OK(moe_trainer_predict(tr2, &va_set.data, s_eng));
  ASSERT_EQ(memcmp(s_tr, s_eng, sizeof(float) * n), 0);
  moe_trainer_free(tr2);

  moe_session_free(sess);
  moe_model_free(model);
  remove(path);
  free(rows);
  free(s_tr);
  free(s_eng);
  moe_trainer_free(tr);
  synth_free(&tr_set);
  synth_free(&va_set);
  free(cfg);
}

TEST(multiclass_and_regression_learn) {
  char err[256];
  for (int kind = 1; kind <= 2; kind++) {
    char *cfg = make_config(4, 3, 16,
                            kind == 1 ? "{\"kind\":\"multiclass\",\"labels\":[\"lo\",\"mid\",\"hi\"]}"
                                      : "{\"kind\":\"regression\",\"labels\":[\"y\",\"z\"]}",
                            1);
    synth_t a, b;
    synth_make(&a, 1500, 4, kind, 0.05, 3);
    synth_make(&b, 500, 4, kind, 0.05, 4);
    moe_train_opts_t o;
    moe_train_opts_default(&o);
    o.lr = 3e-3f;
    if (kind == 1) o.label_smoothing = 0.05f;
    else o.loss = MOE_LOSS_HUBER;
    moe_trainer_t *tr;
    ASSERT_OK(moe_trainer_new(cfg, 5, &o, &tr, err, sizeof err));
    const moe_metric_kind_t met = kind == 1 ? MOE_METRIC_ACCURACY : MOE_METRIC_RMSE;
    double m0, m1;
    ASSERT_OK(moe_trainer_eval(tr, &b.data, met, &m0));
    moe_fit_opts_t fo = {.epochs = 10, .batch_size = 50, .metric = met};
    moe_fit_result_t res;
    ASSERT_OK(moe_trainer_fit(tr, &a.data, &b.data, &fo, &res));
    ASSERT_OK(moe_trainer_eval(tr, &b.data, met, &m1));
    printf("  %s: %s %.4f -> %.4f\n", kind == 1 ? "multiclass" : "regression", kind == 1 ? "accuracy" : "RMSE", m0,
           m1);
    if (kind == 1) ASSERT_OP(m1, >, 0.85);
    else ASSERT_OP(m1, <, 0.5 * m0);
    moe_trainer_free(tr);
    synth_free(&a);
    synth_free(&b);
    free(cfg);
  }
}

TEST(deterministic_for_a_seed) {
  char err[256];
  char *cfg = make_config(6, 4, 16, BINARY, 1);
  synth_t a;
  synth_make(&a, 300, 6, 0, 0.3, 9);
  float *s[3];
  for (int i = 0; i < 3; i++) {
    moe_trainer_t *tr;
    ASSERT_OK(moe_trainer_new(cfg, i == 2 ? 8 : 7, NULL, &tr, err, sizeof err));
    moe_fit_opts_t fo = {.epochs = 2, .batch_size = 32, .metric = MOE_METRIC_LOSS};
    moe_fit_result_t res;
    ASSERT_OK(moe_trainer_fit(tr, &a.data, NULL, &fo, &res));
    s[i] = malloc(sizeof(float) * 300);
    ASSERT_OK(moe_trainer_predict(tr, &a.data, s[i]));
    moe_trainer_free(tr);
  }
  ASSERT_EQ(memcmp(s[0], s[1], sizeof(float) * 300), 0);
  ASSERT_NE(memcmp(s[0], s[2], sizeof(float) * 300), 0);
  for (int i = 0; i < 3; i++) free(s[i]);
  synth_free(&a);
  free(cfg);
}

TEST(bad_input_is_named) {
  char err[256];
  moe_trainer_t *tr = NULL;
  /* A misspelt config key. */
  ASSERT_EQ(moe_trainer_new("{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"x\",\"quant\":\"f32\","
                            "\"d_modle\":8}",
                            1, NULL, &tr, err, sizeof err),
            MOE_ECONFIG);
  ASSERT_STR_CONTAINS(err, "d_modle");
  /* A loss that does not fit the task. */
  char *cfg = make_config(2, 2, 8, BINARY, 1);
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.loss = MOE_LOSS_HUBER;
  ASSERT_EQ(moe_trainer_new(cfg, 1, &o, &tr, err, sizeof err), MOE_EINVAL);
  ASSERT_STR_CONTAINS(err, "opts.loss");
  ASSERT_OK(moe_trainer_new(cfg, 1, NULL, &tr, err, sizeof err));
  float num[4] = {0, 1, 0, 1};
  int32_t cat[2] = {1, 7}, lab[2] = {1, 2};
  moe_train_data_t b = {2, num, cat, lab, NULL};
  ASSERT_EQ(moe_trainer_step(tr, &b, NULL), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "row 1: label 2");
  lab[1] = 0;
  ASSERT_EQ(moe_trainer_step(tr, &b, NULL), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "\"c\" has an id outside its vocabulary");
  cat[1] = 4;
  num[3] = NAN;
  ASSERT_EQ(moe_trainer_step(tr, &b, NULL), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "row 1: feature 1 \"x1\" is nan");
  num[3] = 2;
  double loss;
  ASSERT_OK(moe_trainer_step(tr, &b, &loss));
  ASSERT(isfinite(loss));
  ASSERT_EQ(moe_trainer_steps(tr), 1);
  /* A quantized file cannot be trained from. */
  char path[256];
  tmp_path(path, sizeof path, "q8");
  ASSERT_OK(moe_trainer_export(tr, path, MOE_QUANT_Q8_0, err, sizeof err));
  moe_trainer_t *tr2 = NULL;
  ASSERT_EQ(moe_trainer_load(path, 1, NULL, &tr2, err, sizeof err), MOE_ENOTTRAINABLE);
  ASSERT_NULL(tr2);
  ASSERT_STR_CONTAINS(err, "config.quant");
  remove(path);
  moe_trainer_free(tr);
  free(cfg);
}
