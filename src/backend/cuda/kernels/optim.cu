// Fused optimiser updates, in place, one thread per element: the formulas of src/optim/*.rs
// with the same hyper-parameter values (the bias corrections and the LARS trust ratio are
// computed in double, as the CPU computes them in f64). The optimiser state lives on the
// parameter's device; nothing comes back to the host.

// torch.optim.SGD. mode 0: no momentum buffer; 1: the first step (the buffer starts as d);
// 2: later steps.
extern "C" __global__ void sgd_step(T* w, const T* g, T* buf, i64 n, T lr, T mu, T keep, T wd,
                                    int mode, int nesterov) {
    FOR_EACH(i, n) {
        T p = w[i];
        T d = g[i] + wd * p;
        if (mode == 0) {
            w[i] = p - lr * d;
        } else {
            T b = mode == 1 ? d : mu * buf[i] + keep * d;
            buf[i] = b;
            w[i] = p - lr * (nesterov ? d + mu * b : b);
        }
    }
}

// torch.optim.Adam (l2 added to the gradient) or AdamW (decoupled: p·decay first).
extern "C" __global__ void adam_step(T* w, const T* g, T* m, T* v, i64 n, T b1, T b2,
                                     T step_size, T sqrt_bc2, T eps, T l2, T decay,
                                     int decoupled) {
    FOR_EACH(i, n) {
        T p = w[i], gi = g[i];
        if (decoupled) {
            p *= decay;
        } else {
            gi = gi + l2 * p;
        }
        T mi = b1 * m[i] + ((T)1 - b1) * gi;
        T vi = b2 * v[i] + ((T)1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = p - step_size * (mi / (sqrt(vi) / sqrt_bc2 + eps));
    }
}

// LARS, pass 1: per block, Σ w² and Σ d² with d = g + wd·w, accumulated in double, written
// to partial[2·block] and partial[2·block + 1]. A fixed grid and tree order: deterministic.
extern "C" __global__ void lars_norms(const T* w, const T* g, T wd, i64 n, double* partial) {
    __shared__ double sw[256];
    __shared__ double sd[256];
    double aw = 0.0, ad = 0.0;
    FOR_EACH(i, n) {
        T d = g[i] + wd * w[i];
        aw += (double)w[i] * (double)w[i];
        ad += (double)d * (double)d;
    }
    sw[threadIdx.x] = aw;
    sd[threadIdx.x] = ad;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            sw[threadIdx.x] += sw[threadIdx.x + s];
            sd[threadIdx.x] += sd[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        partial[2 * blockIdx.x] = sw[0];
        partial[2 * blockIdx.x + 1] = sd[0];
    }
}

// LARS, pass 2 (one thread): the scaled learning rate lr·r with the trust ratio
// r = η·‖w‖/‖d‖ when adapting and both norms are positive, else r = 1.
extern "C" __global__ void lars_trust(const double* partial, int blocks, double lr, double eta,
                                      int adapt, T* scaled_lr) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double sw = 0.0, sd = 0.0;
    for (int b = 0; b < blocks; ++b) {
        sw += partial[2 * b];
        sd += partial[2 * b + 1];
    }
    double trust = 1.0, wn = sqrt(sw), dn = sqrt(sd);
    if (adapt && wn > 0.0 && dn > 0.0) trust = eta * wn / dn;
    scaled_lr[0] = (T)(lr * trust);
}

// LARS, pass 3: v = μ·v + lr·r·d; w −= μ·v + lr·r·d (Nesterov) or v.
extern "C" __global__ void lars_step(T* w, const T* g, T* v, i64 n, const T* scaled_lr, T mu, T wd,
                                     int nesterov) {
    T lr = scaled_lr[0];
    FOR_EACH(i, n) {
        T p = w[i];
        T d = g[i] + wd * p;
        T u = lr * d;
        T vi = mu * v[i] + u;
        v[i] = vi;
        w[i] = p - (nesterov ? mu * vi + u : vi);
    }
}
