/*
 * The image batch driver the image subcommands share (classify, zero-shot
 * classify, embed, match, index add): it decodes and preprocesses inputs
 * into batch buffers, copies .npy pixel arrays in as they are, hands each
 * full batch to the subcommand's callback, keeps the progress line, and
 * reports failed inputs without stopping. What a batch computes and prints
 * is the callback's business.
 *
 * Decoding runs ahead of the model: decode threads take the inputs in
 * order, each decodes and preprocesses one into a buffer of its own, then
 * waits for its input's turn and copies the pixels into the next slot of
 * the batch being filled. While the calling thread runs the callback on one
 * batch buffer, the threads fill the other. One thread decodes at first,
 * and another joins each time the model had to wait for a batch: a model
 * that keeps every core busy (ViT-B/16 on a few cores) is not slowed by
 * threads that would only take cores from it, and a fast one gets as many
 * as it needs. Because slots are given out in
 * input order and a failed input takes none, the batches are exactly those
 * of decoding one input after another (every batch full but the last), so
 * the numbers do not depend on how many threads decode. A failure is
 * printed before the results of the batch that was being filled when it
 * was met, as when decoding in turn with the model.
 *
 * After SIGINT or SIGTERM (cli/interrupt.c) the batch being run is the
 * last: the driver checks between batches, stops the decode threads and
 * drops what they prepared, so the results written are those of a prefix
 * of the inputs, each whole.
 */
#include "cli/cli.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { NBUF = 2, MAX_DECODE_THREADS = 16 };

/* One batch: up to cap images' pixels and names. */
typedef struct {
    float *pixels;
    char **paths;
    int n;
    int ready;  /* full, or the last: the calling thread's to run */
} batch_buf;

/* An input that failed, printed before the results of batch `batch`. */
typedef struct failure {
    size_t batch;
    char *path, *why;
    struct failure *next;
} failure;

typedef struct {
    cli_batch *b;
    const cli_input_list *in;
    int threaded;
    int threads, active;  /* decode threads started; allowed to work */
    pthread_mutex_t mu;
    pthread_cond_t turn_cv, free_cv, ready_cv;
    batch_buf buf[NBUF];
    int nbuf;
    size_t fill;      /* batches made ready so far: buf[fill % nbuf] fills */
    size_t next;      /* the next input to take */
    size_t turn;      /* the input whose pixels go in next */
    size_t ran;       /* batches run: buf[ran % nbuf] runs next */
    int done;         /* every input placed */
    int stop;         /* out of memory or interrupted: everyone stops */
    int intr;         /* the stop was for SIGINT or SIGTERM */
    failure *fhead, **ftail;
    size_t total;     /* images, once .npy stacks are counted */
} pipeline;

/* What one input became, before its turn. */
typedef struct {
    const float *pixels;  /* count images, chw floats each */
    int64_t count;
    int stacked;          /* (N, C, H, W): names get [i] */
    int ok;               /* pixels (maybe none) or a failure to report */
    char *why;            /* failed: why (malloc'd) */
    vit_array npy;
} prepared;

static char *dup_or_status(const vit_error *err, vit_status st)
{
    return strdup(err->msg[0] ? err->msg : vit_status_str(st));
}

static void shape_str(char *buf, size_t size, const int64_t *shape, int ndim)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, size - o, "(");
    for (int i = 0; i < ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "",
                              (long long)shape[i]);
    if (o < size)
        snprintf(buf + o, size - o, ")");
}

static void prepare_npy(const cli_batch *b, const char *path, prepared *r)
{
    vit_error err = {{0}};
    vit_status st = vit_npy_read(path, &r->npy, &err);
    if (st != VIT_OK) {
        r->why = dup_or_status(&err, st);
        return;
    }
    const vit_array *a = &r->npy;
    const int64_t *s = a->shape;
    int C = b->info.channels, H = b->info.image_h, W = b->info.image_w;
    int64_t count = -1;
    if (a->ndim == 3 && s[0] == C && s[1] == H && s[2] == W)
        count = 1;
    else if (a->ndim == 4 && s[0] >= 0 && s[1] == C && s[2] == H &&
             s[3] == W)
        count = s[0];
    if (count < 0) {
        char got[160], msg[320];
        shape_str(got, sizeof got, a->shape, a->ndim < 8 ? a->ndim : 8);
        snprintf(msg, sizeof msg,
                 "pixel array of shape %s; the model takes (%d,%d,%d) or "
                 "(N,%d,%d,%d)",
                 got, C, H, W, C, H, W);
        vit_array_free(&r->npy);
        r->why = strdup(msg);
        return;
    }
    r->pixels = a->data;
    r->count = count;
    r->stacked = a->ndim == 4;
    r->ok = 1;
}

