/*
 * Tests of the `sluice` executable as a user runs it: --help on every command of the table,
 * exit statuses, `data describe` as text and as JSON on a real file, and the JSON writer and
 * progress bar helpers.
 */
#include "test.h"

#include <sys/wait.h>

#include "cli-test-data.h"
#include "cli-test-run.h"
#include "cli.h"

/* `sluice ARGS`: the exit status, stdout in buf (stderr dropped). */
static int run(char *buf, size_t size, const char *args) {
  return cli_test_sluice(buf, size, NULL, 0, args);
}

TEST(help_everywhere) {
  static char out[65536];
  ASSERT_EQ(run(out, sizeof(out), "--help"), 0);
  ASSERT_STR_CONTAINS(out, "usage: sluice COMMAND");
  for (const cli_cmd_t *c = cli_commands; c->name; c++) ASSERT_STR_CONTAINS(out, c->name);
  for (const cli_cmd_t *c = cli_commands; c->name; c++) {
    char args[256];
    snprintf(args, sizeof(args), "%s --help", c->name);
    ASSERT_EQ(run(out, sizeof(out), args), 0);
    ASSERT_STR_CONTAINS(out, "usage: sluice ");
    ASSERT_STR_CONTAINS(out, c->name);
    snprintf(args, sizeof(args), "help %s", c->name);
    ASSERT_EQ(run(out, sizeof(out), args), 0);
    ASSERT_STR_CONTAINS(out, "usage: sluice ");
  }
  ASSERT_EQ(run(out, sizeof(out), "data --help"), 0);
  ASSERT_STR_CONTAINS(out, "data describe");
}

TEST(exit_statuses) {
  static char out[65536];
  ASSERT_EQ(run(out, sizeof(out), ""), 2);
  ASSERT_EQ(run(out, sizeof(out), "no-such-command"), 2);
  ASSERT_EQ(run(out, sizeof(out), "data"), 2);
  ASSERT_EQ(run(out, sizeof(out), "data describe --task fraud"), 2);
  ASSERT_EQ(run(out, sizeof(out), "data describe --task nope --data x.csv"), 2);
  ASSERT_EQ(run(out, sizeof(out), "data describe --bogus"), 2);
  ASSERT_EQ(run(out, sizeof(out), "data describe --task fraud --data /nonexistent.csv"), 1);
  ASSERT_EQ(run(out, sizeof(out), "version"), 0);
  ASSERT_STR_CONTAINS(out, "sluice ");
  ASSERT_EQ(run(out, sizeof(out), "version --json"), 0);
  ASSERT_STR_CONTAINS(out, "{\"name\":\"sluice\",\"version\":\"");
}

TEST(describe_text_and_json) {
  static char out[65536];
  char path[4096], args[8192];
  cli_test_data(path, sizeof(path), "fault/ai4i2020_train.csv");
  snprintf(args, sizeof(args), "data describe --task fault-ai4i --data '%s'", path);
  ASSERT_EQ(run(out, sizeof(out), args), 0);
  ASSERT_STR_CONTAINS(out, "8000 used, 0 dropped");
  ASSERT_STR_CONTAINS(out, "271 positive");
  snprintf(args, sizeof(args), "data describe --json --task fault-ai4i --data '%s'", path);
  ASSERT_EQ(run(out, sizeof(out), args), 0);
  ASSERT_EQ(out[0], '{');
  ASSERT_STR_CONTAINS(out, "\"task\":\"fault-ai4i\"");
  ASSERT_STR_CONTAINS(out, "\"rows\":8000");
  ASSERT_STR_CONTAINS(out, "\"categorical_features\":{\"Type\":[\"L\",\"M\",\"H\"]}");
  ASSERT_STR_CONTAINS(out, "\"train\":{\"rows\":5600");
  /* One object, one line. */
  ASSERT_EQ(strchr(out, '\n') - out, (long long)strlen(out) - 1);
}

TEST(json_writer) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cli_json_t js;
  cli_json_init(&js, f);
  cli_json_obj_begin(&js);
  cli_json_key(&js, "a\"b");
  cli_json_arr_begin(&js);
  cli_json_int(&js, 1);
  cli_json_num(&js, 0.5);
  cli_json_num(&js, NAN);
  cli_json_str(&js, "x\ny\x01");
  cli_json_obj_begin(&js);
  cli_json_obj_end(&js);
  cli_json_arr_end(&js);
  cli_json_key(&js, "t");
  cli_json_bool(&js, 1);
  cli_json_obj_end(&js);
  fclose(f);
  ASSERT_STR_EQ(buf, "{\"a\\\"b\":[1,0.5,null,\"x\\ny\\u0001\",{}],\"t\":true}\n");
  free(buf);
}

TEST(progress_format) {
  char buf[128];
  ASSERT_STR_EQ(cli_progress_format(buf, sizeof(buf), "load", 5, 10, 10),
                "load [#####     ]  50 % 5/10");
  ASSERT_STR_EQ(cli_progress_format(buf, sizeof(buf), "x", 12, 10, 4), "x [####] 100 % 10/10");
  ASSERT_STR_EQ(cli_progress_format(buf, sizeof(buf), "x", 0, 0, 2), "x [##] 100 % 0/0");
  /* Not a terminal under ctest: the bar stays quiet. */
  cli_progress_t pb;
  cli_progress_init(&pb, "quiet", 10);
  if (!isatty(STDERR_FILENO)) ASSERT_EQ(pb.enabled, 0);
  cli_progress_update(&pb, 5);
  cli_progress_close(&pb);
}
