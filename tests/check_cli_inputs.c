/*
 * What the image commands (classify, embed, match, index add) do with the
 * files a directory walk meets and with signals:
 *
 * - a file whose content starts like an image of a format the decoder does
 *   not read (TIFF, BMP, ...) or a corrupt one (a HEIC or AVIF of nothing
 *   but its ftyp box) is reported on stderr with its path and the reason,
 *   and counted as failed; files that are not images are skipped, with
 *   one line saying how many;
 * - SIGINT or SIGTERM stops after the current batch with every record
 *   written whole, says how far it got and exits 130 or 143; a second
 *   SIGINT exits at once; `index add` keeps exactly what it reported;
 * - text output escapes control bytes in paths, one record per input.
 *
 * The signal tests are made deterministic by the pipe the command writes
 * to: it is shrunk to one page and the test reads from it only as it
 * chooses, so the command cannot finish its inputs (their output is many
 * pages) before the signal comes, whatever the machine's load. Every wait
 * polls with a generous deadline.
 */
#define _GNU_SOURCE /* F_SETPIPE_SZ */

#include "testutil.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VIT_TINY FIXTURES "/vit_tiny"
#define CLIP FIXTURES "/clip_tok"
#define NOISE_PNG FIXTURES "/cli/noise.png"
#define DEADLINE 120.0 /* seconds, for anything the tests wait on */
#define N_IMAGES 200

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void put(const char *dir, const char *name, const void *data, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_msg(tu_write(path, data, n) == 0, "%s", path);
}

