/*
 * The events of `sluice replay`: turns the public data sets (the files of ../shared/data, read
 * by the loaders of dataset.h, plus SKAB here) into Envelope protobuf events in event-time
 * order, with stable ids and keys. Separate from the Kafka side (cmd-replay.c) so that the
 * mapping is unit-tested without a broker.
 *
 * The mapping, per task:
 *   fraud          Transaction{amount = Amount, features = V1..V28}; the data has no card id,
 *                  so card_id is a deterministic pseudo id, "card-NNNN" with NNNN = FNV-1a of
 *                  the file's base name and the row, mod CLI_REPLAY_FRAUD_CARDS (about seven
 *                  transactions per card over the 13,799 rows, so per-card state sees
 *                  repeats); key = card_id; time = CLI_REPLAY_EPOCH_MS + Time seconds.
 *   fault-ai4i     SensorReading{device_id = Product ID, device_type = Type, sequence = UDI,
 *                  the five readings}; key = Product ID; time = epoch + UDI minutes (the data
 *                  has no clock; UDI is its order).
 *   fault-cmapss   SensorReading{device_id = "<file stem>-unit-<u>", sequence = cycle, the 3
 *                  settings and 21 sensors}; key = device_id; time = epoch + cycle *
 *                  CLI_REPLAY_CMAPSS_PERIOD_MS, so the engines of a fleet run side by side.
 *   fault-skab     SensorReading{device_id = "skab-<dir>-<file stem>", the 8 channels, sequence
 *                  = row}; key = device_id; time = the file's datetime (read as UTC).
 *   records-*      ClinicalNote{note_id, text} for every row of the file as it is (no
 *                  de-duplication, no label filter: that is the training set's business);
 *                  note_id = "<file stem>-<note_id column>" for MTSamples, "<file stem>-<row>"
 *                  for the abstracts (no id column); key = note_id; time = epoch + row seconds
 *                  (no time column). Labels are never sent.
 * Every event: event_id = "<file base name>:<row>" (row = 0-based data row of the file), with
 * "#<pass>" appended from the second pass of --loop on (times then move on by the data's
 * span plus one period, so event time keeps increasing); source = "sluice-replay". Events are
 * sorted by time, then by file, then by row.
 */
#ifndef CLI_REPLAY_H
#define CLI_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

/* 2026-01-01T00:00:00Z: the event-time origin of data sets whose time is relative. */
#define CLI_REPLAY_EPOCH_MS INT64_C(1767225600000)
#define CLI_REPLAY_FRAUD_CARDS 2000u
#define CLI_REPLAY_CMAPSS_PERIOD_MS INT64_C(60000)
#define CLI_REPLAY_SOURCE "sluice-replay"

/* The replay's own task for SKAB, beside the five of dataset.h. */
#define CLI_REPLAY_SKAB ((int)CLI_TASK__COUNT)
#define CLI_SKAB_CHANNELS 8

/* SKAB files (';'-separated, datetime first, 8 channels, then anomaly;changepoint or nothing). */
typedef struct cli_skab_s {
  char **file;          /* (n_file) paths */
  size_t n_file;
  size_t n_rows;
  uint32_t *file_index; /* (n_rows) */
  int64_t *row;         /* (n_rows) 0-based data row in its file */
  int64_t *time_ms;     /* (n_rows) datetime as UTC milliseconds */
  double *val;          /* (n_rows, CLI_SKAB_CHANNELS) */
  double *anomaly;      /* (n_rows) 0/1, NaN in the anomaly-free file */
} cli_skab_t;

/* The channel names of SKAB, as in the files' header. */
extern const char *const cli_skab_channel[CLI_SKAB_CHANNELS];

/* Loads SKAB files; errors name file, line and column (CLI_EFORMAT, CLI_ENOENT, CLI_ENOMEM). */
int cli_skab_load(cli_skab_t *s, const char *const *files, size_t n_file, char *errstr,
                  size_t errstr_size);
void cli_skab_close(cli_skab_t *s);

/* The notes of the records tasks, every row of the files as it is. */
typedef struct cli_notes_s {
  char **file;          /* (n_file) paths */
  size_t n_file;
  size_t n_rows;
  uint32_t *file_index; /* (n_rows) */
  int64_t *row;         /* (n_rows) */
  char **id;            /* (n_rows) the note id (see above) */
  char **text;          /* (n_rows) */
} cli_notes_t;

typedef struct cli_replay_s {
  int task;            /* a cli_task_t or CLI_REPLAY_SKAB */
  cli_table_t t;       /* fraud, fault-ai4i, fault-cmapss */
  cli_notes_t notes;   /* records-mtsamples, records-abstracts */
  cli_skab_t skab;     /* SKAB */
  char **ai4i_product; /* fault-ai4i (n_rows): Product ID of each table row */
  size_t n;            /* events per pass */
  size_t *order;       /* (n) table / SKAB row of the k-th event in time order */
  int64_t *time_ms;    /* (n) event time of the k-th event (first pass) */
  int64_t span_ms;     /* what one --loop pass adds to event times */
} cli_replay_t;

/* "fault-skab" or one of cli_task_name's. */
int cli_replay_task_parse(const char *name, int *task);

/*
 * Loads the files of `task` and orders the events. On failure nothing needs closing and errstr
 * names the file, line and column.
 */
int cli_replay_open(cli_replay_t *rp, int task, const char *const *files, size_t n_file,
                    char *errstr, size_t errstr_size);
void cli_replay_close(cli_replay_t *rp);

/* One encoded event: strings NUL-terminated; value is the packed Envelope. */
typedef struct cli_replay_event_s {
  char event_id[256];
  char key[256];
  int64_t time_ms;
  uint8_t *value; /* malloc'd, value_len bytes; free() it */
  size_t value_len;
} cli_replay_event_t;

/* Builds the k-th event (0 <= k < n) of pass `pass` (0-based). CLI_ENOMEM or CLI_OK. */
int cli_replay_event(const cli_replay_t *rp, size_t k, uint64_t pass, cli_replay_event_t *ev);

/* The final path component without ".csv" / ".txt" (for ids). Writes into buf. */
const char *cli_replay_stem(const char *path, char *buf, size_t size);

#endif /* CLI_REPLAY_H */
