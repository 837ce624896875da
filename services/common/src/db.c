/*
 * The PostgreSQL adapter of svc/db.h: non-blocking libpq on its socket under uv_poll, a FIFO
 * of requests (single statements, scripts, transactions) executed one statement at a time,
 * and reconnection with exponential backoff that reports, never retries, interrupted work.
 */
#include "svc/db.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc/log.h"

typedef enum { REQ_QUERY, REQ_EXEC, REQ_TXN, REQ_PREPARED } req_kind_t;
/* Where a transaction request is: BEGIN, its statements, COMMIT, or the ROLLBACK after an error. */
typedef enum { PH_BEGIN, PH_BODY, PH_COMMIT, PH_ROLLBACK } phase_t;

typedef struct {
  char *sql;
  int n_params;
  char **params;
  long expect_rows; /* -1: any */
  /* REQ_PREPARED only (else NULL): the statement's name, and per parameter its length and
   * format (0 text, 1 binary), as PQsendQueryPrepared takes them. */
  char *name;
  int *lengths, *formats;
} stmt_t;

struct db_txn_s {
  stmt_t *v;
  size_t n, cap;
};

typedef struct req_s {
  struct req_s *next;
  req_kind_t kind;
  db_txn_t *stmts;
  phase_t phase;
  size_t pos;          /* statement index within stmts during PH_BODY */
  bool in_flight;      /* a statement has been sent and its results not all read */
  bool commit_sent;
  bool preparing;      /* REQ_PREPARED: the PQsendPrepare is in flight, not the execution */
  PGresult *last;      /* result of the last body statement (handed to the callback) */
  PGresult *partial;   /* result(s) of the statement being read */
  svc_err_t err;
  char *errmsg;
  db_result_cb cb;
  void *arg;
} req_t;

typedef struct {
  db_conn_t pub; /* first: the public pointer is the private one */
  uv_loop_t *loop;
  char *dsn;
  char *app_name; /* NULL: none */
  char *session_options; /* NULL: the dsn's own */
  PGconn *pg;
  uv_poll_t *poll; /* heap: replaced whenever the socket changes */
  int poll_fd;
  int poll_events;
  uv_timer_t timer; /* connect timeout, then backoff */
  int handles_open;
  db_status_t status;
  bool closing;
  int connect_timeout_ms, reconnect_min_ms, reconnect_max_ms;
  int backoff_ms;
  uint64_t rng; /* xorshift state for the backoff jitter */
  unsigned connects;
  req_t *head, *tail;
  size_t n_reqs;
  /* Names prepared on the current server session; a new session starts with none, which is
   * how db_conn_query_prepared prepares again after a reconnect. */
  char **prepared;
  size_t n_prepared;
  db_status_cb on_status;
  db_close_cb close_cb;
} conn_t;

static void set_err(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t size, const char *fmt, ...) {
  if (errstr == NULL || size == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errstr, size, fmt, ap);
  va_end(ap);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) abort(); /* services may abort on OOM (STYLE section 4) */
  return p;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xmalloc(n), s, n);
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* libpq messages end in a newline; log lines and errmsg should not. */
static char *chomp(char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = '\0';
  return s;
}

/* ---- transactions and requests ------------------------------------------- */

db_txn_t *db_txn_new(void) {
  db_txn_t *t = xmalloc(sizeof *t);
  memset(t, 0, sizeof *t);
  return t;
}

void db_txn_add(db_txn_t *t, const char *sql, int n_params, const char *const *params) {
  db_txn_add_expect(t, sql, n_params, params, -1);
}

void db_txn_add_expect(db_txn_t *t, const char *sql, int n_params, const char *const *params,
                       long expect_rows) {
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 4;
    stmt_t *v = realloc(t->v, t->cap * sizeof *v);
    if (v == NULL) abort();
    t->v = v;
  }
  stmt_t *s = &t->v[t->n++];
  s->sql = xstrdup(sql);
  s->n_params = n_params;
  s->expect_rows = expect_rows;
  s->params = NULL;
  s->name = NULL;
  s->lengths = s->formats = NULL;
  if (n_params > 0) {
    s->params = xmalloc((size_t)n_params * sizeof *s->params);
    for (int i = 0; i < n_params; i++) s->params[i] = params[i] ? xstrdup(params[i]) : NULL;
  }
}

