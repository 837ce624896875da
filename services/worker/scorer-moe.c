/*
 * The wk_scorer_t implementation over libmoe: a binary tabular model whose numeric inputs are
 * fraud features by name. The contract is in scorer.h.
 */
#include "scorer.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fraud-input.h"
#include "moe/moe.h"

typedef struct sm__impl_s {
  wk_scorer_t pub;
  moe_model_t *model;
  const char **names; /* (n_inputs) borrowed from the model */
  int route_size;
  int n_blocks;
  moe_block_info_t blocks[16];
} sm__impl_t;

struct wk_scorer_session_s {
  sm__impl_t *sc;
  moe_session_t *sess;
  moe_input_t *rows;         /* (max_batch) */
  float *scores;             /* (max_batch) */
  int32_t *expert_ids;       /* (max_batch * route_size) */
  float *expert_weights;     /* (max_batch * route_size) */
  int32_t *expert_load;      /* (load_size) */
  float *attr;               /* (n_attr) */
  int n_attr;
};

void wk_scorer_free(wk_scorer_t *sc) {
  if (sc != NULL) sc->free(sc);
}

static void sm__free(wk_scorer_t *pub) {
  sm__impl_t *sc = (sm__impl_t *)pub;
  moe_model_free(sc->model);
  free(sc->names);
  free(sc);
}

static void sm__session_free(wk_scorer_session_t *s) {
  if (s == NULL) return;
  moe_session_free(s->sess);
  free(s->rows);
  free(s->scores);
  free(s->expert_ids);
  free(s->expert_weights);
  free(s->expert_load);
  free(s->attr);
  free(s);
}

static svc_err_t sm__session_new(wk_scorer_t *pub, wk_scorer_session_t **out) {
  sm__impl_t *sc = (sm__impl_t *)pub;
  *out = NULL;
  wk_scorer_session_t *s = calloc(1, sizeof *s);
  if (s == NULL) return SVC_ENOMEM;
  s->sc = sc;
  size_t nb = pub->max_batch, rs = (size_t)sc->route_size;
  s->rows = calloc(nb, sizeof *s->rows);
  s->scores = calloc(nb, sizeof *s->scores);
  s->expert_ids = calloc(nb * rs + 1, sizeof *s->expert_ids);
  s->expert_weights = calloc(nb * rs + 1, sizeof *s->expert_weights);
  s->expert_load = calloc(pub->load_size + 1, sizeof *s->expert_load);
  s->n_attr = moe_model_n_attributions(sc->model);
  s->attr = calloc((size_t)s->n_attr + 1, sizeof *s->attr);
  if (s->rows == NULL || s->scores == NULL || s->expert_ids == NULL ||
      s->expert_weights == NULL || s->expert_load == NULL || s->attr == NULL ||
      moe_session_new(sc->model, (int)nb, &s->sess) != MOE_OK) {
    sm__session_free(s);
    return SVC_ENOMEM;
  }
  *out = s;
  return SVC_OK;
}

static svc_err_t sm__score(wk_scorer_session_t *s, const float *x, size_t n, wk_score_t *out,
                           int64_t *expert_load, char *errstr, size_t errstr_size) {
  sm__impl_t *sc = s->sc;
  size_t w = sc->pub.n_inputs;
  if (n == 0 || n > sc->pub.max_batch) {
    snprintf(errstr, errstr_size, "batch of %zu rows, the scorer takes 1..%zu", n,
             sc->pub.max_batch);
    return SVC_EINVAL;
  }
  /* The engine would refuse the whole batch; naming the row here is more useful. */
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < w; j++) {
      if (!isfinite(x[i * w + j])) {
        snprintf(errstr, errstr_size, "row %zu input \"%s\" is not finite", i,
                 sc->pub.input_names[j]);
        return SVC_EINVAL;
      }
    }
    s->rows[i] = (moe_input_t){.numeric = &x[i * w]};
  }
  moe_output_t mo = {.scores = s->scores, .expert_ids = s->expert_ids,
                     .expert_weights = s->expert_weights,
                     .expert_load = sc->pub.load_size ? s->expert_load : NULL};
  int rc = moe_session_run(s->sess, s->rows, (int)n, &mo);
  if (rc != MOE_OK) {
    snprintf(errstr, errstr_size, "%s: %s", moe_err_name(rc), moe_session_error(s->sess));
    return rc == MOE_ENOMEM ? SVC_ENOMEM : SVC_EINVAL;
  }
  size_t rs = (size_t)sc->route_size;
  for (size_t i = 0; i < n; i++) {
    wk_score_t *o = &out[i];
    o->score = s->scores[i];
    o->n_experts = 0;
    o->n_features = 0;
    for (int b = 0; b < sc->n_blocks; b++) {
      for (int k = 0; k < sc->blocks[b].top_k && o->n_experts < WK_SCORE_MAX_EXPERTS; k++) {
        size_t at = i * rs + (size_t)sc->blocks[b].route_offset + (size_t)k;
        o->experts[o->n_experts].layer = (uint16_t)b;
        o->experts[o->n_experts].expert = (uint16_t)s->expert_ids[at];
        o->experts[o->n_experts].weight = s->expert_weights[at];
        o->n_experts++;
      }
    }
  }
  if (expert_load != NULL)
    for (size_t i = 0; i < sc->pub.load_size; i++) expert_load[i] += s->expert_load[i];
  return SVC_OK;
}

