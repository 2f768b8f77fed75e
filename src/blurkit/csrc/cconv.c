/*
 * blurkit compiled CPU kernels: per-image separable and direct 2-D correlation of (B, C, H, W)
 * planes with arbitrary border maps.
 *
 * Borders are handled by index maps built in Python: rowmap[j] (j in 0 .. H + 2*Ry - 1) is the
 * source row of padded row j - Ry, or -1 for a constant border; colmap likewise for columns.
 * Every plane is processed in cache: the horizontal pass writes a private H x W scratch plane,
 * the vertical pass reads it and writes the output rows, so input and output are touched once.
 * Because each plane is fully read before it is written, out may alias in (in-place blur).
 *
 * Work is split over planes with POSIX threads. Loops over x are written so that the compiler
 * vectorises them (-O3); AVX2/FMA variants are chosen at run time where the CPU has them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "bk_common.h"

typedef struct {
    const void *in;
    void *out;
    int64_t C, H, W;
    const void *k1;     /* separable: kx (B, Kx); 2-D: k (B, Kh, Kw) */
    const void *k2;     /* separable: ky (B, Ky) */
    int64_t K1, K2;     /* separable: Kx, Ky; 2-D: Kh, Kw */
    const int64_t *r1;  /* separable: rx (B,); 2-D: ry (B,) */
    const int64_t *r2;  /* separable: ry (B,); 2-D: rx (B,) */
    const int64_t *rowmap, *colmap;
    int64_t Ry, Rx;     /* maps are built for these maximal radii */
    double cval;
    int64_t p0, p1;     /* planes [p0, p1) (images for the blur-effect sums) */
    int status;
    const void *a1, *a2; /* blur-effect sums: the composed kernel and the grey weights */
    int64_t *next;      /* shared counter: each thread takes the next plane (image) from it */
    int in_u8;          /* input planes are uint8 (values used as they are, 0..255) */
    int out_kind;       /* OUT_PLAIN, OUT_CLIP, OUT_U8_RINT, OUT_U8_FLOOR */
    double lo, hi;      /* clip range of OUT_CLIP and the uint8 outputs */
} job_t;

/* The next plane (image) for the calling thread. Threads take work one plane at a time from a
 * shared counter instead of fixed halves, so that a core busy with something else (e.g. another
 * thread pool's workers still spinning after a torch op) slows the call down by its share only. */
static inline int64_t bk_next(job_t *j) { return __atomic_fetch_add(j->next, 1, __ATOMIC_RELAXED); }

/* OUT_U8_FLOOR adds a margin (in output units) before truncating, 2^-10 in float32 and 2^-30 in
 * float64: rounding leaves a flat region of value c behind a normalised kernel at c - 1e-5 (float32)
 * or c - 1e-13 (float64), and it must stay c. */

/* Output modes: the working value v, as it is; clip(v, lo, hi); uint8 rint(clip(v, lo, hi)) (round
 * half to even, as torch.round); uint8 floor(clip(v, lo, hi) + margin) (numpy's uint8 cast of a
 * clipped value, with a margin for rounding). */
enum { OUT_PLAIN = 0, OUT_CLIP = 1, OUT_U8_RINT = 2, OUT_U8_FLOOR = 3 };

/* Write one computed row (typed T, in row) to output row y of plane dst with the job's mode. One
 * branch-free loop per mode, so that each is vectorised. */
#define WRITE_ROW(T, j, dst, y, W, row)                                                        \
    bk_write_row_##T(row, (char *)(dst) + (y) * (W) * ((j)->out_kind >= OUT_U8_RINT ? 1 : (int64_t)sizeof(T)), \
                     W, (j)->out_kind, (T)(j)->lo, (T)(j)->hi)

#define WRITE_ROW_FN(T, RINT, MARGIN, FAST_U8)                                                 \
    static inline __attribute__((always_inline)) void bk_write_row_##T(                        \
        const T *restrict row, void *restrict dst, int64_t W, int kind, T lo, T hi) {          \
        FAST_U8                                                                               \
        if (kind == OUT_CLIP) {                                                               \
            T *o = (T *)dst;                                                                  \
            for (int64_t x = 0; x < W; ++x) {                                                 \
                const T v = row[x] < lo ? lo : row[x];                                        \
                o[x] = v > hi ? hi : v;                                                       \
            }                                                                                 \
        } else if (kind == OUT_U8_FLOOR) { /* clipped to >= 0: truncation is floor */         \
            uint8_t *o = (uint8_t *)dst;                                                      \
            for (int64_t x = 0; x < W; ++x) { /* = floor(clip(v) + margin) for integer lo, hi */ \
                T v = row[x] + MARGIN;                                                        \
                v = v < lo ? lo : v;                                                          \
                v = v > hi ? hi : v;                                                          \
                o[x] = (uint8_t)(int32_t)v;                                                   \
            }                                                                                 \
        } else if (kind == OUT_U8_RINT) {                                                     \
            uint8_t *o = (uint8_t *)dst;                                                      \
            for (int64_t x = 0; x < W; ++x) {                                                 \
                T v = row[x] < lo ? lo : row[x];                                              \
                v = v > hi ? hi : v;                                                          \
                o[x] = (uint8_t)(int32_t)RINT(v);                                             \
            }                                                                                 \
        }                                                                                     \
    }
