/* The progress bar of cli.h: stderr only, terminals only, throttled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

char *cli_progress_format(char *buf, size_t size, const char *label, uint64_t done,
                          uint64_t total, int width) {
  if (width < 1) width = 1;
  if (width > 200) width = 200;
  if (done > total) done = total;
  int fill = total ? (int)((double)done / (double)total * width) : width;
  int pct = total ? (int)((double)done * 100.0 / (double)total) : 100;
  char bar[201];
  memset(bar, '#', (size_t)fill);
  memset(bar + fill, ' ', (size_t)(width - fill));
  bar[width] = '\0';
  snprintf(buf, size, "%s [%s] %3d %% %llu/%llu", label, bar, pct, (unsigned long long)done,
           (unsigned long long)total);
  return buf;
}

void cli_progress_init(cli_progress_t *pb, const char *label, uint64_t total) {
  pb->label = label;
  pb->total = total;
  pb->last_draw = 0;
  pb->drawn = 0;
  const char *off = getenv("SLUICE_NO_PROGRESS");
  pb->enabled = isatty(STDERR_FILENO) && (off == NULL || off[0] == '\0');
}

static void progress_draw(cli_progress_t *pb, uint64_t done) {
  char buf[320];
  cli_progress_format(buf, sizeof(buf), pb->label, done, pb->total, 30);
  fprintf(stderr, "\r%s", buf);
  fflush(stderr);
  pb->drawn = 1;
}

void cli_progress_update(cli_progress_t *pb, uint64_t done) {
  if (!pb->enabled) return;
  double t = now_s();
  if (pb->drawn && t - pb->last_draw < 0.1) return;
  pb->last_draw = t;
  progress_draw(pb, done);
}

void cli_progress_close(cli_progress_t *pb) {
  if (!pb->enabled) return;
  progress_draw(pb, pb->total);
  fputc('\n', stderr);
}
