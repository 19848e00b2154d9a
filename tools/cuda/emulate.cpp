// Runs the CUDA kernels on the host, one std::thread per CUDA thread, to check their indexing
// without a GPU: __syncthreads is a block barrier, shuffles and mma.m16n8k16 are warp
// collectives emulated from the PTX ISA's fragment layouts (what this checks is the kernels'
// tiling, guards and index arithmetic; the fragment layout itself is this file's reading of
// the ISA, which only the GPU can confirm).
//   g++ -O2 -std=c++20 -pthread -o /tmp/emulate tools/cuda/emulate.cpp && /tmp/emulate
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#define DLM_HOST_CHECK
#define __device__
#define __forceinline__ inline
#define __global__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(n)
struct float4 { float x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
struct Dim { unsigned x = 0, y = 0, z = 0; };
static thread_local Dim threadIdx, blockIdx;
static Dim blockDim, gridDim;
static float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static double __longlong_as_double(unsigned long long i) { double d; memcpy(&d, &i, 8); return d; }
static int min(int a, int b) { return a < b ? a : b; }
typedef unsigned short u16;
typedef unsigned int u32;
static float f16_to_f32(u16 h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? std::ldexp((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp((float)(m | 1024), e - 25);
    return s ? -v : v;
}
static u16 f32_to_f16(float) { return 0; } // not used by the kernels checked here

// Block and warp synchronization of the running launch.
static std::barrier<> *g_block;
static std::vector<std::unique_ptr<std::barrier<>>> g_warps;
struct WarpEx { float f[32]; u32 a[32][4], b[32][2]; float c[32][4]; };
typedef unsigned char u8;
static std::vector<WarpEx> g_ex;
static void __syncthreads() { g_block->arrive_and_wait(); }
static void __syncwarp() { g_warps[threadIdx.x >> 5]->arrive_and_wait(); }
static float __shfl_xor_sync(unsigned, float v, int o) {
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    g_ex[w].f[l] = v;
    __syncwarp();
    float r = g_ex[w].f[l ^ o];
    __syncwarp();
    return r;
}
static float bf(u32 h) { return __uint_as_float((h & 0xffffu) << 16); }
// mma.m16n8k16.row.col bf16 -> f32: lane = 4 * group + tig; A rows group / group + 8, columns
// 2 tig (+1) and 2 tig + 8 (+1); B rows (k) 2 tig (+1) and 2 tig + 8 (+1), column group;
// C rows group / group + 8, columns 2 tig (+1).
static void mma_bf16(float *d, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    WarpEx &e = g_ex[w];
    e.a[l][0] = a0; e.a[l][1] = a1; e.a[l][2] = a2; e.a[l][3] = a3;
    e.b[l][0] = b0; e.b[l][1] = b1;
    __syncwarp();
    float A[16][16], B[16][8];
    for (int ln = 0; ln < 32; ln++) {
        int g = ln >> 2, t = ln & 3;
        for (int h = 0; h < 2; h++) {
            A[g][2 * t + h] = bf(e.a[ln][0] >> (16 * h));
            A[g + 8][2 * t + h] = bf(e.a[ln][1] >> (16 * h));
            A[g][2 * t + 8 + h] = bf(e.a[ln][2] >> (16 * h));
            A[g + 8][2 * t + 8 + h] = bf(e.a[ln][3] >> (16 * h));
            B[2 * t + h][g] = bf(e.b[ln][0] >> (16 * h));
            B[2 * t + 8 + h][g] = bf(e.b[ln][1] >> (16 * h));
        }
    }
    __syncwarp();
    int g = l >> 2, t = l & 3;
    int rr[4] = {g, g, g + 8, g + 8}, cc[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int i = 0; i < 4; i++) {
        float s = 0;
        for (int k = 0; k < 16; k++) s += A[rr[i]][k] * B[k][cc[i]];
        d[i] += s;
    }
}

static int8_t s8(u32 w, int e) { return (int8_t)(w >> (8 * e)); }
// mma.m16n8k32.row.col s8 -> s32 (int8.cu's mma_s8): A rows group / group + 8, columns
// 4 tig (+0..3) and 16 + 4 tig; B rows (k) 4 tig (+0..3) and 16 + 4 tig, column group; C as
// for bf16. Starts from zero.
static void mma_s8(int *c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    WarpEx &e = g_ex[w];
    e.a[l][0] = a0; e.a[l][1] = a1; e.a[l][2] = a2; e.a[l][3] = a3;
    e.b[l][0] = b0; e.b[l][1] = b1;
    __syncwarp();
    int A[16][32], B[32][8];
    for (int ln = 0; ln < 32; ln++) {
        int g = ln >> 2, t = ln & 3;
        for (int h = 0; h < 4; h++) {
            A[g][4 * t + h] = s8(e.a[ln][0], h);
            A[g + 8][4 * t + h] = s8(e.a[ln][1], h);
            A[g][16 + 4 * t + h] = s8(e.a[ln][2], h);
            A[g + 8][16 + 4 * t + h] = s8(e.a[ln][3], h);
            B[4 * t + h][g] = s8(e.b[ln][0], h);
            B[16 + 4 * t + h][g] = s8(e.b[ln][1], h);
        }
    }
    __syncwarp();
    int g = l >> 2, t = l & 3;
    int rr[4] = {g, g, g + 8, g + 8}, cc[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int i = 0; i < 4; i++) {
        int s = 0;
        for (int k = 0; k < 32; k++) s += A[rr[i]][k] * B[k][cc[i]];
        c[i] = s;
    }
}

#include "../../cuda/src/common.cuh"
#include "../../cuda/src/int8.cu"
#include "../../cuda/src/matmul.cu"
#include "../../cuda/src/mma.cu"
#include "../../cuda/src/flash.cu"
#include "../../cuda/src/flash_tc.cu"
#include "../../cuda/src/propose.cu"

static void launch(unsigned gx, unsigned gy, unsigned threads, const std::function<void()> &f, unsigned gz = 1) {
    gridDim = {gx, gy, gz};
    blockDim = {threads, 1, 1};
    for (unsigned bz = 0; bz < gz; bz++)
    for (unsigned by = 0; by < gy; by++)
        for (unsigned bx = 0; bx < gx; bx++) {
            std::barrier<> block(threads);
            g_block = &block;
            g_warps.clear();
            for (unsigned w = 0; w < (threads + 31) / 32; w++) g_warps.push_back(std::make_unique<std::barrier<>>(32));
            g_ex.assign((threads + 31) / 32, WarpEx{});
            std::vector<std::thread> ts;
            for (unsigned t = 0; t < threads; t++)
                ts.emplace_back([&, t] {
                    threadIdx = {t, 0, 0};
                    blockIdx = {bx, by, bz};
                    f();
                });
            for (auto &t : ts) t.join();
        }
}

static std::mt19937 rng(3);
static float uni() { return std::uniform_real_distribution<float>(-1, 1)(rng); }
static float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// q8_0 rows of `cols` with random scales and values; deq gets the values.
static std::vector<u8> q8_rows(int rows, int cols, std::vector<float> &deq) {
    int rb = cols / 32 * 34;
    std::vector<u8> w(rows * rb + 16);
    deq.assign(rows * cols, 0);
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < cols / 32; b++) {
            u8 *blk = w.data() + r * rb + b * 34;
            u16 h = (u16)(0x2000 + rng() % 0x800); // f16 scale ~ 2^-7 .. 2^-6
            memcpy(blk, &h, 2);
            for (int k = 0; k < 32; k++) {
                int8_t q = (int8_t)(rng() % 255 - 127);
                blk[2 + k] = (u8)q;
                deq[r * cols + b * 32 + k] = f16_to_f32(h) * q;
            }
        }
    return w;
}

static int check_matmul() {
    int fail = 0;
    for (auto [rows, cols] : {std::pair{37, 512}, std::pair{37, 1152}, std::pair{150, 256}}) {
        std::vector<float> deq;
        std::vector<u8> w = q8_rows(rows, cols, deq);
        long long rb = cols / 32 * 34;
        for (int n : {1, 3, 9, 32, 64}) {
            std::vector<float> x(n * cols);
            for (auto &v : x) v = uni();
            // exact, and with both operands rounded to bf16 (what the tensor cores multiply)
            std::vector<double> exact(n * rows), rounded(n * rows), mag(n * rows);
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++) {
                        double a = x[t * cols + c], b = deq[r * cols + c];
                        exact[t * rows + r] += a * b;
                        rounded[t * rows + r] += (double)round_bf16(a) * round_bf16(b);
                        mag[t * rows + r] += std::fabs(a * b);
                    }
            std::vector<float> out(n * rows, NAN);
            launch((rows + 15) / 16, 1, 128, [&] { matmul_few_q8_0(w.data(), rb, rows, cols, x.data(), n, out.data()); });
            // dequant_bf16 of rows 5.. (the cuBLAS path's tile), against the rounded values
            if (n == 1) {
                int r0 = 5, nr = rows - 5;
                std::vector<u16> tile(nr * cols, 0xffff);
                launch(3, 1, 64, [&] { dequant_bf16_q8_0(w.data(), rb, r0, nr, cols, tile.data()); });
                int bad = 0;
                for (int i = 0; i < nr * cols; i++) bad += bf16_to_f32(tile[i]) != round_bf16(deq[r0 * cols + i]);
                printf("dequant_bf16 q8_0 rows %d cols %d: %d wrong\n", nr, cols, bad);
                fail += bad != 0;
            }
            double worst = 0;
            for (int i = 0; i < n * rows; i++) worst = std::fmax(worst, std::isnan(out[i]) ? 1e9 : std::fabs(out[i] - exact[i]) / mag[i]);
            printf("matmul_few q8_0 rows %d cols %d n %d: %.2e\n", rows, cols, n, worst);
            fail += worst > 1e-5;
            for (int splits_want : {1, 3}) {
                int chunks = (cols + 127) / 128;
                int cps = (chunks + splits_want - 1) / splits_want;
                int splits = (chunks + cps - 1) / cps;
                std::vector<float> part(splits * n * rows, NAN), o2(n * rows, NAN);
                launch((rows + 63) / 64, splits, 128, [&] { matmul_mma_q8_0(w.data(), rb, rows, cols, x.data(), n, cps, part.data()); });
                launch(4, 1, 64, [&] { mma_sum_splits(part.data(), splits, (long long)n * rows, o2.data()); });
                double wr = 0;
                for (int i = 0; i < n * rows; i++) wr = std::fmax(wr, std::isnan(o2[i]) ? 1e9 : std::fabs(o2[i] - rounded[i]) / mag[i]);
                printf("matmul_mma q8_0 rows %d cols %d n %d splits %d: %.2e (vs bf16-rounded operands)\n", rows, cols, n, splits, wr);
                fail += wr > 1e-5;
            }
        }
    }
    return fail;
}

// simd/src/act.rs quantize_act on one 32-value block: scale max|x| / 127, round half away
// from zero; NaN or ±inf make the scale NaN.
struct ActRef { float d; int sum; int8_t q[32]; };
static ActRef quantize_ref(const float *x) {
    ActRef b{};
    float amax = 0; bool finite = true;
    for (int i = 0; i < 32; i++) { finite &= std::isfinite(x[i]); amax = std::fmax(amax, std::fabs(x[i])); }
    float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < 32; i++) {
        float q = std::round(x[i] * id);
        q = q < -127 ? -127 : q > 127 ? 127 : q;
        b.q[i] = (int8_t)(std::isnan(q) ? 0 : q);
        b.sum += b.q[i];
    }
    b.d = finite ? d : NAN;
    return b;
}

