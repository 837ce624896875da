/*
 * The trainer's forward and backward passes for the tabular model: encoder (numeric
 * normalisation, categorical embeddings, enc.in), MoE blocks (pre-norm, router scores, top-k
 * with selection bias, gate weights, routed experts grouped by expert so that each runs one
 * GEMM, shared experts dense), head norm and head, and the losses. The forward pass mirrors
 * engine/src/moe/forward.c in fp32 arithmetic but keeps every intermediate the backward pass
 * needs in the trainer's arena.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>

#include "trainer/trainer-impl.h"

#define ALLOC_R(c) ((tr_real *)moe__arena_alloc(&tr->arena, (size_t)(c) * sizeof(tr_real)))
#define ALLOC_I(c) ((int32_t *)moe__arena_alloc(&tr->arena, (size_t)(c) * sizeof(int32_t)))

/* ---- BLAS in the trainer's precision --------------------------------------------------- */

/* C (M, N) = alpha op(A) op(B) + beta C, row-major. */
static void gemm(bool ta, bool tb, int M, int N, int K, tr_real alpha, const tr_real *A, int lda,
                 const tr_real *B, int ldb, tr_real beta, tr_real *C, int ldc) {
  if (M == 0 || N == 0) return;
#ifdef MOE_TRAIN_F64
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
              lda, B, ldb, beta, C, ldc);
#else
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
              lda, B, ldb, beta, C, ldc);
#endif
}

static tr_real sigm(tr_real x) {
  if (x >= 0) return 1 / (1 + exp(-x));
  tr_real e = exp(x);
  return e / (1 + e);
}

/* log(1 + exp(x)) without overflow. */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* ---- linear -------------------------------------------------------------------------- */

/* y (m, n) = x (m, k) W^T + b. */
static void lin_fwd(const tr_lin_t *L, const tr_real *W, const tr_real *x, int m, tr_real *y) {
  gemm(false, true, m, L->n, L->k, 1, x, L->k, W + L->w, L->k, 0, y, L->n);
  if (L->b != TR_NONE)
    for (int r = 0; r < m; r++)
      for (int j = 0; j < L->n; j++) y[(size_t)r * L->n + j] += W[L->b + j];
}

/* dW += dy^T x, db += sum dy, dx (= or +=, per accumulate) dy W; dx may be NULL. */
static void lin_bwd(const tr_lin_t *L, const tr_real *W, tr_real *G, const tr_real *x, const tr_real *dy, int m,
                    tr_real *dx, bool accumulate) {
  gemm(true, false, L->n, L->k, m, 1, dy, L->n, x, L->k, 1, G + L->w, L->k);
  if (L->b != TR_NONE)
    for (int r = 0; r < m; r++)
      for (int j = 0; j < L->n; j++) G[L->b + j] += dy[(size_t)r * L->n + j];
  if (dx != NULL) gemm(false, false, m, L->k, L->n, 1, dy, L->n, W + L->w, L->k, accumulate ? 1 : 0, dx, L->k);
}

/* ---- norms ----------------------------------------------------------------------------- */

static void norm_fwd(const moe_trainer_t *tr, const tr_norm_t *N, const tr_real *W, const tr_real *x, int m,
                     tr_real *y, tr_real *mu, tr_real *rs) {
  const int d = tr->d;
  const double eps = tr->cfg.norm_eps;
  for (int r = 0; r < m; r++) {
    const tr_real *xr = x + (size_t)r * d;
    tr_real *yr = y + (size_t)r * d;
    double mean = 0, var = 0;
    if (N->b != TR_NONE) {
      for (int j = 0; j < d; j++) mean += xr[j];
      mean /= d;
    }
    for (int j = 0; j < d; j++) var += (xr[j] - mean) * (xr[j] - mean);
    var /= d;
    const tr_real inv = (tr_real)(1.0 / sqrt(var + eps));
    mu[r] = (tr_real)mean;
    rs[r] = inv;
    for (int j = 0; j < d; j++) {
      tr_real v = (xr[j] - (tr_real)mean) * inv * W[N->w + j];
      yr[j] = N->b != TR_NONE ? v + W[N->b + j] : v;
    }
  }
}

/* dx (+)= norm backward of dy; dw, db into G. */
static void norm_bwd(const moe_trainer_t *tr, const tr_norm_t *N, const tr_real *W, tr_real *G, const tr_real *x,
                     const tr_real *mu, const tr_real *rs, const tr_real *dy, int m, tr_real *dx) {
  const int d = tr->d;
  const bool ln = N->b != TR_NONE;
  for (int r = 0; r < m; r++) {
    const tr_real *xr = x + (size_t)r * d, *dyr = dy + (size_t)r * d;
    tr_real *dxr = dx + (size_t)r * d;
    double mg = 0, mgx = 0;
    for (int j = 0; j < d; j++) {
      const tr_real xh = (xr[j] - mu[r]) * rs[r];
      const tr_real gj = dyr[j] * W[N->w + j];
      G[N->w + j] += dyr[j] * xh;
      if (ln) G[N->b + j] += dyr[j];
      mg += gj;
      mgx += gj * xh;
    }
    mg /= d;
    mgx /= d;
    for (int j = 0; j < d; j++) {
      const tr_real xh = (xr[j] - mu[r]) * rs[r];
      const tr_real gj = dyr[j] * W[N->w + j];
      dxr[j] += rs[r] * (gj - (ln ? (tr_real)mg : 0) - xh * (tr_real)mgx);
    }
  }
}

/* ---- SwiGLU feed-forward ------------------------------------------------------------- */

/* x (c, d) -> A, B (c, F) pre-activations, o (c, d). hbuf: scratch (c, F). */
static void ffn_fwd(const tr_ffn_t *f, const tr_real *W, const tr_real *x, int c, tr_real *A, tr_real *B,
                    tr_real *hbuf, tr_real *o) {
  const int F = f->gate.n;
  lin_fwd(&f->gate, W, x, c, A);
  lin_fwd(&f->up, W, x, c, B);
  for (size_t i = 0; i < (size_t)c * F; i++) hbuf[i] = A[i] * sigm(A[i]) * B[i];
  lin_fwd(&f->down, W, hbuf, c, o);
}

/* Given do (c, d): parameter gradients into G, dx (c, d) overwritten. hbuf, dA, dB: (c, F). */
static void ffn_bwd(const tr_ffn_t *f, const tr_real *W, tr_real *G, const tr_real *x, const tr_real *A,
                    const tr_real *B, const tr_real *dout, int c, tr_real *hbuf, tr_real *dA, tr_real *dB,
                    tr_real *dx) {
  const int F = f->gate.n;
  for (size_t i = 0; i < (size_t)c * F; i++) hbuf[i] = A[i] * sigm(A[i]) * B[i];
  lin_bwd(&f->down, W, G, hbuf, dout, c, dA, false); /* dA holds dH for now */
  for (size_t i = 0; i < (size_t)c * F; i++) {
    const tr_real sg = sigm(A[i]), dh = dA[i];
    dB[i] = dh * A[i] * sg;
    dA[i] = dh * B[i] * sg * (1 + A[i] * (1 - sg));
  }
  lin_bwd(&f->gate, W, G, x, dA, c, dx, false);
  lin_bwd(&f->up, W, G, x, dB, c, dx, true);
}

