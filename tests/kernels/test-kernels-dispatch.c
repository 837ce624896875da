/*
 * Variant selection: the probe's choice, the list (ref first), lookup by name, and
 * MOE_KERNELS forcing or rejecting a variant. The choice is made once per process, so each
 * MOE_KERNELS case runs in a forked child of a parent that has not chosen yet (tests run in
 * file order, so the test that makes the parent choose comes last).
 */
#include <sys/wait.h>

#include "test.h"

#include "kernels/kernels.h"
#include "moe/error.h"
#include "moe/log.h"

static char logged[512];
static moe_log_level_t logged_level = MOE_LOG_NONE;

static void log_cb(moe_log_level_t level, const char *msg, void *user) {
  (void)user;
  snprintf(logged, sizeof logged, "%s", msg);
  logged_level = level;
}

/* Runs the choice in a child with MOE_KERNELS=value; the child exits 0 when it saw `want_err`
 * from kern_init and, on success, the variant `want_name`. */
static int child_choice(const char *value, int want_err, const char *want_name) {
  pid_t pid = fork();
  if (pid == 0) {
    setenv("MOE_KERNELS", value, 1);
    moe_log_set(log_cb, NULL);
    char err[256] = "";
    int rc = kern_init(err, sizeof err);
    if (rc != want_err) _exit(10);
    /* The choice was logged once, as a warning when MOE_KERNELS could not be honoured. */
    if (strstr(logged, "kernels: ") == NULL) _exit(14);
    if (logged_level != (rc == 0 ? MOE_LOG_INFO : MOE_LOG_WARN)) _exit(15);
    if (rc != 0 && (strstr(err, "MOE_KERNELS") == NULL || strstr(err, value) == NULL)) _exit(11);
    if (rc == 0 && strcmp(kern_ops()->name, want_name) != 0) _exit(12);
    if (kern_ops() == NULL || kern_ops_reason()[0] == '\0') _exit(13);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

TEST(env_forces_and_rejects) {
  ASSERT_EQ(child_choice("ref", 0, "ref"), 0);
  ASSERT_EQ(child_choice("no-such-isa", MOE_EINVAL, NULL), 0);
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  for (int i = 0; i < nv; i++) ASSERT_EQ(child_choice(v[i]->name, 0, v[i]->name), 0);
  /* A known variant that this machine cannot run is refused with MOE_EUNSUPPORTED. */
  const char *known[] = {"avx2", "avx512"};
  for (int i = 0; i < 2; i++)
    if (kern_ops_find(known[i]) == NULL)
      ASSERT_EQ(child_choice(known[i], MOE_EUNSUPPORTED, NULL), 0);
}

/* After env_forces_and_rejects: this one makes the parent process choose. */
TEST(list_find_and_default) {
  const kern_ops_t *v[8];
  int nv = kern_ops_list(v, 8);
  ASSERT_OP(nv, >=, 1);
  ASSERT_STR_EQ(v[0]->name, "ref");
  for (int i = 0; i < nv; i++) ASSERT(kern_ops_find(v[i]->name) == v[i]);
  ASSERT_NULL(kern_ops_find("sse9"));
  ASSERT_EQ(kern_ops_list(v, 0), nv); /* counts even when nothing fits */
  if (getenv("MOE_KERNELS") == NULL) {
    /* Unforced, the choice is the last (best) usable variant. */
    ASSERT_EQ(kern_init(NULL, 0), 0);
    ASSERT_STR_EQ(kern_ops()->name, v[nv - 1]->name);
    ASSERT_STR_CONTAINS(kern_ops_reason(), v[nv - 1]->name);
  }
  for (int i = 0; i < nv; i++) {
    /* Every table is complete. */
    const void *const *fp = (const void *const *)&v[i]->quantize_row_q8_0;
    size_t nfp = (sizeof(kern_ops_t) - offsetof(kern_ops_t, quantize_row_q8_0)) / sizeof(void *);
    for (size_t j = 0; j < nfp; j++) ASSERT_MSG(fp[j] != NULL, "%s slot %zu", v[i]->name, j);
  }
}
