/*
 * `sluice topic create` against the real broker: the topic appears with the asked partition
 * count, a second create is refused with the broker's reason, --if-missing makes it a no-op,
 * and bad arguments are usage errors (exit 2).
 */
#include "test.h"
#include "test-run.h"


#include <librdkafka/rdkafka.h>

static int run_sluice(const char *args, char *out, size_t out_size) {
  const char *bin = getenv("SLUICE_BINARY_DIR");
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s/bin/sluice' topic create %s 2>&1", bin ? bin : "build", args);
  return test_run(cmd, out, out_size);
}

static int partition_count(const char *brokers, const char *topic) {
  char err[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err), RD_KAFKA_CONF_OK);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NOT_NULL(rk);
  const struct rd_kafka_metadata *md = NULL;
  ASSERT_EQ(rd_kafka_metadata(rk, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  int n = -1;
  for (int i = 0; i < md->topic_cnt; i++)
    if (strcmp(md->topics[i].topic, topic) == 0) n = md->topics[i].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_destroy(rk);
  return n;
}

TEST(create_then_refuse_then_if_missing) {
  const char *brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  char topic[128], args[512], out[4096];
  test_unique_name(topic, sizeof topic, "test-topic");
  ASSERT_EQ(partition_count(brokers, topic), -1);

  snprintf(args, sizeof args, "--brokers %s --topic %s --partitions 6", brokers, topic);
  ASSERT_EQ(run_sluice(args, out, sizeof out), 0);
  ASSERT_STR_CONTAINS(out, "created with 6 partitions");
  ASSERT_EQ(partition_count(brokers, topic), 6);

  ASSERT_EQ(run_sluice(args, out, sizeof out), 1);
  ASSERT_STR_CONTAINS(out, "cannot create");
  ASSERT_STR_CONTAINS(out, topic);

  snprintf(args, sizeof args, "--brokers %s --topic %s --partitions 2 --if-missing", brokers, topic);
  ASSERT_EQ(run_sluice(args, out, sizeof out), 0);
  ASSERT_STR_CONTAINS(out, "exists already");
  ASSERT_EQ(partition_count(brokers, topic), 6);
}

TEST(usage_errors) {
  char out[4096];
  ASSERT_EQ(run_sluice("--topic x", out, sizeof out), 2);
  ASSERT_STR_CONTAINS(out, "--brokers and --topic are required");
  ASSERT_EQ(run_sluice("--brokers b --topic x --partitions 0", out, sizeof out), 2);
  ASSERT_STR_CONTAINS(out, "--partitions wants an integer from 1 to 100000, not '0'");
}
