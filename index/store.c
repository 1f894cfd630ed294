/*
 * The durable half of the index: one SQLite file in WAL mode holding the
 * items (key/path, content hash, size, mtime, model id, time added,
 * metadata JSON), their vectors as float32 BLOBs in a table of their own
 * (so listing items never pages vectors in), and in a small key/value
 * table the model the vectors came from. Every write happens inside a
 * batch transaction the caller opens and commits, with synchronous=FULL,
 * so a process killed at any instant leaves the last committed batch and
 * nothing of the one in flight. The file is marked with an application id
 * so that another program's database is refused rather than altered.
 */
#include "index/index.h"
#include "vit/fail.h"
#include "index/vcache.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define APP_ID 0x56495431 /* "VIT1" */
/* 2: every write transaction that changes a vector bumps the meta key
 * 'generation' (and an 'identity' is set), which the vector cache beside
 * the index is stamped with; a vit that writes schema 1 does not bump it,
 * so it must refuse the file. Schema 1 files become 2 when opened for
 * writing (nothing else changed). */
#define SCHEMA_VERSION 2

enum {
    Q_GET_PATH,
    Q_GET_HASH,
    Q_INSERT_ITEM,
    Q_UPDATE_ITEM,
    Q_PUT_VEC,
    Q_MOVE,
    Q_FETCH,
    Q_COUNT
};

static const char *const sql_text[Q_COUNT] = {
    [Q_GET_PATH] = "SELECT id, path, hash, size, mtime_ns, added, meta "
                   "FROM items WHERE path = ?1",
    [Q_GET_HASH] = "SELECT id, path, hash, size, mtime_ns, added, meta "
                   "FROM items WHERE hash = ?1 AND id > ?2 ORDER BY id "
                   "LIMIT 1",
    [Q_INSERT_ITEM] = "INSERT INTO items(path, hash, size, mtime_ns, "
                      "model_id, added, meta) VALUES (?1,?2,?3,?4,?5,?6,?7)",
    [Q_UPDATE_ITEM] = "UPDATE items SET hash=?2, size=?3, mtime_ns=?4, "
                      "model_id=?5, added=?6, meta=?7 WHERE id=?1",
    [Q_PUT_VEC] = "INSERT OR REPLACE INTO vectors(id, v) VALUES (?1, ?2)",
    [Q_MOVE] = "UPDATE items SET path=?2, size=?3, mtime_ns=?4, added=?5 "
               "WHERE id=?1",
    [Q_FETCH] = "SELECT v FROM vectors WHERE id = ?1",
};

struct idx_store {
    sqlite3 *db;
    char *path;
    int dim;           /* 0 until a model is recorded */
    int lock_fd;       /* the writer's claim (flock), or -1 */
    int bumped;        /* the open transaction has bumped the generation */
    char model_id[420];
    sqlite3_stmt *q[Q_COUNT];
};

/* The library's one helper (vit/fail.h), by the name this file uses. */
#define fail vit__fail

/* An SQLite failure as a status: a file that is no database is a format
 * error, a full disk or an I/O error is I/O, the rest is the database's. */
/* How to rebuild a damaged index: said wherever one is refused. */
#define REBUILD "restore it from a backup, or rebuild it (remove the file " \
                "and run 'vit index add' again on the same folders)"

/* The file against its own header, before SQLite reads it: SQLite fills
 * what a short read misses with zeros, so a file cut short (a copy that
 * stopped, a full disk) would otherwise open and lose rows silently. A
 * database file is whole pages, and at least as long as the page count
 * its header gives (when the header says that count is current). With a
 * write-ahead log present the main file can legitimately lag behind (a
 * checkpoint interrupted by a crash, which the log then repairs), so
 * only the log-less state is judged. */
static idx_status db_fail(idx_store *s, idx_error *err, const char *what)
{
    int code = sqlite3_extended_errcode(s->db) & 0xff;
    idx_status st = code == SQLITE_NOTADB || code == SQLITE_CORRUPT
                        ? IDX_E_FORMAT
                    : code == SQLITE_NOMEM ? IDX_E_NOMEM
                    : code == SQLITE_IOERR || code == SQLITE_FULL ||
                            code == SQLITE_CANTOPEN || code == SQLITE_READONLY
                        ? IDX_E_IO
                        : IDX_E_DB;
    if (code == SQLITE_CORRUPT)
        return fail(err, st, "%s: %s: %s; " REBUILD, s->path, what,
                    sqlite3_errmsg(s->db));
    return fail(err, st, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static idx_status exec(idx_store *s, const char *sql, idx_error *err)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, err, sql);
    return IDX_OK;
}