/* ---- routing ------------------------------------------------------------------------- */

void moe__tr_route_row(const moe__moe_cfg_t *cfg, const tr_real *s, const tr_real *bias, int32_t *ids,
                       tr_real *gates) {
  const int k = cfg->top_k;
  int n_sel = 0;
  for (int e = 0; e < cfg->n_expert; e++) {
    const tr_real sel = s[e] + bias[e];
    int pos = n_sel;
    while (pos > 0 && sel > s[ids[pos - 1]] + bias[ids[pos - 1]]) pos--;
    if (pos >= k) continue;
    for (int j = (n_sel < k ? n_sel : k - 1); j > pos; j--) ids[j] = ids[j - 1];
    ids[pos] = e;
    if (n_sel < k) n_sel++;
  }
  tr_real sum = 0;
  for (int j = 0; j < k; j++) {
    gates[j] = s[ids[j]];
    sum += gates[j];
  }
  const tr_real scale = cfg->normalize && sum > 0 ? (tr_real)cfg->route_scale / sum : (tr_real)cfg->route_scale;
  for (int j = 0; j < k; j++) gates[j] *= scale;
}

/* ---- forward --------------------------------------------------------------------------- */

static int block_fwd(moe_trainer_t *tr, const tr_block_t *blk, const tr_real *W, tr_real *h, int m,
                     tr_block_cache_t *bc) {
  const moe__moe_cfg_t *cfg = &blk->cfg;
  const int d = tr->d, E = cfg->n_expert, K = cfg->top_k, F = cfg->d_ff;
  bc->h = ALLOC_R((size_t)m * d);
  bc->u = ALLOC_R((size_t)m * d);
  bc->nmu = ALLOC_R(m);
  bc->nrs = ALLOC_R(m);
  bc->s = ALLOC_R((size_t)m * E);
  bc->ids = ALLOC_I((size_t)m * K);
  bc->gates = ALLOC_R((size_t)m * K);
  bc->count = ALLOC_I(E + 1);
  bc->slot_row = ALLOC_I((size_t)m * K);
  bc->slot_j = ALLOC_I((size_t)m * K);
  bc->A = ALLOC_R((size_t)m * K * F);
  bc->B = ALLOC_R((size_t)m * K * F);
  bc->O = ALLOC_R((size_t)m * K * d);
  bc->SA = moe__arena_alloc(&tr->arena, (size_t)(cfg->n_shared + 1) * sizeof(tr_real *));
  bc->SB = moe__arena_alloc(&tr->arena, (size_t)(cfg->n_shared + 1) * sizeof(tr_real *));
  tr_real *xg = ALLOC_R((size_t)m * d), *hb = ALLOC_R((size_t)m * F), *o = ALLOC_R((size_t)m * d);
  int32_t *fill = ALLOC_I(E);
  if (!bc->h || !bc->u || !bc->nmu || !bc->nrs || !bc->s || !bc->ids || !bc->gates || !bc->count ||
      !bc->slot_row || !bc->slot_j || !bc->A || !bc->B || !bc->O || !bc->SA || !bc->SB || !xg || !hb || !o || !fill)
    return MOE_ENOMEM;
  memcpy(bc->h, h, (size_t)m * d * sizeof(tr_real));
  norm_fwd(tr, &blk->norm, W, h, m, bc->u, bc->nmu, bc->nrs);
  lin_fwd(&blk->router, W, bc->u, m, bc->s);
  memset(bc->count, 0, (size_t)(E + 1) * sizeof(int32_t));
  for (int r = 0; r < m; r++) {
    tr_real *s = bc->s + (size_t)r * E;
    if (cfg->score == MOE__SCORE_SOFTMAX) {
      tr_real mx = s[0], sum = 0;
      for (int e = 1; e < E; e++) mx = s[e] > mx ? s[e] : mx;
      for (int e = 0; e < E; e++) sum += (s[e] = exp(s[e] - mx));
      for (int e = 0; e < E; e++) s[e] /= sum;
    } else {
      for (int e = 0; e < E; e++) s[e] = sigm(s[e]);
    }
    moe__tr_route_row(cfg, s, blk->sel_bias, bc->ids + (size_t)r * K, bc->gates + (size_t)r * K);
    for (int j = 0; j < K; j++) bc->count[bc->ids[(size_t)r * K + j] + 1]++;
  }
  for (int e = 0; e < E; e++) bc->count[e + 1] += bc->count[e];
  memcpy(fill, bc->count, (size_t)E * sizeof(int32_t));
  for (int r = 0; r < m; r++)
    for (int j = 0; j < K; j++) {
      const int e = bc->ids[(size_t)r * K + j];
      bc->slot_row[fill[e]] = r;
      bc->slot_j[fill[e]] = j;
      fill[e]++;
    }
  /* Residual: h += sum of gated expert outputs + shared outputs. */
  for (int e = 0; e < E; e++) {
    const int lo = bc->count[e], c = bc->count[e + 1] - lo;
    if (c == 0) continue;
    for (int i = 0; i < c; i++)
      memcpy(xg + (size_t)i * d, bc->u + (size_t)bc->slot_row[lo + i] * d, (size_t)d * sizeof(tr_real));
    tr_real *O = bc->O + (size_t)lo * d;
    ffn_fwd(&blk->experts[e], W, xg, c, bc->A + (size_t)lo * F, bc->B + (size_t)lo * F, hb, O);
    for (int i = 0; i < c; i++) {
      const int r = bc->slot_row[lo + i];
      const tr_real gw = bc->gates[(size_t)r * K + bc->slot_j[lo + i]];
      for (int j = 0; j < d; j++) h[(size_t)r * d + j] += gw * O[(size_t)i * d + j];
    }
  }
  for (int s = 0; s < cfg->n_shared; s++) {
    bc->SA[s] = ALLOC_R((size_t)m * F);
    bc->SB[s] = ALLOC_R((size_t)m * F);
    if (!bc->SA[s] || !bc->SB[s]) return MOE_ENOMEM;
    ffn_fwd(&blk->shared[s], W, bc->u, m, bc->SA[s], bc->SB[s], hb, o);
    for (size_t i = 0; i < (size_t)m * d; i++) h[i] += o[i];
  }
  return MOE_OK;
}

/* "row 3: feature 2 "amount" is nan": feat counts numeric features first, then categorical
 * ones (the attribution order of moe.h). */
static int row_err(moe_trainer_t *tr, const char *msg, int row, int feat, const char *name, double v) {
  snprintf(tr->err, sizeof tr->err, "row %d: feature %d \"%s\" %s %g", row, feat, name, msg, v);
  return MOE_EDATA;
}

/* ---- sensor encoder -------------------------------------------------------------------- */

/* Exact GELU (erf form) and SiLU, and their derivatives. */
static tr_real act(bool silu, tr_real z) { return silu ? z * sigm(z) : (tr_real)(0.5 * z * (1 + erf(z * M_SQRT1_2))); }
static tr_real act_grad(bool silu, tr_real z) {
  if (silu) {
    const tr_real sg = sigm(z);
    return sg * (1 + z * (1 - sg));
  }
  return (tr_real)(0.5 * (1 + erf(z * M_SQRT1_2)) + z * exp(-0.5 * (double)z * z) * 0.3989422804014327);
}

