/*
 * Tests of moe/metrics.h: small cases worked out by hand (in the comments), and random cases
 * with ties whose expected values sklearn computed (metrics-fixture.h, written by
 * make-metrics-fixture.py).
 */
#include "test.h"

#include "moe/metrics.h"
#include "metrics-fixture.h"

#define TOL 1e-12

TEST(pr_auc_by_hand) {
  /* Thresholds 0.9: R .5 P 1; 0.8: R .5; 0.7: R 1 P 2/3 -> .5 * 1 + .5 * 2/3 = 5/6. */
  const double s[4] = {0.9, 0.8, 0.7, 0.6};
  const uint8_t y[4] = {1, 0, 1, 0};
  double v;
  ASSERT_OK(moe_metric_pr_auc(s, y, 4, &v));
  ASSERT_NEAR(v, 5.0 / 6.0, TOL);
  /* All tied: one threshold, recall 1 at precision 1/2. */
  const double t[4] = {0.5, 0.5, 0.5, 0.5};
  ASSERT_OK(moe_metric_pr_auc(t, y, 4, &v));
  ASSERT_NEAR(v, 0.5, TOL);
  ASSERT_OK(moe_metric_roc_auc(t, y, 4, &v));
  ASSERT_NEAR(v, 0.5, TOL);
}

TEST(roc_auc_by_hand) {
  /* Positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs ordered. */
  const double s[4] = {0.1, 0.4, 0.35, 0.8};
  const uint8_t y[4] = {0, 0, 1, 1};
  double v;
  ASSERT_OK(moe_metric_roc_auc(s, y, 4, &v));
  ASSERT_NEAR(v, 0.75, TOL);
  /* A tie between a positive and a negative counts one half: (1 + 0.5) / 2. */
  const double t[3] = {0.2, 0.7, 0.7};
  const uint8_t z[3] = {0, 0, 1};
  ASSERT_OK(moe_metric_roc_auc(t, z, 3, &v));
  ASSERT_NEAR(v, 0.75, TOL);
}

TEST(recall_at_fpr_by_hand) {
  /* Descending: 0.9+ 0.8- 0.7+ 0.6+ 0.5-. At fpr 0 recall is 1/3 (threshold 0.9); one false
   * positive (fpr 1/2) reaches recall 1 at threshold 0.6. */
  const double s[5] = {0.9, 0.8, 0.7, 0.6, 0.5};
  const uint8_t y[5] = {1, 0, 1, 1, 0};
  double r, thr;
  ASSERT_OK(moe_metric_recall_at_fpr(s, y, 5, 0.0, &r, &thr));
  ASSERT_NEAR(r, 1.0 / 3.0, TOL);
  ASSERT_NEAR(thr, 0.9, TOL);
  ASSERT_OK(moe_metric_recall_at_fpr(s, y, 5, 0.5, &r, &thr));
  ASSERT_NEAR(r, 1.0, TOL);
  ASSERT_NEAR(thr, 0.6, TOL);
}

TEST(threshold_counts_and_best_f1_by_hand) {
  const double s[5] = {0.9, 0.8, 0.7, 0.6, 0.5};
  const uint8_t y[5] = {1, 0, 1, 1, 0};
  moe_binary_counts_t c;
  ASSERT_OK(moe_metric_binary_counts(s, y, 5, 0.7, &c));
  ASSERT_EQ(c.tp, 2);
  ASSERT_EQ(c.fp, 1);
  ASSERT_EQ(c.fn, 1);
  ASSERT_EQ(c.tn, 1);
  double p, r, f;
  moe_metric_prf(&c, &p, &r, &f);
  ASSERT_NEAR(p, 2.0 / 3.0, TOL);
  ASSERT_NEAR(r, 2.0 / 3.0, TOL);
  ASSERT_NEAR(f, 2.0 / 3.0, TOL);
  /* F1 by threshold: .9 -> 2/4, .8 -> 2/5, .7 -> 4/6, .6 -> 6/7, .5 -> 6/8: best 6/7 at .6. */
  double thr, best;
  ASSERT_OK(moe_metric_best_f1_threshold(s, y, 5, &thr, &best));
  ASSERT_NEAR(thr, 0.6, TOL);
  ASSERT_NEAR(best, 6.0 / 7.0, TOL);
  /* Nothing predicted: precision and F1 are 0, not NaN. */
  ASSERT_OK(moe_metric_binary_counts(s, y, 5, 2.0, &c));
  moe_metric_prf(&c, &p, &r, &f);
  ASSERT_EQ(p, 0);
  ASSERT_EQ(f, 0);
}

TEST(classes_by_hand) {
  /* Class 0: tp 2, predicted 4, true 2 -> F1 2/3. Class 1 never predicted -> 0. */
  const int32_t truth[4] = {0, 0, 1, 1}, pred[4] = {0, 0, 0, 0};
  double v;
  ASSERT_OK(moe_metric_accuracy(pred, truth, 4, &v));
  ASSERT_NEAR(v, 0.5, TOL);
  ASSERT_OK(moe_metric_macro_f1(pred, truth, 4, 3, &v));
  ASSERT_NEAR(v, 1.0 / 3.0, TOL); /* class 2 is absent everywhere: not averaged */
  const int32_t bad[4] = {0, 0, 3, 0};
  ASSERT_EQ(moe_metric_macro_f1(bad, truth, 4, 3, &v), MOE_EINVAL);
}