// One row of `cols` in type q with random scales and quants (finite f16 scales ~2^-7).
static void random_row(int q, int cols, u8 *row) {
    auto f16 = [] { return (u16)(0x2000 + rng() % 0x800); };
    if (q == Q_Q8_0 || q == Q_Q4_0) {
        int bb = q == Q_Q8_0 ? 34 : 18;
        for (int b = 0; b < cols / 32; b++) {
            u8 *blk = row + b * bb;
            u16 h = f16(); memcpy(blk, &h, 2);
            for (int k = 2; k < bb; k++) blk[k] = (u8)rng();
            if (q == Q_Q8_0) for (int k = 2; k < bb; k++) if (blk[k] == 0x80) blk[k] = 0x81;
        }
    } else {
        for (int b = 0; b < cols / 256; b++) {
            u8 *blk = row + b * 144;
            for (int k = 0; k < 144; k++) blk[k] = (u8)rng();
            u16 h = f16(); memcpy(blk, &h, 2);
            h = f16(); memcpy(blk + 2, &h, 2);
        }
    }
}

// simd/src/scalar.rs's dot of one stored row with the quantized activation blocks of a token;
// mag gets Σ |w·a| in f64 (the tolerance's scale).
static float dot_ref(int q, const u8 *row, const ActRef *a, int cols, double *mag) {
    float acc = 0; *mag = 0;
    if (q == Q_Q8_0 || q == Q_Q4_0) {
        for (int b = 0; b < cols / 32; b++) {
            const u8 *blk = row + b * (q == Q_Q8_0 ? 34 : 18);
            u16 h; memcpy(&h, blk, 2);
            float dw = f16_to_f32(h);
            int s = 0;
            for (int k = 0; k < 32; k++) {
                int wq = q == Q_Q8_0 ? (int8_t)blk[2 + k] : (k < 16 ? (blk[2 + k] & 15) : (blk[2 + k - 16] >> 4)) - 8;
                s += wq * a[b].q[k];
                *mag += std::fabs((double)dw * wq * a[b].d * a[b].q[k]);
            }
            acc += dw * a[b].d * (float)s;
        }
        return acc;
    }
    for (int sb = 0; sb < cols / 256; sb++) {
        const u8 *blk = row + sb * 144;
        u16 h; memcpy(&h, blk, 2); float d = f16_to_f32(h);
        memcpy(&h, blk + 2, 2); float dmin = f16_to_f32(h);
        for (int c = 0; c < 4; c++) {
            const ActRef &a0 = a[sb * 8 + 2 * c], &a1 = a[sb * 8 + 2 * c + 1];
            int s0 = 0, s1 = 0, sc0, m0, sc1, m1;
            q4k_scale_min(blk + 4, 2 * c, &sc0, &m0);
            q4k_scale_min(blk + 4, 2 * c + 1, &sc1, &m1);
            for (int i = 0; i < 32; i++) {
                u8 v = blk[16 + 32 * c + i];
                s0 += (v & 15) * a0.q[i];
                s1 += (v >> 4) * a1.q[i];
                *mag += std::fabs((double)d * sc0 * (v & 15) * a0.d * a0.q[i]) + std::fabs((double)dmin * m0 * a0.d * a0.q[i]);
                *mag += std::fabs((double)d * sc1 * (v >> 4) * a1.d * a1.q[i]) + std::fabs((double)dmin * m1 * a1.d * a1.q[i]);
            }
            acc += d * (float)sc0 * a0.d * (float)s0;
            acc += d * (float)sc1 * a1.d * (float)s1;
            acc -= dmin * (float)m0 * a0.d * (float)a0.sum;
            acc -= dmin * (float)m1 * a1.d * (float)a1.sum;
        }
    }
    return acc;
}

