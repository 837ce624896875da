/*
 * `sluice replay`: streams a public data set into Kafka as Envelope protobuf events
 * (replay.h says which event each row becomes), in event-time order, at a given rate or as
 * fast as the producer takes them, and counts the delivery reports.
 *
 * It runs on a libuv loop with the services' producer (svc/kafka.h): a timer ticks every
 * REPLAY_TICK_MS and refills a token bucket (rate N/s, at most a tenth of a second's worth
 * banked, so a stall is not followed by a burst); each whole token sends one event. With --max
 * the bucket is bypassed and the producer's own queue limit paces us (SVC_EAGAIN: the event is
 * retried on the next tick). When everything is sent, the producer is flushed and closed, and
 * the summary counts sent, delivered and failed events; any failure makes the exit status 1.
 * SIGINT/SIGTERM stop sending early; what was sent is still flushed and reported.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cli.h"
#include "replay.h"
#include "svc/kafka.h"

#define REPLAY_TICK_MS 5
/* Events sent per tick with --max: keeps the loop responsive to delivery reports. */
#define REPLAY_MAX_BURST 5000

typedef struct replay_run_s {
  uv_loop_t loop;
  uv_timer_t timer;
  uv_signal_t sigint, sigterm;
  kq_producer_t *prod;
  const cli_replay_t *rp;
  const char *topic;
  double rate;    /* events per second; 0 with --max */
  int loop_mode;
  uint64_t limit; /* total events to send; UINT64_MAX: no limit */
  uint64_t next;  /* global index of the next event: pass * n + k */
  uint64_t sent, delivered, failed;
  double tokens;
  uint64_t last_ns;
  uint64_t start_ns, end_ns;
  uint64_t first_send_ns, last_send_ns;
  int stopping;   /* no more sends */
  int closing;    /* producer close started */
  int interrupted;
  int send_error; /* a send failed without a delivery report */
  char error[512];
  cli_progress_t pb;
  uint64_t pb_total;
} replay_run_t;

static void on_closed(kq_producer_t *prod, size_t n_undelivered) {
  replay_run_t *run = prod->data;
  (void)n_undelivered; /* each also got an SVC_ECANCELED report, counted as failed */
  run->end_ns = uv_hrtime();
  uv_close((uv_handle_t *)&run->timer, NULL);
  uv_close((uv_handle_t *)&run->sigint, NULL);
  uv_close((uv_handle_t *)&run->sigterm, NULL);
}

static void maybe_finish(replay_run_t *run) {
  if (!run->stopping || run->closing) return;
  if (run->delivered + run->failed < run->sent) return;
  run->closing = 1;
  uv_timer_stop(&run->timer);
  cli_progress_close(&run->pb);
  kq_producer_close(run->prod, 30000, on_closed);
}

static void on_delivery(kq_producer_t *prod, const rd_kafka_message_t *msg, svc_err_t err,
                        void *opaque) {
  replay_run_t *run = prod->data;
  (void)msg;
  (void)opaque;
  if (err == SVC_OK) {
    run->delivered++;
  } else {
    if (run->failed == 0)
      snprintf(run->error, sizeof(run->error), "delivery failed: %s%s%s", svc_strerror(err),
               msg && msg->err ? ": " : "", msg && msg->err ? rd_kafka_err2str(msg->err) : "");
    run->failed++;
  }
  maybe_finish(run);
}

/* Sends one event; 1 when it was queued, 0 when the producer is full, -1 on error. */
static int send_one(replay_run_t *run) {
  const cli_replay_t *rp = run->rp;
  uint64_t pass = run->next / rp->n;
  size_t k = (size_t)(run->next % rp->n);
  cli_replay_event_t ev;
  if (cli_replay_event(rp, k, pass, &ev) != CLI_OK) {
    snprintf(run->error, sizeof(run->error), "out of memory");
    return -1;
  }
  kq_header_t hdr = {"sluice-event-id", ev.event_id, strlen(ev.event_id)};
  kq_record_t rec = {.topic = run->topic,
                     .partition = KQ_PARTITION_ANY,
                     .key = ev.key,
                     .key_len = strlen(ev.key),
                     .value = ev.value,
                     .value_len = ev.value_len,
                     .headers = &hdr,
                     .n_headers = 1,
                     /* The Kafka timestamp is the send time (librdkafka's now), not
                      * the event time, which travels in the envelope: historical event
                      * times would make the broker's time-based retention delete what was
                      * just replayed, and pipeline latency is measured from the send. */
                     .timestamp_ms = 0};
  svc_err_t err = kq_producer_send(run->prod, &rec);
  free(ev.value);
  if (err == SVC_EAGAIN) return 0;
  if (err != SVC_OK) {
    snprintf(run->error, sizeof(run->error), "cannot send event %s: %s", ev.event_id,
             svc_strerror(err));
    return -1;
  }
  run->sent++;
  run->next++;
  run->last_send_ns = uv_hrtime();
  /* The rate is measured from the second record: the first waits for the producer alone. */
  if (run->sent <= 2) run->first_send_ns = run->last_send_ns;
  return 1;
}

