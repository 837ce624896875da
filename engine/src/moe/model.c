/*
 * Loading a model: open the safetensors container, parse and validate the config, then find
 * every tensor the config implies, check its dtype, shape and values, and copy it into
 * model-owned memory (quantized weights are repacked into the kernel block structs and then
 * into the kernel variant's private layout). A file is untrusted input: every way it can be
 * wrong gives an error naming the tensor and what was expected, and a file with tensors the
 * config does not use is rejected too. Also the read-only accessors of moe.h.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc-impl.h"
#include "core/log-impl.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "moe/model-impl.h"

/*
 * A loaded model plus the listing of the file it came from (moe_model_tensor). The listing
 * sits beside moe_model_s rather than in it because only the loader builds models and only
 * tools read it: scoring never does. The model is the first member, so a moe_model_t * is a
 * loaded_model_t * and moe_model_free frees the whole.
 */
typedef struct loaded_model_s {
  moe_model_t model;
  moe_tensor_info_t *tensors; /* (n_tensors), names after them in the same model-owned block */
  int n_tensors;
} loaded_model_t;

_Static_assert(MOE_TENSOR_MAX_DIMS == MOE_ST_MAX_DIMS, "moe_tensor_info_t holds any safetensors shape");

/* The state of one load: the file, the model being built and where errors go. */
typedef struct loader_s {
  moe_st_file_t *file;
  moe_model_t *model;
  const moe_st_tensor_t **used; /* tensors claimed so far */
  size_t n_used;
  char *errstr;
  size_t errstr_size;
} loader_t;

static int errf(loader_t *ld, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(loader_t *ld, int rc, const char *fmt, ...) {
  if (ld->errstr_size > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->errstr, ld->errstr_size, fmt, ap);
    va_end(ap);
  }
  return rc;
}

static void *model_alloc(moe_model_t *model, size_t n) {
  if (model->n_allocs == model->cap_allocs) {
    int cap = model->cap_allocs ? model->cap_allocs * 2 : 64;
    void **a = moe__reallocarray(model->allocs, (size_t)cap, sizeof *a);
    if (a == NULL) return NULL;
    model->allocs = a;
    model->cap_allocs = cap;
  }
  void *p = moe__malloc_aligned(n == 0 ? 1 : n, 64);
  if (p != NULL) model->allocs[model->n_allocs++] = p;
  return p;
}

static void shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
  size_t len = 0;
  len += (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < ndim && len < size; i++)
    len += (size_t)snprintf(buf + len, size - len, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (len < size) snprintf(buf + len, size - len, "]");
}

/*
 * Finds tensor `name` and checks it is `dtype` with the expected shape (ndim values in
 * shape). `why` says where the expectation comes from, for the message.
 */
static int find_tensor(loader_t *ld, const char *name, moe_st_dtype_t dtype, int ndim,
                       const int64_t *shape, const char *why, const moe_st_tensor_t **out) {
  const moe_st_tensor_t *t = moe_st_tensor_find(ld->file, name);
  char want[128], got[128];
  if (t == NULL) return errf(ld, MOE_EMISSING, "tensor \"%s\" is missing (%s)", name, why);
  if (t->dtype != dtype)
    return errf(ld, MOE_EDTYPE, "tensor \"%s\": dtype %s, expected %s", name,
                moe_st_dtype_name(t->dtype), moe_st_dtype_name(dtype));
  bool same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
  if (!same) {
    shape_str(want, sizeof want, ndim, shape);
    shape_str(got, sizeof got, t->ndim, t->shape);
    return errf(ld, MOE_ESHAPE, "tensor \"%s\": shape %s, expected %s (%s)", name, got, want, why);
  }
  ld->used[ld->n_used++] = t;
  *out = t;
  return MOE_OK;
}

static int check_finite(loader_t *ld, const char *name, const float *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(v[i]))
      return errf(ld, MOE_EFORMAT, "tensor \"%s\": element %zu is not a finite number", name, i);
  return MOE_OK;
}

