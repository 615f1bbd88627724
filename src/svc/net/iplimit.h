/*
 * iplimit: open connections per client address, shared by the threads of
 * one server (issue 12 item 6). An address is an IPv4 address (an
 * IPv4-mapped IPv6 address counts as that IPv4 address) or an IPv6 /64,
 * which one host usually holds whole. The table holds only addresses with
 * open connections: an entry is freed when its count drops to zero, so a
 * client owning many addresses cannot grow it beyond what it keeps open.
 *
 * Sharded: IPLIMIT_SHARDS locks, each over its own buckets, so threads
 * accepting at the same time rarely meet; the count is checked and taken
 * under the shard's lock, so the limit is exact across threads.
 */
#ifndef MTLS_IPLIMIT_H
#define MTLS_IPLIMIT_H

#include <sys/socket.h>

struct iplimit;
struct ipent;

/* A table with at most <max> open connections per address (0: count, but
 * no limit). NULL when out of memory. */
struct iplimit	*iplimit_new(int max);
void		 iplimit_free(struct iplimit *);
/* Takes one slot of <ss>'s address: 0 and *e (give it back with
 * iplimit_put), or -1 when the address is full. *e is NULL (no slot to
 * give back) for an address that is not IP, or when out of memory: that
 * only loses the limit, a server's global cap still holds. */
int		 iplimit_take(struct iplimit *, const struct sockaddr_storage *ss,
		    struct ipent **e);
/* Gives back the slot <e> (NULL is ignored). */
void		 iplimit_put(struct iplimit *, struct ipent *e);

#endif
