# Portcullis - one Makefile for everything.
#
#   make            build build/authsvc and build/gateway
#   make asan       AddressSanitizer + UBSan flavour in build/asan/
#   make deps       install missing Debian packages (idempotent)
#   make test       deps, build, unit tests, fuzz corpus replay, e2e tests,
#                   e2e again under ASan
#   make unit       C unit tests only
#   make layers     check that includes point the right way (part of make test)
#   make e2e        end-to-end tests only (E2E_BUILD=build/asan for ASan)
#   make run        start PostgreSQL, Redis, authsvc and the gateway locally
#   make cluster    the same with three gateways behind haproxy (scripts/cluster.sh)
#   make bench      measurements in bench/ (see bench/README.md)
#   make fuzz       every libFuzzer target in tests/fuzz/ for FUZZ_SECONDS each
#   make fuzz-replay  the checked-in fuzz corpus, once, under ASan + UBSan
#                   (part of make test)
#   make clean

CC ?= cc
WERROR ?= $(if $(CI),1,0)
PKGS := libevent libevent_pthreads libpq hiredis yajl openssl libsodium libcurl libnghttp2 libjwt
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
        -Wold-style-definition -Wpointer-arith -Wundef -Wno-unused-parameter \
        -Wno-missing-field-initializers -Werror=implicit-function-declaration \
        -Wnull-dereference
# gcc's own (clang builds the fuzz targets and has neither)
ifeq ($(findstring clang,$(CC)),)
WARN += -Wduplicated-cond -Wshift-overflow=2
endif
ifeq ($(WERROR),1)
WARN += -Werror
endif

VERSION := $(shell cat VERSION 2>/dev/null || echo unknown)
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -pthread $(WARN) -MMD -MP -DPC_VERSION='"$(VERSION)"'
OPT ?= -O2 -g
LDLIBS = $(PKG_LIBS) -lunistring -pthread

