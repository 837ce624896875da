/*
 * Tests of the events `sluice replay` makes (replay.h), without a broker: small files in the
 * formats of ../shared/data are written here, turned into events, and the decoded Envelopes
 * are checked against what was written: order, ids, keys, times, payloads, --loop passes, and
 * the SKAB loader's errors.
 */
#include "test.h"
#include "test-tmpdir.h"

#include <math.h>
#include <sys/stat.h>

#include "replay.h"
#include "sluice/v1/envelope.pb-c.h"

TEST_TMPDIR(tmpdir, "test-cli-replay")

static const char *tmp_file(char *buf, size_t size, const char *name, const char *content) {
  snprintf(buf, size, "%s/%s", tmpdir, name);
  char *slash = strrchr(buf, '/');
  if (slash != NULL && slash > buf + strlen(tmpdir)) {
    char dir[256];
    snprintf(dir, sizeof(dir), "%.*s", (int)(slash - buf), buf);
    mkdir(dir, 0700);
  }
  FILE *f = fopen(buf, "wb");
  ASSERT_NOT_NULL(f);
  fputs(content, f);
  fclose(f);
  return buf;
}

static Sluice__V1__Envelope *event(const cli_replay_t *rp, size_t k, uint64_t pass,
                                   cli_replay_event_t *ev) {
  ASSERT_OK(cli_replay_event(rp, k, pass, ev));
  Sluice__V1__Envelope *e = sluice__v1__envelope__unpack(NULL, ev->value_len, ev->value);
  ASSERT_NOT_NULL(e);
  free(ev->value);
  ASSERT_STR_EQ(e->event_id, ev->event_id);
  ASSERT_STR_EQ(e->key, ev->key);
  ASSERT_EQ(e->event_time_ms, ev->time_ms);
  ASSERT_EQ(e->schema_version, 1);
  return e;
}

TEST(ai4i_by_udi_with_product_keys) {
  char path[256];
  const char *data =
      "\xEF\xBB\xBFUDI,Product ID,Type,Air temperature [K],Process temperature [K],"
      "Rotational speed [rpm],Torque [Nm],Tool wear [min],Machine failure,TWF,HDF,PWF,OSF,RNF\r\n"
      "7,L47186,L,298.1,308.6,1558,42.4,14,0,0,0,0,0,0\r\n"
      "2,M14861,M,298.2,308.7,1408,46.3,3,0,0,0,0,0,0\r\n"
      "5,H29424,H,298.3,308.9,1500,40.0,9,1,0,1,0,0,0\r\n";
  tmp_file(path, sizeof(path), "ai4i.csv", data);
  const char *files[] = {path};
  cli_replay_t rp;
  char err[512];
  ASSERT_OK(cli_replay_open(&rp, CLI_TASK_AI4I, files, 1, err, sizeof(err)));
  ASSERT_EQ(rp.n, 3);
  static const char *keys[] = {"M14861", "H29424", "L47186"};
  static const long udi[] = {2, 5, 7}, rows[] = {1, 2, 0};
  static const double torque[] = {46.3, 40.0, 42.4};
  for (size_t k = 0; k < 3; k++) {
    cli_replay_event_t ev;
    Sluice__V1__Envelope *e = event(&rp, k, 0, &ev);
    ASSERT_STR_EQ(e->key, keys[k]);
    char id[64];
    snprintf(id, sizeof(id), "ai4i.csv:%ld", rows[k]);
    ASSERT_STR_EQ(e->event_id, id);
    ASSERT_EQ(e->event_time_ms, CLI_REPLAY_EPOCH_MS + udi[k] * 60000);
    ASSERT_STR_EQ(e->source, "replay:ai4i.csv");
    Sluice__V1__SensorReading *s = e->sensor_reading;
    ASSERT_NOT_NULL(s);
    ASSERT_STR_EQ(s->device_id, keys[k]);
    char type[2] = {keys[k][0], '\0'};
    ASSERT_STR_EQ(s->device_type, type);
    ASSERT_EQ(s->sequence, udi[k]);
    ASSERT_EQ(s->n_values, 5);
    ASSERT_STR_EQ(s->values[3]->name, "Torque [Nm]");
    ASSERT_NEAR(s->values[3]->value, torque[k], 1e-12);
    sluice__v1__envelope__free_unpacked(e, NULL);
  }
  /* The second pass of --loop: ids marked, times moved on by the span plus one period. */
  cli_replay_event_t ev;
  Sluice__V1__Envelope *e = event(&rp, 0, 2, &ev);
  ASSERT_STR_EQ(e->event_id, "ai4i.csv:1#2");
  ASSERT_EQ(e->event_time_ms, CLI_REPLAY_EPOCH_MS + 2 * 60000 + 2 * (5 * 60000 + 60000));
  sluice__v1__envelope__free_unpacked(e, NULL);
  cli_replay_close(&rp);
}

