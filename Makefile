# lprocess / lrun
#   make            build build/lprocess/core.so
#   make test       bootstrap packages, build, run the busted specs
#   make sanitize   the same specs against an ASan+UBSan build
#   make valgrind   the core specs under valgrind --error-exitcode=1
#   make install    PREFIX=/usr/local DESTDIR=
#   make demo       run examples/demo.lua through lrun
#   make bench      benchmarks against peers (QUICK=1 for the short CI run)
#   make fuzz       the job-file fuzzer's long run (FUZZ_CASES=20000 FUZZ_SECONDS= FUZZ_SEED=)

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
# Bind every symbol at load time: lazy binding would run the dynamic linker inside
# spawn's clone child on the first call of each libc function there.
LINK_FLAGS = -Wl,-z,now -Wl,-z,relro

SRC  = $(wildcard src/*.c)
HDR  = $(wildcard src/*.h)
OUT ?= build
OBJ  = $(SRC:src/%.c=$(OUT)/obj/%.o)
LIB  = $(OUT)/lprocess/core.so
# lrun's own C modules (its output hot loop; the process groups it shares with its
# watchdog): apart from the library, which knows no jobs
LRUN_LIB = $(OUT)/lrun/text.so $(OUT)/lrun/groups.so
# the lrun program: Lua embedded without lua.c's SIGINT handler (csrc/lrun_main.c)
LRUN_BIN = $(OUT)/bin/lrun
LUA_LIBS ?= $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)

.PHONY: all test sanitize valgrind install uninstall demo bench lint clean bootstrap check-exports \
        testprogs

all: $(LIB) $(LRUN_LIB) $(LRUN_BIN)

$(OUT)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIB): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(ALL_CFLAGS) $(LDFLAGS) $(LINK_FLAGS) -o $@ $(OBJ)

$(OUT)/obj/lrun_%.o: csrc/lrun_%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

.SECONDARY: $(LRUN_LIB:$(OUT)/lrun/%.so=$(OUT)/obj/lrun_%.o)
$(OUT)/lrun/%.so: $(OUT)/obj/lrun_%.o
	@mkdir -p $(dir $@)
	$(CC) -shared $(ALL_CFLAGS) $(LDFLAGS) $(LINK_FLAGS) -o $@ $^

# Programs the specs run (spec/support/*.c): a host of several lua_States in threads,
# a seccomp wrapper that makes chosen syscalls fail with ENOSYS, and an LD_PRELOAD
# shim that makes the Nth call of a libc function fail (fault injection).
LUA_LIBS  ?= $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
TEST_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(LUA_INC) -O2 -g
TESTPROGS = $(OUT)/test/spawn-host $(OUT)/test/seccomp-enosys $(OUT)/test/faultshim.so

testprogs: $(TESTPROGS)

$(OUT)/test/spawn-host: spec/support/spawn_host.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $< $(LUA_LIBS) -lm -ldl

$(OUT)/test/seccomp-enosys: spec/support/seccomp_enosys.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $<

$(OUT)/test/faultshim.so: spec/support/faultshim.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -fPIC -shared -o $@ $< -ldl

$(LRUN_BIN): $(OUT)/obj/lrun_main.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LUA_LIBS) -lm

bootstrap:
	@scripts/bootstrap

# Only luaopen_* may be exported from the module.
check-exports: $(LIB) $(LRUN_LIB)
	@bad=$$(nm -D --defined-only $(LIB) $(LRUN_LIB) | awk '$$2 ~ /[TDBR]/ {print $$3}' | grep -v '^luaopen_' || true); \
	if [ -n "$$bad" ]; then echo "exported symbols besides luaopen_*: $$bad"; exit 1; fi

test: bootstrap
	@$(MAKE) --no-print-directory all check-exports testprogs
	@scripts/run-specs $(BUSTED) $(SPEC)

SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
sanitize: bootstrap
	@$(MAKE) --no-print-directory OUT=build-san CFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" all testprogs
	@mkdir -p build-san/bin
	$(CC) -std=c11 $(SAN_FLAGS) $(LUA_INC) -o build-san/bin/lua5.4 scripts/sanitize/lua-host.c \
	  $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4) -lm
	@LPROCESS_CPATH=build-san/?.so scripts/run-specs --sanitize $(BUSTED) $(SPEC)

# The core specs with lua5.4 under valgrind (children not traced; spawn uses its fork
# method there, as valgrind runs a CLONE_VM|CLONE_VFORK clone as a fork). Tests tagged
# #novalgrind see valgrind's emulation instead of the kernel (no pidfd, its own signal
# mask and nofile limit). spawn_spec is left out: the facade relies on pidfds.
VALGRIND_SPECS ?= spec/core_spec.lua spec/hardening_spec.lua
valgrind: bootstrap
	@$(MAKE) --no-print-directory all testprogs
	valgrind -q --error-exitcode=1 --trace-children=no $(LUA) $$(command -v $(BUSTED)) \
	  --ignore-lua --exclude-tags=novalgrind $(VALGRIND_SPECS)

lint: bootstrap
	luacheck lua spec scripts/lrun scripts/fuzz-jobfile bench examples

install: $(LIB) $(LRUN_LIB) $(LRUN_BIN) $(LRUN_BIN)
	install -d $(DESTDIR)$(LUA_LIBDIR)/lprocess $(DESTDIR)$(LUA_LIBDIR)/lrun $(DESTDIR)$(BINDIR)
	install -m 755 $(LIB) $(DESTDIR)$(LUA_LIBDIR)/lprocess/core.so
	install -m 755 $(LRUN_LIB) $(DESTDIR)$(LUA_LIBDIR)/lrun/
	cd lua && for f in $$(find lprocess lrun -name '*.lua'); do \
	  install -D -m 644 $$f $(DESTDIR)$(LUA_DIR)/$$f || exit 1; done
	install -m 755 $(LRUN_BIN) $(DESTDIR)$(BINDIR)/lrun

uninstall:
	rm -rf $(DESTDIR)$(LUA_LIBDIR)/lprocess $(DESTDIR)$(LUA_LIBDIR)/lrun $(DESTDIR)$(LUA_DIR)/lprocess $(DESTDIR)$(LUA_DIR)/lrun $(DESTDIR)$(BINDIR)/lrun

demo: bootstrap
	@$(MAKE) --no-print-directory all
	scripts/lrun examples/demo.lua

bench: bootstrap
	@$(MAKE) --no-print-directory all
	@bench/run $(if $(QUICK),--quick)

.PHONY: fuzz
fuzz: bootstrap
	@$(MAKE) --no-print-directory all
	@scripts/fuzz-jobfile

clean:
	rm -rf build build-san
