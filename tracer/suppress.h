#ifndef PTLEAK_SUPPRESS_H
#define PTLEAK_SUPPRESS_H
/*
 * suppress: suppression files, a filter over the report model.
 *
 * Two formats, told apart by content:
 *   - valgrind's: blocks `{ NAME  Memcheck:Leak  [match-leak-kinds: K]
 *     frame lines }`, frame lines being fun:GLOB, obj:GLOB, src:FILE[:LINE]
 *     and `...` (any number of frames). A block matches a loss record
 *     when its frame lines match the record's stack from the innermost
 *     frame on, as valgrind matches them (fun: against the undemangled
 *     name and the demangled one, obj: against the module's path, src:
 *     against the source file's name). Blocks of other tools or kinds
 *     (Memcheck:Cond, Helgrind:Race, ...) are read and ignored, so a
 *     valgrind user's file loads unchanged.
 *   - LeakSanitizer's: lines `leak:PATTERN`, matching a record when
 *     PATTERN matches the function, module or source file of any frame
 *     (`*` any text, `^` / `$` anchor, otherwise a substring).
 *
 * The stack a suppression sees is valgrind's view of it: valgrind's first
 * frame is the allocation function the program called, so frames inside
 * a C++ operator new (ptleak's malloc under it) are skipped first.
 */
#include <stdbool.h>
#include <stdio.h>

#include "symbols/symbols.h"
#include "tracer/scan.h"

struct report_model;
struct model_record;
struct suppressions;

struct suppressions *suppressions_new(void);
void suppressions_free(struct suppressions *s);

/*
 * Read PATH and add its suppressions. 0, or -1 with *ERR set (malloc'ed)
 * to one line naming PATH:LINE and what is wrong (the set is then as it
 * was before the call).
 */
int suppressions_load(struct suppressions *s, const char *path, char **err);

/* Leak kinds (enum leak_kind_flag) that some suppression can match: the
 * records whose frames the filter needs. */
unsigned suppressions_kinds(const struct suppressions *s);

/*
 * Mark the records of M that a suppression matches (suppressed_by = the
 * suppression's index, the first that matches), move their bytes and
 * blocks from M->totals to M->suppressed, and list the suppressions used
 * in M->supp_used. Records without frames (kinds not symbolized) are left
 * alone.
 */
void suppressions_apply(const struct suppressions *s, struct report_model *m);

/* The first frame of REC in valgrind's view (see above). */
size_t suppress_first_frame(const struct model_record *rec);

/* The valgrind suppression block that matches REC, as valgrind's
 * --gen-suppressions writes it (valgrind reads it back unchanged). */
void suppress_write_block(FILE *f, const struct model_record *rec);

/* One frame line of such a block: the undemangled function name (*IS_FUN
 * true: fun:), else the module's path or "*" (obj:). */
const char *suppress_frame_value(const struct symbol_info *si, bool *is_fun);
/* "definite", "indirect", "possible", "reachable": match-leak-kinds' words. */
const char *suppress_kind_name(enum leak_kind k);

/* The path of the default suppression file: next to the ptleak binary
 * (the build tree's default.supp), ../lib/ptleak/default.supp from it
 * (installed), or in the SUPPDIR it was built for; malloc'ed, NULL if
 * there is none. */
char *suppress_default_path(void);

#endif
