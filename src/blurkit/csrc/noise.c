/*
 * blurkit compiled CPU kernels: ImageNet-C noise corruptions (Gaussian, shot, impulse noise).
 *
 * Random numbers come from a counter-based generator: the 32-bit word of stream s at counter i is
 *     w = mix(mix(lo32(i) ^ a_s) ^ b_s ^ mix(hi32(i) ^ c_s))
 * with mix the "lowbias32" integer hash (a bijection of 32-bit words) and (a_s, b_s, c_s) derived
 * from the caller's 64-bit seed by splitmix64. A value's noise is therefore a pure function of
 * (seed, flat element index): results do not depend on the thread count or on chunking.
 *
 * Work is split in aligned tiles of NZ_TILE elements (so that hi32 of every counter in a tile is the
 * same and a Gaussian pair never straddles two tiles); each tile draws its words with 8-lane GCC
 * vector code, then applies the corruption in one pass over input and output.
 *
 *   gaussian  y = clip(x + c z, 0, 1), z ~ N(0, 1) by Box-Muller in float32 (own log, sqrt, sin, cos
 *             with relative error ~1e-7; the angle is drawn in a quarter turn plus a quadrant).
 *   shot      y = clip(Poisson(c x) / c, 0, 1), exact up to the 2^-32 resolution of the words. uint8
 *             input: lambda = c v / 255 is one of 256 levels, drawn by the alias method from per-level
 *             tables (one word, one table read, no loop). Float input: x = (k + (j + f) / 256) / 255
 *             with integers k, j < 256 and 0 <= f < 1, and Poisson(c x) is the sum of Poisson(c k / 255)
 *             (main tables), Poisson(c j / 65280) (sub-level tables) and Poisson(c f / 65280) (a rare
 *             Poisson(c / 65280) count, each event kept with probability f). Counts >= ceil(c) all
 *             clip to 1, so the tables stop there.
 *   impulse   a value is replaced if its word w < c 2^32: by 1 if w < c/2 2^32 (salt), else by 0
 *             (pepper); skimage.util.random_noise(mode="s&p", amount=c) in distribution.
 *
 * dtypes: 0 float32, 1 float64 (same dtype out, clipped to [0, 1]); 2 uint8 (v / 255 in,
 * floor(clip(y, 0, 1) * 255) out).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "bk_common.h"
#if BK_X86
#include <immintrin.h>
#endif


#define NZ_TILE 256
#define NZ_AUX_MAX 64
#define NZ_AI static inline __attribute__((always_inline))
#define NZ_PI 3.14159265358979323846

typedef uint32_t nz_vu __attribute__((vector_size(32)));
typedef int32_t nz_vi __attribute__((vector_size(32)));
typedef float nz_vf __attribute__((vector_size(32)));
#define NZ_VF(s) ((nz_vf){0} + (float)(s))

/* ------------------------------------------------------------------------------- generator */
typedef struct { uint32_t a, b, c; } nz_key;

static uint64_t nz_splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static nz_key nz_stream(uint64_t seed, uint32_t stream) {
    uint64_t s = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(stream + 1));
    const uint64_t z1 = nz_splitmix(&s), z2 = nz_splitmix(&s);
    nz_key k = {(uint32_t)z1, (uint32_t)(z1 >> 32), (uint32_t)z2};
    return k;
}

NZ_AI uint32_t nz_mix(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* (vector helpers work in place through pointers: no 32-byte vector is passed by value, which
 * would change the calling convention between the baseline and AVX2 builds) */
NZ_AI void nz_vmix(nz_vu *p) {
    nz_vu x = *p;
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    *p = x;
}

/* The word of stream k at counter i. */
NZ_AI uint32_t nz_word(nz_key k, uint64_t i) {
    const uint32_t kb = k.b ^ nz_mix((uint32_t)(i >> 32) ^ k.c);
    return nz_mix(nz_mix((uint32_t)i ^ k.a) ^ kb);
}

/* Words of stream k at counters first .. first + cnt - 1 (cnt a multiple of 8, one hi32). */
NZ_AI void nz_words(uint32_t *restrict w, uint64_t first, nz_key k, int cnt) {
    const uint32_t lo = (uint32_t)first, kb = k.b ^ nz_mix((uint32_t)(first >> 32) ^ k.c);
    const nz_vu iota = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int v = 0; v < cnt / 8; ++v) {
        nz_vu x = iota + (lo + (uint32_t)(8 * v));
        x ^= k.a;
        nz_vmix(&x);
        x ^= kb;
        nz_vmix(&x);
        memcpy(w + 8 * v, &x, sizeof x);
    }
}

/* ------------------------------------------------------------------- float32 vector math */
#define NZ_SEL(m, a, b) ((nz_vf)(((nz_vi)(a) & (m)) | ((nz_vi)(b) & ~(m))))

