# mtls: one non-recursive GNU Makefile; outputs in $(BUILD)/.
#   make            build/mtls, build/libmtls.a, build/libmtls.so, build/mtls.pc
#   make check      unit + integration + fuzz-corpus replay; ends "N passed, N failed"
#   make check T=verify   only tests whose name contains "verify"
#   make asan       the same suite under ASan + UBSan (in build-asan/)
#   make fuzz FUZZ_SECONDS=60   libFuzzer on every fuzz target (clang)
#   make coverage   unit tests + fuzz replays with --coverage (in build-cov/);
#                   COV_INTEGRATION=1 adds the integration scripts, COV_T=x
#                   runs only tests named with x; report in
#                   build-cov/coverage/index.html, src/lib's line figure printed
#   make demo       the main job end to end
#   make examples install format
#   make bench      build/bench/issuebench (bench/ca.sh runs it)
#   make MEMO=0     without the parse memo (src/svc/proxy/x509memo.c), in build-nomemo/
# MEMO=0: the binary without the memo of libssl's parses (x509memo.c
# defines no libssl symbol), in its own build directory
MEMO     ?= 1
ifeq ($(MEMO),0)
BUILD    ?= build-nomemo
endif
BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
T        ?=
FUZZ_SECONDS ?= 30

include mk/flags.mk

