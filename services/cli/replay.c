/* The events of `sluice replay` (replay.h): SKAB loading, event order, Envelope encoding. */
#include "replay.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csv.h"
#include "sluice/v1/envelope.pb-c.h"

const char *const cli_skab_channel[CLI_SKAB_CHANNELS] = {
    "Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure",
    "Temperature",       "Thermocouple",      "Voltage", "Volume Flow RateRMS"};

/* ---- SKAB ------------------------------------------------------------------------------- */

void cli_skab_close(cli_skab_t *s) {
  for (size_t f = 0; s->file && f < s->n_file; f++) free(s->file[f]);
  free(s->file);
  free(s->file_index);
  free(s->row);
  free(s->time_ms);
  free(s->val);
  free(s->anomaly);
  memset(s, 0, sizeof(*s));
}

/* "YYYY-MM-DD HH:MM:SS" as UTC milliseconds; -1 when malformed. */
static int64_t parse_datetime(const char *s) {
  int Y, M, D, h, m, sec, n = 0;
  if (sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 || s[n] != '\0' ||
      n != 19 || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
    return -1;
  struct tm tm = {0};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  return (int64_t)t * 1000;
}

static int parse_num(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

static int skab_reserve(cli_skab_t *s, size_t *cap) {
  if (s->n_rows < *cap) return CLI_OK;
  size_t nc = *cap ? *cap * 2 : 1024;
  void *p;
#define GROW(field, per)                                                   \
  if ((p = realloc(s->field, nc * (per) * sizeof(*s->field))) == NULL)     \
    return CLI_ENOMEM;                                                     \
  s->field = p;
  GROW(file_index, 1)
  GROW(row, 1)
  GROW(time_ms, 1)
  GROW(val, CLI_SKAB_CHANNELS)
  GROW(anomaly, 1)
#undef GROW
  *cap = nc;
  return CLI_OK;
}

static int skab_load_file(cli_skab_t *s, uint32_t fi, size_t *cap, char *errstr,
                          size_t errstr_size) {
  cli_csv_t csv;
  int eof = 0, err = cli_csv_open(&csv, s->file[fi], ';', errstr, errstr_size);
  if (err) return err;
  if ((err = cli_csv_next(&csv, &eof, errstr, errstr_size))) goto done;
  /* The header: datetime, the 8 channels, then anomaly;changepoint (absent when anomaly-free). */
  int labelled = csv.n_field == 11;
  if (eof || (csv.n_field != 9 && csv.n_field != 11) || strcmp(csv.field[0], "datetime") != 0) {
    err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                    "%s:1: expected the SKAB header datetime;%s;...;%s[;anomaly;changepoint]",
                    s->file[fi], cli_skab_channel[0], cli_skab_channel[CLI_SKAB_CHANNELS - 1]);
    goto done;
  }
  for (int c = 0; c < CLI_SKAB_CHANNELS; c++)
    if (strcmp(csv.field[1 + c], cli_skab_channel[c]) != 0) {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                      "%s:1: column %d: expected '%s', found '%s'", s->file[fi], c + 2,
                      cli_skab_channel[c], csv.field[1 + c]);
      goto done;
    }
  if (labelled && (strcmp(csv.field[9], "anomaly") || strcmp(csv.field[10], "changepoint"))) {
    err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                    "%s:1: columns 10-11: expected 'anomaly' and 'changepoint'", s->file[fi]);
    goto done;
  }
  for (int64_t r = 0;; r++) {
    if ((err = cli_csv_next(&csv, &eof, errstr, errstr_size)) || eof) break;
    if (csv.n_field != (size_t)(labelled ? 11 : 9)) {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size, "%s:%zu: expected %d fields, found %zu",
                      s->file[fi], csv.record_line, labelled ? 11 : 9, csv.n_field);
      break;
    }
    if ((err = skab_reserve(s, cap))) {
      cli__fail(err, errstr, errstr_size, "out of memory");
      break;
    }
    size_t i = s->n_rows;
    if ((s->time_ms[i] = parse_datetime(csv.field[0])) < 0) {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                      "%s:%zu: column 1 ('datetime'): expected YYYY-MM-DD HH:MM:SS, found '%s'",
                      s->file[fi], csv.record_line, csv.field[0]);
      break;
    }
    for (int c = 0; c < CLI_SKAB_CHANNELS + (labelled ? 1 : 0); c++) {
      double v;
      if (parse_num(csv.field[1 + c], &v) != 0) {
        err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                        "%s:%zu: column %d ('%s'): expected a finite number, found '%s'",
                        s->file[fi], csv.record_line, c + 2,
                        c < CLI_SKAB_CHANNELS ? cli_skab_channel[c] : "anomaly", csv.field[1 + c]);
        goto done;
      }
      if (c < CLI_SKAB_CHANNELS) s->val[i * CLI_SKAB_CHANNELS + (size_t)c] = v;
      else s->anomaly[i] = v;
    }
    if (!labelled) s->anomaly[i] = NAN;
    s->file_index[i] = fi;
    s->row[i] = r;
    s->n_rows++;
  }