TEST(cmapss_fleet_interleaved) {
  char path[256];
  static char data[8192];
  size_t off = 0;
  static const int cycles[] = {3, 2};
  for (int u = 1; u <= 2; u++)
    for (int c = 1; c <= cycles[u - 1]; c++) {
      off += (size_t)snprintf(data + off, sizeof(data) - off, "%d %d 0.1 0.2 100.0", u, c);
      for (int s = 1; s <= 21; s++)
        off += (size_t)snprintf(data + off, sizeof(data) - off, " %d.%d%d", s, u, c);
      off += (size_t)snprintf(data + off, sizeof(data) - off, " \n");
    }
  tmp_file(path, sizeof(path), "test_FD002.txt", data);
  const char *files[] = {path};
  cli_replay_t rp;
  char err[512];
  ASSERT_OK(cli_replay_open(&rp, CLI_TASK_CMAPSS, files, 1, err, sizeof(err)));
  ASSERT_EQ(rp.n, 5);
  /* Cycle by cycle across the fleet: (u1 c1) (u2 c1) (u1 c2) (u2 c2) (u1 c3). */
  static const int unit[] = {1, 2, 1, 2, 1}, cyc[] = {1, 1, 2, 2, 3}, row[] = {0, 3, 1, 4, 2};
  for (size_t k = 0; k < 5; k++) {
    cli_replay_event_t ev;
    Sluice__V1__Envelope *e = event(&rp, k, 0, &ev);
    char key[64], id[64];
    snprintf(key, sizeof(key), "test_FD002-unit-%d", unit[k]);
    snprintf(id, sizeof(id), "test_FD002.txt:%d", row[k]);
    ASSERT_STR_EQ(e->key, key);
    ASSERT_STR_EQ(e->event_id, id);
    ASSERT_EQ(e->event_time_ms, CLI_REPLAY_EPOCH_MS + cyc[k] * CLI_REPLAY_CMAPSS_PERIOD_MS);
    Sluice__V1__SensorReading *s = e->sensor_reading;
    ASSERT_EQ(s->sequence, cyc[k]);
    ASSERT_EQ(s->n_values, 24);
    ASSERT_STR_EQ(s->values[23]->name, "sensor_21");
    char want[32];
    snprintf(want, sizeof(want), "21.%d%d", unit[k], cyc[k]);
    ASSERT_NEAR(s->values[23]->value, strtod(want, NULL), 1e-12);
    sluice__v1__envelope__free_unpacked(e, NULL);
  }
  cli_replay_close(&rp);
}

