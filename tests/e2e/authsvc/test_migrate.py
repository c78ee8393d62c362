"""`authsvc migrate`: Better Auth 1.7's tables exactly (compat doc §1), idempotent, and
working on a database where a Better Auth server already created the tables."""

import os

import pytest

import pcsupport as H

# DDL printed by Better Auth 1.7.25's getMigrations(...).compileMigrations() on an empty
# PostgreSQL 15 database (emailAndPassword + bearer, default options).
BETTER_AUTH_DDL = '''
create table "user" ("id" text not null primary key, "name" text not null, "email" text not null unique, "emailVerified" boolean not null, "image" text, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz default CURRENT_TIMESTAMP not null);
create table "session" ("id" text not null primary key, "expiresAt" timestamptz not null, "token" text not null unique, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz not null, "ipAddress" text, "userAgent" text, "userId" text not null references "user" ("id") on delete cascade);
create table "account" ("id" text not null primary key, "accountId" text not null, "providerId" text not null, "userId" text not null references "user" ("id") on delete cascade, "accessToken" text, "refreshToken" text, "idToken" text, "accessTokenExpiresAt" timestamptz, "refreshTokenExpiresAt" timestamptz, "scope" text, "password" text, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz not null);
create table "verification" ("id" text not null primary key, "identifier" text not null, "value" text not null, "expiresAt" timestamptz not null, "createdAt" timestamptz default CURRENT_TIMESTAMP not null, "updatedAt" timestamptz default CURRENT_TIMESTAMP not null);
create index "session_userId_idx" on "session" ("userId");
create index "account_userId_idx" on "account" ("userId");
create index "verification_identifier_idx" on "verification" ("identifier");
'''

# table -> column -> (type, nullable, has a DB default)
EXPECTED = {
    "user": {
        "id": ("text", False, False), "name": ("text", False, False), "email": ("text", False, False),
        "emailVerified": ("boolean", False, False), "image": ("text", True, False),
        "createdAt": ("timestamp with time zone", False, True),
        "updatedAt": ("timestamp with time zone", False, True),
    },
    "session": {
        "id": ("text", False, False), "expiresAt": ("timestamp with time zone", False, False),
        "token": ("text", False, False), "createdAt": ("timestamp with time zone", False, True),
        "updatedAt": ("timestamp with time zone", False, None), "ipAddress": ("text", True, False),
        "userAgent": ("text", True, False), "userId": ("text", False, False),
    },
    "account": {
        "id": ("text", False, False), "accountId": ("text", False, False), "providerId": ("text", False, False),
        "userId": ("text", False, False), "accessToken": ("text", True, False),
        "refreshToken": ("text", True, False), "idToken": ("text", True, False),
        "accessTokenExpiresAt": ("timestamp with time zone", True, False),
        "refreshTokenExpiresAt": ("timestamp with time zone", True, False),
        "scope": ("text", True, False), "password": ("text", True, False),
        "createdAt": ("timestamp with time zone", False, True),
        "updatedAt": ("timestamp with time zone", False, None),
    },
    "verification": {
        "id": ("text", False, False), "identifier": ("text", False, False), "value": ("text", False, False),
        "expiresAt": ("timestamp with time zone", False, False),
        "createdAt": ("timestamp with time zone", False, True),
        "updatedAt": ("timestamp with time zone", False, True),
    },
}


def columns(conn, table):
    with conn.cursor() as cur:
        cur.execute("select column_name, data_type, is_nullable, column_default from information_schema.columns "
                    "where table_schema = 'public' and table_name = %s", (table,))
        return {r[0]: (r[1], r[2] == "YES", r[3]) for r in cur.fetchall()}


def schema_fingerprint(conn):
    with conn.cursor() as cur:
        cur.execute("select table_name, column_name, data_type, is_nullable, coalesce(column_default, '') "
                    "from information_schema.columns where table_schema = 'public' order by 1, 2")
        cols = cur.fetchall()
        cur.execute("select tablename, indexname, indexdef from pg_indexes where schemaname = 'public' order by 1, 2")
        idx = cur.fetchall()
        cur.execute("select conrelid::regclass::text, conname, pg_get_constraintdef(oid) from pg_constraint "
                    "where connamespace = 'public'::regnamespace order by 1, 2")
        cons = cur.fetchall()
        cur.execute("select tablename from pg_tables where schemaname = 'public' order by 1")
        tables = [r[0] for r in cur.fetchall()]
        counts = {}
        for t in tables:
            cur.execute(f'select count(*) from "{t}"')
            counts[t] = cur.fetchone()[0]
    return cols, idx, cons, tables, counts


