/*
 * Darkroom image I/O: libjpeg(-turbo) shim.
 *
 * libjpeg reports fatal errors through error_exit(), which must not return;
 * the standard answer is longjmp, which Swift cannot survive. Every libjpeg
 * call is made from one of the `static inline` helpers below; each one sets
 * its own setjmp on the jmp_buf inside the heap-allocated reader/writer, and
 * our error_exit()/emit_message() longjmp back there. The helper then returns
 * a DR_JPEG_* code and the formatted libjpeg message stays in the struct.
 *
 * Truncation: libjpeg only *warns* (JWRN_JPEG_EOF, "Premature end of JPEG
 * file") when the data runs out, then pads with a fake EOI and returns a
 * partly grey image. emit_message() turns that warning into a hard error.
 *
 * Rules followed (C's setjmp rules): no local variable modified after setjmp
 * is read after the longjmp; all surviving state is in the struct, and all
 * allocations belong either to libjpeg's pools (freed by jpeg_destroy_*) or
 * to the struct (freed by *_destroy()).
 */
#ifndef DARKROOM_CJPEG_SHIM_H
#define DARKROOM_CJPEG_SHIM_H

#include <stdio.h> /* jpeglib.h needs FILE and size_t */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

enum {
    DR_JPEG_OK = 0,
    DR_JPEG_ERR_CORRUPT = 1,     /* libjpeg fatal error on malformed data */
    DR_JPEG_ERR_TRUNCATED = 2,   /* data ended early (JWRN_JPEG_EOF / empty input) */
    DR_JPEG_ERR_NOMEM = 3,       /* libjpeg or we ran out of memory */
    DR_JPEG_ERR_RANGE = 4,       /* encoder: sample > 255 */
    DR_JPEG_ERR_USAGE = 5,       /* bad arguments from Swift (should not happen) */
    DR_JPEG_ERR_UNSUPPORTED = 6, /* valid JPEG that this build cannot decode (12-bit, odd colour space) */
    DR_JPEG_ERR_ZERO_DIMS = 7,   /* SOF with width or height 0 */
    DR_JPEG_ERR_TOO_BIG = 8      /* dimension above libjpeg's 65500 maximum */
};

/* Progressive JPEGs can carry thousands of tiny scans that each cost a full
   pass over the coefficients (a CPU bomb). Real encoders write ~10. */
#define DR_JPEG_MAX_SCANS 1000

typedef struct dr_jpeg_error_mgr {
    struct jpeg_error_mgr pub; /* must stay first: libjpeg casts to it */
    jmp_buf jmp;
    int code;
    char message[JMSG_LENGTH_MAX];
} dr_jpeg_error_mgr;

static inline int dr_jpeg_classify(int msg_code) {
    switch (msg_code) {
    case JERR_OUT_OF_MEMORY: return DR_JPEG_ERR_NOMEM;
    case JERR_INPUT_EMPTY:
    case JERR_INPUT_EOF: return DR_JPEG_ERR_TRUNCATED;
    case JERR_EMPTY_IMAGE: return DR_JPEG_ERR_ZERO_DIMS;
    case JERR_IMAGE_TOO_BIG:
    case JERR_WIDTH_OVERFLOW: return DR_JPEG_ERR_TOO_BIG;
    case JERR_BAD_PRECISION:
    case JERR_BAD_IN_COLORSPACE:
    case JERR_CONVERSION_NOTIMPL:
    case JERR_NOT_COMPILED:
    case JERR_ARITH_NOTIMPL:
    case JERR_NOTIMPL: return DR_JPEG_ERR_UNSUPPORTED;
    default: return DR_JPEG_ERR_CORRUPT;
    }
}

static inline void dr_jpeg_error_exit(j_common_ptr cinfo) {
    dr_jpeg_error_mgr *e = (dr_jpeg_error_mgr *)(void *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    e->code = dr_jpeg_classify(cinfo->err->msg_code);
    longjmp(e->jmp, 1);
}

static inline void dr_jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
    dr_jpeg_error_mgr *e = (dr_jpeg_error_mgr *)(void *)cinfo->err;
    if (msg_level >= 0) return; /* trace messages */
    cinfo->err->num_warnings++;
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
        /* "Premature end of JPEG file": the file is truncated. */
        (*cinfo->err->format_message)(cinfo, e->message);
        e->code = DR_JPEG_ERR_TRUNCATED;
        longjmp(e->jmp, 1);
    }
    /* Other warnings (extraneous bytes before a marker, a bad restart marker
       that libjpeg resynchronised on, ...) are tolerated as other decoders do. */
}

