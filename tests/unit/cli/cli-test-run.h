/*
 * Runs the built `sluice` as a user would, for the cli tests: $SLUICE_BINARY_DIR/bin/sluice
 * (build/bin/sluice when unset) with progress bars off, stdout captured, stderr captured or
 * dropped. Include after test.h (it asserts).
 */
#ifndef CLI_TEST_RUN_H
#define CLI_TEST_RUN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json-value.h"
#include "test-run.h"

/*
 * Runs `sluice ARGS` (ARGS is shell text: quote paths); stdout into out (NUL-terminated,
 * truncated to size - 1), stderr into err when it is not NULL. Returns the exit status; a
 * command that did not exit (a signal) fails the test.
 */
static inline int cli_test_sluice(char *out, size_t size, char *err, size_t err_size,
                                  const char *args) {
  const char *bin = getenv("SLUICE_BINARY_DIR");
  char cmd[8192], errpath[64] = "/dev/null";
  if (err != NULL) {
    snprintf(errpath, sizeof errpath, "/tmp/sluice-cli-test-XXXXXX");
    int fd = mkstemp(errpath);
    ASSERT(fd >= 0);
    close(fd);
  }
  int n_cmd = snprintf(cmd, sizeof cmd, "SLUICE_NO_PROGRESS=1 '%s/bin/sluice' %s 2>%s",
                       bin ? bin : "build", args, errpath);
  ASSERT(n_cmd > 0 && (size_t)n_cmd < sizeof cmd);
  int status = test_run(cmd, out, size);
  if (err != NULL) {
    FILE *f = fopen(errpath, "r");
    ASSERT_NOT_NULL(f);
    size_t n = fread(err, 1, err_size - 1, f);
    err[n] = '\0';
    fclose(f);
    remove(errpath);
  }
  return status;
}

/* `sluice ARGS` must exit 0 with one JSON value on stdout, parsed into v (cli_jv_free it). */
static inline void cli_test_sluice_json(const char *args, cli_jv_t *v) {
  static char out[1 << 20];
  ASSERT_EQ(cli_test_sluice(out, sizeof out, NULL, 0, args), 0);
  ASSERT_OK(cli_jv_parse(out, strlen(out), v, NULL, 0));
}

#endif /* CLI_TEST_RUN_H */
