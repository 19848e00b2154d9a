// dlm CUDA kernels: the first, simple set (every op of the forward pass, and the fallback
// matmul for shapes the fast kernels in matmul.cu do not take). Compiled by NVRTC at backend
// start after common.cuh (see src/kernels.rs).

#define MM_TOKENS 8
#define MM_WARPS 8

// out[t, r] = sum_c x[t, c] * w[r, c]. One warp per weight row, MM_TOKENS tokens per block
// column, so a weight element is loaded once for MM_TOKENS tokens.
extern "C" __global__ void matmul_w(const u8 *w, int quant, long long row_bytes, int rows, int cols,
                                    const float *x, int n, float *out) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r = blockIdx.x * MM_WARPS + warp;
    int t0 = blockIdx.y * MM_TOKENS;
    if (r >= rows) return;
    int nt = min(MM_TOKENS, n - t0);
    float acc[MM_TOKENS];
#pragma unroll
    for (int t = 0; t < MM_TOKENS; t++) acc[t] = 0.0f;
    for (int c = lane; c < cols; c += 32) {
        float wv = load_w1(w + (long long)r * row_bytes, quant, c);
#pragma unroll
        for (int t = 0; t < MM_TOKENS; t++)
            if (t < nt) acc[t] += wv * x[(long long)(t0 + t) * cols + c];
    }
#pragma unroll
    for (int t = 0; t < MM_TOKENS; t++) {
        float v = acc[t];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0 && t < nt) out[(long long)(t0 + t) * rows + r] = v;
    }
}

// Dequantize a whole matrix to f32 (used for the embedding table rows and tests).
extern "C" __global__ void embed(const u8 *w, int quant, long long row_bytes, int cols,
                                 const int *tokens, int n, float *out) {
    int i = blockIdx.x;
    if (i >= n) return;
    long long r = tokens[i];
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        out[(long long)i * cols + c] = load_w1(w + r * row_bytes, quant, c);
}

// One block per row.
extern "C" __global__ void rmsnorm(const float *x, const float *w, float eps, int dim, float *out) {
    __shared__ float sh[32];
    long long base = (long long)blockIdx.x * dim;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        float v = x[base + c];
        ss += v * v;
    }
    ss = block_sum(ss, sh) / (float)dim;
    float r = 1.0f / sqrtf(ss + eps);
    for (int c = threadIdx.x; c < dim; c += blockDim.x) out[base + c] = x[base + c] * r * w[c];
}

extern "C" __global__ void add_bias(float *x, const float *b, int width, long long len) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < len) x[i] += b[i % width];
}

extern "C" __global__ void add_assign(float *x, const float *y, long long len) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < len) x[i] += y[i];
}

extern "C" __global__ void swiglu(float *g, const float *u, long long len) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < len) {
        float a = g[i];
        g[i] = a / (1.0f + expf(-a)) * u[i];
    }
}

// One block per row; rotate-half within each head.
extern "C" __global__ void rope(float *x, int width, int head_dim, const float *cos_t, const float *sin_t,
                                const int *positions) {
    int i = blockIdx.x;
    int h = head_dim / 2;
    long long pos = positions[i];
    float *row = x + (long long)i * width;
    int pairs = width / 2;
    for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
        int head = p / h, j = p % h;
        float *x1 = row + head * head_dim;
        float c = cos_t[pos * h + j], s = sin_t[pos * h + j];
        float a = x1[j], b = x1[j + h];
        x1[j] = a * c - b * s;
        x1[j + h] = b * c + a * s;
    }
}

// out[j] = x[rows[j]] (gather) or dst[rows[j]] = src[j] (scatter); one block per row.
extern "C" __global__ void gather(const float *x, int width, const int *rows, float *out) {
    long long src = (long long)rows[blockIdx.x] * width, dst = (long long)blockIdx.x * width;
    for (int c = threadIdx.x; c < width; c += blockDim.x) out[dst + c] = x[src + c];
}

extern "C" __global__ void scatter(float *dst, int width, const int *rows, const float *src) {
    long long d = (long long)rows[blockIdx.x] * width, s = (long long)blockIdx.x * width;
    for (int c = threadIdx.x; c < width; c += blockDim.x) dst[d + c] = src[s + c];
}

#define ATT_THREADS 128
#define ATT_MAX_DIM 256