static inline void dr_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; /* never print */ }

static inline void dr_jpeg_progress(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > DR_JPEG_MAX_SCANS) {
        dr_jpeg_error_mgr *e = (dr_jpeg_error_mgr *)(void *)cinfo->err;
        snprintf(e->message, sizeof e->message, "more than %d scans (decompression-time bomb)", DR_JPEG_MAX_SCANS);
        e->code = DR_JPEG_ERR_CORRUPT;
        longjmp(e->jmp, 1);
    }
}

static inline void dr_jpeg_install_errors(dr_jpeg_error_mgr *e) {
    jpeg_std_error(&e->pub);
    e->pub.error_exit = dr_jpeg_error_exit;
    e->pub.emit_message = dr_jpeg_emit_message;
    e->pub.output_message = dr_jpeg_output_message;
}

/* ------------------------------------------------------------------ read */

typedef struct dr_jpeg_header {
    uint32_t width;
    uint32_t height;
    int components;    /* in the file */
    int color_space;   /* J_COLOR_SPACE libjpeg detected (JCS_GRAYSCALE, JCS_YCbCr, ...) */
    int saw_adobe;     /* APP14 Adobe marker present */
    int adobe_transform;
    int data_precision;
    int out_channels;  /* what dr_jpeg_decode will produce: 1 (gray), 3 (RGB, also from CMYK/YCCK), 0 = unsupported */
} dr_jpeg_header;

typedef struct dr_jpeg_reader {
    struct jpeg_decompress_struct cinfo;
    dr_jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    uint8_t *exif; /* copy of the first APP1 "Exif\0\0" payload (owned here) */
    size_t exif_len;
} dr_jpeg_reader;

static inline dr_jpeg_reader *dr_jpeg_reader_create(void) {
    dr_jpeg_reader *r = (dr_jpeg_reader *)calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    dr_jpeg_install_errors(&r->err);
    r->cinfo.err = &r->err.pub;
    return r;
}

static inline void dr_jpeg_reader_destroy(dr_jpeg_reader *r) {
    if (r == NULL) return;
    jpeg_destroy_decompress(&r->cinfo); /* safe on a never-created (zeroed) struct */
    free(r->exif);
    free(r);
}

static inline const char *dr_jpeg_reader_message(const dr_jpeg_reader *r) { return r->err.message; }
static inline const uint8_t *dr_jpeg_reader_exif(const dr_jpeg_reader *r) { return r->exif; }
static inline size_t dr_jpeg_reader_exif_len(const dr_jpeg_reader *r) { return r->exif_len; }
/* Dimensions as far as libjpeg parsed them (for ZERO_DIMS / TOO_BIG messages). */
static inline uint32_t dr_jpeg_reader_width(const dr_jpeg_reader *r) { return (uint32_t)r->cinfo.image_width; }
static inline uint32_t dr_jpeg_reader_height(const dr_jpeg_reader *r) { return (uint32_t)r->cinfo.image_height; }

/* Parses markers up to the first SOS. Allocates nothing image-sized.
   `data` must outlive the reader. */