done:
  cli_csv_close(&csv);
  return err;
}

int cli_skab_load(cli_skab_t *s, const char *const *files, size_t n_file, char *errstr,
                  size_t errstr_size) {
  memset(s, 0, sizeof(*s));
  size_t cap = 0;
  int err = CLI_ENOMEM;
  if ((s->file = calloc(n_file ? n_file : 1, sizeof(char *))) == NULL) goto fail;
  for (size_t f = 0; f < n_file; f++) {
    if ((s->file[f] = strdup(files[f])) == NULL) goto fail;
    s->n_file++;
  }
  for (size_t f = 0; f < n_file; f++)
    if ((err = skab_load_file(s, (uint32_t)f, &cap, errstr, errstr_size))) goto fail_quiet;
  return CLI_OK;
fail:
  cli__fail(err, errstr, errstr_size, "out of memory");
fail_quiet:
  cli_skab_close(s);
  return err;
}

/* ---- notes ------------------------------------------------------------------------------ */

static void notes_close(cli_notes_t *nt) {
  for (size_t f = 0; nt->file && f < nt->n_file; f++) free(nt->file[f]);
  for (size_t i = 0; i < nt->n_rows; i++) {
    free(nt->id[i]);
    free(nt->text[i]);
  }
  free(nt->file);
  free(nt->file_index);
  free(nt->row);
  free(nt->id);
  free(nt->text);
  memset(nt, 0, sizeof(*nt));
}

static int notes_reserve(cli_notes_t *nt, size_t *cap) {
  if (nt->n_rows < *cap) return CLI_OK;
  size_t nc = *cap ? *cap * 2 : 1024;
  void *p;
#define GROW(field)                                                        \
  if ((p = realloc(nt->field, nc * sizeof(*nt->field))) == NULL) return CLI_ENOMEM; \
  nt->field = p;
  GROW(file_index)
  GROW(row)
  GROW(id)
  GROW(text)
#undef GROW
  *cap = nc;
  return CLI_OK;
}


static int notes_load(cli_notes_t *nt, int task, const char *const *files, size_t n_file,
                      char *errstr, size_t errstr_size) {
  const char *text_col = task == CLI_TASK_MTSAMPLES ? "transcription" : "medical_abstract";
  const char *id_col = task == CLI_TASK_MTSAMPLES ? "note_id" : NULL;
  size_t cap = 0;
  int err = CLI_ENOMEM;
  memset(nt, 0, sizeof(*nt));
  if ((nt->file = calloc(n_file ? n_file : 1, sizeof(char *))) == NULL) goto oom;
  for (size_t f = 0; f < n_file; f++) {
    if ((nt->file[f] = strdup(files[f])) == NULL) goto oom;
    nt->n_file++;
  }
  for (size_t f = 0; f < n_file; f++) {
    cli_csv_t csv;
    int eof = 0;
    if ((err = cli_csv_open(&csv, files[f], ',', errstr, errstr_size))) goto fail;
    err = cli_csv_next(&csv, &eof, errstr, errstr_size);
    int tc = err || eof ? -1 : cli_csv_find(&csv, text_col);
    int ic = err || eof || id_col == NULL ? -1 : cli_csv_find(&csv, id_col);
    if (err == CLI_OK && (tc < 0 || (id_col != NULL && ic < 0)))
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size, "%s:1: no '%s' column in the header",
                      files[f], tc < 0 ? text_col : id_col);
    char stem[128];
    cli_replay_stem(files[f], stem, sizeof(stem));
    for (int64_t r = 0; err == CLI_OK; r++) {
      if ((err = cli_csv_next(&csv, &eof, errstr, errstr_size)) || eof) break;
      if ((size_t)tc >= csv.n_field || (ic >= 0 && (size_t)ic >= csv.n_field)) {
        err = cli__fail(CLI_EFORMAT, errstr, errstr_size, "%s:%zu: expected a '%s' field",
                        files[f], csv.record_line, (size_t)tc >= csv.n_field ? text_col : id_col);
        break;
      }
      if ((err = notes_reserve(nt, &cap))) break;
      size_t i = nt->n_rows;
      char id[256];
      if (ic >= 0)
        snprintf(id, sizeof(id), "%s-%s", stem, csv.field[ic]);
      else
        snprintf(id, sizeof(id), "%s-%lld", stem, (long long)r);
      nt->id[i] = strdup(id);
      nt->text[i] = strdup(csv.field[tc]);
      nt->file_index[i] = (uint32_t)f;
      nt->row[i] = r;
      nt->n_rows++;
      if (nt->id[i] == NULL || nt->text[i] == NULL) err = CLI_ENOMEM;
    }
    cli_csv_close(&csv);
    if (err == CLI_ENOMEM) goto oom;
    if (err) goto fail;
  }
  return CLI_OK;
