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
// of 16 weight rows against 8 tokens, exactly the CPU's block sum.
//
// Weights are repacked once, on upload (`pack_*`), from the file's blocks (34 or 18 bytes for
// q8_0 / q4_0: only 2-byte aligned) into a layout in the mma's fragment order: per tile of 16
// rows and unit of columns, each lane's A fragments are one aligned 16-byte word, so a warp
// reads 512 contiguous bytes with one load per lane; the scales sit apart. Rows are padded to
// a multiple of 16 with zeros. With R16 = ceil(rows / 16), nb = cols / 32, lane l = 4g + tg:
// - q8_0: quants uint4 [R16][nb][32]: x = row g, columns 4tg..+3 of block b; y = row g + 8,
//   the same columns; z, w = the same rows at columns 16 + 4tg..+3 (a0..a3 as they are).
//   Scales u32 [R16][nb][8]: entry g = d(row g) | d(row g + 8) << 16 (f16 bits).
// - q4_0: quants uint4 [R16][ceil(nb / 2)][32], a unit is the block pair 2p, 2p + 1: x = row
//   g's bytes 4tg..+3 of block 2p (low nibbles: columns 4tg.., high: 16 + 4tg..), y = row
//   g + 8's, z and w the same of block 2p + 1 (zeros past the last block). Scales as q8_0's,
//   with 2 * ceil(nb / 2) blocks.
// - q4_k: quants uint4 [R16][cols / 256][4 chunks][32]: chunk c of the 256-value block holds
//   sub-blocks 2c (low nibbles) and 2c + 1 (high); x = row g's bytes 4tg..+3 of the chunk's 32
//   (columns 4tg..), y = row g + 8's, z and w the bytes 16 + 4tg..+3. Headers uint4
//   [R16][cols / 256][16 rows]: the block's first 16 bytes (d, dmin, 12 bytes of 6-bit scales
//   and mins), as stored.
// The scales (headers) start at byte `scale_off` of the buffer (`packed_bytes` in
// src/matmul.rs computes both).
//
// A block of 8 warps owns 16 * MT rows (MT m-tiles) and up to 64 tokens, and its warps take the
// column units round-robin, I8_UNROLL at a time, adding their sums in warp order through
// shared memory (deterministic). When the row blocks are too few to fill the GPU, the units
// are split over gridDim.z: each split writes its partial sums, which `i8_sum_splits` adds in
// split order.

#define I8_WARPS 8  // warps per block, each a slice of the columns
#define I8_TILES 8  // 8-token tiles per block (64 tokens); gridDim.x covers the rest
#ifndef I8_UNROLL
#define I8_UNROLL 4 // column units a warp loads before it multiplies (bytes in flight)
#endif
#ifndef I8_PIPE
#define I8_PIPE 1 // 1: a warp loads its next units' weights before it multiplies the current
#endif
#ifndef I8_FAST_CVT
#define I8_FAST_CVT 1 // 1: int sums to f32 by exponent bits (exact, full rate) rather than I2F
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

// (float)c, exactly, for |c| < 2^22 (an mma block sum is at most 32 * 127 * 127 = 516,128):
// 1.5 * 2^23 + c has c as its low mantissa bits, so one integer add and one float subtract
// replace the int-to-float conversion, which runs at 1/8 of the float rate on sm_80/sm_90.
__device__ __forceinline__ float i2f_exact(int c) {
#if I8_FAST_CVT
    return __int_as_float(0x4B400000 + c) - 12582912.0f;
#else
    return (float)c;
#endif
}

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
// * 32 + l]` holds token 8j + g's quants of columns 4tg..+3 (.x) and 16 + 4tg..+3 (.y), and the
// scales of tokens 8j + 2tg (.z) and 8j + 2tg + 1 (.w) as f32 bits (NaN when the block holds
// NaN or ±inf): the B fragment and the scales of the C fragment's two columns, in one load.
// `xs[(j * nb + b) * 8 + g]` is the sum of token 8j + g's quants. Tokens n..n_pad (n_pad a
// multiple of 8) are zeros. One warp per (token, block).
extern "C" __global__ void quantize_act_i8(const float *x, int cols, int n, int n_pad, uint4 *xq,
                                           int *xs) {
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
        ((signed char *)xq)[(tile * 32 + 4 * g + tg) * 16 + (lane >> 4) * 4 + (lane & 3)] = (signed char)q;
        // this token's scale goes to lanes 4g' + g / 2 (every g'), word 2 + g % 2
        if (lane < 8) ((float *)xq)[(tile * 32 + 4 * lane + (g >> 1)) * 4 + 2 + (g & 1)] = bad == 0.0f ? d : NAN_F;
        if (lane == 0) xs[tile * 8 + g] = (int)sum;
    }
}