static int all_sent(const replay_run_t *run) {
  if (run->sent >= run->limit) return 1;
  return !run->loop_mode && run->next >= run->rp->n;
}

static void on_tick(uv_timer_t *timer) {
  replay_run_t *run = timer->data;
  if (run->stopping) {
    maybe_finish(run);
    return;
  }
  uint64_t now = uv_hrtime();
  /* The first record goes alone, and the pace starts once it is delivered: until then the
   * producer is still connecting and getting its idempotent producer id (on a fresh broker
   * that takes a second or more), and records queued meanwhile would carry their queueing
   * time as end-to-end latency into every consumer's figures. */
  if (run->sent == 1 && run->delivered + run->failed == 0 && !all_sent(run)) {
    run->last_ns = now;
    run->tokens = 0;
    return;
  }
  int budget;
  if (run->sent == 0) {
    budget = 1;
  } else if (run->rate > 0) {
    double dt = (double)(now - run->last_ns) * 1e-9;
    double cap = run->rate * 0.1 > 1.0 ? run->rate * 0.1 : 1.0;
    run->tokens += run->rate * dt;
    if (run->tokens > cap) run->tokens = cap;
    budget = (int)floor(run->tokens);
  } else {
    budget = REPLAY_MAX_BURST;
  }
  run->last_ns = now;
  int n = 0;
  while (n < budget && !all_sent(run)) {
    int r = send_one(run);
    if (r < 0) {
      run->send_error = 1;
      run->stopping = 1;
      break;
    }
    if (r == 0) break; /* queue full: wait for delivery reports */
    n++;
  }
  if (run->rate > 0) run->tokens -= n;
  cli_progress_update(&run->pb, run->pb_total == run->rp->n && run->loop_mode
                                    ? run->next % run->rp->n
                                    : run->sent);
  if (all_sent(run)) run->stopping = 1;
  maybe_finish(run);
}

static void on_signal(uv_signal_t *sig, int signum) {
  replay_run_t *run = sig->data;
  (void)signum;
  run->interrupted = 1;
  run->stopping = 1;
  maybe_finish(run);
}

/* "500", "500/s", "2.5k/s". */
static int parse_rate(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || !isfinite(v) || v <= 0) return -1;
  if (*end == 'k') {
    v *= 1000;
    end++;
  }
  if (strcmp(end, "") != 0 && strcmp(end, "/s") != 0) return -1;
  *out = v;
  return 0;
}

static const char *default_topic(int task) {
  if (task == CLI_TASK_FRAUD) return "sluice.fraud.events";
  if (task == CLI_TASK_AI4I || task == CLI_TASK_CMAPSS || task == CLI_REPLAY_SKAB)
    return "sluice.fault.events";
  return "sluice.records.events";
}

/* "sluice replay: <message>" and the usage text: cli_usage_error (cli.h). */
#define usage_error(...) cli_usage_error("replay", __VA_ARGS__)

