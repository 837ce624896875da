/*
 * The convex start of a text bag (moe_trainer_fit_linear, moe/train.h): multinomial logistic
 * regression with an L2 penalty on the bag's own features, solved by L-BFGS, written into the
 * model so that the model computes exactly that linear classifier.
 *
 * Why: a bag with "head_norm": false and n_labels <= d_model is, before its MoE block, a linear
 * model of the weighted, L2-normalised bag (logits = W_head sum_t w_t tok[t] + b). Trained by
 * SGD from a random start it lands on a different optimum per seed (+-0.02 macro-F1 between
 * seeds) and lost to TF-IDF + logistic regression on held-out notes. The penalised problem is
 * convex: its one solution is what that baseline computes on these features, without seed noise,
 * and fine-tuning (or the MoE block) can only start from it. Put into the model as
 * tok[t][k] = B[k][t] for k < n_labels (the other dimensions 0), the head the identity on the
 * first n_labels dimensions with the intercepts as bias, and every expert's down projection 0 so
 * that the MoE block adds nothing until fine-tuning teaches it something.
 *
 * The objective is scikit-learn's LogisticRegression (lbfgs, multinomial) divided by C n:
 *   (1/n) sum_r cw[y_r] (logsumexp(z_r) - z_r[y_r]) + 1/(2 C n) |B|^2,  z_r = B x_r + b,
 * with cw the trainer's class weights (1 without) and the intercepts b not penalised. Only the
 * pieces that occur in the training rows get a column: the others' optimum is 0. Everything is in
 * double and deterministic (no randomness, a fixed order of sums).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc-impl.h"
#include "trainer/trainer-impl.h"

#define LIN_HISTORY 10 /* L-BFGS correction pairs */

/* The training rows as sparse features over the used pieces: row r's entries at
 * [rs[r], rs[r + 1]) of col (dense column index) and val (w_t). */
typedef struct lin_data_s {
  int n, K, V;     /* rows, classes, used pieces */
  int *rs, *col;
  double *val;
  int32_t *label;
  double *rw;      /* (n) cw[y_r] / n */
  int32_t *piece;  /* (V) vocabulary id of each column */
  double lambda;   /* 1 / (C n) */
} lin_data_t;

static void lin_data_free(lin_data_t *ld) {
  moe__free(ld->rs);
  moe__free(ld->col);
  moe__free(ld->val);
  moe__free(ld->label);
  moe__free(ld->rw);
  moe__free(ld->piece);
}

