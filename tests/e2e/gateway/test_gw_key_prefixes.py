"""API_KEY_PREFIXES: keys whose prefix is not listed are refused by shape,
before any cache or database lookup; listed prefixes work as before."""
import pcsupport as G


def test_unlisted_prefix_refused_before_any_lookup(gateway_factory, keys, mod_user):
    g = gateway_factory({"API_KEY_PREFIXES": "pc_,oc_"}, name="gateway-prefixes")
    good = keys.create(mod_user.id)                   # pc_ + 64 letters
    r = g.get("/k/x", headers={"x-api-key": good.key})
    assert r.status_code == 200, r.text
    s0 = g.stats()
    for prefix in ("xx_", "p_", "pc", ""):
        k = prefix + G.random_letters(64)
        for headers in ({"x-api-key": k}, {"Authorization": "Bearer " + k}):
            r = g.get("/k/x", headers=headers)
            assert r.status_code == 401, (prefix, r.text)
            assert r.json()["code"] == "INVALID_API_KEY", (prefix, r.text)
    s1 = g.stats()
    assert s1["pg_queries"] == s0["pg_queries"], (s0, s1)
    assert s1["l1_negative_hits"] == s0["l1_negative_hits"], (s0, s1)


