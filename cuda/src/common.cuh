// dlm CUDA: what every kernel file shares (src/kernels.rs puts this in front of each file
// before NVRTC compiles it). Activations are f32 row-major; weights are read in their stored
// type, row by row, `row_bytes` bytes a row.
//
// Kernel type ids (src/kernels.rs maps formats::QuantType to these; they are ggml's small ids,
// not the file's 1000.. ids): 0 f32, 1 f16, 2 bf16, 8 q8_0, 9 q4_0, 12 q4_k, 14 q6_k.
// Block layouts are formats/SPEC.md's ("Block layouts"), which are ggml's.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

#define Q_F32 0
#define Q_F16 1
#define Q_BF16 2
#define Q_Q8_0 8
#define Q_Q4_0 9
#define Q_Q4_K 12
#define Q_Q6_K 14

// NVRTC has no math.h: the constants by their bits.
#define NEG_INF_F __int_as_float(0xff800000)
#define NAN_F __int_as_float(0x7fffffff)
#define NEG_INF_D __longlong_as_double(0xfff0000000000000ULL)
#define IS_NAN(x) ((x) != (x))

// (tools/cuda/host_check.cpp compiles the dequantizers on the host with its own f16 helpers.)
#ifndef DLM_HOST_CHECK
__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
#endif

__device__ __forceinline__ float bf16_to_f32(u16 h) {
    return __uint_as_float(((u32)h) << 16);
}

// Round to nearest even; NaN stays NaN.
__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
}

#ifndef DLM_HOST_CHECK
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif

// A little-endian u16 at a 2-byte-aligned address (every row of every type starts 2-aligned:
// row_bytes is even for all of them, and device allocations are 256-aligned).
__device__ __forceinline__ u16 ld_u16(const u8 *p) { return *(const u16 *)p; }

