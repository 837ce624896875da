/*
 * The model config: parsing and validating the JSON stored in a model file's
 * __metadata__["config"] (schema in engine/MODEL_FORMAT.md) into moe__config_t. Every field is
 * checked for type, range and consistency, unknown members are rejected (a misspelt key would
 * otherwise be silently ignored), and each error names the full path of the field, e.g.
 * "config.moe[1].top_k: 9 is out of range [1, 8]".
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc-impl.h"
#include "moe/model-impl.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Shorthands: every check below returns on the first error, its message already in errstr. */
#define TRY(expr)                                                                        \
  do {                                                                                   \
    int try__rc = (expr);                                                                \
    if (try__rc != MOE_OK) return try__rc;                                               \
  } while (0)

static int fail(char *errstr, size_t errstr_size, const char *fmt, const char *path, const char *what) {
  if (errstr_size > 0) snprintf(errstr, errstr_size, fmt, path, what);
  return MOE_ECONFIG;
}

static int get_int(const moe_json_t *obj, const char *key, const char *path, int64_t min,
                   int64_t max, int *out, char *errstr, size_t errstr_size) {
  int64_t v;
  TRY(moe_json_get_int(obj, key, path, min, max, &v, errstr, errstr_size));
  *out = (int)v;
  return MOE_OK;
}

static int get_float(const moe_json_t *obj, const char *key, const char *path, double min,
                     double max, float *out, char *errstr, size_t errstr_size) {
  double v;
  TRY(moe_json_get_num(obj, key, path, min, max, &v, errstr, errstr_size));
  *out = (float)v;
  return MOE_OK;
}

/* Maps a string member onto one of `names`; the message lists the choices. */
static int get_enum(const moe_json_t *obj, const char *key, const char *path, const char *const *names,
                    int n_names, const char *dflt, int *out, char *errstr, size_t errstr_size) {
  const char *s;
  if (dflt != NULL)
    TRY(moe_json_opt_str(obj, key, path, dflt, &s, errstr, errstr_size));
  else
    TRY(moe_json_get_str(obj, key, path, &s, NULL, errstr, errstr_size));
  for (int i = 0; i < n_names; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = i;
      return MOE_OK;
    }
  char choices[160] = "";
  for (int i = 0; i < n_names; i++) {
    strncat(choices, i ? ", \"" : "\"", sizeof choices - strlen(choices) - 1);
    strncat(choices, names[i], sizeof choices - strlen(choices) - 1);
    strncat(choices, "\"", sizeof choices - strlen(choices) - 1);
  }
  if (errstr_size > 0) snprintf(errstr, errstr_size, "%s.%s: \"%s\" is not one of %s", path, key, s, choices);
  return MOE_ECONFIG;
}

/* An array member with n items in [min_n, max_n]. */
static int get_array(const moe_json_t *obj, const char *key, const char *path, int min_n, int max_n,
                     const moe_json_t **arr, int *n, char *errstr, size_t errstr_size) {
  TRY(moe_json_get_member(obj, key, MOE_JSON_ARRAY, path, arr, errstr, errstr_size));
  size_t len = moe_json_len(*arr);
  if (len < (size_t)min_n || len > (size_t)max_n) {
    if (errstr_size > 0)
      snprintf(errstr, errstr_size, "%s.%s: %zu items, expected %d to %d", path, key, len, min_n, max_n);
    return MOE_ECONFIG;
  }
  *n = (int)len;
  return MOE_OK;
}

static int parse_features(const moe_json_t *arr, int n, const char *path, moe__feature_t **out,
                          char *errstr, size_t errstr_size) {
  static const char *const keys[] = {"name", "mean", "std"};
  if (n == 0) return MOE_OK;
  moe__feature_t *f = moe__calloc((size_t)n, sizeof *f);
  if (f == NULL) return MOE_ENOMEM;
  *out = f;
  for (int i = 0; i < n; i++) {
    char p[96];
    snprintf(p, sizeof p, "%s[%d]", path, i);
    const moe_json_t *it = moe_json_at(arr, (size_t)i);
    TRY(moe_json_check_type(it, MOE_JSON_OBJECT, p, errstr, errstr_size));
    TRY(moe_json_check_members(it, p, keys, ARRAY_LEN(keys), errstr, errstr_size));
    TRY(moe_json_get_str(it, "name", p, &f[i].name, NULL, errstr, errstr_size));
    TRY(get_float(it, "mean", p, -1e30, 1e30, &f[i].mean, errstr, errstr_size));
    TRY(get_float(it, "std", p, 1e-30, 1e30, &f[i].std, errstr, errstr_size));
  }
  return MOE_OK;
}

