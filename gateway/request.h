/* Portcullis - MIT licence. See LICENSE.
 *
 * request.h: one client request, from intake to its last byte.
 *
 * Ownership: a request belongs to its worker's loop (r->w). The front
 * (front.c) creates it with gw_request_new() and intake.c starts it with
 * gw_request_start(); gw_request_end() frees it, and every path reaches
 * that exactly once. A function documented "ends r" has called it: the
 * caller must not touch r afterwards.
 *
 * Threads: everything here runs on r->w's loop, except gw_wake().
 *
 * Stages (stages.h): each returns enum gw_step; request.c alone writes
 * r->stage and picks the next stage, from what the stage recorded in r
 * (r->lookup, r->kind, r->limit). A stage that must wait calls gw_park(r)
 * and returns GW_ASYNC; its completion records its outcome in r and calls
 * gw_resume(r) on r's loop, or gw_wake(r) from another thread. Nothing else
 * counts or un-counts a parked request.
 *
 * Answers: a stage answers through gw_fail() or the response writer below
 * (implemented by front.c, which owns the connection); stages never see
 * the connection itself.
 */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include "types.h"

struct pc_http_head;
struct pc_buf;

enum gw_step {
    GW_NEXT = 0,    /* done: request.c picks the next stage from r's state */
    GW_ASYNC,       /* the stage called gw_park(r); a completion will resume r */
    GW_ENDED,       /* r was answered (it is gone), or handed to the answer in
                     * progress (proxy.c ends it): the caller must not touch r */
};
typedef enum gw_step gw_stage_fn(struct gw_request *r);

/** Front, on w's loop: a new request for connection c with its parsed head
 * (in c's buffer). Counts it in w->active; the caller fills method and body. */
struct gw_request *gw_request_new(struct gw_worker *w, struct gw_client *c,
                                  const struct pc_http_head *head, const char *client_ip);
/** Intake, on r's loop: runs r's stages from ROUTE until one parks it or it
 * ends. */
void gw_request_start(struct gw_request *r);
/** On r's loop: ends r (after its answer was queued): counts and logs it,
 * hands the connection on to its next request, frees r. */
void gw_request_end(struct gw_request *r);
/** Frees r's memory only (the credential wiped first), touching no worker
 * or connection: gw_request_end's last step, and how the fuzz targets free
 * a request they made with calloc. */
void gw_request_free(struct gw_request *r);
/** r's credential storage, empty: gw_request_new's, and what a request made
 * otherwise (calloc, in the unit and fuzz tests) must call first. */
void gw_cred_init(struct gw_request *r);
/** Sets r->cred to v[0..n) (n < GW_CRED_MAX), NUL-terminated, and cred_len;
 * the old one is wiped. */
void gw_cred_set(struct gw_request *r, const char *v, size_t n);
/** On r's loop: answers {"message","code","requestId"} with status. Ends r. */
void gw_fail(struct gw_request *r, int status, const char *code, const char *msg);

/** On r's loop: counts r toward GATEWAY_PENDING_MAX, the only place that
 * increments it. False: over the bound, nothing parked (the caller answers
 * 503 or goes on without waiting). */
PC_MUSTCHECK bool gw_park(struct gw_request *r);
/** On r's loop: un-parks r (the only decrement), then runs the stage
 * next_stage() picks from what the completion recorded. May end r. */
void gw_resume(struct gw_request *r);
/** From any thread: queues parked r for gw_resume on its own loop. */
void gw_wake(struct gw_request *r);
/** Any thread: how many of w's requests are parked now (/_stats). */
size_t gw_parked(const struct gw_worker *w);
/** Worker start/stop (worker.c): the inbox gw_wake fills. Stopping ends,
 * unanswered, every request still queued (the loop no longer runs). */
void gw_inbox_start(struct gw_worker *w);
void gw_inbox_stop(struct gw_worker *w);

/** The stage's name, for logs. */
const char *gw_stage_name(enum gw_stage s);

/** On r's loop: sets r->request_id, the client's X-Request-Id if
 * well-formed, else a new one. */
void gw_request_id(struct gw_request *r);
/** The request's first header called name (any case), or NULL. */
const char *gw_header(const struct gw_request *r, const char *name);
/** Every header line called name (any case), in order: up to max values
 * into out; returns how many there are (which may be more than max). */
