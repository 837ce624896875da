/*
 * The code that applies versioned PostgreSQL migrations; the worker's own list is in
 * migrations.c. The contract is in schema.h.
 */
#include "schema.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- applying them -------------------------------------------------------------------- */

svc_err_t wk_schema_name_check(const char *schema, char *errstr, size_t errstr_size) {
  size_t n = schema ? strlen(schema) : 0;
  if (n == 0 || n > WK_SCHEMA_NAME_MAX) {
    snprintf(errstr, errstr_size, "database schema name must be 1..%d bytes long",
             WK_SCHEMA_NAME_MAX);
    return SVC_ECONFIG;
  }
  for (size_t i = 0; i < n; i++) {
    char c = schema[i];
    if (!((c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9'))) {
      snprintf(errstr, errstr_size,
               "database schema name \"%s\" has '%c' at byte %zu; use [a-z_][a-z0-9_]*", schema,
               c, i);
      return SVC_ECONFIG;
    }
  }
  return SVC_OK;
}

/* FNV-1a 64 of the SQL text: enough to notice an edited migration. */
static void schema__checksum(const char *sql, char out[17]) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
    h ^= *p;
    h *= 0x100000001b3ull;
  }
  snprintf(out, 17, "%016" PRIx64, h);
}

/*
 * Runs one statement; on failure rolls back the open transaction (if any) and writes
 * "<what>: <server message>" into errstr. The result is returned for the caller to clear.
 */
static svc_err_t schema__run(PGconn *conn, const char *what, const char *sql, int n_params,
                             const char *const *params, PGresult **out, char *errstr,
                             size_t errstr_size) {
  PGresult *res = PQexecParams(conn, sql, n_params, NULL, params, NULL, NULL, 0);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    char clean[512];
    snprintf(clean, sizeof clean, "%s", msg && msg[0] ? msg : "no message");
    size_t n = strlen(clean);
    while (n > 0 && (clean[n - 1] == '\n' || clean[n - 1] == ' ')) clean[--n] = '\0';
    snprintf(errstr, errstr_size, "%s: %s", what, clean);
    PQclear(res);
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) PQclear(PQexec(conn, "ROLLBACK"));
    return PQstatus(conn) == CONNECTION_OK ? SVC_EDB : SVC_ECONNLOST;
  }
  if (out) *out = res;
  else PQclear(res);
  return SVC_OK;
}

/* BEGIN and take the schema's migration lock, held until COMMIT/ROLLBACK. */
static svc_err_t schema__begin_locked(PGconn *conn, const char *schema, char *errstr,
                                      size_t errstr_size) {
  svc_err_t err = schema__run(conn, "begin", "BEGIN", 0, NULL, NULL, errstr, errstr_size);
  if (err) return err;
  char key[128];
  snprintf(key, sizeof key, "sluice-migrate:%s", schema);
  const char *params[] = {key};
  return schema__run(conn, "taking the migration lock",
                     "SELECT pg_advisory_xact_lock(hashtext($1))", 1, params, NULL, errstr,
                     errstr_size);
}