TEST(notes_every_row_with_ids) {
  char mt[256], ab[256];
  tmp_file(mt, sizeof(mt), "mt.csv",
           "note_id,description,medical_specialty,sample_name,transcription,keywords\n"
           "17,d,Urology,s,\"HISTORY:, line one\nline \"\"two\"\"\",k\n"
           "4,d,Urology,s,\"HISTORY:, line one\nline \"\"two\"\"\",k\n"
           "9,d,Surgery,s,,k\n");
  const char *files[] = {mt};
  cli_replay_t rp;
  char err[512];
  ASSERT_OK(cli_replay_open(&rp, CLI_TASK_MTSAMPLES, files, 1, err, sizeof(err)));
  /* Duplicates and the empty note are sent too: the stream is the file. */
  ASSERT_EQ(rp.n, 3);
  static const char *ids[] = {"mt-17", "mt-4", "mt-9"};
  for (size_t k = 0; k < 3; k++) {
    cli_replay_event_t ev;
    Sluice__V1__Envelope *e = event(&rp, k, 0, &ev);
    ASSERT_STR_EQ(e->key, ids[k]);
    ASSERT_EQ(e->payload_case, SLUICE__V1__ENVELOPE__PAYLOAD_CLINICAL_NOTE);
    ASSERT_STR_EQ(e->clinical_note->note_id, ids[k]);
    ASSERT_STR_EQ(e->clinical_note->text, k < 2 ? "HISTORY:, line one\nline \"two\"" : "");
    ASSERT_EQ(e->event_time_ms, CLI_REPLAY_EPOCH_MS + (int64_t)k * 1000);
    sluice__v1__envelope__free_unpacked(e, NULL);
  }
  cli_replay_close(&rp);
  tmp_file(ab, sizeof(ab), "abstracts.csv", "condition_label,medical_abstract\n3,\"a, b\"\n1,c\n");
  files[0] = ab;
  ASSERT_OK(cli_replay_open(&rp, CLI_TASK_ABSTRACTS, files, 1, err, sizeof(err)));
  ASSERT_EQ(rp.n, 2);
  cli_replay_event_t ev;
  Sluice__V1__Envelope *e = event(&rp, 1, 0, &ev);
  ASSERT_STR_EQ(e->key, "abstracts-1");
  ASSERT_STR_EQ(e->clinical_note->text, "c");
  sluice__v1__envelope__free_unpacked(e, NULL);
  cli_replay_close(&rp);
  /* A file without the text column. */
  files[0] = mt;
  ASSERT_EQ(cli_replay_open(&rp, CLI_TASK_ABSTRACTS, files, 1, err, sizeof(err)), CLI_EFORMAT);
  ASSERT_STR_CONTAINS(err, "medical_abstract");
}

#define SKAB_HEAD                                                                             \
  "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;" \
  "Voltage;Volume Flow RateRMS"