/* A fp32 tensor of the given shape, copied into model memory. */
static int load_f32(loader_t *ld, const char *name, int ndim, const int64_t *shape, const char *why,
                    float **out) {
  const moe_st_tensor_t *t;
  int rc = find_tensor(ld, name, MOE_ST_F32, ndim, shape, why, &t);
  if (rc != MOE_OK) return rc;
  size_t n = t->nbytes / sizeof(float);
  float *p = model_alloc(ld->model, t->nbytes);
  if (p == NULL) return errf(ld, MOE_ENOMEM, "out of memory loading tensor \"%s\"", name);
  memcpy(p, t->data, t->nbytes);
  rc = check_finite(ld, name, p, n);
  if (rc != MOE_OK) return rc;
  ld->model->n_params += (int64_t)n;
  *out = p;
  return MOE_OK;
}

static int load_vec(loader_t *ld, const char *name, int64_t n, const char *why, float **out) {
  return load_f32(ld, name, 1, &n, why, out);
}

static int load_norm(loader_t *ld, const char *prefix, int d, moe__norm_t *norm) {
  const moe__config_t *cfg = &ld->model->cfg;
  char name[128];
  int rc;
  norm->kind = cfg->norm;
  norm->d = d;
  norm->eps = cfg->norm_eps;
  norm->b = NULL;
  snprintf(name, sizeof name, "%s.weight", prefix);
  if ((rc = load_vec(ld, name, d, "d_model", &norm->w)) != MOE_OK) return rc;
  if (cfg->norm == MOE__NORM_LAYER) {
    snprintf(name, sizeof name, "%s.bias", prefix);
    if ((rc = load_vec(ld, name, d, "layernorm has a bias", &norm->b)) != MOE_OK) return rc;
  }
  return MOE_OK;
}

/*
 * Reads the weight `<prefix>.weight` (n, k) in format q into rows [row0, row0 + n) of dst:
 * fp32 rows of k floats, or rows of k/32 blk_q8_0 / blk_q4_0 blocks. Quantized weights come
 * with `<prefix>.scale` F32 (n, k/32).
 */
static int load_rows(loader_t *ld, const char *prefix, int n, int k, moe_quant_t q, void *dst,
                     int row0, const char *why) {
  char name[128], sname[128];
  const moe_st_tensor_t *t, *s;
  int rc;
  snprintf(name, sizeof name, "%s.weight", prefix);
  if (q == MOE_QUANT_F32) {
    int64_t shape[2] = {n, k};
    if ((rc = find_tensor(ld, name, MOE_ST_F32, 2, shape, why, &t)) != MOE_OK) return rc;
    float *d = (float *)dst + (size_t)row0 * k;
    memcpy(d, t->data, t->nbytes);
    ld->model->n_params += (int64_t)n * k;
    return check_finite(ld, name, d, (size_t)n * k);
  }
  const int nb = k / KERN_QK;
  int64_t sshape[2] = {n, nb};
  snprintf(sname, sizeof sname, "%s.scale", prefix);
  if (q == MOE_QUANT_Q8_0) {
    int64_t shape[2] = {n, k};
    if ((rc = find_tensor(ld, name, MOE_ST_I8, 2, shape, why, &t)) != MOE_OK) return rc;
  } else {
    int64_t shape[2] = {n, k / 2};
    if ((rc = find_tensor(ld, name, MOE_ST_U8, 2, shape, why, &t)) != MOE_OK) return rc;
  }
  if ((rc = find_tensor(ld, sname, MOE_ST_F32, 2, sshape, "one scale per 32 weights", &s)) != MOE_OK)
    return rc;
  const float *scale = s->data;
  for (size_t i = 0; i < (size_t)n * nb; i++)
    if (!isfinite(scale[i]) || fabsf(scale[i]) > 65504.0f)
      return errf(ld, MOE_EFORMAT, "tensor \"%s\": element %zu (%g) is not a scale in [-65504, 65504]", sname,
                  i, (double)scale[i]);
  for (int r = 0; r < n; r++)
    for (int b = 0; b < nb; b++) {
      uint16_t d = kern_fp32_to_fp16(scale[(size_t)r * nb + b]);
      if (q == MOE_QUANT_Q8_0) {
        blk_q8_0 *blk = (blk_q8_0 *)dst + (size_t)(row0 + r) * nb + b;
        blk->d = d;
        memcpy(blk->qs, (const int8_t *)t->data + (size_t)r * k + (size_t)b * KERN_QK, KERN_QK);
        for (int i = 0; i < KERN_QK; i++)
          if (blk->qs[i] == -128)
            return errf(ld, MOE_EFORMAT, "tensor \"%s\": row %d holds -128, outside the q8_0 range [-127, 127]",
                        name, r);
      } else {
        blk_q4_0 *blk = (blk_q4_0 *)dst + (size_t)(row0 + r) * nb + b;
        blk->d = d;
        memcpy(blk->qs, (const uint8_t *)t->data + (size_t)r * (k / 2) + (size_t)b * (KERN_QK / 2), KERN_QK / 2);
      }
    }
  ld->model->n_params += (int64_t)n * k;
  return MOE_OK;
}

