/*
 * The forward pass and the session that runs it: input validation, the three encoders
 * (tabular, sensor, text), the MoE blocks (router, top-k with selection bias, rows grouped by
 * expert so that each active expert runs one GEMM, shared experts dense over the batch) and
 * the task head. All intermediate tensors come from the session's arena, reset per batch.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/alloc-impl.h"
#include "kernels/kernels.h"
#include "moe/model-impl.h"

static int sess_err(moe_session_t *sess, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sess_err(moe_session_t *sess, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sess->err, sizeof sess->err, fmt, ap);
  va_end(ap);
  return rc;
}

/* ---- MoE block --------------------------------------------------------------------------- */

void moe__route_row(const moe__moe_cfg_t *cfg, const float *scores, const float *sel_bias,
                    int32_t *ids, float *gates) {
  const int k = cfg->top_k;
  /* Insertion into a descending list of k by selection score; strict > keeps the lower id
   * first on ties. The bias only orders; the gate is the unbiased score. */
  int n_sel = 0;
  for (int e = 0; e < cfg->n_expert; e++) {
    const float sel = scores[e] + sel_bias[e];
    int pos = n_sel;
    while (pos > 0 && sel > scores[ids[pos - 1]] + sel_bias[ids[pos - 1]]) pos--;
    if (pos >= k) continue;
    for (int j = (n_sel < k ? n_sel : k - 1); j > pos; j--) ids[j] = ids[j - 1];
    ids[pos] = e;
    if (n_sel < k) n_sel++;
  }
  float sum = 0.0f;
  for (int j = 0; j < k; j++) {
    gates[j] = scores[ids[j]];
    sum += gates[j];
  }
  const float scale = cfg->normalize && sum > 0.0f ? cfg->route_scale / sum : cfg->route_scale;
  for (int j = 0; j < k; j++) gates[j] *= scale;
}

