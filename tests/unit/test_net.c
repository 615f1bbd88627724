/* net.c: the first-byte deadline, the per-address limit, eviction of the
 * longest-idle connection at the cap, work offloaded to a worker, drain. A
 * loop on 127.0.0.1 in its own thread; clients are plain sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/iplimit.h"
#include "net/net.h"

struct echo {
	char	 line[64];
	size_t	 len;
};

/* On a worker: the answer is the line upper-cased. */
static void
upper(void *arg)
{
	struct echo *e = arg;
	size_t i;

	for (i = 0; i < e->len; i++)
		if (e->line[i] >= 'a' && e->line[i] <= 'z')
			e->line[i] -= 32;
}

/* One line in (within 1 s of accept), upper-cased out, then close. */
static void
serve_echo(struct net_conn *nc, void *arg)
{
	struct echo e;
	long n;

	(void)arg;
	memset(&e, 0, sizeof(e));
	while (e.len < sizeof(e.line) && memchr(e.line, '\n', e.len) == NULL) {
		n = net_read(nc, NULL, e.line + e.len, sizeof(e.line) - e.len,
		    net_conn_accepted_ms(nc) + 1000);
		if (n <= 0)
			return;
		e.len += (size_t)n;
	}
	net_idle(nc, 0);
	net_offload(nc, upper, &e);
	(void)net_write(nc, NULL, e.line, e.len, net_now_ms() + 1000);
}

/* A loop with <o> serving <fn> on a port of 127.0.0.1, in its thread. */
static struct net_loop *
start_with(const struct net_opts *o, net_serve_fn fn, int *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	struct mtls_error err;
	struct net_loop *lp;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	assert_int_equal(net_loop_new(&lp, o, &err), 0);
	assert_int_equal(net_listen(lp, fd, fn, NULL, &err), 0);
	assert_int_equal(net_loop_start(lp, &err), 0);
	return lp;
}

static struct net_loop *
start(int max_conns, int per_ip, int64_t first_byte_ms, int *port)
{
	struct net_opts o = { .name = "unit", .max_conns = max_conns,
	    .max_per_ip = per_ip, .first_byte_ms = first_byte_ms, .workers = 1,
	    .drain_ms = 500 };

	return start_with(&o, serve_echo, port);
}

/* A client from 127.0.0.<src>. */
static int
dial(int port, int src)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(0x7f000000 | (uint32_t)src);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* ms until the server closes <fd> (reads EOF), or -1 after <max_ms>. */
static int64_t
closed_within(int fd, int max_ms)
{
	int64_t t0 = net_now_ms();
	struct pollfd pf = { fd, POLLIN, 0 };
	char b[64];

	while (net_now_ms() - t0 < max_ms) {
		if (poll(&pf, 1, 20) == 1) {
			ssize_t n = recv(fd, b, sizeof(b), 0);

			if (n == 0 || (n < 0 && errno == ECONNRESET))
				return net_now_ms() - t0;
		}
	}
	return -1;
}

static void
ask(int fd, const char *q, const char *want)
{
	char b[64];
	ssize_t n;

	assert_int_equal(send(fd, q, strlen(q), 0), (ssize_t)strlen(q));
	n = recv(fd, b, sizeof(b) - 1, 0);
	assert_true(n > 0);
	b[n] = '\0';
	assert_string_equal(b, want);
}

static void
test_echo_and_first_byte(void **state)
{
	int port, a, b;
	int64_t t;
	struct net_loop *lp = start(16, 0, 300, &port);

	(void)state;
	a = dial(port, 1);
	ask(a, "hello\n", "HELLO\n");	/* via the worker */
	close(a);
	b = dial(port, 1);		/* says nothing */
	t = closed_within(b, 2000);
	assert_true(t >= 200 && t < 1000);
	close(b);
	net_loop_free(lp);
}

static void
test_per_ip(void **state)
{
	int port, fd[3], other;
	struct net_stats st;
	struct net_loop *lp = start(16, 2, 5000, &port);

	(void)state;
	fd[0] = dial(port, 7);
	fd[1] = dial(port, 7);
	fd[2] = dial(port, 7);		/* the third from .7: closed at once */
	assert_true(closed_within(fd[2], 500) >= 0);
	other = dial(port, 8);		/* another address is not limited */
	ask(other, "x\n", "X\n");
	assert_int_equal(closed_within(fd[0], 100), -1);
	close(fd[0]);			/* a slot of .7 comes free */
	poll(NULL, 0, 100);
	fd[2] = dial(port, 7);
	ask(fd[2], "y\n", "Y\n");
	net_loop_stats(lp, &st);
	assert_int_equal(st.per_ip_refused, 1);
	close(fd[1]);
	close(fd[2]);
	close(other);
	net_loop_free(lp);
}

