/*
 * Coroutines (co.h): ucontext stacks and switches, with ASan's fiber
 * annotations (start_switch_fiber before a switch, finish_switch_fiber
 * after it, on both sides) so that ASan follows the stack in use.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

#include "net/co.h"

#define GUARD		4096
#ifdef CO_ASAN
#define CO_STACK	(1024 * 1024)
#else
#define CO_STACK	(256 * 1024)
#endif

struct co {
	ucontext_t	 ctx;
	void		*stack;		/* above its guard page */
	struct co_loop	*loop;
	void		(*fn)(void *);
	void		*arg;
	int		 done;
#ifdef CO_ASAN
	void		*fake_stack;
#endif
};

static void
co_switch(ucontext_t *from, ucontext_t *to, void **fake_save,
    const void *bottom, size_t size)
{
#ifdef CO_ASAN
	__sanitizer_start_switch_fiber(fake_save, bottom, size);
#else
	(void)fake_save;
	(void)bottom;
	(void)size;
#endif
	swapcontext(from, to);
}

void
co_yield(struct co_loop *l)
{
	struct co *co = l->cur;

#ifdef CO_ASAN
	co_switch(&co->ctx, &l->main, &co->fake_stack, l->main_bottom,
	    l->main_size);
	__sanitizer_finish_switch_fiber(co->fake_stack, NULL, NULL);
#else
	co_switch(&co->ctx, &l->main, NULL, NULL, 0);
#endif
}

void
co_resume(struct co *co)
{
	struct co_loop *l = co->loop;

	l->cur = co;
#ifdef CO_ASAN
	{
		void *fake = NULL;

		co_switch(&l->main, &co->ctx, &fake, co->stack, CO_STACK);
		__sanitizer_finish_switch_fiber(fake, &l->main_bottom,
		    &l->main_size);
	}
#else
	co_switch(&l->main, &co->ctx, NULL, NULL, 0);
#endif
	l->cur = NULL;
}

static __thread struct co *co_start_arg;

static void
co_entry(void)
{
	struct co *co = co_start_arg;
	struct co_loop *l = co->loop;

#ifdef CO_ASAN
	__sanitizer_finish_switch_fiber(NULL, &l->main_bottom, &l->main_size);
#endif
	co->fn(co->arg);
	co->done = 1;
#ifdef CO_ASAN
	__sanitizer_start_switch_fiber(NULL, l->main_bottom, l->main_size);
#endif
	setcontext(&l->main);
}

/* Its own function: getcontext returns twice, and nothing of
 * co_spawn's may live across it. */
static __attribute__((noinline)) void
ctx_init(struct co *co)
{
	getcontext(&co->ctx);
	co->ctx.uc_stack.ss_sp = co->stack;
	co->ctx.uc_stack.ss_size = CO_STACK;
	co->ctx.uc_link = NULL;
	makecontext(&co->ctx, co_entry, 0);
}

struct co *
co_spawn(struct co_loop *loop, void (*fn)(void *), void *arg)
{
	struct co *co = calloc(1, sizeof(*co));
	void *m;

	if (co == NULL)
		return NULL;
	m = mmap(NULL, CO_STACK + GUARD, PROT_READ | PROT_WRITE, MAP_PRIVATE |
	    MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (m == MAP_FAILED) {
		free(co);
		return NULL;
	}
	mprotect(m, GUARD, PROT_NONE);
	co->stack = (char *)m + GUARD;
	co->loop = loop;
	co->fn = fn;
	co->arg = arg;
	ctx_init(co);
	co_start_arg = co;	/* read by co_entry before it first yields */
	co_resume(co);
	return co;
}

int
co_done(const struct co *co)
{
	return co->done;
}

void
co_free(struct co *co)
{
	if (co == NULL)
		return;
	munmap((char *)co->stack - GUARD, CO_STACK + GUARD);
	free(co);
}
