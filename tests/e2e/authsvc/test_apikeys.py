"""API keys (issue 4, authsvc side): Better Auth 1.7 compatible management under
/api/auth/api-key/*, the internal routes behind INTERNAL_SERVICE_SECRET, and revocation.

The expected bodies, codes and messages were read from @better-auth/api-key 1.7.5
(dist/index.mjs, dist/version-*.mjs) and checked against a running Better Auth 1.7.25
server with that plugin (compat doc §4).  A module server runs with
INTERNAL_SERVICE_SECRET set; the session's main server (no secret) shows the internal
routes answering 404.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import time
import types

import pytest

import pcsupport as H
from pcsupport import assert_error

INTERNAL_SECRET = H.sensitive("svc-" + H.generate_id(40))
KEY_RE = re.compile(r"^oc_[a-zA-Z]{64}$")
# Better Auth's row field order (observed; compat doc §4.3)
ROW_FIELDS = ["configId", "name", "start", "referenceId", "prefix", "refillInterval", "refillAmount",
              "lastRefillAt", "enabled", "rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax",
              "requestCount", "remaining", "lastRequest", "expiresAt", "createdAt", "updatedAt",
              "permissions", "metadata", "id"]
CREATE_FIELDS = ROW_FIELDS[:5] + ["key"] + ROW_FIELDS[5:]
SERVER_ONLY_MSG = "The property you're trying to set can only be set from the server auth instance only."
PLAINTEXT_KEYS: list = []      # every key handed out in this module, for the log check


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def svc(pg, redis_srv, main_db_url, tmp_root, secret, trusted_origins):
    """authsvc with the internal routes on, on the main database and Redis."""
    env = {
        "BETTER_AUTH_SECRET": secret,
        "DATABASE_URL": main_db_url,
        "REDIS_URL": redis_srv.url,
        "RATE_LIMIT_ENABLED": "false",
        "TRUSTED_ORIGINS": ",".join(trusted_origins),
        "INTERNAL_SERVICE_SECRET": INTERNAL_SECRET,
        "APIKEY_DEFAULT_PREFIX": None, "APIKEY_RATE_LIMIT_MAX": None,
        "APIKEY_RATE_LIMIT_WINDOW_MS": None, "APIKEY_ENABLE_METADATA": None,
    }
    s = H.Authsvc(env, workdir=str(tmp_root / "apikeys"), name="authsvc-apikeys")
    try:
        yield s
    finally:
        H.check_stopped(s)


@pytest.fixture
def api(svc):
    c = ApiKeys(svc)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def alice(api):
    return api.http.sign_up(name="Alice Keys")


@pytest.fixture
def bob(api):
    return api.http.sign_up(name="Bob Keys")


class ApiKeys:
    """Thin helpers over ApiClient for the API key routes."""

    def __init__(self, svc):
        self.http = H.ApiClient(svc)

    def close(self):
        self.http.close()

    def _remember(self, r):
        if r.headers.get("content-type", "").startswith("application/json"):
            try:
                body = r.json()
            except ValueError:
                return r
            if isinstance(body, dict) and isinstance(body.get("key"), str):
                H.sensitive(body["key"])
                PLAINTEXT_KEYS.append(body["key"])
        return r

    def create(self, user, body=None, **kw):
        return self._remember(self.http.post("api-key/create", {} if body is None else body,
                                             bearer=user.token if user else None, **kw))

    def make(self, user, body=None):
        r = self.create(user, body)
        assert r.status_code == 200, r.text
        return r.json()

    def get(self, user, key_id, **params):
        return self.http.get("api-key/get", params={"id": key_id, **params},
                             bearer=user.token if user else None)

    def update(self, user, body):
        return self.http.post("api-key/update", body, bearer=user.token if user else None)

    def delete(self, user, body):
        return self.http.post("api-key/delete", body, bearer=user.token if user else None)

    def list(self, user, params=None):
        return self.http.get("api-key/list", params=params, bearer=user.token if user else None)

    def internal(self, path, body, secret=INTERNAL_SECRET, **kw):
        headers = {} if secret is None else {"x-service-auth": secret}
        headers.update(kw.pop("headers", {}))
        return self._remember(self.http.post("/api/internal/" + path, body, headers=headers, **kw))

    def validate(self, body, **kw):
        r = self.internal("validate", body, **kw)
        assert r.status_code == 200, r.text
        return r.json()


def row(db, key_id):
    r = db.dicts('select * from "apikey" where id = %s', (key_id,))
    return r[0] if r else None


def iso(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def kcache(key_or_hash, prefix=H.DEFAULT_REDIS_PREFIX, hashed=False):
    return f"{prefix}k:{key_or_hash if hashed else H.token_hash(key_or_hash)}"


def assert_published(revocations, hashes, what):
    seen = revocations.wait_for(set(hashes), timeout=5)
    missing = set(hashes) - seen
    assert not missing, f"{what}: no PUBLISH for {missing}; saw {seen}"


# ---------------------------------------------------------------------------
# create / get / list: shape, storage, defaults


def test_create_returns_the_key_once_and_stores_only_its_hash(api, alice, db):
    k = api.make(alice)
    assert list(k) == CREATE_FIELDS, "field order differs from Better Auth's"
    key = k["key"]
    assert KEY_RE.match(key), key
    assert k["start"] == key[:6] and k["prefix"] == "oc_" and k["referenceId"] == alice.id
    assert k["configId"] == "default" and k["name"] is None
    assert k["enabled"] is True and k["rateLimitEnabled"] is True
    assert k["rateLimitMax"] == 10000 and k["rateLimitTimeWindow"] == 60000
    assert k["requestCount"] == 0 and k["remaining"] is None and k["expiresAt"] is None
    assert k["permissions"] is None and k["metadata"] is None
    assert k["createdAt"] == k["updatedAt"] and re.match(H.ISO_RE, k["createdAt"])
    assert re.fullmatch(r"[A-Za-z0-9]{32}", k["id"])

    r = row(db, k["id"])
    assert r["key"] == H.token_hash(key), "stored key is not base64url(SHA-256(key))"
    assert key not in json.dumps(r, default=str), "plaintext key stored in the database"
    assert r["metadata"] == "null" and r["permissions"] is None      # as Better Auth writes them
    assert r["referenceId"] == alice.id and r["configId"] == "default" and r["start"] == key[:6]

    g = api.get(alice, k["id"])
    assert g.status_code == 200, g.text
    assert list(g.json()) == ROW_FIELDS and "key" not in g.json()
    assert {f: g.json()[f] for f in ROW_FIELDS} == {f: k[f] for f in ROW_FIELDS}
    lst = api.list(alice).json()
    assert key not in json.dumps(lst) and key not in g.text


def test_create_with_name_prefix_expiry_and_metadata(api, alice, db):
    before = dt.datetime.now(dt.timezone.utc)
    k = api.make(alice, {"name": "deploy bot", "prefix": "ci-key_", "expiresIn": 86400 * 2,
                         "metadata": {"team": "infra", "tags": ["a", 1, None]}})
    assert k["key"].startswith("ci-key_") and re.fullmatch(r"ci-key_[a-zA-Z]{64}", k["key"])
    assert k["prefix"] == "ci-key_" and k["start"] == "ci-key" and k["name"] == "deploy bot"
    exp = iso(k["expiresAt"])
    assert abs((exp - before).total_seconds() - 86400 * 2) < 30
    assert k["metadata"] == {"team": "infra", "tags": ["a", 1, None]}
    r = row(db, k["id"])
    assert json.loads(r["metadata"]) == k["metadata"]
    assert abs((r["expiresAt"] - exp).total_seconds()) < 0.002
    assert api.get(alice, k["id"]).json()["metadata"] == k["metadata"]


def test_keys_are_random_letters(api, alice):
    keys = [api.make(alice)["key"][3:] for _ in range(12)]
    assert len(set(keys)) == 12
    letters = "".join(keys)
    assert re.fullmatch(r"[a-zA-Z]+", letters)
    assert re.search(r"[a-z]", letters) and re.search(r"[A-Z]", letters)


@pytest.mark.parametrize("body,echo,stored", [
    ({"name": ""}, None, "null"),              # "" is falsy: no length check (Better Auth)
    ({"metadata": [1, 2]}, [1, 2], "[1,2]"),   # typeof [] === "object"
    ({"metadata": None}, None, "null"),
    ({"metadata": 0}, 0, "null"),              # falsy: not stored, but echoed
    ({"metadata": False}, False, "null"),
    ({"remaining": None}, None, "null"),       # null is not a server-only value
    ({"expiresIn": None}, None, "null"),
    ({"configId": "other"}, None, "null"),     # unknown configurations fall back to default
    ({"organizationId": "org-1"}, None, "null"),  # ignored for user keys
])
def test_create_accepts_what_better_auth_accepts(api, alice, db, body, echo, stored):
    k = api.make(alice, body)
    assert k["metadata"] == echo
    assert k["configId"] == "default" and k["referenceId"] == alice.id
    assert row(db, k["id"])["metadata"] == stored
    if "name" in body:
        assert k["name"] == ""


CREATE_ERRORS = [
    # (id, body, status, code, message or None)
    ("name-too-long", {"name": "x" * 33}, 400, "INVALID_NAME_LENGTH",
     "The name length is either too large or too small."),
    ("name-17-emoji", {"name": "\U0001F600" * 17}, 400, "INVALID_NAME_LENGTH", None),  # UTF-16 units
    ("prefix-too-long", {"prefix": "p" * 33}, 400, "INVALID_PREFIX_LENGTH",
     "The prefix length is either too large or too small."),
    ("prefix-bad-chars", {"prefix": "a b"}, 400, "VALIDATION_ERROR",
     "[body.prefix] Invalid prefix format, must be alphanumeric and contain only underscores and hyphens."),
    ("prefix-empty", {"prefix": ""}, 400, "VALIDATION_ERROR", None),
    ("expires-zero", {"expiresIn": 0}, 400, "VALIDATION_ERROR",
     "[body.expiresIn] Too small: expected number to be >=1"),
    ("expires-under-a-day", {"expiresIn": 86399}, 400, "EXPIRES_IN_IS_TOO_SMALL",
     "The expiresIn is smaller than the predefined minimum value."),
    ("expires-over-a-year", {"expiresIn": 86400 * 365 + 1}, 400, "EXPIRES_IN_IS_TOO_LARGE",
     "The expiresIn is larger than the predefined maximum value."),
    ("expires-string", {"expiresIn": "86400"}, 400, "VALIDATION_ERROR",
     "[body.expiresIn] Invalid input: expected number, received string"),
    ("metadata-string", {"metadata": "x"}, 400, "INVALID_METADATA_TYPE",
     "metadata must be an object or undefined"),
    ("metadata-number", {"metadata": 5}, 400, "INVALID_METADATA_TYPE", None),
    ("name-number", {"name": 5}, 400, "VALIDATION_ERROR",
     "[body.name] Invalid input: expected string, received number"),
    ("several", {"name": 5, "prefix": 7, "expiresIn": "x"}, 400, "VALIDATION_ERROR",
     "[body.name] Invalid input: expected string, received number; [body.expiresIn] Invalid input: "
     "expected number, received string; [body.prefix] Invalid input: expected string, received number"),
    ("configId-number", {"configId": 5}, 400, "VALIDATION_ERROR",
     "[body.configId] Invalid input: expected string, received number"),
    ("userId", {"userId": "someone"}, 401, "UNAUTHORIZED_SESSION", "Unauthorized or invalid session"),
]


@pytest.mark.parametrize("body,status,code,msg", [c[1:] for c in CREATE_ERRORS],
                         ids=[c[0] for c in CREATE_ERRORS])
def test_create_errors(api, alice, db, body, status, code, msg):
    n = db.scalar('select count(*) from "apikey" where "referenceId" = %s', (alice.id,))
    r = api.create(alice, body)
    err = assert_error(r, status, code)
    if msg:
        assert err["message"] == msg
    assert db.scalar('select count(*) from "apikey" where "referenceId" = %s', (alice.id,)) == n


SERVER_ONLY = [("remaining", 5), ("refillAmount", 10), ("refillInterval", 1000),
               ("rateLimitEnabled", False), ("rateLimitTimeWindow", 1000), ("rateLimitMax", 5),
               ("permissions", {"files": ["read"]})]


@pytest.mark.parametrize("field,value", SERVER_ONLY, ids=[f for f, _ in SERVER_ONLY])
def test_server_only_fields_are_refused_over_http(api, alice, db, field, value):
    r = api.create(alice, {field: value})
    assert assert_error(r, 400, "SERVER_ONLY_PROPERTY")["message"] == SERVER_ONLY_MSG
    # refused before the session is even looked at, as in Better Auth
    assert_error(api.create(None, {field: value}), 400, "SERVER_ONLY_PROPERTY")
    k = api.make(alice)
    before = row(db, k["id"])
    r = api.update(alice, {"keyId": k["id"], field: value})
    assert_error(r, 400, "SERVER_ONLY_PROPERTY")
    assert row(db, k["id"]) == before
    g = api.get(alice, k["id"]).json()
    assert {f: g[f] for f in ROW_FIELDS} == {f: k[f] for f in ROW_FIELDS if f != "key"}


def test_routes_need_a_session(api, alice):
    k = api.make(alice)
    assert_error(api.create(None, {}), 401, "UNAUTHORIZED_SESSION")
    assert_error(api.update(None, {"keyId": k["id"], "name": "x"}), 401, "UNAUTHORIZED_SESSION")
    assert_error(api.get(None, k["id"]), 401, "UNAUTHORIZED")
    assert_error(api.list(None), 401, "UNAUTHORIZED")
    assert_error(api.delete(None, {"keyId": k["id"]}), 401, "UNAUTHORIZED")
    # the body is validated first (Better Auth's order)
    assert_error(api.delete(None, {}), 400, "VALIDATION_ERROR")
    assert_error(api.http.get("api-key/get"), 400, "VALIDATION_ERROR")
    # a forged token is no session
    bad = api.http.post("api-key/create", {}, bearer=alice.token[:-1] + ("A" if alice.token[-1] != "A" else "B"))
    assert_error(bad, 401, "UNAUTHORIZED_SESSION")


def test_cookie_session_works_and_needs_a_trusted_origin(api, alice, db):
    r = api.http.post("api-key/create", {"name": "cookie"}, cookie=alice.cookie)
    assert r.status_code == 200, r.text
    api._remember(r)
    r = api.http.post("api-key/create", {"name": "cookie"}, cookie=alice.cookie, origin=None)
    assert_error(r, 403, "MISSING_OR_NULL_ORIGIN")
    r = api.http.post("api-key/create", {"name": "cookie"}, cookie=alice.cookie,
                      origin="https://evil.example.net")
    assert_error(r, 403, "INVALID_ORIGIN")
    assert api.http.get("api-key/list", cookie=alice.cookie).status_code == 200


def test_other_users_keys_are_not_found(api, alice, bob, db):
    k = api.make(alice, {"name": "mine"})
    before = row(db, k["id"])
    for r in (api.get(bob, k["id"]),
              api.update(bob, {"keyId": k["id"], "name": "stolen"}),
              api.update(bob, {"keyId": k["id"], "name": ""}),    # 404 comes before the name check
              api.update(bob, {"keyId": k["id"], "enabled": False}),
              api.delete(bob, {"keyId": k["id"]})):
        assert_error(r, 404, "KEY_NOT_FOUND")
    assert api.list(bob).json() == {"apiKeys": [], "total": 0}
    assert row(db, k["id"]) == before
    # unknown ids answer the same
    assert_error(api.get(alice, "no-such-key"), 404, "KEY_NOT_FOUND")
    assert_error(api.delete(alice, {"keyId": "no-such-key"}), 404, "KEY_NOT_FOUND")


def test_keys_of_another_configuration_are_not_found(api, alice, db):
    k = api.make(alice)
    db.execute('update "apikey" set "configId" = %s where id = %s', ("other", k["id"]))
    assert_error(api.get(alice, k["id"]), 404, "KEY_NOT_FOUND")
    assert_error(api.update(alice, {"keyId": k["id"], "name": "x"}), 404, "KEY_NOT_FOUND")
    # list without configId shows every configuration; with it, only that one
    ids = {x["id"] for x in api.list(alice).json()["apiKeys"]}
    assert k["id"] in ids
    assert [x["id"] for x in api.list(alice, {"configId": "other"}).json()["apiKeys"]] == [k["id"]]
    assert k["id"] not in {x["id"] for x in api.list(alice, {"configId": "default"}).json()["apiKeys"]}
    assert_error(api.delete(alice, {"keyId": k["id"]}), 404, "KEY_NOT_FOUND")


# ---------------------------------------------------------------------------
# update / delete


def test_update_fields(api, alice, db):
    k = api.make(alice, {"name": "before", "metadata": {"a": 1}})
    time.sleep(0.01)
    r = api.update(alice, {"keyId": k["id"], "name": "after", "enabled": False,
                           "metadata": {"b": [2]}, "expiresIn": 86400 * 3})
    assert r.status_code == 200, r.text
    u = r.json()
    assert list(u) == ROW_FIELDS
    assert u["name"] == "after" and u["enabled"] is False and u["metadata"] == {"b": [2]}
    assert abs((iso(u["expiresAt"]) - dt.datetime.now(dt.timezone.utc)).total_seconds() - 86400 * 3) < 30
    assert u["updatedAt"] == k["updatedAt"], "Better Auth's update leaves updatedAt alone"
    r2 = row(db, k["id"])
    assert r2["name"] == "after" and r2["enabled"] is False and json.loads(r2["metadata"]) == {"b": [2]}

    u = api.update(alice, {"keyId": k["id"], "expiresIn": None, "metadata": None}).json()
    assert u["expiresAt"] is None and u["metadata"] is None
    assert row(db, k["id"])["metadata"] == "null"
    # userId equal to the session's user is allowed over HTTP (Better Auth)
    u = api.update(alice, {"keyId": k["id"], "userId": alice.id, "name": "again"}).json()
    assert u["name"] == "again"
    # configId of an unknown configuration falls back to the default one
    assert api.update(alice, {"keyId": k["id"], "configId": "x", "enabled": True}).json()["enabled"] is True


UPDATE_ERRORS = [
    ("nothing", {}, 400, "NO_VALUES_TO_UPDATE", "No values to update."),
    ("name-empty", {"name": ""}, 400, "INVALID_NAME_LENGTH", None),
    ("name-long", {"name": "n" * 33}, 400, "INVALID_NAME_LENGTH", None),
    ("expires-small", {"expiresIn": 3600}, 400, "EXPIRES_IN_IS_TOO_SMALL", None),
    ("expires-large", {"expiresIn": 86400 * 400}, 400, "EXPIRES_IN_IS_TOO_LARGE", None),
    ("expires-zero", {"expiresIn": 0}, 400, "VALIDATION_ERROR", None),
    ("metadata-string", {"metadata": "s"}, 400, "INVALID_METADATA_TYPE", None),
    ("metadata-zero", {"metadata": 0}, 400, "INVALID_METADATA_TYPE", None),
    ("enabled-string", {"enabled": "false"}, 400, "VALIDATION_ERROR",
     "[body.enabled] Invalid input: expected boolean, received string"),
    ("other-userId", {"userId": "someone-else", "name": "x"}, 401, "UNAUTHORIZED_SESSION", None),
]


@pytest.mark.parametrize("body,status,code,msg", [c[1:] for c in UPDATE_ERRORS],
                         ids=[c[0] for c in UPDATE_ERRORS])
def test_update_errors(api, alice, db, revocations, body, status, code, msg):
    k = api.make(alice, {"name": "keep"})
    before = row(db, k["id"])
    revocations.drain(0.2)
    err = assert_error(api.update(alice, {"keyId": k["id"], **body}), status, code)
    if msg:
        assert err["message"] == msg
    assert row(db, k["id"]) == before
    assert H.token_hash(k["key"]) not in revocations.drain(0.3), "a refused update was announced"


def test_update_without_key_id(api, alice):
    err = assert_error(api.update(alice, {"name": "x"}), 400, "VALIDATION_ERROR")
    assert err["message"] == "[body.keyId] Invalid input: expected string, received undefined"
    assert_error(api.update(alice, {"keyId": "missing", "name": "x"}), 404, "KEY_NOT_FOUND")


def test_delete(api, alice, db):
    k = api.make(alice)
    r = api.delete(alice, {"keyId": k["id"]})
    assert r.status_code == 200 and r.json() == {"success": True}
    assert row(db, k["id"]) is None
    assert_error(api.delete(alice, {"keyId": k["id"]}), 404, "KEY_NOT_FOUND")
    assert_error(api.get(alice, k["id"]), 404, "KEY_NOT_FOUND")
    err = assert_error(api.delete(alice, {}), 400, "VALIDATION_ERROR")
    assert err["message"] == "[body.keyId] Invalid input: expected string, received undefined"


# ---------------------------------------------------------------------------
# list


def test_list_paging_and_sorting(api, db):
    u = api.http.sign_up(name="Lister")
    names = ["delta", "alpha", None, "charlie", "bravo"]
    made = []
    for i, n in enumerate(names):
        body = {} if n is None else {"name": n}
        if i == 1:
            body["expiresIn"] = 86400 * 10
        made.append(api.make(u, body))
        time.sleep(0.005)

    def ls(params=None):
        r = api.list(u, params)
        assert r.status_code == 200, r.text
        return r.json()

    def nm(j):
        return [k["name"] for k in j["apiKeys"]]

    j = ls()
    assert j["total"] == 5 and "limit" not in j and "offset" not in j
    assert [k["id"] for k in j["apiKeys"]] == [k["id"] for k in made]   # creation order
    assert all(list(k) == ROW_FIELDS for k in j["apiKeys"])
    assert nm(ls({"sortBy": "name"})) == ["alpha", "bravo", "charlie", "delta", None]
    assert nm(ls({"sortBy": "name", "sortDirection": "desc"})) == [None, "delta", "charlie", "bravo", "alpha"]
    assert nm(ls({"sortBy": "expiresAt"}))[0] == "alpha"
    j = ls({"sortBy": "name", "limit": 2, "offset": 1})
    assert nm(j) == ["bravo", "charlie"] and j["total"] == 5 and j["limit"] == 2 and j["offset"] == 1
    assert ls({"limit": 0}) == {"apiKeys": [], "total": 5, "limit": 0}
    assert ls({"offset": 99}) == {"apiKeys": [], "total": 5, "offset": 99}
    assert len(ls({"limit": "1e1"})["apiKeys"]) == 5               # z.coerce.number
    assert ls({"limit": " 2 "})["limit"] == 2
    assert ls({"sortBy": ""})["total"] == 5


LIST_ERRORS = [
    ({"limit": "abc"}, "[query.limit] Invalid input: expected number, received NaN"),
    ({"limit": "1.5"}, "[query.limit] Invalid input: expected int, received number"),
    ({"offset": "-1"}, "[query.offset] Too small: expected number to be >=0"),
    ({"limit": "Infinity"}, "[query.limit] Invalid input: expected number, received Infinity"),
    ({"sortDirection": "up"}, '[query.sortDirection] Invalid option: expected one of "asc"|"desc"'),
    ({"limit": "x", "sortDirection": "up"},
     '[query.limit] Invalid input: expected number, received NaN; '
     '[query.sortDirection] Invalid option: expected one of "asc"|"desc"'),
]


@pytest.mark.parametrize("params,msg", LIST_ERRORS, ids=[json.dumps(p) for p, _ in LIST_ERRORS])
def test_list_bad_query(api, alice, params, msg):
    assert assert_error(api.list(alice, params), 400, "VALIDATION_ERROR")["message"] == msg


def test_list_unknown_sort_field_and_organization(api, alice):
    # Better Auth answers 500 to both; we answer 400
    assert_error(api.list(alice, {"sortBy": "password"}), 400, "VALIDATION_ERROR")
    assert_error(api.list(alice, {"organizationId": "org"}), 400, "ORGANIZATION_PLUGIN_REQUIRED")
    r = api.http.get("api-key/get?id=a&id=b", bearer=alice.token)
    assert assert_error(r, 400, "VALIDATION_ERROR")["message"] == \
        "[query.id] Invalid input: expected string, received array"


# ---------------------------------------------------------------------------
# revocation: PostgreSQL, then DEL <prefix>k:<hash>, then PUBLISH <hash>


@pytest.mark.parametrize("change", ["disable", "shorten", "set-expiry", "rename", "metadata"])
def test_update_revokes(api, alice, db, redis_client, revocations, change):
    k = api.make(alice, {"expiresIn": 86400 * 30})
    if change == "set-expiry":
        api.update(alice, {"keyId": k["id"], "expiresIn": None})
    h = H.token_hash(k["key"])
    redis_client.command("SET", kcache(k["key"]), "{}", "EX", 600)   # what a gateway caches
    revocations.drain(0.2)
    body = {"disable": {"enabled": False}, "shorten": {"expiresIn": 86400},
            "set-expiry": {"expiresIn": 86400 * 2}, "rename": {"name": "renamed"},
            "metadata": {"metadata": {"v": 2}}}[change]
    r = api.update(alice, {"keyId": k["id"], **body})
    assert r.status_code == 200, r.text
    assert_published(revocations, [h], change)
    assert not redis_client.exists(kcache(k["key"])), "cached key not deleted"


def test_delete_revokes(api, alice, db, redis_client, revocations):
    k = api.make(alice)
    redis_client.command("SET", kcache(k["key"]), "{}", "EX", 600)
    revocations.drain(0.2)
    assert api.delete(alice, {"keyId": k["id"]}).status_code == 200
    assert row(db, k["id"]) is None
    assert_published(revocations, [H.token_hash(k["key"])], "delete")
    assert not redis_client.exists(kcache(k["key"]))


def test_revocation_uses_redis_prefix_and_channel(authsvc_factory, client_for, redis_srv, redis_client):
    s = authsvc_factory({"REDIS_PREFIX": "alt:", "REVOCATION_CHANNEL": "alt:gone"})
    c = client_for(s)
    u = c.sign_up()
    k = c.post("api-key/create", {}, bearer=u.token).json()
    H.sensitive(k["key"])
    PLAINTEXT_KEYS.append(k["key"])
    redis_client.command("SET", kcache(k["key"], "alt:"), "{}", "EX", 600)
    with redis_srv.subscribe("alt:gone") as sub:
        assert c.post("api-key/delete", {"keyId": k["id"]}, bearer=u.token).status_code == 200
        assert H.token_hash(k["key"]) in sub.wait_for({H.token_hash(k["key"])}, timeout=5)
    assert not redis_client.exists(kcache(k["key"], "alt:"))


# ---------------------------------------------------------------------------
# internal routes


def test_internal_routes_refuse_without_the_secret(api, db):
    for path in ("api-key/create", "api-key/update", "validate"):
        for secret in (None, "", "wrong", INTERNAL_SECRET[:-1], INTERNAL_SECRET + "x",
                       INTERNAL_SECRET.upper()):
            r = api.internal(path, {"key": "x", "userId": "u", "keyId": "k"}, secret=secret)
            assert_error(r, 401, "UNAUTHORIZED")
    # an origin check does not apply (no cookie), and a cookie does not replace the secret
    u = api.http.sign_up()
    r = api.internal("api-key/create", {"userId": u.id}, secret=None,
                     headers={"Authorization": f"Bearer {u.token}"})
    assert_error(r, 401, "UNAUTHORIZED")
    assert db.scalar('select count(*) from "apikey" where "referenceId" = %s', (u.id,)) == 0


def test_internal_routes_are_404_without_a_configured_secret(client):
    for path in ("api-key/create", "api-key/update", "validate"):
        r = client.post("/api/internal/" + path, {"key": "x"},
                        headers={"x-service-auth": INTERNAL_SECRET})
        assert_error(r, 404, "NOT_FOUND")


def test_short_internal_secret_stops_the_server(secret, main_db_url):
    r = H.run_authsvc([], env={"BETTER_AUTH_SECRET": secret, "DATABASE_URL": main_db_url,
                               "INTERNAL_SERVICE_SECRET": "too-short", "AUTHSVC_LISTEN": f"127.0.0.1:{H.free_port()}"},
                      timeout=15)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 2 and "INTERNAL_SERVICE_SECRET" in out and "too-short" not in out, out


@pytest.mark.parametrize("var,value", [("APIKEY_DEFAULT_PREFIX", "bad prefix"),
                                       ("APIKEY_DEFAULT_PREFIX", "p" * 33),
                                       ("APIKEY_RATE_LIMIT_MAX", "0"),
                                       ("APIKEY_RATE_LIMIT_WINDOW_MS", "soon"),
                                       ("APIKEY_ENABLE_METADATA", "maybe")])
def test_bad_apikey_config_stops_the_server(secret, main_db_url, var, value):
    r = H.run_authsvc([], env={"BETTER_AUTH_SECRET": secret, "DATABASE_URL": main_db_url, var: value,
                               "AUTHSVC_LISTEN": f"127.0.0.1:{H.free_port()}"}, timeout=15)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 2 and var in out, out


def test_internal_create_with_server_only_fields(api, alice, db):
    body = {"userId": alice.id, "name": "svc", "remaining": 5, "refillAmount": 10,
            "refillInterval": 3600000, "rateLimitEnabled": False, "rateLimitTimeWindow": 1000,
            "rateLimitMax": 3, "permissions": {"files": ["read", "write"], "logs": []},
            "metadata": {"m": 1}, "expiresIn": 86400}
    r = api.internal("api-key/create", body)
    assert r.status_code == 200, r.text
    k = r.json()
    assert list(k) == CREATE_FIELDS and KEY_RE.match(k["key"])
    assert k["referenceId"] == alice.id and k["remaining"] == 5 and k["refillAmount"] == 10
    assert k["refillInterval"] == 3600000 and k["rateLimitEnabled"] is False
    assert k["rateLimitTimeWindow"] == 1000 and k["rateLimitMax"] == 3
    assert k["permissions"] == {"files": ["read", "write"], "logs": []}
    r2 = row(db, k["id"])
    assert json.loads(r2["permissions"]) == k["permissions"] and r2["remaining"] == 5
    # the owner sees and manages it like any other key
    assert api.get(alice, k["id"]).json()["permissions"] == k["permissions"]
    # refillAmount does not seed remaining (zod's default(null) wins, as in Better Auth)
    k2 = api.internal("api-key/create", {"userId": alice.id, "refillAmount": 5, "refillInterval": 60000}).json()
    assert k2["remaining"] is None and k2["refillAmount"] == 5


INTERNAL_CREATE_ERRORS = [
    ("no-userId", {}, 401, "UNAUTHORIZED_SESSION"),
    ("unknown-user", {"userId": "no-such-user"}, 404, "USER_NOT_FOUND"),
    ("amount-without-interval", {"refillAmount": 10}, 400, "REFILL_AMOUNT_AND_INTERVAL_REQUIRED"),
    ("interval-without-amount", {"refillInterval": 10}, 400, "REFILL_INTERVAL_AND_AMOUNT_REQUIRED"),
    ("remaining-negative", {"remaining": -1}, 400, "VALIDATION_ERROR"),
    ("refill-zero", {"refillAmount": 0, "refillInterval": 5}, 400, "VALIDATION_ERROR"),
    ("permissions-not-arrays", {"permissions": {"a": "b"}}, 400, "VALIDATION_ERROR"),
    ("permissions-null", {"permissions": None}, 400, "VALIDATION_ERROR"),
    ("rate-limit-fraction", {"rateLimitMax": 1.5}, 400, "VALIDATION_ERROR"),
    ("rate-limit-huge", {"rateLimitTimeWindow": 2 ** 31}, 400, "VALIDATION_ERROR"),
    ("rate-enabled-string", {"rateLimitEnabled": "true"}, 400, "VALIDATION_ERROR"),
    ("userId-object", {"userId": {"a": 1}}, 400, "VALIDATION_ERROR"),
    ("expires-small", {"expiresIn": 60}, 400, "EXPIRES_IN_IS_TOO_SMALL"),
]


@pytest.mark.parametrize("body,status,code", [c[1:] for c in INTERNAL_CREATE_ERRORS],
                         ids=[c[0] for c in INTERNAL_CREATE_ERRORS])
def test_internal_create_errors(api, alice, db, body, status, code):
    b = dict(body)
    if "userId" not in b and code not in ("UNAUTHORIZED_SESSION",):
        b["userId"] = alice.id
    owners = (alice.id, str(b.get("userId")))
    n = db.scalar('select count(*) from "apikey" where "referenceId" in %s', (owners,))
    assert_error(api.internal("api-key/create", b), status, code)
    assert db.scalar('select count(*) from "apikey" where "referenceId" in %s', (owners,)) == n


def test_internal_update(api, alice, bob, db, revocations):
    k = api.make(alice)
    revocations.drain(0.2)
    r = api.internal("api-key/update", {"keyId": k["id"], "userId": alice.id, "remaining": 7,
                                        "refillAmount": 3, "refillInterval": 2000, "rateLimitMax": 50,
                                        "rateLimitEnabled": False, "permissions": {"x": ["y"]},
                                        "enabled": False, "name": "by-service"})
    assert r.status_code == 200, r.text
    u = r.json()
    assert list(u) == ROW_FIELDS
    assert (u["remaining"], u["refillAmount"], u["refillInterval"], u["rateLimitMax"]) == (7, 3, 2000, 50)
    assert u["rateLimitEnabled"] is False and u["enabled"] is False and u["permissions"] == {"x": ["y"]}
    assert_published(revocations, [H.token_hash(k["key"])], "internal update")
    # permissions: null clears them (stored as the text null, as Better Auth does)
    u = api.internal("api-key/update", {"keyId": k["id"], "userId": alice.id, "permissions": None}).json()
    assert u["permissions"] is None and row(db, k["id"])["permissions"] == "null"
    assert_error(api.internal("api-key/update", {"keyId": k["id"], "userId": bob.id, "name": "x"}),
                 404, "KEY_NOT_FOUND")
    assert_error(api.internal("api-key/update", {"keyId": k["id"], "name": "x"}), 401, "UNAUTHORIZED_SESSION")
    assert_error(api.internal("api-key/update", {"keyId": k["id"], "userId": alice.id, "remaining": 0}),
                 400, "VALIDATION_ERROR")
    assert_error(api.internal("api-key/update", {"keyId": k["id"], "userId": alice.id, "refillAmount": 3}),
                 400, "REFILL_AMOUNT_AND_INTERVAL_REQUIRED")
    assert_error(api.internal("api-key/update", {"keyId": k["id"], "userId": alice.id}),
                 400, "NO_VALUES_TO_UPDATE")


# ---------------------------------------------------------------------------
# validate


def test_validate_a_good_key(api, alice):
    k = api.make(alice, {"expiresIn": 86400 * 7})
    v = api.validate({"key": k["key"]})
    assert v == {"valid": True, "kind": "api_key", "userId": alice.id, "keyId": k["id"],
                 "expiresAt": k["expiresAt"], "permissions": None}
    # it does not consume anything
    assert api.get(alice, k["id"]).json()["requestCount"] == 0


def test_validate_unknown_and_malformed_keys(api, alice):
    k = api.make(alice)
    for key in ("oc_" + "a" * 64, "", "oc_", k["key"][:-1], k["key"] + "a", "xx_" + k["key"][3:],
                k["key"].lower(), " " + k["key"]):
        v = api.validate({"key": key})
        assert v == {"valid": False, "error": {"message": "Invalid API key.", "code": "INVALID_API_KEY"}}, key


def test_validate_disabled_key(api, alice):
    k = api.make(alice)
    api.update(alice, {"keyId": k["id"], "enabled": False})
    assert api.validate({"key": k["key"]})["error"] == {"message": "API Key is disabled", "code": "KEY_DISABLED"}
    api.update(alice, {"keyId": k["id"], "enabled": True})
    assert api.validate({"key": k["key"]})["valid"] is True


def test_validate_expired_key_deletes_and_revokes_it(api, alice, db, revocations):
    k = api.make(alice, {"expiresIn": 86400})
    db.execute('update "apikey" set "expiresAt" = now() - interval \'1 second\' where id = %s', (k["id"],))
    revocations.drain(0.2)
    assert api.validate({"key": k["key"]})["error"] == {"message": "API Key has expired", "code": "KEY_EXPIRED"}
    assert row(db, k["id"]) is None            # Better Auth deletes an expired key it meets
    assert_published(revocations, [H.token_hash(k["key"])], "expired key")
    assert api.validate({"key": k["key"]})["error"]["code"] == "INVALID_API_KEY"


def test_validate_usage_and_refill(api, alice, db):
    k = api.internal("api-key/create", {"userId": alice.id, "remaining": 0}).json()
    assert api.validate({"key": k["key"]})["error"] == {"message": "API Key has reached its usage limit",
                                                       "code": "USAGE_EXCEEDED"}
    assert row(db, k["id"]) is not None, "validate must not delete a spent key (the gateway counts)"
    k2 = api.internal("api-key/create", {"userId": alice.id, "remaining": 0, "refillAmount": 5,
                                         "refillInterval": 3600000}).json()
    assert api.validate({"key": k2["key"]})["error"]["code"] == "USAGE_EXCEEDED"
    db.execute('update "apikey" set "lastRefillAt" = now() - interval \'2 hours\' where id = %s', (k2["id"],))
    assert api.validate({"key": k2["key"]})["valid"] is True          # a refill is due
    k3 = api.internal("api-key/create", {"userId": alice.id, "remaining": 2}).json()
    assert api.validate({"key": k3["key"]})["valid"] is True


def test_validate_permissions(api, alice):
    k = api.internal("api-key/create", {"userId": alice.id, "permissions": {"files": ["read", "write"]}}).json()
    assert api.validate({"key": k["key"], "permissions": {"files": ["read"]}})["valid"] is True
    assert api.validate({"key": k["key"], "permissions": {"files": ["read", "write"]}})["valid"] is True
    for want in ({"files": ["delete"]}, {"files": ["read", "delete"]}, {"logs": ["read"]}):
        v = api.validate({"key": k["key"], "permissions": want})
        assert v["error"] == {"message": "API Key not found", "code": "KEY_NOT_FOUND"}, want
    plain = api.make(alice)
    assert api.validate({"key": plain["key"], "permissions": {"files": ["read"]}})["error"]["code"] == "KEY_NOT_FOUND"


def test_validate_sessions(api, alice, secret):
    for tok in (alice.token, H.signed_value(secret, alice.token), alice.cookie_value):
        v = api.validate({"token": tok})
        assert v["valid"] is True and v["kind"] == "session" and v["userId"] == alice.id, tok[:8]
        assert re.fullmatch(r"[A-Za-z0-9]{32}", v["sessionId"]) and re.match(H.ISO_RE, v["expiresAt"])
    for tok in (alice.token + "x", H.signed_value("w" * 40, alice.token), "", "a.b",
                H.signed_value(secret, "not-a-session-token")):
        assert api.validate({"token": tok})["error"] == {"message": "Invalid token", "code": "INVALID_TOKEN"}
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"
    assert api.validate({"token": jwt})["error"]["code"] == "INVALID_TOKEN"


def test_validate_jwts(api):
    """/token's JWTs: ours by signature, iss, aud and exp, and only while their session
    lasts; a tampered or foreign one is INVALID_TOKEN."""
    import base64
    import json as _json
    u = api.http.sign_up()
    r = api.http.get("token", cookie=u.cookie)
    assert r.status_code == 200, r.text
    jwt = H.sensitive(r.json()["token"])
    v = api.validate({"token": jwt})
    assert v["valid"] is True and v["kind"] == "jwt" and v["userId"] == u.id, v
    assert re.fullmatch(r"[A-Za-z0-9]{32}", v["sessionId"]) and re.match(H.ISO_RE, v["expiresAt"])
    head, payload, sig = jwt.split(".")
    claims = _json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(_json.dumps({**claims, "sub": "someone-else"}).encode())
    for bad in (f"{head}.{forged.decode().rstrip('=')}.{sig}", f"{head}.{payload}.{sig[:-4]}AAAA",
                f"{head}.{payload}."):
        assert api.validate({"token": bad})["error"]["code"] == "INVALID_TOKEN", bad[:20]
    assert api.http.post("sign-out", cookie=u.cookie).status_code == 200
    v = api.validate({"token": jwt})
    assert v["valid"] is False and v["error"]["code"] == "SESSION_REVOKED", v


def test_validate_expired_session(api, db, redis_client, revocations):
    u = api.http.sign_up()
    db.execute('update "session" set "expiresAt" = now() - interval \'1 second\' where token = %s', (u.token,))
    revocations.drain(0.2)
    v = api.validate({"token": u.token})
    assert v["valid"] is False and v["error"]["code"] == "SESSION_EXPIRED"
    assert db.session_row(u.token) is None
    assert_published(revocations, [H.token_hash(u.token)], "expired session")


VALIDATE_BAD = [
    ("neither", {}, 400, "VALIDATION_ERROR"),
    ("both", {"key": "a", "token": "b"}, 400, "VALIDATION_ERROR"),
    ("key-number", {"key": 5}, 400, "VALIDATION_ERROR"),
    ("token-null", {"token": None}, 400, "VALIDATION_ERROR"),
    ("permissions-bad", {"key": "a", "permissions": ["read"]}, 400, "VALIDATION_ERROR"),
]


@pytest.mark.parametrize("body,status,code", [c[1:] for c in VALIDATE_BAD], ids=[c[0] for c in VALIDATE_BAD])
def test_validate_bad_bodies(api, body, status, code):
    assert_error(api.internal("validate", body), status, code)


# ---------------------------------------------------------------------------
# malformed requests


RAW_BODIES = {
    "truncated": (b'{"name":', "application/json", 400, "BAD_REQUEST"),
    "array": (b"[]", "application/json", 400, "VALIDATION_ERROR"),
    "string": (b'"x"', "application/json", 400, "VALIDATION_ERROR"),
    "empty": (b"", "application/json", 400, "VALIDATION_ERROR"),
    "form": (b"name=x", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"),
    "text": (b"{}", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    "nul": (b'{"name":"a\\u0000b"}', "application/json", 400, "BAD_REQUEST"),
    "bad-utf8": (b'{"name":"\xff"}', "application/json", 400, "BAD_REQUEST"),
    "deep-metadata": (b'{"metadata":' + b"[" * 200 + b"]" * 200 + b"}", "application/json", 400, None),
}


MALFORMED = [(c, r) for c in RAW_BODIES for r in ("api-key/create", "api-key/update", "api-key/delete")
             if c != "deep-metadata" or r == "api-key/create"]


@pytest.mark.parametrize("case,route", MALFORMED, ids=[f"{r}-{c}" for c, r in MALFORMED])
def test_malformed_bodies(api, alice, db, case, route):
    raw, ctype, status, code = RAW_BODIES[case]
    k = api.make(alice)
    before = row(db, k["id"])
    r = api.http.request("POST", route, data=raw, headers={"Content-Type": ctype}, bearer=alice.token)
    body = H.assert_4xx_json(r, status)
    if code:
        assert body["code"] == code, body
    assert db.all('select id from "apikey" where "referenceId" = %s', (alice.id,)) == [(k["id"],)]
    assert row(db, k["id"]) == before


def test_missing_content_type_is_no_body(api, alice):
    r = api.http.request("POST", "api-key/create", data=b'{"name":"x"}', bearer=alice.token)
    assert "Content-Type" not in r.request.headers or not r.request.headers["Content-Type"]
    err = assert_error(r, 400, "VALIDATION_ERROR")
    assert err["message"] == "[body] Invalid input: expected object, received undefined"
    # internal routes take JSON without a Content-Type
    r = api.http.request("POST", "/api/internal/validate", data=b'{"key":"x"}',
                         headers={"x-service-auth": INTERNAL_SECRET})
    assert r.status_code == 200 and r.json()["error"]["code"] == "INVALID_API_KEY"


def test_wrong_methods(api, alice):
    for method, path in (("GET", "api-key/create"), ("POST", "api-key/list"), ("POST", "api-key/get"),
                         ("GET", "/api/internal/validate")):
        assert_error(api.http.request(method, path, bearer=alice.token), 405, "METHOD_NOT_ALLOWED")
    assert_error(api.http.post("api-key/verify", {"key": "x"}, bearer=alice.token), 404, "NOT_FOUND")


# ---------------------------------------------------------------------------
# configuration


def test_configured_defaults(authsvc_factory, client_for, db):
    s = authsvc_factory({"APIKEY_DEFAULT_PREFIX": "pk-", "APIKEY_RATE_LIMIT_MAX": "25",
                         "APIKEY_RATE_LIMIT_WINDOW_MS": "1000", "APIKEY_ENABLE_METADATA": "false"})
    c = client_for(s)
    u = c.sign_up()
    r = c.post("api-key/create", {"name": "cfg"}, bearer=u.token)
    assert r.status_code == 200, r.text
    k = r.json()
    H.sensitive(k["key"])
    PLAINTEXT_KEYS.append(k["key"])
    assert re.fullmatch(r"pk-[a-zA-Z]{64}", k["key"]) and k["prefix"] == "pk-"
    assert k["rateLimitMax"] == 25 and k["rateLimitTimeWindow"] == 1000 and k["rateLimitEnabled"] is True
    assert_error(c.post("api-key/create", {"metadata": {"a": 1}}, bearer=u.token), 400, "METADATA_DISABLED")
    # falsy metadata is not looked at; on update metadata is silently ignored (Better Auth)
    assert c.post("api-key/create", {"metadata": None}, bearer=u.token).status_code == 200
    assert_error(c.post("api-key/update", {"keyId": k["id"], "metadata": {"a": 1}}, bearer=u.token),
                 400, "NO_VALUES_TO_UPDATE")
    assert db.one('select "rateLimitMax", "rateLimitTimeWindow", prefix from "apikey" where id = %s',
                  (k["id"],)) == (25, 1000, "pk-")


# ---------------------------------------------------------------------------
# interop: Better Auth 1.7.25 with @better-auth/api-key 1.7.5 on the same database
#
# Installs its own copy of the reference server (tests/e2e/interop/server.mjs with the
# apiKey plugin added) into $PORTCULLIS_NPM_APIKEY_DIR (default ~/.cache/portcullis/
# better-auth-apikey-1.7.5).  The plugin declares stale exact peers (@better-auth/utils
# 0.4.2, better-call 1.4.0), hence --legacy-peer-deps.  Skipped without node and npm.

from pcsupport.interop import install_ba_apikey as _install_ba_apikey, node_env as _node_env  # noqa: E402


@pytest.fixture(scope="module")
def ba(svc, main_db_url, secret, trusted_origins, tmp_root):
    d = _install_ba_apikey()
    port = H.free_port()
    logdir = tmp_root / "apikeys"
    env = {"DATABASE_URL": main_db_url, "BETTER_AUTH_SECRET": secret,
           "BETTER_AUTH_URL": f"http://127.0.0.1:{port}", "TRUSTED_ORIGINS": ",".join(trusted_origins),
           "PORT": str(port)}
    proc = H.Proc(["node", "server-apikey.mjs"], env=_node_env(env), cwd=str(d),
                  stdout=logdir / f"ba-apikey-{port}.stdout", stderr=logdir / f"ba-apikey-{port}.stderr",
                  name="better-auth-apikey")

    Srv = types.SimpleNamespace(base_url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port, env=env)
    try:
        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}: {H.tail(proc.stderr_path)}")
            return f"ready {port}" in H.tail(proc.stdout_path, 2000)
        H.wait_until(ready, 30, what="Better Auth with the apiKey plugin")
        import requests
        r = requests.get(Srv.base_url + "/api/auth/ok", timeout=20)   # its schema check
        assert r.status_code == 200 and proc.poll() is None, \
            f"Better Auth refused the schema: {r.status_code} {H.tail(proc.stderr_path)}"
        yield Srv
    finally:
        proc.stop(signal.SIGTERM, timeout=10)


@pytest.fixture
def bac(ba):
    c = H.ApiClient(ba)
    try:
        yield c
    finally:
        c.close()


def test_interop_keys_made_by_authsvc_in_better_auth(api, bac, alice):
    k = api.make(alice, {"name": "from-authsvc", "metadata": {"a": [1]}, "expiresIn": 86400 * 3})
    cookie = bac.cookie_header(alice.token)
    g = bac.get("api-key/get", params={"id": k["id"]}, cookie=cookie)
    assert g.status_code == 200, g.text
    assert g.json() == api.get(alice, k["id"]).json(), "the two servers answer differently for one row"
    assert list(g.json()) == ROW_FIELDS
    assert k["id"] in [x["id"] for x in bac.get("api-key/list", cookie=cookie).json()["apiKeys"]]
    # Better Auth verifies it (enableSessionForAPIKeys turns it into a session)
    s = bac.get("get-session", headers={"x-api-key": k["key"]})
    assert s.status_code == 200 and s.json()["user"]["id"] == alice.id, s.text
    assert api.update(alice, {"keyId": k["id"], "enabled": False}).status_code == 200
    s = bac.get("get-session", headers={"x-api-key": k["key"]})
    assert s.status_code == 401 and s.json()["code"] == "KEY_DISABLED", s.text


def test_interop_keys_made_by_better_auth_in_authsvc(api, bac, alice, db, revocations):
    cookie = bac.cookie_header(alice.token)
    r = bac.post("api-key/create", {"name": "from-ba", "metadata": {"b": 2}}, cookie=cookie)
    assert r.status_code == 200, r.text
    k = api._remember(r).json()
    assert list(k) == CREATE_FIELDS
    g = api.get(alice, k["id"])
    assert g.status_code == 200 and g.json() == bac.get("api-key/get", params={"id": k["id"]},
                                                        cookie=cookie).json()
    assert api.validate({"key": k["key"]})["keyId"] == k["id"]
    assert k["id"] in [x["id"] for x in api.list(alice).json()["apiKeys"]]
    revocations.drain(0.2)
    assert api.delete(alice, {"keyId": k["id"]}).json() == {"success": True}
    assert_published(revocations, [H.token_hash(k["key"])], "delete of a Better Auth key")
    assert bac.get("api-key/get", params={"id": k["id"]}, cookie=cookie).status_code == 404


# ---------------------------------------------------------------------------
# the plaintext key never reaches a log (runs last in this module)


def test_zz_keys_never_in_the_log(svc):
    if len(PLAINTEXT_KEYS) < 20:
        pytest.skip(f"run the whole module: only {len(PLAINTEXT_KEYS)} keys were made")
    svc.stop(timeout=10)
    texts = []
    for p in (svc.log_path, svc.stderr_path, svc.stdout_path):
        try:
            texts.append(p.read_text(errors="replace"))
        except OSError:
            pass
    blob = "\n".join(texts)
    assert "/api/auth/api-key/create" in blob, "the log has no request lines"
    leaked = [k[:8] for k in PLAINTEXT_KEYS if k in blob or k[3:] in blob]
    assert not leaked, f"{len(leaked)} API key(s) in the authsvc log: {leaked[:5]}"
    assert INTERNAL_SECRET not in blob
