-- Portcullis migration 0004: JWT signing keys, and revocation by session id.
--
-- "jwks" is the table of Better Auth 1.7's jwt plugin (better-auth-compat.md
-- §1.2, §7): publicKey is the public JWK's JSON, privateKey the JSON-quoted
-- hex of XChaCha20-Poly1305 over the private JWK, under SHA-256 of the
-- secret. authsvc and Better Auth servers sharing the database sign with and
-- publish the same rows.
--
-- A JWT carries its session's id (sid), not its token, so ending a session
-- now also NOTIFYs 'i:<session id>': gateways then refuse that session's
-- JWTs before they expire.

create table if not exists "jwks" (
    "id" text not null primary key,
    "publicKey" text not null,
    "privateKey" text not null,
    "createdAt" timestamptz not null,
    "expiresAt" timestamptz,
    "alg" text,
    "crv" text
);
alter table "jwks" add column if not exists "expiresAt" timestamptz;
alter table "jwks" add column if not exists "alg" text;
alter table "jwks" add column if not exists "crv" text;

create or replace function portcullis_session_revoked() returns trigger
language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        perform pg_notify('pc_revoked', 's:' || portcullis_b64url_sha256(old."token"));
        perform pg_notify('pc_revoked', 'i:' || old."id");
        return old;
    end if;
    -- an update that ends the session sooner, or swaps its token
    if new."expiresAt" < old."expiresAt" or new."token" <> old."token"
       or new."userId" <> old."userId" then
        perform pg_notify('pc_revoked', 's:' || portcullis_b64url_sha256(old."token"));
        if new."expiresAt" < old."expiresAt" or new."userId" <> old."userId" then
            perform pg_notify('pc_revoked', 'i:' || old."id");
        end if;
    end if;
    return new;
end
$$;
