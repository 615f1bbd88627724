/*
 * co: coroutines for net.c's event loops.
 * A coroutine is a function on its own stack (mmap'd, a guard page below
 * it: an overflow faults, never corrupts) that a loop switches into and
 * that switches back when it waits; the code in it reads as straight
 * blocking code. A switch is swapcontext (a function call and a
 * sigprocmask), annotated for ASan's fiber support when built with it.
 * Nothing here knows what a coroutine does or waits for: the loop keeps
 * its own wait lists and resumes a coroutine when its event or deadline
 * comes. One co_loop per thread; coroutines never move between threads.
 */
#ifndef MTLS_CO_H
#define MTLS_CO_H

#include <stddef.h>
#include <ucontext.h>

#if defined(__SANITIZE_ADDRESS__)
#define CO_ASAN 1
#endif

struct co;

/* A loop's side of the switches (zeroed before use). */
struct co_loop {
	ucontext_t	 main;
	struct co	*cur;		/* running now, else NULL */
#ifdef CO_ASAN
	const void	*main_bottom;
	size_t		 main_size;
#endif
};

/* Starts <fn>(<arg>) as a coroutine of <loop> and runs it until it first
 * yields or returns. The coroutine, or NULL when its stack cannot be had;
 * once co_done(), free it with co_free() (from the loop). */
struct co *co_spawn(struct co_loop *loop, void (*fn)(void *), void *arg);
/* From the loop: runs <co> until it yields or returns. */
void	 co_resume(struct co *co);
/* From inside <loop>'s running coroutine: back to the loop. */
void	 co_yield(struct co_loop *loop);
/* 1 once the coroutine's function has returned. */
int	 co_done(const struct co *co);
/* Frees a coroutine that is done (or NULL). */
void	 co_free(struct co *co);

#endif