#if BK_X86 /* float rows to uint8: the AVX2 packer where the CPU has it (same results) */
#define BK_FAST_U8_FLOAT                                                                       \
    if (kind >= OUT_U8_RINT && have_avx2()) {                                                 \
        bk_pack_u8_avx2(row, (uint8_t *)dst, W, kind == OUT_U8_RINT,                          \
                        kind == OUT_U8_FLOOR ? 0x1p-10f : 0.0f, lo, hi);                      \
        return;                                                                               \
    }
#else
#define BK_FAST_U8_FLOAT
#endif
WRITE_ROW_FN(float, __builtin_rintf, 0x1p-10f, BK_FAST_U8_FLOAT)
WRITE_ROW_FN(double, __builtin_rint, 0x1p-30, )

static inline __attribute__((always_inline)) const float *bk_u8_row_float(const uint8_t *s, float *d, int64_t W) {
    for (int64_t x = 0; x < W; ++x) d[x] = (float)s[x];
    return d;
}
static inline __attribute__((always_inline)) const double *bk_u8_row_double(const uint8_t *s, double *d, int64_t W) {
    for (int64_t x = 0; x < W; ++x) d[x] = (double)s[x];
    return d;
}

/* ------------------------------------------------------------------------------ separable */
/* One output row: o[x] = sum_t k[t] * row_t[x], with rows[t] the t-th input row (the horizontal
 * pass passes shifted pointers into one padded row). Accumulators live in registers for blocks
 * of VB outputs; symmetric kernels (k[t] == k[n-1-t]) use half the multiplications. */
typedef float vf_t __attribute__((vector_size(32), aligned(4)));
typedef double vd_t __attribute__((vector_size(32), aligned(8)));
#define LDV(V, p) (*(const V *)(p))
/* Blocks of NV vectors: NV independent accumulator chains hide the FMA latency (8 chains of 8
 * floats keep two FMA pipes busy); narrower blocks and a scalar loop finish the row. */
#define ROW_BLOCK(T, V, NV)                                                                    \
    for (; x0 + NV * L <= W; x0 += NV * L) {                                                  \
        V acc[NV];                                                                            \
        const T *rc = rows[r] + x0;                                                           \
        const V kc = (V){0} + k[r];                                                           \
        for (int v = 0; v < NV; ++v) acc[v] = kc * LDV(V, rc + v * L);                       \
        if (sym) {                                                                            \
            for (int64_t t = 0; t < r; ++t) {                                                 \
                const V kt = (V){0} + k[t];                                                   \
                const T *a = rows[t] + x0, *b = rows[n - 1 - t] + x0;                         \
                for (int v = 0; v < NV; ++v) acc[v] += kt * (LDV(V, a + v * L) + LDV(V, b + v * L)); \
            }                                                                                 \
        } else {                                                                              \
            for (int64_t t = 0; t < n; ++t) {                                                 \
                if (t == r) continue;                                                         \
                const V kt = (V){0} + k[t];                                                   \
                const T *a = rows[t] + x0;                                                    \
                for (int v = 0; v < NV; ++v) acc[v] += kt * LDV(V, a + v * L);               \
            }                                                                                 \
        }                                                                                     \
        for (int v = 0; v < NV; ++v) *(V *)(o + x0 + v * L) = acc[v];                         \
    }

#define ROW_KERNEL(T, V, NAME)                                                                 \
    static inline __attribute__((always_inline)) void NAME(T *restrict o, const T *const *rows, const T *k, int64_t n,       \
                            int sym, int64_t W) {                                             \
        enum { L = (int)(sizeof(V) / sizeof(T)) };                                             \
        const int64_t r = n / 2;                                                              \
        int64_t x0 = 0;                                                                       \
        ROW_BLOCK(T, V, 8)                                                                    \
        ROW_BLOCK(T, V, 4)                                                                    \
        ROW_BLOCK(T, V, 1)                                                                    \
        for (int64_t x = x0; x < W; ++x) { /* the vector blocks' arithmetic, in their order */ \
            T acc = k[r] * rows[r][x];                                                        \
            if (sym)                                                                          \
                for (int64_t t = 0; t < r; ++t) acc += k[t] * (rows[t][x] + rows[n - 1 - t][x]); \
            else                                                                              \
                for (int64_t t = 0; t < n; ++t)                                               \
                    if (t != r) acc += k[t] * rows[t][x];                                     \
            o[x] = acc;                                                                       \
        }                                                                                     \
    }

