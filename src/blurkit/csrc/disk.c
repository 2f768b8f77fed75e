/*
 * ImageNet-C defocus blur, exactly and in O(radius) work per pixel.
 *
 * The reference kernel of make_imagenet_c.py is K = s * A D A^T: a binary disk D (count 1/s) on
 * a (2 half + 1)^2 grid, smoothed by a (2h + 1)-tap Gaussian g along both axes with reflect-101 at
 * the GRID border (the N x N matrix A). Writing A (embedded in the grid grown by h on each side)
 * as B + Delta, where B is plain correlation with g (no grid border) and Delta is non-zero only in
 * the few rows next to the grid border, gives (exactly, when Delta D Delta^T = 0, checked in Python)
 *
 *     K = s * G * D  +  g_h * F  +  g_v * F^T,        F = s * Delta D,
 *
 * G = g (x) g. Every row of F is a sum of centred boxes (rows of D are runs of ones), so the whole
 * filter is, on the reflect-101 padded plane x:
 *
 *     z  = D (.) x        column-run sums: running column sums S_v (half-height v) for every
 *                         distinct half-height of the disk's columns, z = sum_dx S_hh(dx)[. + dx]
 *     f  = F (.) x        sum over terms (i, b, c): c * HBox_b(x)[row + i]   (horizontal boxes)
 *     f' = F^T (.) x      sum over the same terms: c * S_b[column + i]      (vertical boxes)
 *     y  = g_h (.) (s g_v (.) z + f) + g_v (.) f'
 *
 * all computed on the padded plane itself, so the border needs no special care. Up to three planes
 * at a time, each padded, are laid side by side as one wide plane (224 px images at radius 10: rows
 * of 3 x 248 columns instead of 248), so that the many short per-row passes cost less per pixel;
 * the columns between two planes compute values nobody reads. Everything runs in cache on ring
 * buffers of rows; the input is read once and the output written once,
 * clipped to [0, 1] (float) or as uint8 floor(clip(y, 0, 255)) for uint8 input (values 0..255; the
 * sums of uint8 values are integers below 2^24, hence exact in float32).
 *
 * Threads: one worker per thread (bk_run_chunks), each taking the next group of planes from a shared
 * atomic counter, so a thread slowed by other load does not hold up the call; AVX2/FMA variants are picked
 * at run time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bk_common.h"

typedef float dk_vf_t __attribute__((vector_size(32), aligned(4)));
typedef double dk_vd_t __attribute__((vector_size(32), aligned(8)));
typedef uint16_t dk_vh_t __attribute__((vector_size(32), aligned(2)));
#define DK_LD(V, p) (*(const V *)(p))
#define DK_ALIGN 64

/* 64-byte aligned scratch (rows then start on cache lines); free with free(). */
static void *dk_alloc(size_t nbytes) {
    return aligned_alloc(DK_ALIGN, (nbytes + 2 * DK_ALIGN - 1) / DK_ALIGN * DK_ALIGN);
}

/* Row stride for n elements of size es (plus one vector of slack): whole cache lines, an odd
 * number of them so that rows of one buffer do not all map to the same 4 KiB offsets. */
static inline int64_t dk_stride(int64_t n, int64_t es) {
    const int64_t per = DK_ALIGN / es;
    int64_t lines = (n + 32 / es + per - 1) / per;
    return (lines | 1) * per;
}
#define DK_ST(V, p, v) (*(V *)(p) = (v))

/* At most this many planes are filtered side by side as one wide plane (see DK_BODY): 3, the
 * channels of an RGB image. */
#define DK_G 3

typedef struct {
    const void *in;
    void *out;
    int64_t H, W;
    int64_t r, h, pad;          /* disk half-extent, Gaussian half-width, padding of the plane */
    const int64_t *hh;          /* (2r + 1): half-height of the disk column dx = -r .. r */
    const double *g;            /* (2h + 1): Gaussian taps */
    double s;                   /* 1 / count (times 255 for uint8 output is not needed: same units) */
    int64_t nterm;              /* correction terms (offset i, half-width b, coefficient c) */
    const int64_t *ti, *tb;
    const double *tc;
    const int64_t *rowmap;      /* (H + 2 pad): source row of padded row j */
    const int64_t *colmap;      /* (W + 2 pad): source column of padded column q */
    int64_t planes;             /* number of planes */
    int64_t *next;              /* next plane group to take (shared by the threads, atomic) */
    int64_t group;              /* planes per group, 1 .. DK_G (filtered side by side) */
} dk_job_t;

/* o[x] = sum_t p[t][x] (np >= 1), blocks of 8 / 4 / 1 vectors held in registers. */
#define DK_SUM_BLOCK(T, V, NV)                                                                     \
    for (; x + NV * L <= n; x += NV * L) {                                                        \
        V a[NV];                                                                                  \
        for (int v = 0; v < NV; ++v) a[v] = DK_LD(V, p[0] + x + v * L);                            \
        for (int64_t t = 1; t < np; ++t) {                                                        \
            const T *q = p[t] + x;                                                                \
            for (int v = 0; v < NV; ++v) a[v] += DK_LD(V, q + v * L);                              \
        }                                                                                         \
        for (int v = 0; v < NV; ++v) DK_ST(V, o + x + v * L, a[v]);                                \
    }
