/*
 * Table-driven configuration: every type parses its documented forms, precedence is
 * flags > environment > file > default, --help is generated from the table, every bad value
 * names its source and place, the setting, the value and what was expected, unknown keys get
 * a "did you mean", and a reload applies only reloadable settings (atomically).
 */
#include "test.h"

#include <stddef.h>

#include "svc/config.h"

typedef struct {
  char *brokers;
  char *dsn;
  int64_t batch;
  double ratio;
  bool keep;
  int mode;
  int64_t wait_ms;
  int64_t buf_bytes;
  char *name;
  char *token;
} opts_t;

static const char *const modes[] = {"fast", "safe", "paranoid", NULL};

static bool no_spaces(const svc_cfg_def_t *d, const svc_cfg_val_t *v, char *exp, size_t n) {
  (void)d;
  if (strchr(v->s, ' ') == NULL) return true;
  snprintf(exp, n, "a name without spaces");
  return false;
}

static const svc_cfg_def_t table[] = {
    {.name = "kafka.brokers", .type = SVC_CFG_STRING, .def = "localhost:9092",
     .env = "TCFG_BROKERS", .flags = SVC_CFG_NONEMPTY, .offset = offsetof(opts_t, brokers),
     .help = "Kafka bootstrap servers"},
    {.name = "pg.dsn", .type = SVC_CFG_STRING, .env = "TCFG_DSN",
     .flags = SVC_CFG_REQUIRED | SVC_CFG_SECRET, .offset = offsetof(opts_t, dsn),
     .help = "PostgreSQL connection string"},
    {.name = "batch_size", .type = SVC_CFG_INT, .def = "500", .env = "TCFG_BATCH",
     .flags = SVC_CFG_RELOADABLE, .offset = offsetof(opts_t, batch), .min = 1, .max = 10000,
     .help = "events per batch"},
    {.name = "ratio", .type = SVC_CFG_DOUBLE, .def = "0.5", .offset = offsetof(opts_t, ratio),
     .min = 0, .max = 1, .help = "a fraction"},
    {.name = "keep", .type = SVC_CFG_BOOL, .def = "false", .offset = offsetof(opts_t, keep),
     .help = "keep things"},
    {.name = "mode", .type = SVC_CFG_ENUM, .def = "safe", .env = "TCFG_MODE",
     .offset = offsetof(opts_t, mode), .values = modes, .help = "how careful"},
    {.name = "batch.wait", .type = SVC_CFG_DURATION, .def = "250ms",
     .flags = SVC_CFG_RELOADABLE, .offset = offsetof(opts_t, wait_ms), .min = 1, .max = 60000,
     .help = "longest wait for a batch to fill"},
    {.name = "buffer", .type = SVC_CFG_SIZE, .def = "64KiB", .offset = offsetof(opts_t, buf_bytes),
     .help = "buffer size"},
    {.name = "name", .type = SVC_CFG_STRING, .def = "svc", .offset = offsetof(opts_t, name),
     .check = no_spaces, .help = "instance name"},
    {.name = "token", .type = SVC_CFG_STRING, .def = "", .flags = SVC_CFG_SECRET,
     .offset = offsetof(opts_t, token), .check = no_spaces, .help = "a credential"},
    {0}};

static char errbuf[1024];

static void clear_env(void) {
  unsetenv("TCFG_BROKERS");
  unsetenv("TCFG_DSN");
  unsetenv("TCFG_BATCH");
  unsetenv("TCFG_MODE");
  unsetenv("TCFG_CONFIG");
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fputs(text, f);
  fclose(f);
}

/* Loads argv (NULL-terminated after the program name) into a fresh opts; returns the code. */
static svc_err_t load(svc_cfg_t **cfg, opts_t *o, const char *const *args) {
  memset(o, 0, sizeof *o);
  char err[512];
  ASSERT_OK(svc_cfg_new(cfg, "prog", "A test program.", table, o, "TCFG_CONFIG", err, sizeof err));
  char *argv[32];
  int argc = 0;
  argv[argc++] = "prog";
  for (int i = 0; args != NULL && args[i] != NULL; i++) argv[argc++] = (char *)args[i];
  errbuf[0] = '\0';
  svc_err_t rc = svc_cfg_load(*cfg, argc, argv, errbuf, sizeof errbuf);
  if (rc != SVC_OK) fprintf(stderr, "load: %s\n", errbuf);
  return rc;
}

