#ifndef PTLEAK_MODEL_H
#define PTLEAK_MODEL_H
/*
 * model: the report of one process, built once from its allocation table
 * and its scan, for every writer (writer.h). Loss records are the blocks
 * of one leak kind allocated from one stack, numbered largest first
 * (direct plus indirect bytes, then blocks); their frames are symbolized
 * here, and only theirs.
 *
 * Writers read a model and never the process: what a format needs that
 * the model lacks belongs in the model.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "symbols/symbols.h"
#include "tracer/heap.h"
#include "tracer/scan.h"
#include "tracer/timeline.h"

struct process;
struct options;

/* Frames of a stack: 64 return addresses (--num-callers' limit), each
 * with the functions inlined at it. */
#define MODEL_MAX_FRAMES 256

/* A check on demand: how a loss record changed since the last check. */
enum record_change {
	CHANGE_NONE,		/* the same bytes and blocks */
	CHANGE_NEW,		/* no such record (kind, stack) then */
	CHANGE_INCREASED,	/* more bytes (or blocks) */
	CHANGE_DECREASED,	/* fewer */
};

/* One frame as valgrind shows it: the functions inlined at a return
 * address are frames of their own, innermost first, sharing its pc;
 * the last frame of the pc is the out-of-line function. */
struct model_frame {
	uint64_t pc;
	bool inlined;		/* inlined into the next frame (same pc) */
	struct symbol_info si;	/* function, file, line, module, offset */
};

struct model_record {
	enum leak_kind kind;
	enum alloc_call call;	/* the entry point that allocated the blocks */
	uint32_t stack_id;
	/* Blocks found live in the allocator when ptleak attached: no stack
	 * (n_frames 0), no ages (oldest_ns, median_ns 0); one such record
	 * per kind. */
	bool before_attach;
	uint64_t bytes, blocks;
	/* Definitely lost records: the blocks of their cliques, indirectly
	 * lost, counted here too (valgrind's "N (D direct, I indirect)"). */
	uint64_t indirect_bytes, indirect_blocks;
	uint64_t oldest_ns, median_ns;	/* allocation times (CLOCK_MONOTONIC) */
	uint64_t *addrs;	/* the blocks' addresses, ascending; n = blocks */
	/* Frames innermost first: at most --num-callers, cut after main
	 * unless --show-below-main. Frame 0 is named by the entry point the
	 * program called (malloc, not __libc_malloc). None (0) for records
	 * of kinds model_build was not asked to symbolize. */
	struct model_frame *frames;
	size_t n_frames;
	/* Filled by whoever filters the model (suppressions): -1 = shown. */
	int suppressed_by;
	/* Checks on demand (model_compare): the change since the last one. */
	enum record_change change;
	int64_t delta_bytes, delta_blocks;
};

/* --track-mmap: the anonymous regions still mapped that one stack made. */
struct model_mmap {
	uint32_t stack_id;
	uint64_t bytes, regions;
	uint64_t oldest_ns;
	uint64_t *starts;	/* the regions' addresses, ascending; n = regions */
	struct model_frame *frames;	/* frame 0 named mmap (or mremap's mmap) */
	size_t n_frames;
};

/* Everything allocated from one stack (MODEL_SITES): pprof's alloc_*
 * samples, and what is freed there (alloc - live). */
struct model_site {
	uint32_t stack_id;
	enum alloc_call call;
	uint64_t alloc_bytes, alloc_blocks;
	uint64_t live_bytes, live_blocks;	/* at the report */
	struct model_frame *frames;	/* as model_record.frames */
	size_t n_frames;
};

/* A top site's live bytes through the run (MODEL_TIMELINE): bytes[i] for
 * samples[i], i >= first_sample; before that it was not yet tracked
 * (smaller than the sites that were, timeline.h). */
struct model_series {
	uint32_t stack_id;
	uint64_t peak;		/* its highest sampled live bytes */
	uint64_t final;		/* live at the report */
	size_t first_sample;
	uint64_t *bytes;	/* n_samples entries */
	struct model_frame *frames;
	size_t n_frames;
};

#define MODEL_SERIES 10		/* top sites over time kept in a model */

/* model_build's parts beyond the leak kinds' frames. */
enum model_part {
	MODEL_SITES = 1u << 8,		/* sites[], symbolized */
	MODEL_TIMELINE = 1u << 9,	/* samples[] and series[] */
};

struct model_totals {
	uint64_t bytes[LEAK__COUNT], blocks[LEAK__COUNT];
};

/* A suppression that matched records of the model (suppress.h). */
struct model_supp_use {
	int index;		/* what a record's suppressed_by says */
	const char *name;	/* borrowed from the suppression set */
	const char *file;
	int line;		/* of the name, as valgrind counts it */
	uint64_t records, bytes, blocks;
};

