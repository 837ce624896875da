/*
 * Loading and running whole models built in memory: a valid file loads and scores; every kind
 * of bad file (missing, misshapen, mistyped, extra or non-finite tensors; bad config fields;
 * out-of-format quants) fails with its own code and a message that names the culprit; bad
 * rows fail with MOE_EDATA naming row and feature; allocation failure at every step of a load
 * returns MOE_ENOMEM and leaks nothing; the tensor listing (moe_model_tensor) is the file's;
 * the golden text models carry a tokenizer that the text module accepts.
 */
#include "test.h"

#include <pthread.h>

#include "io/safetensors.h"
#include "moe/alloc.h"
#include "moe/log.h"
#include "moe/moe.h"
#include "moe/text.h"

#define D 32
#define MAX_T 64

/* A tabular model: numeric "a", "b"; categorical "c" (vocab 3, dim 2); one MoE block of
 * 3 experts, top-2, 1 shared, d_ff 32; binary head. */
typedef struct builder_s {
  moe_st_tensor_t t[MAX_T];
  float *data[MAX_T];
  int n;
  char config[2048];
} builder_t;

static uint32_t seed = 12345;
static float frand(void) {
  seed = seed * 1664525u + 1013904223u;
  return (float)(seed >> 8) / 16777216.0f - 0.5f;
}

static void add(builder_t *b, const char *name, int64_t d0, int64_t d1) {
  moe_st_tensor_t *t = &b->t[b->n];
  size_t count = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
  b->data[b->n] = malloc(count * sizeof(float));
  for (size_t i = 0; i < count; i++) b->data[b->n][i] = frand();
  t->name = strdup(name);
  t->dtype = MOE_ST_F32;
  t->ndim = d1 > 0 ? 2 : 1;
  t->shape[0] = d0;
  t->shape[1] = d1;
  t->data = b->data[b->n];
  t->nbytes = count * sizeof(float);
  b->n++;
}

static moe_st_tensor_t *find(builder_t *b, const char *name) {
  for (int i = 0; i < b->n; i++)
    if (strcmp(b->t[i].name, name) == 0) return &b->t[i];
  ASSERT_MSG(0, "no tensor %s in the builder", name);
  return NULL;
}

static void ffn(builder_t *b, const char *prefix) {
  char name[96];
  snprintf(name, sizeof name, "%s.gate.weight", prefix);
  add(b, name, 32, D);
  snprintf(name, sizeof name, "%s.up.weight", prefix);
  add(b, name, 32, D);
  snprintf(name, sizeof name, "%s.down.weight", prefix);
  add(b, name, D, 32);
}

static void build(builder_t *b) {
  memset(b, 0, sizeof *b);
  snprintf(b->config, sizeof b->config,
           "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"unit-1\",\"quant\":\"f32\","
           "\"d_model\":%d,\"encoder\":{\"kind\":\"tabular\",\"numeric\":[{\"name\":\"a\",\"mean\":1,\"std\":2},"
           "{\"name\":\"b\",\"mean\":0,\"std\":1}],\"categorical\":[{\"name\":\"c\",\"vocab\":[\"x\",\"y\",\"z\"],"
           "\"dim\":2}]},\"moe\":[{\"n_expert\":3,\"top_k\":2,\"n_shared\":1,\"d_ff\":32,\"score\":\"softmax\"}],"
           "\"task\":{\"kind\":\"binary\",\"labels\":[\"no\",\"yes\"]}}",
           D);
  add(b, "enc.cat.0.weight", 3, 2);
  add(b, "enc.in.weight", D, 4);
  add(b, "enc.in.bias", D, 0);
  add(b, "moe.0.norm.weight", D, 0);
  add(b, "moe.0.router.weight", 3, D);
  add(b, "moe.0.router.bias", 3, 0);
  ffn(b, "moe.0.expert.0");
  ffn(b, "moe.0.expert.1");
  ffn(b, "moe.0.expert.2");
  ffn(b, "moe.0.shared.0");
  add(b, "head.norm.weight", D, 0);
  add(b, "head.weight", 1, D);
  add(b, "head.bias", 1, 0);
}

static void builder_free(builder_t *b) {
  for (int i = 0; i < b->n; i++) {
    free((void *)b->t[i].name);
    free(b->data[i]);
  }
}

