/*
 * libvit: Vision Transformer inference from Hugging Face checkpoints.
 *
 * This is the one public header of the library. It loads a model directory
 * as `transformers` saves it (config.json, model.safetensors or a sharded
 * index, preprocessor_config.json) and runs it with the same numbers as the
 * reference. A worked example, classifying one file:
 *
 *     vit_error err;
 *     vit_model *m;
 *     vit_options opt = vit_options_default();
 *     if (vit_model_load("models/vit-digits", &opt, &m, &err) != VIT_OK)
 *         { fprintf(stderr, "%s\n", err.msg); return 1; }
 *     vit_state *s;
 *     vit_state_new(m, &s, &err);
 *     vit_image img;
 *     if (vit_image_read("cat.jpg", NULL, &img, &err) == VIT_OK) {
 *         vit_prediction top[5];
 *         if (vit_classify(s, &img, 1, 5, top, NULL, &err) == VIT_OK)
 *             printf("%s %.3f\n", top[0].label, top[0].score);
 *         vit_image_free(&img);
 *     }
 *     vit_state_free(s);
 *     vit_model_free(m);
 *
 * Threads: a vit_model is immutable once loaded and may be shared by any
 * number of threads; a vit_state holds one caller's scratch memory and must
 * be used by one thread at a time. Give each thread its own state.
 *
 * Errors: every fallible call returns a vit_status and, when `err` is not
 * NULL, writes one sentence naming the problem into err->msg. On failure,
 * out-parameters are left untouched. The library never prints, exits or
 * aborts on bad input. Freeing NULL is a harmless no-op everywhere.
 */
#ifndef VIT_H
#define VIT_H

#include <stddef.h>
#include <stdint.h>

/* The version of this header; vit_version() gives the library's, which a
 * program linked against the shared library may find newer (the same
 * major version keeps the ABI). */
#define VIT_VERSION_MAJOR 0
#define VIT_VERSION_MINOR 1
#define VIT_VERSION_PATCH 0
#define VIT_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Append-only: values are stable across versions. */
#define VIT_STATUS_LIST(X)                                              \
    X(VIT_OK, "ok")                                                     \
    X(VIT_E_ARG, "invalid argument")                                    \
    X(VIT_E_NOMEM, "out of memory")                                     \
    X(VIT_E_IO, "input/output error")                                   \
    X(VIT_E_CHECKPOINT, "bad checkpoint")                               \
    X(VIT_E_CONFIG, "bad model configuration")                          \
    X(VIT_E_UNSUPPORTED, "not supported")                               \
    X(VIT_E_IMAGE, "bad image")                                         \
    X(VIT_E_TOO_LARGE, "input exceeds a size limit")                    \
    X(VIT_E_NO_HEAD, "the model has no head for this operation")

typedef enum {
#define VIT_STATUS_ENUM(name, msg) name,
    VIT_STATUS_LIST(VIT_STATUS_ENUM)
#undef VIT_STATUS_ENUM
} vit_status;

/* The fixed message of a status ("bad checkpoint"); never NULL. */
const char *vit_status_str(vit_status st);

/* The library's version, "MAJOR.MINOR.PATCH" (VIT_VERSION_STRING of the
 * library that runs, not of the header compiled against). */
const char *vit_version(void);

/* The per-call detail of a failure. */
typedef struct {
    char msg[512];
} vit_error;

typedef struct vit_model vit_model;
typedef struct vit_state vit_state;

/* How the encoder's matrix products are computed. */
typedef enum {
    VIT_PRECISION_FP32 = 0, /* float32 throughout: the reference's numbers
                               (default) */
    VIT_PRECISION_INT8 = 1, /* the four products of every encoder layer in
                               int8 (weights per output channel, activations
                               per token, int32 sums); everything else in
                               float32. About 2.4x fp32 with AVX-512 VNNI
                               or AVX-VNNI, 1.3-1.4x on AVX2 alone, and
                               CHANGES NUMBERS: outputs drift from the
                               reference's by about a percent. */
    VIT_PRECISION_BF16 = 2, /* the same four products with bfloat16
                               weights (rounded once at load; a BF16
                               checkpoint's as stored) and activations
                               (rounded to nearest even), float32 sums and
                               outputs; everything else in float32, as
                               PyTorch's autocast does. Through oneDNN
                               where the CPU has AVX512-BF16 or AMX-BF16
                               (and VIT_ISA allows avx512), the attention's
                               two products in bfloat16 there too; else the
                               rounded weights widened back to float32
                               inside the float32 kernel (half the memory
                               all the same). CHANGES NUMBERS, by
                               about a tenth of int8's drift. */
} vit_precision;