struct report_model {
	pid_t pid, ppid;
	char *const *argv;	/* borrowed from the process */
	int exit_status;	/* wait status; -1: still running (detach) */
	bool attached;		/* -p: traced since attach_ns */
	unsigned untraced_children;	/* forked without -f: ran untraced */
	uint64_t attach_ns;
	/* -p: whether the blocks live before the attach were read from the
	 * allocator (records with before_attach; leak kinds exact), or why
	 * not (leak kinds conservative: before_why, e.g. "the allocator is
	 * not glibc's"). */
	bool before_known;
	const char *before_why;	/* borrowed from the process; NULL if known */
	uint64_t before_read_ns;	/* the reading of them (the program stopped) */
	const char *before_allocator;	/* whose heap: "glibc", "musl" */
	uint64_t now_ns;	/* when the model was built */
	struct heap_stats heap;
	bool scanned;		/* false: memory was gone, all definitely lost */
	uint64_t words_scanned, scan_ns;
	struct model_record *records;	/* largest first */
	size_t n_records;
	struct model_totals totals;	/* per kind, suppressed blocks excluded */
	struct model_totals suppressed;	/* per kind, suppressed blocks only */
	struct model_supp_use *supp_used;	/* in the order of the files */
	size_t n_supp_used;
	/* A check on demand (report_check): its number (1, 2, ...; 0 for the
	 * report at the end), how long the program was stopped for it, and
	 * what changed since the previous check (model_compare). */
	unsigned check;
	uint64_t stopped_ns;
	unsigned prev_check;	/* 0: none before: every record is new */
	int64_t delta_bytes[LEAK__COUNT], delta_blocks[LEAK__COUNT];
	size_t n_gone;		/* records of the previous check not here */
	uint64_t gone_bytes, gone_blocks;
	/* --track-mmap (mmaps_tracked): anonymous regions the program mapped
	 * outside its allocator and that are still mapped, grouped by the
	 * stack that mapped them, largest first; glibc's thread stacks (made
	 * through pthread_create, kept by glibc for reuse) apart. */
	bool mmaps_tracked;
	struct model_mmap *mmaps;
	size_t n_mmaps;
	uint64_t mmap_bytes, mmap_regions;
	uint64_t thread_stack_bytes, thread_stack_regions;
	/* A --interval snapshot of a running process (model_snapshot): no
	 * scan, every record holds live blocks of no known leak kind (its
	 * kind field reads LEAK_REACHABLE; writers say "live"). */
	bool snapshot;
	unsigned snapshot_no;	/* 1, 2, ... */
	uint64_t start_ns;	/* when tracing began: exec (or launch), attach */
	uint64_t wall_ns;	/* CLOCK_REALTIME at now_ns */
	const char *exe;	/* the program's executable, NULL if unknown */
	struct model_site *sites;	/* MODEL_SITES: by stack id, ascending */
	size_t n_sites;
	/* MODEL_TIMELINE: the heap over time (timeline.h), the exact peak,
	 * and the top sites' series, largest peak first. */
	struct timeline_sample *samples;
	size_t n_samples;
	uint64_t peak_ns, peak_blocks;
	struct model_series *series;
	size_t n_series;
};

/*
 * The model of process P, whose scan is R (never NULL). The frames of the
 * records whose kind is in KINDS (enum leak_kind_flag) are symbolized
 * through P's symbols now; the others get none (symbolizing costs, and
 * the text report shows two kinds by default). KINDS may add the parts
 * of enum model_part. Cannot fail (out of memory aborts).
 */
struct report_model *model_build(struct process *p, const struct scan_result *r,
				 const struct options *o, unsigned kinds);

/* A model of P's live blocks now, without a scan (--interval snapshot
 * number NO): one record per stack, every frame symbolized. */
struct report_model *model_snapshot(struct process *p, const struct options *o,
				    unsigned parts, unsigned no);

/* The site of stack ID in M->sites, NULL if none. */
const struct model_site *model_site_of(const struct report_model *m, uint32_t id);

/* The words for REC's kind in machine form: leak_kind_name(), or "live"
 * in a snapshot. */
const char *model_kind_name(const struct report_model *m, const struct model_record *rec);
void model_free(struct report_model *m);

/* The suppression that matched REC, NULL if it is shown. */
const struct model_supp_use *model_supp_of(const struct report_model *m,
					   const struct model_record *rec);
/* Fill the changes of M since PREV, the model of the previous check of
 * the same process (NULL: none; every record is new). Records match by
 * kind and stack (and before_attach). */
void model_compare(struct report_model *m, const struct report_model *prev);

/* Seconds from T to the model's now (0 if T is unknown or later). */
double model_age_s(const struct report_model *m, uint64_t t);

/*
 * The frames of stack ID of P, symbolized and cut as a report shows them
 * (see model_record.frames), at most MAX into OUT; returns how many.
 */
size_t model_frames(struct process *p, const struct options *o, uint32_t id,
		    enum alloc_call call, struct model_frame *out, size_t max);

/* "unchanged", "new", "increased", "decreased". */
const char *record_change_name(enum record_change c);
/* "definitely lost", ... (the words of valgrind's text). */
const char *leak_kind_words(enum leak_kind k);
/* KIND_DEFINITE, ... (options.h) of K. */
unsigned leak_kind_flag(enum leak_kind k);

#endif
