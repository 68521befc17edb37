"""Fused C kernels for the scans (Mamba-1 and Mamba-2) on CPU, forward and backward, built on
first use.

The chunked PyTorch scan (``mambakit.ssm.ops._selective_scan_chunked``) makes several
passes over ``[L, d_inner, d_state]`` tensors; the recurrence itself only needs the
``[d_inner, d_state]`` state, a few KB that stay in the L1 cache. These kernels run the
per-step recurrence of :func:`~mambakit.ssm.ops.selective_scan_ref` exactly, in one pass::

    h[c, k] = exp(dt[t, c] * A[c, k]) * h[c, k] + dt[t, c] * u[t, c] * B[t, k]
    y[t, c] = sum_k h[c, k] * C[t, k] + D[c] * u[t, c]

with the ``d_state`` loop vectorised (``#pragma omp simd``, glibc's vector ``expf``, within a
few ulp of the scalar one), channels split between threads (each thread owns a channel
range for the whole sequence and every batch row, so there is no synchronisation per step;
the ranges run as one OpenMP team, torch's own thread pool: :mod:`~mambakit.ssm.cbuild`).
The SSD forward runs on tiles of 16 channels where the head width allows, its state held
``d_state``-major so that ``y_t`` sums over the state in vectors of channels; its inputs
``x``, ``B``, ``C`` may be row-strided slices of one tensor (the layer's conv output),
read in place.

Training (:class:`_FusedScan`, used whenever a gradient is needed): the forward also keeps
the state entering every ``K = 64``-th step; the backward walks the chunks of ``K`` steps
from the end, recomputes each chunk's states from its checkpoint (a few KB per channel,
in L1) and runs the adjoint recurrence of the scan backwards,
``g_t = C_t dy_t + a_{t+1} g_{t+1}`` (``g = dL/dh``, ``a_t = exp(dt_t A)``), accumulating
``dx, ddt, dA, dB, dC, dD`` and ``dL/dh0``: exact reverse-mode, O(L / K) saved states.
Sums over channels (``dB``, ``dC``; for SSD also ``ddt``, ``dA``, ``dD``) go to one
buffer per thread, added up after the call. The SSD backward takes four channels of a head
through each step together (four dependency chains in flight, one update of ``dB_t``,
``dC_t`` per four channels).

It is plain C (no PyTorch headers), compiled once with the system C compiler and loaded
with :mod:`ctypes` (:func:`mambakit.ssm.cbuild.load_library`, which caches the build under
``~/.cache/mambakit/kernels``), which releases the GIL during the call. :func:`available`
says whether that worked; ``selective_scan(backend="auto")`` falls back to the PyTorch path
when it did not.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from mambakit.ssm.cbuild import KernelLibrary, range_bounds

__all__ = ["available", "fused_scan", "unavailable_reason"]


_SOURCE = r"""
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Every array is contiguous float32. Each function runs channels [c0, c1) of every batch
   row, so that calls on disjoint channel ranges never write the same element, except the
   reductions over channels, which go to the caller's per-range partial buffers.
   chk (may be NULL) [b, ceil(L / K), channels, n]: the state entering every K-th step. */

/* Row bi of out [b, channels, n] on channels [c0, c1), set to row bi of init (zeros when
   init is NULL): the starting state of a forward, or the starting adjoint of a backward. */
static float *start_row(float *out, const float *init, long bi, long channels, long n,
                        long c0, long c1) {
    float *row = out + bi * channels * n;
    for (long i = c0 * n; i < c1 * n; ++i) row[i] = init ? init[bi * channels * n + i] : 0.0f;
    return row;
}

static void save_checkpoint(float *chk, const float *s, long bi, long t, long L, long K,
                            long channels, long n, long c0, long c1) {
    if (chk && t % K == 0) {
        const long nchk = (L + K - 1) / K;
        memcpy(chk + ((bi * nchk + t / K) * channels + c0) * n, s + c0 * n,
               (size_t)((c1 - c0) * n) * sizeof(float));
    }
}

/* Mamba-1. u, delta, y [b, L, d]; A [d, n]; B, C [b, L, n]; D [d] or NULL;
   h0 (may be NULL: zero state), hT [b, d, n]; hT holds the running state. */
void selective_scan_fwd(const float *u, const float *delta, const float *A, const float *B,
                        const float *C, const float *D, const float *h0, float *y, float *hT,
                        float *chk, long b, long L, long d, long n, long K, long c0, long c1) {
    for (long bi = 0; bi < b; ++bi) {
        float *s = start_row(hT, h0, bi, d, n, c0, c1);
        for (long t = 0; t < L; ++t) {
            save_checkpoint(chk, s, bi, t, L, K, d, n, c0, c1);
            const long row = bi * L + t;
            const float *ut = u + row * d, *dtt = delta + row * d;
            const float *Bt = B + row * n, *Ct = C + row * n;
            float *yt = y + row * d;
            for (long c = c0; c < c1; ++c) {
                const float dtc = dtt[c], xc = dtc * ut[c];
                const float *Ac = A + c * n;
                float *sc = s + c * n;
                float acc = 0.0f;
                #pragma omp simd reduction(+:acc)
                for (long k = 0; k < n; ++k) {
                    const float v = expf(dtc * Ac[k]) * sc[k] + xc * Bt[k];
                    sc[k] = v;
                    acc += v * Ct[k];
                }
                yt[c] = D ? acc + D[c] * ut[c] : acc;
            }
        }
    }
}

/* Reverse mode of selective_scan_fwd from its checkpoints. dy [b, L, d]; dhT [b, d, n] or
   NULL. Written: du, ddelta [b, L, d] and dh0 [b, d, n] on channels [c0, c1). Accumulated
   (the caller zeroes them): dA [d, n], dD [d] on [c0, c1), and this range's partials
   dB, dC [b, L, n]. Per chunk of K steps and channel, the states are recomputed from the
   checkpoint, then the adjoint g = dL/dh runs backwards:
   g_t = C_t dy_t + a_{t+1} g_{t+1}, a_t = exp(dt_t A). */
