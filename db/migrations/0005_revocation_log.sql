-- Portcullis migration 0005: a durable revocation log.
--
-- 0003/0004 announce each revocation with NOTIFY only, so a notice sent
-- while no authsvc listened (authsvc stopped, its LISTEN connection lost)
-- was gone, and the Redis copy of a revoked credential lived on for hours.
-- Now the same triggers also append a row to portcullis_revocation in the
-- writing transaction, so the revocation commits or rolls back with the
-- change that caused it. authsvc's listener relays every row not yet
-- relayed (DEL in Redis, then PUBLISH) at start, on every (re)connect and
-- on every notice, marking it relayed in the same transaction; rows stay
-- until they are older than any cache entry they could concern, and
-- authsvc prunes them then (REVOCATION_LOG_KEEP).
--
-- tag is what the NOTIFY payload was: "s:<hash>" (a session token),
-- "k:<hash>" (an API key), "i:<session id>" (the session's JWTs), with
-- <hash> = base64url-nopad(SHA-256(token)).

create table if not exists portcullis_revocation (
    "seq" bigserial primary key,
    "tag" text not null,
    "createdAt" timestamptz not null default now(),
    "relayed" boolean not null default false
);
create index if not exists portcullis_revocation_unrelayed
    on portcullis_revocation ("seq") where not "relayed";
create index if not exists portcullis_revocation_created
    on portcullis_revocation ("createdAt");

-- One row and one notice per revocation, in the caller's transaction.
create or replace function portcullis_revoke(t text) returns void
language plpgsql as $$
begin
    insert into portcullis_revocation ("tag") values (t);
    perform pg_notify('pc_revoked', t);
end
$$;

create or replace function portcullis_session_revoked() returns trigger
language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        perform portcullis_revoke('s:' || portcullis_b64url_sha256(old."token"));
        perform portcullis_revoke('i:' || old."id");
        return old;
    end if;
    -- an update that ends the session sooner, or swaps its token
    if new."expiresAt" < old."expiresAt" or new."token" <> old."token"
       or new."userId" <> old."userId" then
        perform portcullis_revoke('s:' || portcullis_b64url_sha256(old."token"));
        if new."expiresAt" < old."expiresAt" or new."userId" <> old."userId" then
            perform portcullis_revoke('i:' || old."id");
        end if;
    end if;
    return new;
end
$$;

create or replace function portcullis_apikey_revoked() returns trigger
language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        perform portcullis_revoke('k:' || old."key");
        return old;
    end if;
    -- any change to what a gateway caches; the usage counters the gateway
    -- writes back itself (remaining, requestCount, lastRequest, lastRefillAt,
    -- updatedAt) do not count
    if new."enabled" is distinct from old."enabled"
       or new."expiresAt" is distinct from old."expiresAt"
       or new."permissions" is distinct from old."permissions"
       or new."key" <> old."key"
       or new."referenceId" <> old."referenceId"
       or new."rateLimitEnabled" is distinct from old."rateLimitEnabled"
       or new."rateLimitTimeWindow" is distinct from old."rateLimitTimeWindow"
       or new."rateLimitMax" is distinct from old."rateLimitMax"
       or new."refillInterval" is distinct from old."refillInterval"
       or new."refillAmount" is distinct from old."refillAmount" then
        perform portcullis_revoke('k:' || old."key");
    end if;
    return new;
end
$$;

create or replace function portcullis_user_changed() returns trigger
language plpgsql as $$
begin
    if new."email" is distinct from old."email" or new."name" is distinct from old."name"
       or new."emailVerified" is distinct from old."emailVerified" then
        perform portcullis_revoke('s:' || portcullis_b64url_sha256(s."token"))
            from "session" s where s."userId" = new."id";
    end if;
    return new;
end
$$;
