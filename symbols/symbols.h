#ifndef PTLEAK_SYMBOLS_H
#define PTLEAK_SYMBOLS_H
/*
 * symbols: one tracee address space seen through elfutils' libdwfl.
 *
 * It knows which ELF objects are mapped where (read from /proc/PID/maps by
 * dwfl_linux_proc_report, so load biases are computed by libdwfl, never by
 * hand), finds function symbols by name for the breakpoints, and turns
 * addresses into function, file:line and module for the report.
 *
 * Symbolizing is lazy: nothing is looked up until the report asks, and each
 * answer is cached. Modules that were unmapped (dlclose) before the report
 * are still symbolized: every module ever reported is remembered.
 *
 * Errors: functions returning int return 0 on success and -1 on failure;
 * symbols_errmsg() then says why (libdwfl's own text appended).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct symbols;

/* A view of process PID (any of its threads may be stopped). NULL on error. */
struct symbols *symbols_new(pid_t pid);
void symbols_free(struct symbols *s);

/* The path of the program's executable (/proc/PID/exe when S was made;
 * a module of that path is the program's own), NULL if unknown. */
const char *symbols_exe(const struct symbols *s);

/* Last error, for the one-line message the caller prints. Never NULL. */
const char *symbols_errmsg(const struct symbols *s);

/*
 * Re-read the module list (after exec, dlopen, dlclose). After an exec use
 * symbols_free + symbols_new instead: the old modules are meaningless.
 */
int symbols_refresh(struct symbols *s);

/* Address ranges of the modules the last symbols_refresh found unmapped
 * (seen by the report before it, not by it): up to MAX of them in OUT,
 * returns how many. Their addresses still describe the module that was
 * there, until another module is mapped at them. */
struct symbols_range {
	uint64_t start, end;
};
size_t symbols_unmapped(struct symbols *s, struct symbols_range *out, size_t max);

/* Called once per (module, address): several names at one address
 * (malloc and __libc_malloc) give one call, with the first name in the
 * caller's names[] order. */
typedef void (*symbols_func_cb)(void *arg, const char *name, uint64_t addr,
				uint64_t size, const char *module_path);

/*
 * For every currently mapped module, call CB for each *defined* STT_FUNC
 * symbol whose name is in NAMES (exact match; versioned names such as
 * "malloc@@GLIBC_2.2.5" match "malloc"). Looks in .symtab when present,
 * else .dynsym, so static binaries with symbols work. Returns the number of
 * callbacks made, or -1.
 */
int symbols_find_functions(struct symbols *s, const char *const *names,
			   size_t n_names, symbols_func_cb cb, void *arg);

/* Address of symbol NAME in the module whose file name (basename) starts
 * with MODULE_PREFIX (e.g. "ld-linux"), or 0. Any symbol type. */
uint64_t symbols_lookup_name(struct symbols *s, const char *module_prefix,
			     const char *name);
/* The same, and the symbol's size in *SIZE (0 if unknown). */
uint64_t symbols_lookup_sized(struct symbols *s, const char *module_prefix,
			      const char *name, uint64_t *size);

/* Where PC lies. Strings are owned by S and live until symbols_free.
 * function: demangled C++ names ("operator new(unsigned long)"), NULL if
 * unknown; linkage_name: the same undemangled ("_Znwm"), NULL with it.
 * file: the source file's full path (the line table's name joined to the
 * unit's compilation directory when relative; absolute unless the DWARF
 * lacks the directory), NULL if no line info. line: 0 if unknown.
 * module: path of the ELF object, NULL if PC is in no known module. */
struct symbol_info {
	const char *function;
	const char *linkage_name;
	const char *file;
	int line;
	const char *module;
	uint64_t module_offset; /* PC - module load bias */
	/* The module's mapped range and GNU build ID (lower-case hex, NULL
	 * if it has none or its file cannot be read), for profile formats
	 * that name mappings (pprof). 0/NULL when module is NULL. */
	uint64_t module_start, module_end;
	const char *build_id;
};

/*
 * Describe PC. IS_RETURN_ADDRESS: PC is a return address (every frame but
 * the innermost), so file:line are looked up at PC-1, the call
 * instruction, as debuggers do. Cannot fail: unknown parts are NULL/0.
 */
void symbols_describe(struct symbols *s, uint64_t pc, bool is_return_address,
		      struct symbol_info *out);

/*
 * Read now what describing a pc in PC's module will need and reads once
 * per module (its symbol table and DWARF: for libc with its debug file
 * installed, tens of milliseconds of inflating), so that a report made
 * later does not wait for it. True if it did that work now; false if the
 * module was prepared before or PC is in none.
 */
bool symbols_prepare(struct symbols *s, uint64_t pc);

/* Only symbols_describe's function (mapped modules only): from the
 * symbol table, without the DWARF a file:line needs. NULL if unknown. */
const char *symbols_function(struct symbols *s, uint64_t pc, bool is_return_address);

/*
 * PC as the frames valgrind shows for it (its --read-inline-info): when
 * the compiler inlined functions at PC, one frame per inlined function,
 * innermost first, at PC's file:line, then each caller at the file:line
 * of its call to the one before, ending with the out-of-line function
 * (symbols_describe's answer with the outermost call site's file:line).
 * Every frame but the file, line, function and linkage_name is
 * symbols_describe's. At most MAX into OUT; returns how many (1 when
 * nothing is inlined at PC, 0 only when MAX is).
 */
size_t symbols_describe_inlined(struct symbols *s, uint64_t pc,
				bool is_return_address, struct symbol_info *out,
				size_t max);

/* Internal to symbols/: the module under PC for the unwinder. */
struct symbols_module {
	uint64_t start, end;	/* mapped range */
	uint64_t bias;		/* runtime address - ELF address */
	uint64_t eh_frame_hdr;	/* runtime address of PT_GNU_EH_FRAME, 0 if none */
	uint64_t eh_frame_hdr_size;
	const char *path;
	void *elf;		/* Elf * of the file, for .debug_frame fallbacks */
};
int symbols_module_at(struct symbols *s, uint64_t pc, struct symbols_module *out);

/* Internal to symbols/: call CB for every module of S with its libdwfl
 * handle (a Dwfl_Module *). 0, or -1 with symbols_errmsg() set. */
typedef int (*symbols_dwfl_cb)(void *arg, void *dwfl_module);
int symbols_foreach_dwfl(struct symbols *s, symbols_dwfl_cb cb, void *arg);

#endif
