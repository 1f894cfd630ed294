/*
 * The parser of an operation's argument spec (cli/args.h): a getopt_long
 * table made from the spec for one backend, each value checked against
 * its type and bounds and stored where the spec says, then the command's
 * own checks. One parser, so every operation says a usage error the same
 * way, locally and over the service.
 */
#include "cli/args.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* getopt's value for option i: its short option, its CLI_OPT_*, or one of
 * its own above the characters. */
static int opt_val(const cli_opt *o, int i)
{
    return o->key ? o->key : 256 + i;
}

/* Whether it takes a value (every decoding option does but
 * --no-exif-rotate and --fast-decode). */
static int takes_value(const cli_opt *o)
{
    if (o->type == CLI_ARG_DECODE)
        return o->key != CLI_OPT_NO_EXIF && o->key != CLI_OPT_FAST_DECODE;
    return o->type != CLI_ARG_FLAG && o->type != CLI_ARG_HELP;
}

static const cli_opt *by_val(const cli_op *op, unsigned backend, int val)
{
    for (int i = 0; op->opts[i].name; i++)
        if ((op->opts[i].where & backend) && opt_val(&op->opts[i], i) == val)
            return &op->opts[i];
    return NULL;
}

int cli_strv_push(cli_strv *l, char *s, char tag)
{
    char **nv = realloc(l->v, (size_t)(l->n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    l->v = nv;
    char *nt = realloc(l->tags, (size_t)l->n + 1);
    if (!nt)
        return -1;
    l->tags = nt;
    nv[l->n] = s;
    nt[l->n++] = tag;
    return 0;
}

typedef struct {
    const char *cmd, *usage, *prefix;
} said_as;

static int usage_error(const said_as *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const said_as *s, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cli_usage_error(s->cmd, s->usage, "%s%s", s->prefix, msg);
}

/* Stores one option's value. Returns -1 when it is fine, else the exit
 * status. */
static int take(const cli_op *op, const cli_opt *o, unsigned backend,
                const said_as *s, const char *arg, char *base)
{
    void *at = base + o->off;
    switch (o->type) {
    case CLI_ARG_FLAG:
        *(int *)at = (int)o->lo;
        return -1;
    case CLI_ARG_STR:
        if (o->valid && !o->valid(arg))
            return usage_error(s, o->bad, arg);
        *(const char **)at = arg;
        return -1;
    case CLI_ARG_INT:
    case CLI_ARG_SIZE:
    case CLI_ARG_U64: {
        long v = cli_parse_long(arg, o->lo, o->hi);
        if (v < 0)
            return usage_error(s, o->bad, arg);
        if (backend == CLI_REMOTE && o->hi_remote && v > o->hi_remote)
            return usage_error(s, o->bad_remote, arg);
        if (o->type == CLI_ARG_SIZE)
            *(size_t *)at = (size_t)v;
        else if (o->type == CLI_ARG_U64)
            *(uint64_t *)at = (uint64_t)v;
        else
            *(int *)at = (int)v;
        return -1;
    }
    case CLI_ARG_LIST:
        if ((o->valid && !o->valid(arg)) ||
            (o->hi && ((cli_strv *)at)->n >= o->hi))
            return usage_error(s, o->bad, arg);
        if (cli_strv_push(at, (char *)arg, (char)o->lo) != 0) {
            fprintf(stderr, "vit: out of memory\n");
            return CLI_EXIT_FAILED;
        }
        return -1;
    case CLI_ARG_CHOICE: {
        size_t n = strlen(arg);
        int i = 0;
        for (const char *c = o->choices; c; i++) {
            const char *bar = strchr(c, '|');
            size_t len = bar ? (size_t)(bar - c) : strlen(c);
            if (len == n && memcmp(c, arg, n) == 0) {
                *(int *)at = i;
                return -1;
            }
            c = bar ? bar + 1 : NULL;
        }
        return usage_error(s, o->bad, arg);
    }
    case CLI_ARG_DECODE:
        if (cli_decode_flag(o->key, at) < 0)
            return usage_error(s, "%s", cli_decode_error);
        return -1;
    case CLI_ARG_HELP:
        cli_op_help(op, stdout);
        return CLI_EXIT_OK;
    }
    return -1;
}

int cli_op_parse(const cli_op *op, unsigned backend, const char *cmd,
                 const char *usage, const char *prefix, int argc,
                 char **argv, void *args)
{
    said_as s = {cmd ? cmd : op->name, usage ? usage : op->usage,
                 prefix ? prefix : ""};
    char *base = args;
    memset(args, 0, op->size);
    if (op->init)
        op->init(args);
    int n = 0;
    while (op->opts[n].name)
        n++;
    struct option *lo = calloc((size_t)n + 1, sizeof *lo);
    char *shorts = malloc(2 * (size_t)n + 3);
    if (!lo || !shorts) {
        free(lo);
        free(shorts);
        fprintf(stderr, "vit: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    /* ':' first: a missing argument is told from an unknown option; '+'
     * before it: no option after the first operand. */
    int nl = 0, ns = 0;
    if (op->in_order)
        shorts[ns++] = '+';
    shorts[ns++] = ':';
    for (int i = 0; i < n; i++) {
        const cli_opt *o = &op->opts[i];
        if (!(o->where & backend))
            continue;
        int has_arg = takes_value(o);
        lo[nl++] = (struct option){o->name,
                                   has_arg ? required_argument : no_argument,
                                   NULL, opt_val(o, i)};
        if (o->key > 0 && o->key < 256) {
            shorts[ns++] = (char)o->key;
            if (has_arg)
                shorts[ns++] = ':';
        }
    }
    shorts[ns] = '\0';
    opterr = 0;  /* the messages below say which command complained */
    optind = 0;  /* getopt starts afresh (the client parses twice) */
    int c, rc = -1;
    while (rc < 0 && (c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        const cli_opt *o;
        if (c == ':') {
            o = by_val(op, backend, optopt);
            rc = usage_error(&s, "option '--%s' needs an argument",
                             o ? o->name : "?");
        } else if (c == '?') {
            /* optopt is 0 for an unknown long option (argv[optind-1] is
             * it), the value of a long option given an argument it does
             * not take, or else an unknown short option's character. */
            if (optopt == 0)
                rc = usage_error(&s, "unknown option '%s'", argv[optind - 1]);
            else if ((o = by_val(op, backend, optopt)) != NULL)
                rc = usage_error(&s, "option '--%s' takes no argument",
                                 o->name);
            else
                rc = usage_error(&s, "unknown option '-%c'", optopt);
        } else if ((o = by_val(op, backend, c)) != NULL) {
            rc = take(op, o, backend, &s, optarg, base);
        }
    }
    free(lo);
    free(shorts);
    for (int i = optind; rc < 0 && i < argc; i++)
        if (cli_strv_push((cli_strv *)(base + op->positional), argv[i], 0)) {
            fprintf(stderr, "vit: out of memory\n");
            rc = CLI_EXIT_FAILED;
        }
    char buf[1024];
    const char *why =
        rc < 0 && op->check ? op->check(args, backend, buf, sizeof buf) : NULL;
    if (why)
        rc = usage_error(&s, "%s", why);
    if (rc < 0 && op->load && op->load(args) != 0)
        rc = CLI_EXIT_FAILED;
    if (rc >= 0)
        cli_op_free(op, args);
    return rc;
}

int cli_op_parse_local(const cli_op *op, int argc, char **argv, void *args)
{
    return cli_op_parse(op, CLI_LOCAL, NULL, NULL, NULL, argc, argv, args);
}

void cli_op_free(const cli_op *op, void *args)
{
    char *base = args;
    if (op->unload)
        op->unload(args);
    /* Each list once: several options may fill one, and the PATHs too. */
    size_t offs[64];
    int n = 0;
    offs[n++] = op->positional;
    for (int i = 0; op->opts[i].name && n < 64; i++)
        if (op->opts[i].type == CLI_ARG_LIST)
            offs[n++] = op->opts[i].off;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= offs[j] == offs[i];
        cli_strv *l = (cli_strv *)(base + offs[i]);
        if (!seen) {
            free(l->v);
            free(l->tags);
        }
    }
    for (int i = 0; i < n; i++)
        *(cli_strv *)(base + offs[i]) = (cli_strv){0};
}

void cli_op_help(const cli_op *op, FILE *f)
{
    fputs(op->usage, f);
    fputs(op->about, f);
    fputs("\noptions:\n", f);
    int decode = 0, threads = 0;
    /* The defaults, for the help that shows them. */
    char *d = calloc(1, op->size);
    if (d && op->init)
        op->init(d);
    for (int i = 0; op->opts[i].name; i++) {
        const cli_opt *o = &op->opts[i];
        if (o->help && o->help_value && d && o->type == CLI_ARG_SIZE)
            fprintf(f, o->help, *(size_t *)(d + o->off));
        else if (o->help && o->help_value && d && o->type == CLI_ARG_U64)
            fprintf(f, o->help,
                    (unsigned long long)*(uint64_t *)(d + o->off));
        else if (o->help && o->help_value && d)
            fprintf(f, o->help, *(int *)(d + o->off));
        else if (o->help)
            fputs(o->help, f);
        decode |= o->type == CLI_ARG_DECODE && !o->help;
        threads |= o->type == CLI_ARG_DECODE && o->key == CLI_OPT_THREADS &&
                   !o->help;
    }
    /* The decoding options' lines, where the spec has none of its own, are
     * the ones every image command shares; --threads's only where it is
     * one of them (`vit bench` has a --threads of its own). */
    if (decode)
        fputs(cli_decode_help, f);
    if (threads)
        fputs(cli_threads_help, f);
    fputs(op->after, f);
    free(d);
}
