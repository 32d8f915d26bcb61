#ifndef PTLEAK_MAPS_H
#define PTLEAK_MAPS_H
/*
 * maps: /proc/PID/maps as sorted address ranges: every mapping (where the
 * holes are, for a page ptleak maps near some code), and what the
 * unwinder needs: the executable mappings (a return address outside them
 * means the unwind went astray) and the mappings never written after they
 * were mapped (file-backed without 'w', and the vDSO's code but not
 * [vvar]), whose pages may be cached until the module list changes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct maps_range {
	uint64_t start, end;
};

struct maps_ranges {
	struct maps_range *v;	/* sorted, as the maps file lists them */
	size_t n, cap;
};

/* Read PID's maps into EXEC and RO (emptied first). 0, or -1 with errno
 * set; on failure both are left empty. */
int maps_read_code(pid_t pid, struct maps_ranges *exec, struct maps_ranges *ro);

/* Every mapping of PID into ALL (emptied first). 0, or -1 with errno. */
int maps_read_all(pid_t pid, struct maps_ranges *all);

/* Whether ADDR is in one of R's ranges (binary search). */
bool maps_contains(const struct maps_ranges *r, uint64_t addr);

void maps_ranges_free(struct maps_ranges *r);

#endif
