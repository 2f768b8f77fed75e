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