size_t db_txn_len(const db_txn_t *t) { return t->n; }

void db_txn_free(db_txn_t *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->n; i++) {
    for (int k = 0; k < t->v[i].n_params; k++) free(t->v[i].params[k]);
    free(t->v[i].params);
    free(t->v[i].name);
    free(t->v[i].lengths);
    free(t->v[i].formats);
    free(t->v[i].sql);
  }
  free(t->v);
  free(t);
}

static void req_free(req_t *r) {
  db_txn_free(r->stmts);
  PQclear(r->last);
  PQclear(r->partial);
  free(r->errmsg);
  free(r);
}

/* Pops `r` (the head), calls its callback, frees it. */
static void req_finish(conn_t *c, req_t *r) {
  c->head = r->next;
  if (c->head == NULL) c->tail = NULL;
  c->n_reqs--;
  const PGresult *res = r->err == SVC_OK ? r->last : NULL;
  if (r->cb != NULL) r->cb(&c->pub, r->err, res, r->err == SVC_OK ? NULL : r->errmsg, r->arg);
  req_free(r);
}

/* Fails every request with `err`; one that was already started gets `started_err`. */
static void fail_all(conn_t *c, svc_err_t err, svc_err_t started_err, const char *why) {
  while (c->head != NULL) {
    req_t *r = c->head;
    bool started = r->in_flight || r->phase != PH_BEGIN || r->pos > 0;
    r->err = started ? started_err : err;
    PQclear(r->last);
    r->last = NULL;
    free(r->errmsg);
    if (started && r->kind == REQ_TXN && !r->commit_sent)
      r->errmsg = xprintf("%s (the transaction's COMMIT was not sent: it did not commit)", why);
    else if (started)
      r->errmsg = xprintf("%s (the request was in flight: its outcome is unknown)", why);
    else
      r->errmsg = xprintf("%s (the request was not sent)", why);
    req_finish(c, r);
  }
}

/* ---- socket watching -------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events);

/* The connection's own memory, once its handles are closed. */
static void conn_free(conn_t *c) {
  free(c->dsn);
  free(c->app_name);
  free(c->session_options);
  free(c);
}

static void poll_freed(uv_handle_t *h) {
  conn_t *c = h->data;
  free(h);
  c->handles_open--;
  if (c->closing && c->handles_open == 0) {
    c->status = DB_STATUS_CLOSED;
    if (c->close_cb != NULL) c->close_cb(&c->pub);
    conn_free(c);
  }
}

static void unwatch(conn_t *c) {
  if (c->poll == NULL) return;
  uv_poll_stop(c->poll);
  uv_close((uv_handle_t *)c->poll, poll_freed);
  c->poll = NULL;
  c->poll_fd = -1;
  c->poll_events = 0;
}

/* Watches libpq's current socket for `events`, re-creating the handle if the fd changed. */
static int watch(conn_t *c, int events) {
  int fd = PQsocket(c->pg);
  if (fd < 0) return UV_EBADF;
  if (c->poll != NULL && c->poll_fd != fd) unwatch(c);
  if (c->poll == NULL) {
    uv_poll_t *p = xmalloc(sizeof *p);
    int rc = uv_poll_init(c->loop, p, fd);
    if (rc != 0) {
      free(p);
      return rc;
    }
    p->data = c;
    c->handles_open++;
    c->poll = p;
    c->poll_fd = fd;
    c->poll_events = 0;
  }
  if (c->poll_events == events) return 0;
  c->poll_events = events;
  return uv_poll_start(c->poll, events, on_poll);
}

static void set_status(conn_t *c, db_status_t st, const char *detail) {
  c->status = st;
  if (c->on_status != NULL) c->on_status(&c->pub, st, detail ? detail : "");
}

/* ---- connection life -------------------------------------------------------- */

