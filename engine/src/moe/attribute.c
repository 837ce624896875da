/*
 * Feature attributions by occlusion, on demand: a row is re-scored with each input feature in
 * turn replaced by its neutral value, and the change of the chosen output is that feature's
 * contribution. The occluded copies run as ordinary batches through the same session, so the
 * plain scoring path pays nothing for this; the copies' memory is allocated on first use and
 * kept by the session.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc-impl.h"
#include "moe/model-impl.h"

int moe_model_n_attributions(const moe_model_t *model) {
  switch (model->cfg.enc) {
  case MOE_ENCODER_TABULAR: return model->cfg.n_numeric + model->cfg.n_categorical;
  case MOE_ENCODER_SENSOR: return model->cfg.n_channels;
  default: return 0;
  }
}

/* Grows *buf to hold at least `need` bytes (contents not kept). */
static int reserve(void **buf, size_t *cap, size_t need) {
  if (*cap >= need) return MOE_OK;
  void *p = moe__malloc(need);
  if (p == NULL) return MOE_ENOMEM;
  moe__free(*buf);
  *buf = p;
  *cap = need;
  return MOE_OK;
}

int moe_session_attribute(moe_session_t *sess, const moe_input_t *row, int output, float *attr, int n_attr) {
  const moe_model_t *model = sess->model;
  const moe__config_t *cfg = &model->cfg;
  const int n_out = model->n_outputs;
  int n_feat;
  size_t per_row;
  if (row == NULL || attr == NULL) return MOE_EINVAL;
  switch (cfg->enc) {
  case MOE_ENCODER_TABULAR:
    n_feat = cfg->n_numeric + cfg->n_categorical;
    per_row = (size_t)cfg->n_numeric * sizeof(float) + (size_t)cfg->n_categorical * sizeof(int32_t);
    break;
  case MOE_ENCODER_SENSOR:
    n_feat = cfg->n_channels;
    per_row = (size_t)cfg->window * cfg->n_channels * sizeof(float);
    break;
  default:
    if (row->n_tokens < 1 || row->n_tokens > cfg->max_len || row->tokens == NULL) {
      snprintf(sess->err, sizeof sess->err, "row 0: %d tokens, expected 1 to max_len %d", row->n_tokens, cfg->max_len);
      return MOE_EDATA;
    }
    n_feat = row->n_tokens;
    per_row = (size_t)row->n_tokens * sizeof(int32_t);
    break;
  }
  if (output < 0 || output >= n_out || n_attr < n_feat) {
    snprintf(sess->err, sizeof sess->err, "output %d of %d, room for %d attributions of %d", output, n_out, n_attr,
             n_feat);
    return MOE_EINVAL;
  }
  const int v = n_feat + 1; /* variant 0 is the row itself */
  if (reserve((void **)&sess->attr_rows, &sess->attr_rows_cap, (size_t)v * sizeof(moe_input_t)) != MOE_OK ||
      reserve(&sess->attr_data, &sess->attr_data_cap, (size_t)v * per_row) != MOE_OK ||
      reserve((void **)&sess->attr_scores, &sess->attr_scores_cap, (size_t)v * n_out * sizeof(float)) != MOE_OK)
    return MOE_ENOMEM;

  char *data = sess->attr_data;
  for (int i = 0; i < v; i++) {
    moe_input_t *in = &sess->attr_rows[i];
    char *d = data + (size_t)i * per_row;
    memset(in, 0, sizeof *in);
    const int f = i - 1; /* the occluded feature, -1 for none */
    if (cfg->enc == MOE_ENCODER_TABULAR) {
      float *num = (float *)d;
      int32_t *cat = (int32_t *)(d + (size_t)cfg->n_numeric * sizeof(float));
      if (cfg->n_numeric > 0) memcpy(num, row->numeric, (size_t)cfg->n_numeric * sizeof(float));
      if (cfg->n_categorical > 0) memcpy(cat, row->categorical, (size_t)cfg->n_categorical * sizeof(int32_t));
      /* Neutral: a numeric feature at its training mean, a categorical one at id 0 (<unk>). */
      if (f >= 0 && f < cfg->n_numeric) num[f] = cfg->numeric[f].mean;
      else if (f >= cfg->n_numeric) cat[f - cfg->n_numeric] = 0;
      in->numeric = cfg->n_numeric > 0 ? num : NULL;
      in->categorical = cfg->n_categorical > 0 ? cat : NULL;
    } else if (cfg->enc == MOE_ENCODER_SENSOR) {
      float *w = (float *)d;
      memcpy(w, row->window, per_row);
      /* Neutral: the channel at its mean for the whole window. */
      if (f >= 0)
        for (int t = 0; t < cfg->window; t++) w[(size_t)t * cfg->n_channels + f] = cfg->channels[f].mean;
      in->window = w;
      /* The row's observed steps too: pool "summary" reads only those (moe_input_t.n_steps). */
      in->n_steps = row->n_steps;
    } else {
      int32_t *tok = (int32_t *)d;
      memcpy(tok, row->tokens, per_row);
      /* Neutral: id 0 ([PAD] / [UNK] by convention), keeping positions. */
      if (f >= 0) tok[f] = 0;
      in->tokens = tok;
      in->n_tokens = row->n_tokens;
    }
  }
  for (int at = 0; at < v; at += sess->max_batch) {
    const int b = v - at < sess->max_batch ? v - at : sess->max_batch;
    moe_output_t out = {sess->attr_scores + (size_t)at * n_out, NULL, NULL, NULL};
    int rc = moe_session_run(sess, sess->attr_rows + at, b, &out);
    if (rc != MOE_OK) return rc;
  }
  const float base = sess->attr_scores[output];
  for (int f = 0; f < n_feat; f++) attr[f] = base - sess->attr_scores[(size_t)(f + 1) * n_out + output];
  return MOE_OK;
}
