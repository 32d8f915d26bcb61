/*
 * suppress: reading suppression files and matching them against the loss
 * records of a model (see suppress.h for the two formats).
 *
 * valgrind's parser is line based and so is this one: every line is
 * trimmed, blank lines and `#` comments are skipped anywhere, and a
 * block's lines come in a fixed order (name, tool:kind, the kind's extra
 * line, frames). Matching follows valgrind's: the frame lines are a
 * pattern over the stack from its innermost frame, `...` standing for any
 * number of frames, and the pattern need only match a prefix of the stack.
 */
#include "tracer/suppress.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracer/model.h"
#include "tracer/options.h"
#include "tracer/util.h"

/* valgrind refuses more frame lines than this in one suppression. */
#define MAX_SUPP_FRAMES 24

enum pat_kind { PAT_FUN, PAT_OBJ, PAT_SRC, PAT_DOTS };

struct frame_pat {
	enum pat_kind kind;
	char *glob;
	int line;		/* src:FILE:LINE; 0 = any line */
};

struct suppression {
	char *name;
	const char *file;	/* owned by the set (files[]) */
	int line;		/* of the name */
	unsigned kinds;		/* enum leak_kind_flag */
	bool lsan;		/* leak:PATTERN: glob matched against any frame */
	struct frame_pat *frames;
	size_t n_frames;
};

struct suppressions {
	struct suppression *v;
	size_t n;
	char **files;
	size_t n_files;
};

#define ALL_KINDS (KIND_DEFINITE | KIND_INDIRECT | KIND_POSSIBLE | KIND_REACHABLE)

struct suppressions *suppressions_new(void)
{
	return xcalloc(1, sizeof(struct suppressions));
}

static void suppression_release(struct suppression *sp)
{
	for (size_t i = 0; i < sp->n_frames; i++)
		free(sp->frames[i].glob);
	free(sp->frames);
	free(sp->name);
}

void suppressions_free(struct suppressions *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		suppression_release(&s->v[i]);
	for (size_t i = 0; i < s->n_files; i++)
		free(s->files[i]);
	free(s->files);
	free(s->v);
	free(s);
}

unsigned suppressions_kinds(const struct suppressions *s)
{
	unsigned k = 0;

	for (size_t i = 0; s && i < s->n; i++)
		k |= s->v[i].kinds;
	return k;
}

/* ---- reading ---------------------------------------------------------- */

struct reader {
	char *buf;		/* the whole file, lines cut in place */
	char *next;
	int lineno;
	const char *path;
	char **err;
};

/* The next significant line, trimmed; NULL at the end of the file. */
static char *next_line(struct reader *r)
{
	while (r->next && *r->next) {
		char *l = r->next, *nl = strchr(l, '\n');
		r->next = nl ? nl + 1 : NULL;
		if (nl)
			*nl = '\0';
		r->lineno++;
		while (*l == ' ' || *l == '\t')
			l++;
		char *e = l + strlen(l);
		while (e > l && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			*--e = '\0';
		if (*l && *l != '#')
			return l;
	}
	return NULL;
}

static __attribute__((format(printf, 2, 3))) int bad_line(struct reader *r, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (asprintf(r->err, "%s:%d: %s", r->path, r->lineno, msg) < 0)
		*r->err = NULL;
	return -1;
}

static int parse_kinds(struct reader *r, const char *list, unsigned *out)
{
	static const struct { const char *name; unsigned flags; } names[] = {
		{ "definite", KIND_DEFINITE }, { "indirect", KIND_INDIRECT },
		{ "possible", KIND_POSSIBLE }, { "reachable", KIND_REACHABLE },
		{ "all", ALL_KINDS }, { "none", 0 },
	};
	char *copy = xstrdup(list), *save = NULL;
	int rc = 0;

	*out = 0;
	for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
		size_t i;
		for (i = 0; i < ARRAY_SIZE(names); i++)
			if (!strcmp(t, names[i].name))
				break;
		if (i == ARRAY_SIZE(names)) {
			rc = bad_line(r, "unknown leak kind '%s' in match-leak-kinds "
				      "(definite, indirect, possible, reachable, all, none)", t);
			break;
		}
		*out |= names[i].flags;
	}
	free(copy);
	return rc;
}

