/*
 * The trainer's moving average of the weights (moe_train_opts_t.ema_decay) on a small sensor
 * regression model:
 *   - the average does not change training: the raw weights after each step are bit-identical to
 *     those of a trainer without it, same seed and batches;
 *   - after each step the average equals the documented recurrence, recomputed here in double
 *     from the raw weights (a = p at the first step, then a = d a + (1 - d) p with
 *     d = min(ema_decay, (1 + n) / (10 + n)));
 *   - moe_trainer_fit judges and keeps the average: the restored weights are the average of the
 *     best epoch (their validation metric is fit's best_metric, and they differ from the raw
 *     weights of a trainer without averaging that saw the same steps);
 *   - with quantization-aware training the restored average is what the fake-quantized forward
 *     scores;
 *   - an ema_decay outside [0, 1) is refused.
 * The trainer's internals (trainer-impl.h) are read directly: the public API only shows
 * predictions.
 */
#include "test.h"

#include <math.h>
#include <string.h>

#include "moe/moe.h"
#include "moe/train.h"
#include "train-synth.h"
#include "trainer/trainer-impl.h"

enum { T = SYNTH_SENSOR_T, C = SYNTH_SENSOR_C };

static const char *CFG = SYNTH_SENSOR_CFG;

/* The same model 32 wide: its expert linears (k = 32) are quantized, so QAT has work to do. */
static const char *CFG32 =
    "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"e\",\"quant\":\"f32\",\"d_model\":32,"
    "\"encoder\":{\"kind\":\"sensor\",\"window\":16,"
    "\"channels\":[{\"name\":\"a\",\"mean\":0,\"std\":1},{\"name\":\"b\",\"mean\":0,\"std\":1},"
    "{\"name\":\"c\",\"mean\":0,\"std\":1}],"
    "\"conv\":[{\"out\":8,\"kernel\":3,\"stride\":1}],\"activation\":\"gelu\"},"
    "\"moe\":[{\"n_expert\":2,\"top_k\":1,\"n_shared\":1,\"d_ff\":32,\"score\":\"softmax\"}],"
    "\"task\":{\"kind\":\"regression\",\"labels\":[\"rul\"]}}";

