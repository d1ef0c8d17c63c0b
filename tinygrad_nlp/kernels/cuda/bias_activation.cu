// A linear layer's bias and activation on the GPU: one launch forward and one backward,
// where the generic path launches one kernel per array operation (add the bias, compare,
// take the maximum; or the six or so of a GELU, and as many again backward).
// Computes: docs/backward.md#linear
//   forward:  z = x W^T + b (z arrives without b, and leaves with it: the backward's input),
//             y = act(z)
//   backward: dL/dz = g * act'(z)  (the bias gradient, dL/dz summed over rows, is left to the caller)
// act, by `kind`: 1 relu, 2 gelu (exact: z Phi(z), Phi the normal CDF through erf),
// 3 gelu_tanh (z/2 (1 + tanh(c (z + 0.044715 z^3))), c = sqrt(2/pi)); derivatives in
// docs/backward.md#gelu-exact-and-tanh.
// activation() and slope() also compile for the host, where tests/test_kernels.py checks
// them against the NumPy path. One thread per element; launch: any grid of one-dimensional
// blocks (a grid-stride loop).

template <typename T>
__host__ __device__ T activation(T z, int kind) {
    if (kind == 1) return z <= (T)0 ? (T)0 : z;  // a NaN stays NaN
    if (kind == 2) return z * (T)0.5 * ((T)1 + erf(z * (T)0.70710678118654752440));
    const T t = tanh((T)0.79788456080286535588 * (z + (T)0.044715 * z * z * z));
    return (T)0.5 * z * ((T)1 + t);
}

template <typename T>
__host__ __device__ T slope(T z, int kind) {  // act'(z)
    if (kind == 1) return z <= (T)0 ? (T)0 : (T)1;  // a NaN passes its gradient, as PyTorch's
    if (kind == 2) {
        const T cdf = (T)0.5 * ((T)1 + erf(z * (T)0.70710678118654752440));
        return cdf + z * (T)0.39894228040143267794 * exp((T)-0.5 * z * z);
    }
    const T c = (T)0.79788456080286535588;
    const T t = tanh(c * (z + (T)0.044715 * z * z * z));
    return (T)0.5 * ((T)1 + t) + (T)0.5 * z * ((T)1 - t * t) * c * ((T)1 + (T)3 * (T)0.044715 * z * z);
}

template <typename T>
__device__ void forward(T* z, const T* bias, long long n, long long width, int kind, T* y) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const T pre = z[i] + bias[i % width];
        z[i] = pre;
        y[i] = activation(pre, kind);
    }
}

template <typename T>
__device__ void backward(const T* g, const T* z, long long n, int kind, T* grad_z) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        grad_z[i] = g[i] * slope(z[i], kind);
}

extern "C" __global__ void bias_activation_f32(float* z, const float* bias, long long n, long long width, int kind,
                                               float* y) {
    forward(z, bias, n, width, kind, y);
}

extern "C" __global__ void bias_activation_f64(double* z, const double* bias, long long n, long long width, int kind,
                                               double* y) {
    forward(z, bias, n, width, kind, y);
}

extern "C" __global__ void activation_backward_f32(const float* g, const float* z, long long n, int kind,
                                                   float* grad_z) {
    backward(g, z, n, kind, grad_z);
}

extern "C" __global__ void activation_backward_f64(const double* g, const double* z, long long n, int kind,
                                                   double* grad_z) {
    backward(g, z, n, kind, grad_z);
}
