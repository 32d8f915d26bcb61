/*
 * glibc_heap_test FIXTURE...: tracer/glibc_heap.c against real stopped
 * processes.
 *
 * Each FIXTURE is fixtures/preattach_heap.c built some way (dynamic,
 * -static). The test starts it with pipes on stdin and stdout, reads what
 * it says it holds until "ready", seizes and interrupts every thread, and
 * walks its heap from outside. Checks:
 *  - every block the fixture kept or lost is found, at its address, with
 *    its malloc_usable_size;
 *  - no block it freed is (tcache, fastbins, bins, munmapped);
 *  - the free chunks by their bits (tops included), the fastbin chunks
 *    and bytes, the mmapped chunks and bytes equal glibc's own mallinfo2()
 *    taken by the fixture (ordblks, smblks, fsmblks, hblks, hblkhd);
 *  - 3 arenas, 3 tcaches (main thread and 2 workers);
 * and prints what else it found (libc's own blocks) and how long the walk
 * took. Then it detaches, closes the fixture's stdin and expects exit 0.
 * Prints "ok ..." / "FAIL: ..." lines; exits 1 on any failure. A 60 s
 * alarm bounds it.
 */
#include "tracer/glibc_heap.h"
#include "tracer/proc.h"
#include "tracer/util.h"
#include "tests/unit/check.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_BLOCKS 256


struct said {
	char what[8];
	uint64_t ptr, size;
};

