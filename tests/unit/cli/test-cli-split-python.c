/*
 * Keeps bench/quality/baselines.py honest: it regenerates the split fixture with Debian's
 * python3 and the result must equal the committed tests/unit/cli/split-fixture.txt, which
 * test-cli-dataset compares with the C split. Together: C split == fixture == Python split.
 */
#include "test.h"

#include <sys/wait.h>

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ASSERT_MSG(f != NULL, "cannot open %s", path);
  static char buf[1 << 16];
  *len = fread(buf, 1, sizeof(buf) - 1, f);
  buf[*len] = '\0';
  fclose(f);
  char *copy = malloc(*len + 1);
  memcpy(copy, buf, *len + 1);
  return copy;
}

TEST(python_split_equals_fixture) {
  const char *src = getenv("SLUICE_SOURCE_DIR");
  if (src == NULL) src = ".";
  ASSERT_MSG(access("/usr/bin/python3", X_OK) == 0,
             "/usr/bin/python3 is missing (Debian's python3 with python3-numpy is required)");
  char out[] = "/tmp/sluice-split-fixture-XXXXXX";
  int fd = mkstemp(out);
  ASSERT(fd >= 0);
  close(fd);
  char cmd[8192];
  snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s/bench/quality/baselines.py' --split-fixture '%s'",
           src, out);
  int st = system(cmd);
  ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed (status %d)", cmd, st);
  char fixture[4096];
  snprintf(fixture, sizeof(fixture), "%s/tests/unit/cli/split-fixture.txt", src);
  size_t la, lb;
  char *a = slurp(out, &la), *b = slurp(fixture, &lb);
  unlink(out);
  ASSERT_MSG(la == lb && memcmp(a, b, la) == 0,
             "the Python split differs from %s:\n%s\nvs committed\n%s", fixture, a, b);
  free(a);
  free(b);
}
