/*
 * For the codec's fuzz targets: a head the codec wrote must parse back
 * whole, as exactly the lines it meant to write: a line cut short and
 * glued to the next one (issue 13 items 2 and 4) shows as one field less,
 * a lost framing header as a framing that differs. Aborts (the fuzzer's
 * find).
 */
#ifndef MTLS_FUZZ_H1_PARSE_BACK_H
#define MTLS_FUZZ_H1_PARSE_BACK_H

#include <stdint.h>
#include <stdlib.h>

#include <http_parser.h>

struct pb_parsed {
	size_t	 fields;
	int	 in_value;
	int	 done;
};

static int
pb_on_field(http_parser *p, const char *at, size_t n)
{
	struct pb_parsed *r = p->data;

	(void)at;
	(void)n;
	if (r->in_value || r->fields == 0)
		r->fields++;
	r->in_value = 0;
	return 0;
}

static int
pb_on_value(http_parser *p, const char *at, size_t n)
{
	(void)at;
	(void)n;
	((struct pb_parsed *)p->data)->in_value = 1;
	return 0;
}

static int
pb_on_head(http_parser *p)
{
	((struct pb_parsed *)p->data)->done = 1;
	return 1;	/* no body: the head is all we check */
}

/* <chunked>, <has_cl>: the framing expected (-1: not checked). */
static void
parse_back(const char *h, size_t n, enum http_parser_type t, size_t lines,
    int chunked, int has_cl, uint64_t cl)
{
	static const http_parser_settings st = {
		.on_header_field = pb_on_field,
		.on_header_value = pb_on_value,
		.on_headers_complete = pb_on_head,
	};
	struct pb_parsed r = { 0, 0, 0 };
	http_parser p;
	size_t k;

	http_parser_init(&p, t);
	p.data = &r;
	k = http_parser_execute(&p, &st, h, n);
	if (!r.done || k != n || r.fields != lines ||
	    (chunked >= 0 && !!(p.flags & F_CHUNKED) != chunked) ||
	    (has_cl >= 0 && (!!(p.flags & F_CONTENTLENGTH) != has_cl ||
	    (has_cl && p.content_length != cl))))
		abort();
}

#endif