/* The weight format of a linear: quantizable linears whose k is a multiple of 32 take the
 * model's quant; the others (and routers, heads, embeddings) stay fp32. */
static moe_quant_t linear_quant(const moe_model_t *model, int k, bool quantizable) {
  return quantizable && k % KERN_QK == 0 ? model->cfg.quant : MOE_QUANT_F32;
}

/*
 * Builds a linear of n outputs from n_parts weight tensors stacked by rows (each n / n_parts
 * rows), e.g. an FFN's gate and up, packing quantized weights for the kernels.
 */
static int load_linear_parts(loader_t *ld, const char *const *prefixes, int n_parts, int n, int k,
                             bool quantizable, const char *bias_prefix, const char *why,
                             moe__linear_t *lin) {
  moe_model_t *model = ld->model;
  const kern_ops_t *ops = kern_ops();
  int rc = MOE_OK;
  lin->n = n;
  lin->k = k;
  lin->quant = linear_quant(model, k, quantizable);
  lin->w = NULL;
  lin->wq = NULL;
  lin->bias = NULL;
  const int part = n / n_parts;
  if (lin->quant == MOE_QUANT_F32) {
    lin->w = model_alloc(model, (size_t)n * k * sizeof(float));
    if (lin->w == NULL) return errf(ld, MOE_ENOMEM, "out of memory loading \"%s\"", prefixes[0]);
    for (int p = 0; p < n_parts && rc == MOE_OK; p++)
      rc = load_rows(ld, prefixes[p], part, k, lin->quant, lin->w, p * part, why);
  } else {
    /* Plain blocks first (temporary), then the kernel's packed layout (kept). */
    size_t bytes = moe__quant_row_bytes(lin->quant, k) * (size_t)n;
    void *blocks = moe__malloc(bytes);
    if (blocks == NULL) return errf(ld, MOE_ENOMEM, "out of memory loading \"%s\"", prefixes[0]);
    for (int p = 0; p < n_parts && rc == MOE_OK; p++)
      rc = load_rows(ld, prefixes[p], part, k, lin->quant, blocks, p * part, why);
    if (rc == MOE_OK) {
      size_t psize = lin->quant == MOE_QUANT_Q8_0 ? ops->pack_size_q8_0(n, k) : ops->pack_size_q4_0(n, k);
      lin->wq = model_alloc(model, psize);
      if (lin->wq == NULL) rc = errf(ld, MOE_ENOMEM, "out of memory packing \"%s\"", prefixes[0]);
      else if (lin->quant == MOE_QUANT_Q8_0) ops->pack_q8_0(n, k, blocks, lin->wq);
      else ops->pack_q4_0(n, k, blocks, lin->wq);
    }
    moe__free(blocks);
  }
  if (rc == MOE_OK && bias_prefix != NULL) {
    char name[128];
    snprintf(name, sizeof name, "%s.bias", bias_prefix);
    rc = load_vec(ld, name, n, why, &lin->bias);
  }
  return rc;
}