ROW_KERNEL(float, vf_t, row_f32)
ROW_KERNEL(double, vd_t, row_f64)

/* Two consecutive output rows of a symmetric vertical pass at once: rows[0 .. n] are the n + 1
 * input rows they read (row y uses rows[0 .. n-1], row y + 1 uses rows[1 .. n]). Each loaded
 * vector serves both outputs, which halves the loads (the bound of the one-row kernel); per output
 * the arithmetic and its order are exactly those of the one-row kernel (centre, then the pairs). */
#define ROW2_BLOCK(T, V, NV)                                                                   \
    for (; x0 + NV * L <= W; x0 += NV * L) {                                                  \
        V acc0[NV], acc1[NV], curA[NV], prevB[NV];                                            \
        const V kc = (V){0} + k[r];                                                           \
        for (int v = 0; v < NV; ++v) {                                                        \
            acc0[v] = kc * LDV(V, rows[r] + x0 + v * L);                                      \
            acc1[v] = kc * LDV(V, rows[r + 1] + x0 + v * L);                                  \
            curA[v] = LDV(V, rows[0] + x0 + v * L);                                           \
            prevB[v] = LDV(V, rows[n] + x0 + v * L);                                          \
        }                                                                                     \
        for (int64_t t = 0; t < r; ++t) {                                                     \
            const V kt = (V){0} + k[t];                                                       \
            const T *na = rows[t + 1] + x0, *cb = rows[n - 1 - t] + x0;                       \
            for (int v = 0; v < NV; ++v) {                                                    \
                const V nextA = LDV(V, na + v * L), curB = LDV(V, cb + v * L);                \
                acc0[v] += kt * (curA[v] + curB);                                             \
                acc1[v] += kt * (nextA + prevB[v]);                                           \
                curA[v] = nextA;                                                              \
                prevB[v] = curB;                                                              \
            }                                                                                 \
        }                                                                                     \
        for (int v = 0; v < NV; ++v) {                                                        \
            *(V *)(o0 + x0 + v * L) = acc0[v];                                                \
            *(V *)(o1 + x0 + v * L) = acc1[v];                                                \
        }                                                                                     \
    }

#define ROW2_KERNEL(T, V, NAME)                                                                \
    static inline __attribute__((always_inline)) void NAME(T *restrict o0, T *restrict o1,    \
                                                           const T *const *rows, const T *k,  \
                                                           int64_t n, int64_t W) {            \
        enum { L = (int)(sizeof(V) / sizeof(T)) };                                             \
        const int64_t r = n / 2;                                                              \
        int64_t x0 = 0;                                                                       \
        ROW2_BLOCK(T, V, 2)                                                                   \
        ROW2_BLOCK(T, V, 1)                                                                   \
        for (int64_t x = x0; x < W; ++x) {                                                    \
            T a0 = k[r] * rows[r][x], a1 = k[r] * rows[r + 1][x];                             \
            for (int64_t t = 0; t < r; ++t) {                                                 \
                a0 += k[t] * (rows[t][x] + rows[n - 1 - t][x]);                               \
                a1 += k[t] * (rows[t + 1][x] + rows[n - t][x]);                               \
            }                                                                                 \
            o0[x] = a0;                                                                       \
            o1[x] = a1;                                                                       \
        }                                                                                     \
    }

ROW2_KERNEL(float, vf_t, row2_f32)
ROW2_KERNEL(double, vd_t, row2_f64)

