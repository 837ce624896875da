/*
 * moe_fit_opts_t.keep_last on a small sensor regression model (what `sluice train --last-epoch`
 * sets):
 *   - it does not change training: the epochs' training losses and validation figures are the
 *     same as without it, same seed;
 *   - the weights after fit are the last epoch's (their validation RMSE is the last epoch's
 *     figure, best_epoch is epochs_run), where without it they are the best epoch's;
 *   - patience does not stop it (every epoch is "kept").
 */
#include "test.h"

#include <math.h>
#include <string.h>

#include "moe/moe.h"
#include "moe/train.h"
#include "train-synth.h"

enum { T = SYNTH_SENSOR_T, C = SYNTH_SENSOR_C, EPOCHS = 8 };

static const char *CFG = SYNTH_SENSOR_CFG;

typedef struct {
  int n;
  double loss[EPOCHS + 1], val[EPOCHS + 1];
} trace_t;

static int record(void *data, int epoch, double loss, double val) {
  trace_t *t = data;
  if (epoch >= 1 && epoch <= EPOCHS) {
    t->loss[epoch] = loss;
    t->val[epoch] = val;
    t->n = epoch;
  }
  return 0;
}

static moe_trainer_t *trainer(float lr) {
  char err[256];
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.lr = lr;
  moe_trainer_t *tr = NULL;
  int rc = moe_trainer_new(CFG, 5, &o, &tr, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s", err);
  return tr;
}

TEST(keeps_the_last_epoch_not_the_best) {
  enum { N = 256, V = 32 };
  static float win[N * T * C], tgt[N], vwin[V * T * C], vtgt[V];
  moe_train_data_t tr_d, va_d;
  synth_sensor_make(N, 31, win, tgt, &tr_d);
  synth_sensor_make(V, 32, vwin, vtgt, &va_d);
  /* A high learning rate makes the validation figure wander, so that the best epoch is not
   * the last one and the two choices differ. */
  moe_trainer_t *a = trainer(5e-2f), *b = trainer(5e-2f);
  trace_t ta = {0}, tb = {0};
  moe_fit_opts_t fa = {.epochs = EPOCHS, .batch_size = 16, .patience = 2, .keep_last = 1,
                       .metric = MOE_METRIC_RMSE, .progress = record, .data = &ta};
  moe_fit_opts_t fb = {.epochs = EPOCHS, .batch_size = 16, .patience = 0, .keep_last = 0,
                       .metric = MOE_METRIC_RMSE, .progress = record, .data = &tb};
  moe_fit_result_t ra, rb;
  ASSERT_OK(moe_trainer_fit(a, &tr_d, &va_d, &fa, &ra));
  ASSERT_OK(moe_trainer_fit(b, &tr_d, &va_d, &fb, &rb));
  /* Patience 2 did not stop keep_last: every epoch ran. */
  ASSERT_EQ(ra.epochs_run, EPOCHS);
  ASSERT_EQ(rb.epochs_run, EPOCHS);
  ASSERT_EQ(ta.n, EPOCHS);
  /* Training is the same either way. */
  for (int e = 1; e <= EPOCHS; e++) {
    ASSERT_EQ(ta.loss[e], tb.loss[e]);
    ASSERT_EQ(ta.val[e], tb.val[e]);
  }
  int best = 1;
  for (int e = 2; e <= EPOCHS; e++)
    if (tb.val[e] < tb.val[best]) best = e;
  ASSERT_MSG(best != EPOCHS, "the best epoch is the last (%d): the test needs another", best);
  /* keep_last: the last epoch's weights; without: the best epoch's. */
  ASSERT_EQ(ra.best_epoch, EPOCHS);
  ASSERT_EQ(rb.best_epoch, best);
  double va, vb;
  ASSERT_OK(moe_trainer_eval(a, &va_d, MOE_METRIC_RMSE, &va));
  ASSERT_OK(moe_trainer_eval(b, &va_d, MOE_METRIC_RMSE, &vb));
  ASSERT_NEAR(va, ta.val[EPOCHS], 1e-9);
  ASSERT_NEAR(ra.best_metric, ta.val[EPOCHS], 1e-9);
  ASSERT_NEAR(vb, tb.val[best], 1e-9);
  ASSERT_OP(vb, <, va);
  moe_trainer_free(a);
  moe_trainer_free(b);
}
