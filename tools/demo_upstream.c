/* Portcullis - MIT licence. See LICENSE.
 *
 * demo_upstream.c: the demo upstream `make run` puts behind the gateway, and
 * the upstream of the tests and benchmarks. It answers every request with
 * JSON holding the method, path, query, headers and body it received, so you
 * can see what the gateway forwarded. Special paths, for tests:
 *   /sse?n=N&ms=M     N server-sent events, M ms apart (streamed)
 *   /slow?ms=M        answers after M ms
 *   /status/NNN       answers with that status
 *   /big?kb=K         a K KiB body
 * Usage: demo-upstream [host:port] [threads]   (default 127.0.0.1:9000 2)
 */
#include "../lib/json.h"
#include "../lib/util.h"

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static char host[256] = "127.0.0.1";
static int port = 9000;

struct sse {
    struct evhttp_request *req;
    struct event *ev;
    int left;
    int ms;
};

static long qparam(struct evhttp_request *req, const char *name, long def)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (q == NULL)
        return def;
    struct evkeyvalq kv;
    TAILQ_INIT(&kv);
    long v = def;
    if (evhttp_parse_query_str(q, &kv) == 0) {
        const char *s = evhttp_find_header(&kv, name);
        if (s)
            v = strtol(s, NULL, 10);
    }
    evhttp_clear_headers(&kv);
    return v;
}

static void on_sse_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sse *s = arg;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "data: event %d\n\n", s->left);
    evhttp_send_reply_chunk(s->req, b);
    evbuffer_free(b);
    if (--s->left <= 0) {
        evhttp_send_reply_end(s->req);
        event_free(s->ev);
        free(s);
        return;
    }
    struct timeval tv = {s->ms / 1000, (s->ms % 1000) * 1000};
    evtimer_add(s->ev, &tv);
}

struct slow {
    struct evhttp_request *req;
    struct event *ev;
};

static void echo(struct evhttp_request *req);

static void on_slow(evutil_socket_t fd, short what, void *arg)
{
    struct slow *s = arg;
    echo(s->req);
    event_free(s->ev);
    free(s);
}

static void echo(struct evhttp_request *req)
{
    static const char *const methods[] = {"GET", "POST", "HEAD", "PUT", "DELETE",
                                          "OPTIONS", "TRACE", "CONNECT", "PATCH"};
    const char *m = "OTHER";
    for (unsigned i = 0; i < 9; i++)
        if ((int)evhttp_request_get_command(req) == (1 << i))
            m = methods[i];
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "method");
    pc_jw_str(&w, m);
    pc_jw_key(&w, "path");
    pc_jw_str(&w, evhttp_uri_get_path(u));
    pc_jw_key(&w, "query");
    pc_jw_str(&w, evhttp_uri_get_query(u));
    pc_jw_key(&w, "headers");
    pc_jw_obj_begin(&w);
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    for (struct evkeyval *kv = ih->tqh_first; kv; kv = kv->next.tqe_next) {
        char lower[256];
        snprintf(lower, sizeof lower, "%s", kv->key);
        for (char *c = lower; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        pc_jw_key(&w, lower);
        pc_jw_str(&w, kv->value);
    }
    pc_jw_obj_end(&w);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    pc_jw_key(&w, "body");
    char *body = pc_xmalloc(blen + 1);
    evbuffer_copyout(in, body, blen);
    pc_jw_strn(&w, body, blen);
    free(body);
    pc_jw_obj_end(&w);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, b.data, b.len);
    pc_buf_free(&b);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    int status = 200;
    const char *path = evhttp_uri_get_path(u);
    if (path && strncmp(path, "/status/", 8) == 0)
        status = atoi(path + 8);
    bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
    evhttp_send_reply(req, status, NULL, head ? NULL : out);
    evbuffer_free(out);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct event_base *base = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (path && strcmp(path, "/sse") == 0) {
        struct sse *s = pc_xcalloc(1, sizeof *s);
        s->req = req;
        s->left = (int)qparam(req, "n", 3);
        s->ms = (int)qparam(req, "ms", 100);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/event-stream");
        evhttp_send_reply_start(req, 200, "OK");
        s->ev = evtimer_new(base, on_sse_tick, s);
        struct timeval tv = {0, 0};
        evtimer_add(s->ev, &tv);
        return;
    }
    if (path && strcmp(path, "/slow") == 0) {
        struct slow *s = pc_xcalloc(1, sizeof *s);
        s->req = req;
        s->ev = evtimer_new(base, on_slow, s);
        long ms = qparam(req, "ms", 1000);
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(s->ev, &tv);
        return;
    }
    if (path && strcmp(path, "/big") == 0) {
        long kb = qparam(req, "kb", 1024);
        struct evbuffer *out = evbuffer_new();
        char chunk[1024];
        memset(chunk, 'x', sizeof chunk);
        for (long i = 0; i < kb; i++)
            evbuffer_add(out, chunk, sizeof chunk);
        evhttp_send_reply(req, 200, "OK", out);
        evbuffer_free(out);
        return;
    }
    echo(req);
}

static void *serve(void *arg)
{
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_allowed_methods(http, 0x1ff);
    evhttp_set_gencb(http, on_request, base);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
        perror("demo-upstream: bind");
        exit(1);
    }
    evhttp_accept_socket(http, fd);
    event_base_dispatch(base);
    return NULL;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1) {
        const char *err;
        if (pc_parse_hostport(argv[1], host, sizeof host, &port, &err) != 0) {
            fprintf(stderr, "demo-upstream: %s: %s\n", argv[1], err);
            return 2;
        }
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    if (threads < 1)
        threads = 1;
    pthread_t t[64];
    for (int i = 0; i < threads && i < 64; i++)
        pthread_create(&t[i], NULL, serve, NULL);
    printf("demo-upstream listening on %s:%d\n", host, port);
    fflush(stdout);
    pthread_join(t[0], NULL);
    return 0;
}
