/* C kernels of the drums model (mambakit/drums/fused.py), forward and backward. First the
   full-rate ends of a band path, without a [B, C, n] tensor in memory: every per-sample
   feature is computed for one block of P patches at a time (a few KB, in L1) and reduced to
   what leaves the kernel.

   encoder:  tok[b, c, t]  = sum_j silu(a[b, c, j]) g(j - centre_t)       (raw Gaussian pool)
             a[b, c, j]    = ba[c] + sum_{i, k} wa[c, i, k] x[b, i, j + k - pad]
   decoder:  y[b, o, j]    = gate[b] (bd[o] + sum_c wd[o, c] car[b, c, j] mod[b, c, j])
             car[b, c, j]  = bc[c] + sum_{i, k} wc[c, i, k] x[b, i, j + k - pad]
             mod[b, c, j]  = scale[j] sum_t tok[b, c, t] g(j - centre_t)   (Gaussian spread)

   Sample j = m F + r (patch m, place r) and token m + q - R meet with weight w[q, r]
   (q in [0, 2R]); the caller gives the table w [2R + 1, F] (raw for the pool, normalised
   for the spread). Blocks are always whole: the caller pads the token axis to NB, the
   multiple of P at or above N, and every per-block loop runs over L = P F samples (a
   multiple of 8; with F < 32, P is one too). Layouts, all contiguous float32:
     xp   [B, CI, LP]       the input zero-padded: xp[b, i, j + k] = x[b, i, j + k - pad],
                            LP >= NB F + K - 1 (zeros past the clip too)
     tokp [B, C, NB + 2R]   tokens with R zeros in front and NB - N + R behind (decoder)
     scale [NB F]           the spread's normalisation per sample
   Samples past the clip (j >= n) are masked where they would reach a result.
   Every kernel runs batch rows [b0, b1); sums over the batch (weight gradients) go to the
   caller's per-range double buffers, so that ranges never write the same element. Its _par
   twin, the one the caller uses, takes the bounds of consecutive ranges instead and runs
   them on an OpenMP team (FOR_RANGES, cbuild.PARALLEL_PRELUDE), one range per thread. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

static inline v8 load8(const float *p) { return *(const v8u *)p; }
static inline void store8(float *p, v8 v) { *(v8u *)p = v; }
static inline v8 splat8(float x) { return (v8){x, x, x, x, x, x, x, x}; }
static inline float hsum8(v8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* Below this patch the spread and pool run over the block transposed ([F, P]: vectors of
   patches instead of vectors of the F places of one patch). */
#define SHORT_PATCH 32
/* Most taps of a conv (CI K) and tokens of the Gaussian (2R + 1) the kernels keep in
   vectors; the caller checks. */
#define MAX_TAPS 32

static inline float sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

/* out[t] = bias + sum_{i, k} weight[i K + k] xb[i LP + j0 + t + k], t < L */
static inline __attribute__((always_inline)) void conv_block(float *out, const float *xb, const float *weight, float bias, long CI,
                       long K, long LP, long j0, long L) {
    const float *x0 = xb + j0;
    for (long t = 0; t < L; t += 8) {
        v8 acc = splat8(bias);
        for (long i = 0; i < CI; ++i)
            for (long k = 0; k < K; ++k) acc += weight[i * K + k] * load8(x0 + i * LP + t + k);
        store8(out + t, acc);
    }
}

/* dw[i K + k] += sum_t g[t] xb[i LP + j0 + t + k]; returns sum_t g[t] (the bias gradient) */
static inline __attribute__((always_inline)) double conv_weight_grad(double *dw, const float *g, const float *xb, long CI, long K,
                               long LP, long j0, long L) {
    const float *x0 = xb + j0;
    v8 total = splat8(0.0f);
    for (long t = 0; t < L; t += 8) total += load8(g + t);
    for (long i = 0; i < CI; ++i) {
        v8 acc[MAX_TAPS];
        for (long k = 0; k < K; ++k) acc[k] = splat8(0.0f);
        for (long t = 0; t < L; t += 8) {
            const v8 gv = load8(g + t);
            for (long k = 0; k < K; ++k) acc[k] += gv * load8(x0 + i * LP + t + k);
        }
        for (long k = 0; k < K; ++k) dw[i * K + k] += hsum8(acc[k]);
    }
    return hsum8(total);
}

/* out[p F + r] = sum_q tp[m0 + p + q] w[q F + r], p < P: the spread of padded tokens tp over
   the block of patches from m0; work [L] scratch */
static inline __attribute__((always_inline)) void spread_block(float *out, const float *tp, const float *w, long F, long S, long m0,
                         long P, float *work) {
    if (F < SHORT_PATCH) {
        for (long r = 0; r < F; ++r) {
            for (long p = 0; p < P; p += 8) {
                v8 acc = splat8(0.0f);
                for (long q = 0; q < S; ++q) acc += w[q * F + r] * load8(tp + m0 + q + p);
                store8(work + r * P + p, acc);
            }
        }
        for (long p = 0; p < P; ++p)
            for (long r = 0; r < F; ++r) out[p * F + r] = work[r * P + p];
        return;
    }
    for (long p = 0; p < P; ++p) {
        const float *tq = tp + m0 + p;
        for (long r = 0; r < F; r += 8) {
            v8 acc = splat8(0.0f);
            for (long q = 0; q < S; ++q) acc += tq[q] * load8(w + q * F + r);
            store8(out + p * F + r, acc);
        }
    }
}

/* acc[m0 + p + q] += sum_r w[q F + r] s[p F + r], p < P: the adjoint of spread_block; work
   [L] scratch */