// int8.cu: pack_* (the fragment-order layout: every weight read back through packed_w8 and
// against load_w1 of the file's layout), quantize_act_i8 against quantize_ref (bit for bit),
// then matmul_i8_* (both row tilings, with and without a split of the columns) against dot_ref
// (the same integer sums; f32 summation order only).
static int check_int8() {
    int fail = 0;
    struct Case { int q, rows, cols; const char *name; } cases[] = {
        {Q_Q8_0, 37, 512, "q8_0"}, {Q_Q4_0, 37, 288, "q4_0"}, {Q_Q4_K, 37, 768, "q4_k"}, {Q_Q8_0, 70, 64, "q8_0"},
        // several rounds of units per warp (the next round's weights loaded during this one's)
        {Q_Q8_0, 20, 2080, "q8_0"}, {Q_Q4_0, 20, 4192, "q4_0"}, {Q_Q4_K, 20, 4608, "q4_k"}};
    for (auto cs : cases) {
        int rb = cs.q == Q_Q8_0 ? cs.cols / 32 * 34 : cs.q == Q_Q4_0 ? cs.cols / 32 * 18 : cs.cols / 256 * 144;
        std::vector<u8> wbuf(cs.rows * rb + 16);
        u8 *w = wbuf.data() + (16 - ((uintptr_t)wbuf.data() & 15)) % 16; // 16-aligned like a device allocation
        for (int r = 0; r < cs.rows; r++) random_row(cs.q, cs.cols, w + r * rb);
        int nb = cs.cols / 32;
        // packed_bytes in src/matmul.rs
        long long r16 = (cs.rows + 15) / 16, units = cs.q == Q_Q8_0 ? nb : cs.q == Q_Q4_0 ? (nb + 1) / 2 : cs.cols / 256;
        long long qbytes = r16 * units * (cs.q == Q_Q4_K ? 2048 : 512);
        long long sbytes = r16 * units * (cs.q == Q_Q8_0 ? 32 : cs.q == Q_Q4_0 ? 64 : 256);
        std::vector<uint4> pbuf((qbytes + sbytes) / 16, uint4{0xdeadbeef, 0xdeadbeef, 0xdeadbeef, 0xdeadbeef});
        u8 *pk = (u8 *)pbuf.data();
        int ki = cs.q == Q_Q8_0 ? 0 : cs.q == Q_Q4_0 ? 1 : 2;
        launch(5, 1, 64, [&] {
            if (ki == 0) pack_q8_0(w, rb, cs.rows, cs.cols, pk, qbytes);
            if (ki == 1) pack_q4_0(w, rb, cs.rows, cs.cols, pk, qbytes);
            if (ki == 2) pack_q4_k(w, rb, cs.rows, cs.cols, pk, qbytes);
        });
        int bad_pack = 0;
        for (size_t i = 0; i < pbuf.size(); i++) bad_pack += pbuf[i].x == 0xdeadbeef && pbuf[i].y == 0xdeadbeef; // unwritten
        for (int r = 0; r < (int)r16 * 16; r++)
            for (int c = 0; c < cs.cols; c += 8) {
                float v[8];
                if (ki == 0) packed_w8<Q_Q8_0>(pk, qbytes, cs.cols, r, c, v);
                if (ki == 1) packed_w8<Q_Q4_0>(pk, qbytes, cs.cols, r, c, v);
                if (ki == 2) packed_w8<Q_Q4_K>(pk, qbytes, cs.cols, r, c, v);
                for (int e = 0; e < 8; e++) {
                    float want = r < cs.rows ? load_w1(w + r * rb, cs.q, c + e) : 0.0f;
                    bad_pack += !(v[e] == want);
                }
            }
        printf("int8 %s rows %d cols %d: pack %d wrong\n", cs.name, cs.rows, cs.cols, bad_pack);
        fail += bad_pack != 0;
        for (int n : {1, 3, 9, 64, 70}) {
            int n_pad = (n + 7) / 8 * 8;
            std::vector<float> x(n * cs.cols);
            for (auto &v : x) v = uni() * (rng() % 4 == 0 ? 8.0f : 1.0f);
            if (n == 9) { x[5] = NAN; x[cs.cols + 40] = INFINITY; } // token 0 block 0, token 1 block 1
            std::vector<uint4> xq(n_pad * cs.cols / 8, uint4{0xdeadbeef, 0xdeadbeef, 0xdeadbeef, 0xdeadbeef});
            std::vector<int> xs(n_pad * nb, -1);
            launch(3, 1, 256, [&] { quantize_act_i8(x.data(), cs.cols, n, n_pad, xq.data(), xs.data()); });
            std::vector<ActRef> ref(n * nb);
            int bad_q = 0;
            for (int t = 0; t < n_pad; t++)
                for (int b = 0; b < nb; b++) {
                    ActRef want{};
                    if (t < n) want = ref[t * nb + b] = quantize_ref(&x[t * cs.cols + 32 * b]);
                    long long tile = (long long)(t / 8) * nb + b;
                    // token t's scale: lanes 4g + (t % 8) / 2, word 2 + t % 2, for every g
                    for (int g = 0; g < 8; g++) {
                        const uint4 &l = xq[tile * 32 + 4 * g + (t % 8) / 2];
                        float d = __uint_as_float(t % 2 ? l.w : l.z);
                        bad_q += !(std::isnan(want.d) ? std::isnan(d) : d == want.d);
                    }
                    if (xs[tile * 8 + t % 8] != want.sum) bad_q++;
                    for (int c = 0; c < 32; c++) {
                        int lane = 4 * (t % 8) + (c % 16) / 4;
                        u32 word = c < 16 ? xq[tile * 32 + lane].x : xq[tile * 32 + lane].y;
                        if (s8(word, c % 4) != want.q[c]) bad_q++;
                    }
                }
            for (int mt : {2, 1})
                for (int splits_want : {1, 3}) {
                    int ups = (int)((units + splits_want - 1) / splits_want), splits = (int)((units + ups - 1) / ups);
                    std::vector<float> part(splits * n * cs.rows, -12345.0f), out(n * cs.rows, -12345.0f);
                    float *dst = splits > 1 ? part.data() : out.data();
                    launch((n + 63) / 64, (unsigned)((r16 + mt - 1) / mt), 256, [&] {
                        if (mt == 2 && ki == 0) matmul_i8_q8_0(pk, qbytes, cs.rows, cs.cols, xq.data(), xs.data(), n, ups, dst);
                        if (mt == 2 && ki == 1) matmul_i8_q4_0(pk, qbytes, cs.rows, cs.cols, xq.data(), xs.data(), n, ups, dst);
                        if (mt == 2 && ki == 2) matmul_i8_q4_k(pk, qbytes, cs.rows, cs.cols, xq.data(), xs.data(), n, ups, dst);
                        if (mt == 1 && ki == 0) matmul_i8_q8_0_m1(pk, qbytes, cs.rows, cs.cols, xq.data(), xs.data(), n, ups, dst);
                        if (mt == 1 && ki == 1) matmul_i8_q4_0_m1(pk, qbytes, cs.rows, cs.cols, xq.data(), xs.data(), n, ups, dst);
                        if (mt == 1 && ki == 2) matmul_i8_q4_k_m1(pk, qbytes, cs.rows, cs.cols, xq.data(), xs.data(), n, ups, dst);
                    }, splits);
                    if (splits > 1) launch(2, 1, 64, [&] { i8_sum_splits(part.data(), splits, (long long)n * cs.rows, out.data()); });
                    double worst = 0;
                    int nan_ok = 0;
                    for (int t = 0; t < n; t++)
                        for (int r = 0; r < cs.rows; r++) {
                            double mag;
                            float want = dot_ref(cs.q, w + r * rb, &ref[t * nb], cs.cols, &mag);
                            float got = out[t * cs.rows + r];
                            if (std::isnan(want)) { nan_ok += std::isnan(got) ? 0 : 1; continue; }
                            worst = std::fmax(worst, std::isnan(got) ? 1e9 : std::fabs(got - want) / std::fmax(mag, 1e-30));
                        }
                    printf("int8 %s rows %d cols %d n %d m-tiles %d splits %d: quantize %d wrong, matmul %.2e vs the CPU's sums, %d NaN rows not NaN\n",
                           cs.name, cs.rows, cs.cols, n, mt, splits, bad_q, worst, nan_ok);
                    fail += bad_q != 0 || worst > 1e-6 || nan_ok != 0;
                }
        }
    }
    return fail;
}

