/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_http.h: checks the HTTP targets share (fuzz_http_request.c,
 * fuzz_http_response.c, fuzz_chunked.c): a parsed head stays inside its
 * buffer and obeys the framing rules lib/http.h promises, written here a
 * second time, independently, so that the parser and the rule must agree.
 */
#ifndef FUZZ_HTTP_H
#define FUZZ_HTTP_H

#include "fuzz.h"
#include "../../lib/http.h"

#include <stdbool.h>
#include <strings.h>

static inline bool fz_inside(const char *p, const char *buf, size_t len)
{
    return p >= buf && p < buf + len;
}

/* The head h that parsed OK from buf[0..len): pointers, lengths, framing. */
static inline void fz_check_head(const struct pc_http_head *h, const char *buf, size_t len,
                                 bool response)
{
    FZ_CHECK(h->head_len > 0 && h->head_len <= len, "head_len %zu of %zu", h->head_len, len);
    FZ_CHECK(h->minor == 0 || h->minor == 1, "minor %d", h->minor);
    FZ_CHECK(h->nh <= PC_HTTP_MAX_HEADERS, "%zu headers", h->nh);
    if (!response) {
        FZ_CHECK(fz_inside(h->method, buf, h->head_len) && *h->method, "method");
        FZ_CHECK(fz_inside(h->target, buf, h->head_len) && *h->target, "target");
        for (const char *t = h->target; *t; t++)
            FZ_CHECK((unsigned char)*t > 0x20 && (unsigned char)*t < 0x7f, "target byte %02x",
                     (unsigned char)*t);
    } else {
        FZ_CHECK(h->status >= 100 && h->status <= 999, "status %d", h->status);
    }
    unsigned ncl = 0, nte = 0;
    uint64_t cl = 0;
    bool cl_differ = false;
    for (size_t i = 0; i < h->nh; i++) {
        const struct pc_http_header *f = &h->h[i];
        FZ_CHECK(fz_inside(f->name, buf, h->head_len) && strlen(f->name) == f->nlen && f->nlen,
                 "header %zu name", i);
        FZ_CHECK(f->value >= buf && f->value + f->vlen < buf + h->head_len &&
                     strlen(f->value) == f->vlen,
                 "header %zu value", i);
        for (size_t k = 0; k < f->nlen; k++)
            FZ_CHECK(f->name[k] > 0x20 && f->name[k] != ':' && f->name[k] < 0x7f, "name byte");
        for (size_t k = 0; k < f->vlen; k++) {
            unsigned char c = (unsigned char)f->value[k];
            FZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f), "value byte %02x", c);
        }
        if (f->vlen)
            FZ_CHECK(f->value[0] != ' ' && f->value[0] != '\t' && f->value[f->vlen - 1] != ' ' &&
                         f->value[f->vlen - 1] != '\t',
                     "value not trimmed");
        if (strcasecmp(f->name, "content-length") == 0) {
            uint64_t v = strtoull(f->value, NULL, 10);
            if (ncl && v != cl)
                cl_differ = true;
            cl = v;
            ncl++;
        }
        if (strcasecmp(f->name, "transfer-encoding") == 0)
            nte++;
    }
    /* no request smuggling: one framing, and only the one the headers say */
    FZ_CHECK(!cl_differ, "two different Content-Lengths accepted");
    FZ_CHECK(!(ncl && nte), "Content-Length with Transfer-Encoding accepted");
    FZ_CHECK(nte <= 1, "two Transfer-Encoding headers accepted");
    FZ_CHECK(!(nte && h->minor == 0), "Transfer-Encoding in HTTP/1.0 accepted");
    if (!response) {
        FZ_CHECK(h->framing != PC_HTTP_BODY_CLOSE, "a request read until close");
        if (nte)
            FZ_CHECK(h->framing == PC_HTTP_BODY_CHUNKED, "TE but framing %d", (int)h->framing);
        else if (ncl)
            FZ_CHECK(h->content_length == cl &&
                         h->framing == (cl ? PC_HTTP_BODY_LENGTH : PC_HTTP_BODY_NONE),
                     "Content-Length %llu read as %llu", (unsigned long long)cl,
                     (unsigned long long)h->content_length);
        else
            FZ_CHECK(h->framing == PC_HTTP_BODY_NONE, "no framing header but framing %d",
                     (int)h->framing);
    } else {
        bool bodiless = h->status < 200 || h->status == 204 || h->status == 304;
        if (bodiless)
            FZ_CHECK(h->framing == PC_HTTP_BODY_NONE, "status %d with a body", h->status);
        if (nte && h->framing != PC_HTTP_BODY_NONE)
            FZ_CHECK(h->framing == PC_HTTP_BODY_CHUNKED, "answer TE but framing %d",
                     (int)h->framing);
    }
}

/* Decodes a chunked body in[0..n) into out (n bytes). Returns the bytes
 * consumed (-1: refused) and sets *outn, *done. Feeds it in pieces whose
 * sizes come from seed (0: one call), as reads deliver it. */
static inline ssize_t fz_chunked(const char *in, size_t n, char *out, size_t *outn, bool *done,
                                 uint32_t seed)
{
    struct pc_chunked c;
    memset(&c, 0, sizeof c);
    size_t at = 0, o = 0;
    *done = false;
    while (at < n && !*done) {
        size_t piece = n - at;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            piece = 1 + (seed >> 16) % 7;
            if (piece > n - at)
                piece = n - at;
        }
        size_t got = 0;
        ssize_t k = pc_chunked_decode(&c, in + at, piece, out + o, &got, done);
        if (k < 0)
            return -1;
        FZ_CHECK((size_t)k <= piece && (*done || (size_t)k == piece), "consumed %zd of %zu", k,
                 piece);
        FZ_CHECK(got <= (size_t)k, "wrote %zu from %zd", got, k);
        at += (size_t)k;
        o += got;
    }
    *outn = o;
    return (ssize_t)at;
}

/* The one reading of a chunked body: whole, in pieces and in place agree. */
static inline void fz_check_chunked(const char *in, size_t n, uint32_t seed)
{
    char *a = malloc(n + 1), *b = malloc(n + 1), *c = malloc(n + 1);
    if (a == NULL || b == NULL || c == NULL)
        abort();
    size_t an = 0, bn = 0, cn = 0;
    bool ad, bd, cd;
    ssize_t ar = fz_chunked(in, n, a, &an, &ad, 0);
    ssize_t br = fz_chunked(in, n, b, &bn, &bd, seed | 1);
    /* in place, as the front decodes: the payload moves down over the framing */
    if (n)
        memcpy(c, in, n);
    struct pc_chunked st;
    memset(&st, 0, sizeof st);
    ssize_t cr = pc_chunked_decode(&st, c, n, c, &cn, &cd);
    FZ_CHECK(ar == br && (ar < 0 || (ad == bd && an == bn && memcmp(a, b, an) == 0)),
             "whole (%zd, done %d, %zu bytes) and pieces (%zd, done %d, %zu bytes) differ", ar,
             (int)ad, an, br, (int)bd, bn);
    FZ_CHECK(ar == cr && (ar < 0 || (ad == cd && an == cn && memcmp(a, c, an) == 0)),
             "copy (%zd, %zu bytes) and in place (%zd, %zu bytes) differ", ar, an, cr, cn);
    free(a);
    free(b);
    free(c);
}

#endif