/* The bag weights of encode_bag (graph.c) with the trainer's current piece weights. */
static int lin_data_build(moe_trainer_t *tr, const moe_train_data_t *d, lin_data_t *ld) {
  const moe__config_t *cfg = &tr->cfg;
  const int n = d->n_rows, ml = cfg->max_len;
  int32_t *uniq = moe__malloc((size_t)ml * sizeof(int32_t)), *count = moe__malloc((size_t)ml * sizeof(int32_t));
  int32_t *colof = moe__malloc((size_t)cfg->vocab_size * sizeof(int32_t));
  size_t nnz = 0;
  int rc = MOE_ENOMEM;
  memset(ld, 0, sizeof *ld);
  ld->n = n;
  ld->K = tr->n_out;
  ld->rs = moe__malloc((size_t)(n + 1) * sizeof(int));
  ld->label = moe__malloc((size_t)n * sizeof(int32_t));
  ld->rw = moe__malloc((size_t)n * sizeof(double));
  if (!uniq || !count || !colof || !ld->rs || !ld->label || !ld->rw) goto out;
  rc = MOE_EDATA;
  for (int r = 0; r < n; r++) {
    const int nt = d->n_tokens[r];
    if (nt < 1 || nt > ml) {
      snprintf(tr->err, sizeof tr->err, "row %d: %d tokens, expected 1 to max_len %d", r, nt, ml);
      goto out;
    }
    for (int i = 0; i < nt; i++) {
      const int id = d->tokens[(size_t)r * ml + i];
      if (id < 0 || id >= cfg->vocab_size) {
        snprintf(tr->err, sizeof tr->err, "row %d: token %d has id %d, outside [0, %d)", r, i, id, cfg->vocab_size);
        goto out;
      }
    }
    nnz += (size_t)moe__bag_counts(d->tokens + (size_t)r * ml, nt, uniq, count);
  }
  rc = MOE_ENOMEM;
  ld->col = moe__malloc((nnz + 1) * sizeof(int));
  ld->val = moe__malloc((nnz + 1) * sizeof(double));
  ld->piece = moe__malloc((nnz + 1) * sizeof(int32_t));
  if (!ld->col || !ld->val || !ld->piece) goto out;
  for (int t = 0; t < cfg->vocab_size; t++) colof[t] = -1;
  ld->rs[0] = 0;
  for (int r = 0; r < n; r++) {
    const int lo = ld->rs[r];
    const int k = moe__bag_counts(d->tokens + (size_t)r * ml, d->n_tokens[r], uniq, count);
    double ss = 0;
    for (int i = 0; i < k; i++) {
      const double u = (1.0 + log((double)count[i])) * (tr->idf != TR_NONE ? (double)tr->p[tr->idf + uniq[i]] : 1.0);
      ld->val[lo + i] = u;
      ss += u * u;
    }
    const double inv = ss > 0 ? 1.0 / sqrt(ss) : 0;
    for (int i = 0; i < k; i++) {
      ld->val[lo + i] *= inv;
      if (colof[uniq[i]] < 0) {
        colof[uniq[i]] = ld->V;
        ld->piece[ld->V++] = uniq[i];
      }
      ld->col[lo + i] = colof[uniq[i]];
    }
    ld->rs[r + 1] = lo + k;
    ld->label[r] = d->label[r];
    ld->rw[r] = (tr->class_w != NULL ? (double)tr->class_w[d->label[r]] : 1.0) / n;
  }
  rc = MOE_OK;
out:
  moe__free(uniq);
  moe__free(count);
  moe__free(colof);
  return rc;
}