/* Decodes, preprocesses or reads input i; `staging` holds one image.
 * Returns -1 when out of memory. */
static int prepare(const cli_batch *b, const cli_input *x, float *staging,
                   prepared *r)
{
    *r = (prepared){0};
    if (x->kind == CLI_IN_ERROR) {
        r->why = strdup(x->error);
    } else if (x->kind == CLI_IN_NPY) {
        prepare_npy(b, x->path, r);
    } else {
        vit_error err = {{0}};
        vit_image img;
        vit_status st = cli_image_load(x->path, vit_model_options(b->model),
                                       &img, &err);
        if (st == VIT_OK) {
            st = vit_preprocess(b->model, &img, 1, staging, &err);
            vit_image_free(&img);
        }
        if (st != VIT_OK) {
            r->why = dup_or_status(&err, st);
        } else {
            r->pixels = staging;
            r->count = 1;
            r->ok = 1;
        }
    }
    return r->ok || r->why ? 0 : -1;
}

static void wake_all(pipeline *p)
{
    pthread_cond_broadcast(&p->turn_cv);
    pthread_cond_broadcast(&p->free_cv);
    pthread_cond_broadcast(&p->ready_cv);
}

/* Under the lock: the batch being filled becomes the calling thread's. */
static void seal(pipeline *p)
{
    p->buf[p->fill % (size_t)p->nbuf].ready = 1;
    p->fill++;
    pthread_cond_signal(&p->ready_cv);
}

static void run_ready(pipeline *p);

/* Under the lock: whether to stop, noting a SIGINT or SIGTERM that came
 * (cli/interrupt.c) as a stop of its own kind. */
static int halted(pipeline *p)
{
    if (!p->stop && cli_interrupted()) {
        p->stop = p->intr = 1;
        wake_all(p);
    }
    return p->stop;
}

/* Under the lock: waits until the batch to fill is free. Decoding in turn
 * (no threads), the full batch is run right here instead. */
static int wait_free(pipeline *p)
{
    batch_buf *f = &p->buf[p->fill % (size_t)p->nbuf];
    while (f->ready && !p->stop) {
        if (p->threaded)
            pthread_cond_wait(&p->free_cv, &p->mu);
        else
            run_ready(p);
    }
    return p->stop ? -1 : 0;
}

/* Under the lock, on input i's turn: its images take the next slots, or
 * its failure is queued. */
static void place(pipeline *p, const cli_input *x, prepared *r)
{
    if (r->why) {
        failure *f = malloc(sizeof *f);
        if (!f || !(f->path = strdup(x->path))) {
            free(f);
            p->stop = 1;
            return;
        }
        f->batch = p->fill;
        f->why = r->why;
        r->why = NULL;
        f->next = NULL;
        *p->ftail = f;
        p->ftail = &f->next;
        return;
    }
    /* The file was counted as one input; it holds `count`. */
    p->total = p->total + (size_t)r->count - 1;
    size_t chw = p->b->chw;
    for (int64_t i = 0; i < r->count; i++) {
        if (wait_free(p) != 0)
            return;
        batch_buf *f = &p->buf[p->fill % (size_t)p->nbuf];
        char *name;
        if (!r->stacked) {
            name = strdup(x->path);
        } else {
            size_t len = strlen(x->path) + 24;
            if ((name = malloc(len)))
                snprintf(name, len, "%s[%lld]", x->path, (long long)i);
        }
        if (!name) {
            p->stop = 1;
            return;
        }
        memcpy(f->pixels + (size_t)f->n * chw, r->pixels + (size_t)i * chw,
               chw * sizeof(float));
        f->paths[f->n++] = name;
        if (f->n == p->b->cap)
            seal(p);
    }
}

static void release(prepared *r)
{
    free(r->why);
    vit_array_free(&r->npy);
}

/* Under the lock: input `i` has been placed; the last one seals the
 * partial batch. */
static void pass_turn(pipeline *p)
{
    p->turn++;
    if (p->turn == p->in->n) {
        const batch_buf *f = &p->buf[p->fill % (size_t)p->nbuf];
        if (!f->ready && f->n > 0)
            seal(p);
        p->done = 1;
        pthread_cond_broadcast(&p->ready_cv);
    }
    pthread_cond_broadcast(&p->turn_cv);
}