/* Natural log of normal floats u > 0 (Cephes logf: relative error ~1e-7). */
NZ_AI void nz_vlog(nz_vf *p) {
    const nz_vi bits = (nz_vi)*p;
    nz_vi e = ((bits >> 23) & 0xff) - 127;
    nz_vf m = (nz_vf)((bits & 0x007fffff) | 0x3f800000); /* [1, 2) */
    const nz_vi big = m > NZ_VF(1.41421356237f);
    m = NZ_SEL(big, m * 0.5f, m); /* [sqrt(1/2), sqrt(2)) */
    e -= big;
    const nz_vf x = m - 1.0f, z = x * x, z2 = z * z;
    /* the degree-8 polynomial by Estrin's scheme (shorter dependency chains than Horner's) */
    const nz_vf p01 = 7.0376836292E-2f * x - 1.1514610310E-1f;
    const nz_vf p23 = 1.1676998740E-1f * x - 1.2420140846E-1f;
    const nz_vf p45 = 1.4249322787E-1f * x - 1.6668057665E-1f;
    const nz_vf p67 = 2.0000714765E-1f * x - 2.4999993993E-1f;
    const nz_vf p03 = p01 * z + p23, p47 = p45 * z + p67;
    nz_vf y = (p03 * z2 + p47) * x + 3.3333331174E-1f;
    y = y * x * z;
    const nz_vf ef = __builtin_convertvector(e, nz_vf);
    y += ef * -2.12194440e-4f;
    y -= 0.5f * z;
    *p = x + y + ef * 0.693359375f;
}

/* sqrt: the hardware instruction where the build level has it, else a bit-trick reciprocal square
 * root and three Newton steps (relative error ~1e-7), for 0 <= t < 2^126. */
NZ_AI void nz_vsqrt_newton(nz_vf *p) {
    const nz_vf t = *p;
    nz_vf y = (nz_vf)(0x5f375a86 - ((nz_vi)t >> 1));
    const nz_vf h = 0.5f * t;
    y = y * (1.5f - h * y * y);
    y = y * (1.5f - h * y * y);
    y = y * (1.5f - h * y * y);
    *p = t * y;
}

#if BK_X86
typedef float nz_v4f __attribute__((vector_size(16)));
NZ_AI void nz_vsqrt_base(nz_vf *p) { /* SSE (x86-64 baseline) on the two halves */
    nz_v4f lo, hi;
    memcpy(&lo, p, sizeof lo);
    memcpy(&hi, (char *)p + sizeof lo, sizeof hi);
    lo = __builtin_ia32_sqrtps(lo);
    hi = __builtin_ia32_sqrtps(hi);
    memcpy(p, &lo, sizeof lo);
    memcpy((char *)p + sizeof lo, &hi, sizeof hi);
}
BK_AVX2 NZ_AI void nz_vsqrt_avx2(nz_vf *p) { *p = __builtin_ia32_sqrtps256(*p); }
#else
#define nz_vsqrt_base nz_vsqrt_newton
#endif

/* NZ_TILE standard normal values for the elements t0 .. t0 + NZ_TILE - 1 (t0 a multiple of
 * NZ_TILE). Pair p (p = 8 (i / 16) + i % 8) hashes h = mix(lo32(p) ^ a) once and takes the radius
 * word mix(h ^ b1') and the angle word mix(h ^ b2') (two streams' second keys, mixed with hi32(p));
 * element 16 (i / 16) + i % 8 gets r cos(theta) and the element 8 after it r sin(theta). */
