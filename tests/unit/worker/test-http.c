/*
 * Tests of svc/http.h over loopback with a plain socket client: the ephemeral port, /metrics
 * content and content type, /healthz liveness, /readyz conditions flipped by atomics, /info,
 * 404 and 405, HEAD, and the configuration errors (bad address, port in use).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "svc/http.h"
#include "test.h"

#define H_METRICS(XX)                                                                     \
  XX(H_EVENTS, "h_events_in_total", SVC_COUNTER, "events", "", 0, SVC_BUCKETS_NONE,       \
     "Events consumed.")

enum { H_METRICS(SVC_METRIC_ENUM) H__COUNT };
static const svc_metric_def_t h_defs[] = {H_METRICS(SVC_METRIC_DEF)};

typedef struct reply_s {
  int status;
  char headers[2048];
  char body[16384];
} reply_t;

/* Sends one raw request and reads the whole reply (the server closes or we read to EOF). */
static void request(unsigned port, const char *raw, reply_t *r) {
  memset(r, 0, sizeof *r);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof sa));
  size_t n = strlen(raw);
  ASSERT_EQ(write(fd, raw, n), (ssize_t)n);
  static char buf[32768];
  size_t len = 0;
  ssize_t k;
  while ((k = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)k;
  buf[len] = '\0';
  close(fd);
  ASSERT_MSG(sscanf(buf, "HTTP/1.%*d %d", &r->status) == 1, "no status line in \"%s\"", buf);
  char *end = strstr(buf, "\r\n\r\n");
  ASSERT_NOT_NULL(end);
  *end = '\0';
  size_t hl = strlen(buf), bl = strlen(end + 4);
  ASSERT(hl < sizeof r->headers && bl < sizeof r->body);
  memcpy(r->headers, buf, hl + 1);
  memcpy(r->body, end + 4, bl + 1);
}

static void get(unsigned port, const char *path, reply_t *r) {
  char raw[256];
  snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
           path);
  request(port, raw, r);
}

static size_t info_cb(void *data, char *buf, size_t size) {
  return (size_t)snprintf(buf, size, "service:%s\n", (const char *)data);
}

static svc_http_t *start(svc_metrics_t *m) {
  static const char *const conds[] = {"model", "partitions"};
  svc_http_config_t cfg = {.bind_address = "127.0.0.1", .port = 0, .metrics = m,
                           .conditions = conds, .n_conditions = 2, .info = info_cb,
                           .info_data = "test-worker"};
  char err[256] = "";
  svc_http_t *http = NULL;
  ASSERT_MSG(svc_http_new(&cfg, &http, err, sizeof err) == SVC_OK, "svc_http_new: %s", err);
  ASSERT_NE(svc_http_port(http), 0);
  return http;
}

