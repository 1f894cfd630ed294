/*
 * Implementation of the shared test helpers declared in testutil.h.
 */
#define _XOPEN_SOURCE 700
#include "testutil.h"
#include "vit/vit_impl.h" /* vit__embed_ids */

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#include "service/client.h"
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

double tu_rel_diff(const char *what, const float *got, const float *ref,
                   size_t n)
{
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (d > md || isnan(d))
            md = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > mr)
            mr = fabs(ref[i]);
    }
    double rel = mr > 0 ? md / mr : md;
    printf("%-40s max abs diff %.3g, max |ref| %.3g, relative %.3g\n", what,
           md, mr, rel);
    return rel;
}

char *tu_env_save(const char *name)
{
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}

void tu_env_restore(const char *name, char *saved)
{
    if (saved)
        setenv(name, saved, 1);
    else
        unsetenv(name);
    free(saved);
}

vit_array tu_fixture(const char *model, const char *file)
{
    char path[512];
    snprintf(path, sizeof path, FIXTURES "/%s/%s", model, file);
    vit_array a = {0};
    vit_error err;
    ck_assert_msg(vit_npy_read(path, &a, &err) == VIT_OK, "%s", err.msg);
    return a;
}

int *tu_fixture_lens(const char *model)
{
    char path[512];
    snprintf(path, sizeof path, FIXTURES "/%s/ref_lens.npy", model);
    if (access(path, F_OK) != 0)
        return NULL;
    vit_array a = tu_fixture(model, "ref_lens.npy");
    int *lens = malloc((size_t)a.shape[0] * sizeof *lens);
    ck_assert_ptr_nonnull(lens);
    for (int64_t i = 0; i < a.shape[0]; i++)
        lens[i] = (int)a.data[i];
    vit_array_free(&a);
    return lens;
}

void tu_pair_cosines(vit_state *s, const char *name, double *ci, double *ct)
{
    vit_array px = tu_fixture(name, "ref_pixels.npy");
    vit_array wi = tu_fixture(name, "ref_image_embeds.npy");
    vit_array ida = tu_fixture(name, "ref_ids.npy");
    vit_array wt = tu_fixture(name, "ref_text_embeds.npy");
    int ni = (int)px.shape[0], nt = (int)ida.shape[0], T = (int)ida.shape[1];
    int E = (int)wi.shape[1];
    float *img = malloc((size_t)ni * E * sizeof *img);
    float *txt = malloc((size_t)nt * E * sizeof *txt);
    int32_t *ids = malloc((size_t)nt * T * sizeof *ids);
    ck_assert(img && txt && ids);
    for (int i = 0; i < nt * T; i++)
        ids[i] = (int32_t)ida.data[i];
    vit_error err;
    int *lens = tu_fixture_lens(name);
    ck_assert_int_eq(vit_embed_pixels(s, px.data, ni, img, &err), VIT_OK);
    ck_assert_int_eq(vit__embed_ids(s, ids, lens, nt, T, txt, &err), VIT_OK);
    *ci = tu_min_cosine(img, wi.data, ni, E);
    *ct = tu_min_cosine(txt, wt.data, nt, E);
    free(lens), free(img), free(txt), free(ids);
    vit_array_free(&px), vit_array_free(&wi), vit_array_free(&ida),
        vit_array_free(&wt);
}

vit_model *tu_load_fixture(const char *name, const vit_options *opt,
                           vit_state **s)
{
    char dir[512];
    snprintf(dir, sizeof dir, FIXTURES "/%s", name);
    vit_model *m;
    vit_error err;
    ck_assert_msg(vit_model_load(dir, opt, &m, &err) == VIT_OK, "%s",
                  err.msg);
    ck_assert_msg(vit_state_new(m, s, &err) == VIT_OK, "%s", err.msg);
    return m;
}

char *tu_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/vit-test-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

void tu_rmrf(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

unsigned char *tu_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        *n = (size_t)len;
    return buf;
}

int tu_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int tu_copy(const char *src, const char *dst)
{
    size_t n;
    unsigned char *b = tu_read(src, &n);
    if (!b)
        return -1;
    int r = tu_write(dst, b, n);
    free(b);
    return r;
}


const char *tu_vit_bin(void)
{
    const char *b = getenv("VIT_BIN");
    return b && *b ? b : "build/vit";
}

static char *slurp_fd(int fd)
{
    size_t n = 0, cap = 4096;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    lseek(fd, 0, SEEK_SET);
    for (;;) {
        ssize_t got = read(fd, s + n, cap - n - 1);
        if (got < 0 && errno == EINTR)
            continue;
        ck_assert_int_ge(got, 0);
        if (got == 0)
            break;
        n += (size_t)got;
        if (cap - n < 2) {
            s = realloc(s, cap *= 2);
            ck_assert_ptr_nonnull(s);
        }
    }
    s[n] = '\0';
    return s;
}

/* Runs the binary with `args` (NULL-terminated, argv[0] excluded). When
 * err_fd >= 0 the child's stderr goes there instead of being captured. */