/* One integer from a query (a pragma); -1 on failure. */
static int64_t query_int(idx_store *s, const char *sql)
{
    sqlite3_stmt *q;
    int64_t v = -1;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static double now_s(void);

static idx_status check_file(const char *path, idx_error *err)
{
    unsigned char h[100];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return IDX_OK; /* SQLite says why */
    struct stat sb;
    ssize_t got = fstat(fd, &sb) == 0 ? read(fd, h, sizeof h) : -1;
    close(fd);
    if (got != (ssize_t)sizeof h || memcmp(h, "SQLite format 3", 16) != 0)
        return IDX_OK; /* empty (new) or not SQLite: said elsewhere */
    char wal[4200];
    struct stat ws;
    snprintf(wal, sizeof wal, "%s-wal", path);
    if (stat(wal, &ws) == 0 && ws.st_size > 0)
        return IDX_OK;
    unsigned page = (unsigned)h[16] << 8 | h[17];
    if (page == 1)
        page = 65536;
    if (page < 512 || (page & (page - 1)))
        return fail(err, IDX_E_FORMAT, "%s: the index file is damaged (a "
                    "page size of %u in its header): " REBUILD, path, page);
    uint32_t npages = (uint32_t)h[28] << 24 | (uint32_t)h[29] << 16 |
                      (uint32_t)h[30] << 8 | h[31];
    int npages_valid = memcmp(h + 24, h + 92, 4) == 0 && npages > 0;
    if (sb.st_size % page != 0 ||
        (npages_valid && (uint64_t)npages * page > (uint64_t)sb.st_size))
        return fail(err, IDX_E_FORMAT,
                    "%s: the index file is damaged: it is %lld bytes, %s %u "
                    "pages of %u bytes (it was cut short); " REBUILD,
                    path, (long long)sb.st_size,
                    sb.st_size % page ? "not a whole number of"
                                      : "less than its",
                    npages_valid ? npages : 0, page);
    return IDX_OK;
}

/* SQLite's quick_check: every page and row of the b-trees read and
 * checked (not the indexes against the tables). Run before writing. */
static idx_status quick_check(idx_store *s, idx_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &q, NULL) !=
        SQLITE_OK)
        return db_fail(s, err, "checking the file");
    int rc = sqlite3_step(q);
    idx_status st = IDX_OK;
    const char *r = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 0)
                                     : NULL;
    if (rc == SQLITE_ROW && r && strcmp(r, "ok") != 0) {
        char what[128];
        snprintf(what, sizeof what, "%s", r);
        for (char *c = what; *c; c++)
            if (*c == '\n')
                *c = ' ';
        st = fail(err, IDX_E_FORMAT,
                  "%s: the index file is damaged (%s); " REBUILD, s->path,
                  what);
    }
    else if (rc != SQLITE_ROW)
        st = fail(err, IDX_E_FORMAT, "%s: the index file is damaged (%s); "
                  REBUILD, s->path, sqlite3_errmsg(s->db));
    sqlite3_finalize(q);
    return st;
}

/* The directory of `path`, or "." */
static void dir_of(const char *path, char *dir, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, n, ".");
    else if (slash == path)
        snprintf(dir, n, "/");
    else
        snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

static const char schema[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE items("
    "  id INTEGER PRIMARY KEY,"
    "  path TEXT NOT NULL UNIQUE,"
    "  hash BLOB,"
    "  size INTEGER NOT NULL DEFAULT -1,"
    "  mtime_ns INTEGER NOT NULL DEFAULT 0,"
    "  model_id TEXT NOT NULL,"
    "  added REAL NOT NULL,"
    "  meta TEXT CHECK (meta IS NULL OR json_valid(meta)));"
    "CREATE INDEX items_hash ON items(hash) WHERE hash IS NOT NULL;"
    "CREATE TABLE vectors(id INTEGER PRIMARY KEY, v BLOB NOT NULL);";

static idx_status read_meta_dim(idx_store *s)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT key, value FROM meta WHERE key IN "
                           "('dim', 'model_id')",
                           -1, &q, NULL) != SQLITE_OK)
        return IDX_E_DB;
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(q, 0);
        const char *v = (const char *)sqlite3_column_text(q, 1);
        if (k && v && strcmp(k, "dim") == 0)
            s->dim = atoi(v);
        else if (k && v)
            snprintf(s->model_id, sizeof s->model_id, "%s", v);
    }
    sqlite3_finalize(q);
    return IDX_OK;
}

/* Makes the schema of a new index in one transaction. Another process may
 * be creating the same file at this moment: the write lock (BEGIN
 * IMMEDIATE, waited for) orders the two, and the second finds the first's
 * schema and uses it. Setting WAL needs the lock too, and may find the
 * file busy for a moment: it is retried within the busy timeout. */