/* Which of transformers 5's two implementations of a model's image
 * processor to reproduce (both bit for bit). */
typedef enum {
    VIT_PREPROCESS_PIL = 0,         /* Pillow and NumPy: the `...Pil`
                                       classes, and what transformers runs
                                       without torchvision (default) */
    VIT_PREPROCESS_TORCHVISION = 1, /* torchvision: the classes
                                       AutoImageProcessor picks whenever
                                       torchvision is installed; a level or
                                       so apart from Pillow's per pixel */
} vit_preprocess_backend;

typedef struct {
    int max_batch;           /* a state's arena holds this many images; a
                                larger call is run in chunks (default 8) */
    uint32_t max_width;      /* image limits, checked from the header */
    uint32_t max_height;
    uint64_t max_pixels;
    size_t max_file_bytes;
    int threads;             /* threads each state computes with; 0: one
                                per online CPU. vit splits the work among
                                them itself, so it sets OpenBLAS to one
                                thread (openblas_set_num_threads, which is
                                process-wide) when a state is made. */
    int exif_transpose;      /* nonzero: turn images upright by their EXIF
                                orientation, as transformers' load_image
                                does (default 1) */
    int alpha_over_white;    /* 0 (default): drop alpha, as load_image's
                                convert("RGB") does before any processor
                                sees the image; 1: composite transparent
                                pixels onto white, as CLIPImageProcessor's
                                do_convert_rgb does to a PIL image passed
                                to it unconverted */
    int fast_decode;         /* nonzero: let a large JPEG be decoded
                                shrunk by libjpeg's DCT scaling, as far as
                                the model's resize allows. Several times
                                faster on photos, but it CHANGES PIXELS:
                                the tensor drifts from the reference's by
                                a few levels. Default 0 (exact). */
    vit_precision precision; /* default VIT_PRECISION_FP32 */
    int decode_min_side;     /* set by vit_model_load from fast_decode and
                                the model's preprocessing: the shorter side
                                a JPEG may be shrunk to (0: no shrinking).
                                Leave 0; read it via vit_model_options. */
    vit_preprocess_backend preprocess; /* default VIT_PREPROCESS_PIL */
    int convert_rgb;         /* set by vit_model_load from the processor's
                                do_convert_rgb: nonzero paints white the
                                pixels of a PNG's transparency colour, as
                                transformers 5 does (see imgio.h's
                                transparency_white). Leave 0; read it via
                                vit_model_options. */
} vit_options;

/* max_batch 8; images of up to 178,956,970 pixels (Pillow's limit: a
 * 108-megapixel photo opens), any side, 256 MiB encoded; threads 0;
 * images as transformers' load_image gives them: EXIF orientation applied,
 * alpha dropped. */
vit_options vit_options_default(void);

/* Loads a model directory. `opt` may be NULL (defaults). On success *out
 * owns the model; free it with vit_model_free. */
vit_status vit_model_load(const char *dir, const vit_options *opt,
                          vit_model **out, vit_error *err);
void vit_model_free(vit_model *m);

typedef enum {
    VIT_ARCH_VIT_CLASSIFIER = 1,  /* ViTForImageClassification */
    VIT_ARCH_VIT_MODEL = 2,       /* ViTModel: embeddings, no labels */
    VIT_ARCH_CLIP = 3,            /* CLIPModel: both towers */
    VIT_ARCH_CLIP_VISION = 4,     /* CLIPVisionModelWithProjection */
    VIT_ARCH_CLIP_TEXT = 5,       /* CLIPTextModelWithProjection */
    VIT_ARCH_SIGLIP = 6,          /* SiglipModel: both towers, scored per
                                     pair with a sigmoid */
    VIT_ARCH_SIGLIP_VISION = 7,   /* SiglipVisionModel */
    VIT_ARCH_SIGLIP_TEXT = 8,     /* SiglipTextModel */
} vit_arch;