/* im2col of conv l: col (m t_out, c_in K), column i K + j = x[t stride + j, i] (the flattened
 * PyTorch weight (out, in, kernel) then multiplies it directly). */
static void im2col(const moe__conv_cfg_t *cc, int c_in, const tr_real *x, int m, int t_in, int t_out, tr_real *col) {
  const int K = cc->kernel;
  for (int r = 0; r < m; r++)
    for (int s = 0; s < t_out; s++) {
      tr_real *o = col + ((size_t)r * t_out + s) * c_in * K;
      for (int j = 0; j < K; j++) {
        const tr_real *xi = x + ((size_t)r * t_in + (size_t)s * cc->stride + j) * c_in;
        for (int i = 0; i < c_in; i++) o[i * K + j] = xi[i];
      }
    }
}

/* Pool "summary": the last conv layer's steps that row r reads (all without batch->n_steps). */
static int summary_steps(const moe__config_t *cfg, const moe_train_data_t *batch, int r) {
  return moe__sensor_pool_steps(cfg, batch->n_steps != NULL ? batch->n_steps[r] : 0);
}

/* The least-squares line over steps s0..t-1: its centre, and in *rise_w the factor that makes
 * sum_s (s - centre) x_s the rise over a window of t steps, (t - 1) * slope (0 for one step). */
static tr_real summary_line(int s0, int t, tr_real *rise_w) {
  const tr_real centre = (tr_real)s0 + (tr_real)0.5 * (tr_real)(t - 1 - s0);
  tr_real den = 0;
  for (int s = s0; s < t; s++) den += ((tr_real)s - centre) * ((tr_real)s - centre);
  *rise_w = den > 0 ? (tr_real)(t - 1) / den : 0;
  return centre;
}

static int encode_sensor(moe_trainer_t *tr, const tr_real *W, const moe_train_data_t *batch, tr_cache_t *c) {
  const moe__config_t *cfg = &tr->cfg;
  const int m = c->m, T = cfg->window, C = cfg->n_channels;
  if (batch->window == NULL) {
    snprintf(tr->err, sizeof tr->err, "batch: window is NULL but the model reads [%d, %d] readings", T, C);
    return MOE_EINVAL;
  }
  for (int r = 0; batch->n_steps != NULL && r < m; r++)
    if (batch->n_steps[r] < 0 || batch->n_steps[r] > T) {
      snprintf(tr->err, sizeof tr->err, "row %d: n_steps is %d, outside [0, %d] (0: the whole window)", r,
               (int)batch->n_steps[r], T);
      return MOE_EDATA;
    }
  c->cx = moe__arena_alloc(&tr->arena, (size_t)(cfg->n_conv + 1) * sizeof(tr_real *));
  c->cz = moe__arena_alloc(&tr->arena, (size_t)(cfg->n_conv + 1) * sizeof(tr_real *));
  c->ct = moe__arena_alloc(&tr->arena, (size_t)(cfg->n_conv + 1) * sizeof(int));
  if (!c->cx || !c->cz || !c->ct || !(c->cx[0] = ALLOC_R((size_t)m * T * C))) return MOE_ENOMEM;
  for (int r = 0; r < m; r++)
    for (int t = 0; t < T; t++)
      for (int i = 0; i < C; i++) {
        const float v = batch->window[((size_t)r * T + t) * C + i];
        if (!isfinite(v)) {
          snprintf(tr->err, sizeof tr->err, "row %d: channel %d \"%s\" at time step %d is %g", r, i,
                   cfg->channels[i].name, t, (double)v);
          return MOE_EDATA;
        }
        c->cx[0][((size_t)r * T + t) * C + i] = ((tr_real)v - cfg->channels[i].mean) / cfg->channels[i].std;
      }
  int t_in = T, c_in = C;
  c->ct[0] = T;
  for (int l = 0; l < cfg->n_conv; l++) {
    const tr_lin_t *L = &tr->conv[l];
    const int t_out = t_in < cfg->conv[l].kernel ? 0 : (t_in - cfg->conv[l].kernel) / cfg->conv[l].stride + 1;
    const size_t rows = (size_t)m * t_out;
    tr_real *col = ALLOC_R(rows * L->k);
    c->cz[l] = ALLOC_R(rows * L->n);
    c->cx[l + 1] = ALLOC_R(rows * L->n);
    if (!col || !c->cz[l] || !c->cx[l + 1]) return MOE_ENOMEM;
    im2col(&cfg->conv[l], c_in, c->cx[l], m, t_in, t_out, col);
    lin_fwd(L, W, col, (int)rows, c->cz[l]);
    for (size_t i = 0; i < rows * L->n; i++) c->cx[l + 1][i] = act(cfg->conv_silu, c->cz[l][i]);
    t_in = t_out;
    c_in = L->n;
    c->ct[l + 1] = t_out;
  }
  /* Pool "summary" (nn.h moe__sensor_summary): last step, mean and rise of each channel. */
  if (cfg->sensor_summary) {
    const tr_real *xl = c->cx[cfg->n_conv];
    for (int r = 0; r < m; r++) {
      const int s0 = t_in - summary_steps(cfg, batch, r);
      tr_real rise_w;
      const tr_real centre = summary_line(s0, t_in, &rise_w);
      const tr_real *xr = xl + (size_t)r * t_in * c_in;
      tr_real *last = c->x0 + (size_t)r * 3 * c_in, *mean = last + c_in, *rise = mean + c_in;
      for (int i = 0; i < c_in; i++) {
        last[i] = xr[(size_t)(t_in - 1) * c_in + i];
        mean[i] = rise[i] = 0;
      }
      for (int s = s0; s < t_in; s++)
        for (int i = 0; i < c_in; i++) {
          mean[i] += xr[(size_t)s * c_in + i];
          rise[i] += ((tr_real)s - centre) * rise_w * xr[(size_t)s * c_in + i];
        }
      for (int i = 0; i < c_in; i++) mean[i] /= (tr_real)(t_in - s0);
    }
    return MOE_OK;
  }
  /* Mean over time: the pooled vector is the input of enc.in. */
  for (int r = 0; r < m; r++) {
    tr_real *p = c->x0 + (size_t)r * c_in;
    memset(p, 0, (size_t)c_in * sizeof(tr_real));
    for (int s = 0; s < t_in; s++)
      for (int i = 0; i < c_in; i++) p[i] += c->cx[cfg->n_conv][((size_t)r * t_in + s) * c_in + i];
    for (int i = 0; i < c_in; i++) p[i] /= (tr_real)t_in;
  }
  return MOE_OK;
}