TEST(skab_files) {
  char a[256], b[256];
  tmp_file(a, sizeof(a), "valve2/3.csv",
           SKAB_HEAD ";anomaly;changepoint\n"
                     "2020-03-09 10:14:35;0.1;0.2;1.3;0.05;79.3;26.0;233.0;32.0;1.0;0.0\n"
                     "2020-03-09 10:14:33;0.1;0.2;1.3;0.05;79.5;26.0;233.0;32.0;0.0;0.0\n");
  tmp_file(b, sizeof(b), "anomaly-free/anomaly-free.csv",
           SKAB_HEAD "\n2020-03-09 10:14:34;0.3;0.2;1.3;0.05;80.0;26.0;233.0;32.0\n");
  const char *files[] = {a, b};
  cli_replay_t rp;
  char err[512];
  ASSERT_OK(cli_replay_open(&rp, CLI_REPLAY_SKAB, files, 2, err, sizeof(err)));
  ASSERT_EQ(rp.n, 3);
  /* 2020-03-09 10:14:33 UTC = 1583748873 s. */
  static const char *keys[] = {"skab-valve2-3", "skab-anomaly-free-anomaly-free", "skab-valve2-3"};
  static const char *ids[] = {"3.csv:1", "anomaly-free.csv:0", "3.csv:0"};
  static const double temp[] = {79.5, 80.0, 79.3};
  for (size_t k = 0; k < 3; k++) {
    cli_replay_event_t ev;
    Sluice__V1__Envelope *e = event(&rp, k, 0, &ev);
    ASSERT_STR_EQ(e->key, keys[k]);
    ASSERT_STR_EQ(e->event_id, ids[k]);
    ASSERT_EQ(e->event_time_ms, (INT64_C(1583748873) + (int64_t)k) * 1000);
    ASSERT_STR_EQ(e->sensor_reading->values[4]->name, "Temperature");
    ASSERT_NEAR(e->sensor_reading->values[4]->value, temp[k], 1e-12);
    sluice__v1__envelope__free_unpacked(e, NULL);
  }
  cli_replay_close(&rp);

  static const struct { const char *content, *want; } bad[] = {
      {SKAB_HEAD "\n2020-03-09 10:14:3;0.1;0.2;1.3;0.05;79.3;26.0;233.0;32.0\n", ":2: column 1"},
      {SKAB_HEAD "\n2020-03-09 10:14:33;0.1;x;1.3;0.05;79.3;26.0;233.0;32.0\n",
       ":2: column 3 ('Accelerometer2RMS')"},
      {SKAB_HEAD "\n2020-03-09 10:14:33;0.1;0.2\n", ":2: expected 9 fields"},
      {"datetime;Accel;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;Voltage;"
       "Volume Flow RateRMS\n",
       ":1: column 2: expected 'Accelerometer1RMS'"},
      {"time,a,b\n", ":1: expected the SKAB header"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char p[256];
    tmp_file(p, sizeof(p), "bad.csv", bad[i].content);
    files[0] = p;
    ASSERT_EQ(cli_replay_open(&rp, CLI_REPLAY_SKAB, files, 1, err, sizeof(err)), CLI_EFORMAT);
    ASSERT_STR_CONTAINS(err, "bad.csv");
    ASSERT_STR_CONTAINS(err, bad[i].want);
  }
}

TEST(fraud_pseudo_cards) {
  char path[256];
  static char data[16384];
  size_t off = (size_t)snprintf(data, sizeof(data), "Time");
  for (int j = 1; j <= 28; j++) off += (size_t)snprintf(data + off, sizeof(data) - off, ",V%d", j);
  off += (size_t)snprintf(data + off, sizeof(data) - off, ",Amount,Class\n");
  for (int i = 0; i < 50; i++) {
    off += (size_t)snprintf(data + off, sizeof(data) - off, "%d", 100 - i);
    for (int j = 1; j <= 28; j++)
      off += (size_t)snprintf(data + off, sizeof(data) - off, ",%d.25", j * 100 + i);
    off += (size_t)snprintf(data + off, sizeof(data) - off, ",%d.5,%d\n", i, i % 7 == 0);
  }
  tmp_file(path, sizeof(path), "cc.csv", data);
  const char *files[] = {path};
  cli_replay_t rp;
  char err[512];
  ASSERT_OK(cli_replay_open(&rp, CLI_TASK_FRAUD, files, 1, err, sizeof(err)));
  ASSERT_EQ(rp.n, 50);
  for (size_t k = 0; k < 50; k++) {
    cli_replay_event_t ev;
    Sluice__V1__Envelope *e = event(&rp, k, 0, &ev);
    int row = 49 - (int)k; /* Time decreases with the row */
    char id[32];
    snprintf(id, sizeof(id), "cc.csv:%d", row);
    ASSERT_STR_EQ(e->event_id, id);
    ASSERT_EQ(e->event_time_ms, CLI_REPLAY_EPOCH_MS + (100 - row) * 1000);
    Sluice__V1__Transaction *tx = e->transaction;
    ASSERT_NOT_NULL(tx);
    ASSERT_NEAR(tx->amount, row + 0.5, 1e-12);
    ASSERT_EQ(tx->n_features, 28);
    ASSERT_EQ(tx->features[13], 1400.25f + (float)row);
    ASSERT(strncmp(tx->card_id, "card-", 5) == 0);
    ASSERT_STR_EQ(tx->card_id, e->key);
    /* The card is a function of file name and row only. */
    cli_replay_event_t again;
    ASSERT_OK(cli_replay_event(&rp, k, 3, &again));
    free(again.value);
    ASSERT_STR_EQ(again.key, e->key);
    sluice__v1__envelope__free_unpacked(e, NULL);
  }
  cli_replay_close(&rp);
}