// ---- Packing (see the layouts at the top) ----

// Byte sizes of the packed layout: the quants, then the scales at `scale_off`.
__device__ __forceinline__ long long pack_units(int Q, int cols) {
    int nb = cols >> 5;
    return Q == Q_Q8_0 ? nb : Q == Q_Q4_0 ? (nb + 1) >> 1 : cols >> 8;
}

// Pack `rows` rows of `row_bytes` (the file's layout, at w) into p (the packed layout, scales
// at p + scale_off). One thread per (16-row tile, unit, 16-byte quant word), grid-stride; the
// threads of chunk / lane 0 also write the unit's scales.
template <int Q>
__device__ __forceinline__ void pack(const u8 *w, long long row_bytes, int rows, int cols, u8 *p,
                                     long long scale_off) {
    int r16 = (rows + 15) >> 4;
    int nb = cols >> 5;
    long long units = pack_units(Q, cols);
    int words = Q == Q_Q4_K ? 4 * 32 : 32; // 16-byte quant words per (tile, unit)
    long long total = (long long)r16 * units * words;
    uint4 *pq = (uint4 *)p;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long tu = i / words; // tile * units + unit
        int k = (int)(i - tu * words);
        int tile = (int)(tu / units);
        long long u = tu - (long long)tile * units;
        int lane = k & 31, g = lane >> 2, tg = lane & 3;
        int ra = 16 * tile + g, rb = ra + 8;
        const u8 *rowa = ra < rows ? w + (long long)ra * row_bytes : 0;
        const u8 *rowb = rb < rows ? w + (long long)rb * row_bytes : 0;
        uint4 o;
        if (Q == Q_Q8_0) {
            const u8 *ba = rowa ? rowa + u * 34 : 0, *bb = rowb ? rowb + u * 34 : 0;
            o.x = ba ? ld_u32_2(ba + 2 + 4 * tg) : 0u;
            o.y = bb ? ld_u32_2(bb + 2 + 4 * tg) : 0u;
            o.z = ba ? ld_u32_2(ba + 18 + 4 * tg) : 0u;
            o.w = bb ? ld_u32_2(bb + 18 + 4 * tg) : 0u;
            if (tg == 0) {
                u32 da = ba ? ld_u16(ba) : 0u, db = bb ? ld_u16(bb) : 0u;
                ((u32 *)(p + scale_off))[tu * 8 + g] = da | (db << 16);
            }
        } else if (Q == Q_Q4_0) {
            long long b0 = 2 * u, b1 = 2 * u + 1;
            bool has1 = b1 < nb;
            const u8 *a0 = rowa ? rowa + b0 * 18 : 0, *c0 = rowb ? rowb + b0 * 18 : 0;
            const u8 *a1 = rowa && has1 ? rowa + b1 * 18 : 0, *c1 = rowb && has1 ? rowb + b1 * 18 : 0;
            o.x = a0 ? ld_u32_2(a0 + 2 + 4 * tg) : 0u;
            o.y = c0 ? ld_u32_2(c0 + 2 + 4 * tg) : 0u;
            o.z = a1 ? ld_u32_2(a1 + 2 + 4 * tg) : 0u;
            o.w = c1 ? ld_u32_2(c1 + 2 + 4 * tg) : 0u;
            if (tg == 0) {
                u32 *sc = (u32 *)(p + scale_off) + tu * 16;
                sc[g] = (a0 ? ld_u16(a0) : 0u) | ((c0 ? (u32)ld_u16(c0) : 0u) << 16);
                sc[8 + g] = (a1 ? ld_u16(a1) : 0u) | ((c1 ? (u32)ld_u16(c1) : 0u) << 16);
            }
        } else {
            int c = k >> 5;
            const u8 *ba = rowa ? rowa + u * 144 : 0, *bb = rowb ? rowb + u * 144 : 0;
            o.x = ba ? *(const u32 *)(ba + 16 + 32 * c + 4 * tg) : 0u;
            o.y = bb ? *(const u32 *)(bb + 16 + 32 * c + 4 * tg) : 0u;
            o.z = ba ? *(const u32 *)(ba + 32 + 32 * c + 4 * tg) : 0u;
            o.w = bb ? *(const u32 *)(bb + 32 + 32 * c + 4 * tg) : 0u;
            if (k < 16) { // header of row 16 * tile + k
                int r = 16 * tile + k;
                uint4 h = {0u, 0u, 0u, 0u};
                if (r < rows) h = *(const uint4 *)(w + (long long)r * row_bytes + u * 144);
                ((uint4 *)(p + scale_off))[tu * 16 + k] = h;
            }
        }
        pq[i] = o;
    }
}

