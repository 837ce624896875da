/* `sluice version`: the program's version and the build it came from. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "unknown"
#endif

int cli_cmd_version(int argc, char **argv) {
  int json = 0;
  static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                       {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 'j') {
      json = 1;
    } else {
      fprintf(stderr, "sluice version: unknown option '%s'\n\n", argv[optind - 1]);
      fputs(cli_commands[0].usage, stderr);
      return CLI_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "sluice version: unexpected argument '%s'\n", argv[optind]);
    return CLI_EXIT_USAGE;
  }
  if (json) {
    cli_json_t js;
    cli_json_init(&js, stdout);
    cli_json_obj_begin(&js);
    cli_json_key(&js, "name");
    cli_json_str(&js, "sluice");
    cli_json_key(&js, "version");
    cli_json_str(&js, SLUICE_VERSION);
    cli_json_key(&js, "compiler");
    cli_json_str(&js, __VERSION__);
    cli_json_obj_end(&js);
  } else {
    printf("sluice %s\ncompiler %s\n", SLUICE_VERSION, __VERSION__);
  }
  return CLI_EXIT_OK;
}
