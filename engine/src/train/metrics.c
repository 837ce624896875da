/*
 * The evaluation metrics of moe/metrics.h. The ranking metrics sort one (score, label) copy
 * and walk it one group of tied scores at a time, which is what makes ties come out as
 * sklearn's do: a group of equal scores is one threshold, never split.
 */
#include "moe/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc-impl.h"

typedef struct scored_s {
  double score;
  int label;
} scored_t;

static int cmp_desc(const void *a, const void *b) {
  double x = ((const scored_t *)a)->score, y = ((const scored_t *)b)->score;
  return (x < y) - (x > y);
}

/* A copy sorted by descending score, with the class totals; NaN scores are rejected. */
static moe_err_t sorted_copy(const double *score, const uint8_t *label, size_t n,
                             scored_t **out, size_t *n_pos) {
  if (n == 0) return MOE_EINVAL;
  scored_t *s = moe__reallocarray(NULL, n, sizeof(*s));
  if (s == NULL) return MOE_ENOMEM;
  size_t pos = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(score[i])) {
      moe__free(s);
      return MOE_EINVAL;
    }
    s[i].score = score[i];
    s[i].label = label[i] != 0;
    pos += (size_t)s[i].label;
  }
  qsort(s, n, sizeof(*s), cmp_desc);
  *out = s;
  *n_pos = pos;
  return MOE_OK;
}

moe_err_t moe_metric_pr_auc(const double *score, const uint8_t *label, size_t n, double *out) {
  scored_t *s;
  size_t n_pos;
  moe_err_t err = sorted_copy(score, label, n, &s, &n_pos);
  if (err != MOE_OK) return err;
  if (n_pos == 0) {
    moe__free(s);
    return MOE_ERANGE;
  }
  double ap = 0, prev_recall = 0;
  size_t tp = 0, fp = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    for (; j < n && s[j].score == s[i].score; j++) {
      tp += (size_t)s[j].label;
      fp += (size_t)!s[j].label;
    }
    double recall = (double)tp / (double)n_pos, precision = (double)tp / (double)(tp + fp);
    ap += (recall - prev_recall) * precision;
    prev_recall = recall;
    i = j;
  }
  moe__free(s);
  *out = ap;
  return MOE_OK;
}

moe_err_t moe_metric_roc_auc(const double *score, const uint8_t *label, size_t n, double *out) {
  scored_t *s;
  size_t n_pos;
  moe_err_t err = sorted_copy(score, label, n, &s, &n_pos);
  if (err != MOE_OK) return err;
  size_t n_neg = n - n_pos;
  if (n_pos == 0 || n_neg == 0) {
    moe__free(s);
    return MOE_ERANGE;
  }
  /* Pairs (positive above negative) + half the tied pairs, counted group by group. */
  double wins = 0;
  size_t neg_below = n_neg;
  for (size_t i = 0; i < n;) {
    size_t j = i, p = 0, q = 0;
    for (; j < n && s[j].score == s[i].score; j++) {
      p += (size_t)s[j].label;
      q += (size_t)!s[j].label;
    }
    neg_below -= q;
    wins += (double)p * (double)neg_below + 0.5 * (double)p * (double)q;
    i = j;
  }
  moe__free(s);
  *out = wins / ((double)n_pos * (double)n_neg);
  return MOE_OK;
}

moe_err_t moe_metric_recall_at_fpr(const double *score, const uint8_t *label, size_t n,
                                   double max_fpr, double *recall, double *threshold) {
  scored_t *s;
  size_t n_pos;
  moe_err_t err = sorted_copy(score, label, n, &s, &n_pos);
  if (err != MOE_OK) return err;
  size_t n_neg = n - n_pos;
  if (n_pos == 0 || n_neg == 0) {
    moe__free(s);
    return MOE_ERANGE;
  }
  double best = 0, best_thr = INFINITY;
  size_t tp = 0, fp = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    for (; j < n && s[j].score == s[i].score; j++) {
      tp += (size_t)s[j].label;
      fp += (size_t)!s[j].label;
    }
    /* The false-positive rate only grows from here on. */
    if ((double)fp / (double)n_neg > max_fpr) break;
    double tpr = (double)tp / (double)n_pos;
    if (tpr > best) {
      best = tpr;
      best_thr = s[i].score;
    }
    i = j;
  }
  moe__free(s);
  *recall = best;
  if (threshold != NULL) *threshold = best_thr;
  return MOE_OK;
}