static inline __attribute__((always_inline)) void pool_block(float *acc, const float *s, const float *w, long F, long S, long m0,
                       long P, float *work) {
    if (F < SHORT_PATCH) {
        for (long p = 0; p < P; ++p)
            for (long r = 0; r < F; ++r) work[r * P + p] = s[p * F + r];
        for (long q = 0; q < S; ++q) {
            float *aq = acc + m0 + q;
            for (long p = 0; p < P; p += 8) {
                v8 part = load8(aq + p);
                for (long r = 0; r < F; ++r) part += w[q * F + r] * load8(work + r * P + p);
                store8(aq + p, part);
            }
        }
        return;
    }
    v8 dots[MAX_TAPS];
    for (long p = 0; p < P; ++p) {
        for (long q = 0; q < S; ++q) dots[q] = splat8(0.0f);
        for (long r = 0; r < F; r += 8) {
            const v8 sv = load8(s + p * F + r);
            for (long q = 0; q < S; ++q) dots[q] += sv * load8(w + q * F + r);
        }
        for (long q = 0; q < S; ++q) acc[m0 + p + q] += hsum8(dots[q]);
    }
}

/* zero s[t] for the samples j0 + t >= n */
static void mask_past(float *s, long j0, long L, long n) {
    for (long t = n - j0 > 0 ? n - j0 : 0; t < L; ++t) s[t] = 0.0f;
}

static inline __attribute__((always_inline)) void enc_fwd_body(const float *xp, const float *wa, const float *ba, const float *w, float *tok,
             long b0, long b1, long C, long CI, long K, long LP, long F, long R, long N, long n,
             long P) {
    const long S = 2 * R + 1, L = P * F, NB = (N + P - 1) / P * P;
    float *s = malloc((size_t)L * sizeof(float));
    float *work = malloc((size_t)L * sizeof(float));
    float *acc = malloc((size_t)(NB + 2 * R) * sizeof(float));
    for (long b = b0; b < b1; ++b)
        for (long c = 0; c < C; ++c) {
            const float *xb = xp + b * CI * LP;
            memset(acc, 0, (size_t)(NB + 2 * R) * sizeof(float));
            for (long m0 = 0; m0 < N; m0 += P) {
                const long j0 = m0 * F;
                conv_block(s, xb, wa + c * CI * K, ba[c], CI, K, LP, j0, L);
#pragma omp simd
                for (long t = 0; t < L; ++t) s[t] = s[t] * sigmoid(s[t]);
                mask_past(s, j0, L, n);
                pool_block(acc, s, w, F, S, m0, P, work);
            }
            memcpy(tok + (b * C + c) * N, acc + R, (size_t)N * sizeof(float));
        }
    free(s);
    free(work);
    free(acc);
}

/* gtok [B, C, N]: the gradient of tok; dwa [C, CI K], dba [C]: this range's partial sums */
static inline __attribute__((always_inline)) void enc_bwd_body(const float *xp, const float *wa, const float *ba, const float *w,
             const float *gtok, double *dwa, double *dba, long b0, long b1, long C, long CI,
             long K, long LP, long F, long R, long N, long n, long P) {
    const long S = 2 * R + 1, L = P * F, NB = (N + P - 1) / P * P;
    float *a = malloc((size_t)L * sizeof(float));
    float *g = malloc((size_t)L * sizeof(float));
    float *work = malloc((size_t)L * sizeof(float));
    float *gpad = calloc((size_t)(NB + 2 * R), sizeof(float));
    for (long b = b0; b < b1; ++b)
        for (long c = 0; c < C; ++c) {
            const float *xb = xp + b * CI * LP;
            memcpy(gpad + R, gtok + (b * C + c) * N, (size_t)N * sizeof(float));
            for (long m0 = 0; m0 < N; m0 += P) {
                const long j0 = m0 * F;
                conv_block(a, xb, wa + c * CI * K, ba[c], CI, K, LP, j0, L);
                spread_block(g, gpad, w, F, S, m0, P, work);
#pragma omp simd
                for (long t = 0; t < L; ++t) {
                    const float sg = sigmoid(a[t]);
                    g[t] *= sg * (1.0f + a[t] * (1.0f - sg));
                }
                mask_past(g, j0, L, n);
                dba[c] += conv_weight_grad(dwa + c * CI * K, g, xb, CI, K, LP, j0, L);
            }
        }
    free(a);
    free(g);
    free(work);
    free(gpad);
}

static inline __attribute__((always_inline)) void dec_fwd_body(const float *xp, const float *wc, const float *bc, const float *tokp,
             const float *wn, const float *scale, const float *wd, const float *bd,
             const float *gate, float *y, long b0, long b1, long C, long CI, long K, long LP,
             long F, long R, long N, long n, long P, long CO) {
    const long S = 2 * R + 1, L = P * F, NP = (N + P - 1) / P * P + 2 * R;
    float *prod = malloc((size_t)(C * L) * sizeof(float));
    float *mod = malloc((size_t)L * sizeof(float));
    float *work = malloc((size_t)L * sizeof(float));
    float tail[8];
    for (long b = b0; b < b1; ++b) {
        const float *xb = xp + b * CI * LP;
        const float gb = gate[b];
        for (long m0 = 0; m0 < N; m0 += P) {
            const long j0 = m0 * F, valid = n - j0 < L ? n - j0 : L;
            for (long c = 0; c < C; ++c) {
                float *pc = prod + c * L;
                conv_block(pc, xb, wc + c * CI * K, bc[c], CI, K, LP, j0, L);
                spread_block(mod, tokp + (b * C + c) * NP, wn, F, S, m0, P, work);
#pragma omp simd
                for (long t = 0; t < L; ++t) pc[t] *= mod[t] * scale[j0 + t];
            }
            for (long o = 0; o < CO; ++o) {
                float *yo = y + (b * CO + o) * n + j0;
                const float *wo = wd + o * C;
                for (long t = 0; t < valid; t += 8) {
                    v8 acc = splat8(bd[o]);
                    for (long c = 0; c < C; ++c) acc += wo[c] * load8(prod + c * L + t);
                    acc *= gb;
                    if (t + 8 <= valid) {
                        store8(yo + t, acc);
                    } else {
                        store8(tail, acc);
                        memcpy(yo + t, tail, (size_t)(valid - t) * sizeof(float));
                    }
                }
            }
        }
    }
    free(prod);
    free(mod);
    free(work);
}

