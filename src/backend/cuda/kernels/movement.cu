// Data movement and indexing: strided copies (permute, broadcast, narrow and its backward,
// concat), index-select and gather with their scatter-add backwards, and where.

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

// The backward of index_select: adds each slice's gradient into the slice it came from
// (atomics: repeated indices add up, in no fixed order).
extern "C" __global__ void index_add(const T* g, const i64* idx, T* dx, i64 outer, i64 nsel, i64 size, i64 inner) {
    FOR_EACH(i, outer * nsel * inner) {
        i64 in = i % inner, j = (i / inner) % nsel, o = i / (inner * nsel);
        atomicAdd(&dx[(o * size + idx[j]) * inner + in], g[i]);
    }
}

extern "C" __global__ void take(const T* x, const i64* off, T* out, i64 n) {
    FOR_EACH(i, n) { out[i] = x[off[i]]; }
}

// dx[off[i]] += g[i]: the backward of gather, max/min and max-pooling.
extern "C" __global__ void scatter_add(const T* g, const i64* off, T* dx, i64 n) {
    FOR_EACH(i, n) { atomicAdd(&dx[off[i]], g[i]); }
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