/* Serialises the builder and loads it; returns the load's code, the message in err. */
static int load(builder_t *b, moe_model_t **model, char *err, size_t err_size) {
  moe_st_kv_t meta = {"config", b->config};
  void *buf;
  size_t len;
  char werr[256];
  ASSERT_OK(moe_st_write_memory(b->t, (size_t)b->n, &meta, b->config[0] ? 1 : 0, &buf, &len, werr, sizeof werr));
  int rc = moe_model_load_memory(buf, len, model, err, err_size);
  free(buf);
  return rc;
}

/* Loads the builder expecting failure with `code` and a message containing `needle`. */
static void expect_fail(builder_t *b, int code, const char *needle) {
  moe_model_t *model = (moe_model_t *)1;
  char err[512];
  int rc = load(b, &model, err, sizeof err);
  ASSERT_MSG(rc == code, "expected %s, got %s: %s", moe_err_name(code), moe_err_name(rc), err);
  ASSERT_NULL(model);
  ASSERT_STR_CONTAINS(err, needle);
}

static void capture_log(moe_log_level_t level, const char *msg, void *user) {
  if (level == MOE_LOG_INFO) snprintf(user, 256, "%s", msg);
}

TEST(valid_model_loads_and_scores) {
  builder_t b;
  build(&b);
  moe_model_t *model;
  char err[256], logged[256] = "";
  moe_log_set(capture_log, logged);
  ASSERT_MSG(load(&b, &model, err, sizeof err) == MOE_OK, "%s", err);
  moe_log_set(NULL, NULL);
  /* The engine never prints; the host's callback hears about the load. */
  ASSERT_STR_CONTAINS(logged, "model \"unit-1\" loaded:");
  ASSERT_STR_CONTAINS(logged, "f32 weights");
  int64_t want = 0;
  for (int i = 0; i < b.n; i++) want += (int64_t)(b.t[i].nbytes / sizeof(float));
  ASSERT_EQ(moe_model_n_params(model), want);
  ASSERT_EQ(moe_model_n_numeric(model), 2);
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, 4, &sess));
  const float num[2][2] = {{1, 2}, {-3, 0.5f}};
  const int32_t cat[2][1] = {{2}, {0}};
  moe_input_t rows[2] = {{.numeric = num[0], .categorical = cat[0]}, {.numeric = num[1], .categorical = cat[1]}};
  float scores[2];
  moe_output_t out = {.scores = scores};
  ASSERT_OK(moe_session_run(sess, rows, 2, &out));
  for (int r = 0; r < 2; r++) {
    ASSERT_OP(scores[r], >, 0);
    ASSERT_OP(scores[r], <, 1);
  }
  ASSERT(scores[0] != scores[1]);
  ASSERT_STR_EQ(moe_session_error(sess), "");
  moe_session_free(sess);
  moe_model_free(model);
  builder_free(&b);
}

/* Finds tensor `name` in the model's listing; fails the test when it is not there. */
static moe_tensor_info_t listed(const moe_model_t *model, const char *name) {
  moe_tensor_info_t info;
  for (int i = 0; i < moe_model_n_tensors(model); i++) {
    ASSERT_OK(moe_model_tensor(model, i, &info));
    if (strcmp(info.name, name) == 0) return info;
  }
  ASSERT_MSG(0, "tensor %s is not listed", name);
  return info;
}

TEST(tensor_listing_is_the_files) {
  builder_t b;
  build(&b);
  moe_model_t *model;
  char err[256];
  ASSERT_MSG(load(&b, &model, err, sizeof err) == MOE_OK, "%s", err);
  ASSERT_EQ(moe_model_n_tensors(model), b.n);
  for (int i = 0; i < b.n; i++) {
    moe_tensor_info_t info = listed(model, b.t[i].name);
    ASSERT_STR_EQ(info.dtype, "F32");
    ASSERT_EQ(info.ndim, b.t[i].ndim);
    for (int d = 0; d < MOE_TENSOR_MAX_DIMS; d++)
      ASSERT_EQ(info.shape[d], d < b.t[i].ndim ? b.t[i].shape[d] : 0);
    ASSERT_EQ(info.bytes, (uint64_t)b.t[i].nbytes);
  }
  /* File order: moe_st_write lays the data out in the order it is given the tensors. */
  moe_tensor_info_t a;
  for (int i = 0; i < b.n; i++) {
    ASSERT_OK(moe_model_tensor(model, i, &a));
    ASSERT_STR_EQ(a.name, b.t[i].name);
  }
  ASSERT_EQ(moe_model_tensor(model, -1, &a), MOE_EINVAL);
  ASSERT_EQ(moe_model_tensor(model, b.n, &a), MOE_EINVAL);
  /* The names are the model's own copies: the builder's may go first. */
  builder_free(&b);
  ASSERT_OK(moe_model_tensor(model, 0, &a));
  ASSERT(strlen(a.name) > 0);
  ASSERT_STR_EQ(listed(model, "moe.0.router.bias").dtype, "F32");
  ASSERT_EQ(listed(model, "moe.0.router.bias").shape[0], 3);
  moe_model_free(model);
}

