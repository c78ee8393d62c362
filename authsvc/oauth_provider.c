/* Portcullis - MIT licence. See LICENSE.
 *
 * oauth_provider.c: the sign-in providers. Google (fixed endpoints, GOOGLE_*)
 * and the generic OIDC providers of OIDC_PROVIDERS (OIDC_<NAME>_*, endpoints
 * from the issuer's discovery document), and ALLOWED_DOMAINS, read and
 * checked at start (config.c calls as_oauth_config_load). On the loop:
 * discovery in the background from as_oauth_start, and each provider's JWKS
 * cache (OAUTH_JWKS_CACHE_SECONDS, an unknown kid refetches at most every
 * KEYS_REFETCH_MIN_MS), with jobs waiting on either parked per provider.
 */
#include "authsvc.h"
#include "oauth_int.h"
#include "validate.h"
#include "../lib/cookie.h"
#include "../lib/crypto.h"
#include "../lib/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <event2/http.h>

static struct provider *providers;
static size_t nproviders;
char **oa_domains;              /* ALLOWED_DOMAINS, lower-cased */
size_t oa_ndomains;
bool oa_stopping;               /* loop: as_oauth_stop ran */

struct provider *oa_provider_find(const char *id)
{
    for (size_t i = 0; i < nproviders; i++)
        if (strcmp(providers[i].id, id) == 0)
            return &providers[i];
    return NULL;
}

bool oa_domain_allowed(const char *d)
{
    if (oa_ndomains == 0)
        return true;
    for (size_t i = 0; i < oa_ndomains; i++)
        if (pc_strieq(oa_domains[i], d))
            return true;
    return false;
}

static void strip_slash(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
}

static bool http_url(const char *s)
{
    return (pc_starts_with(s, "https://") || pc_starts_with(s, "http://")) &&
           strlen(s) > 8 && strpbrk(s, " \t\r\n") == NULL;
}

static int conf_fail(const char *var, const char *why)
{
    fprintf(stderr, "authsvc: configuration error: %s: %s\n", var, why);
    return -1;
}

static struct provider *provider_add(const char *id)
{
    providers = pc_xrealloc(providers, (nproviders + 1) * sizeof *providers);
    struct provider *p = &providers[nproviders++];
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "%s", id);
    return p;
}

/* OIDC_<NAME>_<what>, NAME upper-cased with '-' as '_'. */
static const char *oidc_env(const char *name, const char *what, char *var, size_t cap)
{
    snprintf(var, cap, "OIDC_%s_%s", name, what);
    for (char *c = var; *c; c++) {
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
        else if (*c == '-')
            *c = '_';
    }
    const char *v = getenv(var);
    return v && *v ? v : NULL;
}

static int load_google(void)
{
    if (as_cfg.google_client_id[0] == '\0')
        return 0;
    if (as_cfg.google_client_secret[0] == '\0')
        return conf_fail("GOOGLE_CLIENT_SECRET", "required when GOOGLE_CLIENT_ID is set");
    const struct {
        const char *var, *val;
    } urls[] = {
        {"GOOGLE_AUTH_URL", as_cfg.google_auth_url},
        {"GOOGLE_TOKEN_URL", as_cfg.google_token_url},
        {"GOOGLE_USERINFO_URL", as_cfg.google_userinfo_url},
        {"GOOGLE_JWKS_URL", as_cfg.google_jwks_url},
        {"GOOGLE_ISSUER", as_cfg.google_issuer},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(urls); i++)
        if (!http_url(urls[i].val))
            return conf_fail(urls[i].var, "must be an http:// or https:// URL");
    struct provider *p = provider_add("google");
    p->google = true;
    p->client_id = pc_xstrdup(as_cfg.google_client_id);
    p->client_secret = pc_xstrdup(as_cfg.google_client_secret);
    p->issuer = pc_xstrdup(as_cfg.google_issuer);
    p->scope = pc_xstrdup("email profile openid");
    p->auth_url = pc_xstrdup(as_cfg.google_auth_url);
    p->token_url = pc_xstrdup(as_cfg.google_token_url);
    p->userinfo_url = pc_xstrdup(as_cfg.google_userinfo_url);
    p->jwks_url = pc_xstrdup(as_cfg.google_jwks_url);
    p->disc = P_OK;
    return 0;
}

static int load_oidc(const char *name)
{
    char var[160];
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
            return conf_fail("OIDC_PROVIDERS", "names are lower-case a-z 0-9 - _");
    if (strlen(name) > 40)
        return conf_fail("OIDC_PROVIDERS", "a name is at most 40 characters");
    if (oa_provider_find(name))
        return conf_fail("OIDC_PROVIDERS", "a provider name is used twice (google is taken "
                                           "when GOOGLE_CLIENT_ID is set)");
    const char *issuer = oidc_env(name, "ISSUER", var, sizeof var);
    if (issuer == NULL || !http_url(issuer))
        return conf_fail(var, "required: the issuer URL (discovery reads "
                              "<issuer>/.well-known/openid-configuration)");
    const char *cid = oidc_env(name, "CLIENT_ID", var, sizeof var);
    if (cid == NULL)
        return conf_fail(var, "required");
    const char *csec = oidc_env(name, "CLIENT_SECRET", var, sizeof var);
    if (csec == NULL)
        return conf_fail(var, "required");
    const char *scopes = oidc_env(name, "SCOPES", var, sizeof var);
    struct provider *p = provider_add(name);
    p->issuer = pc_xstrdup(issuer);
    strip_slash(p->issuer);
    p->client_id = pc_xstrdup(cid);
    p->client_secret = pc_xstrdup(csec);
    p->scope = pc_xstrdup(scopes ? scopes : "openid email profile");
    for (char *c = p->scope; *c; c++)
        if (*c == ',')
            *c = ' ';
    return 0;
}

