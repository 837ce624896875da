/*
 * PostgreSQL on the libuv loop: one connection (db_conn) driven by non-blocking libpq under
 * uv_poll, with a FIFO of requests whose callbacks run on the loop thread, transactions as a
 * sequence of statements, and automatic reconnection with exponential backoff.
 *
 * Requests run one at a time, in submission order. A request is a single statement with
 * parameters (db_conn_query), a multi-statement script without parameters (db_conn_exec), or a
 * transaction (db_conn_txn: BEGIN, its statements, COMMIT; on the first error it rolls back).
 * Every accepted request gets exactly one callback. Parameters and results are in text format,
 * except that db_conn_query_prepared can send parameters in binary.
 * Not supported: COPY (use INSERT ... SELECT FROM unnest($1::text[], ...) for bulk writes, as
 * the smoke pipeline does) and LISTEN/NOTIFY (notifications are discarded).
 *
 * When the server goes away (restart, network, pg_terminate_backend) the connection reports
 * DISCONNECTED through the status callback, fails work and reconnects after a backoff of
 * reconnect_min_ms doubling up to reconnect_max_ms (each wait jittered by +-20 %); a connect
 * attempt that takes longer than connect_timeout_ms counts as failed. Work is never retried silently:
 *   - the request in flight fails with SVC_ECONNLOST: its outcome is unknown (a COMMIT may or
 *     may not have happened; a transaction whose COMMIT was not yet sent did not commit, and
 *     errmsg says which);
 *   - requests still queued fail with SVC_ENOTCONN: they were never sent;
 *   - new requests while disconnected are refused at once with SVC_ENOTCONN (no callback).
 * The worker therefore treats a failed batch by re-reading its stored offsets, and uses the
 * status callback to report not-ready. The socket (and so the fd under uv_poll) changes on
 * every reconnect and may change during a connect; this is handled inside.
 *
 * Threads: all functions are for the loop thread; all callbacks run on it.
 */
#ifndef SVC_DB_H
#define SVC_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public part of a connection; `data` is the user's. */
typedef struct db_conn_s {
  void *data;
} db_conn_t;

typedef enum {
  DB_STATUS_CONNECTING = 0,   /* a connection attempt started */
  DB_STATUS_CONNECTED = 1,    /* ready: requests are sent */
  DB_STATUS_DISCONNECTED = 2, /* lost or failed; waiting for the backoff before the next try */
  DB_STATUS_CLOSED = 3        /* db_conn_close was called */
} db_status_t;

/* `detail` is libpq's message for DISCONNECTED (borrowed for the call), else "". */
typedef void (*db_status_cb)(db_conn_t *conn, db_status_t status, const char *detail);

/*
 * The outcome of a request. err is SVC_OK with `res` the result of the (last) statement
 * (PGRES_TUPLES_OK or PGRES_COMMAND_OK), or an error with res NULL and errmsg saying what
 * failed: SVC_EDB (the server rejected a statement; errmsg has the statement number, the
 * server's message and SQLSTATE), SVC_ECONFLICT (see db_txn_add_expect), SVC_ECONNLOST, SVC_ENOTCONN, SVC_ECANCELED (db_conn_close).
 * `res` and `errmsg` are borrowed: they are freed when the callback returns. The callback may
 * submit more requests or close the connection.
 */
typedef void (*db_result_cb)(db_conn_t *conn, svc_err_t err, const PGresult *res,
                             const char *errmsg, void *arg);

typedef struct db_conn_opts_s {
  const char *dsn;          /* libpq connection string or URI; required */
  int connect_timeout_ms;   /* per attempt; 0: 10000 */
  int reconnect_min_ms;     /* first backoff; 0: 100 */
  int reconnect_max_ms;     /* backoff ceiling; 0: 10000 */
  /* Optional: the session's application_name unless the dsn sets one (libpq's
   * fallback_application_name), so that pg_stat_activity and the server log say who it is. */
  const char *application_name;
  /* Optional: server options for the session, e.g. "-c synchronous_commit=off", after the
   * dsn's own "options" (so these win for a setting both name). */
  const char *session_options;
  db_status_cb on_status;   /* optional */
  void *data;
} db_conn_opts_t;

/*
 * Creates the connection and starts connecting (non-blocking); requests submitted before it is
 * up wait in the FIFO and fail with SVC_ENOTCONN if the attempt fails. Returns SVC_OK,
 * SVC_EINVAL (no dsn), SVC_ECONFIG (libpq rejected the dsn; errstr says why) or SVC_ENOMEM.
 */
