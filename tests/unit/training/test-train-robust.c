/*
 * The trainer's housekeeping: every allocation failure on the way through new, step, fit,
 * predict and export is reported as MOE_ENOMEM and leaks nothing (fault injection, STYLE.md
 * section 6); the selection-bias update balances the expert load that the exported model then
 * shows in the engine; a progress callback can stop fit; a file whose tensors do not fit its
 * config is refused by moe_trainer_load with the tensor named; steps in steady state make no
 * allocation at all (everything per step comes from the arena).
 */
#include "test.h"

#include <stdio.h>

#include "io/safetensors.h"
#include "moe/alloc.h"
#include "moe/moe.h"
#include "moe/train.h"
#include "train-synth.h"

static const char *CFG =
    "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"r\",\"quant\":\"f32\",\"d_model\":32,"
    "\"encoder\":{\"kind\":\"tabular\",\"numeric\":["
    "{\"name\":\"x0\",\"mean\":0,\"std\":1},{\"name\":\"x1\",\"mean\":1,\"std\":1.25},"
    "{\"name\":\"x2\",\"mean\":2,\"std\":1.5},{\"name\":\"x3\",\"mean\":3,\"std\":1.75}],"
    "\"categorical\":[{\"name\":\"c\",\"vocab\":[\"<unk>\",\"a\",\"b\",\"c\",\"d\"],\"dim\":28}]},"
    "\"moe\":[{\"n_expert\":8,\"top_k\":2,\"n_shared\":1,\"d_ff\":32,\"score\":\"sigmoid\"}],"
    "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}";

static void tmp(char *buf, size_t n, const char *tag) {
  char base[128];
  test_unique_name(base, sizeof base, "/tmp/test-train-robust");
  snprintf(buf, n, "%s-%s.safetensors", base, tag);
}

static int run_all(const synth_t *s, const char *path) {
  char err[256];
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.qat = MOE_QUANT_Q8_0;
  moe_trainer_t *tr = NULL;
  int rc = moe_trainer_new(CFG, 1, &o, &tr, err, sizeof err);
  if (rc != MOE_OK) return rc;
  float scores[64];
  moe_fit_opts_t fo = {.epochs = 1, .batch_size = 16, .metric = MOE_METRIC_ROC_AUC};
  moe_fit_result_t res;
  moe_train_data_t head = s->data;
  head.n_rows = 64;
  if ((rc = moe_trainer_step(tr, &head, NULL)) == MOE_OK && (rc = moe_trainer_fit(tr, &head, &head, &fo, &res)) == MOE_OK &&
      (rc = moe_trainer_predict(tr, &head, scores)) == MOE_OK)
    rc = moe_trainer_export(tr, path, MOE_QUANT_Q4_0, err, sizeof err);
  moe_trainer_free(tr);
  return rc;
}

TEST(allocation_failures_are_clean) {
  char path[256];
  tmp(path, sizeof path, "oom");
  synth_t s;
  synth_make(&s, 64, 4, 0, 0.5, 1);
  int n;
  for (n = 1; n < 100000; n++) {
    moe_alloc_fault_arm((uint64_t)n);
    const int rc = run_all(&s, path);
    const int fired = moe_alloc_fault_fired();
    moe_alloc_fault_disarm();
    if (!fired) {
      ASSERT_OK(rc);
      break;
    }
    ASSERT_MSG(rc == MOE_ENOMEM, "allocation %d failed, but the call returned %d (%s)", n, rc, moe_err_name(rc));
  }
  printf("  %d allocation points, each failure reported as MOE_ENOMEM\n", n - 1);
  ASSERT_OP(n, >, 20);
  remove(path);
  synth_free(&s);
}

/* Coefficient of variation of the expert load of the exported model on the data. */
static double load_cv(const char *path, const synth_t *s) {
  char err[256];
  moe_model_t *model;
  ASSERT_OK(moe_model_load(path, &model, err, sizeof err));
  const int n = s->data.n_rows;
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, n, &sess));
  moe_input_t *rows = malloc(sizeof *rows * n);
  float *sc = malloc(sizeof(float) * n);
  int32_t load[8];
  for (int r = 0; r < n; r++) rows[r] = (moe_input_t){.numeric = s->num + (size_t)r * 4, .categorical = s->cat + r};
  moe_output_t out = {.scores = sc, .expert_load = load};
  ASSERT_OK(moe_session_run(sess, rows, n, &out));
  double mean = 0, var = 0;
  for (int e = 0; e < 8; e++) mean += load[e] / 8.0;
  for (int e = 0; e < 8; e++) var += (load[e] - mean) * (load[e] - mean) / 8.0;
  moe_session_free(sess);
  moe_model_free(model);
  free(rows);
  free(sc);
  return sqrt(var) / mean;
}