#define NZ_NORMALS(TGT, NAME, SQRT)                                                                \
    TGT NZ_AI void NAME(float *restrict z, uint64_t t0, nz_key kr, nz_key ka) {                     \
        enum { P = NZ_TILE / 2 };                                                                  \
        const uint64_t p0 = t0 >> 1;                                                               \
        const uint32_t lo = (uint32_t)p0, hi = (uint32_t)(p0 >> 32);                               \
        const uint32_t b1 = kr.b ^ nz_mix(hi ^ kr.c), b2 = ka.b ^ nz_mix(hi ^ ka.c);               \
        const nz_vu iota = {0, 1, 2, 3, 4, 5, 6, 7};                                               \
        for (int v = 0; v < P / 8; ++v) {                                                          \
            nz_vu h = iota + (lo + (uint32_t)(8 * v));                                             \
            h ^= kr.a;                                                                             \
            nz_vmix(&h);                                                                           \
            nz_vu w1 = h ^ b1, w2 = h ^ b2;                                                        \
            nz_vmix(&w1);                                                                          \
            nz_vmix(&w2);                                                                          \
            /* radius: u in (0, 1], r = sqrt(-2 ln u) */                                           \
            nz_vf r = __builtin_convertvector((nz_vi)(w1 >> 1), nz_vf) * 0x1p-31f + 0x1p-32f;      \
            nz_vlog(&r);                                                                           \
            r = -2.0f * r; /* >= 0: ln u < 0 for u < 1, exactly 0 at u = 1 */                      \
            SQRT(&r);                                                                              \
            /* angle: theta = q pi/2 + phi, q = top 2 bits, phi uniform in (-pi/4, pi/4) */        \
            const nz_vu q = w2 >> 30;                                                              \
            const nz_vf phi = __builtin_convertvector((nz_vi)(w2 & 0x3fffffffU), nz_vf)            \
                              * (float)(NZ_PI / 2 * 0x1p-30) + (float)(NZ_PI / 2 * 0x1p-31 - NZ_PI / 4); \
            const nz_vf x2 = phi * phi;                                                            \
            const nz_vf s = ((-1.9515295891E-4f * x2 + 8.3321608736E-3f) * x2 - 1.6666654611E-1f)  \
                            * x2 * phi + phi;                                                      \
            const nz_vf c = ((2.443315711809948E-5f * x2 - 1.388731625493765E-3f) * x2             \
                             + 4.166664568298827E-2f) * x2 * x2 - 0.5f * x2 + 1.0f;                \
            const nz_vi swap = -(nz_vi)(q & 1U);                                                   \
            nz_vf cx = NZ_SEL(swap, s, c), sy = NZ_SEL(swap, c, s);                                \
            cx = (nz_vf)((nz_vu)cx ^ (((q ^ (q >> 1)) & 1U) << 31)); /* cos < 0 for q = 1, 2 */    \
            sy = (nz_vf)((nz_vu)sy ^ ((q >> 1) << 31));               /* sin < 0 for q = 2, 3 */   \
            const nz_vf z0 = r * cx, z1 = r * sy;                                                  \
            memcpy(z + 16 * v, &z0, sizeof z0);                                                    \
            memcpy(z + 16 * v + 8, &z1, sizeof z1);                                                \
        }                                                                                          \
    }

NZ_NORMALS(, nz_normals_base, nz_vsqrt_base)
#if BK_X86
NZ_NORMALS(BK_AVX2, nz_normals_avx2, nz_vsqrt_avx2)
#endif

/* clip(v, 0, 1) by integer operations on the bits (negative values, -0 included, give +0; NaN gives
 * 1): unlike float compares under the default -ftrapping-math, these let loops vectorise. */
NZ_AI float nz_clip01f(float v) {
    int32_t b;
    memcpy(&b, &v, sizeof b);
    b &= ~(b >> 31);
    b = b < 0x3f800000 ? b : 0x3f800000;
    memcpy(&v, &b, sizeof b);
    return v;
}

NZ_AI double nz_clip01d(double v) {
    int64_t b;
    memcpy(&b, &v, sizeof b);
    b &= ~(b >> 63);
    b = b < 0x3ff0000000000000LL ? b : 0x3ff0000000000000LL;
    memcpy(&v, &b, sizeof b);
    return v;
}

/* ------------------------------------------------------------------------------- contexts */
typedef struct {
    int dtype;
    const void *in;
    void *out;
    int64_t n;
    double c;
    nz_key k0, k1, k2;
    uint32_t t_salt, t_hit;        /* impulse thresholds */
    /* shot */
    const uint32_t *tab, *tab2;    /* main and sub-level alias tables */
    int bits, bits2;
    int kmax;                      /* K = ceil(c): category K means ">= K" (clips to 1) */
    const float *vf;               /* category -> float32 value */
    const double *vd;              /* category -> float64 value */
    const uint32_t *vu;            /* category -> uint8 value */
    const uint32_t *aux;           /* CDF thresholds of Poisson(c / 65280), 2^32-scaled */
    int naux;
    nz_key kaux[NZ_AUX_MAX];       /* one stream per thinned event */
} nz_ctx;

NZ_AI int64_t nz_tile_len(const nz_ctx *x, int64_t t) {
    const int64_t rem = x->n - t * NZ_TILE;
    return rem < NZ_TILE ? rem : NZ_TILE;
}

