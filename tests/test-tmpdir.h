/*
 * A scratch directory for one test executable: TEST_TMPDIR(var, "name") defines
 * `static char var[128]`, made as /tmp/name-XXXXXX before main (mkdtemp) and removed with
 * its contents at exit. Include after test.h.
 */
#ifndef SLUICE_TEST_TMPDIR_H
#define SLUICE_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>

#define TEST_TMPDIR(var, name)                                                           \
  static char var[128];                                                                  \
  __attribute__((constructor)) static void test_tmpdir_make_##var(void) {               \
    snprintf(var, sizeof var, "/tmp/" name "-XXXXXX");                                   \
    if (mkdtemp(var) == NULL) abort();                                                   \
  }                                                                                      \
  __attribute__((destructor)) static void test_tmpdir_remove_##var(void) {              \
    char cmd[256];                                                                       \
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", var);                                       \
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", var);                 \
  }

#endif /* SLUICE_TEST_TMPDIR_H */