static const struct glibc_block *find(const struct glibc_heap *h, uint64_t ptr)
{
	size_t lo = 0, hi = h->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (h->blocks[mid].ptr == ptr)
			return &h->blocks[mid];
		if (h->blocks[mid].ptr < ptr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void test_fixture(const char *path)
{
	int in[2], out[2];
	struct said said[MAX_BLOCKS];
	size_t n_said = 0;
	unsigned long long mi[5] = { 0 }, kept[2] = { 0 }, lost[2] = { 0 };
	char line[256];
	const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

	if (pipe(in) < 0 || pipe(out) < 0)
		exit(1);
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl(path, path, "60", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	FILE *f = fdopen(out[0], "r");
	bool ready = false;
	while (!ready && fgets(line, sizeof(line), f)) {
		struct said s;
		if (sscanf(line, "block %7s %" SCNx64 " %" SCNu64, s.what, &s.ptr, &s.size) == 3 &&
		    n_said < MAX_BLOCKS)
			said[n_said++] = s;
		sscanf(line, "mallinfo %llu %llu %llu %llu %llu", &mi[0], &mi[1], &mi[2], &mi[3],
		       &mi[4]);
		sscanf(line, "kept %llu %llu", &kept[0], &kept[1]);
		sscanf(line, "lost %llu %llu", &lost[0], &lost[1]);
		ready = !strcmp(line, "ready\n");
	}
	if (!ready) {
		check(false, "%s: no \"ready\" line", name);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return;
	}

	/* Stop every thread, as ptleak -p does, and take its thread pointer. */
	struct process *p = process_new(pid, ROLE_TRACED);
	uint64_t tps[64];
	size_t ntp = 0;
	pid_t tids[64];
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) && ntp < 64) {
		pid_t tid = atoi(de->d_name);
		struct user_regs_struct r;
		int st;
		if (tid <= 0)
			continue;
		if (ptrace(PTRACE_SEIZE, tid, 0, 0) < 0 ||
		    ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0 || waitpid(tid, &st, __WALL) != tid ||
		    thread_getregs(tid, &r) < 0) {
			check(false, "%s: cannot stop thread %d: %s", name, tid, strerror(errno));
			continue;
		}
		tids[ntp] = tid;
		tps[ntp++] = r.fs_base;
	}
	if (d)
		closedir(d);
	check(ntp == 3, "%s: 3 threads stopped (got %zu)", name, ntp);

	struct glibc_heap h;
	uint64_t t0 = now_ns();
	int rc = glibc_heap_walk(p, tps, ntp, &h);
	uint64_t t1 = now_ns();
	check(rc == 0, "%s: heap walked%s%s", name, rc ? ": " : "", rc ? h.why : "");
	if (rc == 0) {
		size_t found = 0, wrong_size = 0, freed_found = 0, n_owned = 0;
		for (size_t i = 0; i < n_said; i++) {
			const struct glibc_block *b = find(&h, said[i].ptr);
			if (!strcmp(said[i].what, "freed")) {
				freed_found += b != NULL;
				if (b)
					printf("  freed block 0x%" PRIx64 " (%" PRIu64 ") reported live\n",
					       said[i].ptr, said[i].size);
				continue;
			}
			n_owned++;
			found += b != NULL;
			if (b && b->size != said[i].size) {
				wrong_size++;
				printf("  block 0x%" PRIx64 ": size %" PRIu64 ", fixture says %" PRIu64 "\n",
				       b->ptr, b->size, said[i].size);
			}
			if (!b)
				printf("  %s block 0x%" PRIx64 " (%" PRIu64 ") not found\n", said[i].what,
				       said[i].ptr, said[i].size);
		}
		check(n_owned && found == n_owned && !wrong_size,
		      "%s: the %zu blocks kept or lost found with their sizes (%zu found, %zu sizes wrong)",
		      name, n_owned, found, wrong_size);
		check(kept[1] + lost[1] == n_owned && kept[1] == 29 && lost[1] == 13,
		      "%s: the fixture holds 29 kept and 13 lost blocks (says %llu, %llu)", name,
		      kept[1], lost[1]);
		check(freed_found == 0, "%s: no freed block reported (%zu were)", name, freed_found);
		check(h.bin_chunks == mi[0], "%s: free chunks in bins and tops: %" PRIu64
		      ", mallinfo ordblks %llu", name, h.bin_chunks, mi[0]);
		check(h.fast_chunks == mi[1] && h.fast_bytes == mi[2],
		      "%s: fastbin chunks %" PRIu64 " (%" PRIu64 " bytes), mallinfo %llu (%llu)",
		      name, h.fast_chunks, h.fast_bytes, mi[1], mi[2]);
		check(h.mmapped == mi[3] && h.mmapped_bytes == mi[4],
		      "%s: mmapped chunks %" PRIu64 " (%" PRIu64 " bytes), mallinfo %llu (%llu)",
		      name, h.mmapped, h.mmapped_bytes, mi[3], mi[4]);
		check(h.arenas == 3 && h.tcaches == 3, "%s: 3 arenas and 3 tcaches (got %u, %u)",
		      name, h.arenas, h.tcaches);
		check(h.tcache_chunks >= 3 * 7, "%s: the 3 x 7 tcache'd blocks of 56 bytes among the "
		      "%" PRIu64 " tcache entries", name, h.tcache_chunks);
		uint64_t other = h.bytes - kept[0] - lost[0];
		printf("  %s: %zu blocks, %" PRIu64 " bytes; %zu (%" PRIu64 " bytes) are libc's own; "
		       "%u heaps; walked in %.3f ms\n", name, h.n, h.bytes, h.n - (size_t)n_owned,
		       other, h.heaps, (t1 - t0) / 1e6);
		glibc_heap_release(&h);
	}
	for (size_t i = 0; i < ntp; i++)
		ptrace(PTRACE_DETACH, tids[i], 0, 0);
	close(in[1]);	/* EOF: the fixture exits */
	int st;
	waitpid(pid, &st, 0);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: exits 0 after the walk (status 0x%x)",
	      name, st);
	fclose(f);
	process_free(p);
}

int main(int argc, char **argv)
{
	alarm(60);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++)
		test_fixture(argv[i]);
	if (argc < 2)
		check(false, "usage: glibc_heap_test FIXTURE...");
	return failures ? 1 : 0;
}
