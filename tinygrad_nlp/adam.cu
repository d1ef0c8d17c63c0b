// One Adam or AdamW step over a whole flat parameter buffer (nn/flat.py) on the GPU: each
// element's parameter, gradient and two moments are read once and written once, in one
// launch, where the generic path makes a dozen passes (one kernel each) over the buffer.
// Computes: docs/backward.md#the-optimizer-step
//   g' = g + wd p                   (Adam: L2 decay, added to the gradient; wd_l2 = wd)
//   p  = p (1 - lr wd)              (AdamW: decoupled decay; shrink = 1 - lr wd)
//   m  = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
//   p -= step_size * m / (sqrt(v) + eps'),  step_size = lr sqrt(1 - b2^t) / (1 - b1^t),
//                                            eps' = eps sqrt(1 - b2^t)
// (the bias corrections folded into step size and epsilon, and 1 - b1, 1 - b2 computed on
// the host, as optim.py does, in the same order of operations). Launch: any grid of one-dimensional blocks (grid-stride loop).

template <typename T>
__device__ void step(T* p, const T* g, T* m, T* v, long long n, T b1, T one_minus_b1, T b2, T one_minus_b2,
                     T step_size, T eps, T wd_l2, T shrink) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        T param = p[i] * shrink;
        const T grad = g[i] + wd_l2 * p[i];
        const T first = m[i] * b1 + grad * one_minus_b1;
        const T second = v[i] * b2 + grad * grad * one_minus_b2;
        m[i] = first;
        v[i] = second;
        param -= first / (sqrt(second) + eps) * step_size;
        p[i] = param;
    }
}

extern "C" __global__ void adam_f32(float* p, const float* g, float* m, float* v, long long n, float b1,
                                    float one_minus_b1, float b2, float one_minus_b2, float step_size, float eps,
                                    float wd_l2, float shrink) {
    step(p, g, m, v, n, b1, one_minus_b1, b2, one_minus_b2, step_size, eps, wd_l2, shrink);
}

extern "C" __global__ void adam_f64(double* p, const double* g, double* m, double* v, long long n, double b1,
                                    double one_minus_b1, double b2, double one_minus_b2, double step_size,
                                    double eps, double wd_l2, double shrink) {
    step(p, g, m, v, n, b1, one_minus_b1, b2, one_minus_b2, step_size, eps, wd_l2, shrink);
}
