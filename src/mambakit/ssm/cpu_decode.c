/* One recurrent step of a Mamba-2 Backbone (mambakit.ssm.backbone.Backbone, kind "mamba2")
   in a single call: every block's pre-norm, in_proj, depthwise causal conv, SSD state update,
   gated RMSNorm, out_proj, residual, optional MLP, then the final norm. See cpu_decode.py for
   the contract; this file is plain C (no PyTorch headers), built by mambakit.ssm.cbuild.

   Weights are packed by output block: a [out, in] matrix becomes [ceil(out / OB), in, OB]
   (zero rows pad the last block), so a matrix-vector product streams each block once,
   contiguously, with OB accumulators in registers. Formats: fp32, bf16 (upper half of an
   fp32), int8 with one fp32 scale per output channel; activations stay fp32. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#define OB 64
enum { FMT_F32 = 0, FMT_BF16 = 1, FMT_I8 = 2 };

typedef struct {
    const void *w;      /* packed [out_padded / OB, in, OB] */
    const float *scale; /* [out_padded]: per output channel (ones unless int8) */
    const float *bias;  /* [out_padded]: zeros when the layer has none */
    long in, out_padded, fmt;
} Linear;

typedef struct {
    const float *norm_w;  /* [d_model] block pre-norm */
    Linear in_proj;       /* d_model -> [z d_inner | xBC conv_dim | dt n_heads] */
    const float *conv_w;  /* [conv_dim, d_conv] */
    const float *conv_b;  /* [conv_dim] (zeros when none) */
    const float *dt_bias; /* [n_heads] */
    const float *A;       /* [n_heads], -exp(A_log) */
    const float *D;       /* [n_heads] */
    const float *gate_w;  /* [d_inner] gated RMSNorm scale */
    Linear out_proj;      /* d_inner -> d_model */
    const float *mlp_norm_w; /* [d_model], NULL: the block has no MLP */
    Linear fc_in, fc_out;
} Layer;

typedef struct {
    long n_layers, d_model, d_inner, d_state, n_heads, headdim, ngroups, d_conv;
    long mlp_hidden; /* hidden width of the MLP (0: none) */
    long swiglu;     /* 1: SwiGLU, 0: GELU (erf) */
    float norm_eps, gate_eps;
    const float *norm_f_w; /* [d_model] */
    const Layer *layers;
} Model;

static long round_up(long n) { return (n + OB - 1) / OB * OB; }

/* Floats of scratch per batch row; offsets below follow this order. */
long mamba2_step_scratch(const Model *m) {
    const long conv_dim = m->d_inner + 2 * m->ngroups * m->d_state;
    const long zx = round_up(2 * m->d_inner + 2 * m->ngroups * m->d_state + m->n_heads);
    const long hid = m->mlp_hidden ? round_up((m->swiglu ? 2 : 1) * m->mlp_hidden) : 0;
    (void)conv_dim;
    return 2 * m->d_model + zx + m->d_inner + round_up(m->d_model) + hid + m->mlp_hidden;
}

