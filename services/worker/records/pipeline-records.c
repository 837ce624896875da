/*
 * The records pipeline as wk_pipeline_ops_t: ClinicalNote envelopes in, one record_analysis row
 * (and optionally an outbox alert) per note out. The contract is in pipeline-records.h; the
 * analysis itself is records-analysis.c.
 */
#include "pipeline-records.h"

#include <stdio.h>
#include <string.h>

#include "records-analysis.h"
#include "records-input.h"

const char *const wk_records_evidence_names[] = {
#define WK__RECORDS_EV_NAME(id, name) name,
    WK_RECORDS_EVIDENCE_MAP(WK__RECORDS_EV_NAME)
#undef WK__RECORDS_EV_NAME
        NULL};

const char wk_records_schema_sql[] =
    "CREATE TABLE record_analysis (\n"
    "  note_id         text COLLATE \"C\" PRIMARY KEY,\n"
    "  patient_id      text COLLATE \"C\",\n"
    "  model_version   text        NOT NULL,\n"
    "  predicted_label text        NOT NULL,\n"
    "  score           real        NOT NULL,\n"
    "  classes         jsonb       NOT NULL,\n"
    "  evidence        jsonb       NOT NULL,\n"
    "  sections        jsonb       NOT NULL,\n"
    "  n_tokens        integer     NOT NULL,\n"
    "  n_chunks        integer     NOT NULL,\n"
    "  truncated       boolean     NOT NULL,\n"
    "  n_dropped       integer     NOT NULL,\n"
    "  event_time      timestamptz NOT NULL,\n"
    "  topic           text COLLATE \"C\" NOT NULL,\n"
    "  partition       integer     NOT NULL,\n"
    "  \"offset\"        bigint      NOT NULL,\n"
    "  scored_at       timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE INDEX record_analysis_patient ON record_analysis (patient_id, event_time);\n"
    "CREATE INDEX record_analysis_label ON record_analysis (predicted_label, event_time);\n";

void wk_records_settings_default(wk_records_settings_t *s) {
  memset(s, 0, sizeof *s);
  s->max_chunks = WK_RECORDS_DEFAULT_MAX_CHUNKS;
  s->top_evidence = WK_RECORDS_DEFAULT_TOP_EVIDENCE;
  s->max_text_bytes = WK_RECORDS_DEFAULT_MAX_TEXT;
  s->evidence = WK_RECORDS_EVIDENCE_WORDS;
  s->evidence_min_probability = 0.0;
  s->alert_labels = NULL;
  s->alert_min_probability = 0.0;
}

/* ---- the skeleton: replaced by the real pipeline in the next commit ------------------------ */

static svc_err_t records__create(const wk_pipeline_env_t *env, wk_pipeline_t **out, char *errstr,
                                 size_t errstr_size) {
  (void)env;
  *out = NULL;
  snprintf(errstr, errstr_size, "records pipeline not built yet");
  return SVC_ECONFIG;
}

static void records__destroy(wk_pipeline_t *p) { (void)p; }

static svc_err_t records__model_open(wk_pipeline_t *p, const char *path, wk_pmodel_t **out,
                                     char *errstr, size_t errstr_size) {
  (void)p;
  *out = NULL;
  snprintf(errstr, errstr_size, "%s: records pipeline not built yet", path);
  return SVC_ECONFIG;
}

static void records__model_free(wk_pmodel_t *m) { (void)m; }
static const char *records__model_version(const wk_pmodel_t *m) { (void)m; return ""; }
static size_t records__model_load_size(const wk_pmodel_t *m) { (void)m; return 0; }

static void *records__accept(wk_pipeline_t *p, const wk_pmodel_t *serving,
                             const rd_kafka_message_t *msg, const uint8_t *value, size_t len,
                             wk_reject_t *rej) {
  (void)p, (void)serving, (void)msg, (void)value, (void)len;
  wk_reject(rej, WK_REJECT_INVALID, "records pipeline not built yet");
  return NULL;
}

static void records__event_free(wk_pipeline_t *p, void *ev) { (void)p, (void)ev; }

static svc_err_t records__process(wk_pipeline_t *p, const wk_pmodel_t *m, void *const *evs,
                                  const rd_kafka_message_t *const *msgs, size_t n, wk_stmt_t *stmt,
                                  wk_batch_stats_t *stats, char *errstr, size_t errstr_size) {
  (void)p, (void)m, (void)evs, (void)msgs, (void)n, (void)stmt, (void)stats;
  snprintf(errstr, errstr_size, "records pipeline not built yet");
  return SVC_ECONFIG;
}

/* No per-key state: the core skips restore (pipeline-records.h). */
static const char *records__restore_sql(wk_pipeline_t *p) { (void)p; return NULL; }
static int records__restore(wk_pipeline_t *p, const PGresult *res) { (void)p, (void)res; return 0; }
static void records__discard(wk_pipeline_t *p) { (void)p; }
static void records__revoke(wk_pipeline_t *p, const int32_t *partitions, size_t n) {
  (void)p, (void)partitions, (void)n;
}
static size_t records__n_keys(const wk_pipeline_t *p) { (void)p; return 0; }

const wk_pipeline_ops_t wk_pipeline_records = {
    .domain = "records",
    .create = records__create,
    .destroy = records__destroy,
    .model_open = records__model_open,
    .model_free = records__model_free,
    .model_version = records__model_version,
    .model_load_size = records__model_load_size,
    .accept = records__accept,
    .event_free = records__event_free,
    .process = records__process,
    .committed = NULL,
    .restore_sql = records__restore_sql,
    .restore = records__restore,
    .discard = records__discard,
    .revoke = records__revoke,
    .n_keys = records__n_keys,
};