/* Is the tool list TOOLS ("Memcheck", "Memcheck,Addrcheck", "*") ours? */
static bool for_memcheck(const char *tools, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && tools[j] != ',')
			j++;
		if ((j - i == 8 && !strncmp(tools + i, "Memcheck", 8)) ||
		    (j - i == 1 && tools[i] == '*'))
			return true;
		i = j + 1;
	}
	return false;
}

static int parse_frame(struct reader *r, const char *l, struct frame_pat *fp)
{
	memset(fp, 0, sizeof(*fp));
	if (!strcmp(l, "...")) {
		fp->kind = PAT_DOTS;
		return 0;
	}
	if (!strncmp(l, "fun:", 4) || !strncmp(l, "obj:", 4)) {
		fp->kind = l[0] == 'f' ? PAT_FUN : PAT_OBJ;
		fp->glob = xstrdup(l + 4);
		return 0;
	}
	if (!strncmp(l, "src:", 4)) {
		const char *colon = strrchr(l + 4, ':');
		char *end;
		fp->kind = PAT_SRC;
		if (colon) {
			long line = strtol(colon + 1, &end, 10);
			if (end == colon + 1 || *end || line <= 0 || line > INT_MAX)
				return bad_line(r, "bad line number in '%s'", l);
			fp->line = (int)line;
			fp->glob = strndup(l + 4, (size_t)(colon - l - 4));
		} else {
			fp->glob = xstrdup(l + 4);
		}
		return 0;
	}
	return bad_line(r, "expected a frame line (fun:, obj:, src: or ...) or '}', got '%s'", l);
}

/* One `{ ... }` block whose `{` was just read; appended to *V if it is a
 * memcheck leak suppression. */
static int parse_block(struct reader *r, struct suppression **v, size_t *n)
{
	struct suppression sp = { .kinds = ALL_KINDS, .file = r->path };
	char *l = next_line(r);
	bool ours;

	if (!l || !strcmp(l, "}"))
		return bad_line(r, "missing suppression name after '{'");
	sp.name = xstrdup(l);
	sp.line = r->lineno;
	if (!(l = next_line(r)) || !strcmp(l, "}")) {
		int rc = bad_line(r, "missing 'TOOL:KIND' line (Memcheck:Leak) in suppression '%s'",
				  sp.name);
		free(sp.name);
		return rc;
	}
	const char *colon = strchr(l, ':');
	if (!colon || colon == l || !colon[1]) {
		free(sp.name);
		return bad_line(r, "expected 'TOOL:KIND' (Memcheck:Leak), got '%s'", l);
	}
	ours = for_memcheck(l, (size_t)(colon - l)) && !strcmp(colon + 1, "Leak");
	bool param = for_memcheck(l, (size_t)(colon - l)) && !strcmp(colon + 1, "Param");
	if (param && !next_line(r)) {	/* Memcheck:Param has the syscall's line */
		free(sp.name);
		return bad_line(r, "unexpected end of file in suppression");
	}
	int rc = 0;
	bool first = true;
	for (;;) {
		if (!(l = next_line(r))) {
			rc = bad_line(r, "unexpected end of file: suppression '%s' has no '}'",
				      sp.name);
			break;
		}
		if (!strcmp(l, "}"))
			break;
		if (!ours)
			continue;	/* another tool's or kind's: valgrind skips them too */
		if (first && !strncmp(l, "match-leak-kinds:", 17)) {
			first = false;
			if ((rc = parse_kinds(r, l + 17, &sp.kinds)) < 0)
				break;
			continue;
		}
		first = false;
		if (sp.n_frames == MAX_SUPP_FRAMES) {
			rc = bad_line(r, "more than %d frame lines in suppression '%s'",
				      MAX_SUPP_FRAMES, sp.name);
			break;
		}
		sp.frames = xrealloc(sp.frames, (sp.n_frames + 1) * sizeof(*sp.frames));
		if ((rc = parse_frame(r, l, &sp.frames[sp.n_frames])) < 0)
			break;
		sp.n_frames++;
	}
	if (rc == 0 && ours && sp.n_frames == 0)
		rc = bad_line(r, "suppression '%s' has no frame lines", sp.name);
	if (rc < 0 || !ours) {
		suppression_release(&sp);
		return rc;
	}
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = sp;
	return 0;
}

