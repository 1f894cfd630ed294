/*
 * The plan of an add (index/sync.c) against a real folder and a real
 * store: each kind of change on its own (new, unchanged, touched,
 * updated, moved, copied, twins renamed together), then random sequences
 * of add / rename / copy / modify / delete, after each of which a sync
 * must leave every file of the folder indexed under its own path with the
 * vector of its own content, and a second sync find nothing to embed.
 *
 * "Embedding" here is a table: each file holds one of a few contents, and
 * content c's vector is e_c, so a vector that followed the wrong file
 * shows. Every write gives the file an mtime of its own, as a real write
 * some time later would.
 */
#include "index/sync.h"
#include "tests/testutil.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DIM 8
#define N_CONTENTS 5
#define N_NAMES 7

static char *dir;
static idx_store *store;
static long mtime_tick;

/* Content c: a few hundred bytes; 3 and 4 are the same size, so that a
 * modify can keep a file's size. */
static size_t content(int c, char *buf)
{
    size_t n = c == 4 ? 300 : 200 + 50 * (size_t)c;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + (c * 7 + (int)i) % 26);
    return n;
}

/* Which content a file holds, or -1. */
static int content_of(const char *path)
{
    size_t n;
    unsigned char *b = tu_read(path, &n);
    int which = -1;
    char want[512];
    for (int c = 0; b && c < N_CONTENTS && which < 0; c++) {
        size_t m = content(c, want);
        if (m == n && memcmp(b, want, n) == 0)
            which = c;
    }
    free(b);
    return which;
}

static void name_path(char *out, size_t n, int name)
{
    snprintf(out, n, "%s/f%d.png", dir, name);
}

/* Writes content c to file `name`, with an mtime no other write has. */
static void put_file(int name, int c)
{
    char p[600], buf[512];
    name_path(p, sizeof p, name);
    size_t n = content(c, buf);
    ck_assert_int_eq(tu_write(p, buf, n), 0);
    struct timespec t[2] = {{0, UTIME_OMIT}, {1000000000 + ++mtime_tick, 0}};
    ck_assert_int_eq(utimensat(AT_FDCWD, p, t, 0), 0);
}

static void setup(void)
{
    dir = tu_tmpdir();
    char p[600];
    snprintf(p, sizeof p, "%s/index.vidx", dir);
    idx_error err;
    ck_assert_int_eq(idx_store_open(p, IDX_OPEN_WRITE, &store, &err), IDX_OK);
    idx_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "fake");
    snprintf(m.architecture, sizeof m.architecture, "CLIPModel");
    snprintf(m.fingerprint, sizeof m.fingerprint, "5eed");
    snprintf(m.id, sizeof m.id, "fake/CLIPModel@5eed");
    snprintf(m.dir, sizeof m.dir, "/nonexistent/fake");
    m.dim = DIM;
    ck_assert_int_eq(idx_store_check_model(store, &m, 1, &err), IDX_OK);
}

static void teardown(void)
{
    idx_store_close(store);
    tu_rmrf(dir);
    free(dir);
}

/* What one sync did. */
typedef struct {
    int kinds[IDX_SYNC_FAILED + 1];  /* decided, by kind */
    int said;                        /* cheap changes committed */
    int added, updated;              /* embedded */
    char from[N_NAMES][600];         /* f<i>: where a move or copy came from */
} sync_result;

static void heard(void *ud, idx_sync_kind kind, const char *key,
                  const char *from)
{
    sync_result *r = ud;
    r->said++;
    const char *base = strrchr(key, '/');
    int name;
    if (from && base && sscanf(base, "/f%d.png", &name) == 1 && name >= 0 &&
        name < N_NAMES)
        snprintf(r->from[name], sizeof r->from[name], "%s", from);
    (void)kind;
}

/* `vit index add DIR` in small: every file of the folder in name order,
 * decided, the cheap changes flushed, the rest "embedded" in batches of
 * three. */
