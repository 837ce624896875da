/*
 * The records pipeline's batch statement on the real PostgreSQL: a schema migrated by the
 * worker's migrations (record_analysis is one of them), batches of real MTSamples notes
 * accepted and processed by the pipeline's ops, rendered by stmt.c and executed as the worker
 * does, then every column read back and checked against an independent scoring of the note
 * (probabilities, label, tokens, chunks), the note itself (evidence text = the bytes it points
 * at), the record (event time, topic, partition, offset), and the alert outbox (stable ids). A
 * replayed batch adds nothing.
 */
#include "records-fixture.h"

#include <libpq-fe.h>
#include <time.h>

#define TOPIC "t.records.events"
#define NOTES 6

static void exec_ok(PGconn *conn, const char *sql) {
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK,
             "%s: %s", sql, PQerrorMessage(conn));
  PQclear(res);
}

static PGresult *query(PGconn *conn, const char *sql, int n, const char *const *params) {
  PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(conn));
  return res;
}

/* accept + process + render + execute, like one worker batch. Returns the counts. */
static wk_stmt_counts_t run_batch_as(PGconn *conn, wk_pipeline_t *p, wk_pmodel_t *pm,
                                     wk_stmt_t *st, char **notes, size_t n, int64_t first_offset,
                                     const char *const *ids, const int64_t *times) {
  void *evs[NOTES] = {0};
  rd_kafka_message_t msgs[NOTES];
  const rd_kafka_message_t *mp[NOTES] = {0};
  char err[512];
  ASSERT(n >= 1 && n <= NOTES);
  for (size_t i = 0; i < n; i++) {
    char id[32], patient[32];
    if (ids != NULL) snprintf(id, sizeof id, "%s", ids[i]);
    else snprintf(id, sizeof id, "note-%zu", i);
    snprintf(patient, sizeof patient, "patient-%zu", i % 2);
    size_t len;
    uint8_t *v = rf_envelope(id, i == 3 ? NULL : patient, notes[i],
                             times != NULL ? times[i] : 1700000000000 + 1000 * (int64_t)i, &len);
    wk_reject_t rej;
    evs[i] = wk_pipeline_records.accept(p, pm, NULL, v, len, &rej);
    ASSERT_MSG(evs[i] != NULL, "%s", rej.detail);
    free(v);
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].partition = (int32_t)(i % 2);
    msgs[i].offset = first_offset + (int64_t)i;
    mp[i] = &msgs[i];
  }
  wk_batch_stats_t stats = {0};
  ASSERT_MSG(wk_pipeline_records.process(p, pm, evs, mp, n, st, &stats, err, sizeof err) == SVC_OK,
             "%s", err);
  for (size_t i = 0; i < n; i++) {
    wk_stmt_add_offset(st, TOPIC, msgs[i].partition, msgs[i].offset + 1);
    wk_pipeline_records.event_free(p, evs[i]);
  }
  const char *sql;
  int n_params;
  const char *const *values;
  const int *lengths, *formats;
  wk_stmt_render(st, &sql, &n_params, &values, &lengths, &formats);
  PGresult *res = PQexecParams(conn, sql, n_params, NULL, values, lengths, formats, 0);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s",
             PQerrorMessage(conn));
  const char *cols[4] = {PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                         PQgetvalue(res, 0, 3)};
  wk_stmt_counts_t c;
  ASSERT_OK(wk_stmt_parse_counts(cols, &c));
  PQclear(res);
  wk_stmt_reset(st);
  return c;
}

/* Notes "note-<i>" at 1700000000000 + 1000 i ms. */
static wk_stmt_counts_t run_batch(PGconn *conn, wk_pipeline_t *p, wk_pmodel_t *pm, wk_stmt_t *st,
                                  char **notes, size_t n, int64_t first_offset) {
  return run_batch_as(conn, p, pm, st, notes, n, first_offset, NULL, NULL);
}

