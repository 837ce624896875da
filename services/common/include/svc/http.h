/*
 * The operations endpoint of a service: a small HTTP server on libmicrohttpd, running on its
 * own internal thread so that the service's libuv loop never waits for a scrape or a probe.
 *
 *   GET /metrics   the metrics registry in Prometheus text format 0.0.4
 *   GET /healthz   200 "ok" while the process is live; 503 with the reason once marked dead
 *   GET /readyz    200 "ready" when every readiness condition holds; otherwise 503 listing
 *                  the conditions that do not (e.g. "not ready: model, partitions")
 *   GET /info      the INFO-style plain-text dump of the metrics, after the service's own
 *                  lines (info callback), for humans debugging a running process
 *   anything else  404; methods other than GET and HEAD get 405
 *
 * Readiness and liveness are atomics: the loop thread (or any thread) flips them with
 * svc_http_set_ready / svc_http_set_live without locks and without talking to the HTTP thread.
 */
#ifndef SVC_HTTP_H
#define SVC_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "svc/error.h"
#include "svc/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* At most this many readiness conditions per endpoint. */
#define SVC_HTTP_MAX_CONDITIONS 16

/*
 * Optional extra text for /info, written before the metrics dump. Called on the HTTP thread
 * for every /info request: it must be thread-safe with respect to the service (read atomics
 * or take the service's own lock). Writes at most `size` bytes into buf (NUL-terminated, may
 * truncate) and returns the length written.
 */
typedef size_t (*svc_http_info_fn)(void *data, char *buf, size_t size);

typedef struct svc_http_config_s {
  const char *bind_address;  /* IPv4 or IPv6 literal, e.g. "127.0.0.1", "::"; NULL = "0.0.0.0" */
  unsigned port;             /* 0 = an ephemeral port, see svc_http_port() */
  svc_metrics_t *metrics;    /* borrowed, must outlive the endpoint; NULL serves an empty page */
  /* Names of the readiness conditions, e.g. {"model", "partitions"}; all start false.
   * The strings are copied. */
  const char *const *conditions;
  size_t n_conditions;
  svc_http_info_fn info;     /* optional */
  void *info_data;
} svc_http_config_t;

typedef struct svc_http_s svc_http_t;

/*
 * Starts listening and serving on a new thread. Returns SVC_OK and the endpoint in *out;
 * SVC_ECONFIG with the reason in errstr for a bad address, port (> 65535) or condition list;
 * SVC_EIO with the reason when the socket cannot be bound (port in use, no permission).
 * Call from any thread; the endpoint serves until svc_http_free.
 */
svc_err_t svc_http_new(const svc_http_config_t *cfg, svc_http_t **out, char *errstr,
                       size_t errstr_size);

/* Stops the server (waits for its thread) and frees it; NULL is a no-op. */
void svc_http_free(svc_http_t *http);

/* The port actually bound (the ephemeral one when the config said 0). Any thread. */
unsigned svc_http_port(const svc_http_t *http);

/* Sets readiness condition `idx` (index into the config's list). Any thread; lock-free. */
void svc_http_set_ready(svc_http_t *http, size_t idx, bool ok);

/*
 * Marks the process live (the default) or dead with a static reason (borrowed; must outlive
 * the endpoint, e.g. a string literal), which /healthz then reports with 503 so that an
 * orchestrator restarts the process. Any thread; lock-free.
 */
void svc_http_set_live(svc_http_t *http, bool live, const char *reason);

/* Whether every readiness condition holds. Any thread. */
bool svc_http_is_ready(const svc_http_t *http);

#ifdef __cplusplus
}
#endif
#endif /* SVC_HTTP_H */