// Bidirectional attention, one block per (query row i, head h). Keys: span rows 0..n, then
// cached rows outside[0..n_out]. Keys are taken in chunks of ATT_THREADS (each thread one
// score), with an online softmax across chunks, so no score matrix is kept. When `scores`
// is not null, the raw scaled scores are written to it ([n, n_heads, n_keys]) for probes.
extern "C" __global__ void attention(const float *q, const float *k, const float *v, int n,
                                     const float *ck, const float *cv, const int *outside, int n_out,
                                     int n_heads, int n_kv_heads, int head_dim, float scale,
                                     float *out, float *scores) {
    __shared__ float qs[ATT_MAX_DIM];
    __shared__ float ps[ATT_THREADS];
    __shared__ float sh[32];
    int i = blockIdx.x, h = blockIdx.y;
    int group = n_heads / n_kv_heads;
    int g = h / group;
    int q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
    int n_keys = n + n_out;
    const float *qi = q + (long long)i * q_dim + h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = qi[d];
    __syncthreads();
    float acc0 = 0.0f, acc1 = 0.0f;
    float run_max = NEG_INF_F, run_sum = 0.0f;
    for (int base = 0; base < n_keys; base += ATT_THREADS) {
        int j = base + threadIdx.x;
        float s = NEG_INF_F;
        if (j < n_keys) {
            const float *kj = j < n ? k + (long long)j * kv_dim + g * head_dim
                                    : ck + (long long)outside[j - n] * kv_dim + g * head_dim;
            float dot = 0.0f;
            for (int d = 0; d < head_dim; d++) dot += qs[d] * kj[d];
            s = dot * scale;
            if (scores) scores[((long long)i * n_heads + h) * n_keys + j] = s;
        }
        // chunk max
        float m = s;
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        __syncthreads();
        if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = m;
        __syncthreads();
        float cmax = NEG_INF_F;
        for (int w = 0; w < ATT_THREADS / 32; w++) cmax = fmaxf(cmax, sh[w]);
        float new_max = fmaxf(run_max, cmax);
        float p = j < n_keys ? expf(s - new_max) : 0.0f;
        ps[threadIdx.x] = p;
        float csum = block_sum(p, sh);
        float corr = run_max == NEG_INF_F ? 0.0f : expf(run_max - new_max);
        run_sum = run_sum * corr + csum;
        acc0 *= corr;
        acc1 *= corr;
        int lim = min(ATT_THREADS, n_keys - base);
        for (int jj = 0; jj < lim; jj++) {
            int jk = base + jj;
            const float *vj = jk < n ? v + (long long)jk * kv_dim + g * head_dim
                                     : cv + (long long)outside[jk - n] * kv_dim + g * head_dim;
            float pj = ps[jj];
            int d0 = threadIdx.x, d1 = threadIdx.x + ATT_THREADS;
            if (d0 < head_dim) acc0 += pj * vj[d0];
            if (d1 < head_dim) acc1 += pj * vj[d1];
        }
        run_max = new_max;
        __syncthreads();
    }
    float inv = 1.0f / run_sum;
    float *oi = out + (long long)i * q_dim + h * head_dim;
    int d0 = threadIdx.x, d1 = threadIdx.x + ATT_THREADS;
    if (d0 < head_dim) oi[d0] = acc0 * inv;
    if (d1 < head_dim) oi[d1] = acc1 * inv;
}

// LLaDA greedy proposal of one row per block: the first maximal logit (NaN never wins
// over a number) and its softmax probability over the raw logits in f64.
extern "C" __global__ void propose_llada_greedy(const float *logits, int vocab, int *token, double *conf) {
    __shared__ float bv[256];
    __shared__ int bi[256];
    __shared__ double sd[256];
    const float *row = logits + (long long)blockIdx.x * vocab;
    float best = NAN_F;
    int besti = -1;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        float x = row[c];
        if (besti < 0 || x > best || (IS_NAN(best) && !IS_NAN(x))) { best = x; besti = c; }
    }
    bv[threadIdx.x] = best;
    bi[threadIdx.x] = besti;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            float ov = bv[threadIdx.x + s];
            int oi = bi[threadIdx.x + s];
            float mv = bv[threadIdx.x];
            int mi = bi[threadIdx.x];
            bool take;
            if (oi < 0) take = false;
            else if (mi < 0) take = true;
            else if (IS_NAN(mv) && !IS_NAN(ov)) take = true;
            else if (IS_NAN(ov)) take = false;
            else take = ov > mv || (ov == mv && oi < mi);
            if (take) { bv[threadIdx.x] = ov; bi[threadIdx.x] = oi; }
        }
        __syncthreads();
    }
    int t = bi[0];
    // f64 max over the row (NaN ignored as f64::max does), then the sum of exps.
    double m = NEG_INF_D;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        double x = (double)row[c];
        m = fmax(m, x);
    }
    sd[threadIdx.x] = m;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sd[threadIdx.x] = fmax(sd[threadIdx.x], sd[threadIdx.x + s]);
        __syncthreads();
    }
    m = sd[0];
    __syncthreads();
    double sum = 0.0;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) sum += exp((double)row[c] - m);
    sd[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sd[threadIdx.x] += sd[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        token[blockIdx.x] = t;
        conf[blockIdx.x] = exp((double)row[t] - m) / sd[0];
    }
}