static int parse_tabular(const moe_json_t *enc, moe__config_t *cfg, char *errstr, size_t errstr_size) {
  static const char *const keys[] = {"kind", "numeric", "categorical"};
  static const char *const cat_keys[] = {"name", "vocab", "dim"};
  const char *path = "config.encoder";
  const moe_json_t *arr;
  TRY(moe_json_check_members(enc, path, keys, ARRAY_LEN(keys), errstr, errstr_size));
  TRY(get_array(enc, "numeric", path, 0, 65536, &arr, &cfg->n_numeric, errstr, errstr_size));
  TRY(parse_features(arr, cfg->n_numeric, "config.encoder.numeric", &cfg->numeric, errstr, errstr_size));
  TRY(get_array(enc, "categorical", path, 0, 1024, &arr, &cfg->n_categorical, errstr, errstr_size));
  if (cfg->n_numeric + cfg->n_categorical == 0)
    return fail(errstr, errstr_size, "%s: %s", path, "no numeric and no categorical features");
  if (cfg->n_categorical > 0) {
    cfg->categorical = moe__calloc((size_t)cfg->n_categorical, sizeof *cfg->categorical);
    if (cfg->categorical == NULL) return MOE_ENOMEM;
  }
  for (int i = 0; i < cfg->n_categorical; i++) {
    char p[96];
    snprintf(p, sizeof p, "config.encoder.categorical[%d]", i);
    moe__categorical_t *c = &cfg->categorical[i];
    const moe_json_t *it = moe_json_at(arr, (size_t)i);
    TRY(moe_json_check_type(it, MOE_JSON_OBJECT, p, errstr, errstr_size));
    TRY(moe_json_check_members(it, p, cat_keys, ARRAY_LEN(cat_keys), errstr, errstr_size));
    TRY(moe_json_get_str(it, "name", p, &c->name, NULL, errstr, errstr_size));
    TRY(get_array(it, "vocab", p, 1, 1 << 22, &c->vocab, &c->vocab_size, errstr, errstr_size));
    for (int v = 0; v < c->vocab_size; v++) {
      char pv[128];
      const char *s;
      snprintf(pv, sizeof pv, "%s.vocab[%d]", p, v);
      TRY(moe_json_to_str(moe_json_at(c->vocab, (size_t)v), pv, &s, NULL, errstr, errstr_size));
    }
    TRY(get_int(it, "dim", p, 1, 4096, &c->dim, errstr, errstr_size));
  }
  return MOE_OK;
}

int moe__sensor_pool_steps(const moe__config_t *cfg, int n_steps) {
  int t = cfg->window, first = n_steps > 0 && n_steps < t ? t - n_steps : 0;
  for (int i = 0; i < cfg->n_conv; i++) {
    const int t_out = (t - cfg->conv[i].kernel) / cfg->conv[i].stride + 1;
    /* output step s reads input steps s * stride onwards */
    first = (first + cfg->conv[i].stride - 1) / cfg->conv[i].stride;
    if (first > t_out - 1) first = t_out - 1;
    t = t_out;
  }
  return t - first;
}