int moe__moe_block_forward(const moe__moe_block_t *blk, moe__arena_t *arena, float *x, int m,
                           int d, int route_size, int32_t *route_ids, float *route_w,
                           int32_t *load) {
  const moe__moe_cfg_t *cfg = &blk->cfg;
  const kern_ops_t *ops = kern_ops();
  const int E = cfg->n_expert, K = cfg->top_k;
  float *u = MOE__ARENA_FLOATS(arena, (size_t)m * d);
  float *scores = MOE__ARENA_FLOATS(arena, (size_t)m * E);
  float *y = MOE__ARENA_FLOATS(arena, (size_t)m * d);
  float *gates = MOE__ARENA_FLOATS(arena, (size_t)m * K);
  int32_t *ids = moe__arena_alloc(arena, (size_t)m * K * sizeof(int32_t));
  int32_t *count = moe__arena_alloc(arena, (size_t)(E + 1) * sizeof(int32_t));
  int32_t *slot_row = moe__arena_alloc(arena, (size_t)m * K * sizeof(int32_t));
  float *slot_gate = MOE__ARENA_FLOATS(arena, (size_t)m * K);
  if (!u || !scores || !y || !gates || !ids || !count || !slot_row || !slot_gate) return MOE_ENOMEM;

  moe__norm_forward(&blk->norm, x, m, u);
  /* Router in fp32: the choice of experts must not depend on quantization noise. */
  if (m == 1)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, E, d, 1.0f, blk->router, d, u, 1, 0.0f, scores, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, E, d, 1.0f, u, d, blk->router, d, 0.0f,
                scores, E);
  memset(count, 0, (size_t)(E + 1) * sizeof(int32_t));
  for (int r = 0; r < m; r++) {
    float *s = scores + (size_t)r * E;
    if (cfg->score == MOE__SCORE_SOFTMAX) moe__softmax(s, E);
    else
      for (int e = 0; e < E; e++) s[e] = moe__sigmoid(s[e]);
    moe__route_row(cfg, s, blk->sel_bias, ids + (size_t)r * K, gates + (size_t)r * K);
    for (int j = 0; j < K; j++) count[ids[(size_t)r * K + j] + 1]++;
    if (route_ids != NULL)
      memcpy(route_ids + (size_t)r * route_size + blk->route_offset, ids + (size_t)r * K, (size_t)K * sizeof(int32_t));
    if (route_w != NULL)
      memcpy(route_w + (size_t)r * route_size + blk->route_offset, gates + (size_t)r * K, (size_t)K * sizeof(float));
  }
  if (load != NULL)
    for (int e = 0; e < E; e++) load[blk->load_offset + e] += count[e + 1];
  /* Counting sort of (row, gate) slots by expert: expert e owns slots [count[e], count[e+1]). */
  for (int e = 0; e < E; e++) count[e + 1] += count[e];
  {
    int32_t *fill = moe__arena_alloc(arena, (size_t)E * sizeof(int32_t));
    if (fill == NULL) return MOE_ENOMEM;
    memcpy(fill, count, (size_t)E * sizeof(int32_t));
    for (int r = 0; r < m; r++)
      for (int j = 0; j < K; j++) {
        int e = ids[(size_t)r * K + j];
        slot_row[fill[e]] = r;
        slot_gate[fill[e]] = gates[(size_t)r * K + j];
        fill[e]++;
      }
  }

  /* Quantize the normalised input once for every expert that reads it. */
  const moe_quant_t q = blk->experts[0].gate_up.quant;
  /* Activations are q8_0 whatever the weights are. */
  const size_t qrow = moe__quant_row_bytes(MOE_QUANT_Q8_0, d);
  char *uq = NULL;
  if (q != MOE_QUANT_F32) {
    uq = moe__quantize_rows(arena, u, m, d);
    if (uq == NULL) return MOE_ENOMEM;
  }

  memset(y, 0, (size_t)m * d * sizeof(float));
  float *xin = MOE__ARENA_FLOATS(arena, (size_t)m * d);
  char *xq = q != MOE_QUANT_F32 ? moe__arena_alloc(arena, (size_t)m * qrow) : NULL;
  float *eo = MOE__ARENA_FLOATS(arena, (size_t)m * d);
  if (xin == NULL || eo == NULL || (q != MOE_QUANT_F32 && xq == NULL)) return MOE_ENOMEM;
  for (int e = 0; e < E; e++) {
    const int lo = count[e], c = count[e + 1] - lo;
    if (c == 0) continue;
    /* Gather this expert's rows, run it once over all of them, scatter back weighted. */
    for (int i = 0; i < c; i++) {
      const int r = slot_row[lo + i];
      if (uq != NULL) memcpy(xq + (size_t)i * qrow, uq + (size_t)r * qrow, qrow);
      else memcpy(xin + (size_t)i * d, u + (size_t)r * d, (size_t)d * sizeof(float));
    }
    int rc = moe__ffn_forward(&blk->experts[e], arena, xin, xq, c, eo);
    if (rc != MOE_OK) return rc;
    for (int i = 0; i < c; i++) ops->axpy_f32(d, slot_gate[lo + i], eo + (size_t)i * d, y + (size_t)slot_row[lo + i] * d);
  }
  for (int s = 0; s < cfg->n_shared; s++) {
    int rc = moe__ffn_forward(&blk->shared[s], arena, u, uq, m, eo);
    if (rc != MOE_OK) return rc;
    ops->add_f32((int64_t)m * d, eo, y);
  }
  ops->add_f32((int64_t)m * d, y, x);
  return MOE_OK;
}

/* ---- encoders ---------------------------------------------------------------------------- */

