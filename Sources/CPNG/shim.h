/*
 * Darkroom image I/O: libpng shim.
 *
 * libpng reports errors with longjmp, which Swift cannot survive. Every
 * libpng call that can fail is made from one of the `static inline` helpers
 * below; each helper establishes its own setjmp (via png_jmpbuf) before
 * touching libpng and turns a longjmp into a DR_PNG_* return code plus a
 * message kept in the reader/writer struct. Swift never sees a longjmp.
 *
 * Rules followed in every helper (C's setjmp rules): no local variable that
 * is modified after setjmp is read after the longjmp returns; all state that
 * must survive lives in the heap-allocated reader/writer struct, and every
 * allocation is owned by that struct so *_destroy() frees it on any path.
 */
#ifndef DARKROOM_CPNG_SHIM_H
#define DARKROOM_CPNG_SHIM_H

#include <png.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DR_PNG_OK = 0,
    DR_PNG_ERR_CORRUPT = 1,   /* libpng error: bad CRC, bad zlib stream, bad IHDR ... */
    DR_PNG_ERR_TRUNCATED = 2, /* input ended before libpng had what it needed */
    DR_PNG_ERR_NOMEM = 3,     /* an allocation failed */
    DR_PNG_ERR_RANGE = 4,     /* encoder: a sample does not fit the bit depth */
    DR_PNG_ERR_USAGE = 5      /* bad arguments from Swift (should not happen) */
};

#define DR_PNG_MSG_LEN 256

/* Shared by reader and writer; libpng's error_ptr points here. */
typedef struct dr_png_err {
    char message[DR_PNG_MSG_LEN];
    int truncated; /* set by the read callback before png_error() */
    int nomem;     /* set by the write callback / our own allocations */
    int range;     /* set by the encoder's sample check */
} dr_png_err;

static inline void dr_png_set_message(dr_png_err *e, const char *msg) {
    if (e == NULL) return;
    snprintf(e->message, sizeof e->message, "%s", msg != NULL ? msg : "unknown libpng error");
}

static inline int dr_png_code(const dr_png_err *e) {
    if (e->truncated) return DR_PNG_ERR_TRUNCATED;
    if (e->nomem) return DR_PNG_ERR_NOMEM;
    if (e->range) return DR_PNG_ERR_RANGE;
    return DR_PNG_ERR_CORRUPT;
}

static inline void dr_png_error_fn(png_structp png, png_const_charp msg) {
    dr_png_err *e = (dr_png_err *)png_get_error_ptr(png);
    /* Our own callbacks set the message before calling png_error(); keep it. */
    if (e != NULL && !(e->truncated || e->nomem || e->range)) dr_png_set_message(e, msg);
    png_longjmp(png, 1);
}

static inline void dr_png_warning_fn(png_structp png, png_const_charp msg) {
    /* Warnings (bad ancillary-chunk CRC, odd iCCP profiles, ...) are ignored:
       libpng has already dropped the offending chunk. Never print to stderr. */
    (void)png;
    (void)msg;
}

static inline int dr_png_host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* ------------------------------------------------------------------ read */

typedef struct dr_png_reader {
    dr_png_err err; /* must stay first */
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t size;
    size_t pos;
    png_bytepp rows; /* row pointers into the caller's buffer (owned here) */
    /* Raw IHDR, filled by dr_png_read_header. */
    uint32_t width;
    uint32_t height;
    int bit_depth;
    int color_type;
    int interlace;
    /* Output format after the expand transforms, filled by dr_png_prepare. */
    int out_channels;
    int out_bit_depth;
    size_t out_rowbytes;
} dr_png_reader;

static inline void dr_png_read_fn(png_structp png, png_bytep out, size_t len) {
    dr_png_reader *r = (dr_png_reader *)png_get_io_ptr(png);
    if (r == NULL || len > r->size - r->pos) {
        if (r != NULL) {
            r->err.truncated = 1;
            dr_png_set_message(&r->err, "unexpected end of file");
        }
        png_error(png, "unexpected end of file");
    }
    memcpy(out, r->data + r->pos, len);
    r->pos += len;
}

/* Returns NULL only when memory is exhausted. `data` must outlive the reader. */
static inline dr_png_reader *dr_png_reader_create(const uint8_t *data, size_t size) {
    dr_png_reader *r = (dr_png_reader *)calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->data = data;
    r->size = size;
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r->err, dr_png_error_fn, dr_png_warning_fn);
    if (r->png == NULL) {
        free(r);
        return NULL;
    }
    r->info = png_create_info_struct(r->png);
    if (r->info == NULL) {
        png_destroy_read_struct(&r->png, NULL, NULL);
        free(r);
        return NULL;
    }
    png_set_read_fn(r->png, r, dr_png_read_fn);
    return r;
}

static inline void dr_png_reader_destroy(dr_png_reader *r) {
    if (r == NULL) return;
    png_destroy_read_struct(&r->png, &r->info, NULL);
    free(r->rows);
    free(r);
}

static inline const char *dr_png_reader_message(const dr_png_reader *r) {
    return r->err.message;
}

