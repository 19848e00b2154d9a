// Host check of the dequantizers in cuda/src/common.cuh (load_w1, load8<Q>) and of
// matmul.cu's dequant_bf16 packing, without a GPU: g++ compiles common.cuh with small shims,
// and every type's blocks (random bytes, finite f16 scales) are decoded three ways: load8,
// load_w1, and a port of formats' scalar dequantizers written from formats/SPEC.md.
//   g++ -O1 -std=c++17 -o /tmp/host_check tools/cuda/host_check.cpp && /tmp/host_check
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#define DLM_HOST_CHECK
#define __device__
#define __forceinline__ inline
#define __global__
struct float4 { float x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
struct Dim { unsigned x; };
static Dim threadIdx{0}, blockDim{1}, blockIdx{0}, gridDim{1};
static float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static double __longlong_as_double(unsigned long long i) { double d; memcpy(&d, &i, 8); return d; }
static float __shfl_xor_sync(unsigned, float v, int) { return v; }
static void __syncthreads() {}
typedef unsigned short u16;
static float f16_to_f32(u16 h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? std::ldexp((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp((float)(m | 1024), e - 25);
    return s ? -v : v;
}
#include "../../cuda/src/common.cuh"

static std::mt19937 rng(7);
static u16 rand_f16() { // finite, |x| in [2^-10, 2)
    int e = 5 + rng() % 11, m = rng() % 1024, s = rng() % 2;
    return (u16)((s << 15) | (e << 10) | m);
}

// References, from formats/SPEC.md "Block layouts".
static float ref(const u8 *row, int q, int i) {
    switch (q) {
    case Q_F32: { float f; memcpy(&f, row + 4 * i, 4); return f; }
    case Q_F16: { u16 h; memcpy(&h, row + 2 * i, 2); return f16_to_f32(h); }
    case Q_BF16: { u16 h; memcpy(&h, row + 2 * i, 2); return bf16_to_f32(h); }
    case Q_Q8_0: { const u8 *b = row + (i / 32) * 34; u16 d; memcpy(&d, b, 2); return f16_to_f32(d) * (float)(int8_t)b[2 + i % 32]; }
    case Q_Q4_0: {
        const u8 *b = row + (i / 32) * 18; u16 d; memcpy(&d, b, 2); int j = i % 32;
        int v = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
        return f16_to_f32(d) * (float)(v - 8);
    }
    case Q_Q4_K: {
        const u8 *b = row + (i / 256) * 144; u16 d, dm; memcpy(&d, b, 2); memcpy(&dm, b + 2, 2);
        const u8 *s = b + 4; int sc[8], mn[8];
        for (int j = 0; j < 4; j++) {
            sc[j] = s[j] & 63; mn[j] = s[j + 4] & 63;
            sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
            mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
        }
        int v = i % 256, c = v / 64, k = v % 64;
        int qv = k < 32 ? (b[16 + c * 32 + k] & 15) : (b[16 + c * 32 + k - 32] >> 4);
        int sj = k < 32 ? 2 * c : 2 * c + 1;
        return f16_to_f32(d) * (float)sc[sj] * (float)qv - f16_to_f32(dm) * (float)mn[sj];
    }
    case Q_Q6_K: {
        const u8 *b = row + (i / 256) * 210; int v = i % 256;
        int h = v / 128, qq = (v % 128) / 32, l = v % 32;
        int lb = 64 * h + 32 * (qq % 2) + l, ls = 4 * (qq / 2), hb = 32 * h + l, hs = 2 * qq;
        int q = ((b[lb] >> ls) & 15) | (((b[128 + hb] >> hs) & 3) << 4);
        u16 d; memcpy(&d, b + 208, 2);
        return f16_to_f32(d) * (float)(int8_t)b[192 + v / 16] * (float)(q - 32);
    }
    }
    return NAN;
}

static bool close(float a, float b) { return std::fabs(a - b) <= 1e-6f * (1.0f + std::fabs(b)); }

template <int Q> static int check(const char *name, int block_len, int block_bytes, int cols) {
    int rows = 3;
    int row_bytes = cols / block_len * block_bytes;
    std::vector<u8> w(rows * row_bytes + 16);
    // 16-aligned like a device allocation
    u8 *base = w.data() + (16 - ((uintptr_t)w.data() & 15)) % 16;
    for (int i = 0; i < rows * row_bytes; i++) base[i] = (u8)rng();
    for (int r = 0; r < rows; r++) {
        u8 *row = base + r * row_bytes;
        for (int b = 0; b < cols / block_len; b++) {
            u8 *blk = row + b * block_bytes;
            u16 h;
            if (Q == Q_F16) { h = rand_f16(); memcpy(blk, &h, 2); }
            if (Q == Q_BF16) { h = (u16)(0x3c00 + rng() % 0x0400 + ((rng() % 2) << 15)); memcpy(blk, &h, 2); }
            if (Q == Q_F32) { float f = (float)(rng() % 2001) / 1000.0f - 1.0f; memcpy(blk, &f, 4); }
            if (Q == Q_Q8_0 || Q == Q_Q4_0) { h = rand_f16(); memcpy(blk, &h, 2); }
            if (Q == Q_Q8_0) for (int k = 0; k < 32; k++) if (blk[2 + k] == 0x80) blk[2 + k] = 0x81;
            if (Q == Q_Q4_K) { h = rand_f16(); memcpy(blk, &h, 2); h = rand_f16(); memcpy(blk + 2, &h, 2); }
            if (Q == Q_Q6_K) { h = rand_f16(); memcpy(blk + 208, &h, 2); }
        }
    }
    int bad = 0;
    for (int r = 0; r < rows; r++) {
        const u8 *row = base + r * row_bytes;
        for (int c = 0; c < cols; c += 8) {
            float v[8];
            load8<Q>(row, c, v);
            for (int k = 0; k < 8; k++) {
                float a = ref(row, Q, c + k), b = load_w1(row, Q, c + k);
                if (!close(v[k], a) || !close(b, a)) {
                    if (bad++ < 5) printf("%s row %d col %d: load8 %g load_w1 %g ref %g\n", name, r, c + k, v[k], b, a);
                }
            }
        }
    }
    printf("%s: %s (%d values)\n", name, bad ? "MISMATCH" : "ok", rows * cols);
    return bad != 0;
}

int main() {
    int fail = 0;
    fail += check<Q_F32>("f32", 1, 4, 264);
    fail += check<Q_F16>("f16", 1, 2, 264);
    fail += check<Q_BF16>("bf16", 1, 2, 264);
    fail += check<Q_Q8_0>("q8_0", 32, 34, 384);
    fail += check<Q_Q4_0>("q4_0", 32, 18, 384);
    fail += check<Q_Q4_K>("q4_k", 256, 144, 768);
    fail += check<Q_Q6_K>("q6_k", 256, 210, 768);
    // bf16 rounding: nearest even, NaN kept.
    struct { float f; u16 want; } cases[] = {{1.0f, 0x3f80}, {__uint_as_float(0x3f808000u), 0x3f80},
                                             {__uint_as_float(0x3f818000u), 0x3f82}, {__uint_as_float(0x3f808001u), 0x3f81}};
    for (auto &t : cases) if (f32_to_bf16(t.f) != t.want) { printf("bf16 rounding of %a: %x\n", t.f, f32_to_bf16(t.f)); fail++; }
    if (!IS_NAN(bf16_to_f32(f32_to_bf16(NAN)))) { printf("bf16 NaN lost\n"); fail++; }
    printf(fail ? "FAILED\n" : "all ok\n");
    return fail ? 1 : 0;
}