/* LeakSanitizer's `leak:PATTERN` as a glob: unanchored ends match any text. */
static int parse_lsan(struct reader *r, const char *l, struct suppression **v, size_t *n)
{
	const char *colon = strchr(l, ':');
	size_t len;

	if (!colon || strncmp(l, "leak", (size_t)(colon - l)) || colon - l != 4)
		return bad_line(r, "expected 'leak:PATTERN' (LeakSanitizer's format), got '%s'", l);
	const char *pat = colon + 1;
	if (!*pat)
		return bad_line(r, "empty pattern in '%s'", l);
	bool start = pat[0] == '^';
	if (start)
		pat++;
	len = strlen(pat);
	bool end = len && pat[len - 1] == '$';
	if (end)
		len--;
	char *glob = xmalloc(2 * len + 3), *w = glob;
	if (!start)
		*w++ = '*';
	for (size_t i = 0; i < len; i++) {
		if (pat[i] == '?' || pat[i] == '\\')	/* only * is special to LSan */
			*w++ = '\\';
		*w++ = pat[i];
	}
	if (!end)
		*w++ = '*';
	*w = '\0';
	struct suppression sp = { .name = xstrdup(l), .file = r->path, .line = r->lineno,
				  .kinds = ALL_KINDS, .lsan = true };
	sp.frames = xmalloc(sizeof(*sp.frames));
	sp.frames[0] = (struct frame_pat){ .kind = PAT_FUN, .glob = glob };
	sp.n_frames = 1;
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = sp;
	return 0;
}

static char *read_file(const char *path, int *err)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;

	if (!f) {
		*err = errno;
		return NULL;
	}
	FILE *m = open_memstream(&buf, &len);
	char chunk[8192];
	size_t k;
	while (m && (k = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, k, m);
	*err = ferror(f) ? errno : 0;
	fclose(f);
	if (m)
		fclose(m);
	if (*err) {
		free(buf);
		return NULL;
	}
	return buf ? buf : xstrdup("");
}

int suppressions_load(struct suppressions *s, const char *path, char **err)
{
	int e;
	char *buf = read_file(path, &e);
	char *file = xstrdup(path);
	struct reader r = { .buf = buf, .next = buf, .path = file, .err = err };
	struct suppression *v = NULL;
	size_t n = 0;
	int rc = 0;

	*err = NULL;
	if (!buf) {
		if (asprintf(err, "cannot read suppression file '%s': %s", path, strerror(e)) < 0)
			*err = NULL;
		free(file);
		return -1;
	}
	/* The format is the first significant line's: `{` or `type:`. */
	char *l = next_line(&r);
	bool lsan = l && strcmp(l, "{");
	if (lsan && !strchr(l, ':')) {
		rc = bad_line(&r, "neither valgrind's format ('{' opens a suppression) nor "
			      "LeakSanitizer's ('leak:PATTERN'): '%s'", l);
		l = NULL;
	}
	for (; l && rc == 0; l = next_line(&r)) {
		if (lsan)
			rc = parse_lsan(&r, l, &v, &n);
		else if (strcmp(l, "{"))
			rc = bad_line(&r, "expected '{' to open a suppression, got '%s'", l);
		else
			rc = parse_block(&r, &v, &n);
	}
	free(buf);
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			suppression_release(&v[i]);
		free(v);
		free(file);
		if (!*err)
			*err = xstrdup(path);
		return -1;
	}
	s->files = xrealloc(s->files, (s->n_files + 1) * sizeof(*s->files));
	s->files[s->n_files++] = file;
	if (n) {	/* a file of comments only: no array to copy */
		s->v = xrealloc(s->v, (s->n + n) * sizeof(*s->v));
		memcpy(s->v + s->n, v, n * sizeof(*v));
		s->n += n;
	}
	free(v);
	return 0;
}

