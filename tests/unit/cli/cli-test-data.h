/*
 * Where the cli tests find the shared public data sets: $SLUICE_SOURCE_DIR/../shared/data
 * (CI has ../shared beside the clone). A missing directory is a failure with a message that
 * says where it was looked for, never a silent skip.
 */
#ifndef CLI_TEST_DATA_H
#define CLI_TEST_DATA_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Writes "<data dir>/<rel>" into buf; aborts the test when the data directory is absent. */
static inline const char *cli_test_data(char *buf, size_t size, const char *rel) {
  const char *src = getenv("SLUICE_SOURCE_DIR");
  if (src == NULL || src[0] == '\0') src = ".";
  int n = snprintf(buf, size, "%s/../shared/data", src);
  struct stat st;
  if (n < 0 || (size_t)n >= size || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr,
            "the shared data sets are missing: %s is not a directory (tests expect "
            "../shared/data beside the source tree; set SLUICE_SOURCE_DIR)\n",
            buf);
    exit(1);
  }
  snprintf(buf + n, size - (size_t)n, "/%s", rel);
  return buf;
}

#endif /* CLI_TEST_DATA_H */
