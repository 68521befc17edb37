/* Fused elementwise stages of the Mamba-2 layer on CPU (mambakit.ssm.cpu_fused), forward
   and backward, plain C, float32.

   Rows are time steps. An input read from a wider tensor (a slice of in_proj's output) is
   given by its first element and its row stride in floats; rows of batch row bi start at
   bi * L * row_stride (the slices of a contiguous [b, L, F] tensor). Channels are unit
   stride, so every inner loop runs over contiguous channels (vectorised, `omp simd`).
   Outputs are contiguous [b, L, C]. Each call covers channels [c0, c1) (the conv) or
   rows [r0, r1) (the norm), so that calls on disjoint ranges never write the same element;
   the norm's weight gradient goes to the caller's per-range partial buffer. */

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

/* exp(v) = 2^n e^r with n = round(v log2(e)) and |r| <= ln(2) / 2, e^r by the degree-7
   polynomial of Cephes' expf (relative error ~1e-7, as libm's expf to a few ulp), v clamped
   to [-87, 88]. Inlined, so that a loop of sigmoids vectorises with no call per vector
   (glibc's vector expf is a call; it took most of the conv's time). */
static inline float exp_approx(float v) {
    v = v < -87.0f ? -87.0f : (v > 88.0f ? 88.0f : v);
    const float n = floorf(v * 1.44269504088896341f + 0.5f);
    const float r = fmaf(n, -0.693147180559945309f, v);  /* one rounding: r to ~n * 2e-9 */
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r + 1.0f);
    union { int i; float f; } scale = {.i = ((int)n + 127) << 23};  /* 2^n */
    return p * scale.f;
}

static inline float sigmoidf_(float v) { return 1.0f / (1.0f + exp_approx(-v)); }

/* pre[c0:c1] = bias + sum_{k >= k_first} taps[k] * xt[k] (row t's pre-activation; xt is
   the row K - 1 steps before t). One pass per tap keeps each loop a plain vector loop. */
static void conv_row(const float *xt, long x_stride, const float *taps, const float *bias,
                     float *pre, long C, long K, long k_first, long c0, long c1) {
    if (K == 4 && k_first == 0) {  /* the layers' default: one pass */
        const float *x0 = xt, *x1 = xt + x_stride, *x2 = x1 + x_stride, *x3 = x2 + x_stride;
        const float *t0 = taps, *t1 = taps + C, *t2 = t1 + C, *t3 = t2 + C;
        #pragma omp simd
        for (long c = c0; c < c1; ++c)
            pre[c] = (bias ? bias[c] : 0.0f) + t0[c] * x0[c] + t1[c] * x1[c] + t2[c] * x2[c]
                     + t3[c] * x3[c];
        return;
    }
    #pragma omp simd
    for (long c = c0; c < c1; ++c) pre[c] = bias ? bias[c] : 0.0f;
    for (long k = k_first; k < K; ++k) {
        const float *tk = taps + k * C, *xk = xt + k * x_stride;
        #pragma omp simd
        for (long c = c0; c < c1; ++c) pre[c] += tk[c] * xk[c];
    }
}

/* out[t, c] = silu(bias[c] + sum_{k<K} taps[k, c] * x[t - K + 1 + k, c]), inputs before
   t = 0 are zeros. taps [K, C]; bias [C] or NULL. */
void conv_silu_fwd(const float *x, long x_stride, const float *taps, const float *bias,
                   float *out, long b, long L, long C, long K, long c0, long c1) {
    for (long bi = 0; bi < b; ++bi) {
        const float *xb = x + bi * L * x_stride;
        float *ob = out + bi * L * C;
        for (long t = 0; t < L; ++t) {
            const long k_first = t >= K - 1 ? 0 : K - 1 - t;  /* taps reading x[>= 0] */
            float *ot = ob + t * C;
            const float *xt = xb + (t - (K - 1)) * x_stride;
            if (K == 4 && k_first == 0) {  /* the layers' default: conv and SiLU in one pass */
                const float *x0 = xt, *x1 = xt + x_stride, *x2 = x1 + x_stride;
                const float *x3 = x2 + x_stride;
                const float *t0 = taps, *t1 = taps + C, *t2 = t1 + C, *t3 = t2 + C;
                #pragma omp simd
                for (long c = c0; c < c1; ++c) {
                    const float pre = (bias ? bias[c] : 0.0f) + t0[c] * x0[c] + t1[c] * x1[c]
                                      + t2[c] * x2[c] + t3[c] * x3[c];
                    ot[c] = pre * sigmoidf_(pre);
                }
                continue;
            }
            conv_row(xt, x_stride, taps, bias, ot, C, K, k_first, c0, c1);
            #pragma omp simd
            for (long c = c0; c < c1; ++c) ot[c] = ot[c] * sigmoidf_(ot[c]);
        }
    }
}