TEST(rows_read_back_from_postgresql_match_the_notes) {
  PGconn *conn = PQconnectdb(test_require_env("SLUICE_PG_DSN"));
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
  PQclear(PQexec(conn, "SET client_min_messages TO warning"));
  char schema[64], err[512], sql[1024];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(schema, sizeof schema, "trp_%ld_%ld", (long)getpid(), (long)(ts.tv_nsec / 1000));
  ASSERT_MSG(wk_schema_migrate(conn, schema, NULL, err, sizeof err) == SVC_OK, "%s", err);
  snprintf(sql, sizeof sql, "SET search_path TO \"%s\"", schema);
  exec_ok(conn, sql);

  size_t nn = 0;
  char **notes = rf_notes(NOTES, &nn);
  ASSERT_EQ(nn, NOTES);
  moe_model_t *m = NULL;
  ASSERT_EQ(moe_model_load(RF_MODEL, &m, err, sizeof err), MOE_OK);
  int nk = moe_model_n_labels(m);
  float want[NOTES][64];
  size_t want_tokens[NOTES], want_chunks[NOTES];
  int want_label[NOTES];
  for (size_t i = 0; i < nn; i++) {
    rf_score(m, notes[i], want[i], &want_tokens[i], &want_chunks[i]);
    want_label[i] = 0;
    for (int k = 1; k < nk; k++)
      if (want[i][k] > want[i][want_label[i]]) want_label[i] = k;
  }
  /* Alerts for the label of note 0. */
  wk_records_settings_t s;
  wk_records_settings_default(&s);
  s.alert_labels = (char *)moe_model_label(m, want_label[0]);
  rf_pipeline_t rp;
  rf_pipeline_init(&rp, &s, TOPIC);
  wk_pmodel_t *pm = NULL;
  ASSERT_MSG(wk_pipeline_records.model_open(rp.p, RF_MODEL, &pm, err, sizeof err) == SVC_OK, "%s",
             err);
  wk_stmt_t *st = NULL;
  ASSERT_MSG(wk_stmt_new(schema, "g-records", wk_pipeline_records.tables,
                         wk_pipeline_records.n_tables, &st, err, sizeof err) == SVC_OK, "%s", err);
  size_t want_alerts = 0;
  for (size_t i = 0; i < nn; i++) want_alerts += want_label[i] == want_label[0];

  wk_stmt_counts_t c = run_batch(conn, rp.p, pm, st, notes, nn, 100);
  ASSERT_EQ(c.results, (long)nn);
  ASSERT_EQ(c.outbox, (long)want_alerts);
  ASSERT_EQ(c.offsets, 2);

  size_t with_sections = 0;
  for (size_t i = 0; i < nn; i++) {
    char id[32];
    snprintf(id, sizeof id, "note-%zu", i);
    const char *params[1] = {id};
    PGresult *r = query(conn,
                        "SELECT patient_id, model_version, predicted_label, score, n_tokens, "
                        "n_chunks, truncated, n_dropped, (extract(epoch FROM event_time) * 1000)"
                        "::bigint, topic, partition, \"offset\", jsonb_array_length(classes), "
                        "jsonb_array_length(evidence), jsonb_array_length(sections), "
                        "patient_id IS NULL FROM record_analysis WHERE note_id = $1",
                        1, params);
    ASSERT_EQ(PQntuples(r), 1);
    if (i == 3) {
      ASSERT_STR_EQ(PQgetvalue(r, 0, 15), "t");
    } else {
      char patient[32];
      snprintf(patient, sizeof patient, "patient-%zu", i % 2);
      ASSERT_STR_EQ(PQgetvalue(r, 0, 0), patient);
    }
    ASSERT_STR_EQ(PQgetvalue(r, 0, 1), moe_model_version(m));
    ASSERT_STR_EQ(PQgetvalue(r, 0, 2), moe_model_label(m, want_label[i]));
    ASSERT_NEAR(atof(PQgetvalue(r, 0, 3)), want[i][want_label[i]], 1e-5);
    ASSERT_EQ((size_t)atol(PQgetvalue(r, 0, 4)), want_tokens[i]);
    ASSERT_EQ((size_t)atol(PQgetvalue(r, 0, 5)), want_chunks[i]);
    ASSERT_STR_EQ(PQgetvalue(r, 0, 6), "f");
    ASSERT_EQ(atol(PQgetvalue(r, 0, 7)), 0);
    ASSERT_EQ(atoll(PQgetvalue(r, 0, 8)), 1700000000000 + 1000 * (long long)i);
    ASSERT_STR_EQ(PQgetvalue(r, 0, 9), TOPIC);
    ASSERT_EQ(atol(PQgetvalue(r, 0, 10)), (long)(i % 2));
    ASSERT_EQ(atoll(PQgetvalue(r, 0, 11)), 100 + (long long)i);
    ASSERT_EQ(atoi(PQgetvalue(r, 0, 12)), nk);
    ASSERT_OP(atoi(PQgetvalue(r, 0, 13)), >=, 1);
    with_sections += atoi(PQgetvalue(r, 0, 14)) > 0;
    PQclear(r);
    /* Every class, in the model's order, with the independent probability. */
    r = query(conn,
              "SELECT c->>'label', (c->>'probability')::float8 FROM record_analysis, "
              "jsonb_array_elements(classes) WITH ORDINALITY AS x(c, k) WHERE note_id = $1 "
              "ORDER BY k",
              1, params);
    ASSERT_EQ(PQntuples(r), nk);
    for (int k = 0; k < nk; k++) {
      ASSERT_STR_EQ(PQgetvalue(r, k, 0), moe_model_label(m, k));
      ASSERT_NEAR(atof(PQgetvalue(r, k, 1)), want[i][k], 1e-5);
    }
    PQclear(r);
    /* Evidence: its text is the note's bytes at [start, end). */
    r = query(conn,
              "SELECT e->>'text', (e->>'start')::int, (e->>'end')::int, (e->>'weight')::float8 "
              "FROM record_analysis, jsonb_array_elements(evidence) WITH ORDINALITY AS x(e, k) "
              "WHERE note_id = $1 ORDER BY k",
              1, params);
    for (int e = 0; e < PQntuples(r); e++) {
      int a = atoi(PQgetvalue(r, e, 1)), b = atoi(PQgetvalue(r, e, 2));
      ASSERT(0 <= a && a < b && (size_t)b <= strlen(notes[i]));
      ASSERT_EQ(strlen(PQgetvalue(r, e, 0)), (size_t)(b - a));
      ASSERT(memcmp(PQgetvalue(r, e, 0), notes[i] + a, (size_t)(b - a)) == 0);
      ASSERT_OP(atof(PQgetvalue(r, e, 3)), >, 0.0);
    }
    PQclear(r);
    /* Sections: named, in text order, inside the note. */
    r = query(conn,
              "SELECT s->>'name', (s->>'start')::int, (s->>'end')::int FROM record_analysis, "
              "jsonb_array_elements(sections) WITH ORDINALITY AS x(s, k) WHERE note_id = $1 "
              "ORDER BY k",
              1, params);
    int prev = 0;
    for (int k = 0; k < PQntuples(r); k++) {
      int a = atoi(PQgetvalue(r, k, 1)), b = atoi(PQgetvalue(r, k, 2));
      ASSERT_OP(strlen(PQgetvalue(r, k, 0)), >, 0);
      ASSERT(prev <= a && a < b && (size_t)b <= strlen(notes[i]));
      prev = b;
    }
    PQclear(r);
  }
  ASSERT_OP(with_sections, >=, nn / 2);
  /* The outbox: one firing alert per note of the alert label, with a stable id. */
  PGresult *r = query(conn, "SELECT alert_id, key, topic, payload FROM outbox ORDER BY alert_id",
                      0, NULL);
  ASSERT_EQ((size_t)PQntuples(r), want_alerts);
  for (int k = 0; k < PQntuples(r); k++) {
    char want_id[160];
    snprintf(want_id, sizeof want_id, "records:%s:%s", PQgetvalue(r, k, 1),
             moe_model_label(m, want_label[0]));
    ASSERT_STR_EQ(PQgetvalue(r, k, 0), want_id);
    ASSERT_STR_EQ(PQgetvalue(r, k, 2), "sluice.records.alerts");
    size_t blen = 0;
    unsigned char *bin = PQunescapeBytea((const unsigned char *)PQgetvalue(r, k, 3), &blen);
    Sluice__V1__Alert *a = sluice__v1__alert__unpack(NULL, blen, bin);
    ASSERT_NOT_NULL(a);
    ASSERT_STR_EQ(a->alert_id, want_id);
    ASSERT_STR_EQ(a->kind, moe_model_label(m, want_label[0]));
    ASSERT_EQ(a->state, SLUICE__V1__ALERT_STATE__ALERT_STATE_FIRING);
    sluice__v1__alert__free_unpacked(a, NULL);
    PQfreemem(bin);
  }
  PQclear(r);
  /* The same batch again (a replay after a crash before the offsets moved): nothing new. */
  c = run_batch(conn, rp.p, pm, st, notes, nn, 100);
  ASSERT_EQ(c.results, 0);
  ASSERT_EQ(c.outbox, 0);
  r = query(conn, "SELECT count(*) FROM record_analysis", 0, NULL);
  ASSERT_EQ((size_t)atol(PQgetvalue(r, 0, 0)), nn);
  PQclear(r);

  /* Corrections of note-1 in one batch: the newer by event time wins, though it comes first
   * (lower offset); then an older one alone changes nothing. */
  {
    char *two[2] = {notes[2], notes[4]};
    const char *ids[2] = {"note-1", "note-1"};
    const int64_t times[2] = {1700000009000, 1700000008000};
    c = run_batch_as(conn, rp.p, pm, st, two, 2, 200, ids, times);
    ASSERT_EQ(c.results, 1);
    const char *params[1] = {"note-1"};
    r = query(conn,
              "SELECT (extract(epoch FROM event_time) * 1000)::bigint, \"offset\", n_tokens "
              "FROM record_analysis WHERE note_id = $1",
              1, params);
    ASSERT_EQ(atoll(PQgetvalue(r, 0, 0)), 1700000009000);
    ASSERT_EQ(atoll(PQgetvalue(r, 0, 1)), 200);
    ASSERT_EQ((size_t)atol(PQgetvalue(r, 0, 2)), want_tokens[2]);
    PQclear(r);
    char *one[1] = {notes[4]};
    const int64_t older[1] = {1700000008500};
    c = run_batch_as(conn, rp.p, pm, st, one, 1, 300, ids, older);
    ASSERT_EQ(c.results, 0);
    r = query(conn, "SELECT \"offset\" FROM record_analysis WHERE note_id = $1", 1, params);
    ASSERT_EQ(atoll(PQgetvalue(r, 0, 0)), 200);
    PQclear(r);
  }

  snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", schema);
  exec_ok(conn, "SET search_path TO DEFAULT");
  exec_ok(conn, sql);
  PQfinish(conn);
  wk_stmt_free(st);
  wk_pipeline_records.model_free(pm);
  rf_pipeline_close(&rp);
  moe_model_free(m);
  rf_notes_free(notes, nn);
}