/* ------------------------------------------------------------------------------- gaussian */
#define NZ_GAUSS_BODY(NORMALS)                                                                      \
    const nz_ctx *x = (const nz_ctx *)vctx;                                                        \
    float z[NZ_TILE];                                                                              \
    for (int64_t t = i0; t < i1; ++t) {                                                            \
        const int64_t base = t * NZ_TILE, m = nz_tile_len(x, t);                                   \
        NORMALS(z, (uint64_t)base, x->k0, x->k1);                                                  \
        if (x->dtype == 0) {                                                                       \
            const float *restrict a = (const float *)x->in + base;                                 \
            float *restrict o = (float *)x->out + base;                                            \
            const float c = (float)x->c;                                                           \
            for (int64_t i = 0; i < m; ++i) {                                                      \
                o[i] = nz_clip01f(a[i] + c * z[i]);                                                \
            }                                                                                      \
        } else if (x->dtype == 1) {                                                                \
            const double *restrict a = (const double *)x->in + base;                               \
            double *restrict o = (double *)x->out + base;                                          \
            const double c = x->c;                                                                 \
            for (int64_t i = 0; i < m; ++i) {                                                      \
                o[i] = nz_clip01d(a[i] + c * (double)z[i]);                                        \
            }                                                                                      \
        } else {                                                                                   \
            const uint8_t *restrict a = (const uint8_t *)x->in + base;                             \
            uint8_t *restrict o = (uint8_t *)x->out + base;                                        \
            const float c = (float)(x->c * 255.0);                                                 \
            for (int64_t i = 0; i < m; ++i) {                                                      \
                /* |c z| <= 255 * 1e6 * 6.7 < 2^31 (the wrapper caps c): the conversion is in range */ \
                int32_t q = (int32_t)((float)a[i] + c * z[i]); /* truncation = floor for >= 0 */    \
                q = q > 0 ? q : 0;                                                                 \
                o[i] = (uint8_t)(q < 255 ? q : 255);                                               \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    return 0;

static int gauss_base(void *vctx, int64_t i0, int64_t i1) { NZ_GAUSS_BODY(nz_normals_base) }
#if BK_X86
BK_AVX2 static int gauss_avx2(void *vctx, int64_t i0, int64_t i1) { NZ_GAUSS_BODY(nz_normals_avx2) }
#endif

/* -------------------------------------------------------------------------------- impulse */
#define NZ_IMPULSE_BODY                                                                            \
    const nz_ctx *x = (const nz_ctx *)vctx;                                                        \
    uint32_t w[NZ_TILE];                                                                           \
    /* signed compares of w ^ 2^31 vectorise on every x86 level */                                 \
    const int32_t ts = (int32_t)(x->t_salt ^ 0x80000000U), th = (int32_t)(x->t_hit ^ 0x80000000U); \
    for (int64_t t = i0; t < i1; ++t) {                                                            \
        const int64_t base = t * NZ_TILE, m = nz_tile_len(x, t);                                   \
        nz_words(w, (uint64_t)base, x->k0, NZ_TILE);                                               \
        if (x->dtype == 0) {                                                                       \
            const float *restrict a = (const float *)x->in + base;                                 \
            float *restrict o = (float *)x->out + base;                                            \
            for (int64_t i = 0; i < m; ++i) {                                                      \
                const int32_t s = (int32_t)(w[i] ^ 0x80000000U);                                   \
                float y = nz_clip01f(a[i]);                                                        \
                y = s < th ? 0.0f : y;                                                             \
                o[i] = s < ts ? 1.0f : y;                                                          \
            }                                                                                      \
        } else if (x->dtype == 1) {                                                                \
            const double *restrict a = (const double *)x->in + base;                               \
            double *restrict o = (double *)x->out + base;                                          \
            for (int64_t i = 0; i < m; ++i) {                                                      \
                const int32_t s = (int32_t)(w[i] ^ 0x80000000U);                                   \
                double y = nz_clip01d(a[i]);                                                       \
                y = s < th ? 0.0 : y;                                                              \
                o[i] = s < ts ? 1.0 : y;                                                           \
            }                                                                                      \
        } else {                                                                                   \
            const uint8_t *restrict a = (const uint8_t *)x->in + base;                             \
            uint8_t *restrict o = (uint8_t *)x->out + base;                                        \
            for (int64_t i = 0; i < m; ++i) {                                                      \
                const int32_t s = (int32_t)(w[i] ^ 0x80000000U);                                   \
                const uint32_t hit = -(uint32_t)(s < th), salt = -(uint32_t)(s < ts);              \
                o[i] = (uint8_t)(((uint32_t)a[i] & ~hit) | (salt & 255U));                         \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    return 0;

static int impulse_base(void *vctx, int64_t i0, int64_t i1) { NZ_IMPULSE_BODY }
#if BK_X86
BK_AVX2 static int impulse_avx2(void *vctx, int64_t i0, int64_t i1) { NZ_IMPULSE_BODY }
#endif

/* ----------------------------------------------------------------------------------- shot */
/* Categories of Poisson(level) from words w (alias method: one table read per value, no branch);
 * tab holds (levels, 2^b) packed entries (threshold << b) | alias. */
NZ_AI void nz_alias_run_base(uint32_t *restrict cat, const uint32_t *restrict lev, const uint32_t *restrict w,
                             const uint32_t *restrict tab, int b, int m) {
    const uint32_t am = (1U << b) - 1U, fm = 0xffffffffU >> b;
    const int sh = 32 - b;
    for (int i = 0; i < m; ++i) {
        const uint32_t wi = w[i], j = wi >> sh;
        const uint32_t e = tab[(lev[i] << b) + j];
        const uint32_t keep = -(uint32_t)((wi & fm) < (e >> b));
        cat[i] = (j & keep) | ((e & am) & ~keep);
    }
}

#if BK_X86
/* The same with AVX2 gathers (the compiler does not emit them for generic tuning). */
BK_AVX2 NZ_AI void nz_alias_run_avx2(uint32_t *restrict cat, const uint32_t *restrict lev, const uint32_t *restrict w,
                                     const uint32_t *restrict tab, int b, int m) {
    const __m256i am = _mm256_set1_epi32((int)((1U << b) - 1U)), fm = _mm256_set1_epi32((int)(0xffffffffU >> b));
    const __m128i shj = _mm_cvtsi32_si128(32 - b), shb = _mm_cvtsi32_si128(b);
    int i = 0;
    for (; i + 8 <= m; i += 8) {
        const __m256i wi = _mm256_loadu_si256((const __m256i *)(w + i));
        const __m256i j = _mm256_srl_epi32(wi, shj);
        const __m256i idx = _mm256_add_epi32(_mm256_sll_epi32(_mm256_loadu_si256((const __m256i *)(lev + i)), shb), j);
        const __m256i e = _mm256_i32gather_epi32((const int *)tab, idx, 4);
        /* both sides < 2^31: a signed compare is the unsigned one */
        const __m256i keep = _mm256_cmpgt_epi32(_mm256_srl_epi32(e, shb), _mm256_and_si256(wi, fm));
        const __m256i r = _mm256_blendv_epi8(_mm256_and_si256(e, am), j, keep);
        _mm256_storeu_si256((__m256i *)(cat + i), r);
    }
    if (i < m) nz_alias_run_base(cat + i, lev + i, w + i, tab, b, m - i);
}
#endif

/* out[i] = vals[min(cat[i], kmax)] for the three output types. */
NZ_AI void nz_vals_base_f32(float *restrict o, const float *restrict vals, const uint32_t *restrict cat,
                            uint32_t kmax, int m) {
    for (int i = 0; i < m; ++i) o[i] = vals[cat[i] < kmax ? cat[i] : kmax];
}

NZ_AI void nz_vals_base_u8(uint8_t *restrict o, const uint32_t *restrict vals, const uint32_t *restrict cat,
                           uint32_t kmax, int m) {
    for (int i = 0; i < m; ++i) o[i] = (uint8_t)vals[cat[i] < kmax ? cat[i] : kmax];
}

NZ_AI void nz_vals_f64(double *restrict o, const double *restrict vals, const uint32_t *restrict cat,
                       uint32_t kmax, int m) {
    for (int i = 0; i < m; ++i) o[i] = vals[cat[i] < kmax ? cat[i] : kmax];
}

#if BK_X86
BK_AVX2 NZ_AI void nz_vals_avx2_f32(float *restrict o, const float *restrict vals, const uint32_t *restrict cat,
                                    uint32_t kmax, int m) {
    const __m256i km = _mm256_set1_epi32((int)kmax);
    int i = 0;
    for (; i + 8 <= m; i += 8) {
        const __m256i q = _mm256_min_epu32(_mm256_loadu_si256((const __m256i *)(cat + i)), km);
        _mm256_storeu_ps(o + i, _mm256_i32gather_ps(vals, q, 4));
    }
    if (i < m) nz_vals_base_f32(o + i, vals, cat + i, kmax, m - i);
}

BK_AVX2 NZ_AI void nz_vals_avx2_u8(uint8_t *restrict o, const uint32_t *restrict vals, const uint32_t *restrict cat,
                                   uint32_t kmax, int m) {
    const __m256i km = _mm256_set1_epi32((int)kmax);
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    int i = 0;
    for (; i + 8 <= m; i += 8) {
        const __m256i q = _mm256_min_epu32(_mm256_loadu_si256((const __m256i *)(cat + i)), km);
        const __m256i v = _mm256_shuffle_epi8(_mm256_i32gather_epi32((const int *)vals, q, 4), pick);
        const uint32_t lo = (uint32_t)_mm256_extract_epi32(v, 0), hi = (uint32_t)_mm256_extract_epi32(v, 4);
        memcpy(o + i, &lo, 4);
        memcpy(o + i + 4, &hi, 4);
    }
    if (i < m) nz_vals_base_u8(o + i, vals, cat + i, kmax, m - i);
}
#endif

/* Poisson(f * delta / 256) for the value at flat index i given its aux word w >= aux[0]: a
 * Poisson(delta / 256) count (>= 1 here), each event kept with probability f. */
static uint32_t nz_rare(const nz_ctx *x, uint64_t i, uint32_t w, uint32_t tau) {
    int cnt = 1;
    while (cnt < x->naux && w >= x->aux[cnt]) ++cnt;
    uint32_t kept = 0;
    for (int e = 0; e < cnt; ++e) kept += nz_word(x->kaux[e], i) < tau;
    return kept;
}

/* Float values: lambda = c v = c (k + (j + f) / 256) / 255 with k, j integers, 0 <= f < 1: the sum of
 * Poisson(c k / 255) (main tables), Poisson(c j / 65280) (sub-level tables) and Poisson(c f / 65280)
 * (a rare Poisson(c / 65280) count, thinned). */
#define NZ_SHOT_FLOAT(U, CLIP, STORE, ALIAS)                                                        \
    for (int i = 0; i < m; ++i) { /* U: float for float32 input, double for float64 */             \
        const U v = CLIP(a[i]);                                                                    \
        const U t = v * (U)255;                                                                    \
        int32_t k = (int32_t)t;                                                                    \
        k = k < 255 ? k : 255;                                                                     \
        const U s = (t - (U)k) * (U)256;                                                           \
        int32_t j = (int32_t)s;                                                                    \
        j = j < 255 ? j : 255;                                                                     \
        lev[i] = (uint32_t)k;                                                                      \
        sub[i] = (uint32_t)j;                                                                      \
        frac[i] = (float)(s - (U)j);                                                               \
    }                                                                                              \
    ALIAS(cat, lev, w0, x->tab, x->bits, m);                                                       \
    ALIAS(cat2, sub, w1, x->tab2, x->bits2, m);                                                    \
    uint32_t any = 0;                                                                              \
    for (int i = 0; i < m; ++i) any |= (uint32_t)(w2[i] >= t0);                                    \
    if (any)                                                                                       \
        for (int i = 0; i < m; ++i)                                                                \
            if (w2[i] >= t0) {                                                                     \
                const double p = (double)frac[i] * 4294967296.0;                                   \
                const uint32_t tau = p >= 4294967295.0 ? 0xffffffffU : (uint32_t)p;                \
                cat2[i] += nz_rare(x, (uint64_t)(base + i), w2[i], tau);                           \
            }                                                                                      \
    for (int i = 0; i < m; ++i) cat[i] += cat2[i];                                                 \
    STORE;

#define NZ_SHOT_BODY(ALIAS, VALS_F32, VALS_U8)                                                      \
    const nz_ctx *x = (const nz_ctx *)vctx;                                                        \
    uint32_t w0[NZ_TILE], w1[NZ_TILE], w2[NZ_TILE], lev[NZ_TILE], sub[NZ_TILE];                    \
    uint32_t cat[NZ_TILE], cat2[NZ_TILE];                                                          \
    float frac[NZ_TILE];                                                                           \
    const uint32_t kmax = (uint32_t)x->kmax, t0 = x->aux[0];                                       \
    for (int64_t t = i0; t < i1; ++t) {                                                            \
        const int64_t base = t * NZ_TILE;                                                          \
        const int m = (int)nz_tile_len(x, t);                                                      \
        nz_words(w0, (uint64_t)base, x->k0, NZ_TILE);                                              \
        if (x->dtype == 2) {                                                                       \
            const uint8_t *restrict a = (const uint8_t *)x->in + base;                             \
            uint8_t *restrict o = (uint8_t *)x->out + base;                                        \
            for (int i = 0; i < m; ++i) lev[i] = a[i];                                             \
            ALIAS(cat, lev, w0, x->tab, x->bits, m);                                               \
            VALS_U8(o, x->vu, cat, kmax, m);                                                       \
            continue;                                                                              \
        }                                                                                          \
        nz_words(w1, (uint64_t)base, x->k1, NZ_TILE);                                              \
        nz_words(w2, (uint64_t)base, x->k2, NZ_TILE);                                              \
        if (x->dtype == 0) {                                                                       \
            const float *restrict a = (const float *)x->in + base;                                 \
            float *restrict o = (float *)x->out + base;                                            \
            NZ_SHOT_FLOAT(float, nz_clip01f, VALS_F32(o, x->vf, cat, kmax, m), ALIAS)               \
        } else {                                                                                   \
            const double *restrict a = (const double *)x->in + base;                               \
            double *restrict o = (double *)x->out + base;                                          \
            NZ_SHOT_FLOAT(double, nz_clip01d, nz_vals_f64(o, x->vd, cat, kmax, m), ALIAS)           \
        }                                                                                          \
    }                                                                                              \
    return 0;

static int shot_base(void *vctx, int64_t i0, int64_t i1) {
    NZ_SHOT_BODY(nz_alias_run_base, nz_vals_base_f32, nz_vals_base_u8)
}
#if BK_X86
BK_AVX2 static int shot_avx2(void *vctx, int64_t i0, int64_t i1) {
    NZ_SHOT_BODY(nz_alias_run_avx2, nz_vals_avx2_f32, nz_vals_avx2_u8)
}
#endif

/* ------------------------------------------------------------------------------- tables */
NZ_AI int nz_bits_for(int64_t ncat) {
    int b = 1;
    while (((int64_t)1 << b) < ncat) ++b;
    return b;
}

/* Table layout for rate c: out[0] = bits of the main tables (2^bits >= K + 1 categories, K = ceil(c);
 * category K means ">= K", which clips to 1), out[1] = bits of the sub-level tables, out[2] = their
 * number of categories minus one (K2 <= K). Returns 0, or -1 for a rate outside (0, 2^20]. */
int bk_noise_shot_layout(double c, int64_t *out) {
    if (!(c > 0.0) || c > 1048576.0) return -1;
    const int K = (int)ceil(c);
    /* K2: P(Poisson(c / 255) >= K2) < 2^-40 (or K2 = K) */
    const double delta = c / 255.0;
    double p = exp(-delta), tail = 1.0 - p;
    int K2 = 1;
    while (K2 < K && tail >= 0x1p-40) {
        p *= delta / K2;
        tail -= p;
        ++K2;
    }
    out[0] = nz_bits_for((int64_t)K + 1);
    out[1] = nz_bits_for((int64_t)K2 + 1);
    out[2] = K2;
    return 0;
}

/* Integer weights (sum exactly 2^32) of the categories 0 .. K-1 and ">= K" of Poisson(lam),
 * from the rounded 2^32-scaled CDF. */
static void nz_weights(double lam, int K, uint64_t *wt, double *pmf) {
    if (lam <= 0.0) {
        memset(wt, 0, sizeof(uint64_t) * (size_t)(K + 1));
        wt[0] = (uint64_t)1 << 32;
        return;
    }
    /* pmf by recursion outwards from s = min(floor(lam), K - 1), started from lgamma */
    int s = (int)floor(lam);
    s = s < K - 1 ? s : K - 1;
    pmf[s] = exp(-lam + s * log(lam) - lgamma(s + 1.0));
    for (int k = s + 1; k < K; ++k) pmf[k] = pmf[k - 1] * lam / k;
    for (int k = s - 1; k >= 0; --k) pmf[k] = pmf[k + 1] * (k + 1) / lam;
    double cdf = 0.0;
    uint64_t prev = 0;
    for (int k = 0; k < K; ++k) {
        cdf += pmf[k];
        const double q = floor(cdf * 4294967296.0 + 0.5);
        uint64_t Q = q >= 4294967296.0 ? (uint64_t)1 << 32 : (uint64_t)q;
        if (Q < prev) Q = prev;
        wt[k] = Q - prev;
        prev = Q;
    }
    wt[K] = ((uint64_t)1 << 32) - prev;
}

/* Alias tables (one row of 2^bits packed entries per level) of Poisson(lam[lev]) over K + 1
 * categories, by Vose's construction in exact integer arithmetic. Returns 0 or -1 (no memory). */
static int nz_alias_tables(uint32_t *tab, int bits, int K, const double *lam, int nlev) {
    const int64_t N = (int64_t)1 << bits;
    const uint64_t cap = (uint64_t)1 << (32 - bits);
    uint64_t *wt = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)N);
    double *pmf = (double *)malloc(sizeof(double) * (size_t)(K + 1));
    int64_t *small = (int64_t *)malloc(sizeof(int64_t) * (size_t)N);
    int64_t *large = (int64_t *)malloc(sizeof(int64_t) * (size_t)N);
    if (!wt || !pmf || !small || !large) {
        free(wt); free(pmf); free(small); free(large);
        return -1;
    }
    for (int lv = 0; lv < nlev; ++lv) {
        memset(wt, 0, sizeof(uint64_t) * (size_t)N);
        nz_weights(lam[lv], K, wt, pmf);
        uint32_t *row = tab + (size_t)lv * (size_t)N;
        int64_t ns = 0, nl = 0;
        for (int64_t j = 0; j < N; ++j) {
            if (wt[j] < cap) small[ns++] = j;
            else large[nl++] = j;
        }
        while (ns > 0 && nl > 0) {
            const int64_t s = small[--ns], l = large[nl - 1];
            row[s] = (uint32_t)((wt[s] << bits) | (uint64_t)l);
            wt[l] -= cap - wt[s];
            if (wt[l] < cap) {
                --nl;
                small[ns++] = l;
            }
        }
        /* the rest are full buckets (threshold 0: always the alias, itself) */
        while (nl > 0) { const int64_t l = large[--nl]; row[l] = (uint32_t)l; }
        while (ns > 0) { const int64_t s = small[--ns]; row[s] = (uint32_t)s; }
    }
    free(wt); free(pmf); free(small); free(large);
    return 0;
}

/* Build the shot-noise tables for rate c with the layout of bk_noise_shot_layout: tab (256, 2^bits)
 * for Poisson(c k / 255), tab2 (256, 2^bits2) for Poisson(c j / 65280), and aux (up to auxcap <= 64)
 * 2^32-scaled CDF thresholds of Poisson(c / 65280). Returns the number of aux thresholds, or -1. */
int bk_noise_shot_tables(double c, uint32_t *tab, uint32_t *tab2, uint32_t *aux, int auxcap) {
    int64_t lay[3];
    if (bk_noise_shot_layout(c, lay) != 0 || auxcap < 1 || auxcap > NZ_AUX_MAX) return -1;
    double lam[256];
    for (int k = 0; k < 256; ++k) lam[k] = c * k / 255.0;
    if (nz_alias_tables(tab, (int)lay[0], (int)ceil(c), lam, 256) != 0) return -1;
    for (int k = 0; k < 256; ++k) lam[k] = c * k / 65280.0;
    if (nz_alias_tables(tab2, (int)lay[1], (int)lay[2], lam, 256) != 0) return -1;
    const double d = c / 65280.0;
    int naux = 0;
    double p = exp(-d), cdf = 0.0;
    for (int m = 0; m < auxcap; ++m) {
        cdf += p;
        const double q = floor(cdf * 4294967296.0 + 0.5);
        if (q >= 4294967296.0) break;
        aux[naux++] = (uint32_t)q;
        p *= d / (m + 1);
    }
    if (naux == 0) aux[naux++] = 0xffffffffU; /* never reached in practice (c < 2^20) */
    return naux;
}

/* ------------------------------------------------------------------------- exported (C ABI) */
static int nz_nthreads(int64_t ntiles, int nthreads) {
    /* at least ~64 tiles (64 KB of float32) per thread, so small calls do not pay for threads */
    const int64_t most = ntiles / 64 > 0 ? ntiles / 64 : 1;
    return nthreads < most ? nthreads : (int)most;
}

int bk_noise_gaussian(int dtype, const void *in, void *out, int64_t n, double c, uint64_t seed, int nthreads) {
    if (dtype < 0 || dtype > 2 || n < 0) return -1;
    nz_ctx x;
    memset(&x, 0, sizeof x);
    x.dtype = dtype; x.in = in; x.out = out; x.n = n; x.c = c;
    x.k0 = nz_stream(seed, 0);
    x.k1 = nz_stream(seed, 1);
    const int64_t nt = (n + NZ_TILE - 1) / NZ_TILE;
    return bk_run_chunks(PICK(gauss), &x, nt, nz_nthreads(nt, nthreads));
}

int bk_noise_impulse(int dtype, const void *in, void *out, int64_t n, double c, uint64_t seed, int nthreads) {
    if (dtype < 0 || dtype > 2 || n < 0 || !(c >= 0.0 && c <= 1.0)) return -1;
    nz_ctx x;
    memset(&x, 0, sizeof x);
    x.dtype = dtype; x.in = in; x.out = out; x.n = n; x.c = c;
    x.k0 = nz_stream(seed, 0);
    const double th = floor(c * 4294967296.0 + 0.5), ts = floor(c * 0.5 * 4294967296.0 + 0.5);
    x.t_hit = th >= 4294967295.0 ? 0xffffffffU : (uint32_t)th;
    x.t_salt = ts >= 4294967295.0 ? 0xffffffffU : (uint32_t)ts;
    const int64_t nt = (n + NZ_TILE - 1) / NZ_TILE;
    return bk_run_chunks(PICK(impulse), &x, nt, nz_nthreads(nt, nthreads));
}

int bk_noise_shot(int dtype, const void *in, void *out, int64_t n, double c, const uint32_t *tab,
                  const uint32_t *tab2, const uint32_t *aux, int naux, uint64_t seed, int nthreads) {
    int64_t lay[3];
    if (dtype < 0 || dtype > 2 || n < 0 || bk_noise_shot_layout(c, lay) != 0 || naux < 1 || naux > NZ_AUX_MAX)
        return -1;
    const int K = (int)ceil(c);
    nz_ctx x;
    memset(&x, 0, sizeof x);
    float *vf = (float *)malloc(sizeof(float) * (size_t)(K + 1));
    double *vd = (double *)malloc(sizeof(double) * (size_t)(K + 1));
    uint32_t *vu = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)(K + 1));
    if (!vf || !vd || !vu) {
        free(vf); free(vd); free(vu);
        return -1;
    }
    for (int k = 0; k <= K; ++k) {
        double y = (double)k / c; /* the reference: np.clip(poisson / c, 0, 1) */
        y = y < 1.0 ? y : 1.0;
        vd[k] = y;
        vf[k] = (float)y;
        vu[k] = (uint32_t)floor(y * 255.0); /* np.uint8(clip(...) * 255) */
    }
    x.dtype = dtype; x.in = in; x.out = out; x.n = n; x.c = c;
    x.tab = tab; x.bits = (int)lay[0]; x.tab2 = tab2; x.bits2 = (int)lay[1]; x.kmax = K;
    x.vf = vf; x.vd = vd; x.vu = vu;
    x.aux = aux; x.naux = naux;
    x.k0 = nz_stream(seed, 0);
    x.k1 = nz_stream(seed, 1);
    x.k2 = nz_stream(seed, 2);
    for (int e = 0; e < naux; ++e) x.kaux[e] = nz_stream(seed, (uint32_t)(3 + e));
    const int64_t nt = (n + NZ_TILE - 1) / NZ_TILE;
    const int st = bk_run_chunks(PICK(shot), &x, nt, nz_nthreads(nt, nthreads));
    free(vf); free(vd); free(vu);
    return st;
}
