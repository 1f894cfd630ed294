/*
 * The shipped models' proof: `vit classify` over the 1000 held-out digits
 * in models/digits-heldout/ gives, image by image, the label PyTorch gave
 * when models/train.py trained the model (predictions-vit.csv,
 * predictions-clip.csv there), with the same top-1 logit, and so the same
 * held-out accuracy as the model card (README.md in the model directory)
 * states. For CLIP, the zero-shot prompt is the card's official template
 * over models/clip-digits/labels.txt. The binary is VIT_BIN (set by
 * `make test`; build/vit by default), run from the repository root.
 */
#define _XOPEN_SOURCE 700

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define HELDOUT "models/digits-heldout"
#define VIT_DIR "models/vit-digits"
#define CLIP_DIR "models/clip-digits"
#define CLIP_TEMPLATE "a handwritten {}."
#define N_HELDOUT 1000
#define MAX_ROWS 2048

static const char *vit_bin(void)
{
    const char *b = getenv("VIT_BIN");
    return b && *b ? b : "build/vit";
}

/* Runs the binary with `args` (NULL-terminated, argv[0] excluded) and
 * returns its stdout; *code gets its exit status. stderr is passed
 * through, so a failure's reason shows in the test log. */
static char *run_vit(const char *const *args, int *code)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = vit_bin();
    while (args[n - 1]) {
        ck_assert_int_lt(n, 31);
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;

    FILE *out = tmpfile();
    ck_assert_ptr_nonnull(out);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(fileno(out), 1);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

    ck_assert_int_eq(fseek(out, 0, SEEK_END), 0);
    long len = ftell(out);
    ck_assert_int_ge(len, 0);
    rewind(out);
    char *s = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(fread(s, 1, (size_t)len, out), (size_t)len);
    s[len] = '\0';
    fclose(out);
    return s;
}

/* ---- the reference, as train.py wrote it ---- */

typedef struct {
    char file[32];
    char label[16];  /* the true class */
    char pred[16];   /* PyTorch's top-1 */
    double logit;    /* PyTorch's top-1 logit */
    double margin;   /* its lead over the second */
    int seen;        /* set when vit's output names the file */
} ref_row;

/* predictions-*.csv: a header, then file,label,pred,logit,margin (no field
 * needs quoting). Returns the number of rows. */
static int read_predictions(const char *path, ref_row *rows)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    char line[256];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "file,label,pred,logit,margin\n");
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        ck_assert_int_lt(n, MAX_ROWS);
        ref_row *r = &rows[n];
        memset(r, 0, sizeof *r);
        int got = sscanf(line, "%31[^,],%15[^,],%15[^,],%lf,%lf", r->file,
                         r->label, r->pred, &r->logit, &r->margin);
        ck_assert_msg(got == 5, "%s: bad row %d: %s", path, n + 2, line);
        n++;
    }
    fclose(f);
    return n;
}

/* The card's held-out count: "(N of M held-out images)". */
static void card_count(const char *dir, int *correct, int *total)
{
    char path[256];
    snprintf(path, sizeof path, "%s/README.md", dir);
    size_t n;
    char *s = (char *)tu_read(path, &n);
    ck_assert_msg(s != NULL, "%s: cannot read", path);
    s = realloc(s, n + 1);
    ck_assert_ptr_nonnull(s);
    s[n] = '\0';
    const char *end = strstr(s, " held-out images)");
    ck_assert_msg(end != NULL, "%s: no \"(N of M held-out images)\"", path);
    const char *p = end;
    while (p > s && p[-1] != '(')
        p--;
    ck_assert_int_eq(sscanf(p, "%d of %d", correct, total), 2);
    free(s);
}

static int card_mentions(const char *dir, const char *what)
{
    char path[256];
    snprintf(path, sizeof path, "%s/README.md", dir);
    size_t n;
    char *s = (char *)tu_read(path, &n);
    ck_assert_ptr_nonnull(s);
    s = realloc(s, n + 1);
    ck_assert_ptr_nonnull(s);
    s[n] = '\0';
    int found = strstr(s, what) != NULL;
    free(s);
    return found;
}

static ref_row *find_row(ref_row *rows, int n, const char *file)
{
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].file, file) == 0)
            return &rows[i];
    return NULL;
}

/* Runs `args` (a vit classify --format jsonl --top-k 1 --logits ... over
 * the held-out directory) and checks every image against `pred_csv` and
 * the card in `model_dir`. */
