/*
 * bench-pipeline-pgtx: the worker's per-batch PostgreSQL statement on its own, without Kafka or
 * a model, to measure what one batch commit costs and why. It migrates a fresh schema, then
 * commits `--batches` batches of `--batch` rows built with wk_stmt exactly as the worker
 * builds them (46 model inputs, an experts JSON array, one 654-byte card state per row over
 * `--cards` cards, an alert for 1 row in 50, one offset row per partition), timing each
 * statement from send to result. With --explain it also prints EXPLAIN (ANALYZE, BUFFERS, WAL)
 * of one more batch, rolled back. Ends with one JSON line:
 *   {"batch":256,"batches":40,"stmt_ms_p50":..,"stmt_ms_p99":..,"rows_per_s":..,"build_ms_p50":..}
 *
 * Usage: bench-pipeline-pgtx --dsn DSN [--batch 256] [--batches 40] [--cards 50000]
 *                            [--schema NAME] [--explain]
 * The statement is built with the generic builder and the fraud pipeline's tables (stmt.h,
 * pipeline-fraud.h) and sent as the worker sends it: prepared once, every array in binary.
 * (Commit 9d2f9e6 also had --builder batch-tx|both, the fraud-only builder stmt.c replaced,
 * alternated batch by batch in one session: bench/pipeline/README.md has the figures.)
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline-fraud.h"
#include "schema.h"
#include "stmt.h"

#define PGTX_N_INPUT 46
#define PGTX_STATE_LEN 654

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/*
 * CPU seconds (user + system) the server process has used, from /proc (the server runs on
 * this machine): unlike wall time this hardly changes with the load other programs put on
 * the machine, so it shows what a change to the statement saves. -1 if unreadable.
 */
static double proc_cpu_s(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long ut = 0, st = 0;
  if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                          &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p) {
  qsort(v, n, sizeof *v, cmp_double);
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return v[i];
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Fills st with batch number `bi` of `n` rows. */
static void build_batch(wk_stmt_t *st, long bi, int n, long cards, int partitions) {
  wk_stmt_reset(st);
  float input[PGTX_N_INPUT];
  uint8_t state[PGTX_STATE_LEN];
  static const char experts[] = "[{\"layer\":0,\"expert\":1,\"weight\":0.61},"
                                "{\"layer\":0,\"expert\":3,\"weight\":0.39}]";
  for (int i = 0; i < n; i++) {
    long seq = bi * n + i;
    char id[64], card[32];
    snprintf(id, sizeof id, "bench-%ld", seq);
    snprintf(card, sizeof card, "card-%" PRIu64, next_rand() % (uint64_t)cards);
    for (int j = 0; j < PGTX_N_INPUT; j++) input[j] = (float)(next_rand() % 100000) / 997.0f;
    for (int j = 0; j < PGTX_STATE_LEN; j++) state[j] = (uint8_t)next_rand();
    int32_t part = (int32_t)(seq % partitions);
    int64_t off = seq / partitions;
    float score = (float)(next_rand() % 1000) / 1000.0f;
    wk_decision_t d = score >= 0.98f ? WK_DECISION_BLOCK
                      : score >= 0.49f ? WK_DECISION_REVIEW : WK_DECISION_ALLOW;
    wk_result_row_t r = {.domain = "fraud", .event_id = id, .key = card, .score = score,
                         .decision = d, .model_version = "bench-1", .experts_json = experts,
                         .top_features_json = NULL, .input = input, .n_input = PGTX_N_INPUT,
                         .event_time_ms = 1764000000000 + seq, .topic = "sluice.fraud.events",
                         .partition = part, .offset = off};
    wk_fraud_add_result(st, &r);
    wk_state_row_t s = {.card_id = card, .topic = "sluice.fraud.events", .partition = part,
                        .last_offset = off, .state = state, .state_len = sizeof state};
    wk_fraud_add_state(st, &s);
    if (d == WK_DECISION_BLOCK) {
      char alert[80];
      snprintf(alert, sizeof alert, "fraud:%s", id);
      uint8_t payload[120];
      memset(payload, 0x5c, sizeof payload);
      wk_outbox_row_t o = {.alert_id = alert, .domain = "fraud", .key = card,
                           .topic = "sluice.fraud.alerts", .payload = payload,
                           .payload_len = sizeof payload};
      wk_stmt_add_outbox(st, &o);
    }
    wk_stmt_add_offset(st, "sluice.fraud.events", part, off + 1);
  }
}

static bool run_stmt(PGconn *conn, wk_stmt_t *st, const char *prefix, bool print) {
  const char *text;
  const char *const *params;
  const int *lengths = NULL, *formats = NULL;
  int n_params;
  wk_stmt_render(st, &text, &n_params, &params, &lengths, &formats);
  /* For experiments: PGTX_SQL names a file holding another statement over the same params. */
  static char alt[16384];
  const char *alt_path = getenv("PGTX_SQL");
  if (alt_path && alt[0] == '\0') {
    FILE *f = fopen(alt_path, "r");
    if (f == NULL) {
      perror(alt_path);
      exit(2);
    }
    size_t n = fread(alt, 1, sizeof alt - 1, f);
    alt[n] = '\0';
    fclose(f);
  }
  if (alt_path) text = alt;
  char *sql = NULL;
  if (prefix) {
    size_t n = strlen(prefix) + strlen(text) + 1;
    sql = malloc(n);
    snprintf(sql, n, "%s%s", prefix, text);
  }
  PGresult *res;
  static bool prepared;
  if (sql == NULL && alt_path == NULL) {
    /* As the worker sends it: prepared once per session, binary parameters. */
    if (!prepared) {
      res = PQprepare(conn, "pgtx_batch", text, n_params, NULL);
      if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "bench-pipeline-pgtx: prepare failed: %s", PQresultErrorMessage(res));
        PQclear(res);
        return false;
      }
      PQclear(res);
      prepared = true;
    }
    res = PQexecPrepared(conn, "pgtx_batch", n_params, params, lengths, formats, 0);
  } else {
    res = PQexecParams(conn, sql ? sql : text, n_params, NULL, params, lengths, formats, 0);
  }
  free(sql);
  ExecStatusType s = PQresultStatus(res);
  if (s != PGRES_TUPLES_OK) {
    fprintf(stderr, "bench-pipeline-pgtx: statement failed: %s", PQresultErrorMessage(res));
    PQclear(res);
    return false;
  }
  if (print)
    for (int i = 0; i < PQntuples(res); i++) fprintf(stderr, "%s\n", PQgetvalue(res, i, 0));
  PQclear(res);
  return true;
}

