// TEMPORARY placeholder so the CLI links while this subcommand is being written.
#include <stdio.h>
#include "cli/cli.h"
int cmd_inspect(int argc, char **argv) { fprintf(stderr, "tycho inspect: not built yet\n"); return 1; }