static void check_against_reference(const char *const *args,
                                    const char *pred_csv,
                                    const char *model_dir)
{
    static ref_row rows[MAX_ROWS];
    int n = read_predictions(pred_csv, rows);
    ck_assert_int_eq(n, N_HELDOUT);

    int code;
    char *out = run_vit(args, &code);
    ck_assert_msg(code == 0, "vit exited with %d", code);

    int lines = 0, agree = 0, correct = 0;
    double worst = 0;
    const char *worst_file = "";
    for (char *line = out; *line;) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = '\0';
        json_error_t jerr;
        json_t *obj = json_loads(line, 0, &jerr);
        ck_assert_msg(obj != NULL, "bad JSON line %d: %s", lines + 1,
                      jerr.text);
        const char *path = json_string_value(json_object_get(obj, "path"));
        ck_assert_ptr_nonnull(path);
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        ref_row *r = find_row(rows, n, base);
        ck_assert_msg(r != NULL, "%s: not in %s", path, pred_csv);
        ck_assert_msg(!r->seen, "%s: classified twice", path);
        r->seen = 1;

        json_t *top = json_array_get(json_object_get(obj, "labels"), 0);
        const char *label = json_string_value(json_object_get(top, "label"));
        int id = (int)json_integer_value(json_object_get(top, "id"));
        json_t *logits = json_object_get(obj, "logits");
        ck_assert_ptr_nonnull(label);
        ck_assert_int_eq(json_array_size(logits), 10);
        double logit = json_number_value(json_array_get(logits, (size_t)id));

        ck_assert_msg(strcmp(label, r->pred) == 0,
                      "%s: vit says %s, PyTorch said %s (PyTorch's margin "
                      "%.3g)", path, label, r->pred, r->margin);
        agree++;
        correct += strcmp(label, r->label) == 0;
        /* Same weights (F16, widened), same pixels, fp32 both: the
         * numerical contract is 1e-4 relative. */
        double d = fabs(logit - r->logit) / fmax(1.0, fabs(r->logit));
        if (d > worst) {
            worst = d;
            worst_file = r->file;
        }
        ck_assert_msg(d < 1e-3, "%s: top-1 logit %.7g, PyTorch %.7g", path,
                      logit, r->logit);
        json_decref(obj);
        lines++;
        line = nl + 1;
    }
    ck_assert_int_eq(lines, N_HELDOUT);

    int card_correct, card_total;
    card_count(model_dir, &card_correct, &card_total);
    printf("%s: vit agrees with PyTorch on %d/%d held-out images; "
           "accuracy %d/%d (card: %d/%d); top-1 logit worst relative "
           "difference %.3g (%s)\n", model_dir, agree, lines, correct, lines,
           card_correct, card_total, worst, worst_file);
    ck_assert_int_eq(card_total, lines);
    ck_assert_int_eq(correct, card_correct);
    free(out);
}

START_TEST(test_vit_heldout)
{
    const char *args[] = {"classify", "--model", VIT_DIR, "--format",
                          "jsonl", "--top-k", "1", "--logits", "--batch",
                          "64", HELDOUT, NULL};
    check_against_reference(args, HELDOUT "/predictions-vit.csv", VIT_DIR);
}
END_TEST

START_TEST(test_clip_zero_shot_heldout)
{
    ck_assert_msg(card_mentions(CLIP_DIR, "`" CLIP_TEMPLATE "`"),
                  "the card's official template is not " CLIP_TEMPLATE);
    const char *args[] = {"classify", "--model", CLIP_DIR, "--labels",
                          CLIP_DIR "/labels.txt", "--template",
                          CLIP_TEMPLATE, "--format", "jsonl", "--top-k", "1",
                          "--logits", "--batch", "64", HELDOUT, NULL};
    check_against_reference(args, HELDOUT "/predictions-clip.csv",
                            CLIP_DIR);
}
END_TEST

/* The int8 mode (--precision int8) against PyTorch's fp32 labels: it
 * changes numbers, so the contract is agreement on at least 99% of the
 * held-out images, not identity. */