/* Expects loading to fail with `needle` in the message. */
static void expect_error(const char *const *args, const char *needle) {
  svc_cfg_t *cfg;
  opts_t o;
  svc_err_t rc = load(&cfg, &o, args);
  ASSERT_MSG(rc != SVC_OK, "expected failure containing '%s'", needle);
  ASSERT_STR_CONTAINS(errbuf, needle);
  ASSERT_NULL(o.brokers); /* nothing applied */
  svc_cfg_free(cfg);
}

TEST(defaults_and_types) {
  clear_env();
  svc_cfg_t *cfg;
  opts_t o;
  const char *args[] = {"--pg-dsn=host=x", NULL};
  ASSERT_OK(load(&cfg, &o, args));
  ASSERT_STR_EQ(o.brokers, "localhost:9092");
  ASSERT_STR_EQ(o.dsn, "host=x");
  ASSERT_EQ(o.batch, 500);
  ASSERT_NEAR(o.ratio, 0.5, 1e-12);
  ASSERT_EQ(o.keep, false);
  ASSERT_EQ(o.mode, 1);
  ASSERT_EQ(o.wait_ms, 250);
  ASSERT_EQ(o.buf_bytes, 65536);
  ASSERT_STR_EQ(o.name, "svc");
  svc_cfg_free(cfg);
}

TEST(duration_size_bool_forms) {
  int64_t v;
  bool b;
  ASSERT_OK(svc_parse_duration_ms("5s", &v)); ASSERT_EQ(v, 5000);
  ASSERT_OK(svc_parse_duration_ms("1.5m", &v)); ASSERT_EQ(v, 90000);
  ASSERT_OK(svc_parse_duration_ms("2h", &v)); ASSERT_EQ(v, 7200000);
  ASSERT_OK(svc_parse_duration_ms("0", &v)); ASSERT_EQ(v, 0);
  ASSERT_EQ(svc_parse_duration_ms("5", &v), SVC_EINVAL);    /* unit required */
  ASSERT_EQ(svc_parse_duration_ms("-5s", &v), SVC_EINVAL);
  ASSERT_EQ(svc_parse_duration_ms("0.5ms", &v), SVC_EINVAL);
  ASSERT_EQ(svc_parse_duration_ms("5 parsecs", &v), SVC_EINVAL);
  ASSERT_OK(svc_parse_size("512", &v)); ASSERT_EQ(v, 512);
  ASSERT_OK(svc_parse_size("64KiB", &v)); ASSERT_EQ(v, 65536);
  ASSERT_OK(svc_parse_size("10MB", &v)); ASSERT_EQ(v, 10000000);
  ASSERT_OK(svc_parse_size("1gib", &v)); ASSERT_EQ(v, 1073741824LL);
  ASSERT_EQ(svc_parse_size("1.3", &v), SVC_EINVAL);
  ASSERT_EQ(svc_parse_size("12XB", &v), SVC_EINVAL);
  ASSERT_EQ(svc_parse_size("inf", &v), SVC_EINVAL);
  ASSERT_OK(svc_parse_bool("Yes", &b)); ASSERT_EQ(b, true);
  ASSERT_OK(svc_parse_bool("off", &b)); ASSERT_EQ(b, false);
  ASSERT_EQ(svc_parse_bool("maybe", &b), SVC_EINVAL);
}

