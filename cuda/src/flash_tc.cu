// Tiled attention on tensor cores (after common.cuh; sm_80+): flash.cu's algorithm with the two
// products on mma.m16n8k16 (bf16 operands, or f16 in attention_flash_tc_f16; f32 accumulation). For models not stored in f32
// (src/attention.rs keeps f32 models on flash.cu's f32 arithmetic). Heads 16..128 wide, a
// multiple of 16.
//
// One block per (tile of TC_Q = 64 query rows, head); warp w owns rows 16w..16w+16 and keeps
// its queries as mma A fragments in registers (scaled by 1/sqrt(d)). Per tile of TC_K = 64
// keys: the block stores K [key][dim] and V transposed [dim][key] in shared memory as bf16;
// each warp computes S = Q·Kᵀ (16 x 64, 8 n-tiles), the online softmax on the accumulator
// fragments (row max over the 4 lanes that share a row), and O += P·V with P's accumulator
// fragments reused as A fragments (bf16). Lane (g = lane / 4, tg = lane % 4) holds rows g and
// g + 8 of every tile, columns 2tg and 2tg + 1 of every 8-wide n-tile.

#define TC_Q 64
#define TC_K 64
#define TC_MAX_DIM 128
#define TC_KLD (TC_MAX_DIM + 8) // Ks row stride (bf16): conflict-free fragment loads
#define TC_VLD (TC_K + 8)       // Vt row stride (bf16)
#ifndef TC_LOADS
#define TC_LOADS 4 // 16-byte loads of K and of V a thread has in flight while loading a tile
#endif