void selective_scan_bwd(const float *u, const float *delta, const float *A, const float *B,
                        const float *C, const float *D, const float *chk, const float *dy,
                        const float *dhT, float *du, float *ddelta, float *dA, float *dB,
                        float *dC, float *dD, float *dh0, long b, long L, long d, long n,
                        long K, long c0, long c1) {
    const long nchk = (L + K - 1) / K;
    float *hbuf = malloc(sizeof(float) * (size_t)((K + 1) * n));
    for (long bi = 0; bi < b; ++bi) {
        float *g = start_row(dh0, dhT, bi, d, n, c0, c1);  /* the adjoint; ends as dL/dh0 */
        for (long j = nchk - 1; j >= 0; --j) {
            const long t0 = j * K, m = (t0 + K < L ? t0 + K : L) - t0;
            for (long c = c0; c < c1; ++c) {
                const float *Ac = A + c * n;
                float *gc = g + c * n, *dAc = dA + c * n;
                memcpy(hbuf, chk + ((bi * nchk + j) * d + c) * n, sizeof(float) * (size_t)n);
                for (long i = 0; i < m; ++i) {
                    const long row = bi * L + t0 + i;
                    const float dtc = delta[row * d + c], xc = dtc * u[row * d + c];
                    const float *Bt = B + row * n, *prev = hbuf + i * n;
                    float *next = hbuf + (i + 1) * n;
                    #pragma omp simd
                    for (long k = 0; k < n; ++k) next[k] = expf(dtc * Ac[k]) * prev[k] + xc * Bt[k];
                }
                for (long i = m - 1; i >= 0; --i) {
                    const long row = bi * L + t0 + i;
                    const float dtc = delta[row * d + c], uc = u[row * d + c];
                    const float xc = dtc * uc, dyc = dy[row * d + c];
                    const float *Bt = B + row * n, *Ct = C + row * n;
                    const float *prev = hbuf + i * n, *cur = hbuf + (i + 1) * n;
                    float *dBt = dB + row * n, *dCt = dC + row * n;
                    float dxc = 0.0f, ddt = 0.0f;
                    #pragma omp simd reduction(+:dxc, ddt)
                    for (long k = 0; k < n; ++k) {
                        const float a = expf(dtc * Ac[k]);
                        const float gk = gc[k] + dyc * Ct[k];
                        const float dlog = gk * prev[k] * a;  /* dL/d(dt A) */
                        dCt[k] += dyc * cur[k];
                        dBt[k] += xc * gk;
                        dxc += gk * Bt[k];
                        ddt += dlog * Ac[k];
                        dAc[k] += dlog * dtc;
                        gc[k] = gk * a;
                    }
                    du[row * d + c] = dtc * dxc + (D ? D[c] * dyc : 0.0f);
                    ddelta[row * d + c] = uc * dxc + ddt;
                    if (D) dD[c] += dyc * uc;
                }
            }
        }
    }
    free(hbuf);
}

/* ssd_scan_fwd on tiles of 16 channels (p, c0, c1 multiples of 16): the running state of
   the range kept k-major, S[k][c - c0], so that y_t = h_t C_t accumulates over k in a
   vector of 16 channels (no horizontal sum per channel and step, as the channel-major
   loop below needs). Checkpoints and the final state are written channel-major. */
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  /* unaligned access */
#define TILE 16
static void ssd_fwd_tiles(const float *x, const float *dt, const float *A, const float *B,
                          const float *C, const float *D, const float *h0, float *y,
                          float *hT, float *chk, long b, long L, long h, long p, long g,
                          long n, long xs, long bcs, long K, long c0, long c1) {
    const long hp = h * p, heads_per_group = h / g, W = c1 - c0, nchk = (L + K - 1) / K;
    float *S = malloc(sizeof(float) * (size_t)(n * W));
    for (long bi = 0; bi < b; ++bi) {
        for (long c = c0; c < c1; ++c)
            for (long k = 0; k < n; ++k)
                S[k * W + c - c0] = h0 ? h0[(bi * hp + c) * n + k] : 0.0f;
        for (long t = 0; t < L; ++t) {
            if (chk && t % K == 0) {
                float *ct = chk + (bi * nchk + t / K) * hp * n;
                for (long c = c0; c < c1; ++c)
                    for (long k = 0; k < n; ++k) ct[c * n + k] = S[k * W + c - c0];
            }
            const long row = bi * L + t;
            const float *xt = x + row * xs, *dtt = dt + row * h;
            float *yt = y + row * hp;
            long head = -1;
            float step = 0.0f, decay = 0.0f, Dh = 0.0f;
            const float *Bt = B, *Ct = C;
            for (long c = c0; c < c1; c += TILE) {
                if (c / p != head) {
                    head = c / p;
                    step = dtt[head];
                    decay = expf(step * A[head]);
                    Dh = D ? D[head] : 0.0f;
                    const long gi = head / heads_per_group;
                    Bt = B + row * bcs + gi * n;
                    Ct = C + row * bcs + gi * n;
                }
                const v16 xv = *(const v16u *)(xt + c), dxv = xv * step;
                v16 acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
                float *sc = S + (c - c0);
                long k = 0;
                for (; k + 4 <= n; k += 4) {  /* four independent accumulators */
                    v16 s0 = *(v16u *)(sc + k * W), s1 = *(v16u *)(sc + (k + 1) * W);
                    v16 s2 = *(v16u *)(sc + (k + 2) * W), s3 = *(v16u *)(sc + (k + 3) * W);
                    s0 = s0 * decay + dxv * Bt[k];
                    s1 = s1 * decay + dxv * Bt[k + 1];
                    s2 = s2 * decay + dxv * Bt[k + 2];
                    s3 = s3 * decay + dxv * Bt[k + 3];
                    *(v16u *)(sc + k * W) = s0;
                    *(v16u *)(sc + (k + 1) * W) = s1;
                    *(v16u *)(sc + (k + 2) * W) = s2;
                    *(v16u *)(sc + (k + 3) * W) = s3;
                    acc0 += s0 * Ct[k];
                    acc1 += s1 * Ct[k + 1];
                    acc2 += s2 * Ct[k + 2];
                    acc3 += s3 * Ct[k + 3];
                }
                for (; k < n; ++k) {
                    v16 s0 = *(v16u *)(sc + k * W);
                    s0 = s0 * decay + dxv * Bt[k];
                    *(v16u *)(sc + k * W) = s0;
                    acc0 += s0 * Ct[k];
                }
                *(v16u *)(yt + c) = (acc0 + acc1) + (acc2 + acc3) + xv * Dh;
            }
        }
        for (long c = c0; c < c1; ++c)
            for (long k = 0; k < n; ++k) hT[(bi * hp + c) * n + k] = S[k * W + c - c0];
    }
    free(S);
}

