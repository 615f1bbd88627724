/* Shared helpers of the command layer: dispatch, errors, flag values. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

int
subcmd_dispatch(const char *prog, const struct subcmd *t, int argc,
    char **argv)
{
	FILE *f = stdout;
	size_t i;

	if (argc >= 2 && strcmp(argv[1], "--help") != 0 &&
	    strcmp(argv[1], "-h") != 0 && strcmp(argv[1], "help") != 0) {
		for (i = 0; t[i].name != NULL; i++)
			if (strcmp(t[i].name, argv[1]) == 0)
				return t[i].run(argc - 1, argv + 1);
		fprintf(stderr, "%s: unknown command '%s' (see %s --help)\n",
		    prog, argv[1], prog);
		return 2;
	}
	if (argc < 2)
		f = stderr;
	fprintf(f, "usage: %s COMMAND [ARGS]   (%s COMMAND --help for "
	    "details)\n\ncommands:\n", prog, prog);
	for (i = 0; t[i].name != NULL; i++)
		fprintf(f, "  %-14s %s\n", t[i].name, t[i].summary);
	return argc < 2 ? 2 : 0;
}

int
cmd_fail(const char *cmd, const struct mtls_error *e)
{
	/* the reason may quote a name from a file or a peer: under the
	 * text rule (escape.c) on the terminal */
	char m[4 * sizeof(e->msg)];

	esc_text(m, sizeof(m), e->msg, strnlen(e->msg, sizeof(e->msg)),
	    SIZE_MAX, ESC_KEEP_BS);
	fprintf(stderr, "mtls %s: %s\n", cmd, m[0] ? m :
	    "failed (no reason recorded)");
	return 2;
}

int
cmd_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mtls %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see mtls %s --help)\n", cmd);
	return 2;
}

int
cmd_wants_help(int argc, char **argv, const char *help)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(help, stdout);
			return 1;
		}
	}
	return 0;
}

int
cmd_duration(const char *cmd, const char *flag, const char *v, int64_t max,
    int64_t *out)
{
	if (mtls_duration_parse(v, out) != 0) {
		cmd_usage(cmd, "%s '%s' is not a duration (like 90s, 15m, 24h, "
		    "365d)", flag, v);
		return -1;
	}
	if (*out > max) {
		cmd_usage(cmd, "%s '%s' is too long: at most %lldd", flag, v,
		    (long long)(max / 86400));
		return -1;
	}
	return 0;
}

int
cmd_number(const char *cmd, const char *flag, const char *v, int lo, int hi,
    int *out)
{
	int64_t n;

	if (conf_number(v, lo, hi, &n) != 0) {
		cmd_usage(cmd, "%s '%s' must be a number from %d to %d (digits "
		    "only, no leading zero)", flag, v, lo, hi);
		return -1;
	}
	*out = (int)n;
	return 0;
}

int
cmd_key_type(const char *cmd, const char *v, int *out)
{
	if ((*out = key_type_parse(v)) < 0) {
		cmd_usage(cmd, "--key-type '%s' is unknown (ec-p256, ec-p384, "
		    "ed25519, rsa-2048, rsa-3072)", v);
		return -1;
	}
	return 0;
}

int
cmd_log_format(const char *cmd, const char *v)
{
	if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
		cmd_usage(cmd, "--log-format must be json or text");
		return -1;
	}
	log_set_format(strcmp(v, "json") == 0);
	return 0;
}
