/*
 * sluice-worker: the scoring worker of one pipeline (fraud, fault or records; the `pipeline`
 * setting). Reads its configuration from one table (flags > environment > config file >
 * defaults; --help prints it): the core's settings, then each pipeline's own rows (only the
 * selected pipeline's are used). Topics and group default per pipeline (sluice.<domain>.events,
 * .dlq, .alerts; group sluice-<domain>); the fraud.* topic names of the fraud-only worker still
 * work for fraud. Sets up logging and runs the worker (worker.h) until SIGTERM. Exit status 0
 * after a graceful stop, 1 after a fatal error, 2 on bad configuration.
 */
#include <cblas.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline-fault.h"
#include "pipeline-fraud.h"
#include "pipeline-records.h"
#include "svc/config.h"
#include "svc/log.h"
#include "worker.h"

/* The `pipeline` setting's words, in wk_pipelines order. */
static const char *const wk_pipeline_names[] = {"fraud", "fault", "records", NULL};
static const wk_pipeline_ops_t *const wk_pipelines[] = {&wk_pipeline_fraud, &wk_pipeline_fault,
                                                        &wk_pipeline_records};

typedef struct wk_cfg_s {
  int pipeline;
  char *brokers;
  char *group;
  char *instance_id;
  char *consumer_props, *producer_props;
  char *topic;
  char *dlq_topic;
  char *alerts_topic;
  char *fraud_topic;
  char *fraud_dlq_topic;
  char *fraud_alerts_topic;
  char *pg_dsn;
  char *pg_schema;
  char *http_address;
  int64_t http_port;
  char *model_path;
  int64_t batch_max;
  int64_t pg_lanes;
  int64_t batch_wait_ms;
  int64_t max_event_bytes;
  int64_t max_queued_events;
  wk_fraud_settings_t fraud;
  wk_fault_settings_t fault;
  wk_records_settings_t records;
  int64_t model_watch_ms;
  int64_t kafka_error_grace_ms;
  int log_level;
  int log_format;
} wk_cfg_t;

static bool schema_ok(const svc_cfg_def_t *d, const svc_cfg_val_t *v, char *exp, size_t n) {
  size_t len = 0;
  for (const char *p = v->s; *p; p++, len++) {
    bool ok = (*p >= 'a' && *p <= 'z') || *p == '_' || (len > 0 && *p >= '0' && *p <= '9');
    if (!ok) break;
    if (p[1] == '\0' && len < 63) return true;
  }
  snprintf(exp, n, "a lower-case identifier [a-z_][a-z0-9_]* of at most 63 characters");
  return false;
}

/* librdkafka properties the worker's guarantees rest on: not to be overridden by a setting. */
static const char *const wk_kafka_fixed_props[] = {
    "bootstrap.servers", "group.id", "group.instance.id", "enable.auto.commit",
    "enable.auto.offset.store", "isolation.level", "partition.assignment.strategy",
    "enable.partition.eof", "enable.idempotence", NULL};

/*
 * "key=value;key=value" (or empty; empty items are skipped): every item a key and a value,
 * and no key the worker sets itself. With `out`, the {key, value, ..., NULL} array librdkafka
 * options take (one allocation: the pointers, then the copied text; NULL when there are no
 * items). false with `why` when the text is not that. The settings check and the worker use
 * this one reading.
 */
static bool kafka_props_split(const char *s, char ***out, char *why, size_t n) {
  size_t len = strlen(s), items = 1;
  for (const char *p = s; *p; p++) items += *p == ';';
  char **arr = malloc((2 * items + 1) * sizeof *arr + len + 1);
  if (arr == NULL) abort();
  char *text = (char *)(arr + 2 * items + 1), *save = NULL;
  memcpy(text, s, len + 1);
  size_t k = 0;
  for (char *item = strtok_r(text, ";", &save); item != NULL; item = strtok_r(NULL, ";", &save)) {
    char *eq = strchr(item, '=');
    if (eq == NULL || eq == item) { /* an item without '=' is a key alone: no secret in it */
      if (eq == NULL)
        snprintf(why, n, "key=value items separated by ';' (item \"%.60s\" has no key=value)",
                 item);
      else
        snprintf(why, n, "key=value items separated by ';' (an item has an empty key)");
      free(arr);
      return false;
    }
    *eq = '\0';
    for (const char *const *f = wk_kafka_fixed_props; *f; f++)
      if (strcmp(item, *f) == 0) {
        snprintf(why, n, "librdkafka properties other than %s, which the worker sets itself "
                 "(use kafka.brokers, kafka.group or kafka.instance_id where one applies)", *f);
        free(arr);
        return false;
      }
    arr[k++] = item;
    arr[k++] = eq + 1;
  }
  arr[k] = NULL;
  if (out != NULL && k > 0) *out = arr;
  else free(arr);
  return true;
}