/* SSD (Mamba-2): scalar decay per head. Channel c of the h * p channels is head c / p;
   x [b, L, h * p] with rows xs floats apart (a slice of a wider tensor; batch rows L * xs
   apart), y [b, L, h * p]; dt [b, L, h]; A, D [h] (D may be NULL); B, C [b, L, g, n] with
   rows bcs floats apart, head hh reading group hh / (h / g); h0, hT [b, h * p, n]. */
void ssd_scan_fwd(const float *x, const float *dt, const float *A, const float *B,
                  const float *C, const float *D, const float *h0, float *y, float *hT,
                  float *chk, long b, long L, long h, long p, long g, long n, long xs, long bcs,
                  long K, long c0, long c1) {
    if (p % TILE == 0 && c0 % TILE == 0 && c1 % TILE == 0) {
        ssd_fwd_tiles(x, dt, A, B, C, D, h0, y, hT, chk, b, L, h, p, g, n, xs, bcs, K, c0, c1);
        return;
    }
    const long hp = h * p, heads_per_group = h / g;
    for (long bi = 0; bi < b; ++bi) {
        float *s = start_row(hT, h0, bi, hp, n, c0, c1);
        for (long t = 0; t < L; ++t) {
            save_checkpoint(chk, s, bi, t, L, K, hp, n, c0, c1);
            const long row = bi * L + t;
            const float *xt = x + row * xs, *dtt = dt + row * h;
            float *yt = y + row * hp;
            for (long c = c0; c < c1;) {
                const long hh = c / p, end = (hh + 1) * p < c1 ? (hh + 1) * p : c1;
                const float step = dtt[hh], decay = expf(step * A[hh]);
                const long gi = hh / heads_per_group;
                const float *Bt = B + row * bcs + gi * n, *Ct = C + row * bcs + gi * n;
                for (; c < end; ++c) {
                    const float xc = step * xt[c];
                    float *sc = s + c * n;
                    float acc = 0.0f;
                    #pragma omp simd reduction(+:acc)
                    for (long k = 0; k < n; ++k) {
                        const float v = decay * sc[k] + xc * Bt[k];
                        sc[k] = v;
                        acc += v * Ct[k];
                    }
                    yt[c] = D ? acc + D[hh] * xt[c] : acc;
                }
            }
        }
    }
}

/* One chunk of ssd_scan_bwd for channels [c, c + CB) of head hh (CB = 1 or 4, a constant
   once inlined): the states of the chunk recomputed from its checkpoint, then the adjoint
   run backwards. The CB channels share B_t, C_t and the decay, so they go through each
   step together: CB independent dependency chains (g, and the recomputed state) in flight
   instead of one, and one read-modify-write of dB_t, dC_t per CB channels. */

/* The sums of the lanes of a, b, c, d, e into out[0..4]: four of them by one tree of
   shuffles (halves added pairwise), not four separate reductions. */
static inline void hsum5(v16 a, v16 b, v16 c, v16 d, v16 e, float *out) {
    const v16 ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20,
                                           21, 22, 23)
                   + __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26,
                                             27, 28, 29, 30, 31);  /* [a: 8 | b: 8] */
    const v16 cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20,
                                           21, 22, 23)
                   + __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26,
                                             27, 28, 29, 30, 31);
    const v16 q = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19,
                                          24, 25, 26, 27)
                  + __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22,
                                            23, 28, 29, 30, 31);  /* [a: 4 | b | c | d] */
    const v16 r = q + __builtin_shufflevector(q, q, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14,
                                              15, 12, 13);
    const v16 t = r + __builtin_shufflevector(r, r, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13,
                                              12, 15, 14);
    out[0] = t[0];
    out[1] = t[4];
    out[2] = t[8];
    out[3] = t[12];
    float se = 0.0f;
    for (int i = 0; i < 16; ++i) se += e[i];
    out[4] = se;
}

/* ssd_bwd_chunk for four channels c .. c + 3 of one head, n a multiple of 16, m <= 64:
   the chunk is run one block of 16 state entries at a time. For a block, the states of
   the four channels over the chunk (4 x 65 vectors, 16 KB) are recomputed from the
   checkpoint, then the adjoint of the block runs backwards with its four vectors in
   registers; what sums over the state (dx and dL/d(decay) of each step) is accumulated
   as vectors across the blocks and reduced once per step at the end. Everything a block
   touches stays in L1. */