/* gy [B, CO, n]: the gradient of y. Outputs: gtokp [B, C, NB + 2R] (zeroed by the caller,
   the gradient of the padded tokens), dgate [B], and this range's partial sums dwc [C, CI K],
   dbc [C], dwd [CO, C], dbd [CO]. */
static inline __attribute__((always_inline)) void dec_bwd_body(const float *xp, const float *wc, const float *bc, const float *tokp,
             const float *wn, const float *scale, const float *wd, const float *bd,
             const float *gate, const float *gy, float *gtokp, float *dgate, double *dwc,
             double *dbc, double *dwd, double *dbd, long b0, long b1, long C, long CI, long K,
             long LP, long F, long R, long N, long n, long P, long CO) {
    const long S = 2 * R + 1, L = P * F, NP = (N + P - 1) / P * P + 2 * R;
    float *gyb = malloc((size_t)(CO * L) * sizeof(float));
    float *car = malloc((size_t)L * sizeof(float));
    float *mod = malloc((size_t)L * sizeof(float));
    float *gp = malloc((size_t)L * sizeof(float));
    float *prod = malloc((size_t)L * sizeof(float));
    float *work = malloc((size_t)L * sizeof(float));
    double *M = malloc((size_t)(CO * C) * sizeof(double));
    double *sy = malloc((size_t)CO * sizeof(double));
    for (long b = b0; b < b1; ++b) {
        const float *xb = xp + b * CI * LP;
        const float gb = gate[b];
        memset(M, 0, (size_t)(CO * C) * sizeof(double));
        memset(sy, 0, (size_t)CO * sizeof(double));
        for (long m0 = 0; m0 < N; m0 += P) {
            const long j0 = m0 * F, valid = n - j0 < L ? n - j0 : L;
            for (long o = 0; o < CO; ++o) {
                float *go = gyb + o * L;
                memcpy(go, gy + (b * CO + o) * n + j0, (size_t)valid * sizeof(float));
                mask_past(go, j0, L, n);
                v8 total = splat8(0.0f);
                for (long t = 0; t < L; t += 8) total += load8(go + t);
                sy[o] += hsum8(total);
            }
            for (long c = 0; c < C; ++c) {
                conv_block(car, xb, wc + c * CI * K, bc[c], CI, K, LP, j0, L);
                spread_block(mod, tokp + (b * C + c) * NP, wn, F, S, m0, P, work);
#pragma omp simd
                for (long t = 0; t < L; ++t) {
                    mod[t] *= scale[j0 + t];  /* the modulation as the product saw it */
                    prod[t] = car[t] * mod[t];
                }
                /* gp: the gradient of the product; M: the decoder's weight gradient; the
                   output channels 8 at a time, so that each block of gy is read once */
                long o0 = 0;
                for (; o0 + 8 <= CO; o0 += 8) {
                    v8 m[8];
                    for (int u = 0; u < 8; ++u) m[u] = splat8(0.0f);
                    for (long t = 0; t < L; t += 8) {
                        const v8 pv = load8(prod + t);
                        v8 gpv = o0 ? load8(gp + t) : splat8(0.0f);
                        for (int u = 0; u < 8; ++u) {
                            const v8 gv = load8(gyb + (o0 + u) * L + t);
                            m[u] += gv * pv;
                            gpv += wd[(o0 + u) * C + c] * gv;
                        }
                        store8(gp + t, gpv);
                    }
                    for (int u = 0; u < 8; ++u) M[(o0 + u) * C + c] += hsum8(m[u]);
                }
                for (; o0 < CO; ++o0) {
                    v8 m = splat8(0.0f);
                    for (long t = 0; t < L; t += 8) {
                        const v8 gv = load8(gyb + o0 * L + t);
                        m += gv * load8(prod + t);
                        store8(gp + t, (o0 ? load8(gp + t) : splat8(0.0f)) + wd[o0 * C + c] * gv);
                    }
                    M[o0 * C + c] += hsum8(m);
                }
                /* car <- the gradient of the spread (before the scale), mod <- that of the
                   carrier */
#pragma omp simd
                for (long t = 0; t < L; ++t) {
                    const float gs = gb * gp[t];
                    const float gcar = gs * mod[t];
                    car[t] = gs * car[t] * scale[j0 + t];
                    mod[t] = gcar;
                }
                dbc[c] += conv_weight_grad(dwc + c * CI * K, mod, xb, CI, K, LP, j0, L);
                pool_block(gtokp + (b * C + c) * NP, car, wn, F, S, m0, P, work);
            }
        }
        double dg = 0.0;
        for (long o = 0; o < CO; ++o) {
            for (long c = 0; c < C; ++c) {
                dg += wd[o * C + c] * M[o * C + c];
                dwd[o * C + c] += gb * M[o * C + c];
            }
            dg += bd[o] * sy[o];
            dbd[o] += gb * sy[o];
        }
        dgate[b] = (float)dg;
    }
    free(gyb);
    free(car);
    free(mod);
    free(gp);
    free(prod);
    free(work);
    free(M);
    free(sy);
}

void enc_fwd(const float *xp, const float *wa, const float *ba, const float *w, float *tok,
             long b0, long b1, long C, long CI, long K, long LP, long F, long R, long N, long n,
             long P) {
    if (CI == 3 && K == 5 && R == 4) /* the drums model's sizes, unrolled */
        enc_fwd_body(xp, wa, ba, w, tok, b0, b1, C, 3, 5, LP, F, 4, N, n, P);
    else
        enc_fwd_body(xp, wa, ba, w, tok, b0, b1, C, CI, K, LP, F, R, N, n, P);
}

void enc_bwd(const float *xp, const float *wa, const float *ba, const float *w,
             const float *gtok, double *dwa, double *dba, long b0, long b1, long C, long CI,
             long K, long LP, long F, long R, long N, long n, long P) {
    if (CI == 3 && K == 5 && R == 4) /* the drums model's sizes, unrolled */
        enc_bwd_body(xp, wa, ba, w, gtok, dwa, dba, b0, b1, C, 3, 5, LP, F, 4, N, n, P);
    else
        enc_bwd_body(xp, wa, ba, w, gtok, dwa, dba, b0, b1, C, CI, K, LP, F, R, N, n, P);
}