/* OB outputs of one block: acc[j] = sum_i w[i, j] x[i]. */
static void block_dot(const void *w, long fmt, const float *x, long in, float *acc) {
#ifdef __AVX512F__
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0; /* second set: two FMA chains per lane */
    long i = 0;
#define LOAD_F32(p) _mm512_loadu_ps(p)
#define LOAD_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define LOAD_I8(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define DOT_LOOP(T, LOAD)                                                   \
    {                                                                       \
        const T *wp = (const T *)w;                                         \
        for (; i + 1 < in; i += 2) {                                        \
            const T *r0 = wp + i * OB, *r1 = r0 + OB;                       \
            const __m512 x0 = _mm512_set1_ps(x[i]), x1 = _mm512_set1_ps(x[i + 1]); \
            a0 = _mm512_fmadd_ps(LOAD(r0), x0, a0);                         \
            a1 = _mm512_fmadd_ps(LOAD(r0 + 16), x0, a1);                    \
            a2 = _mm512_fmadd_ps(LOAD(r0 + 32), x0, a2);                    \
            a3 = _mm512_fmadd_ps(LOAD(r0 + 48), x0, a3);                    \
            b0 = _mm512_fmadd_ps(LOAD(r1), x1, b0);                         \
            b1 = _mm512_fmadd_ps(LOAD(r1 + 16), x1, b1);                    \
            b2 = _mm512_fmadd_ps(LOAD(r1 + 32), x1, b2);                    \
            b3 = _mm512_fmadd_ps(LOAD(r1 + 48), x1, b3);                    \
        }                                                                   \
        for (; i < in; ++i) {                                               \
            const T *r0 = wp + i * OB;                                      \
            const __m512 x0 = _mm512_set1_ps(x[i]);                         \
            a0 = _mm512_fmadd_ps(LOAD(r0), x0, a0);                         \
            a1 = _mm512_fmadd_ps(LOAD(r0 + 16), x0, a1);                    \
            a2 = _mm512_fmadd_ps(LOAD(r0 + 32), x0, a2);                    \
            a3 = _mm512_fmadd_ps(LOAD(r0 + 48), x0, a3);                    \
        }                                                                   \
    }
    if (fmt == FMT_I8) DOT_LOOP(int8_t, LOAD_I8)
    else if (fmt == FMT_BF16) DOT_LOOP(uint16_t, LOAD_BF16)
    else DOT_LOOP(float, LOAD_F32)
    _mm512_storeu_ps(acc, _mm512_add_ps(a0, b0));
    _mm512_storeu_ps(acc + 16, _mm512_add_ps(a1, b1));
    _mm512_storeu_ps(acc + 32, _mm512_add_ps(a2, b2));
    _mm512_storeu_ps(acc + 48, _mm512_add_ps(a3, b3));
#else
    for (long j = 0; j < OB; ++j) acc[j] = 0.0f;
    for (long i = 0; i < in; ++i) {
        const float xi = x[i];
        if (fmt == FMT_I8) {
            const int8_t *r = (const int8_t *)w + i * OB;
            for (long j = 0; j < OB; ++j) acc[j] += xi * (float)r[j];
        } else if (fmt == FMT_BF16) {
            const uint16_t *r = (const uint16_t *)w + i * OB;
            for (long j = 0; j < OB; ++j) {
                const uint32_t bits = (uint32_t)r[j] << 16;
                float v;
                memcpy(&v, &bits, sizeof v);
                acc[j] += xi * v;
            }
        } else {
            const float *r = (const float *)w + i * OB;
            for (long j = 0; j < OB; ++j) acc[j] += xi * r[j];
        }
    }
#endif
}

/* y[r, :out_padded] = W x[r] * scale + bias for the `batch` rows (row strides in floats). */
static void linear_fwd(const Linear *L, const float *x, float *y, long batch, long stride) {
    const size_t esize = L->fmt == FMT_I8 ? 1 : L->fmt == FMT_BF16 ? 2 : 4;
    float acc[OB];
    for (long o = 0; o < L->out_padded; o += OB) {
        const void *w = (const char *)L->w + (size_t)o * L->in * esize;
        for (long r = 0; r < batch; ++r) {
            block_dot(w, L->fmt, x + r * stride, L->in, acc);
            float *yr = y + r * stride + o;
            for (long j = 0; j < OB; ++j) yr[j] = acc[j] * L->scale[o + j] + L->bias[o + j];
        }
    }
}

static float silu(float v) { return v / (1.0f + expf(-v)); }

static void rms_norm(const float *x, const float *w, long n, float eps, float *out) {
    float ss = 0.0f;
    #pragma omp simd reduction(+:ss)
    for (long i = 0; i < n; ++i) ss += x[i] * x[i];
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (long i = 0; i < n; ++i) out[i] = x[i] * inv * w[i];
}

/* Depthwise causal conv step + SiLU, in place on xbc; the state [conv_dim, d_conv - 1]
   shifts left and takes the raw input. */
static void conv_step(const Layer *ly, float *xbc, float *state, long conv_dim, long k) {
    const long k1 = k - 1;
    for (long c = 0; c < conv_dim; ++c) {
        const float *wc = ly->conv_w + c * k;
        float *sc = state + c * k1;
        const float raw = xbc[c];
        float acc = ly->conv_b[c] + wc[k1] * raw;
        for (long j = 0; j < k1; ++j) acc += wc[j] * sc[j];
        for (long j = 0; j + 1 < k1; ++j) sc[j] = sc[j + 1];
        if (k1 > 0) sc[k1 - 1] = raw;
        xbc[c] = silu(acc);
    }
}

/* h = exp(dt A) h + dt x B^T, y = h C + D x per head (heads of a group share B, C). */
static void ssd_step(const Model *m, const Layer *ly, const float *xbc, const float *dt_raw,
                     float *state, float *y) {
    const long p = m->headdim, n = m->d_state, heads_per_group = m->n_heads / m->ngroups;
    const float *B = xbc + m->d_inner, *C = B + m->ngroups * n;
    for (long hh = 0; hh < m->n_heads; ++hh) {
        const float raw = dt_raw[hh] + ly->dt_bias[hh];
        const float dt = raw > 20.0f ? raw : log1pf(expf(raw)); /* torch softplus */
        const float decay = expf(dt * ly->A[hh]);
        const long gi = hh / heads_per_group;
        const float *Bg = B + gi * n, *Cg = C + gi * n;
        for (long c = hh * p; c < (hh + 1) * p; ++c) {
            const float xc = dt * xbc[c];
            float *sc = state + c * n;
            float acc = 0.0f;
            #pragma omp simd reduction(+:acc)
            for (long k = 0; k < n; ++k) {
                const float v = decay * sc[k] + xc * Bg[k];
                sc[k] = v;
                acc += v * Cg[k];
            }
            y[c] = acc + ly->D[hh] * xbc[c];
        }
    }
}

