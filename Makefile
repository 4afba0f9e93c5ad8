# milo-contacts -- admission webhook and provider sync for Milo's contacts.
# `make` builds; `make test` installs what is missing, builds and runs every
# suite; `make SANITIZE=address,undefined test`; `make valgrind`.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
CC ?= cc
PKG_CONFIG ?= pkg-config
PYTHON ?= python3

PKGS := libmicrohttpd gnutls jansson libcurl yaml-0.1
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wpointer-arith -Wcast-qual
OPT ?= -O2

comma := ,

# One object tree per sanitizer setting, so switching never mixes them.
ifeq ($(SANITIZE),)
BUILD := build/default
SAN_FLAGS :=
else
BUILD := build/san-$(subst $(comma),-,$(SANITIZE))
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS = $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS = $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

# User CFLAGS/LDFLAGS add to ours (redis's FINAL_CFLAGS).
FINAL_CFLAGS = -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SAN_FLAGS) -MMD -MP \
	-Ilib $(PKG_CFLAGS) $(CFLAGS)
FINAL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)
FINAL_LIBS = $(PKG_LIBS) -lpthread -lm $(LIBS)

LIB_SRC := $(wildcard lib/*.c lib/rules/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB_A := $(BUILD)/libmilo.a

WEBHOOK_SRC := $(wildcard webhook/*.c)
WEBHOOK_OBJ := $(WEBHOOK_SRC:%.c=$(BUILD)/%.o)
RECONCILER_SRC := $(wildcard reconciler/*.c)
RECONCILER_OBJ := $(RECONCILER_SRC:%.c=$(BUILD)/%.o)

PROGRAMS :=
ifneq ($(WEBHOOK_SRC),)
PROGRAMS += $(BUILD)/contact-webhook
endif
ifneq ($(RECONCILER_SRC),)
PROGRAMS += $(BUILD)/contact-reconciler
endif

# Every test/check_<name>.c defines `Suite *<name>_suite(void)`; the runner
# is generated from the file names, so adding a suite is adding a file.
TEST_SRC := $(wildcard test/check_*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o) $(BUILD)/test/runner.o $(BUILD)/test/testutil.o
SUITES := $(patsubst test/check_%.c,%,$(TEST_SRC))
TEST_BIN := $(BUILD)/check_all

.PHONY: all test check deps valgrind clean install uninstall run fuzz bench e2e
all: $(LIB_A) $(PROGRAMS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -c -o $@ $<

$(LIB_A): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/contact-webhook: $(WEBHOOK_OBJ) $(LIB_A)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(BUILD)/contact-reconciler: $(RECONCILER_OBJ) $(LIB_A)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(BUILD)/test/suites.h: $(TEST_SRC) Makefile
	@mkdir -p $(dir $@)
	@{ for s in $(SUITES); do echo "SUITE($$s)"; done; } > $@.tmp && mv $@.tmp $@

$(BUILD)/test/runner.o: test/runner.c $(BUILD)/test/suites.h
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(CHECK_CFLAGS) -I$(BUILD)/test -c -o $@ $<

$(BUILD)/test/%.o: test/%.c
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(CHECK_CFLAGS) -Itest -c -o $@ $<

$(TEST_BIN): $(TEST_OBJ) $(LIB_A)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(FINAL_LIBS)

# The suites find the programs and fixtures through these; build/tools/bin
# holds the kubectl test/deps.sh installs when the machine has none new
# enough. MILO_REQUIRE_TOOLS=1: a test whose tool is missing fails instead
# of being skipped (test/py/required.py).
TEST_ENV = MILO_BUILD=$(CURDIR)/$(BUILD) MILO_TOP=$(CURDIR) \
	MILO_WEBHOOK_BIN=$(CURDIR)/$(BUILD)/contact-webhook \
	MILO_RECONCILER_BIN=$(CURDIR)/$(BUILD)/contact-reconciler \
	PATH=$(CURDIR)/build/tools/bin:$$PATH MILO_REQUIRE_TOOLS=1 MILO_SANITIZE=$(SANITIZE)

# Every Check suite and every Python module as its own job, several at a
# time (test/py/runner.py); each suite's output whole, then the counts.
test: deps
	@$(MAKE) --no-print-directory build-tests
	$(BUILD)/log_equiv -n 20000
	$(TEST_ENV) $(PYTHON) test/py/runner.py --check $(TEST_BIN)
check: test

.PHONY: build-tests
build-tests: all $(TEST_BIN) $(BUILD)/log_equiv

valgrind: deps
	@$(MAKE) --no-print-directory build-tests
	$(TEST_ENV) CK_FORK=no MILO_UNDER_VALGRIND=1 valgrind --quiet --error-exitcode=99 \
		--leak-check=full --show-leak-kinds=definite,indirect \
		--errors-for-leak-kinds=definite,indirect --track-origins=yes \
		$(TEST_BIN)

deps:
	@sh test/deps.sh

install: all
	install -d $(DESTDIR)$(BINDIR)
	for p in $(PROGRAMS); do install -m 0755 $$p $(DESTDIR)$(BINDIR)/; done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/contact-webhook $(DESTDIR)$(BINDIR)/contact-reconciler

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# --- run, fuzz, bench ---------------------------------------------------

RUN_PORT ?= 9443
PROVIDER ?= resend

# The API stand-in, the webhook and the reconciler (against a Resend
# stand-in, or PROVIDER=mailgun a Mailgun one) in the foreground, with the
# manifests and examples applied.
run: deps
	@$(MAKE) --no-print-directory all
	$(PYTHON) test/py/dev_cluster.py --webhook-bin $(BUILD)/contact-webhook \
		--reconciler-bin $(BUILD)/contact-reconciler --webhook-port $(RUN_PORT) \
		--provider $(PROVIDER)

# libFuzzer on the admission decoder, every endpoint, for FUZZ_TIME seconds;
# then lib/jsonparse.c against jansson for FUZZ_TIME seconds; then the TLS
# transport's framing (lib/tls_transport.c) for FUZZ_TRANSPORT_TIME seconds.
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_TRANSPORT_TIME ?= 30
FUZZ_DIR := build/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $(WARN) \
	-MMD -MP $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Ilib $(PKG_CFLAGS)
FUZZ_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/%.o)

$(FUZZ_DIR)/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_DIR)/fuzz_admission: fuzz/fuzz_admission.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^) \
		$(FINAL_LIBS)

$(FUZZ_DIR)/fuzz_jsonparse: fuzz/fuzz_jsonparse.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^) \
		$(FINAL_LIBS)

$(FUZZ_DIR)/fuzz_transport: fuzz/fuzz_transport.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^) \
		$(FINAL_LIBS)

fuzz: deps $(FUZZ_DIR)/fuzz_admission $(FUZZ_DIR)/fuzz_jsonparse $(FUZZ_DIR)/fuzz_transport
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds
	@cp fuzz/seeds/*.json $(FUZZ_DIR)/seeds/
	@find test/fixtures -name '*.json' -exec cp {} $(FUZZ_DIR)/seeds/ \;
	@cp test/fixtures/kubernetes/*.json $(FUZZ_DIR)/seeds/
	$(FUZZ_DIR)/fuzz_admission -max_total_time=$(FUZZ_TIME) -max_len=65536 \
		-timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
		-dict=fuzz/admission.dict $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds
	@mkdir -p $(FUZZ_DIR)/corpus-jsonparse
	$(FUZZ_DIR)/fuzz_jsonparse -max_total_time=$(FUZZ_TIME) -max_len=65536 \
		-timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
		-dict=fuzz/admission.dict $(FUZZ_DIR)/corpus-jsonparse $(FUZZ_DIR)/seeds
	@mkdir -p $(FUZZ_DIR)/corpus-transport
	$(FUZZ_DIR)/fuzz_transport -max_total_time=$(FUZZ_TRANSPORT_TIME) -max_len=1024 \
		-timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
		$(FUZZ_DIR)/corpus-transport fuzz/seeds-transport

# wrk against the webhook and against nginx on the same core (bench/webhook.sh),
# then memory per cached object, admission latency with 10 and 100,000 cached
# objects, the reconciler's provider calls, a CPU profile, and the cost and
# effect of the time and memory budgets (bench/README.md; about 20 minutes).
bench: all $(BUILD)/cache_bench $(BUILD)/admission_loop $(BUILD)/log_equiv
	@sh test/deps.sh wrk nginx-light
	MILO_WEBHOOK_BIN=$(CURDIR)/$(BUILD)/contact-webhook sh bench/webhook.sh
	$(BENCH_ENV) sh bench/cache.sh
	$(BENCH_ENV) sh bench/admission_state.sh
	$(BENCH_ENV) sh bench/reconciler.sh
	$(BENCH_ENV) sh bench/audit.sh
	$(BENCH_ENV) BENCH_PROVIDER=mailgun BENCH_GROUPS=10 BENCH_OBJECTS=0 sh bench/reconciler.sh
	$(BENCH_ENV) sh bench/profile.sh
	$(BENCH_ENV) sh bench/hardening.sh

# --- cache, admission with cluster state, reconciler, profile (bench/README.md) ---
.PHONY: bench-webhook bench-cache bench-admission-state bench-reconciler bench-audit \
	bench-reconciler-mailgun bench-profile bench-hardening

$(BUILD)/cache_bench: bench/cache_bench.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ bench/cache_bench.c $(LIB_A) $(FINAL_LIBS)

$(BUILD)/admission_loop: bench/admission_loop.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ bench/admission_loop.c $(LIB_A) $(FINAL_LIBS)

BENCH_ENV = MILO_BUILD=$(CURDIR)/$(BUILD) \
	MILO_WEBHOOK_BIN=$(CURDIR)/$(BUILD)/contact-webhook \
	MILO_RECONCILER_BIN=$(CURDIR)/$(BUILD)/contact-reconciler

# The stateless webhook beside nginx (bench/webhook.sh).
bench-webhook: all
	@sh test/deps.sh wrk nginx-light
	$(BENCH_ENV) sh bench/webhook.sh

# Bytes per cached object: in process, then the real webhook on the kube stand-in.
bench-cache: all $(BUILD)/cache_bench
	$(BENCH_ENV) sh bench/cache.sh

# Admission latency with 10 and with 100,000 cached memberships.
bench-admission-state: all
	@sh test/deps.sh wrk
	$(BENCH_ENV) sh bench/admission_state.sh

# Provider calls and time to sync 1,000 memberships at 10 requests/s.
bench-reconciler: all
	$(BENCH_ENV) sh bench/reconciler.sh

# The provider audit of 10,000 memberships in 50 groups at 10 requests/s.
bench-audit: all
	$(BENCH_ENV) sh bench/audit.sh

# The same 1,000 memberships against the Mailgun stand-in, with and without
# bulk uploads (about 5 minutes).
bench-reconciler-mailgun: all
	$(BENCH_ENV) BENCH_PROVIDER=mailgun BENCH_GROUPS=10 BENCH_OBJECTS=0 sh bench/reconciler.sh

# The budgets' cost (rate, p99) and effect (peak RSS under attack), against
# the webhook before them, built from git (bench/hardening.sh).
bench-hardening: all
	@sh test/deps.sh wrk
	$(BENCH_ENV) sh bench/hardening.sh

# Where a request's CPU goes: callgrind over admission_handle().
bench-profile: all $(BUILD)/admission_loop $(BUILD)/log_equiv
	$(BENCH_ENV) sh bench/profile.sh

# --- e2e ------------------------------------------------------------------

# kubectl against the kube-apiserver stand-in, which calls the real webhook
# over HTTPS as the applied webhook configurations say (test/py/test_e2e.py;
# `make test` runs it too, with the other Python tests).
e2e: deps
	@$(MAKE) --no-print-directory all
	$(TEST_ENV) $(PYTHON) test/py/runner.py test_e2e.py

$(BUILD)/log_equiv: test/log_equiv.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ test/log_equiv.c $(LIB_A) $(FINAL_LIBS)

# lib/log.c's lines are byte for byte what json_dumps() writes for the same
# fields (and faster); make test runs it too.
.PHONY: bench-log-equiv
bench-log-equiv: $(BUILD)/log_equiv
	$(BUILD)/log_equiv