static inline int dr_jpeg_read_header(dr_jpeg_reader *r, const uint8_t *data, size_t size, dr_jpeg_header *hdr) {
    if (setjmp(r->err.jmp)) return r->err.code;
    jpeg_create_decompress(&r->cinfo);
    r->progress.progress_monitor = dr_jpeg_progress;
    r->cinfo.progress = &r->progress;
    jpeg_mem_src(&r->cinfo, (const unsigned char *)data, (unsigned long)size);
    jpeg_save_markers(&r->cinfo, JPEG_APP0 + 1, 0xFFFF);
    (void)jpeg_read_header(&r->cinfo, TRUE);
    for (jpeg_saved_marker_ptr m = r->cinfo.marker_list; m != NULL; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            /* Saved markers live in libjpeg's image pool, which
               jpeg_finish_decompress frees: keep our own copy. */
            r->exif = (uint8_t *)malloc(m->data_length);
            if (r->exif != NULL) {
                memcpy(r->exif, m->data, m->data_length);
                r->exif_len = m->data_length;
            }
            break;
        }
    }
    hdr->width = (uint32_t)r->cinfo.image_width;
    hdr->height = (uint32_t)r->cinfo.image_height;
    hdr->components = r->cinfo.num_components;
    hdr->color_space = (int)r->cinfo.jpeg_color_space;
    hdr->saw_adobe = r->cinfo.saw_Adobe_marker ? 1 : 0;
    hdr->adobe_transform = r->cinfo.Adobe_transform;
    hdr->data_precision = r->cinfo.data_precision;
    switch (r->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: hdr->out_channels = 1; break;
    case JCS_YCbCr:
    case JCS_RGB:
    case JCS_CMYK:
    case JCS_YCCK: hdr->out_channels = 3; break;
    default: hdr->out_channels = 0; break;
    }
    return DR_JPEG_OK;
}

/* Decodes into `out` (width*height*out_channels uint16_t, values 0...255),
   row by row via a small strip buffer from libjpeg's pool.
   out_channels 1: grayscale JPEG. out_channels 3: YCbCr/RGB JPEG, or
   CMYK/YCCK JPEG converted to RGB assuming Adobe (Photoshop) inverted CMYK,
   with exactly PIL's "CMYK;I" unpack + cmyk2rgb arithmetic:
       k' = stored K, R = k' - MULDIV255(255 - stored C, k')   (same for G, B)
   which equals stored C * stored K / 255 up to rounding. */
