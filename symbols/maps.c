/*
 * maps: the code and read-only ranges of /proc/PID/maps (see maps.h).
 */
#include "symbols/maps.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_range(struct maps_ranges *r, uint64_t start, uint64_t end)
{
	if (r->n == r->cap) {
		size_t c = r->cap ? r->cap * 2 : 64;
		struct maps_range *t = realloc(r->v, c * sizeof(*t));

		if (!t)
			return -1;
		r->v = t;
		r->cap = c;
	}
	r->v[r->n].start = start;
	r->v[r->n].end = end;
	r->n++;
	return 0;
}

/* One mapping, as /proc/PID/maps lists it. */
struct mapping {
	uint64_t start, end, inode;
	char perms[8];
	const char *name;
};

/* Call FN for every mapping of PID until it returns -1. 0, or -1 with
 * errno (FN's failure: ENOMEM). */
static int each_mapping(pid_t pid, int (*fn)(const struct mapping *, void *), void *arg)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	int rc = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	if (!(f = fopen(path, "re")))
		return -1;
	while (rc == 0 && getline(&line, &cap, f) > 0) {
		struct mapping m;
		int name_at = 0;

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*x %*x:%*x %" SCNu64 " %n",
			   &m.start, &m.end, m.perms, &m.inode, &name_at) < 4)
			continue;
		m.name = line + name_at;
		rc = fn(&m, arg);
	}
	free(line);
	fclose(f);
	if (rc < 0)
		errno = ENOMEM;
	return rc;
}

struct code_ranges {
	struct maps_ranges *exec, *ro;
};

static int add_code(const struct mapping *m, void *arg)
{
	struct code_ranges *c = arg;

	if (m->perms[2] == 'x' && add_range(c->exec, m->start, m->end) < 0)
		return -1;
	/* Never written after mapping: file-backed without 'w', and the
	 * vDSO's code (but not [vvar], the clock data). */
	if (m->perms[0] != 'r' || m->perms[1] == 'w')
		return 0;
	if (!(m->inode != 0 && m->name[0] == '/') && strncmp(m->name, "[vdso]", 6))
		return 0;
	return add_range(c->ro, m->start, m->end);
}

int maps_read_code(pid_t pid, struct maps_ranges *exec, struct maps_ranges *ro)
{
	struct code_ranges c = { exec, ro };

	exec->n = ro->n = 0;
	if (each_mapping(pid, add_code, &c) < 0) {
		exec->n = ro->n = 0;
		return -1;
	}
	return 0;
}

static int add_any(const struct mapping *m, void *arg)
{
	return add_range(arg, m->start, m->end);
}

int maps_read_all(pid_t pid, struct maps_ranges *all)
{
	all->n = 0;
	return each_mapping(pid, add_any, all);
}
bool maps_contains(const struct maps_ranges *r, uint64_t addr)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < r->v[mid].start)
			hi = mid;
		else if (addr >= r->v[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

void maps_ranges_free(struct maps_ranges *r)
{
	free(r->v);
	r->v = NULL;
	r->n = r->cap = 0;
}
