#ifndef PTLEAK_PB_H
#define PTLEAK_PB_H
/*
 * pb: the few protocol buffer encodings a profile needs (varints,
 * length-delimited fields, packed repeated integers) into a growable
 * buffer, and gzip of the result. Out of memory aborts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct pb {
	uint8_t *p;
	size_t n, cap;
};

void pb_reset(struct pb *b);		/* empty, keeps the memory */
void pb_free(struct pb *b);
/* Field FIELD as a varint (wire type 0); zero is the default, omitted. */
void pb_uint(struct pb *b, unsigned field, uint64_t v);
void pb_int(struct pb *b, unsigned field, int64_t v);	/* two's complement */
/* Field FIELD, length-delimited (wire type 2): bytes, a string, a message. */
void pb_bytes(struct pb *b, unsigned field, const void *data, size_t len);
void pb_msg(struct pb *b, unsigned field, const struct pb *sub);
/* The fields encoded in SUB, appended as they are. */
void pb_append(struct pb *b, const struct pb *sub);
/* Repeated integers, packed. Nothing when N == 0. */
void pb_packed(struct pb *b, unsigned field, const uint64_t *v, size_t n);

/* Write DATA[0..N) gzip-compressed to F. 0, or -1 (zlib failed; the
 * caller's stream error is checked by its closer). */
int pb_gzip(FILE *f, const void *data, size_t n);

#endif
