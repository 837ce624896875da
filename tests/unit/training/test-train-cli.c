/*
 * `sluice train` on the shared data for what the ML options add (short runs):
 *   - the quantization report: with --quant int4 the command scores the same trained weights
 *     exported in fp32, int8 and int4 on validation; the int4 figure is the file's own
 *     validation figure, the fp32 one is what an fp32 training with the same seed reaches, and
 *     the cost is their difference in the direction the metric gets worse;
 *   - the text options: --pool bag, --idf and --balanced reach the model file (encoder.pool,
 *     encoder.idf, provenance options), and `sluice eval` (its own tokenizing path) finds the card's test
 *     figures on the written bag model;
 *   - --linear-c (the convex start) with --epochs 0: the choice of C on validation is recorded,
 *     int8 scores like fp32, and `sluice eval` finds the card's test figure;
 *   - bad combinations are refused with the usage exit code.
 */
#include "test.h"
#include "test-tmpdir.h"

#include <math.h>
#include <sys/wait.h>

#include "../cli/cli-test-data.h"
#include "../cli/cli-test-run.h"
#include "json-value.h"

TEST_TMPDIR(tmpdir, "test-train-cli")

/* `sluice ARGS`: the exit status, stdout in out (stderr dropped). */
static int run(char *out, size_t size, const char *args) {
  return cli_test_sluice(out, size, NULL, 0, args);
}

static double num_at(const cli_jv_t *obj, const char *a, const char *b) {
  const cli_jv_t *x = cli_jv_get(obj, a);
  ASSERT_MSG(x != NULL, "no member %s", a);
  if (b != NULL) {
    x = cli_jv_get(x, b);
    ASSERT_MSG(x != NULL, "no member %s.%s", a, b);
  }
  ASSERT_EQ(x->kind, CLI_JV_NUM);
  return x->num;
}

TEST(quantization_cost_reported) {
  char data[512], args[2048];
  cli_test_data(data, sizeof(data), "fault/cmapss/train_FD001.txt");
  cli_jv_t q4, f32;
  snprintf(args, sizeof(args),
           "train --task fault-cmapss --data %s --out %s/c4.st --epochs 1 --window 12 --seed 5 "
           "--quant int4 --json",
           data, tmpdir);
  cli_test_sluice_json(args, &q4);
  const cli_jv_t *qr = cli_jv_get(&q4, "quantization");
  ASSERT_NOT_NULL(qr);
  ASSERT_STR_EQ(cli_jv_str(cli_jv_get(qr, "metric"), ""), "rmse");
  const double v32 = num_at(qr, "validation", "f32"), v8 = num_at(qr, "validation", "q8_0");
  const double v4 = num_at(qr, "validation", "q4_0");
  /* The file's figure, and the cost from fp32 to it (rmse: higher is worse). */
  ASSERT_NEAR(v4, num_at(&q4, "validation", "rmse"), 1e-9);
  ASSERT_NEAR(num_at(qr, "cost", NULL), v4 - v32, 1e-9);
  ASSERT(v8 > 1.0 && v8 < 80.0);
  /* The same seed trained and written in fp32 reaches the report's fp32 figure. */
  snprintf(args, sizeof(args),
           "train --task fault-cmapss --data %s --out %s/c32.st --epochs 1 --window 12 --seed 5 "
           "--quant f32 --json",
           data, tmpdir);
  cli_test_sluice_json(args, &f32);
  ASSERT_NEAR(num_at(&f32, "validation", "rmse"), v32, 1e-6);
  /* Nothing to compare an fp32 file with: no report. */
  ASSERT(cli_jv_get(&f32, "quantization") == NULL);
  cli_jv_free(&f32);
  cli_jv_free(&q4);
}