static bool kafka_props_ok(const svc_cfg_def_t *d, const svc_cfg_val_t *v, char *exp, size_t n) {
  (void)d;
  return kafka_props_split(v->s, NULL, exp, n);
}

static const svc_cfg_def_t wk_cfg_table[] = {
    {.name = "pipeline", .type = SVC_CFG_ENUM, .def = "fraud", .env = "SLUICE_PIPELINE",
     .offset = offsetof(wk_cfg_t, pipeline), .values = wk_pipeline_names,
     .help = "what this worker scores: fraud (card transactions), fault (sensor readings) or "
             "records (clinical notes)"},
    {.name = "kafka.brokers", .type = SVC_CFG_STRING, .def = "127.0.0.1:9092",
     .env = "SLUICE_KAFKA_BROKERS", .flags = SVC_CFG_NONEMPTY,
     .offset = offsetof(wk_cfg_t, brokers), .help = "Kafka bootstrap servers (host:port,...)"},
    {.name = "kafka.group", .type = SVC_CFG_STRING, .def = "", .env = "SLUICE_KAFKA_GROUP",
     .offset = offsetof(wk_cfg_t, group),
     .help = "consumer group; also the key of the offsets stored in PostgreSQL (empty: "
             "sluice-<pipeline>)"},
    {.name = "kafka.instance_id", .type = SVC_CFG_STRING, .def = "",
     .env = "SLUICE_KAFKA_INSTANCE_ID", .offset = offsetof(wk_cfg_t, instance_id),
     .help = "static group membership id (e.g. the pod name); empty for dynamic membership"},
    {.name = "kafka.consumer_properties", .type = SVC_CFG_STRING, .def = "",
     .env = "SLUICE_KAFKA_CONSUMER_PROPERTIES", .flags = SVC_CFG_SECRET,
     .offset = offsetof(wk_cfg_t, consumer_props), .check = kafka_props_ok,
     .help = "extra librdkafka consumer properties, key=value;key=value (security, fetch "
             "tuning, ...); the ones exactly-once rests on are refused"},
    {.name = "kafka.producer_properties", .type = SVC_CFG_STRING, .def = "",
     .env = "SLUICE_KAFKA_PRODUCER_PROPERTIES", .flags = SVC_CFG_SECRET,
     .offset = offsetof(wk_cfg_t, producer_props), .check = kafka_props_ok,
     .help = "extra librdkafka properties of the producer (dead letters, alerts), "
             "key=value;key=value"},
    {.name = "topic", .type = SVC_CFG_STRING, .def = "", .env = "SLUICE_TOPIC",
     .offset = offsetof(wk_cfg_t, topic),
     .help = "input topic of protobuf Envelope events (empty: sluice.<pipeline>.events)"},
    {.name = "dlq_topic", .type = SVC_CFG_STRING, .def = "", .env = "SLUICE_DLQ_TOPIC",
     .offset = offsetof(wk_cfg_t, dlq_topic),
     .help = "dead-letter topic for events that cannot be decoded or validated (empty: "
             "sluice.<pipeline>.dlq)"},
    {.name = "alerts_topic", .type = SVC_CFG_STRING, .def = "", .env = "SLUICE_ALERTS_TOPIC",
     .offset = offsetof(wk_cfg_t, alerts_topic),
     .help = "topic the outbox relay publishes alerts to, recorded with each outbox row "
             "(empty: sluice.<pipeline>.alerts)"},
    {.name = "fraud.topic", .type = SVC_CFG_STRING, .def = "", .env = "SLUICE_FRAUD_TOPIC",
     .offset = offsetof(wk_cfg_t, fraud_topic),
     .help = "pipeline fraud: the input topic when `topic` is empty (the fraud-only worker's "
             "name; empty: sluice.fraud.events)"},
    {.name = "fraud.dlq_topic", .type = SVC_CFG_STRING, .def = "",
     .env = "SLUICE_FRAUD_DLQ_TOPIC", .offset = offsetof(wk_cfg_t, fraud_dlq_topic),
     .help = "pipeline fraud: the dead-letter topic when `dlq_topic` is empty (empty: "
             "sluice.fraud.dlq)"},
    {.name = "fraud.alerts_topic", .type = SVC_CFG_STRING, .def = "",
     .env = "SLUICE_FRAUD_ALERTS_TOPIC", .offset = offsetof(wk_cfg_t, fraud_alerts_topic),
     .help = "pipeline fraud: the alerts topic when `alerts_topic` is empty (empty: "
             "sluice.fraud.alerts)"},
    {.name = "pg.dsn", .type = SVC_CFG_STRING, .env = "SLUICE_PG_DSN",
     .flags = SVC_CFG_REQUIRED | SVC_CFG_SECRET | SVC_CFG_NONEMPTY,
     .offset = offsetof(wk_cfg_t, pg_dsn), .help = "PostgreSQL connection string"},
    {.name = "pg.schema", .type = SVC_CFG_STRING, .def = "sluice", .env = "SLUICE_PG_SCHEMA",
     .offset = offsetof(wk_cfg_t, pg_schema), .check = schema_ok,
     .help = "PostgreSQL schema holding the worker's tables (created and migrated at start)"},
    {.name = "pg.lanes", .type = SVC_CFG_INT, .def = "1", .env = "SLUICE_PG_LANES",
     .offset = offsetof(wk_cfg_t, pg_lanes), .min = 1, .max = 2,
     .help = "PostgreSQL sessions writing batches: 1, one transaction per batch; 2, each batch's "
             "results and alerts commit on a second session beside the previous batch's state "
             "and offsets, which commit after them (more throughput; see the README)"},
    {.name = "http.address", .type = SVC_CFG_STRING, .def = "0.0.0.0",
     .env = "SLUICE_HTTP_ADDRESS", .flags = SVC_CFG_NONEMPTY,
     .offset = offsetof(wk_cfg_t, http_address),
     .help = "address of the /metrics, /healthz, /readyz, /info endpoint"},
    {.name = "http.port", .type = SVC_CFG_INT, .def = "9464", .env = "SLUICE_HTTP_PORT",
     .offset = offsetof(wk_cfg_t, http_port), .min = 0, .max = 65535,
     .help = "port of the HTTP endpoint (0: any free port, logged at start)"},
    {.name = "model.path", .type = SVC_CFG_STRING, .env = "SLUICE_MODEL",
     .flags = SVC_CFG_REQUIRED | SVC_CFG_NONEMPTY, .offset = offsetof(wk_cfg_t, model_path),
     .help = "libmoe model file that fits the pipeline (fraud: binary tabular model over fraud "
             "features; fault: fault-ai4i or fault-cmapss; records: a text classifier); "
             "SLUICE_FRAUD_MODEL is read when SLUICE_MODEL is unset"},
    {.name = "model.watch_interval", .type = SVC_CFG_DURATION, .def = "2s",
     .env = "SLUICE_MODEL_WATCH_INTERVAL", .flags = SVC_CFG_RELOADABLE,
     .offset = offsetof(wk_cfg_t, model_watch_ms),
     .min = 0, .max = 3600000,
     .help = "how often the model file is checked for a change, which reloads it (0: only "
             "SIGHUP reloads)"},
    {.name = "kafka.error_grace", .type = SVC_CFG_DURATION, .def = "30s",
     .env = "SLUICE_KAFKA_ERROR_GRACE", .offset = offsetof(wk_cfg_t, kafka_error_grace_ms),
     .min = 0, .max = 3600000,
     .help = "consumer errors without any message for this long make /readyz report kafka"},
    {.name = "batch.max", .type = SVC_CFG_INT, .def = "1024", .env = "SLUICE_BATCH_MAX",
     .offset = offsetof(wk_cfg_t, batch_max), .min = 1, .max = 65536,
     .help = "events per batch (one inference call and one PostgreSQL statement)"},
    {.name = "batch.wait", .type = SVC_CFG_DURATION, .def = "20ms", .env = "SLUICE_BATCH_WAIT",
     .offset = offsetof(wk_cfg_t, batch_wait_ms), .min = 0, .max = 60000,
     .help = "longest wait before a partial batch is scored"},
    {.name = "event.max_bytes", .type = SVC_CFG_SIZE, .def = "64KiB",
     .env = "SLUICE_EVENT_MAX_BYTES", .offset = offsetof(wk_cfg_t, max_event_bytes), .min = 64,
     .max = 16777216, .help = "larger records are dead-lettered as oversize"},
    /* 60000: a resumed fetch takes a few hundred milliseconds to deliver again, and the half
     * left at resume must keep PostgreSQL busy meanwhile (at 20000, ten 1024-event statements,
     * a drain ran at half speed: bench/pipeline/README.md). About 1.4 KB per held event. */
    {.name = "backpressure.max_events", .type = SVC_CFG_INT, .def = "60000",
     .env = "SLUICE_BACKPRESSURE_MAX_EVENTS", .offset = offsetof(wk_cfg_t, max_queued_events),
     .min = 1, .max = 10000000,
     .help = "fetching pauses while this many consumed events wait for scoring or PostgreSQL "
             "(resumes at half)"},
    WK_FRAUD_CFG_ROWS(wk_cfg_t, fraud)
    WK_FAULT_CFG_ROWS(wk_cfg_t, fault)
    WK_RECORDS_CFG_ROWS(wk_cfg_t, records)
    {.name = "log.level", .type = SVC_CFG_ENUM, .def = "info", .env = "SLUICE_LOG_LEVEL",
     .offset = offsetof(wk_cfg_t, log_level), .values = svc_log_level_names,
     .help = "log threshold"},
    {.name = "log.format", .type = SVC_CFG_ENUM, .def = "logfmt", .env = "SLUICE_LOG_FORMAT",
     .offset = offsetof(wk_cfg_t, log_format), .values = svc_log_format_names,
     .help = "log line format"},
    {0}};

