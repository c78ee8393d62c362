"""Better Auth's password format (compat doc §3): scrypt N=16384 r=16 p=1 dkLen=64, the salt
is the 32-char lowercase hex TEXT, the password is NFKC-normalized, stored as salt:key;
length limits count UTF-16 code units."""

import hashlib
import json
import re
import unicodedata

import pytest

import pcsupport as H
from pcsupport import assert_error

HASH_RE = re.compile(r"^[0-9a-f]{32}:[0-9a-f]{128}$")


def stored_hash(db, user_id):
    acct = db.credential(user_id)
    assert acct is not None, "no credential account row"
    return acct["password"]


def test_stored_hash_is_better_auth_scrypt(client, db):
    u = client.sign_up()
    stored = stored_hash(db, u.id)
    assert HASH_RE.match(stored), stored
    salt_hex, key_hex = stored.split(":")
    key = hashlib.scrypt(unicodedata.normalize("NFKC", u.password).encode(), salt=salt_hex.encode(),
                         n=16384, r=16, p=1, dklen=64, maxmem=128 * 1024 * 1024)
    assert key.hex() == key_hex, "the key is not scrypt(NFKC(password), salt=<hex text>, 16384, 16, 1, 64)"
    acct = db.credential(u.id)
    assert acct["accountId"] == u.id and acct["providerId"] == "credential"
    for col in ("accessToken", "refreshToken", "idToken", "scope"):
        assert acct[col] is None, col


def test_salts_are_random(client, db):
    pw = H.new_password()
    a, b = client.sign_up(password=pw), client.sign_up(password=pw)
    ha, hb = stored_hash(db, a.id), stored_hash(db, b.id)
    assert ha.split(":")[0] != hb.split(":")[0]
    assert ha != hb


def test_nfkc_password_signs_in_with_its_normal_form(client, db):
    original = H.sensitive("\ufb01x-\uff30\uff41\uff53\uff53-" + H.new_password()[3:])   # 'ﬁ' + fullwidth 'Pass'
    normal = H.sensitive(unicodedata.normalize("NFKC", original))
    assert normal != original and normal.startswith("fix-Pass-")
    u = client.sign_up(password=original)
    stored = stored_hash(db, u.id)
    assert H.scrypt_verify(normal, stored)
    assert H.scrypt_hash(normal, stored.split(":")[0]) == stored
    client.sign_in(u.email, normal)
    client.sign_in(u.email, original)


def test_decomposed_accent_signs_in_as_composed(client):
    composed = H.sensitive("caf\u00e9-" + H.new_password()[3:])
    decomposed = H.sensitive(unicodedata.normalize("NFD", composed))
    assert decomposed != composed
    u = client.sign_up(password=decomposed)
    client.sign_in(u.email, composed)


def test_raw_utf8_and_escaped_json_are_the_same_password(client):
    pw = H.sensitive("p\u00e4ss:w\u00f6rd-\U0001F600-" + H.new_password()[3:])
    email = H.unique_email("utf8")
    # requests escapes non-ASCII as \\uXXXX (the emoji as a surrogate pair) ...
    r = client.post("sign-up/email", {"name": "Utf8", "email": email, "password": pw})
    assert r.status_code == 200, r.text
    # ... and here the same password arrives as raw UTF-8
    raw = json.dumps({"email": email, "password": pw}, ensure_ascii=False).encode("utf-8")
    r = client.request("POST", "sign-in/email", data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_better_auth_written_hash_signs_in(client, db):
    """A user + credential account written as Better Auth writes them signs in on authsvc."""
    uid, aid = H.generate_id(), H.generate_id()
    email = H.unique_email("bahash")
    pw = H.sensitive("\ufb02ow-" + H.new_password())
    db.execute('insert into "user" (id, name, email, "emailVerified", "createdAt", "updatedAt") '
               "values (%s, 'BA', %s, false, now(), now())", (uid, email))
    db.execute('insert into "account" (id, "accountId", "providerId", "userId", password, "createdAt", "updatedAt") '
               "values (%s, %s, 'credential', %s, %s, now(), now())", (aid, uid, uid, H.scrypt_hash(pw)))
    u = client.sign_in(email, pw)
    assert u.id == uid
    client.sign_in(email, unicodedata.normalize("NFKC", pw))
    assert_error(client.post("sign-in/email", {"email": email, "password": pw + "x"}),
                 401, "INVALID_EMAIL_OR_PASSWORD")


def test_credential_row_must_have_account_id_equal_user_id(client, db):
    """Better Auth 1.7 only accepts the credential account whose accountId = user.id."""
    uid, aid = H.generate_id(), H.generate_id()
    email = H.unique_email("acctid")
    pw = H.new_password()
    db.execute('insert into "user" (id, name, email, "emailVerified", "createdAt", "updatedAt") '
               "values (%s, 'X', %s, false, now(), now())", (uid, email))
    db.execute('insert into "account" (id, "accountId", "providerId", "userId", password, "createdAt", "updatedAt") '
               "values (%s, %s, 'credential', %s, %s, now(), now())", (aid, "someone-else", uid, H.scrypt_hash(pw)))
    r = client.post("sign-in/email", {"email": email, "password": pw})
    assert_error(r, 401, "INVALID_EMAIL_OR_PASSWORD")


@pytest.mark.parametrize("password,ok", [
    ("\U0001F600" * 4, True),               # 4 code points, 8 UTF-16 units
    ("\u00e9" * 7, False),                  # 7 units (14 UTF-8 bytes): too short
    ("\u00e9" * 128, True),                 # 128 units (256 bytes)
    ("\u00e9" * 129, False),                # 129 units: too long
    ("\U0001F600" * 64, True),              # 128 units
    ("\U0001F600" * 65, False),             # 130 units: too long although only 65 code points
], ids=["4-emoji", "7-e-acute", "128-e-acute", "129-e-acute", "64-emoji", "65-emoji"])
def test_length_limits_count_utf16_units(client, db, password, ok):
    H.sensitive(password)
    if ok:
        u = client.sign_up(password=password)
        client.sign_in(u.email, password)
    else:
        before = db.snapshot()
        r = client.post("sign-up/email", {"name": "Len", "email": H.unique_email(), "password": password})
        units = len(password.encode("utf-16-le")) // 2
        assert_error(r, 400, "PASSWORD_TOO_SHORT" if units < 8 else "PASSWORD_TOO_LONG")
        assert db.snapshot() == before
