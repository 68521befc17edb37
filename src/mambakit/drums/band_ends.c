/* The full-rate ends of a drums band path (mambakit/drums/band_ends.py), forward and backward,
   without a [B, C, n] tensor in memory: every per-sample feature is computed for one block of
   patches at a time (a few KB, in L1) and reduced to what leaves the kernel.

   encoder:  tok[b, c, t]  = sum_j silu(a[b, c, j]) g(j - centre_t)       (raw Gaussian pool)
             a[b, c, j]    = ba[c] + sum_{i, k} wa[c, i, k] x[b, i, j + k - pad]
   decoder:  y[b, o, j]    = gate[b] (bd[o] + sum_c wd[o, c] car[b, c, j] mod[b, c, j])
             car[b, c, j]  = bc[c] + sum_{i, k} wc[c, i, k] x[b, i, j + k - pad]
             mod[b, c, j]  = scale[j] sum_t tok[b, c, t] g(j - centre_t)   (Gaussian spread)

   Sample j = m F + r (patch m, place r) and token m + q - R meet with weight w[q, r]
   (q in [0, 2R]); the caller gives the table w [2R + 1, F] (raw for the pool, normalised
   for the spread). Layouts, all contiguous float32:
     xp   [B, CI, LP]       the input zero-padded: xp[b, i, j + k] = x[b, i, j + k - pad],
                            LP >= N F + K - 1 (zeros past the clip too)
     tokp [B, C, N + 2R]    tokens with R zeros on each side (decoder)
     scale [N F]            the spread's normalisation per sample
   Every function runs batch rows [b0, b1); sums over the batch (weight gradients) go to the
   caller's per-range double buffers, so that ranges never write the same element. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Patches per block: at least 256 samples, so that the loops over a block's samples
   vectorise and the sums over a block (weight gradients) are long. */
static long patches_per_block(long F) { return F >= 256 ? 1 : 256 / F; }

/* Below this patch the spread and pool run over the block transposed ([F, P]: the loops
   vectorise over patches instead of over the F places of one patch). */
#define SHORT_PATCH 16

static inline float sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

/* out[t] = bias + sum_{i, k} weight[i K + k] xb[i LP + j0 + t + k], t < len */
static void conv_block(float *out, const float *xb, const float *weight, float bias, long CI,
                       long K, long LP, long j0, long len) {
    for (long t = 0; t < len; ++t) out[t] = bias;
    for (long i = 0; i < CI; ++i)
        for (long k = 0; k < K; ++k) {
            const float wv = weight[i * K + k];
            const float *xr = xb + i * LP + j0 + k;
#pragma omp simd
            for (long t = 0; t < len; ++t) out[t] += wv * xr[t];
        }
}

/* out[p F + r] = sum_q tp[m0 + p + q] w[q F + r]: the spread of padded tokens tp over np
   patches starting at m0; work [F np] scratch */
static void spread_block(float *out, const float *tp, const float *w, long F, long S, long m0,
                         long np, float *work) {
    if (F < SHORT_PATCH) {
        for (long r = 0; r < F; ++r) {
            float *o = work + r * np;
            for (long p = 0; p < np; ++p) o[p] = 0.0f;
            for (long q = 0; q < S; ++q) {
                const float wv = w[q * F + r], *tq = tp + m0 + q;
#pragma omp simd
                for (long p = 0; p < np; ++p) o[p] += wv * tq[p];
            }
        }
        for (long p = 0; p < np; ++p)
            for (long r = 0; r < F; ++r) out[p * F + r] = work[r * np + p];
        return;
    }
    for (long p = 0; p < np; ++p) {
        float *o = out + p * F;
        for (long r = 0; r < F; ++r) o[r] = 0.0f;
        for (long q = 0; q < S; ++q) {
            const float tv = tp[m0 + p + q];
            const float *wq = w + q * F;
#pragma omp simd
            for (long r = 0; r < F; ++r) o[r] += tv * wq[r];
        }
    }
}

/* acc[m0 + p + q] += sum_r w[q F + r] s[p F + r]: the adjoint of spread_block; work
   [(F + 1) np] scratch */
static void pool_block(float *acc, const float *s, const float *w, long F, long S, long m0,
                       long np, float *work) {
    if (F < SHORT_PATCH) {
        float *sT = work, *part = work + F * np;
        for (long p = 0; p < np; ++p)
            for (long r = 0; r < F; ++r) sT[r * np + p] = s[p * F + r];
        for (long q = 0; q < S; ++q) {
            for (long p = 0; p < np; ++p) part[p] = 0.0f;
            for (long r = 0; r < F; ++r) {
                const float wv = w[q * F + r], *sr = sT + r * np;
#pragma omp simd
                for (long p = 0; p < np; ++p) part[p] += wv * sr[p];
            }
            float *aq = acc + m0 + q;
#pragma omp simd
            for (long p = 0; p < np; ++p) aq[p] += part[p];
        }
        return;
    }
    for (long p = 0; p < np; ++p)
        for (long q = 0; q < S; ++q) {
            const float *wq = w + q * F, *sp = s + p * F;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (long r = 0; r < F; ++r) dot += wq[r] * sp[r];
            acc[m0 + p + q] += dot;
        }
}

