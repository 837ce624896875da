/*
 * `sluice train --task fault-cmapss` with --rul-cap and --last-epoch (the fourth tuning round's
 * options; short runs on the shared FD001 data):
 *   - --last-epoch keeps the last epoch: the reported best epoch is the last one run, even with
 *     a patience that would have stopped a run judged on validation, and the provenance says so;
 *   - --rul-cap C reaches the provenance (rul_cap C, target_scale 1 / C), and `sluice eval` of
 *     the written file finds the validation RMSE that train reported (the head was rescaled
 *     by the same cap the target was divided by: otherwise the two would differ);
 *   - bad caps and the cap on another task are refused with the usage exit code.
 */
#include "test.h"
#include "test-tmpdir.h"

#include <math.h>

#include "../cli/cli-test-data.h"
#include "../cli/cli-test-run.h"
#include "json-value.h"

TEST_TMPDIR(tmpdir, "test-train-cli-cap")

static int run(char *out, size_t size, const char *args) {
  return cli_test_sluice(out, size, NULL, 0, args);
}

TEST(cap_and_last_epoch) {
  char data[512], args[2048], model[256];
  cli_test_data(data, sizeof(data), "fault/cmapss/train_FD001.txt");
  snprintf(model, sizeof(model), "%s/c.st", tmpdir);
  cli_jv_t tr, card, ev;
  snprintf(args, sizeof(args),
           "train --task fault-cmapss --data %s --out %s --epochs 3 --patience 1 --window 12 "
           "--scale minmax --rul-cap 130 --last-epoch --seed 2 --json",
           data, model);
  cli_test_sluice_json(args, &tr);
  ASSERT_EQ(cli_jv_num(cli_jv_get(&tr, "epochs_run"), 0), 3);
  ASSERT_EQ(cli_jv_num(cli_jv_get(&tr, "best_epoch"), 0), 3);
  snprintf(args, sizeof(args), "inspect --json %s", model);
  cli_test_sluice_json(args, &card);
  const cli_jv_t *opt =
      cli_jv_get(cli_jv_get(cli_jv_get(&card, "config"), "provenance"), "options");
  ASSERT_NOT_NULL(opt);
  ASSERT_NEAR(cli_jv_num(cli_jv_get(opt, "rul_cap"), 0), 130, 1e-12);
  ASSERT_NEAR(cli_jv_num(cli_jv_get(opt, "target_scale"), 0), 1.0 / 130, 1e-12);
  const cli_jv_t *last = cli_jv_get(opt, "last_epoch");
  ASSERT_NOT_NULL(last);
  ASSERT_EQ(last->kind, CLI_JV_BOOL);
  ASSERT_EQ(last->b, 1);

  snprintf(args, sizeof(args),
           "eval --task fault-cmapss --model %s --data %s --split validation --json", model, data);
  cli_test_sluice_json(args, &ev);
  const double want = cli_jv_num(cli_jv_get(cli_jv_get(&tr, "validation"), "rmse"), NAN);
  ASSERT(want > 1 && want < 150);
  ASSERT_NEAR(cli_jv_num(cli_jv_get(cli_jv_get(&ev, "metrics"), "rmse"), NAN), want, 1e-9);
  cli_jv_free(&ev);
  cli_jv_free(&card);
  cli_jv_free(&tr);
}

TEST(bad_cap) {
  char data[512], args[2048];
  static char out[65536];
  cli_test_data(data, sizeof(data), "fault/cmapss/train_FD001.txt");
  const char *bad[] = {"--rul-cap 0", "--rul-cap -5", "--rul-cap x", "--rul-cap 12o"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(args, sizeof(args), "train --task fault-cmapss --data %s --out %s/x.st %s", data,
             tmpdir, bad[i]);
    ASSERT_MSG(run(out, sizeof(out), args) == 2, "%s was accepted", bad[i]);
  }
  cli_test_data(data, sizeof(data), "fault/ai4i2020_train.csv");
  snprintf(args, sizeof(args), "train --task fault-ai4i --data %s --out %s/x.st --rul-cap 130",
           data, tmpdir);
  ASSERT_EQ(run(out, sizeof(out), args), 2);
}