LIB_SRC  := $(sort $(wildcard src/lib/*.c))
SVC_SRC  := $(sort $(wildcard src/svc/*/*.c))
CMD_SRC  := $(sort $(wildcard src/cmd/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
EX_SRC   := $(sort $(wildcard examples/*.c))
MAN_SRC  := $(sort $(wildcard man/*.in))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SVC_OBJ  := $(SVC_SRC:%.c=$(BUILD)/obj/%.o)
CMD_OBJ  := $(CMD_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
EX_BIN   := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)
MAN      := $(MAN_SRC:man/%.in=$(BUILD)/man/%.1)
DEPS_OK  := $(BUILD)/.deps-ok
# ca serve's web page: ui/'s files as C arrays (scripts/embed.sh)
UI_SRC   := ui/index.html ui/app.css ui/app.js
SVC_OBJ  += $(BUILD)/obj/gen/ui_assets.o

.PHONY: all check asan fuzz coverage cov-build demo examples bench install format clean deps man
all: $(BUILD)/mtls $(BUILD)/libmtls.a $(BUILD)/libmtls.so $(BUILD)/mtls.pc

# Missing Debian packages are installed (as root) before anything compiles.
$(DEPS_OK): scripts/deps.sh
	@scripts/deps.sh build
	@mkdir -p $(@D) && touch $@
deps: $(DEPS_OK)

$(BUILD)/obj/src/lib/%.o: src/lib/%.c $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_LIB) -MMD -MP -c -o $@ $<
$(BUILD)/obj/src/svc/%.o: src/svc/%.c $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXE) -Isrc/svc -MMD -MP -c -o $@ $<
$(BUILD)/obj/src/cmd/%.o: src/cmd/%.c $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXE) -Isrc/svc -MMD -MP -c -o $@ $<

$(BUILD)/gen/ui_assets.c: $(UI_SRC) scripts/embed.sh
	@mkdir -p $(@D)
	scripts/embed.sh $(UI_SRC) > $@.tmp && mv $@.tmp $@
$(BUILD)/obj/gen/ui_assets.o: $(BUILD)/gen/ui_assets.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXE) -Isrc/svc -c -o $@ $<

$(BUILD)/libmtls.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/libmtls.so.0: $(LIB_OBJ) src/lib/libmtls.sym
	$(CC) $(LDFLAGS_SO) -Wl,-soname,libmtls.so.0 -o $@ $(LIB_OBJ) $(PKG_LIBS)
$(BUILD)/libmtls.so: $(BUILD)/libmtls.so.0
	ln -sf libmtls.so.0 $@
$(BUILD)/mtls: $(CMD_OBJ) $(SVC_OBJ) $(BUILD)/libmtls.a
	$(CC) $(LDFLAGS_EXE) -o $@ $(CMD_OBJ) $(SVC_OBJ) $(BUILD)/libmtls.a $(SVC_LIBS) $(PKG_LIBS)
$(BUILD)/mtls.pc: Makefile
	@mkdir -p $(@D)
	@printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: mtls\nDescription: mutual TLS identities, verification and connections on OpenSSL 3\nVersion: 0.1.0\nRequires.private: openssl sqlite3 jansson libp11\nLibs: -L$${libdir} -lmtls\nCflags: -I$${includedir}\n' '$(PREFIX)' > $@

# Unit tests: one cmocka program per library file, linked with every object.
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmtls.a $(SVC_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXE) -Isrc/svc -o $@ $< $(SVC_OBJ) $(BUILD)/libmtls.a $(LDFLAGS_EXE) $(SVC_LIBS) $(PKG_LIBS) -lcmocka

# Fuzz targets built as plain programs that replay their corpus (gcc).
$(BUILD)/fuzz/%: fuzz/%.c fuzz/replay.c $(BUILD)/libmtls.a $(SVC_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EXE) -Isrc/svc -o $@ $< fuzz/replay.c $(SVC_OBJ) $(BUILD)/libmtls.a $(LDFLAGS_EXE) $(SVC_LIBS) $(PKG_LIBS)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libmtls.so
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EX) -o $@ $< -L$(BUILD) -lmtls -Wl,-rpath,$(abspath $(BUILD)) $(LDFLAGS_EXE) $(PKG_LIBS)
examples: $(EX_BIN)

# Benchmarks: the renewal load generator (bench/issuebench.c, on libmtls).
$(BUILD)/bench/issuebench: bench/issuebench.c $(BUILD)/libmtls.so
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_EX) -o $@ $< -L$(BUILD) -lmtls -Wl,-rpath,$(abspath $(BUILD)) $(LDFLAGS_EXE) $(PKG_LIBS) -lpthread
bench: $(BUILD)/bench/issuebench

# Man pages: generated from the binary's --help text (scripts/mkman.sh)
$(BUILD)/man/%.1: man/%.in scripts/mkman.sh $(BUILD)/mtls
	@mkdir -p $(@D)
	scripts/mkman.sh $(BUILD)/mtls $< $@
man: $(MAN)

check: all $(UNIT_BIN) $(FUZZ_BIN) $(EX_BIN)
	@scripts/deps.sh check
	@BUILD=$(BUILD) T='$(T)' tests/run.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZER=address,undefined check

fuzz:
	@scripts/deps.sh fuzz
	@BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# gcov counts at -O0 (no _FORTIFY_SOURCE there); gcovr is installed only
# for this target (scripts/deps.sh coverage).
COV_INTEGRATION ?= 0
COV_T ?=
coverage:
	@scripts/deps.sh build coverage
	@$(MAKE) --no-print-directory BUILD=build-cov OPT='-O0 -g' \
	    HARDEN=-fstack-protector-strong EXTRA_CFLAGS=--coverage \
	    LDFLAGS_EXE='$(LDFLAGS_EXE) --coverage' \
	    LDFLAGS_SO='$(LDFLAGS_SO) --coverage' cov-build
	@BUILD=build-cov COV_INTEGRATION=$(COV_INTEGRATION) COV_T='$(COV_T)' \
	    scripts/coverage.sh
cov-build: all $(UNIT_BIN) $(FUZZ_BIN) $(EX_BIN)

demo: all
	@scripts/deps.sh check
	@BUILD=$(BUILD) scripts/demo.sh

install: all man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/man/man1
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/share/mtls $(DESTDIR)$(PREFIX)/share/doc/mtls
	install -m 0755 $(BUILD)/mtls $(DESTDIR)$(PREFIX)/bin/mtls
	install -m 0644 $(BUILD)/libmtls.a $(DESTDIR)$(PREFIX)/lib/libmtls.a
	install -m 0755 $(BUILD)/libmtls.so.0 $(DESTDIR)$(PREFIX)/lib/libmtls.so.0
	ln -sf libmtls.so.0 $(DESTDIR)$(PREFIX)/lib/libmtls.so
	install -m 0644 include/mtls.h $(DESTDIR)$(PREFIX)/include/mtls.h
	install -m 0644 $(BUILD)/mtls.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/mtls.pc
	install -m 0644 $(MAN) $(DESTDIR)$(PREFIX)/share/man/man1/
	for u in dist/systemd/*.service.in; do sed -e 's|@bindir@|$(PREFIX)/bin|g' -e 's|@docdir@|$(PREFIX)/share/doc/mtls|g' $$u > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u .in) && chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u .in) || exit 1; done
	install -m 0644 dist/systemd/mtls.sysusers.conf $(DESTDIR)$(PREFIX)/lib/sysusers.d/mtls.conf
	install -m 0644 dist/prometheus/mtls.rules.yml dist/grafana/mtls.json $(DESTDIR)$(PREFIX)/share/mtls/
	install -m 0644 docs/operations.md $(DESTDIR)$(PREFIX)/share/doc/mtls/operations.md

format:
	clang-format -i $(LIB_SRC) $(SVC_SRC) $(CMD_SRC) $(wildcard src/*/*.h src/svc/*/*.h) include/mtls.h

clean:
	rm -rf build build-asan build-fuzz build-cov

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
