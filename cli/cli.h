// The tycho CLI: tycho.c dispatches argv[1] to one cmd_<name>() per subcommand.
// Each returns the process exit status; errors go to stderr as one line.
#ifndef TYCHO_CLI_CLI_H
#define TYCHO_CLI_CLI_H

#include "core/err.h"

int cmd_tokenize(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_point(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench(int argc, char **argv);

// Prints "tycho <cmd>: <message>" on stderr and returns 1.
int cli_fail(const char *cmd, const ty_err *err);

#endif
