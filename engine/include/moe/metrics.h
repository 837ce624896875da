/*
 * Evaluation metrics of the five domain tasks, computed the way the reference tools compute
 * them so that figures printed by `sluice eval` and by bench/quality/baselines.py (sklearn) are
 * the same numbers:
 *   binary     pr_auc (average precision, sklearn's step-wise definition, not the trapezoid),
 *              roc_auc (tied scores count one half), recall at a maximum false-positive rate,
 *              precision / recall / F1 at a threshold, and the threshold of best F1;
 *   classes    accuracy, macro F1;
 *   regression rmse, mae, and the PHM08 score of C-MAPSS.
 *
 * Conventions: a binary label is 0 or 1 (any non-zero counts as 1); a score predicts positive
 * when score >= threshold; class labels are 0-based indices. Every function returns MOE_OK and
 * writes *out, or MOE_EINVAL (n == 0, a class index out of range, a NaN score) or MOE_ERANGE
 * (a metric that is undefined for the data: no positive labels for pr_auc, a single class for
 * roc_auc), leaving *out untouched, or MOE_ENOMEM. All functions are pure and thread-safe; the
 * ones that sort allocate a temporary copy through the engine allocator.
 */
#ifndef MOE_METRICS_H
#define MOE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "moe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- binary ---------------------------------------------------------------- */

/*
 * Average precision: sum over distinct score thresholds, from high to low, of
 * (recall_k - recall_{k-1}) * precision_k (sklearn.metrics.average_precision_score).
 * Tied scores form one threshold. MOE_ERANGE when there is no positive label.
 */
moe_err_t moe_metric_pr_auc(const double *score, const uint8_t *label, size_t n, double *out);

/*
 * Area under the ROC curve: the probability that a random positive scores above a random
 * negative, ties counting one half (sklearn.metrics.roc_auc_score). MOE_ERANGE unless both
 * classes are present.
 */
moe_err_t moe_metric_roc_auc(const double *score, const uint8_t *label, size_t n, double *out);

/*
 * The highest recall (true-positive rate) over the thresholds whose false-positive rate is at
 * most max_fpr, i.e. max(tpr[fpr <= max_fpr]) over sklearn's roc_curve points (thresholds at
 * every distinct score, plus "nothing positive"). *threshold (may be NULL) gets the score at
 * which it is reached (+inf when only "nothing positive" qualifies). MOE_ERANGE unless both
 * classes are present.
 */
moe_err_t moe_metric_recall_at_fpr(const double *score, const uint8_t *label, size_t n,
                                   double max_fpr, double *recall, double *threshold);

typedef struct moe_binary_counts_s {
  size_t tp, fp, tn, fn;
} moe_binary_counts_t;

/* Confusion counts of "score >= threshold" against the labels. */
moe_err_t moe_metric_binary_counts(const double *score, const uint8_t *label, size_t n,
                                   double threshold, moe_binary_counts_t *out);

/*
 * Precision, recall and F1 from counts, with sklearn's zero_division=0: a ratio whose
 * denominator is zero is 0. Any out-pointer may be NULL.
 */
void moe_metric_prf(const moe_binary_counts_t *c, double *precision, double *recall, double *f1);

/*
 * The threshold, among the distinct scores, that maximises F1 of "score >= threshold"; ties go
 * to the highest threshold (fewest alerts). *f1 (may be NULL) gets that F1. MOE_ERANGE when
 * there is no positive label.
 */
moe_err_t moe_metric_best_f1_threshold(const double *score, const uint8_t *label, size_t n,
                                       double *threshold, double *f1);

/* ---- classes ------------------------------------------------------------------- */

/* Fraction of i with pred[i] == truth[i]. */
moe_err_t moe_metric_accuracy(const int32_t *pred, const int32_t *truth, size_t n, double *out);

/*
 * Unweighted mean of per-class F1 over the classes 0..n_class-1 that occur in truth or in
 * pred (sklearn f1_score(average="macro") with its default labels). A class that occurs in
 * truth but is never predicted has F1 0 and counts. MOE_EINVAL when a label is outside
 * [0, n_class).
 */
moe_err_t moe_metric_macro_f1(const int32_t *pred, const int32_t *truth, size_t n,
                              size_t n_class, double *out);

/* ---- regression -------------------------------------------------------------------- */

moe_err_t moe_metric_rmse(const double *pred, const double *truth, size_t n, double *out);
moe_err_t moe_metric_mae(const double *pred, const double *truth, size_t n, double *out);

/*
 * The PHM08 challenge score (Saxena et al. 2008), a sum over engines of
 * exp(-d/13) - 1 when d < 0 (early prediction) and exp(d/10) - 1 when d >= 0 (late), where
 * d = pred - truth. Lower is better; it is a sum, so it grows with the number of engines.
 */
moe_err_t moe_metric_phm_score(const double *pred, const double *truth, size_t n, double *out);

#ifdef __cplusplus
}
#endif
#endif /* MOE_METRICS_H */