typedef struct {
    vit_arch arch;
    const char *architecture;  /* as config.json names it */
    int channels, image_h, image_w;  /* the pixel tensor a forward takes */
    int num_labels;            /* 0 without a classification head */
    int embed_dim;             /* length of vit_embed_* vectors */
    int hidden_size, num_layers, num_heads, patch_size;
    int mlp_size;              /* intermediate_size */
    int has_vision, has_text;  /* which towers the model has */
    int has_tokenizer;         /* texts can be embedded (a text tower and
                                  its tokenizer files) */
    int text_max_len;          /* tokens per text, 0 without a text tower */
    float logit_scale;         /* exp(logit_scale) of a CLIPModel or a
                                  SiglipModel, else 0 */
} vit_model_info;

/* The options the model was loaded with, which is what to decode images
 * for it with: vit_image_read(path, vit_model_options(m), ...). Lives as
 * long as the model. */
const vit_options *vit_model_options(const vit_model *m);

/* Fills `info`; its strings live as long as the model. */
void vit_model_get_info(const vit_model *m, vit_model_info *info);

/* The label of class `id` (from config.json id2label), or NULL when out of
 * range. The string lives as long as the model. */
const char *vit_model_label(const vit_model *m, int id);

/* A per-thread scratch arena sized for the model's max_batch. */
vit_status vit_state_new(const vit_model *m, vit_state **out, vit_error *err);
void vit_state_free(vit_state *s);

/* The memory behind a state, in bytes. The checkpoint's files are mapped
 * and F32 tensors used where they lie (their pages belong to the page
 * cache and are shared by every process that maps the files); F16 and
 * BF16 tensors, and F32 ones stored unaligned, are widened into float32
 * copies the model owns; the arena holds a forward's activations for
 * max_batch images. */
typedef struct {
    size_t weights_mapped;  /* the files, as mapped */
    size_t weights_copied;  /* float32 copies made at load */
    size_t arena;           /* this state's activation arena */
    size_t weights_int8;    /* VIT_PRECISION_INT8: the quantized products'
                               packed weights */
    size_t weights_dropped; /* ... and the mapped bytes of their float32
                               originals, given back to the kernel (their
                               copies, if any, are freed and not counted
                               above) */
    size_t weights_bf16;    /* VIT_PRECISION_BF16: the products' bfloat16
                               weights, in oneDNN's layout or, where oneDNN
                               does not run, as rows the float32 kernel
                               widens a block at a time (their float32
                               originals are dropped as for int8) */
    size_t weights_resident; /* of the mapped bytes, those resident in this
                                process now (what its forwards read: a CLIP
                                checkpoint's text tower stays unread by
                                image work), from /proc/self/smaps; 0 where
                                that cannot be read */
} vit_memory;
void vit_state_memory(const vit_state *s, vit_memory *out);

/* An 8-bit RGB image, interleaved, rows top to bottom. */
typedef struct {
    int width, height;
    uint8_t *rgb;
} vit_image;

/* Decodes JPEG, PNG, WebP, GIF, BMP or TIFF bytes, and HEIC or AVIF where
 * built with libheif (detected by content), as transformers' load_image
 * does. `opt` supplies the size limits, EXIF and alpha handling,
 * and may be NULL (defaults). An image past a limit is refused, from its
 * header, before pixel memory is allocated. */
vit_status vit_image_decode(const void *bytes, size_t n,
                            const vit_options *opt, vit_image *out,
                            vit_error *err);

/* The size an image's header states (as stored, before any EXIF turn; a
 * TIFF's as Pillow opens it, turned by its Orientation tag),
 * read without decoding pixels, with `opt`'s limits checked as
 * vit_image_decode checks them: VIT_E_TOO_LARGE past one, VIT_E_IMAGE for
 * an unsupported format or a header that cannot be read. Microseconds for
 * any image: what a server uses to refuse costly work up front. */