static idx_status create(idx_store *s, idx_error *err)
{
    double t0 = now_s();
    while (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) !=
           SQLITE_OK) {
        int code = sqlite3_errcode(s->db);
        if ((code != SQLITE_BUSY && code != SQLITE_LOCKED) ||
            now_s() - t0 > 10)
            return db_fail(s, err, "setting up a new index");
        usleep(10000);
    }
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, err, "setting up a new index");
    int64_t app = query_int(s, "PRAGMA application_id");
    if (app == APP_ID) /* the other creator's, now committed */
        return exec(s, "COMMIT", err);
    char setup[128];
    snprintf(setup, sizeof setup,
             "PRAGMA application_id=%d; PRAGMA user_version=%d;", APP_ID,
             SCHEMA_VERSION);
    if (sqlite3_exec(s->db, setup, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        idx_status st = db_fail(s, err, "setting up a new index");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    return IDX_OK;
}

idx_status idx_store_open(const char *path, idx_open_mode mode,
                          idx_store **out, idx_error *err)
{
    if (!path || !out)
        return fail(err, IDX_E_ARG, "no index path");
    struct stat sb;
    if (mode == IDX_OPEN_READ && stat(path, &sb) != 0)
        return fail(err, IDX_E_IO, "%s: %s", path, strerror(errno));
    idx_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return fail(err, IDX_E_NOMEM, "out of memory");
    }
    s->lock_fd = -1;
    idx_status st;
    if ((st = check_file(path, err)) != IDX_OK)
        goto fail;
    /* Writing needs the directory (SQLite's log and shared-memory files
     * live beside the index) and the file to be writable. */
    char dir[4200];
    dir_of(path, dir, sizeof dir);
    if (mode != IDX_OPEN_READ &&
        (access(dir, W_OK) != 0 ||
         (access(path, F_OK) == 0 && access(path, W_OK) != 0))) {
        st = fail(err, IDX_E_IO, "%s: %s is read-only, so the index cannot "
                  "be written (it can still be searched)", path,
                  access(dir, W_OK) != 0 ? "its directory" : "the file");
        goto fail;
    }
    int flags = mode == IDX_OPEN_READ
                    ? SQLITE_OPEN_READONLY
                    : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    /* Read-only media and directories (backups, shared volumes): SQLite
     * cannot make its shared-memory file there, so the file is opened as
     * immutable, which needs none; nothing can be writing it there. */
    int immutable = mode == IDX_OPEN_READ && access(dir, W_OK) != 0;
    char *uri = immutable ? sqlite3_mprintf("file:%s?immutable=1", path)
                          : NULL;
    if (immutable && !uri) {
        st = fail(err, IDX_E_NOMEM, "out of memory");
        goto fail;
    }
    int rc = sqlite3_open_v2(immutable ? uri : path, &s->db,
                             flags | SQLITE_OPEN_NOMUTEX |
                                 (immutable ? SQLITE_OPEN_URI : 0),
                             NULL);
    sqlite3_free(uri);
    if (rc != SQLITE_OK) {
        st = s->db ? db_fail(s, err, "open")
                   : fail(err, IDX_E_NOMEM, "out of memory");
        goto fail;
    }
    /* Another process's `index add` may hold the write lock for one
     * batch; wait for it rather than fail. Readers never wait in WAL. */
    sqlite3_busy_timeout(s->db, 10000);
    int64_t app = query_int(s, "PRAGMA application_id");
    if (app < 0 && (sqlite3_errcode(s->db) == SQLITE_NOTADB)) {
        st = fail(err, IDX_E_FORMAT,
                  "%s: not a vit index (not an SQLite database)", path);
        goto fail;
    }
    if (app < 0) {
        st = db_fail(s, err, "reading the header");
        goto fail;
    }
    int64_t tables = query_int(s, "SELECT count(*) FROM sqlite_master");
    if (app != APP_ID && !(app == 0 && tables == 0)) {
        st = fail(err, IDX_E_FORMAT,
                  "%s: not a vit index (a database of another program)",
                  path);
        goto fail;
    }
    if (app != APP_ID) {
        if (mode == IDX_OPEN_READ) {
            st = fail(err, IDX_E_FORMAT, "%s: not a vit index (empty file)",
                      path);
            goto fail;
        }
        if ((st = create(s, err)) != IDX_OK)
            goto fail;
    } else if (query_int(s, "PRAGMA user_version") > SCHEMA_VERSION) {
        st = fail(err, IDX_E_FORMAT,
                  "%s: an index of a newer schema than this vit reads", path);
        goto fail;
    }
    if (mode != IDX_OPEN_READ &&
        ((st = exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                    err)) != IDX_OK ||
         (st = quick_check(s, err)) != IDX_OK))
        goto fail;
    if (mode != IDX_OPEN_READ &&
        query_int(s, "PRAGMA user_version") < SCHEMA_VERSION) {
        char up[64];
        snprintf(up, sizeof up, "PRAGMA user_version=%d", SCHEMA_VERSION);
        if ((st = exec(s, up, err)) != IDX_OK)
            goto fail;
    }
    for (int i = 0; i < Q_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, sql_text[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &s->q[i],
                               NULL) != SQLITE_OK) {
            st = db_fail(s, err, "preparing a statement");
            goto fail;
        }
    if (read_meta_dim(s) != IDX_OK) {
        st = db_fail(s, err, "reading the model");
        goto fail;
    }
    *out = s;
    return IDX_OK;
fail:
    idx_store_close(s);
    return st;
}

void idx_store_close(idx_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->q[i]);
    sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);  /* releases the claim */
    free(s->path);
    free(s);
}

idx_status idx_store_claim(idx_store *s, idx_error *err)
{
    if (s->lock_fd >= 0)
        return IDX_OK;
    /* flock, not fcntl: SQLite's own locks are fcntl locks, which a
     * second descriptor of ours would disturb; the two kinds do not
     * interact on Linux. */
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, IDX_E_IO, "%s: %s", s->path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return fail(err, IDX_E_IO,
                        "%s: another process is writing to this index (a "
                        "worker serving it, or another 'vit index add'); "
                        "add through that worker, or wait", s->path);
        return fail(err, IDX_E_IO, "%s: %s", s->path, strerror(e));
    }
    s->lock_fd = fd;
    return IDX_OK;
}

