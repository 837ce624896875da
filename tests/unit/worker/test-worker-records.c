/*
 * The real sluice-worker with --pipeline=records against the real Kafka broker and PostgreSQL
 * (records-harness.h): every note analysed once with the content an independent scoring gives
 * and poison records dead-lettered with their reasons; kill -9 in the middle of a stream and a
 * restart lose and repeat nothing; two workers sharing the stream through a rebalance lose and
 * repeat nothing. Notes are short (one model row) and evidence is off unless a test needs it,
 * so that each case takes seconds; the kill -9 case turns per-token evidence on so that its
 * stream lasts long enough to be killed in, however fast the shipped model is.
 */
#include "records-harness.h"

/* A record that is not an Envelope, one with a Transaction, notes that fail validation, and
 * one too large. */
static long produce_poison(const rh_ctx_t *c) {
  rd_kafka_t *rk = wp_producer(&c->w);
  wp_send(rk, c->w.topic, "junk", "\xff\xfe\x01 not protobuf", 17);
  Sluice__V1__Transaction tx = SLUICE__V1__TRANSACTION__INIT;
  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  env.event_id = "tx-1";
  env.has_event_time_ms = 1;
  env.event_time_ms = 1700000000000;
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
  env.transaction = &tx;
  uint8_t buf[256];
  size_t len = sluice__v1__envelope__pack(&env, buf);
  wp_send(rk, c->w.topic, "tx-1", buf, len);
  uint8_t *v = rf_envelope("empty-1", NULL, "", 1700000000000, &len);
  wp_send(rk, c->w.topic, "empty-1", v, len);
  free(v);
  v = rf_envelope("utf8-1", NULL, "bad \xe9t\xe9", 1700000000000, &len);
  wp_send(rk, c->w.topic, "utf8-1", v, len);
  free(v);
  /* A note larger than the worker's event.max_bytes (64 KiB by default). */
  size_t big_n = 70000;
  char *big = malloc(big_n + 1);
  ASSERT_NOT_NULL(big);
  for (size_t i = 0; i < big_n; i++) big[i] = i % 2 ? ' ' : 'a';
  big[big_n] = '\0';
  v = rf_envelope("big-1", NULL, big, 1700000000000, &len);
  wp_send(rk, c->w.topic, "big-1", v, len);
  free(v);
  free(big);
  wp_flush(rk);
  rd_kafka_destroy(rk);
  return 5;
}

/* DLQ records per reason, as check_dlq's reader counts them. */
typedef struct dlq_count_s {
  const rh_ctx_t *c;
  int *decode, *invalid, *wrong, *oversize;
} dlq_count_t;

/* One DLQ record: its reason counted, origin topic and detail headers there (an invalid
 * note's detail names the field). */
static bool dlq_record(const rd_kafka_message_t *m, void *arg) {
  const dlq_count_t *d = arg;
  char reason[32], val[300];
  wp_header(m, "sluice-dlq-reason", reason, sizeof reason);
  *d->decode += strcmp(reason, "decode") == 0;
  *d->invalid += strcmp(reason, "invalid") == 0;
  *d->wrong += strcmp(reason, "wrong_payload") == 0;
  *d->oversize += strcmp(reason, "oversize") == 0;
  ASSERT_EQ(wp_header(m, "sluice-origin-topic", val, sizeof val), strlen(d->c->w.topic));
  ASSERT_STR_EQ(val, d->c->w.topic);
  wp_header(m, "sluice-dlq-detail", val, sizeof val);
  if (strcmp(reason, "invalid") == 0)
    ASSERT_MSG(strstr(val, "clinical_note.text") != NULL, "detail: %s", val);
  return true;
}

/* Reads the DLQ topic: n records, each with reason/origin/detail headers. */
static void check_dlq(const rh_ctx_t *c, int n, int *decode, int *invalid, int *wrong,
                      int *oversize) {
  *decode = *invalid = *wrong = *oversize = 0;
  dlq_count_t d = {c, decode, invalid, wrong, oversize};
  ASSERT_EQ(wp_consume_all(&c->w, c->w.dlq, n, 30, dlq_record, &d), n);
}