svc_err_t db_conn_new(uv_loop_t *loop, const db_conn_opts_t *opts, db_conn_t **out,
                      char *errstr, size_t errstr_size);

/*
 * Queues one statement with n_params text parameters ($1...; a NULL entry is SQL NULL). SQL
 * and parameters are copied. Returns SVC_OK (one callback will follow), SVC_ENOTCONN while
 * disconnected, SVC_ECLOSED after close; on an error return there is no callback.
 */
svc_err_t db_conn_query(db_conn_t *conn, const char *sql, int n_params,
                        const char *const *params, db_result_cb cb, void *arg);

/*
 * Queues one execution of the prepared statement `name` with n_params parameters. The
 * statement is prepared from `sql` the first time the name is used on a server session,
 * which includes every session after a reconnect (prepared statements die with their
 * session), so the caller never tracks sessions. Preparing once saves the server parsing and
 * planning the text every time; binary parameters save it parsing the values. The same name
 * must always come with the same sql and parameter count (only the first preparation on a
 * session counts). formats[i] 1 is binary (values[i] is lengths[i] bytes in the type's
 * binary wire format, e.g. a float4[] array), 0 or formats NULL is text (values[i] a string,
 * lengths ignored); a NULL value is SQL NULL. Parameter types come from the statement's casts
 * ($1::real[]). Values are copied. Results are text, as for db_conn_query. A failed
 * preparation is reported as SVC_EDB with errmsg "preparing: ...". Returns SVC_OK (one
 * callback will follow), SVC_EINVAL (no name or sql, or a binary value without a length),
 * SVC_ENOTCONN while disconnected, SVC_ECLOSED after close.
 */
svc_err_t db_conn_query_prepared(db_conn_t *conn, const char *name, const char *sql,
                                 int n_params, const char *const *values, const int *lengths,
                                 const int *formats, db_result_cb cb, void *arg);

/* Queues a script of one or more statements without parameters; `res` is the last result. */
svc_err_t db_conn_exec(db_conn_t *conn, const char *sql, db_result_cb cb, void *arg);

/* A transaction under construction: statements run between BEGIN and COMMIT. */
typedef struct db_txn_s db_txn_t;

/* Never NULL (aborts on out-of-memory). */
db_txn_t *db_txn_new(void);
/* Appends one statement; SQL and parameters are copied. */
void db_txn_add(db_txn_t *txn, const char *sql, int n_params, const char *const *params);
/*
 * Appends a statement that must affect exactly `expect_rows` rows (PQcmdTuples), or the whole
 * transaction is rolled back and reported as SVC_ECONFLICT. This is the fence of the
 * exactly-once design: "UPDATE offsets SET next_offset = $new WHERE ... AND next_offset =
 * $expected" affects 0 rows when another member has moved the partition on since we read it,
 * so a zombie's late batch commits nothing instead of duplicating results.
 */
void db_txn_add_expect(db_txn_t *txn, const char *sql, int n_params, const char *const *params,
                       long expect_rows);
size_t db_txn_len(const db_txn_t *txn);
/* Frees a transaction that was not submitted. NULL is a no-op. */
void db_txn_free(db_txn_t *txn);

/*
 * Queues BEGIN, the statements, COMMIT. Always takes ownership of `txn`. The callback's `res`
 * is the result of the last statement before COMMIT. A failing statement rolls the
 * transaction back before the callback (SVC_EDB, errmsg "statement 2 of 3: ..."; SVC_ECONFLICT
 * when a db_txn_add_expect row count did not match), and a COMMIT that the server turned into
 * a ROLLBACK is reported as SVC_EDB too.
 */
svc_err_t db_conn_txn(db_conn_t *conn, db_txn_t *txn, db_result_cb cb, void *arg);

db_status_t db_conn_status(const db_conn_t *conn);
/* The server process id of the current connection, or 0 when not connected. */
int db_conn_backend_pid(const db_conn_t *conn);
/* Requests queued or in flight. */
size_t db_conn_pending(const db_conn_t *conn);
/* Successful connects so far (the first one included). */
unsigned db_conn_connects(const db_conn_t *conn);

typedef void (*db_close_cb)(db_conn_t *conn);

/*
 * Closes the connection: every pending request gets SVC_ECANCELED (one in flight has an
 * unknown outcome, as with SVC_ECONNLOST), the status callback gets CLOSED, and `close_cb`
 * (may be NULL) runs once the loop handles are closed; memory is freed after it returns.
 * Calling it twice is a no-op. May be called from any db callback.
 */
void db_conn_close(db_conn_t *conn, db_close_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* SVC_DB_H */
