// The streamed similarity log-sum-exp: a row block of raw similarities (from cuBLAS) is scaled
// and masked here, reduced by lse_rows (reduce.cu), and in the backward turned into the
// weights w_ik = g_i·scale·exp(s_ik − lse_i).

// mode 0: keep everything; 1: drop k = i; 2: drop k whose label equals row i's.
extern "C" __global__ void sim_scale_mask(T* s, i64 rows, i64 cols, i64 r0, T scale, int mode,
                                          const i64* row_labels, const i64* col_labels) {
    FOR_EACH(k, rows * cols) {
        i64 i = r0 + k / cols, j = k % cols;
        T v = s[k] * scale;
        if ((mode == 1 && i == j) || (mode == 2 && row_labels[i] == col_labels[j])) v = NEG_INF;
        s[k] = v;
    }
}

extern "C" __global__ void sim_weights(T* s, i64 rows, i64 cols, i64 r0, const T* lse, const T* g, T scale) {
    FOR_EACH(k, rows * cols) {
        i64 i = r0 + k / cols;
        T l = lse[i];
        s[k] = (l == NEG_INF) ? (T)0 : g[i] * scale * exp(s[k] - l);
    }
}
