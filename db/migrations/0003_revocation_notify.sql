-- Portcullis migration 0003: revocations from every writer.
--
-- Whoever ends a credential - authsvc, a Better Auth server, an operator in
-- psql - the change NOTIFYs channel pc_revoked inside the same transaction,
-- so the notice is sent exactly when the change commits and never for a
-- change that rolls back. authsvc LISTENs and republishes each notice on the
-- Redis revocation channel, where every gateway hears it.
--
-- Payload: "s:<hash>" for a session, "k:<hash>" for an API key, where <hash>
-- is base64url-nopad(SHA-256(token)) - the apikey "key" column already holds
-- exactly that. Deleting a user cascades to its sessions, whose triggers fire.

create or replace function portcullis_b64url_sha256(t text) returns text
language sql immutable strict as $$
    select rtrim(translate(encode(sha256(convert_to(t, 'UTF8')), 'base64'), '+/', '-_'), '=')
$$;

create or replace function portcullis_session_revoked() returns trigger
language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        perform pg_notify('pc_revoked', 's:' || portcullis_b64url_sha256(old."token"));
        return old;
    end if;
    -- an update that ends the session sooner, or swaps its token
    if new."expiresAt" < old."expiresAt" or new."token" <> old."token"
       or new."userId" <> old."userId" then
        perform pg_notify('pc_revoked', 's:' || portcullis_b64url_sha256(old."token"));
    end if;
    return new;
end
$$;

create or replace function portcullis_apikey_revoked() returns trigger
language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        perform pg_notify('pc_revoked', 'k:' || old."key");
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
        perform pg_notify('pc_revoked', 'k:' || old."key");
    end if;
    return new;
end
$$;

drop trigger if exists portcullis_session_revoked on "session";
create trigger portcullis_session_revoked
    after update or delete on "session"
    for each row execute function portcullis_session_revoked();

drop trigger if exists portcullis_apikey_revoked on "apikey";
create trigger portcullis_apikey_revoked
    after update or delete on "apikey"
    for each row execute function portcullis_apikey_revoked();

-- A user's email or name is cached with each of their sessions: a change
-- sends a notice per session so gateways read the new values.
create or replace function portcullis_user_changed() returns trigger
language plpgsql as $$
begin
    if new."email" is distinct from old."email" or new."name" is distinct from old."name"
       or new."emailVerified" is distinct from old."emailVerified" then
        perform pg_notify('pc_revoked', 's:' || portcullis_b64url_sha256(s."token"))
            from "session" s where s."userId" = new."id";
    end if;
    return new;
end
$$;

drop trigger if exists portcullis_user_changed on "user";
create trigger portcullis_user_changed
    after update on "user"
    for each row execute function portcullis_user_changed();