/* k_par(..., rg, n_ranges, ...) runs k on the ranges [rg[i], rg[i + 1]), i < n_ranges, one
   per thread of the team; range i's partial sums go to slab i of each partial buffer. */
void enc_fwd_par(const float *xp, const float *wa, const float *ba, const float *w, float *tok,
                 const long *rg, long n_ranges, long C, long CI, long K, long LP, long F,
                 long R, long N, long n, long P) {
    FOR_RANGES enc_fwd(xp, wa, ba, w, tok, rg[i], rg[i + 1], C, CI, K, LP, F, R, N, n, P);
}

void enc_bwd_par(const float *xp, const float *wa, const float *ba, const float *w,
                 const float *gtok, double *dwa, double *dba, const long *rg, long n_ranges,
                 long C, long CI, long K, long LP, long F, long R, long N, long n, long P) {
    FOR_RANGES enc_bwd(xp, wa, ba, w, gtok, dwa + i * C * CI * K, dba + i * C, rg[i], rg[i + 1],
                       C, CI, K, LP, F, R, N, n, P);
}

void dec_fwd(const float *xp, const float *wc, const float *bc, const float *tokp,
             const float *wn, const float *scale, const float *wd, const float *bd,
             const float *gate, float *y, long b0, long b1, long C, long CI, long K, long LP,
             long F, long R, long N, long n, long P, long CO) {
    if (CI == 3 && K == 5 && R == 4) /* the drums model's sizes, unrolled */
        dec_fwd_body(xp, wc, bc, tokp, wn, scale, wd, bd, gate, y, b0, b1, C, 3, 5, LP, F, 4, N, n, P, CO);
    else
        dec_fwd_body(xp, wc, bc, tokp, wn, scale, wd, bd, gate, y, b0, b1, C, CI, K, LP, F, R, N, n, P, CO);
}

void dec_bwd(const float *xp, const float *wc, const float *bc, const float *tokp,
             const float *wn, const float *scale, const float *wd, const float *bd,
             const float *gate, const float *gy, float *gtokp, float *dgate, double *dwc,
             double *dbc, double *dwd, double *dbd, long b0, long b1, long C, long CI, long K,
             long LP, long F, long R, long N, long n, long P, long CO) {
    if (CI == 3 && K == 5 && R == 4) /* the drums model's sizes, unrolled */
        dec_bwd_body(xp, wc, bc, tokp, wn, scale, wd, bd, gate, gy, gtokp, dgate, dwc, dbc, dwd, dbd, b0, b1, C, 3, 5, LP, F, 4, N, n, P, CO);
    else
        dec_bwd_body(xp, wc, bc, tokp, wn, scale, wd, bd, gate, gy, gtokp, dgate, dwc, dbc, dwd, dbd, b0, b1, C, CI, K, LP, F, R, N, n, P, CO);
}

void dec_fwd_par(const float *xp, const float *wc, const float *bc, const float *tokp,
                 const float *wn, const float *scale, const float *wd, const float *bd,
                 const float *gate, float *y, const long *rg, long n_ranges, long C, long CI,
                 long K, long LP, long F, long R, long N, long n, long P, long CO) {
    FOR_RANGES dec_fwd(xp, wc, bc, tokp, wn, scale, wd, bd, gate, y, rg[i], rg[i + 1], C, CI, K,
                       LP, F, R, N, n, P, CO);
}

void dec_bwd_par(const float *xp, const float *wc, const float *bc, const float *tokp,
                 const float *wn, const float *scale, const float *wd, const float *bd,
                 const float *gate, const float *gy, float *gtokp, float *dgate, double *dwc,
                 double *dbc, double *dwd, double *dbd, const long *rg, long n_ranges, long C,
                 long CI, long K, long LP, long F, long R, long N, long n, long P, long CO) {
    FOR_RANGES dec_bwd(xp, wc, bc, tokp, wn, scale, wd, bd, gate, gy, gtokp, dgate,
                       dwc + i * C * CI * K, dbc + i * C, dwd + i * CO * C, dbd + i * CO, rg[i],
                       rg[i + 1], C, CI, K, LP, F, R, N, n, P, CO);
}

/* ---- The full-rate CNN blocks: out = y + bias + conv_d(silu(y * scale + shift)) ----------

   y, out [B, C, n]; scale, shift [B, C] (the FiLM, scale = 1 + g); weight [C, C, 3], bias
   [C]; a 3-tap convolution of dilation d with zero padding d ('same'). One block of
   CNN_BLOCK samples at a time, its input read with a halo of d samples on each side. */

#define CNN_BLOCK 256

/* buf[c][s] = silu(y[c][t0 - d + s] * scale[c] + shift[c]) (0 outside the clip) and, when
   raw is given, raw[c][s] = y[c][t0 - d + s] (0 outside), s < W */
static inline __attribute__((always_inline)) void cnn_load(float *buf, float *raw,
                                                            float *sig, const float *yb,
                                                            const float *sc, const float *sh,
                                                            long C, long n, long t0, long d,
                                                            long W) {
    for (long c = 0; c < C; ++c) {
        float *u = buf + c * W, *r = raw + c * W;
        const long j0 = t0 - d, lo = j0 < 0 ? -j0 : 0, hi = n - j0 < W ? n - j0 : W;
        for (long s = 0; s < lo; ++s) r[s] = 0.0f;
        memcpy(r + lo, yb + c * n + j0 + lo, (size_t)(hi - lo) * sizeof(float));
        for (long s = hi; s < W; ++s) r[s] = 0.0f;
        const float g = sc[c], h = sh[c];
        if (sig) { /* the backward keeps the sigmoid for the activation's derivative */
            float *sg = sig + c * W;
#pragma omp simd
            for (long s = 0; s < W; ++s) {
                const float a = r[s] * g + h;
                sg[s] = sigmoid(a);
                u[s] = a * sg[s];
            }
        } else {
#pragma omp simd
            for (long s = 0; s < W; ++s) {
                const float a = r[s] * g + h;
                u[s] = a * sigmoid(a);
            }
        }
        for (long s = 0; s < lo; ++s) u[s] = 0.0f;
        for (long s = hi; s < W; ++s) u[s] = 0.0f;
    }
}