/* RMSNorm(y * silu(z)) per group of d_inner / ngroups channels, in place on y. */
static void gated_norm(const Model *m, const Layer *ly, const float *z, float *y) {
    const long gsize = m->d_inner / m->ngroups;
    for (long c = 0; c < m->d_inner; ++c) y[c] *= silu(z[c]);
    for (long g0 = 0; g0 < m->d_inner; g0 += gsize)
        rms_norm(y + g0, ly->gate_w + g0, gsize, m->gate_eps, y + g0);
}

static void mlp_act(const Model *m, const float *hid, float *act) {
    const long h = m->mlp_hidden;
    for (long j = 0; j < h; ++j) {
        const float v = hid[j];
        act[j] = m->swiglu ? silu(v) * hid[h + j] : 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2));
    }
}

/* x, out [batch, d_model]; conv_states[l] [batch, conv_dim, d_conv - 1] and ssm_states[l]
   [batch, n_heads, headdim, d_state] advance in place; scratch holds
   batch * mamba2_step_scratch(m) floats. */
void mamba2_backbone_step(const Model *m, const float *x, float *out, float *const *conv_states,
                          float *const *ssm_states, float *scratch, long batch) {
    const long d = m->d_model, conv_dim = m->d_inner + 2 * m->ngroups * m->d_state;
    const long stride = mamba2_step_scratch(m);
    const long zx_size = round_up(2 * m->d_inner + 2 * m->ngroups * m->d_state + m->n_heads);
    const long hid_size = m->mlp_hidden ? round_up((m->swiglu ? 2 : 1) * m->mlp_hidden) : 0;
    /* per-row scratch: resid [d] | u [d] | zx [zx_size] | y [d_inner] | proj [d padded] |
       hid [hid_size] | act [mlp_hidden]; the matrix products read and write rows `stride`
       apart, so each input sits at the same offset in every row. */
    float *resid = scratch, *u = resid + d, *zx = u + d, *y = zx + zx_size;
    float *proj = y + m->d_inner, *hid = proj + round_up(d), *act = hid + hid_size;
    for (long r = 0; r < batch; ++r) memcpy(resid + r * stride, x + r * d, d * sizeof(float));
    for (long l = 0; l < m->n_layers; ++l) {
        const Layer *ly = m->layers + l;
        for (long r = 0; r < batch; ++r)
            rms_norm(resid + r * stride, ly->norm_w, d, m->norm_eps, u + r * stride);
        linear_fwd(&ly->in_proj, u, zx, batch, stride);
        for (long r = 0; r < batch; ++r) {
            float *zr = zx + r * stride, *xbc = zr + m->d_inner;
            const long state_size = m->n_heads * m->headdim * m->d_state;
            conv_step(ly, xbc, conv_states[l] + r * conv_dim * (m->d_conv - 1), conv_dim,
                      m->d_conv);
            ssd_step(m, ly, xbc, xbc + conv_dim, ssm_states[l] + r * state_size, y + r * stride);
            gated_norm(m, ly, zr, y + r * stride);
        }
        linear_fwd(&ly->out_proj, y, proj, batch, stride);
        for (long r = 0; r < batch; ++r)
            for (long i = 0; i < d; ++i) resid[r * stride + i] += proj[r * stride + i];
        if (ly->mlp_norm_w == NULL) continue;
        for (long r = 0; r < batch; ++r)
            rms_norm(resid + r * stride, ly->mlp_norm_w, d, m->norm_eps, u + r * stride);
        linear_fwd(&ly->fc_in, u, hid, batch, stride);
        for (long r = 0; r < batch; ++r) mlp_act(m, hid + r * stride, act + r * stride);
        linear_fwd(&ly->fc_out, act, proj, batch, stride);
        for (long r = 0; r < batch; ++r)
            for (long i = 0; i < d; ++i) resid[r * stride + i] += proj[r * stride + i];
    }
    for (long r = 0; r < batch; ++r)
        rms_norm(resid + r * stride, m->norm_f_w, d, m->norm_eps, out + r * d);
}