oom:
  err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
fail:
  notes_close(nt);
  return err;
}

/* ---- ordering --------------------------------------------------------------------------- */

const char *cli_replay_stem(const char *path, char *buf, size_t size) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (n > 4 && (strcmp(base + n - 4, ".csv") == 0 || strcmp(base + n - 4, ".txt") == 0)) n -= 4;
  snprintf(buf, size, "%.*s", (int)n, base);
  return buf;
}

static const char *base_name(const char *path) {
  const char *b = strrchr(path, '/');
  return b ? b + 1 : path;
}

int cli_replay_task_parse(const char *name, int *task) {
  if (strcmp(name, "fault-skab") == 0) {
    *task = CLI_REPLAY_SKAB;
    return CLI_OK;
  }
  cli_task_t t;
  if (cli_task_parse(name, &t) != CLI_OK) return CLI_EUNSUPPORTED;
  *task = (int)t;
  return CLI_OK;
}

/* For the qsort of event order: time, then file, then row. */
typedef struct order_key_s {
  int64_t time_ms;
  uint32_t file;
  int64_t row;
  size_t src;
} order_key_t;

static int cmp_order(const void *a, const void *b) {
  const order_key_t *x = a, *y = b;
  if (x->time_ms != y->time_ms) return x->time_ms < y->time_ms ? -1 : 1;
  if (x->file != y->file) return x->file < y->file ? -1 : 1;
  if (x->row != y->row) return x->row < y->row ? -1 : 1;
  return 0;
}

/* AI4I's Product ID is an identifier, not a table column: read it again, by data row. */
static int load_ai4i_products(cli_replay_t *rp, char *errstr, size_t errstr_size) {
  cli_table_t *t = &rp->t;
  if ((rp->ai4i_product = calloc(t->n_rows ? t->n_rows : 1, sizeof(char *))) == NULL)
    return cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
  int err = CLI_OK;
  for (uint32_t f = 0; f < t->n_file && err == CLI_OK; f++) {
    cli_csv_t csv;
    int eof = 0;
    if ((err = cli_csv_open(&csv, t->file[f], ',', errstr, errstr_size))) return err;
    err = cli_csv_next(&csv, &eof, errstr, errstr_size);
    int col = err || eof ? -1 : cli_csv_find(&csv, "Product ID");
    if (err == CLI_OK && col < 0)
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size, "%s:1: no 'Product ID' column",
                      t->file[f]);
    /* Table rows of one file are in file order; walk both together. */
    size_t i = 0;
    while (i < t->n_rows && t->file_index[i] != f) i++;
    for (int64_t r = 0; err == CLI_OK; r++) {
      if ((err = cli_csv_next(&csv, &eof, errstr, errstr_size)) || eof) break;
      if (i < t->n_rows && t->file_index[i] == f && t->row[i] == r) {
        if ((size_t)col >= csv.n_field) {
          err = cli__fail(CLI_EFORMAT, errstr, errstr_size, "%s:%zu: no Product ID field",
                          t->file[f], csv.record_line);
          break;
        }
        if ((rp->ai4i_product[i] = strdup(csv.field[col])) == NULL) {
          err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
          break;
        }
        i++;
      }
    }
    cli_csv_close(&csv);
  }
  for (size_t i = 0; err == CLI_OK && i < t->n_rows; i++)
    if (rp->ai4i_product[i] == NULL)
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size, "%s: row %lld: no Product ID",
                      t->file[t->file_index[i]], (long long)t->row[i]);
  return err;
}