static svc_err_t sm__explain(wk_scorer_session_t *s, const float *row, wk_score_t *out,
                             char *errstr, size_t errstr_size) {
  sm__impl_t *sc = s->sc;
  moe_input_t in = {.numeric = row};
  int rc = moe_session_attribute(s->sess, &in, 0, s->attr, s->n_attr);
  if (rc != MOE_OK) {
    snprintf(errstr, errstr_size, "%s: %s", moe_err_name(rc), moe_session_error(s->sess));
    return rc == MOE_ENOMEM ? SVC_ENOMEM : SVC_EINVAL;
  }
  /* Top-k by magnitude: k is tiny, a selection pass per slot is enough. */
  size_t n = sc->pub.n_inputs < (size_t)s->n_attr ? sc->pub.n_inputs : (size_t)s->n_attr;
  out->n_features = 0;
  for (uint32_t k = 0; k < WK_SCORE_MAX_FEATURES && k < n; k++) {
    int best = -1;
    for (size_t i = 0; i < n; i++) {
      bool taken = false;
      for (uint32_t j = 0; j < k; j++) taken |= out->features[j].input == i;
      if (taken) continue;
      if (best < 0 || fabsf(s->attr[i]) > fabsf(s->attr[best])) best = (int)i;
    }
    out->features[k].input = (uint32_t)best;
    out->features[k].contribution = s->attr[best];
    out->n_features = k + 1;
  }
  return SVC_OK;
}