static int parse_sensor(const moe_json_t *enc, moe__config_t *cfg, char *errstr, size_t errstr_size) {
  static const char *const keys[] = {"kind", "window", "channels", "conv", "activation", "pool"};
  static const char *const conv_keys[] = {"out", "kernel", "stride"};
  static const char *const acts[] = {"gelu", "silu"};
  static const char *const pools[] = {"mean", "summary"};
  const char *path = "config.encoder";
  const moe_json_t *arr;
  int act, pool;
  TRY(moe_json_check_members(enc, path, keys, ARRAY_LEN(keys), errstr, errstr_size));
  TRY(get_int(enc, "window", path, 1, 65536, &cfg->window, errstr, errstr_size));
  TRY(get_array(enc, "channels", path, 1, 4096, &arr, &cfg->n_channels, errstr, errstr_size));
  TRY(parse_features(arr, cfg->n_channels, "config.encoder.channels", &cfg->channels, errstr, errstr_size));
  TRY(get_enum(enc, "activation", path, acts, 2, "gelu", &act, errstr, errstr_size));
  cfg->conv_silu = act == 1;
  TRY(get_enum(enc, "pool", path, pools, 2, "mean", &pool, errstr, errstr_size));
  cfg->sensor_summary = pool == 1;
  /* No conv layer: the pool reads the normalised channels themselves. */
  TRY(get_array(enc, "conv", path, 0, 32, &arr, &cfg->n_conv, errstr, errstr_size));
  cfg->conv = moe__calloc((size_t)cfg->n_conv + 1, sizeof *cfg->conv);
  if (cfg->conv == NULL) return MOE_ENOMEM;
  int t = cfg->window;
  for (int i = 0; i < cfg->n_conv; i++) {
    char p[64];
    snprintf(p, sizeof p, "config.encoder.conv[%d]", i);
    moe__conv_cfg_t *c = &cfg->conv[i];
    const moe_json_t *it = moe_json_at(arr, (size_t)i);
    TRY(moe_json_check_type(it, MOE_JSON_OBJECT, p, errstr, errstr_size));
    TRY(moe_json_check_members(it, p, conv_keys, ARRAY_LEN(conv_keys), errstr, errstr_size));
    TRY(get_int(it, "out", p, 1, 4096, &c->out, errstr, errstr_size));
    TRY(get_int(it, "kernel", p, 1, 4096, &c->kernel, errstr, errstr_size));
    TRY(get_int(it, "stride", p, 1, 4096, &c->stride, errstr, errstr_size));
    if (c->kernel > t) {
      if (errstr_size > 0)
        snprintf(errstr, errstr_size, "%s.kernel: %d is longer than the %d time steps left after the layers before",
                 p, c->kernel, t);
      return MOE_ECONFIG;
    }
    t = (t - c->kernel) / c->stride + 1;
  }
  return MOE_OK;
}

static int parse_text(const moe_json_t *enc, moe__config_t *cfg, char *errstr, size_t errstr_size) {
  static const char *const keys[] = {"kind", "vocab_size", "max_len", "n_layer", "n_head", "d_ff",
                                     "window", "n_global", "tokenizer", "pool", "idf", "head_norm"};
  static const char *const pools[] = {"mean", "bag"};
  const char *path = "config.encoder";
  const moe_json_t *arr;
  int n_win, pool;
  TRY(moe_json_check_members(enc, path, keys, ARRAY_LEN(keys), errstr, errstr_size));
  TRY(get_enum(enc, "pool", path, pools, 2, "mean", &pool, errstr, errstr_size));
  cfg->text_bag = pool == 1;
  TRY(moe_json_opt_bool(enc, "idf", path, false, &cfg->text_idf, errstr, errstr_size));
  if (cfg->text_idf && !cfg->text_bag) {
    if (errstr_size > 0) snprintf(errstr, errstr_size, "config.encoder.idf: true needs pool \"bag\"");
    return MOE_ECONFIG;
  }
  bool head_norm;
  TRY(moe_json_opt_bool(enc, "head_norm", path, true, &head_norm, errstr, errstr_size));
  cfg->no_head_norm = !head_norm;
  /* Only the bag may drop the head norm: its pooled vector is already a weighted L2-normalised
   * sum, so the head can read it as a linear model would (MODEL_FORMAT.md); the mean pool's
   * output stays normalised as it always was. */
  if (cfg->no_head_norm && !cfg->text_bag) {
    if (errstr_size > 0) snprintf(errstr, errstr_size, "config.encoder.head_norm: false needs pool \"bag\"");
    return MOE_ECONFIG;
  }
  TRY(get_int(enc, "vocab_size", path, 1, 1 << 22, &cfg->vocab_size, errstr, errstr_size));
  TRY(get_int(enc, "max_len", path, 1, 65536, &cfg->max_len, errstr, errstr_size));
  TRY(get_int(enc, "n_layer", path, 0, 64, &cfg->n_layer, errstr, errstr_size));
  /* A bag has no order for attention to work on: its pieces are pooled straight away. */
  if (cfg->text_bag && cfg->n_layer != 0) {
    if (errstr_size > 0)
      snprintf(errstr, errstr_size, "config.encoder.n_layer: %d, but pool \"bag\" needs 0 (no attention layers)",
               cfg->n_layer);
    return MOE_ECONFIG;
  }
  TRY(get_int(enc, "n_head", path, 1, cfg->d_model, &cfg->n_head, errstr, errstr_size));
  if (cfg->d_model % cfg->n_head != 0) {
    if (errstr_size > 0)
      snprintf(errstr, errstr_size, "config.encoder.n_head: %d does not divide d_model %d", cfg->n_head, cfg->d_model);
    return MOE_ECONFIG;
  }
  TRY(get_int(enc, "d_ff", path, 1, 65536, &cfg->text_d_ff, errstr, errstr_size));
  TRY(get_int(enc, "n_global", path, 0, cfg->max_len, &cfg->n_global, errstr, errstr_size));
  TRY(get_array(enc, "window", path, cfg->n_layer, cfg->n_layer, &arr, &n_win, errstr, errstr_size));
  if (n_win > 0) {
    cfg->windows = moe__calloc((size_t)n_win, sizeof *cfg->windows);
    if (cfg->windows == NULL) return MOE_ENOMEM;
  }
  for (int i = 0; i < n_win; i++) {
    char p[64];
    int64_t w;
    snprintf(p, sizeof p, "config.encoder.window[%d]", i);
    TRY(moe_json_to_int(moe_json_at(arr, (size_t)i), p, 1, 1 << 20, &w, errstr, errstr_size));
    cfg->windows[i] = (int)w;
  }
  cfg->tokenizer = moe_json_get(enc, "tokenizer");
  if (cfg->tokenizer != NULL)
    TRY(moe_json_check_type(cfg->tokenizer, MOE_JSON_OBJECT, "config.encoder.tokenizer", errstr, errstr_size));
  return MOE_OK;
}

