// Fused batch normalisation over the (N, C, L) view: per-channel statistics (one block per
// channel, two passes for accuracy), the normalisation, and the closed-form backward of
// src/ops/norm.rs.

// The (N, C, L) offset of the j-th value of channel ch.
__device__ i64 channel_at(i64 j, i64 ch, i64 c, i64 l) { return ((j / l) * c + ch) * l + j % l; }

extern "C" __global__ void bn_stats(const T* x, T* mean, T* var, i64 n, i64 c, i64 l) {
    __shared__ T buf[BLOCK];
    i64 ch = blockIdx.x, count = n * l;
    T s = (T)0;
    for (i64 j = threadIdx.x; j < count; j += BLOCK) s += x[channel_at(j, ch, c, l)];
    T m = block_sum(s, buf) / (T)count;
    T ss = (T)0;
    for (i64 j = threadIdx.x; j < count; j += BLOCK) {
        T d = x[channel_at(j, ch, c, l)] - m;
        ss += d * d;
    }
    ss = block_sum(ss, buf);
    if (threadIdx.x == 0) {
        mean[ch] = m;
        var[ch] = ss / (T)count;
    }
}

// y = (x − mean)·(inv_std·γ) + β, per channel (the CPU's order of operations).
extern "C" __global__ void bn_apply(const T* x, T* y, const T* mean, const T* inv_std, const T* gamma, const T* beta, i64 c, i64 l, i64 total) {
    FOR_EACH(i, total) {
        i64 ch = (i / l) % c;
        y[i] = (x[i] - mean[ch]) * (inv_std[ch] * gamma[ch]) + beta[ch];
    }
}

// Σ dy and Σ dy·(x − mean) per channel: dβ and dγ/inv_std.
extern "C" __global__ void bn_bwd_sums(const T* x, const T* dy, const T* mean, T* sum_dy, T* sum_dyxc, i64 n, i64 c, i64 l) {
    __shared__ T buf[BLOCK];
    i64 ch = blockIdx.x, count = n * l;
    T a = (T)0, b = (T)0;
    for (i64 j = threadIdx.x; j < count; j += BLOCK) {
        i64 at = channel_at(j, ch, c, l);
        a += dy[at];
        b += dy[at] * (x[at] - mean[ch]);
    }
    a = block_sum(a, buf);
    b = block_sum(b, buf);
    if (threadIdx.x == 0) {
        sum_dy[ch] = a;
        sum_dyxc[ch] = b;
    }
}

// dx = γ·s·(dy − Σdy/M − x̂·Σ(dy·x̂)/M) in training, γ·s·dy in evaluation (x̂ = (x − μ)·s).
extern "C" __global__ void bn_bwd_dx(const T* x, const T* dy, const T* mean, const T* inv_std, const T* gamma,
                                     const T* sum_dy, const T* sum_dyxc, T* dx, i64 c, i64 l, i64 total,
                                     int training, T inv_m) {
    FOR_EACH(i, total) {
        i64 ch = (i / l) % c;
        T s = inv_std[ch], k = gamma[ch] * s;
        if (training) {
            T c1 = sum_dy[ch] * inv_m;
            T c2 = sum_dyxc[ch] * s * inv_m * s;
            dx[i] = k * (dy[i] - c1 - (x[i] - mean[ch]) * c2);
        } else {
            dx[i] = k * dy[i];
        }
    }
}
