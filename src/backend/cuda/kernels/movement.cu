// Data movement and indexing: strided copies (permute, broadcast, narrow and its backward,
// concat), index-select and gather with their backwards (deterministic: no atomics), and
// where.

// dst[dst_off + Σ c_d·dst_stride_d] = src[src_off + Σ c_d·src_stride_d] for every coordinate c
// of dims; meta = [dims | src strides | dst strides].
extern "C" __global__ void strided_copy(const T* src, i64 src_off, T* dst, i64 dst_off, i64 n, int rank, const i64* meta) {
    FOR_EACH(i, n) {
        i64 rest = i, s = src_off, d = dst_off;
        for (int k = rank - 1; k >= 0; --k) {
            i64 c = rest % meta[k];
            rest /= meta[k];
            s += c * meta[rank + k];
            d += c * meta[2 * rank + k];
        }
        dst[d] = src[s];
    }
}

// (outer, size, inner) → (outer, nsel, inner), slices idx[j] along the middle axis.
extern "C" __global__ void index_select_fwd(const T* x, const i64* idx, T* out, i64 outer, i64 nsel, i64 size, i64 inner) {
    FOR_EACH(i, outer * nsel * inner) {
        i64 in = i % inner, j = (i / inner) % nsel, o = i / (inner * nsel);
        out[i] = x[(o * size + idx[j]) * inner + in];
    }
}

// The backward of index_select, without atomics: each input position (o, s, in) sums the
// gradients of the selections j with idx[j] = s (sel[rows[s] .. rows[s + 1]], ascending j:
// the CPU's order), so repeated indices add up the same way on every run.
extern "C" __global__ void index_select_bwd(const T* g, const i64* rows, const i64* sel, T* dx, i64 outer, i64 nsel, i64 size, i64 inner) {
    FOR_EACH(i, outer * size * inner) {
        i64 in = i % inner, s = (i / inner) % size, o = i / (inner * size);
        T acc = (T)0;
        for (i64 k = rows[s]; k < rows[s + 1]; ++k) acc += g[(o * nsel + sel[k]) * inner + in];
        dx[i] = acc;
    }
}

extern "C" __global__ void take(const T* x, const i64* off, T* out, i64 n) {
    FOR_EACH(i, n) { out[i] = x[off[i]]; }
}

// dx[off[i]] = g[i] for distinct offsets (max/min, pooling windows that do not overlap, a
// gather without repeats): no two threads write one place.
extern "C" __global__ void scatter_distinct(const T* g, const i64* off, T* dx, i64 n) {
    FOR_EACH(i, n) { dx[off[i]] = g[i]; }
}

// dx[d] = Σ g[src[j]] over each run of equal dst[j] = d, with dst sorted and src ascending
// within a run (the CPU's order): one thread per run, no atomics, the same sums every run.
// The backward of gather and of max-pooling when offsets repeat.
extern "C" __global__ void scatter_sorted(const T* g, const i64* src, const i64* dst, T* dx, i64 n) {
    FOR_EACH(k, n) {
        if (k > 0 && dst[k - 1] == dst[k]) continue;
        T acc = (T)0;
        for (i64 j = k; j < n && dst[j] == dst[k]; ++j) acc += g[src[j]];
        dx[dst[k]] = acc;
    }
}

extern "C" __global__ void where_fwd(const unsigned char* mask, const T* a, const T* b, T* out, i64 n) {
    FOR_EACH(i, n) { out[i] = mask[i] ? a[i] : b[i]; }
}

extern "C" __global__ void where_bwd(const unsigned char* mask, const T* g, T* ga, T* gb, i64 n) {
    FOR_EACH(i, n) {
        ga[i] = mask[i] ? g[i] : (T)0;
        gb[i] = mask[i] ? (T)0 : g[i];
    }
}