TEST(bad_tensors_are_named) {
  builder_t b;
  build(&b);
  /* Missing: rename so that the expected name is absent (and the stray one is not reached). */
  moe_st_tensor_t *t = find(&b, "moe.0.expert.1.up.weight");
  free((void *)t->name);
  t->name = strdup("moe.0.expert.1.upp.weight");
  expect_fail(&b, MOE_EMISSING, "\"moe.0.expert.1.up.weight\" is missing");
  free((void *)t->name);
  t->name = strdup("moe.0.expert.1.up.weight");

  t = find(&b, "moe.0.router.weight");
  t->shape[0] = 4;
  t->shape[1] = 24; /* same byte count, wrong shape */
  expect_fail(&b, MOE_ESHAPE, "\"moe.0.router.weight\": shape [4, 24], expected [3, 32]");
  t->shape[0] = 3;
  t->shape[1] = D;

  t = find(&b, "head.bias");
  t->dtype = MOE_ST_I32;
  expect_fail(&b, MOE_EDTYPE, "\"head.bias\": dtype I32, expected F32");
  t->dtype = MOE_ST_F32;

  t = find(&b, "enc.in.weight");
  ((float *)t->data)[7] = NAN;
  expect_fail(&b, MOE_EFORMAT, "\"enc.in.weight\": element 7 is not a finite number");
  ((float *)t->data)[7] = 0.25f;

  add(&b, "moe.0.expert.3.gate.weight", 32, D);
  expect_fail(&b, MOE_EFORMAT, "\"moe.0.expert.3.gate.weight\" is not part of the model");
  builder_free(&b);
}

static void expect_config_fail(const char *from, const char *to, int code, const char *needle) {
  builder_t b;
  build(&b);
  char *p = strstr(b.config, from);
  ASSERT_MSG(p != NULL, "config has no %s", from);
  char rest[2048];
  snprintf(rest, sizeof rest, "%s", p + strlen(from));
  snprintf(p, sizeof b.config - (size_t)(p - b.config), "%s%s", to, rest);
  expect_fail(&b, code, needle);
  builder_free(&b);
}

TEST(bad_configs_are_named) {
  expect_config_fail("\"top_k\":2", "\"top_k\":4", MOE_ECONFIG, "config.moe[0].top_k");
  expect_config_fail("\"n_expert\":3", "\"n_experts\":3", MOE_ECONFIG, "unknown member \"n_experts\"");
  expect_config_fail("\"format_version\":1", "\"format_version\":2", MOE_ECONFIG, "config.format_version");
  expect_config_fail("\"score\":\"softmax\"", "\"score\":\"relu\"", MOE_ECONFIG,
                     "config.moe[0].score: \"relu\" is not one of \"softmax\", \"sigmoid\"");
  expect_config_fail("\"std\":2", "\"std\":0", MOE_ECONFIG, "config.encoder.numeric[0].std");
  expect_config_fail("\"labels\":[\"no\",\"yes\"]", "\"labels\":[\"no\"]", MOE_ECONFIG, "config.task.labels");
  expect_config_fail("\"d_model\":32", "\"d_model\":\"32\"", MOE_ECONFIG, "config.d_model: expected integer");
  expect_config_fail("{\"format\"", "[{\"format\"", MOE_ECONFIG, "config: not valid JSON");
  builder_t b;
  build(&b);
  b.config[0] = '\0';
  expect_fail(&b, MOE_EFORMAT, "no \"config\"");
  builder_free(&b);
}

