/* linear.c - Linear forward/backward over feature-major activations.
 * Batch-wise sums (dW, dbias) use 16 independent partial sums combined at the end: a fixed,
 * deterministic order that the compiler can keep in vector registers. */
#include <string.h>
#include "linear.h"
#include "simd.h"

/* Rows are processed in blocks so a block's accumulators stay in registers across the whole
 * sum over inputs; the order of every sum is unchanged (i = 0..DI-1). A block is NV vectors of
 * vw lanes, vw the width of the version (simd.h), for NO outputs at once (each input's row
 * of x then serves them all): an array of 32 floats GCC kept in memory, loading and storing
 * every accumulator on every input. Each vector's sum is a chain of adds, one an input, so a
 * block needs enough vectors to keep the adders busy: 8 in every version (two outputs of 64
 * rows in the AVX-512 one, of 32 in the AVX2 one, of 16 in the generic one; one output of 64
 * rows in AVX2 when one is left), where one output of 32 rows gave 2 and 4 chains in the wider
 * versions and left them waiting; rows past the last 32-row block one by one. */
#define CF_LB 32

#if defined(__GNUC__) && !defined(CF_NO_VECTOR_EXT)
#define CF_LIN_VEC 1
typedef float lv16 __attribute__((vector_size(64)));
typedef float lv8 __attribute__((vector_size(32)));
typedef float lv4 __attribute__((vector_size(16)));
/* for each output q < NO: acc[k] = init[q B + k] (or 0) + sum_i c[q co + i cs] x[i B + k],
 * k < NV W, in NV W-lane vectors T; then out[q B + k] = acc[k] + b0[q] (acc[k] when b0 is
 * NULL: adding 0 would turn a -0 into +0) */
#define CF_LIN_BLOCK(W, T, NV, NO)                                                             \
    CF_INLINE void lin_block_w##W##x##NV##o##NO(float *out, const float *init,                 \
                                                const float *restrict c, int64_t cs,           \
                                                int64_t co, const float *restrict x,           \
                                                int64_t B, int64_t n, const float *b0) {       \
        T acc[NO][NV];                                                                         \
        CF_UNROLL(2)                                                                           \
        for (int q = 0; q < NO; q++)                                                           \
            CF_UNROLL(8)                                                                       \
            for (int h = 0; h < NV; h++) {                                                     \
                acc[q][h] = (T){0};                                                            \
                if (init) __builtin_memcpy(&acc[q][h], init + q * B + h * W, sizeof acc[q][h]); \
            }                                                                                  \
        for (int64_t i = 0; i < n; i++) {                                                      \
            float ci[NO];                                                                      \
            CF_UNROLL(2)                                                                       \
            for (int q = 0; q < NO; q++) ci[q] = c[q * co + i * cs];                           \
            CF_UNROLL(8)                                                                       \
            for (int h = 0; h < NV; h++) {                                                     \
                T xv;                                                                          \
                __builtin_memcpy(&xv, x + i * B + h * W, sizeof xv);                           \
                CF_UNROLL(2)                                                                   \
                for (int q = 0; q < NO; q++) acc[q][h] += ci[q] * xv;                          \
            }                                                                                  \
        }                                                                                      \
        CF_UNROLL(2)                                                                           \
        for (int q = 0; q < NO; q++)                                                           \
            CF_UNROLL(8)                                                                       \
            for (int h = 0; h < NV; h++) {                                                     \
                const T o = b0 ? acc[q][h] + b0[q] : acc[q][h];                                \
                __builtin_memcpy(out + q * B + h * W, &o, sizeof o);                           \
            }                                                                                  \
    }
CF_LIN_BLOCK(16, lv16, 4, 2)
CF_LIN_BLOCK(16, lv16, 4, 1)
CF_LIN_BLOCK(16, lv16, 2, 2)
CF_LIN_BLOCK(16, lv16, 2, 1)
CF_LIN_BLOCK(8, lv8, 8, 1)
CF_LIN_BLOCK(8, lv8, 4, 2)
CF_LIN_BLOCK(8, lv8, 4, 1)
CF_LIN_BLOCK(4, lv4, 8, 1)
CF_LIN_BLOCK(4, lv4, 4, 2)
#undef CF_LIN_BLOCK
#endif