/* f(x) and its gradient g; x = (B (V, K) row-major, then b (K)). z is (K) scratch. */
static double lin_objective(const lin_data_t *ld, const double *x, double *g, double *z) {
  const int K = ld->K;
  const size_t nb = (size_t)ld->V * K;
  const double *b = x + nb;
  double f = 0;
  memset(g, 0, (nb + (size_t)K) * sizeof(double));
  for (int r = 0; r < ld->n; r++) {
    for (int k = 0; k < K; k++) z[k] = b[k];
    for (int i = ld->rs[r]; i < ld->rs[r + 1]; i++) {
      const double v = ld->val[i];
      const double *B = x + (size_t)ld->col[i] * K;
      for (int k = 0; k < K; k++) z[k] += v * B[k];
    }
    double mx = z[0], s = 0;
    for (int k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
    for (int k = 0; k < K; k++) s += exp(z[k] - mx);
    const double lse = mx + log(s), w = ld->rw[r];
    f += w * (lse - z[ld->label[r]]);
    /* z becomes dLoss/dz: w (softmax - onehot). */
    for (int k = 0; k < K; k++) z[k] = w * exp(z[k] - lse);
    z[ld->label[r]] -= w;
    for (int k = 0; k < K; k++) g[nb + (size_t)k] += z[k];
    for (int i = ld->rs[r]; i < ld->rs[r + 1]; i++) {
      const double v = ld->val[i];
      double *G = g + (size_t)ld->col[i] * K;
      for (int k = 0; k < K; k++) G[k] += v * z[k];
    }
  }
  double sq = 0;
  for (size_t j = 0; j < nb; j++) {
    sq += x[j] * x[j];
    g[j] += ld->lambda * x[j];
  }
  return f + 0.5 * ld->lambda * sq;
}

static double dot(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

static double max_abs(const double *a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
  return m;
}

/* L-BFGS (two-loop recursion) with a backtracking Armijo line search, from x = 0. */
static int lin_solve(moe_trainer_t *tr, const lin_data_t *ld, const moe_linear_opts_t *lo, double *x,
                     moe_linear_result_t *res) {
  const size_t D = (size_t)ld->V * ld->K + (size_t)ld->K;
  const int M = LIN_HISTORY;
  double *S = moe__malloc((size_t)M * D * sizeof(double)), *Y = moe__malloc((size_t)M * D * sizeof(double));
  double *g = moe__malloc(D * sizeof(double)), *gn = moe__malloc(D * sizeof(double));
  double *dir = moe__malloc(D * sizeof(double)), *xn = moe__malloc(D * sizeof(double));
  double *z = moe__malloc((size_t)ld->K * sizeof(double));
  double rho[LIN_HISTORY], alpha[LIN_HISTORY];
  int rc = MOE_ENOMEM, hn = 0, head = 0, it = 0;
  if (!S || !Y || !g || !gn || !dir || !xn || !z) goto out;
  memset(x, 0, D * sizeof(double));
  double f = lin_objective(ld, x, g, z);
  for (it = 0; it < lo->max_iter && max_abs(g, D) > lo->tol; it++) {
    /* dir = -H g */
    for (size_t j = 0; j < D; j++) dir[j] = -g[j];
    for (int h = 0; h < hn; h++) {
      const int i = (head - 1 - h + M) % M;
      alpha[i] = rho[i] * dot(S + (size_t)i * D, dir, D);
      const double *y = Y + (size_t)i * D;
      for (size_t j = 0; j < D; j++) dir[j] -= alpha[i] * y[j];
    }
    if (hn > 0) {
      const int i = (head - 1 + M) % M;
      const double gamma = dot(S + (size_t)i * D, Y + (size_t)i * D, D) / dot(Y + (size_t)i * D, Y + (size_t)i * D, D);
      for (size_t j = 0; j < D; j++) dir[j] *= gamma;
    }
    for (int h = hn - 1; h >= 0; h--) {
      const int i = (head - 1 - h + M) % M;
      const double beta = rho[i] * dot(Y + (size_t)i * D, dir, D);
      const double *s = S + (size_t)i * D;
      for (size_t j = 0; j < D; j++) dir[j] += (alpha[i] - beta) * s[j];
    }
    double gd = dot(g, dir, D);
    if (!(gd < 0)) { /* not a descent direction: forget the history, go down the gradient */
      hn = 0;
      for (size_t j = 0; j < D; j++) dir[j] = -g[j];
      gd = dot(g, dir, D);
    }
    double step = hn > 0 ? 1.0 : fmin(1.0, 1.0 / sqrt(-gd));
    double fn = 0;
    int ls;
    for (ls = 0; ls < 40; ls++) {
      for (size_t j = 0; j < D; j++) xn[j] = x[j] + step * dir[j];
      fn = lin_objective(ld, xn, gn, z);
      if (fn <= f + 1e-4 * step * gd) break;
      step *= 0.5;
    }
    if (ls == 40 || !isfinite(fn)) break; /* no decrease left at double precision */
    double *s = S + (size_t)head * D, *y = Y + (size_t)head * D;
    for (size_t j = 0; j < D; j++) {
      s[j] = xn[j] - x[j];
      y[j] = gn[j] - g[j];
    }
    const double sy = dot(s, y, D);
    if (sy > 1e-12) {
      rho[head] = 1.0 / sy;
      head = (head + 1) % M;
      hn = hn < M ? hn + 1 : M;
    }
    memcpy(x, xn, D * sizeof(double));
    memcpy(g, gn, D * sizeof(double));
    const double df = f - fn;
    f = fn;
    if (df <= 1e-12 * fmax(1.0, fabs(f))) {
      it++;
      break;
    }
  }
  res->iterations = it;
  res->objective = f;
  res->grad_max = max_abs(g, D);
  res->n_pieces = ld->V;
  rc = MOE_OK;
out:
  moe__free(S);
  moe__free(Y);
  moe__free(g);
  moe__free(gn);
  moe__free(dir);
  moe__free(xn);
  moe__free(z);
  (void)tr;
  return rc;
}

int moe_trainer_fit_linear(moe_trainer_t *tr, const moe_train_data_t *train, const moe_linear_opts_t *lo,
                           moe_linear_result_t *res) {
  const moe__config_t *cfg = &tr->cfg;
  const int K = tr->n_out, d = tr->d;
  lin_data_t ld;
  double *x = NULL;
  int rc;
  memset(res, 0, sizeof *res);
  tr->err[0] = '\0';
  if (cfg->enc != MOE_ENCODER_TEXT || !cfg->text_bag || !cfg->no_head_norm || cfg->task != MOE_TASK_MULTICLASS ||
      K > d) {
    snprintf(tr->err, sizeof tr->err,
             "fit_linear needs a multiclass text bag with \"head_norm\": false and n_labels (%d) <= d_model (%d)", K,
             d);
    return MOE_EINVAL;
  }
  if (!(lo->c > 0) || !isfinite(lo->c) || lo->max_iter < 1 || !(lo->tol >= 0)) {
    snprintf(tr->err, sizeof tr->err, "fit_linear: c %g (> 0), max_iter %d (>= 1), tol %g (>= 0)", lo->c,
             lo->max_iter, lo->tol);
    return MOE_EINVAL;
  }
  if (train->n_rows < 1 || train->tokens == NULL || train->n_tokens == NULL) {
    snprintf(tr->err, sizeof tr->err, "fit_linear: the data has no token rows");
    return MOE_EINVAL;
  }
  for (int r = 0; r < train->n_rows; r++)
    if (train->label == NULL || train->label[r] < 0 || train->label[r] >= K) {
      snprintf(tr->err, sizeof tr->err, "fit_linear: row %d: %s", r,
               train->label == NULL ? "the data has no labels" : "label outside [0, n_labels)");
      return train->label == NULL ? MOE_EINVAL : MOE_EDATA;
    }
  if ((rc = lin_data_build(tr, train, &ld)) != MOE_OK) goto out;
  ld.lambda = 1.0 / (lo->c * train->n_rows);
  rc = MOE_ENOMEM;
  if ((x = moe__malloc(((size_t)ld.V * K + (size_t)K) * sizeof(double))) == NULL) goto out;
  if ((rc = lin_solve(tr, &ld, lo, x, res)) != MOE_OK) goto out;
  /* Into the model: embeddings carry the coefficients, the head is the identity. */
  tr_real *tok = tr->p + tr->tok;
  memset(tok, 0, (size_t)cfg->vocab_size * d * sizeof(tr_real));
  for (int v = 0; v < ld.V; v++)
    for (int k = 0; k < K; k++) tok[(size_t)ld.piece[v] * d + k] = (tr_real)x[(size_t)v * K + k];
  tr_real *hw = tr->p + tr->head.w, *hb = tr->p + tr->head.b;
  memset(hw, 0, (size_t)K * d * sizeof(tr_real));
  for (int k = 0; k < K; k++) {
    hw[(size_t)k * d + k] = 1;
    hb[k] = (tr_real)x[(size_t)ld.V * K + k];
  }
  for (int b = 0; b < cfg->n_moe; b++) {
    const tr_block_t *blk = &tr->blocks[b];
    for (int e = 0; e < blk->cfg.n_expert; e++)
      memset(tr->p + blk->experts[e].down.w, 0, (size_t)d * blk->cfg.d_ff * sizeof(tr_real));
    for (int s = 0; s < blk->cfg.n_shared; s++)
      memset(tr->p + blk->shared[s].down.w, 0, (size_t)d * blk->cfg.d_ff * sizeof(tr_real));
  }
  if (tr->fq != NULL) moe__tr_fake_quant_all(tr);
  rc = MOE_OK;
out:
  lin_data_free(&ld);
  moe__free(x);
  return rc;
}
