/*
 * The progress line of long runs: `[done/total] rate img/s, ETA m:ss` on
 * stderr, redrawn in place with a carriage return. It is drawn only when
 * stderr is a terminal, so logs and pipes never see it, and only when the
 * work is more than one batch, so a quick run prints nothing extra. The
 * caller erases it before writing anything else to the terminal.
 */
#include "cli/cli.h"

#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, size_t total, size_t batch)
{
    p->tty = isatty(STDERR_FILENO);
    p->shown = 0;
    p->done = 0;
    p->total = total;
    p->min_total = batch + 1;
    p->t0 = now_s();
}

void cli_progress_draw(cli_progress *p)
{
    if (!p->tty || p->total < p->min_total)
        return;
    double dt = now_s() - p->t0;
    double rate = dt > 0 ? (double)p->done / dt : 0.0;
    /* \033[K erases what a longer previous line left to the right. The
     * ETA is the rate so far applied to what is left. */
    fprintf(stderr, "\r[%zu/%zu] %.1f img/s", p->done, p->total, rate);
    if (rate > 0 && p->done < p->total) {
        long eta = (long)((double)(p->total - p->done) / rate + 0.5);
        fprintf(stderr, ", ETA %ld:%02ld", eta / 60, eta % 60);
    }
    fputs("\033[K", stderr);
    fflush(stderr);
    p->shown = 1;
}

void cli_progress_clear(cli_progress *p)
{
    if (!p->shown)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->shown = 0;
}