static int parse_moe(const moe_json_t *arr, moe__config_t *cfg, char *errstr, size_t errstr_size) {
  static const char *const keys[] = {"n_expert", "top_k", "n_shared", "d_ff", "score", "normalize",
                                     "route_scale"};
  static const char *const scores[] = {"softmax", "sigmoid"};
  if (cfg->n_moe == 0) return MOE_OK;
  cfg->moe = moe__calloc((size_t)cfg->n_moe, sizeof *cfg->moe);
  if (cfg->moe == NULL) return MOE_ENOMEM;
  for (int i = 0; i < cfg->n_moe; i++) {
    char p[48];
    snprintf(p, sizeof p, "config.moe[%d]", i);
    moe__moe_cfg_t *b = &cfg->moe[i];
    const moe_json_t *it = moe_json_at(arr, (size_t)i);
    int score;
    double scale;
    TRY(moe_json_check_type(it, MOE_JSON_OBJECT, p, errstr, errstr_size));
    TRY(moe_json_check_members(it, p, keys, ARRAY_LEN(keys), errstr, errstr_size));
    TRY(get_int(it, "n_expert", p, 1, 1024, &b->n_expert, errstr, errstr_size));
    TRY(get_int(it, "top_k", p, 1, b->n_expert, &b->top_k, errstr, errstr_size));
    TRY(get_int(it, "n_shared", p, 0, 64, &b->n_shared, errstr, errstr_size));
    TRY(get_int(it, "d_ff", p, 1, 65536, &b->d_ff, errstr, errstr_size));
    TRY(get_enum(it, "score", p, scores, 2, NULL, &score, errstr, errstr_size));
    b->score = (moe__score_t)score;
    TRY(moe_json_opt_bool(it, "normalize", p, true, &b->normalize, errstr, errstr_size));
    TRY(moe_json_opt_num(it, "route_scale", p, 1e-6, 1e6, 1.0, &scale, errstr, errstr_size));
    b->route_scale = (float)scale;
  }
  return MOE_OK;
}