TEST(precedence_flag_env_file_default) {
  clear_env();
  char path[256];
  test_unique_name(path, sizeof path, "/tmp/test-common-config");
  write_file(path, "# a comment\n\n kafka.brokers = file:1   # trailing comment\n"
                   "batch_size=42\nmode = paranoid\nname = \"quoted#not-a-comment\"\n"
                   "pg.dsn = from-file\n");
  setenv("TCFG_BATCH", "43", 1);
  setenv("TCFG_MODE", "fast", 1);
  svc_cfg_t *cfg;
  opts_t o;
  const char *args[] = {"--config", path, "--mode=paranoid", "--keep", "--batch.wait", "5s", NULL};
  ASSERT_OK(load(&cfg, &o, args));
  ASSERT_STR_EQ(o.brokers, "file:1");      /* file beats default */
  ASSERT_EQ(o.batch, 43);                  /* env beats file */
  ASSERT_EQ(o.mode, 2);                    /* flag beats env */
  ASSERT_EQ(o.keep, true);                 /* bare bool flag */
  ASSERT_EQ(o.wait_ms, 5000);              /* "--flag value" form, dotted name */
  ASSERT_STR_EQ(o.name, "quoted#not-a-comment");
  ASSERT_STR_EQ(o.dsn, "from-file");

  char *dump = NULL;
  size_t dump_len = 0;
  FILE *m = open_memstream(&dump, &dump_len);
  svc_cfg_dump(cfg, m);
  fclose(m);
  ASSERT_STR_CONTAINS(dump, "batch_size = 43  # env\n");
  ASSERT_STR_CONTAINS(dump, "mode = paranoid  # flag\n");
  ASSERT_STR_CONTAINS(dump, "pg.dsn = (secret)  # file\n");
  ASSERT_STR_CONTAINS(dump, "batch.wait = 5s  # flag\n");
  ASSERT(strstr(dump, "from-file") == NULL);
  free(dump);
  svc_cfg_free(cfg);

  /* The config file can also be named by the environment. */
  setenv("TCFG_CONFIG", path, 1);
  ASSERT_OK(load(&cfg, &o, NULL));
  ASSERT_STR_EQ(o.brokers, "file:1");
  svc_cfg_free(cfg);
  clear_env();
  unlink(path);
}

TEST(help_is_generated_from_the_table) {
  clear_env();
  svc_cfg_t *cfg;
  opts_t o;
  const char *args[] = {"--batch-size=oops", "--help", NULL};
  ASSERT_OK(load(&cfg, &o, args)); /* --help wins over bad values and missing required ones */
  ASSERT(svc_cfg_help_requested(cfg));
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  svc_cfg_print_help(cfg, m);
  fclose(m);
  ASSERT_STR_CONTAINS(text, "Usage: prog [--config FILE]");
  ASSERT_STR_CONTAINS(text, "A test program.");
  ASSERT_STR_CONTAINS(text, "  --kafka-brokers <string>\n      Kafka bootstrap servers\n");
  ASSERT_STR_CONTAINS(text, "env TCFG_BROKERS; default \"localhost:9092\"; fixed at start.");
  ASSERT_STR_CONTAINS(text, "--batch-size <int>");
  ASSERT_STR_CONTAINS(text, "an integer between 1 and 10000");
  ASSERT_STR_CONTAINS(text, "one of: fast, safe, paranoid");
  ASSERT_STR_CONTAINS(text, "--pg-dsn <string>");
  ASSERT_STR_CONTAINS(text, "; required;");
  ASSERT_STR_CONTAINS(text, "between 1ms and 1m. File key batch.wait; default \"250ms\"; reloadable.");
  free(text);
  svc_cfg_free(cfg);
}