/* Reverse mode of conv_silu_fwd. dout [b, L, C] with rows g_stride floats apart. Written:
   dx [b, L, C] on [c0, c1), rows dx_stride apart (a slice of the gradient of in_proj's
   output); dx may be dout itself (in place: each element of dout is read before its dx).
   Accumulated (zeroed by the caller): dtaps [K, C], dbias [C] (may be NULL) on [c0, c1).
   Per block of rows, pass 1 recomputes the pre-activation, writes dpre = dout * silu'(pre)
   into dx and accumulates dtaps, dbias; pass 2 turns dpre into dx in place, t increasing:
   dx[t] = sum_k taps[k] dpre[t + K - 1 - k] reads only rows >= t, not yet overwritten. */
#define CONV_BLOCK 64
void conv_silu_bwd(const float *x, long x_stride, const float *taps, const float *bias,
                   const float *dout, long g_stride, float *dx, long dx_stride, float *dtaps,
                   float *dbias, long b, long L, long C, long K, long c0, long c1) {
    float *acc = malloc(sizeof(float) * (size_t)C);  /* one row: pre-activation, then dx */
    for (long bi = 0; bi < b; ++bi) {
        const float *xb = x + bi * L * x_stride;
        const float *gb = dout + bi * L * g_stride;
        float *db = dx + bi * L * dx_stride;
        long done = 0;  /* rows of dx final */
        for (long t0 = 0; t0 < L; t0 += CONV_BLOCK) {
            const long t1 = t0 + CONV_BLOCK < L ? t0 + CONV_BLOCK : L;
            for (long t = t0; t < t1; ++t) {
                const long k_first = t >= K - 1 ? 0 : K - 1 - t;
                const float *xt = xb + (t - (K - 1)) * x_stride, *gt = gb + t * g_stride;
                float *dxt = db + t * dx_stride;
                if (K == 4 && k_first == 0) {  /* the default: this row's pass 1 in one loop */
                    const float *x0 = xt, *x1 = xt + x_stride, *x2 = x1 + x_stride;
                    const float *x3 = x2 + x_stride;
                    const float *t0 = taps, *t1 = taps + C, *t2 = t1 + C, *t3 = t2 + C;
                    float *d0 = dtaps, *d1 = dtaps + C, *d2 = d1 + C, *d3 = d2 + C;
                    #pragma omp simd
                    for (long c = c0; c < c1; ++c) {
                        const float pre = (bias ? bias[c] : 0.0f) + t0[c] * x0[c]
                                          + t1[c] * x1[c] + t2[c] * x2[c] + t3[c] * x3[c];
                        const float s = sigmoidf_(pre);
                        const float dpre = gt[c] * s * (1.0f + pre * (1.0f - s));
                        dxt[c] = dpre;
                        if (dbias) dbias[c] += dpre;
                        d0[c] += dpre * x0[c];
                        d1[c] += dpre * x1[c];
                        d2[c] += dpre * x2[c];
                        d3[c] += dpre * x3[c];
                    }
                    continue;
                }
                conv_row(xt, x_stride, taps, bias, acc, C, K, k_first, c0, c1);
                #pragma omp simd
                for (long c = c0; c < c1; ++c) {
                    const float pre = acc[c], s = sigmoidf_(pre);
                    dxt[c] = gt[c] * s * (1.0f + pre * (1.0f - s));
                }
                if (dbias) {
                    #pragma omp simd
                    for (long c = c0; c < c1; ++c) dbias[c] += dxt[c];
                }
                for (long k = k_first; k < K; ++k) {
                    float *dtk = dtaps + k * C;
                    const float *xk = xt + k * x_stride;
                    #pragma omp simd
                    for (long c = c0; c < c1; ++c) dtk[c] += dxt[c] * xk[c];
                }
            }
            const long end = t1 == L ? L : t1 - (K - 1);
            for (long t = done; t < end; ++t) {
                float *dxt = db + t * dx_stride;
                const long k_first = t + K - 1 < L ? 0 : t + K - L;  /* rows t + K-1-k < L */
                #pragma omp simd
                for (long c = c0; c < c1; ++c) acc[c] = 0.0f;
                for (long k = k_first; k < K; ++k) {
                    const float *tk = taps + k * C, *gk = dxt + (K - 1 - k) * dx_stride;
                    #pragma omp simd
                    for (long c = c0; c < c1; ++c) acc[c] += tk[c] * gk[c];
                }
                #pragma omp simd
                for (long c = c0; c < c1; ++c) dxt[c] = acc[c];
            }
            if (end > done) done = end;
        }
    }
    free(acc);
}