static int parse_task(const moe_json_t *task, moe__config_t *cfg, char *errstr, size_t errstr_size) {
  static const char *const keys[] = {"kind", "labels", "threshold"};
  static const char *const kinds[] = {"binary", "multiclass", "regression"};
  static const int min_labels[] = {2, 2, 1}, max_labels[] = {2, 65536, 4096};
  const char *path = "config.task";
  const moe_json_t *arr;
  int kind;
  double thr;
  TRY(moe_json_check_members(task, path, keys, ARRAY_LEN(keys), errstr, errstr_size));
  TRY(get_enum(task, "kind", path, kinds, 3, NULL, &kind, errstr, errstr_size));
  cfg->task = (moe_task_t)kind;
  TRY(get_array(task, "labels", path, min_labels[kind], max_labels[kind], &arr, &cfg->n_labels, errstr,
                errstr_size));
  cfg->labels = moe__calloc((size_t)cfg->n_labels, sizeof *cfg->labels);
  if (cfg->labels == NULL) return MOE_ENOMEM;
  for (int i = 0; i < cfg->n_labels; i++) {
    char p[48];
    snprintf(p, sizeof p, "config.task.labels[%d]", i);
    TRY(moe_json_to_str(moe_json_at(arr, (size_t)i), p, &cfg->labels[i], NULL, errstr, errstr_size));
  }
  TRY(moe_json_opt_num(task, "threshold", path, 0.0, 1.0, 0.5, &thr, errstr, errstr_size));
  cfg->threshold = (float)thr;
  return MOE_OK;
}

int moe__config_parse(const moe_json_t *root, moe__config_t *cfg, char *errstr, size_t errstr_size) {
  static const char *const keys[] = {"format", "format_version", "version", "provenance", "quant",
                                     "d_model", "norm", "norm_eps", "encoder", "moe", "task"};
  static const char *const quants[] = {"f32", "q8_0", "q4_0"};
  static const char *const norms[] = {"rmsnorm", "layernorm"};
  static const char *const encs[] = {"tabular", "sensor", "text"};
  const char *path = "config";
  const char *format;
  const moe_json_t *enc, *moe, *task;
  int v;
  double eps;
  memset(cfg, 0, sizeof *cfg);
  TRY(moe_json_check_type(root, MOE_JSON_OBJECT, path, errstr, errstr_size));
  TRY(moe_json_check_members(root, path, keys, ARRAY_LEN(keys), errstr, errstr_size));
  TRY(moe_json_get_str(root, "format", path, &format, NULL, errstr, errstr_size));
  if (strcmp(format, "sluice-moe") != 0)
    return fail(errstr, errstr_size, "%s.format: \"%s\" is not \"sluice-moe\"", path, format);
  TRY(get_int(root, "format_version", path, MOE_FORMAT_VERSION, MOE_FORMAT_VERSION, &v, errstr, errstr_size));
  TRY(moe_json_get_str(root, "version", path, &cfg->version, NULL, errstr, errstr_size));
  TRY(get_enum(root, "quant", path, quants, 3, NULL, &v, errstr, errstr_size));
  cfg->quant = (moe_quant_t)v;
  TRY(get_int(root, "d_model", path, 1, 16384, &cfg->d_model, errstr, errstr_size));
  TRY(get_enum(root, "norm", path, norms, 2, "rmsnorm", &v, errstr, errstr_size));
  cfg->norm = (moe__norm_kind_t)v;
  TRY(moe_json_opt_num(root, "norm_eps", path, 1e-12, 1.0, 1e-5, &eps, errstr, errstr_size));
  cfg->norm_eps = (float)eps;

  TRY(moe_json_get_member(root, "encoder", MOE_JSON_OBJECT, path, &enc, errstr, errstr_size));
  TRY(get_enum(enc, "kind", "config.encoder", encs, 3, NULL, &v, errstr, errstr_size));
  cfg->enc = (moe_encoder_kind_t)v;
  if (cfg->enc == MOE_ENCODER_TABULAR) TRY(parse_tabular(enc, cfg, errstr, errstr_size));
  else if (cfg->enc == MOE_ENCODER_SENSOR) TRY(parse_sensor(enc, cfg, errstr, errstr_size));
  else TRY(parse_text(enc, cfg, errstr, errstr_size));

  TRY(get_array(root, "moe", path, 0, 64, &moe, &cfg->n_moe, errstr, errstr_size));
  TRY(parse_moe(moe, cfg, errstr, errstr_size));
  TRY(moe_json_get_member(root, "task", MOE_JSON_OBJECT, path, &task, errstr, errstr_size));
  TRY(parse_task(task, cfg, errstr, errstr_size));
  return MOE_OK;
}

void moe__config_close(moe__config_t *cfg) {
  moe__free(cfg->numeric);
  moe__free(cfg->categorical);
  moe__free(cfg->channels);
  moe__free(cfg->conv);
  moe__free(cfg->windows);
  moe__free(cfg->moe);
  moe__free(cfg->labels);
  memset(cfg, 0, sizeof *cfg);
}
