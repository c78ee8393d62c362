/* Portcullis - MIT licence. See LICENSE.
 *
 * test_netaddr.c: one spelling per client address, rate-limit keys (IPv6 by
 * /64), CIDR lists, and the X-Forwarded-For walk behind trusted proxies.
 */
#include "../../lib/netaddr.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static const struct {
    const char *in;
    const char *canon; /* NULL: refused */
    const char *key;
} addr_cases[] = {
    {"203.0.113.9", "203.0.113.9", "203.0.113.9"},
    {" 203.0.113.9 ", "203.0.113.9", "203.0.113.9"},
    {"203.0.113.9:5555", "203.0.113.9", "203.0.113.9"},
    {"::ffff:203.0.113.9", "203.0.113.9", "203.0.113.9"},
    {"::FFFF:203.0.113.9", "203.0.113.9", "203.0.113.9"},
    {"::ffff:cb00:7109", "203.0.113.9", "203.0.113.9"},
    {"0:0:0:0:0:ffff:cb00:7109", "203.0.113.9", "203.0.113.9"},
    {"[::ffff:203.0.113.9]", "203.0.113.9", "203.0.113.9"},
    {"[::ffff:203.0.113.9]:443", "203.0.113.9", "203.0.113.9"},
    {"2001:db8:1:2::1", "2001:db8:1:2::1", "2001:db8:1:2::/64"},
    {"2001:DB8:1:2:FFFF::5", "2001:db8:1:2:ffff::5", "2001:db8:1:2::/64"},
    {"2001:0db8:0001:0002:0000:0000:0000:0001", "2001:db8:1:2::1", "2001:db8:1:2::/64"},
    {"[2001:db8:1:3::1]:80", "2001:db8:1:3::1", "2001:db8:1:3::/64"},
    {"::1", "::1", "::/64"},
    {"127.0.0.1", "127.0.0.1", "127.0.0.1"},
    /* refused */
    {"", NULL, NULL},
    {"unknown", NULL, NULL},
    {"203.0.113", NULL, NULL},
    {"203.0.113.09", NULL, NULL},
    {"0xcb.0.113.9", NULL, NULL},
    {"203.0.113.9:99999", NULL, NULL},
    {"203.0.113.9:", NULL, NULL},
    {"fe80::1%eth0", NULL, NULL},
    {"[::1", NULL, NULL},
    {"[::1]x", NULL, NULL},
    {"1.2.3.4, 5.6.7.8", NULL, NULL},
    {"_hidden", NULL, NULL},
};

static void test_addr_table(void **state)
{
    for (size_t i = 0; i < sizeof addr_cases / sizeof addr_cases[0]; i++) {
        struct pc_addr a;
        const char *in = addr_cases[i].in;
        bool ok = pc_addr_parse(in, strlen(in), &a);
        if (ok != (addr_cases[i].canon != NULL))
            fail_msg("%s: %s", in, ok ? "accepted" : "refused");
        if (!ok)
            continue;
        char t[PC_ADDR_STRLEN], k[PC_ADDR_STRLEN];
        pc_addr_format(&a, t, sizeof t);
        pc_addr_limit_key(&a, k, sizeof k);
        if (strcmp(t, addr_cases[i].canon) != 0)
            fail_msg("%s: canonical %s, want %s", in, t, addr_cases[i].canon);
        if (strcmp(k, addr_cases[i].key) != 0)
            fail_msg("%s: key %s, want %s", in, k, addr_cases[i].key);
    }
}

static const struct {
    const char *cidr, *addr;
    int match; /* -1: the cidr is refused */
} cidr_cases[] = {
    {"10.0.0.0/8", "10.200.3.4", 1},
    {"10.0.0.0/8", "11.0.0.1", 0},
    {"10.0.0.0/8", "::ffff:10.1.1.1", 1},
    {"127.0.0.1", "127.0.0.1", 1},
    {"127.0.0.1", "127.0.0.2", 0},
    {"0.0.0.0/0", "198.51.100.1", 1},
    {"0.0.0.0/0", "2001:db8::1", 0},
    {"fd00::/8", "fd12:3456::1", 1},
    {"fd00::/8", "fe80::1", 0},
    {"::ffff:10.0.0.0/104", "10.9.9.9", 1},
    {"172.16.0.0/12", "172.31.255.255", 1},
    {"172.16.0.0/12", "172.32.0.0", 0},
    {"10.0.0.1/8", "10.0.0.1", -1}, /* host bits set */
    {"10.0.0.0/33", "10.0.0.1", -1},
    {"10.0.0.0/", "10.0.0.1", -1},
    {"10.0.0.0/x", "10.0.0.1", -1},
    {"[::1]", "::1", -1},
    {"10.0.0.1:80", "10.0.0.1", -1},
    {"example.com", "10.0.0.1", -1},
};