/* svc_cfg_main: go on with the loaded settings, 0 after --help, 2 after an error. */
TEST(main_start_goes_on_helps_or_fails) {
  clear_env();
  opts_t o;
  memset(&o, 0, sizeof o);
  svc_cfg_t *cfg = (svc_cfg_t *)&o; /* must be reset on every return */
  char *ok[] = {"prog", "--pg-dsn=host=x", "--batch-size=7", NULL};
  ASSERT_EQ(svc_cfg_main(&cfg, "prog", "A test program.", table, &o, "TCFG_CONFIG", 3, ok), -1);
  ASSERT_NOT_NULL(cfg);
  ASSERT_EQ(o.batch, 7);
  ASSERT_STR_EQ(o.dsn, "host=x");
  svc_cfg_free(cfg);
  char *help[] = {"prog", "--help", NULL};
  ASSERT_EQ(svc_cfg_main(&cfg, "prog", "A test program.", table, &o, "TCFG_CONFIG", 2, help), 0);
  ASSERT_NULL(cfg);
  char *bad[] = {"prog", "--pg-dsn=host=x", "--batch-size=oops", NULL};
  ASSERT_EQ(svc_cfg_main(&cfg, "prog", "A test program.", table, &o, "TCFG_CONFIG", 3, bad), 2);
  ASSERT_NULL(cfg);
  char *missing[] = {"prog", NULL}; /* pg.dsn is required */
  ASSERT_EQ(svc_cfg_main(&cfg, "prog", "A test program.", table, &o, "TCFG_CONFIG", 1, missing),
            2);
  ASSERT_NULL(cfg);
}

TEST(every_error_names_source_setting_value_and_expectation) {
  clear_env();
  {
    /* A secret's bad value is never echoed; the setting and what it expects still are. */
    const char *a[] = {"--pg-dsn=x", "--token=hunter2 and more", NULL};
    expect_error(a, "flag --token: setting 'token': bad value (secret, not shown): expected a "
                    "name without spaces");
    ASSERT_MSG(strstr(errbuf, "hunter2") == NULL, "secret echoed: %s", errbuf);
  }
  {
    const char *a[] = {"--pg-dsn=x", "--batch-size=12x", NULL};
    expect_error(a, "flag --batch-size: setting 'batch_size': bad value \"12x\": expected an integer between 1 and 10000");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--batch-size=0", NULL};
    expect_error(a, "bad value \"0\": expected an integer between 1 and 10000");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--ratio=1.5", NULL};
    expect_error(a, "flag --ratio: setting 'ratio': bad value \"1.5\": expected a number between 0 and 1");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--keep=perhaps", NULL};
    expect_error(a, "setting 'keep': bad value \"perhaps\": expected true or false");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--mode=reckless", NULL};
    expect_error(a, "setting 'mode': bad value \"reckless\": expected one of: fast, safe, paranoid");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--batch-wait=2m", NULL};
    expect_error(a, "flag --batch-wait: setting 'batch.wait': bad value \"2m\": expected a duration such as 250ms, 5s, 1.5m or 2h between 1ms and 1m");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--buffer=lots", NULL};
    expect_error(a, "setting 'buffer': bad value \"lots\": expected a size such as 512, 64KiB");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--name=two words", NULL};
    expect_error(a, "flag --name: setting 'name': bad value \"two words\": expected a name without spaces");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--kafka-brokers=", NULL};
    expect_error(a, "setting 'kafka.brokers': bad value \"\": expected a non-empty string");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--batch-szie=5", NULL};
    expect_error(a, "unknown flag --batch-szie (did you mean --batch-size?)");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--zzzzzzzz", NULL};
    expect_error(a, "unknown flag --zzzzzzzz (see --help)");
  }
  {
    const char *a[] = {"--pg-dsn=x", "stray", NULL};
    expect_error(a, "unexpected argument \"stray\"");
  }
  {
    const char *a[] = {"--pg-dsn=x", "--batch-size", NULL};
    expect_error(a, "flag --batch-size needs a value");
  }
  {
    const char *a[] = {"--batch-size", "--pg-dsn=x", NULL};
    expect_error(a, "flag --batch-size needs a value");
  }
  {
    expect_error(NULL, "setting 'pg.dsn' is required but not set: give --pg-dsn, environment variable TCFG_DSN, or 'pg.dsn = ...' in the config file");
  }
  setenv("TCFG_BATCH", "many", 1);
  {
    const char *a[] = {"--pg-dsn=x", NULL};
    expect_error(a, "environment variable TCFG_BATCH: setting 'batch_size': bad value \"many\": expected an integer");
  }
  clear_env();
  char path[256];
  test_unique_name(path, sizeof path, "/tmp/test-common-config");
  char arg[300];
  snprintf(arg, sizeof arg, "--config=%s", path);
  const char *a[] = {arg, "--pg-dsn=x", NULL};
  char want[600];

  write_file(path, "kafka.brokers = a\n\nbatch_size = -3\n");
  snprintf(want, sizeof want, "config file %s:3: setting 'batch_size': bad value \"-3\": expected an integer between 1 and 10000", path);
  expect_error(a, want);

  write_file(path, "# header\nkafka.broker = a\n");
  snprintf(want, sizeof want, "config file %s:2: unknown setting 'kafka.broker' (did you mean 'kafka.brokers'?)", path);
  expect_error(a, want);

  write_file(path, "just some words\n");
  snprintf(want, sizeof want, "config file %s:1: expected 'name = value', got \"just some words\"", path);
  expect_error(a, want);

  write_file(path, "mode = fast\nmode = safe\n");
  snprintf(want, sizeof want, "config file %s:2: setting 'mode' is already set on line 1", path);
  expect_error(a, want);

  write_file(path, "name = \"open\n");
  snprintf(want, sizeof want, "config file %s:1: setting 'name': unterminated quoted value", path);
  expect_error(a, want);

  unlink(path);
  snprintf(want, sizeof want, "config file %s: cannot open: No such file or directory", path);
  expect_error(a, want);
}