/* dpool (m, d_in): gradient w.r.t. the pooled vector; accumulates the conv parameters' gradients. */
static int encode_sensor_bwd(moe_trainer_t *tr, const tr_real *W, tr_real *G, const tr_cache_t *c,
                             const tr_real *dpool) {
  const moe__config_t *cfg = &tr->cfg;
  const int m = c->m, nl = cfg->n_conv;
  if (nl == 0) return MOE_OK;
  const int t_last = c->ct[nl], c_last = tr->conv[nl - 1].n;
  tr_real *dx = ALLOC_R((size_t)m * t_last * c_last);
  if (dx == NULL) return MOE_ENOMEM;
  if (cfg->sensor_summary) {
    /* d last goes to the last step, d mean to each read step / their count, d rise to read
     * step s weighted (s - centre) rise_w, as in the forward pass; unread steps get nothing. */
    for (int r = 0; r < m; r++) {
      const int s0 = t_last - summary_steps(cfg, c->batch, r);
      tr_real rise_w;
      const tr_real centre = summary_line(s0, t_last, &rise_w);
      const tr_real *dl = dpool + (size_t)r * 3 * c_last, *dm = dl + c_last, *dr = dm + c_last;
      for (int s = 0; s < t_last; s++)
        for (int i = 0; i < c_last; i++)
          dx[((size_t)r * t_last + s) * c_last + i] =
              s < s0 ? 0
                     : dm[i] / (tr_real)(t_last - s0) + ((tr_real)s - centre) * rise_w * dr[i] +
                           (s == t_last - 1 ? dl[i] : 0);
    }
  } else {
    for (int r = 0; r < m; r++)
      for (int s = 0; s < t_last; s++)
        for (int i = 0; i < c_last; i++)
          dx[((size_t)r * t_last + s) * c_last + i] = dpool[(size_t)r * c_last + i] / (tr_real)t_last;
  }
  for (int l = nl - 1; l >= 0; l--) {
    const tr_lin_t *L = &tr->conv[l];
    const moe__conv_cfg_t *cc = &cfg->conv[l];
    const int t_in = c->ct[l], t_out = c->ct[l + 1], c_in = L->k / cc->kernel, K = cc->kernel;
    const size_t rows = (size_t)m * t_out;
    tr_real *col = ALLOC_R(rows * L->k), *dcol = l > 0 ? ALLOC_R(rows * L->k) : NULL;
    tr_real *dxin = l > 0 ? ALLOC_R((size_t)m * t_in * c_in) : NULL;
    if (!col || (l > 0 && (!dcol || !dxin))) return MOE_ENOMEM;
    for (size_t i = 0; i < rows * L->n; i++) dx[i] *= act_grad(cfg->conv_silu, c->cz[l][i]);
    im2col(cc, c_in, c->cx[l], m, t_in, t_out, col);
    lin_bwd(L, W, G, col, dx, (int)rows, dcol, false);
    if (l == 0) break;
    /* col2im: every column entry goes back to the input step and channel it was copied from. */
    memset(dxin, 0, (size_t)m * t_in * c_in * sizeof(tr_real));
    for (int r = 0; r < m; r++)
      for (int s = 0; s < t_out; s++) {
        const tr_real *o = dcol + ((size_t)r * t_out + s) * L->k;
        for (int j = 0; j < K; j++) {
          tr_real *xi = dxin + ((size_t)r * t_in + (size_t)s * cc->stride + j) * c_in;
          for (int i = 0; i < c_in; i++) xi[i] += o[i * K + j];
        }
      }
    dx = dxin;
  }
  return MOE_OK;
}

/* ---- text encoder ---------------------------------------------------------------------- */

static bool attn_allowed(int i, int j, int window, int n_global) {
  return (i > j ? i - j : j - i) <= window / 2 || i < n_global || j < n_global;
}

/*
 * One row of n tokens: qkv (n, 3 d) -> out (n, d); P receives the probabilities (heads, n, n).
 * Dense GEMMs over the whole row with the mask applied to the scores: for the sequence lengths
 * trained here that beats skipping the masked entries one by one.
 */
static void attn_fwd(const tr_real *qkv, int n, int d, int n_head, int window, int n_global, tr_real *P,
                     tr_real *out) {
  const int dh = d / n_head, ld = 3 * d;
  const tr_real scale = (tr_real)(1.0 / sqrt((double)dh));
  for (int hd = 0; hd < n_head; hd++) {
    tr_real *Ph = P + (size_t)hd * n * n;
    gemm(false, true, n, n, dh, scale, qkv + hd * dh, ld, qkv + d + hd * dh, ld, 0, Ph, n);
    for (int i = 0; i < n; i++) {
      tr_real *p = Ph + (size_t)i * n, mx = -INFINITY, sum = 0;
      for (int j = 0; j < n; j++)
        if (attn_allowed(i, j, window, n_global)) mx = p[j] > mx ? p[j] : mx;
      for (int j = 0; j < n; j++) sum += (p[j] = attn_allowed(i, j, window, n_global) ? (tr_real)exp(p[j] - mx) : 0);
      for (int j = 0; j < n; j++) p[j] /= sum;
    }
    gemm(false, false, n, dh, n, 1, Ph, n, qkv + 2 * d + hd * dh, ld, 0, out + hd * dh, d);
  }
}

/* Given dout (n, d): dqkv (n, 3 d) overwritten. dp: scratch (n, n). */
static void attn_bwd(const tr_real *qkv, int n, int d, int n_head, const tr_real *P, const tr_real *dout,
                     tr_real *dqkv, tr_real *dp) {
  const int dh = d / n_head, ld = 3 * d;
  const tr_real scale = (tr_real)(1.0 / sqrt((double)dh));
  memset(dqkv, 0, (size_t)n * 3 * d * sizeof(tr_real));
  for (int hd = 0; hd < n_head; hd++) {
    const tr_real *Ph = P + (size_t)hd * n * n, *go = dout + hd * dh;
    const tr_real *q = qkv + hd * dh, *k = qkv + d + hd * dh, *v = qkv + 2 * d + hd * dh;
    tr_real *dq = dqkv + hd * dh, *dk = dqkv + d + hd * dh, *dv = dqkv + 2 * d + hd * dh;
    gemm(false, true, n, n, dh, 1, go, d, v, ld, 0, dp, n);  /* dP = dO V^T */
    gemm(true, false, n, dh, n, 1, Ph, n, go, d, 0, dv, ld); /* dV = P^T dO */
    for (int i = 0; i < n; i++) {
      const tr_real *p = Ph + (size_t)i * n;
      tr_real *g = dp + (size_t)i * n, dot = 0;
      for (int j = 0; j < n; j++) dot += g[j] * p[j];
      for (int j = 0; j < n; j++) g[j] = p[j] * (g[j] - dot) * scale; /* dS, scaled */
    }
    gemm(false, false, n, dh, n, 1, dp, n, k, ld, 0, dq, ld); /* dQ = dS K */
    gemm(true, false, n, dh, n, 1, dp, n, q, ld, 0, dk, ld);  /* dK = dS^T Q */
  }
}

/* Pool "bag" (engine/src/moe/forward.c, encode_bag): x0_r = sum over the row's distinct pieces t
 * of w_t tok[t], w_t = u_t / |u|, u_t = s_t idf[t], s_t = 1 + ln c_t (idf 1 without
 * enc.idf.weight). Rows are validated by the caller. */