static void test_cidr_table(void **state)
{
    for (size_t i = 0; i < sizeof cidr_cases / sizeof cidr_cases[0]; i++) {
        struct pc_cidr c;
        struct pc_addr a;
        const char *cs = cidr_cases[i].cidr;
        bool ok = pc_cidr_parse(cs, strlen(cs), &c);
        if (ok != (cidr_cases[i].match >= 0))
            fail_msg("%s: %s", cs, ok ? "accepted" : "refused");
        if (!ok)
            continue;
        assert_true(pc_addr_parse(cidr_cases[i].addr, strlen(cidr_cases[i].addr), &a));
        if (pc_cidr_contains(&c, &a) != (cidr_cases[i].match == 1))
            fail_msg("%s contains %s: want %d", cs, cidr_cases[i].addr, cidr_cases[i].match);
    }
}

static void test_cidr_list(void **state)
{
    struct pc_cidr *l;
    size_t n;
    const char *err = NULL;
    assert_int_equal(pc_cidr_list_parse("", &l, &n, &err), 0);
    assert_int_equal(n, 0);
    free(l);
    assert_int_equal(pc_cidr_list_parse(" 127.0.0.1, 10.0.0.0/8 fd00::/8,", &l, &n, &err), 0);
    assert_int_equal(n, 3);
    free(l);
    assert_int_equal(pc_cidr_list_parse("127.0.0.1,nonsense", &l, &n, &err), -1);
    assert_null(l);
    assert_non_null(err);
}

/* the client chosen for (peer, header lines) with trusted 127.0.0.1, 10.0.0.0/8 */
static const char *client_of(const char *peer, const char *const *lines, size_t n)
{
    static char out[PC_ADDR_STRLEN];
    struct pc_cidr *l;
    size_t nl;
    const char *err;
    assert_int_equal(pc_cidr_list_parse("127.0.0.1,10.0.0.0/8", &l, &nl, &err), 0);
    struct pc_addr p, c;
    assert_true(pc_addr_parse(peer, strlen(peer), &p));
    pc_xff_client(l, nl, &p, lines, n, &c);
    free(l);
    pc_addr_format(&c, out, sizeof out);
    return out;
}

static void test_xff_walk(void **state)
{
    /* an untrusted peer: the header is ignored */
    const char *one[] = {"198.51.100.1"};
    assert_string_equal(client_of("203.0.113.5", one, 1), "203.0.113.5");
    /* a trusted peer without the header: the peer */
    assert_string_equal(client_of("127.0.0.1", NULL, 0), "127.0.0.1");
    /* a trusted peer: the right-most address that is not a trusted proxy */
    assert_string_equal(client_of("127.0.0.1", one, 1), "198.51.100.1");
    const char *spoof[] = {"1.1.1.1, 2.2.2.2, 198.51.100.1"};
    assert_string_equal(client_of("127.0.0.1", spoof, 1), "198.51.100.1");
    const char *chain[] = {"1.1.1.1, 198.51.100.1, 10.0.0.7"};
    assert_string_equal(client_of("127.0.0.1", chain, 1), "198.51.100.1");
    /* several lines are one list, in order */
    const char *lines[] = {"1.1.1.1", "198.51.100.2, 10.1.1.1", "10.0.0.2"};
    assert_string_equal(client_of("127.0.0.1", lines, 3), "198.51.100.2");
    /* spellings */
    const char *mapped[] = {"::FFFF:198.51.100.3"};
    assert_string_equal(client_of("::ffff:127.0.0.1", mapped, 1), "198.51.100.3");
    /* garbage stops the walk at the last trusted hop */
    const char *junk[] = {"198.51.100.4, unknown, 10.0.0.9"};
    assert_string_equal(client_of("127.0.0.1", junk, 1), "10.0.0.9");
    const char *empty[] = {""};
    assert_string_equal(client_of("127.0.0.1", empty, 1), "127.0.0.1");
    /* all trusted: the left-most */
    const char *all[] = {"10.0.0.3, 10.0.0.4"};
    assert_string_equal(client_of("127.0.0.1", all, 1), "10.0.0.3");
    /* nothing trusted: the peer whatever the header says */
    struct pc_addr p, c;
    assert_true(pc_addr_parse("127.0.0.1", 9, &p));
    pc_xff_client(NULL, 0, &p, one, 1, &c);
    char t[PC_ADDR_STRLEN];
    pc_addr_format(&c, t, sizeof t);
    assert_string_equal(t, "127.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_table),
        cmocka_unit_test(test_cidr_table),
        cmocka_unit_test(test_cidr_list),
        cmocka_unit_test(test_xff_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