size_t gw_header_all(const struct gw_request *r, const char *name, const char **out, size_t max);

/** Is r's TCP peer in TRUSTED_PROXIES (its X-Forwarded-* believed)? */
bool gw_peer_trusted(const struct gw_request *r);

/** signin.c: for a 401 on a route with on_unauthenticated "redirect", when
 * r is a browser's navigation (GET or HEAD that accepts text/html): writes
 * the sign-in URL with the way back (scheme, host, path and query of the
 * original request, percent-encoded in return_to_param) to out and returns
 * true; otherwise false and out untouched. */
bool gw_signin_location(const struct gw_request *r, struct pc_buf *out);

/* ---- the response writer (front.c), all on r's loop; none ends r ---- */

/** Appends "name: value\r\n", dropping control bytes from value. */
void gw_hdr_append(struct pc_buf *b, const char *name, const char *value);
/** Starts the answer with its status line; returns the buffer to append
 * header lines to (gw_hdr_append). reason NULL: the standard one. */
struct pc_buf *gw_resp_begin(struct gw_request *r, int status, const char *reason);
#define GW_LEN_STREAM (-1)  /* body of unknown length follows: chunked (or close for HTTP/1.0) */
#define GW_LEN_OMIT (-2)    /* no body and no framing header (204, 304, HEAD without a length) */
/** Ends the head: Content-Length body_len (>= 0) or as above; own: an
 * answer of ours (adds Date), not a relayed one. */
void gw_resp_end_head(struct gw_request *r, int64_t body_len, bool own);
/** Queues body bytes (framed as a chunk when streaming). */
void gw_resp_body(struct gw_request *r, const void *data, size_t n);
/** Ends a streamed body. */
void gw_resp_end(struct gw_request *r);
/** Writes what is queued. */
void gw_resp_send(struct gw_request *r);
/** A streamed answer that cannot be finished: close the connection. */
void gw_resp_abort(struct gw_request *r);
/** A 101 relayed from the upstream: ends its head with Connection:
 * Upgrade and Upgrade: websocket, and turns r's connection into a tunnel:
 * what the client sends (and sent after its handshake) goes to
 * gw_proxy_tunnel_in, what proxy.c queues with gw_resp_body goes out as
 * it is; the connection closes when r ends. */
void gw_resp_upgrade(struct gw_request *r);
/** The upstream took what the tunnel had queued: read the client again. */
void gw_front_tunnel_resume(struct gw_request *r);
/** A whole answer of ours: status, Content-Type, X-Request-Id, body (the
 * caller then ends r). */
void gw_reply(struct gw_request *r, int status, const char *ctype, const char *body, size_t n);
/** Enough queued that a stream should wait (gw_proxy_resume follows). */
bool gw_client_backlog_full(const struct gw_request *r);

/* ---- a streamed request body (front.c), on r's loop; for proxy.c ----
 * A body not all read when its head was (r->body_stream) is read while r
 * runs, into a window of GW_BODY_WINDOW bytes after the head: the front
 * stops reading while the window is full, and the upstream side takes
 * what is there (gw_front_body_consume), which lets it read again. Its
 * new bytes are announced with gw_proxy_body_ready. The first peek sends
 * the client its 100 Continue (when it asked): a request refused before
 * it reaches the upstream never invites the body. */
#define GW_BODY_WINDOW (64 * 1024)
enum gw_body {
    GW_BODY_WAIT = 0,   /* nothing now; gw_proxy_body_ready follows */
    GW_BODY_DATA,       /* *data, *n: decoded bytes to send (then consume them) */
    GW_BODY_END,        /* the body is all taken */
    GW_BODY_BAD,        /* malformed chunked framing: 400 */
    GW_BODY_TOO_LARGE,  /* past GATEWAY_MAX_BODY_BYTES: 413 */
    GW_BODY_GONE,       /* the client left before its body ended */
};
enum gw_body gw_front_body_peek(struct gw_request *r, const char **data, size_t *n);
/** n bytes of what the last peek gave were taken. */
void gw_front_body_consume(struct gw_request *r, size_t n);

#endif