static int check_flash() {
    int fail = 0;
    struct Case { int n, n_out, nh, nkv, hd; } cases[] = {{20, 0, 2, 1, 64}, {37, 45, 4, 2, 64}, {70, 10, 2, 2, 96}, {33, 7, 2, 1, 128}, {130, 70, 2, 1, 64}, {5, 0, 1, 1, 16}};
    for (auto cs : cases) {
        int qd = cs.nh * cs.hd, kd = cs.nkv * cs.hd, len = cs.n + cs.n_out;
        std::vector<float> q(cs.n * qd), k(cs.n * kd), v(cs.n * kd), ck(len * kd, NAN), cv(len * kd, NAN);
        for (auto &x : q) x = uni() * 2;
        for (auto &x : k) x = uni() * 2;
        for (auto &x : v) x = uni();
        std::vector<int> outside;
        for (int p = cs.n; p < len; p++) {
            outside.push_back(p);
            for (int d = 0; d < kd; d++) { ck[p * kd + d] = uni() * 2; cv[p * kd + d] = uni(); }
        }
      for (int tc = 0; tc < 3; tc++) {
        std::vector<float> out(cs.n * qd, NAN);
        float scale = 1.0f / std::sqrt((float)cs.hd);
        int n_keys = cs.n + cs.n_out;
        if (tc == 1)
            launch((cs.n + 63) / 64, cs.nh, 128, [&] {
                attention_flash_tc(q.data(), k.data(), v.data(), cs.n, ck.data(), cv.data(), outside.data(), cs.n_out, cs.nh, cs.nkv, cs.hd, scale, out.data(), n_keys, nullptr, nullptr);
            });
        else if (tc == 2) {
            int kps = 64, splits = (n_keys + kps - 1) / kps;
            std::vector<float> po(splits * cs.n * qd, NAN), pml(splits * cs.n * cs.nh * 2, NAN);
            launch((cs.n + 63) / 64, cs.nh, 128, [&] {
                attention_flash_tc(q.data(), k.data(), v.data(), cs.n, ck.data(), cv.data(), outside.data(), cs.n_out, cs.nh, cs.nkv, cs.hd, scale, out.data(), kps, po.data(), pml.data());
            }, splits);
            launch(cs.n, cs.nh, cs.hd, [&] { attention_combine(po.data(), pml.data(), splits, cs.n, cs.nh, cs.hd, out.data()); });
        } else
            launch((cs.n + 15) / 16, cs.nh, 128, [&] {
                attention_flash(q.data(), k.data(), v.data(), cs.n, ck.data(), cv.data(), outside.data(), cs.n_out, cs.nh, cs.nkv, cs.hd, scale, out.data());
            });
        double worst = 0;
        for (int i = 0; i < cs.n; i++)
            for (int h = 0; h < cs.nh; h++) {
                int g = h / (cs.nh / cs.nkv);
                std::vector<double> s;
                for (int j = 0; j < cs.n + cs.n_out; j++) {
                    const float *kj = j < cs.n ? &k[j * kd] : &ck[outside[j - cs.n] * kd];
                    double dot = 0;
                    for (int d = 0; d < cs.hd; d++) dot += (double)q[i * qd + h * cs.hd + d] * kj[g * cs.hd + d];
                    s.push_back(dot * scale);
                }
                double m = -1e300, sum = 0;
                for (double x : s) m = std::fmax(m, x);
                for (double &x : s) { x = std::exp(x - m); sum += x; }
                for (int d = 0; d < cs.hd; d++) {
                    double o = 0;
                    for (int j = 0; j < (int)s.size(); j++) {
                        const float *vj = j < cs.n ? &v[j * kd] : &cv[outside[j - cs.n] * kd];
                        o += s[j] * vj[g * cs.hd + d];
                    }
                    float got = out[i * qd + h * cs.hd + d];
                    worst = std::fmax(worst, std::isnan(got) ? 1e9 : std::fabs(got - o / sum));
                }
            }
        printf("%s n %d outside %d heads %d/%d hd %d: max |err| %.2e\n", tc == 2 ? "flash_tc split" : tc ? "flash_tc" : "flash", cs.n, cs.n_out, cs.nh, cs.nkv, cs.hd, worst);
        fail += worst > (tc ? 2e-2 : 1e-5);
      }
    }
    return fail;
}