/* ---- matching --------------------------------------------------------- */

/* valgrind's wildcards: `*` any text, `?` one character, `\` quotes. */
static bool glob_match(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;

	while (*s) {
		if (*p == '*') {
			star = ++p;
			resume = s;
			continue;
		}
		if (*p == '\\' && p[1]) {
			if (p[1] == *s) {
				p += 2;
				s++;
				continue;
			}
		} else if (*p && (*p == '?' || *p == *s)) {
			p++;
			s++;
			continue;
		}
		if (!star)
			return false;
		p = star;
		s = ++resume;
	}
	while (*p == '*')
		p++;
	return !*p;
}

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');

	return b ? b + 1 : path;
}

static bool frame_matches(const struct frame_pat *fp, const struct symbol_info *si)
{
	switch (fp->kind) {
	case PAT_FUN:
		if (!si->function)
			return glob_match(fp->glob, "???");
		return glob_match(fp->glob, si->linkage_name ? si->linkage_name : si->function) ||
		       glob_match(fp->glob, si->function);
	case PAT_OBJ:
		return glob_match(fp->glob, si->module ? si->module : "???");
	case PAT_SRC:
		if (!si->file || !si->line || (fp->line && fp->line != si->line))
			return false;
		return glob_match(fp->glob, strchr(fp->glob, '/') ? si->file : base_name(si->file));
	case PAT_DOTS:
		return true;
	}
	return false;
}

static bool stack_matches(const struct frame_pat *p, size_t np,
			  const struct model_frame *f, size_t nf)
{
	if (np == 0)
		return true;	/* a prefix of the stack is enough */
	if (p->kind == PAT_DOTS) {
		while (np && p->kind == PAT_DOTS)
			p++, np--;
		if (np == 0)
			return true;
		for (size_t k = 0; k < nf; k++)
			if (stack_matches(p, np, f + k, nf - k))
				return true;
		return false;
	}
	if (nf == 0 || !frame_matches(p, &f->si))
		return false;
	return stack_matches(p + 1, np - 1, f + 1, nf - 1);
}

static bool lsan_matches(const char *glob, const struct model_record *rec)
{
	for (size_t k = 0; k < rec->n_frames; k++) {
		const struct symbol_info *si = &rec->frames[k].si;
		if ((si->function && glob_match(glob, si->function)) ||
		    (si->module && glob_match(glob, si->module)) ||
		    (si->file && glob_match(glob, si->file)))
			return true;
	}
	return false;
}

/* C++'s allocation operators (new, new[], nothrow and aligned forms):
 * valgrind replaces them, so its stack starts there. */
static bool is_operator_new(const char *linkage)
{
	return linkage && (!strncmp(linkage, "_Znwm", 5) || !strncmp(linkage, "_Znam", 5));
}

size_t suppress_first_frame(const struct model_record *rec)
{
	size_t k = 0;

	while (k + 1 < rec->n_frames && is_operator_new(rec->frames[k + 1].si.linkage_name))
		k++;
	return k;
}

