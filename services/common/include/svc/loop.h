/*
 * Loop helpers shared by the services: turning SIGTERM / SIGINT / SIGHUP into callbacks on the
 * loop thread (graceful shutdown, configuration reload), and closing every handle left on a
 * loop when a service shuts down after an error.
 *
 * Threads: loop thread only; callbacks run on the loop thread.
 */
#ifndef SVC_LOOP_H
#define SVC_LOOP_H

#include <stddef.h>
#include <uv.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct svc_signals_s {
  void *data; /* the user's */
} svc_signals_t;

/* Runs on the loop thread for each delivery of a watched signal. */
typedef void (*svc_signal_cb)(svc_signals_t *sig, int signum);

/*
 * Watches the `n` signals in `signums` (e.g. SIGTERM, SIGINT, SIGHUP) with uv_signal. The
 * handles do not keep the loop alive on their own (they are unreferenced), so a service whose
 * real work has finished still exits (and so, like any unreferenced handle, they fire only
 * while something else keeps the loop running). Returns SVC_OK, SVC_EINVAL (n == 0 or more than 8) or a
 * mapped libuv error; on failure nothing needs closing (the loop frees the remains on its next
 * run).
 */
svc_err_t svc_signals_new(uv_loop_t *loop, const int *signums, size_t n, svc_signal_cb cb,
                          void *data, svc_signals_t **out);

/* Stops watching; close_cb (may be NULL) runs when the handles are closed, then memory is freed. */
void svc_signals_close(svc_signals_t *sig, void (*close_cb)(svc_signals_t *sig));

/*
 * Closes every handle still open on `loop` (without callbacks of ours) and runs the loop until
 * they are gone, then closes the loop. For the error path of a service's main(); objects that
 * own handles (consumers, connections) must be closed through their own API first, or their
 * memory leaks. Returns the result of uv_loop_close mapped to svc_err_t.
 */
svc_err_t svc_loop_close_all(uv_loop_t *loop);

#ifdef __cplusplus
}
#endif
#endif /* SVC_LOOP_H */