void tu_vit_argv(const char **argv, const char *const *args)
{
    int n = 0;
    argv[n++] = tu_vit_bin();
    for (; args[n - 1]; n++) {
        ck_assert_int_lt(n, 63);
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
}

void tu_run_argv_fd(tu_run_result *r, const char *const *args, int err_fd)
{
    const char *argv[64];
    tu_vit_argv(argv, args);

    FILE *out = tmpfile(), *err = tmpfile();
    ck_assert(out && err);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(fileno(out), 1);
        dup2(err_fd >= 0 ? err_fd : fileno(err), 2);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r->out = slurp_fd(fileno(out));
    r->err = slurp_fd(fileno(err));
    fclose(out);
    fclose(err);
}

void tu_run_argv(tu_run_result *r, const char *const *args)
{
    tu_run_argv_fd(r, args, -1);
}

void tu_run(tu_run_result *r, ...)
{
    const char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, r);
    while ((args[n] = va_arg(ap, const char *)) != NULL) {
        n++;
        ck_assert_int_lt(n, 63);
    }
    va_end(ap);
    tu_run_argv(r, args);
}

void tu_run_free(tu_run_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}


static double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

pid_t tu_serve_start(const char *model, const char *dir, const char *ep,
                     const char *index)
{
    return tu_serve_start_args(model, dir, ep, index, NULL);
}

pid_t tu_spawn(const char *const *args, const char *log)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Never outlive the test, whatever becomes of it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int e = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(e, 2);
        const char *argv[64];
        tu_vit_argv(argv, args);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

pid_t tu_serve_start_args(const char *model, const char *dir, const char *ep,
                          const char *index, const char *const *extra)
{
    char log[700];
    snprintf(log, sizeof log, "%s/worker.log", dir);
    const char *argv[32];
    int n = 0;
    const char *head[] = {"serve", "--model", model, "--bind", ep};
    for (size_t i = 0; i < sizeof head / sizeof *head; i++)
        argv[n++] = head[i];
    if (index) {
        argv[n++] = "--index";
        argv[n++] = index;
    }
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = tu_spawn(argv, log);
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 500;
    o.retries = 0;
    for (int i = 0; i < 200; i++) {
        vit_client *c;
        vit_error err;
        vit_reply r;
        ck_assert_int_eq(vit_client_new(ep, &o, &c, &err), VIT_OK);
        vit_status st = vit_client_call(c, "{\"op\":\"health\"}", NULL, 0, &r,
                                        &err);
        vit_client_free(c);
        if (st == VIT_OK) {
            vit_reply_free(&r);
            return pid;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            ck_abort_msg("the worker exited; see %s", log);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ck_abort_msg("the worker did not answer health");
    return -1;
}

int tu_serve_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    double end = tu_now() + 30;
    int status;
    while (tu_now() < end) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        struct timespec d = {0, 10000000};
        nanosleep(&d, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

double tu_min_cosine(const float *got, const float *want, int rows, int dim)
{
    double worst = 1;
    for (int i = 0; i < rows; i++) {
        double gw = 0, gg = 0, ww = 0;
        for (int j = 0; j < dim; j++) {
            double g = got[(size_t)i * dim + j], w = want[(size_t)i * dim + j];
            gw += g * w, gg += g * g, ww += w * w;
        }
        worst = fmin(worst, gw / sqrt(gg * ww));
    }
    return worst;
}

uint64_t tu_noise_png(const char *path, int w, int h, uint64_t s)
{
    size_t n = (size_t)w * (size_t)h * 3;
    uint8_t *px = malloc(n);
    ck_assert_ptr_nonnull(px);
    for (size_t j = 0; j < n; j++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        px[j] = (uint8_t)((s * 0x2545F4914F6CDD1Dull) >> 56);
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = PNG_FORMAT_RGB;
    ck_assert_msg(png_image_write_to_file(&im, path, 0, px, 0, NULL), "%s",
                  path);
    free(px);
    return s;
}

int tu_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static double tu_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs argv with stdout into `out`, killed after `secs`. Returns the exit
 * status, or -1 when it had to be killed. */
pid_t tu_fork_out(const char *out)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(o, 1);
        dup2(nul, 2);
        setpgid(0, 0);  /* so that its helper processes die with it */
    }
    return pid;
}

int tu_run_bounded(char *const *argv, const char *out, int secs)
{
    pid_t pid = tu_fork_out(out);
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    double end = tu_mono_s() + secs;
    int status;
    while (tu_mono_s() < end) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        struct timespec d = {0, 20000000};
        nanosleep(&d, NULL);
    }
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

int tu_have_program(const char *name)
{
    const char *path = getenv("PATH");
    char *copy = strdup(path ? path : "/usr/bin:/bin");
    int found = 0;
    for (char *dir = strtok(copy, ":"); dir && !found;
         dir = strtok(NULL, ":")) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        found = access(p, X_OK) == 0;
    }
    free(copy);
    return found;
}


json_t *tu_call(vit_client *c, const char *header, const vit_blob *blobs,
                int n)
{
    vit_reply r;
    vit_error err = {{0}};
    ck_assert_msg(vit_client_call(c, header, blobs, n, &r, &err) == VIT_OK,
                  "%s", err.msg);
    json_t *j = json_loads(r.body, 0, NULL);
    ck_assert_msg(j != NULL, "%s", r.body);
    vit_reply_free(&r);
    return j;
}

double tu_act_ref(int act, double x)
{
    switch (act) {
    case VIT_ACT_GELU:
        return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case VIT_ACT_GELU_TANH:
        return 0.5 * x *
               (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case VIT_ACT_QUICK_GELU:
        return x / (1 + exp(-1.702 * x));
    case VIT_ACT_SILU:
        return x / (1 + exp(-x));
    case VIT_ACT_RELU:
        return x > 0 ? x : 0;
    default:
        return tanh(x);
    }
}