vit_status vit_image_size(const void *bytes, size_t n,
                          const vit_options *opt, int *width, int *height,
                          vit_error *err);

/* Reads and decodes a file; the file size limit is checked first. */
vit_status vit_image_read(const char *path, const vit_options *opt,
                          vit_image *out, vit_error *err);
void vit_image_free(vit_image *img);

/* Preprocesses `n` images as the model's preprocessor_config.json says into
 * `pixels`, n x channels x image_h x image_w floats (see vit_model_info). */
vit_status vit_preprocess(const vit_model *m, const vit_image *imgs, int n,
                          float *pixels, vit_error *err);

typedef struct {
    int id;
    float score;        /* softmax probability */
    const char *label;  /* lives as long as the model */
} vit_prediction;

/* Classifies `n` preprocessed pixel tensors (n x C x H x W). Writes the
 * top_k predictions of image i, best first, to out[i * top_k ...]; top_k is
 * clamped to the number of labels, and the rest of each row is filled with
 * id -1. `logits`, when not NULL, receives n x num_labels raw logits.
 * VIT_E_NO_HEAD for a model without a classifier. */
vit_status vit_classify_pixels(vit_state *s, const float *pixels, int n,
                               int top_k, vit_prediction *out, float *logits,
                               vit_error *err);

/* vit_preprocess followed by vit_classify_pixels. */
vit_status vit_classify(vit_state *s, const vit_image *imgs, int n, int top_k,
                        vit_prediction *out, float *logits, vit_error *err);

/* The image embedding of `n` pixel tensors: n x embed_dim floats. For a
 * ViTModel with a pooler it is the pooler output, otherwise the final
 * layer-normed class token. */
vit_status vit_embed_pixels(vit_state *s, const float *pixels, int n,
                            float *out, vit_error *err);

/* vit_preprocess followed by vit_embed_pixels. */
vit_status vit_embed_images(vit_state *s, const vit_image *imgs, int n,
                            float *out, vit_error *err);

/* The text embeddings of `n` strings (any bytes; invalid UTF-8 is
 * replaced, overlong texts are truncated to text_max_len tokens), n x
 * embed_dim floats, as get_text_features gives. VIT_E_NO_HEAD for a model
 * without a text tower. */
vit_status vit_embed_texts(vit_state *s, const char *const *texts, int n,
                           float *out, vit_error *err);

/* Scales each of the n rows of `v` (n x dim) to unit L2 norm. */
void vit_l2_normalize(float *v, int n, int dim);

/* Matching of n image and m text embeddings (as vit_embed_* return them,
 * normalized or not), what logits_per_image gives: for a CLIPModel
 * logits[i][j] = logit_scale * cos(image i, text j) and probs[i] their
 * softmax over the m texts; for a SiglipModel logits[i][j] = logit_scale
 * * cos + logit_bias and probs[i][j] its sigmoid, each pair on its own
 * (what SigLIP was trained to score). Either output may be NULL. */
vit_status vit_match(const vit_model *m, const float *image_embeds, int n,
                     const float *text_embeds, int k, float *logits,
                     float *probs, vit_error *err);

/* The tokens an image becomes in the vision tower: its patches and the
 * tokens before them (class token, DeiT's distillation token, DINOv2's
 * registers; none in SigLIP); 0 without a vision tower. */
int vit_model_image_tokens(const vit_model *m);

/* The logit_bias of a SiglipModel (added to its scaled cosines), else 0. */
float vit_model_logit_bias(const vit_model *m);

/* Zero-shot classification with a CLIP or SigLIP model: a label set whose
 * prompts (`tmpl` with "{}" replaced by each label; NULL means "a photo
 * of a {}.") are embedded once, then used like a classifier head.
 * Immutable once
 * made; may be shared by threads with the model. */
typedef struct vit_zeroshot vit_zeroshot;
vit_status vit_zeroshot_new(vit_state *s, const char *const *labels, int n,
                            const char *tmpl, vit_zeroshot **out,
                            vit_error *err);