#define DK_SUM_FN(NAME, T, V)                                                                      \
    static inline __attribute__((always_inline)) void NAME(T *restrict o, const T *const *p,     \
                                                           int64_t np, int64_t n) {              \
        enum { L = (int)(sizeof(V) / sizeof(T)) };                                                \
        int64_t x = 0;                                                                            \
        DK_SUM_BLOCK(T, V, 8)                                                                     \
        DK_SUM_BLOCK(T, V, 4)                                                                     \
        DK_SUM_BLOCK(T, V, 1)                                                                     \
        for (; x < n; ++x) {                                                                      \
            T a = p[0][x];                                                                        \
            for (int64_t t = 1; t < np; ++t) a += p[t][x];                                        \
            o[x] = a;                                                                             \
        }                                                                                         \
    }

/* o[x] = sum_t w[t] p[t][x] (np >= 1). */
#define DK_WSUM_BLOCK(T, V, NV)                                                                    \
    for (; x + NV * L <= n; x += NV * L) {                                                        \
        V a[NV];                                                                                  \
        const V w0 = w[0] - (V){0};                                                               \
        for (int v = 0; v < NV; ++v) a[v] = w0 * DK_LD(V, p[0] + x + v * L);                       \
        for (int64_t t = 1; t < np; ++t) {                                                        \
            const T *q = p[t] + x;                                                                \
            const V wt = w[t] - (V){0};                                                           \
            for (int v = 0; v < NV; ++v) a[v] += wt * DK_LD(V, q + v * L);                         \
        }                                                                                         \
        for (int v = 0; v < NV; ++v) DK_ST(V, o + x + v * L, a[v]);                                \
    }
#define DK_WSUM_FN(NAME, T, V)                                                                     \
    static inline __attribute__((always_inline)) void NAME(T *restrict o, const T *const *p,     \
                                                           const T *w, int64_t np, int64_t n) {  \
        enum { L = (int)(sizeof(V) / sizeof(T)) };                                                \
        int64_t x = 0;                                                                            \
        DK_WSUM_BLOCK(T, V, 8)                                                                    \
        DK_WSUM_BLOCK(T, V, 4)                                                                    \
        DK_WSUM_BLOCK(T, V, 1)                                                                    \
        for (; x < n; ++x) {                                                                      \
            T a = w[0] * p[0][x];                                                                 \
            for (int64_t t = 1; t < np; ++t) a += w[t] * p[t][x];                                 \
            o[x] = a;                                                                             \
        }                                                                                         \
    }

DK_SUM_FN(dk_sum_f32, float, dk_vf_t)
DK_SUM_FN(dk_sum_u16, uint16_t, dk_vh_t)
DK_SUM_FN(dk_sum_f64, double, dk_vd_t)
DK_WSUM_FN(dk_wsum_f32, float, dk_vf_t)
DK_WSUM_FN(dk_wsum_f64, double, dk_vd_t)

/* Signed integer sums for the uint8 path: o = sum_{t < npos} p[t] - sum_{npos <= t < np} p[t]
 * (modulo 2^16; exact as an int16 when the true sum lies in [-32768, 32767], which plan grouping
 * guarantees), and o32[x] (+)= c * (float)(int16_t)s[x]. */
static inline __attribute__((always_inline)) void dk_pmsum_u16(uint16_t *restrict o, const uint16_t *const *p,
                                                               int64_t npos, int64_t np, int64_t n) {
    enum { L = 16 };
    for (int64_t x = 0; x + 4 * L <= n; x += 4 * L) {
        dk_vh_t a[4] = {{0}, {0}, {0}, {0}};
        for (int64_t t = 0; t < npos; ++t)
            for (int v = 0; v < 4; ++v) a[v] += DK_LD(dk_vh_t, p[t] + x + v * L);
        for (int64_t t = npos; t < np; ++t)
            for (int v = 0; v < 4; ++v) a[v] -= DK_LD(dk_vh_t, p[t] + x + v * L);
        for (int v = 0; v < 4; ++v) DK_ST(dk_vh_t, o + x + v * L, a[v]);
    }
    for (int64_t x = n / (4 * L) * (4 * L); x < n; x += L) {
        dk_vh_t a = {0};
        for (int64_t t = 0; t < npos; ++t) a += DK_LD(dk_vh_t, p[t] + x);
        for (int64_t t = npos; t < np; ++t) a -= DK_LD(dk_vh_t, p[t] + x);
        DK_ST(dk_vh_t, o + x, a);
    }
}