static sync_result run_sync(void)
{
    sync_result r;
    memset(&r, 0, sizeof r);
    idx_error err;
    idx_sync *y;
    ck_assert_int_eq(idx_sync_new(store, DIM, heard, &r, &y, &err), IDX_OK);
    struct dirent **ents;
    int ne = scandir(dir, &ents, NULL, alphasort);
    ck_assert_int_ge(ne, 0);
    for (int i = 0; i < ne; i++) {
        char p[600];
        int name;
        if (sscanf(ents[i]->d_name, "f%d.png", &name) == 1) {
            snprintf(p, sizeof p, "%s/%s", dir, ents[i]->d_name);
            struct stat sb;
            ck_assert_int_eq(stat(p, &sb), 0);
            idx_sync_file f = {
                .key = p, .size = sb.st_size,
                .mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 +
                            sb.st_mtim.tv_nsec,
                .ctime = (double)sb.st_ctim.tv_sec + 1e-9 * sb.st_ctim.tv_nsec};
            idx_sync_kind kind;
            const char *why;
            ck_assert_int_eq(idx_sync_decide(y, &f, &kind, &why, &err), IDX_OK);
            r.kinds[kind]++;
        }
        free(ents[i]);
    }
    free(ents);
    ck_assert_int_eq(idx_sync_flush(y, &err), IDX_OK);
    size_t n;
    char *const *keys = idx_sync_todo(y, &n);
    for (size_t i = 0; i < n; i += 3) {
        int b = n - i < 3 ? (int)(n - i) : 3, replaced[3];
        float v[3][DIM] = {{0}};
        for (int j = 0; j < b; j++) {
            int c = content_of(keys[i + j]);
            ck_assert_int_ge(c, 0);
            v[j][c] = 1;
        }
        ck_assert_int_eq(idx_sync_put(y, keys + i, &v[0][0], b, replaced,
                                      &err), IDX_OK);
        for (int j = 0; j < b; j++)
            replaced[j] ? r.updated++ : r.added++;
    }
    idx_sync_free(y);
    return r;
}

/* Every file of the folder is indexed under its path with its content's
 * vector. */
static void check_folder(const char *when)
{
    for (int name = 0; name < N_NAMES; name++) {
        char p[600];
        name_path(p, sizeof p, name);
        if (access(p, F_OK) != 0)
            continue;
        int c = content_of(p);
        idx_item it;
        int found;
        idx_error err;
        ck_assert_int_eq(idx_store_get_path(store, p, &it, &found, &err),
                         IDX_OK);
        ck_assert_msg(found, "%s: f%d.png is not indexed", when, name);
        float v[DIM];
        ck_assert_int_eq(idx_store_fetch(store, it.id, v), 0);
        for (int j = 0; j < DIM; j++)
            ck_assert_msg(v[j] == (j == c ? 1.0f : 0.0f),
                          "%s: f%d.png (content %d) has the vector of "
                          "another content", when, name, c);
        idx_item_free(&it);
    }
}

/* xorshift: the same sequences on every machine. */
static unsigned rnd(unsigned *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void move_file(int from, int to)
{
    char a[600], b[600];
    name_path(a, sizeof a, from);
    name_path(b, sizeof b, to);
    ck_assert_int_eq(rename(a, b), 0);
}

START_TEST(sync_each_kind)
{
    put_file(0, 0);
    put_file(1, 1);
    sync_result r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_NEW], 2);
    ck_assert_int_eq(r.added, 2);
    check_folder("two new files");

    /* Nothing changed: nothing to do. */
    r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_UNCHANGED], 2);
    ck_assert_int_eq(r.added + r.updated + r.said, 0);

    /* A new mtime, the same bytes: touched, not embedded. */
    put_file(0, 0);
    r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_TOUCHED], 1);
    ck_assert_int_eq(r.added + r.updated, 0);

    /* Other bytes of the same size: updated. */
    put_file(1, 2);
    put_file(3, 3);
    r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_UPDATED], 1);
    ck_assert_int_eq(r.kinds[IDX_SYNC_NEW], 1);
    ck_assert_int_eq(r.updated, 1);
    put_file(3, 4);  /* contents 3 and 4 are one size */
    r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_UPDATED], 1);
    check_folder("updated");

    /* Renamed: moved, from its old path. */
    move_file(0, 5);
    r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_MOVED], 1);
    ck_assert_int_eq(r.added + r.updated, 0);
    char p[600];
    name_path(p, sizeof p, 0);
    ck_assert_str_eq(r.from[5], p);
    check_folder("moved");

    /* Copied: a new item with the vector, from where the bytes are. */
    put_file(6, 0);
    r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_COPIED], 1);
    ck_assert_int_eq(r.added + r.updated, 0);
    name_path(p, sizeof p, 5);
    ck_assert_str_eq(r.from[6], p);
    check_folder("copied");
}
END_TEST