int as_oauth_config_load(void)
{
    if (load_google() != 0)
        return -1;
    char *list = pc_xstrdup(as_cfg.oidc_providers);
    int rc = 0;
    for (char *save = NULL, *t = strtok_r(list, ", ", &save); rc == 0 && t;
         t = strtok_r(NULL, ", ", &save))
        rc = load_oidc(t);
    free(list);
    if (rc != 0)
        return -1;
    for (size_t i = 0; i < nproviders; i++)
        pthread_mutex_init(&providers[i].mu, NULL);
    list = pc_xstrdup(as_cfg.allowed_domains);
    for (char *save = NULL, *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (t[0] == '@')
            t++;
        if (*t == '\0' || strchr(t, '@') || strchr(t, '/') || strchr(t, '.') == NULL) {
            free(list);
            return conf_fail("ALLOWED_DOMAINS", "a comma-separated list of oa_domains such as "
                                                "example.com,example.org");
        }
        oa_domains = pc_xrealloc(oa_domains, (oa_ndomains + 1) * sizeof *oa_domains);
        oa_domains[oa_ndomains++] = pc_xstrdup_lower(t);
    }
    free(list);
    return 0;
}

static void waiters_fail(struct provider *p);

void as_oauth_config_free(void)
{
    for (size_t i = 0; i < nproviders; i++) {
        struct provider *p = &providers[i];
        pc_wipe(p->client_secret, strlen(p->client_secret));
        free(p->client_id);
        free(p->client_secret);
        free(p->issuer);
        free(p->scope);
        free(p->auth_url);
        free(p->token_url);
        free(p->userinfo_url);
        free(p->jwks_url);
        pc_jwks_free(&p->jwks);
        pthread_mutex_destroy(&p->mu);
    }
    free(providers);
    providers = NULL;
    nproviders = 0;
    for (size_t i = 0; i < oa_ndomains; i++)
        free(oa_domains[i]);
    free(oa_domains);
    oa_domains = NULL;
    oa_ndomains = 0;
}

/* Loop: false (and the job answered) when we are oa_stopping or p has no
 * discovery document or keys to work with. */
bool oa_provider_ready(struct as_job *job, const struct provider *p)
{
    if (oa_stopping) {
        oa_fail_on_loop(job, "shutting_down");
        return false;
    }
    if (p->disc != P_OK || p->jwks.n == 0) {
        oa_fail_on_loop(job, "provider_unavailable");
        return false;
    }
    return true;
}

static bool keys_fresh(const struct provider *p, int64_t now)
{
    return p->keys == P_OK && now - p->keys_at_ms < as_cfg.jwks_cache_s * 1000;
}

static void start_discovery(struct provider *p);
static void start_keys(struct provider *p);

/* Loop: calls k(job) once p's endpoints (and, with need_keys, its JWKS) are
 * known, or known to be unavailable for now. k checks which. */
void oa_provider_ensure(struct provider *p, bool need_keys, struct as_job *job,
                            void (*k)(struct as_job *))
{
    int64_t now = pc_now_ms();
    enum pstate *st = NULL;
    if (p->disc != P_OK) {
        if (p->disc != P_RUNNING && (p->disc == P_NONE || now >= p->disc_retry_ms) && !oa_stopping)
            start_discovery(p);
        st = &p->disc;
    } else if (need_keys && !keys_fresh(p, now)) {
        if (p->keys != P_RUNNING && (p->keys != P_FAILED || now >= p->keys_retry_ms) && !oa_stopping)
            start_keys(p);
        st = &p->keys;
    }
    if (st == NULL || *st != P_RUNNING) {
        k(job);
        return;
    }
    struct waiter *w = pc_xcalloc(1, sizeof *w);
    w->job = job;
    w->k = k;
    w->need_keys = need_keys;
    w->next = p->waiters;
    p->waiters = w;
}

/* Loop: a discovery or JWKS fetch ended; every waiter looks again. */
static void waiters_wake(struct provider *p)
{
    struct waiter *w = p->waiters;
    p->waiters = NULL;
    while (w) {
        struct waiter *next = w->next;
        oa_provider_ensure(p, w->need_keys, w->job, w->k);
        free(w);
        w = next;
    }
}