/* dw[i K + k] += sum_t g[t] xb[i LP + j0 + t + k]; returns sum_t g[t] (the bias gradient) */
static double conv_weight_grad(double *dw, const float *g, const float *xb, long CI, long K,
                               long LP, long j0, long len) {
    for (long i = 0; i < CI; ++i)
        for (long k = 0; k < K; ++k) {
            const float *xr = xb + i * LP + j0 + k;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (long t = 0; t < len; ++t) dot += g[t] * xr[t];
            dw[i * K + k] += dot;
        }
    float total = 0.0f;
#pragma omp simd reduction(+ : total)
    for (long t = 0; t < len; ++t) total += g[t];
    return total;
}

void enc_fwd(const float *xp, const float *wa, const float *ba, const float *w, float *tok,
             long b0, long b1, long C, long CI, long K, long LP, long F, long R, long N, long n) {
    const long S = 2 * R + 1, P = patches_per_block(F), L = P * F;
    float *s = malloc((size_t)L * sizeof(float));
    float *work = malloc((size_t)(L + P) * sizeof(float));
    float *acc = malloc((size_t)(N + 2 * R) * sizeof(float));
    for (long b = b0; b < b1; ++b)
        for (long c = 0; c < C; ++c) {
            const float *xb = xp + b * CI * LP;
            memset(acc, 0, (size_t)(N + 2 * R) * sizeof(float));
            for (long m0 = 0; m0 < N; m0 += P) {
                const long np = N - m0 < P ? N - m0 : P, len = np * F, j0 = m0 * F;
                conv_block(s, xb, wa + c * CI * K, ba[c], CI, K, LP, j0, len);
#pragma omp simd
                for (long t = 0; t < len; ++t) s[t] = s[t] * sigmoid(s[t]);
                for (long t = n - j0 > 0 ? n - j0 : 0; t < len; ++t) s[t] = 0.0f;  /* past n */
                pool_block(acc, s, w, F, S, m0, np, work);
            }
            memcpy(tok + (b * C + c) * N, acc + R, (size_t)N * sizeof(float));
        }
    free(s);
    free(acc);
    free(work);
}

/* gtok [B, C, N]: the gradient of tok; dwa [C, CI K], dba [C]: this range's partial sums */
void enc_bwd(const float *xp, const float *wa, const float *ba, const float *w,
             const float *gtok, double *dwa, double *dba, long b0, long b1, long C, long CI,
             long K, long LP, long F, long R, long N, long n) {
    const long S = 2 * R + 1, P = patches_per_block(F), L = P * F;
    float *a = malloc((size_t)L * sizeof(float));
    float *work = malloc((size_t)(L + P) * sizeof(float));
    float *g = malloc((size_t)L * sizeof(float));
    float *gpad = calloc((size_t)(N + 2 * R), sizeof(float));
    for (long b = b0; b < b1; ++b)
        for (long c = 0; c < C; ++c) {
            const float *xb = xp + b * CI * LP;
            memcpy(gpad + R, gtok + (b * C + c) * N, (size_t)N * sizeof(float));
            for (long m0 = 0; m0 < N; m0 += P) {
                const long np = N - m0 < P ? N - m0 : P, len = np * F, j0 = m0 * F;
                conv_block(a, xb, wa + c * CI * K, ba[c], CI, K, LP, j0, len);
                spread_block(g, gpad, w, F, S, m0, np, work);
#pragma omp simd
                for (long t = 0; t < len; ++t) {
                    const float sg = sigmoid(a[t]);
                    g[t] *= sg * (1.0f + a[t] * (1.0f - sg));
                }
                for (long t = n - j0 > 0 ? n - j0 : 0; t < len; ++t) g[t] = 0.0f;
                dba[c] += conv_weight_grad(dwa + c * CI * K, g, xb, CI, K, LP, j0, len);
            }
        }
    free(a);
    free(g);
    free(gpad);
    free(work);
}