static int encode_bag(moe_trainer_t *tr, const tr_real *W, const moe_train_data_t *batch, tr_cache_t *c) {
  const moe__config_t *cfg = &tr->cfg;
  const int m = c->m, d = tr->d, N = c->ts[m];
  int32_t *count = ALLOC_I(cfg->max_len);
  c->bs = moe__arena_alloc(&tr->arena, (size_t)(m + 1) * sizeof(int));
  c->bu = ALLOC_I(N);
  c->bw = ALLOC_R(N);
  c->bsub = ALLOC_R(N);
  c->binv = ALLOC_R(m);
  if (count == NULL || c->bs == NULL || c->bu == NULL || c->bw == NULL || c->bsub == NULL || c->binv == NULL)
    return MOE_ENOMEM;
  c->bs[0] = 0;
  for (int r = 0; r < m; r++) {
    const int lo = c->bs[r];
    const int k = moe__bag_counts(batch->tokens + (size_t)r * cfg->max_len, batch->n_tokens[r], c->bu + lo, count);
    double ss = 0;
    for (int i = 0; i < k; i++) {
      c->bsub[lo + i] = (tr_real)(1.0 + log((double)count[i]));
      c->bw[lo + i] = tr->idf != TR_NONE ? c->bsub[lo + i] * W[tr->idf + c->bu[lo + i]] : c->bsub[lo + i];
      ss += (double)c->bw[lo + i] * c->bw[lo + i];
    }
    const tr_real inv = ss > 0 ? (tr_real)(1.0 / sqrt(ss)) : 0;
    c->binv[r] = inv;
    tr_real *p = c->x0 + (size_t)r * d;
    memset(p, 0, (size_t)d * sizeof(tr_real));
    for (int i = 0; i < k; i++) {
      const tr_real wi = (c->bw[lo + i] *= inv);
      const tr_real *te = W + tr->tok + (size_t)c->bu[lo + i] * d;
      for (int j = 0; j < d; j++) p[j] += wi * te[j];
    }
    c->bs[r + 1] = lo + k;
  }
  return MOE_OK;
}

static int encode_text(moe_trainer_t *tr, const tr_real *W, const moe_train_data_t *batch, tr_cache_t *c) {
  const moe__config_t *cfg = &tr->cfg;
  const int m = c->m, d = tr->d, F = cfg->text_d_ff;
  if (batch->tokens == NULL || batch->n_tokens == NULL) {
    snprintf(tr->err, sizeof tr->err, "batch: tokens or n_tokens is NULL but the model reads text");
    return MOE_EINVAL;
  }
  if (!(c->ts = moe__arena_alloc(&tr->arena, (size_t)(m + 1) * sizeof(int)))) return MOE_ENOMEM;
  c->ts[0] = 0;
  for (int r = 0; r < m; r++) {
    const int n = batch->n_tokens[r];
    if (n < 1 || n > cfg->max_len) {
      snprintf(tr->err, sizeof tr->err, "row %d: %d tokens, expected 1 to max_len %d", r, n, cfg->max_len);
      return MOE_EDATA;
    }
    for (int i = 0; i < n; i++) {
      const int id = batch->tokens[(size_t)r * cfg->max_len + i];
      if (id < 0 || id >= cfg->vocab_size) {
        snprintf(tr->err, sizeof tr->err, "row %d: token %d has id %d, outside [0, %d)", r, i, id, cfg->vocab_size);
        return MOE_EDATA;
      }
    }
    c->ts[r + 1] = c->ts[r] + n;
  }
  if (cfg->text_bag) return encode_bag(tr, W, batch, c);
  const int N = c->ts[m];
  size_t n_p = 0;
  for (int r = 0; r < m; r++) n_p += (size_t)cfg->n_head * (c->ts[r + 1] - c->ts[r]) * (c->ts[r + 1] - c->ts[r]);
  c->tl = moe__arena_alloc(&tr->arena, (size_t)(cfg->n_layer + 1) * sizeof(tr_text_layer_cache_t));
  tr_real *h = ALLOC_R((size_t)N * d), *t = ALLOC_R((size_t)N * d), *hb = ALLOC_R((size_t)N * F);
  if (!c->tl || !h || !t || !hb) return MOE_ENOMEM;
  for (int r = 0; r < m; r++)
    for (int i = 0; i < c->ts[r + 1] - c->ts[r]; i++) {
      const tr_real *te = W + tr->tok + (size_t)batch->tokens[(size_t)r * cfg->max_len + i] * d;
      const tr_real *pe = W + tr->pos + (size_t)i * d;
      for (int j = 0; j < d; j++) h[(size_t)(c->ts[r] + i) * d + j] = te[j] + pe[j];
    }
  for (int l = 0; l < cfg->n_layer; l++) {
    const tr_text_layer_t *L = &tr->layers[l];
    tr_text_layer_cache_t *lc = &c->tl[l];
    lc->hin = ALLOC_R((size_t)N * d);
    lc->a = ALLOC_R((size_t)N * d);
    lc->amu = ALLOC_R(N);
    lc->ars = ALLOC_R(N);
    lc->qkv = ALLOC_R((size_t)N * 3 * d);
    lc->o = ALLOC_R((size_t)N * d);
    lc->P = ALLOC_R(n_p);
    lc->poff = moe__arena_alloc(&tr->arena, (size_t)m * sizeof(size_t));
    lc->hmid = ALLOC_R((size_t)N * d);
    lc->b = ALLOC_R((size_t)N * d);
    lc->bmu = ALLOC_R(N);
    lc->brs = ALLOC_R(N);
    lc->FA = ALLOC_R((size_t)N * F);
    lc->FB = ALLOC_R((size_t)N * F);
    if (!lc->hin || !lc->a || !lc->amu || !lc->ars || !lc->qkv || !lc->o || !lc->P || !lc->poff || !lc->hmid ||
        !lc->b || !lc->bmu || !lc->brs || !lc->FA || !lc->FB)
      return MOE_ENOMEM;
    memcpy(lc->hin, h, (size_t)N * d * sizeof(tr_real));
    norm_fwd(tr, &L->attn_norm, W, h, N, lc->a, lc->amu, lc->ars);
    lin_fwd(&L->qkv, W, lc->a, N, lc->qkv);
    size_t off = 0;
    for (int r = 0; r < m; r++) {
      const int n = c->ts[r + 1] - c->ts[r];
      lc->poff[r] = off;
      attn_fwd(lc->qkv + (size_t)c->ts[r] * 3 * d, n, d, cfg->n_head, cfg->windows[l], cfg->n_global, lc->P + off,
               lc->o + (size_t)c->ts[r] * d);
      off += (size_t)cfg->n_head * n * n;
    }
    lin_fwd(&L->out, W, lc->o, N, t);
    for (size_t i = 0; i < (size_t)N * d; i++) h[i] += t[i];
    memcpy(lc->hmid, h, (size_t)N * d * sizeof(tr_real));
    norm_fwd(tr, &L->ffn_norm, W, h, N, lc->b, lc->bmu, lc->brs);
    ffn_fwd(&L->ffn, W, lc->b, N, lc->FA, lc->FB, hb, t);
    for (size_t i = 0; i < (size_t)N * d; i++) h[i] += t[i];
  }
  c->tfin = h;
  c->te = ALLOC_R((size_t)N * d);
  c->temu = ALLOC_R(N);
  c->ters = ALLOC_R(N);
  if (!c->te || !c->temu || !c->ters) return MOE_ENOMEM;
  norm_fwd(tr, &tr->enc_norm, W, h, N, c->te, c->temu, c->ters);
  for (int r = 0; r < m; r++) {
    tr_real *p = c->x0 + (size_t)r * d;
    const int n = c->ts[r + 1] - c->ts[r];
    memset(p, 0, (size_t)d * sizeof(tr_real));
    for (int i = c->ts[r]; i < c->ts[r + 1]; i++)
      for (int j = 0; j < d; j++) p[j] += c->te[(size_t)i * d + j];
    for (int j = 0; j < d; j++) p[j] /= (tr_real)n;
  }
  return MOE_OK;
}

