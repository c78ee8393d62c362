#!/bin/sh
# Install the reference Better Auth 1.7.25 server (tests/e2e/interop) into a
# cache directory and print that directory on stdout (the only stdout line).
#
#   PORTCULLIS_NPM_DIR  target directory
#                       (default: $HOME/.cache/portcullis/better-auth-1.7.25)
#
# Idempotent: package.json, package-lock.json and server.mjs are refreshed
# every run (cheap); `npm ci` runs only when node_modules does not match the
# lock, tracked by a stamp file holding the sha256 of package-lock.json.
# Needs node + npm and access to the npm registry for the first install.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${PORTCULLIS_NPM_DIR:-${HOME:?HOME is not set}/.cache/portcullis/better-auth-1.7.25}

command -v node >/dev/null 2>&1 || { echo "install.sh: node not found" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "install.sh: npm not found" >&2; exit 1; }

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	else
		shasum -a 256 "$1" | cut -d' ' -f1
	fi
}

# Copy a file only when it differs, so a no-op run touches nothing.
sync_file() {
	if [ -f "$here/$1" ]; then
		if ! cmp -s "$here/$1" "$dir/$1"; then
			cp "$here/$1" "$dir/$1.tmp.$$"
			mv -f "$dir/$1.tmp.$$" "$dir/$1"
		fi
	else
		rm -f "$dir/$1"
	fi
}

sync_file package.json
sync_file package-lock.json
sync_file server.mjs

stamp="$dir/node_modules/.portcullis-stamp"
if [ -f "$dir/package-lock.json" ]; then
	want="lock:$(sha256 "$dir/package-lock.json")"
else
	want="nolock:$(sha256 "$dir/package.json")"
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
	&& [ -f "$dir/node_modules/better-auth/package.json" ] \
	&& [ -f "$dir/node_modules/pg/package.json" ]; then
	echo "$dir"
	exit 0
fi

echo "install.sh: installing npm packages into $dir" >&2
rm -f "$stamp"
if [ -f "$dir/package-lock.json" ]; then
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
else
	# No lock in the source tree: the stamp stays keyed on package.json.
	(cd "$dir" && npm install --no-audit --no-fund --loglevel=error) >&2
fi

# Sanity check: the exact Better Auth version we claim to match.
ver=$(cd "$dir" && node -p 'require("./node_modules/better-auth/package.json").version')
if [ "$ver" != "1.7.25" ]; then
	echo "install.sh: expected better-auth 1.7.25, got $ver" >&2
	exit 1
fi

printf '%s\n' "$want" > "$stamp.tmp.$$"
mv -f "$stamp.tmp.$$" "$stamp"
echo "$dir"
