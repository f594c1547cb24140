// Elementwise kernels: unary functions and their derivatives, broadcasting binary functions and
// their partial derivatives. Op codes are the indices of `UNARY` and `BINARY` in ops.rs; each
// formula is the CPU one of src/ops/unary.rs and src/ops/binary.rs (same branches at kinks and
// ties, same NaN behaviour: fmax/fmin ignore a NaN as Rust's max/min do).

__device__ T sigmoid_of(T x) {
    // Two branches so that exp never overflows.
    if (x >= (T)0) return (T)1 / ((T)1 + exp(-x));
    T e = exp(x);
    return e / ((T)1 + e);
}

#define GELU_C ((T)0.7978845608028654)
#define GELU_A ((T)0.044715)

__device__ T unary_value(int op, T a, T b, T x) {
    switch (op) {
    case 0: return -x;
    case 1: return exp(x);
    case 2: return log(x);
    case 3: return sqrt(x);
    case 4: return fabs(x);
    case 5: return x > (T)0 ? x : (T)0;
    case 6: return x > (T)0 ? x : a * x;
    case 7: return (T)0.5 * x * ((T)1 + tanh(GELU_C * (x + GELU_A * x * x * x)));
    case 8: return tanh(x);
    case 9: return sigmoid_of(x);
    case 10: return fmax(x, (T)0) + log1p(exp(-fabs(x)));
    case 11: return pow(x, a);
    case 12: return x + a;
    case 13: return x * a;
    case 14: return fmin(fmax(x, a), b);
    }
    return x;
}

// f'(x), given x and y = f(x).
__device__ T unary_slope(int op, T a, T b, T x, T y) {
    switch (op) {
    case 0: return (T)-1;
    case 1: return y;
    case 2: return (T)1 / x;
    case 3: return (T)0.5 / y;
    case 4: return x > (T)0 ? (T)1 : (x < (T)0 ? (T)-1 : (T)0);
    case 5: return x > (T)0 ? (T)1 : (T)0;
    case 6: return x > (T)0 ? (T)1 : a;
    case 7: {
        T t = tanh(GELU_C * (x + GELU_A * x * x * x));
        return (T)0.5 * ((T)1 + t)
            + (T)0.5 * x * ((T)1 - t * t) * GELU_C * ((T)1 + (T)3 * GELU_A * x * x);
    }
    case 8: return (T)1 - y * y;
    case 9: return y * ((T)1 - y);
    case 10: return sigmoid_of(x);
    case 11: return a * pow(x, a - (T)1);
    case 12: return (T)1;
    case 13: return a;
    case 14: return (x >= a && x <= b) ? (T)1 : (T)0;
    }
    return (T)0;
}

extern "C" __global__ void unary_fwd(int op, T a, T b, const T* x, T* y, i64 n) {
    FOR_EACH(i, n) { y[i] = unary_value(op, a, b, x[i]); }
}

extern "C" __global__ void unary_bwd(int op, T a, T b, const T* x, const T* y, const T* g, T* dx, i64 n) {
    FOR_EACH(i, n) { dx[i] = g[i] * unary_slope(op, a, b, x[i], y[i]); }
}

// Offsets into both operands of output element i; meta = [dims | lhs strides | rhs strides],
// strides 0 along broadcast dimensions.
__device__ void broadcast_offsets(i64 i, int rank, const i64* meta, i64* lo, i64* ro) {
    i64 l = 0, r = 0;
    for (int d = rank - 1; d >= 0; --d) {
        i64 c = i % meta[d];
        i /= meta[d];
        l += c * meta[rank + d];
        r += c * meta[2 * rank + d];
    }
    *lo = l;
    *ro = r;
}

__device__ T binary_value(int op, T l, T r) {
    switch (op) {
    case 0: return l + r;
    case 1: return l - r;
    case 2: return l * r;
    case 3: return l / r;
    case 4: return l >= r ? l : r;
    case 5: return l <= r ? l : r;
    case 6: return pow(l, r);
    }
    return l;
}

// At ties, maximum and minimum split the gradient equally.
__device__ T tie(bool wins, bool equal) { return wins ? (T)1 : (equal ? (T)0.5 : (T)0); }

// ∂f/∂lhs (side 0) or ∂f/∂rhs (side 1).
__device__ T binary_slope(int op, int side, T l, T r) {
    if (side == 0) {
        switch (op) {
        case 0: case 1: return (T)1;
        case 2: return r;
        case 3: return (T)1 / r;
        case 4: return tie(l > r, l == r);
        case 5: return tie(l < r, l == r);
        case 6: return r * pow(l, r - (T)1);
        }
    } else {
        switch (op) {
        case 0: return (T)1;
        case 1: return (T)-1;
        case 2: return l;
        case 3: return -l / (r * r);
        case 4: return tie(r > l, l == r);
        case 5: return tie(r < l, l == r);
        case 6: return pow(l, r) * log(l);
        }
    }
    return (T)0;
}

extern "C" __global__ void binary_fwd(int op, const T* l, const T* r, T* out, i64 n, int rank, const i64* meta) {
    FOR_EACH(i, n) {
        i64 lo, ro;
        broadcast_offsets(i, rank, meta, &lo, &ro);
        out[i] = binary_value(op, l[lo], r[ro]);
    }
}

// g · ∂f/∂side over the broadcast shape (summed back to the operand's shape by the caller).
extern "C" __global__ void binary_partial(int op, int side, const T* l, const T* r, const T* g, T* out, i64 n, int rank, const i64* meta) {
    FOR_EACH(i, n) {
        i64 lo, ro;
        broadcast_offsets(i, rank, meta, &lo, &ro);
        out[i] = g[i] * binary_slope(op, side, l[lo], r[ro]);
    }
}

extern "C" __global__ void fill(T* y, T v, i64 n) {
    FOR_EACH(i, n) { y[i] = v; }
}

// Non-finite values (a row maximum of −∞) become 0, as `shift_by_max` does on the CPU.
extern "C" __global__ void finite_or_zero(const T* x, T* y, i64 n) {
    FOR_EACH(i, n) { y[i] = isfinite(x[i]) ? x[i] : (T)0; }
}
