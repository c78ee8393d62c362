// Reference Better Auth 1.7.25 server for Portcullis interop tests.
//
// Configured the way a user would run it: Postgres via `pg`, email+password,
// the bearer plugin, rate limiting off. It never migrates on its own.
//
// Usage (run from the directory install.sh prints, so node_modules resolves):
//   node server.mjs               serve on 127.0.0.1:$PORT, print "ready <port>"
//   node server.mjs --print-ddl   print the DDL Better Auth would run against
//                                 $DATABASE_URL (use an EMPTY database to get
//                                 the full CREATE TABLE set), then exit
//   node server.mjs --migrate     run Better Auth's own migrations against
//                                 $DATABASE_URL (getMigrations().runMigrations),
//                                 then exit
//
// Environment:
//   DATABASE_URL        postgres://... (required)
//   BETTER_AUTH_SECRET  signing secret (required for serve; >= 32 chars advised)
//   BETTER_AUTH_URL     base URL, e.g. http://127.0.0.1:3000 (required for serve)
//   TRUSTED_ORIGINS     comma-separated extra trusted origins (optional)
//   PORT                listen port on 127.0.0.1 (default 3000; 0 = ephemeral)
//   BA_JWT              opt-in (unset = no jwt plugin, the default everything
//                       else relies on): add Better Auth's jwt plugin
//                         eddsa  jwt()                                 (plugin defaults: EdDSA/Ed25519)
//                         es256  jwt({jwks:{keyPairConfig:{alg:"ES256"}}})
//                         rs256  jwt({jwks:{keyPairConfig:{alg:"RS256"}}})
//                       and, for the tests only, POST /__portcullis/verify-jwt
//                       {"token"} -> {"payload": <auth.api.verifyJWT result>}
//                       (Better Auth's own server-only verifier, which checks
//                       the signature against the jwks table and iss/aud
//                       against the baseURL origin; payload null = refused)
//   BA_MAIL_LOG         opt-in (unset = no mail sender configured, as before):
//                       a file; emailVerification.sendVerificationEmail and
//                       emailAndPassword.sendResetPassword each append one
//                       JSON line {"kind": "verify-email"|"reset-password",
//                       "to": user.email, "url": url, "token": token} to it
//                       (fs.appendFileSync, so the line is there when the
//                       request answers). Read it with pcsupport.interop's
//                       read_mail_log(path, to=None, kind=None).
//   BA_REQUIRE_EMAIL_VERIFICATION=1
//                       emailAndPassword.requireEmailVerification: true
//   BA_AUTO_SIGN_IN_AFTER_VERIFICATION=1
//                       emailVerification.autoSignInAfterVerification: true
//   BA_REVOKE_SESSIONS_ON_PASSWORD_RESET=1
//                       emailAndPassword.revokeSessionsOnPasswordReset: true
//   BA_CHANGE_EMAIL=1   user.changeEmail.enabled: true (BA_CHANGE_EMAIL_CONFIRMATION=1
//                       adds sendChangeEmailConfirmation, kind "change-email", to BA_MAIL_LOG)
//   BA_MULTI_SESSION=1 the multiSession plugin (defaults: 5 sessions)
//   BA_DELETE_USER=1    user.deleteUser.enabled: true (BA_DELETE_USER_VERIFICATION=1 adds
//                       sendDeleteAccountVerification, kind "delete-account")
//                       (each of the three: unset/other = Better Auth's default)
//   BA_GOOGLE=<base URL of a fake provider on loopback> with BA_GOOGLE_CLIENT_ID and
//                       BA_GOOGLE_CLIENT_SECRET: socialProviders.google. Better Auth's
//                       Google provider has its endpoints built in, so this process's
//                       fetch sends https://oauth2.googleapis.com/token and Google's
//                       certs URL to <base>/token and <base>/jwks instead (the
//                       authorization URL is only handed to the browser, which the
//                       test plays); nothing else of Better Auth is touched.
//   BA_TWO_FACTOR=1     the twoFactor plugin, issuer $BA_TWO_FACTOR_ISSUER (unset: the
//                       app name); with BA_MAIL_LOG its otpOptions.sendOTP appends
//                       {"kind": "two-factor-otp", "to", "otp"} to the mail log
//
// Do not set NODE_ENV=test or TEST=1: Better Auth then disables its origin
// check, which changes the behaviour we are comparing against.

import fs from "node:fs";
import http from "node:http";
import pg from "pg";
import { betterAuth } from "better-auth";
import { bearer, jwt } from "better-auth/plugins";
import { multiSession, twoFactor } from "better-auth/plugins";
import { toNodeHandler } from "better-auth/node";
import { getMigrations } from "better-auth/db/migration";

const mode = process.argv[2] ?? "serve";
if (!["serve", "--print-ddl", "--migrate"].includes(mode)) {
	process.stderr.write(`usage: node server.mjs [--print-ddl|--migrate]\n`);
	process.exit(2);
}
if (!process.env.DATABASE_URL) {
	process.stderr.write("server.mjs: DATABASE_URL is not set\n");
	process.exit(2);
}
if (process.env.NODE_ENV === "test" || process.env.TEST) {
	process.stderr.write("server.mjs: warning: NODE_ENV=test/TEST disables Better Auth's origin check\n");
}

const trustedOrigins = (process.env.TRUSTED_ORIGINS ?? "")
	.split(",")
	.map((s) => s.trim())
	.filter(Boolean);

