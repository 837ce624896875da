/*
 * sluice-worker's settings as a user meets them: a bad value is refused before anything
 * starts (exit status 2) with the setting, the source and what was expected, and a secret
 * value (the PostgreSQL dsn, Kafka properties that may carry credentials) is never echoed.
 * Runs the built binary; needs no server (settings are checked first).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "test-run.h"

/* Runs sluice-worker with `args` (one shell-quoted string); its stderr into out, its status. */
static int run_worker(const char *args, char *out, size_t size) {
  const char *bdir = getenv("SLUICE_BINARY_DIR");
  ASSERT_NOT_NULL(bdir);
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "env -u SLUICE_PG_LANES -u SLUICE_KAFKA_CONSUMER_PROPERTIES "
           "-u SLUICE_KAFKA_PRODUCER_PROPERTIES '%s/bin/sluice-worker' --pg-dsn "
           "'host=127.0.0.1 port=1 password=hunter2' --model-path models/fraud.safetensors %s "
           "2>&1 >/dev/null",
           bdir, args);
  return test_run(cmd, out, size);
}

TEST(kafka_properties_are_checked_and_never_echoed) {
  char out[4096];
  ASSERT_EQ(run_worker("--kafka-consumer-properties 'fetch.wait.max.ms=10;enable.auto.commit=true'",
                       out, sizeof out), 2);
  ASSERT_STR_CONTAINS(out, "setting 'kafka.consumer_properties'");
  ASSERT_STR_CONTAINS(out, "other than enable.auto.commit, which the worker sets itself");
  ASSERT_STR_CONTAINS(out, "(secret, not shown)");

  ASSERT_EQ(run_worker("--kafka-producer-properties 'sasl.password=hunter2;linger.ms'", out,
                       sizeof out), 2);
  ASSERT_STR_CONTAINS(out, "setting 'kafka.producer_properties'");
  ASSERT_STR_CONTAINS(out, "item \"linger.ms\" has no key=value");
  ASSERT_MSG(strstr(out, "hunter2") == NULL, "a secret was echoed: %s", out);

  ASSERT_EQ(run_worker("--kafka-producer-properties '=hunter2'", out, sizeof out), 2);
  ASSERT_STR_CONTAINS(out, "an item has an empty key");
  ASSERT_MSG(strstr(out, "hunter2") == NULL, "a secret was echoed: %s", out);

  ASSERT_EQ(run_worker("--kafka-consumer-properties 'isolation.level=read_uncommitted'", out,
                       sizeof out), 2);
  ASSERT_STR_CONTAINS(out, "other than isolation.level");
}

TEST(pg_lanes_and_schema) {
  char out[4096];
  ASSERT_EQ(run_worker("--pg-lanes 3", out, sizeof out), 2);
  ASSERT_STR_CONTAINS(out, "flag --pg-lanes: setting 'pg.lanes': bad value \"3\"");
  ASSERT_STR_CONTAINS(out, "between 1 and 2");
  ASSERT_EQ(run_worker("--pg-schema 'Bad Schema'", out, sizeof out), 2);
  ASSERT_STR_CONTAINS(out, "setting 'pg.schema'");
  ASSERT_MSG(strstr(out, "hunter2") == NULL, "the dsn was echoed: %s", out);
}
