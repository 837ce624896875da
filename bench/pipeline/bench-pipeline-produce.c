/*
 * bench-pipeline-produce: the load generator of the pipeline benchmark, run as its own process
 * so that producing does not share the worker's loop or allocator. It sends card transactions
 * (sluice.v1.Envelope with a Transaction: unique event id, card id as the record key, amount,
 * 28 V features) at a fixed offered rate with a token bucket (or as fast as it can with
 * --rate 0), stamping each with the wall clock at send as both its event time and its Kafka
 * timestamp, so that "committed minus event time" is the end-to-end latency. The producer is
 * idempotent (acks=all), so a retry cannot store an event twice. Ends with one JSON line:
 *   {"produced":N,"seconds":S,"events_per_s":R,"failed":F,"late_sends":L,"cpu_s":C}
 * where late_sends counts sends more than 5 ms behind the bucket's schedule (the producer,
 * not the pipeline, was then the limit).
 *
 * Usage: bench-pipeline-produce --brokers B --topic T --count N [--rate R] [--cards C]
 *                               [--id-prefix P] [--seed S] [--partitions P]
 * --partitions creates the topic with P partitions first (an existing topic is kept as it is;
 * the broker's tools are not installed here, so the benchmark creates it through librdkafka).
 * --count 0 with --partitions only creates the topic.
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sluice/v1/envelope.pb-c.h"

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }

static long failed;
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) {
    if (failed++ < 5)
      fprintf(stderr, "bench-pipeline-produce: delivery failed: %s\n", rd_kafka_err2str(m->err));
  }
}

/* Creates `topic` with `partitions` partitions; an existing topic is fine. 0 or -1. */
static int create_topic(rd_kafka_t *rk, const char *topic, int partitions) {
  char err[512];
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof err);
  if (nt == NULL) {
    fprintf(stderr, "bench-pipeline-produce: topic %s: %s\n", topic, err);
    return -1;
  }
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
  int rc = -1;
  const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
  if (res == NULL) {
    fprintf(stderr, "bench-pipeline-produce: creating topic %s: %s\n", topic,
            ev ? rd_kafka_event_error_string(ev) : "no answer in 30 s");
  } else {
    size_t n;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
    rd_kafka_resp_err_t e = n == 1 ? rd_kafka_topic_result_error(tr[0]) : RD_KAFKA_RESP_ERR__FAIL;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) rc = 0;
    else
      fprintf(stderr, "bench-pipeline-produce: creating topic %s: %s\n", topic,
              n == 1 ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  return rc;
}

/*
 * Gets the producer ready before the clock starts: an idempotent producer first acquires its
 * producer id (on a fresh broker the coordinator can take seconds to load), and a first send
 * to a topic waits for its metadata. Records produced meanwhile carry the time they were
 * produced, so without this the first second of a fixed-rate phase measured the producer's
 * start-up as end-to-end latency. One record goes to "<topic>.warmup" (never read by the
 * worker, so the counted topic holds exactly the benchmark's events), then the topic's
 * metadata is fetched. Returns 0, or -1 with a message.
 */
static int warm_up(rd_kafka_t *rk, const char *topic) {
  char warm[256];
  snprintf(warm, sizeof warm, "%s.warmup", topic);
  if (create_topic(rk, warm, 1) != 0) return -1;
  rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(warm), RD_KAFKA_V_VALUE("w", 1),
                                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                            RD_KAFKA_V_END);
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) e = rd_kafka_flush(rk, 60000);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fprintf(stderr, "bench-pipeline-produce: warm-up record to %s: %s\n", warm,
            rd_kafka_err2str(e));
    return -1;
  }
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  e = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 30000) : RD_KAFKA_RESP_ERR__FAIL;
  if (md) rd_kafka_metadata_destroy(md);
  if (rkt) rd_kafka_topic_destroy(rkt);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fprintf(stderr, "bench-pipeline-produce: metadata of %s: %s\n", topic, rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: bench-pipeline-produce --brokers B --topic T --count N [--rate R "
                  "(events/s, 0 = as fast as possible)] [--cards C] [--id-prefix P] [--seed S] "
                  "[--partitions P]\n");
}

