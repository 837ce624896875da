/*
 * Tests of the libmoe scorer behind wk_scorer_t, on a tiny real model file: metadata (version,
 * threshold, inputs by name), scores identical to running the engine directly, expert
 * explanations and per-expert load consistent with top-k routing, and precise errors for
 * non-finite inputs, oversize batches and models that do not fit the fraud builder.
 */
#include <stdbool.h>

#include "fraud-model.h"
#include "moe/moe.h"
#include "scorer.h"

static const char *const names[] = {"amount", "V14", "v_count_1h"};

static void model_path(char *buf, size_t size, const char *tag) {
  snprintf(buf, size, "/tmp/wk-scorer-%s-%ld.safetensors", tag, (long)getpid());
}

TEST(scores_match_the_engine) {
  char path[256], err[512];
  model_path(path, sizeof path, "ok");
  fm_write(path, names, 3, "fraud-test-1", 0.7, "binary");
  wk_scorer_t *sc = NULL;
  ASSERT_MSG(wk_scorer_moe_open(path, 8, &sc, err, sizeof err) == SVC_OK, "%s", err);
  ASSERT_STR_EQ(sc->version, "fraud-test-1");
  ASSERT_NEAR(sc->threshold, 0.7, 1e-6);
  ASSERT_EQ(sc->n_inputs, 3);
  ASSERT_STR_EQ(sc->input_names[1], "V14");
  ASSERT_EQ(sc->load_size, 4);

  enum { N = 8 };
  float x[N * 3];
  for (int i = 0; i < N * 3; i++) x[i] = (float)((i * 37) % 11) - 5.0f;
  wk_scorer_session_t *sess = NULL;
  ASSERT_OK(sc->session_new(sc, &sess));
  wk_score_t out[N];
  int64_t load[4] = {0};
  ASSERT_OK(sc->score(sess, x, N, out, load, err, sizeof err));

  /* The engine directly, on the same file. */
  moe_model_t *model = NULL;
  ASSERT_OK(moe_model_load(path, &model, err, sizeof err));
  moe_session_t *ms = NULL;
  ASSERT_OK(moe_session_new(model, N, &ms));
  moe_input_t rows[N];
  for (int i = 0; i < N; i++) rows[i] = (moe_input_t){.numeric = &x[i * 3]};
  float want[N];
  moe_output_t mo = {.scores = want};
  ASSERT_OK(moe_session_run(ms, rows, N, &mo));

  int64_t load_total = 0;
  for (int i = 0; i < 4; i++) load_total += load[i];
  ASSERT_EQ(load_total, N * 2); /* every row routed to top-2 */
  bool differ = false;
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(out[i].score, want[i]);
    ASSERT_OP(out[i].score, >=, 0);
    ASSERT_OP(out[i].score, <=, 1);
    if (out[i].score != out[0].score) differ = true;
    ASSERT_EQ(out[i].n_experts, 2);
    ASSERT_NE(out[i].experts[0].expert, out[i].experts[1].expert);
    float wsum = 0;
    for (int k = 0; k < 2; k++) {
      ASSERT_EQ(out[i].experts[k].layer, 0);
      ASSERT_OP(out[i].experts[k].expert, <, 4);
      ASSERT_OP(out[i].experts[k].weight, >, 0);
      wsum += out[i].experts[k].weight;
    }
    ASSERT_NEAR(wsum, 1.0, 1e-5); /* softmax gates renormalised over the chosen two */
  }
  ASSERT(differ); /* the rows really went through the model */

  char json[256];
  wk_score_experts_json(&out[0], json, sizeof json);
  char expect[64];
  snprintf(expect, sizeof expect, "[{\"layer\":0,\"expert\":%u,\"weight\":", out[0].experts[0].expert);
  ASSERT_STR_CONTAINS(json, expect);
  ASSERT_EQ(json[strlen(json) - 1], ']');
  wk_score_t none = {0};
  wk_score_experts_json(&none, json, sizeof json);
  ASSERT_STR_EQ(json, "[]");

  /* Explanations: the engine's own occlusion attributions, the largest five by magnitude. */
  ASSERT_NOT_NULL(sc->explain);
  float attr[3];
  ASSERT_OK(moe_session_attribute(ms, &rows[2], 0, attr, 3));
  wk_score_t ex = out[2];
  ASSERT_OK(sc->explain(sess, &x[2 * 3], &ex, err, sizeof err));
  ASSERT_EQ(ex.n_features, 3); /* only three inputs */
  for (uint32_t k = 0; k < ex.n_features; k++) {
    ASSERT_EQ(ex.features[k].contribution, attr[ex.features[k].input]);
    if (k) ASSERT_OP(fabsf(ex.features[k].contribution), <=, fabsf(ex.features[k - 1].contribution));
  }
  ASSERT_NE(ex.features[0].input, ex.features[1].input);
  ASSERT_NE(ex.features[1].input, ex.features[2].input);
  ASSERT_NE(ex.features[0].input, ex.features[2].input);
  ASSERT_OP(fabsf(ex.features[0].contribution), >, 0);
  char fj[512];
  wk_score_features_json(&ex, sc->input_names, fj, sizeof fj);
  char want_fj[64];
  snprintf(want_fj, sizeof want_fj, "[{\"name\":\"%s\",\"contribution\":", names[ex.features[0].input]);
  ASSERT_STR_CONTAINS(fj, want_fj);
  ASSERT_EQ(out[3].n_features, 0); /* plain scoring explains nothing */
  const char *const odd[] = {"a\"b", "c", "d"};
  wk_score_features_json(&ex, odd, fj, sizeof fj);
  if (ex.features[0].input == 0) ASSERT_STR_CONTAINS(fj, "\"name\":\"a\\\"b\"");

  /* Bad input is named. */
  x[3 * 3 + 1] = NAN;
  ASSERT_EQ(sc->score(sess, x, N, out, NULL, err, sizeof err), SVC_EINVAL);
  ASSERT_STR_CONTAINS(err, "row 3 input \"V14\" is not finite");
  ASSERT_EQ(sc->score(sess, x, 9, out, NULL, err, sizeof err), SVC_EINVAL);
  ASSERT_STR_CONTAINS(err, "1..8");

  moe_session_free(ms);
  moe_model_free(model);
  sc->session_free(sess);
  wk_scorer_free(sc);
  unlink(path);
}

TEST(models_that_do_not_fit) {
  char path[256], err[512];
  wk_scorer_t *sc = NULL;
  model_path(path, sizeof path, "time");
  const char *const ulb[] = {"Time", "amount"};
  fm_write(path, ulb, 2, "fraud-ulb", -1, "binary");
  ASSERT_EQ(wk_scorer_moe_open(path, 8, &sc, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "model input 0 \"Time\" is not a fraud feature");
  ASSERT_NULL(sc);
  unlink(path);

  model_path(path, sizeof path, "regr");
  fm_write(path, names, 3, "fraud-regr", -1, "regression");
  ASSERT_EQ(wk_scorer_moe_open(path, 8, &sc, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "binary tabular");
  unlink(path);

  ASSERT_EQ(wk_scorer_moe_open("/nonexistent/model.safetensors", 8, &sc, err, sizeof err),
            SVC_ENOENT);
  ASSERT_STR_CONTAINS(err, "/nonexistent/model.safetensors");
  ASSERT_EQ(wk_scorer_moe_open(path, 0, &sc, err, sizeof err), SVC_ECONFIG);
  wk_scorer_free(NULL);
}