TEST(quantized_weights_are_checked) {
  builder_t b;
  build(&b);
  char rest[2048];
  char *p = strstr(b.config, "\"quant\":\"f32\"");
  snprintf(rest, sizeof rest, "%s", p + strlen("\"quant\":\"f32\""));
  snprintf(p, sizeof b.config - (size_t)(p - b.config), "\"quant\":\"q8_0\"%s", rest);
  expect_fail(&b, MOE_EDTYPE, "\"moe.0.expert.0.gate.weight\": dtype F32, expected I8");

  /* Turn every expert / shared weight (k = 32) into I8 quants with one scale per row. */
  int n_plain = b.n;
  for (int i = 0; i < n_plain; i++) {
    moe_st_tensor_t *t = &b.t[i];
    if (strncmp(t->name, "moe.0.expert", 12) != 0 && strncmp(t->name, "moe.0.shared", 12) != 0) continue;
    int rows = (int)t->shape[0];
    int8_t *q = malloc((size_t)rows * 32);
    for (int j = 0; j < rows * 32; j++) q[j] = (int8_t)((j * 37) % 255 - 127);
    free(b.data[i]);
    b.data[i] = (float *)q;
    t->dtype = MOE_ST_I8;
    t->data = q;
    t->nbytes = (size_t)rows * 32;
    char sname[96];
    snprintf(sname, sizeof sname, "%.*s.scale", (int)(strlen(t->name) - strlen(".weight")), t->name);
    add(&b, sname, rows, 1);
    for (int j = 0; j < rows; j++) b.data[b.n - 1][j] = 0.01f;
  }
  moe_model_t *model;
  char err[256];
  ASSERT_MSG(load(&b, &model, err, sizeof err) == MOE_OK, "%s", err);
  ASSERT_EQ(moe_model_quant(model), MOE_QUANT_Q8_0);
  /* The listing shows the weights as stored, not as repacked for the kernels. */
  moe_tensor_info_t q8 = listed(model, "moe.0.expert.1.down.weight");
  ASSERT_STR_EQ(q8.dtype, "I8");
  ASSERT_EQ(q8.bytes, (uint64_t)(D * 32));
  ASSERT_STR_EQ(listed(model, "moe.0.expert.1.down.scale").dtype, "F32");
  ASSERT_EQ(moe_model_n_tensors(model), b.n);
  moe_model_free(model);

  moe_st_tensor_t *t = find(&b, "moe.0.shared.0.down.weight");
  ((int8_t *)t->data)[5 * 32 + 3] = -128;
  expect_fail(&b, MOE_EFORMAT, "\"moe.0.shared.0.down.weight\": row 5 holds -128");
  ((int8_t *)t->data)[5 * 32 + 3] = 0;
  t = find(&b, "moe.0.expert.2.up.scale");
  ((float *)t->data)[1] = INFINITY;
  expect_fail(&b, MOE_EFORMAT, "\"moe.0.expert.2.up.scale\": element 1");
  ((float *)t->data)[1] = 0.5f;
  t = find(&b, "moe.0.expert.2.up.scale");
  t->shape[1] = 2;
  t->shape[0] = 16;
  expect_fail(&b, MOE_ESHAPE, "\"moe.0.expert.2.up.scale\": shape [16, 2], expected [32, 1]");
  builder_free(&b);
}

TEST(bad_rows_are_named) {
  builder_t b;
  build(&b);
  moe_model_t *model;
  char err[256];
  ASSERT_MSG(load(&b, &model, err, sizeof err) == MOE_OK, "%s", err);
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, 2, &sess));
  float num[2][2] = {{1, 2}, {NAN, 0}};
  int32_t cat[2][1] = {{1}, {0}};
  moe_input_t rows[3] = {{.numeric = num[0], .categorical = cat[0]}, {.numeric = num[1], .categorical = cat[1]},
                         {.numeric = num[0], .categorical = cat[0]}};
  float scores[3];
  moe_output_t out = {.scores = scores};
  ASSERT_EQ(moe_session_run(sess, rows, 2, &out), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_session_error(sess), "row 1: numeric feature 0 \"a\" is nan");
  num[1][0] = 0;
  cat[1][0] = 3;
  ASSERT_EQ(moe_session_run(sess, rows, 2, &out), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_session_error(sess), "row 1: categorical feature 0 \"c\" has id 3, outside [0, 3)");
  cat[1][0] = 2;
  ASSERT_EQ(moe_session_run(sess, rows, 3, &out), MOE_EINVAL);
  ASSERT_EQ(moe_session_run(sess, rows, 0, &out), MOE_EINVAL);
  ASSERT_OK(moe_session_run(sess, rows, 2, &out));
  moe_session_free(sess);
  ASSERT_EQ(moe_session_new(model, 0, &sess), MOE_EINVAL);
  ASSERT_NULL(sess);
  moe_model_free(model);
  builder_free(&b);
}

