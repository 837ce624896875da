/*
 * The shared test harness: TEST() bodies registered by constructor, ASSERT_* macros that print
 * both operands with file and line and then abort, and helpers for integration tests that need
 * the real Kafka broker and PostgreSQL server started by scripts/test.
 *
 * One executable per test file; main() comes from here unless TEST_NO_MAIN is defined. Run
 * `./test-x` to run every test in the file, or `./test-x name` to run one.
 */
#ifndef SLUICE_TEST_H
#define SLUICE_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef void (*test_fn_t)(void);

typedef struct test_case_s {
  const char *name;
  test_fn_t fn;
} test_case_t;

#define TEST_MAX_CASES 256
extern test_case_t test__cases[TEST_MAX_CASES];
extern int test__n_cases;

#define TEST(name)                                                           \
  static void test_##name(void);                                             \
  __attribute__((constructor)) static void test__register_##name(void) {     \
    if (test__n_cases < TEST_MAX_CASES)                                      \
      test__cases[test__n_cases++] = (test_case_t){#name, test_##name};      \
  }                                                                          \
  static void test_##name(void)

#define TEST__FAIL(...)                                                      \
  do {                                                                       \
    fprintf(stderr, "%s:%d: assertion failed: ", __FILE__, __LINE__);        \
    fprintf(stderr, __VA_ARGS__);                                            \
    fputc('\n', stderr);                                                     \
    fflush(stderr);                                                          \
    abort();                                                                 \
  } while (0)

#define ASSERT(cond)                                                         \
  do { if (!(cond)) TEST__FAIL("%s", #cond); } while (0)

#define ASSERT_MSG(cond, ...)                                                \
  do { if (!(cond)) TEST__FAIL(__VA_ARGS__); } while (0)

#define ASSERT_EQ(a, b)                                                      \
  do {                                                                       \
    long long test__a = (long long)(a), test__b = (long long)(b);            \
    if (test__a != test__b)                                                  \
      TEST__FAIL("%s == %s (%lld != %lld)", #a, #b, test__a, test__b);       \
  } while (0)

#define ASSERT_NE(a, b)                                                      \
  do {                                                                       \
    long long test__a = (long long)(a), test__b = (long long)(b);            \
    if (test__a == test__b)                                                  \
      TEST__FAIL("%s != %s (both %lld)", #a, #b, test__a);                   \
  } while (0)

#define ASSERT_OP(a, op, b)                                                  \
  do {                                                                       \
    double test__a = (double)(a), test__b = (double)(b);                     \
    if (!(test__a op test__b))                                               \
      TEST__FAIL("%s %s %s (%.9g vs %.9g)", #a, #op, #b, test__a, test__b);  \
  } while (0)

/* Zero is success for every Sluice error enum. */
#define ASSERT_OK(expr)                                                      \
  do {                                                                       \
    long long test__r = (long long)(expr);                                   \
    if (test__r != 0) TEST__FAIL("%s returned %lld, not 0", #expr, test__r); \
  } while (0)

#define ASSERT_NULL(p)                                                       \
  do { if ((p) != NULL) TEST__FAIL("%s is not NULL", #p); } while (0)

#define ASSERT_NOT_NULL(p)                                                   \
  do { if ((p) == NULL) TEST__FAIL("%s is NULL", #p); } while (0)

#define ASSERT_STR_EQ(a, b)                                                  \
  do {                                                                       \
    const char *test__a = (a), *test__b = (b);                               \
    if (test__a == NULL || test__b == NULL || strcmp(test__a, test__b) != 0) \
      TEST__FAIL("%s == %s (\"%s\" != \"%s\")", #a, #b,                      \
                 test__a ? test__a : "(null)", test__b ? test__b : "(null)"); \
  } while (0)

#define ASSERT_STR_CONTAINS(hay, needle)                                     \
  do {                                                                       \
    const char *test__h = (hay), *test__n = (needle);                        \
    if (test__h == NULL || strstr(test__h, test__n) == NULL)                 \
      TEST__FAIL("\"%s\" does not contain \"%s\"",                          \
                 test__h ? test__h : "(null)", test__n);                     \
  } while (0)

/* |a - b| <= tol * max(1, |b|): a relative tolerance that degrades to absolute near zero. */
#define ASSERT_NEAR(a, b, tol)                                               \
  do {                                                                       \
    double test__a = (double)(a), test__b = (double)(b), test__t = (tol);    \
    double test__s = fabs(test__b) > 1.0 ? fabs(test__b) : 1.0;              \
    if (!(fabs(test__a - test__b) <= test__t * test__s))                     \
      TEST__FAIL("%s ~= %s (%.9g vs %.9g, tol %.3g)", #a, #b, test__a,       \
                 test__b, test__t);                                          \
  } while (0)

/* ---- integration helpers ------------------------------------------------ */

/* Exit code that ctest treats as "skipped" (SKIP_RETURN_CODE). */
#define TEST_SKIP_CODE 77

/*
 * Returns the value of an environment variable that names a server (SLUICE_KAFKA_BROKERS,
 * SLUICE_PG_DSN). When it is unset: under CI=true the test fails, because CI always starts the
 * servers; elsewhere it exits with TEST_SKIP_CODE so that a bare `ctest` stays useful.
 */
static inline const char *test_require_env(const char *name) {
  const char *v = getenv(name);
  if (v != NULL && v[0] != '\0') return v;
  const char *ci = getenv("CI");
  if (ci != NULL && strcmp(ci, "true") == 0) {
    fprintf(stderr, "%s is not set under CI=true: the server is missing, failing\n", name);
    exit(1);
  }
  fprintf(stderr, "%s is not set: skipping (run through ./scripts/test)\n", name);
  exit(TEST_SKIP_CODE);
}

static inline double test_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A name unique to this process and moment, for topics, groups and tables. */
static inline void test_unique_name(char *buf, size_t size, const char *prefix) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(buf, size, "%s-%ld-%ld%09ld", prefix, (long)getpid(),
           (long)ts.tv_sec, (long)ts.tv_nsec);
}

#ifndef TEST_NO_MAIN
test_case_t test__cases[TEST_MAX_CASES];
int test__n_cases;

int main(int argc, char **argv) {
  int ran = 0;
  setvbuf(stdout, NULL, _IONBF, 0);
  for (int i = 0; i < test__n_cases; i++) {
    if (argc > 1 && strcmp(argv[1], test__cases[i].name) != 0) continue;
    double t0 = test_now_s();
    printf("[ RUN  ] %s\n", test__cases[i].name);
    test__cases[i].fn();
    printf("[  OK  ] %s (%.3f s)\n", test__cases[i].name, test_now_s() - t0);
    ran++;
  }
  if (ran == 0) {
    fprintf(stderr, "no test matched\n");
    return 1;
  }
  return 0;
}
#endif

#endif /* SLUICE_TEST_H */