static inline __attribute__((always_inline)) void cnn_fwd_body(
    const float *y, const float *scale, const float *shift, const float *weight,
    const float *bias, float *out, long b0, long b1, long C, long n, long d) {
    const long W = CNN_BLOCK + 2 * d + 8;
    float *u = malloc((size_t)(C * W) * sizeof(float));
    float *raw = malloc((size_t)(C * W) * sizeof(float));
    float tail[8];
    for (long b = b0; b < b1; ++b) {
        const float *yb = y + b * C * n;
        for (long t0 = 0; t0 < n; t0 += CNN_BLOCK) {
            const long valid = n - t0 < CNN_BLOCK ? n - t0 : CNN_BLOCK;
            cnn_load(u, raw, NULL, yb, scale + b * C, shift + b * C, C, n, t0, d, W);
            for (long o = 0; o < C; ++o) {
                const float *wo = weight + o * C * 3;
                float *oo = out + (b * C + o) * n + t0;
                for (long t = 0; t < valid; t += 8) {
                    v8 acc = load8(raw + o * W + d + t) + bias[o];
                    for (long c = 0; c < C; ++c)
                        for (long k = 0; k < 3; ++k)
                            acc += wo[c * 3 + k] * load8(u + c * W + t + k * d);
                    if (t + 8 <= valid) {
                        store8(oo + t, acc);
                    } else {
                        store8(tail, acc);
                        memcpy(oo + t, tail, (size_t)(valid - t) * sizeof(float));
                    }
                }
            }
        }
    }
    free(u);
    free(raw);
}

/* gout [B, C, n] -> gy [B, C, n], dscale / dshift [B, C], and this range's partial sums
   dweight [C, C, 3], dbias [C] */
static inline __attribute__((always_inline)) void cnn_bwd_body(
    const float *y, const float *scale, const float *shift, const float *weight,
    const float *gout, float *gy, float *dscale, float *dshift, double *dweight, double *dbias,
    long b0, long b1, long C, long n, long d) {
    const long W = CNN_BLOCK + 2 * d + 8;
    float *u = malloc((size_t)(C * W) * sizeof(float));
    float *raw = malloc((size_t)(C * W) * sizeof(float));
    float *g = malloc((size_t)(C * W) * sizeof(float));
    float *gu = malloc((size_t)CNN_BLOCK * sizeof(float));
    float *sig = malloc((size_t)(C * W) * sizeof(float));
    double *dsc = malloc((size_t)C * sizeof(double)), *dsh = malloc((size_t)C * sizeof(double));
    for (long b = b0; b < b1; ++b) {
        const float *yb = y + b * C * n, *sc = scale + b * C, *sh = shift + b * C;
        for (long c = 0; c < C; ++c) dsc[c] = dsh[c] = 0.0;
        for (long t0 = 0; t0 < n; t0 += CNN_BLOCK) {
            const long valid = n - t0 < CNN_BLOCK ? n - t0 : CNN_BLOCK;
            cnn_load(u, raw, sig, yb, sc, sh, C, n, t0, d, W);
            /* the output gradient with its halo: the load without the activation */
            for (long o = 0; o < C; ++o) {
                float *go = g + o * W;
                const long j0 = t0 - d, lo = j0 < 0 ? -j0 : 0, hi = n - j0 < W ? n - j0 : W;
                for (long s = 0; s < lo; ++s) go[s] = 0.0f;
                memcpy(go + lo, gout + (b * C + o) * n + j0 + lo,
                       (size_t)(hi - lo) * sizeof(float));
                for (long s = hi; s < W; ++s) go[s] = 0.0f;
            }
            for (long o = 0; o < C; ++o) {  /* weight and bias gradients */
                const float *go = g + o * W + d;
                v8 gsum = splat8(0.0f);
                for (long t = 0; t < CNN_BLOCK; t += 8) gsum += load8(go + t);
                dbias[o] += hsum8(gsum);
                for (long c = 0; c < C; ++c) {
                    v8 a0 = splat8(0.0f), a1 = splat8(0.0f), a2 = splat8(0.0f);
                    const float *uc = u + c * W;
                    for (long t = 0; t < CNN_BLOCK; t += 8) {
                        const v8 gv = load8(go + t);
                        a0 += gv * load8(uc + t);
                        a1 += gv * load8(uc + t + d);
                        a2 += gv * load8(uc + t + 2 * d);
                    }
                    double *dw = dweight + (o * C + c) * 3;
                    dw[0] += hsum8(a0);
                    dw[1] += hsum8(a1);
                    dw[2] += hsum8(a2);
                }
            }
            for (long c = 0; c < C; ++c) {  /* the input's gradient */
                for (long t = 0; t < CNN_BLOCK; t += 8) {
                    v8 acc = splat8(0.0f);
                    for (long o = 0; o < C; ++o)
                        for (long k = 0; k < 3; ++k)
                            acc += weight[(o * C + c) * 3 + k] * load8(g + o * W + t + (2 - k) * d);
                    store8(gu + t, acc);
                }
                const float *yc = raw + c * W + d, *go = g + c * W + d, *sgc = sig + c * W + d;
                const float gc = sc[c], hc = sh[c];
                float *gyc = gy + (b * C + c) * n + t0;
                float s_sc = 0.0f, s_sh = 0.0f;
#pragma omp simd reduction(+ : s_sc, s_sh)
                for (long t = 0; t < valid; ++t) {
                    const float a = yc[t] * gc + hc, sg = sgc[t];
                    const float ga = gu[t] * sg * (1.0f + a * (1.0f - sg));
                    gyc[t] = go[t] + ga * gc;
                    s_sc += ga * yc[t];
                    s_sh += ga;
                }
                dsc[c] += s_sc;
                dsh[c] += s_sh;
            }
        }
        for (long c = 0; c < C; ++c) {
            dscale[b * C + c] = (float)dsc[c];
            dshift[b * C + c] = (float)dsh[c];
        }
    }
    free(u);
    free(raw);
    free(g);
    free(gu);
    free(sig);
    free(dsc);
    free(dsh);
}

