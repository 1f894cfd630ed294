/*
 * Ctrl-C and SIGTERM for the image commands (classify, embed, match, index
 * add) and embed's texts: the first sets a flag that the batch driver (or
 * embed's loop over texts) reads between batches,
 * so the command stops after the batch it is running, with every record it
 * finished written whole, says how far it got and exits 128 + the signal.
 * A second one exits at once. The handler does nothing but store the flag
 * or call _exit, both async-signal-safe; SA_RESTART keeps a read or write
 * that the signal lands in from failing with EINTR.
 */
#include "cli/cli.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    if (g_signal)
        _exit(128 + sig);
    g_signal = sig;
}

void cli_interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_interrupted(void)
{
    return g_signal;
}

int cli_interrupt_status(void)
{
    return 128 + g_signal;
}

void cli_interrupt_say(size_t done, size_t total, size_t failed,
                       const char *what)
{
    cli_interrupt_say_items(done, total, failed, "image", what);
}

void cli_interrupt_say_items(size_t done, size_t total, size_t failed,
                             const char *noun, const char *what)
{
    size_t ok = done - failed;
    char fail[48] = "";
    if (failed)
        snprintf(fail, sizeof fail, " (%zu failed)", failed);
    fprintf(stderr, "vit: interrupted after %zu of %zu %s%s%s; ", done,
            total, noun, total == 1 ? "" : "s", fail);
    if (ok == 0)
        fprintf(stderr, "no results are %s\n", what);
    else if (ok == 1)
        fprintf(stderr, "the result of %s one is %s\n",
                failed ? "the other" : "that", what);
    else
        fprintf(stderr, "the results of %s %zu are %s\n",
                failed ? "the other" : "those", ok, what);
}
