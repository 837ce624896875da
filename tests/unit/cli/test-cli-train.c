/*
 * Tests of `sluice train` on the shared data (short runs): the model card's metrics must be
 * what `sluice eval` (a separate path from data to model inputs) finds for the same split
 * part of the written file; the threshold is the validation best-F1 threshold; the weight
 * format is the one asked for; training is reproducible for a seed and changes with it; bad
 * options are refused.
 */
#include "test.h"
#include "test-tmpdir.h"

#include <math.h>
#include <sys/wait.h>

#include "cli-test-data.h"
#include "cli-test-run.h"
#include "cli.h"
#include "json-value.h"

TEST_TMPDIR(tmpdir, "test-cli-train")

static int run(char *out, size_t size, const char *args) {
  return cli_test_sluice(out, size, NULL, 0, args);
}

/* The provenance of a model file, through `sluice inspect --json`. */
static void inspect(const char *model, cli_jv_t *v) {
  static char out[1 << 20];
  char args[512];
  snprintf(args, sizeof(args), "inspect --json %s", model);
  ASSERT_EQ(run(out, sizeof(out), args), 0);
  ASSERT_OK(cli_jv_parse(out, strlen(out), v, NULL, 0));
}

static void eval_json(const char *task, const char *model, const char *data, const char *part,
                      cli_jv_t *v) {
  static char out[65536];
  char args[2048];
  snprintf(args, sizeof(args), "eval --task %s --model %s --data %s --split %s --json", task,
           model, data, part);
  ASSERT_EQ(run(out, sizeof(out), args), 0);
  ASSERT_OK(cli_jv_parse(out, strlen(out), v, NULL, 0));
}

/* Every metric of the card's part equals eval's (NaN-free, same names). */
static void assert_same_metrics(const cli_jv_t *card, const cli_jv_t *ev) {
  ASSERT_NOT_NULL(card);
  ASSERT_NOT_NULL(ev);
  ASSERT_EQ(card->kind, CLI_JV_OBJ);
  ASSERT(card->n >= 2);
  for (size_t i = 0; i < card->n; i++) {
    const cli_jv_t *e = cli_jv_get(ev, card->keys[i]);
    ASSERT_MSG(e != NULL, "eval has no metric %s", card->keys[i]);
    ASSERT_EQ(card->items[i].kind, CLI_JV_NUM);
    ASSERT_NEAR(e->num, card->items[i].num, 1e-9);
  }
}

static int same_file(const char *a, const char *b) {
  FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
  ASSERT_NOT_NULL(x);
  ASSERT_NOT_NULL(y);
  int same = 1, cx, cy;
  do {
    cx = fgetc(x);
    cy = fgetc(y);
    if (cx != cy) same = 0;
  } while (same && cx != EOF);
  fclose(x);
  fclose(y);
  return same;
}

TEST(train_ai4i_card_matches_eval) {
  char data[512], model[256], again[256], other[256], args[2048];
  static char out[65536];
  cli_test_data(data, sizeof(data), "fault/ai4i2020_train.csv");
  snprintf(model, sizeof(model), "%s/ai4i.st", tmpdir);
  snprintf(args, sizeof(args),
           "train --task fault-ai4i --data %s --out %s --epochs 3 --quant int8 --seed 7 --json",
           data, model);
  ASSERT_EQ(run(out, sizeof(out), args), 0);
  cli_jv_t sum;
  ASSERT_OK(cli_jv_parse(out, strlen(out), &sum, NULL, 0));
  ASSERT_EQ((int)cli_jv_num(cli_jv_get(&sum, "epochs_run"), 0), 3);
  cli_jv_free(&sum);

  cli_jv_t card, ev;
  inspect(model, &card);
  ASSERT_STR_EQ(cli_jv_str(cli_jv_get(&card, "quant"), ""), "q8_0");
  const cli_jv_t *prov = cli_jv_get(cli_jv_get(&card, "config"), "provenance");
  const cli_jv_t *metrics = cli_jv_get(prov, "metrics");
  ASSERT_NOT_NULL(metrics);
  ASSERT_EQ((int)cli_jv_num(cli_jv_get(prov, "seed"), 0), 7);
  /* The split's sizes (SPLITS.md: 5,600 / 1,200 / 1,200). */
  ASSERT_EQ((int)cli_jv_num(cli_jv_get(cli_jv_get(prov, "rows"), "train"), 0), 5600);
  /* The threshold is validation's best-F1 threshold, and the one the model applies. */
  double thr = cli_jv_num(cli_jv_get(cli_jv_get(&card, "task"), "threshold"), -1);
  ASSERT_NEAR(thr, cli_jv_num(cli_jv_get(cli_jv_get(metrics, "validation"), "best_f1_threshold"),
                              -2),
              1e-6);
  for (int p = 0; p < 2; p++) {
    const char *part = p ? "test" : "validation";
    eval_json("fault-ai4i", model, data, part, &ev);
    assert_same_metrics(cli_jv_get(metrics, part), cli_jv_get(&ev, "metrics"));
    cli_jv_free(&ev);
  }
  /* Learnt something: a failure detector better than chance on the held-out test part. */
  ASSERT(cli_jv_num(cli_jv_get(cli_jv_get(metrics, "test"), "roc_auc"), 0) > 0.7);
  cli_jv_free(&card);

  /* Same seed, same bytes; another seed, another model. */
  snprintf(again, sizeof(again), "%s/ai4i-again.st", tmpdir);
  snprintf(args, sizeof(args),
           "train --task fault-ai4i --data %s --out %s --epochs 3 --quant int8 --seed 7", data,
           again);
  ASSERT_EQ(run(out, sizeof(out), args), 0);
  ASSERT(same_file(model, again));
  snprintf(other, sizeof(other), "%s/ai4i-other.st", tmpdir);
  snprintf(args, sizeof(args),
           "train --task fault-ai4i --data %s --out %s --epochs 3 --quant int8 --seed 8", data,
           other);
  ASSERT_EQ(run(out, sizeof(out), args), 0);
  ASSERT(!same_file(model, other));
}

