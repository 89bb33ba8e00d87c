/*
 * Darkroom tokenizer: zlib shim (Debian: zlib1g-dev).
 *
 * inflateInit2() is a function-like macro, which Swift cannot import, so the
 * whole gunzip loop lives in one static inline helper here. It accepts gzip
 * (and zlib) streams, including several concatenated gzip members.
 */
#ifndef DARKROOM_CZLIB_SHIM_H
#define DARKROOM_CZLIB_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum {
    DR_GZ_OK = 0,
    DR_GZ_ERR_CORRUPT = 1,   /* not a gzip/zlib stream, bad data or bad checksum */
    DR_GZ_ERR_TRUNCATED = 2, /* input ended before the stream did */
    DR_GZ_ERR_NOMEM = 3,     /* an allocation failed */
    DR_GZ_ERR_TOO_LARGE = 4  /* output would exceed max_out */
};

/* Decompresses `in` into a malloc'ed buffer (*out, *out_len); the caller frees
   *out with free() (also on error, where it may be NULL). */
static inline int dr_gunzip(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, 15 + 32) != Z_OK) return DR_GZ_ERR_NOMEM; /* 15+32: auto-detect gzip/zlib */
    size_t cap = in_len * 4 + 4096;
    if (cap > max_out) cap = max_out;
    uint8_t *buf = (uint8_t *)malloc(cap ? cap : 1);
    if (buf == NULL) {
        inflateEnd(&s);
        return DR_GZ_ERR_NOMEM;
    }
    size_t used = 0;
    size_t consumed = 0;
    int rc = DR_GZ_OK;
    for (;;) {
        if (used == cap) {
            if (cap >= max_out) {
                rc = DR_GZ_ERR_TOO_LARGE;
                break;
            }
            size_t ncap = cap > max_out / 2 ? max_out : cap * 2;
            uint8_t *grown = (uint8_t *)realloc(buf, ncap);
            if (grown == NULL) {
                rc = DR_GZ_ERR_NOMEM;
                break;
            }
            buf = grown;
            cap = ncap;
        }
        size_t in_chunk = in_len - consumed;
        if (in_chunk > 0x40000000u) in_chunk = 0x40000000u;
        size_t out_chunk = cap - used;
        if (out_chunk > 0x40000000u) out_chunk = 0x40000000u;
        s.next_in = (Bytef *)(uintptr_t)(in + consumed);
        s.avail_in = (uInt)in_chunk;
        s.next_out = buf + used;
        s.avail_out = (uInt)out_chunk;
        int z = inflate(&s, Z_NO_FLUSH);
        consumed += in_chunk - s.avail_in;
        used += out_chunk - s.avail_out;
        if (z == Z_STREAM_END) {
            /* Another gzip member may follow (as `cat a.gz b.gz` makes). */
            if (consumed < in_len && in[consumed] == 0x1f) {
                if (inflateReset(&s) != Z_OK) {
                    rc = DR_GZ_ERR_CORRUPT;
                    break;
                }
                continue;
            }
            break;
        }
        if (z == Z_BUF_ERROR) {
            if (s.avail_out == 0) continue; /* needs more room: grow and go on */
            rc = DR_GZ_ERR_TRUNCATED;       /* no progress possible: input exhausted */
            break;
        }
        if (z == Z_MEM_ERROR) {
            rc = DR_GZ_ERR_NOMEM;
            break;
        }
        if (z != Z_OK) {
            rc = DR_GZ_ERR_CORRUPT;
            break;
        }
        if (consumed == in_len && s.avail_out != 0) {
            rc = DR_GZ_ERR_TRUNCATED;
            break;
        }
    }
    inflateEnd(&s);
    if (rc != DR_GZ_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = used;
    return DR_GZ_OK;
}

#endif /* DARKROOM_CZLIB_SHIM_H */