static void waiters_fail(struct provider *p)
{
    struct waiter *w = p->waiters;
    p->waiters = NULL;
    while (w) {
        struct waiter *next = w->next;
        oa_fail_on_loop(w->job, "shutting_down");
        free(w);
        w = next;
    }
}

char *oa_json_str(yajl_val obj, const char *key)
{
    yajl_val v = pc_json_get(obj, key);
    return YAJL_IS_STRING(v) && v->u.string[0] ? pc_xstrdup(v->u.string) : NULL;
}

static void on_discovery(void *arg, const struct as_http_resp *r, const char *err)
{
    struct provider *p = arg;
    yajl_val doc = r && r->status == 200 ? pc_json_parse(r->body, r->len) : NULL;
    char *iss = oa_json_str(doc, "issuer");
    char *auth = oa_json_str(doc, "authorization_endpoint");
    char *token = oa_json_str(doc, "token_endpoint");
    char *jwks = oa_json_str(doc, "jwks_uri");
    char *ui = oa_json_str(doc, "userinfo_endpoint");
    if (iss)
        strip_slash(iss);
    bool ok = iss && strcmp(iss, p->issuer) == 0 && auth && http_url(auth) && token &&
              http_url(token) && jwks && http_url(jwks) && (ui == NULL || http_url(ui));
    pthread_mutex_lock(&p->mu);
    if (ok) {
        free(p->auth_url);
        free(p->token_url);
        free(p->jwks_url);
        free(p->userinfo_url);
        p->auth_url = auth;
        p->token_url = token;
        p->jwks_url = jwks;
        p->userinfo_url = ui;
        auth = token = jwks = ui = NULL;
        p->disc = P_OK;
    } else {
        p->disc = P_FAILED;
        p->disc_retry_ms = pc_now_ms() + RETRY_MS;
    }
    pthread_mutex_unlock(&p->mu);
    if (ok)
        pc_log_info("oauth: %s: discovered %s", p->id, p->issuer);
    else
        pc_log_warn("oauth: %s: discovery of %s failed (%s)", p->id, p->issuer,
                    err                ? err
                    : r->status != 200 ? "HTTP status"
                    : doc == NULL      ? "not JSON, or nested deeper than 64 levels"
                                       : "bad or mismatched document");
    free(iss);
    free(auth);
    free(token);
    free(jwks);
    free(ui);
    if (doc)
        yajl_tree_free(doc);
    if (err == AS_HTTP_ESHUTDOWN)
        waiters_fail(p);
    else
        waiters_wake(p);
}

static void start_discovery(struct provider *p)
{
    struct pc_buf u = {0};
    pc_buf_printf(&u, "%s/.well-known/openid-configuration", p->issuer);
    pthread_mutex_lock(&p->mu);
    p->disc = P_RUNNING;
    pthread_mutex_unlock(&p->mu);
    if (as_http_request(u.data, NULL, NULL, on_discovery, p) != 0) {
        pthread_mutex_lock(&p->mu);
        p->disc = P_FAILED;
        p->disc_retry_ms = pc_now_ms() + RETRY_MS;
        pthread_mutex_unlock(&p->mu);
    }
    pc_buf_free(&u);
}

static void on_keys(void *arg, const struct as_http_resp *r, const char *err)
{
    struct provider *p = arg;
    struct pc_jwks set;
    if (r && r->status == 200 && pc_jwks_parse(r->body, r->len, &set) == 0 && set.n > 0) {
        pc_jwks_free(&p->jwks);
        p->jwks = set;
        p->keys = P_OK;
        p->keys_at_ms = pc_now_ms();
        pc_log_info("oauth: %s: %zu signing key(s) loaded", p->id, set.n);
    } else {
        if (r && r->status == 200)
            pc_jwks_free(&set);
        p->keys = P_FAILED;
        p->keys_retry_ms = pc_now_ms() + RETRY_MS;
        pc_log_warn("oauth: %s: JWKS fetch failed (%s)", p->id,
                    err ? err : r->status != 200 ? "HTTP status" : "no usable key");
    }
    if (err == AS_HTTP_ESHUTDOWN)
        waiters_fail(p);
    else
        waiters_wake(p);
}

static void start_keys(struct provider *p)
{
    p->keys = P_RUNNING;
    if (as_http_request(p->jwks_url, NULL, NULL, on_keys, p) != 0) {
        p->keys = P_FAILED;
        p->keys_retry_ms = pc_now_ms() + RETRY_MS;
    }
}

void as_oauth_start(struct event_base *base)
{
    if (nproviders == 0)
        return;
    if (as_http_init(base, as_cfg.oauth_timeout_ms) != 0)
        pc_fatal("curl_global_init failed");
    for (size_t i = 0; i < nproviders; i++)
        if (providers[i].disc != P_OK)
            start_discovery(&providers[i]);
    pc_log_info("oauth: %zu provider(s), %s", nproviders,
                oa_ndomains ? "ALLOWED_DOMAINS set" : "any email domain allowed");
}

void as_oauth_stop(void)
{
    oa_stopping = true;
    as_http_shutdown();
    for (size_t i = 0; i < nproviders; i++)
        waiters_fail(&providers[i]);
}
