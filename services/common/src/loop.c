/* The loop helpers of svc/loop.h: signal watching and closing what is left on a loop. */
#include "svc/loop.h"

#include <stdlib.h>

#include "svc/log.h"

#define SVC_MAX_SIGNALS 8

typedef struct {
  svc_signals_t pub; /* first: the public pointer is the private one */
  uv_signal_t h[SVC_MAX_SIGNALS];
  size_t n, open;
  svc_signal_cb cb;
  void (*close_cb)(svc_signals_t *sig);
} signals_t;

static void on_signal(uv_signal_t *h, int signum) {
  signals_t *s = h->data;
  SVC_LOG(SVC_LOG_INFO, "signal received", "signal=%d", signum);
  s->cb(&s->pub, signum);
}

static void sig_closed(uv_handle_t *h) {
  signals_t *s = h->data;
  if (--s->open > 0) return;
  if (s->close_cb != NULL) s->close_cb(&s->pub);
  free(s);
}

svc_err_t svc_signals_new(uv_loop_t *loop, const int *signums, size_t n, svc_signal_cb cb,
                          void *data, svc_signals_t **out) {
  *out = NULL;
  if (n == 0 || n > SVC_MAX_SIGNALS || cb == NULL) return SVC_EINVAL;
  signals_t *s = calloc(1, sizeof *s);
  if (s == NULL) return SVC_ENOMEM;
  s->pub.data = data;
  s->cb = cb;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    rc = uv_signal_init(loop, &s->h[i]);
    if (rc != 0) break;
    s->h[i].data = s;
    s->open++;
    rc = uv_signal_start(&s->h[i], on_signal, signums[i]);
    uv_unref((uv_handle_t *)&s->h[i]);
  }
  if (rc != 0) {
    SVC_LOG(SVC_LOG_ERROR, "cannot watch signals", "err=\"%s\"", uv_strerror(rc));
    if (s->open == 0) {
      free(s);
    } else {
      for (size_t i = 0, k = s->open; i < k; i++) uv_close((uv_handle_t *)&s->h[i], sig_closed);
    }
    return svc_err_from_uv(rc);
  }
  s->n = n;
  *out = &s->pub;
  return SVC_OK;
}

void svc_signals_close(svc_signals_t *sig, void (*close_cb)(svc_signals_t *sig)) {
  signals_t *s = (signals_t *)sig;
  s->close_cb = close_cb;
  for (size_t i = 0; i < s->n; i++) uv_close((uv_handle_t *)&s->h[i], sig_closed);
}

static void close_one(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

svc_err_t svc_loop_close_all(uv_loop_t *loop) {
  uv_walk(loop, close_one, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return svc_err_from_uv(uv_loop_close(loop));
}