/* Gated RMSNorm per group of G channels: gated = y * silu(z),
   out = gated * rsqrt(mean_group(gated^2) + eps) * w. y, z: rows of a [rows, D] tensor
   with row strides y_stride, z_stride; w [D]; out [rows, D]; rows [r0, r1). */
void gated_rmsnorm_fwd(const float *y, long y_stride, const float *z, long z_stride,
                       const float *w, float *out, long D, long G, float eps, long r0,
                       long r1) {
    for (long r = r0; r < r1; ++r) {
        const float *yr = y + r * y_stride, *zr = z + r * z_stride;
        float *orow = out + r * D;
        for (long g0 = 0; g0 < D; g0 += G) {
            float ss = 0.0f;
            #pragma omp simd reduction(+:ss)
            for (long i = g0; i < g0 + G; ++i) {
                const float gated = yr[i] * zr[i] * sigmoidf_(zr[i]);
                orow[i] = gated;
                ss += gated * gated;
            }
            const float rstd = 1.0f / sqrtf(ss / (float)G + eps);
            #pragma omp simd
            for (long i = g0; i < g0 + G; ++i) orow[i] *= rstd * w[i];
        }
    }
}

/* Reverse mode of gated_rmsnorm_fwd. dout [rows, D]. Written on rows [r0, r1): dy
   [rows, D] and dz, rows dz_stride floats apart, and, unless NULL, the forward's output
   again into out [rows, D] (for the gradient of a projection after the norm).
   Accumulated: dw [D] (this range's partial, zeroed by the caller). With
   u = w dout: dgated = rstd u - rstd^3 gated mean_group(u gated). */
void gated_rmsnorm_bwd(const float *y, long y_stride, const float *z, long z_stride,
                       const float *w, const float *dout, float *dy, float *dz, long dz_stride,
                       float *out, float *dw, long D, long G, float eps, long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
        const float *yr = y + r * y_stride, *zr = z + r * z_stride, *gr = dout + r * D;
        float *dyr = dy + r * D, *dzr = dz + r * dz_stride, *orow = out ? out + r * D : NULL;
        for (long g0 = 0; g0 < D; g0 += G) {
            float ss = 0.0f, dot = 0.0f;
            #pragma omp simd reduction(+:ss, dot)
            for (long i = g0; i < g0 + G; ++i) {
                const float gated = yr[i] * zr[i] * sigmoidf_(zr[i]);
                ss += gated * gated;
                dot += w[i] * gr[i] * gated;
            }
            const float rstd = 1.0f / sqrtf(ss / (float)G + eps);
            const float coef = rstd * rstd * rstd * dot / (float)G;
            #pragma omp simd
            for (long i = g0; i < g0 + G; ++i) {
                const float s = sigmoidf_(zr[i]), silu = zr[i] * s;
                const float gated = yr[i] * silu;
                const float dgated = rstd * w[i] * gr[i] - coef * gated;
                dw[i] += gr[i] * gated * rstd;
                if (orow) orow[i] = gated * (rstd * w[i]);  /* as the forward */
                dyr[i] = dgated * silu;
                dzr[i] = dgated * yr[i] * s * (1.0f + zr[i] * (1.0f - s));
            }
        }
    }
}

