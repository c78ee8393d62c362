-- Portcullis migration 0006: the mail outbox.
--
-- A mail is a row, inserted in the same transaction as the token it carries
-- (a password-reset verification row, a new user), so a crash or an SMTP
-- outage between "token created" and "mail sent" loses nothing. authsvc's
-- mailer (authsvc/mailer.c) LISTENs on pc_mail, locks due rows with SKIP
-- LOCKED (several replicas share the work), hands each to SMTP, and marks it
-- sent in the transaction that locked it; a refused attempt is retried with
-- back-off ("nextAttemptAt"). Once sent, the subject and bodies (which hold
-- live links) are wiped; the row stays as a record until it is pruned.
-- Better Auth's tables are untouched.

create table if not exists portcullis_mail (
    "id" bigserial primary key,
    "kind" text not null,                 -- verify-email, reset-password, ...
    "to" text not null,
    "subject" text,
    "text" text,
    "html" text,
    "createdAt" timestamptz not null default now(),
    "nextAttemptAt" timestamptz not null default now(),
    "attempts" integer not null default 0,
    "lastError" text,
    "sentAt" timestamptz,
    "failedAt" timestamptz                -- refused for good (5xx) or too old
);
create index if not exists portcullis_mail_due
    on portcullis_mail ("nextAttemptAt") where "sentAt" is null and "failedAt" is null;

create or replace function portcullis_mail_notify() returns trigger
language plpgsql as $$
begin
    perform pg_notify('pc_mail', '');
    return null;
end $$;

drop trigger if exists portcullis_mail_notify on portcullis_mail;
create trigger portcullis_mail_notify after insert on portcullis_mail
    for each statement execute function portcullis_mail_notify();
