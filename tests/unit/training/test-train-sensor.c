/*
 * The trainer on the sensor encoder (1-D convolution stack, mean over time): it learns to tell
 * three kinds of synthetic windows apart (noise, a slow oscillation on one channel, a ramp on
 * the other), and the exported model scores like the trainer's forward in the inference engine.
 */
#include "test.h"

#include <stdio.h>

#include "moe/moe.h"
#include "moe/train.h"
#include "train-synth.h"

/* Trainer (float, libm erf) against the engine (float kernels) on the exported fp32 model. */
#define EXPORT_TOL 1e-4

enum { T = 24, C = 2 };

static const char *CFG =
    "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"s\",\"quant\":\"f32\",\"d_model\":16,"
    "\"norm\":\"layernorm\",\"encoder\":{\"kind\":\"sensor\",\"window\":24,"
    "\"channels\":[{\"name\":\"temp\",\"mean\":60,\"std\":5},{\"name\":\"vib\",\"mean\":0,\"std\":2}],"
    "\"conv\":[{\"out\":8,\"kernel\":5,\"stride\":1},{\"out\":16,\"kernel\":3,\"stride\":2}],\"activation\":\"gelu\"},"
    "\"moe\":[{\"n_expert\":4,\"top_k\":2,\"n_shared\":1,\"d_ff\":16,\"score\":\"softmax\"}],"
    "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"ok\",\"oscillation\",\"ramp\"]}}";

static void make(int n, uint64_t seed, float **win, int32_t **lab, moe_train_data_t *d) {
  uint64_t st = seed;
  *win = malloc(sizeof(float) * n * T * C);
  *lab = malloc(sizeof(int32_t) * n);
  for (int r = 0; r < n; r++) {
    const int y = r % 3;
    const double ph = 6.28 * synth_u(&st), amp = 0.8 + 0.4 * synth_u(&st);
    for (int t = 0; t < T; t++) {
      double a = synth_n(&st), b = synth_n(&st);
      if (y == 1) a += 2.0 * amp * sin(ph + t * 0.8);
      if (y == 2) b += amp * (t - T / 2.0) / 4.0;
      (*win)[(r * T + t) * C] = (float)(60 + 5 * a);
      (*win)[(r * T + t) * C + 1] = (float)(2 * b);
    }
    (*lab)[r] = y;
  }
  *d = (moe_train_data_t){.n_rows = n, .label = *lab, .window = *win};
}

TEST(sensor_learns_and_exports) {
  char err[256], path[256];
  float *wa, *wb;
  int32_t *la, *lb;
  moe_train_data_t a, b;
  make(900, 1, &wa, &la, &a);
  make(300, 2, &wb, &lb, &b);
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.lr = 5e-3f;
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(CFG, 2, &o, &tr, err, sizeof err));
  double acc0, acc;
  ASSERT_OK(moe_trainer_eval(tr, &b, MOE_METRIC_ACCURACY, &acc0));
  moe_fit_opts_t fo = {.epochs = 8, .batch_size = 32, .patience = 3, .metric = MOE_METRIC_ACCURACY};
  moe_fit_result_t res;
  ASSERT_OK(moe_trainer_fit(tr, &a, &b, &fo, &res));
  ASSERT_OK(moe_trainer_eval(tr, &b, MOE_METRIC_ACCURACY, &acc));
  ASSERT_OP(acc, >, 0.9);

  test_unique_name(path, sizeof path, "/tmp/test-train-sensor");
  strncat(path, ".safetensors", sizeof path - strlen(path) - 1);
  ASSERT_OK(moe_trainer_export(tr, path, MOE_QUANT_F32, err, sizeof err));
  moe_model_t *model;
  int rc = moe_model_load(path, &model, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s", err);
  float *s_tr = malloc(sizeof(float) * 300 * 3), *s_eng = malloc(sizeof(float) * 300 * 3);
  ASSERT_OK(moe_trainer_predict(tr, &b, s_tr));
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, 300, &sess));
  moe_input_t rows[300];
  for (int r = 0; r < 300; r++) rows[r] = (moe_input_t){.window = wb + (size_t)r * T * C};
  moe_output_t out = {.scores = s_eng};
  ASSERT_OK(moe_session_run(sess, rows, 300, &out));
  double worst = 0;
  for (int i = 0; i < 900; i++) worst = fmax(worst, fabs(s_tr[i] - s_eng[i]));
  printf("  sensor: val accuracy %.3f -> %.3f (best epoch %d); max |trainer - engine| %.2e\n", acc0, acc,
         res.best_epoch, worst);
  ASSERT_OP(worst, <=, EXPORT_TOL);
  /* A bad reading is named. */
  wb[5 * T * C + 7 * C + 1] = NAN;
  ASSERT_EQ(moe_trainer_predict(tr, &b, s_tr), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "row 5: channel 1 \"vib\" at time step 7 is nan");
  moe_session_free(sess);
  moe_model_free(model);
  remove(path);
  free(s_tr);
  free(s_eng);
  moe_trainer_free(tr);
  free(wa);
  free(wb);
  free(la);
  free(lb);
}
