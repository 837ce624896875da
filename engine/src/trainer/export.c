/*
 * Quantization and export for the trainer: the q8_0 / q4_0 weight quantizers of the model format
 * (engine/MODEL_FORMAT.md; the same rules as tests/golden/gen_golden.py), the fake-quantized
 * copy of the parameters that quantization-aware training runs its forward pass on, and the
 * writer of the model file (config with the chosen "quant", tensors by the naming convention).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc-impl.h"
#include "io/safetensors.h"
#include "quant/blocks.h"
#include "trainer/trainer-impl.h"

#define QK 32

static float fp16_round(float x) {
  if (x > 65504.0f) x = 65504.0f;
  if (x < -65504.0f) x = -65504.0f;
  return kern_fp16_to_fp32(kern_fp32_to_fp16(x));
}

/* One block of 32: scale (fp16-representable) and quants (q8_0: -127..127; q4_0: 0..15,
 * value (q - 8) * d). */
static float quant_block(moe_quant_t q, const tr_real *x, int *qs) {
  if (q == MOE_QUANT_Q8_0) {
    float amax = 0;
    for (int i = 0; i < QK; i++) amax = fabsf((float)x[i]) > amax ? fabsf((float)x[i]) : amax;
    const float d = fp16_round(amax / 127.0f), inv = d != 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < QK; i++) {
      float v = nearbyintf((float)x[i] * inv);
      qs[i] = (int)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    return d;
  }
  /* q4_0: the value of largest magnitude (the first of equals) maps to -8 exactly. */
  float vmax = 0, amax = 0;
  for (int i = 0; i < QK; i++)
    if (fabsf((float)x[i]) > amax) {
      amax = fabsf((float)x[i]);
      vmax = (float)x[i];
    }
  const float d = fp16_round(vmax / -8.0f), inv = d != 0 ? 1.0f / d : 0.0f;
  for (int i = 0; i < QK; i++) {
    float v = floorf((float)x[i] * inv + 8.5f);
    qs[i] = (int)(v > 15 ? 15 : v < 0 ? 0 : v);
  }
  return d;
}

void moe__tr_fake_quant_row(moe_quant_t q, const tr_real *x, int k, tr_real *y) {
  int qs[QK];
  for (int b = 0; b < k / QK; b++) {
    const float d = quant_block(q, x + b * QK, qs);
    for (int i = 0; i < QK; i++) y[b * QK + i] = (tr_real)((float)(q == MOE_QUANT_Q8_0 ? qs[i] : qs[i] - 8) * d);
  }
}

static bool is_quantized(const tr_tensor_t *t, moe_quant_t q) {
  return q != MOE_QUANT_F32 && t->quantizable && t->shape[1] % QK == 0;
}

void moe__tr_fake_quant_all(moe_trainer_t *tr) {
  memcpy(tr->fq, tr->p, tr->n_values * sizeof(tr_real));
  for (int i = 0; i < tr->n_tensors; i++) {
    const tr_tensor_t *t = &tr->tensors[i];
    if (!is_quantized(t, tr->opts.qat)) continue;
    for (int r = 0; r < t->shape[0]; r++) {
      const size_t o = t->off + (size_t)r * t->shape[1];
      moe__tr_fake_quant_row(tr->opts.qat, tr->p + o, t->shape[1], tr->fq + o);
    }
  }
}

/* ---- export ---------------------------------------------------------------------------- */

static char *config_with_quant(const moe_trainer_t *tr, moe_quant_t quant) {
  static const char *const names[] = {"f32", "q8_0", "q4_0"};
  const moe_json_t *root = moe_json_root(tr->doc);
  moe_jw_t jw;
  char *out = NULL;
  moe_jw_init(&jw);
  moe_jw_obj_begin(&jw);
  for (size_t i = 0; i < moe_json_len(root); i++) {
    const moe_json_member_t *mb = moe_json_member_at(root, i);
    moe_jw_keyn(&jw, mb->key, mb->key_len);
    if (strcmp(mb->key, "quant") == 0) moe_jw_str(&jw, names[quant]);
    else moe_jw_value(&jw, mb->value);
  }
  moe_jw_obj_end(&jw);
  if (moe_jw_finish(&jw, &out, NULL) != MOE_OK) out = NULL;
  moe_jw_close(&jw);
  return out;
}