int main(int argc, char **argv) {
  const char *brokers = NULL, *topic = NULL, *prefix = "ev";
  long count = -1, cards = 100000, partitions = 0;
  double rate = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) {
      fprintf(stderr, "bench-pipeline-produce: %s needs a value\n", a);
      usage();
      return 2;
    }
    i++;
    char *end = NULL;
    if (strcmp(a, "--brokers") == 0) brokers = v;
    else if (strcmp(a, "--topic") == 0) topic = v;
    else if (strcmp(a, "--id-prefix") == 0) prefix = v;
    else if (strcmp(a, "--count") == 0) count = strtol(v, &end, 10);
    else if (strcmp(a, "--cards") == 0) cards = strtol(v, &end, 10);
    else if (strcmp(a, "--partitions") == 0) partitions = strtol(v, &end, 10);
    else if (strcmp(a, "--rate") == 0) rate = strtod(v, &end);
    else if (strcmp(a, "--seed") == 0) rng_state ^= strtoull(v, &end, 10) * 0x2545f4914f6cdd1dull;
    else {
      fprintf(stderr, "bench-pipeline-produce: unknown argument %s\n", a);
      usage();
      return 2;
    }
    if (end != NULL && (*end != '\0' || end == v)) {
      fprintf(stderr, "bench-pipeline-produce: %s: \"%s\" is not a number\n", a, v);
      return 2;
    }
  }
  if (brokers == NULL || topic == NULL || count < 0 || cards <= 0 || rate < 0 ||
      partitions < 0) {
    usage();
    return 2;
  }

  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  const char *settings[][2] = {{"bootstrap.servers", brokers},
                               {"enable.idempotence", "true"},
                               {"linger.ms", "5"},
                               {"batch.num.messages", "10000"},
                               {"queue.buffering.max.messages", "1000000"},
                               {"queue.buffering.max.kbytes", "1048576"},
                               /* Small requests go out at once (TCP_NODELAY), as from a
                                * latency-minded producer; the worker's clients do the same. */
                               {"socket.nagle.disable", "true"}};
  for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
    if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
      fprintf(stderr, "bench-pipeline-produce: %s: %s\n", settings[i][0], err);
      return 2;
    }
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == NULL) {
    fprintf(stderr, "bench-pipeline-produce: %s\n", err);
    return 1;
  }

  if (partitions > 0 && create_topic(rk, topic, (int)partitions) != 0) return 1;
  if (count > 0 && warm_up(rk, topic) != 0) return 1;

  float v[28];
  uint8_t buf[1024];
  long late = 0;
  double t0 = mono_s();
  for (long i = 0; i < count; i++) {
    if (rate > 0) {
      /* Token bucket: event i is due at t0 + i / rate; sleep until then, never burst ahead.
       * No busy-wait: at 10,000/s the gap (100 us) is below what a sleep takes, and spinning
       * for it kept one of the machine's two cores busy (87 us of producer CPU per event),
       * taken from the pipeline it measures. Sleeping longer than asked only makes the
       * events that fall due meanwhile go out together, each stamped when it is sent. */
      double due = t0 + (double)i / rate;
      double now = mono_s();
      if (now < due) {
        rd_kafka_poll(rk, 0);
        double wait = due - now;
        struct timespec ts = {0, (long)(wait * 1e9)};
        nanosleep(&ts, NULL);
      } else if (now - due > 5e-3) {
        late++;
      }
    }
    char id[96], card[32];
    snprintf(id, sizeof id, "%s-%ld", prefix, i);
    snprintf(card, sizeof card, "card-%" PRIu64, rng_next() % (uint64_t)cards);
    Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
    Sluice__V1__Transaction tx = SLUICE__V1__TRANSACTION__INIT;
    int64_t at = wall_ms();
    env.event_id = id;
    env.key = card;
    env.has_event_time_ms = 1;
    env.event_time_ms = at;
    env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
    env.transaction = &tx;
    tx.has_amount = 1;
    tx.amount = floor(exp(rng_unit() * 7.0) * 100.0) / 100.0; /* 1 .. 1100, mostly small */
    tx.card_id = card;
    for (int k = 0; k < 28; k++) v[k] = (float)((rng_unit() + rng_unit() + rng_unit() - 1.5) * 2.0);
    tx.n_features = 28;
    tx.features = v;
    size_t len = sluice__v1__envelope__get_packed_size(&env);
    if (len > sizeof buf) {
      fprintf(stderr, "bench-pipeline-produce: event %ld packs to %zu bytes\n", i, len);
      return 1;
    }
    sluice__v1__envelope__pack(&env, buf);
    for (;;) {
      rd_kafka_resp_err_t e = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(card, strlen(card)),
          RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_TIMESTAMP(at),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        fprintf(stderr, "bench-pipeline-produce: produce event %ld: %s\n", i, rd_kafka_err2str(e));
        return 1;
      }
      rd_kafka_poll(rk, 10); /* the local queue is full: let deliveries drain it */
    }
    if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
  }
  rd_kafka_resp_err_t fe = rd_kafka_flush(rk, 60000);
  double secs = mono_s() - t0;
  rd_kafka_destroy(rk);
  if (fe != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fprintf(stderr, "bench-pipeline-produce: flush: %s\n", rd_kafka_err2str(fe));
    failed += 1;
  }
  /* The producer's own CPU (all its threads), for the benchmark's account of the machine. */
  struct rusage ru;
  double cpu_s = 0;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
  printf("{\"produced\":%ld,\"seconds\":%.3f,\"events_per_s\":%.0f,\"failed\":%ld,"
         "\"late_sends\":%ld,\"cpu_s\":%.3f}\n",
         count, secs, secs > 0 ? (double)count / secs : 0.0, failed, late, cpu_s);
  return failed ? 1 : 0;
}