/* Matrix product for the layer's projections: C[i, j] = bias[j] + sum_k A[i, k] B[k, j]
   (bias may be NULL: 0), or C[i, j] += sum_k A[i, k] B[k, j] with `accumulate`. A is read
   as A[i * ars + k * acs] (any strides: A or a transposed view of it), B and C have unit
   stride along j and rows brs, crs floats apart. Each call covers rows [m0, m1) of C and
   the terms k in [k0, k1), so that calls on disjoint row ranges never write the same
   element, and calls on disjoint k ranges can sum into their own partial C.
   Register tiles of GEMM_MR rows x up to 4 vectors of 16 columns: per k, the tile's B
   vectors are loaded once and each A element broadcast once, 24 fused multiply-adds per 10
   loads. The torch matmul (MKL) takes its AVX2 path on this project's AMD CPUs; these
   tiles use the full vector width where -march=native offers it. */
typedef float gv16 __attribute__((vector_size(64)));
typedef float gv16u __attribute__((vector_size(64), aligned(4)));  /* unaligned access */
#define GEMM_MR 6
#define GEMM_NR 64

static inline __attribute__((always_inline)) gv16 load_cols(const float *p, long rem,
                                                            const int partial) {
    if (!partial) return *(const gv16u *)p;
    gv16 v = {0};
    for (long c = 0; c < rem; ++c) v[c] = p[c];
    return v;
}

/* One MR x (NV vectors) tile over K terms; the last vector holds `rem` (1..16) columns when
   `partial`. MR, NV and partial are constants once inlined, so acc stays in registers. */
static inline __attribute__((always_inline)) void gemm_tile(
        const float *A, long ars, long acs, const float *B, long brs, float *C, long crs,
        const float *bias, long K, int accumulate, long rem, const int MR, const int NV,
        const int partial) {
    gv16 acc[GEMM_MR][4];
    for (int r = 0; r < MR; ++r)
        for (int v = 0; v < NV; ++v) {
            const int p = partial && v == NV - 1;
            if (accumulate) acc[r][v] = load_cols(C + r * crs + 16 * v, rem, p);
            else if (bias) acc[r][v] = load_cols(bias + 16 * v, rem, p);
            else acc[r][v] = (gv16){0};
        }
    for (long k = 0; k < K; ++k) {
        const float *bk = B + k * brs;
        gv16 b[4];
        for (int v = 0; v < NV; ++v) b[v] = load_cols(bk + 16 * v, rem, partial && v == NV - 1);
        for (int r = 0; r < MR; ++r) {
            const float a = A[r * ars + k * acs];
            for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
        }
    }
    for (int r = 0; r < MR; ++r)
        for (int v = 0; v < NV; ++v) {
            float *cp = C + r * crs + 16 * v;
            if (partial && v == NV - 1) {
                for (long c = 0; c < rem; ++c) cp[c] = acc[r][v][c];
            } else {
                *(gv16u *)cp = acc[r][v];
            }
        }
}

#define GEMM_TILE_CASES(MR)                                                                \
    switch (nv * 2 + partial) {                                                            \
    case 2: gemm_tile(A, ars, acs, B, brs, C, crs, bias, K, acc, rem, MR, 1, 0); break;    \
    case 3: gemm_tile(A, ars, acs, B, brs, C, crs, bias, K, acc, rem, MR, 1, 1); break;    \
    case 4: gemm_tile(A, ars, acs, B, brs, C, crs, bias, K, acc, rem, MR, 2, 0); break;    \
    case 5: gemm_tile(A, ars, acs, B, brs, C, crs, bias, K, acc, rem, MR, 2, 1); break;    \
    case 6: gemm_tile(A, ars, acs, B, brs, C, crs, bias, K, acc, rem, MR, 3, 0); break;    \
    case 7: gemm_tile(A, ars, acs, B, brs, C, crs, bias, K, acc, rem, MR, 3, 1); break;    \
    case 8: gemm_tile(A, ars, acs, B, brs, C, crs, bias, K, acc, rem, MR, 4, 0); break;    \
    default: gemm_tile(A, ars, acs, B, brs, C, crs, bias, K, acc, rem, MR, 4, 1); break;   \
    }

static void gemm_block(const float *A, long ars, long acs, const float *B, long brs, float *C,
                       long crs, const float *bias, long rows, long cols, long K, int acc) {
    const long nv = (cols + 15) / 16, rem = cols - 16 * (nv - 1);
    const int partial = rem != 16;
    if (rows == GEMM_MR) {
        GEMM_TILE_CASES(GEMM_MR)
    } else {
        GEMM_TILE_CASES(1)
    }
}

