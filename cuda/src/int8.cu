// Integer matmul of quantized weights (after common.cuh; needs sm_80+ for the int8 mma: on
// older GPUs this file does not compile and the bf16 paths serve instead). It computes what
// the CPU computes (simd/src/scalar.rs, act.rs): the activations are quantized to int8 in
// blocks of 32 columns (scale = max|x| / 127, round half away from zero), each block of weights
// is multiplied with its activation block in exact integer arithmetic, and the two scales are
// applied in f32 per block: for q8_0 and q4_0 `acc += (d_w * d_a) * Σ w·a`, for q4_k per
// 32-value sub-block `acc += (d·sc * d_a) * Σ q·a - (dmin·m * d_a) * Σ a`. So the GPU's
// quantized logits differ from the CPU's only by the order of the f32 sums.
//
// The integer sums run on tensor cores: mma.m16n8k32 (s8 × s8 → s32) is one 32-column block
// of 16 weight rows against 8 tokens, exactly the CPU's block sum. Each weight byte is read
// from memory once per 64 tokens, straight into the fragment registers; a block of 8 warps
// owns 32 weight rows and splits the columns between its warps, whose sums are then added in
// warp order through shared memory (deterministic).

#define I8_WARPS 8  // warps per block, each a slice of the columns
#define I8_ROWS 32  // weight rows per block: two 16-row tiles per warp
#define I8_TILES 8  // 8-token tiles per block (64 tokens); gridDim.x covers the rest
#ifndef I8_UNROLL
#define I8_UNROLL 2 // 32-column blocks a warp loads before it multiplies (bytes in flight)
#endif

// c = a · b for one m16n8k32 tile, from zero: a is 16 rows x 32 columns of s8 (fragments a0
// rows g, columns 4tg..+3; a1 rows g + 8; a2, a3 the same at columns 16 + 4tg), b 32 x 8 (b0
// column g, rows 4tg..+3; b1 rows 16 + 4tg..+3), c rows g / g + 8, columns 2tg, 2tg + 1.
// (tools/cuda/emulate.cpp has a host version.)
#ifndef DLM_HOST_CHECK
__device__ __forceinline__ void mma_s8(int *c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}
#endif

// Four bytes at a 2-aligned address (q8_0 and q4_0 blocks are 34 and 18 bytes).
__device__ __forceinline__ u32 ld_u32_2(const u8 *p) {
    return (u32)ld_u16(p) | ((u32)ld_u16(p + 2) << 16);
}

// Four 4-bit values 0..15 (one per byte) minus 8, as four s8 (no borrow between bytes).
__device__ __forceinline__ u32 nib_minus8(u32 v) {
    return ((v | 0x80808080u) - 0x08080808u) ^ 0x80808080u;
}

// x ([n, cols] f32, cols a multiple of 32) quantized as simd's quantize_act, in the layout the
// fragments load: for 8-token tile j and column block b, lane l = 4g + tg of `xq[(j * nb + b)
// * 32 + l]` holds token 8j + g's quants of columns 4tg..+3 (.x) and 16 + 4tg..+3 (.y);
// `xd[(j * nb + b) * 8 + g]` is its scale (NaN when the block holds NaN or ±inf), `xs` the sum
// of its quants. Tokens n..n_pad (n_pad a multiple of 8) are zeros. One warp per (token, block).
extern "C" __global__ void quantize_act_i8(const float *x, int cols, int n, int n_pad, uint2 *xq,
                                           float *xd, int *xs) {
    int nb = cols >> 5;
    int lane = threadIdx.x & 31;
    long long warps = (long long)n_pad * nb;
    long long stride = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long wi = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; wi < warps; wi += stride) {
        int t = (int)(wi / nb), b = (int)(wi - (long long)t * nb);
        float v = t < n ? x[(long long)t * cols + 32 * b + lane] : 0.0f;
        float bad = (v - v == 0.0f) ? 0.0f : 1.0f; // NaN or ±inf
        float amax = fabsf(v);                      // fmaxf skips NaN, as f32::max
        for (int o = 16; o > 0; o >>= 1) {
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
            bad = fmaxf(bad, __shfl_xor_sync(0xffffffffu, bad, o));
        }
        float d = amax / 127.0f;
        float id = d > 0.0f ? 1.0f / d : 0.0f;
        float qr = roundf(v * id);
        // NaN (a NaN value, or ±inf times 0) gives 0, as Rust's `as i8`; fmaxf would give -127
        int q = IS_NAN(qr) ? 0 : (int)fminf(fmaxf(qr, -127.0f), 127.0f);
        float sum = (float)q; // |sum| <= 32 * 127: exact in f32
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        long long tile = (long long)(t >> 3) * nb + b;
        int g = t & 7, tg = (lane & 15) >> 2;
        ((signed char *)xq)[((tile * 32 + 4 * g + tg) * 2 + (lane >> 4)) * 4 + (lane & 3)] = (signed char)q;
        if (lane == 0) {
            xd[tile * 8 + g] = bad == 0.0f ? d : NAN_F;
            xs[tile * 8 + g] = (int)sum;
        }
    }
}

