// Tiled ("flash") bidirectional attention (after common.cuh): no score matrix, keys and values
// in tiles through shared memory, an online softmax per query row. Heads up to FA_MAX_DIM wide
// (src/attention.rs uses kernels.cu's `attention` otherwise, and for probes).

#define FA_Q 16         // query rows per block
#define FA_K 32         // keys per tile
#define FA_THREADS 128  // 8 threads per query row
#define FA_MAX_DIM 128
#define FA_DPT (FA_MAX_DIM / 8) // output dims per thread

// One block per (tile of FA_Q query rows, head h). Keys: span rows 0..n of k/v, then the
// cached rows outside[0..n_out] of ck/cv (all [_, n_kv_heads * head_dim]). Thread t serves
// query row t / 8 of the tile; of each key tile it scores keys (t % 8) + 8m (m < 4), and it
// accumulates output dims (t % 8) + 8j (j < FA_DPT). The 8 threads of a row are 8 adjacent
// lanes of one warp: the row's max and sum are taken with shuffles over them.
extern "C" __global__ void attention_flash(const float *q, const float *k, const float *v, int n,
                                           const float *ck, const float *cv, const int *outside,
                                           int n_out, int n_heads, int n_kv_heads, int head_dim,
                                           float scale, float *out) {
    __shared__ float qs[FA_Q][FA_MAX_DIM + 1]; // [FA_Q, head_dim] queries, scaled (+1: banks)
    __shared__ float ks[FA_K][FA_MAX_DIM + 1]; // [FA_K, head_dim] key tile
    __shared__ float vs[FA_K][FA_MAX_DIM];     // [FA_K, head_dim] value tile
    __shared__ float ps[FA_Q][FA_K + 1];       // [FA_Q, FA_K] probabilities of the tile
    int q0 = blockIdx.x * FA_Q, h = blockIdx.y;
    int g = h / (n_heads / n_kv_heads);
    int q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
    int n_keys = n + n_out;
    int tid = threadIdx.x;
    int row = tid >> 3, sub = tid & 7;

    for (int i = tid; i < FA_Q * head_dim; i += FA_THREADS) {
        int r = i / head_dim, d = i - r * head_dim;
        qs[r][d] = q0 + r < n ? q[(long long)(q0 + r) * q_dim + h * head_dim + d] * scale : 0.0f;
    }
    float acc[FA_DPT];
#pragma unroll
    for (int j = 0; j < FA_DPT; j++) acc[j] = 0.0f;
    float m_run = NEG_INF_F, l_run = 0.0f;

    for (int base = 0; base < n_keys; base += FA_K) {
        __syncthreads(); // qs written; the previous tile's readers are done
        for (int i = tid; i < FA_K * head_dim; i += FA_THREADS) {
            int kk = i / head_dim, d = i - kk * head_dim;
            int j = base + kk;
            float kv = 0.0f, vv = 0.0f;
            if (j < n_keys) {
                long long off = (j < n ? (long long)j : (long long)outside[j - n]) * kv_dim + g * head_dim + d;
                kv = j < n ? k[off] : ck[off];
                vv = j < n ? v[off] : cv[off];
            }
            ks[kk][d] = kv;
            vs[kk][d] = vv;
        }
        __syncthreads();

        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int d = 0; d < head_dim; d++) {
            float qv = qs[row][d];
#pragma unroll
            for (int m = 0; m < 4; m++) s[m] += qv * ks[sub + 8 * m][d];
        }
        float tmax = NEG_INF_F;
#pragma unroll
        for (int m = 0; m < 4; m++) {
            if (base + sub + 8 * m >= n_keys) s[m] = NEG_INF_F;
            tmax = fmaxf(tmax, s[m]);
        }
        for (int o = 4; o > 0; o >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
        float m_new = fmaxf(m_run, tmax);
        float psum = 0.0f;
#pragma unroll
        for (int m = 0; m < 4; m++) {
            float p = base + sub + 8 * m < n_keys ? expf(s[m] - m_new) : 0.0f;
            ps[row][sub + 8 * m] = p;
            psum += p;
        }
        for (int o = 4; o > 0; o >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, o);
        float corr = m_run == NEG_INF_F ? 0.0f : expf(m_run - m_new);
        l_run = l_run * corr + psum;
        m_run = m_new;
#pragma unroll
        for (int j = 0; j < FA_DPT; j++) acc[j] *= corr;
        __syncwarp(); // ps[row] is written and read by the same 8 lanes of this warp

        int lim = min(FA_K, n_keys - base);
        for (int kk = 0; kk < lim; kk++) {
            float p = ps[row][kk];
#pragma unroll
            for (int j = 0; j < FA_DPT; j++) {
                int d = sub + 8 * j;
                if (d < head_dim) acc[j] += p * vs[kk][d];
            }
        }
    }
    if (q0 + row < n) {
        float inv = 1.0f / l_run;
        float *o = out + (long long)(q0 + row) * q_dim + h * head_dim;
#pragma unroll
        for (int j = 0; j < FA_DPT; j++) {
            int d = sub + 8 * j;
            if (d < head_dim) o[d] = acc[j] * inv;
        }
    }
}