/* Distinct notes among the alerts read so far, as check_alerts's reader counts them. */
typedef struct alert_seen_s {
  const char *label;
  char seen[RH_MAX_NOTES];
} alert_seen_t;

/* One alert: "records:<note>:<label>" for a known note; counts when the note is new. */
static bool alert_record(const rd_kafka_message_t *m, void *arg) {
  alert_seen_t *s = arg;
  Sluice__V1__Alert *a = sluice__v1__alert__unpack(NULL, m->len, m->payload);
  ASSERT_NOT_NULL(a);
  int note = -1;
  ASSERT_EQ(sscanf(a->key, "note-%d", &note), 1);
  ASSERT(note >= 0 && note < RH_MAX_NOTES);
  char want_id[160];
  snprintf(want_id, sizeof want_id, "records:%s:%s", a->key, s->label);
  ASSERT_STR_EQ(a->alert_id, want_id);
  ASSERT_STR_EQ(a->kind, s->label);
  ASSERT_STR_EQ(a->domain, "records");
  bool fresh = !s->seen[note];
  s->seen[note] = 1;
  sluice__v1__alert__free_unpacked(a, NULL);
  return fresh;
}

/* Waits until the outbox is published, then reads the alerts topic: `want` distinct alert ids
 * "records:<note>:<label>", each an Alert for that note and label. */
static void check_alerts(PGconn *conn, const rh_ctx_t *c, long want, const char *label) {
  for (int i = 0; i < 600 && wp_count(conn, "SELECT count(*) FROM \"%s\".outbox WHERE "
                                            "published_at IS NULL", c->w.schema) != 0; i++)
    usleep(50000);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".outbox WHERE published_at IS NULL",
                     c->w.schema), 0);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".outbox", c->w.schema), want);
  static alert_seen_t s;
  memset(&s, 0, sizeof s);
  s.label = label;
  ASSERT_EQ(wp_consume_all(&c->w, c->w.alerts, (int)want, 20, alert_record, &s), want);
}

TEST(every_note_once_poison_dead_lettered_alerts_published) {
  rh_ctx_t c;
  rh_init(&c, "once");
  /* Alerts for the label the model gives note 0 (evidence on: 2 spans). */
  moe_model_t *m = NULL;
  char err[256], text[RH_NOTE_BYTES + 1];
  ASSERT_EQ(moe_model_load(RF_MODEL, &m, err, sizeof err), MOE_OK);
  const int n = 40;
  int labels[40];
  for (int i = 0; i < n; i++) {
    float probs[64];
    size_t nt, nc;
    rh_text(&c, i, text, sizeof text);
    rf_score(m, text, probs, &nt, &nc);
    labels[i] = 0;
    for (int k = 1; k < moe_model_n_labels(m); k++)
      if (probs[k] > probs[labels[i]]) labels[i] = k;
  }
  char label[128];
  snprintf(label, sizeof label, "%s", moe_model_label(m, labels[0]));
  long want_alerts = 0;
  for (int i = 0; i < n; i++) want_alerts += labels[i] == labels[0];
  moe_model_free(m);
  c.top_evidence = "2";
  c.w.extra[0] = "--records-alert-labels";
  c.w.extra[1] = label;

  rh_produce(&c, 0, n / 2);
  long dead = produce_poison(&c);
  rh_produce(&c, n / 2, n / 2);
  PGconn *conn = wp_db(&c.w);
  pid_t pid = rh_start(&c);
  rh_wait_rows(conn, &c, n, &pid, 1, 60);
  for (int i = 0; i < 200 && wp_count(conn, "SELECT coalesce(sum(next_offset), 0) FROM "
                                            "\"%s\".kafka_offsets", c.w.schema) < n + dead; i++)
    usleep(50000);
  rh_check(conn, &c, 0, n, dead);
  /* Evidence: at most 2 spans a note, each inside the note and each one that lowers the
   * prediction when occluded (positive weight). A note none of whose segments lowers it has
   * none (the shipped bag model has such a note among these 40, at probability 0.40), but
   * nearly every note has some. */
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".record_analysis WHERE "
                           "jsonb_array_length(evidence) > 2", c.w.schema), 0);
  ASSERT_OP(wp_count(conn, "SELECT count(*) FROM \"%s\".record_analysis WHERE "
                           "jsonb_array_length(evidence) >= 1", c.w.schema), >=, n * 9 / 10);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".record_analysis, "
                           "jsonb_array_elements(evidence) e WHERE (e->>'weight')::real <= 0",
                     c.w.schema), 0);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".record_analysis, "
                           "jsonb_array_elements(evidence) e WHERE (e->>'start')::int >= "
                           "(e->>'end')::int OR (e->>'end')::int > 500", c.w.schema), 0);
  int decode, invalid, wrong, oversize;
  check_dlq(&c, (int)dead, &decode, &invalid, &wrong, &oversize);
  ASSERT_EQ(decode, 1);
  ASSERT_EQ(invalid, 2);
  ASSERT_EQ(wrong, 1);
  ASSERT_EQ(oversize, 1);
  ASSERT_EQ((long)wp_metric(c.w.port, "sluice_events_dead_lettered_total{reason=\"invalid\"} "), 2);
  check_alerts(conn, &c, want_alerts, label);
  char series[256];
  snprintf(series, sizeof series, "sluice_records_notes_total{label=\"%s\"} ", label);
  ASSERT_EQ((long)wp_metric(c.w.port, series), want_alerts);
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c.w);
  rh_close(&c);
}