// The 6-bit scale and min of sub-block j (0..8) of a q4_k block's 12 packed bytes `s`.
__device__ __forceinline__ void q4k_scale_min(const u8 *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Element c of the weight row starting at `row` (scalar; embeddings and the fallback matmul).
__device__ __forceinline__ float load_w1(const u8 *row, int quant, int c) {
    switch (quant) {
    case Q_F32: return ((const float *)row)[c];
    case Q_F16: return f16_to_f32(((const u16 *)row)[c]);
    case Q_BF16: return bf16_to_f32(((const u16 *)row)[c]);
    case Q_Q8_0: {
        const u8 *b = row + (c >> 5) * 34;
        float d = f16_to_f32(ld_u16(b));
        return d * (float)((const signed char *)(b + 2))[c & 31];
    }
    case Q_Q4_0: {
        const u8 *b = row + (c >> 5) * 18;
        float d = f16_to_f32(ld_u16(b));
        int j = c & 31;
        u8 q = b[2 + (j & 15)];
        int v = j < 16 ? (q & 15) : (q >> 4);
        return d * (float)(v - 8);
    }
    case Q_Q4_K: {
        const u8 *b = row + (c >> 8) * 144;
        int v = c & 255;
        int sc, m;
        q4k_scale_min(b + 4, v >> 5, &sc, &m);
        float d = f16_to_f32(ld_u16(b)), dmin = f16_to_f32(ld_u16(b + 2));
        u8 q = b[16 + 32 * (v >> 6) + (v & 31)];
        int qv = (v & 32) ? (q >> 4) : (q & 15);
        return d * (float)sc * (float)qv - dmin * (float)m;
    }
    case Q_Q6_K: {
        const u8 *b = row + (c >> 8) * 210;
        int v = c & 255;
        int h = v >> 7, qq = (v >> 5) & 3, l = v & 31;
        int lo = (b[64 * h + 32 * (qq & 1) + l] >> (4 * (qq >> 1))) & 15;
        int hi = (b[128 + 32 * h + l] >> (2 * qq)) & 3;
        float d = f16_to_f32(ld_u16(b + 208));
        return d * (float)((const signed char *)(b + 192))[v >> 4] * (float)((lo | (hi << 4)) - 32);
    }
    }
    return 0.0f;
}

// Elements c..c+8 of the weight row starting at `row`, c a multiple of 8 (and the row's
// length a multiple of 8), into v. Q is the kernel type id. Loads: f32 two 16-byte loads,
// f16/bf16 one, q8_0/q4_0 four 2-byte loads (their 34/18-byte blocks are only 2-aligned),
// q4_k one 8-byte load (144-byte blocks keep 16-byte alignment), q6_k bytes (210-byte blocks).
template <int Q> __device__ __forceinline__ void load8(const u8 *row, int c, float *v) {
    if (Q == Q_F32) {
        const float4 *p = (const float4 *)((const float *)row + c);
        float4 a = p[0], b = p[1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else if (Q == Q_F16 || Q == Q_BF16) {
        uint4 u = *(const uint4 *)((const u16 *)row + c);
        u32 w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            u16 lo = (u16)(w[i] & 0xffffu), hi = (u16)(w[i] >> 16);
            v[2 * i] = Q == Q_F16 ? f16_to_f32(lo) : bf16_to_f32(lo);
            v[2 * i + 1] = Q == Q_F16 ? f16_to_f32(hi) : bf16_to_f32(hi);
        }
    } else if (Q == Q_Q8_0) {
        const u8 *b = row + (c >> 5) * 34;
        float d = f16_to_f32(ld_u16(b));
        const u8 *q = b + 2 + (c & 31);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            u16 h = ld_u16(q + 2 * i);
            v[2 * i] = d * (float)(signed char)(h & 0xff);
            v[2 * i + 1] = d * (float)(signed char)(h >> 8);
        }
    } else if (Q == Q_Q4_0) {
        const u8 *b = row + (c >> 5) * 18;
        float d = f16_to_f32(ld_u16(b));
        int j = c & 31;
        const u8 *q = b + 2 + (j & 15);
        int shift = j < 16 ? 0 : 4;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            u32 h = ld_u16(q + 2 * i);
            v[2 * i] = d * (float)((int)((h >> shift) & 15) - 8);
            v[2 * i + 1] = d * (float)((int)((h >> (8 + shift)) & 15) - 8);
        }
    } else if (Q == Q_Q4_K) {
        const u8 *b = row + (c >> 8) * 144;
        int vi = c & 255;
        int sc, m;
        q4k_scale_min(b + 4, vi >> 5, &sc, &m);
        float scale = f16_to_f32(ld_u16(b)) * (float)sc;
        float mn = f16_to_f32(ld_u16(b + 2)) * (float)m;
        uint2 u = *(const uint2 *)(b + 16 + 32 * (vi >> 6) + (vi & 31));
        int shift = (vi & 32) ? 4 : 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            u32 byte = ((i < 4 ? u.x : u.y) >> (8 * (i & 3))) & 0xffu;
            v[i] = scale * (float)((byte >> shift) & 15) - mn;
        }
    } else if (Q == Q_Q6_K) {
        const u8 *b = row + (c >> 8) * 210;
        int vi = c & 255;
        int h = vi >> 7, qq = (vi >> 5) & 3, l = vi & 31;
        float scale = f16_to_f32(ld_u16(b + 208)) * (float)((const signed char *)(b + 192))[vi >> 4];
        const u8 *ql = b + 64 * h + 32 * (qq & 1) + l;
        const u8 *qh = b + 128 + 32 * h + l;
        int ls = 4 * (qq >> 1), hs = 2 * qq;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int q = ((ql[i] >> ls) & 15) | (((qh[i] >> hs) & 3) << 4);
            v[i] = scale * (float)(q - 32);
        }
    }
}

__device__ float block_sum(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float s = 0.0f;
    int nw = (blockDim.x + 31) >> 5;
    for (int k = 0; k < nw; k++) s += sh[k];
    return s;
}