static int load_linear(loader_t *ld, const char *prefix, int n, int k, bool quantizable, bool bias,
                       const char *why, moe__linear_t *lin) {
  return load_linear_parts(ld, &prefix, 1, n, k, quantizable, bias ? prefix : NULL, why, lin);
}

static int load_ffn(loader_t *ld, const char *prefix, int d, int d_ff, moe__ffn_t *ffn) {
  char gate[112], up[112], down[112];
  const char *parts[2] = {gate, up};
  int rc;
  snprintf(gate, sizeof gate, "%s.gate", prefix);
  snprintf(up, sizeof up, "%s.up", prefix);
  snprintf(down, sizeof down, "%s.down", prefix);
  ffn->d_model = d;
  ffn->d_ff = d_ff;
  rc = load_linear_parts(ld, parts, 2, 2 * d_ff, d, true, NULL, "(d_ff, d_model)", &ffn->gate_up);
  if (rc != MOE_OK) return rc;
  return load_linear(ld, down, d, d_ff, true, false, "(d_model, d_ff)", &ffn->down);
}

/* ---- encoders ---------------------------------------------------------------------- */

static int load_tabular(loader_t *ld) {
  moe_model_t *model = ld->model;
  const moe__config_t *cfg = &model->cfg;
  char name[96];
  int rc;
  model->d_in = cfg->n_numeric;
  if (cfg->n_categorical > 0) {
    model->cat_emb = model_alloc(model, (size_t)cfg->n_categorical * sizeof(float *));
    if (model->cat_emb == NULL) return errf(ld, MOE_ENOMEM, "out of memory");
  }
  for (int i = 0; i < cfg->n_categorical; i++) {
    int64_t shape[2] = {cfg->categorical[i].vocab_size, cfg->categorical[i].dim};
    snprintf(name, sizeof name, "enc.cat.%d.weight", i);
    rc = load_f32(ld, name, 2, shape, "(vocab size, dim) of config.encoder.categorical", &model->cat_emb[i]);
    if (rc != MOE_OK) return rc;
    model->d_in += cfg->categorical[i].dim;
  }
  return load_linear(ld, "enc.in", cfg->d_model, model->d_in, true, true,
                     "(d_model, n_numeric + sum of categorical dims)", &model->enc_in);
}

static int load_sensor(loader_t *ld) {
  moe_model_t *model = ld->model;
  const moe__config_t *cfg = &model->cfg;
  char name[96];
  int rc, c_in = cfg->n_channels, t = cfg->window;
  model->conv = model_alloc(model, (size_t)cfg->n_conv * sizeof *model->conv);
  if (model->conv == NULL) return errf(ld, MOE_ENOMEM, "out of memory");
  for (int i = 0; i < cfg->n_conv; i++) {
    moe__conv1d_t *conv = &model->conv[i];
    int64_t shape[3] = {cfg->conv[i].out, c_in, cfg->conv[i].kernel};
    conv->c_in = c_in;
    conv->c_out = cfg->conv[i].out;
    conv->kernel = cfg->conv[i].kernel;
    conv->stride = cfg->conv[i].stride;
    snprintf(name, sizeof name, "enc.conv.%d.weight", i);
    float *w;
    if ((rc = load_f32(ld, name, 3, shape, "(out, in channels, kernel)", &w)) != MOE_OK) return rc;
    conv->w = model_alloc(model, (size_t)conv->c_out * c_in * conv->kernel * sizeof(float));
    if (conv->w == NULL) return errf(ld, MOE_ENOMEM, "out of memory");
    moe__conv1d_pack(conv->c_out, c_in, conv->kernel, w, conv->w);
    snprintf(name, sizeof name, "enc.conv.%d.bias", i);
    if ((rc = load_vec(ld, name, conv->c_out, "config.encoder.conv out", &conv->b)) != MOE_OK) return rc;
    c_in = conv->c_out;
    t = moe__conv1d_out_len(conv, t);
  }
  model->conv_t_out = t;
  model->d_in = cfg->sensor_summary ? 3 * c_in : c_in;
  return load_linear(ld, "enc.in", cfg->d_model, model->d_in, true, true,
                     cfg->sensor_summary ? "(d_model, 3 x last conv out)" : "(d_model, last conv out)",
                     &model->enc_in);
}

