/*
 * The smoke pipeline: the whole path the worker will take, minus scoring, run once end to end
 * against the real servers, and checked. It produces N protobuf Envelope{Transaction} events
 * with unique ids to a fresh topic, consumes them in a consumer group through kq_consumer on a
 * libuv loop, writes them to PostgreSQL in batches (one transaction per batch that also stores
 * the next offset of each partition, fenced so that a member that lost a partition commits
 * nothing; on assignment the consumer seeks to the stored offsets), and finally verifies that exactly those N ids are stored, once each.
 *
 * Names used by a run with id R (lowercase letters, digits and '_'): topic "sluice-smoke-R"
 * with `partitions` partitions, consumer group "sluice-smoke-R", tables smoke_R_events
 * (event_id, kafka_partition, kafka_offset, amount, card_id) and smoke_R_offsets (topic,
 * kafka_partition, next_offset), event ids "R-0" ... "R-<N-1>"; event i has card_id
 * "card-<i mod 1000>" and amount (i mod 10000) / 100.
 */
#ifndef SLUICE_SMOKE_H
#define SLUICE_SMOKE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct smoke_opts_s {
  const char *brokers;     /* required */
  const char *dsn;         /* required */
  int64_t events;          /* N, >= 1 */
  int64_t batch_size;      /* events per PostgreSQL transaction, >= 1 */
  int64_t batch_wait_ms;   /* longest wait for a batch to fill; 0: 100 */
  int64_t partitions;      /* of the fresh topic; 0: 4 */
  int64_t timeout_ms;      /* the whole run; 0: 120000 */
  const char *run_id;      /* NULL or "": generated */
  bool keep_tables;        /* false: drop the run's tables at the end */
} smoke_opts_t;

typedef struct smoke_report_s {
  char run_id[48];
  char topic[80];
  char events_table[80];
  char offsets_table[80];
  int64_t produced;         /* records accepted by the producer */
  int64_t delivered;        /* delivery reports without error */
  int64_t consumed;         /* messages handed to the pipeline */
  int64_t decode_errors;    /* messages that were not a valid Envelope{Transaction} */
  int64_t stored;           /* events in committed batches */
  int64_t batches;          /* committed batch transactions */
  int64_t rows;             /* rows in the events table at verification */
  int64_t distinct_ids;     /* distinct event ids there */
  int64_t duplicates;       /* rows beyond the first for an id */
  int64_t missing;          /* expected ids not stored */
  int64_t unexpected;       /* stored ids that were never produced */
  int64_t offsets_sum;      /* sum of stored next offsets (N for a fresh topic) */
  double produce_s;         /* first send to last delivery report */
  double pipeline_s;        /* first send to the last batch committed */
  double events_per_s;      /* N / pipeline_s */
  bool ok;                  /* every check passed */
} smoke_report_t;

/*
 * Runs the pipeline on its own libuv loop (blocking the calling thread until done or
 * timed out) and fills `rep`. Returns SVC_OK when the run completed and the checks were made
 * (look at rep->ok for the verdict), or an error with the reason in errstr: SVC_EINVAL (bad
 * options), SVC_EKAFKA / SVC_EDB / SVC_ETIMEDOUT / ... when the pipeline could not finish.
 */
svc_err_t smoke_run(const smoke_opts_t *opts, smoke_report_t *rep, char *errstr,
                    size_t errstr_size);

/* Writes a short human-readable summary of `rep`. */
void smoke_report_print(const smoke_report_t *rep, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* SLUICE_SMOKE_H */
