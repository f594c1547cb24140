// Convolution and pooling over (N, C, H, W): im2col/col2im around cuBLAS GEMMs, max pooling
// (first maximum in row-major order, strict > from −∞, as on the CPU) and average pooling
// (zero padding counted). Backwards are written in gather form where that is cheap, so they
// need no atomics and give the same bits on every run.

// cols (N, C·KH·KW, OH·OW), rows ordered (c, ky, kx) like the weight (OC, C/G, KH, KW).
extern "C" __global__ void im2col(const T* x, T* cols, i64 n, i64 c, i64 h, i64 w, i64 kh, i64 kw,
                                  i64 sh, i64 sw, i64 ph, i64 pw, i64 dh, i64 dw, i64 oh, i64 ow) {
    FOR_EACH(k, n * c * kh * kw * oh * ow) {
        i64 t = k;
        i64 ox = t % ow; t /= ow;
        i64 oy = t % oh; t /= oh;
        i64 kx = t % kw; t /= kw;
        i64 ky = t % kh; t /= kh;
        i64 ch = t % c;
        i64 img = t / c;
        i64 iy = oy * sh - ph + ky * dh, ix = ox * sw - pw + kx * dw;
        cols[k] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[((img * c + ch) * h + iy) * w + ix] : (T)0;
    }
}

// The adjoint of im2col: each input pixel sums the column entries that read it.
extern "C" __global__ void col2im(const T* cols, T* x, i64 n, i64 c, i64 h, i64 w, i64 kh, i64 kw,
                                  i64 sh, i64 sw, i64 ph, i64 pw, i64 dh, i64 dw, i64 oh, i64 ow) {
    FOR_EACH(k, n * c * h * w) {
        i64 ix = k % w, t = k / w;
        i64 iy = t % h; t /= h;
        i64 ch = t % c, img = t / c;
        T s = (T)0;
        for (i64 ky = 0; ky < kh; ++ky) {
            i64 ty = iy + ph - ky * dh;
            if (ty < 0 || ty % sh != 0 || ty / sh >= oh) continue;
            for (i64 kx = 0; kx < kw; ++kx) {
                i64 tx = ix + pw - kx * dw;
                if (tx < 0 || tx % sw != 0 || tx / sw >= ow) continue;
                s += cols[(((img * c + ch) * kh + ky) * kw + kx) * oh * ow + (ty / sh) * ow + tx / sw];
            }
        }
        x[k] = s;
    }
}

// The input rows (or columns) [lo, hi) under output position o, clipped to the input.
__device__ void pool_span(i64 o, i64 stride, i64 pad, i64 k, i64 size, i64* lo, i64* hi) {
    i64 start = o * stride - pad;
    *lo = start > 0 ? start : 0;
    i64 end = start + k;
    *hi = end < size ? end : size;
}

// arg: the flat input offset of each window's first maximum.
extern "C" __global__ void max_pool_fwd(const T* x, T* y, i64* arg, i64 planes, i64 h, i64 w,
                                        i64 k, i64 s, i64 p, i64 oh, i64 ow) {
    FOR_EACH(idx, planes * oh * ow) {
        i64 ox = idx % ow, t = idx / ow;
        i64 oy = t % oh, pl = t / oh;
        i64 y0, y1, x0, x1;
        pool_span(oy, s, p, k, h, &y0, &y1);
        pool_span(ox, s, p, k, w, &x0, &x1);
        T best = NEG_INF;
        i64 at = y0 * w + x0;
        const T* plane = x + pl * h * w;
        for (i64 yy = y0; yy < y1; ++yy)
            for (i64 xx = x0; xx < x1; ++xx)
                if (plane[yy * w + xx] > best) {
                    best = plane[yy * w + xx];
                    at = yy * w + xx;
                }
        y[idx] = best;
        arg[idx] = pl * h * w + at;
    }
}

extern "C" __global__ void avg_pool_fwd(const T* x, T* y, i64 planes, i64 h, i64 w, i64 k, i64 s,
                                        i64 p, i64 oh, i64 ow) {
    T scale = (T)1 / (T)(k * k);
    FOR_EACH(idx, planes * oh * ow) {
        i64 ox = idx % ow, t = idx / ow;
        i64 oy = t % oh, pl = t / oh;
        i64 y0, y1, x0, x1;
        pool_span(oy, s, p, k, h, &y0, &y1);
        pool_span(ox, s, p, k, w, &x0, &x1);
        T acc = (T)0;
        for (i64 yy = y0; yy < y1; ++yy)
            for (i64 xx = x0; xx < x1; ++xx) acc += x[pl * h * w + yy * w + xx];
        y[idx] = acc * scale;
    }
}

// The output positions [lo, hi] whose windows cover input position i along one axis.
__device__ void covering(i64 i, i64 stride, i64 pad, i64 k, i64 out, i64* lo, i64* hi) {
    i64 a = i + pad - k + 1;
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    i64 b = (i + pad) / stride;
    *hi = b < out - 1 ? b : out - 1;
}

extern "C" __global__ void avg_pool_bwd(const T* g, T* dx, i64 planes, i64 h, i64 w, i64 k, i64 s,
                                        i64 p, i64 oh, i64 ow) {
    T scale = (T)1 / (T)(k * k);
    FOR_EACH(idx, planes * h * w) {
        i64 xx = idx % w, t = idx / w;
        i64 yy = t % h, pl = t / h;
        i64 oy0, oy1, ox0, ox1;
        covering(yy, s, p, k, oh, &oy0, &oy1);
        covering(xx, s, p, k, ow, &ox0, &ox1);
        T acc = (T)0;
        for (i64 oy = oy0; oy <= oy1; ++oy)
            for (i64 ox = ox0; ox <= ox1; ++ox) acc += g[(pl * oh + oy) * ow + ox];
        dx[idx] = acc * scale;
    }
}
