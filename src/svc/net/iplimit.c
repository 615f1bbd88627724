/*
 * Open connections per client address, across threads (iplimit.h).
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "net/iplimit.h"

#define IPLIMIT_SHARDS	64
#define SHARD_BUCKETS	64

struct ipent {
	uint8_t		 a[16];
	uint32_t	 h;
	int		 n;
	struct ipent	*next;
};

struct shard {
	pthread_mutex_t	 mu;
	struct ipent	*b[SHARD_BUCKETS];
} __attribute__((aligned(64)));	/* one cache line per lock */

struct iplimit {
	struct shard	 s[IPLIMIT_SHARDS];
	int		 max;
	uint32_t	 seed;	/* random: chains cannot be aimed at */
};

struct iplimit *
iplimit_new(int max)
{
	struct iplimit *t;
	int i;

	if (max < 0 || (t = aligned_alloc(64, sizeof(*t))) == NULL)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->max = max;
	if (RAND_bytes((unsigned char *)&t->seed, sizeof(t->seed)) != 1)
		t->seed = (uint32_t)(uintptr_t)t;
	for (i = 0; i < IPLIMIT_SHARDS; i++)
		pthread_mutex_init(&t->s[i].mu, NULL);
	return t;
}

void
iplimit_free(struct iplimit *t)
{
	struct ipent *e, *nx;
	int i, k;

	if (t == NULL)
		return;
	for (i = 0; i < IPLIMIT_SHARDS; i++) {
		for (k = 0; k < SHARD_BUCKETS; k++)
			for (e = t->s[i].b[k]; e != NULL; e = nx) {
				nx = e->next;
				free(e);
			}
		pthread_mutex_destroy(&t->s[i].mu);
	}
	free(t);
}

/* <ss>'s address as 16 bytes (IPv4 as ::ffff:a.b.c.d, IPv6 as its /64);
 * -1 when it is not IP. */
static int
addr_key(const struct sockaddr_storage *ss, uint8_t a[16])
{
	memset(a, 0, 16);
	if (ss->ss_family == AF_INET) {
		a[10] = a[11] = 0xff;
		memcpy(a + 12, &((const struct sockaddr_in *)(const void *)
		    ss)->sin_addr, 4);
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const uint8_t *s6 = ((const struct sockaddr_in6 *)
		    (const void *)ss)->sin6_addr.s6_addr;

		memcpy(a, s6, IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)
		    s6) ? 16 : 8);
		return 0;
	}
	return -1;
}

int
iplimit_take(struct iplimit *t, const struct sockaddr_storage *ss,
    struct ipent **out)
{
	uint8_t a[16];
	uint32_t h = 2166136261u ^ t->seed;
	struct shard *s;
	struct ipent *e, **head;
	size_t i;
	int rv = 0;

	*out = NULL;
	if (addr_key(ss, a) != 0)
		return 0;
	for (i = 0; i < sizeof(a); i++)
		h = (h ^ a[i]) * 16777619u;	/* FNV-1a */
	h ^= h >> 15;
	s = &t->s[h % IPLIMIT_SHARDS];
	head = &s->b[(h / IPLIMIT_SHARDS) % SHARD_BUCKETS];
	pthread_mutex_lock(&s->mu);
	for (e = *head; e != NULL; e = e->next)
		if (memcmp(e->a, a, sizeof(a)) == 0)
			break;
	if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
		memcpy(e->a, a, sizeof(a));
		e->h = h;
		e->next = *head;
		*head = e;
	}
	if (e != NULL && t->max > 0 && e->n >= t->max)
		rv = -1;
	else if (e != NULL) {
		e->n++;
		*out = e;
	}
	pthread_mutex_unlock(&s->mu);
	return rv;
}

void
iplimit_put(struct iplimit *t, struct ipent *e)
{
	struct shard *s;
	struct ipent **pp;

	if (e == NULL)
		return;
	s = &t->s[e->h % IPLIMIT_SHARDS];
	pthread_mutex_lock(&s->mu);
	if (--e->n == 0) {
		for (pp = &s->b[(e->h / IPLIMIT_SHARDS) % SHARD_BUCKETS];
		    *pp != NULL; pp = &(*pp)->next)
			if (*pp == e) {
				*pp = e->next;
				free(e);
				break;
			}
	}
	pthread_mutex_unlock(&s->mu);
}
