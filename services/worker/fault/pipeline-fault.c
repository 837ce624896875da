/*
 * The fault pipeline (wk_pipeline_fault): decoding, per-device windows and alert state, the
 * fault models' adapter, the rows of fault_results / fault_state and the alerts' outbox rows.
 * The contract is in pipeline-fault.h and pipeline.h.
 */
#include "pipeline-fault.h"

#include <stdio.h>
#include <string.h>

const char *const wk_fault_late_policy_names[] = {"dlq", "count", NULL};

const char wk_fault_schema_sql[] =
    "CREATE TABLE fault_results (\n"
    "  event_id text COLLATE \"C\" NOT NULL,\n"
    "  kind text COLLATE \"C\" NOT NULL,\n"
    "  device_id text COLLATE \"C\" NOT NULL,\n"
    "  model_version text NOT NULL,\n"
    "  score real NOT NULL,\n"
    "  alert_phase text NOT NULL,\n"
    "  event_time timestamptz NOT NULL,\n"
    "  window_start timestamptz NOT NULL,\n"
    "  input real[] NOT NULL,\n"
    "  topic text NOT NULL,\n"
    "  partition integer NOT NULL,\n"
    "  \"offset\" bigint NOT NULL,\n"
    "  scored_at timestamptz NOT NULL DEFAULT now(),\n"
    "  PRIMARY KEY (event_id, kind)\n"
    ");\n"
    "CREATE INDEX fault_results_device ON fault_results (device_id, event_time);\n"
    "CREATE TABLE fault_state (\n"
    "  device_id text COLLATE \"C\" NOT NULL,\n"
    "  kind text COLLATE \"C\" NOT NULL,\n"
    "  topic text NOT NULL,\n"
    "  partition integer NOT NULL,\n"
    "  last_offset bigint NOT NULL,\n"
    "  \"window\" bytea NOT NULL,\n"
    "  alert bytea NOT NULL,\n"
    "  updated_at timestamptz NOT NULL DEFAULT now(),\n"
    "  PRIMARY KEY (device_id, kind)\n"
    ");\n"
    "CREATE INDEX fault_state_partition ON fault_state (topic, partition);\n";

void wk_fault_settings_default(wk_fault_settings_t *s) {
  memset(s, 0, sizeof *s);
  s->window_stride = 1;
  s->window_lateness_ms = 5 * 60000;
  s->window_period_ms = 60000;
  s->window_max_fill = 2;
  s->alert_enter = -1;
  s->alert_clear = -1;
  s->alert_min_fire_ms = 2 * 60000;
  s->alert_min_clear_ms = 2 * 60000;
  s->late_policy = WK_FAULT_LATE_DLQ;
}

/* ---- first version: the symbol the core links; the real pipeline replaces it ---- */

static svc_err_t fault_create(const wk_pipeline_env_t *env, wk_pipeline_t **out, char *errstr,
                              size_t errstr_size) {
  (void)env;
  *out = NULL;
  snprintf(errstr, errstr_size, "fault pipeline not built yet");
  return SVC_ECONFIG;
}

static void fault_destroy(wk_pipeline_t *p) { (void)p; }

static svc_err_t fault_model_open(wk_pipeline_t *p, const char *path, wk_pmodel_t **out,
                                  char *errstr, size_t errstr_size) {
  (void)p;
  *out = NULL;
  snprintf(errstr, errstr_size, "%s: fault pipeline not built yet", path);
  return SVC_ECONFIG;
}

static void fault_model_free(wk_pmodel_t *m) { (void)m; }
static const char *fault_model_version(const wk_pmodel_t *m) {
  (void)m;
  return "";
}
static size_t fault_model_load_size(const wk_pmodel_t *m) {
  (void)m;
  return 0;
}

static void *fault_accept(wk_pipeline_t *p, const wk_pmodel_t *serving,
                          const rd_kafka_message_t *msg, const uint8_t *value, size_t len,
                          wk_reject_t *rej) {
  (void)p, (void)serving, (void)msg, (void)value, (void)len;
  wk_reject(rej, WK_REJECT_INVALID, "fault pipeline not built yet");
  return NULL;
}

static void fault_event_free(wk_pipeline_t *p, void *ev) { (void)p, (void)ev; }

static svc_err_t fault_process(wk_pipeline_t *p, const wk_pmodel_t *m, void *const *evs,
                               const rd_kafka_message_t *const *msgs, size_t n, wk_stmt_t *stmt,
                               wk_batch_stats_t *stats, char *errstr, size_t errstr_size) {
  (void)p, (void)m, (void)evs, (void)msgs, (void)n, (void)stmt, (void)stats;
  snprintf(errstr, errstr_size, "fault pipeline not built yet");
  return SVC_ECONFIG;
}

static const char *fault_restore_sql(wk_pipeline_t *p) {
  (void)p;
  return "SELECT device_id, kind, partition, last_offset, \"window\", alert FROM fault_state "
         "WHERE topic = $1 AND partition = ANY($2)";
}

static int fault_restore(wk_pipeline_t *p, const PGresult *res) {
  (void)p, (void)res;
  return 0;
}

static void fault_discard(wk_pipeline_t *p) { (void)p; }
static size_t fault_n_keys(const wk_pipeline_t *p) {
  (void)p;
  return 0;
}

const wk_pipeline_ops_t wk_pipeline_fault = {
    .domain = "fault",
    .create = fault_create,
    .destroy = fault_destroy,
    .model_open = fault_model_open,
    .model_free = fault_model_free,
    .model_version = fault_model_version,
    .model_load_size = fault_model_load_size,
    .accept = fault_accept,
    .event_free = fault_event_free,
    .process = fault_process,
    .committed = NULL,
    .restore_sql = fault_restore_sql,
    .restore = fault_restore,
    .discard = fault_discard,
    .revoke = NULL,
    .n_keys = fault_n_keys,
};