static int encode_tabular(moe_session_t *sess, const moe_input_t *rows, int m, float *h) {
  const moe_model_t *model = sess->model;
  const moe__config_t *cfg = &model->cfg;
  const int d_in = model->d_in;
  float *xin = MOE__ARENA_FLOATS(&sess->arena, (size_t)m * d_in);
  if (xin == NULL) return MOE_ENOMEM;
  for (int r = 0; r < m; r++) {
    float *xr = xin + (size_t)r * d_in;
    if (cfg->n_numeric > 0 && rows[r].numeric == NULL)
      return sess_err(sess, MOE_EDATA, "row %d: numeric is NULL (the model has %d numeric features)", r,
                      cfg->n_numeric);
    if (cfg->n_categorical > 0 && rows[r].categorical == NULL)
      return sess_err(sess, MOE_EDATA, "row %d: categorical is NULL (the model has %d categorical features)", r,
                      cfg->n_categorical);
    for (int i = 0; i < cfg->n_numeric; i++) {
      const float v = rows[r].numeric[i];
      if (!isfinite(v))
        return sess_err(sess, MOE_EDATA, "row %d: numeric feature %d \"%s\" is %g", r, i, cfg->numeric[i].name,
                        (double)v);
      xr[i] = (v - cfg->numeric[i].mean) / cfg->numeric[i].std;
    }
    int off = cfg->n_numeric;
    for (int i = 0; i < cfg->n_categorical; i++) {
      const moe__categorical_t *c = &cfg->categorical[i];
      const int32_t id = rows[r].categorical[i];
      if (id < 0 || id >= c->vocab_size)
        return sess_err(sess, MOE_EDATA, "row %d: categorical feature %d \"%s\" has id %d, outside [0, %d)", r, i,
                        c->name, (int)id, c->vocab_size);
      memcpy(xr + off, model->cat_emb[i] + (size_t)id * c->dim, (size_t)c->dim * sizeof(float));
      off += c->dim;
    }
  }
  return moe__linear_forward(&model->enc_in, &sess->arena, xin, m, h);
}

static int encode_sensor(moe_session_t *sess, const moe_input_t *rows, int m, float *h) {
  const moe_model_t *model = sess->model;
  const moe__config_t *cfg = &model->cfg;
  const int T = cfg->window, C = cfg->n_channels;
  float *x = MOE__ARENA_FLOATS(&sess->arena, (size_t)m * T * C);
  if (x == NULL) return MOE_ENOMEM;
  for (int r = 0; r < m; r++) {
    if (rows[r].window == NULL)
      return sess_err(sess, MOE_EDATA, "row %d: window is NULL (the model reads [%d, %d] readings)", r, T, C);
    if (rows[r].n_steps < 0 || rows[r].n_steps > T)
      return sess_err(sess, MOE_EDATA, "row %d: n_steps is %d, outside [0, %d] (0: the whole window)", r,
                      (int)rows[r].n_steps, T);
    for (int t = 0; t < T; t++)
      for (int c = 0; c < C; c++) {
        const float v = rows[r].window[(size_t)t * C + c];
        if (!isfinite(v))
          return sess_err(sess, MOE_EDATA, "row %d: channel %d \"%s\" at time step %d is %g", r, c,
                          cfg->channels[c].name, t, (double)v);
        x[((size_t)r * T + t) * C + c] = (v - cfg->channels[c].mean) / cfg->channels[c].std;
      }
  }
  int t = T;
  for (int i = 0; i < cfg->n_conv; i++) {
    const moe__conv1d_t *conv = &model->conv[i];
    const int t_out = moe__conv1d_out_len(conv, t);
    float *y = MOE__ARENA_FLOATS(&sess->arena, (size_t)m * t_out * conv->c_out);
    if (y == NULL) return MOE_ENOMEM;
    int rc = moe__conv1d_forward(conv, &sess->arena, x, m, t, y);
    if (rc != MOE_OK) return rc;
    if (cfg->conv_silu) moe__silu(y, (size_t)m * t_out * conv->c_out);
    else moe__gelu(y, (size_t)m * t_out * conv->c_out);
    x = y;
    t = t_out;
  }
  /* Mean over time of the last conv's output (or of the channels, with no conv layer); pool
   * "summary" also takes the last step and the rise of the least-squares line over the window. */
  const int c_last = cfg->n_conv > 0 ? model->conv[cfg->n_conv - 1].c_out : C;
  float *pooled = MOE__ARENA_FLOATS(&sess->arena, (size_t)m * model->d_in);
  if (pooled == NULL) return MOE_ENOMEM;
  if (cfg->sensor_summary) {
    int32_t *steps = moe__arena_alloc(&sess->arena, (size_t)m * sizeof(int32_t));
    if (steps == NULL) return MOE_ENOMEM;
    for (int r = 0; r < m; r++) steps[r] = moe__sensor_pool_steps(cfg, rows[r].n_steps);
    moe__sensor_summary(x, m, t, c_last, steps, pooled);
    return moe__linear_forward(&model->enc_in, &sess->arena, pooled, m, h);
  }
  for (int r = 0; r < m; r++) {
    float *p = pooled + (size_t)r * c_last;
    memset(p, 0, (size_t)c_last * sizeof(float));
    for (int s = 0; s < t; s++)
      for (int c = 0; c < c_last; c++) p[c] += x[((size_t)r * t + s) * c_last + c];
    for (int c = 0; c < c_last; c++) p[c] /= (float)t;
  }
  return moe__linear_forward(&model->enc_in, &sess->arena, pooled, m, h);
}