TEST(regression_by_hand) {
  /* Late by 10 and early by 13 each cost e - 1 in PHM08; errors 10 and 13. */
  const double truth[2] = {50, 80}, pred[2] = {60, 67};
  double v;
  ASSERT_OK(moe_metric_phm_score(pred, truth, 2, &v));
  ASSERT_NEAR(v, 2.0 * (exp(1.0) - 1.0), TOL);
  ASSERT_OK(moe_metric_rmse(pred, truth, 2, &v));
  ASSERT_NEAR(v, sqrt((100.0 + 169.0) / 2.0), TOL);
  ASSERT_OK(moe_metric_mae(pred, truth, 2, &v));
  ASSERT_NEAR(v, 11.5, TOL);
}

TEST(undefined_and_bad_input) {
  const double s[3] = {0.1, 0.2, 0.3};
  const uint8_t none[3] = {0, 0, 0}, all[3] = {1, 1, 1};
  double v = 42, r, thr;
  ASSERT_EQ(moe_metric_pr_auc(s, none, 3, &v), MOE_ERANGE);
  ASSERT_EQ(moe_metric_roc_auc(s, all, 3, &v), MOE_ERANGE);
  ASSERT_EQ(moe_metric_recall_at_fpr(s, none, 3, 0.01, &r, &thr), MOE_ERANGE);
  ASSERT_EQ(v, 42); /* untouched on error */
  const double nan_s[2] = {0.1, NAN};
  const uint8_t y[2] = {0, 1};
  ASSERT_EQ(moe_metric_roc_auc(nan_s, y, 2, &v), MOE_EINVAL);
  ASSERT_EQ(moe_metric_rmse(s, s, 0, &v), MOE_EINVAL);
}

TEST(binary_against_sklearn) {
  for (size_t k = 0; k < sizeof(bin_cases) / sizeof(bin_cases[0]); k++) {
    const bin_case_t *c = &bin_cases[k];
    double v, r, thr;
    ASSERT_OK(moe_metric_pr_auc(c->score, c->label, c->n, &v));
    ASSERT_NEAR(v, c->pr_auc, 1e-12);
    ASSERT_OK(moe_metric_roc_auc(c->score, c->label, c->n, &v));
    ASSERT_NEAR(v, c->roc_auc, 1e-12);
    ASSERT_OK(moe_metric_recall_at_fpr(c->score, c->label, c->n, 0.01, &r, &thr));
    ASSERT_NEAR(r, c->recall_at_1pct_fpr, 1e-12);
    ASSERT_OK(moe_metric_recall_at_fpr(c->score, c->label, c->n, 0.10, &r, &thr));
    ASSERT_NEAR(r, c->recall_at_10pct_fpr, 1e-12);
    moe_binary_counts_t cnt;
    ASSERT_OK(moe_metric_binary_counts(c->score, c->label, c->n, c->threshold, &cnt));
    double p, rc, f;
    moe_metric_prf(&cnt, &p, &rc, &f);
    ASSERT_NEAR(p, c->precision, 1e-12);
    ASSERT_NEAR(rc, c->recall, 1e-12);
    ASSERT_NEAR(f, c->f1, 1e-12);
    ASSERT_OK(moe_metric_best_f1_threshold(c->score, c->label, c->n, &thr, &f));
    ASSERT_NEAR(f, c->best_f1, 1e-12);
    /* The returned threshold must reproduce that F1. */
    ASSERT_OK(moe_metric_binary_counts(c->score, c->label, c->n, thr, &cnt));
    moe_metric_prf(&cnt, NULL, NULL, &v);
    ASSERT_NEAR(v, f, 1e-12);
  }
}

TEST(classes_and_regression_against_sklearn) {
  for (size_t k = 0; k < sizeof(cls_cases) / sizeof(cls_cases[0]); k++) {
    const cls_case_t *c = &cls_cases[k];
    double v;
    ASSERT_OK(moe_metric_accuracy(c->pred, c->truth, c->n, &v));
    ASSERT_NEAR(v, c->accuracy, 1e-12);
    ASSERT_OK(moe_metric_macro_f1(c->pred, c->truth, c->n, c->n_class, &v));
    ASSERT_NEAR(v, c->macro_f1, 1e-12);
  }
  size_t n = sizeof(reg_truth) / sizeof(reg_truth[0]);
  double v;
  ASSERT_OK(moe_metric_rmse(reg_pred, reg_truth, n, &v));
  ASSERT_NEAR(v, reg_rmse, 1e-12);
  ASSERT_OK(moe_metric_mae(reg_pred, reg_truth, n, &v));
  ASSERT_NEAR(v, reg_mae, 1e-12);
  ASSERT_OK(moe_metric_phm_score(reg_pred, reg_truth, n, &v));
  ASSERT_NEAR(v, reg_phm, 1e-9);
}
