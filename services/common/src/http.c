/*
 * The operations HTTP endpoint (/metrics, /healthz, /readyz, /info) on libmicrohttpd's
 * internal polling thread. The contract is in svc/http.h.
 */
#include "svc/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "svc/log.h"

/* Probes and scrapes are small and few: bound what a misbehaving client can hold. */
#define HTTP__CONNECTION_LIMIT 64
#define HTTP__TIMEOUT_S 10
#define HTTP__INFO_MAX 16384

struct svc_http_s {
  struct MHD_Daemon *daemon;
  svc_metrics_t *metrics;
  unsigned port;
  size_t n_conditions;
  char *conditions[SVC_HTTP_MAX_CONDITIONS];
  _Atomic int ready[SVC_HTTP_MAX_CONDITIONS];
  _Atomic int live;
  _Atomic(const char *) dead_reason;
  svc_http_info_fn info;
  void *info_data;
};

/* ---- responses ------------------------------------------------------------------------ */

/* Queues `body` (malloc'd; ownership passes to MHD, which frees it after sending). */
static enum MHD_Result http__reply(struct MHD_Connection *conn, unsigned status,
                                   const char *content_type, char *body, size_t len) {
  struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
  if (resp == NULL) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  /* Probes and scrapes must always see the current state. */
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result r = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return r;
}

__attribute__((format(printf, 3, 4))) static enum MHD_Result
http__reply_text(struct MHD_Connection *conn, unsigned status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *body = NULL;
  int n = vasprintf(&body, fmt, ap);
  va_end(ap);
  if (n < 0) return MHD_NO;
  return http__reply(conn, status, "text/plain; charset=utf-8", body, (size_t)n);
}

static enum MHD_Result http__readyz(svc_http_t *http, struct MHD_Connection *conn) {
  char missing[1024] = "";
  size_t len = 0;
  for (size_t i = 0; i < http->n_conditions; i++) {
    if (atomic_load_explicit(&http->ready[i], memory_order_acquire)) continue;
    int n = snprintf(missing + len, sizeof missing - len, "%s%s", len ? ", " : "",
                     http->conditions[i]);
    if (n < 0 || (size_t)n >= sizeof missing - len) break;
    len += (size_t)n;
  }
  if (len == 0) return http__reply_text(conn, MHD_HTTP_OK, "ready\n");
  return http__reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s\n", missing);
}

static enum MHD_Result http__info(svc_http_t *http, struct MHD_Connection *conn) {
  char *own = calloc(1, HTTP__INFO_MAX);
  if (own == NULL) return MHD_NO;
  size_t own_len = 0;
  if (http->info) {
    own_len = http->info(http->info_data, own, HTTP__INFO_MAX);
    if (own_len >= HTTP__INFO_MAX) own_len = strlen(own);
  }
  size_t mlen = 0;
  char *dump = http->metrics ? svc_metrics_info(http->metrics, &mlen) : NULL;
  char *body = malloc(own_len + mlen + 1);
  if (body == NULL) {
    free(own);
    free(dump);
    return MHD_NO;
  }
  memcpy(body, own, own_len);
  if (dump) memcpy(body + own_len, dump, mlen);
  body[own_len + mlen] = '\0';
  free(own);
  free(dump);
  return http__reply(conn, MHD_HTTP_OK, "text/plain; charset=utf-8", body, own_len + mlen);
}

static enum MHD_Result http__handle(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls) {
  svc_http_t *http = cls;
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return http__reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed\n",
                            method);

  if (strcmp(url, "/metrics") == 0) {
    size_t len = 0;
    char *body = http->metrics ? svc_metrics_prometheus(http->metrics, &len) : strdup("");
    if (body == NULL) return MHD_NO;
    return http__reply(conn, MHD_HTTP_OK, SVC_METRICS_CONTENT_TYPE, body, len);
  }
  if (strcmp(url, "/healthz") == 0) {
    if (atomic_load_explicit(&http->live, memory_order_acquire))
      return http__reply_text(conn, MHD_HTTP_OK, "ok\n");
    const char *why = atomic_load_explicit(&http->dead_reason, memory_order_acquire);
    return http__reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unhealthy: %s\n",
                            why ? why : "unknown");
  }
  if (strcmp(url, "/readyz") == 0) return http__readyz(http, conn);
  if (strcmp(url, "/info") == 0) return http__info(http, conn);
  return http__reply_text(conn, MHD_HTTP_NOT_FOUND,
                          "not found; try /metrics, /healthz, /readyz, /info\n");
}