void vit_zeroshot_free(vit_zeroshot *z);

/* As vit_classify_pixels, over the label set: logits as vit_match gives
 * them, scores its probs (CLIP's softmax over the labels, SigLIP's
 * sigmoid of each), labels the set's. */
vit_status vit_zeroshot_classify_pixels(vit_state *s, const vit_zeroshot *z,
                                        const float *pixels, int n, int top_k,
                                        vit_prediction *out, float *logits,
                                        vit_error *err);

/* Where a state's forward passes spend their time, by kind of op, summed
 * over its threads since profiling was last enabled: "patch embedding",
 * "layernorm", "matmul" (the linear layers), "attention" (its two batched
 * products), "softmax", "activation" (0 at present: the MLP's runs in its
 * first product's epilogue, counted as matmul), "quantize" (int8's
 * activations). Preprocessing happens outside a state; time it around
 * vit_preprocess. */
typedef struct {
    const char *op;
    double thread_seconds;  /* summed over threads */
    double gflop;           /* floating-point work, 0 where not counted */
    long calls;
} vit_profile_entry;

#define VIT_PROFILE_OPS 7

/* Turns profiling on (and clears the counters) or off. Off costs nothing;
 * on costs two clock reads per op. */
void vit_state_profile_enable(vit_state *s, int on);
/* Fills out[0 .. VIT_PROFILE_OPS-1]; returns the number of threads the
 * state runs (divide thread_seconds by it for wall time). */
int vit_state_profile_get(const vit_state *s, vit_profile_entry *out);

/* The kernel int8 products run on here, as the CPU path allows:
 * "oneDNN AMX-INT8" (the CPU has AMX-INT8 and VIT_ISA allows amx),
 * "AVX-512 VNNI", "AVX-VNNI", "AVX2" or "portable C" (the same results;
 * the last much slower). */
const char *vit_int8_kernel(void);

/* The CPU path vit's kernels run ("generic", "avx2", "avx512", "amx"):
 * the best the CPU has, capped by the environment variable
 * VIT_ISA=generic|avx2|avx512|amx (read once per process). `detail`, when
 * not NULL, receives the path and the features detected as one line, e.g.
 * "avx512 (avx2 fma f16c avx512f ...)". VIT_E_ARG, with err saying so,
 * when VIT_ISA names no path (vit_model_load then refuses to load). */
vit_status vit_cpu_path(const char **path, char *detail, size_t n,
                        vit_error *err);

/* ---- Benchmark helpers: what `vit bench` measures the machine with. A
 * program that only runs models needs none of them; each takes a second
 * or so of every core it is given. ---- */

/* The float32 FMA peak, GFLOP/s, of `threads` threads (0: one per online
 * CPU) on the path vit_cpu_path names: independent vector FMAs on every
 * thread at once, the best of three runs of about 0.1 s. What no product
 * can beat: the reference vit bench measures a forward pass against. */
double vit_fma_peak_gflops(int threads);

/* The GFLOP/s of one float32 product, M rows of K features times an
 * (N, K) weight, on `threads` threads, the best of the runs of half a
 * second after a warm-up: vit_sgemm_gflops with OpenBLAS's sgemm (its own
 * threads; OpenBLAS is left on one thread, as states want it),
 * vit_gemm_gflops with vit's own GEMM on the path vit_cpu_path names, the
 * columns split among the threads as the encoder splits them. vit bench
 * prints both at the model's largest product: the best GEMM there. */
double vit_sgemm_gflops(int M, int N, int K, int threads);
double vit_gemm_gflops(int M, int N, int K, int threads);

/* ---- end of the benchmark helpers ---- */

/* A float32 array from a .npy file (little-endian '<f4', C order), as used
 * for already-preprocessed pixels. */
typedef struct {
    int ndim;
    int64_t shape[8];
    float *data;
} vit_array;

/* Reads a .npy file of float32 values; other dtypes, Fortran order and
 * malformed headers are refused with a message. */
vit_status vit_npy_read(const char *path, vit_array *out, vit_error *err);
void vit_array_free(vit_array *a);

#ifdef __cplusplus
}
#endif
#endif