// out[t, r] = Σ over column blocks of the CPU's block products, for r < rows and t < n: w is
// [rows, cols] in type Q (q8_0, q4_0 or q4_k), xq/xd/xs as quantize_act_i8 wrote them for
// n_pad >= n tokens, out [n, rows] f32. Block (x, y) computes tokens 64x.. and rows 32y..;
// warp w takes the column units w, w + I8_WARPS, .. (a unit: 32 columns, 256 for q4_k).
template <int Q>
__device__ __forceinline__ void mm_i8(const u8 *w, long long row_bytes, int rows, int cols,
                                      const uint2 *xq, const float *xd, const int *xs, int n,
                                      float *out) {
    __shared__ float red[I8_WARPS * I8_ROWS * 8]; // [warp, row, token] one token tile's sums
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int g = lane >> 2, tg = lane & 3;
    int nb = cols >> 5;
    int j0 = blockIdx.x * I8_TILES;
    int nt = min(I8_TILES, ((n + 7) >> 3) - j0);
    int r0 = blockIdx.y * I8_ROWS;
    // This thread's weight rows: r0 + 8i + g for i < 4 (tile m holds i = 2m, 2m + 1), the
    // last row repeated past the end (their sums are not stored).
    const u8 *wr[4];
#pragma unroll
    for (int i = 0; i < 4; i++) wr[i] = w + (long long)min(r0 + 8 * i + g, rows - 1) * row_bytes;
    float acc[2][I8_TILES][4];
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
        for (int j = 0; j < I8_TILES; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[m][j][e] = 0.0f;

    if (Q == Q_Q8_0 || Q == Q_Q4_0) {
        for (int b0 = warp; b0 < nb; b0 += I8_WARPS * I8_UNROLL) {
            u32 a[I8_UNROLL][4][2]; // [unit][row i][half]
            float dw[I8_UNROLL][4];
#pragma unroll
            for (int u = 0; u < I8_UNROLL; u++) {
                int b = b0 + u * I8_WARPS;
                bool in = b < nb;
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    if (Q == Q_Q8_0) {
                        const u8 *blk = wr[i] + (long long)(in ? b : 0) * 34;
                        a[u][i][0] = ld_u32_2(blk + 2 + 4 * tg);
                        a[u][i][1] = ld_u32_2(blk + 18 + 4 * tg);
                        dw[u][i] = in ? f16_to_f32(ld_u16(blk)) : 0.0f;
                    } else {
                        const u8 *blk = wr[i] + (long long)(in ? b : 0) * 18;
                        u32 v = ld_u32_2(blk + 2 + 4 * tg); // low nibbles: columns 4tg.., high: 16 + 4tg..
                        a[u][i][0] = nib_minus8(v & 0x0f0f0f0fu);
                        a[u][i][1] = nib_minus8((v >> 4) & 0x0f0f0f0fu);
                        dw[u][i] = in ? f16_to_f32(ld_u16(blk)) : 0.0f;
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < I8_UNROLL; u++) {
                int b = b0 + u * I8_WARPS;
                if (b >= nb) break;
#pragma unroll
                for (int j = 0; j < I8_TILES; j++) {
                    if (j < nt) {
                        long long tile = (long long)(j0 + j) * nb + b;
                        uint2 bf = xq[tile * 32 + lane];
                        float da0 = xd[tile * 8 + 2 * tg], da1 = xd[tile * 8 + 2 * tg + 1];
#pragma unroll
                        for (int m = 0; m < 2; m++) {
                            int c[4];
                            mma_s8(c, a[u][2 * m][0], a[u][2 * m + 1][0], a[u][2 * m][1], a[u][2 * m + 1][1], bf.x, bf.y);
                            float dA = dw[u][2 * m], dB = dw[u][2 * m + 1];
                            acc[m][j][0] += dA * da0 * (float)c[0];
                            acc[m][j][1] += dA * da1 * (float)c[1];
                            acc[m][j][2] += dB * da0 * (float)c[2];
                            acc[m][j][3] += dB * da1 * (float)c[3];
                        }
                    }
                }
            }
        }
    } else if (Q == Q_Q4_K) {
        // A 144-byte block: d, dmin (f16), 12 bytes of 6-bit scales and mins, then 4 chunks of
        // 32 bytes, whose low nibbles are sub-block 2c and high nibbles sub-block 2c + 1.
        int nsb = cols >> 8;
        for (int sb = warp; sb < nsb; sb += I8_WARPS) {
            u32 hd[4];
            const u8 *blk[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                blk[i] = wr[i] + (long long)sb * 144;
                hd[i] = *(const u32 *)blk[i];
            }
#pragma unroll 1
            for (int c = 0; c < 4; c++) {
                u32 lo[4][2], hi[4][2];
                float dsc[4][2], dmn[4][2]; // [row i][sub-block 2c, 2c + 1]
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    u32 v0 = *(const u32 *)(blk[i] + 16 + 32 * c + 4 * tg);
                    u32 v1 = *(const u32 *)(blk[i] + 32 + 32 * c + 4 * tg);
                    lo[i][0] = v0 & 0x0f0f0f0fu;
                    lo[i][1] = v1 & 0x0f0f0f0fu;
                    hi[i][0] = (v0 >> 4) & 0x0f0f0f0fu;
                    hi[i][1] = (v1 >> 4) & 0x0f0f0f0fu;
                    float d = f16_to_f32((u16)(hd[i] & 0xffffu)), dmin = f16_to_f32((u16)(hd[i] >> 16));
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        int sc, mn;
                        q4k_scale_min(blk[i] + 4, 2 * c + h, &sc, &mn);
                        dsc[i][h] = d * (float)sc;
                        dmn[i][h] = dmin * (float)mn;
                    }
                }
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    int b = sb * 8 + 2 * c + h; // 32-column block of the activations
#pragma unroll
                    for (int j = 0; j < I8_TILES; j++) {
                        if (j < nt) {
                            long long tile = (long long)(j0 + j) * nb + b;
                            uint2 bf = xq[tile * 32 + lane];
                            float da0 = xd[tile * 8 + 2 * tg], da1 = xd[tile * 8 + 2 * tg + 1];
                            float sa0 = (float)xs[tile * 8 + 2 * tg], sa1 = (float)xs[tile * 8 + 2 * tg + 1];
#pragma unroll
                            for (int m = 0; m < 2; m++) {
                                int cc[4];
                                if (h == 0)
                                    mma_s8(cc, lo[2 * m][0], lo[2 * m + 1][0], lo[2 * m][1], lo[2 * m + 1][1], bf.x, bf.y);
                                else
                                    mma_s8(cc, hi[2 * m][0], hi[2 * m + 1][0], hi[2 * m][1], hi[2 * m + 1][1], bf.x, bf.y);
                                float sA = dsc[2 * m][h], sB = dsc[2 * m + 1][h];
                                float mA = dmn[2 * m][h], mB = dmn[2 * m + 1][h];
                                acc[m][j][0] += sA * da0 * (float)cc[0] - mA * da0 * sa0;
                                acc[m][j][1] += sA * da1 * (float)cc[1] - mA * da1 * sa1;
                                acc[m][j][2] += sB * da0 * (float)cc[2] - mB * da0 * sa0;
                                acc[m][j][3] += sB * da1 * (float)cc[3] - mB * da1 * sa1;
                            }
                        }
                    }
                }
            }
        }
    }

    // acc[m][j]: rows 16m + g (e 0, 1) and 16m + g + 8 (e 2, 3), tokens 8j + 2tg (e 0, 2) and
    // + 1 (e 1, 3). The warps' sums of one token tile, added in warp order.
    float *mine = red + warp * I8_ROWS * 8;