svc_err_t wk_schema_migrate_list(PGconn *conn, const char *schema, const wk_migration_t *list,
                                 size_t n, int *applied, char *errstr, size_t errstr_size) {
  if (applied) *applied = 0;
  svc_err_t err = wk_schema_name_check(schema, errstr, errstr_size);
  if (err) return err;
  for (size_t i = 0; i < n; i++) {
    if (list[i].version <= 0 || (i > 0 && list[i].version <= list[i - 1].version)) {
      snprintf(errstr, errstr_size, "migration %zu has version %d: versions must increase from 1",
               i, list[i].version);
      return SVC_ECONFIG;
    }
  }

  /* The schema and the bookkeeping table, under the lock so concurrent starts do not race. */
  char sql[1024];
  err = schema__begin_locked(conn, schema, errstr, errstr_size);
  if (err) return err;
  snprintf(sql, sizeof sql,
           "CREATE SCHEMA IF NOT EXISTS \"%s\";"
           "CREATE TABLE IF NOT EXISTS \"%s\".schema_migrations ("
           " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
           " applied_at timestamptz NOT NULL DEFAULT now())",
           schema, schema);
  /* Two statements: the simple-query path (no parameters) accepts them in one call. */
  PGresult *res = PQexec(conn, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    snprintf(errstr, errstr_size, "creating schema \"%s\": %s", schema, PQresultErrorMessage(res));
    PQclear(res);
    PQclear(PQexec(conn, "ROLLBACK"));
    return SVC_EDB;
  }
  PQclear(res);
  err = schema__run(conn, "commit", "COMMIT", 0, NULL, NULL, errstr, errstr_size);
  if (err) return err;

  for (size_t i = 0; i < n; i++) {
    const wk_migration_t *m = &list[i];
    char what[160], version[16], checksum[17];
    snprintf(version, sizeof version, "%d", m->version);
    schema__checksum(m->sql, checksum);
    snprintf(what, sizeof what, "migration %d (%s)", m->version, m->name);

    err = schema__begin_locked(conn, schema, errstr, errstr_size);
    if (err) return err;
    snprintf(sql, sizeof sql, "SELECT checksum FROM \"%s\".schema_migrations WHERE version = $1",
             schema);
    const char *p1[] = {version};
    err = schema__run(conn, what, sql, 1, p1, &res, errstr, errstr_size);
    if (err) return err;
    bool done = PQntuples(res) == 1;
    bool same = done && strcmp(PQgetvalue(res, 0, 0), checksum) == 0;
    PQclear(res);
    if (done) {
      PQclear(PQexec(conn, "ROLLBACK"));
      if (!same) {
        snprintf(errstr, errstr_size,
                 "%s was applied with a different text (checksum differs): migrations must "
                 "never be edited, add a new one",
                 what);
        return SVC_ESTATE;
      }
      continue;
    }
    snprintf(sql, sizeof sql, "SET LOCAL search_path TO \"%s\"", schema);
    err = schema__run(conn, what, sql, 0, NULL, NULL, errstr, errstr_size);
    if (err) return err;
    res = PQexec(conn, m->sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
      char msg[512];
      snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(res));
      size_t k = strlen(msg);
      while (k > 0 && msg[k - 1] == '\n') msg[--k] = '\0';
      snprintf(errstr, errstr_size, "%s failed: %s", what, msg);
      PQclear(res);
      PQclear(PQexec(conn, "ROLLBACK"));
      return SVC_EDB;
    }
    PQclear(res);
    snprintf(sql, sizeof sql,
             "INSERT INTO \"%s\".schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
             schema);
    const char *p3[] = {version, m->name, checksum};
    err = schema__run(conn, what, sql, 3, p3, NULL, errstr, errstr_size);
    if (err) return err;
    err = schema__run(conn, what, "COMMIT", 0, NULL, NULL, errstr, errstr_size);
    if (err) return err;
    if (applied) (*applied)++;
  }

  /* A version this list does not know: the database is ahead of this worker. */
  snprintf(sql, sizeof sql, "SELECT max(version) FROM \"%s\".schema_migrations", schema);
  err = schema__run(conn, "reading the schema version", sql, 0, NULL, &res, errstr, errstr_size);
  if (err) return err;
  int max_db = PQgetisnull(res, 0, 0) ? 0 : atoi(PQgetvalue(res, 0, 0));
  PQclear(res);
  int max_list = n ? list[n - 1].version : 0;
  if (max_db > max_list) {
    snprintf(errstr, errstr_size,
             "database schema \"%s\" is at version %d, this worker knows up to %d: run a newer "
             "worker",
             schema, max_db, max_list);
    return SVC_ESTATE;
  }
  return SVC_OK;
}
