/*
 * sluice-smoke: runs the smoke pipeline (smoke.h) once against the configured Kafka broker and
 * PostgreSQL server and prints what happened. Exit status 0 when exactly the produced event ids
 * were stored once each, 1 when the run failed or the check did not pass, 2 on bad
 * configuration.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "smoke.h"
#include "svc/config.h"
#include "svc/log.h"

typedef struct {
  char *brokers;
  char *dsn;
  int64_t events;
  int64_t batch_size;
  int64_t batch_wait_ms;
  int64_t partitions;
  int64_t timeout_ms;
  char *run_id;
  bool keep_tables;
  int log_level;
  int log_format;
} smoke_cfg_t;

static bool run_id_ok(const svc_cfg_def_t *d, const svc_cfg_val_t *v, char *exp, size_t n) {
  (void)d;
  size_t len = 0;
  for (const char *p = v->s; *p; p++, len++) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
      snprintf(exp, n, "up to 40 characters of [a-z0-9_] (or empty to generate one)");
      return false;
    }
  }
  if (len > 40) {
    snprintf(exp, n, "up to 40 characters of [a-z0-9_] (or empty to generate one)");
    return false;
  }
  return true;
}

static const svc_cfg_def_t smoke_table[] = {
    {.name = "kafka.brokers", .type = SVC_CFG_STRING, .def = "127.0.0.1:9092",
     .env = "SLUICE_KAFKA_BROKERS", .flags = SVC_CFG_NONEMPTY,
     .offset = offsetof(smoke_cfg_t, brokers), .help = "Kafka bootstrap servers (host:port,...)"},
    {.name = "pg.dsn", .type = SVC_CFG_STRING, .env = "SLUICE_PG_DSN",
     .flags = SVC_CFG_REQUIRED | SVC_CFG_SECRET | SVC_CFG_NONEMPTY,
     .offset = offsetof(smoke_cfg_t, dsn), .help = "PostgreSQL connection string"},
    {.name = "events", .type = SVC_CFG_INT, .def = "10000", .offset = offsetof(smoke_cfg_t, events),
     .min = 1, .max = 100000000, .help = "number of events to produce"},
    {.name = "batch.size", .type = SVC_CFG_INT, .def = "500",
     .offset = offsetof(smoke_cfg_t, batch_size), .min = 1, .max = 100000,
     .help = "events per PostgreSQL transaction"},
    {.name = "batch.wait", .type = SVC_CFG_DURATION, .def = "100ms",
     .offset = offsetof(smoke_cfg_t, batch_wait_ms), .min = 1, .max = 60000,
     .help = "longest wait before a partial batch is written"},
    {.name = "partitions", .type = SVC_CFG_INT, .def = "4",
     .offset = offsetof(smoke_cfg_t, partitions), .min = 1, .max = 1024,
     .help = "partitions of the fresh topic"},
    {.name = "timeout", .type = SVC_CFG_DURATION, .def = "120s",
     .offset = offsetof(smoke_cfg_t, timeout_ms), .min = 1000, .max = 86400000,
     .help = "give up after this long"},
    {.name = "run.id", .type = SVC_CFG_STRING, .def = "", .offset = offsetof(smoke_cfg_t, run_id),
     .check = run_id_ok, .help = "names the topic, group, tables and event ids (empty: generated)"},
    {.name = "keep.tables", .type = SVC_CFG_BOOL, .def = "false",
     .offset = offsetof(smoke_cfg_t, keep_tables), .help = "keep the run's tables for inspection"},
    {.name = "log.level", .type = SVC_CFG_ENUM, .def = "warn", .env = "SLUICE_LOG_LEVEL",
     .offset = offsetof(smoke_cfg_t, log_level), .values = svc_log_level_names, .help = "log threshold"},
    {.name = "log.format", .type = SVC_CFG_ENUM, .def = "logfmt", .env = "SLUICE_LOG_FORMAT",
     .offset = offsetof(smoke_cfg_t, log_format), .values = svc_log_format_names, .help = "log line format"},
    {0}};

int main(int argc, char **argv) {
  smoke_cfg_t c = {0};
  svc_cfg_t *cfg = NULL;
  char err[1024];
  int status = svc_cfg_main(&cfg, "sluice-smoke",
                            "Produce N events to a fresh Kafka topic, consume them in a group on "
                            "a libuv loop, store them in PostgreSQL in batches with their "
                            "offsets, and check that exactly those N event ids were stored once "
                            "each.",
                            smoke_table, &c, "SLUICE_SMOKE_CONFIG", argc, argv);
  if (status >= 0) return status;
  svc_log_set_level((svc_log_level_t)c.log_level);
  svc_log_set_format((svc_log_format_t)c.log_format);

  smoke_opts_t o = {.brokers = c.brokers, .dsn = c.dsn, .events = c.events,
                    .batch_size = c.batch_size, .batch_wait_ms = c.batch_wait_ms,
                    .partitions = c.partitions, .timeout_ms = c.timeout_ms,
                    .run_id = c.run_id, .keep_tables = c.keep_tables};
  smoke_report_t rep;
  svc_err_t rc = smoke_run(&o, &rep, err, sizeof err);
  smoke_report_print(&rep, stdout);
  if (rc != SVC_OK) fprintf(stderr, "sluice-smoke: %s (%s)\n", err, svc_err_name(rc));
  svc_cfg_free(cfg);
  return rc == SVC_OK && rep.ok ? 0 : 1;
}