static void check_agreement(const char *const *args, const char *pred_csv,
                            const char *what, int percent_tenths)
{
    static ref_row rows[MAX_ROWS];
    int n = read_predictions(pred_csv, rows);
    int code;
    char *out = run_vit(args, &code);
    ck_assert_msg(code == 0, "vit exited with %d", code);
    int lines = 0, agree = 0;
    for (char *line = out; *line;) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = '\0';
        json_t *obj = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(obj);
        const char *path = json_string_value(json_object_get(obj, "path"));
        const char *base = strrchr(path, '/');
        ref_row *r = find_row(rows, n, base ? base + 1 : path);
        ck_assert_msg(r != NULL && !r->seen, "%s: unknown or twice", path);
        r->seen = 1;
        json_t *top = json_array_get(json_object_get(obj, "labels"), 0);
        const char *label = json_string_value(json_object_get(top, "label"));
        ck_assert_ptr_nonnull(label);
        agree += strcmp(label, r->pred) == 0;
        json_decref(obj);
        lines++;
        line = nl + 1;
    }
    printf("%s, %s: top-1 agrees with PyTorch's fp32 on %d/%d\n", pred_csv,
           what, agree, lines);
    ck_assert_int_eq(lines, N_HELDOUT);
    ck_assert_int_ge(agree * 1000, lines * percent_tenths);
    free(out);
}

static void check_int8_agreement(const char *const *args, const char *pred_csv)
{
    check_agreement(args, pred_csv, "int8", 990);
}

START_TEST(test_int8_heldout)
{
    const char *vit[] = {"classify", "--model", VIT_DIR, "--precision", "int8",
                         "--format", "jsonl", "--top-k", "1", "--batch", "64",
                         HELDOUT, NULL};
    check_int8_agreement(vit, HELDOUT "/predictions-vit.csv");
    const char *clip[] = {"classify", "--model", CLIP_DIR, "--precision",
                          "int8", "--labels", CLIP_DIR "/labels.txt",
                          "--template", CLIP_TEMPLATE, "--format", "jsonl",
                          "--top-k", "1", "--batch", "64", HELDOUT, NULL};
    check_int8_agreement(clip, HELDOUT "/predictions-clip.csv");
}
END_TEST

/* The bf16 mode (--precision bf16), held to 99.5%: bfloat16 products
 * drift about a tenth as far as int8's. Run as this CPU runs it (oneDNN
 * where it has AVX512-BF16 or AMX), and with VIT_ISA=avx2, where the
 * rounded weights run in the float32 kernel instead. */
START_TEST(test_bf16_heldout)
{
    const char *vit[] = {"classify", "--model", VIT_DIR, "--precision", "bf16",
                         "--format", "jsonl", "--top-k", "1", "--batch", "64",
                         HELDOUT, NULL};
    const char *clip[] = {"classify", "--model", CLIP_DIR, "--precision",
                          "bf16", "--labels", CLIP_DIR "/labels.txt",
                          "--template", CLIP_TEMPLATE, "--format", "jsonl",
                          "--top-k", "1", "--batch", "64", HELDOUT, NULL};
    char *saved = tu_env_save("VIT_ISA");
    for (int capped = 0; capped < 2; capped++) {
        if (capped)
            setenv("VIT_ISA", "avx2", 1);
        const char *what = capped ? "bf16 (VIT_ISA=avx2)" : "bf16";
        check_agreement(vit, HELDOUT "/predictions-vit.csv", what, 995);
        check_agreement(clip, HELDOUT "/predictions-clip.csv", what, 995);
    }
    tu_env_restore("VIT_ISA", saved);
}
END_TEST

/* The labels file lists every held-out image once, with a class name. */
START_TEST(test_heldout_labels)
{
    FILE *f = fopen(HELDOUT "/labels.csv", "r");
    ck_assert_ptr_nonnull(f);
    char line[128];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "file,label\n");
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char file[64], path[128];
        ck_assert_int_eq(sscanf(line, "%63[^,],", file), 1);
        snprintf(path, sizeof path, "%s/%s", HELDOUT, file);
        ck_assert_msg(access(path, R_OK) == 0, "%s: missing", path);
        n++;
    }
    fclose(f);
    ck_assert_int_eq(n, N_HELDOUT);
}
END_TEST

Suite *models_suite(void)
{
    Suite *s = suite_create("models");
    TCase *tc = tcase_create("heldout");
    /* A few seconds normally; generous for `make asan`. */
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_heldout_labels);
    tcase_add_test(tc, test_vit_heldout);
    tcase_add_test(tc, test_clip_zero_shot_heldout);
    tcase_add_test(tc, test_int8_heldout);
    tcase_add_test(tc, test_bf16_heldout);
    suite_add_tcase(s, tc);
    return s;
}
