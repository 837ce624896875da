/*
 * The dispatcher of the `sluice` command line (cli_main in cli.h): finds the command in the
 * table of commands.c by its leading words, and answers --help for commands and groups.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#include <stdarg.h>

void cli_cmd_help(const cli_cmd_t *cmd, FILE *out) { fputs(cmd->usage, out); }

const char *cli_cmd_usage(const char *name) {
  for (const cli_cmd_t *c = cli_commands; c->name; c++)
    if (strcmp(c->name, name) == 0) return c->usage;
  return "";
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  fprintf(stderr, "sluice %s: ", cmd);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n\n%s", cli_cmd_usage(cmd));
  return CLI_EXIT_USAGE;
}

int cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) return 0;
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
  }
  return 0;
}

/* Number of words of `name` matched by argv[1..], or 0 when they differ. */
static int match_words(const char *name, int argc, char **argv) {
  int k = 1;
  const char *p = name;
  while (*p) {
    if (k >= argc) return 0;
    size_t wl = strcspn(p, " ");
    if (strlen(argv[k]) != wl || strncmp(argv[k], p, wl) != 0) return 0;
    k++;
    p += wl;
    if (*p == ' ') p++;
  }
  return k - 1;
}

/*
 * Lists the commands whose names start with the first `depth` words of argv[1..] and returns
 * how many there are (only counts when out is NULL).
 */
static int list_commands(FILE *out, int depth, char **argv) {
  int n = 0;
  for (const cli_cmd_t *c = cli_commands; c->name; c++) {
    const char *p = c->name;
    int ok = 1;
    for (int d = 0; d < depth && ok; d++) {
      size_t wl = strcspn(p, " ");
      if (strlen(argv[1 + d]) != wl || strncmp(argv[1 + d], p, wl) != 0 || p[wl] != ' ')
        ok = 0;
      p += wl + 1;
    }
    if (!ok) continue;
    if (out != NULL) fprintf(out, "  %-16s %s\n", c->name, c->summary);
    n++;
  }
  return n;
}

static void print_usage(FILE *out) {
  fputs("usage: sluice COMMAND [OPTIONS]\n"
        "\n"
        "Sluice's command line: data, training and evaluation of the domain models.\n"
        "Every command takes --help.\n"
        "\n"
        "commands:\n",
        out);
  list_commands(out, 0, NULL);
}

int cli_main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    if (argc >= 3 && strcmp(argv[1], "help") == 0) {
      /* `sluice help data describe` is `sluice data describe --help`. */
      for (const cli_cmd_t *c = cli_commands; c->name; c++)
        if (match_words(c->name, argc - 1, argv + 1) == argc - 2) {
          cli_cmd_help(c, stdout);
          return CLI_EXIT_OK;
        }
      fprintf(stderr, "sluice: no command named '%s'\n", argv[2]);
      return CLI_EXIT_USAGE;
    }
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
  }
  const cli_cmd_t *best = NULL;
  int best_words = 0;
  for (const cli_cmd_t *c = cli_commands; c->name; c++) {
    int w = match_words(c->name, argc, argv);
    if (w > best_words) {
      best = c;
      best_words = w;
    }
  }
  if (best == NULL) {
    /* A group name alone (`sluice data`, `sluice data --help`) lists its commands. */
    int help = argc == 3 && cli_wants_help(argc - 1, argv + 1);
    if (list_commands(NULL, 1, argv) == 0) {
      fprintf(stderr, "sluice: unknown command '%s'\n\n", argv[1]);
      print_usage(stderr);
      return CLI_EXIT_USAGE;
    }
    FILE *out = help ? stdout : stderr;
    if (!help) fprintf(stderr, "sluice: '%s' needs one of its commands\n", argv[1]);
    fprintf(out, "commands of 'sluice %s':\n", argv[1]);
    list_commands(out, 1, argv);
    return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
  }
  int sub_argc = argc - best_words;
  char **sub_argv = argv + best_words;
  sub_argv[0] = (char *)best->name;
  if (cli_wants_help(sub_argc, sub_argv)) {
    cli_cmd_help(best, stdout);
    return CLI_EXIT_OK;
  }
  return best->run(sub_argc, sub_argv);
}

