/*
 * timeline_test: the heap over time for an hour-long run, fed to the
 * allocation table as synthetic events (heap_record with made-up times),
 * so an hour takes a second. Checks the bounds of timeline.h: at most
 * TIMELINE_CAP samples, coarsened to 1,024..2,048 over the hour, in time
 * order, extremes kept by the merges, the exact peak; and the sites:
 * among 200 churning sites, the cache's sawtooth and the leak's staircase
 * are the ones tracked, with the shapes they have.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tracer/heap.h"
#include "tracer/timeline.h"
#include "check.h"

enum { CACHE = 1, LEAK = 2, NOISE = 3, N_NOISE = 200 };

static uint64_t next_ptr = 0x100000;

static void alloc(struct heap *h, uint32_t site, uint64_t size, uint64_t t, uint64_t *ptr)
{
	struct alloc_event ev = { .op = OP_ALLOC, .call = CALL_MALLOC, .tid = 1,
				  .ptr = next_ptr, .size = size, .stack_id = site,
				  .time_ns = t };
	*ptr = next_ptr;
	next_ptr += 4096 * 4;
	heap_record(h, &ev);
}

static void release(struct heap *h, uint64_t ptr, uint64_t t)
{
	struct alloc_event ev = { .op = OP_FREE, .call = CALL_FREE, .tid = 1,
				  .ptr = ptr, .time_ns = t };
	heap_record(h, &ev);
}

int main(void)
{
	struct heap *h = heap_new();
	const struct timeline *tl = heap_timeline(h);
	uint64_t t0 = tl->start_ns, hour = 3600ull * 1000000000ull;
	uint64_t cache[200], n_cache = 0, leaked = 0, peak = 0;
	uint64_t ring[400] = { 0 };	/* the noise sites' blocks, reused */
	size_t n_sites;

	/* Every 50 ms: a cache entry of 4 KiB (the cache is flushed every
	 * 10 s), a noise site allocates and frees 64 bytes; every second the
	 * leak keeps 1,000 bytes. */
	for (uint64_t t = t0 + 50000000; t <= t0 + hour; t += 50000000) {
		uint64_t p, step = (t - t0) / 50000000;
		alloc(h, CACHE, 4096, t, &cache[n_cache++]);
		uint32_t noise = (uint32_t)(step % N_NOISE);
		if (ring[step % 400])
			release(h, ring[step % 400], t);
		alloc(h, NOISE + noise, 64 * (noise % 50 + 1), t, &ring[step % 400]);
		if (step % 20 == 0) {
			alloc(h, LEAK, 1000, t, &p);
			leaked += 1000;
		}
		uint64_t live = heap_stats(h)->live_bytes;
		if (live > peak)
			peak = live;
		if (step % 200 == 0) {
			for (uint64_t i = 0; i < n_cache; i++)
				release(h, cache[i], t);
			n_cache = 0;
		}
	}
	heap_timeline_close(h, t0 + hour + 1);
	heap_sites(h, &n_sites);

	check(tl->n >= TIMELINE_CAP / 2 && tl->n <= TIMELINE_CAP,
	      "an hour keeps %zu samples (%d..%d)", tl->n, TIMELINE_CAP / 2, TIMELINE_CAP);
	check(tl->step_ns >= 1000000000ull, "the step grew to %.2f s",
	      (double)tl->step_ns / 1e9);
	bool ordered = true;
	uint64_t max_seen = 0;
	for (size_t i = 1; i < tl->n; i++) {
		ordered &= tl->samples[i].t_ns > tl->samples[i - 1].t_ns;
		ordered &= tl->samples[i].min_bytes <= tl->samples[i].bytes &&
			   tl->samples[i].bytes <= tl->samples[i].max_bytes;
	}
	for (size_t i = 0; i < tl->n; i++)
		if (tl->samples[i].max_bytes > max_seen)
			max_seen = tl->samples[i].max_bytes;
	check(ordered, "samples in time order, min <= bytes <= max");
	check(tl->peak_bytes == peak && heap_stats(h)->peak_bytes == peak,
	      "exact peak %" PRIu64 " (timeline %" PRIu64 ")", peak, tl->peak_bytes);
	check(max_seen == peak, "the merged samples keep the peak (%" PRIu64 ")", max_seen);
	uint64_t ring_bytes = 0;
	for (uint32_t id = NOISE; id < NOISE + N_NOISE; id++)
		ring_bytes += id < n_sites ? heap_sites(h, &n_sites)[id].live_bytes : 0;
	check(tl->samples[tl->n - 1].bytes == leaked + n_cache * 4096 + ring_bytes,
	      "the last sample is the end: %" PRIu64 " live bytes", tl->samples[tl->n - 1].bytes);

	const struct timeline_site *c = NULL, *l = NULL;
	size_t tracked = 0;
	for (size_t k = 0; k < TIMELINE_SITES; k++) {
		const struct timeline_site *s = &tl->sites[k];
		tracked += s->stack_id != 0;
		if (s->stack_id == CACHE)
			c = s;
		if (s->stack_id == LEAK)
			l = s;
	}
	check(tracked > 2 && tracked <= TIMELINE_SITES, "%zu sites tracked", tracked);
	check(c && l, "the cache and the leak are tracked");
	if (!c || !l)
		return 1;
	check(c->peak == 200 * 4096, "the cache's peak: %" PRIu64 " (200 entries)", c->peak);
	size_t drops = 0, dips = 0;
	for (size_t i = c->first_sample + 1; i < tl->n; i++)
		drops += c->bytes[i] < c->bytes[i - 1];
	for (size_t i = l->first_sample + 1; i < tl->n; i++)
		dips += l->bytes[i] < l->bytes[i - 1];
	check(drops > 100, "the cache's series is a sawtooth: %zu drops", drops);
	check(dips == 0 && l->bytes[tl->n - 1] == leaked,
	      "the leak's series only climbs, to %" PRIu64 " (%zu dips)", l->bytes[tl->n - 1], dips);
	check(l->first_sample < tl->n / 10, "the leak is tracked from early on (sample %zu of %zu)",
	      l->first_sample, tl->n);
	heap_free(h);
	return failures ? 1 : 0;
}