static void start_connect(conn_t *c);
static void drop(conn_t *c, const char *why_in);

static void timer_fired(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->closing) return;
  if (c->status == DB_STATUS_DISCONNECTED) {
    start_connect(c);
  } else if (c->status == DB_STATUS_CONNECTING) {
    /* PQconnectPoll does not enforce connect_timeout in non-blocking mode: we do. */
    char *why = xprintf("connection attempt timed out after %d ms", c->connect_timeout_ms);
    drop(c, why);
    free(why);
  }
}

/*
 * The backoff with +-20 % jitter, so that the many workers that lost their connections to one
 * restarted server do not all knock again in the same millisecond.
 */
static uint64_t jittered(conn_t *c, int ms) {
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  double f = 0.8 + 0.4 * (double)(c->rng >> 11) / 9007199254740992.0;
  uint64_t d = (uint64_t)((double)ms * f);
  return d > 0 ? d : 1;
}

/* The connection failed or was lost: report, fail work, and schedule the next attempt. */
/* The server session ended: its prepared statements went with it. */
static void forget_prepared(conn_t *c) {
  for (size_t i = 0; i < c->n_prepared; i++) free(c->prepared[i]);
  free(c->prepared);
  c->prepared = NULL;
  c->n_prepared = 0;
}

static bool is_prepared(const conn_t *c, const char *name) {
  for (size_t i = 0; i < c->n_prepared; i++)
    if (strcmp(c->prepared[i], name) == 0) return true;
  return false;
}

static void drop(conn_t *c, const char *why_in) {
  char *why = xstrdup(why_in);
  chomp(why);
  bool was_connected = c->status == DB_STATUS_CONNECTED;
  SVC_LOG(SVC_LOG_WARN, was_connected ? "postgres connection lost" : "postgres connect failed",
          "err=\"%s\" retry_in_ms=%d pending=%zu", why, c->backoff_ms, c->n_reqs);
  unwatch(c);
  PQfinish(c->pg);
  c->pg = NULL;
  forget_prepared(c);
  uv_timer_stop(&c->timer);
  set_status(c, DB_STATUS_DISCONNECTED, why);
  fail_all(c, SVC_ENOTCONN, was_connected ? SVC_ECONNLOST : SVC_ENOTCONN, why);
  free(why);
  if (c->closing) return;
  uv_timer_start(&c->timer, timer_fired, jittered(c, c->backoff_ms), 0);
  int next = c->backoff_ms * 2;
  c->backoff_ms = next > c->reconnect_max_ms ? c->reconnect_max_ms : next;
}

static void notice_cb(void *arg, const char *message) {
  (void)arg;
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", message);
  SVC_LOG(SVC_LOG_DEBUG, "postgres notice", "text=\"%s\"", chomp(buf));
}

static void dispatch(conn_t *c);

static void connect_step(conn_t *c) {
  PostgresPollingStatusType st = PQconnectPoll(c->pg);
  int rc = 0;
  switch (st) {
  case PGRES_POLLING_READING: rc = watch(c, UV_READABLE); break;
  case PGRES_POLLING_WRITING: rc = watch(c, UV_WRITABLE); break;
  case PGRES_POLLING_OK:
    uv_timer_stop(&c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0) {
      drop(c, PQerrorMessage(c->pg));
      return;
    }
    PQsetNoticeProcessor(c->pg, notice_cb, c);
    c->backoff_ms = c->reconnect_min_ms;
    c->connects++;
    rc = watch(c, UV_READABLE);
    if (rc != 0) break;
    SVC_LOG(SVC_LOG_INFO, "postgres connected", "backend_pid=%d server_version=%d connects=%u",
            PQbackendPID(c->pg), PQserverVersion(c->pg), c->connects);
    set_status(c, DB_STATUS_CONNECTED, "");
    dispatch(c);
    return;
  case PGRES_POLLING_FAILED:
  default:
    drop(c, PQerrorMessage(c->pg));
    return;
  }
  if (rc != 0) {
    char *why = xprintf("cannot watch the socket: %s", uv_strerror(rc));
    drop(c, why);
    free(why);
  }
}