TEST(train_cmapss_regression) {
  char data[512], model[256], args[2048];
  static char out[65536];
  cli_test_data(data, sizeof(data), "fault/cmapss/train_FD001.txt");
  snprintf(model, sizeof(model), "%s/cmapss.st", tmpdir);
  snprintf(args, sizeof(args),
           "train --task fault-cmapss --data %s --out %s --epochs 2 --window 12 --quant int4",
           data, model);
  ASSERT_EQ(run(out, sizeof(out), args), 0);
  ASSERT_STR_CONTAINS(out, "rmse");
  cli_jv_t card, ev;
  inspect(model, &card);
  ASSERT_STR_EQ(cli_jv_str(cli_jv_get(&card, "quant"), ""), "q4_0");
  ASSERT_EQ((int)cli_jv_num(cli_jv_get(cli_jv_get(&card, "encoder"), "window"), 0), 12);
  const cli_jv_t *metrics =
      cli_jv_get(cli_jv_get(cli_jv_get(&card, "config"), "provenance"), "metrics");
  eval_json("fault-cmapss", model, data, "validation", &ev);
  assert_same_metrics(cli_jv_get(metrics, "validation"), cli_jv_get(&ev, "metrics"));
  /* In cycles, not in the training scale (RUL / 125): far below the RUL's own spread. */
  double rmse = cli_jv_num(cli_jv_get(cli_jv_get(&ev, "metrics"), "rmse"), -1);
  ASSERT(rmse > 1.0 && rmse < 60.0);
  cli_jv_free(&ev);
  cli_jv_free(&card);
}

/* Text: the tokenizer learnt by train and stored in the file gives eval the same tokens. */
TEST(train_abstracts_text) {
  char data[512], model[256], args[2048];
  static char out[65536];
  cli_test_data(data, sizeof(data), "clinical/medical_abstracts/abstracts_train.csv");
  snprintf(model, sizeof(model), "%s/abstracts.st", tmpdir);
  snprintf(args, sizeof(args),
           "train --task records-abstracts --data %s --out %s --epochs 1 --max-len 16 "
           "--vocab 400 --d-model 8 --experts 2 --top-k 1 --weight-decay 0.05 "
           "--label-smoothing 0.1",
           data, model);
  ASSERT_EQ(run(out, sizeof(out), args), 0);
  cli_jv_t card, ev;
  inspect(model, &card);
  ASSERT_STR_EQ(cli_jv_str(cli_jv_get(cli_jv_get(&card, "encoder"), "kind"), ""), "text");
  ASSERT_EQ((int)cli_jv_num(cli_jv_get(cli_jv_get(&card, "encoder"), "vocab_size"), 0), 400);
  const cli_jv_t *labels = cli_jv_get(cli_jv_get(&card, "task"), "labels");
  ASSERT_EQ(labels->n, 5);
  ASSERT_STR_EQ(labels->items[0].str, "1");
  const cli_jv_t *metrics =
      cli_jv_get(cli_jv_get(cli_jv_get(&card, "config"), "provenance"), "metrics");
  /* The regularisation options reach the trainer and are recorded with the model. */
  const cli_jv_t *opts =
      cli_jv_get(cli_jv_get(cli_jv_get(&card, "config"), "provenance"), "options");
  ASSERT_NEAR(cli_jv_num(cli_jv_get(opts, "weight_decay"), -1), 0.05, 1e-9);
  ASSERT_NEAR(cli_jv_num(cli_jv_get(opts, "label_smoothing"), -1), 0.1, 1e-9);
  eval_json("records-abstracts", model, data, "test", &ev);
  assert_same_metrics(cli_jv_get(metrics, "test"), cli_jv_get(&ev, "metrics"));
  cli_jv_free(&ev);
  cli_jv_free(&card);
}

TEST(train_bad_options) {
  char data[512];
  static char out[65536];
  char args[2048];
  cli_test_data(data, sizeof(data), "fault/ai4i2020_train.csv");
  snprintf(args, sizeof(args), "train --task fault-ai4i --data %s --out %s/x.st --quant int3",
           data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  snprintf(args, sizeof(args),
           "train --task fault-ai4i --data %s --out %s/x.st --experts 2 --top-k 3", data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  snprintf(args, sizeof(args), "train --task fault-ai4i --data %s", data);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  /* Label smoothing is for the multi-class tasks; weight decay must lie in [0, 1). */
  snprintf(args, sizeof(args),
           "train --task fault-ai4i --data %s --out %s/x.st --label-smoothing 0.1", data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  snprintf(args, sizeof(args),
           "train --task fault-ai4i --data %s --out %s/x.st --weight-decay 1.5", data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  snprintf(args, sizeof(args), "train --task fault-ai4i --data /nonexistent.csv --out %s/x.st",
           tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 1);
}

