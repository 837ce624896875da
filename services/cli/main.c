/*
 * `sluice`: the command line of Sluice. main() only hands argv to cli_main() (dispatch.c),
 * which finds the command in the table of commands.c; each command lives in its own file.
 */
#include "cli.h"

int main(int argc, char **argv) { return cli_main(argc, argv); }