static int load_text(loader_t *ld) {
  moe_model_t *model = ld->model;
  const moe__config_t *cfg = &model->cfg;
  const int d = cfg->d_model;
  char name[96];
  int rc;
  int64_t tok_shape[2] = {cfg->vocab_size, d}, pos_shape[2] = {cfg->max_len, d};
  if ((rc = load_f32(ld, "enc.tok.weight", 2, tok_shape, "(vocab_size, d_model)", &model->tok_emb)) != MOE_OK)
    return rc;
  /* A bag of pieces is the token embeddings (and piece weights) alone: no positions, no layers,
   * no norm. */
  if (cfg->text_bag) {
    int64_t n = cfg->vocab_size;
    return cfg->text_idf ? load_f32(ld, "enc.idf.weight", 1, &n, "(vocab_size)", &model->idf) : MOE_OK;
  }
  if ((rc = load_f32(ld, "enc.pos.weight", 2, pos_shape, "(max_len, d_model)", &model->pos_emb)) != MOE_OK)
    return rc;
  if (cfg->n_layer > 0) {
    model->layers = model_alloc(model, (size_t)cfg->n_layer * sizeof *model->layers);
    if (model->layers == NULL) return errf(ld, MOE_ENOMEM, "out of memory");
  }
  for (int l = 0; l < cfg->n_layer; l++) {
    moe__text_layer_t *L = &model->layers[l];
    L->window = cfg->windows[l];
    snprintf(name, sizeof name, "enc.layer.%d.attn_norm", l);
    if ((rc = load_norm(ld, name, d, &L->attn_norm)) != MOE_OK) return rc;
    snprintf(name, sizeof name, "enc.layer.%d.attn.qkv", l);
    if ((rc = load_linear(ld, name, 3 * d, d, true, false, "(3 * d_model, d_model)", &L->qkv)) != MOE_OK) return rc;
    snprintf(name, sizeof name, "enc.layer.%d.attn.out", l);
    if ((rc = load_linear(ld, name, d, d, true, false, "(d_model, d_model)", &L->out)) != MOE_OK) return rc;
    snprintf(name, sizeof name, "enc.layer.%d.ffn_norm", l);
    if ((rc = load_norm(ld, name, d, &L->ffn_norm)) != MOE_OK) return rc;
    snprintf(name, sizeof name, "enc.layer.%d.ffn", l);
    if ((rc = load_ffn(ld, name, d, cfg->text_d_ff, &L->ffn)) != MOE_OK) return rc;
  }
  return load_norm(ld, "enc.norm", d, &model->enc_norm);
}

static int load_moe_blocks(loader_t *ld) {
  moe_model_t *model = ld->model;
  const moe__config_t *cfg = &model->cfg;
  const int d = cfg->d_model;
  char name[96];
  int rc;
  if (cfg->n_moe == 0) return MOE_OK;
  model->blocks = model_alloc(model, (size_t)cfg->n_moe * sizeof *model->blocks);
  if (model->blocks == NULL) return errf(ld, MOE_ENOMEM, "out of memory");
  for (int b = 0; b < cfg->n_moe; b++) {
    moe__moe_block_t *blk = &model->blocks[b];
    const moe__moe_cfg_t *mc = &cfg->moe[b];
    int64_t rshape[2] = {mc->n_expert, d};
    blk->cfg = *mc;
    blk->route_offset = model->route_size;
    blk->load_offset = model->load_size;
    model->route_size += mc->top_k;
    model->load_size += mc->n_expert;
    snprintf(name, sizeof name, "moe.%d.norm", b);
    if ((rc = load_norm(ld, name, d, &blk->norm)) != MOE_OK) return rc;
    snprintf(name, sizeof name, "moe.%d.router.weight", b);
    if ((rc = load_f32(ld, name, 2, rshape, "(n_expert, d_model)", &blk->router)) != MOE_OK) return rc;
    snprintf(name, sizeof name, "moe.%d.router.bias", b);
    if ((rc = load_vec(ld, name, mc->n_expert, "selection bias, one per expert", &blk->sel_bias)) != MOE_OK)
      return rc;
    blk->experts = model_alloc(model, (size_t)mc->n_expert * sizeof *blk->experts);
    blk->shared = model_alloc(model, (size_t)mc->n_shared * sizeof *blk->shared);
    if (blk->experts == NULL || blk->shared == NULL) return errf(ld, MOE_ENOMEM, "out of memory");
    for (int e = 0; e < mc->n_expert; e++) {
      snprintf(name, sizeof name, "moe.%d.expert.%d", b, e);
      if ((rc = load_ffn(ld, name, d, mc->d_ff, &blk->experts[e])) != MOE_OK) return rc;
    }
    for (int s = 0; s < mc->n_shared; s++) {
      snprintf(name, sizeof name, "moe.%d.shared.%d", b, s);
      if ((rc = load_ffn(ld, name, d, mc->d_ff, &blk->shared[s])) != MOE_OK) return rc;
    }
  }
  return MOE_OK;
}