/* dpool (m, d): gradient w.r.t. the pooled vector. */
static int encode_text_bwd(moe_trainer_t *tr, const tr_real *W, tr_real *G, const tr_cache_t *c,
                           const tr_real *dpool) {
  const moe__config_t *cfg = &tr->cfg;
  const int m = c->m, d = tr->d, F = cfg->text_d_ff, N = c->ts[m];
  if (cfg->text_bag) {
    for (int r = 0; r < m; r++) {
      const tr_real *g = dpool + (size_t)r * d;
      /* Embeddings: x0 is linear in them with the weights w_t. */
      for (int i = c->bs[r]; i < c->bs[r + 1]; i++) {
        tr_real *gt = G + tr->tok + (size_t)c->bu[i] * d;
        for (int j = 0; j < d; j++) gt[j] += c->bw[i] * g[j];
      }
      if (tr->idf == TR_NONE) continue;
      /* Piece weights through the normalisation: with e_t = g . tok[t] and S = sum_v w_v e_v,
       * dL/du_t = (e_t - w_t S) / |u|, and u_t = s_t idf[t]. */
      double S = 0;
      for (int i = c->bs[r]; i < c->bs[r + 1]; i++) {
        const tr_real *te = W + tr->tok + (size_t)c->bu[i] * d;
        double e = 0;
        for (int j = 0; j < d; j++) e += (double)g[j] * te[j];
        S += c->bw[i] * e;
      }
      for (int i = c->bs[r]; i < c->bs[r + 1]; i++) {
        const tr_real *te = W + tr->tok + (size_t)c->bu[i] * d;
        double e = 0;
        for (int j = 0; j < d; j++) e += (double)g[j] * te[j];
        G[tr->idf + c->bu[i]] += (tr_real)(c->bsub[i] * (e - c->bw[i] * S) * c->binv[r]);
      }
    }
    return MOE_OK;
  }
  tr_real *de = ALLOC_R((size_t)N * d), *dh = ALLOC_R((size_t)N * d), *dt = ALLOC_R((size_t)N * d);
  tr_real *dq = ALLOC_R((size_t)N * 3 * d), *hb = ALLOC_R((size_t)N * F), *dA = ALLOC_R((size_t)N * F);
  tr_real *dB = ALLOC_R((size_t)N * F), *dp = ALLOC_R((size_t)cfg->max_len * cfg->max_len);
  if (!de || !dh || !dt || !dq || !hb || !dA || !dB || !dp) return MOE_ENOMEM;
  for (int r = 0; r < m; r++) {
    const int n = c->ts[r + 1] - c->ts[r];
    for (int i = c->ts[r]; i < c->ts[r + 1]; i++)
      for (int j = 0; j < d; j++) de[(size_t)i * d + j] = dpool[(size_t)r * d + j] / (tr_real)n;
  }
  memset(dh, 0, (size_t)N * d * sizeof(tr_real));
  norm_bwd(tr, &tr->enc_norm, W, G, c->tfin, c->temu, c->ters, de, N, dh);
  for (int l = cfg->n_layer - 1; l >= 0; l--) {
    const tr_text_layer_t *L = &tr->layers[l];
    const tr_text_layer_cache_t *lc = &c->tl[l];
    /* h_out = hmid + ffn(ffn_norm(hmid)): dh passes, the FFN branch adds through the norm. */
    ffn_bwd(&L->ffn, W, G, lc->b, lc->FA, lc->FB, dh, N, hb, dA, dB, dt);
    norm_bwd(tr, &L->ffn_norm, W, G, lc->hmid, lc->bmu, lc->brs, dt, N, dh);
    /* hmid = hin + out(attn(qkv(attn_norm(hin)))). */
    lin_bwd(&L->out, W, G, lc->o, dh, N, dt, false);
    for (int r = 0; r < m; r++)
      attn_bwd(lc->qkv + (size_t)c->ts[r] * 3 * d, c->ts[r + 1] - c->ts[r], d, cfg->n_head, lc->P + lc->poff[r],
               dt + (size_t)c->ts[r] * d, dq + (size_t)c->ts[r] * 3 * d, dp);
    lin_bwd(&L->qkv, W, G, lc->a, dq, N, dt, false);
    norm_bwd(tr, &L->attn_norm, W, G, lc->hin, lc->amu, lc->ars, dt, N, dh);
  }
  for (int r = 0; r < m; r++)
    for (int i = 0; i < c->ts[r + 1] - c->ts[r]; i++) {
      const tr_real *g = dh + (size_t)(c->ts[r] + i) * d;
      tr_real *gt = G + tr->tok + (size_t)c->batch->tokens[(size_t)r * cfg->max_len + i] * d;
      tr_real *gp = G + tr->pos + (size_t)i * d;
      for (int j = 0; j < d; j++) {
        gt[j] += g[j];
        gp[j] += g[j];
      }
    }
  return MOE_OK;
}

/* ---- whole model --------------------------------------------------------------------------- */

static int encode_tabular(moe_trainer_t *tr, const tr_real *W, const moe_train_data_t *batch, tr_cache_t *c) {
  const moe__config_t *cfg = &tr->cfg;
  const int m = c->m, d_in = tr->d_in;
  if ((cfg->n_numeric > 0 && batch->numeric == NULL) || (cfg->n_categorical > 0 && batch->categorical == NULL)) {
    snprintf(tr->err, sizeof tr->err, "batch: numeric or categorical is NULL but the model has %d and %d features",
             cfg->n_numeric, cfg->n_categorical);
    return MOE_EINVAL;
  }
  for (int r = 0; r < m; r++) {
    tr_real *x = c->x0 + (size_t)r * d_in;
    for (int i = 0; i < cfg->n_numeric; i++) {
      const float v = batch->numeric[(size_t)r * cfg->n_numeric + i];
      if (!isfinite(v)) return row_err(tr, "is", r, i, cfg->numeric[i].name, v);
      x[i] = ((tr_real)v - cfg->numeric[i].mean) / cfg->numeric[i].std;
    }
    int off = cfg->n_numeric;
    for (int i = 0; i < cfg->n_categorical; i++) {
      const int32_t id = batch->categorical[(size_t)r * cfg->n_categorical + i];
      const moe__categorical_t *ct = &cfg->categorical[i];
      if (id < 0 || id >= ct->vocab_size)
        return row_err(tr, "has an id outside its vocabulary:", r, cfg->n_numeric + i, ct->name, id);
      memcpy(x + off, W + tr->cat[i] + (size_t)id * ct->dim, (size_t)ct->dim * sizeof(tr_real));
      off += ct->dim;
    }
  }
  return MOE_OK;
}