void cnn_fwd(const float *y, const float *scale, const float *shift, const float *weight,
             const float *bias, float *out, long b0, long b1, long C, long n, long d) {
    if (C == 8) /* the tiny preset, unrolled */
        cnn_fwd_body(y, scale, shift, weight, bias, out, b0, b1, 8, n, d);
    else
        cnn_fwd_body(y, scale, shift, weight, bias, out, b0, b1, C, n, d);
}

void cnn_bwd(const float *y, const float *scale, const float *shift, const float *weight,
             const float *gout, float *gy, float *dscale, float *dshift, double *dweight,
             double *dbias, long b0, long b1, long C, long n, long d) {
    if (C == 8)
        cnn_bwd_body(y, scale, shift, weight, gout, gy, dscale, dshift, dweight, dbias, b0, b1,
                     8, n, d);
    else
        cnn_bwd_body(y, scale, shift, weight, gout, gy, dscale, dshift, dweight, dbias, b0, b1,
                     C, n, d);
}

void cnn_fwd_par(const float *y, const float *scale, const float *shift, const float *weight,
                 const float *bias, float *out, const long *rg, long n_ranges, long C, long n,
                 long d) {
    FOR_RANGES cnn_fwd(y, scale, shift, weight, bias, out, rg[i], rg[i + 1], C, n, d);
}

void cnn_bwd_par(const float *y, const float *scale, const float *shift, const float *weight,
                 const float *gout, float *gy, float *dscale, float *dshift, double *dweight,
                 double *dbias, const long *rg, long n_ranges, long C, long n, long d) {
    FOR_RANGES cnn_bwd(y, scale, shift, weight, gout, gy, dscale, dshift, dweight + i * C * C * 3,
                       dbias + i * C, rg[i], rg[i + 1], C, n, d);
}

/* ---- The head: out = w2 silu(conv(x)) + b2 ---------------------------------------------

   x [B, C, n]; conv: 3 taps, padding 1 (weight w1 [C, C, 3], bias b1 [C]); w2 [CO, C], b2
   [CO]; out [B, CO, n]. Blocks of CNN_BLOCK samples; the input is read with a halo of 2
   (the backward needs the activations one sample beyond the block on each side). */

/* buf[c][s] = v[c][t0 - h + s] (0 outside the clip), s < W */
static inline __attribute__((always_inline)) void load_halo(float *buf, const float *v,
                                                             long C, long n, long t0, long h,
                                                             long W) {
    for (long c = 0; c < C; ++c) {
        float *r = buf + c * W;
        const long j0 = t0 - h, lo = j0 < 0 ? -j0 : 0, hi = n - j0 < W ? n - j0 : W;
        for (long s = 0; s < lo; ++s) r[s] = 0.0f;
        memcpy(r + lo, v + c * n + j0 + lo, (size_t)(hi - lo) * sizeof(float));
        for (long s = hi; s < W; ++s) r[s] = 0.0f;
    }
}

/* a[c][s] = b1[c] + sum_{c', k} w1[c, c', k] xb[c'][s + k], s < len (multiple of 8) */
static inline __attribute__((always_inline)) void head_conv(float *a, const float *xb,
                                                             const float *w1, const float *b1,
                                                             long C, long W, long len) {
    for (long c = 0; c < C; ++c)
        for (long s = 0; s < len; s += 8) {
            v8 acc = splat8(b1[c]);
            for (long ci = 0; ci < C; ++ci)
                for (long k = 0; k < 3; ++k)
                    acc += w1[(c * C + ci) * 3 + k] * load8(xb + ci * W + s + k);
            store8(a + c * W + s, acc);
        }
}

static inline __attribute__((always_inline)) void head_fwd_body(
    const float *x, const float *w1, const float *b1, const float *w2, const float *b2,
    float *out, long b0, long b1_, long C, long CO, long n) {
    const long W = CNN_BLOCK + 16;
    float *xb = malloc((size_t)(C * W) * sizeof(float));
    float *a = malloc((size_t)(C * W) * sizeof(float));
    float tail[8];
    for (long b = b0; b < b1_; ++b)
        for (long t0 = 0; t0 < n; t0 += CNN_BLOCK) {
            const long valid = n - t0 < CNN_BLOCK ? n - t0 : CNN_BLOCK;
            load_halo(xb, x + b * C * n, C, n, t0, 1, W);
            head_conv(a, xb, w1, b1, C, W, CNN_BLOCK);
            for (long c = 0; c < C; ++c) {
                float *ac = a + c * W;
#pragma omp simd
                for (long s = 0; s < CNN_BLOCK; ++s) ac[s] = ac[s] * sigmoid(ac[s]);
            }
            for (long o = 0; o < CO; ++o) {
                float *oo = out + (b * CO + o) * n + t0;
                for (long t = 0; t < valid; t += 8) {
                    v8 acc = splat8(b2[o]);
                    for (long c = 0; c < C; ++c) acc += w2[o * C + c] * load8(a + c * W + t);
                    if (t + 8 <= valid) {
                        store8(oo + t, acc);
                    } else {
                        store8(tail, acc);
                        memcpy(oo + t, tail, (size_t)(valid - t) * sizeof(float));
                    }
                }
            }
        }
    free(xb);
    free(a);
}

/* gout [B, CO, n] -> gx [B, C, n] and this range's partial sums dw1 [C, C, 3], db1 [C],
   dw2 [CO, C], db2 [CO] */
