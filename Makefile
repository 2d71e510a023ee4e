# lprocess / lrun
#   make            build build/lprocess/core.so
#   make test       bootstrap packages, build, run the busted specs
#   make sanitize   the same specs against an ASan+UBSan build
#   make install    PREFIX=/usr/local DESTDIR=
#   make demo       run examples/demo.lua through lrun
#   make bench      benchmarks against peers (QUICK=1 for the short CI run)

LUA        ?= lua5.4
LUA_INC    ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
PREFIX     ?= /usr/local
DESTDIR    ?=
LUA_LIBDIR ?= $(PREFIX)/lib/lua/5.4
LUA_DIR    ?= $(PREFIX)/share/lua/5.4
BINDIR     ?= $(PREFIX)/bin
BUSTED     ?= busted

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -pedantic -Wshadow -Wcast-qual -Wwrite-strings \
           -Wmissing-prototypes -Wstrict-prototypes
ifeq ($(CI),true)
WARN    += -Werror
endif
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) $(LUA_INC) $(CFLAGS)
LDFLAGS ?=

SRC  = $(wildcard src/*.c)
HDR  = $(wildcard src/*.h)
OUT ?= build
OBJ  = $(SRC:src/%.c=$(OUT)/obj/%.o)
LIB  = $(OUT)/lprocess/core.so
# lrun's own C module (its output hot loop): apart from the library, which knows no jobs
LRUN_LIB = $(OUT)/lrun/text.so

.PHONY: all test sanitize install uninstall demo bench lint clean bootstrap check-exports

all: $(LIB) $(LRUN_LIB)

$(OUT)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIB): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(OBJ)

$(OUT)/obj/lrun_%.o: csrc/lrun_%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LRUN_LIB): $(OUT)/obj/lrun_text.o
	@mkdir -p $(dir $@)
	$(CC) -shared $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^

bootstrap:
	@scripts/bootstrap

# Only luaopen_* may be exported from the module.
check-exports: $(LIB) $(LRUN_LIB)
	@bad=$$(nm -D --defined-only $(LIB) $(LRUN_LIB) | awk '$$2 ~ /[TDBR]/ {print $$3}' | grep -v '^luaopen_' || true); \
	if [ -n "$$bad" ]; then echo "exported symbols besides luaopen_*: $$bad"; exit 1; fi

test: bootstrap
	@$(MAKE) --no-print-directory all check-exports
	@scripts/run-specs $(BUSTED) $(SPEC)

SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
sanitize: bootstrap
	@$(MAKE) --no-print-directory OUT=build-san CFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" all
	@mkdir -p build-san/bin
	$(CC) -std=c11 $(SAN_FLAGS) $(LUA_INC) -o build-san/bin/lua5.4 scripts/sanitize/lua-host.c \
	  $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4) -lm
	@LPROCESS_CPATH=build-san/?.so scripts/run-specs --sanitize $(BUSTED) $(SPEC)

lint: bootstrap
	luacheck lua spec scripts/lrun bench examples

install: $(LIB) $(LRUN_LIB)
	install -d $(DESTDIR)$(LUA_LIBDIR)/lprocess $(DESTDIR)$(LUA_DIR)/lprocess \
	  $(DESTDIR)$(LUA_DIR)/lrun $(DESTDIR)$(BINDIR)
	install -m 755 $(LIB) $(DESTDIR)$(LUA_LIBDIR)/lprocess/core.so
	install -m 644 lua/lprocess/*.lua $(DESTDIR)$(LUA_DIR)/lprocess/
	install -m 644 lua/lrun/*.lua $(DESTDIR)$(LUA_DIR)/lrun/
	for d in lua/lrun/*/; do n=$$(basename $$d); install -d $(DESTDIR)$(LUA_DIR)/lrun/$$n; \
	  install -m 644 $$d*.lua $(DESTDIR)$(LUA_DIR)/lrun/$$n/; done
	sed '1s|.*|#!$(shell command -v $(LUA) || echo /usr/bin/env $(LUA))|' scripts/lrun > $(DESTDIR)$(BINDIR)/lrun
	chmod 755 $(DESTDIR)$(BINDIR)/lrun

uninstall:
	rm -rf $(DESTDIR)$(LUA_LIBDIR)/lprocess $(DESTDIR)$(LUA_LIBDIR)/lrun $(DESTDIR)$(LUA_DIR)/lprocess $(DESTDIR)$(LUA_DIR)/lrun $(DESTDIR)$(BINDIR)/lrun

demo: bootstrap
	@$(MAKE) --no-print-directory all
	scripts/lrun examples/demo.lua

bench: bootstrap
	@$(MAKE) --no-print-directory all
	@bench/run $(if $(QUICK),--quick)

clean:
	rm -rf build build-san
