/*
 * The thread pool a vit_state runs its forward passes on: n - 1 worker
 * threads plus the calling thread, all running the same function over a
 * static split of the work, then meeting at the end. A forward pass makes
 * a few such rounds per layer, so a round is a generation counter under
 * one mutex and two condition variables, not a queue of tasks.
 *
 * One pool per state keeps states independent: threads that each own a
 * state never share workers.
 */
#include "vit/vit_impl.h"

#include <pthread.h>
#include <sched.h>

struct vit__pool {
    int n;  /* threads, the caller included */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    unsigned long gen;     /* rounds started */
    unsigned long pending; /* workers still running this round */
    int quit;
    int resting; /* set by vit__pool_rest, cleared by the next round */
    vit__pool_fn fn;
    void *ctx;
};

typedef struct {
    vit__pool *p;
    int index;
} worker_arg;

/* How long a thread spins before it sleeps on a condition variable: a
 * worker for the next round, the caller for the workers to finish. Inside
 * a forward pass the next round comes as soon as the slowest thread ends
 * this one, which on a shared machine can be milliseconds behind the
 * others, while waking a sleeping thread takes a tenth of a millisecond or
 * more (on a virtual machine its vCPU has halted), paid at every one of a
 * forward's 40 to 90 rounds. Past SPIN_RESTING a spinning thread yields
 * its core to any other thread that wants it; between forward passes
 * (vit__pool_rest) a worker spins only that long, so that it does not hold
 * a core that decoding or the caller could use. */
#define SPIN_SECONDS 5e-3
#define SPIN_RESTING 200e-6

/* Spins while (*v == val) == equal, for at most SPIN_SECONDS, or
 * SPIN_RESTING once the pool rests. */
static void spin(vit__pool *p, const unsigned long *v, unsigned long val,
                 int equal)
{
    double t0 = vit__now();
    for (int i = 1; (__atomic_load_n(v, __ATOMIC_ACQUIRE) == val) == equal;
         i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if (i % 64 == 0) {
            double t = vit__now() - t0;
            if (t > SPIN_SECONDS ||
                (t > SPIN_RESTING &&
                 __atomic_load_n(&p->resting, __ATOMIC_RELAXED)))
                return;
            /* Past the short spin, let any other thread wanting this
             * core (a descheduled worker, a decoder) run first. */
            if (t > SPIN_RESTING)
                sched_yield();
        }
    }
}

static void *worker_main(void *a)
{
    worker_arg *w = a;
    vit__pool *p = w->p;
    int index = w->index;
    free(w);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->quit)
            pthread_cond_wait(&p->start, &p->mu);
        if (p->quit)
            break;
        seen = p->gen;
        vit__pool_fn fn = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, index, p->n);
        pthread_mutex_lock(&p->mu);
        if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_RELEASE) == 0)
            pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
        spin(p, &p->gen, seen, 1);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

vit__pool *vit__pool_new(int n)
{
    vit__pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n < 1 ? 1 : n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    if (p->n > 1) {
        p->threads = calloc((size_t)p->n - 1, sizeof *p->threads);
        if (!p->threads) {
            vit__pool_free(p);
            return NULL;
        }
        for (int i = 1; i < p->n; i++) {
            worker_arg *w = malloc(sizeof *w);
            if (!w || (w->p = p, w->index = i,
                       pthread_create(&p->threads[i - 1], NULL, worker_main,
                                      w) != 0)) {
                free(w);
                p->n = i; /* the workers started so far */
                vit__pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void vit__pool_free(vit__pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n && p->threads; i++)
        pthread_join(p->threads[i - 1], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p);
}

int vit__pool_size(const vit__pool *p) { return p ? p->n : 1; }

void vit__pool_run(vit__pool *p, vit__pool_fn fn, void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->resting, 0, __ATOMIC_RELAXED);
    p->fn = fn;
    p->ctx = ctx;
    __atomic_store_n(&p->pending, (unsigned long)p->n - 1, __ATOMIC_RELAXED);
    __atomic_store_n(&p->gen, p->gen + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    spin(p, &p->pending, 0, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void vit__pool_rest(vit__pool *p)
{
    if (p)
        __atomic_store_n(&p->resting, 1, __ATOMIC_RELAXED);
}

void vit__split(int total, int index, int n, int *begin, int *end)
{
    /* Contiguous, sizes differing by at most one. */
    int base = total / n, extra = total % n;
    *begin = index * base + (index < extra ? index : extra);
    *end = *begin + base + (index < extra ? 1 : 0);
}