moe_err_t moe_metric_binary_counts(const double *score, const uint8_t *label, size_t n,
                                   double threshold, moe_binary_counts_t *out) {
  if (n == 0) return MOE_EINVAL;
  moe_binary_counts_t c = {0, 0, 0, 0};
  for (size_t i = 0; i < n; i++) {
    if (isnan(score[i])) return MOE_EINVAL;
    int pred = score[i] >= threshold, y = label[i] != 0;
    if (pred && y) c.tp++;
    else if (pred) c.fp++;
    else if (y) c.fn++;
    else c.tn++;
  }
  *out = c;
  return MOE_OK;
}

void moe_metric_prf(const moe_binary_counts_t *c, double *precision, double *recall,
                    double *f1) {
  double p = c->tp + c->fp ? (double)c->tp / (double)(c->tp + c->fp) : 0.0;
  double r = c->tp + c->fn ? (double)c->tp / (double)(c->tp + c->fn) : 0.0;
  size_t d = 2 * c->tp + c->fp + c->fn;
  if (precision != NULL) *precision = p;
  if (recall != NULL) *recall = r;
  if (f1 != NULL) *f1 = d ? 2.0 * (double)c->tp / (double)d : 0.0;
}

moe_err_t moe_metric_best_f1_threshold(const double *score, const uint8_t *label, size_t n,
                                       double *threshold, double *f1) {
  scored_t *s;
  size_t n_pos;
  moe_err_t err = sorted_copy(score, label, n, &s, &n_pos);
  if (err != MOE_OK) return err;
  if (n_pos == 0) {
    moe__free(s);
    return MOE_ERANGE;
  }
  double best = -1, best_thr = s[0].score;
  size_t tp = 0, fp = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    for (; j < n && s[j].score == s[i].score; j++) {
      tp += (size_t)s[j].label;
      fp += (size_t)!s[j].label;
    }
    /* F1 = 2tp / (2tp + fp + fn), with fn = n_pos - tp. */
    double f = 2.0 * (double)tp / (double)(tp + fp + n_pos);
    if (f > best) {
      best = f;
      best_thr = s[i].score;
    }
    i = j;
  }
  moe__free(s);
  *threshold = best_thr;
  if (f1 != NULL) *f1 = best;
  return MOE_OK;
}

moe_err_t moe_metric_accuracy(const int32_t *pred, const int32_t *truth, size_t n,
                              double *out) {
  if (n == 0) return MOE_EINVAL;
  size_t ok = 0;
  for (size_t i = 0; i < n; i++) ok += pred[i] == truth[i];
  *out = (double)ok / (double)n;
  return MOE_OK;
}

moe_err_t moe_metric_macro_f1(const int32_t *pred, const int32_t *truth, size_t n,
                              size_t n_class, double *out) {
  if (n == 0 || n_class == 0) return MOE_EINVAL;
  /* Per class: tp, predicted count, true count. */
  size_t *cnt = moe__calloc(n_class * 3, sizeof(size_t));
  if (cnt == NULL) return MOE_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (pred[i] < 0 || truth[i] < 0 || (size_t)pred[i] >= n_class ||
        (size_t)truth[i] >= n_class) {
      moe__free(cnt);
      return MOE_EINVAL;
    }
    cnt[(size_t)pred[i] * 3 + 1]++;
    cnt[(size_t)truth[i] * 3 + 2]++;
    if (pred[i] == truth[i]) cnt[(size_t)pred[i] * 3]++;
  }
  double sum = 0;
  size_t present = 0;
  for (size_t c = 0; c < n_class; c++) {
    size_t tp = cnt[c * 3], np = cnt[c * 3 + 1], nt = cnt[c * 3 + 2];
    if (np == 0 && nt == 0) continue;
    present++;
    sum += 2.0 * (double)tp / (double)(np + nt);
  }
  moe__free(cnt);
  *out = sum / (double)present;
  return MOE_OK;
}

moe_err_t moe_metric_rmse(const double *pred, const double *truth, size_t n, double *out) {
  if (n == 0) return MOE_EINVAL;
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (pred[i] - truth[i]) * (pred[i] - truth[i]);
  *out = sqrt(s / (double)n);
  return MOE_OK;
}

moe_err_t moe_metric_mae(const double *pred, const double *truth, size_t n, double *out) {
  if (n == 0) return MOE_EINVAL;
  double s = 0;
  for (size_t i = 0; i < n; i++) s += fabs(pred[i] - truth[i]);
  *out = s / (double)n;
  return MOE_OK;
}

moe_err_t moe_metric_phm_score(const double *pred, const double *truth, size_t n,
                               double *out) {
  if (n == 0) return MOE_EINVAL;
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double d = pred[i] - truth[i];
    s += d < 0 ? expm1(-d / 13.0) : expm1(d / 10.0);
  }
  *out = s;
  return MOE_OK;
}