#define SEP_BODY(T, ROWFN, ROW2FN)                                                                     \
    const int64_t H = j->H, W = j->W, C = j->C;                                               \
    const int64_t Rx = j->Rx, Ry = j->Ry;                                                     \
    T *rowbuf = (T *)malloc(sizeof(T) * (size_t)(W + 2 * Rx + 8));                            \
    T *tmp = (T *)malloc(sizeof(T) * (size_t)(H * W));                                        \
    T *crow = (T *)malloc(sizeof(T) * (size_t)W);                                             \
    T *orow = (T *)malloc(sizeof(T) * (size_t)(W + 8));                                       \
    T *orow2 = (T *)malloc(sizeof(T) * (size_t)(W + 8));                                      \
    const T **rows = (const T **)malloc(sizeof(T *) * (size_t)(2 * (Rx > Ry ? Rx : Ry) + 2));  \
    if (!rowbuf || !tmp || !crow || !rows || !orow || !orow2) {                               \
        free(rowbuf); free(tmp); free(crow); free((void *)rows); free(orow); free(orow2);     \
        j->status = 1; return;                                                                \
    }                                                                                         \
    const T cval = (T)j->cval;                                                                \
    for (int64_t p = bk_next(j); p < j->p1; p = bk_next(j)) {                                 \
        const int64_t b = p / C;                                                              \
        const int64_t rx = j->r1[b], ry = j->r2[b];                                           \
        const T *kx = (const T *)j->k1 + b * j->K1 + (j->K1 / 2 - rx);                        \
        const T *ky = (const T *)j->k2 + b * j->K2 + (j->K2 / 2 - ry);                        \
        const char *src = (const char *)j->in + p * H * W * (j->in_u8 ? 1 : (int64_t)sizeof(T)); \
        char *dst = (char *)j->out + p * H * W * (j->out_kind >= OUT_U8_RINT ? 1 : (int64_t)sizeof(T)); \
        const int64_t nx = 2 * rx + 1, ny = 2 * ry + 1;                                       \
        int symx = 1, symy = 1;                                                               \
        for (int64_t t = 0; t < rx; ++t) symx &= kx[t] == kx[nx - 1 - t];                     \
        for (int64_t t = 0; t < ry; ++t) symy &= ky[t] == ky[ny - 1 - t];                     \
        T ksum = 0;                                                                           \
        for (int64_t t = 0; t < nx; ++t) ksum += kx[t];                                       \
        for (int64_t x = 0; x < W; ++x) crow[x] = cval * ksum;                                \
        const int64_t *cm = j->colmap + (Rx - rx);                                            \
        for (int64_t t = 0; t < nx; ++t) rows[t] = rowbuf + t;                                \
        for (int64_t y = 0; y < H; ++y) { /* horizontal pass into tmp */                      \
            /* uint8 rows are converted straight into the padded row buffer, float rows copied */ \
            const T *s = j->in_u8 ? bk_u8_row_##T((const uint8_t *)src + y * W, rowbuf + rx, W)   \
                                  : (const T *)src + y * W;                                   \
            if (!j->in_u8) memcpy(rowbuf + rx, s, sizeof(T) * (size_t)W);                     \
            for (int64_t q = 0; q < rx; ++q) rowbuf[q] = cm[q] < 0 ? cval : s[cm[q]];          \
            for (int64_t q = rx + W; q < W + 2 * rx; ++q) rowbuf[q] = cm[q] < 0 ? cval : s[cm[q]]; \
            ROWFN(tmp + y * W, rows, kx, nx, symx, W);                                        \
        }                                                                                     \
        int64_t y = 0;                                                                        \
        if (symy && ny > 1) /* symmetric: two output rows per step, sharing their loads */    \
            for (; y + 2 <= H; y += 2) {                                                      \
                const int64_t *rm = j->rowmap + (Ry - ry) + y;                                \
                for (int64_t t = 0; t <= ny; ++t) rows[t] = rm[t] < 0 ? crow : tmp + rm[t] * W; \
                if (j->out_kind == OUT_PLAIN) {                                               \
                    ROW2FN((T *)dst + y * W, (T *)dst + (y + 1) * W, rows, ky, ny, W);        \
                } else {                                                                      \
                    ROW2FN(orow, orow2, rows, ky, ny, W);                                     \
                    WRITE_ROW(T, j, dst, y, W, orow);                                         \
                    WRITE_ROW(T, j, dst, y + 1, W, orow2);                                    \
                }                                                                             \
            }                                                                                 \
        for (; y < H; ++y) { /* vertical pass from tmp into dst */                            \
            const int64_t *rm = j->rowmap + (Ry - ry) + y;                                    \
            for (int64_t t = 0; t < ny; ++t) rows[t] = rm[t] < 0 ? crow : tmp + rm[t] * W;    \
            if (j->out_kind == OUT_PLAIN) {                                                   \
                ROWFN((T *)dst + y * W, rows, ky, ny, symy, W);                               \
            } else {                                                                          \
                ROWFN(orow, rows, ky, ny, symy, W);                                           \
                WRITE_ROW(T, j, dst, y, W, orow);                                             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    free(rowbuf); free(tmp); free(crow); free((void *)rows); free(orow); free(orow2);

static void sep_f32_base(job_t *j) { SEP_BODY(float, row_f32, row2_f32) }
#if BK_X86
BK_AVX2 static void sep_f32_avx2(job_t *j) { SEP_BODY(float, row_f32, row2_f32) }
#endif
static void sep_f64_base(job_t *j) { SEP_BODY(double, row_f64, row2_f64) }
#if BK_X86
BK_AVX2 static void sep_f64_avx2(job_t *j) { SEP_BODY(double, row_f64, row2_f64) }
#endif

/* ---------------------------------------------------------------------------- direct 2-D */
#define D2_BODY(T, ROWFN)                                                                      \
    const int64_t H = j->H, W = j->W, C = j->C;                                               \
    const int64_t Rx = j->Rx, Ry = j->Ry, Kh = j->K1, Kw = j->K2;                              \
    const int64_t Wp = W + 2 * Rx;                                                            \
    T *pad = (T *)malloc(sizeof(T) * (size_t)((H + 2 * Ry) * Wp + 8));                         \
    int64_t *toff = (int64_t *)malloc(sizeof(int64_t) * (size_t)(Kh * Kw));                    \
    T *tval = (T *)malloc(sizeof(T) * (size_t)(Kh * Kw));                                     \
    const T **rows = (const T **)malloc(sizeof(T *) * (size_t)(Kh * Kw));                      \
    T *orow = (T *)malloc(sizeof(T) * (size_t)(W + 8));                                       \
    if (!pad || !toff || !tval || !rows || !orow) {                                           \
        free(pad); free(toff); free(tval); free((void *)rows); free(orow);                    \
        j->status = 1; return;                                                                \
    }                                                                                         \
    const T cval = (T)j->cval;                                                                \
    int64_t last_b = -1, ntap = 0;                                                            \
    for (int64_t p = bk_next(j); p < j->p1; p = bk_next(j)) {                                 \
        const int64_t b = p / C;                                                              \
        const int64_t ry = j->r1[b], rx = j->r2[b];                                           \
        const int64_t wp = W + 2 * rx;                                                        \
        if (b != last_b) { /* list this kernel's non-zero taps */                             \
            const T *k = (const T *)j->k1 + b * Kh * Kw;                                      \
            ntap = 0;                                                                         \
            for (int64_t u = Kh / 2 - ry; u <= Kh / 2 + ry; ++u)                              \
                for (int64_t v = Kw / 2 - rx; v <= Kw / 2 + rx; ++v) {                        \
                    const T kv = k[u * Kw + v];                                               \
                    if (kv != 0) {                                                            \
                        toff[ntap] = (u - (Kh / 2 - ry)) * wp + (v - (Kw / 2 - rx));          \
                        tval[ntap++] = kv;                                                    \
                    }                                                                         \
                }                                                                             \
            last_b = b;                                                                       \
        }                                                                                     \
        const char *src = (const char *)j->in + p * H * W * (j->in_u8 ? 1 : (int64_t)sizeof(T)); \
        char *dst = (char *)j->out + p * H * W * (j->out_kind >= OUT_U8_RINT ? 1 : (int64_t)sizeof(T)); \
        if (ntap == 0) { /* an all-zero kernel: every output is 0 (then clipped / converted) */ \
            memset(orow, 0, sizeof(T) * (size_t)W);                                           \
            for (int64_t y = 0; y < H; ++y) {                                                 \
                if (j->out_kind == OUT_PLAIN) memcpy((T *)dst + y * W, orow, sizeof(T) * (size_t)W); \
                else WRITE_ROW(T, j, dst, y, W, orow);                                        \
            }                                                                                 \
            continue;                                                                         \
        }                                                                                     \
        const int64_t *cm = j->colmap + (Rx - rx);                                            \
        for (int64_t yy = 0; yy < H + 2 * ry; ++yy) { /* padded copy of the plane */          \
            const int64_t sr = j->rowmap[Ry - ry + yy];                                       \
            T *prow = pad + yy * wp;                                                          \
            if (sr < 0) { for (int64_t q = 0; q < wp; ++q) prow[q] = cval; continue; }         \
            const T *s = j->in_u8 ? bk_u8_row_##T((const uint8_t *)src + sr * W, prow + rx, W)    \
                                  : (const T *)src + sr * W;                                  \
            if (!j->in_u8) memcpy(prow + rx, s, sizeof(T) * (size_t)W);                       \
            for (int64_t q = 0; q < rx; ++q) prow[q] = cm[q] < 0 ? cval : s[cm[q]];            \
            for (int64_t q = rx + W; q < wp; ++q) prow[q] = cm[q] < 0 ? cval : s[cm[q]];       \
        }                                                                                     \
        for (int64_t y = 0; y < H; ++y) {                                                     \
            const T *base = pad + y * wp;                                                     \
            for (int64_t t = 0; t < ntap; ++t) rows[t] = base + toff[t];                      \
            if (j->out_kind == OUT_PLAIN) {                                                   \
                ROWFN((T *)dst + y * W, rows, tval, ntap, 0, W);                              \
            } else {                                                                          \
                ROWFN(orow, rows, tval, ntap, 0, W);                                          \
                WRITE_ROW(T, j, dst, y, W, orow);                                             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    free(pad); free(toff); free(tval); free((void *)rows); free(orow);

static void d2_f32_base(job_t *j) { D2_BODY(float, row_f32) }
#if BK_X86
BK_AVX2 static void d2_f32_avx2(job_t *j) { D2_BODY(float, row_f32) }
#endif
static void d2_f64_base(job_t *j) { D2_BODY(double, row_f64) }
#if BK_X86
BK_AVX2 static void d2_f64_avx2(job_t *j) { D2_BODY(double, row_f64) }
#endif

/* ----------------------------------------------------------------- fused blur-effect sums */
/* Crete et al. (2007) blur effect, the scikit-image definition, fused per image: grey (weights
 * wc), then for each axis a: the Sobel response along a of the image smoothed across a (sharp) and
 * of its h-box re-blur along a (blur, one composed filter), both absolute, summed over the kept
 * interior [2, n-1): out[b] = {sum sharp_0, sum min(sharp_0, blur_0), sum sharp_1, sum min(...)}.
 * Borders use the index maps (scipy "reflect"); no full-size intermediate besides three planes. */

#define BFX_BODY                                                                               \
    const int64_t H = j->H, W = j->W, C = j->C, R = j->K1, nb = j->K2;                         \
    const float *xin = (const float *)j->in, *bo = (const float *)j->a1;                       \
    const double *wc = (const double *)j->a2;                                                  \
    double *dout = (double *)j->out;                                                           \
    float *g = (float *)malloc(sizeof(float) * (size_t)(H * W));                               \
    float *sx = (float *)malloc(sizeof(float) * (size_t)(H * W));                              \
    float *sy = (float *)malloc(sizeof(float) * (size_t)(H * W));                              \
    float *row = (float *)malloc(sizeof(float) * (size_t)(W + 2 * R + 8));                     \
    float *acc = (float *)malloc(sizeof(float) * (size_t)(W + 8));                             \
    float *acc2 = (float *)malloc(sizeof(float) * (size_t)(W + 8));                            \
    if (!g || !sx || !sy || !row || !acc || !acc2) {                                           \
        free(g); free(sx); free(sy); free(row); free(acc); free(acc2); j->status = 1; return;   \
    }                                                                                          \
    const float *sm = (const float *)j->k1, *ed = (const float *)j->k2;                        \
    const int64_t *rm = j->rowmap + R, *cm = j->colmap + R; /* rm[i] valid for i in [-R, H+R) */ \
    for (int64_t b = bk_next(j); b < j->p1; b = bk_next(j)) {                                  \
        const float *xb = xin + b * C * H * W;                                                \
        for (int64_t i = 0; i < H * W; ++i) g[i] = (float)wc[0] * xb[i];                    \
        for (int64_t c = 1; c < C; ++c) {                                                      \
            const float wcc = (float)wc[c], *xc = xb + c * H * W;                           \
            for (int64_t i = 0; i < H * W; ++i) g[i] += wcc * xc[i];                            \
        }                                                                                      \
        for (int64_t y = 0; y < H; ++y) { /* sx: smoothed along x; sy: along y */              \
            const float *gr = g + y * W;                                                       \
            for (int64_t x = 0; x < W; ++x)                                                    \
                sx[y * W + x] = sm[0] * gr[cm[x - 1]] + sm[1] * gr[x] + sm[2] * gr[cm[x + 1]];  \
            const float *up = g + rm[y - 1] * W, *dn = g + rm[y + 1] * W;                      \
            for (int64_t x = 0; x < W; ++x) sy[y * W + x] = sm[0] * up[x] + sm[1] * gr[x] + sm[2] * dn[x]; \
        }                                                                                      \
        double m1a = 0, ka = 0, m1b = 0, kb = 0;                                               \
        for (int64_t y = 2; y < H - 1; ++y) {                                                  \
            /* axis 0: derivative along y of sx */                                            \
            const float *a0 = sx + rm[y - 1] * W, *a2 = sx + rm[y + 1] * W;                     \
            for (int64_t x = 0; x < W; ++x) acc[x] = ed[0] * a0[x] + ed[2] * a2[x];             \
            for (int64_t x = 0; x < W; ++x) acc2[x] = 0.f;                                     \
            for (int64_t t = 0; t < nb; ++t) {                                                 \
                const float kt = bo[t];                                                        \
                if (kt == 0.f) continue;                                                       \
                const float *r = sx + rm[y + t - nb / 2] * W;                                  \
                for (int64_t x = 0; x < W; ++x) acc2[x] += kt * r[x];                          \
            }                                                                                  \
            float s1 = 0.f, s2 = 0.f;                                                          \
            for (int64_t x = 2; x < W - 1; ++x) {                                              \
                const float a = fabsf(acc[x]), q = fabsf(acc2[x]);                             \
                s1 += a; s2 += a < q ? a : q;                                                  \
            }                                                                                  \
            m1a += s1; ka += s2;                                                               \
            /* axis 1: derivative along x of sy */                                            \
            const float *sr = sy + y * W;                                                      \
            for (int64_t q = 0; q < W + 2 * R; ++q) row[q] = sr[cm[q - R]];                     \
            for (int64_t x = 0; x < W; ++x) acc[x] = ed[0] * row[x + R - 1] + ed[2] * row[x + R + 1]; \
            for (int64_t x = 0; x < W; ++x) acc2[x] = 0.f;                                     \
            for (int64_t t = 0; t < nb; ++t) {                                                 \
                const float kt = bo[t];                                                        \
                if (kt == 0.f) continue;                                                       \
                const float *r = row + R + t - nb / 2;                                         \
                for (int64_t x = 0; x < W; ++x) acc2[x] += kt * r[x];                          \
            }                                                                                  \
            s1 = 0.f; s2 = 0.f;                                                                \
            for (int64_t x = 2; x < W - 1; ++x) {                                              \
                const float a = fabsf(acc[x]), q = fabsf(acc2[x]);                             \
                s1 += a; s2 += a < q ? a : q;                                                  \
            }                                                                                  \
            m1b += s1; kb += s2;                                                               \
        }                                                                                      \
        dout[4 * b + 0] = m1a; dout[4 * b + 1] = ka;                                           \
        dout[4 * b + 2] = m1b; dout[4 * b + 3] = kb;                                           \
    }                                                                                          \
    free(g); free(sx); free(sy); free(row); free(acc); free(acc2);

static void bfx_base(job_t *j) { BFX_BODY }
#if BK_X86
BK_AVX2 static void bfx_avx2(job_t *j) { BFX_BODY }
#endif

/* ------------------------------------------------------------------------------- threads */
/* Threads. When torch's own OpenMP runtime is known (bk_set_openmp, from Python), the work runs on
 * its thread team: after any parallel torch op, torch's OpenMP workers spin for milliseconds
 * waiting for more work, and fresh POSIX threads would have to share the cores with them (a
 * motion blur of 64 images measured 14 ms plain, 24 ms right after a torch reduction). Otherwise
 * (other platforms, other runtimes, one thread) POSIX threads or the calling thread do it. */
typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
static gomp_parallel_fn bk_gomp_parallel = NULL;
static pid_t bk_gomp_pid = 0; /* a forked child must not use its parent's (dead) OpenMP team */

int bk_set_openmp(void *gomp_parallel) {
    bk_gomp_parallel = (gomp_parallel_fn)gomp_parallel;
    bk_gomp_pid = getpid();
    return bk_gomp_parallel != NULL;
}

/* One call of fn(arg_i) per thread i of an OpenMP team: each team member takes the next slot. */
typedef struct { void *(*fn)(void *); char *args; size_t stride; int n; int slot; } team_t;

static void team_member(void *data) {
    team_t *t = (team_t *)data;
    for (;;) { /* a team smaller than asked for still runs every slot */
        const int i = __atomic_fetch_add(&t->slot, 1, __ATOMIC_RELAXED);
        if (i >= t->n) break;
        t->fn(t->args + (size_t)i * t->stride);
    }
}

/* Run fn(args + i * stride) for i in [0, n) concurrently: on torch's OpenMP team when known, else
 * on POSIX threads with the caller's thread taking slot 0. */
static void run_team(void *(*fn)(void *), void *args, size_t stride, int n) {
    if (n < 1) return;
    if (n > 1 && bk_gomp_parallel != NULL && getpid() == bk_gomp_pid) {
        team_t t = {fn, (char *)args, stride, n, 0};
        bk_gomp_parallel(team_member, &t, (unsigned)n, 0);
        return;
    }
    pthread_t th[256];
    int started[256];
    for (int i = 1; i < n; ++i) started[i] = pthread_create(&th[i], NULL, fn, (char *)args + (size_t)i * stride) == 0;
    fn(args); /* slot 0 on the calling thread; a thread that could not start leaves its share to the others */
    for (int i = 1; i < n; ++i)
        if (started[i]) pthread_join(th[i], NULL);
}

typedef void (*work_fn)(job_t *);
typedef struct { work_fn fn; job_t *job; } task_t;

static void *run_task(void *arg) {
    task_t *t = (task_t *)arg;
    t->fn(t->job);
    return NULL;
}

static int run_parallel(work_fn fn, job_t *proto, int64_t planes, int nthreads) {
    if (planes <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > planes) nthreads = (int)planes;
    if (nthreads > 256) nthreads = 256;
    job_t jobs[256];
    task_t tasks[256];
    int status = 0;
    int64_t next = 0; /* planes [0, planes) are handed out one at a time (bk_next) */
    for (int i = 0; i < nthreads; ++i) {
        jobs[i] = *proto;
        jobs[i].p0 = 0;
        jobs[i].p1 = planes;
        jobs[i].next = &next;
        jobs[i].status = 0;
        tasks[i].fn = fn;
        tasks[i].job = &jobs[i];
    }
    run_team(run_task, tasks, sizeof(task_t), nthreads);
    for (int i = 0; i < nthreads; ++i) status |= jobs[i].status;
    return status;
}

/* The generic runner of the other translation units (bk_common.h): fn(ctx, i0, i1) over [0, n) in
 * chunks of about n / (8 nthreads) items that the threads take from a shared counter (balanced when
 * one core is slower or busy). */
typedef struct { bk_chunk_fn fn; void *ctx; int64_t n, step; int64_t *next; int status; } chunk_t;

static void *run_chunk(void *arg) {
    chunk_t *c = (chunk_t *)arg;
    for (;;) {
        const int64_t i0 = __atomic_fetch_add(c->next, c->step, __ATOMIC_RELAXED);
        if (i0 >= c->n) break;
        const int64_t i1 = i0 + c->step < c->n ? i0 + c->step : c->n;
        c->status |= c->fn(c->ctx, i0, i1);
    }
    return NULL;
}

int bk_run_chunks(bk_chunk_fn fn, void *ctx, int64_t n, int nthreads) {
    if (n <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > n) nthreads = (int)n;
    if (nthreads > 256) nthreads = 256;
    int64_t next = 0, step = n / (8 * (int64_t)nthreads);
    if (step < 1) step = 1;
    chunk_t ch[256];
    for (int i = 0; i < nthreads; ++i) ch[i] = (chunk_t){fn, ctx, n, step, &next, 0};
    run_team(run_chunk, ch, sizeof(chunk_t), nthreads);
    int status = 0;
    for (int i = 0; i < nthreads; ++i) status |= ch[i].status;
    return status;
}

/* ------------------------------------------------------------------------- exported (C ABI) */
int bk_sep(int is_double, const void *in, void *out, int64_t B, int64_t C, int64_t H, int64_t W,
           const void *kx, int64_t Kx, const int64_t *rx, const void *ky, int64_t Ky,
           const int64_t *ry, const int64_t *rowmap, const int64_t *colmap, int64_t Ry,
           int64_t Rx, double cval, int nthreads, int in_u8, int out_kind, double lo, double hi) {
    job_t j = {in, out, C, H, W, kx, ky, Kx, Ky, rx, ry, rowmap, colmap, Ry, Rx, cval, 0, 0, 0};
    j.in_u8 = in_u8; j.out_kind = out_kind; j.lo = lo; j.hi = hi;
    return run_parallel(is_double ? PICK(sep_f64) : PICK(sep_f32), &j, B * C, nthreads);
}

int bk_conv2d(int is_double, const void *in, void *out, int64_t B, int64_t C, int64_t H, int64_t W,
              const void *k, int64_t Kh, int64_t Kw, const int64_t *ry, const int64_t *rx,
              const int64_t *rowmap, const int64_t *colmap, int64_t Ry, int64_t Rx, double cval,
              int nthreads, int in_u8, int out_kind, double lo, double hi) {
    job_t j = {in, out, C, H, W, k, NULL, Kh, Kw, ry, rx, rowmap, colmap, Ry, Rx, cval, 0, 0, 0};
    j.in_u8 = in_u8; j.out_kind = out_kind; j.lo = lo; j.hi = hi;
    return run_parallel(is_double ? PICK(d2_f64) : PICK(d2_f32), &j, B * C, nthreads);
}

int bk_blur_effect_sums(const float *x, double *out, int64_t B, int64_t C, int64_t H, int64_t W,
                        const double *wc, const float *smooth, const float *edge, const float *both,
                        int64_t nb, const int64_t *rowmap, const int64_t *colmap, int64_t R, int nthreads) {
    job_t j = {x, out, C, H, W, smooth, edge, R, nb, NULL, NULL, rowmap, colmap, R, R, 0.0, 0, 0, 0, both, wc};
    return run_parallel(PICK(bfx), &j, B, nthreads);
}

int bk_version(void) { return 2; }

/* Ask Linux for transparent huge pages on a fresh, untouched buffer (e.g. a new output tensor):
 * its first touch then faults 2 MiB pages instead of 4 KiB ones, which on many machines costs
 * more than the blur itself. A hint only: returns 0 when it did nothing. */
int bk_hugepage_hint(void *p, int64_t nbytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t e = ((uintptr_t)p + (uintptr_t)nbytes) & ~(huge - 1);
    if (nbytes < (int64_t)(4 * huge) || e <= a) return 0;
    return madvise((void *)a, (size_t)(e - a), MADV_HUGEPAGE) == 0;
#else
    (void)p; (void)nbytes;
    return 0;
#endif
}

int bk_simd(void) { return have_avx2() ? 2 : 0; }

/* A module object so that `import blurkit._cconv` works; the functions are called via ctypes. */
static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_cconv",
                                    "blurkit compiled CPU convolution kernels (ctypes ABI)", -1,
                                    NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__cconv(void) { return PyModule_Create(&moddef); }