TEST(selection_bias_balances_the_load) {
  char err[256], p0[256], p1[256];
  tmp(p0, sizeof p0, "nobal");
  tmp(p1, sizeof p1, "bal");
  synth_t s;
  synth_make(&s, 2000, 4, 0, 0.3, 5);
  double cv[2];
  for (int i = 0; i < 2; i++) {
    moe_train_opts_t o;
    moe_train_opts_default(&o);
    o.lr = 3e-3f;
    o.bias_gamma = i == 0 ? 0.0f : 1e-2f;
    moe_trainer_t *tr;
    ASSERT_OK(moe_trainer_new(CFG, 11, &o, &tr, err, sizeof err));
    moe_fit_opts_t fo = {.epochs = 3, .batch_size = 64, .metric = MOE_METRIC_LOSS};
    moe_fit_result_t res;
    ASSERT_OK(moe_trainer_fit(tr, &s.data, NULL, &fo, &res));
    ASSERT_OK(moe_trainer_export(tr, i == 0 ? p0 : p1, MOE_QUANT_F32, err, sizeof err));
    moe_trainer_free(tr);
    cv[i] = load_cv(i == 0 ? p0 : p1, &s);
  }
  printf("  expert load coefficient of variation: %.3f without bias updates, %.3f with\n", cv[0], cv[1]);
  ASSERT_OP(cv[1], <, 0.5 * cv[0]);
  ASSERT_OP(cv[1], <, 0.2);
  remove(p0);
  remove(p1);
  synth_free(&s);
}

static int stop_at_two(void *data, int epoch, double train_loss, double val_metric) {
  int *calls = data;
  ++*calls;
  ASSERT(isfinite(train_loss) && isfinite(val_metric));
  return epoch >= 2;
}

TEST(progress_can_stop_fit) {
  char err[256];
  synth_t s;
  synth_make(&s, 200, 4, 0, 0.3, 6);
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(CFG, 1, NULL, &tr, err, sizeof err));
  int calls = 0;
  moe_fit_opts_t fo = {.epochs = 10, .batch_size = 50, .metric = MOE_METRIC_LOSS, .progress = stop_at_two, .data = &calls};
  moe_fit_result_t res;
  ASSERT_OK(moe_trainer_fit(tr, &s.data, &s.data, &fo, &res));
  ASSERT_EQ(calls, 2);
  ASSERT_EQ(res.epochs_run, 2);
  ASSERT_EQ(moe_trainer_steps(tr), 8);
  moe_trainer_free(tr);
  synth_free(&s);
}

TEST(load_names_a_bad_tensor) {
  char err[256], path[256], bad[256];
  tmp(path, sizeof path, "good");
  tmp(bad, sizeof bad, "bad");
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(CFG, 1, NULL, &tr, err, sizeof err));
  ASSERT_OK(moe_trainer_export(tr, path, MOE_QUANT_F32, err, sizeof err));
  moe_trainer_free(tr);
  /* The same tensors under a config whose embedding is one narrower (and enc.in one wider). */
  moe_st_file_t *f;
  ASSERT_OK(moe_st_open(path, &f, err, sizeof err));
  const size_t n = moe_st_n_tensors(f);
  moe_st_tensor_t *t = malloc(sizeof *t * n);
  for (size_t i = 0; i < n; i++) t[i] = *moe_st_tensor_at(f, i);
  char *cfg = strdup(moe_st_metadata_find(f, "config"));
  char *dim = strstr(cfg, "\"dim\":28");
  ASSERT_NOT_NULL(dim);
  dim[7] = '7';
  const moe_st_kv_t meta = {"config", cfg};
  ASSERT_OK(moe_st_write(bad, t, n, &meta, 1, err, sizeof err));
  moe_trainer_t *tr2 = NULL;
  ASSERT_EQ(moe_trainer_load(bad, 1, NULL, &tr2, err, sizeof err), MOE_ESHAPE);
  ASSERT_NULL(tr2);
  ASSERT_STR_CONTAINS(err, "tensor \"enc.cat.0.weight\" is not F32 of shape [5, 27]");
  ASSERT_EQ(moe_trainer_load("/nonexistent/model.safetensors", 1, NULL, &tr2, err, sizeof err), MOE_ENOENT);
  ASSERT_NULL(tr2);
  free(cfg);
  free(t);
  moe_st_close(f);
  remove(path);
  remove(bad);
}

/* ---- no allocation per step in steady state ---- */

static long n_allocs;
static void *count_malloc(void *user, size_t n) {
  (void)user;
  n_allocs++;
  return malloc(n);
}
static void *count_realloc(void *user, void *p, size_t n) {
  (void)user;
  n_allocs++;
  return realloc(p, n);
}
static void count_free(void *user, void *p) {
  (void)user;
  free(p);
}

TEST(steps_do_not_allocate) {
  char err[256];
  synth_t s;
  synth_make(&s, 64, 4, 0, 0.3, 7);
  const moe_allocator_t counting = {count_malloc, count_realloc, count_free, NULL};
  moe_set_allocator(&counting);
  moe_trainer_t *tr;
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.qat = MOE_QUANT_Q4_0;
  ASSERT_OK(moe_trainer_new(CFG, 1, &o, &tr, err, sizeof err));
  /* Two steps to reach the arena's high water (the first may overflow into extra chunks, the
   * reset after it grows the main block once). */
  ASSERT_OK(moe_trainer_step(tr, &s.data, NULL));
  ASSERT_OK(moe_trainer_step(tr, &s.data, NULL));
  const long before = n_allocs;
  for (int i = 0; i < 5; i++) ASSERT_OK(moe_trainer_step(tr, &s.data, NULL));
  ASSERT_EQ(n_allocs - before, 0);
  ASSERT_OP(before, >, 0); /* the hook did see the trainer's own allocations */
  moe_trainer_free(tr);
  moe_set_allocator(NULL);
  synth_free(&s);
}
