-- Portcullis migration 0002: the API key table of @better-auth/api-key 1.7
-- (better-auth-compat.md §1.2 and §4): keys are stored as the base64url
-- SHA-256 of the full key, owned by referenceId (a user id, no foreign key).
-- The gateway looks keys up here; authsvc's key management comes later.

create table if not exists "apikey" (
    "id" text not null primary key,
    "configId" text not null,
    "name" text,
    "start" text,
    "referenceId" text not null,
    "prefix" text,
    "key" text not null,
    "refillInterval" integer,
    "refillAmount" integer,
    "lastRefillAt" timestamptz,
    "enabled" boolean,
    "rateLimitEnabled" boolean,
    "rateLimitTimeWindow" integer,
    "rateLimitMax" integer,
    "requestCount" integer,
    "remaining" integer,
    "lastRequest" timestamptz,
    "expiresAt" timestamptz,
    "createdAt" timestamptz not null,
    "updatedAt" timestamptz not null,
    "permissions" text,
    "metadata" text
);

create index if not exists "apikey_configId_idx" on "apikey" ("configId");
create index if not exists "apikey_referenceId_idx" on "apikey" ("referenceId");
create index if not exists "apikey_key_idx" on "apikey" ("key");