void dec_fwd(const float *xp, const float *wc, const float *bc, const float *tokp,
             const float *wn, const float *scale, const float *wd, const float *bd,
             const float *gate, float *y, long b0, long b1, long C, long CI, long K, long LP,
             long F, long R, long N, long n, long CO) {
    const long S = 2 * R + 1, P = patches_per_block(F), L = P * F, NP = N + 2 * R;
    float *acc = malloc((size_t)(CO * L) * sizeof(float));
    float *work = malloc((size_t)(L + P) * sizeof(float));
    float *car = malloc((size_t)L * sizeof(float));
    float *mod = malloc((size_t)L * sizeof(float));
    for (long b = b0; b < b1; ++b) {
        const float *xb = xp + b * CI * LP;
        for (long m0 = 0; m0 < N; m0 += P) {
            const long np = N - m0 < P ? N - m0 : P, len = np * F, j0 = m0 * F;
            memset(acc, 0, (size_t)(CO * L) * sizeof(float));
            for (long c = 0; c < C; ++c) {
                conv_block(car, xb, wc + c * CI * K, bc[c], CI, K, LP, j0, len);
                spread_block(mod, tokp + (b * C + c) * NP, wn, F, S, m0, np, work);
#pragma omp simd
                for (long t = 0; t < len; ++t) car[t] *= mod[t] * scale[j0 + t];
                for (long o = 0; o < CO; ++o) {
                    const float wv = wd[o * C + c];
                    float *ao = acc + o * L;
#pragma omp simd
                    for (long t = 0; t < len; ++t) ao[t] += wv * car[t];
                }
            }
            const long valid = n - j0 < len ? n - j0 : len;
            for (long o = 0; o < CO; ++o) {
                float *yo = y + (b * CO + o) * n + j0;
                const float *ao = acc + o * L;
                const float gb = gate[b], bo = bd[o];
#pragma omp simd
                for (long t = 0; t < valid; ++t) yo[t] = gb * (ao[t] + bo);
            }
        }
    }
    free(acc);
    free(car);
    free(mod);
    free(work);
}

/* gy [B, CO, n]: the gradient of y. Outputs: gtokp [B, C, N + 2R] (zeroed by the caller,
   the gradient of the padded tokens), dgate [B], and this range's partial sums dwc [C, CI K],
   dbc [C], dwd [CO, C], dbd [CO]. */
void dec_bwd(const float *xp, const float *wc, const float *bc, const float *tokp,
             const float *wn, const float *scale, const float *wd, const float *bd,
             const float *gate, const float *gy, float *gtokp, float *dgate, double *dwc,
             double *dbc, double *dwd, double *dbd, long b0, long b1, long C, long CI, long K,
             long LP, long F, long R, long N, long n, long CO) {
    const long S = 2 * R + 1, P = patches_per_block(F), L = P * F, NP = N + 2 * R;
    float *gyb = malloc((size_t)(CO * L) * sizeof(float));
    float *work = malloc((size_t)(L + P) * sizeof(float));
    float *car = malloc((size_t)L * sizeof(float));
    float *mod = malloc((size_t)L * sizeof(float));
    float *prod = malloc((size_t)L * sizeof(float));
    float *gp = malloc((size_t)L * sizeof(float));
    double *M = malloc((size_t)(CO * C) * sizeof(double));
    double *sy = malloc((size_t)CO * sizeof(double));
    for (long b = b0; b < b1; ++b) {
        const float *xb = xp + b * CI * LP;
        const float gb = gate[b];
        memset(M, 0, (size_t)(CO * C) * sizeof(double));
        memset(sy, 0, (size_t)CO * sizeof(double));
        for (long m0 = 0; m0 < N; m0 += P) {
            const long np = N - m0 < P ? N - m0 : P, len = np * F, j0 = m0 * F;
            const long valid = n - j0 < len ? n - j0 : len;
            for (long o = 0; o < CO; ++o) {
                float *go = gyb + o * L;
                memcpy(go, gy + (b * CO + o) * n + j0, (size_t)valid * sizeof(float));
                for (long t = valid; t < len; ++t) go[t] = 0.0f;
                float total = 0.0f;
#pragma omp simd reduction(+ : total)
                for (long t = 0; t < len; ++t) total += go[t];
                sy[o] += total;
            }
            for (long c = 0; c < C; ++c) {
                conv_block(car, xb, wc + c * CI * K, bc[c], CI, K, LP, j0, len);
                spread_block(mod, tokp + (b * C + c) * NP, wn, F, S, m0, np, work);
#pragma omp simd
                for (long t = 0; t < len; ++t) {
                    mod[t] *= scale[j0 + t];
                    prod[t] = car[t] * mod[t];
                    gp[t] = 0.0f;
                }
                for (long o = 0; o < CO; ++o) {
                    const float wv = gb * wd[o * C + c];
                    const float *go = gyb + o * L;
                    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                    for (long t = 0; t < len; ++t) {
                        dot += go[t] * prod[t];
                        gp[t] += wv * go[t];
                    }
                    M[o * C + c] += dot;
                }
                /* gp: the gradient of the product; car <- that of the spread (before the
                   scale), mod <- that of the carrier */
#pragma omp simd
                for (long t = 0; t < len; ++t) {
                    const float gcar = gp[t] * mod[t];
                    car[t] = gp[t] * car[t] * scale[j0 + t];
                    mod[t] = gcar;
                }
                dbc[c] += conv_weight_grad(dwc + c * CI * K, mod, xb, CI, K, LP, j0, len);
                pool_block(gtokp + (b * C + c) * NP, car, wn, F, S, m0, np, work);
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
    free(prod);
    free(gp);
    free(M);
    free(sy);
    free(work);
}