TEST(allocation_failures_return_enomem_without_leaks) {
  builder_t b;
  build(&b);
  moe_st_kv_t meta = {"config", b.config};
  void *buf;
  size_t len;
  char err[256];
  ASSERT_OK(moe_st_write_memory(b.t, (size_t)b.n, &meta, 1, &buf, &len, err, sizeof err));
  int64_t live = moe_alloc_live();
  int n;
  for (n = 1;; n++) {
    moe_model_t *model = NULL;
    moe_alloc_fault_arm((uint64_t)n);
    int rc = moe_model_load_memory(buf, len, &model, err, sizeof err);
    if (!moe_alloc_fault_fired()) {
      moe_alloc_fault_disarm();
      ASSERT_OK(rc);
      /* The session and its first runs allocate too (the arena grows past its first guess). */
      static float num[512][2];
      static int32_t cat[512][1];
      static moe_input_t rows[512];
      for (int r = 0; r < 512; r++) rows[r] = (moe_input_t){.numeric = num[r], .categorical = cat[r]};
      static float scores[512];
      moe_output_t out = {.scores = scores};
      int m;
      for (m = 1;; m++) {
        moe_session_t *sess = NULL;
        moe_alloc_fault_arm((uint64_t)m);
        int rs = moe_session_new(model, 512, &sess);
        if (rs == MOE_OK) rs = moe_session_run(sess, rows, 512, &out);
        if (rs == MOE_OK) rs = moe_session_run(sess, rows, 3, &out);
        const int fired = moe_alloc_fault_fired();
        moe_alloc_fault_disarm();
        moe_session_free(sess);
        if (!fired) {
          ASSERT_OK(rs);
          break;
        }
        ASSERT_MSG(rs == MOE_ENOMEM, "session allocation %d failed but got %s", m, moe_err_name(rs));
      }
      ASSERT_OP(m, >, 1);
      moe_model_free(model);
      break;
    }
    moe_alloc_fault_disarm();
    ASSERT_MSG(rc == MOE_ENOMEM, "allocation %d failed but the load returned %s: %s", n, moe_err_name(rc), err);
    ASSERT_NULL(model);
    ASSERT_EQ(moe_alloc_live(), live);
  }
  ASSERT_OP(n, >, 20);
  ASSERT_EQ(moe_alloc_live(), live);
  free(buf);
  builder_free(&b);
}

/* A session in steady state never calls the allocator: the arena keeps the high-water block. */
TEST(steady_state_runs_do_not_allocate) {
  builder_t b;
  build(&b);
  moe_model_t *model;
  char err[256];
  ASSERT_MSG(load(&b, &model, err, sizeof err) == MOE_OK, "%s", err);
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, 64, &sess));
  float num[64][2];
  int32_t cat[64][1];
  moe_input_t rows[64];
  for (int r = 0; r < 64; r++) {
    num[r][0] = (float)r;
    num[r][1] = (float)(r % 7) - 3;
    cat[r][0] = r % 3;
    rows[r] = (moe_input_t){.numeric = num[r], .categorical = cat[r]};
  }
  float scores[64];
  moe_output_t out = {.scores = scores};
  ASSERT_OK(moe_session_run(sess, rows, 64, &out));
  uint64_t before = moe_alloc_count();
  for (int i = 0; i < 10; i++) {
    ASSERT_OK(moe_session_run(sess, rows, 64 - i, &out));
    ASSERT_OK(moe_session_run(sess, rows + i, 1, &out));
  }
  ASSERT_EQ(moe_alloc_count(), before);
  moe_session_free(sess);
  moe_model_free(model);
  builder_free(&b);
}

/* One model, one session per thread: every thread gets the single-threaded answer. */
typedef struct worker_s {
  const moe_model_t *model;
  const moe_input_t *rows;
  float scores[64];
  int rc;
} worker_t;