const JWT_MODES = {
	eddsa: undefined,
	es256: { jwks: { keyPairConfig: { alg: "ES256" } } },
	rs256: { jwks: { keyPairConfig: { alg: "RS256" } } },
};
const jwtMode = process.env.BA_JWT ?? "";
if (jwtMode && !(jwtMode in JWT_MODES)) {
	process.stderr.write(`server.mjs: BA_JWT must be one of ${Object.keys(JWT_MODES).join("|")}\n`);
	process.exit(2);
}

const mailLog = process.env.BA_MAIL_LOG ?? "";
const flag = (name) => process.env[name] === "1";
// BA_MAIL_LOG only: the "mail" Better Auth would send, one JSON line each.
const logMail = (kind) => async ({ user, url, token }) => {
	fs.appendFileSync(mailLog, JSON.stringify({ kind, to: user.email, url, token }) + "\n");
};

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });

const options = {
	database: pool,
	secret: process.env.BETTER_AUTH_SECRET,
	baseURL: process.env.BETTER_AUTH_URL,
	emailAndPassword: { enabled: true },
	plugins: jwtMode ? [bearer(), jwt(JWT_MODES[jwtMode])] : [bearer()],
	trustedOrigins,
	rateLimit: { enabled: false },
};
if (mailLog) {
	options.emailAndPassword.sendResetPassword = logMail("reset-password");
	options.emailVerification = { sendVerificationEmail: logMail("verify-email") };
}
if (flag("BA_REQUIRE_EMAIL_VERIFICATION")) options.emailAndPassword.requireEmailVerification = true;
if (flag("BA_REVOKE_SESSIONS_ON_PASSWORD_RESET")) options.emailAndPassword.revokeSessionsOnPasswordReset = true;
if (flag("BA_AUTO_SIGN_IN_AFTER_VERIFICATION")) {
	options.emailVerification = { ...(options.emailVerification ?? {}), autoSignInAfterVerification: true };
}
const googleBase = process.env.BA_GOOGLE ?? "";
if (googleBase) {
	const realFetch = globalThis.fetch;
	const redirects = {
		"https://oauth2.googleapis.com/token": `${googleBase}/token`,
		"https://www.googleapis.com/oauth2/v3/certs": `${googleBase}/jwks`,
	};
	globalThis.fetch = (input, init) => {
		const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
		const to = redirects[url.split("?")[0]];
		if (!to) return realFetch(input, init);
		const target = to + url.slice(url.split("?")[0].length);
		return realFetch(typeof input === "string" || input instanceof URL ? target : new Request(target, input), init);
	};
	options.socialProviders = {
		google: { clientId: process.env.BA_GOOGLE_CLIENT_ID, clientSecret: process.env.BA_GOOGLE_CLIENT_SECRET },
	};
}
if (flag("BA_MULTI_SESSION")) options.plugins = [...options.plugins, multiSession()];
if (flag("BA_TWO_FACTOR")) {
	const tf = {};
	if (process.env.BA_TWO_FACTOR_ISSUER) tf.issuer = process.env.BA_TWO_FACTOR_ISSUER;
	if (mailLog) {
		tf.otpOptions = {
			sendOTP: async ({ user, otp }) => {
				fs.appendFileSync(mailLog, JSON.stringify({ kind: "two-factor-otp", to: user.email, otp }) + "\n");
			},
		};
	}
	options.plugins = [...options.plugins, twoFactor(tf)];
}
// account management: user.changeEmail / user.deleteUser
if (flag("BA_CHANGE_EMAIL")) {
	options.user = { ...(options.user ?? {}), changeEmail: { enabled: true } };
	if (flag("BA_CHANGE_EMAIL_CONFIRMATION")) options.user.changeEmail.sendChangeEmailConfirmation = logMail("change-email");
}
if (flag("BA_DELETE_USER")) {
	options.user = { ...(options.user ?? {}), deleteUser: { enabled: true } };
	if (flag("BA_DELETE_USER_VERIFICATION")) options.user.deleteUser.sendDeleteAccountVerification = logMail("delete-account");
}

if (mode === "--print-ddl" || mode === "--migrate") {
	try {
		const m = await getMigrations(options);
		if (mode === "--print-ddl") {
			process.stdout.write((await m.compileMigrations()) + "\n");
		} else {
			await m.runMigrations();
			const created = m.toBeCreated.map((t) => t.table);
			const added = m.toBeAdded.map((t) => t.table);
			process.stdout.write(`migrated created=[${created.join(",")}] added=[${added.join(",")}]\n`);
		}
	} finally {
		await pool.end();
	}
	process.exit(0);
}

const auth = betterAuth(options);
const baseHandler = toNodeHandler(auth);

// BA_JWT only: Better Auth's own verifier over HTTP (the endpoint is server-only).
async function verifyJwt(req, res) {
	let raw = "";
	for await (const chunk of req) raw += chunk;
	let status = 200;
	let out;
	try {
		const { token } = JSON.parse(raw || "{}");
		const r = await auth.api.verifyJWT({ body: { token: String(token ?? "") } });
		out = { payload: r?.payload ?? null };
	} catch (e) {
		status = 500;
		out = { error: String(e?.message ?? e) };
	}
	const body = JSON.stringify(out);
	res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
	res.end(body);
}

const handler = jwtMode
	? (req, res) =>
			req.method === "POST" && req.url === "/__portcullis/verify-jwt" ? verifyJwt(req, res) : baseHandler(req, res)
	: baseHandler;

const port = Number(process.env.PORT ?? 3000);
const server = http.createServer(handler);
server.listen(port, "127.0.0.1", () => {
	process.stdout.write(`ready ${server.address().port}\n`);
});

const shutdown = () => {
	server.close(() => pool.end().finally(() => process.exit(0)));
	setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
