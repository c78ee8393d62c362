#!/bin/bash
# Reproduce the observations in FACTS.md against a real Better Auth 1.7.25.
#
#   tests/e2e/interop/capture.sh OUTDIR
#
# Starts a private PostgreSQL 15 (initdb into a temp dir, 127.0.0.1 only),
# prints Better Auth's DDL against an empty database, creates the tables with
# Better Auth's own migrations, starts server.mjs, and runs a fixed list of
# curl requests. Each request and its raw response (curl -i) is written to
# OUTDIR/NN-name.txt; database snapshots go to OUTDIR/db-*.txt. Everything it
# started is stopped (by PID) and the temp dir removed on exit.
#
# Env: PG_BIN (default /usr/lib/postgresql/15/bin), PG_PORT (55432),
#      BA_PORT (3111), PORTCULLIS_NPM_DIR (see install.sh).
# When run as root, PostgreSQL runs as the `postgres` user via runuser.
set -euo pipefail

OUT=${1:?usage: capture.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${PG_PORT:-55432}
BA_PORT=${BA_PORT:-3111}
NPM_DIR=$("$here/install.sh")

TMP=$(mktemp -d /tmp/portcullis-interop.XXXXXX)
SERVER_PID=
asuser() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
	set +e
	if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
	if [ -f "$TMP/data/postmaster.pid" ]; then asuser "$PG_BIN/pg_ctl" -D "$TMP/data" -m fast -w stop >/dev/null; fi
	rm -rf "$TMP"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres:postgres "$TMP"
chmod 700 "$TMP"

asuser "$PG_BIN/initdb" -D "$TMP/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$TMP/initdb.log"
asuser "$PG_BIN/pg_ctl" -D "$TMP/data" -l "$TMP/pg.log" -w \
	-o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$TMP" start >/dev/null
PSQL="$PG_BIN/psql -h 127.0.0.1 -p $PG_PORT -U postgres -X -q -P pager=off -v ON_ERROR_STOP=1"
$PSQL -d postgres -c 'create database ddl_empty' -c 'create database ba'

export BETTER_AUTH_SECRET=portcullis-interop-secret-0123456789abcdef
export BETTER_AUTH_URL=http://127.0.0.1:$BA_PORT
export TRUSTED_ORIGINS=http://localhost:5173
unset NODE_ENV TEST || true
DB=postgres://postgres@127.0.0.1:$PG_PORT

(cd "$NPM_DIR" && DATABASE_URL=$DB/ddl_empty node server.mjs --print-ddl) >"$OUT/ddl.sql"
$PSQL -d ddl_empty -At -c "select count(*) from pg_tables where schemaname='public'" >"$OUT/ddl-empty-tables-after.txt"
(cd "$NPM_DIR" && DATABASE_URL=$DB/ba node server.mjs --migrate) >"$OUT/migrate.txt"
(cd "$NPM_DIR" && DATABASE_URL=$DB/ba node server.mjs --print-ddl) >"$OUT/ddl-after-migrate.sql"
$PSQL -d ba -c '\d "user"' -c '\d session' -c '\d account' -c '\d verification' >"$OUT/db-schema.txt"

(cd "$NPM_DIR" && PORT=$BA_PORT DATABASE_URL=$DB/ba exec node server.mjs >"$TMP/server.out" 2>"$OUT/server-stderr.txt") &
SERVER_PID=$!
for _ in $(seq 100); do grep -q '^ready ' "$TMP/server.out" 2>/dev/null && break; sleep 0.1; done
grep -q "^ready $BA_PORT\$" "$TMP/server.out" || { echo "server did not start" >&2; cat "$OUT/server-stderr.txt" >&2; exit 1; }
cp "$TMP/server.out" "$OUT/server-stdout.txt"

B=http://127.0.0.1:$BA_PORT/api/auth
n=0
LAST=
req() { # name, curl args...
	local name=$1; shift
	n=$((n+1)); LAST=$(printf '%s/%02d-%s.txt' "$OUT" $n "$name")
	{ printf '$ curl'; printf ' %q' "$@"; printf '\n'; curl -sS -i "$@" || echo "(curl exit status $?)"; printf '\n'; } >"$LAST" 2>&1
}
hdr() { grep -i "^$1:" "$LAST" | head -1 | sed -E 's/^[^:]+: //' | tr -d '\r'; }
cookie_of() { printf 'better-auth.session_token=%s' "$(node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$1")"; }
snap() { # file, sql...
	local f=$OUT/$1; shift
	: >"$f"
	for q in "$@"; do
		{ echo "=> $q"; $PSQL -d ba -x -c "\\pset null '<NULL>'" -c "$q"; echo "-- as JSON (row_to_json, column order):"; $PSQL -d ba -At -c "select row_to_json(t) from ($q) t"; echo; } >>"$f"
	done
}
J='Content-Type: application/json'
U='select * from "user" order by "createdAt"'
A='select * from account order by "createdAt"'
S='select * from session order by "createdAt"'
V='select * from verification order by "createdAt"'

# --- anonymous / sign-up -------------------------------------------------------
req get-session-none "$B/get-session"
req signup-ok -X POST "$B/sign-up/email" -H "$J" -d '{"name":"Alice Example","email":"Alice@Example.COM","password":"correct-horse-1"}'
snap db-after-signup.txt "$U" "$A" "$S" "$V"
req signup-duplicate -X POST "$B/sign-up/email" -H "$J" -d '{"name":"Alice Again","email":"alice@example.com","password":"correct-horse-1"}'
req signup-duplicate-case -X POST "$B/sign-up/email" -H "$J" -d '{"name":"Alice Again","email":"ALICE@EXAMPLE.COM","password":"correct-horse-1"}'
req signup-short-password -X POST "$B/sign-up/email" -H "$J" -d '{"name":"Bob","email":"bob@example.com","password":"short"}'
req signup-long-password -X POST "$B/sign-up/email" -H "$J" -d "{\"name\":\"Bob\",\"email\":\"bob@example.com\",\"password\":\"$(printf 'x%.0s' $(seq 129))\"}"
req signup-invalid-email -X POST "$B/sign-up/email" -H "$J" -d '{"name":"Bob","email":"not-an-email","password":"correct-horse-1"}'
req signup-malformed-json -X POST "$B/sign-up/email" -H "$J" -d '{"name":"Bob",'
req signup-missing-name -X POST "$B/sign-up/email" -H "$J" -d '{"email":"bob@example.com","password":"correct-horse-1"}'
req signup-missing-all -X POST "$B/sign-up/email" -H "$J" -d '{}'
req signup-no-body -X POST "$B/sign-up/email"
req signup-array-body -X POST "$B/sign-up/email" -H "$J" -d '[]'
req signup-wrong-types -X POST "$B/sign-up/email" -H "$J" -d '{"name":1,"email":true,"password":null}'
req signup-empty-name -X POST "$B/sign-up/email" -H "$J" -d '{"name":"","email":"empty-name@example.com","password":"correct-horse-1"}'
req signup-untrusted-origin -X POST "$B/sign-up/email" -H "$J" -H 'Origin: http://evil.example' -d '{"name":"Eve","email":"eve@example.com","password":"correct-horse-1"}'
req signup-emailverified-true -X POST "$B/sign-up/email" -H 'Content-Type: application/json; charset=utf-8' -d '{"name":"Mallory","email":"mallory@example.com","password":"correct-horse-1","emailVerified":true,"id":"chosen-id","role":"admin"}'
snap db-after-signup-mallory.txt "select * from \"user\" where email='mallory@example.com'"

# --- sign-in ---------------------------------------------------------------------
req signin-missing-password -X POST "$B/sign-in/email" -H "$J" -d '{"email":"alice@example.com"}'
req signin-invalid-email -X POST "$B/sign-in/email" -H "$J" -d '{"email":"nope","password":"correct-horse-1"}'
req signin-malformed-json -X POST "$B/sign-in/email" -H "$J" -d '{"email":'
req signin-wrong-password -X POST "$B/sign-in/email" -H "$J" -d '{"email":"alice@example.com","password":"wrong-password-1"}'
req signin-unknown-email -X POST "$B/sign-in/email" -H "$J" -d '{"email":"nobody@example.com","password":"correct-horse-1"}'
req signin-ok -X POST "$B/sign-in/email" -H "$J" -H 'User-Agent: interop-test/1.0' -H 'X-Forwarded-For: 203.0.113.7' -d '{"email":"ALICE@example.com","password":"correct-horse-1"}'
TOKEN=$(hdr set-auth-token)
RAW=${TOKEN%%.*}
COOKIE=$(cookie_of "$TOKEN")
snap db-after-signin.txt "$S"

# --- get-session -----------------------------------------------------------------
req get-session-cookie "$B/get-session" -H "Cookie: $COOKIE"
req get-session-bearer "$B/get-session" -H "Authorization: Bearer $TOKEN"
req get-session-bearer-lowercase "$B/get-session" -H "Authorization: bearer $TOKEN"
req get-session-bearer-raw "$B/get-session" -H "Authorization: Bearer $RAW"
req get-session-bearer-badsig "$B/get-session" -H "Authorization: Bearer $RAW.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
req get-session-cookie-badsig "$B/get-session" -H "Cookie: better-auth.session_token=$RAW.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D"
req get-session-cookie-unsigned "$B/get-session" -H "Cookie: better-auth.session_token=$RAW"
req get-session-post -X POST "$B/get-session" -H "Authorization: Bearer $TOKEN"
req get-session-trailing-slash "$B/get-session/" -H "Authorization: Bearer $TOKEN"

# --- list-sessions ---------------------------------------------------------------
req list-sessions-cookie "$B/list-sessions" -H "Cookie: $COOKIE"
req list-sessions-bearer "$B/list-sessions" -H "Authorization: Bearer $TOKEN"
req list-sessions-none "$B/list-sessions"

# --- update-user -----------------------------------------------------------------
req update-user-cookie-no-origin -X POST "$B/update-user" -H "$J" -H "Cookie: $COOKIE" -d '{"name":"Alice Renamed"}'
req update-user-cookie-bad-origin -X POST "$B/update-user" -H "$J" -H "Cookie: $COOKIE" -H 'Origin: http://evil.example' -d '{"name":"Alice Renamed"}'
req update-user-cookie-origin -X POST "$B/update-user" -H "$J" -H "Cookie: $COOKIE" -H 'Origin: http://localhost:5173' -d '{"name":"Alice Renamed","image":"https://img.example/a.png"}'
req update-user-bearer -X POST "$B/update-user" -H "$J" -H "Authorization: Bearer $TOKEN" -d '{"name":"Alice Bearer"}'
req update-user-email -X POST "$B/update-user" -H "$J" -H "Authorization: Bearer $TOKEN" -d '{"email":"new@example.com"}'
req update-user-empty -X POST "$B/update-user" -H "$J" -H "Authorization: Bearer $TOKEN" -d '{}'
req update-user-image-null -X POST "$B/update-user" -H "$J" -H "Authorization: Bearer $TOKEN" -d '{"image":null}'
req update-user-nosession -X POST "$B/update-user" -H "$J" -d '{"name":"x"}'
snap db-after-update-user.txt "$U"
req get-session-after-update "$B/get-session" -H "Authorization: Bearer $TOKEN"

# --- change-password -------------------------------------------------------------
req change-password-nosession -X POST "$B/change-password" -H "$J" -d '{"currentPassword":"correct-horse-1","newPassword":"new-horse-battery-2"}'
req change-password-missing -X POST "$B/change-password" -H "$J" -H "Authorization: Bearer $TOKEN" -d '{"newPassword":"new-horse-battery-2"}'
req change-password-wrong -X POST "$B/change-password" -H "$J" -H "Authorization: Bearer $TOKEN" -d '{"currentPassword":"wrong-password-1","newPassword":"new-horse-battery-2"}'
req change-password-short -X POST "$B/change-password" -H "$J" -H "Authorization: Bearer $TOKEN" -d '{"currentPassword":"correct-horse-1","newPassword":"short"}'
req change-password-ok -X POST "$B/change-password" -H "$J" -H "Authorization: Bearer $TOKEN" -d '{"currentPassword":"correct-horse-1","newPassword":"new-horse-battery-2"}'
snap db-after-change-password.txt "$A" "$S"
req signin-old-password -X POST "$B/sign-in/email" -H "$J" -d '{"email":"alice@example.com","password":"correct-horse-1"}'
req signin-new-password -X POST "$B/sign-in/email" -H "$J" -d '{"email":"alice@example.com","password":"new-horse-battery-2"}'
TOKEN2=$(hdr set-auth-token)
req change-password-revoke -X POST "$B/change-password" -H "$J" -H "Authorization: Bearer $TOKEN2" -d '{"currentPassword":"new-horse-battery-2","newPassword":"third-horse-battery-3","revokeOtherSessions":true}'
TOKEN3=$(hdr set-auth-token)
snap db-after-change-password-revoke.txt "$S"
req get-session-after-revoke-old "$B/get-session" -H "Authorization: Bearer $TOKEN"
req get-session-after-revoke-new "$B/get-session" -H "Authorization: Bearer $TOKEN3"

# --- sign-out --------------------------------------------------------------------
C3=$(cookie_of "$TOKEN3")
req signout-cookie-no-origin -X POST "$B/sign-out" -H "Cookie: $C3"
req signout-cookie-null-origin -X POST "$B/sign-out" -H "Cookie: $C3" -H 'Origin: null'
req signout-cookie-bad-origin -X POST "$B/sign-out" -H "Cookie: $C3" -H 'Origin: http://evil.example'
req signout-cookie-referer -X POST "$B/sign-out" -H "Cookie: $C3" -H 'Referer: http://localhost:5173/some/page'
snap db-after-signout.txt "$S"
req get-session-after-signout "$B/get-session" -H "Cookie: $C3"
req signout-no-session -X POST "$B/sign-out"
req signin-again -X POST "$B/sign-in/email" -H "$J" -d '{"email":"alice@example.com","password":"third-horse-battery-3"}'
C4=$(cookie_of "$(hdr set-auth-token)")
req signout-cookie-origin -X POST "$B/sign-out" -H "Cookie: $C4" -H "Origin: http://127.0.0.1:$BA_PORT" -H "$J" -d '{}'
req signin-again2 -X POST "$B/sign-in/email" -H "$J" -d '{"email":"alice@example.com","password":"third-horse-battery-3"}'
TOKEN5=$(hdr set-auth-token)
req signout-bearer -X POST "$B/sign-out" -H "Authorization: Bearer $TOKEN5"
req get-session-after-signout-bearer "$B/get-session" -H "Authorization: Bearer $TOKEN5"

# --- routing / content types -----------------------------------------------------
req unknown-route-get "$B/does-not-exist"
req unknown-route-post -X POST "$B/does-not-exist" -H "$J" -d '{}'
req outside-basepath "http://127.0.0.1:$BA_PORT/"
req wrong-method-get-signin "$B/sign-in/email"
req ok "$B/ok"
req options-preflight -X OPTIONS "$B/sign-in/email" -H 'Origin: http://localhost:5173' -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: content-type'
req signin-with-origin-trusted -X POST "$B/sign-in/email" -H "$J" -H 'Origin: http://localhost:5173' -d '{"email":"alice@example.com","password":"third-horse-battery-3"}'
req signin-with-cookie-no-origin -X POST "$B/sign-in/email" -H "$J" -H "Cookie: $C4" -d '{"email":"alice@example.com","password":"third-horse-battery-3"}'
req signin-remember-false -X POST "$B/sign-in/email" -H "$J" -d '{"email":"alice@example.com","password":"third-horse-battery-3","rememberMe":false}'
req signin-callbackurl -X POST "$B/sign-in/email" -H "$J" -d '{"email":"alice@example.com","password":"third-horse-battery-3","callbackURL":"/dashboard"}'
req signin-callbackurl-untrusted -X POST "$B/sign-in/email" -H "$J" -d '{"email":"alice@example.com","password":"third-horse-battery-3","callbackURL":"http://evil.example/x"}'
req signin-form -X POST "$B/sign-in/email" -H 'Content-Type: application/x-www-form-urlencoded' --data-raw 'email=alice%40example.com&password=third-horse-battery-3'
req signin-text-plain -X POST "$B/sign-in/email" -H 'Content-Type: text/plain' -d '{"email":"alice@example.com","password":"third-horse-battery-3"}'
req signin-no-content-type -X POST "$B/sign-in/email" -H 'Content-Type:' -d '{"email":"alice@example.com","password":"third-horse-battery-3"}'
req signup-second-user -X POST "$B/sign-up/email" -H "$J" -d '{"name":"Bob","email":"bob@example.com","password":"correct-horse-1","image":"https://img.example/b.png"}'
TB=$(hdr set-auth-token)

# --- session lifecycle (rows edited directly, as another writer would) ---------------
$PSQL -d ba -c "update session set \"expiresAt\" = now() + interval '5 days' where token = '${TB%%.*}'"
snap db-before-refresh.txt "select * from session where token = '${TB%%.*}'"
req get-session-sliding-refresh "$B/get-session" -H "Authorization: Bearer $TB"
snap db-after-refresh.txt "select * from session where token = '${TB%%.*}'"
req get-session-no-refresh-needed "$B/get-session" -H "Authorization: Bearer $TB"
$PSQL -d ba -c "update session set \"createdAt\" = now() - interval '2 days' where token = '${TB%%.*}'"
req list-sessions-not-fresh "$B/list-sessions" -H "Authorization: Bearer $TB"
$PSQL -d ba -c "update session set \"expiresAt\" = now() - interval '1 minute' where token = '${TB%%.*}'"
req get-session-expired "$B/get-session" -H "Authorization: Bearer $TB"
snap db-after-expired.txt "select * from session where token = '${TB%%.*}'"

snap db-final.txt "$U" "$A" "$S" "$V"
# the credential hash really is scrypt(N=16384,r=16,p=1,dkLen=64) over NFKC(password) with the salt's hex text
H=$($PSQL -d ba -At -c "select password from account a join \"user\" u on u.id=a.\"userId\" where u.email='bob@example.com'")
node -e '
const [salt,key]=process.argv[1].split(":");
const k=require("crypto").scryptSync("correct-horse-1".normalize("NFKC"),salt,64,{N:16384,r:16,p:1,maxmem:128*16384*16*2}).toString("hex");
console.log("stored:", process.argv[1]); console.log("scrypt match:", k===key);' "$H" >"$OUT/verify-scrypt.txt"
node -e '
const [tok,sig]=process.argv[1].split(".");
const m=require("crypto").createHmac("sha256",process.env.BETTER_AUTH_SECRET).update(tok).digest("base64");
console.log("set-auth-token:", process.argv[1]); console.log("HMAC-SHA256(secret, token) base64:", m, "match:", m===sig);
const t=require("crypto").createHmac("sha256",process.env.BETTER_AUTH_SECRET).update("true").digest("base64");
console.log("dont_remember value = \"true.\" + HMAC-SHA256(secret, \"true\") base64:", "true."+t, "cookie form:", encodeURIComponent("true."+t));' "$TB" >"$OUT/verify-hmac.txt"


# --- Better Auth 1.7 runtime schema check (a second server per database) ------------
# ba_drift: Better Auth's tables plus a NOT NULL column without default it never writes.
# ba_missing: no tables at all (never migrated).
$PSQL -d postgres -c 'create database ba_drift' -c 'create database ba_missing'
(cd "$NPM_DIR" && DATABASE_URL=$DB/ba_drift node server.mjs --migrate) >/dev/null
$PSQL -d ba_drift -c 'alter table session add column "extraRequired" text not null'
for db in ba_drift ba_missing; do
	port=$((BA_PORT + 1))
	: >"$TMP/server2.out"
	(cd "$NPM_DIR" && PORT=$port DATABASE_URL=$DB/$db exec node server.mjs >"$TMP/server2.out" 2>"$OUT/server-stderr-$db.txt") &
	pid2=$!
	for _ in $(seq 100); do grep -q '^ready ' "$TMP/server2.out" 2>/dev/null && break; sleep 0.1; done
	sleep 1
	{ echo "stdout: $(cat "$TMP/server2.out")"; kill -0 "$pid2" 2>/dev/null && echo "alive 1s after start" || echo "exited before any request"; } >"$OUT/server-state-$db.txt"
	req "$db-ok" "http://127.0.0.1:$port/api/auth/ok"
	req "$db-get-session" "http://127.0.0.1:$port/api/auth/get-session"
	req "$db-sign-up" -X POST "http://127.0.0.1:$port/api/auth/sign-up/email" -H "$J" -d '{"name":"Drift","email":"drift@example.com","password":"correct-horse-1"}'
	kill -0 "$pid2" 2>/dev/null && echo "alive after the requests" >>"$OUT/server-state-$db.txt" || echo "exited during the requests" >>"$OUT/server-state-$db.txt"
	kill "$pid2" 2>/dev/null || true; wait "$pid2" 2>/dev/null || true
done

echo "captured $n requests into $OUT"