int cli_cmd_replay(int argc, char **argv) {
  static const struct option opts[] = {{"task", required_argument, NULL, 't'},
                                       {"data", required_argument, NULL, 'd'},
                                       {"brokers", required_argument, NULL, 'b'},
                                       {"topic", required_argument, NULL, 'T'},
                                       {"rate", required_argument, NULL, 'r'},
                                       {"max", no_argument, NULL, 'm'},
                                       {"limit", required_argument, NULL, 'l'},
                                       {"loop", no_argument, NULL, 'L'},
                                       {"json", no_argument, NULL, 'j'},
                                       {NULL, 0, NULL, 0}};
  const char *task_name = NULL, *brokers = NULL, *topic = NULL;
  double rate = 0;
  int max = 0, json = 0, loop_mode = 0, c, task, status = CLI_EXIT_FAIL, opened = 0, loop_ok = 0;
  uint64_t limit = UINT64_MAX;
  const char **files = calloc((size_t)argc + 1, sizeof(char *));
  size_t n_file = 0;
  char err[1024];
  cli_replay_t rp;
  replay_run_t *run = calloc(1, sizeof(*run));
  if (files == NULL || run == NULL) {
    free(files);
    free(run);
    return CLI_EXIT_FAIL;
  }
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case 't': task_name = optarg; break;
    case 'd': files[n_file++] = optarg; break;
    case 'b': brokers = optarg; break;
    case 'T': topic = optarg; break;
    case 'r':
      if (parse_rate(optarg, &rate) != 0) {
        status = usage_error("--rate wants a positive number of events per second (500, "
                             "500/s, 2k/s), not '%s'",
                             optarg);
        goto done;
      }
      break;
    case 'm': max = 1; break;
    case 'l': {
      char *end;
      long long v = strtoll(optarg, &end, 10);
      if (end == optarg || *end != '\0' || v <= 0) {
        status = usage_error("--limit wants a positive integer, not '%s'", optarg);
        goto done;
      }
      limit = (uint64_t)v;
      break;
    }
    case 'L': loop_mode = 1; break;
    case 'j': json = 1; break;
    default:
      status = usage_error(c == ':' ? "missing value for option '%s'" : "unknown option '%s'",
                           argv[optind - 1]);
      goto done;
    }
  }
  for (int i = optind; i < argc; i++) files[n_file++] = argv[i];
  if (task_name == NULL || n_file == 0 || brokers == NULL) {
    status = usage_error("--task, --data and --brokers are required");
    goto done;
  }
  if (cli_replay_task_parse(task_name, &task) != CLI_OK) {
    status = usage_error("unknown task '%s' (fraud, fault-ai4i, fault-cmapss, fault-skab, "
                         "records-mtsamples, records-abstracts)",
                         task_name);
    goto done;
  }
  if ((rate > 0) == (max != 0)) {
    status = usage_error("give exactly one of --rate N/s and --max");
    goto done;
  }
  if (cli_replay_open(&rp, task, files, n_file, err, sizeof(err)) != CLI_OK) {
    fprintf(stderr, "sluice replay: %s\n", err);
    goto done;
  }
  opened = 1;
  if (rp.n == 0) {
    fprintf(stderr, "sluice replay: the data has no rows\n");
    goto done;
  }
  run->rp = &rp;
  run->topic = topic ? topic : default_topic(task);
  run->rate = max ? 0 : rate;
  run->loop_mode = loop_mode;
  run->limit = limit;
  if (uv_loop_init(&run->loop) != 0) goto done;
  loop_ok = 1;
  kq_producer_opts_t po = {.brokers = brokers, .on_delivery = on_delivery, .data = run};
  if (kq_producer_new(&run->loop, &po, &run->prod, err, sizeof(err)) != SVC_OK) {
    fprintf(stderr, "sluice replay: cannot create the Kafka producer for %s: %s\n", brokers, err);
    goto done;
  }
  uv_timer_init(&run->loop, &run->timer);
  uv_signal_init(&run->loop, &run->sigint);
  uv_signal_init(&run->loop, &run->sigterm);
  run->timer.data = run->sigint.data = run->sigterm.data = run;
  uv_signal_start(&run->sigint, on_signal, SIGINT);
  uv_signal_start(&run->sigterm, on_signal, SIGTERM);
  run->pb_total = limit != UINT64_MAX ? limit : rp.n;
  cli_progress_init(&run->pb, "replay", run->pb_total);
  run->start_ns = run->last_ns = uv_hrtime();
  uv_timer_start(&run->timer, on_tick, 0, REPLAY_TICK_MS);
  uv_run(&run->loop, UV_RUN_DEFAULT);

  double secs = (double)(run->end_ns - run->start_ns) * 1e-9;
  /* The sending rate (what --rate controls); the total time also holds connecting and the
   * final flush. */
  double send_secs = (double)(run->last_send_ns - run->first_send_ns) * 1e-9;
  double eps = run->sent > 2 && send_secs > 0 ? (double)(run->sent - 2) / send_secs : 0;
  if (json) {
    cli_json_t js;
    cli_json_init(&js, stdout);
    cli_json_obj_begin(&js);
    cli_json_key(&js, "task");
    cli_json_str(&js, task_name);
    cli_json_key(&js, "topic");
    cli_json_str(&js, run->topic);
    cli_json_key(&js, "sent");
    cli_json_int(&js, (long long)run->sent);
    cli_json_key(&js, "delivered");
    cli_json_int(&js, (long long)run->delivered);
    cli_json_key(&js, "failed");
    cli_json_int(&js, (long long)run->failed);
    cli_json_key(&js, "seconds");
    cli_json_num(&js, secs);
    cli_json_key(&js, "events_per_s");
    cli_json_num(&js, eps);
    cli_json_key(&js, "interrupted");
    cli_json_bool(&js, run->interrupted);
    cli_json_obj_end(&js);
  } else {
    printf("replay     %s -> %s\n", task_name, run->topic);
    printf("sent       %llu\ndelivered  %llu\nfailed     %llu\n", (unsigned long long)run->sent,
           (unsigned long long)run->delivered, (unsigned long long)run->failed);
    printf("time       %.3f s in all, sending at %.0f events/s%s\n", secs, eps,
           run->interrupted ? " (interrupted)" : "");
  }
  if (run->error[0]) fprintf(stderr, "sluice replay: %s\n", run->error);
  status = run->failed == 0 && !run->send_error ? CLI_EXIT_OK : CLI_EXIT_FAIL;
done:
  if (loop_ok) {
    /* A producer that failed to open may leave handles for the loop to close. */
    uv_run(&run->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&run->loop) != 0) fprintf(stderr, "sluice replay: loop not closed\n");
  }
  if (opened) cli_replay_close(&rp);
  free(run);
  free(files);
  return status;
}