static void ssd_bwd_chunk4(
        const float *x, const float *dt, const float *A, const float *B, const float *C,
        const float *D, const float *start, const float *dy, float *dx, float *ddt, float *dA,
        float *dB, float *dC, float *dD, float *gst, const float *decays, long bi, long L,
        long h, long p, long g, long n, long xs, long bcs, long dxs, long t0, long m, long c) {
    const long hp = h * p, hh = c / p, gi = hh / (h / g);
    const float Ah = A[hh];
    float xcs[4 * 64], dys[4 * 64];  /* dt x and dy of the chunk's steps */
    v16 hs[65][4];                   /* the block's states entering step i, per channel */
    v16 dxv[64][4], ddv[64];         /* per step: dx, dL/d(decay) before the sum over lanes */
    for (long i = 0; i < m; ++i) {
        const long row = bi * L + t0 + i;
        for (long q = 0; q < 4; ++q) {
            xcs[4 * i + q] = dt[row * h + hh] * x[row * xs + c + q];
            dys[4 * i + q] = dy[row * hp + c + q];
        }
    }
    for (long k = 0; k < n; k += TILE) {
        v16 s0 = *(const v16u *)(start + k), s1 = *(const v16u *)(start + n + k);
        v16 s2 = *(const v16u *)(start + 2 * n + k), s3 = *(const v16u *)(start + 3 * n + k);
        hs[0][0] = s0; hs[0][1] = s1; hs[0][2] = s2; hs[0][3] = s3;
        for (long i = 0; i < m; ++i) {
            const v16 Bk = *(const v16u *)(B + (bi * L + t0 + i) * bcs + gi * n + k);
            const float decay = decays[i * h + hh];
            s0 = s0 * decay + Bk * xcs[4 * i];
            s1 = s1 * decay + Bk * xcs[4 * i + 1];
            s2 = s2 * decay + Bk * xcs[4 * i + 2];
            s3 = s3 * decay + Bk * xcs[4 * i + 3];
            hs[i + 1][0] = s0; hs[i + 1][1] = s1; hs[i + 1][2] = s2; hs[i + 1][3] = s3;
        }
        float *g0 = gst + c * n + k, *g1 = g0 + n, *g2 = g1 + n, *g3 = g2 + n;
        v16 a0 = *(v16u *)g0, a1 = *(v16u *)g1, a2 = *(v16u *)g2, a3 = *(v16u *)g3;
        for (long i = m - 1; i >= 0; --i) {
            const long row = bi * L + t0 + i;
            const float decay = decays[i * h + hh];
            const float *y4 = dys + 4 * i, *x4 = xcs + 4 * i;
            const v16 Ck = *(const v16u *)(C + row * bcs + gi * n + k);
            const v16 Bk = *(const v16u *)(B + row * bcs + gi * n + k);
            const v16 gk0 = a0 + y4[0] * Ck, gk1 = a1 + y4[1] * Ck;
            const v16 gk2 = a2 + y4[2] * Ck, gk3 = a3 + y4[3] * Ck;
            float *dCt = dC + (row * g + gi) * n + k, *dBt = dB + (row * g + gi) * n + k;
            *(v16u *)dCt += y4[0] * hs[i + 1][0] + y4[1] * hs[i + 1][1] + y4[2] * hs[i + 1][2]
                            + y4[3] * hs[i + 1][3];
            *(v16u *)dBt += x4[0] * gk0 + x4[1] * gk1 + x4[2] * gk2 + x4[3] * gk3;
            const v16 dd = gk0 * hs[i][0] + gk1 * hs[i][1] + gk2 * hs[i][2] + gk3 * hs[i][3];
            if (k == 0) {
                dxv[i][0] = gk0 * Bk; dxv[i][1] = gk1 * Bk;
                dxv[i][2] = gk2 * Bk; dxv[i][3] = gk3 * Bk;
                ddv[i] = dd;
            } else {
                dxv[i][0] += gk0 * Bk; dxv[i][1] += gk1 * Bk;
                dxv[i][2] += gk2 * Bk; dxv[i][3] += gk3 * Bk;
                ddv[i] += dd;
            }
            a0 = gk0 * decay; a1 = gk1 * decay; a2 = gk2 * decay; a3 = gk3 * decay;
        }
        *(v16u *)g0 = a0; *(v16u *)g1 = a1; *(v16u *)g2 = a2; *(v16u *)g3 = a3;
    }
    float dA_acc = 0.0f, dD_acc = 0.0f;
    for (long i = m - 1; i >= 0; --i) {
        const long row = bi * L + t0 + i;
        const float step = dt[row * h + hh], decay = decays[i * h + hh];
        float sums[5];
        hsum5(dxv[i][0], dxv[i][1], dxv[i][2], dxv[i][3], ddv[i], sums);
        const float dlog = sums[4] * decay;  /* dL/d(dt A), summed over the four channels */
        float ddt_acc = dlog * Ah;
        for (long q = 0; q < 4; ++q) {
            const float xr = x[row * xs + c + q], dyc = dys[4 * i + q];
            dx[row * dxs + c + q] = step * sums[q] + (D ? D[hh] * dyc : 0.0f);
            ddt_acc += xr * sums[q];
            dD_acc += dyc * xr;
        }
        dA_acc += dlog * step;
        ddt[row * h + hh] += ddt_acc;
    }
    dA[hh] += dA_acc;
    if (D) dD[hh] += dD_acc;
}