static inline __attribute__((always_inline)) void head_bwd_body(
    const float *x, const float *w1, const float *b1, const float *w2, const float *gout,
    float *gx, double *dw1, double *db1, double *dw2, double *db2, long b0, long b1_, long C,
    long CO, long n) {
    const long W = CNN_BLOCK + 16, len = CNN_BLOCK + 8;  /* activations on [t0 - 1, ...) */
    float *xb = malloc((size_t)(C * W) * sizeof(float));
    float *a = malloc((size_t)(C * W) * sizeof(float));
    float *u = malloc((size_t)(C * W) * sizeof(float));
    float *gb = malloc((size_t)(CO * W) * sizeof(float));
    for (long b = b0; b < b1_; ++b)
        for (long t0 = 0; t0 < n; t0 += CNN_BLOCK) {
            const long valid = n - t0 < CNN_BLOCK ? n - t0 : CNN_BLOCK;
            load_halo(xb, x + b * C * n, C, n, t0, 2, W);
            load_halo(gb, gout + b * CO * n, CO, n, t0, 1, W);  /* 0 outside: no output */
            head_conv(a, xb, w1, b1, C, W, len);
            for (long c = 0; c < C; ++c) {  /* u: the activation; a <- its input's gradient */
                float *ac = a + c * W, *uc = u + c * W;
                for (long s = 0; s < len; s += 8) {
                    v8 gu = splat8(0.0f);
                    for (long o = 0; o < CO; ++o) gu += w2[o * C + c] * load8(gb + o * W + s);
                    store8(uc + s, gu);
                }
#pragma omp simd
                for (long s = 0; s < len; ++s) {
                    const float av = ac[s], sg = sigmoid(av), gu = uc[s];
                    uc[s] = av * sg;
                    ac[s] = gu * sg * (1.0f + av * (1.0f - sg));
                }
            }
            /* the samples of the block are s = 1 ... valid in the activations' frame */
            for (long o = 0; o < CO; ++o) {
                const float *go = gb + o * W + 1;
                v8 gs = splat8(0.0f);
                for (long t = 0; t < CNN_BLOCK; t += 8) gs += load8(go + t);
                db2[o] += hsum8(gs);
                for (long c = 0; c < C; ++c) {
                    v8 d = splat8(0.0f);
                    for (long t = 0; t < CNN_BLOCK; t += 8) d += load8(go + t) * load8(u + c * W + 1 + t);
                    dw2[o * C + c] += hsum8(d);
                }
            }
            for (long c = 0; c < C; ++c) {
                const float *gc = a + c * W + 1;
                v8 gs = splat8(0.0f);
                for (long t = 0; t < CNN_BLOCK; t += 8) gs += load8(gc + t);
                db1[c] += hsum8(gs);
                for (long ci = 0; ci < C; ++ci) {
                    v8 d0 = splat8(0.0f), d1 = splat8(0.0f), d2 = splat8(0.0f);
                    const float *xc = xb + ci * W + 1;
                    for (long t = 0; t < CNN_BLOCK; t += 8) {
                        const v8 g = load8(gc + t);
                        d0 += g * load8(xc + t);
                        d1 += g * load8(xc + t + 1);
                        d2 += g * load8(xc + t + 2);
                    }
                    double *dw = dw1 + (c * C + ci) * 3;
                    dw[0] += hsum8(d0);
                    dw[1] += hsum8(d1);
                    dw[2] += hsum8(d2);
                }
            }
            for (long ci = 0; ci < C; ++ci) {  /* the input's gradient */
                float *gxc = gx + (b * C + ci) * n + t0;
                for (long t = 0; t < CNN_BLOCK; t += 8) {
                    v8 acc = splat8(0.0f);
                    for (long c = 0; c < C; ++c)
                        for (long k = 0; k < 3; ++k)
                            acc += w1[(c * C + ci) * 3 + k] * load8(a + c * W + t + 2 - k);
                    float tmp[8];
                    store8(tmp, acc);
                    const long m = valid - t < 8 ? valid - t : 8;
                    if (m > 0) memcpy(gxc + t, tmp, (size_t)m * sizeof(float));
                }
            }
        }
    free(xb);
    free(a);
    free(u);
    free(gb);
}

void head_fwd(const float *x, const float *w1, const float *b1, const float *w2,
              const float *b2, float *out, long b0, long b1_, long C, long CO, long n) {
    if (C == 8 && CO == 2)
        head_fwd_body(x, w1, b1, w2, b2, out, b0, b1_, 8, 2, n);
    else
        head_fwd_body(x, w1, b1, w2, b2, out, b0, b1_, C, CO, n);
}

void head_bwd(const float *x, const float *w1, const float *b1, const float *w2,
              const float *gout, float *gx, double *dw1, double *db1, double *dw2, double *db2,
              long b0, long b1_, long C, long CO, long n) {
    if (C == 8 && CO == 2)
        head_bwd_body(x, w1, b1, w2, gout, gx, dw1, db1, dw2, db2, b0, b1_, 8, 2, n);
    else
        head_bwd_body(x, w1, b1, w2, gout, gx, dw1, db1, dw2, db2, b0, b1_, C, CO, n);
}

void head_fwd_par(const float *x, const float *w1, const float *b1, const float *w2,
                  const float *b2, float *out, const long *rg, long n_ranges, long C, long CO,
                  long n) {
    FOR_RANGES head_fwd(x, w1, b1, w2, b2, out, rg[i], rg[i + 1], C, CO, n);
}

void head_bwd_par(const float *x, const float *w1, const float *b1, const float *w2,
                  const float *gout, float *gx, double *dw1, double *db1, double *dw2,
                  double *db2, const long *rg, long n_ranges, long C, long CO, long n) {
    FOR_RANGES head_bwd(x, w1, b1, w2, gout, gx, dw1 + i * C * C * 3, db1 + i * C,
                        dw2 + i * CO * C, db2 + i * CO, rg[i], rg[i + 1], C, CO, n);
}