/* n small noise PNGs named DIR/<stem>NNNN.png. */
static void noise_pngs(const char *dir, const char *stem, int n)
{
    for (int i = 0; i < n; i++) {
        char path[1024];
        ck_assert_int_lt(snprintf(path, sizeof path, "%s/%s%04d.png", dir,
                                  stem, i),
                         (int)sizeof path);
        tu_noise_png(path, 16, 16, 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1));
    }
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Whether `line` (without its \n) is one of s's lines. */
static int has_line(const char *s, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = s; (p = strstr(p, line)); p++)
        if ((p == s || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

/* ---- no silent skips ---- */

/* A directory of images the decoder cannot read (by content, whatever
 * their names), a corrupt PNG and a cut WebP, a good PNG and files that
 * are not images. */
static void mixed_dir(const char *d)
{
    char good[1024];
    snprintf(good, sizeof good, "%s/good.png", d);
    ck_assert_int_eq(tu_copy(NOISE_PNG, good), 0);
    put(d, "anim.gif", "GIF89a\x01\x00\x01\x00\x80\x00\x00", 13);
    put(d, "photo.webp", "RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00", 20);
    put(d, "IMG_0001.HEIC",
        "\x00\x00\x00\x18" "ftypheic\x00\x00\x00\x00mif1heic", 24);
    put(d, "noext", "\x00\x00\x00\x1c" "ftypavif\x00\x00\x00\x00"
                    "avifmif1miaf", 28);
    put(d, "broken.png", "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", 16);
    put(d, "notes.txt", "hello\n", 6);
    put(d, "photo.jpg.txt", "BMW and other cars\n", 19);
    put(d, "data.bin", "\x00\x01\x02\x03", 4);
    put(d, ".hidden.gif", "GIF89a\x01\x00\x01\x00\x80\x00\x00", 13);
}

static const char *const undecodable[] = {"anim.gif", "photo.webp",
                                          "IMG_0001.HEIC", "noext",
                                          "broken.png"};
#define N_UNDECODABLE 5

static void check_reported(const char *err, const char *dir)
{
    for (int i = 0; i < N_UNDECODABLE; i++) {
        char want[1200];
        snprintf(want, sizeof want, "vit: %s/%s: ", dir, undecodable[i]);
        const char *at = strstr(err, want);
        ck_assert_msg(at && (at == err || at[-1] == '\n'),
                      "want '%s' in: %s", want, err);
        ck_assert(at[strlen(want)] && at[strlen(want)] != '\n');
    }
    ck_assert_msg(strstr(err, "anim.gif: GIF image is truncated") &&
                      strstr(err, "photo.webp: WebP image is truncated") &&
                      strstr(err, "IMG_0001.HEIC: HEIC image") &&
                      strstr(err, "noext: AVIF image"),
                  "%s", err);
    ck_assert_msg(has_line(err, "vit: skipped 3 files that are not images"),
                  "%s", err);
    ck_assert_ptr_null(strstr(err, ".hidden"));
    ck_assert_int_eq(count_lines(err), N_UNDECODABLE + 1);
}

START_TEST(test_walk_reports_undecodable)
{
    char *d = tu_tmpdir();
    mixed_dir(d);
    char good[1024];
    snprintf(good, sizeof good, "%s/good.png", d);

    tu_run_result r;
    tu_run(&r, "classify", "--format", "jsonl", "--model", VIT_TINY, d, NULL);
    ck_assert_msg(r.code == 1, "exit %d: %s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 1);
    ck_assert_ptr_nonnull(strstr(r.out, good));
    check_reported(r.err, d);
    tu_run_free(&r);

    tu_run(&r, "embed", "--model", CLIP, "--image", d, NULL);
    ck_assert_msg(r.code == 1, "exit %d: %s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 1);
    check_reported(r.err, d);
    tu_run_free(&r);

    tu_run(&r, "match", "--model", CLIP, "--text", "a cat", d, NULL);
    ck_assert_msg(r.code == 1, "exit %d: %s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 2);
    check_reported(r.err, d);
    tu_run_free(&r);

    /* The index outside the directory, so the walk does not meet it. */
    char *d2 = tu_tmpdir();
    char index[1024], want[1200];
    snprintf(index, sizeof index, "%s/i.db", d2);
    tu_run(&r, "index", "add", "--model", CLIP, "--index", index, d, NULL);
    ck_assert_msg(r.code == 1, "exit %d: %s", r.code, r.err);
    snprintf(want, sizeof want,
             "added 1, updated 0, moved 0, copied 0, unchanged 0, failed %d; "
             "1 items in %s\n", N_UNDECODABLE, index);
    ck_assert_str_eq(r.out, want);
    check_reported(r.err, d);
    tu_run_free(&r);
    tu_rmrf(d2);
    free(d2);

    /* Nothing skipped, nothing said. */
    tu_run(&r, "classify", "--model", VIT_TINY, good, NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_str_eq(r.err, "");
    tu_run_free(&r);

    tu_rmrf(d);
    free(d);
}
END_TEST

/* One file that is not an image: the line says so in the singular. */
START_TEST(test_skipped_singular)
{
    char *d = tu_tmpdir();
    char good[1024];
    snprintf(good, sizeof good, "%s/good.png", d);
    ck_assert_int_eq(tu_copy(NOISE_PNG, good), 0);
    put(d, "readme.md", "# hi\n", 5);
    tu_run_result r;
    tu_run(&r, "classify", "--model", VIT_TINY, d, NULL);
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_str_eq(r.err, "vit: skipped 1 file that is not an image\n");
    tu_run_free(&r);
    tu_rmrf(d);
    free(d);
}
END_TEST

/* ---- paths in text output ---- */

START_TEST(test_text_escapes_paths)
{
    char *d = tu_tmpdir();
    char a[1024], b[1024], bad[1024];
    snprintf(a, sizeof a, "%s/a\nb.png", d);
    snprintf(b, sizeof b, "%s/t\tu\x01v\\w\xff.png", d);
    snprintf(bad, sizeof bad, "%s/x\ny.gif", d);
    ck_assert_int_eq(tu_copy(NOISE_PNG, a), 0);
    ck_assert_int_eq(tu_copy(NOISE_PNG, b), 0);
    put(d, "x\ny.gif", "GIF89a\x01\x00\x01\x00\x80\x00\x00", 13);
    char ea[1200], eb[1200], ebad[1200];
    snprintf(ea, sizeof ea, "%s/a\\nb.png", d);
    snprintf(eb, sizeof eb, "%s/t\\tu\\x01v\\\\w\\xff.png", d);
    snprintf(ebad, sizeof ebad, "vit: %s/x\\ny.gif: GIF image is "
             "truncated", d);

    /* classify text: a block per image, its first line the path. */
    tu_run_result r;
    tu_run(&r, "classify", "--model", VIT_TINY, "-k", "1", d, NULL);
    ck_assert_msg(r.code == 1, "exit %d: %s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 4);
    ck_assert_msg(has_line(r.out, ea) && has_line(r.out, eb), "%s", r.out);
    ck_assert_msg(has_line(r.err, ebad), "%s", r.err);
    ck_assert_int_eq(count_lines(r.err), 1);
    tu_run_free(&r);

    /* jsonl: JSON's own escapes, the name read back as it is (but for
     * the byte that is not UTF-8). */
    tu_run(&r, "classify", "--format", "jsonl", "--model", VIT_TINY, d,
           NULL);
    ck_assert_int_eq(count_lines(r.out), 2);
    char *nl = strchr(r.out, '\n');
    *nl = '\0';
    json_error_t jerr;
    json_t *o = json_loads(r.out, 0, &jerr);
    ck_assert_msg(o != NULL, "%s: %s", jerr.text, r.out);
    ck_assert_str_eq(json_string_value(json_object_get(o, "path")), a);
    json_decref(o);
    tu_run_free(&r);

    /* match text: the same. */
    tu_run(&r, "match", "--model", CLIP, "--text", "a cat", d, NULL);
    ck_assert_int_eq(count_lines(r.out), 4);
    ck_assert_msg(has_line(r.out, ea) && has_line(r.out, eb), "%s", r.out);
    tu_run_free(&r);

    tu_rmrf(d);
    free(d);
}
END_TEST

/* ---- interrupts ---- */

/* The line an interrupted command ends with, for `done` of `total` images
 * done without failures, the results `what`. */
static void interrupted_line(char *buf, size_t size, int done, int total,
                             const char *what)
{
    if (done == 1)
        snprintf(buf, size,
                 "vit: interrupted after 1 of %d images; the result of that "
                 "one is %s",
                 total, what);
    else
        snprintf(buf, size,
                 "vit: interrupted after %d of %d images; the results of "
                 "those %d are %s",
                 done, total, done, what);
}

typedef struct {
    pid_t pid;
    int out;         /* the read end of the command's stdout */
    char *buf;       /* stdout read so far */
    size_t n, cap;
    char err[1024];  /* the file its stderr goes to */
    int pipe_size;   /* bytes the pipe holds */
} child;

/* Starts `vit ARGS...` with stdout a one-page pipe and stderr a file. */
static void child_start(child *c, const char *dir, const char *const *args)
{
    const char *argv[64];
    tu_vit_argv(argv, args);
    memset(c, 0, sizeof *c);
    snprintf(c->err, sizeof c->err, "%s/stderr.txt", dir);
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    c->pipe_size = fcntl(fd[1], F_SETPIPE_SZ, 4096);
    ck_assert_int_ge(c->pipe_size, 4096);
    int e = open(c->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(e, 0);
    fflush(NULL);
    c->pid = fork();
    ck_assert_int_ge(c->pid, 0);
    if (c->pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(fd[1], 1);
        dup2(e, 2);
        close(fd[0]);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    close(e);
    c->out = fd[0];
}

/* Reads what is there (waiting up to `ms`); returns 0 at end of file. */
static int child_read(child *c, int ms)
{
    struct pollfd p = {.fd = c->out, .events = POLLIN};
    int rc = poll(&p, 1, ms);
    if (rc < 0 && errno == EINTR)
        return 1;
    ck_assert_int_ge(rc, 0);
    if (rc == 0)
        return 1;
    if (c->n + 4096 + 1 > c->cap) {
        c->cap = c->cap ? 2 * c->cap : 65536;
        c->buf = realloc(c->buf, c->cap);
        ck_assert_ptr_nonnull(c->buf);
    }
    ssize_t got = read(c->out, c->buf + c->n, 4096);
    if (got < 0 && errno == EINTR)
        return 1;
    ck_assert_int_ge(got, 0);
    c->n += (size_t)got;
    c->buf[c->n] = '\0';
    return got > 0;
}

/* Reads until a whole line has come. */
static void child_first_line(child *c)
{
    double t0 = now();
    while (!(c->buf && memchr(c->buf, '\n', c->n))) {
        ck_assert_msg(now() - t0 < DEADLINE, "no output in %.0f s", DEADLINE);
        ck_assert_msg(child_read(c, 100), "the command ended early");
    }
}

/* Reads to the end, then waits for the exit status (128 + signal if
 * killed by one); the stderr text goes to *err (malloc'd). */
static int child_finish(child *c, char **err)
{
    double t0 = now();
    while (child_read(c, 100))
        ck_assert_msg(now() - t0 < DEADLINE, "the command does not end");
    close(c->out);
    if (!c->buf) {
        c->buf = calloc(1, 1);
        ck_assert_ptr_nonnull(c->buf);
    }
    int status;
    while (waitpid(c->pid, &status, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    size_t n;
    *err = (char *)tu_read(c->err, &n);
    ck_assert_ptr_nonnull(*err);
    char *e = realloc(*err, n + 1);
    ck_assert_ptr_nonnull(e);
    e[n] = '\0';
    *err = e;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Starts `vit ARGS...`, sends it `sig` once its first line of output has
 * come, and reads it to its end: the exit status, its stderr in *err. */
static int child_interrupted(child *c, const char *dir,
                             const char *const *args, int sig, char **err)
{
    child_start(c, dir, args);
    child_first_line(c);
    ck_assert_int_eq(kill(c->pid, sig), 0);
    return child_finish(c, err);
}

/* The cases: a command on a directory of N_IMAGES images, --batch 1, and
 * the signal sent once output has come. */
typedef struct {
    const char *what;
    int sig;
    int jsonl;
    int lines_per_record;  /* text */
    const char *args[16];  /* the directory goes after them */
} intr_case;

static const intr_case intr_cases[] = {
    {"classify jsonl, SIGINT", SIGINT, 1, 0,
     {"classify", "--model", VIT_TINY, "--batch", "1", "--format", "jsonl",
      NULL}},
    {"classify text, SIGTERM", SIGTERM, 0, 6,
     {"classify", "--model", VIT_TINY, "--batch", "1", NULL}},
    {"embed jsonl, SIGINT", SIGINT, 1, 0,
     {"embed", "--model", CLIP, "--batch", "1", "--image", NULL}},
    {"match text, SIGTERM", SIGTERM, 0, 4,
     {"match", "--model", CLIP, "--batch", "1", "--text", "a cat", "--text",
      "a dog", "--text", "a photo of the number seven", NULL}},
    {"classify jsonl, SIGINT, decoding in turn", SIGINT, 1, 0,
     {"classify", "--model", VIT_TINY, "--batch", "1", "--format", "jsonl",
      NULL}},
};
#define N_INTR_CASES (int)(sizeof intr_cases / sizeof intr_cases[0])

START_TEST(test_interrupt)
{
    const intr_case *k = &intr_cases[_i];
    char *d = tu_tmpdir();
    char imgs[1024];
    snprintf(imgs, sizeof imgs, "%s/imgs", d);
    ck_assert_int_eq(mkdir(imgs, 0755), 0);
    noise_pngs(imgs, "img", N_IMAGES);
    put(imgs, "notes.txt", "not an image\n", 13);

    const char *args[20];
    int n = 0;
    while (k->args[n]) {
        args[n] = k->args[n];
        n++;
    }
    args[n++] = imgs;
    args[n] = NULL;
    char *saved = tu_env_save("VIT_DECODE_THREADS");
    if (_i == 4)
        setenv("VIT_DECODE_THREADS", "0", 1);
    child c;
    child_start(&c, d, args);
    tu_env_restore("VIT_DECODE_THREADS", saved);
    child_first_line(&c);
    ck_assert_int_eq(kill(c.pid, k->sig), 0);
    char *err;
    int code = child_finish(&c, &err);
    printf("%s: exit %d, %zu bytes out; stderr: %s", k->what, code, c.n, err);

    ck_assert_msg(code == 128 + k->sig, "%s: exit %d: %s", k->what, code,
                  err);
    ck_assert_msg(c.n > 0 && c.buf[c.n - 1] == '\n',
                  "%s: stdout does not end with a whole line", k->what);
    int lines = count_lines(c.buf), records;
    if (k->jsonl) {
        records = lines;
        char *s = c.buf;
        for (int i = 0; i < lines; i++) {
            char *nl = strchr(s, '\n');
            *nl = '\0';
            json_error_t jerr;
            json_t *o = json_loads(s, 0, &jerr);
            ck_assert_msg(o != NULL, "%s: line %d: %s: %s", k->what, i + 1,
                          jerr.text, s);
            ck_assert(json_is_string(json_object_get(o, "path")));
            json_decref(o);
            s = nl + 1;
        }
    } else {
        ck_assert_int_eq(lines % k->lines_per_record, 0);
        records = lines / k->lines_per_record;
    }
    ck_assert_msg(records >= 1 && records < N_IMAGES, "%s: %d records",
                  k->what, records);
    char want[200];
    interrupted_line(want, sizeof want, records, N_IMAGES, "written");
    ck_assert_msg(has_line(err, want), "%s: want '%s' in: %s", k->what, want,
                  err);
    ck_assert_msg(has_line(err, "vit: skipped 1 file that is not an image"),
                  "%s", err);
    free(err);
    free(c.buf);
    tu_rmrf(d);
    free(d);
}
END_TEST

/* Texts too: `embed --texts-file` stops between batches of texts, with
 * whole records written and the count said in texts. */
START_TEST(test_text_interrupt)
{
    enum { N_TEXTS = 3000 };
    char *d = tu_tmpdir(), path[1024];
    snprintf(path, sizeof path, "%s/texts.txt", d);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < N_TEXTS; i++)
        fprintf(f, "a photo of thing number %d\n", i);
    ck_assert_int_eq(fclose(f), 0);
    const char *args[] = {"embed", "--model", CLIP, "--batch", "1",
                          "--texts-file", path, NULL};
    child c;
    char *err;
    int code = child_interrupted(&c, d, args, SIGINT, &err);
    printf("embed --texts-file, SIGINT: exit %d, %zu bytes out; stderr: %s",
           code, c.n, err);
    ck_assert_msg(code == 130, "exit %d: %s", code, err);
    ck_assert(c.n > 0 && c.buf[c.n - 1] == '\n');
    int records = count_lines(c.buf);
    ck_assert_msg(records >= 1 && records < N_TEXTS, "%d records", records);
    char want[200];
    snprintf(want, sizeof want,
             "vit: interrupted after %d of %d texts; the results of those "
             "%d are written",
             records, N_TEXTS, records);
    ck_assert_msg(has_line(err, want), "want '%s' in: %s", want, err);
    free(err);
    free(c.buf);
    tu_rmrf(d);
    free(d);
}
END_TEST

/* A second SIGINT exits at once: with the pipe full and not read, the
 * command cannot end by itself (its last records wait to be written), yet
 * it exits 130 without the message of an orderly stop. */
START_TEST(test_second_interrupt)
{
    char *d = tu_tmpdir();
    char imgs[1024];
    snprintf(imgs, sizeof imgs, "%s/imgs", d);
    ck_assert_int_eq(mkdir(imgs, 0755), 0);
    noise_pngs(imgs, "img", N_IMAGES);
    const char *args[] = {"classify", "--model", VIT_TINY, "--batch", "1",
                          "--format", "jsonl", imgs, NULL};
    child c;
    child_start(&c, d, args);
    double t0 = now();
    int avail = 0;
    while (avail < c.pipe_size) {
        ck_assert_msg(now() - t0 < DEADLINE, "the pipe does not fill");
        struct pollfd p = {.fd = c.out, .events = POLLIN};
        poll(&p, 1, 20);
        ck_assert_int_eq(ioctl(c.out, FIONREAD, &avail), 0);
    }
    /* Signals sent close together may merge into one: send until it
     * ends. */
    int status = 0;
    pid_t w = 0;
    t0 = now();
    while (w == 0) {
        ck_assert_msg(now() - t0 < DEADLINE, "it does not exit");
        kill(c.pid, SIGINT);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        w = waitpid(c.pid, &status, WNOHANG);
        ck_assert_int_ge(w, 0);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 130,
                  "status %#x", status);
    close(c.out);
    size_t n;
    char *err = (char *)tu_read(c.err, &n);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(n == 0 || !memmem(err, n, "interrupted after", 17),
                  "%.*s", (int)n, err);
    free(err);
    tu_rmrf(d);
    free(d);
}
END_TEST

/* `index add` interrupted keeps exactly what it said it added, and the
 * index opens; running it again does the rest. */
START_TEST(test_index_add_interrupt)
{
    char *d = tu_tmpdir();
    char imgs[1024], index[1024];
    snprintf(imgs, sizeof imgs, "%s/imgs", d);
    snprintf(index, sizeof index, "%s/i.db", d);
    ck_assert_int_eq(mkdir(imgs, 0755), 0);
    /* Long names: the status lines of all of them are many pages. */
    noise_pngs(imgs,
               "an_image_with_a_rather_long_name_so_that_lines_are_long_",
               N_IMAGES);
    const char *args[] = {"index", "add", "--model", CLIP, "--index", index,
                          "--batch", "1", "--format", "jsonl", imgs, NULL};
    child c;
    char *err;
    int code = child_interrupted(&c, d, args, SIGINT, &err);
    printf("index add: exit %d; stderr: %s", code, err);
    ck_assert_msg(code == 130, "exit %d: %s", code, err);
    ck_assert(c.n > 0 && c.buf[c.n - 1] == '\n');
    int added = 0, lines = count_lines(c.buf);
    char *s = c.buf;
    for (int i = 0; i < lines; i++) {
        char *nl = strchr(s, '\n');
        *nl = '\0';
        json_t *o = json_loads(s, 0, NULL);
        ck_assert_msg(o != NULL, "line %d: %s", i + 1, s);
        ck_assert_str_eq(json_string_value(json_object_get(o, "status")),
                         "added");
        added++;
        json_decref(o);
        s = nl + 1;
    }
    ck_assert_msg(added >= 1 && added < N_IMAGES, "%d added", added);
    char want[1400], what[1200];
    snprintf(what, sizeof what,
             "committed to %s, which is consistent; running the same add "
             "again does the rest",
             index);
    interrupted_line(want, sizeof want, added, N_IMAGES, what);
    ck_assert_msg(has_line(err, want), "want '%s' in: %s", want, err);
    free(err);
    free(c.buf);

    tu_run_result r;
    tu_run(&r, "index", "stats", "--index", index, "--format", "jsonl", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    json_t *o = json_loads(r.out, 0, NULL);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "items")), added);
    json_decref(o);
    tu_run_free(&r);

    tu_run(&r, "index", "add", "--model", CLIP, "--index", index, imgs, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    snprintf(want, sizeof want,
             "added %d, updated 0, moved 0, copied 0, unchanged %d, failed 0; "
             "%d items in %s\n",
             N_IMAGES - added, added, N_IMAGES, index);
    ck_assert_str_eq(r.out, want);
    tu_run_free(&r);
    tu_rmrf(d);
    free(d);
}
END_TEST

Suite *cli_inputs_suite(void)
{
    Suite *s = suite_create("cli_inputs");
    TCase *tc = tcase_create("walk");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_walk_reports_undecodable);
    tcase_add_test(tc, test_skipped_singular);
    tcase_add_test(tc, test_text_escapes_paths);
    suite_add_tcase(s, tc);
    tc = tcase_create("interrupt");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_interrupt, 0, N_INTR_CASES);
    tcase_add_test(tc, test_second_interrupt);
    tcase_add_test(tc, test_text_interrupt);
    tcase_add_test(tc, test_index_add_interrupt);
    suite_add_tcase(s, tc);
    return s;
}
