/*
 * A tiny libmoe fraud model for the worker's tests, written with the engine's own safetensors
 * writer: binary tabular, numeric inputs named by the caller, one MoE block of 4 experts
 * (top-2) plus one shared expert, d_model 16, random weights from a fixed seed. Its scores
 * mean nothing; it exists so that the worker runs the real engine end to end.
 */
#ifndef TEST_FRAUD_MODEL_H
#define TEST_FRAUD_MODEL_H

#include "io/safetensors.h"
#include "test.h"

#define FM_D 16
#define FM_MAX_T 24

typedef struct fm_builder_s {
  moe_st_tensor_t t[FM_MAX_T];
  float *data[FM_MAX_T];
  char names[FM_MAX_T][64];
  int n;
} fm_builder_t;

static uint32_t fm_seed = 20261128u;
static float fm_rand(void) {
  fm_seed = fm_seed * 1103515245u + 12345u;
  return ((float)((fm_seed >> 9) & 0x3fff) / 16384.0f - 0.5f) * 0.5f;
}

static void fm_add(fm_builder_t *b, const char *name, int64_t d0, int64_t d1, float fill,
                   bool random) {
  ASSERT(b->n < FM_MAX_T);
  size_t count = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
  float *p = malloc(count * sizeof *p);
  ASSERT_NOT_NULL(p);
  for (size_t i = 0; i < count; i++) p[i] = random ? fm_rand() : fill;
  snprintf(b->names[b->n], sizeof b->names[b->n], "%s", name);
  b->t[b->n] = (moe_st_tensor_t){.name = b->names[b->n], .dtype = MOE_ST_F32,
                                 .ndim = d1 > 0 ? 2 : 1, .shape = {d0, d1}, .data = p,
                                 .nbytes = count * sizeof *p};
  b->data[b->n++] = p;
}

static void fm_ffn(fm_builder_t *b, const char *prefix) {
  char name[64];
  snprintf(name, sizeof name, "%s.gate.weight", prefix);
  fm_add(b, name, FM_D, FM_D, 0, true);
  snprintf(name, sizeof name, "%s.up.weight", prefix);
  fm_add(b, name, FM_D, FM_D, 0, true);
  snprintf(name, sizeof name, "%s.down.weight", prefix);
  fm_add(b, name, FM_D, FM_D, 0, true);
}

/*
 * Writes the model to `path`: inputs `names` (n of them), version string, task threshold
 * (negative: the engine's default) and task kind ("binary", "regression", ...).
 */
static void fm_write(const char *path, const char *const *names, int n, const char *version,
                     double threshold, const char *task_kind) {
  fm_builder_t b = {0};
  char numeric[2048] = "";
  size_t len = 0;
  for (int i = 0; i < n; i++)
    len += (size_t)snprintf(numeric + len, sizeof numeric - len,
                            "%s{\"name\":\"%s\",\"mean\":0,\"std\":%d}", i ? "," : "", names[i],
                            i + 1);
  char config[4096];
  snprintf(config, sizeof config,
           "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"%s\",\"quant\":\"f32\","
           "\"d_model\":%d,\"encoder\":{\"kind\":\"tabular\",\"numeric\":[%s],\"categorical\":[]},"
           "\"moe\":[{\"n_expert\":4,\"top_k\":2,\"n_shared\":1,\"d_ff\":%d,\"score\":\"softmax\"}],"
           "\"task\":{\"kind\":\"%s\",\"labels\":[\"legit\",\"fraud\"]%s}}",
           version, FM_D, numeric, FM_D, task_kind, "");
  if (threshold >= 0) {
    size_t cl = strlen(config);
    /* Put the threshold into the task object: replace the final "}}" by ,"threshold":x}}. */
    snprintf(config + cl - 2, sizeof config - (cl - 2), ",\"threshold\":%g}}", threshold);
  }
  fm_add(&b, "enc.in.weight", FM_D, n, 0, true);
  fm_add(&b, "enc.in.bias", FM_D, 0, 0, true);
  fm_add(&b, "moe.0.norm.weight", FM_D, 0, 1.0f, false);
  fm_add(&b, "moe.0.router.weight", 4, FM_D, 0, true);
  fm_add(&b, "moe.0.router.bias", 4, 0, 0, true);
  fm_ffn(&b, "moe.0.expert.0");
  fm_ffn(&b, "moe.0.expert.1");
  fm_ffn(&b, "moe.0.expert.2");
  fm_ffn(&b, "moe.0.expert.3");
  fm_ffn(&b, "moe.0.shared.0");
  fm_add(&b, "head.norm.weight", FM_D, 0, 1.0f, false);
  int n_out = strcmp(task_kind, "binary") == 0 ? 1 : 2; /* one output per label otherwise */
  fm_add(&b, "head.weight", n_out, FM_D, 0, true);
  fm_add(&b, "head.bias", n_out, 0, 0, true);
  moe_st_kv_t meta = {"config", config};
  char err[256];
  ASSERT_MSG(moe_st_write(path, b.t, (size_t)b.n, &meta, 1, err, sizeof err) == MOE_OK,
             "writing the test model: %s", err);
  for (int i = 0; i < b.n; i++) free(b.data[i]);
}

#endif /* TEST_FRAUD_MODEL_H */
