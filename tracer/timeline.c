/*
 * timeline: bounded samples of the heap through the run (timeline.h).
 */
#include "tracer/timeline.h"

#include <stdlib.h>
#include <string.h>

#include "tracer/heap.h"
#include "tracer/util.h"

struct timeline *timeline_new(uint64_t start_ns)
{
	struct timeline *tl = xcalloc(1, sizeof(*tl));

	tl->samples = xmalloc(TIMELINE_CAP * sizeof(*tl->samples));
	timeline_reset(tl, start_ns);
	return tl;
}

void timeline_free(struct timeline *tl)
{
	if (!tl)
		return;
	for (size_t k = 0; k < TIMELINE_SITES; k++)
		free(tl->sites[k].bytes);
	free(tl->samples);
	free(tl);
}

struct timeline *timeline_clone(const struct timeline *tl)
{
	struct timeline *c = xmalloc(sizeof(*c));

	*c = *tl;
	c->samples = xmalloc(TIMELINE_CAP * sizeof(*c->samples));
	memcpy(c->samples, tl->samples, tl->n * sizeof(*c->samples));
	for (size_t k = 0; k < TIMELINE_SITES; k++) {
		if (!tl->sites[k].bytes)
			continue;
		c->sites[k].bytes = xmalloc(TIMELINE_CAP * sizeof(uint64_t));
		memcpy(c->sites[k].bytes, tl->sites[k].bytes, tl->n * sizeof(uint64_t));
	}
	return c;
}

void timeline_reset(struct timeline *tl, uint64_t start_ns)
{
	for (size_t k = 0; k < TIMELINE_SITES; k++) {
		tl->sites[k].stack_id = 0;
		tl->sites[k].peak = 0;
	}
	tl->start_ns = start_ns;
	tl->step_ns = TIMELINE_STEP_NS;
	tl->next_ns = start_ns + TIMELINE_STEP_NS;
	tl->n = 0;
	tl->cur_max = 0;
	tl->cur_min = 0;
	tl->peak_bytes = tl->peak_ns = tl->peak_blocks = 0;
	tl->enter = 1;
	tl->last_bytes = 0;
}

/* The entry threshold: a 32nd of the live heap while slots are free,
 * else twice the weakest tracked site's peak. */
static void set_enter(struct timeline *tl)
{
	uint64_t weakest = UINT64_MAX;

	for (size_t k = 0; k < TIMELINE_SITES; k++) {
		if (!tl->sites[k].stack_id) {
			uint64_t e = tl->last_bytes / TIMELINE_SITES;
			tl->enter = e ? e : 1;
			return;
		}
		if (tl->sites[k].peak < weakest)
			weakest = tl->sites[k].peak;
	}
	tl->enter = weakest > UINT64_MAX / 2 ? UINT64_MAX : 2 * weakest + 1;
}

/* Full: merge neighbours in pairs, double the step. A merged sample is
 * the later one, with the extremes of both. */
static void coarsen(struct timeline *tl)
{
	size_t half = tl->n / 2;

	for (size_t i = 0; i < half; i++) {
		struct timeline_sample a = tl->samples[2 * i], b = tl->samples[2 * i + 1];
		if (a.max_bytes > b.max_bytes)
			b.max_bytes = a.max_bytes;
		if (a.min_bytes < b.min_bytes)
			b.min_bytes = a.min_bytes;
		tl->samples[i] = b;
	}
	for (size_t k = 0; k < TIMELINE_SITES; k++) {
		struct timeline_site *s = &tl->sites[k];
		if (!s->stack_id)
			continue;
		for (size_t i = s->first_sample / 2; i < half; i++) {
			uint64_t a = 2 * i >= s->first_sample ? s->bytes[2 * i] : 0;
			uint64_t b = s->bytes[2 * i + 1];
			s->bytes[i] = a > b ? a : b;
		}
		s->first_sample /= 2;
	}
	tl->n = half;
	tl->step_ns *= 2;
}

void timeline_sample(struct timeline *tl, uint64_t t, uint64_t bytes, uint64_t blocks,
		     const struct heap_site *sites, size_t n_sites)
{
	if (tl->n == TIMELINE_CAP)
		coarsen(tl);
	tl->samples[tl->n] = (struct timeline_sample){
		.t_ns = t, .bytes = bytes, .blocks = blocks,
		.max_bytes = tl->cur_max > bytes ? tl->cur_max : bytes,
		.min_bytes = tl->cur_min < bytes ? tl->cur_min : bytes,
	};
	for (size_t k = 0; k < TIMELINE_SITES; k++) {
		struct timeline_site *s = &tl->sites[k];
		if (!s->stack_id)
			continue;
		uint64_t v = s->stack_id < n_sites ? sites[s->stack_id].live_bytes : 0;
		s->bytes[tl->n] = v;
		if (v > s->peak)
			s->peak = v;
	}
	tl->n++;
	tl->cur_max = tl->cur_min = bytes;
	tl->last_bytes = bytes;
	/* Steps stay on the grid from the start: a late event does not shift
	 * every later sample. */
	uint64_t steps = (t - tl->start_ns) / tl->step_ns + 1;
	tl->next_ns = tl->start_ns + steps * tl->step_ns;
	set_enter(tl);
}

void timeline_close(struct timeline *tl, uint64_t t, uint64_t bytes, uint64_t blocks,
		    const struct heap_site *sites, size_t n_sites)
{
	if (tl->n && tl->samples[tl->n - 1].t_ns >= t)
		return;
	timeline_sample(tl, t, bytes, blocks, sites, n_sites);
}

void timeline_track(struct timeline *tl, uint32_t id, struct heap_site *sites, size_t n_sites)
{
	size_t k, weakest = 0;
	uint64_t live = id < n_sites ? sites[id].live_bytes : 0;

	for (k = 0; k < TIMELINE_SITES; k++) {
		if (!tl->sites[k].stack_id)
			break;
		if (tl->sites[k].peak < tl->sites[weakest].peak)
			weakest = k;
	}
	if (k == TIMELINE_SITES) {
		k = weakest;
		if (live <= 2 * tl->sites[k].peak)
			return;
		if (tl->sites[k].stack_id < n_sites)
			sites[tl->sites[k].stack_id].slot = 0;
	}
	struct timeline_site *s = &tl->sites[k];
	if (!s->bytes)
		s->bytes = xmalloc(TIMELINE_CAP * sizeof(*s->bytes));
	s->stack_id = id;
	s->first_sample = tl->n;
	s->peak = live;
	sites[id].slot = (uint8_t)(k + 1);
	set_enter(tl);
}