static void *worker_main(void *arg) {
  worker_t *w = arg;
  moe_session_t *sess;
  w->rc = moe_session_new(w->model, 64, &sess);
  if (w->rc != MOE_OK) return NULL;
  moe_output_t out = {.scores = w->scores};
  for (int i = 0; i < 50 && w->rc == MOE_OK; i++) w->rc = moe_session_run(sess, w->rows, 64, &out);
  moe_session_free(sess);
  return NULL;
}

TEST(model_is_shared_by_threads) {
  builder_t b;
  build(&b);
  moe_model_t *model;
  char err[256];
  ASSERT_MSG(load(&b, &model, err, sizeof err) == MOE_OK, "%s", err);
  float num[64][2];
  int32_t cat[64][1];
  moe_input_t rows[64];
  for (int r = 0; r < 64; r++) {
    num[r][0] = (float)r * 0.1f;
    num[r][1] = (float)(r % 5);
    cat[r][0] = (r * 7) % 3;
    rows[r] = (moe_input_t){.numeric = num[r], .categorical = cat[r]};
  }
  worker_t single = {model, rows, {0}, 0};
  worker_main(&single);
  ASSERT_OK(single.rc);
  static worker_t w[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (worker_t){model, rows, {0}, -1};
    ASSERT_OK(pthread_create(&th[i], NULL, worker_main, &w[i]));
  }
  for (int i = 0; i < 4; i++) {
    ASSERT_OK(pthread_join(th[i], NULL));
    ASSERT_OK(w[i].rc);
    for (int r = 0; r < 64; r++) ASSERT_EQ(w[i].scores[r], single.scores[r]);
  }
  moe_model_free(model);
  builder_free(&b);
}

/* Occlusion attributions are the score changes of the occluded rows; a neutral row has none. */
TEST(attributions_are_occlusion_deltas) {
  builder_t b;
  build(&b);
  moe_model_t *model;
  char err[256];
  ASSERT_MSG(load(&b, &model, err, sizeof err) == MOE_OK, "%s", err);
  ASSERT_EQ(moe_model_n_attributions(model), 3);
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, 2, &sess)); /* smaller than the 4 variants: runs in chunks */
  float num[2] = {4, -1.5f};
  int32_t cat[1] = {2};
  moe_input_t row = {.numeric = num, .categorical = cat};
  float attr[3], base, occluded;
  ASSERT_OK(moe_session_attribute(sess, &row, 0, attr, 3));
  moe_output_t out = {.scores = &base};
  ASSERT_OK(moe_session_run(sess, &row, 1, &out));
  out.scores = &occluded;
  const float saved[3] = {num[0], num[1], (float)cat[0]};
  for (int f = 0; f < 3; f++) {
    if (f < 2) num[f] = f == 0 ? 1.0f : 0.0f; /* the config's means */
    else cat[0] = 0;
    ASSERT_OK(moe_session_run(sess, &row, 1, &out));
    ASSERT_NEAR(attr[f], base - occluded, 1e-5);
    num[0] = saved[0], num[1] = saved[1], cat[0] = (int32_t)saved[2];
  }
  ASSERT(fabsf(attr[0]) + fabsf(attr[1]) + fabsf(attr[2]) > 1e-4f);
  /* Already neutral: every occlusion leaves the row as it was. */
  num[0] = 1, num[1] = 0, cat[0] = 0;
  ASSERT_OK(moe_session_attribute(sess, &row, 0, attr, 3));
  for (int f = 0; f < 3; f++) ASSERT_NEAR(attr[f], 0, 1e-6);
  ASSERT_EQ(moe_session_attribute(sess, &row, 1, attr, 3), MOE_EINVAL);
  ASSERT_EQ(moe_session_attribute(sess, &row, 0, attr, 2), MOE_EINVAL);
  moe_session_free(sess);
  moe_model_free(model);
  builder_free(&b);
}

/* Random corruptions of a real model file: every load either succeeds (and the model runs) or
 * fails with a message; nothing crashes or leaks (ASan). A poor man's fuzzer, always run. */