TEST(text_bag_balanced_options) {
  char data[512], args[2048], model[256];
  cli_test_data(data, sizeof(data), "clinical/medical_abstracts/abstracts_train.csv");
  snprintf(model, sizeof(model), "%s/bag.st", tmpdir);
  cli_jv_t tr, card, ev;
  snprintf(args, sizeof(args),
           "train --task records-abstracts --data %s --out %s --epochs 1 --pool bag --idf --max-len 4096 "
           "--vocab 400 --d-model 8 --experts 2 --top-k 1 --balanced --quant int8 --json",
           data, model);
  cli_test_sluice_json(args, &tr);
  ASSERT_NOT_NULL(cli_jv_get(cli_jv_get(&tr, "quantization"), "validation"));
  snprintf(args, sizeof(args), "inspect --json %s", model);
  cli_test_sluice_json(args, &card);
  const cli_jv_t *enc = cli_jv_get(cli_jv_get(&card, "config"), "encoder");
  ASSERT_STR_EQ(cli_jv_str(cli_jv_get(enc, "pool"), ""), "bag");
  ASSERT_EQ((int)cli_jv_num(cli_jv_get(enc, "n_layer"), -1), 0);
  ASSERT_NOT_NULL(cli_jv_get(enc, "idf"));
  ASSERT_EQ(cli_jv_get(enc, "idf")->kind, CLI_JV_BOOL);
  ASSERT_EQ(cli_jv_get(enc, "idf")->b, 1);
  ASSERT_EQ((int)cli_jv_num(cli_jv_get(enc, "max_len"), -1), 4096);
  const cli_jv_t *prov = cli_jv_get(cli_jv_get(&card, "config"), "provenance");
  ASSERT_STR_EQ(cli_jv_str(cli_jv_get(cli_jv_get(prov, "options"), "class_weight"), ""), "balanced");
  snprintf(args, sizeof(args), "eval --task records-abstracts --model %s --data %s --split test --json",
           model, data);
  cli_test_sluice_json(args, &ev);
  const cli_jv_t *want = cli_jv_get(cli_jv_get(prov, "metrics"), "test");
  ASSERT_NOT_NULL(want);
  ASSERT_NEAR(num_at(&ev, "metrics", "macro_f1"), num_at(want, "macro_f1", NULL), 1e-9);
  ASSERT_NEAR(num_at(&ev, "metrics", "accuracy"), num_at(want, "accuracy", NULL), 1e-9);
  cli_jv_free(&ev);
  cli_jv_free(&card);
  cli_jv_free(&tr);
}

/* --linear-c: the convex start, judged per C on validation; with --epochs 0 the file is that
 * linear model, its expert outputs 0, so int8 scores like fp32. */
TEST(text_bag_linear_start) {
  char data[512], args[2048], model[256];
  cli_test_data(data, sizeof(data), "clinical/medical_abstracts/abstracts_train.csv");
  snprintf(model, sizeof(model), "%s/lin.st", tmpdir);
  cli_jv_t tr, card, ev;
  snprintf(args, sizeof(args),
           "train --task records-abstracts --data %s --out %s --epochs 0 --pool bag --idf --no-head-norm "
           "--max-len 1024 --vocab 2000 --d-model 8 --experts 2 --top-k 1 --balanced --linear-c 1,3 "
           "--quant int8 --json",
           data, model);
  cli_test_sluice_json(args, &tr);
  ASSERT_EQ((int)num_at(&tr, "epochs_run", NULL), 0);
  ASSERT_EQ((int)num_at(&tr, "best_epoch", NULL), 0);
  const double f1 = num_at(&tr, "validation", "macro_f1");
  ASSERT_OP(f1, >, 0.4); /* five classes: chance is 0.2 */
  ASSERT_NEAR(num_at(cli_jv_get(&tr, "quantization"), "validation", "f32"), f1, 1e-3);
  snprintf(args, sizeof(args), "inspect --json %s", model);
  cli_test_sluice_json(args, &card);
  const cli_jv_t *prov = cli_jv_get(cli_jv_get(&card, "config"), "provenance");
  const cli_jv_t *opt = cli_jv_get(prov, "options");
  const double c = num_at(opt, "linear_c", NULL);
  ASSERT(c == 1 || c == 3);
  const cli_jv_t *tried = cli_jv_get(opt, "linear_c_tried");
  ASSERT_NOT_NULL(tried);
  ASSERT_EQ(tried->kind, CLI_JV_ARR);
  ASSERT_EQ((int)tried->n, 2);
  snprintf(args, sizeof(args), "eval --task records-abstracts --model %s --data %s --split test --json",
           model, data);
  cli_test_sluice_json(args, &ev);
  ASSERT_NEAR(num_at(&ev, "metrics", "macro_f1"), num_at(cli_jv_get(prov, "metrics"), "test", "macro_f1"), 1e-9);
  cli_jv_free(&ev);
  cli_jv_free(&card);
  cli_jv_free(&tr);
}

TEST(bad_option_combinations) {
  char data[512], args[2048];
  static char out[65536];
  cli_test_data(data, sizeof(data), "clinical/medical_abstracts/abstracts_train.csv");
  snprintf(args, sizeof(args), "train --task records-abstracts --data %s --out %s/x.st --pool bag --layers 2",
           data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  snprintf(args, sizeof(args), "train --task records-abstracts --data %s --out %s/x.st --pool sum", data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  snprintf(args, sizeof(args), "train --task records-abstracts --data %s --out %s/x.st --idf", data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  snprintf(args, sizeof(args), "train --task records-abstracts --data %s --out %s/x.st --pool bag --linear-c 1",
           data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2); /* the head norm stays: not a linear model */
  snprintf(args, sizeof(args), "train --task records-abstracts --data %s --out %s/x.st --epochs 0", data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  snprintf(args, sizeof(args),
           "train --task records-abstracts --data %s --out %s/x.st --pool bag --no-head-norm --linear-c 1,0", data,
           tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
  cli_test_data(data, sizeof(data), "fault/ai4i2020_train.csv");
  snprintf(args, sizeof(args), "train --task fault-ai4i --data %s --out %s/x.st --balanced", data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
}