TEST(bad_table_is_rejected) {
  static const svc_cfg_def_t bad[] = {
      {.name = "n", .type = SVC_CFG_INT, .def = "ten", .offset = 0},
      {0}};
  static const svc_cfg_def_t noenum[] = {
      {.name = "e", .type = SVC_CFG_ENUM, .def = "a", .offset = 0},
      {0}};
  int64_t x;
  svc_cfg_t *cfg = (svc_cfg_t *)&x;
  char err[256];
  ASSERT_EQ(svc_cfg_new(&cfg, "p", NULL, bad, &x, NULL, err, sizeof err), SVC_ECONFIG);
  ASSERT_NULL(cfg);
  ASSERT_STR_CONTAINS(err, "default of the configuration table: setting 'n': bad value \"ten\"");
  ASSERT_EQ(svc_cfg_new(&cfg, "p", NULL, noenum, &x, NULL, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "enum setting 'e' has no values");
}

TEST(reload_applies_only_reloadable_and_is_atomic) {
  clear_env();
  char path[256];
  test_unique_name(path, sizeof path, "/tmp/test-common-config");
  write_file(path, "batch_size = 10\nmode = fast\n");
  char arg[300];
  snprintf(arg, sizeof arg, "--config=%s", path);
  const char *a[] = {arg, "--pg-dsn=x", NULL};
  svc_cfg_t *cfg;
  opts_t o;
  ASSERT_OK(load(&cfg, &o, a));
  ASSERT_EQ(o.batch, 10);
  int changed = -1;
  char err[512];

  const char *name_before = o.name, *dsn_before = o.dsn;
  write_file(path, "batch_size = 20\nmode = fast\nbatch.wait = 1s\n");
  ASSERT_OK(svc_cfg_reload(cfg, &changed, err, sizeof err));
  /* Unchanged strings keep their storage: pointers taken before the reload stay valid. */
  ASSERT(o.name == name_before);
  ASSERT(o.dsn == dsn_before);
  ASSERT_EQ(changed, 2);
  ASSERT_EQ(o.batch, 20);
  ASSERT_EQ(o.wait_ms, 1000);
  ASSERT_STR_EQ(o.dsn, "x"); /* flags survive a reload */

  /* An immutable change fails the whole reload: the reloadable change is not applied either. */
  write_file(path, "batch_size = 30\nmode = safe\n");
  ASSERT_EQ(svc_cfg_reload(cfg, &changed, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "setting 'mode' cannot change while running (now from file)");
  ASSERT_EQ(o.batch, 20);
  ASSERT_EQ(o.mode, 0);

  write_file(path, "batch_size = lots\n");
  ASSERT_EQ(svc_cfg_reload(cfg, &changed, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, ":1: setting 'batch_size': bad value \"lots\"");
  ASSERT_EQ(o.batch, 20);
  svc_cfg_free(cfg);
  unlink(path);
}