static void *decode_main(void *arg)
{
    pipeline *p = arg;
    float *staging = malloc(p->b->chw * sizeof(float));
    pthread_mutex_lock(&p->mu);
    int me = p->threads++;
    if (!staging) {
        p->stop = 1;
        wake_all(p);
    }
    for (;;) {
        /* Past the ones allowed to work, a thread waits to be called. */
        while (!p->stop && p->next < p->in->n && me >= p->active)
            pthread_cond_wait(&p->turn_cv, &p->mu);
        if (p->stop || p->next >= p->in->n)
            break;
        size_t i = p->next++;
        const cli_input *x = &p->in->v[i];
        pthread_mutex_unlock(&p->mu);
        prepared r;
        int rc = prepare(p->b, x, staging, &r);
        pthread_mutex_lock(&p->mu);
        while (p->turn != i && !p->stop)
            pthread_cond_wait(&p->turn_cv, &p->mu);
        if (rc != 0)
            p->stop = 1;
        if (!p->stop)
            place(p, x, &r);
        release(&r);
        if (p->stop) {
            wake_all(p);
            break;
        }
        pass_turn(p);
    }
    pthread_mutex_unlock(&p->mu);
    free(staging);
    return NULL;
}

static void report(cli_batch *b, const char *path, const char *why)
{
    cli_progress_clear(&b->prog);
    cli_report(path, why);
    b->failed++;
    b->prog.done++;
    cli_progress_draw(&b->prog);
}

/* Prints the failures met up to batch `upto`; takes and gives back the
 * lock. */
static void report_failures(pipeline *p, size_t upto)
{
    failure *list = NULL, **tail = &list;
    while (p->fhead && p->fhead->batch <= upto) {
        *tail = p->fhead;
        tail = &p->fhead->next;
        p->fhead = p->fhead->next;
    }
    *tail = NULL;
    if (!p->fhead)
        p->ftail = &p->fhead;
    p->b->prog.total = p->total;
    pthread_mutex_unlock(&p->mu);
    while (list) {
        failure *f = list;
        list = f->next;
        report(p->b, f->path, f->why);
        free(f->path);
        free(f->why);
        free(f);
    }
    pthread_mutex_lock(&p->mu);
}

/* Under the lock, which it lets go of while the callback runs: runs the
 * oldest ready batch, after the failures met before it. */
static void run_ready(pipeline *p)
{
    cli_batch *b = p->b;
    batch_buf *f = &p->buf[p->ran % (size_t)p->nbuf];
    report_failures(p, p->ran);
    pthread_mutex_unlock(&p->mu);
    vit_error err = {{0}};
    cli_progress_clear(&b->prog);
    vit_status st = b->run(b->ctx, f->pixels, f->n, f->paths, &err);
    if (st == VIT_E_NOMEM)
        b->oom = 1; /* said once, at the end */
    for (int i = 0; i < f->n; i++) {
        if (st != VIT_OK && !b->oom) {
            cli_report(f->paths[i], err.msg[0] ? err.msg : vit_status_str(st));
            b->failed++;
        }
        free(f->paths[i]);
    }
    b->prog.done += (size_t)f->n;
    if (b->prog.tty)
        fflush(stdout); /* the results go to the screen before the line */
    cli_progress_draw(&b->prog);
    pthread_mutex_lock(&p->mu);
    f->n = 0;
    f->ready = 0;
    p->ran++;
    if (b->oom) {
        p->stop = 1;
        wake_all(p);
    }
    halted(p); /* a signal during the batch: it was the last */
    pthread_cond_broadcast(&p->free_cv);
}

/* Decoding in turn with the model, on the calling thread. */
static void run_in_turn(pipeline *p)
{
    float *staging = malloc(p->b->chw * sizeof(float));
    pthread_mutex_lock(&p->mu);
    if (!staging)
        p->stop = 1;
    for (size_t i = 0; i < p->in->n && !halted(p); i++) {
        prepared r;
        if (prepare(p->b, &p->in->v[i], staging, &r) != 0)
            p->stop = 1;
        else
            place(p, &p->in->v[i], &r);
        release(&r);
        if (!p->stop)
            pass_turn(p);
    }
    if (p->in->n == 0)
        p->done = 1;
    while (!halted(p) && p->buf[p->ran % (size_t)p->nbuf].ready)
        run_ready(p);
    pthread_mutex_unlock(&p->mu);
    free(staging);
}

/* The calling thread's part with decode threads: runs the batches in
 * order as they become ready. One thread decodes at first; each time a
 * batch after the first is not ready when the model wants it, decoding is
 * what holds the model up, and one more thread joins in. While the model
 * is the slower, the others stay asleep and take no core from it. */
