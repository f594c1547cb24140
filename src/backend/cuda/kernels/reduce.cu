// Reductions over the middle axis of an (outer, reduced, inner) view: sums and max/min with
// their arguments, and the row-wise log-sum-exp of the streamed similarity.

#define BLOCK 256

// The sum of v over the block's BLOCK threads, returned to every thread.
__device__ T block_sum(T v, T* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    T r = buf[0];
    __syncthreads();
    return r;
}

__device__ T block_max(T v, T* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] = fmax(buf[threadIdx.x], buf[threadIdx.x + s]);
        __syncthreads();
    }
    T r = buf[0];
    __syncthreads();
    return r;
}

// inner == 1: one block per row.
extern "C" __global__ void sum_rows(const T* x, T* out, i64 rows, i64 len) {
    __shared__ T buf[BLOCK];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        T s = (T)0;
        for (i64 j = threadIdx.x; j < len; j += BLOCK) s += x[row * len + j];
        s = block_sum(s, buf);
        if (threadIdx.x == 0) out[row] = s;
    }
}

// inner > 1: one thread per output, reading coalesced across inner.
extern "C" __global__ void sum_inner(const T* x, T* out, i64 outer, i64 reduced, i64 inner) {
    FOR_EACH(k, outer * inner) {
        i64 o = k / inner, i = k % inner;
        T s = (T)0;
        for (i64 r = 0; r < reduced; ++r) s += x[(o * reduced + r) * inner + i];
        out[k] = s;
    }
}

// Max (want_max) or min and the flat offset of its first occurrence, as on the CPU.
extern "C" __global__ void extremum(const T* x, T* vals, i64* args, i64 outer, i64 reduced, i64 inner, int want_max) {
    FOR_EACH(k, outer * inner) {
        i64 o = k / inner, i = k % inner;
        i64 base = o * reduced * inner + i, arg = base;
        T best = x[base];
        for (i64 r = 1; r < reduced; ++r) {
            i64 off = base + r * inner;
            T v = x[off];
            if (want_max ? v > best : v < best) {
                best = v;
                arg = off;
            }
        }
        vals[k] = best;
        args[k] = arg;
    }
}

// lse[r0 + row] = log Σ exp(s[row, :]) over a (rows, cols) block, one block per row; a row of
// −∞ gives −∞.
extern "C" __global__ void lse_rows(const T* s, T* lse, i64 rows, i64 cols, i64 r0) {
    __shared__ T buf[BLOCK];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* p = s + row * cols;
        T m = NEG_INF;
        for (i64 j = threadIdx.x; j < cols; j += BLOCK) m = fmax(m, p[j]);
        m = block_max(m, buf);
        T acc = (T)0;
        if (m != NEG_INF) {
            for (i64 j = threadIdx.x; j < cols; j += BLOCK) acc += exp(p[j] - m);
        }
        acc = block_sum(acc, buf);
        if (threadIdx.x == 0) lse[r0 + row] = (m == NEG_INF) ? NEG_INF : m + log(acc);
    }
}