// Operands in bf16 (F16 false) or f16 (F16 true: 3 more bits of mantissa, so 8x less rounding
// in Q·Kᵀ and P·V, for a range of ±65504 that attention inputs stay far inside).
#ifndef DLM_HOST_CHECK
template <bool F16>
__device__ __forceinline__ void tc_mma(float *d, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    if (F16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#else
// (the host emulation has bf16 only: emulate.cpp checks the bf16 kernel)
template <bool F16>
static void tc_mma(float *d, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    mma_bf16(d, a0, a1, a2, a3, b0, b1);
}
#endif

template <bool F16> __device__ __forceinline__ u16 to_tc(float f) {
    return F16 ? f32_to_f16(f) : f32_to_bf16(f);
}

template <bool F16> __device__ __forceinline__ u32 pack2(float lo, float hi) {
    return (u32)to_tc<F16>(lo) | ((u32)to_tc<F16>(hi) << 16);
}

// Arguments as flash.cu's attention_flash, and a split of the keys for short spans (too few
// blocks to fill the GPU): block z of gridDim.z takes keys z*kps .. (z+1)*kps (kps a multiple of
// TC_K). With part_o null (one split) it writes out; else the unnormalized output of its keys
// to part_o ([splits, n, q_dim]) and each row's max and sum to part_ml ([splits, n, n_heads, 2]),
// which attention_combine merges.
template <bool F16>
__device__ __forceinline__ void flash_tc(const float *q, const float *k, const float *v, int n,
                                         const float *ck, const float *cv, const int *outside,
                                         int n_out, int n_heads, int n_kv_heads, int head_dim,
                                         float scale, float *out, int kps, float *part_o,
                                         float *part_ml) {
    __shared__ __align__(16) u16 ks[TC_K * TC_KLD];       // [TC_K, head_dim] keys
    __shared__ __align__(16) u16 vt[TC_MAX_DIM * TC_VLD]; // [head_dim, TC_K] values, transposed
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int g = lane >> 2, tg = lane & 3;
    int h = blockIdx.y, kvh = h / (n_heads / n_kv_heads);
    int q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
    int n_keys = n + n_out;
    int k_begin = blockIdx.z * kps, k_end = min(n_keys, k_begin + kps);
    int nks = head_dim >> 4;  // k-steps over the head
    int ndt = head_dim >> 3;  // 8-wide tiles of the head
    int r0 = blockIdx.x * TC_Q + warp * 16 + g, r1 = r0 + 8; // this lane's two query rows
    // A warp whose 16 rows are all past the span (a short span, as in cached steps) only helps
    // load the tiles.
    bool active = blockIdx.x * TC_Q + warp * 16 < n;

    // Queries as A fragments: qa[s] covers head dims 16s..16s+16.
    u32 qa[TC_MAX_DIM / 16][4];
    const float *q0 = q + (long long)r0 * q_dim + h * head_dim;
    const float *q1 = q + (long long)r1 * q_dim + h * head_dim;
#pragma unroll
    for (int s = 0; s < TC_MAX_DIM / 16; s++) {
        if (s < nks) {
            int c = 16 * s + 2 * tg;
            qa[s][0] = r0 < n ? pack2<F16>(q0[c] * scale, q0[c + 1] * scale) : 0u;
            qa[s][1] = r1 < n ? pack2<F16>(q1[c] * scale, q1[c + 1] * scale) : 0u;
            qa[s][2] = r0 < n ? pack2<F16>(q0[c + 8] * scale, q0[c + 9] * scale) : 0u;
            qa[s][3] = r1 < n ? pack2<F16>(q1[c + 8] * scale, q1[c + 9] * scale) : 0u;
        } else {
            qa[s][0] = qa[s][1] = qa[s][2] = qa[s][3] = 0u;
        }
    }
    float o[TC_MAX_DIM / 8][4];
#pragma unroll
    for (int j = 0; j < TC_MAX_DIM / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m0 = NEG_INF_F, m1 = NEG_INF_F; // running max of rows r0, r1
    float l0 = 0.0f, l1 = 0.0f;           // this lane's part of the running sums

    for (int base = k_begin; base < k_end; base += TC_K) {
        __syncthreads(); // the previous tile's readers are done
        // 16-byte loads (head_dim is a multiple of 16, every row 16-byte aligned), TC_LOADS per
        // thread issued before the first is stored, so the tile's bytes are in flight together.
        int d4n = head_dim >> 2, total4 = TC_K * d4n;
        for (int i0 = tid; i0 < total4; i0 += TC_LOADS * blockDim.x) {
            float4 kr[TC_LOADS], vr[TC_LOADS];
#pragma unroll
            for (int u = 0; u < TC_LOADS; u++) {
                int i = i0 + u * blockDim.x;
                int kk = i / d4n, d = (i - kk * d4n) * 4;
                int j = base + kk;
                kr[u] = vr[u] = float4{0.0f, 0.0f, 0.0f, 0.0f};
                if (i < total4 && j < k_end) {
                    long long off = (j < n ? (long long)j : (long long)outside[j - n]) * kv_dim + kvh * head_dim + d;
                    kr[u] = *(const float4 *)((j < n ? k : ck) + off);
                    vr[u] = *(const float4 *)((j < n ? v : cv) + off);
                }
            }
#pragma unroll
            for (int u = 0; u < TC_LOADS; u++) {
                int i = i0 + u * blockDim.x;
                if (i < total4) {
                    int kk = i / d4n, d = (i - kk * d4n) * 4;
                    uint2 kw;
                    kw.x = pack2<F16>(kr[u].x, kr[u].y);
                    kw.y = pack2<F16>(kr[u].z, kr[u].w);
                    *(uint2 *)(ks + kk * TC_KLD + d) = kw;
                    vt[d * TC_VLD + kk] = to_tc<F16>(vr[u].x);
                    vt[(d + 1) * TC_VLD + kk] = to_tc<F16>(vr[u].y);
                    vt[(d + 2) * TC_VLD + kk] = to_tc<F16>(vr[u].z);
                    vt[(d + 3) * TC_VLD + kk] = to_tc<F16>(vr[u].w);
                }
            }
        }
        __syncthreads();
        if (!active) continue;

        // S = Q·Kᵀ for 64 keys: s[j] is keys 8j..8j+8.
        float s[TC_K / 8][4];
#pragma unroll
        for (int j = 0; j < TC_K / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int st = 0; st < TC_MAX_DIM / 16; st++) {
            if (st < nks) {
#pragma unroll
                for (int j = 0; j < TC_K / 8; j++) {
                    const u16 *kb = ks + (j * 8 + g) * TC_KLD + 16 * st + 2 * tg;
                    tc_mma<F16>(s[j], qa[st][0], qa[st][1], qa[st][2], qa[st][3], *(const u32 *)kb,
                           *(const u32 *)(kb + 8));
                }
            }
        }
        // Mask keys past the end; the tile's row maxima over the 4 lanes of a row.
        float t0 = NEG_INF_F, t1 = NEG_INF_F;
#pragma unroll
        for (int j = 0; j < TC_K / 8; j++) {
            int key = base + j * 8 + 2 * tg;
            if (key >= k_end) s[j][0] = s[j][2] = NEG_INF_F;
            if (key + 1 >= k_end) s[j][1] = s[j][3] = NEG_INF_F;
            t0 = fmaxf(t0, fmaxf(s[j][0], s[j][1]));
            t1 = fmaxf(t1, fmaxf(s[j][2], s[j][3]));
        }
        for (int x = 1; x < 4; x <<= 1) {
            t0 = fmaxf(t0, __shfl_xor_sync(0xffffffffu, t0, x));
            t1 = fmaxf(t1, __shfl_xor_sync(0xffffffffu, t1, x));
        }
        float n0 = fmaxf(m0, t0), n1 = fmaxf(m1, t1); // finite: key `base` is always valid
        float c0 = expf(m0 - n0), c1 = expf(m1 - n1);  // 0 on the first tile (m = -inf)
        m0 = n0;
        m1 = n1;
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int j = 0; j < TC_MAX_DIM / 8; j++) {
            o[j][0] *= c0;
            o[j][1] *= c0;
            o[j][2] *= c1;
            o[j][3] *= c1;
        }
#pragma unroll
        for (int j = 0; j < TC_K / 8; j++) {
            s[j][0] = expf(s[j][0] - n0);
            s[j][1] = expf(s[j][1] - n0);
            s[j][2] = expf(s[j][2] - n1);
            s[j][3] = expf(s[j][3] - n1);
            l0 += s[j][0] + s[j][1];
            l1 += s[j][2] + s[j][3];
        }
        // O += P·V: P's n-tiles 2ks, 2ks+1 are the A fragment of keys 16ks..16ks+16.
#pragma unroll
        for (int kst = 0; kst < TC_K / 16; kst++) {
            u32 a0 = pack2<F16>(s[2 * kst][0], s[2 * kst][1]);
            u32 a1 = pack2<F16>(s[2 * kst][2], s[2 * kst][3]);
            u32 a2 = pack2<F16>(s[2 * kst + 1][0], s[2 * kst + 1][1]);
            u32 a3 = pack2<F16>(s[2 * kst + 1][2], s[2 * kst + 1][3]);
#pragma unroll
            for (int j = 0; j < TC_MAX_DIM / 8; j++) {
                if (j < ndt) {
                    const u16 *vb = vt + (j * 8 + g) * TC_VLD + 16 * kst + 2 * tg;
                    tc_mma<F16>(o[j], a0, a1, a2, a3, *(const u32 *)vb, *(const u32 *)(vb + 8));
                }
            }
        }
    }
    if (!active) return;
    for (int x = 1; x < 4; x <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, x);
        l1 += __shfl_xor_sync(0xffffffffu, l1, x);
    }
    float i0 = 1.0f / l0, i1 = 1.0f / l1;
    float *dst = out;
    if (part_o) {
        // Unnormalized, with this split's max and sum beside it.
        i0 = i1 = 1.0f;
        dst = part_o + (long long)blockIdx.z * n * q_dim;
        if (tg == 0) {
            float *ml = part_ml + ((long long)blockIdx.z * n * n_heads) * 2;
            if (r0 < n) { ml[((long long)r0 * n_heads + h) * 2] = m0; ml[((long long)r0 * n_heads + h) * 2 + 1] = l0; }
            if (r1 < n) { ml[((long long)r1 * n_heads + h) * 2] = m1; ml[((long long)r1 * n_heads + h) * 2 + 1] = l1; }
        }
    }
    float *o0 = dst + (long long)r0 * q_dim + h * head_dim;
    float *o1 = dst + (long long)r1 * q_dim + h * head_dim;
#pragma unroll
    for (int j = 0; j < TC_MAX_DIM / 8; j++) {
        if (j < ndt) {
            int d = 8 * j + 2 * tg;
            if (r0 < n) {
                o0[d] = o[j][0] * i0;
                o0[d + 1] = o[j][1] * i0;
            }
            if (r1 < n) {
                o1[d] = o[j][2] * i1;
                o1[d + 1] = o[j][3] * i1;
            }
        }
    }
}

#define FLASH_TC_ARGS                                                                              \
    const float *q, const float *k, const float *v, int n, const float *ck, const float *cv,        \
        const int *outside, int n_out, int n_heads, int n_kv_heads, int head_dim, float scale,      \
        float *out, int kps, float *part_o, float *part_ml
#define FLASH_TC_PASS q, k, v, n, ck, cv, outside, n_out, n_heads, n_kv_heads, head_dim, scale, out, kps, part_o, part_ml

extern "C" __global__ void attention_flash_tc(FLASH_TC_ARGS) { flash_tc<false>(FLASH_TC_PASS); }
extern "C" __global__ void attention_flash_tc_f16(FLASH_TC_ARGS) { flash_tc<true>(FLASH_TC_PASS); }

// out[i, h*hd + d] from the splits of attention_flash_tc: with M the largest split max,
// sum_s o_s * e^(m_s - M) / sum_s l_s * e^(m_s - M). One block per (row, head), head_dim threads.
extern "C" __global__ void attention_combine(const float *part_o, const float *part_ml, int splits,
                                             int n, int n_heads, int head_dim, float *out) {
    int i = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
    if (d >= head_dim) return;
    int q_dim = n_heads * head_dim;
    float mx = NEG_INF_F;
    for (int s = 0; s < splits; s++) mx = fmaxf(mx, part_ml[(((long long)s * n + i) * n_heads + h) * 2]);
    float o = 0.0f, l = 0.0f;
    for (int s = 0; s < splits; s++) {
        long long at = (((long long)s * n + i) * n_heads + h) * 2;
        float w = expf(part_ml[at] - mx);
        l += w * part_ml[at + 1];
        o += w * part_o[((long long)s * n + i) * q_dim + h * head_dim + d];
    }
    out[(long long)i * q_dim + h * head_dim + d] = o / l;
}