TEST(corrupted_files_fail_cleanly) {
  char path[512];
  const char *src = getenv("SLUICE_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/tests/golden/fixtures/tabular-q4_0.safetensors", src ? src : ".");
  FILE *f = fopen(path, "rb");
  ASSERT_NOT_NULL(f);
  static unsigned char orig[1 << 16], buf[1 << 16];
  size_t len = fread(orig, 1, sizeof orig, f);
  fclose(f);
  ASSERT_OP(len, >, 1000);
  ASSERT_OP(len, <, sizeof orig);
  uint64_t hdr = 0;
  memcpy(&hdr, orig, 8);
  int ok = 0, failed = 0;
  for (int it = 0; it < 1500; it++) {
    memcpy(buf, orig, len);
    int n_mut = 1 + (int)((frand() + 0.5f) * 3);
    for (int j = 0; j < n_mut; j++) {
      /* Mostly the JSON header (where the structure is), sometimes the data. */
      size_t at = (it % 4 != 0) ? 8 + (size_t)((frand() + 0.5f) * (float)(hdr - 1)) : (size_t)((frand() + 0.5f) * (float)(len - 1));
      static const char repl[] = "0123456789,:{}[]\"- e.-1";
      buf[at] = (it % 3 == 0) ? (unsigned char)((frand() + 0.5f) * 255) : (unsigned char)repl[(it + j) % (sizeof repl - 1)];
    }
    size_t blen = (it % 50 == 7) ? len / 2 : len;
    moe_model_t *model = NULL;
    char err[256] = "";
    int rc = moe_model_load_memory(buf, blen, &model, err, sizeof err);
    if (rc == MOE_OK) {
      ok++;
      moe_session_t *sess;
      ASSERT_OK(moe_session_new(model, 1, &sess));
      const int nn = moe_model_n_numeric(model), nc = moe_model_n_categorical(model);
      float num[64] = {0};
      int32_t cat[64] = {0};
      if (nn <= 64 && nc <= 64) {
        moe_input_t row = {.numeric = num, .categorical = cat};
        float scores[4096];
        moe_output_t out = {.scores = scores};
        if (moe_model_n_outputs(model) <= 4096) ASSERT_OK(moe_session_run(sess, &row, 1, &out));
      }
      moe_session_free(sess);
      moe_model_free(model);
    } else {
      failed++;
      ASSERT_NULL(model);
      ASSERT_MSG(err[0] != '\0', "load failed with %s but no message", moe_err_name(rc));
    }
  }
  printf("  %d corrupted files loaded, %d rejected\n", ok, failed);
  ASSERT_OP(failed, >, 500);
}

/* The tokenizer that gen_golden.py writes into the text fixtures is one the text module loads,
 * in exactly the form moe_wordpiece_to_json writes, and it tokenizes. */
TEST(golden_text_tokenizers_load) {
  static const char *const quants[] = {"f32", "q8_0", "q4_0"};
  static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  const char *src = getenv("SLUICE_SOURCE_DIR");
  for (int q = 0; q < 3; q++) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/tests/golden/fixtures/text-%s.safetensors", src ? src : ".", quants[q]);
    moe_model_t *model;
    ASSERT_MSG(moe_model_load(path, &model, err, sizeof err) == MOE_OK, "%s: %s", path, err);
    const char *json = moe_model_tokenizer_json(model);
    ASSERT_NOT_NULL(json);
    moe_wordpiece_t *wp;
    ASSERT_MSG(moe_wordpiece_from_json(json, strlen(json), &wp, err, sizeof err) == MOE_OK, "%s: %s", path, err);
    /* One piece per embedding row. */
    ASSERT_EQ((long long)moe_wordpiece_vocab_size(wp), (long long)moe_model_text_vocab_size(model));
    for (int i = 0; i < 5; i++) ASSERT_STR_EQ(moe_wordpiece_token(wp, i), specials[i]);
    char *again;
    size_t again_len;
    ASSERT_OK(moe_wordpiece_to_json(wp, &again, &again_len));
    ASSERT_STR_EQ(again, json);
    moe_text_free(again);
    static const char text[] = "The pains";
    moe_token_t *toks;
    size_t n;
    ASSERT_OK(moe_wordpiece_encode(wp, text, strlen(text), &toks, &n));
    ASSERT_EQ((long long)n, 3LL);
    ASSERT_STR_EQ(moe_wordpiece_token(wp, toks[0].id), "the");
    ASSERT_STR_EQ(moe_wordpiece_token(wp, toks[1].id), "pain");
    ASSERT_STR_EQ(moe_wordpiece_token(wp, toks[2].id), "##s");
    ASSERT_EQ(toks[2].end, (uint32_t)strlen(text));
    moe_text_free(toks);
    moe_wordpiece_free(wp);
    moe_model_free(model);
  }
}