// Weights (r, c..c + 8) of a packed matrix into v, c a multiple of 8 (the embedding rows and
// the dequantizer of the cuBLAS path): two 4-byte loads and a scale.
template <int Q>
__device__ __forceinline__ void packed_w8(const u8 *p, long long scale_off, int cols, long long r, int c,
                                          float *v) {
    long long units = pack_units(Q, cols);
    long long tile = r >> 4;
    int gi = (int)(r & 15), g = gi & 7, hi = gi >> 3;
    const u32 *pq = (const u32 *)p;
    const u32 *ps = (const u32 *)(p + scale_off);
    if (Q == Q_Q8_0 || Q == Q_Q4_0) {
        int b = c >> 5, k = c & 31; // k: 0, 8, 16, 24
        long long tu = Q == Q_Q8_0 ? tile * units + b : tile * units + (b >> 1);
        int sub = Q == Q_Q8_0 ? 0 : b & 1;
        int comp = Q == Q_Q8_0 ? (k >> 4) * 2 + hi : 2 * sub + hi;
        int lane = 4 * g + ((k & 15) >> 2);
        u32 w0 = pq[(tu * 32 + lane) * 4 + comp], w1 = pq[(tu * 32 + lane + 1) * 4 + comp];
        u32 sw = Q == Q_Q8_0 ? ps[tu * 8 + g] : ps[tu * 16 + 8 * sub + g];
        float d = f16_to_f32((u16)(sw >> (16 * hi)));
        int shift = Q == Q_Q4_0 ? (k >> 4) * 4 : 0;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            u32 byte = ((e < 4 ? w0 : w1) >> (8 * (e & 3))) & 0xffu;
            int q = Q == Q_Q8_0 ? (int)(signed char)byte : (int)((byte >> shift) & 15u) - 8;
            v[e] = d * (float)q;
        }
    } else {
        int sb = c >> 8, vi = c & 255, ch = vi >> 6, h = (vi >> 5) & 1, i = vi & 31; // i: 0, 8, 16, 24
        long long tu = tile * units + sb;
        int lane = 4 * g + ((i & 15) >> 2);
        int comp = (i >> 4) * 2 + hi;
        u32 w0 = pq[((tu * 4 + ch) * 32 + lane) * 4 + comp], w1 = pq[((tu * 4 + ch) * 32 + lane + 1) * 4 + comp];
        const u8 *hd = p + scale_off + (tu * 16 + gi) * 16;
        int sc, m;
        q4k_scale_min(hd + 4, 2 * ch + h, &sc, &m);
        float d = f16_to_f32(ld_u16(hd)), dmin = f16_to_f32(ld_u16(hd + 2));
#pragma unroll
        for (int e = 0; e < 8; e++) {
            int qv = (int)(((e < 4 ? w0 : w1) >> (8 * (e & 3) + 4 * h)) & 15u);
            v[e] = d * (float)sc * (float)qv - dmin * (float)m;
        }
    }
}