static void start_connect(conn_t *c) {
  set_status(c, DB_STATUS_CONNECTING, "");
  if (c->closing) return;
  /* expand_dbname: "dbname" is the whole dsn, whose own settings override the fallback. */
  const char *const keys[] = {"dbname", "fallback_application_name",
                              c->session_options ? "options" : NULL, NULL};
  const char *const vals[] = {c->dsn, c->app_name, c->session_options, NULL};
  c->pg = PQconnectStartParams(keys, vals, 1);
  if (c->pg == NULL) {
    drop(c, "out of memory starting a connection");
    return;
  }
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    drop(c, PQerrorMessage(c->pg));
    return;
  }
  uv_timer_start(&c->timer, timer_fired, (uint64_t)c->connect_timeout_ms, 0);
  /* PQconnectStart behaves as if PQconnectPoll had returned PGRES_POLLING_WRITING. */
  int rc = watch(c, UV_WRITABLE);
  if (rc != 0) {
    char *why = xprintf("cannot watch the socket: %s", uv_strerror(rc));
    drop(c, why);
    free(why);
  }
}

/* ---- running requests -------------------------------------------------------- */

/* The statement the head request should send next, or NULL with sql set for BEGIN etc. */
static int send_next(conn_t *c, req_t *r) {
  const char *sql = NULL;
  const stmt_t *s = NULL;
  if (r->kind == REQ_TXN) {
    switch (r->phase) {
    case PH_BEGIN: sql = "BEGIN"; break;
    case PH_BODY: s = &r->stmts->v[r->pos]; break;
    case PH_COMMIT: sql = "COMMIT"; r->commit_sent = true; break;
    case PH_ROLLBACK: sql = "ROLLBACK"; break;
    }
  } else {
    s = &r->stmts->v[0];
  }
  int ok;
  if (r->kind == REQ_PREPARED && !is_prepared(c, s->name)) {
    /* Parameter types come from the statement text (casts), as with PQsendQueryParams. */
    ok = PQsendPrepare(c->pg, s->name, s->sql, s->n_params, NULL);
    r->preparing = true;
  } else if (r->kind == REQ_PREPARED) {
    ok = PQsendQueryPrepared(c->pg, s->name, s->n_params, (const char *const *)s->params,
                             s->lengths, s->formats, 0);
  } else if (s != NULL && r->kind == REQ_EXEC) ok = PQsendQuery(c->pg, s->sql);
  else if (s != NULL)
    ok = PQsendQueryParams(c->pg, s->sql, s->n_params, NULL, (const char *const *)s->params,
                           NULL, NULL, 0);
  else ok = PQsendQuery(c->pg, sql);
  if (!ok) return -1;
  r->in_flight = true;
  int f = PQflush(c->pg);
  if (f < 0) return -1;
  return watch(c, f == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE) == 0 ? 0 : -1;
}

static void dispatch(conn_t *c) {
  while (c->status == DB_STATUS_CONNECTED && c->head != NULL && !c->head->in_flight) {
    if (send_next(c, c->head) != 0) {
      drop(c, PQerrorMessage(c->pg));
      return;
    }
  }
}

static bool result_ok(const PGresult *res) {
  ExecStatusType st = PQresultStatus(res);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

static char *result_error(const PGresult *res, const char *where) {
  char msg[2048];
  snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(res));
  chomp(msg);
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  return xprintf("%s%s (SQLSTATE %s)", where, msg, state ? state : "?");
}