/* uint8 output row: dst[x] = floor(clip(sum_t w[t] p[t][x] + 2^-10, 0, 255)) for x < n, the
 * weighted sum and the store in one pass: blocks of 4 vectors, then single vectors up to n rounded
 * up to a whole vector (rows are readable that far), the last partial one stored element by element. */
#define DK_WSUM_U8_BLOCK(NV)                                                                       \
    for (; x + NV * L <= n8; x += NV * L) {                                                       \
        dk_vf_t a[NV];                                                                            \
        for (int v = 0; v < NV; ++v) a[v] = (w[0] - zero) * DK_LD(dk_vf_t, p[0] + x + v * L);      \
        for (int64_t t = 1; t < np; ++t) {                                                        \
            const dk_vf_t wt = w[t] - zero;                                                       \
            for (int v = 0; v < NV; ++v) a[v] += wt * DK_LD(dk_vf_t, p[t] + x + v * L);            \
        }                                                                                         \
        uint8_t b[NV * L];                                                                        \
        for (int v = 0; v < NV; ++v) { /* clip: keep c where c > 0 (else 0), c < 255 (else 255) */ \
            dk_vf_t c = a[v] + margin;                                                            \
            vi_t m = c > zero;                                                                    \
            c = (dk_vf_t)((vi_t)c & m);                                                           \
            m = c < top;                                                                          \
            c = (dk_vf_t)(((vi_t)c & m) | ((vi_t)top & ~m));                                      \
            const vi_t iv = __builtin_convertvector(c, vi_t);                                     \
            for (int e = 0; e < L; ++e) b[v * L + e] = (uint8_t)iv[e];                            \
        }                                                                                         \
        if (x + NV * L <= n) memcpy(dst + x, b, NV * L);                                          \
        else for (int64_t v = 0; v < n - x; ++v) dst[x + v] = b[v];                               \
    }
static inline __attribute__((always_inline)) void dk_wsum_u8(uint8_t *restrict dst, const float *const *p,
                                                             const float *w, int64_t np, int64_t n) {
    enum { L = 8 };
    typedef int32_t vi_t __attribute__((vector_size(32)));
    const dk_vf_t zero = {0}, top = zero + 255.0f, margin = zero + 0x1p-10f;
    const int64_t n8 = (n + L - 1) / L * L;
    int64_t x = 0;
    DK_WSUM_U8_BLOCK(4)
    DK_WSUM_U8_BLOCK(1)
}
static inline __attribute__((always_inline)) void dk_cvt_acc(float *restrict o, const uint16_t *restrict s,
                                                             float c, int first, int64_t n) {
    if (first)
        for (int64_t x = 0; x < n; ++x) o[x] = c * (float)(int16_t)s[x];
    else
        for (int64_t x = 0; x < n; ++x) o[x] += c * (float)(int16_t)s[x];
}

/* Padded row j of the plane as T: middle converted/copied, borders through colmap. */
#define DK_LOAD_ROW(IT, T, dst, srow, cm, W, pad, Wp)                                              \
    do {                                                                                          \
        for (int64_t q_ = 0; q_ < (pad); ++q_) (dst)[q_] = (T)(srow)[(cm)[q_]];                   \
        for (int64_t c_ = 0; c_ < (W); ++c_) (dst)[(pad) + c_] = (T)(srow)[c_];                   \
        for (int64_t q_ = (pad) + (W); q_ < (Wp); ++q_) (dst)[q_] = (T)(srow)[(cm)[q_]];          \
    } while (0)

/* Store one output row: float outputs clip to [0, 1]; uint8 outputs floor(clip(v, 0, 255) + 2^-10)
 * (the margin keeps a flat region of value c at c: s = 1/count is rounded, like the engine's
 * OUT_U8_FLOOR mode). */
#define DK_STORE_f(T, dst, o, W, sc)                                                               \
    for (int64_t x_ = 0; x_ < (W); ++x_) {                                                        \
        const T v_ = (sc) * (o)[x_];                                                              \
        (dst)[x_] = v_ < (T)0 ? (T)0 : (v_ > (T)1 ? (T)1 : v_);                                    \
    }
#define DK_STORE_u(T, dst, o, W, sc)                                                               \
    for (int64_t x_ = 0; x_ < (W); ++x_) {                                                        \
        T v_ = (sc) * (o)[x_] + (T)0x1p-10;                                                       \
        v_ = v_ < (T)0 ? (T)0 : (v_ > (T)255 ? (T)255 : v_);                                       \
        (dst)[x_] = (uint8_t)(int32_t)v_;                                                         \
    }

/* Horizontal box m of padded row jr inside DK_BODY (ring of T rows; without conversion the box of
 * half-width 0 is the padded row itself). */
#define HBROW(jr, m, T, CONV)                                                                      \
    (!CONV && bval[m] == 0 ? (const T *)(P + ((jr) & MM) * sWpA + pad - h)                       \
                           : (const T *)(HB + ((jr) & MM) * nB * sWz + (m) * sWz))

