"""The one SQL helper of the e2e suite (fixtures `db` and `sql`): queries over an
autocommit psycopg2 connection, the rows of Better Auth's tables, and API key rows
inserted the way Better Auth stores them."""

from __future__ import annotations

import json

from .betterauth import KEY_PREFIX, generate_id, new_api_key, token_hash


class DB:
    """SQL over one autocommit psycopg2 connection, and the rows of Better Auth's tables."""

    TABLES = ("user", "session", "account", "verification")

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.rowcount

    def all(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def one(self, sql, args=None):
        rows = self.all(sql, args)
        return rows[0] if rows else None

    def scalar(self, sql, args=None):
        row = self.one(sql, args)
        return row[0] if row else None

    def dicts(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def counts(self) -> dict:
        return {t: self.scalar(f'select count(*) from "{t}"') for t in self.TABLES}

    def snapshot(self) -> dict:
        """Count and digest of every row of the core tables: detects any change at all."""
        out = {}
        for t in self.TABLES:
            # sessions that expire within a minute may be swept by the server at any time
            where = ' where x."expiresAt" > now() + interval \'1 minute\'' if t == "session" else ""
            out[t] = tuple(self.one(
                f'select count(*), md5(coalesce(string_agg(x::text, \'|\' order by x::text), \'\')) '
                f'from "{t}" x{where}'))
        return out

    def session_row(self, token):
        r = self.dicts('select * from "session" where token = %s', (token,))
        return r[0] if r else None

    def user_row(self, email=None, id=None):
        if id is not None:
            r = self.dicts('select * from "user" where id = %s', (id,))
        else:
            r = self.dicts('select * from "user" where email = %s', (email,))
        return r[0] if r else None

    def credential(self, user_id):
        r = self.dicts('select * from "account" where "userId" = %s and "providerId" = %s',
                       (user_id, "credential"))
        return r[0] if r else None

    def seconds_left(self, token):
        return self.scalar('select extract(epoch from "expiresAt" - now()) from "session" where token = %s',
                           (token,))

    def session_id(self, token):
        sid = self.scalar('select id from "session" where token = %s', (token,))
        assert sid is not None, "session row missing"
        return sid

    def close(self):
        self.conn.close()


SQL = DB        # the gateway tests' name for it


class ApiKey:
    def __init__(self, key, id, user_id):
        self.key, self.id, self.user_id = key, id, user_id
        self.hash = token_hash(key)

    def __repr__(self):
        return f"ApiKey(id={self.id!r})"


class ApiKeys:
    """Inserts rows into "apikey" the way Better Auth stores them (key = b64url(sha256))."""

    def __init__(self, db):
        self.db = db

    def create(self, user_id: str, *, permissions=None, enabled=True, expires_sql=None,
               key: str | None = None) -> ApiKey:
        key = key or new_api_key()
        kid = generate_id(32)
        perms = json.dumps(permissions) if isinstance(permissions, dict) else permissions
        self.db.execute(
            'insert into "apikey" (id, "configId", "referenceId", key, enabled, "createdAt", '
            '"updatedAt", permissions, "expiresAt", prefix, start) values '
            f'(%s, %s, %s, %s, %s, now(), now(), %s, {expires_sql or "NULL"}, %s, %s)',
            (kid, "default", user_id, token_hash(key), enabled, perms, KEY_PREFIX, key[:6]))
        return ApiKey(key, kid, user_id)

    def delete(self, k: ApiKey):
        return self.db.execute('delete from "apikey" where id = %s', (k.id,))