svc_err_t wk_scorer_moe_open(const char *path, size_t max_batch, wk_scorer_t **out,
                             char *errstr, size_t errstr_size) {
  *out = NULL;
  if (max_batch == 0 || max_batch > 65536) {
    snprintf(errstr, errstr_size, "scorer: max batch %zu is outside 1..65536", max_batch);
    return SVC_ECONFIG;
  }
  char err[512];
  moe_model_t *model = NULL;
  int rc = moe_model_load(path, &model, err, sizeof err);
  if (rc != MOE_OK) {
    snprintf(errstr, errstr_size, "model %s: %s", path, err);
    return rc == MOE_ENOENT ? SVC_ENOENT
           : rc == MOE_EIO  ? SVC_EIO
           : rc == MOE_ENOMEM ? SVC_ENOMEM
                              : SVC_ECONFIG;
  }
  svc_err_t ret = SVC_ECONFIG;
  sm__impl_t *sc = calloc(1, sizeof *sc);
  if (sc == NULL) {
    ret = SVC_ENOMEM;
    goto fail;
  }
  sc->model = model;
  if (moe_model_task(model) != MOE_TASK_BINARY || moe_model_encoder(model) != MOE_ENCODER_TABULAR) {
    snprintf(errstr, errstr_size, "model %s: a fraud model must be a binary tabular model", path);
    goto fail;
  }
  if (moe_model_n_categorical(model) != 0) {
    snprintf(errstr, errstr_size,
             "model %s: categorical input \"%s\" is not supported by the fraud input builder",
             path, moe_model_categorical_name(model, 0));
    goto fail;
  }
  int n_in = moe_model_n_numeric(model);
  sc->names = calloc((size_t)n_in + 1, sizeof *sc->names);
  if (sc->names == NULL) {
    ret = SVC_ENOMEM;
    goto fail;
  }
  for (int i = 0; i < n_in; i++) sc->names[i] = moe_model_numeric_name(model, i);
  /* Every input must be a feature the builder produces: fail at start, not per event. */
  wk_feature_map_t probe;
  char merr[384];
  if (wk_feature_map_init(&probe, sc->names, (size_t)n_in, merr, sizeof merr) != SVC_OK) {
    snprintf(errstr, errstr_size, "model %s: %s", path, merr);
    goto fail;
  }
  wk_feature_map_close(&probe);
  sc->n_blocks = moe_model_n_moe_blocks(model);
  if (sc->n_blocks > (int)(sizeof sc->blocks / sizeof sc->blocks[0])) {
    snprintf(errstr, errstr_size, "model %s: %d MoE blocks, the worker reports at most 16", path,
             sc->n_blocks);
    goto fail;
  }
  for (int b = 0; b < sc->n_blocks; b++) moe_model_moe_block(model, b, &sc->blocks[b]);
  sc->route_size = moe_model_route_size(model);

  sc->pub.impl = sc;
  sc->pub.version = moe_model_version(model);
  sc->pub.threshold = moe_model_threshold(model);
  sc->pub.n_inputs = (size_t)n_in;
  sc->pub.input_names = sc->names;
  sc->pub.max_batch = max_batch;
  sc->pub.load_size = (size_t)moe_model_load_size(model);
  sc->pub.session_new = sm__session_new;
  sc->pub.session_free = sm__session_free;
  sc->pub.score = sm__score;
  sc->pub.explain = sm__explain;
  sc->pub.free = sm__free;
  *out = &sc->pub;
  return SVC_OK;

fail:
  if (sc) free(sc->names);
  free(sc);
  moe_model_free(model);
  return ret;
}

size_t wk_score_experts_json(const wk_score_t *s, char *buf, size_t size) {
  size_t len = 0;
  if (size < 3) {
    if (size) buf[0] = '\0';
    return 0;
  }
  buf[len++] = '[';
  for (uint32_t i = 0; i < s->n_experts; i++) {
    char item[96];
    int n = snprintf(item, sizeof item, "%s{\"layer\":%u,\"expert\":%u,\"weight\":%.6g}",
                     i ? "," : "", s->experts[i].layer, s->experts[i].expert,
                     isfinite(s->experts[i].weight) ? (double)s->experts[i].weight : 0.0);
    if (n < 0 || len + (size_t)n + 2 > size) break;
    memcpy(buf + len, item, (size_t)n);
    len += (size_t)n;
  }
  buf[len++] = ']';
  buf[len] = '\0';
  return len;
}

/* Writes s as a JSON string body with quotes and control characters escaped. */
static size_t sm__json_str(const char *s, char *out, size_t size) {
  size_t n = 0;
  for (; *s && n + 7 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20) {
      n += (size_t)snprintf(out + n, size - n, "\\u%04x", c);
    } else {
      out[n++] = (char)c;
    }
  }
  out[n] = '\0';
  return n;
}

size_t wk_score_features_json(const wk_score_t *s, const char *const *names, char *buf,
                              size_t size) {
  size_t len = 0;
  if (size < 3) {
    if (size) buf[0] = '\0';
    return 0;
  }
  buf[len++] = '[';
  for (uint32_t i = 0; i < s->n_features; i++) {
    char name[160], item[256];
    sm__json_str(names[s->features[i].input], name, sizeof name);
    float c = s->features[i].contribution;
    int n = snprintf(item, sizeof item, "%s{\"name\":\"%s\",\"contribution\":%.6g}",
                     i ? "," : "", name, isfinite(c) ? (double)c : 0.0);
    if (n < 0 || len + (size_t)n + 2 > size) break;
    memcpy(buf + len, item, (size_t)n);
    len += (size_t)n;
  }
  buf[len++] = ']';
  buf[len] = '\0';
  return len;
}