/* One chunk of planes [i0, i1). IT: input/output element type; AT: type of the padded rows, column
 * sums and disk sums (uint16 for uint8 input: sums of uint8 taken modulo 2^16 are exact as long as
 * the true sum is below 2^16, so the disk sum is split into groups of columns that keep it there);
 * T: working type of the Gaussian and correction stages. CONV: AT differs from T. OK: f (clip to
 * [0, 1]) or u (uint8 floor(clip(v, 0, 255))). */
#define DK_BODY(IT, AT, T, SUMA, WSUMT, OK, CONV)                                                  \
    const dk_job_t *j = (const dk_job_t *)ctx;                                                    \
    const int64_t H = j->H, W0 = j->W, r = j->r, h = j->h, pad = j->pad, nt = j->nterm;           \
    /* GP planes side by side, each with its own padding, form one wide plane of W columns      \
     * (plane g's output columns start at g Wp0): wide rows spread the per-row costs */         \
    const int64_t GP = j->group, Wp0 = W0 + 2 * pad, W = GP * Wp0 - 2 * pad;                     \
    const int64_t Wp = W + 2 * pad, Wz = W + 2 * h, nz = 2 * h + 1;                              \
    const int64_t sWpA = dk_stride(Wp, sizeof(AT)), sWzA = dk_stride(Wz, sizeof(AT));             \
    const int64_t sWp = dk_stride(Wp, sizeof(T)), sWz = dk_stride(Wz, sizeof(T)), sW = dk_stride(W, sizeof(T)); \
    /* row lengths rounded up to whole vectors: the slack columns compute finite garbage, no scalar tails */ \
    const int64_t LV = 32 / (int64_t)sizeof(T), LA = 32 / (int64_t)sizeof(AT);                   \
    const int64_t nWp = (Wp + LV - 1) / LV * LV, nWz = (Wz + LV - 1) / LV * LV, nW = (W + LV - 1) / LV * LV; \
    const int64_t nWpA = (Wp + LA - 1) / LA * LA, nWzA = (Wz + LA - 1) / LA * LA;                 \
    int64_t M = 1, NZ = 1; /* ring sizes, powers of two */                                        \
    while (M < 2 * pad + 2) M *= 2;                                                               \
    while (NZ < nz) NZ *= 2;                                                                      \
    const int64_t MM = M - 1, NM = NZ - 1;                                                        \
    const int64_t nd = 2 * r + 1, off0 = pad - h - r;                                              \
    /* distinct half-heights (disk columns and correction terms) */                                \
    int64_t nS = 0, nB = 0, ng = 0;                                                               \
    int64_t *sval = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nd + nt + 1));                   \
    int64_t *dsel = (int64_t *)malloc(sizeof(int64_t) * (size_t)nd);                              \
    int64_t *tsel = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt + 1));                        \
    int64_t *bval = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt + 1));                        \
    int64_t *bsel = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt + 1));                        \
    int64_t *gend = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nd + 1)); /* disk-sum groups */  \
    const int64_t npmax = nd + 2 * nz + nt + 2 * r + 8;                                           \
    const T **pp = (const T **)malloc(sizeof(T *) * (size_t)npmax);                               \
    const AT **pa = (const AT **)malloc(sizeof(AT *) * (size_t)npmax);                            \
    T *ww = (T *)malloc(sizeof(T) * (size_t)npmax);                                               \
    const AT **Sp = (const AT **)malloc(sizeof(AT *) * (size_t)(nd + nt + 1));                    \
    /* uint8 path: correction terms grouped by |coefficient| into exact int16 sums */             \
    int64_t ngrp = 0;                                                                             \
    int64_t *gord = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt + 1)); /* terms by group */   \
    int64_t *gbeg = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt + 2));                        \
    int64_t *gpos = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt + 1)); /* plus terms */       \
    int64_t *gwt = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt + 1));                         \
    int64_t *tgrp = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt + 1));                        \
    double *gabs = (double *)malloc(sizeof(double) * (size_t)(nt + 1));                           \
    int fail = !sval || !dsel || !tsel || !bval || !bsel || !gend || !pp || !pa || !ww || !Sp     \
               || !gord || !gbeg || !gpos || !gwt || !tgrp || !gabs;                              \
    if (!fail) {                                                                                  \
        for (int64_t t = 0; t < nd + nt; ++t) {                                                   \
            const int64_t v = t < nd ? j->hh[t] : j->tb[t - nd];                                  \
            int64_t m = 0;                                                                        \
            while (m < nS && sval[m] != v) ++m;                                                   \
            if (m == nS) sval[nS++] = v;                                                          \
            if (t < nd) dsel[t] = m; else tsel[t - nd] = m;                                       \
        }                                                                                         \
        /* horizontal box half-widths, ascending (each box extends the previous one) */           \
        for (int64_t q = 0; q < nt; ++q) {                                                        \
            int64_t m = 0;                                                                        \
            while (m < nB && bval[m] != j->tb[q]) ++m;                                            \
            if (m == nB) bval[nB++] = j->tb[q];                                                   \
        }                                                                                         \
        for (int64_t a = 1; a < nB; ++a)                                                          \
            for (int64_t b = a; b > 0 && bval[b - 1] > bval[b]; --b) {                            \
                const int64_t tmp = bval[b]; bval[b] = bval[b - 1]; bval[b - 1] = tmp;            \
            }                                                                                     \
        for (int64_t q = 0; q < nt; ++q) {                                                        \
            int64_t m = 0;                                                                        \
            while (bval[m] != j->tb[q]) ++m;                                                      \
            bsel[q] = m;                                                                          \
        }                                                                                         \
        /* groups of disk columns whose uint8 sum stays below 2^16 (one group without CONV) */    \
        int64_t acc = 0;                                                                          \
        for (int64_t t = 0; t < nd; ++t) {                                                        \
            const int64_t wt = 255 * (2 * j->hh[t] + 1);                                          \
            if (CONV && t && acc + wt > 65535) { gend[ng++] = t; acc = 0; }                       \
            acc += wt;                                                                            \
        }                                                                                         \
        gend[ng++] = nd;                                                                          \
        /* a group shares one |coefficient|; its boxes weigh sum (2b + 1) <= 128, so that the    \
         * signed sum of uint8 boxes stays within +-32640 (exact in int16) */                    \
        for (int64_t q = 0; q < nt; ++q) {                                                        \
            const double c = j->tc[q] < 0 ? -j->tc[q] : j->tc[q];                                 \
            const int64_t wq = 2 * j->tb[q] + 1;                                                  \
            int64_t g = 0;                                                                        \
            while (g < ngrp && !(gabs[g] == c && gwt[g] + wq <= 128)) ++g;                        \
            if (g == ngrp) { gabs[ngrp] = c; gwt[ngrp++] = 0; }                                    \
            gwt[g] += wq; tgrp[q] = g;                                                            \
        }                                                                                         \
        int64_t no = 0;                                                                           \
        for (int64_t g = 0; g < ngrp; ++g) {                                                      \
            gbeg[g] = no;                                                                         \
            for (int64_t q = 0; q < nt; ++q) if (tgrp[q] == g && j->tc[q] > 0) gord[no++] = q;    \
            gpos[g] = no - gbeg[g];                                                               \
            for (int64_t q = 0; q < nt; ++q) if (tgrp[q] == g && !(j->tc[q] > 0)) gord[no++] = q; \
        }                                                                                         \
        gbeg[ngrp] = no;                                                                          \
    }                                                                                             \
    AT *P = fail ? NULL : (AT *)dk_alloc(sizeof(AT) * (size_t)(M * sWpA));  /* padded rows ring */ \
    AT *S = fail ? NULL : (AT *)dk_alloc(sizeof(AT) * (size_t)(nS * sWpA)); /* column sums */     \
    /* AT scratch: (CONV) a ring of M x nB box rows, then the z-group row, then the int16 group row */ \
    const int64_t nHA = CONV ? M * nB : nB;                                                       \
    AT *HA = fail ? NULL : (AT *)dk_alloc(sizeof(AT) * (size_t)((nHA + 1) * sWzA + 2 * sWpA));    \
    T *SF = fail ? NULL : (T *)dk_alloc(sizeof(T) * (size_t)((nS + 1) * sWp)); /* T copies of S */ \
    const int64_t nHB = CONV ? 1 : M * (nB ? nB : 1);                                             \
    T *HB = fail ? NULL : (T *)dk_alloc(sizeof(T) * (size_t)(nHB * sWz));                         \
    T *Z = fail ? NULL : (T *)dk_alloc(sizeof(T) * (size_t)(NZ * sWz));     /* z rows ring */     \
    T *FP = fail ? NULL : (T *)dk_alloc(sizeof(T) * (size_t)(NZ * sW));     /* f' rows ring */    \
    T *U = fail ? NULL : (T *)dk_alloc(sizeof(T) * (size_t)(sWz + sW));                           \
    T *gw = fail ? NULL : (T *)malloc(sizeof(T) * (size_t)(2 * nz + nt + 8));                     \
    fail = fail || !P || !S || !HA || !SF || !HB || !Z || !FP || !U || !gw;                       \
    if (!fail) { /* finite values everywhere, also in the slack columns */                        \
        memset(P, 0, sizeof(AT) * (size_t)(M * sWpA)); memset(S, 0, sizeof(AT) * (size_t)(nS * sWpA)); \
        memset(HA, 0, sizeof(AT) * (size_t)((nHA + 1) * sWzA + 2 * sWpA));                        \
        memset(SF, 0, sizeof(T) * (size_t)((nS + 1) * sWp));                                      \
        memset(HB, 0, sizeof(T) * (size_t)(nHB * sWz));                                           \
        memset(Z, 0, sizeof(T) * (size_t)(NZ * sWz)); memset(FP, 0, sizeof(T) * (size_t)(NZ * sW)); \
        memset(U, 0, sizeof(T) * (size_t)(sWz + sW));                                             \
    }                                                                                             \
    if (!fail) {                                                                                  \
        T *O = U + sWz;                                                                           \
        T *gs = gw, *gg = gw + nz, *tcw = gw + 2 * nz;                                            \
        for (int64_t a = 0; a < nz; ++a) { gs[a] = (T)(j->s * j->g[a]); gg[a] = (T)j->g[a]; }     \
        for (int64_t q = 0; q < nt; ++q) tcw[q] = (T)j->tc[q];                                    \
        const int64_t *cm = j->colmap;                                                            \
        (void)i0; (void)i1; /* plane groups are handed out one at a time: balanced under load */ \
        const int64_t ngr = (j->planes + GP - 1) / GP;                                           \
        for (int64_t p; (p = __atomic_fetch_add(j->next, 1, __ATOMIC_RELAXED)) < ngr;) {         \
            const int64_t gn = j->planes - p * GP < GP ? j->planes - p * GP : GP; /* planes here */ \
            const IT *src = (const IT *)j->in + p * GP * H * W0;                                  \
            IT *dst = (IT *)j->out + p * GP * H * W0;                                             \
            int64_t built = 0;                                                                    \
            for (int64_t y = 0; y < H; ++y) {                                                     \
                /* padded rows up to y + 2 pad: copy, horizontal boxes */                         \
                for (; built <= y + 2 * pad; ++built) {                                           \
                    AT *pr = P + (built & MM) * sWpA;                                             \
                    for (int64_t g = 0; g < GP; ++g) {                                            \
                        AT *prg = pr + g * Wp0;                                                   \
                        if (g >= gn) { memset(prg, 0, sizeof(AT) * (size_t)Wp0); continue; }      \
                        const IT *sg = src + g * H * W0, *srow = sg + j->rowmap[built] * W0;      \
                        if (built + 3 < H + 2 * pad) { /* the row after next: start fetching it */ \
                            const char *nx = (const char *)(sg + j->rowmap[built + 3] * W0);     \
                            for (int64_t q = 0; q < W0 * (int64_t)sizeof(IT); q += 64) __builtin_prefetch(nx + q); \
                        }                                                                         \
                        DK_LOAD_ROW(IT, AT, prg, srow, cm, W0, pad, Wp0);                         \
                    }                                                                             \
                    T *hb = HB + (built & MM) * nB * sWz;                                         \
                    for (int64_t m = 0; m < nB; ++m) {                                            \
                        const int64_t b = bval[m], b0 = m ? bval[m - 1] : -1;                     \
                        AT *ha = CONV ? HA + ((built & MM) * nB + m) * sWzA : (AT *)(hb + m * sWz); \
                        if (b == 0) { /* the row itself */                                        \
                            if (CONV) for (int64_t q = 0; q < nWzA; ++q) ha[q] = pr[pad - h + q]; \
                        } else {                                                                  \
                            int64_t np = 0;                                                       \
                            if (m) pa[np++] = CONV ? HA + ((built & MM) * nB + m - 1) * sWzA      \
                                                   : (const AT *)HBROW(built, m - 1, T, CONV);    \
                            for (int64_t d = b0 + 1; d <= b; ++d) {                               \
                                pa[np++] = pr + pad - h + d;                                      \
                                if (d) pa[np++] = pr + pad - h - d;                               \
                            }                                                                     \
                            SUMA(ha, pa, np, CONV ? nWzA : nWz);                                  \
                        }                                                                         \
                    }                                                                             \
                }                                                                                 \
                /* z and f' rows k = y + h (all of -h .. h at the first row) */                   \
                for (int64_t k = (y ? y + h : -h); k <= y + h; ++k) {                             \
                    const int64_t jc = k + pad;                                                   \
                    for (int64_t m = 0; m < nS; ++m) {                                            \
                        const int64_t v = sval[m];                                                \
                        AT *sm = S + m * sWpA;                                                    \
                        if (v == 0) { Sp[m] = P + (jc & MM) * sWpA; continue; } /* one row */     \
                        Sp[m] = sm;                                                               \
                        if (k == -h) {                                                            \
                            int64_t np = 0;                                                       \
                            for (int64_t d = -v; d <= v; ++d) pa[np++] = P + ((jc + d) & MM) * sWpA; \
                            SUMA(sm, pa, np, nWpA);                                               \
                        } else {                                                                  \
                            const AT *restrict ad = P + ((jc + v) & MM) * sWpA;                   \
                            const AT *restrict rm = P + ((jc - v - 1) & MM) * sWpA;               \
                            for (int64_t q = 0; q < nWpA; ++q) sm[q] += ad[q] - rm[q];            \
                        }                                                                         \
                    }                                                                             \
                    T *zr = Z + ((k + h) & NM) * sWz;                                             \
                    for (int64_t gi = 0, t0 = 0; gi < ng; t0 = gend[gi++]) {                      \
                        for (int64_t t = t0; t < gend[gi]; ++t) pa[t - t0] = Sp[dsel[t]] + off0 + t; \
                        if (!CONV) { SUMA((AT *)zr, pa, gend[gi] - t0, nWz); continue; }          \
                        AT *zt = HA + nHA * sWzA;                                                 \
                        SUMA(zt, pa, gend[gi] - t0, nWzA);                                        \
                        if (gi == 0) for (int64_t q = 0; q < nWz; ++q) zr[q] = (T)zt[q];          \
                        else for (int64_t q = 0; q < nWz; ++q) zr[q] += (T)zt[q];                 \
                    }                                                                             \
                    if (nt && CONV) { /* f' = sum over groups c_g * (signed int sum of column boxes) */ \
                        T *fr = FP + ((k + h) & NM) * sW;                                         \
                        uint16_t *I16 = (uint16_t *)(HA + (nHA + 1) * sWzA);                      \
                        const int64_t nW16 = (W + 15) / 16 * 16;                                  \
                        for (int64_t g = 0; g < ngrp; ++g) {                                      \
                            int64_t np = 0;                                                       \
                            for (int64_t o = gbeg[g]; o < gbeg[g + 1]; ++o)                       \
                                pa[np++] = Sp[tsel[gord[o]]] + pad + j->ti[gord[o]];              \
                            dk_pmsum_u16(I16, (const uint16_t *const *)pa, gpos[g], np, nW16);    \
                            dk_cvt_acc((float *)fr, I16, (float)gabs[g], g == 0, nW);             \
                        }                                                                         \
                    } else if (nt) {                                                              \
                        for (int64_t q = 0; q < nt; ++q) {                                        \
                            const int64_t m = tsel[q];                                            \
                            if (CONV) { /* T copy of this column sum, made once per row */        \
                                T *sf = SF + m * sWp;                                             \
                                int done = 0;                                                     \
                                for (int64_t q2 = 0; q2 < q; ++q2) done |= tsel[q2] == m;         \
                                if (!done) for (int64_t c = 0; c < nWp; ++c) sf[c] = (T)Sp[m][c]; \
                                pp[q] = sf + pad + j->ti[q];                                      \
                            } else {                                                              \
                                pp[q] = (const T *)Sp[m] + pad + j->ti[q];                        \
                            }                                                                     \
                        }                                                                         \
                        WSUMT(FP + ((k + h) & NM) * sW, pp, tcw, nt, nW);                         \
                    }                                                                             \
                }                                                                                 \
                if (nz == 1 && nt == 0) { /* no Gaussian, no correction: y = s z */               \
                    const T *zr = Z + (y & NM) * sWz;                                             \
                    for (int64_t g = 0; g < gn; ++g) {                                            \
                        IT *drow = dst + (g * H + y) * W0;                                        \
                        DK_STORE_##OK(T, drow, zr + g * Wp0, W0, gs[0])                           \
                    }                                                                             \
                    continue;                                                                     \
                }                                                                                 \
                /* u = s g_v (.) z + f over the Wz columns, then y = g_h (.) u + g_v (.) f' */    \
                int64_t np = 0;                                                                   \
                for (int64_t a = 0; a < nz; ++a) { pp[np] = Z + ((y + a) & NM) * sWz; ww[np++] = gs[a]; } \
                for (int64_t q = 0; q < nt && !CONV; ++q) {                                       \
                    pp[np] = HBROW(y + pad + j->ti[q], bsel[q], T, CONV);                         \
                    ww[np++] = tcw[q];                                                            \
                }                                                                                 \
                WSUMT(U, pp, ww, np, nWz);                                                        \
                if (CONV) { /* f = sum over groups c_g * (signed int sum of row boxes) */         \
                    uint16_t *I16 = (uint16_t *)(HA + (nHA + 1) * sWzA);                          \
                    for (int64_t g = 0; g < ngrp; ++g) {                                          \
                        int64_t nq = 0;                                                           \
                        for (int64_t o = gbeg[g]; o < gbeg[g + 1]; ++o) {                         \
                            const int64_t q = gord[o];                                            \
                            pa[nq++] = HA + (((y + pad + j->ti[q]) & MM) * nB + bsel[q]) * sWzA;  \
                        }                                                                         \
                        dk_pmsum_u16(I16, (const uint16_t *const *)pa, gpos[g], nq, nWzA);        \
                        dk_cvt_acc((float *)U, I16, (float)gabs[g], 0, nWz);                      \
                    }                                                                             \
                }                                                                                 \
                np = 0;                                                                           \
                for (int64_t a = 0; a < nz; ++a) { pp[np] = U + a; ww[np++] = gg[a]; }            \
                if (nt)                                                                           \
                    for (int64_t a = 0; a < nz; ++a) { pp[np] = FP + ((y + a) & NM) * sW; ww[np++] = gg[a]; } \
                if (CONV) { /* uint8: sum, margin, clip and truncation in one pass */             \
                    for (int64_t g = 0; g < gn; ++g) {                                            \
                        dk_wsum_u8((uint8_t *)(dst + (g * H + y) * W0), (const float *const *)pp, (const float *)ww, np, W0); \
                        for (int64_t a = 0; a < np; ++a) pp[a] += Wp0;                            \
                    }                                                                             \
                } else {                                                                          \
                    WSUMT(O, pp, ww, np, nW);                                                     \
                    for (int64_t g = 0; g < gn; ++g) {                                            \
                        IT *drow = dst + (g * H + y) * W0;                                        \
                        DK_STORE_##OK(T, drow, O + g * Wp0, W0, (T)1)                             \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
    free(sval); free(dsel); free(tsel); free(bval); free(bsel); free(gend); free((void *)pp);     \
    free((void *)pa); free(ww); free((void *)Sp);                                                 \
    free(gord); free(gbeg); free(gpos); free(gwt); free(tgrp); free(gabs);                        \
    free(P); free(S); free(HA); free(SF); free(HB); free(Z); free(FP); free(U); free(gw);         \
    return fail;

#define DK_U8 DK_BODY(uint8_t, uint16_t, float, dk_sum_u16, dk_wsum_f32, u, 1)
#define DK_F32 DK_BODY(float, float, float, dk_sum_f32, dk_wsum_f32, f, 0)
#define DK_F64 DK_BODY(double, double, double, dk_sum_f64, dk_wsum_f64, f, 0)
static int dk_u8_base(void *ctx, int64_t i0, int64_t i1) { DK_U8 }
static int dk_f32_base(void *ctx, int64_t i0, int64_t i1) { DK_F32 }
static int dk_f64_base(void *ctx, int64_t i0, int64_t i1) { DK_F64 }
#if BK_X86
BK_AVX2 static int dk_u8_avx2(void *ctx, int64_t i0, int64_t i1) { DK_U8 }
BK_AVX2 static int dk_f32_avx2(void *ctx, int64_t i0, int64_t i1) { DK_F32 }
BK_AVX2 static int dk_f64_avx2(void *ctx, int64_t i0, int64_t i1) { DK_F64 }
#endif

/* Exported (ctypes). kind: 0 uint8 (0..255, uint8 output floor(clip)), 1 float32, 2 float64
 * (output clipped to [0, 1]). rowmap has H + 2 pad entries, colmap W + 2 pad (reflect-101 maps);
 * requires pad >= r + h, pad >= |ti|, 0 <= hh, tb <= r. Returns 0, 1 (allocation failed) or 2
 * (bad arguments). */
int bk_disk_defocus(int kind, const void *in, void *out, int64_t planes, int64_t H, int64_t W, int64_t r,
                    int64_t h, int64_t pad, const int64_t *hh, const double *g, double s, int64_t nterm,
                    const int64_t *ti, const int64_t *tb, const double *tc, const int64_t *rowmap,
                    const int64_t *colmap, int nthreads) {
    if (H < 1 || W < 1 || r < 0 || h < 0 || pad < r + h || nterm < 0 || planes < 0) return 2;
    for (int64_t t = 0; t < 2 * r + 1; ++t)
        if (hh[t] < 0 || hh[t] > r) return 2;
    for (int64_t q = 0; q < nterm; ++q)
        if (tb[q] < 0 || tb[q] > r || ti[q] < -pad || ti[q] > pad) return 2;
    for (int64_t q = 0; q < H + 2 * pad; ++q)
        if (rowmap[q] < 0 || rowmap[q] >= H) return 2;
    for (int64_t q = 0; q < W + 2 * pad; ++q)
        if (colmap[q] < 0 || colmap[q] >= W) return 2;
    int64_t next = 0;
    dk_job_t j = {in, out, H, W, r, h, pad, hh, g, s, nterm, ti, tb, tc, rowmap, colmap, planes, &next};
    bk_chunk_fn fn;
    if (kind == 0) fn = PICK(dk_u8);
    else if (kind == 1) fn = PICK(dk_f32);
    else if (kind == 2) fn = PICK(dk_f64);
    else return 2;
    if (nthreads < 1) nthreads = 1;
    /* groups of up to DK_G planes, small enough that every thread gets one (results do not depend on
     * the grouping: each output is computed by the same arithmetic wherever its plane sits) */
    j.group = planes / nthreads < 1 ? 1 : (planes / nthreads > DK_G ? DK_G : planes / nthreads);
    const int64_t groups = (planes + j.group - 1) / j.group;
    if (nthreads > groups) nthreads = (int)groups;
    return bk_run_chunks(fn, &j, nthreads, nthreads); /* one worker per thread, each takes plane groups */
}