/* Twins (a file and its copy) renamed in one go: each is a move, of an
 * item of its own; neither is lost to the other. */
START_TEST(sync_twins_renamed)
{
    put_file(0, 2);
    put_file(1, 2);
    sync_result r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_NEW] + r.kinds[IDX_SYNC_COPIED], 2);
    move_file(0, 4);
    move_file(1, 5);
    r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_MOVED], 2);
    ck_assert_int_eq(r.added + r.updated, 0);
    check_folder("twins renamed");
    /* A renamed file and a new copy of it, decided in one sync. */
    move_file(4, 0);
    put_file(2, 2);
    r = run_sync();
    ck_assert_int_eq(r.kinds[IDX_SYNC_MOVED], 1);
    ck_assert_int_eq(r.kinds[IDX_SYNC_COPIED], 1);
    check_folder("renamed and copied");
}
END_TEST

/* Random sequences of add, rename (over a file or not), copy, modify and
 * delete, a sync after every few, each checked against the folder. */
START_TEST(sync_random_sequences)
{
    unsigned seed = 12345u + (unsigned)_i;
    int have[N_NAMES];
    for (int i = 0; i < N_NAMES; i++)
        have[i] = -1;
    int syncs = 0;
    for (int step = 0; step < 120; step++) {
        int op = (int)(rnd(&seed) % 5), a = (int)(rnd(&seed) % N_NAMES);
        int b = (int)(rnd(&seed) % N_NAMES);
        int c = (int)(rnd(&seed) % N_CONTENTS);
        char pa[600];
        name_path(pa, sizeof pa, a);
        if (op == 0 || (have[a] < 0 && op != 4)) {  /* add */
            put_file(a, c);
            have[a] = c;
        } else if (op == 1 && a != b) {  /* rename, maybe over b */
            move_file(a, b);
            have[b] = have[a];
            have[a] = -1;
        } else if (op == 2 && a != b) {  /* copy: a new file, a new mtime */
            put_file(b, have[a]);
            have[b] = have[a];
        } else if (op == 3) {  /* modify */
            put_file(a, c);
            have[a] = c;
        } else if (op == 4 && have[a] >= 0) {  /* delete */
            ck_assert_int_eq(unlink(pa), 0);
            have[a] = -1;
        }
        if (rnd(&seed) % 3 == 0 || step == 119) {
            char when[64];
            snprintf(when, sizeof when, "seed %d, step %d", _i, step);
            run_sync();
            check_folder(when);
            sync_result again = run_sync();
            ck_assert_msg(again.added + again.updated == 0,
                          "%s: a second sync embedded %d files", when,
                          again.added + again.updated);
            check_folder(when);
            syncs++;
        }
    }
    ck_assert_int_gt(syncs, 10);
}
END_TEST

Suite *index_sync_suite(void)
{
    Suite *s = suite_create("index_sync");
    TCase *tc = tcase_create("plan");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sync_each_kind);
    tcase_add_test(tc, sync_twins_renamed);
    tcase_add_loop_test(tc, sync_random_sequences, 0, 8);
    suite_add_tcase(s, tc);
    return s;
}