#ifdef CF_LIN_VEC
/* The weight gradient's sums. dW[o, i] += cf_dot_f32(d, x_i, B): 16 partial sums (sum l
 * holds the products of b = l mod 16, in order; the last B mod 16 as a zero-padded chunk),
 * combined pairwise: t_l = s_l + s_{l+8}, u_l = t_l + t_{l+4}, v_l = u_l + u_{l+2}, v_0 + v_1.
 * dots_w* do G such dots at once (rows x_i, i = 0..G-1, B apart): the partial sums in vectors
 * of the version's width, and each level of the combination for all G dots together, lanes
 * moved so that every add is the one above (same operands, same order), several dots an
 * instruction. So the bits are cf_dot_f32's, then dw[i] + dot as before. One dot at a time
 * ran on 4-lane vectors in every version and spent most of its time combining. */
#define CF_SHUF __builtin_shufflevector
/* the last chunk of G dots when 16 does not divide B: acc (16 partial sums a dot, in memory)
 * += the products of b = k .. B - 1 in sums 0, 1, ..., +0 in the others, as cf_dot_f32's
 * zero-padded chunk. A function of its own: the hot loops stay free of the padding */
__attribute__((noinline)) static void dots_tail(float *acc, int G, const float *d, const float *x,
                                                int64_t B, int64_t k) {
    for (int g = 0; g < G; g++)
        for (int l = 0; l < 16; l++) acc[16 * g + l] += k + l < B ? d[k + l] * x[g * B + k + l] : 0.0f;
}