#define SSD_BWD_CHANNELS 4
static inline __attribute__((always_inline)) void ssd_bwd_chunk(
        const float *x, const float *dt, const float *A, const float *B, const float *C,
        const float *D, const float *chk, const float *dy, float *dx, float *ddt, float *dA,
        float *dB, float *dC, float *dD, float *gst, float *hbuf, const float *decays, long bi,
        long L, long h, long p, long g, long n, long xs, long bcs, long dxs, long K, long j,
        long t0, long m, long c, const long CB) {
    const long hp = h * p, hh = c / p, gi = hh / (h / g), nchk = (L + K - 1) / K;
    const long hstride = (K + 1) * n;  /* hbuf of channel q: hbuf + q * hstride */
    const float Ah = A[hh];
    if (CB == 4 && n % TILE == 0 && m <= 64) {
        ssd_bwd_chunk4(x, dt, A, B, C, D, chk + ((bi * nchk + j) * hp + c) * n, dy, dx, ddt,
                       dA, dB, dC, dD, gst, decays, bi, L, h, p, g, n, xs, bcs, dxs, t0, m, c);
        return;
    }
    for (long q = 0; q < CB; ++q)
        memcpy(hbuf + q * hstride, chk + ((bi * nchk + j) * hp + c + q) * n,
               sizeof(float) * (size_t)n);
    if (CB == 4 && n % TILE == 0 && m <= 64) {
        /* the states of 16 state entries of the four channels held in registers through
           the chunk: four chains through registers, none through memory */
        float xcs[4 * 64];  /* dt x of the chunk's steps (K <= 64 here) */
        for (long i = 0; i < m; ++i) {
            const long row = bi * L + t0 + i;
            for (long q = 0; q < 4; ++q) xcs[4 * i + q] = dt[row * h + hh] * x[row * xs + c + q];
        }
        for (long k = 0; k < n; k += TILE) {
            v16 s0 = *(v16u *)(hbuf + k), s1 = *(v16u *)(hbuf + hstride + k);
            v16 s2 = *(v16u *)(hbuf + 2 * hstride + k), s3 = *(v16u *)(hbuf + 3 * hstride + k);
            for (long i = 0; i < m; ++i) {
                const long row = bi * L + t0 + i;
                const v16 Bk = *(const v16u *)(B + row * bcs + gi * n + k);
                const float decay = decays[i * h + hh];
                s0 = s0 * decay + Bk * xcs[4 * i];
                s1 = s1 * decay + Bk * xcs[4 * i + 1];
                s2 = s2 * decay + Bk * xcs[4 * i + 2];
                s3 = s3 * decay + Bk * xcs[4 * i + 3];
                float *next = hbuf + (i + 1) * n + k;
                *(v16u *)next = s0;
                *(v16u *)(next + hstride) = s1;
                *(v16u *)(next + 2 * hstride) = s2;
                *(v16u *)(next + 3 * hstride) = s3;
            }
        }
    } else {
        for (long i = 0; i < m; ++i) {
            const long row = bi * L + t0 + i;
            const float step = dt[row * h + hh], decay = decays[i * h + hh];
            const float *Bt = B + row * bcs + gi * n;
            for (long q = 0; q < CB; ++q) {
                const float xc = step * x[row * xs + c + q];
                const float *prev = hbuf + q * hstride + i * n;
                float *next = hbuf + q * hstride + (i + 1) * n;
                #pragma omp simd
                for (long k = 0; k < n; ++k) next[k] = decay * prev[k] + xc * Bt[k];
            }
        }
    }
    float dA_acc[SSD_BWD_CHANNELS] = {0}, dD_acc[SSD_BWD_CHANNELS] = {0};
    for (long i = m - 1; i >= 0; --i) {
        const long row = bi * L + t0 + i;
        const float step = dt[row * h + hh], decay = decays[i * h + hh];
        const float *Bt = B + row * bcs + gi * n, *Ct = C + row * bcs + gi * n;
        float *dBt = dB + (row * g + gi) * n, *dCt = dC + (row * g + gi) * n;
        float xr[SSD_BWD_CHANNELS], xc[SSD_BWD_CHANNELS], dyc[SSD_BWD_CHANNELS];
        float dxc[SSD_BWD_CHANNELS], ddecay[SSD_BWD_CHANNELS];
        for (long q = 0; q < CB; ++q) {
            xr[q] = x[row * xs + c + q];
            xc[q] = step * xr[q];
            dyc[q] = dy[row * hp + c + q];
            dxc[q] = 0.0f;
            ddecay[q] = 0.0f;
        }
        float *g0 = gst + c * n;
        const float *h0 = hbuf + i * n;
        if (CB == 4) {
            float *g1 = g0 + n, *g2 = g1 + n, *g3 = g2 + n;
            const float *h1 = h0 + hstride, *h2 = h1 + hstride, *h3 = h2 + hstride;
            float dx0 = 0.0f, dx1 = 0.0f, dx2 = 0.0f, dx3 = 0.0f, dd = 0.0f;
            /* only the sum over the channels of dL/d(decay) is needed: one reduction */
            #pragma omp simd reduction(+:dx0, dx1, dx2, dx3, dd)
            for (long k = 0; k < n; ++k) {
                const float Ck = Ct[k], Bk = Bt[k];
                const float gk0 = g0[k] + dyc[0] * Ck, gk1 = g1[k] + dyc[1] * Ck;
                const float gk2 = g2[k] + dyc[2] * Ck, gk3 = g3[k] + dyc[3] * Ck;
                dCt[k] += dyc[0] * h0[k + n] + dyc[1] * h1[k + n] + dyc[2] * h2[k + n]
                          + dyc[3] * h3[k + n];
                dBt[k] += xc[0] * gk0 + xc[1] * gk1 + xc[2] * gk2 + xc[3] * gk3;
                dx0 += gk0 * Bk; dx1 += gk1 * Bk; dx2 += gk2 * Bk; dx3 += gk3 * Bk;
                dd += gk0 * h0[k] + gk1 * h1[k] + gk2 * h2[k] + gk3 * h3[k];
                g0[k] = gk0 * decay; g1[k] = gk1 * decay; g2[k] = gk2 * decay;
                g3[k] = gk3 * decay;
            }
            dxc[0] = dx0; dxc[1] = dx1; dxc[2] = dx2; dxc[3] = dx3;
            ddecay[0] = dd;  /* (ddecay[1..3] stay 0) */
        } else {  /* CB == 1 */
            float dx0 = 0.0f, dd0 = 0.0f;
            #pragma omp simd reduction(+:dx0, dd0)
            for (long k = 0; k < n; ++k) {
                const float gk = g0[k] + dyc[0] * Ct[k];
                dCt[k] += dyc[0] * h0[k + n];
                dBt[k] += xc[0] * gk;
                dx0 += gk * Bt[k];
                dd0 += gk * h0[k];
                g0[k] = gk * decay;
            }
            dxc[0] = dx0;
            ddecay[0] = dd0;
        }
        float ddt_acc = 0.0f;
        for (long q = 0; q < CB; ++q) {
            const float dlog = ddecay[q] * decay;  /* dL/d(dt A) */
            dx[row * dxs + c + q] = step * dxc[q] + (D ? D[hh] * dyc[q] : 0.0f);
            ddt_acc += xr[q] * dxc[q] + dlog * Ah;
            dA_acc[q] += dlog * step;
            dD_acc[q] += dyc[q] * xr[q];
        }
        ddt[row * h + hh] += ddt_acc;
    }
    for (long q = 0; q < CB; ++q) {
        dA[hh] += dA_acc[q];
        if (D) dD[hh] += dD_acc[q];
    }
}

/* Reverse mode of ssd_scan_fwd, as selective_scan_bwd. Written on channels [c0, c1):
   dx [b, L, h * p] (rows dxs floats apart), dh0 [b, h * p, n]. Accumulated into this
   range's partials: ddt [b, L, h], dB, dC [b, L, g, n] (each chunk's rows zeroed here as
   the chunk starts), dA, dD [h] (zeroed by the caller). */