// runtime/src/decode/sample.rs on one row: argmax (lowest index on ties), then the rule.
static void propose_ref(const float *row, int vocab, int mode, int *tok, double *conf) {
    int best = 0;
    for (int i = 1; i < vocab; i++) if (row[i] > row[best]) best = i;
    double m = -INFINITY, sum = 0;
    for (int i = 0; i < vocab; i++) m = std::fmax(m, (double)row[i]);
    std::vector<double> p(vocab);
    for (int i = 0; i < vocab; i++) sum += (p[i] = std::exp((double)row[i] - m));
    for (auto &x : p) x /= sum;
    *tok = best;
    if (mode == 0) *conf = p[best];
    else if (mode == 1) {
        double t1 = -INFINITY, t2 = -INFINITY;
        for (double x : p) { if (x > t1) { t2 = t1; t1 = x; } else if (x > t2) t2 = x; }
        *conf = vocab < 2 ? t1 : t1 - t2;
    } else {
        double e = 0;
        for (double x : p) e += x * std::log(x + 1e-10);
        *conf = e;
    }
}

static int check_propose() {
    int fail = 0;
    for (int vocab : {1, 7, 300, 5003}) {
        int rows = 3;
        std::vector<float> logits(rows * vocab);
        for (auto &x : logits) x = uni() * 8;
        if (vocab > 10) { logits[vocab + 9] = 30; logits[vocab + 4] = 30; } // a tie for the top
        if (vocab > 10) logits[2 * vocab + 3] = logits[2 * vocab + 5] = 50; // equal top two: margin 0
        for (int mode = 0; mode < 3; mode++) {
            std::vector<int> tok(rows, -1);
            std::vector<double> conf(rows, NAN);
            launch(rows, 1, 256, [&] {
                // one row per block, as rows_cfg launches it
                propose_greedy(logits.data(), vocab, mode, tok.data(), conf.data());
            });
            for (int r = 0; r < rows; r++) {
                int t; double c;
                propose_ref(&logits[r * vocab], vocab, mode, &t, &c);
                bool ok = t == tok[r] && std::fabs(c - conf[r]) <= 1e-12 * std::fmax(1.0, std::fabs(c));
                if (!ok) { printf("propose vocab %d mode %d row %d: %d %.17g vs %d %.17g\n", vocab, mode, r, tok[r], conf[r], t, c); fail++; }
            }
        }
        printf("propose_greedy vocab %d: %s\n", vocab, fail ? "MISMATCH" : "ok");
    }
    return fail;
}

int main() {
    int fail = check_int8() + check_matmul() + check_flash() + check_propose();
    printf(fail ? "FAILED (%d)\n" : "all ok\n", fail);
    return fail ? 1 : 0;
}