static void
test_evict_oldest(void **state)
{
	int port, fd[4], i, last;
	struct net_stats st;
	struct net_loop *lp = start(4, 0, 5000, &port);

	(void)state;
	for (i = 0; i < 4; i++) {	/* the cap, all silent */
		fd[i] = dial(port, 1);
		poll(NULL, 0, 20);	/* in this order in the loop */
	}
	last = dial(port, 1);		/* makes room: fd[0] goes */
	assert_true(closed_within(fd[0], 500) >= 0);
	ask(last, "z\n", "Z\n");
	for (i = 1; i < 4; i++)
		assert_int_equal(closed_within(fd[i], 50), -1);
	net_loop_stats(lp, &st);
	assert_int_equal(st.evicted, 1);
	assert_int_equal(st.full_refused, 0);
	for (i = 0; i < 4; i++)
		close(fd[i]);
	close(last);
	net_loop_free(lp);
}

static void
test_stop_closes_idle(void **state)
{
	int port, a;
	int64_t t0;
	struct net_loop *lp = start(16, 0, 5000, &port);

	(void)state;
	a = dial(port, 1);
	(void)send(a, "no line end", 11, 0);	/* in a request, idle */
	poll(NULL, 0, 50);
	t0 = net_now_ms();
	net_loop_free(lp);		/* stops, drains, joins */
	assert_true(net_now_ms() - t0 < 400);
	assert_true(closed_within(a, 100) >= 0);
	close(a);
}

/* on_limit: counts by reason (the loops' threads call it). */
static int limits[NET_LIMIT__COUNT];

static void
count_limit(void *arg, int why, const struct sockaddr_storage *ss)
{
	(void)arg;
	(void)ss;
	__atomic_add_fetch(&limits[why], 1, __ATOMIC_RELAXED);
}

/* limits[why] once it reaches <want> (the loop closes, then counts), or
 * what it is after 1 s. */
static int
limit_count(int why, int want)
{
	int64_t t0 = net_now_ms();
	int n;

	while ((n = __atomic_load_n(&limits[why], __ATOMIC_RELAXED)) < want &&
	    net_now_ms() - t0 < 1000)
		poll(NULL, 0, 5);
	return n;
}

/* Two loops (as the gateway's workers) share one cap and one address
 * table: what one holds counts against the other; the refusal goes to
 * on_limit, not to a log line. */
static void
test_shared_cap(void **state)
{
	static int open_n;
	struct iplimit *ipt = iplimit_new(3);
	struct net_opts o = { .name = "unit", .max_conns = 3,
	    .first_byte_ms = 5000, .drain_ms = 500, .shared_open = &open_n,
	    .ipt = ipt, .keep_nofile = 1, .on_limit = count_limit };
	int pa, pb, a[3], b, c;
	struct net_loop *la, *lb;
	int i;

	(void)state;
	memset(limits, 0, sizeof(limits));
	la = start_with(&o, serve_echo, &pa);
	lb = start_with(&o, serve_echo, &pb);
	a[0] = dial(pa, 2);
	a[1] = dial(pa, 2);
	b = dial(pb, 2);		/* the third from .2, on loop B */
	for (i = 0; i < 200 && __atomic_load_n(&open_n, __ATOMIC_RELAXED) < 3;
	    i++)
		poll(NULL, 0, 5);
	assert_int_equal(__atomic_load_n(&open_n, __ATOMIC_RELAXED), 3);
	a[2] = dial(pa, 2);		/* .2 is full across the loops */
	assert_true(closed_within(a[2], 500) >= 0);
	assert_int_equal(limit_count(NET_LIMIT_PER_IP, 1), 1);
	close(a[2]);
	/* the cap is 3 in all: loop B makes room with its own idle
	 * connection, not with loop A's older ones */
	c = dial(pb, 3);
	assert_true(closed_within(b, 500) >= 0);
	assert_int_equal(closed_within(a[0], 50), -1);
	assert_int_equal(closed_within(a[1], 50), -1);
	ask(c, "q\n", "Q\n");
	assert_int_equal(limit_count(NET_LIMIT_EVICTED, 1), 1);
	for (i = 0; i < 2; i++)
		close(a[i]);
	close(b);
	close(c);
	net_loop_free(la);
	net_loop_free(lb);
	assert_int_equal(__atomic_load_n(&open_n, __ATOMIC_RELAXED), 0);
	iplimit_free(ipt);
}