// Byte 4 + i (i < 12) of a q4_k header held in registers.
__device__ __forceinline__ int q4k_hbyte(uint4 h, int i) {
    u32 w = i < 4 ? h.y : i < 8 ? h.z : h.w;
    return (int)((w >> (8 * (i & 3))) & 0xffu);
}

// q4k_scale_min of a header held in registers.
__device__ __forceinline__ void q4k_sm_reg(uint4 h, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q4k_hbyte(h, j) & 63;
        *m = q4k_hbyte(h, j + 4) & 63;
    } else {
        *sc = (q4k_hbyte(h, j + 4) & 15) | ((q4k_hbyte(h, j - 4) >> 6) << 4);
        *m = (q4k_hbyte(h, j + 4) >> 4) | ((q4k_hbyte(h, j) >> 6) << 4);
    }
}

// out[t, r] = Σ over column units of the CPU's block products, for r < rows and t < n: p is a
// packed [rows, cols] matrix of type Q, xq/xs as quantize_act_i8 wrote them for n_pad >= n
// tokens. Block (x, y, z) computes tokens 64x.., rows 16·MT·y.. and column units
// z·ups..(z + 1)·ups; with gridDim.z > 1 it writes out + z·n·rows (partial sums) instead.
template <int Q, int MT>
__device__ __forceinline__ void mm_i8(const u8 *p, long long scale_off, int rows, int cols,
                                      const uint4 *xq, const int *xs, int n, int ups, float *out) {
    constexpr int ROWS = 16 * MT;
    __shared__ float red[I8_WARPS * ROWS * 8]; // [warp, row, token] one token tile's sums
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int g = lane >> 2, tg = lane & 3;
    int nb = cols >> 5;
    long long units = pack_units(Q, cols);
    int r16 = (rows + 15) >> 4;
    int j0 = blockIdx.x * I8_TILES;
    int nt = min(I8_TILES, ((n + 7) >> 3) - j0);
    int t0 = blockIdx.y * MT; // first 16-row tile
    long long ub = (long long)blockIdx.z * ups, ue = ub + ups < units ? ub + ups : units;
    long long tiles[MT];
#pragma unroll
    for (int m = 0; m < MT; m++) tiles[m] = min(t0 + m, r16 - 1); // past the end: not stored
    const uint4 *pq = (const uint4 *)p;
    float acc[MT][I8_TILES][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int j = 0; j < I8_TILES; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[m][j][e] = 0.0f;

    if (Q == Q_Q8_0 || Q == Q_Q4_0) {
        const u32 *ps = (const u32 *)(p + scale_off);
        constexpr int SPU = Q == Q_Q8_0 ? 8 : 16; // scale words per (tile, unit)
        constexpr int NS = Q == Q_Q8_0 ? 1 : 2; // scale words per unit
        const long long step = I8_WARPS * I8_UNROLL;
        // The weights and scales of units u0, u0 + I8_WARPS, .. (past the end: unit ub, loaded
        // and not used).
        auto load = [&](long long u0, uint4 (&a)[I8_UNROLL][MT], u32 (&sw)[I8_UNROLL][MT][NS]) {
#pragma unroll
            for (int uu = 0; uu < I8_UNROLL; uu++) {
                long long u = u0 + uu * I8_WARPS;
                if (u >= ue) u = ub;
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    long long tu = tiles[m] * units + u;
                    a[uu][m] = pq[tu * 32 + lane];
                    sw[uu][m][0] = ps[tu * SPU + g];
                    if (NS == 2) sw[uu][m][NS - 1] = ps[tu * SPU + 8 + g];
                }
            }
        };
        uint4 an[I8_UNROLL][MT];
        u32 sn[I8_UNROLL][MT][NS];
        if (I8_PIPE && ub + warp < ue) load(ub + warp, an, sn);
        for (long long u0 = ub + warp; u0 < ue; u0 += step) {
            uint4 a[I8_UNROLL][MT];
            u32 sw[I8_UNROLL][MT][NS];
            if (I8_PIPE) {
#pragma unroll
                for (int uu = 0; uu < I8_UNROLL; uu++)
#pragma unroll
                    for (int m = 0; m < MT; m++) {
                        a[uu][m] = an[uu][m];
#pragma unroll
                        for (int k = 0; k < NS; k++) sw[uu][m][k] = sn[uu][m][k];
                    }
                if (u0 + step < ue) load(u0 + step, an, sn);
            } else {
                load(u0, a, sw);
            }
#pragma unroll
            for (int uu = 0; uu < I8_UNROLL; uu++) {
                long long u = u0 + uu * I8_WARPS;
                if (u >= ue) break;
#pragma unroll
                for (int sub = 0; sub < (Q == Q_Q8_0 ? 1 : 2); sub++) {
                    long long b = Q == Q_Q8_0 ? u : 2 * u + sub; // 32-column block
                    if (b >= nb) break;
                    u32 fa[MT][4];
                    float dA[MT], dB[MT];
#pragma unroll
                    for (int m = 0; m < MT; m++) {
                        uint4 v = a[uu][m];
                        if (Q == Q_Q8_0) {
                            fa[m][0] = v.x; fa[m][1] = v.y; fa[m][2] = v.z; fa[m][3] = v.w;
                        } else {
                            u32 wa = sub ? v.z : v.x, wb = sub ? v.w : v.y;
                            fa[m][0] = nib_minus8(wa & 0x0f0f0f0fu);
                            fa[m][1] = nib_minus8(wb & 0x0f0f0f0fu);
                            fa[m][2] = nib_minus8((wa >> 4) & 0x0f0f0f0fu);
                            fa[m][3] = nib_minus8((wb >> 4) & 0x0f0f0f0fu);
                        }
                        u32 s2 = sw[uu][m][NS == 1 ? 0 : sub];
                        dA[m] = f16_to_f32((u16)(s2 & 0xffffu));
                        dB[m] = f16_to_f32((u16)(s2 >> 16));
                    }
#pragma unroll
                    for (int j = 0; j < I8_TILES; j++) {
                        if (j < nt) {
                            uint4 bf = xq[((long long)(j0 + j) * nb + b) * 32 + lane];
                            float da0 = __uint_as_float(bf.z), da1 = __uint_as_float(bf.w);
#pragma unroll
                            for (int m = 0; m < MT; m++) {
                                int c[4];
                                mma_s8(c, fa[m][0], fa[m][1], fa[m][2], fa[m][3], bf.x, bf.y);
                                acc[m][j][0] += dA[m] * da0 * i2f_exact(c[0]);
                                acc[m][j][1] += dA[m] * da1 * i2f_exact(c[1]);
                                acc[m][j][2] += dB[m] * da0 * i2f_exact(c[2]);
                                acc[m][j][3] += dB[m] * da1 * i2f_exact(c[3]);
                            }
                        }
                    }
                }
            }
        }
    } else if (Q == Q_Q4_K) {
        const uint4 *ph = (const uint4 *)(p + scale_off);
        auto load = [&](long long sb, uint4 (&q)[MT][4], uint4 (&hd)[MT][2]) {
#pragma unroll
            for (int m = 0; m < MT; m++) {
                long long tu = tiles[m] * units + sb;
#pragma unroll
                for (int c = 0; c < 4; c++) q[m][c] = pq[(tu * 4 + c) * 32 + lane];
                hd[m][0] = ph[tu * 16 + g];
                hd[m][1] = ph[tu * 16 + 8 + g];
            }
        };
        uint4 qn[MT][4], hn[MT][2];
        if (I8_PIPE && ub + warp < ue) load(ub + warp, qn, hn);
        for (long long sb = ub + warp; sb < ue; sb += I8_WARPS) {
            uint4 q[MT][4], hd[MT][2];
            if (I8_PIPE) {
#pragma unroll
                for (int m = 0; m < MT; m++) {
#pragma unroll
                    for (int c = 0; c < 4; c++) q[m][c] = qn[m][c];
                    hd[m][0] = hn[m][0];
                    hd[m][1] = hn[m][1];
                }
                if (sb + I8_WARPS < ue) load(sb + I8_WARPS, qn, hn);
            } else {
                load(sb, q, hd);
            }
#pragma unroll
            for (int c = 0; c < 4; c++) {
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    int b = (int)sb * 8 + 2 * c + h; // 32-column block of the activations
                    u32 fa[MT][4];
                    float dsc[MT][2], dmn[MT][2]; // [m][row g, g + 8]
#pragma unroll
                    for (int m = 0; m < MT; m++) {
                        uint4 v = q[m][c];
                        int sh = 4 * h;
                        fa[m][0] = (v.x >> sh) & 0x0f0f0f0fu;
                        fa[m][1] = (v.y >> sh) & 0x0f0f0f0fu;
                        fa[m][2] = (v.z >> sh) & 0x0f0f0f0fu;
                        fa[m][3] = (v.w >> sh) & 0x0f0f0f0fu;
#pragma unroll
                        for (int i = 0; i < 2; i++) {
                            uint4 hh = hd[m][i];
                            float d = f16_to_f32((u16)(hh.x & 0xffffu)), dmin = f16_to_f32((u16)(hh.x >> 16));
                            int sc, mn;
                            q4k_sm_reg(hh, 2 * c + h, &sc, &mn);
                            dsc[m][i] = d * (float)sc;
                            dmn[m][i] = dmin * (float)mn;
                        }
                    }
#pragma unroll
                    for (int j = 0; j < I8_TILES; j++) {
                        if (j < nt) {
                            long long tile = (long long)(j0 + j) * nb + b;
                            uint4 bf = xq[tile * 32 + lane];
                            float da0 = __uint_as_float(bf.z), da1 = __uint_as_float(bf.w);
                            float sa0 = (float)xs[tile * 8 + 2 * tg], sa1 = (float)xs[tile * 8 + 2 * tg + 1];
#pragma unroll
                            for (int m = 0; m < MT; m++) {
                                int cc[4];
                                mma_s8(cc, fa[m][0], fa[m][1], fa[m][2], fa[m][3], bf.x, bf.y);
                                float sA = dsc[m][0], sB = dsc[m][1];
                                float mA = dmn[m][0], mB = dmn[m][1];
                                acc[m][j][0] += sA * da0 * i2f_exact(cc[0]) - mA * da0 * sa0;
                                acc[m][j][1] += sA * da1 * i2f_exact(cc[1]) - mA * da1 * sa1;
                                acc[m][j][2] += sB * da0 * i2f_exact(cc[2]) - mB * da0 * sa0;
                                acc[m][j][3] += sB * da1 * i2f_exact(cc[3]) - mB * da1 * sa1;
                            }
                        }
                    }
                }
            }
        }
    }

    // acc[m][j]: rows 16m + g (e 0, 1) and 16m + g + 8 (e 2, 3), tokens 8j + 2tg (e 0, 2) and
    // + 1 (e 1, 3). The warps' sums of one token tile, added in warp order.
    float *mine = red + warp * ROWS * 8;
    float *dst = out + (long long)blockIdx.z * n * rows;
    int r0 = 16 * t0;