/* Reads the signature and every chunk up to the first IDAT; fills the raw
   IHDR fields. Allocates nothing proportional to the image size. */
static inline int dr_png_read_header(dr_png_reader *r) {
    if (setjmp(png_jmpbuf(r->png))) return dr_png_code(&r->err);
    /* The caller enforces its own pixel-count limit (DecodeLimits) from the
       IHDR before decoding, so lift libpng's fixed 1,000,000 px/side limit
       to the format maximum; otherwise a wide-but-small image would be
       reported as corrupt. Text/zTXt decompression stays capped at 8 MB. */
    png_set_user_limits(r->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_chunk_malloc_max(r->png, 8000000);
    png_read_info(r->png, r->info);
    r->width = png_get_image_width(r->png, r->info);
    r->height = png_get_image_height(r->png, r->info);
    r->bit_depth = png_get_bit_depth(r->png, r->info);
    r->color_type = png_get_color_type(r->png, r->info);
    r->interlace = png_get_interlace_type(r->png, r->info);
    return DR_PNG_OK;
}

/* Sets up: palette -> RGB, gray 1/2/4 -> 8 bit, tRNS -> alpha, 16-bit in
   host byte order, Adam7 de-interlacing. Then reports the output format. */
static inline int dr_png_prepare(dr_png_reader *r) {
    if (setjmp(png_jmpbuf(r->png))) return dr_png_code(&r->err);
    if (r->color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(r->png);
    if (r->color_type == PNG_COLOR_TYPE_GRAY && r->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(r->png);
    if (png_get_valid(r->png, r->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(r->png);
    if (r->bit_depth == 16 && dr_png_host_is_little_endian()) png_set_swap(r->png);
    (void)png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);
    r->out_channels = png_get_channels(r->png, r->info);
    r->out_bit_depth = png_get_bit_depth(r->png, r->info);
    r->out_rowbytes = png_get_rowbytes(r->png, r->info);
    return DR_PNG_OK;
}

/* Decodes the whole image straight into `out`, which must hold
   width*height*out_channels uint16_t. 16-bit rows land in place (host order);
   8-bit rows are written into the first half of their own output row and
   widened in place, back to front, so no second image buffer is needed.
   Then reads the chunks after IDAT (late tEXt/zTXt/iTXt) up to IEND. */
static inline int dr_png_read_pixels(dr_png_reader *r, uint16_t *out) {
    if (setjmp(png_jmpbuf(r->png))) return dr_png_code(&r->err);
    size_t samples_per_row = (size_t)r->width * (size_t)r->out_channels;
    size_t stride = samples_per_row * sizeof(uint16_t);
    if (r->out_rowbytes != samples_per_row * (size_t)(r->out_bit_depth / 8)) {
        dr_png_set_message(&r->err, "unexpected row size after transforms");
        return DR_PNG_ERR_USAGE;
    }
    free(r->rows);
    r->rows = (png_bytepp)malloc((size_t)r->height * sizeof(png_bytep));
    if (r->rows == NULL) {
        dr_png_set_message(&r->err, "out of memory for row pointers");
        return DR_PNG_ERR_NOMEM;
    }
    for (uint32_t y = 0; y < r->height; y++) r->rows[y] = (png_bytep)out + (size_t)y * stride;
    png_read_image(r->png, r->rows);
    if (r->out_bit_depth == 8) {
        for (uint32_t y = 0; y < r->height; y++) {
            const uint8_t *src = (const uint8_t *)r->rows[y];
            uint16_t *dst = (uint16_t *)(void *)r->rows[y];
            for (size_t i = samples_per_row; i-- > 0;) dst[i] = src[i];
        }
    }
    png_read_end(r->png, r->info);
    return DR_PNG_OK;
}

/* Text chunks collected so far (tEXt, zTXt, iTXt; before and after IDAT).
   Valid until the reader is destroyed. Cannot longjmp. */
static inline int dr_png_get_text(dr_png_reader *r, png_textp *out) {
    int n = 0;
    *out = NULL;
    png_get_text(r->png, r->info, out, &n);
    return n;
}

/* ----------------------------------------------------------------- write */

typedef struct dr_png_writer {
    dr_png_err err; /* must stay first */
    png_structp png;
    png_infop info;
    uint8_t *out;
    size_t out_size;
    size_t out_cap;
    uint8_t *row; /* 8-bit narrowing buffer (owned here) */
} dr_png_writer;

static inline void dr_png_write_fn(png_structp png, png_bytep data, size_t len) {
    dr_png_writer *w = (dr_png_writer *)png_get_io_ptr(png);
    if (len > w->out_cap - w->out_size) {
        size_t cap = w->out_cap ? w->out_cap : 65536;
        while (cap - w->out_size < len) {
            if (cap > SIZE_MAX / 2) {
                cap = 0;
                break;
            }
            cap *= 2;
        }
        uint8_t *grown = cap ? (uint8_t *)realloc(w->out, cap) : NULL;
        if (grown == NULL) {
            w->err.nomem = 1;
            dr_png_set_message(&w->err, "out of memory while writing PNG");
            png_error(png, "out of memory");
        }
        w->out = grown;
        w->out_cap = cap;
    }
    memcpy(w->out + w->out_size, data, len);
    w->out_size += len;
}

static inline void dr_png_flush_fn(png_structp png) { (void)png; }

static inline dr_png_writer *dr_png_writer_create(void) {
    dr_png_writer *w = (dr_png_writer *)calloc(1, sizeof *w);
    if (w == NULL) return NULL;
    w->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w->err, dr_png_error_fn, dr_png_warning_fn);
    if (w->png == NULL) {
        free(w);
        return NULL;
    }
    w->info = png_create_info_struct(w->png);
    if (w->info == NULL) {
        png_destroy_write_struct(&w->png, NULL);
        free(w);
        return NULL;
    }
    png_set_write_fn(w->png, w, dr_png_write_fn, dr_png_flush_fn);
    return w;
}

static inline void dr_png_writer_destroy(dr_png_writer *w) {
    if (w == NULL) return;
    png_destroy_write_struct(&w->png, &w->info);
    free(w->out);
    free(w->row);
    free(w);
}

static inline const char *dr_png_writer_message(const dr_png_writer *w) { return w->err.message; }
static inline const uint8_t *dr_png_writer_bytes(const dr_png_writer *w) { return w->out; }
static inline size_t dr_png_writer_size(const dr_png_writer *w) { return w->out_size; }

/* Queues one text chunk (written before IDAT). key: NUL-terminated Latin-1,
   1-79 bytes. text: NUL-terminated, Latin-1 for tEXt (itxt == 0) or UTF-8
   for uncompressed iTXt (itxt != 0, empty language tag and translated
   keyword, as PIL's PngInfo.add_itxt writes it). libpng copies both. */
static inline int dr_png_writer_add_text(dr_png_writer *w, const char *key, const char *text, int itxt) {
    if (setjmp(png_jmpbuf(w->png))) return dr_png_code(&w->err);
    png_text t;
    memset(&t, 0, sizeof t);
    t.compression = itxt ? PNG_ITXT_COMPRESSION_NONE : PNG_TEXT_COMPRESSION_NONE;
    t.key = (png_charp)key;
    t.text = (png_charp)text;
    t.text_length = strlen(text);
    t.lang = NULL;
    t.lang_key = NULL;
    png_set_text(w->png, w->info, &t, 1);
    return DR_PNG_OK;
}

/* Writes a complete non-interlaced PNG of `samples` (interleaved, row-major,
   width*height*channels values). channels 1..4 = gray, gray+alpha, RGB, RGBA;
   bit_depth 8 (every sample must be <= 255) or 16. */
static inline int dr_png_writer_write(dr_png_writer *w, const uint16_t *samples, uint32_t width, uint32_t height,
                                      int channels, int bit_depth) {
    if (setjmp(png_jmpbuf(w->png))) return dr_png_code(&w->err);
    int color_type;
    switch (channels) {
    case 1: color_type = PNG_COLOR_TYPE_GRAY; break;
    case 2: color_type = PNG_COLOR_TYPE_GRAY_ALPHA; break;
    case 3: color_type = PNG_COLOR_TYPE_RGB; break;
    case 4: color_type = PNG_COLOR_TYPE_RGB_ALPHA; break;
    default:
        dr_png_set_message(&w->err, "channel count must be 1...4");
        return DR_PNG_ERR_USAGE;
    }
    if (bit_depth != 8 && bit_depth != 16) {
        dr_png_set_message(&w->err, "bit depth must be 8 or 16");
        return DR_PNG_ERR_USAGE;
    }
    size_t samples_per_row = (size_t)width * (size_t)channels;
    if (bit_depth == 8) {
        free(w->row);
        w->row = (uint8_t *)malloc(samples_per_row);
        if (w->row == NULL) {
            dr_png_set_message(&w->err, "out of memory for a PNG row");
            return DR_PNG_ERR_NOMEM;
        }
    }
    png_set_IHDR(w->png, w->info, width, height, bit_depth, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(w->png, w->info);
    if (bit_depth == 16 && dr_png_host_is_little_endian()) png_set_swap(w->png);
    for (uint32_t y = 0; y < height; y++) {
        const uint16_t *src = samples + (size_t)y * samples_per_row;
        if (bit_depth == 8) {
            for (size_t i = 0; i < samples_per_row; i++) {
                uint16_t v = src[i];
                if (v > 255) {
                    w->err.range = 1;
                    snprintf(w->err.message, sizeof w->err.message,
                             "sample value %u at row %u exceeds 255 in an 8-bit image", (unsigned)v, (unsigned)y);
                    png_error(w->png, "sample out of range");
                }
                w->row[i] = (uint8_t)v;
            }
            png_write_row(w->png, w->row);
        } else {
            /* libpng copies the row before applying the byte swap. */
            png_write_row(w->png, (png_const_bytep)(const void *)src);
        }
    }
    png_write_end(w->png, NULL);
    return DR_PNG_OK;
}

#endif /* DARKROOM_CPNG_SHIM_H */
