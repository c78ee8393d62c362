-- Portcullis migration 0007: Better Auth's twoFactor plugin.
--
-- Exactly what Better Auth 1.7.25's migrate creates with twoFactor() on
-- (`BA_TWO_FACTOR=1 node server.mjs --print-ddl` on an empty database):
-- the "twoFactor" table, its two indexes, and "user"."twoFactorEnabled"
-- (nullable, no DB default: Better Auth's app writes false). "secret" and
-- "backupCodes" are Better Auth's symmetricEncrypt hex (lib/ba_jwks.h
-- pc_seal) of the TOTP secret and of the JSON array of backup codes. On a
-- database Better Auth already migrated every statement is a no-op.

alter table "user" add column if not exists "twoFactorEnabled" boolean;

create table if not exists "twoFactor" (
    "id" text not null primary key,
    "secret" text not null,
    "backupCodes" text not null,
    "userId" text not null references "user" ("id") on delete cascade,
    "verified" boolean,
    "failedVerificationCount" integer,
    "lockedUntil" timestamptz
);
alter table "twoFactor" add column if not exists "verified" boolean;
alter table "twoFactor" add column if not exists "failedVerificationCount" integer;
alter table "twoFactor" add column if not exists "lockedUntil" timestamptz;
create index if not exists "twoFactor_secret_idx" on "twoFactor" ("secret");
create index if not exists "twoFactor_userId_idx" on "twoFactor" ("userId");