idx_status idx_store_model(idx_store *s, idx_model *out, int *has,
                           idx_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT key, value FROM meta", -1, &q,
                           NULL) != SQLITE_OK)
        return db_fail(s, err, "reading the model");
    idx_model m;
    memset(&m, 0, sizeof m);
    int n = 0, rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(q, 0);
        const char *v = (const char *)sqlite3_column_text(q, 1);
        if (!k || !v)
            continue;
        if (strcmp(k, "model_id") == 0)
            snprintf(m.id, sizeof m.id, "%s", v), n++;
        else if (strcmp(k, "fingerprint") == 0)
            snprintf(m.fingerprint, sizeof m.fingerprint, "%s", v), n++;
        else if (strcmp(k, "name") == 0)
            snprintf(m.name, sizeof m.name, "%s", v);
        else if (strcmp(k, "architecture") == 0)
            snprintf(m.architecture, sizeof m.architecture, "%s", v);
        else if (strcmp(k, "dir") == 0)
            snprintf(m.dir, sizeof m.dir, "%s", v);
        else if (strcmp(k, "dim") == 0)
            m.dim = atoi(v), n++;
        else if (strcmp(k, "precision") == 0)
            snprintf(m.precision, sizeof m.precision, "%s", v);
        else if (strcmp(k, "preprocess") == 0)
            snprintf(m.preprocess, sizeof m.preprocess, "%s", v);
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return db_fail(s, err, "reading the model");
    *has = n == 3;
    if (*has)
        *out = m;
    return IDX_OK;
}

static int put_meta(idx_store *s, const char *k, const char *v)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO meta(key, value) "
                           "VALUES (?1, ?2)",
                           -1, &q, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(q, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, v, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? 0 : -1;
}

idx_status idx_store_check_model(idx_store *s, const idx_model *m,
                                 int record, idx_error *err)
{
    idx_model have;
    int has = 0;
    idx_status st = idx_store_model(s, &have, &has, err);
    if (st != IDX_OK)
        return st;
    if (has) {
        if (strcmp(have.fingerprint, m->fingerprint) != 0 ||
            have.dim != m->dim)
            return fail(err, IDX_E_MODEL,
                        "%s: the index was built with model %s (%d-d), not "
                        "%s (%d-d); vectors of different models cannot be "
                        "compared (use a new index, or the model %s)",
                        s->path, have.id, have.dim, m->id, m->dim,
                        have.dir[0] ? have.dir : have.name);
        /* The same weights run another way make vectors that differ a
         * little (precision) or more (the other image processor): not the
         * ones the index holds. */
        static const struct {
            const char *key, *option;
            size_t at;
        } how[2] = {
            {"precision", "--precision", offsetof(idx_model, precision)},
            {"preprocess", "--preprocess", offsetof(idx_model, preprocess)},
        };
        for (int i = 0; i < 2; i++) {
            const char *h = (const char *)&have + how[i].at;
            const char *w = (const char *)m + how[i].at;
            if (h[0] && w[0] && strcmp(h, w) != 0)
                return fail(err, IDX_E_MODEL,
                            "%s: the index's vectors were made with %s %s, "
                            "not %s; vectors made another way do not "
                            "compare with them (use %s %s, or a new index)",
                            s->path, how[i].option, h, w, how[i].option, h);
            /* An index made before this was recorded learns it from its
             * next add. */
            if (record && !h[0] && w[0] && put_meta(s, how[i].key, w) != 0)
                return db_fail(s, err, "recording how vectors are made");
        }
        /* The same weights found in another directory: remember where, so
         * that search finds them without --model. */
        if (record && strcmp(have.dir, m->dir) != 0 &&
            put_meta(s, "dir", m->dir) != 0)
            return db_fail(s, err, "recording the model's directory");
        return IDX_OK;
    }
    if (!record)
        return fail(err, IDX_E_MODEL, "%s: the index has no model yet",
                    s->path);
    char dim[16];
    snprintf(dim, sizeof dim, "%d", m->dim);
    if ((st = exec(s, "SAVEPOINT model", err)) != IDX_OK)
        return st;
    if (put_meta(s, "model_id", m->id) || put_meta(s, "fingerprint",
                                                   m->fingerprint) ||
        put_meta(s, "name", m->name) ||
        put_meta(s, "architecture", m->architecture) ||
        put_meta(s, "dir", m->dir) || put_meta(s, "dim", dim) ||
        (m->precision[0] && put_meta(s, "precision", m->precision)) ||
        (m->preprocess[0] && put_meta(s, "preprocess", m->preprocess))) {
        st = db_fail(s, err, "recording the model");
        sqlite3_exec(s->db, "ROLLBACK TO model; RELEASE model", NULL, NULL,
                     NULL);
        return st;
    }
    if ((st = exec(s, "RELEASE model", err)) != IDX_OK)
        return st;
    s->dim = m->dim;
    snprintf(s->model_id, sizeof s->model_id, "%s", m->id);
    return IDX_OK;
}

void idx_item_free(idx_item *it)
{
    if (!it)
        return;
    free(it->path);
    free(it->meta);
    it->path = it->meta = NULL;
}

static char *col_strdup(sqlite3_stmt *q, int c)
{
    const unsigned char *t = sqlite3_column_text(q, c);
    return t ? strdup((const char *)t) : NULL;
}