/* ---- load / free ----------------------------------------------------------------------- */

/* Copies the file's tensor listing into the model, since the file is closed after the load. */
static int record_tensors(loader_t *ld) {
  loaded_model_t *lm = (loaded_model_t *)ld->model;
  size_t n = moe_st_n_tensors(ld->file), names = 0;
  if (n > INT_MAX) return errf(ld, MOE_EFORMAT, "%zu tensors: more than a model can list", n);
  for (size_t i = 0; i < n; i++) names += strlen(moe_st_tensor_at(ld->file, i)->name) + 1;
  moe_tensor_info_t *info = model_alloc(ld->model, n * sizeof *info + names);
  if (info == NULL) return errf(ld, MOE_ENOMEM, "out of memory");
  char *p = (char *)(info + n);
  for (size_t i = 0; i < n; i++) {
    const moe_st_tensor_t *t = moe_st_tensor_at(ld->file, i);
    size_t len = strlen(t->name) + 1;
    memset(&info[i], 0, sizeof info[i]);
    memcpy(p, t->name, len);
    info[i].name = p;
    p += len;
    info[i].dtype = moe_st_dtype_name(t->dtype);
    info[i].ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) info[i].shape[d] = t->shape[d];
    info[i].bytes = t->nbytes;
  }
  lm->tensors = info;
  lm->n_tensors = (int)n;
  return MOE_OK;
}

static int load_from_file(loader_t *ld) {
  moe_model_t *model = ld->model;
  moe__config_t *cfg = &model->cfg;
  int rc;
  const char *config = moe_st_metadata_find(ld->file, "config");
  if (config == NULL)
    return errf(ld, MOE_EFORMAT, "__metadata__ has no \"config\" entry (the model's JSON config)");
  model->config_json = moe__strdup(config);
  if (model->config_json == NULL) return errf(ld, MOE_ENOMEM, "out of memory");
  char jerr[200];
  rc = moe_json_parse(config, strlen(config), NULL, &model->doc, jerr, sizeof jerr);
  if (rc == MOE_ENOMEM) return errf(ld, rc, "out of memory parsing the config");
  if (rc != MOE_OK) return errf(ld, MOE_ECONFIG, "config: not valid JSON: %s", jerr);
  rc = moe__config_parse(moe_json_root(model->doc), cfg, ld->errstr, ld->errstr_size);
  if (rc != MOE_OK) return rc;
  if (cfg->tokenizer != NULL) {
    moe_jw_t jw;
    moe_jw_init(&jw);
    moe_jw_value(&jw, cfg->tokenizer);
    rc = moe_jw_finish(&jw, &model->tokenizer_json, NULL);
    moe_jw_close(&jw);
    if (rc != MOE_OK)
      return errf(ld, rc == MOE_ENOMEM ? rc : MOE_ECONFIG, "config.encoder.tokenizer: cannot re-serialise (%s)",
                  moe_strerror(rc));
  }
  model->n_outputs = cfg->task == MOE_TASK_BINARY ? 1 : cfg->n_labels;

  ld->used = moe__calloc(moe_st_n_tensors(ld->file) + 1, sizeof *ld->used);
  if (ld->used == NULL) return errf(ld, MOE_ENOMEM, "out of memory");
  /* Tensors are claimed as found; a tensor claimed twice cannot happen since names are unique. */
  if (cfg->enc == MOE_ENCODER_TABULAR) rc = load_tabular(ld);
  else if (cfg->enc == MOE_ENCODER_SENSOR) rc = load_sensor(ld);
  else rc = load_text(ld);
  if (rc != MOE_OK) return rc;
  if ((rc = load_moe_blocks(ld)) != MOE_OK) return rc;
  if (!cfg->no_head_norm && (rc = load_norm(ld, "head.norm", cfg->d_model, &model->head_norm)) != MOE_OK)
    return rc;
  if ((rc = load_linear(ld, "head", model->n_outputs, cfg->d_model, false, true,
                        "(n_outputs, d_model): 1 for binary, else the number of labels", &model->head)) != MOE_OK)
    return rc;
  size_t n = moe_st_n_tensors(ld->file);
  if (ld->n_used != n) {
    for (size_t i = 0; i < n; i++) {
      const moe_st_tensor_t *t = moe_st_tensor_at(ld->file, i);
      bool found = false;
      for (size_t j = 0; j < ld->n_used && !found; j++) found = ld->used[j] == t;
      if (!found)
        return errf(ld, MOE_EFORMAT, "tensor \"%s\" is not part of the model the config describes", t->name);
    }
  }
  return record_tensors(ld);
}

