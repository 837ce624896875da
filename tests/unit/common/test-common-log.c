/*
 * The structured logger: the level threshold drops lines before formatting (the arguments
 * are not even evaluated), logfmt and JSON lines have the documented shape, values are quoted
 * and escaped so that one event is one line, and lines from many threads never interleave.
 */
#include "test.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "svc/log.h"

typedef struct {
  int n;
  char last[SVC_LOG_LINE_MAX + 1];
  svc_log_level_t last_level;
  int bad; /* lines that were not whole */
} capture_t;

static void capture_sink(void *ud, svc_log_level_t level, const char *line, size_t len) {
  capture_t *c = ud;
  c->n++;
  c->last_level = level;
  ASSERT_EQ(strlen(line), len);
  memcpy(c->last, line, len + 1);
  if (strncmp(line, "ts=", 3) != 0 || strchr(line, '\n') != NULL) c->bad++;
}

static int evaluated;
static int side_effect(void) { return ++evaluated; }

TEST(threshold_filters_before_formatting) {
  capture_t c = {0};
  svc_log_set_sink(capture_sink, &c);
  svc_log_set_format(SVC_LOG_LOGFMT);
  svc_log_set_level(SVC_LOG_WARN);
  evaluated = 0;
  SVC_LOG(SVC_LOG_DEBUG, "dropped", "n=%d", side_effect());
  SVC_LOG(SVC_LOG_INFO, "dropped too", "n=%d", side_effect());
  ASSERT_EQ(c.n, 0);
  ASSERT_EQ(evaluated, 0);
  SVC_LOG(SVC_LOG_WARN, "kept", "n=%d", side_effect());
  SVC_LOG(SVC_LOG_ERROR, "kept too");
  ASSERT_EQ(c.n, 2);
  ASSERT_EQ(evaluated, 1);
  ASSERT_EQ(c.last_level, SVC_LOG_ERROR);
  ASSERT_STR_CONTAINS(c.last, "level=error msg=\"kept too\"");
  svc_log_set_level(SVC_LOG_OFF);
  SVC_LOG(SVC_LOG_ERROR, "silenced");
  ASSERT_EQ(c.n, 2);
  ASSERT_EQ(svc_log_get_level(), SVC_LOG_OFF);
  svc_log_set_level(SVC_LOG_INFO);
  svc_log_set_sink(NULL, NULL);
}

TEST(logfmt_shape_and_quoting) {
  char buf[512];
  /* 2026-11-28T08:42:07.123Z */
  long long ts = 1795855327123LL;
  svc_log_format_line(buf, sizeof buf, SVC_LOG_LOGFMT, ts, SVC_LOG_INFO, "partition assigned",
                      " topic=t1 partition=3 err=\"broker said \"no\"\" note=a\"b empty=");
  ASSERT_STR_EQ(buf, "ts=2026-11-28T08:42:07.123Z level=info msg=\"partition assigned\" "
                     "topic=t1 partition=3 err=\"broker said \\\"no\\\"\" note=\"a\\\"b\" empty=\"\"");
  /* A newline inside a value never splits the event. */
  svc_log_format_line(buf, sizeof buf, SVC_LOG_LOGFMT, ts, SVC_LOG_WARN, "two\nlines",
                      "v=\"x\ny\" bare");
  ASSERT(strchr(buf, '\n') == NULL);
  ASSERT_STR_CONTAINS(buf, "msg=\"two\\nlines\" v=\"x\\ny\" _=bare");
}

TEST(quoted_foreign_text_survives) {
  capture_t c = {0};
  svc_log_set_sink(capture_sink, &c);
  svc_log_set_level(SVC_LOG_INFO);
  svc_log_set_format(SVC_LOG_JSON);
  const char *pg = "ERROR:  relation \"foo\" does not exist \\ end";
  SVC_LOG(SVC_LOG_INFO, "query failed", "err=\"%s\" n=1", pg);
  svc_log_set_format(SVC_LOG_LOGFMT);
  SVC_LOG(SVC_LOG_INFO, "query failed", "err=\"%s\" n=1", pg);
  svc_log_set_sink(NULL, NULL);
  ASSERT_EQ(c.n, 2);
  /* The last line is logfmt; the JSON one was checked through the same escaping below. */
  ASSERT_STR_CONTAINS(c.last, "err=\"ERROR:  relation \\\"foo\\\" does not exist \\\\ end\" n=1");
}

/* Every %s is made safe whether the format quotes it or not, and the other conversions
 * print as printf would. */