#pragma unroll
    for (int j = 0; j < I8_TILES; j++) {
        if (j < nt) {
#pragma unroll
            for (int m = 0; m < 2; m++) {
                int r = 16 * m + g;
                mine[r * 8 + 2 * tg] = acc[m][j][0];
                mine[r * 8 + 2 * tg + 1] = acc[m][j][1];
                mine[(r + 8) * 8 + 2 * tg] = acc[m][j][2];
                mine[(r + 8) * 8 + 2 * tg + 1] = acc[m][j][3];
            }
            __syncthreads();
            int row = tid & 31, tok = tid >> 5; // blockDim.x == 32 * I8_WARPS == I8_ROWS * 8
            float s = 0.0f;
            for (int k = 0; k < I8_WARPS; k++) s += red[(k * I8_ROWS + row) * 8 + tok];
            int t = (j0 + j) * 8 + tok, r = r0 + row;
            if (t < n && r < rows) out[(long long)t * rows + r] = s;
            __syncthreads();
        }
    }
}

#define I8_KERNEL(name, Q)                                                                          \
    extern "C" __global__ void __launch_bounds__(32 * I8_WARPS)                                     \
        matmul_i8_##name(const u8 *w, long long row_bytes, int rows, int cols, const uint2 *xq,     \
                         const float *xd, const int *xs, int n, float *out) {                       \
        mm_i8<Q>(w, row_bytes, rows, cols, xq, xd, xs, n, out);                                     \
    }

I8_KERNEL(q8_0, Q_Q8_0)
I8_KERNEL(q4_0, Q_Q4_0)
I8_KERNEL(q4_k, Q_Q4_K)
