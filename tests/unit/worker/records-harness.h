/*
 * Shared harness of the records worker tests (test-worker-records.c,
 * test-worker-records-pg-restart.c): runs the real sluice-worker binary with --pipeline=records
 * and the shipped records-mtsamples model against the real Kafka broker and PostgreSQL,
 * produces numbered notes (note ids "note-%05d", the beginnings of real MTSamples notes, 3
 * partitions, key = note id), and checks the outcome from PostgreSQL: every produced note has
 * exactly one record_analysis row, stored at the partition and offset it was produced to (every
 * offset of the topic holds one row or one dead letter: nothing analysed twice, nothing
 * skipped), with the label and probability an independent scoring of its text gives.
 * Starting and stopping the worker, HTTP, counts and Kafka producing are worker-proc.h's (wp_*).
 */
#ifndef TEST_RECORDS_HARNESS_H
#define TEST_RECORDS_HARNESS_H

#include "unit/domains/records-fixture.h"
#include "worker-proc.h"

#define RH_PARTS 3
#define RH_MAX_NOTES 1000
#define RH_NOTE_BYTES 500 /* notes are cut to about this (one model row each: fast) */

typedef struct rh_ctx_s {
  wp_ctx_t w; /* names, port, model (RF_MODEL unless set), extra */
  char **src; /* real notes */
  size_t n_src;
  const char *top_evidence; /* --records-top-evidence ("0" unless set) */
} rh_ctx_t;

static inline void rh_init(rh_ctx_t *c, const char *tag) {
  memset(c, 0, sizeof *c);
  wp_init(&c->w, "wr", tag, RH_PARTS, true);
  snprintf(c->w.model, sizeof c->w.model, "%s", RF_MODEL);
  c->src = rf_notes(24, &c->n_src);
  ASSERT_OP(c->n_src, >=, 10);
}

static inline void rh_close(rh_ctx_t *c) { rf_notes_free(c->src, c->n_src); }

/* The text of note i: the beginning of a real note, cut at a space before RH_NOTE_BYTES. */
static inline void rh_text(const rh_ctx_t *c, int i, char *buf, size_t size) {
  const char *s = c->src[(size_t)i % c->n_src];
  size_t n = strlen(s), cap = size - 1 < RH_NOTE_BYTES ? size - 1 : RH_NOTE_BYTES;
  if (n > cap) {
    n = cap;
    while (n > 0 && s[n] != ' ') n--;
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
}

static inline void rh_note_id(int i, char *buf, size_t size) { snprintf(buf, size, "note-%05d", i); }

/* Produces notes first .. first+n-1 (patient "patient-<i % 7>"). */
static inline void rh_produce(const rh_ctx_t *c, int first, int n) {
  rd_kafka_t *rk = wp_producer(&c->w);
  for (int i = first; i < first + n; i++) {
    char id[32], patient[32], text[RH_NOTE_BYTES + 1];
    rh_note_id(i, id, sizeof id);
    snprintf(patient, sizeof patient, "patient-%d", i % 7);
    rh_text(c, i, text, sizeof text);
    size_t len;
    uint8_t *v = rf_envelope(id, patient, text, 1700000000000LL + 1000LL * i, &len);
    wp_send(rk, c->w.topic, id, v, len);
    free(v);
  }
  wp_flush(rk);
  rd_kafka_destroy(rk);
}

/* Starts a records worker (batches of 16) serving HTTP on `http_port`. */
static inline pid_t rh_start_on(const rh_ctx_t *c, unsigned http_port) {
  const char *const flags[] = {"--pipeline", "records",
                               "--topic", c->w.topic,
                               "--dlq-topic", c->w.dlq,
                               "--alerts-topic", c->w.alerts,
                               "--batch-max", "16",
                               "--records-top-evidence", c->top_evidence ? c->top_evidence : "0",
                               NULL};
  return wp_start(&c->w, http_port, flags);
}

static inline pid_t rh_start(const rh_ctx_t *c) { return rh_start_on(c, c->w.port); }

#define RH_ROWS_SQL "SELECT count(*) FROM \"%s\".record_analysis"

static inline long rh_rows(PGconn *conn, const rh_ctx_t *c) {
  return wp_count(conn, RH_ROWS_SQL, c->w.schema);
}

/* Waits until at least `want` rows; fails after `secs` or when a worker exits. */
static inline void rh_wait_rows(PGconn *conn, const rh_ctx_t *c, long want, const pid_t *pids,
                                int n_pids, int secs) {
  wp_wait_count(conn, &c->w, RH_ROWS_SQL, want, pids, n_pids, secs);
}

/*
 * Checks notes first .. first+n-1: one row each, with the independent scoring's label and
 * probability; every (partition, offset) of the rows distinct, and together with `n_dead`
 * dead letters they cover each partition's offsets 0 .. next_offset - 1 exactly (and
 * kafka_offsets says so).
 */
static inline void rh_check(PGconn *conn, const rh_ctx_t *c, int first, int n, long n_dead) {
  PGresult *res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT note_id, predicted_label, score, partition, \"offset\", patient_id, "
      "(extract(epoch FROM event_time) * 1000)::bigint FROM \"%s\".record_analysis "
      "ORDER BY note_id",
      c->w.schema);
  ASSERT_EQ(PQntuples(res), n);
  moe_model_t *m = NULL;
  char err[256];
  ASSERT_EQ(moe_model_load(RF_MODEL, &m, err, sizeof err), MOE_OK);
  int nk = moe_model_n_labels(m);
  for (int r = 0; r < n; r++) {
    int i = first + r;
    char id[32], text[RH_NOTE_BYTES + 1], patient[32];
    rh_note_id(i, id, sizeof id);
    ASSERT_STR_EQ(PQgetvalue(res, r, 0), id);
    rh_text(c, i, text, sizeof text);
    float probs[64];
    size_t nt, nc;
    rf_score(m, text, probs, &nt, &nc);
    int best = 0;
    for (int k = 1; k < nk; k++)
      if (probs[k] > probs[best]) best = k;
    ASSERT_STR_EQ(PQgetvalue(res, r, 1), moe_model_label(m, best));
    ASSERT_NEAR(atof(PQgetvalue(res, r, 2)), probs[best], 1e-5);
    snprintf(patient, sizeof patient, "patient-%d", i % 7);
    ASSERT_STR_EQ(PQgetvalue(res, r, 5), patient);
    ASSERT_EQ(atoll(PQgetvalue(res, r, 6)), 1700000000000LL + 1000LL * i);
  }
  PQclear(res);
  moe_model_free(m);
  /* Offsets: distinct per partition, and rows + dead letters fill every partition. */
  res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT count(*) = count(DISTINCT (partition, \"offset\")) FROM \"%s\".record_analysis",
      c->w.schema);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  long next = wp_count(conn, "SELECT coalesce(sum(next_offset), 0) FROM \"%s\".kafka_offsets",
                       c->w.schema);
  ASSERT_EQ(next, (long)n + n_dead);
  res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT count(*) FROM \"%s\".record_analysis r JOIN \"%s\".kafka_offsets o "
      "ON o.partition = r.partition AND o.topic = r.topic WHERE r.\"offset\" >= o.next_offset",
      c->w.schema, c->w.schema);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "0");
  PQclear(res);
}

#endif /* TEST_RECORDS_HARNESS_H */