/* 16 dots: one 16-lane vector of partial sums each */
CF_INLINE void dots_w16(float *dw, const float *d, const float *x, int64_t B) {
    lv16 acc[16];
    CF_UNROLL(16)
    for (int g = 0; g < 16; g++) acc[g] = (lv16){0};
    int64_t k = 0;
    for (; k + 16 <= B; k += 16) {
        lv16 dv;
        __builtin_memcpy(&dv, d + k, sizeof dv);
        CF_UNROLL(16)
        for (int g = 0; g < 16; g++) {
            lv16 xv;
            __builtin_memcpy(&xv, x + g * B + k, sizeof xv);
            acc[g] += dv * xv;
        }
    }
    if (k < B) {
        float buf[16 * 16];
        __builtin_memcpy(buf, acc, sizeof buf);
        dots_tail(buf, 16, d, x, B, k);
        __builtin_memcpy(acc, buf, sizeof buf);
    }
    /* t: dots 2p, 2p + 1 in lanes 0-7, 8-15 */
    lv16 t[8], u[4], v[2];
    CF_UNROLL(8)
    for (int p = 0; p < 8; p++)
        t[p] = CF_SHUF(acc[2 * p], acc[2 * p + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               CF_SHUF(acc[2 * p], acc[2 * p + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    /* u: dots 4q .. 4q + 3, 4 lanes each */
    CF_UNROLL(4)
    for (int q = 0; q < 4; q++)
        u[q] = CF_SHUF(t[2 * q], t[2 * q + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
               CF_SHUF(t[2 * q], t[2 * q + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    /* v: dots 8r .. 8r + 7, 2 lanes each */
    CF_UNROLL(2)
    for (int r = 0; r < 2; r++)
        v[r] = CF_SHUF(u[2 * r], u[2 * r + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
               CF_SHUF(u[2 * r], u[2 * r + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    const lv16 w = CF_SHUF(v[0], v[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
                   CF_SHUF(v[0], v[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    lv16 o;
    __builtin_memcpy(&o, dw, sizeof o);
    o += w;
    __builtin_memcpy(dw, &o, sizeof o);
}

/* 4 dots: two 8-lane vectors of partial sums each (sums 0-7 and 8-15) */
CF_INLINE void dots_w8(float *dw, const float *d, const float *x, int64_t B) {
    lv8 acc[4][2];
    CF_UNROLL(4)
    for (int g = 0; g < 4; g++) acc[g][0] = acc[g][1] = (lv8){0};
    int64_t k = 0;
    for (; k + 16 <= B; k += 16) {
        lv8 dl, dh;
        __builtin_memcpy(&dl, d + k, sizeof dl);
        __builtin_memcpy(&dh, d + k + 8, sizeof dh);
        CF_UNROLL(4)
        for (int g = 0; g < 4; g++) {
            lv8 xl, xh;
            __builtin_memcpy(&xl, x + g * B + k, sizeof xl);
            __builtin_memcpy(&xh, x + g * B + k + 8, sizeof xh);
            acc[g][0] += dl * xl;
            acc[g][1] += dh * xh;
        }
    }
    if (k < B) {
        float buf[4 * 16];
        __builtin_memcpy(buf, acc, sizeof buf);
        dots_tail(buf, 4, d, x, B, k);
        __builtin_memcpy(acc, buf, sizeof buf);
    }
    lv8 t[4];
    CF_UNROLL(4)
    for (int g = 0; g < 4; g++) t[g] = acc[g][0] + acc[g][1];
    const lv8 u01 = CF_SHUF(t[0], t[1], 0, 1, 2, 3, 8, 9, 10, 11) + CF_SHUF(t[0], t[1], 4, 5, 6, 7, 12, 13, 14, 15);
    const lv8 u23 = CF_SHUF(t[2], t[3], 0, 1, 2, 3, 8, 9, 10, 11) + CF_SHUF(t[2], t[3], 4, 5, 6, 7, 12, 13, 14, 15);
    const lv8 v = CF_SHUF(u01, u23, 0, 1, 4, 5, 8, 9, 12, 13) + CF_SHUF(u01, u23, 2, 3, 6, 7, 10, 11, 14, 15);
    const lv4 w = CF_SHUF(v, v, 0, 2, 4, 6) + CF_SHUF(v, v, 1, 3, 5, 7);
    lv4 o;
    __builtin_memcpy(&o, dw, sizeof o);
    o += w;
    __builtin_memcpy(dw, &o, sizeof o);
}

#undef CF_SHUF
#endif

/* dW[o, i] += cf_dot_f32(dout_o, x_i, B) for every o < DO and i < DI (the same bits however
 * many at once): a group of rows of x, then every row of dout against it, so the group (16 or
 * 4 rows of B floats) stays in the nearest cache while dout goes by */
CF_INLINE void dw_all(int vw, float *dW, const float *doutT, const float *xT, int64_t B,
                      int64_t DI, int64_t DO) {
    int64_t i = 0;
#ifdef CF_LIN_VEC
    if (vw == 16)
        for (; i + 16 <= DI; i += 16)
            for (int64_t o = 0; o < DO; o++) dots_w16(dW + o * DI + i, doutT + o * B, xT + i * B, B);
    else if (vw == 8)
        for (; i + 4 <= DI; i += 4)
            for (int64_t o = 0; o < DO; o++) dots_w8(dW + o * DI + i, doutT + o * B, xT + i * B, B);
#endif
    /* the rest, and the generic version, one dot at a time: its 4-lane cf_dot_f32 already holds
     * the 16 sums in four registers, and grouping dots there measured slower */
    for (int64_t o = 0; o < DO; o++)
        for (int64_t j = i; j < DI; j++) dW[o * DI + j] += cf_dot_f32(doutT + o * B, xT + j * B, B);
}

/* rows [0, R) of the sums of no outputs (1 or 2, see CF_LIN_BLOCK) in blocks of 64 and 32 rows,
 * or plain loops without the vector extensions; returns the rows done, the rest (fewer than
 * CF_LB) left to lin_tail */
CF_INLINE int64_t lin_rows(int vw, int no, float *out, const float *init, const float *restrict c,
                           int64_t cs, int64_t co, const float *restrict x, int64_t B, int64_t n,
                           const float *b0, int64_t R) {
    int64_t s = 0;
#ifdef CF_LIN_VEC
#define CF_AT(s) out + (s), init ? init + (s) : NULL, c, cs, co, x + (s), B, n, b0
    if (vw == 16 && no == 2)
        for (; s + 64 <= R; s += 64) lin_block_w16x4o2(CF_AT(s));
    else if (vw == 16)
        for (; s + 64 <= R; s += 64) lin_block_w16x4o1(CF_AT(s));
    else if (vw == 8 && no == 1)
        for (; s + 64 <= R; s += 64) lin_block_w8x8o1(CF_AT(s));
    for (; s + CF_LB <= R; s += CF_LB) {
        if (vw == 16 && no == 2) lin_block_w16x2o2(CF_AT(s));
        else if (vw == 16) lin_block_w16x2o1(CF_AT(s));
        else if (vw == 8 && no == 2) lin_block_w8x4o2(CF_AT(s));
        else if (vw == 8) lin_block_w8x4o1(CF_AT(s));
        else if (no == 2) {
            lin_block_w4x4o2(CF_AT(s));
            lin_block_w4x4o2(CF_AT(s + 16));
        } else lin_block_w4x8o1(CF_AT(s));
    }
#undef CF_AT
#else
    for (; s + CF_LB <= R; s += CF_LB)
        for (int q = 0; q < no; q++) {
            float acc[CF_LB];
            for (int k = 0; k < CF_LB; k++) acc[k] = init ? init[q * B + s + k] : 0.0f;
            for (int64_t i = 0; i < n; i++) {
                const float ci = c[q * co + i * cs];
                for (int k = 0; k < CF_LB; k++) acc[k] += ci * x[i * B + s + k];
            }
            for (int k = 0; k < CF_LB; k++) out[q * B + s + k] = b0 ? acc[k] + b0[q] : acc[k];
        }
#endif
    return s;
}

/* rows [s, B) of one output, one by one: out[b] = (init[b] or 0) + sum_i c[i cs] x[i B + b],
 * then + *b0 when b0 is given */
CF_INLINE void lin_tail(float *out, const float *init, const float *c, int64_t cs, const float *x,
                        int64_t B, int64_t n, const float *b0, int64_t s) {
    for (int64_t b = s; b < B; b++) {
        float a = init ? init[b] : 0.0f;
        for (int64_t i = 0; i < n; i++) a += c[i * cs] * x[i * B + b];
        out[b] = b0 ? a + *b0 : a;
    }
}

/* out_q[b] = (init_q[b] or 0) + sum_i c[q co + i cs] x[i B + b] (+ bias[q], or + 0 when bias
 * is NULL and add_bias) for the N outputs q, each B rows: out_q = out + q B, init_q likewise;
 * two outputs at a time (lin_rows), rows past the blocks one by one */
CF_INLINE void lin_outputs(int vw, float *out, const float *init, const float *c, int64_t cs,
                           int64_t co, const float *x, int64_t B, int64_t n, const float *bias,
                           int add_bias, int64_t N) {
    for (int64_t q = 0, n_out; q < N; q += n_out) {
        n_out = q + 2 <= N ? 2 : 1;
        const float b0[2] = {bias ? bias[q] : 0.0f, bias && n_out == 2 ? bias[q + 1] : 0.0f};
        const float *b = add_bias ? b0 : NULL;
        float *o = out + q * B;
        const float *in = init ? init + q * B : NULL;
        const int64_t s = lin_rows(vw, (int)n_out, o, in, c + q * co, cs, co, x, B, n, b, B);
        for (int r = 0; r < n_out; r++)
            lin_tail(o + r * B, in ? in + r * B : NULL, c + (q + r) * co, cs, x, B, n, b ? b + r : NULL, s);
    }
}

CF_INLINE void cf_linear_forward_body(int vw, float *restrict outT, const float *restrict xT, const float *restrict W,
                                      const float *restrict bias, int64_t B, int64_t DI, int64_t DO) {
    lin_outputs(vw, outT, NULL, W, 1, DI, xT, B, DI, bias, 1, DO);
}
CF_DISPATCH_LANES_PROC(, cf_linear_forward, (float *restrict outT, const float *restrict xT,
                                       const float *restrict W, const float *restrict bias,
                                       int64_t B, int64_t DI, int64_t DO),
                 (outT, xT, W, bias, B, DI, DO))

CF_INLINE void cf_linear_backward_body(int vw, float *restrict dxT, float *restrict dW, float *restrict dbias,
                                       const float *restrict doutT, const float *restrict xT,
                                       const float *restrict W, int64_t B, int64_t DI, int64_t DO) {
    dw_all(vw, dW, doutT, xT, B, DI, DO);
    if (dbias)
        for (int64_t o = 0; o < DO; o++) dbias[o] += cf_sum_f32(doutT + o * B, B);
    if (dxT) lin_outputs(vw, dxT, dxT, W, DI, 1, doutT, B, DO, NULL, 0, DI);
}
CF_DISPATCH_LANES_PROC(, cf_linear_backward, (float *restrict dxT, float *restrict dW,
                                        float *restrict dbias, const float *restrict doutT,
                                        const float *restrict xT, const float *restrict W,
                                        int64_t B, int64_t DI, int64_t DO),
                 (dxT, dW, dbias, doutT, xT, W, B, DI, DO))