static bool suppression_matches(const struct suppression *sp, const struct model_record *rec)
{
	if (!(sp->kinds & leak_kind_flag(rec->kind)))
		return false;
	if (sp->lsan)
		return lsan_matches(sp->frames[0].glob, rec);
	size_t k = suppress_first_frame(rec);
	return stack_matches(sp->frames, sp->n_frames, rec->frames + k, rec->n_frames - k);
}

void suppressions_apply(const struct suppressions *s, struct report_model *m)
{
	if (!s || !s->n)
		return;
	uint64_t *recs = xcalloc(s->n, sizeof(*recs)), *bytes = xcalloc(s->n, sizeof(*bytes)),
		 *blocks = xcalloc(s->n, sizeof(*blocks));
	size_t used = 0;

	for (size_t i = 0; i < m->n_records; i++) {
		struct model_record *rec = &m->records[i];
		if (!rec->n_frames)
			continue;
		for (size_t j = 0; j < s->n; j++) {
			if (!suppression_matches(&s->v[j], rec))
				continue;
			rec->suppressed_by = (int)j;
			used += !recs[j]++;
			bytes[j] += rec->bytes;
			blocks[j] += rec->blocks;
			m->totals.bytes[rec->kind] -= rec->bytes;
			m->totals.blocks[rec->kind] -= rec->blocks;
			m->suppressed.bytes[rec->kind] += rec->bytes;
			m->suppressed.blocks[rec->kind] += rec->blocks;
			break;
		}
	}
	m->supp_used = xcalloc(used + 1, sizeof(*m->supp_used));
	for (size_t j = 0; j < s->n; j++)
		if (recs[j])
			m->supp_used[m->n_supp_used++] = (struct model_supp_use){
				.index = (int)j, .name = s->v[j].name, .file = s->v[j].file, .line = s->v[j].line,
				.records = recs[j], .bytes = bytes[j], .blocks = blocks[j] };
	free(recs);
	free(bytes);
	free(blocks);
}

/* ---- writing ---------------------------------------------------------- */

static const char *const kind_names[LEAK__COUNT] = {
	[LEAK_DEFINITE] = "definite", [LEAK_INDIRECT] = "indirect",
	[LEAK_POSSIBLE] = "possible", [LEAK_REACHABLE] = "reachable",
};

const char *suppress_kind_name(enum leak_kind k)
{
	return k < LEAK__COUNT ? kind_names[k] : "?";
}

const char *suppress_frame_value(const struct symbol_info *si, bool *is_fun)
{
	*is_fun = si->function != NULL;
	if (si->function)
		return si->linkage_name ? si->linkage_name : si->function;
	return si->module ? si->module : "*";
}

void suppress_write_block(FILE *f, const struct model_record *rec)
{
	bool fun;

	fprintf(f, "{\n   <insert_a_suppression_name_here>\n   Memcheck:Leak\n"
		"   match-leak-kinds: %s\n", kind_names[rec->kind]);
	for (size_t k = suppress_first_frame(rec); k < rec->n_frames; k++) {
		const char *v = suppress_frame_value(&rec->frames[k].si, &fun);
		fprintf(f, "   %s:%s\n", fun ? "fun" : "obj", v);
	}
	fputs("}\n", f);
}

char *suppress_default_path(void)
{
	static const char *const rel[] = { "default.supp", "../lib/ptleak/default.supp" };
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
		char *p;
		if (asprintf(&p, "%s/%s", exe, rel[i]) < 0)
			return NULL;
		char *real = access(p, R_OK) == 0 ? realpath(p, NULL) : NULL;
		free(p);
		if (real)
			return real;	/* "/usr/lib/ptleak/...", not ".../bin/../lib" */
	}
#ifdef PTLEAK_SUPPDIR
	/* Installed with a BINDIR that is not PREFIX/bin. */
	if (access(PTLEAK_SUPPDIR "/default.supp", R_OK) == 0)
		return xstrdup(PTLEAK_SUPPDIR "/default.supp");
#endif
	return NULL;
}