static idx_status get_item(idx_store *s, sqlite3_stmt *q, idx_item *out,
                           int *found, idx_error *err)
{
    int rc = sqlite3_step(q);
    *found = 0;
    idx_status st = IDX_OK;
    if (rc == SQLITE_ROW) {
        idx_item it;
        memset(&it, 0, sizeof it);
        it.id = sqlite3_column_int64(q, 0);
        it.path = col_strdup(q, 1);
        if (sqlite3_column_bytes(q, 2) == 32) {
            memcpy(it.hash, sqlite3_column_blob(q, 2), 32);
            it.has_hash = 1;
        }
        it.size = sqlite3_column_int64(q, 3);
        it.mtime_ns = sqlite3_column_int64(q, 4);
        it.added = sqlite3_column_double(q, 5);
        it.meta = col_strdup(q, 6);
        if (!it.path || (sqlite3_column_type(q, 6) != SQLITE_NULL &&
                         !it.meta)) {
            idx_item_free(&it);
            st = fail(err, IDX_E_NOMEM, "out of memory");
        } else {
            *out = it;
            *found = 1;
        }
    } else if (rc != SQLITE_DONE) {
        st = db_fail(s, err, "looking an item up");
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return st;
}

idx_status idx_store_get_path(idx_store *s, const char *path, idx_item *out,
                              int *found, idx_error *err)
{
    sqlite3_stmt *q = s->q[Q_GET_PATH];
    sqlite3_bind_text(q, 1, path, -1, SQLITE_STATIC);
    return get_item(s, q, out, found, err);
}

idx_status idx_store_get_hash(idx_store *s, const uint8_t hash[32],
                              int64_t after, idx_item *out, int *found,
                              idx_error *err)
{
    sqlite3_stmt *q = s->q[Q_GET_HASH];
    sqlite3_bind_blob(q, 1, hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, after);
    return get_item(s, q, out, found, err);
}

idx_status idx_store_begin(idx_store *s, idx_error *err)
{
    /* IMMEDIATE takes the write lock now, so a batch never fails halfway
     * because another writer got there first. */
    s->bumped = 0;
    return exec(s, "BEGIN IMMEDIATE", err);
}

idx_status idx_store_commit(idx_store *s, idx_error *err)
{
    s->bumped = 0;
    idx_status st = exec(s, "COMMIT", err);
    if (st != IDX_OK)
        idx_store_rollback(s);
    return st;
}

void idx_store_rollback(idx_store *s)
{
    s->bumped = 0;
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Called by every write that changes a vector: bumps the generation once
 * per transaction (each write on its own outside one), in the same
 * transaction, so that no committed state of the vectors shares a
 * generation with another; the first bump also gives the index its
 * identity. */
static idx_status vectors_changed(idx_store *s, idx_error *err)
{
    int in_txn = !sqlite3_get_autocommit(s->db);
    if (in_txn && s->bumped)
        return IDX_OK;
    uint64_t ident;
    sqlite3_randomness(sizeof ident, &ident);
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO meta(key, value) VALUES ('generation', '1') "
             "ON CONFLICT(key) DO UPDATE SET value = "
             "CAST(CAST(value AS INTEGER) + 1 AS TEXT); "
             "INSERT OR IGNORE INTO meta(key, value) "
             "VALUES ('identity', '%llu')",
             (unsigned long long)(ident >> 1));
    idx_status st = exec(s, sql, err);
    if (st == IDX_OK && in_txn)
        s->bumped = 1;
    return st;
}

/* The generation and identity in the current read transaction; 0 when
 * the index has none yet (no vector written by this schema). */
static int read_stamp(idx_store *s, uint64_t *gen, uint64_t *ident)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT key, value FROM meta WHERE key IN "
                           "('generation', 'identity')",
                           -1, &q, NULL) != SQLITE_OK)
        return 0;
    int have = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(q, 0);
        const char *v = (const char *)sqlite3_column_text(q, 1);
        if (!k || !v)
            continue;
        unsigned long long x = strtoull(v, NULL, 10);
        if (strcmp(k, "generation") == 0)
            *gen = x, have |= 1;
        else
            *ident = x, have |= 2;
    }
    sqlite3_finalize(q);
    return have == 3;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Vectors are stored little-endian whatever the host. */
static void to_le(uint32_t *w, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++)
        w[i] = __builtin_bswap32(w[i]);
#else
    (void)w, (void)n;
#endif
}

static int step_done(sqlite3_stmt *q)
{
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_DONE ? 0 : -1;
}