void ssd_scan_bwd(const float *x, const float *dt, const float *A, const float *B,
                  const float *C, const float *D, const float *chk, const float *dy,
                  const float *dhT, float *dx, float *ddt, float *dA, float *dB, float *dC,
                  float *dD, float *dh0, long b, long L, long h, long p, long g, long n,
                  long xs, long bcs, long dxs, long K, long c0, long c1) {
    const long hp = h * p, nchk = (L + K - 1) / K;
    float *hbuf = malloc(sizeof(float) * (size_t)(SSD_BWD_CHANNELS * (K + 1) * n));
    float *decays = malloc(sizeof(float) * (size_t)(K * h));  /* the chunk's exp(dt A) */
    for (long bi = 0; bi < b; ++bi) {
        float *gst = start_row(dh0, dhT, bi, hp, n, c0, c1);  /* ends as dL/dh0 */
        for (long j = nchk - 1; j >= 0; --j) {
            const long t0 = j * K, m = (t0 + K < L ? t0 + K : L) - t0;
            for (long i = 0; i < m * h; ++i)
                decays[i] = expf(dt[(bi * L + t0) * h + i] * A[i % h]);
            /* this range's partials of the chunk's rows, every group and head, start at 0 */
            memset(ddt + (bi * L + t0) * h, 0, sizeof(float) * (size_t)(m * h));
            memset(dB + (bi * L + t0) * g * n, 0, sizeof(float) * (size_t)(m * g * n));
            memset(dC + (bi * L + t0) * g * n, 0, sizeof(float) * (size_t)(m * g * n));
            for (long c = c0; c < c1;) {
                const long head_end = (c / p + 1) * p < c1 ? (c / p + 1) * p : c1;
                if (c + SSD_BWD_CHANNELS <= head_end) {
                    ssd_bwd_chunk(x, dt, A, B, C, D, chk, dy, dx, ddt, dA, dB, dC, dD, gst,
                                  hbuf, decays, bi, L, h, p, g, n, xs, bcs, dxs, K, j, t0, m, c,
                                  SSD_BWD_CHANNELS);
                    c += SSD_BWD_CHANNELS;
                } else {
                    ssd_bwd_chunk(x, dt, A, B, C, D, chk, dy, dx, ddt, dA, dB, dC, dD, gst,
                                  hbuf, decays, bi, L, h, p, g, n, xs, bcs, dxs, K, j, t0, m, c, 1);
                    c += 1;
                }
            }
        }
    }
    free(decays);
    free(hbuf);
}

/* The kernels over n_ranges channel ranges rg[i]..rg[i + 1] at once, one per thread of the
   calling thread's OpenMP team. Backward: gradient j of (ddt, dA, dB, dC, dD) for range i is
   at its pointer + i * gs[j] (gs[j] = 0: one buffer that the ranges share, disjointly). */
#define RANGE_OF(ptr, j) ((ptr) ? (ptr) + i * gs[j] : NULL)

void selective_scan_fwd_par(const float *u, const float *delta, const float *A,
                            const float *B, const float *C, const float *D, const float *h0,
                            float *y, float *hT, float *chk, long b, long L, long d, long n,
                            long K, const long *rg, long n_ranges) {
    FOR_RANGES selective_scan_fwd(u, delta, A, B, C, D, h0, y, hT, chk, b, L, d, n, K, rg[i],
                                  rg[i + 1]);
}

void selective_scan_bwd_par(const float *u, const float *delta, const float *A,
                            const float *B, const float *C, const float *D, const float *chk,
                            const float *dy, const float *dhT, float *du, float *ddelta,
                            float *dA, float *dB, float *dC, float *dD, const long *gs,
                            float *dh0, long b, long L, long d, long n, long K, const long *rg,
                            long n_ranges) {
    FOR_RANGES selective_scan_bwd(u, delta, A, B, C, D, chk, dy, dhT, du, RANGE_OF(ddelta, 0),
                                  RANGE_OF(dA, 1), RANGE_OF(dB, 2), RANGE_OF(dC, 3),
                                  RANGE_OF(dD, 4), dh0, b, L, d, n, K, rg[i], rg[i + 1]);
}

void ssd_scan_fwd_par(const float *x, const float *dt, const float *A, const float *B,
                      const float *C, const float *D, const float *h0, float *y, float *hT,
                      float *chk, long b, long L, long h, long p, long g, long n, long xs,
                      long bcs, long K, const long *rg, long n_ranges) {
    FOR_RANGES ssd_scan_fwd(x, dt, A, B, C, D, h0, y, hT, chk, b, L, h, p, g, n, xs, bcs, K,
                            rg[i], rg[i + 1]);
}

void ssd_scan_bwd_par(const float *x, const float *dt, const float *A, const float *B,
                      const float *C, const float *D, const float *chk, const float *dy,
                      const float *dhT, float *dx, float *ddt, float *dA, float *dB, float *dC,
                      float *dD, const long *gs, float *dh0, long b, long L, long h, long p,
                      long g, long n, long xs, long bcs, long dxs, long K, const long *rg,
                      long n_ranges) {
    FOR_RANGES ssd_scan_bwd(x, dt, A, B, C, D, chk, dy, dhT, dx, RANGE_OF(ddt, 0),
                            RANGE_OF(dA, 1), RANGE_OF(dB, 2), RANGE_OF(dC, 3), RANGE_OF(dD, 4),
                            dh0, b, L, h, p, g, n, xs, bcs, dxs, K, rg[i], rg[i + 1]);
}
"""
# -fopenmp: the ranges run on torch's OpenMP team (cbuild); with -ffast-math it also lets
# glibc map expf in the simd loop to its vector version (libmvec).
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]
_SIZE_ARGS = {"selective_scan": 4, "ssd_scan": 8}
# the sizes, then K and the range bounds (rg, n_ranges); ssd_scan_bwd also takes the row
# stride of dx, and each backward the slab strides of its partial gradients (gs) before dh0
_P, _L = ctypes.c_void_p, ctypes.c_long
_SIGNATURES = {
    **{f"{kind}_fwd_par": [_P] * 10 + [_L] * (sizes + 1) + [_P, _L]
       for kind, sizes in _SIZE_ARGS.items()},
    **{f"{kind}_bwd_par": [_P] * 17 + [_L] * (sizes + (kind == "ssd_scan") + 1) + [_P, _L]
       for kind, sizes in _SIZE_ARGS.items()},
}  # fmt: skip
_KERNELS = KernelLibrary("selective_scan", _SOURCE, _SIGNATURES, _FLAGS)


# _load: compile (once, cached by source hash) and load the kernel, or None
_load = _KERNELS.load
available = _KERNELS.available
unavailable_reason = _KERNELS.unavailable_reason


def _ptr(t: Tensor | None) -> int | None:  # NULL for an absent optional argument
    return t.data_ptr() if t is not None else None


def _sizes(kind: str, x: Tensor, B: Tensor) -> tuple[list[int], int, int]:
    """The C kernel's size arguments (before ``K``), its channel count and state size ``n``."""
    if kind == "ssd_scan":  # x [b, L, h, p], B [b, L, g, n]; + the row strides of x and B, C
        b, length, h, p = x.shape
        g, n = B.shape[2:]
        return [b, length, h, p, g, n, x.stride(1), B.stride(1)], h * p, n
    b, length, d = x.shape  # selective_scan: u [b, L, d], B [b, L, n]
    return [b, length, d, B.shape[-1]], d, B.shape[-1]