/* Kills the worker as soon as it has committed a first batch, whatever the model's speed: the
 * table is polled every 2 ms from the start, and the notes carry per-token evidence
 * (records.evidence=tokens: one model row per token of a note) so that a stream of them takes
 * long enough for the kill to land inside it. A kill that could not land mid-stream fails. */
TEST(kill9_mid_stream_and_restart_lose_and_repeat_nothing) {
  rh_ctx_t c;
  rh_init(&c, "kill");
  /* Static membership: the restarted worker takes the killed one's place at once instead of
   * waiting for its session to time out. */
  c.w.extra[0] = "--kafka-instance-id";
  c.w.extra[1] = "records-kill";
  c.w.extra[2] = "--records-evidence";
  c.w.extra[3] = "tokens";
  c.top_evidence = "1";
  const int n = 150;
  rh_produce(&c, 0, n);
  PGconn *conn = wp_db(&c.w);
  pid_t pid = rh_start(&c);
  long first = -1;
  for (int i = 0; i < 30000 && (first = rh_rows(conn, &c)) <= 0; i++) {
    int status;
    ASSERT_MSG(waitpid(pid, &status, WNOHANG) == 0, "worker exited (status %d)", status);
    usleep(2000);
  }
  wp_kill9(pid);
  long at_kill = rh_rows(conn, &c);
  fprintf(stderr, "first rows seen: %ld; killed at %ld of %d rows\n", first, at_kill, n);
  ASSERT_MSG(at_kill > 0 && at_kill < n, "the kill did not land mid-stream: %ld of %d rows", at_kill,
             n);
  pid = rh_start(&c);
  rh_wait_rows(conn, &c, n, &pid, 1, 120);
  rh_check(conn, &c, 0, n, 0);
  /* Both workers explained the notes they analysed (one span at most each). */
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".record_analysis WHERE "
                           "jsonb_array_length(evidence) > 1", c.w.schema), 0);
  ASSERT_OP(wp_count(conn, "SELECT count(*) FROM \"%s\".record_analysis WHERE "
                           "jsonb_array_length(evidence) = 1", c.w.schema), >, n / 2);
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c.w);
  rh_close(&c);
}