void sgemm(const float *A, long ars, long acs, const float *B, long brs, float *C, long crs,
           const float *bias, long N, long accumulate, long m0, long m1, long k0, long k1) {
    if (k1 <= k0) {  /* no terms: C = bias (or 0), or unchanged */
        for (long i = m0; i < m1 && !accumulate; ++i)
            for (long j = 0; j < N; ++j) C[i * crs + j] = bias ? bias[j] : 0.0f;
        return;
    }
    /* a short K in one block; a long one (a weight gradient, K = time steps) in blocks
       whose rows of A and B stay in cache while every tile of C passes over them */
    const long kb = k1 - k0 <= 1024 ? k1 - k0 : 256;
    for (long k = k0; k < k1; k += kb) {
        const long K = k1 - k < kb ? k1 - k : kb;
        const int acc = accumulate || k > k0;
        for (long i = m0; i < m1;) {
            const long rows = m1 - i >= GEMM_MR ? GEMM_MR : 1;
            for (long j = 0; j < N; j += GEMM_NR) {
                const long cols = N - j < GEMM_NR ? N - j : GEMM_NR;
                gemm_block(A + i * ars + k * acs, ars, acs, B + k * brs + j, brs,
                           C + i * crs + j, crs, bias ? bias + j : NULL, rows, cols, K, acc);
            }
            i += rows;
        }
    }
}

/* ---- The kernels over n_ranges ranges rg[i]..rg[i + 1] at once, one per thread of the
   calling thread's OpenMP team (cbuild.PARALLEL_PRELUDE). */

void conv_silu_fwd_par(const float *x, long x_stride, const float *taps, const float *bias,
                       float *out, long b, long L, long C, long K, const long *rg,
                       long n_ranges) {
    FOR_RANGES conv_silu_fwd(x, x_stride, taps, bias, out, b, L, C, K, rg[i], rg[i + 1]);
}

void conv_silu_bwd_par(const float *x, long x_stride, const float *taps, const float *bias,
                       const float *dout, long g_stride, float *dx, long dx_stride,
                       float *dtaps, float *dbias, long b, long L, long C, long K,
                       const long *rg, long n_ranges) {
    FOR_RANGES conv_silu_bwd(x, x_stride, taps, bias, dout, g_stride, dx, dx_stride, dtaps,
                             dbias, b, L, C, K, rg[i], rg[i + 1]);
}

void gated_rmsnorm_fwd_par(const float *y, long y_stride, const float *z, long z_stride,
                           const float *w, float *out, long D, long G, float eps,
                           const long *rg, long n_ranges) {
    FOR_RANGES gated_rmsnorm_fwd(y, y_stride, z, z_stride, w, out, D, G, eps, rg[i], rg[i + 1]);
}

/* dw [n_ranges, D]: one partial per range */
void gated_rmsnorm_bwd_par(const float *y, long y_stride, const float *z, long z_stride,
                           const float *w, const float *dout, float *dy, float *dz,
                           long dz_stride, float *out, float *dw, long D, long G, float eps,
                           const long *rg, long n_ranges) {
    FOR_RANGES gated_rmsnorm_bwd(y, y_stride, z, z_stride, w, dout, dy, dz, dz_stride, out,
                                 dw + i * D, D, G, eps, rg[i], rg[i + 1]);
}

/* sgemm over the row ranges of C (every term k0..k1 of each) */
void sgemm_rows_par(const float *A, long ars, long acs, const float *B, long brs, float *C,
                    long crs, const float *bias, long N, long accumulate, const long *rg,
                    long n_ranges, long k0, long k1) {
    FOR_RANGES sgemm(A, ars, acs, B, brs, C, crs, bias, N, accumulate, rg[i], rg[i + 1], k0, k1);
}

/* sgemm over ranges of the terms: range i writes its partial product of all M rows to
   C + i * M * N (contiguous [n_ranges, M, N]) */
void sgemm_terms_par(const float *A, long ars, long acs, const float *B, long brs, float *C,
                     long M, long N, const long *rg, long n_ranges) {
    FOR_RANGES sgemm(A, ars, acs, B, brs, C + i * M * N, N, NULL, N, 0, 0, M, rg[i], rg[i + 1]);
}
