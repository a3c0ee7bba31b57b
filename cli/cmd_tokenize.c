// TEMPORARY placeholder so the CLI links while this subcommand is being written.
#include <stdio.h>
#include "cli/cli.h"
int cmd_tokenize(int argc, char **argv) { fprintf(stderr, "tycho tokenize: not built yet\n"); return 1; }