/* libmicrohttpd's own error messages go to the service log instead of stderr. */
static void http__mhd_log(void *cls, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '"')) msg[--n] = '\0';
  for (char *p = msg; *p; p++)
    if (*p == '"') *p = '\'';
  SVC_LOG(SVC_LOG_WARN, "http server message", "detail=\"%s\"", msg);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

svc_err_t svc_http_new(const svc_http_config_t *cfg, svc_http_t **out, char *errstr,
                       size_t errstr_size) {
  *out = NULL;
  const char *addr = cfg->bind_address ? cfg->bind_address : "0.0.0.0";
  if (cfg->port > 65535) {
    snprintf(errstr, errstr_size, "http: port %u is above 65535", cfg->port);
    return SVC_ECONFIG;
  }
  if (cfg->n_conditions > SVC_HTTP_MAX_CONDITIONS) {
    snprintf(errstr, errstr_size, "http: %zu readiness conditions, at most %d", cfg->n_conditions,
             SVC_HTTP_MAX_CONDITIONS);
    return SVC_ECONFIG;
  }
  for (size_t i = 0; i < cfg->n_conditions; i++) {
    if (cfg->conditions[i] == NULL || cfg->conditions[i][0] == '\0') {
      snprintf(errstr, errstr_size, "http: readiness condition %zu has no name", i);
      return SVC_ECONFIG;
    }
  }

  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  /* AUTO picks epoll or poll: select() would fail on descriptors above FD_SETSIZE, which a
   * service with many Kafka and PostgreSQL sockets can reach. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)cfg->port);
  } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)cfg->port);
    flags |= MHD_USE_IPv6;
  } else {
    snprintf(errstr, errstr_size, "http: bind address \"%s\" is not an IPv4 or IPv6 literal",
             addr);
    return SVC_ECONFIG;
  }

  svc_http_t *http = calloc(1, sizeof *http);
  if (http == NULL) return SVC_ENOMEM;
  http->metrics = cfg->metrics;
  http->info = cfg->info;
  http->info_data = cfg->info_data;
  http->n_conditions = cfg->n_conditions;
  atomic_init(&http->live, 1);
  atomic_init(&http->dead_reason, NULL);
  for (size_t i = 0; i < cfg->n_conditions; i++) {
    http->conditions[i] = strdup(cfg->conditions[i]);
    if (http->conditions[i] == NULL) goto fail_nomem;
    atomic_init(&http->ready[i], 0);
  }

  errno = 0;
  http->daemon = MHD_start_daemon(
      flags, (uint16_t)cfg->port, NULL, NULL, http__handle, http,
      /* The logger first, so that option errors are logged through it too. */
      MHD_OPTION_EXTERNAL_LOGGER, http__mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP__CONNECTION_LIMIT,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP__TIMEOUT_S, MHD_OPTION_END);
  if (http->daemon == NULL) {
    int e = errno;
    snprintf(errstr, errstr_size, "http: cannot listen on %s port %u: %s", addr, cfg->port,
             e ? strerror(e) : "libmicrohttpd refused to start (see log)");
    svc_http_free(http);
    return SVC_EIO;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_BIND_PORT);
  http->port = di ? di->port : cfg->port;
  SVC_LOG(SVC_LOG_INFO, "http endpoint listening", "address=%s port=%u", addr, http->port);
  *out = http;
  return SVC_OK;

fail_nomem:
  svc_http_free(http);
  return SVC_ENOMEM;
}

void svc_http_free(svc_http_t *http) {
  if (http == NULL) return;
  if (http->daemon) MHD_stop_daemon(http->daemon);
  for (size_t i = 0; i < http->n_conditions; i++) free(http->conditions[i]);
  free(http);
}

unsigned svc_http_port(const svc_http_t *http) { return http->port; }

void svc_http_set_ready(svc_http_t *http, size_t idx, bool ok) {
  if (idx >= http->n_conditions) {
    fprintf(stderr, "svc_http_set_ready: condition %zu out of range (%zu)\n", idx,
            http->n_conditions);
    abort();
  }
  atomic_store_explicit(&http->ready[idx], ok ? 1 : 0, memory_order_release);
}

void svc_http_set_live(svc_http_t *http, bool live, const char *reason) {
  atomic_store_explicit(&http->dead_reason, reason, memory_order_release);
  atomic_store_explicit(&http->live, live ? 1 : 0, memory_order_release);
}

bool svc_http_is_ready(const svc_http_t *http) {
  for (size_t i = 0; i < http->n_conditions; i++)
    if (!atomic_load_explicit(&http->ready[i], memory_order_acquire)) return false;
  return true;
}