TEST(endpoints) {
  char err[256];
  svc_metrics_t *m = svc_metrics_new(h_defs, H__COUNT, err, sizeof err);
  ASSERT_NOT_NULL(m);
  svc_metric_add(m, H_EVENTS, 12);
  svc_http_t *http = start(m);
  unsigned port = svc_http_port(http);
  reply_t r;

  get(port, "/metrics", &r);
  ASSERT_EQ(r.status, 200);
  ASSERT_STR_CONTAINS(r.headers, "Content-Type: text/plain; version=0.0.4; charset=utf-8");
  ASSERT_STR_CONTAINS(r.body, "# TYPE h_events_in_total counter\nh_events_in_total 12\n");
  svc_metric_add(m, H_EVENTS, 1);
  get(port, "/metrics", &r);
  ASSERT_STR_CONTAINS(r.body, "h_events_in_total 13\n");

  get(port, "/healthz", &r);
  ASSERT_EQ(r.status, 200);
  ASSERT_STR_EQ(r.body, "ok\n");
  svc_http_set_live(http, false, "event loop stalled");
  get(port, "/healthz", &r);
  ASSERT_EQ(r.status, 503);
  ASSERT_STR_EQ(r.body, "unhealthy: event loop stalled\n");
  svc_http_set_live(http, true, NULL);
  get(port, "/healthz", &r);
  ASSERT_EQ(r.status, 200);

  get(port, "/readyz", &r);
  ASSERT_EQ(r.status, 503);
  ASSERT_STR_EQ(r.body, "not ready: model, partitions\n");
  ASSERT(!svc_http_is_ready(http));
  svc_http_set_ready(http, 0, true);
  get(port, "/readyz", &r);
  ASSERT_EQ(r.status, 503);
  ASSERT_STR_EQ(r.body, "not ready: partitions\n");
  svc_http_set_ready(http, 1, true);
  get(port, "/readyz", &r);
  ASSERT_EQ(r.status, 200);
  ASSERT_STR_EQ(r.body, "ready\n");
  ASSERT(svc_http_is_ready(http));
  svc_http_set_ready(http, 1, false); /* partitions revoked */
  get(port, "/readyz", &r);
  ASSERT_EQ(r.status, 503);

  get(port, "/info", &r);
  ASSERT_EQ(r.status, 200);
  ASSERT_STR_CONTAINS(r.body, "service:test-worker\n# h_events_in_total (counter, events)");
  ASSERT_STR_CONTAINS(r.body, "h_events_in_total:13\n");

  get(port, "/metrics/extra", &r);
  ASSERT_EQ(r.status, 404);
  get(port, "/", &r);
  ASSERT_EQ(r.status, 404);

  request(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
          &r);
  ASSERT_EQ(r.status, 405);
  ASSERT_STR_CONTAINS(r.headers, "Allow: GET, HEAD");

  request(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
  ASSERT_EQ(r.status, 200);
  ASSERT_STR_EQ(r.body, "");

  svc_http_free(http);
  svc_metrics_free(m);
}

TEST(config_errors) {
  char err[256] = "";
  svc_http_t *http = NULL;
  svc_http_config_t cfg = {.bind_address = "localhost-ish", .port = 0};
  ASSERT_EQ(svc_http_new(&cfg, &http, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "\"localhost-ish\" is not an IPv4 or IPv6 literal");
  ASSERT_NULL(http);

  cfg = (svc_http_config_t){.bind_address = "127.0.0.1", .port = 70000};
  ASSERT_EQ(svc_http_new(&cfg, &http, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "70000");

  const char *const bad[] = {"model", ""};
  cfg = (svc_http_config_t){.bind_address = "127.0.0.1", .conditions = bad, .n_conditions = 2};
  ASSERT_EQ(svc_http_new(&cfg, &http, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "condition 1 has no name");

  /* A port that is taken: the first endpoint holds it. */
  svc_http_t *first = start(NULL);
  cfg = (svc_http_config_t){.bind_address = "127.0.0.1", .port = svc_http_port(first)};
  ASSERT_EQ(svc_http_new(&cfg, &http, err, sizeof err), SVC_EIO);
  ASSERT_STR_CONTAINS(err, "cannot listen on 127.0.0.1 port");
  ASSERT_NULL(http);

  /* No metrics registry: /metrics is an empty page, still 200. */
  reply_t r;
  get(svc_http_port(first), "/metrics", &r);
  ASSERT_EQ(r.status, 200);
  ASSERT_STR_EQ(r.body, "");
  svc_http_free(first);
  svc_http_free(NULL);
}

TEST(ipv6_loopback) {
  svc_http_config_t cfg = {.bind_address = "::1", .port = 0};
  char err[256] = "";
  svc_http_t *http = NULL;
  svc_err_t rc = svc_http_new(&cfg, &http, err, sizeof err);
  if (rc == SVC_EIO) {
    /* A host without IPv6 cannot bind ::1; that is the environment, not the code. */
    fprintf(stderr, "no IPv6 loopback here (%s); skipping this case\n", err);
    return;
  }
  ASSERT_EQ(rc, SVC_OK);
  ASSERT_NE(svc_http_port(http), 0);
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT(fd >= 0);
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)svc_http_port(http))};
  sa.sin6_addr = in6addr_loopback;
  ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof sa));
  const char *raw = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(write(fd, raw, strlen(raw)), (ssize_t)strlen(raw));
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  ASSERT_OP(n, >, 0);
  buf[n] = '\0';
  ASSERT_STR_CONTAINS(buf, "200");
  close(fd);
  svc_http_free(http);
}
