/* pb: protocol buffer wire format (varint and length-delimited only). */
#include "tracer/pb.h"

#include <stdlib.h>
#include <string.h>
#define ZLIB_CONST
#include <zlib.h>

#include "tracer/util.h"

static void reserve(struct pb *b, size_t more)
{
	if (b->n + more <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->n + more)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

void pb_reset(struct pb *b)
{
	b->n = 0;
}

void pb_free(struct pb *b)
{
	free(b->p);
	*b = (struct pb){ 0 };
}

static void varint(struct pb *b, uint64_t v)
{
	reserve(b, 10);
	while (v >= 0x80) {
		b->p[b->n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b->p[b->n++] = (uint8_t)v;
}

void pb_uint(struct pb *b, unsigned field, uint64_t v)
{
	if (!v)
		return;
	varint(b, (uint64_t)field << 3);
	varint(b, v);
}

void pb_int(struct pb *b, unsigned field, int64_t v)
{
	pb_uint(b, field, (uint64_t)v);
}

void pb_bytes(struct pb *b, unsigned field, const void *data, size_t len)
{
	varint(b, (uint64_t)field << 3 | 2);
	varint(b, len);
	reserve(b, len);
	if (len)
		memcpy(b->p + b->n, data, len);
	b->n += len;
}

void pb_msg(struct pb *b, unsigned field, const struct pb *sub)
{
	pb_bytes(b, field, sub->p, sub->n);
}

void pb_append(struct pb *b, const struct pb *sub)
{
	reserve(b, sub->n);
	if (sub->n)
		memcpy(b->p + b->n, sub->p, sub->n);
	b->n += sub->n;
}

void pb_packed(struct pb *b, unsigned field, const uint64_t *v, size_t n)
{
	size_t len = 0;

	if (!n)
		return;
	for (size_t i = 0; i < n; i++) {
		uint64_t x = v[i];
		do {
			len++;
			x >>= 7;
		} while (x);
	}
	varint(b, (uint64_t)field << 3 | 2);
	varint(b, len);
	for (size_t i = 0; i < n; i++)
		varint(b, v[i]);
}

int pb_gzip(FILE *f, const void *data, size_t n)
{
	z_stream z = { 0 };
	unsigned char out[65536];
	int rc;

	/* windowBits 15 + 16: a gzip header and trailer, as pprof reads. */
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	z.next_in = data;
	z.avail_in = (uInt)n;	/* profiles stay far below 4 GiB */
	do {
		z.next_out = out;
		z.avail_out = sizeof(out);
		rc = deflate(&z, Z_FINISH);
		if (rc == Z_STREAM_ERROR)
			break;
		fwrite(out, 1, sizeof(out) - z.avail_out, f);
	} while (rc != Z_STREAM_END);
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : -1;
}