int main(int argc, char **argv) {
  const char *dsn = getenv("SLUICE_PG_DSN");
  const char *schema = NULL;
  int batch = 256, batches = 40, partitions = 4;
  long cards = 50000;
  bool explain = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--explain") == 0) explain = true;
    else if (v == NULL) {
      fprintf(stderr, "bench-pipeline-pgtx: %s needs a value\n", a);
      return 2;
    } else if (strcmp(a, "--dsn") == 0) dsn = v, i++;
    else if (strcmp(a, "--schema") == 0) schema = v, i++;
    else if (strcmp(a, "--batch") == 0) batch = atoi(v), i++;
    else if (strcmp(a, "--batches") == 0) batches = atoi(v), i++;
    else if (strcmp(a, "--cards") == 0) cards = atol(v), i++;
    else {
      fprintf(stderr, "bench-pipeline-pgtx: unknown argument %s\n", a);
      return 2;
    }
  }
  if (dsn == NULL || batch <= 0 || batches <= 0 || cards <= 0) {
    fprintf(stderr, "usage: bench-pipeline-pgtx --dsn DSN [--batch N] [--batches N] "
                    "[--cards N] [--schema NAME] [--explain]\n");
    return 2;
  }
  char schema_buf[64];
  if (schema == NULL) {
    snprintf(schema_buf, sizeof schema_buf, "pgtx_%ld", (long)time(NULL));
    schema = schema_buf;
  }
  PGconn *conn = PQconnectdb(dsn);
  if (PQstatus(conn) != CONNECTION_OK) {
    fprintf(stderr, "bench-pipeline-pgtx: connect: %s", PQerrorMessage(conn));
    return 1;
  }
  PQclear(PQexec(conn, "SET client_min_messages TO warning"));
  /* For experiments: PGTX_SETUP runs once after connecting (e.g. a SET to isolate a cost). */
  if (getenv("PGTX_SETUP")) {
    PGresult *r = PQexec(conn, getenv("PGTX_SETUP"));
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      fprintf(stderr, "bench-pipeline-pgtx: PGTX_SETUP: %s", PQresultErrorMessage(r));
      return 1;
    }
    PQclear(r);
  }
  char err[512];
  if (wk_schema_migrate(conn, schema, NULL, err, sizeof err) != SVC_OK) {
    fprintf(stderr, "bench-pipeline-pgtx: migrate: %s\n", err);
    return 1;
  }
  wk_stmt_t *st = NULL;
  if (wk_stmt_new(schema, "bench", wk_fraud_tables, WK_FRAUD_N_TABLES, &st, err, sizeof err) !=
      SVC_OK) {
    fprintf(stderr, "bench-pipeline-pgtx: %s\n", err);
    return 1;
  }
  double *stmt = calloc((size_t)batches, sizeof *stmt), *build = calloc((size_t)batches, sizeof *build);
  fprintf(stderr, "bench-pipeline-pgtx: server process %d\n", PQbackendPID(conn));
  double cpu0 = proc_cpu_s(PQbackendPID(conn));
  double t_all = now_ms();
  for (long b = 0; b < batches; b++) {
    double t0 = now_ms();
    build_batch(st, b, batch, cards, partitions);
    double t1 = now_ms();
    if (!run_stmt(conn, st, NULL, false)) return 1;
    double t2 = now_ms();
    build[b] = t1 - t0;
    stmt[b] = t2 - t1;
  }
  double total = now_ms() - t_all;
  double cpu1 = proc_cpu_s(PQbackendPID(conn));
  if (explain) {
    build_batch(st, batches, batch, cards, partitions);
    PQclear(PQexec(conn, "BEGIN"));
    run_stmt(conn, st, "EXPLAIN (ANALYZE, BUFFERS, WAL) ", true);
    PQclear(PQexec(conn, "ROLLBACK"));
  }
  printf("{\"batch\":%d,\"batches\":%d,\"stmt_ms_p50\":%.2f,\"stmt_ms_p99\":%.2f,"
         "\"rows_per_s\":%.0f,\"build_ms_p50\":%.2f,\"server_cpu_ms_per_batch\":%.2f}\n",
         batch, batches, pct(stmt, (size_t)batches, 0.5), pct(stmt, (size_t)batches, 0.99),
         (double)batch * batches / (total / 1e3), pct(build, (size_t)batches, 0.5),
         cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) * 1e3 / batches : -1.0);
  char sql[160];
  snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", schema);
  PQclear(PQexec(conn, sql));
  wk_stmt_free(st);
  free(stmt);
  free(build);
  PQfinish(conn);
  return 0;
}
