#ifndef PTLEAK_TIMELINE_H
#define PTLEAK_TIMELINE_H
/*
 * timeline: the heap over time, sampled from the allocation table as
 * events arrive (no ptrace stop of its own), in bounded memory however
 * long the run.
 *
 * Samples: every STEP of event time (10 ms at first) the table's live
 * bytes and blocks are noted, with the highest and lowest live bytes seen
 * since the previous sample (so a spike between two samples still shows).
 * When TIMELINE_CAP samples are held, neighbours are merged in pairs and
 * the step doubles: an hour-long run keeps 1,024-2,048 samples ~2 s apart.
 *
 * Sites: the top allocation sites are only known at the end, so their
 * series are recorded for the sites that are large while the run goes:
 * a site whose live bytes reach the entry threshold starts being tracked
 * (up to TIMELINE_SITES at once), and from then on every sample notes its
 * live bytes. When the slots are full, the threshold is twice the peak of
 * the weakest tracked site, which is dropped for the newcomer (the factor
 * keeps sites of similar size from evicting each other in turn). The
 * check costs one comparison per allocation; a site's series starts at
 * the sample where it was first large (before that it was smaller than
 * the sites tracked then, first_sample says where).
 *
 * A heap calls timeline_event after every event and timeline_site_grew
 * after every allocation (heap.c); the report reads the samples.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMELINE_CAP 2048	/* samples held; merged in pairs when full */
#define TIMELINE_SITES 32	/* sites tracked at once */
#define TIMELINE_STEP_NS 10000000ull	/* first step: 10 ms */

struct timeline_sample {
	uint64_t t_ns;		/* CLOCK_MONOTONIC */
	uint64_t bytes, blocks;	/* live at t_ns */
	uint64_t max_bytes, min_bytes;	/* since the previous sample */
};

/* A tracked site's series: bytes[i] is its live bytes at sample i, for
 * i >= first_sample (a merge keeps the larger of the two). */
struct timeline_site {
	uint32_t stack_id;	/* 0: slot free */
	size_t first_sample;
	uint64_t peak;		/* its highest live bytes at any sample */
	uint64_t *bytes;	/* TIMELINE_CAP entries */
};

struct timeline {
	uint64_t start_ns;
	uint64_t step_ns, next_ns;
	struct timeline_sample *samples;
	size_t n;
	uint64_t cur_max, cur_min;	/* of the bucket being filled */
	uint64_t peak_bytes, peak_ns, peak_blocks;	/* exact, from every event */
	struct timeline_site sites[TIMELINE_SITES];
	uint64_t enter;		/* live bytes from which a site is tracked */
	uint64_t last_bytes;	/* live bytes at the last sample */
};

/* What the timeline reads of the table's per-stack counters. */
struct heap_site;

struct timeline *timeline_new(uint64_t start_ns);	/* aborts on OOM */
void timeline_free(struct timeline *tl);
struct timeline *timeline_clone(const struct timeline *tl);
void timeline_reset(struct timeline *tl, uint64_t start_ns);

/* Slow paths of the two inline checks below. */
void timeline_sample(struct timeline *tl, uint64_t t, uint64_t bytes, uint64_t blocks,
		     const struct heap_site *sites, size_t n_sites);
void timeline_track(struct timeline *tl, uint32_t id, struct heap_site *sites, size_t n_sites);

/* After every event at time T (0: unknown, no sample), live BYTES and
 * BLOCKS now. SITES[0..N) are the per-stack counters (heap.h). */
static inline void timeline_event(struct timeline *tl, uint64_t t, uint64_t bytes,
				  uint64_t blocks, const struct heap_site *sites, size_t n)
{
	if (bytes > tl->cur_max)
		tl->cur_max = bytes;
	if (bytes < tl->cur_min)
		tl->cur_min = bytes;
	if (bytes > tl->peak_bytes) {
		tl->peak_bytes = bytes;
		tl->peak_ns = t;
		tl->peak_blocks = blocks;
	}
	if (t >= tl->next_ns && t)
		timeline_sample(tl, t, bytes, blocks, sites, n);
}

/* Close a sample at T with the state now (the end of the run, a
 * snapshot), unless the last one is at T already. */
void timeline_close(struct timeline *tl, uint64_t t, uint64_t bytes, uint64_t blocks,
		    const struct heap_site *sites, size_t n_sites);

#endif