/* One statement of the head request finished with `res` (the last result, owned). */
static void statement_done(conn_t *c, req_t *r, PGresult *res) {
  r->in_flight = false;
  bool ok = res != NULL && result_ok(res);
  if (r->kind == REQ_PREPARED && r->preparing) {
    r->preparing = false;
    if (ok) { /* dispatch sends the execution next */
      PQclear(res);
      c->prepared = realloc(c->prepared, (c->n_prepared + 1) * sizeof *c->prepared);
      if (c->prepared == NULL) abort();
      c->prepared[c->n_prepared++] = xstrdup(r->stmts->v[0].name);
      return;
    }
    r->err = SVC_EDB;
    r->errmsg = res ? result_error(res, "preparing: ") : xstrdup("preparing: no result");
    PQclear(res);
    req_finish(c, r);
    return;
  }
  if (r->kind != REQ_TXN) {
    if (ok && r->err == SVC_OK) {
      r->last = res;
    } else {
      if (r->err == SVC_OK) {
        r->err = SVC_EDB;
        r->errmsg = res ? result_error(res, "") : xstrdup("no result");
      }
      PQclear(res);
    }
    req_finish(c, r);
    return;
  }
  switch (r->phase) {
  case PH_BEGIN:
    if (!ok) {
      r->err = SVC_EDB;
      r->errmsg = res ? result_error(res, "BEGIN: ") : xstrdup("BEGIN: no result");
      PQclear(res);
      req_finish(c, r);
      return;
    }
    PQclear(res);
    r->phase = r->stmts->n > 0 ? PH_BODY : PH_COMMIT;
    return;
  case PH_BODY:
    if (!ok) {
      char where[64];
      snprintf(where, sizeof where, "statement %zu of %zu: ", r->pos + 1, r->stmts->n);
      r->err = SVC_EDB;
      r->errmsg = res ? result_error(res, where) : xprintf("%sno result", where);
      PQclear(res);
      r->phase = PH_ROLLBACK;
      return;
    }
    long expect = r->stmts->v[r->pos].expect_rows;
    if (expect >= 0 && atol(PQcmdTuples(res)) != expect) {
      r->err = SVC_ECONFLICT;
      r->errmsg = xprintf("statement %zu of %zu: expected %ld rows affected, got %s: rolled back",
                          r->pos + 1, r->stmts->n, expect, PQcmdTuples(res));
      PQclear(res);
      r->phase = PH_ROLLBACK;
      return;
    }
    PQclear(r->last);
    r->last = res;
    if (++r->pos == r->stmts->n) r->phase = PH_COMMIT;
    return;
  case PH_COMMIT: {
    /* In a failed transaction the server answers COMMIT with the command tag ROLLBACK. */
    bool committed = ok && strcmp(PQcmdStatus(res), "COMMIT") == 0;
    if (!committed) {
      r->err = SVC_EDB;
      r->errmsg = res && !ok ? result_error(res, "COMMIT: ")
                             : xstrdup("COMMIT: the server rolled the transaction back");
    }
    PQclear(res);
    req_finish(c, r);
    return;
  }
  case PH_ROLLBACK:
    PQclear(res);
    req_finish(c, r);
    return;
  }
}

/* Reads whatever results are complete, without blocking. */
static void read_results(conn_t *c) {
  while (c->head != NULL && c->head->in_flight && !PQisBusy(c->pg)) {
    req_t *r = c->head;
    PGresult *res = PQgetResult(c->pg);
    if (res != NULL) {
      /* Keep the last result; for scripts remember the first error. */
      if (!result_ok(res) && r->err == SVC_OK && r->kind == REQ_EXEC) {
        r->err = SVC_EDB;
        r->errmsg = result_error(res, "");
      }
      PQclear(r->partial);
      r->partial = res;
      continue;
    }
    PGresult *last = r->partial;
    r->partial = NULL;
    statement_done(c, r, last);
    if (c->closing || c->status != DB_STATUS_CONNECTED) return;
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  conn_t *c = h->data;
  if (c->closing || c->pg == NULL || h != c->poll) return;
  if (c->status == DB_STATUS_CONNECTING) {
    connect_step(c);
    return;
  }
  if (status < 0) {
    char *why = xprintf("socket error: %s", uv_strerror(status));
    drop(c, why);
    free(why);
    return;
  }
  if (events & UV_WRITABLE) {
    int f = PQflush(c->pg);
    if (f < 0) {
      drop(c, PQerrorMessage(c->pg));
      return;
    }
    if (f == 0 && watch(c, UV_READABLE) != 0) {
      drop(c, "cannot watch the socket");
      return;
    }
  }
  if (events & UV_READABLE) {
    if (!PQconsumeInput(c->pg)) {
      drop(c, PQerrorMessage(c->pg));
      return;
    }
    for (PGnotify *n; (n = PQnotifies(c->pg)) != NULL;) PQfreemem(n);
    read_results(c);
    if (c->closing || c->status != DB_STATUS_CONNECTED) return;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
      drop(c, PQerrorMessage(c->pg));
      return;
    }
  }
  dispatch(c);
}