def migrate(env, timeout=60):
    r = H.run_authsvc(["migrate"], env=env, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


@pytest.fixture
def fresh_db(pg):
    """make(prefix) -> (name, url, autocommit connection) of a new empty database."""
    conns = []

    def make(prefix="mig"):
        name = f"{prefix}_{os.urandom(4).hex()}"
        url = pg.create_database(name)
        conns.append(pg.connect(name))
        return name, url, conns[-1]
    yield make
    for c in conns:
        c.close()


def env_for(url, secret, redis_srv):
    return {"DATABASE_URL": url, "BETTER_AUTH_SECRET": secret, "REDIS_URL": redis_srv.url}


def test_fresh_schema_matches_better_auth(fresh_db, secret, redis_srv, authsvc):
    name, url, conn = fresh_db()
    rc, out = migrate(env_for(url, secret, redis_srv))
    assert rc == 0, out
    for table, cols in EXPECTED.items():
        got = columns(conn, table)
        assert got, f'table "{table}" missing'
        for col, (typ, nullable, has_default) in cols.items():
            assert col in got, f'"{table}"."{col}" missing (columns are camelCase quoted identifiers)'
            gtyp, gnull, gdef = got[col]
            assert gtyp == typ, f'"{table}"."{col}" is {gtyp}, Better Auth has {typ}'
            assert gnull == nullable, f'"{table}"."{col}" nullable={gnull}, Better Auth has {nullable}'
            if has_default:
                assert gdef and ("CURRENT_TIMESTAMP" in gdef.upper() or "now()" in gdef), \
                    f'"{table}"."{col}" needs DEFAULT CURRENT_TIMESTAMP (Better Auth relies on it)'
        extra = set(got) - set(cols)
        for col in extra:
            assert got[col][1] or got[col][2], \
                f'extra column "{table}"."{col}" is NOT NULL without a default: Better Auth inserts would fail'
    with conn.cursor() as cur:
        cur.execute("select indexname, indexdef from pg_indexes where schemaname = 'public'")
        idx = dict(cur.fetchall())
    for i, col in (("session_userId_idx", "userId"), ("account_userId_idx", "userId"),
                   ("verification_identifier_idx", "identifier")):
        assert i in idx, f"index {i} missing: {sorted(idx)}"
        assert f"({col})" in idx[i].replace('"', ""), idx[i]
    uniques = [d for d in idx.values() if "UNIQUE" in d.upper()]
    assert any('"user"' in d and '(email)' in d.replace('"', '') for d in uniques), uniques
    assert any("session" in d and "(token)" in d.replace('"', '') for d in uniques), uniques
    with conn.cursor() as cur:
        cur.execute("select conrelid::regclass::text, pg_get_constraintdef(oid) from pg_constraint "
                    "where contype = 'f' and connamespace = 'public'::regnamespace")
        fks = cur.fetchall()
    for table in ("session", "account"):
        defs = [d for t, d in fks if t.strip('"') == table]
        assert any('REFERENCES "user"(id)' in d and "ON DELETE CASCADE" in d for d in defs), (table, defs)


def test_migrate_twice_is_idempotent(fresh_db, secret, redis_srv, authsvc):
    name, url, conn = fresh_db()
    env = env_for(url, secret, redis_srv)
    rc, out = migrate(env)
    assert rc == 0, out
    first = schema_fingerprint(conn)
    rc, out = migrate(env)
    assert rc == 0, f"second migrate failed:\n{out}"
    assert schema_fingerprint(conn) == first, "a second migrate changed the schema or the records"
    rc, out = migrate(env)
    assert rc == 0, out


def test_main_database_migrate_again_keeps_data(authsvc, client, main_db_url, secret, redis_srv):
    u = client.sign_up()
    rc, out = migrate(env_for(main_db_url, secret, redis_srv))
    assert rc == 0, out
    client.sign_in(u.email, u.password)
    assert client.session_of(u) is not None


def _seed_better_auth_user(conn, secret):
    """Rows as a Better Auth server writes them (compat doc §1, §2, §3)."""
    uid, aid, sid, token = H.generate_id(), H.generate_id(), H.generate_id(), H.generate_id()
    email = H.unique_email("ba")
    password = H.new_password("BA")
    H.sensitive(token)
    with conn.cursor() as cur:
        cur.execute('insert into "user" (id, name, email, "emailVerified", image, "createdAt", "updatedAt") '
                    "values (%s, %s, %s, false, null, now(), now())", (uid, "From Better Auth", email))
        cur.execute('insert into "account" (id, "accountId", "providerId", "userId", password, "createdAt", '
                    '"updatedAt") values (%s, %s, %s, %s, %s, now(), now())',
                    (aid, uid, "credential", uid, H.scrypt_hash(password)))
        cur.execute('insert into "session" (id, "expiresAt", token, "createdAt", "updatedAt", "ipAddress", '
                    '"userAgent", "userId") values (%s, now() + interval \'7 days\', %s, now(), now(), %s, %s, %s)',
                    (sid, token, "", "", uid))
    return uid, email, password, token


def test_migrate_on_better_auth_tables(fresh_db, pg, secret, redis_srv, authsvc_factory, client_for):
    name, url, conn = fresh_db("ba")
    with conn.cursor() as cur:
        cur.execute(BETTER_AUTH_DDL)
    uid, email, password, token = _seed_better_auth_user(conn, secret)
    before = {t: columns(conn, t) for t in EXPECTED}
    env = env_for(url, secret, redis_srv)
    rc, out = migrate(env)
    assert rc == 0, f"migrate on Better Auth's own tables failed:\n{out}"
    rc, out = migrate(env)
    assert rc == 0, out
    for t in EXPECTED:
        after = columns(conn, t)
        for col, spec in before[t].items():
            assert after.get(col, (None, None))[:2] == spec[:2], \
                f'migrate changed "{t}"."{col}": {spec} -> {after.get(col)}'
    with conn.cursor() as cur:
        cur.execute('select count(*) from "user"')
        assert cur.fetchone()[0] == 1

    svc = authsvc_factory(database=name, migrate=False, name="authsvc-on-ba")
    c = client_for(svc)
    s = c.session_of(cookie=c.cookie_header(token))
    assert s is not None and s["user"]["id"] == uid, "a session written by Better Auth was not accepted"
    u = c.sign_in(email, password)
    assert u.id == uid
    u2 = c.sign_up()
    assert c.session_of(u2) is not None


def test_migrate_on_tables_missing_a_column(fresh_db, secret, redis_srv):
    """Either fail naming what is missing, or add it: never leave a schema authsvc can't use."""
    name, url, conn = fresh_db("partial")
    with conn.cursor() as cur:
        cur.execute(BETTER_AUTH_DDL.replace('"ipAddress" text, ', ""))
    rc, out = migrate(env_for(url, secret, redis_srv))
    if rc == 0:
        assert "ipAddress" in columns(conn, "session"), "migrate succeeded but session.ipAddress is missing"
    else:
        assert "ipAddress" in out, f"migrate failed without naming the missing column:\n{out}"


def test_migrate_keeps_plugin_columns_and_tables(fresh_db, secret, redis_srv):
    name, url, conn = fresh_db("plugins")
    with conn.cursor() as cur:
        cur.execute(BETTER_AUTH_DDL)
        cur.execute('alter table "user" add column "twoFactorEnabled" boolean')
        cur.execute('create table "twoFactor" ("id" text not null primary key, "secret" text not null, '
                    '"backupCodes" text not null, "userId" text not null references "user" ("id") on delete cascade)')
    rc, out = migrate(env_for(url, secret, redis_srv))
    assert rc == 0, out
    assert "twoFactorEnabled" in columns(conn, "user")
    assert columns(conn, "twoFactor")
