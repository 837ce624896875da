/*
 * Runs a shell command for a test and captures its standard output: for the tests that run a
 * built binary (`sluice`, `sluice-worker`) as a user would. Include after test.h (it
 * asserts).
 */
#ifndef SLUICE_TEST_RUN_H
#define SLUICE_TEST_RUN_H

#include <stdio.h>
#include <sys/wait.h>

/*
 * Runs `cmd` (shell text: the caller quotes paths and redirects stderr as it wants); its
 * stdout into out (NUL-terminated, cut to size - 1). Returns the exit status; a command that
 * did not exit (a signal) fails the test.
 */
static inline int test_run(const char *cmd, char *out, size_t size) {
  FILE *p = popen(cmd, "r");
  ASSERT_NOT_NULL(p);
  size_t n = fread(out, 1, size - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  ASSERT_MSG(WIFEXITED(st), "%s: did not exit (status %d)", cmd, st);
  return WEXITSTATUS(st);
}

#endif /* SLUICE_TEST_RUN_H */
