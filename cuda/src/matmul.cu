// Matmul kernels (after common.cuh): the few-token matmul that streams each weight byte once,
// and the two helpers of the cuBLAS path (weights dequantized to a bf16 tile, activations
// converted to f16/bf16). Every kernel here needs `cols` a multiple of 8 (src/matmul.rs checks
// and uses matmul_w from kernels.cu otherwise).

#define FEW_ROWS 4  // weight rows per warp: each activation load serves FEW_ROWS rows
#define FEW_TOK 8   // tokens per pass: each dequantized weight serves FEW_TOK tokens
#define FEW_WARPS 4 // warps per block (blockDim.x = 32 * FEW_WARPS)

// out[t, r] = sum_c x[t, c] * w[r, c] for t < n; x is [n, cols] f32, out [n, rows] f32, w
// [rows, cols] in type Q. Warp `g` of the grid owns rows 4g..4g+4; lane l takes columns
// 8l + 256i .. +8 (coalesced), dequantizes them in registers once per pass of FEW_TOK tokens,
// and the warp sums its lanes with shuffles at the end of the pass. For n <= FEW_TOK the
// weight rows are read once; each further pass re-reads them (from L1/L2, they were just read).
template <int Q>
__device__ __forceinline__ void mm_few(const u8 *w, long long row_bytes, int rows, int cols,
                                       const float *x, int n, float *out) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r0 = (blockIdx.x * FEW_WARPS + warp) * FEW_ROWS;
    if (r0 >= rows) return;
    for (int t0 = 0; t0 < n; t0 += FEW_TOK) {
        int nt = min(FEW_TOK, n - t0);
        float acc[FEW_ROWS][FEW_TOK];
#pragma unroll
        for (int i = 0; i < FEW_ROWS; i++)
#pragma unroll
            for (int t = 0; t < FEW_TOK; t++) acc[i][t] = 0.0f;
        for (int c = lane * 8; c < cols; c += 256) {
            float wv[FEW_ROWS][8];
#pragma unroll
            for (int i = 0; i < FEW_ROWS; i++) {
                if (r0 + i < rows) {
                    load8<Q>(w + (long long)(r0 + i) * row_bytes, c, wv[i]);
                } else {
#pragma unroll
                    for (int k = 0; k < 8; k++) wv[i][k] = 0.0f;
                }
            }
#pragma unroll
            for (int t = 0; t < FEW_TOK; t++) {
                if (t < nt) {
                    const float4 *xp = (const float4 *)(x + (long long)(t0 + t) * cols + c);
                    float4 a = xp[0], b = xp[1];
#pragma unroll
                    for (int i = 0; i < FEW_ROWS; i++) {
                        float s = wv[i][0] * a.x + wv[i][1] * a.y + wv[i][2] * a.z + wv[i][3] * a.w;
                        s += wv[i][4] * b.x + wv[i][5] * b.y + wv[i][6] * b.z + wv[i][7] * b.w;
                        acc[i][t] += s;
                    }
                }
            }
        }
#pragma unroll
        for (int i = 0; i < FEW_ROWS; i++) {
#pragma unroll
            for (int t = 0; t < FEW_TOK; t++) {
                float v = acc[i][t];
                for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                if (lane == 0 && t < nt && r0 + i < rows) out[(long long)(t0 + t) * rows + r0 + i] = v;
            }
        }
    }
}

// Rows r0..r0+n_rows of w, dequantized to bf16 into out ([n_rows, cols], row-major). One
// thread per 8 values, grid-stride.
template <int Q>
__device__ __forceinline__ void dequant_bf16(const u8 *w, long long row_bytes, long long r0, int n_rows,
                                             int cols, u16 *out) {
    long long per_row = cols >> 3;
    long long total = (long long)n_rows * per_row;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long r = i / per_row;
        int c = (int)(i - r * per_row) * 8;
        float v[8];
        load8<Q>(w + (r0 + r) * row_bytes, c, v);
        uint4 u;
        u.x = (u32)f32_to_bf16(v[0]) | ((u32)f32_to_bf16(v[1]) << 16);
        u.y = (u32)f32_to_bf16(v[2]) | ((u32)f32_to_bf16(v[3]) << 16);
        u.z = (u32)f32_to_bf16(v[4]) | ((u32)f32_to_bf16(v[5]) << 16);
        u.w = (u32)f32_to_bf16(v[6]) | ((u32)f32_to_bf16(v[7]) << 16);
        *(uint4 *)(out + r * cols + c) = u;
    }
}

#define MM_KERNELS(name, Q)                                                                          \
    extern "C" __global__ void matmul_few_##name(const u8 *w, long long row_bytes, int rows, int cols, \
                                                 const float *x, int n, float *out) {                \
        mm_few<Q>(w, row_bytes, rows, cols, x, n, out);                                              \
    }                                                                                                \
    extern "C" __global__ void dequant_bf16_##name(const u8 *w, long long row_bytes, long long r0,   \
                                                   int n_rows, int cols, u16 *out) {                 \
        dequant_bf16<Q>(w, row_bytes, r0, n_rows, cols, out);                                        \
    }

MM_KERNELS(f32, Q_F32)
MM_KERNELS(f16, Q_F16)
MM_KERNELS(bf16, Q_BF16)
MM_KERNELS(q8_0, Q_Q8_0)
MM_KERNELS(q4_0, Q_Q4_0)
MM_KERNELS(q4_k, Q_Q4_K)
MM_KERNELS(q6_k, Q_Q6_K)

// out[i] = x[i] as f16 (to_bf16 == 0) or bf16 (to_bf16 != 0), round to nearest even.
extern "C" __global__ void to_half(const float *x, long long len, int to_bf16, u16 *out) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = to_bf16 ? f32_to_bf16(x[i]) : f32_to_f16(x[i]);
}
