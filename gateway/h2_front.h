/* Portcullis - MIT licence. See LICENSE.
 *
 * h2_front.h: HTTP/2 on a TLS connection whose ALPN chose "h2" (h2_front.c,
 * with nghttp2). Included by front.c only.
 *
 * Ownership: front.c owns the connection (socket, TLS, output buffer, its
 * life and its reaping); h2_front.c owns the nghttp2 session and one
 * struct gw_h2_stream per stream, and makes each stream a gw_request that
 * goes through the same stages as an HTTP/1.1 one. A request's answer comes
 * back through request.h's response writer, which front.c hands to the
 * gw_h2_* functions below when r->h2s is set. Everything runs on the
 * connection's worker loop.
 */
#ifndef GW_H2_FRONT_H
#define GW_H2_FRONT_H

#include "types.h"
#include "request.h"

struct gw_h2;
struct pc_buf;

/* ---- front.c -> h2_front.c: the connection ---- */

/** A session for connection c of worker w (peer address ip), its SETTINGS
 * queued. */
struct gw_h2 *gw_h2_new(struct gw_client *c, struct gw_worker *w, const char *ip);
/** Bytes read from the connection, fed to the session; streams whose head
 * is whole start as requests. False: the session is over (a GOAWAY may be
 * queued): write what is queued, then close. */
bool gw_h2_recv(struct gw_h2 *h, const uint8_t *data, size_t n);
/** Appends the frames the session has to send to out while out holds fewer
 * than limit unwritten bytes (pending). False: the session has nothing
 * more to read or write (closed by either side). */
bool gw_h2_pump(struct gw_h2 *h, struct pc_buf *out, size_t pending, size_t limit);
/** The output was all written: streamed answers that waited go on. */
void gw_h2_drained(struct gw_h2 *h);
/** Resets (CANCEL) every running stream whose request body the peer owes
 * since before since_us (monotonic): the body stopped coming while the
 * connection stays busy with other frames. True when one was reset (the
 * caller writes). */
bool gw_h2_reset_stalled(struct gw_h2 *h, int64_t since_us);
/** Streams whose request still runs (the connection stays until none). */
size_t gw_h2_running(const struct gw_h2 *h);
/** Draining: a GOAWAY (once); running streams finish, no new one starts. */
void gw_h2_goaway(struct gw_h2 *h);
/** The connection closed: every running request is told its client left. */
void gw_h2_conn_closed(struct gw_h2 *h);
/** Frees the session and every stream (none may still run). */
void gw_h2_free(struct gw_h2 *h);

/* ---- request.h's response writer and streamed body, for r->h2s ---- */

struct pc_buf *gw_h2_resp_begin(struct gw_request *r, int status);
void gw_h2_resp_end_head(struct gw_request *r, int64_t body_len, bool own);
void gw_h2_resp_body(struct gw_request *r, const void *data, size_t n);
void gw_h2_resp_end(struct gw_request *r);
void gw_h2_resp_abort(struct gw_request *r);
bool gw_h2_backlog_full(const struct gw_request *r);
enum gw_body gw_h2_body_peek(struct gw_request *r, const char **data, size_t *n);
void gw_h2_body_consume(struct gw_request *r, size_t n);
/** From gw_front_request_done: r has ended (an answer left unfinished
 * resets its stream). */
void gw_h2_request_done(struct gw_request *r);

/* ---- h2_front.c -> front.c ---- */

/** Writes what the session has to send, once the loop pass has run what
 * else is ready (asked again meanwhile: still once), or when the socket
 * can take it. */
void gw_front_h2_kick(struct gw_client *c);
/** The header lines every answer of ours gets at the end of its head (CORS,
 * HSTS, Date when own, Content-Length when body_len >= 0). */
void gw_front_head_extras(struct gw_request *r, struct pc_buf *b, int64_t body_len, bool own);
/** front.c's checks of a parsed request head, in its order: 0 when it may
 * run, else the status and *code / *msg of its refusal. */
int gw_front_head_refusal(const struct pc_http_head *h, const char **code, const char **msg);

#endif