TEST(two_workers_share_the_stream_through_a_rebalance) {
  rh_ctx_t c;
  rh_init(&c, "reb");
  rh_produce(&c, 0, 100);
  PGconn *conn = wp_db(&c.w);
  pid_t pids[2];
  pids[0] = rh_start(&c);
  rh_wait_rows(conn, &c, 10, pids, 1, 60);
  unsigned port_b = wp_free_port();
  pids[1] = rh_start_on(&c, port_b);
  wp_wait_ready(port_b, 60); /* partitions assigned to both */
  rh_produce(&c, 100, 150);
  rh_wait_rows(conn, &c, 250, pids, 2, 90);
  double a = wp_metric(c.w.port, "sluice_events_scored_total "),
         b = wp_metric(port_b, "sluice_events_scored_total ");
  fprintf(stderr, "worker a scored %.0f, worker b %.0f\n", a, b);
  ASSERT_OP(b, >, 0);
  ASSERT_OP(a, >, 0);
  rh_check(conn, &c, 0, 250, 0);
  ASSERT_EQ(wp_stop(pids[1]), 0);
  ASSERT_EQ(wp_stop(pids[0]), 0);
  wp_drop(conn, &c.w);
  rh_close(&c);
}

static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  ASSERT(in != NULL && out != NULL);
  char buf[65536];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, in)) > 0) ASSERT_EQ(fwrite(buf, 1, k, out), k);
  fclose(in);
  ASSERT_OK(fclose(out));
}

/* Replaces the served model file atomically (the watcher never sees half a file). */
static void install_model(const char *path, const char *from) {
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  copy_file(from, tmp);
  ASSERT_OK(rename(tmp, path));
}

static long rows_of_version(PGconn *conn, const rh_ctx_t *c, const char *version) {
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%%s\".record_analysis WHERE model_version = '%s'",
           version);
  return wp_count(conn, sql, c->w.schema);
}

TEST(model_reload_refuses_a_non_text_model_and_takes_another_classifier) {
  rh_ctx_t c;
  rh_init(&c, "swap");
  char path[256], err[256];
  snprintf(path, sizeof path, "/tmp/wr-swap-%ld.safetensors", (long)getpid());
  copy_file(RF_MODEL, path);
  snprintf(c.w.model, sizeof c.w.model, "%s", path);
  c.w.extra[0] = "--model-watch-interval";
  c.w.extra[1] = "200ms";
  moe_model_t *m1 = NULL, *m2 = NULL;
  ASSERT_EQ(moe_model_load(RF_MODEL, &m1, err, sizeof err), MOE_OK);
  ASSERT_EQ(moe_model_load("models/records-abstracts.safetensors", &m2, err, sizeof err), MOE_OK);
  ASSERT(strcmp(moe_model_version(m1), moe_model_version(m2)) != 0);
  PGconn *conn = wp_db(&c.w);
  rh_produce(&c, 0, 20);
  pid_t pid = rh_start(&c);
  rh_wait_rows(conn, &c, 20, &pid, 1, 60);
  ASSERT_EQ(rows_of_version(conn, &c, moe_model_version(m1)), 20);
  /* A tabular model is refused; the text model goes on serving. */
  install_model(path, "models/fraud.safetensors");
  double failed = -1;
  for (int i = 0;
       i < 200 && (failed = wp_metric(c.w.port, "sluice_model_reload_failures_total ")) < 1; i++)
    usleep(50000);
  ASSERT_OP(failed, >=, 1);
  rh_produce(&c, 20, 10);
  rh_wait_rows(conn, &c, 30, &pid, 1, 60);
  ASSERT_EQ(rows_of_version(conn, &c, moe_model_version(m1)), 30);
  /* Another text classifier is taken: the next notes are analysed with its labels. */
  install_model(path, "models/records-abstracts.safetensors");
  double reloads = -1;
  for (int i = 0; i < 200 && (reloads = wp_metric(c.w.port, "sluice_model_reloads_total ")) < 1; i++)
    usleep(50000);
  ASSERT_OP(reloads, >=, 1);
  rh_produce(&c, 30, 10);
  rh_wait_rows(conn, &c, 40, &pid, 1, 60);
  ASSERT_EQ(rows_of_version(conn, &c, moe_model_version(m2)), 10);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".record_analysis WHERE "
                           "jsonb_array_length(classes) = 5", c.w.schema), 10);
  ASSERT_EQ(wp_stop(pid), 0);
  unlink(path);
  moe_model_free(m1);
  moe_model_free(m2);
  wp_drop(conn, &c.w);
  rh_close(&c);
}