static int cmp_id(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

int moe__bag_counts(const int32_t *ids, int n, int32_t *uniq, int32_t *count) {
  int k = 0;
  memcpy(uniq, ids, (size_t)n * sizeof(int32_t));
  qsort(uniq, (size_t)n, sizeof(int32_t), cmp_id);
  for (int i = 0; i < n; i++) {
    if (uniq[i] == MOE__BAG_PAD) continue; /* padding is no piece: not in the bag */
    if (k > 0 && uniq[k - 1] == uniq[i]) {
      count[k - 1]++;
      continue;
    }
    uniq[k] = uniq[i];
    count[k++] = 1;
  }
  return k;
}

/* Pool "bag" (rows already validated): h_r = sum over the row's distinct pieces t of
 * w_t tok_emb[t], w_t = u_t / sqrt(sum_v u_v^2), u_t = (1 + ln c_t) idf[t] (idf 1 without
 * enc.idf.weight): a TF-IDF row with sublinear counts and L2 norm, times the embeddings. Order
 * and repetition beyond the count do not matter, and the cost is linear in the tokens. */
static int encode_bag(moe_session_t *sess, const moe_input_t *rows, int m, float *h) {
  const moe_model_t *model = sess->model;
  const int d = model->cfg.d_model, ml = model->cfg.max_len;
  int32_t *uniq = moe__arena_alloc(&sess->arena, (size_t)ml * sizeof(int32_t));
  int32_t *count = moe__arena_alloc(&sess->arena, (size_t)ml * sizeof(int32_t));
  float *w = MOE__ARENA_FLOATS(&sess->arena, (size_t)ml);
  if (uniq == NULL || count == NULL || w == NULL) return MOE_ENOMEM;
  for (int r = 0; r < m; r++) {
    const int k = moe__bag_counts(rows[r].tokens, rows[r].n_tokens, uniq, count);
    float *hr = h + (size_t)r * d;
    double ss = 0;
    for (int i = 0; i < k; i++) {
      w[i] = 1.0f + logf((float)count[i]);
      if (model->idf != NULL) w[i] *= model->idf[uniq[i]];
      ss += (double)w[i] * w[i];
    }
    /* Learnt piece weights could all be 0 for a row: then the row is the zero vector. */
    const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    memset(hr, 0, (size_t)d * sizeof(float));
    for (int i = 0; i < k; i++) {
      const float *te = model->tok_emb + (size_t)uniq[i] * d, wi = w[i] * inv;
      for (int j = 0; j < d; j++) hr[j] += wi * te[j];
    }
  }
  return MOE_OK;
}

static int encode_text(moe_session_t *sess, const moe_input_t *rows, int m, float *h) {
  const moe_model_t *model = sess->model;
  const moe__config_t *cfg = &model->cfg;
  moe__arena_t *arena = &sess->arena;
  const int d = cfg->d_model;
  int *start = moe__arena_alloc(arena, (size_t)(m + 1) * sizeof(int));
  if (start == NULL) return MOE_ENOMEM;
  start[0] = 0;
  for (int r = 0; r < m; r++) {
    const int n = rows[r].n_tokens;
    if (n < 1 || n > cfg->max_len)
      return sess_err(sess, MOE_EDATA, "row %d: %d tokens, expected 1 to max_len %d", r, n, cfg->max_len);
    if (rows[r].tokens == NULL) return sess_err(sess, MOE_EDATA, "row %d: tokens is NULL", r);
    for (int i = 0; i < n; i++)
      if (rows[r].tokens[i] < 0 || rows[r].tokens[i] >= cfg->vocab_size)
        return sess_err(sess, MOE_EDATA, "row %d: token %d has id %d, outside [0, %d)", r, i, (int)rows[r].tokens[i],
                        cfg->vocab_size);
    start[r + 1] = start[r] + n;
    /* Token rows go through int-indexed GEMMs; no real batch comes near this. */
    if (start[r + 1] > (1 << 26))
      return sess_err(sess, MOE_EINVAL, "batch has more than %d tokens; split it", 1 << 26);
  }
  if (cfg->text_bag) return encode_bag(sess, rows, m, h);
  const int N = start[m];
  float *hs = MOE__ARENA_FLOATS(arena, (size_t)N * d);
  float *a = MOE__ARENA_FLOATS(arena, (size_t)N * d);
  float *o = MOE__ARENA_FLOATS(arena, (size_t)N * d);
  float *t = MOE__ARENA_FLOATS(arena, (size_t)N * d);
  float *qkv = MOE__ARENA_FLOATS(arena, (size_t)N * 3 * d);
  float *sc = MOE__ARENA_FLOATS(arena, MOE__ATTN_SCRATCH(cfg->max_len));
  if (!hs || !a || !o || !t || !qkv || !sc) return MOE_ENOMEM;
  for (int r = 0; r < m; r++)
    for (int i = 0; i < rows[r].n_tokens; i++) {
      float *hr = hs + (size_t)(start[r] + i) * d;
      const float *te = model->tok_emb + (size_t)rows[r].tokens[i] * d;
      const float *pe = model->pos_emb + (size_t)i * d;
      for (int j = 0; j < d; j++) hr[j] = te[j] + pe[j];
    }
  for (int l = 0; l < cfg->n_layer; l++) {
    const moe__text_layer_t *L = &model->layers[l];
    int rc;
    moe__norm_forward(&L->attn_norm, hs, N, a);
    if ((rc = moe__linear_forward(&L->qkv, arena, a, N, qkv)) != MOE_OK) return rc;
    for (int r = 0; r < m; r++)
      moe__attention_windowed(qkv + (size_t)start[r] * 3 * d, rows[r].n_tokens, d, cfg->n_head, L->window,
                              cfg->n_global, sc, o + (size_t)start[r] * d);
    if ((rc = moe__linear_forward(&L->out, arena, o, N, t)) != MOE_OK) return rc;
    for (size_t i = 0; i < (size_t)N * d; i++) hs[i] += t[i];
    moe__norm_forward(&L->ffn_norm, hs, N, a);
    if ((rc = moe__ffn_forward(&L->ffn, arena, a, NULL, N, t)) != MOE_OK) return rc;
    for (size_t i = 0; i < (size_t)N * d; i++) hs[i] += t[i];
  }
  moe__norm_forward(&model->enc_norm, hs, N, a);
  for (int r = 0; r < m; r++) {
    float *hr = h + (size_t)r * d;
    const int n = rows[r].n_tokens;
    memset(hr, 0, (size_t)d * sizeof(float));
    for (int i = 0; i < n; i++)
      for (int j = 0; j < d; j++) hr[j] += a[(size_t)(start[r] + i) * d + j];
    for (int j = 0; j < d; j++) hr[j] /= (float)n;
  }
  return MOE_OK;
}

/* ---- session ------------------------------------------------------------------------------ */

int moe_session_new(const moe_model_t *model, int max_batch, moe_session_t **sess_out) {
  *sess_out = NULL;
  if (model == NULL || max_batch < 1 || max_batch > 65536) return MOE_EINVAL;
  moe_session_t *sess = moe__calloc(1, sizeof *sess);
  if (sess == NULL) return MOE_ENOMEM;
  sess->model = model;
  sess->max_batch = max_batch;
  /* A first guess of the scratch size; the arena grows to the real high water on first use. */
  size_t guess = (size_t)max_batch * (size_t)model->cfg.d_model * 16 * sizeof(float);
  if (guess > ((size_t)64 << 20)) guess = (size_t)64 << 20;
  if (moe__arena_init(&sess->arena, guess) != MOE_OK) {
    moe__free(sess);
    return MOE_ENOMEM;
  }
  *sess_out = sess;
  return MOE_OK;
}

void moe_session_free(moe_session_t *sess) {
  if (sess == NULL) return;
  moe__free(sess->attr_rows);
  moe__free(sess->attr_data);
  moe__free(sess->attr_scores);
  moe__arena_close(&sess->arena);
  moe__free(sess);
}

const char *moe_session_error(const moe_session_t *sess) { return sess->err; }

int moe_session_run(moe_session_t *sess, const moe_input_t *rows, int n_rows, moe_output_t *out) {
  const moe_model_t *model = sess->model;
  const moe__config_t *cfg = &model->cfg;
  const int m = n_rows, d = cfg->d_model;
  int rc;
  sess->err[0] = '\0';
  if (rows == NULL || out == NULL || out->scores == NULL)
    return sess_err(sess, MOE_EINVAL, "rows, out and out->scores must not be NULL");
  if (n_rows < 1 || n_rows > sess->max_batch)
    return sess_err(sess, MOE_EINVAL, "n_rows %d is outside [1, max_batch %d]", n_rows, sess->max_batch);
  if ((rc = moe__arena_reset(&sess->arena)) != MOE_OK) return sess_err(sess, rc, "out of memory");

  float *h = MOE__ARENA_FLOATS(&sess->arena, (size_t)m * d);
  if (h == NULL) return sess_err(sess, MOE_ENOMEM, "out of memory");
  if (cfg->enc == MOE_ENCODER_TABULAR) rc = encode_tabular(sess, rows, m, h);
  else if (cfg->enc == MOE_ENCODER_SENSOR) rc = encode_sensor(sess, rows, m, h);
  else rc = encode_text(sess, rows, m, h);
  if (rc != MOE_OK) goto fail;

  if (out->expert_load != NULL) memset(out->expert_load, 0, (size_t)model->load_size * sizeof(int32_t));
  for (int b = 0; b < cfg->n_moe; b++) {
    rc = moe__moe_block_forward(&model->blocks[b], &sess->arena, h, m, d, model->route_size, out->expert_ids,
                                out->expert_weights, out->expert_load);
    if (rc != MOE_OK) goto fail;
  }

  float *a = h; /* "head_norm": false: the head reads h itself */
  if (!cfg->no_head_norm) {
    if ((a = MOE__ARENA_FLOATS(&sess->arena, (size_t)m * d)) == NULL) {
      rc = MOE_ENOMEM;
      goto fail;
    }
    moe__norm_forward(&model->head_norm, h, m, a);
  }
  if ((rc = moe__linear_forward(&model->head, &sess->arena, a, m, out->scores)) != MOE_OK) goto fail;
  const int n_out = model->n_outputs;
  for (int r = 0; r < m; r++) {
    float *s = out->scores + (size_t)r * n_out;
    if (cfg->task == MOE_TASK_BINARY) s[0] = moe__sigmoid(s[0]);
    else if (cfg->task == MOE_TASK_MULTICLASS) moe__softmax(s, n_out);
  }
  return MOE_OK;
fail:
  if (sess->err[0] == '\0') sess_err(sess, rc, "%s", moe_strerror(rc));
  return rc;
}
