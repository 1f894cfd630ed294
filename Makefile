# vit: one Makefile for the library, the command, the tests and the benchmarks.
# `make` builds build/libvit.a, build/vit and the bench programs (build/X
# for bench/X.c); `make test` runs the Check
# suites; `make asan` runs them under AddressSanitizer + UBSan in build/asan;
# `make bench` runs the benchmark harness. Dependency files are generated.

CC      ?= cc
BUILD   ?= build
STD     = -std=c11 -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64
WARN    = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
WERROR  ?= -Werror
OPT     ?= -O2 -g
SAN     ?=
PKGS    = openblas jansson libpng zlib libjpeg libpcre2-8 libutf8proc libzmq \
          sqlite3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
CHECK_CFLAGS := $(shell pkg-config --cflags check)
CHECK_LIBS   := $(shell pkg-config --libs check)
# -ffp-contract=off: a multiply and an add stay two roundings, as in the
# references (Pillow's and numpy's C, PyTorch's elementwise kernels) and
# whatever the compiler (clang contracts them by default, gcc in -std=c11
# does not) or the CPU path (only AVX2 and AVX-512 copies have FMA).
CFLAGS  = $(STD) $(WARN) $(WERROR) $(OPT) $(SAN) -ffp-contract=off -I. \
          $(PKG_CFLAGS) -MMD -MP
# oneDNN (Debian's libdnnl-dev, no pkg-config file) runs VIT_PRECISION_BF16's
# products; it is built on OpenMP, and libgomp is named too since bgemm.c
# sets OpenMP's thread count around each call.
LDLIBS  = $(PKG_LIBS) -ldnnl -lgomp -lm -lpthread

LIB_SRC  := $(sort $(wildcard cpu/*.c vit/*.c imgio/*.c text/*.c index/*.c))
SVC_SRC  := $(sort $(wildcard service/*.c))
CLI_SRC  := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))
SUITES   := $(patsubst tests/check_%.c,%,$(filter tests/check_%.c,$(TEST_SRC)))
BENCH_SRC := $(sort $(wildcard bench/*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SVC_OBJ   := $(SVC_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)

.PHONY: all test asan bench bench-dir demo clean
all: $(BUILD)/libvit.a $(BUILD)/vit

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

# The resampler's inner loops are written for the vectorizer, whose full
# cost model needs -O3; the rest of the library stays at OPT.
$(BUILD)/obj/imgio/resize.o: OPT += -O3

$(BUILD)/libvit.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The service (worker, broker, client library) is an archive of its own on
# top of libvit, so that the library proper never links ZeroMQ's users.
$(BUILD)/libvitsvc.a: $(SVC_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/vit: $(CLI_OBJ) $(BUILD)/libvitsvc.a $(BUILD)/libvit.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libvitsvc.a $(BUILD)/libvit.a $(LDLIBS)

# The test runner learns its suites from the file names: tests/check_X.c
# defines `Suite *X_suite(void)`.
$(BUILD)/tests/suites.h: $(filter tests/check_%.c,$(TEST_SRC)) Makefile
	@mkdir -p $(dir $@)
	@printf '%s\n' $(foreach s,$(SUITES),'SUITE($(s))') > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(BUILD)/obj/tests/%.o: tests/%.c $(BUILD)/tests/suites.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -I$(BUILD)/tests -c $< -o $@

$(BUILD)/check_all: $(TEST_OBJ) $(BUILD)/libvitsvc.a $(BUILD)/libvit.a
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libvitsvc.a $(BUILD)/libvit.a $(CHECK_LIBS) $(LDLIBS)

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
$(BENCH_BIN): $(BUILD)/%: $(BUILD)/obj/bench/%.o $(BUILD)/libvitsvc.a $(BUILD)/libvit.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libvitsvc.a $(BUILD)/libvit.a $(LDLIBS)

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

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