typedef struct wk_reload_ctx_s {
  svc_cfg_t *cfg;
  wk_cfg_t *c;
} wk_reload_ctx_t;

/* SIGHUP (worker.h): re-reads the config file and environment; RELOADABLE settings apply. */
static svc_err_t reload_settings(void *data, uint64_t *watch_ms, char *errstr,
                                 size_t errstr_size) {
  wk_reload_ctx_t *r = data;
  int changed = 0;
  svc_err_t err = svc_cfg_reload(r->cfg, &changed, errstr, errstr_size);
  if (err != SVC_OK) return err;
  SVC_LOG(SVC_LOG_INFO, "settings reloaded", "changed=%d", changed);
  *watch_ms = (uint64_t)r->c->model_watch_ms;
  return SVC_OK;
}

int main(int argc, char **argv) {
  wk_cfg_t c = {0};
  svc_cfg_t *cfg = NULL;
  char err[1024];
  /* SLUICE_FRAUD_MODEL, the fraud-only worker's variable, still names the model. */
  if (getenv("SLUICE_MODEL") == NULL && getenv("SLUICE_FRAUD_MODEL") != NULL)
    setenv("SLUICE_MODEL", getenv("SLUICE_FRAUD_MODEL"), 1);
  int status = svc_cfg_main(&cfg, "sluice-worker",
                            "Score events from Kafka with the MoE engine (card transactions, "
                            "sensor readings or clinical notes: the pipeline setting) and store "
                            "every result, key state, alert and offset in PostgreSQL exactly "
                            "once per batch.",
                            wk_cfg_table, &c, "SLUICE_WORKER_CONFIG", argc, argv);
  if (status >= 0) return status;
  svc_log_set_level((svc_log_level_t)c.log_level);
  svc_log_set_format((svc_log_format_t)c.log_format);
  /* The model scores one batch at a time on a libuv pool thread, while librdkafka, PostgreSQL
   * and the broker want the same few cores: OpenBLAS's own worker threads only spin against
   * them. With batch.max 1024 on the shared 2-core machine a batch took 2-18 ms to score
   * instead of about 0.5 ms (bench/pipeline/README.md). */
  openblas_set_num_threads(1);

  /* Per-pipeline defaults: the generic name, then (fraud) the fraud.* name, then
   * sluice.<domain>.<what> / sluice-<domain>. */
  const wk_pipeline_ops_t *ops = wk_pipelines[c.pipeline];
  const char *domain = ops->domain;
  bool fraud = ops == &wk_pipeline_fraud;
  char def_topic[128], def_dlq[128], def_alerts[128], def_group[128];
  snprintf(def_topic, sizeof def_topic, "sluice.%s.events", domain);
  snprintf(def_dlq, sizeof def_dlq, "sluice.%s.dlq", domain);
  snprintf(def_alerts, sizeof def_alerts, "sluice.%s.alerts", domain);
  snprintf(def_group, sizeof def_group, "sluice-%s", domain);
#define WK_PICK(generic, fraud_name, def)                                                     \
  ((generic)[0] ? (generic) : fraud && (fraud_name)[0] ? (fraud_name) : (def))
  const char *topic = WK_PICK(c.topic, c.fraud_topic, def_topic);
  const char *dlq_topic = WK_PICK(c.dlq_topic, c.fraud_dlq_topic, def_dlq);
  const char *alerts_topic = WK_PICK(c.alerts_topic, c.fraud_alerts_topic, def_alerts);
#undef WK_PICK
  const char *group = c.group[0] ? c.group : def_group;
  const void *settings = fraud ? (const void *)&c.fraud
                         : ops == &wk_pipeline_fault ? (const void *)&c.fault
                                                     : (const void *)&c.records;

  /* Checked by the settings already: this cannot fail. */
  char **consumer_props = NULL, **producer_props = NULL;
  kafka_props_split(c.consumer_props, &consumer_props, err, sizeof err);
  kafka_props_split(c.producer_props, &producer_props, err, sizeof err);
  wk_reload_ctx_t rctx = {.cfg = cfg, .c = &c};
  wk_worker_opts_t o = {.pipeline = ops, .settings = settings,
                        .brokers = c.brokers, .group = group, .instance_id = c.instance_id,
                        .consumer_props = (const char *const *)consumer_props,
                        .producer_props = (const char *const *)producer_props,
                        .topic = topic, .dlq_topic = dlq_topic,
                        .alerts_topic = alerts_topic, .pg_dsn = c.pg_dsn,
                        .pg_schema = c.pg_schema, .http_address = c.http_address,
                        .http_port = (unsigned)c.http_port, .model_path = c.model_path,
                        .batch_max = (size_t)c.batch_max, .pg_lanes = (int)c.pg_lanes, .batch_wait_ms = (uint64_t)c.batch_wait_ms,
                        .max_event_bytes = (size_t)c.max_event_bytes,
                        .max_queued_events = (size_t)c.max_queued_events,
                        .model_watch_ms = (uint64_t)c.model_watch_ms,
                        .kafka_error_grace_ms = (uint64_t)c.kafka_error_grace_ms,
                        .reload_settings = reload_settings, .reload_data = &rctx};
  svc_err_t rc = wk_worker_run(&o, err, sizeof err);
  if (rc != SVC_OK) {
    SVC_LOG(SVC_LOG_ERROR, "worker stopped on an error", "err=%s detail=\"%s\"", svc_err_name(rc),
            err);
    fprintf(stderr, "sluice-worker: %s\n", err);
  } else {
    SVC_LOG(SVC_LOG_INFO, "worker stopped");
  }
  free(consumer_props);
  free(producer_props);
  svc_cfg_free(cfg);
  if (rc == SVC_ECONFIG) return 2;
  return rc == SVC_OK ? 0 : 1;
}
