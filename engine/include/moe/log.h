/*
 * libmoe's logging hook. The engine never prints: it hands each message to a callback that the
 * host installs (a service forwards it to its structured log, a test may collect it). Without
 * a callback, messages are dropped before they are formatted.
 */
#ifndef MOE_LOG_H
#define MOE_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  MOE_LOG_DEBUG = 0,
  MOE_LOG_INFO = 1,
  MOE_LOG_WARN = 2,
  MOE_LOG_ERROR = 3,
  MOE_LOG_NONE = 4 /* as a minimum level: log nothing */
} moe_log_level_t;

/*
 * Receives one message: a NUL-terminated line without trailing newline, valid only during the
 * call. Called on whichever thread the engine is running on, possibly concurrently, so the
 * callback must be thread-safe. It must not call back into the engine.
 */
typedef void (*moe_log_cb)(moe_log_level_t level, const char *msg, void *user);

/*
 * Installs `cb` with its `user` pointer; NULL removes the callback (messages are dropped).
 * Call at startup, before other threads use the engine: the pair is not swapped atomically.
 */
void moe_log_set(moe_log_cb cb, void *user);
/* Messages below `level` are dropped before formatting. Default MOE_LOG_INFO. Thread-safe. */
void moe_log_set_level(moe_log_level_t level);
moe_log_level_t moe_log_get_level(void);
/* "debug", "info", "warn", "error", "none"; "?" for anything else. */
const char *moe_log_level_name(moe_log_level_t level);

#ifdef __cplusplus
}
#endif
#endif /* MOE_LOG_H */
