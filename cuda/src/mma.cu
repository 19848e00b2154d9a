// Few-row matmul on tensor cores (after common.cuh; needs sm_80+: on older GPUs this file does
// not compile and matmul.cu's kernels serve instead). For 9..64 activation rows, where the
// CUDA-core kernel of matmul.cu is compute-bound: a block dequantizes a tile of MMA_ROWS weight
// rows x MMA_KC columns to bf16 in shared memory (load8, as every kernel), converts the
// activations of the same columns to bf16 beside it, and each warp runs mma.m16n8k16 (bf16 in,
// f32 accumulation) over its 16 rows and every 8-token tile. Each weight byte is read from
// memory once; the columns may be split over gridDim.y blocks, whose partial sums go to
// [splits, n, rows] and are added by mma_sum_splits in a fixed order (deterministic).

#define MMA_WARPS 4
#define MMA_ROWS (16 * MMA_WARPS) // weight rows per block
#define MMA_KC 128                // columns per shared-memory tile
#define MMA_MAXN 64               // activation rows at most
#define MMA_LD (MMA_KC + 8)       // row stride of the tiles in bf16: 68 words, so the fragment
                                  // loads of 8 rows x 4 lanes hit 32 different banks

// d += a · b for one m16n8k16 tile: a is 16x16 (row-major fragments a0..a3), b 16x8 ("col").
// (tools/cuda/emulate.cpp has a host version for its warp emulation.)
#ifndef DLM_HOST_CHECK
__device__ __forceinline__ void mma_bf16(float *d, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#endif

__device__ __forceinline__ uint4 pack_bf16x8(const float *v) {
    uint4 u;
    u.x = (u32)f32_to_bf16(v[0]) | ((u32)f32_to_bf16(v[1]) << 16);
    u.y = (u32)f32_to_bf16(v[2]) | ((u32)f32_to_bf16(v[3]) << 16);
    u.z = (u32)f32_to_bf16(v[4]) | ((u32)f32_to_bf16(v[5]) << 16);
    u.w = (u32)f32_to_bf16(v[6]) | ((u32)f32_to_bf16(v[7]) << 16);
    return u;
}

// out[s, t, r] = sum over the columns of split s (chunks s*cps .. (s+1)*cps of MMA_KC) of
// x[t, c] * w[r, c]; x is [n, cols] f32 (n <= MMA_MAXN), out [gridDim.y, n, rows] f32.
template <int Q>
__device__ __forceinline__ void mm_mma(const u8 *w, long long row_bytes, int rows, int cols,
                                       const float *x, int n, int cps, float *out) {
    __shared__ __align__(16) u16 ws[MMA_ROWS * MMA_LD]; // [MMA_ROWS, MMA_KC] weights, bf16
    __shared__ __align__(16) u16 xs[MMA_MAXN * MMA_LD]; // [n rounded up to 8, MMA_KC] x, bf16
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int g = lane >> 2, tg = lane & 3;
    int rb = blockIdx.x * MMA_ROWS;
    int n_tiles = (n + 7) >> 3;
    int n_chunks = (cols + MMA_KC - 1) / MMA_KC;
    int ch0 = blockIdx.y * cps;
    int ch1 = min(n_chunks, ch0 + cps);
    float acc[MMA_MAXN / 8][4];
#pragma unroll
    for (int j = 0; j < MMA_MAXN / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[j][e] = 0.0f;

    for (int ch = ch0; ch < ch1; ch++) {
        int c0 = ch * MMA_KC;
        __syncthreads(); // the previous tile's readers are done
        for (int i = tid; i < MMA_ROWS * (MMA_KC / 8); i += 32 * MMA_WARPS) {
            int r = i / (MMA_KC / 8), c = (i % (MMA_KC / 8)) * 8;
            float v[8];
            if (rb + r < rows && c0 + c < cols) {
                load8<Q>(w + (long long)(rb + r) * row_bytes, c0 + c, v);
            } else {
#pragma unroll
                for (int k = 0; k < 8; k++) v[k] = 0.0f;
            }
            *(uint4 *)(ws + r * MMA_LD + c) = pack_bf16x8(v);
        }
        for (int i = tid; i < n_tiles * 8 * (MMA_KC / 8); i += 32 * MMA_WARPS) {
            int t = i / (MMA_KC / 8), c = (i % (MMA_KC / 8)) * 8;
            float v[8];
            if (t < n && c0 + c < cols) {
                const float4 *p = (const float4 *)(x + (long long)t * cols + c0 + c);
                float4 a = p[0], b = p[1];
                v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
                v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
            } else {
#pragma unroll
                for (int k = 0; k < 8; k++) v[k] = 0.0f;
            }
            *(uint4 *)(xs + t * MMA_LD + c) = pack_bf16x8(v);
        }
        __syncthreads();
        const u16 *wa = ws + warp * 16 * MMA_LD;
#pragma unroll 2
        for (int kk = 0; kk < MMA_KC; kk += 16) {
            u32 a0 = *(const u32 *)(wa + g * MMA_LD + kk + 2 * tg);
            u32 a1 = *(const u32 *)(wa + (g + 8) * MMA_LD + kk + 2 * tg);
            u32 a2 = *(const u32 *)(wa + g * MMA_LD + kk + 8 + 2 * tg);
            u32 a3 = *(const u32 *)(wa + (g + 8) * MMA_LD + kk + 8 + 2 * tg);
#pragma unroll
            for (int j = 0; j < MMA_MAXN / 8; j++) {
                if (j < n_tiles) {
                    const u16 *xb = xs + (j * 8 + g) * MMA_LD + kk + 2 * tg;
                    mma_bf16(acc[j], a0, a1, a2, a3, *(const u32 *)xb, *(const u32 *)(xb + 8));
                }
            }
        }
    }
    // acc[j]: rows r (e 0, 1) and r + 8 (e 2, 3) of tokens 8j + 2tg (e 0, 2) and + 1 (e 1, 3).
    float *o = out + (long long)blockIdx.y * n * rows;
    int r = rb + warp * 16 + g;
#pragma unroll
    for (int j = 0; j < MMA_MAXN / 8; j++) {
        int t = j * 8 + 2 * tg;
        if (j < n_tiles) {
            if (t < n && r < rows) o[(long long)t * rows + r] = acc[j][0];
            if (t + 1 < n && r < rows) o[(long long)(t + 1) * rows + r] = acc[j][1];
            if (t < n && r + 8 < rows) o[(long long)t * rows + r + 8] = acc[j][2];
            if (t + 1 < n && r + 8 < rows) o[(long long)(t + 1) * rows + r + 8] = acc[j][3];
        }
    }
}

#define MMA_KERNEL(name, Q)                                                                        \
    extern "C" __global__ void matmul_mma_##name(const u8 *w, long long row_bytes, int rows, int cols, \
                                                 const float *x, int n, int cps, float *out) {       \
        mm_mma<Q>(w, row_bytes, rows, cols, x, n, cps, out);                                       \
    }

MMA_KERNEL(f32, Q_F32)
MMA_KERNEL(f16, Q_F16)
MMA_KERNEL(bf16, Q_BF16)
MMA_KERNEL(q8_0, Q_Q8_0)
MMA_KERNEL(q4_0, Q_Q4_0)
MMA_KERNEL(q4_k, Q_Q4_K)
MMA_KERNEL(q6_k, Q_Q6_K)

// out[i] = sum over s < splits of part[s * len + i], s in order.
extern "C" __global__ void mma_sum_splits(const float *part, int splits, long long len, float *out) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int k = 0; k < splits; k++) s += part[k * len + i];
        out[i] = s;
    }
}
