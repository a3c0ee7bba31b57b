// TEMPORARY placeholder so the CLI links while this subcommand is being written.
#include <stdio.h>
#include "cli/cli.h"
int cmd_preprocess(int argc, char **argv) { fprintf(stderr, "tycho preprocess: not built yet\n"); return 1; }