/* net_wait_fd: a wait on another fd (an upstream) times out at its
 * deadline, and wakes when that fd is ready. */
static void
serve_pair(struct net_conn *nc, void *arg)
{
	int sp[2], r1, r2;
	char b[32];
	int64_t t0 = net_now_ms();

	(void)arg;
	net_idle(nc, NET_BUSY);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) != 0)
		return;
	r1 = net_wait_fd(nc, sp[0], POLLIN, t0 + 150);
	r2 = write(sp[1], "x", 1) == 1 ? net_wait_fd(nc, sp[0], POLLIN,
	    net_now_ms() + 1000) : -9;
	snprintf(b, sizeof(b), "%d %d %d\n", r1, r2, (int)(net_now_ms() -
	    t0 >= 150));
	(void)net_write(nc, NULL, b, strlen(b), net_now_ms() + 1000);
	close(sp[0]);
	close(sp[1]);
}

static void
test_wait_fd(void **state)
{
	int port, a;
	struct net_loop *lp;
	struct net_opts o = { .name = "unit", .max_conns = 4,
	    .first_byte_ms = 1000, .drain_ms = 500 };

	(void)state;
	lp = start_with(&o, serve_pair, &port);
	a = dial(port, 1);
	ask(a, "go", "-2 0 1\n");	/* NET_TIMEOUT, then ready */
	close(a);
	net_loop_free(lp);
}

/* NET_EVICTABLE: a drain lets it finish (a request head still coming);
 * NET_IDLE ones close at once. */
static void
serve_evictable(struct net_conn *nc, void *arg)
{
	char b[64];
	long n;

	(void)arg;
	net_idle(nc, NET_EVICTABLE);
	n = net_read(nc, NULL, b, sizeof(b), net_now_ms() + 2000);
	if (n <= 0)
		return;
	while (memchr(b, '\n', (size_t)n) == NULL) {
		long k = net_read(nc, NULL, b, sizeof(b), net_now_ms() + 2000);

		if (k <= 0)
			return;
		n = k;
	}
	net_idle(nc, NET_BUSY);
	(void)net_write(nc, NULL, "done\n", 5, net_now_ms() + 1000);
}

static void
test_drain_evictable(void **state)
{
	int port, a, silent;
	struct net_loop *lp;
	struct net_opts o = { .name = "unit", .max_conns = 4,
	    .first_byte_ms = 5000, .drain_ms = 2000 };
	char b[16];
	ssize_t n;

	(void)state;
	lp = start_with(&o, serve_evictable, &port);
	a = dial(port, 1);
	silent = dial(port, 1);
	(void)send(a, "head", 4, 0);		/* no line end yet */
	poll(NULL, 0, 100);
	net_loop_stop(lp);
	assert_true(closed_within(silent, 500) >= 0);
	poll(NULL, 0, 100);
	(void)send(a, " end\n", 5, 0);	/* finished during the drain */
	n = recv(a, b, sizeof(b) - 1, 0);
	assert_int_equal(n, 5);
	b[n] = '\0';
	assert_string_equal(b, "done\n");
	close(a);
	close(silent);
	net_loop_free(lp);
}

/* net_opts.stop: the flag drains like net_loop_stop() (the gateway's
 * loops on the proxy's stopping flag); on_thread ran on the loop's
 * thread first. */
static void
count_thread(void *arg)
{
	__atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
}

static void
test_stop_flag(void **state)
{
	static int stop, threads;
	int port, a;
	int64_t t0;
	struct net_loop *lp;
	struct net_opts o = { .name = "unit", .max_conns = 4,
	    .first_byte_ms = 5000, .drain_ms = 500, .stop = &stop,
	    .on_thread = count_thread, .hook_arg = &threads };

	(void)state;
	lp = start_with(&o, serve_echo, &port);
	a = dial(port, 1);
	ask(a, "a\n", "A\n");
	close(a);
	a = dial(port, 1);		/* silent */
	assert_int_equal(closed_within(a, 200), -1);
	t0 = net_now_ms();
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	assert_true(closed_within(a, 1000) >= 0);
	assert_true(net_now_ms() - t0 < 500);
	close(a);
	net_loop_free(lp);
	assert_int_equal(__atomic_load_n(&threads, __ATOMIC_RELAXED), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_and_first_byte),
		cmocka_unit_test(test_per_ip),
		cmocka_unit_test(test_evict_oldest),
		cmocka_unit_test(test_stop_closes_idle),
		cmocka_unit_test(test_shared_cap),
		cmocka_unit_test(test_wait_fd),
		cmocka_unit_test(test_drain_evictable),
		cmocka_unit_test(test_stop_flag),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