/* ---- The Gaussian resampling pair on [rows, n] (model.smooth_upsample / smooth_downsample)

   pool:   out[r, t] = sum_{j < n} x[r, j] scale[j] g(j - centre_t)       (scale may be NULL)
   spread: out[r, j] = scale[j] sum_t tokp[r, t] g(j - centre_t), j < n   (scale may be NULL)
   with the table w [2R + 1, F] and the blocks of P patches of the band ends; tokp [rows,
   NB + 2R] the tokens padded as for dec_fwd, scale [NB F]. */

static inline __attribute__((always_inline)) void gauss_pool_body(
    const float *x, const float *scale, const float *w, float *out, long r0, long r1, long F,
    long R, long N, long n, long P) {
    const long S = 2 * R + 1, L = P * F, NB = (N + P - 1) / P * P;
    float *s = malloc((size_t)L * sizeof(float));
    float *work = malloc((size_t)L * sizeof(float));
    float *acc = malloc((size_t)(NB + 2 * R) * sizeof(float));
    for (long row = r0; row < r1; ++row) {
        const float *xr = x + row * n;
        memset(acc, 0, (size_t)(NB + 2 * R) * sizeof(float));
        for (long m0 = 0; m0 < N; m0 += P) {
            const long j0 = m0 * F, valid = n - j0 < L ? n - j0 : L;
            memcpy(s, xr + j0, (size_t)valid * sizeof(float));
            mask_past(s, j0, L, n);
            if (scale) {
#pragma omp simd
                for (long t = 0; t < L; ++t) s[t] *= scale[j0 + t];
            }
            pool_block(acc, s, w, F, S, m0, P, work);
        }
        memcpy(out + row * N, acc + R, (size_t)N * sizeof(float));
    }
    free(s);
    free(work);
    free(acc);
}

static inline __attribute__((always_inline)) void gauss_spread_body(
    const float *tokp, const float *scale, const float *w, float *out, long r0, long r1,
    long F, long R, long N, long n, long P) {
    const long S = 2 * R + 1, L = P * F, NP = (N + P - 1) / P * P + 2 * R;
    float *s = malloc((size_t)L * sizeof(float));
    float *work = malloc((size_t)L * sizeof(float));
    for (long row = r0; row < r1; ++row)
        for (long m0 = 0; m0 < N; m0 += P) {
            const long j0 = m0 * F, valid = n - j0 < L ? n - j0 : L;
            spread_block(s, tokp + row * NP, w, F, S, m0, P, work);
            if (scale) {
#pragma omp simd
                for (long t = 0; t < L; ++t) s[t] *= scale[j0 + t];
            }
            if (valid > 0) memcpy(out + row * n + j0, s, (size_t)valid * sizeof(float));
        }
    free(s);
    free(work);
}

void gauss_pool(const float *x, const float *scale, const float *w, float *out, long r0,
                long r1, long F, long R, long N, long n, long P) {
    if (R == 4)
        gauss_pool_body(x, scale, w, out, r0, r1, F, 4, N, n, P);
    else
        gauss_pool_body(x, scale, w, out, r0, r1, F, R, N, n, P);
}

void gauss_spread(const float *tokp, const float *scale, const float *w, float *out, long r0,
                  long r1, long F, long R, long N, long n, long P) {
    if (R == 4)
        gauss_spread_body(tokp, scale, w, out, r0, r1, F, 4, N, n, P);
    else
        gauss_spread_body(tokp, scale, w, out, r0, r1, F, R, N, n, P);
}

void gauss_pool_par(const float *x, const float *scale, const float *w, float *out,
                    const long *rg, long n_ranges, long F, long R, long N, long n, long P) {
    FOR_RANGES gauss_pool(x, scale, w, out, rg[i], rg[i + 1], F, R, N, n, P);
}

void gauss_spread_par(const float *tokp, const float *scale, const float *w, float *out,
                      const long *rg, long n_ranges, long F, long R, long N, long n, long P) {
    FOR_RANGES gauss_spread(tokp, scale, w, out, rg[i], rg[i + 1], F, R, N, n, P);
}

/* ---- The gated mix out = h + gate[b] (y - h) on [B, M] (torch.lerp with a per-row weight) */

void mix_fwd(const float *h, const float *y, const float *gate, float *out, long b0, long b1,
             long M) {
    for (long b = b0; b < b1; ++b) {
        const float g = gate[b], *hb = h + b * M, *yb = y + b * M;
        float *ob = out + b * M;
#pragma omp simd
        for (long i = 0; i < M; ++i) ob[i] = hb[i] + g * (yb[i] - hb[i]);
    }
}

/* gout [B, M] -> gh = gout (1 - gate), gy = gout gate, dgate[b] = sum gout (y - h) */
void mix_bwd(const float *h, const float *y, const float *gate, const float *gout, float *gh,
             float *gy, float *dgate, long b0, long b1, long M) {
    for (long b = b0; b < b1; ++b) {
        const float g = gate[b], *hb = h + b * M, *yb = y + b * M, *gb = gout + b * M;
        float *ghb = gh + b * M, *gyb = gy + b * M;
        double total = 0.0;
        for (long i0 = 0; i0 < M; i0 += 4096) {  /* float sums over 4096, then double */
            const long i1 = i0 + 4096 < M ? i0 + 4096 : M;
            float part = 0.0f;
#pragma omp simd reduction(+ : part)
            for (long i = i0; i < i1; ++i) {
                const float gv = gb[i];
                ghb[i] = gv - g * gv;
                gyb[i] = g * gv;
                part += gv * (yb[i] - hb[i]);
            }
            total += part;
        }
        dgate[b] = (float)total;
    }
}

void mix_fwd_par(const float *h, const float *y, const float *gate, float *out,
                 const long *rg, long n_ranges, long M) {
    FOR_RANGES mix_fwd(h, y, gate, out, rg[i], rg[i + 1], M);
}

void mix_bwd_par(const float *h, const float *y, const float *gate, const float *gout,
                 float *gh, float *gy, float *dgate, const long *rg, long n_ranges, long M) {
    FOR_RANGES mix_bwd(h, y, gate, gout, gh, gy, dgate, rg[i], rg[i + 1], M);
}
