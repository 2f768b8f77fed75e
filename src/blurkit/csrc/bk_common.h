/*
 * Shared definitions of blurkit's compiled CPU kernels (one extension, several translation units).
 */
#ifndef BK_COMMON_H
#define BK_COMMON_H

#include <stdint.h>

/* x86-64: every work function is compiled twice, for AVX2+FMA and for the baseline, and the
 * AVX2 one is chosen at run time when the CPU has it (feature test, not CPU model). */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define BK_X86 1
#define BK_AVX2 __attribute__((target("avx2,fma")))
#else
#define BK_X86 0
#define BK_AVX2
#endif

static inline int have_avx2(void) {
#if BK_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return 0;
#endif
}

#if BK_X86
#include <immintrin.h>

/* o[x] = uint8 of clip(row[x] + margin, lo, hi), truncated (rint == 0: the floor of a clipped value
 * >= 0) or rounded half to even (rint != 0), for x < n: 32 values per step (clip, convert, two
 * saturating packs and one dword permutation that undoes the packs' lane interleaving), then a scalar
 * tail with the same arithmetic. 0 <= lo <= hi <= 255. A NaN gives lo, as the scalar loops. */
BK_AVX2 __attribute__((unused)) static void bk_pack_u8_avx2(const float *restrict row, uint8_t *restrict o,
                                                            int64_t n, int rint, float margin, float lo,
                                                            float hi) {
    const __m256 vm = _mm256_set1_ps(margin), vl = _mm256_set1_ps(lo), vh = _mm256_set1_ps(hi);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t x = 0;
    for (; x + 32 <= n; x += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; ++k) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(row + x + 8 * k), vm);
            v = _mm256_min_ps(_mm256_max_ps(v, vl), vh); /* max(NaN, lo) = lo */
            q[k] = rint ? _mm256_cvtps_epi32(v) : _mm256_cvttps_epi32(v);
        }
        const __m256i a = _mm256_packs_epi32(q[0], q[1]), b = _mm256_packs_epi32(q[2], q[3]);
        _mm256_storeu_si256((__m256i *)(o + x), _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), perm));
    }
    for (; x < n; ++x) {
        float v = row[x] + margin;
        v = v > lo ? v : lo;
        v = v < hi ? v : hi;
        o[x] = (uint8_t)(int32_t)(rint ? __builtin_rintf(v) : v);
    }
}

#define PICK(name) (have_avx2() ? name##_avx2 : name##_base)
#else
#define PICK(name) (name##_base)
#endif

/* Work over the index range [i0, i1) of some job; returns 0 on success, non-zero on failure
 * (e.g. a scratch allocation failed). */
typedef int (*bk_chunk_fn)(void *ctx, int64_t i0, int64_t i1);

/* Run fn over [0, n) on nthreads POSIX threads (the caller's thread is one of them): the range is
 * cut into chunks of about n / (8 nthreads) items that the threads take from a shared counter, so
 * fn may be called several times per thread, with any sub-range. Returns the OR of the calls'
 * statuses. Defined in cconv.c. */
int bk_run_chunks(bk_chunk_fn fn, void *ctx, int64_t n, int nthreads);

#endif