static void run_batches(pipeline *p, int max_threads)
{
    pthread_mutex_lock(&p->mu);
    for (;;) {
        const batch_buf *f = &p->buf[p->ran % (size_t)p->nbuf];
        if (!f->ready && !p->done && p->ran > 0 && p->active < max_threads) {
            p->active++;
            pthread_cond_broadcast(&p->turn_cv);
        }
        while (!f->ready && !p->done && !p->stop)
            pthread_cond_wait(&p->ready_cv, &p->mu);
        if (halted(p) || !f->ready)
            break;
        run_ready(p);
    }
    pthread_mutex_unlock(&p->mu);
}

int cli_batch_decode_threads(int requested)
{
    if (requested == 0) {
        /* VIT_DECODE_THREADS=N: N threads; 0, decoding in turn. */
        const char *e = getenv("VIT_DECODE_THREADS");
        long v = e ? cli_parse_long(e, 0, MAX_DECODE_THREADS) : -1;
        if (v >= 0)
            requested = v ? (int)v : -1;
    }
    if (requested > 0)
        return requested < MAX_DECODE_THREADS ? requested : MAX_DECODE_THREADS;
    if (requested < 0)
        return 0;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_DECODE_THREADS ? MAX_DECODE_THREADS : (int)n;
}

int cli_batch_inputs(cli_batch *b, const cli_input_list *in)
{
    vit_model_get_info(b->model, &b->info);
    b->cap = b->cap > 0 ? b->cap : 1;
    b->chw = (size_t)b->info.channels * (size_t)b->info.image_h *
             (size_t)b->info.image_w;
    size_t cap = (size_t)b->cap;
    if (b->chw == 0 || b->chw > SIZE_MAX / sizeof(float) / cap / NBUF) {
        fprintf(stderr, "vit: the pixel batch is too large for memory\n");
        return CLI_EXIT_FAILED;
    }
    int nthreads = cli_batch_decode_threads(b->decode_threads);
    if ((size_t)nthreads > in->n)
        nthreads = (int)in->n;
    pipeline p = {.b = b, .in = in, .threaded = nthreads > 0,
                  .nbuf = nthreads > 0 ? NBUF : 1, .active = 1};
    p.ftail = &p.fhead;
    p.done = in->n == 0;
    p.total = in->n;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.turn_cv, NULL);
    pthread_cond_init(&p.free_cv, NULL);
    pthread_cond_init(&p.ready_cv, NULL);
    for (int i = 0; i < p.nbuf; i++) {
        p.buf[i].pixels = malloc(cap * b->chw * sizeof(float));
        p.buf[i].paths = malloc(cap * sizeof(char *));
        if (!p.buf[i].pixels || !p.buf[i].paths)
            b->oom = 1;
    }
    cli_progress_init(&b->prog, in->n, cap);
    pthread_t threads[MAX_DECODE_THREADS];
    int started = 0;
    if (!b->oom && p.threaded) {
        for (; started < nthreads; started++)
            if (pthread_create(&threads[started], NULL, decode_main, &p) != 0)
                break;
        if (started == 0)
            b->oom = 1;
        else
            run_batches(&p, started);
    } else if (!b->oom) {
        run_in_turn(&p);
    }
    pthread_mutex_lock(&p.mu);
    if (!b->oom && p.stop && !p.intr)
        b->oom = 1;
    p.stop = 1;
    wake_all(&p);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    /* Failures after the last batch; interrupted, those met after the
     * last batch run are not reported: the inputs done stay a prefix. */
    pthread_mutex_lock(&p.mu);
    if (!b->oom && !p.intr)
        report_failures(&p, SIZE_MAX);
    b->prog.total = p.total;
    pthread_mutex_unlock(&p.mu);
    cli_progress_clear(&b->prog);
    for (failure *f = p.fhead, *nx; f; f = nx) {
        nx = f->next;
        free(f->path);
        free(f->why);
        free(f);
    }
    for (int i = 0; i < p.nbuf; i++) {
        for (int j = 0; j < p.buf[i].n; j++)
            free(p.buf[i].paths[j]);
        free(p.buf[i].pixels);
        free(p.buf[i].paths);
    }
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.turn_cv);
    pthread_cond_destroy(&p.free_cv);
    pthread_cond_destroy(&p.ready_cv);
    if (b->oom) {
        fprintf(stderr, "vit: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "vit: writing the output: %s\n", strerror(errno));
        return CLI_EXIT_FAILED;
    }
    if (p.intr) {
        b->interrupted = cli_interrupted();
        return cli_interrupt_status();
    }
    return b->failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
