/* Layer 3: argument parsing and printing only. One file per subcommand. */
#ifndef MTLS_CMD_H
#define MTLS_CMD_H

#include <getopt.h>

#include "internal.h"

struct subcmd {
	const char	*name;
	int		(*run)(int argc, char **argv);
	const char	*summary;
};

/* Runs <argv[1]> from <table>, or prints the table as help. */
int	 subcmd_dispatch(const char *prog, const struct subcmd *table,
	    int argc, char **argv);
/* "mtls ca issue: <msg>" on stderr; returns 2. */
int	 cmd_fail(const char *cmd, const struct mtls_error *);
int	 cmd_usage(const char *cmd, const char *fmt, ...) MTLS_PRINTF(2, 3);
/* Prints <help> when argv has -h/--help; returns 1 if it did. */
int	 cmd_wants_help(int argc, char **argv, const char *help);
/* Parses a duration flag value of at most <max> seconds (MTLS_MAX_INTERVAL
 * or MTLS_MAX_TTL); prints the error and returns -1. */
int	 cmd_duration(const char *cmd, const char *flag, const char *v,
	    int64_t max, int64_t *out);
/* An integer flag value from <lo> to <hi>; prints the error and returns
 * -1. */
int	 cmd_number(const char *cmd, const char *flag, const char *v, int lo,
	    int hi, int *out);
/* --log-format json|text; prints the usage error and returns -1. */
int	 cmd_log_format(const char *cmd, const char *v);
int	 cmd_key_type(const char *cmd, const char *v, int *out);
/* Grows a string vector (argv-style lists of repeated flags). */

int	 cmd_ca(int argc, char **argv);
int	 cmd_cert(int argc, char **argv);
int	 cmd_proxy(int argc, char **argv);
int	 cmd_doctor(int argc, char **argv);
int	 cmd_agent(int argc, char **argv);
int	 ca_serve_cmd(int argc, char **argv);
int	 ca_token_cmd(int argc, char **argv);
int	 ca_store_cmd(int argc, char **argv);	/* cmd_castore.c */

#endif
