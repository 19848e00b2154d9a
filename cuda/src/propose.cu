// Greedy proposals next to the logits (after common.cuh): per row the argmax and a confidence,
// so 12 bytes a row go back to the host. One block of PROP_THREADS per row.
// mode 0: softmax probability of the token (LLaDA; Dream maskgit_plus / origin);
// mode 1: top-1 minus top-2 probability (Dream topk_margin);
// mode 2: sum(p * ln(p + 1e-10)) (Dream entropy).
// Probabilities are those of runtime/src/decode/sample.rs: softmax of the raw logits in f64,
// max-subtracted; the sums run in another order than the CPU's (last-bit differences).

#define PROP_THREADS 256

extern "C" __global__ void propose_greedy(const float *logits, int vocab, int mode, int *token,
                                          double *conf) {
    __shared__ float bv[PROP_THREADS];  // argmax value
    __shared__ int bi[PROP_THREADS];    // argmax index
    __shared__ float s1[PROP_THREADS];  // largest value (NaN skipped)
    __shared__ float s2[PROP_THREADS];  // second largest (of the multiset)
    __shared__ double sd[PROP_THREADS];
    int tid = threadIdx.x;
    const float *row = logits + (long long)blockIdx.x * vocab;
    float best = NAN_F, t1 = NEG_INF_F, t2 = NEG_INF_F;
    int besti = -1;
    for (int c = tid; c < vocab; c += PROP_THREADS) {
        float x = row[c];
        if (besti < 0 || x > best || (IS_NAN(best) && !IS_NAN(x))) { best = x; besti = c; }
        if (!IS_NAN(x)) {
            if (x > t1) { t2 = t1; t1 = x; }
            else if (x > t2) t2 = x;
        }
    }
    bv[tid] = best; bi[tid] = besti; s1[tid] = t1; s2[tid] = t2;
    __syncthreads();
    for (int s = PROP_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) {
            float ov = bv[tid + s], mv = bv[tid];
            int oi = bi[tid + s], mi = bi[tid];
            bool take;
            if (oi < 0) take = false;
            else if (mi < 0) take = true;
            else if (IS_NAN(mv) && !IS_NAN(ov)) take = true;
            else if (IS_NAN(ov)) take = false;
            else take = ov > mv || (ov == mv && oi < mi);
            if (take) { bv[tid] = ov; bi[tid] = oi; }
            float a1 = s1[tid], a2 = s2[tid], c1 = s1[tid + s], c2 = s2[tid + s];
            s1[tid] = fmaxf(a1, c1);
            s2[tid] = fmaxf(fminf(a1, c1), fmaxf(a2, c2));
        }
        __syncthreads();
    }
    int t = bi[0];
    float top1 = s1[0], top2 = s2[0];
    // f64 max over the row (NaN ignored, as f64::max), then the sum of exps.
    double m = NEG_INF_D;
    for (int c = tid; c < vocab; c += PROP_THREADS) m = fmax(m, (double)row[c]);
    sd[tid] = m;
    __syncthreads();
    for (int s = PROP_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) sd[tid] = fmax(sd[tid], sd[tid + s]);
        __syncthreads();
    }
    m = sd[0];
    __syncthreads();
    double sum = 0.0;
    for (int c = tid; c < vocab; c += PROP_THREADS) sum += exp((double)row[c] - m);
    sd[tid] = sum;
    __syncthreads();
    for (int s = PROP_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) sd[tid] += sd[tid + s];
        __syncthreads();
    }
    sum = sd[0];
    __syncthreads();
    double ent = 0.0;
    if (mode == 2) {
        for (int c = tid; c < vocab; c += PROP_THREADS) {
            double p = exp((double)row[c] - m) / sum;
            ent += p * log(p + 1e-10);
        }
        sd[tid] = ent;
        __syncthreads();
        for (int s = PROP_THREADS / 2; s > 0; s >>= 1) {
            if (tid < s) sd[tid] += sd[tid + s];
            __syncthreads();
        }
        ent = sd[0];
    }
    if (tid == 0) {
        token[blockIdx.x] = t;
        double c;
        if (mode == 0) {
            c = exp((double)row[t] - m) / sum;
        } else if (mode == 1) {
            double p1 = exp((double)top1 - m) / sum, p2 = exp((double)top2 - m) / sum;
            c = vocab < 2 ? p1 : p1 - p2;
        } else {
            c = ent;
        }
        conf[blockIdx.x] = c;
    }
}