/* Sends one note with the given text and event time. */
static void send_note(const rh_ctx_t *c, int i, const char *text, int64_t event_time_ms) {
  rd_kafka_t *rk = wp_producer(&c->w);
  char id[32], patient[32];
  rh_note_id(i, id, sizeof id);
  snprintf(patient, sizeof patient, "patient-%d", i % 7);
  size_t len;
  uint8_t *v = rf_envelope(id, patient, text, event_time_ms, &len);
  wp_send(rk, c->w.topic, id, v, len);
  free(v);
  wp_flush(rk);
  rd_kafka_destroy(rk);
}

/*
 * A corrected note (its id again, with other text, later) is analysed again and replaces its
 * row; the same note sent again unchanged (a replay, a re-sent note) changes nothing and is
 * counted as a duplicate; an older version arriving after a newer one does not win.
 */
TEST(a_corrected_note_is_analysed_again_a_resent_one_is_not) {
  rh_ctx_t c;
  rh_init(&c, "redo");
  const int n = 10;
  rh_produce(&c, 0, n);
  PGconn *conn = wp_db(&c.w);
  pid_t pid = rh_start(&c);
  rh_wait_rows(conn, &c, n, &pid, 1, 60);
  wp_wait_offsets(conn, c.w.schema, n, 10);
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT \"offset\" FROM \"%%s\".record_analysis WHERE note_id = "
           "'note-00005'");
  long offset5 = wp_count(conn, sql, c.w.schema);

  /* Note 3 corrected (the text of note 20, a second later); note 5 re-sent as it was; then an
   * older version of note 3 (the text of note 21, stamped before the correction). */
  char text[RH_NOTE_BYTES + 1];
  rh_text(&c, 20, text, sizeof text);
  send_note(&c, 3, text, 1700000000000LL + 1000LL * 3 + 1000);
  rh_text(&c, 5, text, sizeof text);
  send_note(&c, 5, text, 1700000000000LL + 1000LL * 5);
  rh_text(&c, 21, text, sizeof text);
  send_note(&c, 3, text, 1700000000000LL + 1000LL * 3 + 500);
  wp_wait_offsets(conn, c.w.schema, n + 3, 30);

  ASSERT_EQ(rh_rows(conn, &c), n);
  /* Note 3 carries the analysis of the correction: the independent scoring of that text. */
  moe_model_t *m = NULL;
  char err[256];
  ASSERT_EQ(moe_model_load(RF_MODEL, &m, err, sizeof err), MOE_OK);
  rh_text(&c, 20, text, sizeof text);
  float probs[64];
  size_t nt, nc;
  rf_score(m, text, probs, &nt, &nc);
  int best = 0;
  for (int k = 1; k < moe_model_n_labels(m); k++)
    if (probs[k] > probs[best]) best = k;
  PGresult *res = wp_query(conn, PGRES_TUPLES_OK,
                           "SELECT predicted_label, score, n_tokens, "
                           "(extract(epoch FROM event_time) * 1000)::bigint FROM "
                           "\"%s\".record_analysis WHERE note_id = 'note-00003'",
                           c.w.schema);
  ASSERT_EQ(PQntuples(res), 1);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), moe_model_label(m, best));
  ASSERT_NEAR(atof(PQgetvalue(res, 0, 1)), probs[best], 1e-4);
  ASSERT_EQ(atol(PQgetvalue(res, 0, 2)), (long)nt);
  ASSERT_EQ(atoll(PQgetvalue(res, 0, 3)), 1700000000000LL + 1000LL * 3 + 1000);
  PQclear(res);
  moe_model_free(m);
  /* Note 5 is the row first stored, and the re-sent copy counted as a duplicate. */
  ASSERT_EQ(wp_count(conn, sql, c.w.schema), offset5);
  ASSERT_EQ(wp_metric(c.w.port, "sluice_results_duplicate_total "), 2);
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c.w);
  rh_close(&c);
}
