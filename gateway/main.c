/* Portcullis - MIT licence. See LICENSE.
 *
 * gateway/main.c: the gateway's entry point. For now the gateway only
 * answers its health routes; authentication and proxying arrive with the
 * gateway issue (see docs/ and design.md "The hot path").
 */
#include "../lib/conf.h"
#include "../lib/log.h"
#include "../lib/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

static char *cf_listen;

static const struct pc_conf_item table[] = {
    {"GATEWAY_LISTEN", PC_CONF_STR, &cf_listen, "127.0.0.1:8080", 0, 0, 0,
     pc_conf_check_hostport, "address to listen on (host:port)"},
};

static void reply(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        pc_fatal("out of memory");
    evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, status, NULL, b);
    evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (path && (strcmp(path, "/health") == 0 || strcmp(path, "/live") == 0))
        reply(req, 200, "{\"status\":\"ok\"}");
    else
        reply(req, 404, "{\"message\":\"Not found\",\"code\":\"NOT_FOUND\"}");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: gateway [--help]\n\nConfiguration comes from the environment:\n\n");
        pc_conf_help(table, PC_ARRAY_LEN(table), stdout);
        return 0;
    }
    char err[256];
    if (pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err) != 0) {
        fprintf(stderr, "gateway: configuration error: %s\n", err);
        pc_conf_free(table, PC_ARRAY_LEN(table));
        return 2;
    }
    char host[256];
    int port;
    const char *why;
    if (pc_parse_hostport(cf_listen, host, sizeof host, &port, &why) != 0)
        pc_fatal("validated GATEWAY_LISTEN failed to parse");
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    if (base == NULL || http == NULL)
        pc_fatal("libevent init failed");
    evhttp_set_gencb(http, on_request, NULL);
    if (evhttp_bind_socket(http, host, (ev_uint16_t)port) != 0) {
        fprintf(stderr, "gateway: cannot listen on %s (GATEWAY_LISTEN)\n", cf_listen);
        return 1;
    }
    struct event *st = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *si = evsignal_new(base, SIGINT, on_signal, base);
    event_add(st, NULL);
    event_add(si, NULL);
    pc_log_info("gateway listening on %s", cf_listen);
    event_base_dispatch(base);
    event_free(st);
    event_free(si);
    evhttp_free(http);
    event_base_free(base);
    pc_conf_free(table, PC_ARRAY_LEN(table));
    return 0;
}