idx_status idx_store_put(idx_store *s, const idx_item *it, const float *vec,
                         int64_t *id, int *replaced, idx_error *err)
{
    if (s->dim <= 0)
        return fail(err, IDX_E_ARG, "%s: no model recorded yet", s->path);
    if (!it->path || !vec)
        return fail(err, IDX_E_ARG, "an item needs a key and a vector");
    if (it->meta) {
        /* Refused here rather than by the CHECK, with a clearer message. */
        sqlite3_stmt *q;
        int ok = 0;
        if (sqlite3_prepare_v2(s->db, "SELECT json_valid(?1) AND "
                                      "json_type(?1) = 'object'",
                               -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_text(q, 1, it->meta, -1, SQLITE_STATIC);
            ok = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0);
            sqlite3_finalize(q);
        }
        if (!ok)
            return fail(err, IDX_E_ARG, "%s: metadata is not a JSON object",
                        it->path);
    }
    idx_item old;
    int found;
    idx_status st = idx_store_get_path(s, it->path, &old, &found, err);
    if (st != IDX_OK)
        return st;
    int64_t the_id = found ? old.id : 0;
    if (found)
        idx_item_free(&old);
    sqlite3_stmt *q = s->q[found ? Q_UPDATE_ITEM : Q_INSERT_ITEM];
    if (found)
        sqlite3_bind_int64(q, 1, the_id);
    else
        sqlite3_bind_text(q, 1, it->path, -1, SQLITE_STATIC);
    if (it->has_hash)
        sqlite3_bind_blob(q, 2, it->hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, it->size);
    sqlite3_bind_int64(q, 4, it->mtime_ns);
    sqlite3_bind_text(q, 5, s->model_id, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 6, it->added > 0 ? it->added : now_s());
    if (it->meta)
        sqlite3_bind_text(q, 7, it->meta, -1, SQLITE_STATIC);
    if (step_done(q) != 0)
        return db_fail(s, err, "writing an item");
    if (!found)
        the_id = sqlite3_last_insert_rowid(s->db);

    size_t nb = (size_t)s->dim * sizeof(float);
    uint32_t *le = malloc(nb);
    if (!le)
        return fail(err, IDX_E_NOMEM, "out of memory");
    memcpy(le, vec, nb);
    to_le(le, (size_t)s->dim);
    q = s->q[Q_PUT_VEC];
    sqlite3_bind_int64(q, 1, the_id);
    sqlite3_bind_blob(q, 2, le, (int)nb, SQLITE_STATIC);
    int bad = step_done(q);
    free(le);
    if (bad)
        return db_fail(s, err, "writing a vector");
    if ((st = vectors_changed(s, err)) != IDX_OK)
        return st;
    *id = the_id;
    if (replaced)
        *replaced = found;
    return IDX_OK;
}

idx_status idx_store_move(idx_store *s, int64_t id, const char *path,
                          int64_t size, int64_t mtime_ns, idx_error *err)
{
    sqlite3_stmt *q = s->q[Q_MOVE];
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_text(q, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, size);
    sqlite3_bind_int64(q, 4, mtime_ns);
    sqlite3_bind_double(q, 5, now_s());
    if (step_done(q) != 0)
        return db_fail(s, err, "moving an item");
    return IDX_OK;
}

static int push_id(int64_t **ids, size_t *n, int64_t id)
{
    /* Capacity is 16, then each power of two as the count reaches it. */
    if (*n == 0 || (*n >= 16 && (*n & (*n - 1)) == 0)) {
        size_t cap = *n ? 2 * *n : 16;
        int64_t *v = realloc(*ids, cap * sizeof *v);
        if (!v)
            return -1;
        *ids = v;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

idx_status idx_store_remove(idx_store *s, const char *path, int under,
                            int64_t **ids, size_t *n, idx_error *err)
{
    /* A directory's files are the keys in [P/, P0): '0' follows '/', so
     * the range walks the path index instead of the whole table. */
    size_t len = strlen(path);
    while (under && len > 1 && path[len - 1] == '/')
        len--;
    char *lo = malloc(len + 2), *hi = malloc(len + 2);
    if (!lo || !hi) {
        free(lo);
        free(hi);
        return fail(err, IDX_E_NOMEM, "out of memory");
    }
    memcpy(lo, path, len);
    memcpy(hi, path, len);
    lo[len] = '/', hi[len] = '0';
    lo[len + 1] = hi[len + 1] = '\0';
    sqlite3_stmt *q;
    idx_status st = IDX_OK;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id FROM items WHERE path = ?1 OR "
                           "(?2 AND path >= ?3 AND path < ?4)",
                           -1, &q, NULL) != SQLITE_OK) {
        st = db_fail(s, err, "removing");
        goto out;
    }
    sqlite3_bind_text(q, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, under);
    sqlite3_bind_text(q, 3, lo, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, hi, -1, SQLITE_STATIC);
    size_t first = *n;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (push_id(ids, n, sqlite3_column_int64(q, 0)) != 0) {
            st = fail(err, IDX_E_NOMEM, "out of memory");
            break;
        }
    if (st == IDX_OK && rc != SQLITE_DONE)
        st = db_fail(s, err, "removing");
    sqlite3_finalize(q);
    if (st != IDX_OK)
        goto out;
    sqlite3_stmt *d1, *d2;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM vectors WHERE id = ?1", -1,
                           &d1, NULL) != SQLITE_OK) {
        st = db_fail(s, err, "removing");
        goto out;
    }
    if (sqlite3_prepare_v2(s->db, "DELETE FROM items WHERE id = ?1", -1, &d2,
                           NULL) != SQLITE_OK) {
        sqlite3_finalize(d1);
        st = db_fail(s, err, "removing");
        goto out;
    }
    for (size_t i = first; i < *n && st == IDX_OK; i++) {
        sqlite3_bind_int64(d1, 1, (*ids)[i]);
        sqlite3_bind_int64(d2, 1, (*ids)[i]);
        if (step_done(d1) != 0 || step_done(d2) != 0)
            st = db_fail(s, err, "removing");
    }
    if (st == IDX_OK && *n > first)
        st = vectors_changed(s, err);
    sqlite3_finalize(d1);
    sqlite3_finalize(d2);
out:
    free(lo);
    free(hi);
    return st;
}