int moe_trainer_export(moe_trainer_t *tr, const char *path, moe_quant_t quant, char *errstr, size_t errstr_size) {
  const moe__config_t *cfg = &tr->cfg;
  const size_t n_st = (size_t)tr->n_tensors * 2 + (size_t)cfg->n_moe + 1;
  moe_st_tensor_t *st = moe__calloc(n_st, sizeof *st);
  void **bufs = moe__calloc(n_st, sizeof *bufs);
  char(*names)[72] = moe__calloc(n_st, sizeof *names);
  char *config = config_with_quant(tr, quant);
  size_t k = 0;
  int rc = MOE_ENOMEM;
  if (quant != MOE_QUANT_F32 && quant != MOE_QUANT_Q8_0 && quant != MOE_QUANT_Q4_0) {
    rc = MOE_EINVAL;
    if (errstr != NULL && errstr_size > 0) snprintf(errstr, errstr_size, "quant %d is not a moe_quant_t", (int)quant);
    goto out;
  }
  if (!st || !bufs || !names || !config) goto out;
  for (int i = 0; i < tr->n_tensors; i++) {
    const tr_tensor_t *t = &tr->tensors[i];
    const tr_real *src = tr->p + t->off;
    const int n = t->shape[0], kk = t->shape[1];
    if (!is_quantized(t, quant)) {
      float *f = bufs[k] = moe__malloc(t->n * sizeof(float) + 1);
      if (f == NULL) goto out;
      for (size_t j = 0; j < t->n; j++) f[j] = (float)src[j];
      st[k] = (moe_st_tensor_t){.name = t->name, .dtype = MOE_ST_F32, .ndim = t->ndim, .data = f,
                                .nbytes = t->n * sizeof(float)};
      for (int dd = 0; dd < t->ndim; dd++) st[k].shape[dd] = t->shape[dd];
      k++;
      continue;
    }
    const int nb = kk / QK;
    float *scale = moe__malloc((size_t)n * nb * sizeof(float));
    const size_t qbytes = quant == MOE_QUANT_Q8_0 ? (size_t)n * kk : (size_t)n * kk / 2;
    uint8_t *qd = moe__malloc(qbytes);
    bufs[k] = qd;
    bufs[k + 1] = scale;
    if (!scale || !qd) goto out;
    int qs[QK];
    for (int r = 0; r < n; r++)
      for (int b = 0; b < nb; b++) {
        scale[(size_t)r * nb + b] = quant_block(quant, src + (size_t)r * kk + b * QK, qs);
        if (quant == MOE_QUANT_Q8_0) {
          for (int j = 0; j < QK; j++) ((int8_t *)qd)[(size_t)r * kk + b * QK + j] = (int8_t)qs[j];
        } else {
          uint8_t *o = qd + (size_t)r * kk / 2 + (size_t)b * QK / 2;
          for (int j = 0; j < QK / 2; j++) o[j] = (uint8_t)(qs[j] | (qs[j + QK / 2] << 4));
        }
      }
    st[k] = (moe_st_tensor_t){.name = t->name, .dtype = quant == MOE_QUANT_Q8_0 ? MOE_ST_I8 : MOE_ST_U8, .ndim = 2,
                              .data = qd, .nbytes = qbytes};
    st[k].shape[0] = n;
    st[k].shape[1] = quant == MOE_QUANT_Q8_0 ? kk : kk / 2;
    k++;
    /* "<p>.weight" -> "<p>.scale" */
    snprintf(names[k], sizeof names[k], "%.*s.scale", (int)(strlen(t->name) - strlen(".weight")), t->name);
    st[k] = (moe_st_tensor_t){.name = names[k], .dtype = MOE_ST_F32, .ndim = 2, .data = scale,
                              .nbytes = (size_t)n * nb * sizeof(float)};
    st[k].shape[0] = n;
    st[k].shape[1] = nb;
    k++;
  }
  for (int b = 0; b < cfg->n_moe; b++) {
    const int E = tr->blocks[b].cfg.n_expert;
    float *f = bufs[k] = moe__malloc((size_t)E * sizeof(float));
    if (f == NULL) goto out;
    for (int e = 0; e < E; e++) f[e] = (float)tr->blocks[b].sel_bias[e];
    snprintf(names[k], sizeof names[k], "moe.%d.router.bias", b);
    st[k] = (moe_st_tensor_t){.name = names[k], .dtype = MOE_ST_F32, .ndim = 1, .data = f,
                              .nbytes = (size_t)E * sizeof(float)};
    st[k].shape[0] = E;
    k++;
  }
  {
    const moe_st_kv_t meta = {"config", config};
    rc = moe_st_write(path, st, k, &meta, 1, errstr, errstr_size);
  }
out:
  if (bufs != NULL)
    for (size_t i = 0; i < n_st; i++) moe__free(bufs[i]);
  moe__free(bufs);
  moe__free(st);
  moe__free(names);
  moe__free(config);
  return rc;
}