LIB_SRC := $(wildcard lib/*.c)
AUTHSVC_SRC := $(wildcard authsvc/*.c)
GATEWAY_SRC := $(wildcard gateway/*.c)
MIGRATIONS := $(sort $(wildcard db/migrations/*.sql))

B ?= build
FLAVOUR_CFLAGS ?=
FLAVOUR_LDFLAGS ?=
CFLAGS_ALL = $(CFLAGS_BASE) $(OPT) $(FLAVOUR_CFLAGS) $(PKG_CFLAGS) $(CFLAGS)

GEN := $(B)/gen/migrations.c
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
AUTHSVC_OBJ := $(AUTHSVC_SRC:%.c=$(B)/obj/%.o) $(B)/obj/gen/migrations.o
GATEWAY_OBJ := $(GATEWAY_SRC:%.c=$(B)/obj/%.o)
# every gateway object but main(): what a gateway unit test links against
GATEWAY_LIB_OBJ := $(filter-out %/main.o,$(GATEWAY_OBJ))

Q := $(if $(V),,@)

.PHONY: all asan deps build test unit e2e run bench clean check layers fuzz fuzz-replay fuzz-build
all: $(B)/authsvc $(B)/gateway $(B)/demo-upstream $(B)/tests/http-frame

$(B)/authsvc: $(AUTHSVC_OBJ) $(LIB_OBJ)
	@echo "  LD    $@"
	$(Q)$(CC) $(FLAVOUR_LDFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

$(B)/gateway: $(GATEWAY_OBJ) $(LIB_OBJ)
	@echo "  LD    $@"
	$(Q)$(CC) $(FLAVOUR_LDFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

$(B)/demo-upstream: $(B)/obj/tools/demo_upstream.o $(LIB_OBJ)
	@echo "  LD    $@"
	$(Q)$(CC) $(FLAVOUR_LDFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

# the front's framing decisions, for the h11 differential (docs/http-framing.md)
$(B)/tests/http-frame: $(B)/obj/tests/diff/http_frame.o $(B)/obj/lib/http.o
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	$(Q)$(CC) $(FLAVOUR_LDFLAGS) -o $@ $^ $(LDFLAGS)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS_ALL) -c -o $@ $<

# only the generated migrations table sees an authsvc header (migrate.h)
$(B)/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS_ALL) -Iauthsvc -c -o $@ $<

$(GEN): $(MIGRATIONS) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	@echo "  GEN   $@"
	$(Q)sh scripts/embed-sql.sh $@ $(MIGRATIONS)

ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
asan:
	$(Q)$(MAKE) --no-print-directory B=build/asan OPT="$(ASAN_FLAGS)" \
		FLAVOUR_LDFLAGS="-fsanitize=address,undefined" all

# ---- dependencies ----
deps:
	$(Q)sh scripts/deps.sh

# ---- tests ----
UNIT_TESTS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(wildcard tests/unit/test_*.c))

$(B)/tests/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(filter-out $(B)/obj/lib/$(patsubst test_%,%,$*).o,$(LIB_OBJ)) \
		$(FLAVOUR_LDFLAGS) $(LDLIBS) -lcmocka

# test_gw_*.c: the gateway's decisions, called through their functions (no
# .c included), linked with every gateway object but main.o and all of lib/.
# The shorter stem makes make prefer this rule to the one above.
$(B)/tests/test_gw_%: tests/unit/test_gw_%.c tests/unit/test_gw.h $(GATEWAY_LIB_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(GATEWAY_LIB_OBJ) $(LIB_OBJ) \
		$(FLAVOUR_LDFLAGS) $(LDLIBS) -lcmocka

unit: $(UNIT_TESTS)
	$(Q)sh scripts/run-unit.sh $(UNIT_TESTS)

# ---- fuzzing (tests/fuzz/README.md) ----
# Each tests/fuzz/fuzz_<name>.c is a libFuzzer target built by clang under
# ASan + UBSan in build/fuzz/; fuzz_gw_* link the gateway's objects (all but
# main.o), fuzz_as_* authsvc's, the others lib/ only. Its checked-in corpus
# is tests/fuzz/corpus/<name>/; make fuzz writes what it finds to
# build/fuzz/corpus/<name>/ and any crash to build/fuzz/crash/<name>-*.
FUZZ_B := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
              -fno-sanitize-recover=all
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS = $(FUZZ_NAMES:%=$(B)/fuzz/fuzz_%)
AUTHSVC_LIB_OBJ = $(filter-out %/main.o,$(AUTHSVC_OBJ))
FUZZ_LINK = $(CC) $(CFLAGS_ALL) -fsanitize=fuzzer,address,undefined -o $@ $< $(1) $(LIB_OBJ) $(LDLIBS)

$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  FUZZ  $<"
	$(Q)$(call FUZZ_LINK,)
$(B)/fuzz/fuzz_gw_%: tests/fuzz/fuzz_gw_%.c tests/fuzz/fuzz.h $(GATEWAY_LIB_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  FUZZ  $<"
	$(Q)$(call FUZZ_LINK,$(GATEWAY_LIB_OBJ))
$(B)/fuzz/fuzz_as_%: tests/fuzz/fuzz_as_%.c tests/fuzz/fuzz.h $(AUTHSVC_LIB_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  FUZZ  $<"
	$(Q)$(call FUZZ_LINK,$(AUTHSVC_LIB_OBJ))

fuzz-build:
	$(Q)$(MAKE) -s --no-print-directory B=$(FUZZ_B) CC=clang OPT="$(FUZZ_FLAGS)" \
		$(FUZZ_NAMES:%=$(FUZZ_B)/fuzz/fuzz_%)

fuzz-replay: fuzz-build
	$(Q)sh tests/fuzz/run.sh replay $(FUZZ_B)/fuzz $(FUZZ_NAMES)

fuzz: fuzz-build
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh fuzz $(FUZZ_B)/fuzz $(FUZZ_NAMES)

PYTEST := /usr/bin/python3 -m pytest
E2E_BUILD ?= build
e2e: all
	$(Q)PORTCULLIS_BUILD=$(abspath $(E2E_BUILD)) $(PYTEST) -q tests/e2e $(PYTEST_ARGS)

# includes that point the wrong way (scripts/check-layers.sh says which)
layers:
	$(Q)sh scripts/check-layers.sh

test: deps
	$(Q)$(MAKE) --no-print-directory layers
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory fuzz-replay
	$(Q)$(MAKE) --no-print-directory asan
	$(Q)$(MAKE) --no-print-directory e2e
	@echo "== e2e again against the AddressSanitizer + UBSan build =="
	$(Q)ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(MAKE) --no-print-directory e2e E2E_BUILD=build/asan PYTEST_ARGS="$(PYTEST_ARGS)"

check: test

run: deps all
	$(Q)sh scripts/run.sh

# PostgreSQL, Redis, authsvc, three gateways, haproxy and the demo upstream
# (the topology of docker-compose.yml), in the foreground; Ctrl-C stops it.
.PHONY: cluster
cluster: deps all
	$(Q)sh scripts/cluster.sh

bench: deps all
	$(Q)sh bench/run.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