#pragma unroll
    for (int j = 0; j < I8_TILES; j++) {
        if (j < nt) {
#pragma unroll
            for (int m = 0; m < MT; m++) {
                int r = 16 * m + g;
                mine[r * 8 + 2 * tg] = acc[m][j][0];
                mine[r * 8 + 2 * tg + 1] = acc[m][j][1];
                mine[(r + 8) * 8 + 2 * tg] = acc[m][j][2];
                mine[(r + 8) * 8 + 2 * tg + 1] = acc[m][j][3];
            }
            __syncthreads();
            for (int idx = tid; idx < ROWS * 8; idx += blockDim.x) {
                int row = idx % ROWS, tok = idx / ROWS;
                float s = 0.0f;
                for (int k = 0; k < I8_WARPS; k++) s += red[(k * ROWS + row) * 8 + tok];
                int t = (j0 + j) * 8 + tok, r = r0 + row;
                if (t < n && r < rows) dst[(long long)t * rows + r] = s;
            }
            __syncthreads();
        }
    }
}

// out[i] = Σ over splits s (in order) of part[s * len + i].
extern "C" __global__ void i8_sum_splits(const float *part, int splits, long long len, float *out) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len;
         i += (long long)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int k = 0; k < splits; k++) s += part[(long long)k * len + i];
        out[i] = s;
    }
}