/* ---- public API ------------------------------------------------------------------ */

svc_err_t db_conn_new(uv_loop_t *loop, const db_conn_opts_t *o, db_conn_t **out, char *errstr,
                      size_t errstr_size) {
  *out = NULL;
  if (o->dsn == NULL) {
    set_err(errstr, errstr_size, "postgres: dsn is required");
    return SVC_EINVAL;
  }
  /* Parse the dsn now so that a typo is a configuration error, not an endless reconnect. */
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(o->dsn, &perr);
  if (opts == NULL) {
    if (perr != NULL) {
      set_err(errstr, errstr_size, "postgres dsn: %s", chomp(perr));
      PQfreemem(perr);
      return SVC_ECONFIG;
    }
    return SVC_ENOMEM;
  }
  /* Session options: the dsn's own "options" first, then ours (libpq passes them to the
   * server as one string, and a later -c of the same setting wins). */
  char *session_options = NULL;
  if (o->session_options != NULL && o->session_options[0] != '\0') {
    const char *own = "";
    for (PQconninfoOption *opt = opts; opt->keyword != NULL; opt++)
      if (strcmp(opt->keyword, "options") == 0 && opt->val != NULL) own = opt->val;
    session_options = xprintf("%s%s%s", own, own[0] ? " " : "", o->session_options);
  }
  PQconninfoFree(opts);
  conn_t *c = xmalloc(sizeof *c);
  memset(c, 0, sizeof *c);
  c->pub.data = o->data;
  c->loop = loop;
  c->dsn = xstrdup(o->dsn);
  c->app_name = o->application_name ? xstrdup(o->application_name) : NULL;
  c->session_options = session_options;
  c->poll_fd = -1;
  c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
  c->reconnect_min_ms = o->reconnect_min_ms > 0 ? o->reconnect_min_ms : 100;
  c->reconnect_max_ms = o->reconnect_max_ms > 0 ? o->reconnect_max_ms : 10000;
  if (c->reconnect_max_ms < c->reconnect_min_ms) c->reconnect_max_ms = c->reconnect_min_ms;
  c->backoff_ms = c->reconnect_min_ms;
  c->rng = (uint64_t)uv_hrtime() ^ ((uint64_t)(uintptr_t)c << 17) ^ 0x9e3779b97f4a7c15ULL;
  c->on_status = o->on_status;
  int rc = uv_timer_init(loop, &c->timer);
  if (rc != 0) {
    set_err(errstr, errstr_size, "postgres: libuv timer: %s", uv_strerror(rc));
    conn_free(c);
    return svc_err_from_uv(rc);
  }
  c->timer.data = c;
  c->handles_open = 1;
  *out = &c->pub;
  start_connect(c);
  return SVC_OK;
}

static svc_err_t submit(conn_t *c, req_kind_t kind, db_txn_t *stmts, db_result_cb cb, void *arg) {
  if (c->closing) {
    db_txn_free(stmts);
    return SVC_ECLOSED;
  }
  if (c->status != DB_STATUS_CONNECTED && c->status != DB_STATUS_CONNECTING) {
    db_txn_free(stmts);
    return SVC_ENOTCONN;
  }
  req_t *r = xmalloc(sizeof *r);
  memset(r, 0, sizeof *r);
  r->kind = kind;
  r->stmts = stmts;
  r->cb = cb;
  r->arg = arg;
  if (c->tail != NULL) c->tail->next = r;
  else c->head = r;
  c->tail = r;
  c->n_reqs++;
  dispatch(c);
  return SVC_OK;
}