int moe__tr_forward(moe_trainer_t *tr, const tr_real *W, const moe_train_data_t *batch, tr_cache_t *c) {
  const moe__config_t *cfg = &tr->cfg;
  const int m = batch->n_rows, d = tr->d, d_in = tr->d_in;
  int rc;
  memset(c, 0, sizeof *c);
  c->m = m;
  c->batch = batch;
  if (m < 1) {
    snprintf(tr->err, sizeof tr->err, "batch has %d rows, expected at least 1", m);
    return MOE_EINVAL;
  }
  c->x0 = ALLOC_R((size_t)m * d_in);
  tr_real *h = ALLOC_R((size_t)m * d);
  c->blk = moe__arena_alloc(&tr->arena, (size_t)(cfg->n_moe + 1) * sizeof(tr_block_cache_t));
  if (!c->x0 || !h || !c->blk) return MOE_ENOMEM;
  rc = cfg->enc == MOE_ENCODER_SENSOR ? encode_sensor(tr, W, batch, c)
       : cfg->enc == MOE_ENCODER_TEXT ? encode_text(tr, W, batch, c)
                                       : encode_tabular(tr, W, batch, c);
  if (rc != MOE_OK) return rc;
  if (cfg->enc == MOE_ENCODER_TEXT) memcpy(h, c->x0, (size_t)m * d * sizeof(tr_real));
  else lin_fwd(&tr->enc_in, W, c->x0, m, h);
  for (int b = 0; b < cfg->n_moe; b++) {
    if ((rc = block_fwd(tr, &tr->blocks[b], W, h, m, &c->blk[b])) != MOE_OK) return rc;
  }
  c->hf = h;
  c->z = ALLOC_R((size_t)m * d);
  c->zmu = ALLOC_R(m);
  c->zrs = ALLOC_R(m);
  c->logits = ALLOC_R((size_t)m * tr->n_out);
  if (!c->z || !c->zmu || !c->zrs || !c->logits) return MOE_ENOMEM;
  if (tr->cfg.no_head_norm) memcpy(c->z, h, (size_t)m * d * sizeof(tr_real));
  else norm_fwd(tr, &tr->head_norm, W, h, m, c->z, c->zmu, c->zrs);
  lin_fwd(&tr->head, W, c->z, m, c->logits);
  return MOE_OK;
}

/* ---- losses ------------------------------------------------------------------------------ */

/* DeepSeek-V3's sequence-wise balance loss per block, over the batch:
 * alpha * sum_i f_i P_i, f_i = E / (K m) * count_i (a constant), P_i = mean_r s'_ri with s'
 * the scores normalised to sum 1. When ds is not NULL, adds d/ds of it. */
static double balance_loss(const moe_trainer_t *tr, const tr_block_t *blk, const tr_block_cache_t *bc, int m,
                           tr_real *ds) {
  const int E = blk->cfg.n_expert, K = blk->cfg.top_k;
  const double alpha = tr->opts.balance_alpha;
  double loss = 0;
  for (int r = 0; r < m; r++) {
    const tr_real *s = bc->s + (size_t)r * E;
    double T = 0, dot = 0;
    for (int e = 0; e < E; e++) T += s[e];
    for (int e = 0; e < E; e++) {
      const double f = (double)E / ((double)K * m) * (bc->count[e + 1] - bc->count[e]);
      loss += alpha * f * (s[e] / T) / m;
      dot += alpha * f / m * s[e] / T;
    }
    if (ds != NULL)
      for (int e = 0; e < E; e++) {
        const double f = (double)E / ((double)K * m) * (bc->count[e + 1] - bc->count[e]);
        ds[(size_t)r * E + e] += (tr_real)((alpha * f / m - dot) / T);
      }
  }
  return loss;
}

double moe__tr_loss(moe_trainer_t *tr, const tr_cache_t *c, const moe_train_data_t *batch, tr_real *dl) {
  const moe_train_opts_t *o = &tr->opts;
  const int m = c->m, n = tr->n_out;
  double loss = 0;
  for (int r = 0; r < m; r++) {
    const tr_real *z = c->logits + (size_t)r * n;
    tr_real *g = dl != NULL ? dl + (size_t)r * n : NULL;
    if (tr->cfg.task == MOE_TASK_BINARY) {
      const int y = batch->label[r] != 0;
      const double x = z[0], w = y ? o->pos_weight : 1.0;
      if (o->loss == MOE_LOSS_FOCAL) {
        const double sgn = y ? 1 : -1, logpt = -softplus(-sgn * x), pt = exp(logpt);
        const double gam = o->focal_gamma, q = pow(1 - pt, gam);
        loss += -w * q * logpt / m;
        if (g) g[0] = (tr_real)(sgn * w * q * (gam * pt * logpt - (1 - pt)) / m);
      } else {
        loss += w * (softplus(x) - y * x) / m;
        if (g) g[0] = (tr_real)(w * (sigm((tr_real)x) - y) / m);
      }
    } else if (tr->cfg.task == MOE_TASK_MULTICLASS) {
      const int y = batch->label[r];
      const double eps = o->label_smoothing, cw = tr->class_w != NULL ? tr->class_w[y] : 1.0;
      double mx = z[0], sum = 0;
      for (int k = 1; k < n; k++) mx = z[k] > mx ? z[k] : mx;
      for (int k = 0; k < n; k++) sum += exp(z[k] - mx);
      const double lse = mx + log(sum);
      for (int k = 0; k < n; k++) {
        const double q = (k == y ? 1 - eps : 0) + eps / n;
        loss += -cw * q * (z[k] - lse) / m;
        if (g) g[k] = (tr_real)(cw * (exp(z[k] - lse) - q) / m);
      }
    } else {
      for (int k = 0; k < n; k++) {
        const double e = z[k] - batch->target[(size_t)r * n + k], mn = (double)m * n;
        if (o->loss == MOE_LOSS_HUBER) {
          const double dlt = o->huber_delta;
          loss += (fabs(e) <= dlt ? 0.5 * e * e : dlt * (fabs(e) - 0.5 * dlt)) / mn;
          if (g) g[k] = (tr_real)((fabs(e) <= dlt ? e : (e > 0 ? dlt : -dlt)) / mn);
        } else {
          loss += e * e / mn;
          if (g) g[k] = (tr_real)(2 * e / mn);
        }
      }
    }
  }
  if (o->balance_alpha > 0)
    for (int b = 0; b < tr->cfg.n_moe; b++) loss += balance_loss(tr, &tr->blocks[b], &c->blk[b], m, NULL);
  return loss;
}

/* ---- backward -------------------------------------------------------------------------- */