def _scan_forward(
    kind: str,
    inputs: tuple[Tensor | None, ...],
    keep_checkpoints: bool,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, tuple[Tensor | None, ...]]:
    """Run ``{kind}_fwd`` on ``inputs`` = ``(x, dt, A, B, C, D, h0)``; ``y`` is written into
    ``out`` when given (contiguous float32 of the shape of ``x``).

    Returns ``y`` (the shape of ``x``), the final state (``[b, d, n]`` or
    ``[b, h, p, n]``), the checkpoints ``[b, ceil(L / K), channels, n]`` (``None`` unless
    ``keep_checkpoints``) and the contiguous float32 inputs the kernel read.
    """
    lib = _require()
    if kind == "ssd_scan":  # x, B, C may be row-strided views (slices of the conv output)
        x, B, C = _prep_rows(inputs[0]), _prep_rows(inputs[3]), _prep_rows(inputs[4])
        if B.stride(1) != C.stride(1):
            B, C = B.contiguous(), C.contiguous()
        dt, A, D, h0 = (_prep(inputs[i]) for i in (1, 2, 5, 6))
        prepped = (x, dt, A, B, C, D, h0)
    else:
        prepped = tuple(_prep(t) for t in inputs)
    x, B = prepped[0], prepped[3]
    sizes, channels, n = _sizes(kind, x, B)
    b, length = sizes[:2]
    y = torch.empty(x.shape, dtype=torch.float32) if out is None else out
    state = torch.empty(*x.shape[:1], *x.shape[2:], n, dtype=torch.float32)
    chk = None
    if keep_checkpoints:
        chk = torch.empty(b, -(-length // _CHECKPOINT_STEPS), channels, n, dtype=torch.float32)
    ptrs = [_ptr(t) for t in (*prepped, y, state, chk)]
    ranges = _channel_ranges(channels, b * length * channels * n)
    getattr(lib, f"{kind}_fwd_par")(*ptrs, *sizes, _CHECKPOINT_STEPS, *range_bounds(ranges))
    return y, state, chk, prepped


# How each kernel fills the gradients of (dt, A, B, C, D): "written" once per element by the
# range owning its channel, "channel" accumulated by that range alone (zeroed first),
# "partial" summed over channels of several ranges: one zeroed buffer per range, added up.
_GRAD_MODES = {
    "selective_scan": ("written", "channel", "partial", "partial", "channel"),
    "ssd_scan": ("partial",) * 5,
}


def _scan_backward(
    kind: str,
    saved: tuple[Tensor | None, ...],
    chk: Tensor,
    grad_y: Tensor | None,
    grad_state: Tensor | None,
    grad_x: Tensor | None = None,
    scratch: Callable[..., Tensor] | None = None,
    sums_into: Sequence[Tensor | None] | None = None,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``(x, dt, A, B, C, D, h0)`` by ``{kind}_bwd`` (``None`` for an absent
    ``D``); ``saved`` are the inputs of :func:`_scan_forward` as the kernel read them,
    ``grad_state`` (``None``: zero) the gradient of its final state. The gradient of ``x``
    goes to ``grad_x`` when given (in place where its rows are laid out as the kernel reads
    ``x``: ``[a, w]`` blocks contiguous, any row stride), else to a new buffer.

    ``scratch(name, *shape)``, when given, provides the per-thread partial sums of the
    SSD gradients of ``dt``, ``B``, ``C`` (:func:`~mambakit.ssm.cpu_fused._scratch`), and
    ``sums_into`` (one entry per gradient of ``(dt, A, B, C, D)``, ``None`` for a new
    tensor) the tensors their sums are written into (any strides)."""
    lib = _require()
    x, dt, A, B, C, D, _ = saved
    sizes, channels, n = _sizes(kind, x, B)
    b, length = sizes[:2]
    ranges = _channel_ranges(channels, b * length * channels * n)
    grad_y = torch.zeros(x.shape) if grad_y is None else _prep(grad_y)
    wanted = grad_x
    if grad_x is None or not _rows_layout(grad_x, kind):
        grad_x = torch.empty(x.shape, dtype=torch.float32)
    if kind == "ssd_scan":
        sizes = [*sizes, grad_x.stride(1)]
    grad_h0 = torch.empty(b, channels, n, dtype=torch.float32)
    grads: list[Tensor | None] = []  # of dt, A, B, C, D; per range where "partial"
    for t, mode in zip((dt, A, B, C, D), _GRAD_MODES[kind], strict=True):
        if t is None:
            grads.append(None)
        elif mode == "partial" and kind == "ssd_scan" and t.ndim > 1:
            # ddt, dB, dC: every row zeroed by the kernel as its chunk starts (in cache)
            shape = (len(ranges), *t.shape)
            name = f"scan_grad{len(grads)}"
            grads.append(torch.empty(shape) if scratch is None else scratch(name, *shape))
        elif mode == "partial":
            grads.append(torch.zeros(len(ranges), *t.shape, dtype=torch.float32))
        else:
            grads.append(torch.empty_like(t) if mode == "written" else torch.zeros_like(t))
    fixed = [_ptr(t) for t in (*saved[:6], chk, grad_y, _prep(grad_state), grad_x)]
    # range i's gradient: at its buffer + i * slab (0: one buffer the ranges share)
    slabs = [0 if g is None or g.ndim == t.ndim else g[0].numel()
             for g, t in zip(grads, (dt, A, B, C, D), strict=True)]  # fmt: skip
    getattr(lib, f"{kind}_bwd_par")(
        *fixed, *map(_ptr, grads), (ctypes.c_long * 5)(*slabs), _ptr(grad_h0), *sizes,
        _CHECKPOINT_STEPS, *range_bounds(ranges),
    )  # fmt: skip
    if wanted is not None and wanted is not grad_x:
        grad_x = wanted.copy_(grad_x)
    into = sums_into or (None,) * len(grads)
    summed = [
        None if g is None else (_sum_partials(g, dest) if mode == "partial" else g)
        for g, mode, dest in zip(grads, _GRAD_MODES[kind], into, strict=True)
    ]
    return (grad_x, *summed, grad_h0.view(x.shape[:1] + x.shape[2:] + (n,)))


def _sum_partials(partials: Tensor, out: Tensor | None) -> Tensor:
    """The sum of ``partials`` ``[ranges, ...]`` over ranges, written into ``out`` when given."""
    if out is None:
        return partials.sum(0)
    out.copy_(partials[0].view(out.shape))
    for p in partials[1:]:
        out.add_(p.view(out.shape))
    return out


class _FusedScan(torch.autograd.Function):
    """A C scan as one autograd node: the forward keeps the state every
    ``_CHECKPOINT_STEPS`` steps, the backward recomputes each chunk's states from its
    checkpoint and runs the exact adjoint recurrence (reverse-mode of the forward)."""

    @staticmethod
    def forward(ctx: Any, kind: str, *inputs: Tensor | None) -> tuple[Tensor, Tensor]:
        y, state, chk, prepped = _scan_forward(kind, inputs, keep_checkpoints=True)
        ctx.kind = kind
        ctx.dtypes = [None if t is None else t.dtype for t in inputs]
        ctx.save_for_backward(*prepped, chk)
        ctx.set_materialize_grads(False)
        return y, state

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor | None, grad_state: Tensor | None) -> tuple:
        *saved, chk = ctx.saved_tensors
        grads = _scan_backward(ctx.kind, tuple(saved), chk, grad_y, grad_state)
        return (None,) + tuple(
            g.to(dtype) if g is not None and need else None
            for g, dtype, need in zip(grads, ctx.dtypes, ctx.needs_input_grad[1:], strict=True)
        )


def fused_scan(kind: str, *inputs: Tensor | None) -> tuple[Tensor, Tensor]:
    """The scan ``kind`` by the C kernels on ``inputs`` = ``(x, dt, A, B, C, D, initial_state)``
    (``D`` and ``initial_state`` may be ``None``), differentiable in every input (through
    :class:`_FusedScan` when a gradient is needed); returns ``(y, final_state)`` float32.

    ``kind="selective_scan"``: arguments and shapes as
    :func:`~mambakit.ssm.ops.selective_scan_ref` (``x`` = ``u`` ``[B, L, D]``, ``dt`` =
    ``delta``), ``y`` ``[B, L, D]``, state ``[B, D, N]``. ``kind="ssd_scan"``: as
    :func:`~mambakit.ssm.ops.ssd_scan_ref`, ``y`` ``[B, L, H, P]``, state ``[B, H, P, N]``;
    the same per-step recurrence with one ``exp`` per head and step (the decay is a scalar
    per head), every channel of a head sharing its group's ``B_t``, ``C_t``:
    ``h[c] = exp(dt A_h) h[c] + dt x_c B_t``, ``y_c = h[c] . C_t + D_h x_c``.

    Inputs are made contiguous float32 CPU tensors (a copy only when they are not).
    """
    if kind not in _SIZE_ARGS:
        raise ValueError(f"unknown scan {kind!r}; choose one of {tuple(_SIZE_ARGS)}")
    if len(inputs) != 7:
        raise ValueError(f"fused_scan takes (x, dt, A, B, C, D, initial_state), got {len(inputs)}")
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _FusedScan.apply(kind, *inputs)
    y, state, _, _ = _scan_forward(kind, inputs, keep_checkpoints=False)
    return y, state


def _require() -> ctypes.CDLL:
    lib = _load()
    if lib is None:
        raise RuntimeError(f"the CPU scan kernel is unavailable: {_KERNELS.failed}")
    return lib


def _prep(t: Tensor | None) -> Tensor | None:
    """A contiguous float32 copy of ``t`` only where it is not one already."""
    return None if t is None else t.detach().to(torch.float32).contiguous()


def _rows_layout(t: Tensor, kind: str) -> bool:
    """Whether the kernel ``kind`` can write a gradient of ``x`` into ``t`` in place."""
    if kind != "ssd_scan":
        return t.is_contiguous()
    return t.dtype == torch.float32 and _row_strided(t)


def _row_strided(t: Tensor) -> bool:
    """Whether ``t`` ``[b, L, a, w]`` has a contiguous ``[a, w]`` block per row and batch rows
    ``L`` rows apart (as a slice of the channels of a contiguous ``[b, L, F]`` tensor)."""
    b, length, a, w = t.shape
    block = t.stride(-1) == 1 and (a == 1 or t.stride(-2) == w)
    return block and (b == 1 or t.stride(0) == length * t.stride(1)) and t.stride(1) >= a * w


def _prep_rows(t: Tensor) -> Tensor:
    """``t`` ``[b, L, a, w]`` as float32, as it is where :func:`_row_strided` (a slice of a
    wider tensor is read in place), else a contiguous copy."""
    t = t.detach().to(torch.float32)
    return t if _row_strided(t) else t.contiguous()


# State updates (batch x length x channels x d_state) below which a scan runs on one thread:
# starting the OpenMP team costs microseconds, more than a small scan takes.
_MIN_PARALLEL_UPDATES = 2**20
# Steps between the states the training forward keeps (_FusedScan): the backward
# recomputes the states inside each such chunk, so it holds L / K states, not L.
_CHECKPOINT_STEPS = 64


def _channel_ranges(channels: int, updates: int) -> list[tuple[int, int]]:
    """Channel ranges, one per thread of ``torch.get_num_threads()`` (at least 8 channels
    each), or one range when the scan has fewer than ``_MIN_PARALLEL_UPDATES`` ``updates``."""
    threads = max(1, min(torch.get_num_threads(), channels // 8))
    if updates < _MIN_PARALLEL_UPDATES:
        threads = 1
    return [(channels * i // threads, channels * (i + 1) // threads) for i in range(threads)]