static inline int dr_jpeg_decode(dr_jpeg_reader *r, uint16_t *out, int out_channels) {
    if (setjmp(r->err.jmp)) return r->err.code;
    j_decompress_ptr c = &r->cinfo;
    int cmyk = 0;
    switch (c->jpeg_color_space) {
    case JCS_GRAYSCALE:
        if (out_channels != 1) goto usage;
        c->out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        if (out_channels != 3) goto usage;
        c->out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        if (out_channels != 3) goto usage;
        c->out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        snprintf(r->err.message, sizeof r->err.message, "unsupported JPEG colour space %d with %d components",
                 (int)c->jpeg_color_space, c->num_components);
        return DR_JPEG_ERR_UNSUPPORTED;
    }
    c->dct_method = JDCT_ISLOW; /* libjpeg's (and PIL's) default, accurate */
    (void)jpeg_start_decompress(c);
    if (c->output_components != (cmyk ? 4 : out_channels)) {
        snprintf(r->err.message, sizeof r->err.message, "unexpected component count %d", c->output_components);
        return DR_JPEG_ERR_UNSUPPORTED;
    }
    {
        const JDIMENSION w = c->output_width;
        const int comps = c->output_components;
        const size_t out_stride = (size_t)w * (size_t)out_channels;
        const int strip = c->rec_outbuf_height > 0 ? c->rec_outbuf_height : 1;
        JSAMPARRAY buf = (*c->mem->alloc_sarray)((j_common_ptr)c, JPOOL_IMAGE, w * (JDIMENSION)comps, (JDIMENSION)strip);
        while (c->output_scanline < c->output_height) {
            const JDIMENSION y0 = c->output_scanline;
            const JDIMENSION n = jpeg_read_scanlines(c, buf, (JDIMENSION)strip);
            if (n == 0) { /* cannot happen with a memory source; avoid spinning */
                snprintf(r->err.message, sizeof r->err.message, "decoder made no progress at row %u", (unsigned)y0);
                return DR_JPEG_ERR_CORRUPT;
            }
            for (JDIMENSION k = 0; k < n; k++) {
                const JSAMPLE *s = buf[k];
                uint16_t *d = out + (size_t)(y0 + k) * out_stride;
                if (cmyk) {
                    for (JDIMENSION x = 0; x < w; x++, s += 4, d += 3) {
                        const int nk = s[3];
                        for (int ch = 0; ch < 3; ch++) {
                            int t = (255 - s[ch]) * nk + 128;
                            int v = nk - (((t >> 8) + t) >> 8);
                            d[ch] = (uint16_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
                        }
                    }
                } else {
                    for (size_t i = 0; i < out_stride; i++) d[i] = s[i];
                }
            }
        }
    }
    (void)jpeg_finish_decompress(c); /* reads up to EOI: catches truncation after the last scan */
    return DR_JPEG_OK;
usage:
    snprintf(r->err.message, sizeof r->err.message, "output channel count %d does not match colour space", out_channels);
    return DR_JPEG_ERR_USAGE;
}

/* ----------------------------------------------------------------- write */

typedef struct dr_jpeg_writer {
    struct jpeg_compress_struct cinfo;
    dr_jpeg_error_mgr err;
    unsigned char *buf; /* malloc'd by jpeg_mem_dest; owned here */
    unsigned long size;
} dr_jpeg_writer;

static inline dr_jpeg_writer *dr_jpeg_writer_create(void) {
    dr_jpeg_writer *w = (dr_jpeg_writer *)calloc(1, sizeof *w);
    if (w == NULL) return NULL;
    dr_jpeg_install_errors(&w->err);
    w->cinfo.err = &w->err.pub;
    return w;
}

static inline void dr_jpeg_writer_destroy(dr_jpeg_writer *w) {
    if (w == NULL) return;
    jpeg_destroy_compress(&w->cinfo);
    free(w->buf);
    free(w);
}

static inline const char *dr_jpeg_writer_message(const dr_jpeg_writer *w) { return w->err.message; }
static inline const uint8_t *dr_jpeg_writer_bytes(const dr_jpeg_writer *w) { return w->buf; }
static inline size_t dr_jpeg_writer_size(const dr_jpeg_writer *w) { return (size_t)w->size; }

/* Baseline JPEG with libjpeg's defaults (JFIF, 4:2:0 chroma subsampling for
   RGB, islow DCT) at `quality` 1...100. channels 1 (gray) or 3 (RGB);
   every sample must be <= 255. */
static inline int dr_jpeg_writer_encode(dr_jpeg_writer *w, const uint16_t *samples, uint32_t width, uint32_t height,
                                        int channels, int quality) {
    if (setjmp(w->err.jmp)) return w->err.code;
    if ((channels != 1 && channels != 3) || quality < 1 || quality > 100) {
        snprintf(w->err.message, sizeof w->err.message, "bad channels %d or quality %d", channels, quality);
        return DR_JPEG_ERR_USAGE;
    }
    jpeg_create_compress(&w->cinfo);
    jpeg_mem_dest(&w->cinfo, &w->buf, &w->size);
    w->cinfo.image_width = width;
    w->cinfo.image_height = height;
    w->cinfo.input_components = channels;
    w->cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&w->cinfo);
    jpeg_set_quality(&w->cinfo, quality, TRUE);
    jpeg_start_compress(&w->cinfo, TRUE);
    {
        const size_t row_samples = (size_t)width * (size_t)channels;
        JSAMPARRAY row = (*w->cinfo.mem->alloc_sarray)((j_common_ptr)&w->cinfo, JPOOL_IMAGE, (JDIMENSION)row_samples, 1);
        while (w->cinfo.next_scanline < w->cinfo.image_height) {
            const JDIMENSION y = w->cinfo.next_scanline;
            const uint16_t *src = samples + (size_t)y * row_samples;
            for (size_t i = 0; i < row_samples; i++) {
                if (src[i] > 255) {
                    snprintf(w->err.message, sizeof w->err.message,
                             "sample value %u at row %u exceeds 255 in an 8-bit image", (unsigned)src[i], (unsigned)y);
                    w->err.code = DR_JPEG_ERR_RANGE;
                    longjmp(w->err.jmp, 1);
                }
                row[0][i] = (JSAMPLE)src[i];
            }
            (void)jpeg_write_scanlines(&w->cinfo, row, 1);
        }
    }
    jpeg_finish_compress(&w->cinfo);
    return DR_JPEG_OK;
}

#endif /* DARKROOM_CJPEG_SHIM_H */