svc_err_t db_conn_query(db_conn_t *conn, const char *sql, int n_params,
                        const char *const *params, db_result_cb cb, void *arg) {
  db_txn_t *t = db_txn_new();
  db_txn_add(t, sql, n_params, params);
  return submit((conn_t *)conn, REQ_QUERY, t, cb, arg);
}

svc_err_t db_conn_query_prepared(db_conn_t *conn, const char *name, const char *sql,
                                 int n_params, const char *const *values, const int *lengths,
                                 const int *formats, db_result_cb cb, void *arg) {
  if (name == NULL || name[0] == '\0' || sql == NULL || n_params < 0) return SVC_EINVAL;
  for (int i = 0; formats != NULL && i < n_params; i++)
    if (formats[i] == 1 && values[i] != NULL && (lengths == NULL || lengths[i] < 0))
      return SVC_EINVAL;
  db_txn_t *t = db_txn_new();
  db_txn_add(t, sql, 0, NULL);
  stmt_t *s = &t->v[0];
  s->name = xstrdup(name);
  s->n_params = n_params;
  if (n_params > 0) {
    s->params = xmalloc((size_t)n_params * sizeof *s->params);
    s->lengths = xmalloc((size_t)n_params * sizeof *s->lengths);
    s->formats = xmalloc((size_t)n_params * sizeof *s->formats);
    for (int i = 0; i < n_params; i++) {
      s->formats[i] = formats != NULL && formats[i] == 1;
      s->lengths[i] = 0;
      s->params[i] = NULL;
      if (values[i] == NULL) continue;
      if (s->formats[i]) {
        /* Binary values are copied by length (one spare byte keeps a zero-length one
         * non-NULL, which libpq would otherwise send as SQL NULL). */
        s->lengths[i] = lengths[i];
        s->params[i] = xmalloc((size_t)lengths[i] + 1);
        memcpy(s->params[i], values[i], (size_t)lengths[i]);
      } else {
        s->params[i] = xstrdup(values[i]);
      }
    }
  }
  return submit((conn_t *)conn, REQ_PREPARED, t, cb, arg);
}

svc_err_t db_conn_exec(db_conn_t *conn, const char *sql, db_result_cb cb, void *arg) {
  db_txn_t *t = db_txn_new();
  db_txn_add(t, sql, 0, NULL);
  return submit((conn_t *)conn, REQ_EXEC, t, cb, arg);
}

svc_err_t db_conn_txn(db_conn_t *conn, db_txn_t *txn, db_result_cb cb, void *arg) {
  return submit((conn_t *)conn, REQ_TXN, txn, cb, arg);
}

db_status_t db_conn_status(const db_conn_t *conn) { return ((const conn_t *)conn)->status; }

int db_conn_backend_pid(const db_conn_t *conn) {
  const conn_t *c = (const conn_t *)conn;
  return c->status == DB_STATUS_CONNECTED ? PQbackendPID(c->pg) : 0;
}

size_t db_conn_pending(const db_conn_t *conn) { return ((const conn_t *)conn)->n_reqs; }

unsigned db_conn_connects(const db_conn_t *conn) { return ((const conn_t *)conn)->connects; }

static void timer_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  c->handles_open--;
  if (c->handles_open == 0) {
    c->status = DB_STATUS_CLOSED;
    if (c->close_cb != NULL) c->close_cb(&c->pub);
    conn_free(c);
  }
}

void db_conn_close(db_conn_t *conn, db_close_cb close_cb) {
  conn_t *c = (conn_t *)conn;
  if (c->closing) return;
  c->closing = true;
  c->close_cb = close_cb;
  uv_timer_stop(&c->timer);
  unwatch(c);
  if (c->pg != NULL) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
  forget_prepared(c);
  fail_all(c, SVC_ECANCELED, SVC_ECANCELED, "connection closed by the application");
  set_status(c, DB_STATUS_CLOSED, "");
  uv_close((uv_handle_t *)&c->timer, timer_closed);
}
