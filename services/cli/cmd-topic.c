/*
 * `sluice topic create`: creates a Kafka topic with a chosen partition count, so that the
 * consumers of a pipeline can be started before its producers (a consumer that subscribes to a
 * topic that does not exist yet only finds it at its next metadata refresh).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "svc/kafka.h"

/* "sluice topic create: <message>" and the usage text: cli_usage_error (cli.h). */
#define topic_usage_error(...) cli_usage_error("topic create", __VA_ARGS__)

static int parse_count(const char *s, int max, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < 1 || v > max) return -1;
  *out = (int)v;
  return 0;
}

/* Returns 1 when the broker lists `topic`, 0 when it does not, -1 (errstr) when it cannot tell. */
static int topic_exists(const char *brokers, const char *topic, char *errstr, size_t size) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, size) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, size);
  if (rk == NULL) return -1; /* rd_kafka_new destroyed conf */
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
  int found = -1;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    snprintf(errstr, size, "metadata request to %s failed: %s", brokers, rd_kafka_err2str(err));
  } else {
    found = 0;
    for (int i = 0; i < md->topic_cnt; i++)
      if (strcmp(md->topics[i].topic, topic) == 0 && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        found = 1;
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_destroy(rk);
  return found;
}

int cli_cmd_topic_create(int argc, char **argv) {
  static const struct option opts[] = {{"brokers", required_argument, NULL, 'b'},
                                       {"topic", required_argument, NULL, 't'},
                                       {"partitions", required_argument, NULL, 'p'},
                                       {"replication", required_argument, NULL, 'r'},
                                       {"if-missing", no_argument, NULL, 'm'},
                                       {NULL, 0, NULL, 0}};
  const char *brokers = NULL, *topic = NULL;
  int partitions = 4, replication = 1, if_missing = 0, c;
  char err[512];
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case 'b': brokers = optarg; break;
    case 't': topic = optarg; break;
    case 'p':
      if (parse_count(optarg, 100000, &partitions) != 0)
        return topic_usage_error("--partitions wants an integer from 1 to 100000, not '%s'", optarg);
      break;
    case 'r':
      if (parse_count(optarg, 32, &replication) != 0)
        return topic_usage_error("--replication wants an integer from 1 to 32, not '%s'", optarg);
      break;
    case 'm': if_missing = 1; break;
    default:
      return topic_usage_error(c == ':' ? "missing value for option '%s'" : "unknown option '%s'",
                               argv[optind - 1]);
    }
  }
  if (optind < argc) return topic_usage_error("unexpected argument '%s'", argv[optind]);
  if (brokers == NULL || topic == NULL) return topic_usage_error("--brokers and --topic are required");

  if (if_missing) {
    int found = topic_exists(brokers, topic, err, sizeof err);
    if (found < 0) {
      fprintf(stderr, "sluice topic create: %s\n", err);
      return CLI_EXIT_FAIL;
    }
    if (found) {
      printf("topic %s exists already\n", topic);
      return CLI_EXIT_OK;
    }
  }
  svc_err_t e = kq_topic_create(brokers, topic, partitions, replication, 15000, err, sizeof err);
  if (e != SVC_OK) {
    fprintf(stderr, "sluice topic create: cannot create %s on %s: %s (%s)\n", topic, brokers,
            err[0] ? err : svc_strerror(e), svc_err_name(e));
    return CLI_EXIT_FAIL;
  }
  printf("topic %s created with %d partitions, replication %d\n", topic, partitions, replication);
  return CLI_EXIT_OK;
}