static int load_common(moe_st_file_t *file, moe_model_t **model_out, char *errstr, size_t errstr_size) {
  loader_t ld = {.file = file, .errstr = errstr, .errstr_size = errstr_size};
  int rc;
  loaded_model_t *lm = moe__calloc(1, sizeof *lm);
  if (lm == NULL) {
    rc = errf(&ld, MOE_ENOMEM, "out of memory");
    goto fail;
  }
  ld.model = &lm->model;
  rc = load_from_file(&ld);
  if (rc != MOE_OK) goto fail;
  static const char *const quant_names[] = {"f32", "q8_0", "q4_0"};
  MOE_LOG(MOE_LOG_INFO, "model \"%s\" loaded: %lld parameters, %s weights, %d MoE blocks, kernels %s",
          ld.model->cfg.version, (long long)ld.model->n_params, quant_names[ld.model->cfg.quant], ld.model->cfg.n_moe,
          kern_ops()->name);
  moe__free(ld.used);
  *model_out = ld.model;
  return MOE_OK;
fail:
  moe__free(ld.used);
  moe_model_free(ld.model);
  return rc;
}

int moe_model_load(const char *path, moe_model_t **model_out, char *errstr, size_t errstr_size) {
  moe_st_file_t *file = NULL;
  if (errstr_size > 0) errstr[0] = '\0';
  *model_out = NULL;
  int rc = moe_st_open(path, &file, errstr, errstr_size);
  if (rc != MOE_OK) return rc;
  rc = load_common(file, model_out, errstr, errstr_size);
  moe_st_close(file);
  return rc;
}

int moe_model_load_memory(const void *buf, size_t len, moe_model_t **model_out, char *errstr,
                          size_t errstr_size) {
  moe_st_file_t *file = NULL;
  if (errstr_size > 0) errstr[0] = '\0';
  *model_out = NULL;
  int rc = moe_st_open_memory(buf, len, &file, errstr, errstr_size);
  if (rc != MOE_OK) return rc;
  rc = load_common(file, model_out, errstr, errstr_size);
  moe_st_close(file);
  return rc;
}

void moe_model_free(moe_model_t *model) {
  if (model == NULL) return;
  for (int i = model->n_allocs - 1; i >= 0; i--) moe__free_aligned(model->allocs[i]);
  moe__free(model->allocs);
  moe__config_close(&model->cfg);
  moe_json_free(model->doc);
  moe__free(model->config_json);
  moe__free(model->tokenizer_json);
  moe__free(model);
}

