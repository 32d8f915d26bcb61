/*
 * source: the table of event sources and the calls that run it (see
 * source.h). Adding a source: its file defines a const struct source_ops,
 * and it is named here, in the table (and declared above it).
 */
#include "tracer/source.h"

#include "tracer/proc.h"
#include "tracer/util.h"

extern const struct source_ops source_ptrace;	/* hooks.c */
extern const struct source_ops source_fast;	/* fast.c */

/* The probe first: its leave needs the ptrace source's code page, which
 * that source's leave unmaps. */
const struct source_ops *const sources[] = {
	&source_fast,
	&source_ptrace,
	NULL,
};

_Static_assert(ARRAY_SIZE(sources) <= SOURCES_MAX + 1, "raise SOURCES_MAX");

void **source_state(struct process *p, const struct source_ops *ops)
{
	size_t i = 0;

	while (sources[i] && sources[i] != ops)
		i++;
	return &p->source_state[i];
}

#define EACH(s, op) \
	for (const struct source_ops *const *s = sources; *s; s++) \
		if ((*s)->op)

int sources_arm(struct process *p, struct thread *t, bool loaded)
{
	EACH(s, arm)
		if ((*s)->arm(p, t, loaded) < 0)
			return -1;
	return 0;
}

int sources_drain(struct process *p)
{
	int rc = 0;

	EACH(s, drain)
		if ((*s)->drain(p) < 0)
			rc = -1;
	return rc;
}

int sources_drain_final(struct process *p)
{
	int rc = 0;

	EACH(s, drain_final)
		if ((*s)->drain_final(p) < 0)
			rc = -1;
	return rc;
}

bool sources_polling(struct process *const *procs, size_t n)
{
	EACH(s, polling)
		for (size_t i = 0; i < n; i++)
			if ((*s)->polling(procs[i]))
				return true;
	return false;
}

void sources_wait(struct process *const *procs, size_t n, long us)
{
	EACH(s, wait)
		(*s)->wait(procs, n, us);
}

enum trap_verdict sources_on_trap(struct thread *t, struct user_regs_struct *regs,
				  bool leaving)
{
	EACH(s, on_trap) {
		enum trap_verdict v = (*s)->on_trap(t, regs, leaving);
		if (v != TRAP_NOT_OURS)
			return v;
	}
	return TRAP_NOT_OURS;
}

bool sources_trap_queued(struct thread *t)
{
	EACH(s, trap_queued)
		if ((*s)->trap_queued(t))
			return true;
	return false;
}

void sources_fork_child(struct process *parent, struct process *child,
			struct thread *t, bool follow)
{
	EACH(s, fork_child)
		(*s)->fork_child(parent, child, t, follow);
}

void sources_vfork_done(struct thread *t)
{
	EACH(s, vfork_done)
		(*s)->vfork_done(t);
}

int sources_leave(struct process *p, struct thread *const *threads, size_t n)
{
	int rc = 0;

	EACH(s, leave)
		if ((*s)->leave(p, threads, n) < 0)
			rc = -1;
	return rc;
}

void sources_emergency(struct process *p)
{
	EACH(s, emergency)
		(*s)->emergency(p);
}

void sources_emergency_thread(struct thread *t)
{
	EACH(s, emergency_thread)
		(*s)->emergency_thread(t);
}

void sources_emergency_unmap(struct process *p, struct thread *runner)
{
	EACH(s, emergency_unmap)
		(*s)->emergency_unmap(p, runner);
}

void sources_release(struct process *p)
{
	EACH(s, release)
		(*s)->release(p);
}
