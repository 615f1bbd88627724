# Compiler and linker flags (STYLE.md "Build"). Options are make variables:
#   make SANITIZER=address,undefined   (what `make asan` does)
#   make MEMO=0     no parse memo: x509memo.c defines no libssl symbol
CC       ?= cc
OPT      ?= -O2 -g
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation
HARDEN   := -fstack-protector-strong -D_FORTIFY_SOURCE=2
CSTD     := -std=c11 -D_GNU_SOURCE
PKGS     := openssl sqlite3 jansson libp11
# Recursive (=): evaluated when a recipe runs, after scripts/deps.sh has
# installed the packages on a fresh machine.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) libpq 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# services only (not libmtls): HTTP parsing (ca serve, gateway) and the
# agent's HTTPS client; the CA's PostgreSQL store (libpq)
SVC_LIBS   = $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl) -lhttp_parser \
             $(shell pkg-config --libs libpq 2>/dev/null || echo -lpq)

ifeq ($(MEMO),0)
  MEMO_FLAGS := -DMTLS_NO_PARSE_MEMO
endif

ifneq ($(SANITIZER),)
  SAN_FLAGS := -fsanitize=$(SANITIZER) -fno-sanitize-recover=all -fno-omit-frame-pointer
  OPT := -O1 -g
  HARDEN := -fstack-protector-strong
endif

CFLAGS_COMMON = -pthread $(CSTD) $(OPT) $(WARN) $(HARDEN) $(SAN_FLAGS) $(MEMO_FLAGS) -Iinclude -Isrc/lib $(PKG_CFLAGS) $(EXTRA_CFLAGS)
# MTLS_BUILDING_LIB: only libmtls's objects may include src/lib/private.h
# (the layouts of its objects); services compile without it.
CFLAGS_LIB    = $(CFLAGS_COMMON) -fPIC -fvisibility=hidden -DMTLS_BUILDING_LIB
CFLAGS_EXE    = $(CFLAGS_COMMON) -fPIE
# examples/ see the installed header only: no -Isrc/lib
CFLAGS_EX     = -pthread $(CSTD) $(OPT) $(WARN) $(HARDEN) $(SAN_FLAGS) -Iinclude $(PKG_CFLAGS) $(EXTRA_CFLAGS) -fPIE
LDFLAGS_EXE   := -pie -Wl,-z,relro,-z,now -pthread $(SAN_FLAGS)
LDFLAGS_SO    := -shared -Wl,-z,relro,-z,now -Wl,--version-script=src/lib/libmtls.sym $(SAN_FLAGS)