/* ---- accessors ------------------------------------------------------------------------ */

moe_task_t moe_model_task(const moe_model_t *model) { return model->cfg.task; }
moe_encoder_kind_t moe_model_encoder(const moe_model_t *model) { return model->cfg.enc; }
moe_quant_t moe_model_quant(const moe_model_t *model) { return model->cfg.quant; }
int moe_model_n_outputs(const moe_model_t *model) { return model->n_outputs; }
int moe_model_n_labels(const moe_model_t *model) { return model->cfg.n_labels; }
const char *moe_model_label(const moe_model_t *model, int i) {
  return i >= 0 && i < model->cfg.n_labels ? model->cfg.labels[i] : NULL;
}
float moe_model_threshold(const moe_model_t *model) { return model->cfg.threshold; }
const char *moe_model_version(const moe_model_t *model) { return model->cfg.version; }
const char *moe_model_config_json(const moe_model_t *model) { return model->config_json; }
int64_t moe_model_n_params(const moe_model_t *model) { return model->n_params; }
int moe_model_n_numeric(const moe_model_t *model) { return model->cfg.n_numeric; }
const char *moe_model_numeric_name(const moe_model_t *model, int i) {
  return i >= 0 && i < model->cfg.n_numeric ? model->cfg.numeric[i].name : NULL;
}
int moe_model_n_categorical(const moe_model_t *model) { return model->cfg.n_categorical; }
const char *moe_model_categorical_name(const moe_model_t *model, int i) {
  return i >= 0 && i < model->cfg.n_categorical ? model->cfg.categorical[i].name : NULL;
}
int moe_model_categorical_vocab_size(const moe_model_t *model, int i) {
  return i >= 0 && i < model->cfg.n_categorical ? model->cfg.categorical[i].vocab_size : 0;
}
const char *moe_model_categorical_value(const moe_model_t *model, int i, int id) {
  if (i < 0 || i >= model->cfg.n_categorical || id < 0 || id >= model->cfg.categorical[i].vocab_size)
    return NULL;
  return moe_json_at(model->cfg.categorical[i].vocab, (size_t)id)->u.str.s;
}
int moe_model_sensor_window(const moe_model_t *model) { return model->cfg.window; }
int moe_model_sensor_channels(const moe_model_t *model) { return model->cfg.n_channels; }
const char *moe_model_sensor_channel_name(const moe_model_t *model, int c) {
  return c >= 0 && c < model->cfg.n_channels ? model->cfg.channels[c].name : NULL;
}
int moe_model_text_vocab_size(const moe_model_t *model) { return model->cfg.vocab_size; }
int moe_model_text_max_len(const moe_model_t *model) { return model->cfg.max_len; }
const char *moe_model_tokenizer_json(const moe_model_t *model) { return model->tokenizer_json; }
int moe_model_n_moe_blocks(const moe_model_t *model) { return model->cfg.n_moe; }
int moe_model_moe_block(const moe_model_t *model, int b, moe_block_info_t *info) {
  if (b < 0 || b >= model->cfg.n_moe) return MOE_EINVAL;
  const moe__moe_block_t *blk = &model->blocks[b];
  info->n_expert = blk->cfg.n_expert;
  info->top_k = blk->cfg.top_k;
  info->n_shared = blk->cfg.n_shared;
  info->d_ff = blk->cfg.d_ff;
  info->route_offset = blk->route_offset;
  info->load_offset = blk->load_offset;
  return MOE_OK;
}
int moe_model_route_size(const moe_model_t *model) { return model->route_size; }
int moe_model_load_size(const moe_model_t *model) { return model->load_size; }
int moe_model_n_tensors(const moe_model_t *model) { return ((const loaded_model_t *)model)->n_tensors; }
int moe_model_tensor(const moe_model_t *model, int i, moe_tensor_info_t *info) {
  const loaded_model_t *lm = (const loaded_model_t *)model;
  if (i < 0 || i >= lm->n_tensors) return MOE_EINVAL;
  *info = lm->tensors[i];
  return MOE_OK;
}