/* dh: gradient w.r.t. the block's output, on return w.r.t. its input. */
static int block_bwd(moe_trainer_t *tr, const tr_block_t *blk, const tr_real *W, tr_real *G,
                     const tr_block_cache_t *bc, int m, tr_real *dh) {
  const moe__moe_cfg_t *cfg = &blk->cfg;
  const int d = tr->d, E = cfg->n_expert, K = cfg->top_k, F = cfg->d_ff;
  tr_real *du = ALLOC_R((size_t)m * d), *xg = ALLOC_R((size_t)m * d), *dO = ALLOC_R((size_t)m * d);
  tr_real *dx = ALLOC_R((size_t)m * d), *hb = ALLOC_R((size_t)m * F), *dA = ALLOC_R((size_t)m * F);
  tr_real *dB = ALLOC_R((size_t)m * F), *dg = ALLOC_R((size_t)m * K), *ds = ALLOC_R((size_t)m * E);
  if (!du || !xg || !dO || !dx || !hb || !dA || !dB || !dg || !ds) return MOE_ENOMEM;
  memset(du, 0, (size_t)m * d * sizeof(tr_real));
  for (int e = 0; e < E; e++) {
    const int lo = bc->count[e], c = bc->count[e + 1] - lo;
    if (c == 0) continue;
    const tr_real *O = bc->O + (size_t)lo * d;
    for (int i = 0; i < c; i++) {
      const int r = bc->slot_row[lo + i], j = bc->slot_j[lo + i];
      const tr_real gw = bc->gates[(size_t)r * K + j];
      const tr_real *dhr = dh + (size_t)r * d;
      tr_real dot = 0;
      for (int t = 0; t < d; t++) {
        dO[(size_t)i * d + t] = gw * dhr[t];
        dot += dhr[t] * O[(size_t)i * d + t];
      }
      dg[(size_t)r * K + j] = dot;
      memcpy(xg + (size_t)i * d, bc->u + (size_t)r * d, (size_t)d * sizeof(tr_real));
    }
    ffn_bwd(&blk->experts[e], W, G, xg, bc->A + (size_t)lo * F, bc->B + (size_t)lo * F, dO, c, hb, dA, dB, dx);
    for (int i = 0; i < c; i++) {
      tr_real *dur = du + (size_t)bc->slot_row[lo + i] * d;
      for (int t = 0; t < d; t++) dur[t] += dx[(size_t)i * d + t];
    }
  }
  for (int s = 0; s < cfg->n_shared; s++) {
    ffn_bwd(&blk->shared[s], W, G, bc->u, bc->SA[s], bc->SB[s], dh, m, hb, dA, dB, dx);
    for (size_t i = 0; i < (size_t)m * d; i++) du[i] += dx[i];
  }
  /* Gates -> scores: g_j = c s_j / S (S the sum of the chosen scores when normalising). */
  memset(ds, 0, (size_t)m * E * sizeof(tr_real));
  for (int r = 0; r < m; r++) {
    const int32_t *ids = bc->ids + (size_t)r * K;
    const tr_real *s = bc->s + (size_t)r * E, *dgr = dg + (size_t)r * K;
    tr_real S = 0, t = 0;
    for (int j = 0; j < K; j++) {
      S += s[ids[j]];
      t += dgr[j] * s[ids[j]];
    }
    const tr_real cs = (tr_real)cfg->route_scale;
    for (int j = 0; j < K; j++) {
      if (cfg->normalize && S > 0) ds[(size_t)r * E + ids[j]] += cs / S * (dgr[j] - t / S);
      else ds[(size_t)r * E + ids[j]] += cs * dgr[j];
    }
  }
  if (tr->opts.balance_alpha > 0) balance_loss(tr, blk, bc, m, ds);
  /* Scores -> router logits (in place in ds). */
  for (int r = 0; r < m; r++) {
    const tr_real *s = bc->s + (size_t)r * E;
    tr_real *dsr = ds + (size_t)r * E;
    if (cfg->score == MOE__SCORE_SOFTMAX) {
      tr_real dot = 0;
      for (int e = 0; e < E; e++) dot += dsr[e] * s[e];
      for (int e = 0; e < E; e++) dsr[e] = s[e] * (dsr[e] - dot);
    } else {
      for (int e = 0; e < E; e++) dsr[e] *= s[e] * (1 - s[e]);
    }
  }
  lin_bwd(&blk->router, W, G, bc->u, ds, m, du, true);
  /* Residual: dh passes through; the norm adds its share. */
  norm_bwd(tr, &blk->norm, W, G, bc->h, bc->nmu, bc->nrs, du, m, dh);
  return MOE_OK;
}

int moe__tr_backward(moe_trainer_t *tr, const tr_real *W, const tr_cache_t *c, const tr_real *dlogits, tr_real *G) {
  const moe__config_t *cfg = &tr->cfg;
  const int m = c->m, d = tr->d;
  tr_real *dz = ALLOC_R((size_t)m * d), *dh = ALLOC_R((size_t)m * d), *dx0 = ALLOC_R((size_t)m * tr->d_in);
  if (!dz || !dh || !dx0) return MOE_ENOMEM;
  lin_bwd(&tr->head, W, G, c->z, dlogits, m, dz, false);
  if (cfg->no_head_norm) {
    memcpy(dh, dz, (size_t)m * d * sizeof(tr_real));
  } else {
    memset(dh, 0, (size_t)m * d * sizeof(tr_real));
    norm_bwd(tr, &tr->head_norm, W, G, c->hf, c->zmu, c->zrs, dz, m, dh);
  }
  for (int b = cfg->n_moe - 1; b >= 0; b--) {
    int rc = block_bwd(tr, &tr->blocks[b], W, G, &c->blk[b], m, dh);
    if (rc != MOE_OK) return rc;
  }
  if (cfg->enc == MOE_ENCODER_TEXT) return encode_text_bwd(tr, W, G, c, dh);
  const bool need_dx0 = cfg->enc == MOE_ENCODER_SENSOR ? cfg->n_conv > 0 : cfg->n_categorical > 0;
  lin_bwd(&tr->enc_in, W, G, c->x0, dh, m, need_dx0 ? dx0 : NULL, false);
  if (cfg->enc == MOE_ENCODER_SENSOR) return encode_sensor_bwd(tr, W, G, c, dx0);
  /* Categorical embeddings: scatter the input gradient back to the looked-up rows (ids
   * validated by the forward pass that filled the cache). */
  for (int r = 0; r < m && cfg->n_categorical > 0; r++) {
    int off = cfg->n_numeric;
    for (int i = 0; i < cfg->n_categorical; i++) {
      const int dim = cfg->categorical[i].dim;
      const int32_t id = c->batch->categorical[(size_t)r * cfg->n_categorical + i];
      tr_real *ge = G + tr->cat[i] + (size_t)id * dim;
      for (int j = 0; j < dim; j++) ge[j] += dx0[(size_t)r * tr->d_in + off + j];
      off += dim;
    }
  }
  return MOE_OK;
}

int moe__tr_loss_grad(moe_trainer_t *tr, const moe_train_data_t *batch, double *loss, tr_cache_t *c) {
  int rc;
  const tr_real *W = tr->fq != NULL ? tr->fq : tr->p;
  if ((rc = moe__arena_reset(&tr->arena)) != MOE_OK) return rc;
  if ((rc = moe__tr_forward(tr, W, batch, c)) != MOE_OK) return rc;
  tr_real *dl = ALLOC_R((size_t)c->m * tr->n_out);
  if (dl == NULL) return MOE_ENOMEM;
  *loss = moe__tr_loss(tr, c, batch, dl);
  memset(tr->g, 0, tr->n_values * sizeof(tr_real));
  return moe__tr_backward(tr, W, c, dl, tr->g);
}