idx_status idx_store_remove_id(idx_store *s, int64_t id, idx_error *err)
{
    static const char *const sql[2] = {"DELETE FROM vectors WHERE id = ?1",
                                       "DELETE FROM items WHERE id = ?1"};
    int changed = 0;
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(s->db, sql[i], -1, &q, NULL) != SQLITE_OK)
            return db_fail(s, err, "removing");
        sqlite3_bind_int64(q, 1, id);
        int bad = step_done(q);
        sqlite3_finalize(q);
        if (bad)
            return db_fail(s, err, "removing");
        changed = sqlite3_changes(s->db);
    }
    if (!changed)
        return fail(err, IDX_E_NOTFOUND, "%s: no item %lld", s->path,
                    (long long)id);
    return vectors_changed(s, err);
}

int idx_store_fetch(void *store, int64_t id, float *out)
{
    idx_store *s = store;
    sqlite3_stmt *q = s->q[Q_FETCH];
    sqlite3_bind_int64(q, 1, id);
    int ok = -1;
    size_t nb = (size_t)s->dim * sizeof(float);
    if (sqlite3_step(q) == SQLITE_ROW &&
        (size_t)sqlite3_column_bytes(q, 0) == nb) {
        memcpy(out, sqlite3_column_blob(q, 0), nb);
        to_le((uint32_t *)out, (size_t)s->dim);
        ok = 0;
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return ok;
}

static int64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

static idx_status stats(idx_store *s, idx_stats *out, int vectors,
                        idx_error *err)
{
    idx_stats x;
    memset(&x, 0, sizeof x);
    idx_status st = idx_store_model(s, &x.model, &x.has_model, err);
    if (st != IDX_OK)
        return st;
    x.dim = x.has_model ? x.model.dim : 0;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           vectors
                               ? "SELECT count(*), count(hash), "
                                 "coalesce(min(added), 0), "
                                 "coalesce(max(added), 0), "
                                 "(SELECT coalesce(sum(length(v)), 0) "
                                 "FROM vectors) FROM items"
                               : "SELECT count(*), count(hash), "
                                 "coalesce(min(added), 0), "
                                 "coalesce(max(added), 0), 0 FROM items",
                           -1, &q, NULL) != SQLITE_OK)
        return db_fail(s, err, "counting");
    if (sqlite3_step(q) != SQLITE_ROW) {
        st = db_fail(s, err, "counting");
        sqlite3_finalize(q);
        return st;
    }
    x.items = sqlite3_column_int64(q, 0);
    x.with_hash = sqlite3_column_int64(q, 1);
    x.first_added = sqlite3_column_double(q, 2);
    x.last_added = sqlite3_column_double(q, 3);
    x.vector_bytes = vectors ? sqlite3_column_int64(q, 4)
                             : x.items * (int64_t)x.dim * 4;
    sqlite3_finalize(q);
    size_t n = strlen(s->path);
    char *wal = malloc(n + 5);
    if (!wal)
        return fail(err, IDX_E_NOMEM, "out of memory");
    memcpy(wal, s->path, n);
    memcpy(wal + n, "-wal", 5);
    x.file_bytes = file_size(s->path) + file_size(wal);
    free(wal);
    *out = x;
    return IDX_OK;
}

idx_status idx_store_stats(idx_store *s, idx_stats *out, idx_error *err)
{
    return stats(s, out, 1, err);
}

idx_status idx_store_stats_quick(idx_store *s, idx_stats *out,
                                 idx_error *err)
{
    return stats(s, out, 0, err);
}

idx_status idx_store_each(idx_store *s,
                          int (*fn)(void *ud, int64_t id, const char *path),
                          void *ud, idx_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT id, path FROM items ORDER BY id",
                           -1, &q, NULL) != SQLITE_OK)
        return db_fail(s, err, "listing");
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (fn(ud, sqlite3_column_int64(q, 0),
               (const char *)sqlite3_column_text(q, 1)))
            break;
    idx_status st = IDX_OK;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = db_fail(s, err, "listing");
    sqlite3_finalize(q);
    return st;
}

enum { LOAD_CHUNK = 16384 };

/* The fast load: the vectors from a current cache, the keys from the
 * items, whose ids must be the cache's, row for row. IDX_E_FORMAT when
 * they are not (the caller then loads from SQLite). */
static idx_status load_cached(idx_store *s, const vc_map *vm, idx_matrix *m,
                              idx_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT id, path FROM items ORDER BY id",
                           -1, &q, NULL) != SQLITE_OK)
        return db_fail(s, err, "loading the keys");
    char **keys = calloc(LOAD_CHUNK, sizeof *keys);
    idx_status st = keys ? idx_matrix_reserve(m, vm->rows, err)
                         : fail(err, IDX_E_NOMEM, "out of memory");
    size_t k = 0, k0 = 0;
    int rc = SQLITE_DONE;
    while (st == IDX_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (k == vm->rows || vm->ids[k] != sqlite3_column_int64(q, 0)) {
            st = fail(err, IDX_E_FORMAT, "the vector cache is stale");
            break;
        }
        if (!(keys[k - k0] = col_strdup(q, 1)))
            st = fail(err, IDX_E_NOMEM, "out of memory");
        else if (++k - k0 == LOAD_CHUNK || k == vm->rows) {
            st = idx_matrix_add(m, (int)(k - k0), vm->ids + k0, keys,
                                vm->vecs + k0 * (size_t)s->dim, err);
            for (size_t i = 0; i < k - k0; i++)
                free(keys[i]), keys[i] = NULL;
            k0 = k;
        }
    }
    if (st == IDX_OK && rc != SQLITE_DONE)
        st = db_fail(s, err, "loading the keys");
    if (st == IDX_OK && k != vm->rows)
        st = fail(err, IDX_E_FORMAT, "the vector cache is stale");
    for (size_t i = 0; keys && i < LOAD_CHUNK; i++)
        free(keys[i]);
    free(keys);
    sqlite3_finalize(q);
    return st;
}