TEST(arguments_are_escaped_by_the_logger) {
  capture_t c = {0};
  svc_log_set_sink(capture_sink, &c);
  svc_log_set_level(SVC_LOG_INFO);
  const char *volatile none = NULL; /* volatile: the compiler would refuse a literal NULL */
  SVC_LOG(SVC_LOG_INFO, "x", "topic=%s err=\"%s\" empty=%s nul=%s", "bad topic!",
          "line one\n\"two\" x=1", "", none);
  ASSERT_STR_CONTAINS(c.last, "topic=\"bad topic!\" err=\"line one\\n\\\"two\\\" x=1\" "
                              "empty=\"\" nul=(null)");
  ASSERT(strchr(c.last, '\n') == NULL);
  char expect[256];
  snprintf(expect, sizeof expect, "n=%zu m=%" PRId64 " f=%.2f g=%g h=%x p=%d%% s=%.3s w=%0*d",
           (size_t)42, (int64_t)-7, 3.14159, 1e-9, 255u, 9, "abcdef", 4, 7);
  SVC_LOG(SVC_LOG_INFO, "x", "n=%zu m=%" PRId64 " f=%.2f g=%g h=%x p=%d%% s=%.3s w=%0*d",
          (size_t)42, (int64_t)-7, 3.14159, 1e-9, 255u, 9, "abcdef", 4, 7);
  ASSERT_STR_CONTAINS(c.last, expect);
  svc_log_set_format(SVC_LOG_JSON);
  SVC_LOG(SVC_LOG_INFO, "x", "topic=%s n=%d", "a \"b\"", 5);
  svc_log_set_format(SVC_LOG_LOGFMT);
  svc_log_set_sink(NULL, NULL);
  ASSERT_STR_CONTAINS(c.last, "\"topic\":\"a \\\"b\\\"\",\"n\":5}");
}

TEST(json_shape_and_types) {
  char buf[512];
  svc_log_format_line(buf, sizeof buf, SVC_LOG_JSON, 0, SVC_LOG_DEBUG, "batch \"stored\"",
                      "n=500 lag=-1.5e3 ok=true id=007 name=\"a b\" ver=1.2.3");
  ASSERT_STR_EQ(buf, "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"level\":\"debug\","
                     "\"msg\":\"batch \\\"stored\\\"\",\"n\":500,\"lag\":-1.5e3,\"ok\":true,"
                     "\"id\":\"007\",\"name\":\"a b\",\"ver\":\"1.2.3\"}");
}

TEST(truncation_is_marked) {
  char buf[64];
  size_t n = svc_log_format_line(buf, sizeof buf, SVC_LOG_LOGFMT, 0, SVC_LOG_INFO,
                                 "a message that is much longer than the tiny buffer given", "");
  ASSERT_EQ(n, sizeof buf - 1);
  ASSERT_EQ(strlen(buf), sizeof buf - 1);
  ASSERT_STR_EQ(buf + n - 3, "...");
}

TEST(parse_names) {
  svc_log_level_t l;
  svc_log_format_t f;
  ASSERT_OK(svc_log_level_parse("DEBUG", &l));
  ASSERT_EQ(l, SVC_LOG_DEBUG);
  ASSERT_OK(svc_log_level_parse("warning", &l));
  ASSERT_EQ(l, SVC_LOG_WARN);
  ASSERT_EQ(svc_log_level_parse("loud", &l), SVC_EINVAL);
  ASSERT_OK(svc_log_format_parse("json", &f));
  ASSERT_EQ(f, SVC_LOG_JSON);
  ASSERT_EQ(svc_log_format_parse("xml", &f), SVC_EINVAL);
  ASSERT_STR_EQ(svc_log_level_name(SVC_LOG_ERROR), "error");
  ASSERT_STR_EQ(svc_log_format_name(SVC_LOG_JSON), "json");
  /* The name tables are in enum order, for config enum rows. */
  for (int i = SVC_LOG_DEBUG; i <= SVC_LOG_OFF; i++) {
    ASSERT_OK(svc_log_level_parse(svc_log_level_names[i], &l));
    ASSERT_EQ(l, i);
  }
  ASSERT_NULL(svc_log_level_names[SVC_LOG_OFF + 1]);
  ASSERT_OK(svc_log_format_parse(svc_log_format_names[SVC_LOG_JSON], &f));
  ASSERT_EQ(f, SVC_LOG_JSON);
  ASSERT_NULL(svc_log_format_names[2]);
}

static void *log_many(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < 2000; i++) SVC_LOG(SVC_LOG_INFO, "from a thread", "thread=%d i=%d", id, i);
  return NULL;
}

TEST(threads_do_not_interleave) {
  capture_t c = {0};
  svc_log_set_sink(capture_sink, &c);
  svc_log_set_level(SVC_LOG_INFO);
  pthread_t th[4];
  for (int t = 0; t < 4; t++) pthread_create(&th[t], NULL, log_many, (void *)(intptr_t)t);
  for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
  svc_log_set_sink(NULL, NULL);
  ASSERT_EQ(c.n, 8000);
  ASSERT_EQ(c.bad, 0);
}