#define I8_KERNELS(name, Q)                                                                         \
    extern "C" __global__ void __launch_bounds__(32 * I8_WARPS)                                     \
        matmul_i8_##name(const u8 *p, long long scale_off, int rows, int cols, const uint4 *xq,     \
                         const int *xs, int n, int ups, float *out) {                               \
        mm_i8<Q, 2>(p, scale_off, rows, cols, xq, xs, n, ups, out);                                 \
    }                                                                                               \
    extern "C" __global__ void __launch_bounds__(32 * I8_WARPS)                                     \
        matmul_i8_##name##_m1(const u8 *p, long long scale_off, int rows, int cols, const uint4 *xq, \
                              const int *xs, int n, int ups, float *out) {                          \
        mm_i8<Q, 1>(p, scale_off, rows, cols, xq, xs, n, ups, out);                                 \
    }                                                                                               \
    extern "C" __global__ void pack_##name(const u8 *w, long long row_bytes, int rows, int cols,    \
                                           u8 *p, long long scale_off) {                            \
        pack<Q>(w, row_bytes, rows, cols, p, scale_off);                                            \
    }                                                                                               \
    extern "C" __global__ void dequant_bf16_packed_##name(const u8 *p, long long scale_off, long long r0, \
                                                         int n_rows, int cols, u16 *out) {          \
        long long per_row = cols >> 3, total = (long long)n_rows * per_row;                         \
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;             \
             i += (long long)gridDim.x * blockDim.x) {                                              \
            long long r = i / per_row;                                                              \
            int c = (int)(i - r * per_row) * 8;                                                     \
            float v[8];                                                                             \
            packed_w8<Q>(p, scale_off, cols, r0 + r, c, v);                                         \
            uint4 u;                                                                                \
            u.x = (u32)f32_to_bf16(v[0]) | ((u32)f32_to_bf16(v[1]) << 16);                          \
            u.y = (u32)f32_to_bf16(v[2]) | ((u32)f32_to_bf16(v[3]) << 16);                          \
            u.z = (u32)f32_to_bf16(v[4]) | ((u32)f32_to_bf16(v[5]) << 16);                          \
            u.w = (u32)f32_to_bf16(v[6]) | ((u32)f32_to_bf16(v[7]) << 16);                          \
            *(uint4 *)(out + r * cols + c) = u;                                                     \
        }                                                                                           \
    }                                                                                               \
    extern "C" __global__ void embed_packed_##name(const u8 *p, long long scale_off, int cols,      \
                                                   const int *tokens, int n, float *out) {          \
        int i = blockIdx.x;                                                                         \
        if (i >= n) return;                                                                         \
        long long r = tokens[i];                                                                    \
        for (int c = 8 * threadIdx.x; c < cols; c += 8 * blockDim.x) {                              \
            float v[8];                                                                             \
            packed_w8<Q>(p, scale_off, cols, r, c, v);                                              \
            for (int e = 0; e < 8; e++) out[(long long)i * cols + c + e] = v[e];                    \
        }                                                                                           \
    }

I8_KERNELS(q8_0, Q_Q8_0)
I8_KERNELS(q4_0, Q_Q4_0)
I8_KERNELS(q4_k, Q_Q4_K)