int cli_replay_open(cli_replay_t *rp, int task, const char *const *files, size_t n_file,
                    char *errstr, size_t errstr_size) {
  memset(rp, 0, sizeof(*rp));
  rp->task = task;
  int err;
  size_t n;
  if (task == CLI_REPLAY_SKAB) {
    if ((err = cli_skab_load(&rp->skab, files, n_file, errstr, errstr_size))) return err;
    n = rp->skab.n_rows;
  } else if (task == CLI_TASK_MTSAMPLES || task == CLI_TASK_ABSTRACTS) {
    if ((err = notes_load(&rp->notes, task, files, n_file, errstr, errstr_size))) return err;
    n = rp->notes.n_rows;
  } else {
    if ((err = cli_table_load(&rp->t, (cli_task_t)task, files, n_file, errstr, errstr_size)))
      return err;
    n = rp->t.n_rows;
    if (task == CLI_TASK_AI4I && (err = load_ai4i_products(rp, errstr, errstr_size))) goto fail;
  }
  order_key_t *keys = malloc((n ? n : 1) * sizeof(*keys));
  rp->order = malloc((n ? n : 1) * sizeof(size_t));
  rp->time_ms = malloc((n ? n : 1) * sizeof(int64_t));
  if (keys == NULL || rp->order == NULL || rp->time_ms == NULL) {
    free(keys);
    err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
    goto fail;
  }
  int64_t period = 1000;
  for (size_t i = 0; i < n; i++) {
    order_key_t *k = &keys[i];
    k->src = i;
    if (task == CLI_REPLAY_SKAB) {
      k->file = rp->skab.file_index[i];
      k->row = rp->skab.row[i];
      k->time_ms = rp->skab.time_ms[i];
      continue;
    }
    if (task == CLI_TASK_MTSAMPLES || task == CLI_TASK_ABSTRACTS) {
      k->file = rp->notes.file_index[i];
      k->row = rp->notes.row[i];
      k->time_ms = CLI_REPLAY_EPOCH_MS + k->row * 1000;
      continue;
    }
    const cli_table_t *t = &rp->t;
    k->file = t->file_index[i];
    k->row = t->row[i];
    switch ((cli_task_t)task) {
    case CLI_TASK_FRAUD: k->time_ms = CLI_REPLAY_EPOCH_MS + llround(t->order[i] * 1000.0); break;
    case CLI_TASK_AI4I:
      period = 60000;
      k->time_ms = CLI_REPLAY_EPOCH_MS + llround(t->order[i]) * period;
      break;
    case CLI_TASK_CMAPSS:
      period = CLI_REPLAY_CMAPSS_PERIOD_MS;
      k->time_ms = CLI_REPLAY_EPOCH_MS + llround(t->order[i]) * period;
      break;
    default: k->time_ms = CLI_REPLAY_EPOCH_MS + k->row * 1000; break;
    }
  }
  qsort(keys, n, sizeof(*keys), cmp_order);
  for (size_t i = 0; i < n; i++) {
    rp->order[i] = keys[i].src;
    rp->time_ms[i] = keys[i].time_ms;
  }
  rp->span_ms = n ? rp->time_ms[n - 1] - rp->time_ms[0] + period : 0;
  rp->n = n;
  free(keys);
  return CLI_OK;
fail:
  cli_replay_close(rp);
  return err;
}

void cli_replay_close(cli_replay_t *rp) {
  if (rp->ai4i_product != NULL)
    for (size_t i = 0; i < rp->t.n_rows; i++) free(rp->ai4i_product[i]);
  free(rp->ai4i_product);
  if (rp->task == CLI_REPLAY_SKAB)
    cli_skab_close(&rp->skab);
  else if (rp->task == CLI_TASK_MTSAMPLES || rp->task == CLI_TASK_ABSTRACTS)
    notes_close(&rp->notes);
  else if (rp->t.n_rows || rp->t.file)
    cli_table_close(&rp->t);
  free(rp->order);
  free(rp->time_ms);
  memset(rp, 0, sizeof(*rp));
}

/* ---- encoding ----------------------------------------------------------------------------- */