/* The load from SQLite's rows, writing a new cache on the way when `w` is
 * not NULL. */
static idx_status load_rows(idx_store *s, idx_matrix *m, vc_writer *w,
                            idx_error *err)
{
    idx_status st = IDX_OK;
    size_t nb = (size_t)s->dim * sizeof(float);
    float *vecs = malloc(LOAD_CHUNK * nb);
    int64_t *ids = malloc(LOAD_CHUNK * sizeof *ids);
    char **keys = calloc(LOAD_CHUNK, sizeof *keys);
    sqlite3_stmt *q = NULL;
    if (!vecs || !ids || !keys) {
        st = fail(err, IDX_E_NOMEM, "out of memory");
        goto out;
    }
    if (sqlite3_prepare_v2(s->db,
                           "SELECT i.id, i.path, v.v FROM items i "
                           "JOIN vectors v ON v.id = i.id ORDER BY i.id",
                           -1, &q, NULL) != SQLITE_OK) {
        st = db_fail(s, err, "loading the vectors");
        goto out;
    }
    int n = 0, rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if ((size_t)sqlite3_column_bytes(q, 2) != nb) {
            st = fail(err, IDX_E_FORMAT,
                      "%s: item %lld has a vector of %d bytes, not %zu",
                      s->path, (long long)sqlite3_column_int64(q, 0),
                      sqlite3_column_bytes(q, 2), nb);
            break;
        }
        ids[n] = sqlite3_column_int64(q, 0);
        memcpy(vecs + (size_t)n * (size_t)s->dim, sqlite3_column_blob(q, 2),
               nb);
        to_le((uint32_t *)(vecs + (size_t)n * (size_t)s->dim),
              (size_t)s->dim);
        if (!(keys[n] = col_strdup(q, 1))) {
            st = fail(err, IDX_E_NOMEM, "out of memory");
            break;
        }
        if (++n == LOAD_CHUNK) {
            st = idx_matrix_add(m, n, ids, keys, vecs, err);
            vc_writer_add(w, (size_t)n, ids, vecs);
            for (int i = 0; i < n; i++)
                free(keys[i]), keys[i] = NULL;
            n = 0;
            if (st != IDX_OK)
                break;
        }
    }
    if (st == IDX_OK && rc != SQLITE_DONE)
        st = db_fail(s, err, "loading the vectors");
    if (st == IDX_OK && n) {
        st = idx_matrix_add(m, n, ids, keys, vecs, err);
        vc_writer_add(w, (size_t)n, ids, vecs);
    }
    for (int i = 0; i < LOAD_CHUNK; i++)
        free(keys[i]);
out:
    sqlite3_finalize(q);
    free(vecs);
    free(ids);
    free(keys);
    return st;
}

idx_status idx_store_load(idx_store *s, idx_precision p, int keep_f32,
                          idx_matrix **out, idx_error *err)
{
    if (s->dim <= 0)
        return fail(err, IDX_E_ARG, "%s: the index is empty (no model yet)",
                    s->path);
    idx_matrix *m;
    idx_status st = idx_matrix_new(s->dim, p, keep_f32, &m, err);
    if (st != IDX_OK)
        return st;
    char *cache = vc_path(s->path);
    /* One read transaction: the rows seen, and the generation the cache
     * is checked against, are one committed state, even while a writer
     * commits batches. */
    if ((st = exec(s, "BEGIN", err)) != IDX_OK)
        goto out;
    uint64_t gen = 0, ident = 0;
    int stamped = read_stamp(s, &gen, &ident);
    vc_map vm;
    if (stamped && cache && vc_open(cache, s->dim, ident, gen, &vm) == 0) {
        st = load_cached(s, &vm, m, err);
        vc_close(&vm);
        if (st != IDX_E_FORMAT) /* loaded, or a real failure */
            goto out;
        /* Stale after all: start again from SQLite. */
        idx_matrix_free(m);
        if ((st = idx_matrix_new(s->dim, p, keep_f32, &m, err)) != IDX_OK) {
            m = NULL;
            goto out;
        }
    }
    /* A directory that cannot be written gets no cache, silently: the
     * load from SQLite is the same, only slower. */
    vc_writer *w = stamped && cache ? vc_writer_begin(cache, s->dim, ident,
                                                      gen)
                                    : NULL;
    st = load_rows(s, m, w, err);
    if (st == IDX_OK)
        vc_writer_finish(w);
    else
        vc_writer_abort(w);
out:
    free(cache);
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (st != IDX_OK) {
        idx_matrix_free(m);
        return st;
    }
    *out = m;
    return IDX_OK;
}
