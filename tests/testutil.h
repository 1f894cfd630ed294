/*
 * Helpers the suites share: comparing against reference arrays (printing
 * the max difference, as every numeric check here does), temporary
 * directories, and small file utilities.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stddef.h>

#define FIXTURES "tests/fixtures"

/* max |got - ref| / max |ref|, printed with `what` to stdout. */
double tu_rel_diff(const char *what, const float *got, const float *ref,
                   size_t n);

/* The smallest cosine similarity between matching rows of two (rows, dim)
 * arrays. */
double tu_min_cosine(const float *got, const float *want, int rows, int dim);
/* Activation `act` (a VIT_ACT_ value) of x by its definition, in double. */
double tu_act_ref(int act, double x);

/* Writes a w x h RGB PNG of xorshift noise started from `state`; returns
 * the generator's state after it (for suites that carry it on). */
#include <stdint.h>
uint64_t tu_noise_png(const char *path, int w, int h, uint64_t state);

/* FIXTURES/model/file, a reference array saved by tests/gen_fixtures.py;
 * fails the test when it cannot be read. */
#include "vit/vit.h"
vit_array tu_fixture(const char *model, const char *file);
/* A text fixture's tokens before the padding of each text (ref_lens.npy,
 * which SigLIP's carry: the attention mask), malloc'd; NULL when the
 * fixture has none. */
int *tu_fixture_lens(const char *model);
/* The smallest cosines of a CLIP or SigLIP fixture's image and text
 * embeddings, as state s computes them, to the reference's (its pixels
 * and token ids, with the attention mask SigLIP's fixtures carry). */
void tu_pair_cosines(vit_state *s, const char *name, double *ci, double *ct);
/* Loads FIXTURES/name with `opt` and makes a state for it; fails the test
 * when either cannot be done. */
vit_model *tu_load_fixture(const char *name, const vit_options *opt,
                           vit_state **s);

/* An environment variable's value (NULL when unset), to be put back by
 * tu_env_restore, which frees it: tests that set one for the `vit`
 * processes they run leave it as it was (Check may run them all in one
 * process). */
char *tu_env_save(const char *name);
void tu_env_restore(const char *name, char *saved);

/* A fresh directory under $TMPDIR (or /tmp); the caller removes it. */
char *tu_tmpdir(void);
/* Removes a directory tree made by the tests. */
void tu_rmrf(const char *path);
/* Copies a file; returns 0 on success. */
int tu_copy(const char *src, const char *dst);
/* Reads a whole file; *n gets its size. NULL on failure. */
unsigned char *tu_read(const char *path, size_t *n);
/* Writes `n` bytes; returns 0 on success. */
int tu_write(const char *path, const void *data, size_t n);

/* ---- running the vit command ---- */

typedef struct {
    int code;   /* exit status, or 128 + signal */
    char *out;  /* stdout, NUL-terminated */
    char *err;  /* stderr */
} tu_run_result;

/* The binary under test: $VIT_BIN (set by `make test`), else build/vit. */
const char *tu_vit_bin(void);
/* argv for running it with `args` (NULL-terminated, argv[0] excluded):
 * fills argv[0..] (room for 64), NULL-terminated. */
void tu_vit_argv(const char **argv, const char *const *args);
/* Runs the binary with `args` (NULL-terminated, argv[0] excluded), stdin
 * from /dev/null. When err_fd >= 0 the child's stderr goes there instead of
 * being captured. Check assertions fail the test on system errors. */
void tu_run_argv_fd(tu_run_result *r, const char *const *args, int err_fd);
void tu_run_argv(tu_run_result *r, const char *const *args);
/* tu_run(&r, "classify", "--model", M, NULL) */
void tu_run(tu_run_result *r, ...);
void tu_run_free(tu_run_result *r);

/* ---- a vit worker for service tests ---- */

#include <sys/types.h>

/* Starts `vit serve --model MODEL --bind EP [--index INDEX]` (stderr to
 * DIR/worker.log; the worker dies with the test process) and returns its
 * pid once it answers health; fails the test otherwise. */
pid_t tu_serve_start(const char *model, const char *dir, const char *ep,
                     const char *index);
/* SIGTERM, then SIGKILL after 30 s; returns the exit status (-1 if it had
 * to be killed). */
int tu_serve_stop(pid_t pid);

/* fork() with the child's stdout to the file `out` (emptied), stdin and
 * stderr /dev/null, in a process group of its own: the pid, 0 in the
 * child. */
pid_t tu_fork_out(const char *out);
/* Runs argv with stdout to `out` (stdin and stderr /dev/null) for at most
 * `secs` seconds: its exit status, 128 when killed by a signal, -1 when
 * it ran out of time (it and its process group are killed). */
int tu_run_bounded(char *const *argv, const char *out, int secs);
/* Whether `name` is an executable on PATH. */
int tu_have_program(const char *name);

/* A TCP connection to 127.0.0.1:port, reads timing out after 5 s. */
int tu_tcp_connect(int port);
/* Starts `vit ARGS...` (NULL-terminated, argv[0] excluded), stdin from
 * /dev/null, stdout and stderr appended to `log`; it dies with the test
 * process. Returns its pid. */
pid_t tu_spawn(const char *const *args, const char *log);
/* tu_serve_start with more options for `vit serve` (NULL-terminated). */
pid_t tu_serve_start_args(const char *model, const char *dir, const char *ep,
                          const char *index, const char *const *extra);

#include <jansson.h>

#include "service/client.h"

/* One call to a worker, which must answer; its body parsed (a new
 * reference). */
json_t *tu_call(vit_client *c, const char *header, const vit_blob *blobs,
                int n);

#endif