int cli_replay_event(const cli_replay_t *rp, size_t k, uint64_t pass, cli_replay_event_t *ev) {
  size_t i = rp->order[k];
  int skab = rp->task == CLI_REPLAY_SKAB;
  int notes = rp->task == CLI_TASK_MTSAMPLES || rp->task == CLI_TASK_ABSTRACTS;
  const char *path = skab    ? rp->skab.file[rp->skab.file_index[i]]
                     : notes ? rp->notes.file[rp->notes.file_index[i]]
                             : rp->t.file[rp->t.file_index[i]];
  int64_t row = skab ? rp->skab.row[i] : notes ? rp->notes.row[i] : rp->t.row[i];
  char stem[128], source[160];
  cli_replay_stem(path, stem, sizeof(stem));
  snprintf(source, sizeof(source), "replay:%s", base_name(path));
  if (pass == 0)
    snprintf(ev->event_id, sizeof(ev->event_id), "%s:%lld", base_name(path), (long long)row);
  else
    snprintf(ev->event_id, sizeof(ev->event_id), "%s:%lld#%llu", base_name(path),
             (long long)row, (unsigned long long)pass);
  ev->time_ms = rp->time_ms[k] + (int64_t)pass * rp->span_ms;
  ev->value = NULL;

  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  Sluice__V1__Transaction tx = SLUICE__V1__TRANSACTION__INIT;
  Sluice__V1__SensorReading sr = SLUICE__V1__SENSOR_READING__INIT;
  Sluice__V1__ClinicalNote note = SLUICE__V1__CLINICAL_NOTE__INIT;
  /* The largest payloads: 28 features, 24 C-MAPSS channels. */
  float feat[32];
  Sluice__V1__ChannelValue cv[32], *cvp[32];
  char dir[128];
  env.event_id = ev->event_id;
  env.key = ev->key;
  env.has_event_time_ms = 1;
  env.event_time_ms = ev->time_ms;
  env.has_schema_version = 1;
  env.schema_version = 1;
  env.source = source;
  const cli_table_t *t = &rp->t;
  switch (rp->task) {
  case CLI_TASK_FRAUD: {
    char rowkey[160];
    int len = snprintf(rowkey, sizeof(rowkey), "%s:%lld", base_name(path), (long long)row);
    unsigned card = (unsigned)(cli_fnv1a64(rowkey, (size_t)len) % CLI_REPLAY_FRAUD_CARDS);
    snprintf(ev->key, sizeof(ev->key), "card-%04u", card);
    tx.card_id = ev->key;
    for (size_t j = 0; j < t->n_num; j++) {
      double v = t->num[i * t->n_num + j];
      if (strcmp(t->num_name[j], "Amount") == 0) {
        tx.has_amount = 1;
        tx.amount = v;
      } else if (tx.n_features < 32) {
        feat[tx.n_features++] = (float)v;
      }
    }
    tx.features = feat;
    env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
    env.transaction = &tx;
    break;
  }
  case CLI_TASK_AI4I:
  case CLI_TASK_CMAPSS:
  case CLI_REPLAY_SKAB: {
    size_t nch;
    if (rp->task == CLI_TASK_AI4I) {
      snprintf(ev->key, sizeof(ev->key), "%s", rp->ai4i_product[i]);
      if (t->n_cat > 0) sr.device_type = t->cat_level[0][t->cat[i * t->n_cat]];
      sr.sequence = llround(t->order[i]);
    } else if (rp->task == CLI_TASK_CMAPSS) {
      snprintf(ev->key, sizeof(ev->key), "%s-unit-%llu", stem, (unsigned long long)t->group[i]);
      sr.sequence = llround(t->order[i]);
    } else {
      /* The directory names the experiment (valve1, other, anomaly-free). */
      const char *slash = strrchr(path, '/');
      dir[0] = '\0';
      if (slash != NULL) {
        const char *p = slash;
        while (p > path && p[-1] != '/') p--;
        snprintf(dir, sizeof(dir), "%.*s-", (int)(slash - p), p);
      }
      snprintf(ev->key, sizeof(ev->key), "skab-%s%s", dir, stem);
      sr.sequence = row;
    }
    sr.has_sequence = 1;
    sr.device_id = ev->key;
    sr.has_timestamp_ms = 1;
    sr.timestamp_ms = ev->time_ms;
    nch = skab ? CLI_SKAB_CHANNELS : t->n_num;
    for (size_t c = 0; c < nch && c < 32; c++) {
      Sluice__V1__ChannelValue init = SLUICE__V1__CHANNEL_VALUE__INIT;
      cv[c] = init;
      cv[c].name = (char *)(skab ? cli_skab_channel[c] : t->num_name[c]);
      cv[c].has_value = 1;
      cv[c].value = skab ? rp->skab.val[i * CLI_SKAB_CHANNELS + c] : t->num[i * t->n_num + c];
      cvp[c] = &cv[c];
      sr.n_values++;
    }
    sr.values = cvp;
    env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_SENSOR_READING;
    env.sensor_reading = &sr;
    break;
  }
  default:
    snprintf(ev->key, sizeof(ev->key), "%s", rp->notes.id[i]);
    note.note_id = ev->key;
    note.text = rp->notes.text[i];
    env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_CLINICAL_NOTE;
    env.clinical_note = &note;
    break;
  }
  ev->value_len = sluice__v1__envelope__get_packed_size(&env);
  if ((ev->value = malloc(ev->value_len ? ev->value_len : 1)) == NULL) return CLI_ENOMEM;
  sluice__v1__envelope__pack(&env, ev->value);
  return CLI_OK;
}