static moe_trainer_t *trainer_q(const char *cfg, float ema, moe_quant_t qat) {
  char err[256];
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.lr = 1e-2f;
  o.ema_decay = ema;
  o.qat = qat;
  moe_trainer_t *tr = NULL;
  int rc = moe_trainer_new(cfg, 7, &o, &tr, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s", err);
  return tr;
}

static moe_trainer_t *trainer(float ema) { return trainer_q(CFG, ema, MOE_QUANT_F32); }

TEST(average_follows_recurrence_and_leaves_training_alone) {
  enum { N = 64, B = 16, STEPS = 30 };
  static float win[N * T * C], tgt[N];
  moe_train_data_t all;
  synth_sensor_make(N, 3, win, tgt, &all);
  const float d = 0.9f;
  moe_trainer_t *a = trainer(d), *b = trainer(0);
  ASSERT_EQ(a->n_values, b->n_values);
  const size_t nv = a->n_values;
  ASSERT_NOT_NULL(a->ema);
  ASSERT(b->ema == NULL);
  double *want = calloc(nv, sizeof(double));
  ASSERT_NOT_NULL(want);
  double worst = 0;
  for (int s = 0; s < STEPS; s++) {
    const int lo = (s * B) % N;
    moe_train_data_t batch = {.n_rows = B, .target = tgt + lo, .window = win + (size_t)lo * T * C};
    ASSERT_OK(moe_trainer_step(a, &batch, NULL));
    ASSERT_OK(moe_trainer_step(b, &batch, NULL));
    ASSERT_EQ(memcmp(a->p, b->p, nv * sizeof(tr_real)), 0);
    const double dd = fmin((double)d, (1.0 + s) / (10.0 + s));
    for (size_t i = 0; i < nv; i++) {
      want[i] = s == 0 ? (double)b->p[i] : dd * want[i] + (1 - dd) * (double)b->p[i];
      const double e = fabs(want[i] - (double)a->ema[i]) / (1e-3 + fabs(want[i]));
      if (e > worst) worst = e;
    }
  }
  ASSERT_EQ(a->ema_n, STEPS);
  /* float recurrence against double: a few ulps per step at most */
  ASSERT_OP(worst, <, 1e-5);
  /* After 30 steps at d = 0.9 the average lags the weights: it is not a copy of them. */
  size_t differ = 0;
  for (size_t i = 0; i < nv; i++) differ += a->ema[i] != a->p[i];
  ASSERT_OP(differ, >, nv / 2);
  free(want);
  moe_trainer_free(a);
  moe_trainer_free(b);
}

TEST(fit_keeps_the_best_average) {
  enum { N = 256, V = 64 };
  static float win[N * T * C], tgt[N], vwin[V * T * C], vtgt[V];
  moe_train_data_t tr_d, va_d;
  synth_sensor_make(N, 11, win, tgt, &tr_d);
  synth_sensor_make(V, 12, vwin, vtgt, &va_d);
  moe_trainer_t *a = trainer(0.95f), *b = trainer(0);
  moe_fit_opts_t fo = {.epochs = 6, .batch_size = 32, .patience = 0, .metric = MOE_METRIC_RMSE};
  moe_fit_result_t ra, rb;
  ASSERT_OK(moe_trainer_fit(a, &tr_d, &va_d, &fo, &ra));
  ASSERT_OK(moe_trainer_fit(b, &tr_d, &va_d, &fo, &rb));
  ASSERT_EQ(ra.epochs_run, 6);
  /* The same shuffles and steps: the training loss of the raw weights is the same. */
  ASSERT_EQ(ra.last_train_loss, rb.last_train_loss);
  /* The restored weights are the ones fit judged best: their validation RMSE is best_metric. */
  double va, vb;
  ASSERT_OK(moe_trainer_eval(a, &va_d, MOE_METRIC_RMSE, &va));
  ASSERT_OK(moe_trainer_eval(b, &va_d, MOE_METRIC_RMSE, &vb));
  ASSERT_NEAR(va, ra.best_metric, 1e-9);
  ASSERT_NEAR(vb, rb.best_metric, 1e-9);
  /* ...and they are an average, not any epoch's raw weights. */
  ASSERT(ra.best_metric != rb.best_metric);
  ASSERT(memcmp(a->p, b->p, a->n_values * sizeof(tr_real)) != 0);
  /* The model learnt something either way (targets have std ~0.29). */
  ASSERT_OP(ra.best_metric, <, 0.2);
  moe_trainer_free(a);
  moe_trainer_free(b);
}

/* With QAT the forward reads fake-quantized weights: the average swapped in must be
 * fake-quantized too, and so must the restored best, or eval would score stale weights. */
TEST(fit_with_qat_scores_the_restored_average) {
  enum { N = 256, V = 64 };
  static float win[N * T * C], tgt[N], vwin[V * T * C], vtgt[V];
  moe_train_data_t tr_d, va_d;
  synth_sensor_make(N, 21, win, tgt, &tr_d);
  synth_sensor_make(V, 22, vwin, vtgt, &va_d);
  moe_trainer_t *a = trainer_q(CFG32, 0.95f, MOE_QUANT_Q8_0);
  ASSERT_NOT_NULL(a->fq);
  moe_fit_opts_t fo = {.epochs = 4, .batch_size = 32, .patience = 0, .metric = MOE_METRIC_RMSE};
  moe_fit_result_t ra;
  ASSERT_OK(moe_trainer_fit(a, &tr_d, &va_d, &fo, &ra));
  double va;
  ASSERT_OK(moe_trainer_eval(a, &va_d, MOE_METRIC_RMSE, &va));
  ASSERT_NEAR(va, ra.best_metric, 1e-9);
  /* Some quantized weight differs from its master copy: the fake-quant copy is live. */
  size_t differ = 0;
  for (size_t i = 0; i < a->n_values; i++) differ += a->fq[i] != a->p[i];
  ASSERT_OP(differ, >, 0u);
  moe_trainer_free(a);
}

TEST(bad_decay_refused) {
  char err[256];
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  moe_trainer_t *tr = NULL;
  o.ema_decay = 1.0f;
  ASSERT_EQ(moe_trainer_new(CFG, 1, &o, &tr, err, sizeof err), MOE_EINVAL);
  ASSERT(strstr(err, "ema_decay") != NULL);
  ASSERT(tr == NULL);
  o.ema_decay = -0.5f;
  ASSERT_EQ(moe_trainer_new(CFG, 1, &o, &tr, err, sizeof err), MOE_EINVAL);
}
