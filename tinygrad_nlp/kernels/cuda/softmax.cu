// Row softmax on the GPU: one thread block per row, the row's maximum and sums reduced
// in shared memory, so the exponentials of a row (forward) or its gradient (backward)
// take one kernel launch instead of the generic path's four or five.
// Computes: docs/backward.md#softmax (and, through exp_rows, the forward of
// docs/backward.md#log-softmax-and-cross-entropy and of attention's probabilities)
//   exp_rows:         m = max_k x_k (0 for an all -inf row when masked_rows != 0),
//                     out = exp(x - m), total = sum_k out_k; out may be x itself
//   softmax_backward: grad = y * (g - sum_k g_k y_k); grad may be g itself
// Launch: grid (n_rows), block (threads: a power of two, at most 1024),
// dynamic shared memory threads * sizeof(T).

#include "block_reduce.cuh"

template <typename T>
__device__ void exp_rows(const T* x, long long width, int masked_rows, T* out, T* shift, T* total) {
    T* shared = shared_memory<T>();
    const long long row = blockIdx.x;
    const T* xr = x + row * width;
    T* outr = out + row * width;
    T best = -INFINITY;
    for (long long i = threadIdx.x; i < width; i += blockDim.x) best = nan_max(xr[i], best);
    T m = block_max(best, shared);
    if (masked_rows && isinf(m) && m < 0) m = 0;  // a fully masked row: exponentials 0, not NaN
    T sum = 0;
    for (long long i = threadIdx.x; i < width; i += blockDim.x) {
        const T e = exp(xr[i] - m);  // each thread writes only the elements it read: in place is safe
        outr[i] = e;
        sum += e;
    }
    const T s = block_sum(sum, shared);
    if (threadIdx.x == 0) {
        shift[row] = m;
        total[row] = s;
    }
}

template <typename T>
__device__ void softmax_backward(const T* y, const T* g, long long width, T* grad) {
    T* shared = shared_memory<T>();
    const long long row = blockIdx.x;
    const T* yr = y + row * width;
    const T* gr = g + row * width;
    T* out = grad + row * width;
    T dot = 0;
    for (long long i = threadIdx.x; i < width; i += blockDim.x) dot += gr[i] * yr[i];
    const T total = block_sum(dot, shared);
    for (long long i = threadIdx.x; i < width; i += blockDim.x) out[i] = yr[i] * (gr[i] - total);
}

extern "C" __global__ void exp_rows_f32(const float* x, long long width, int masked_rows, float* out, float* shift,
                                        float* total) {
    exp_rows(x, width, masked_rows, out, shift, total);
}

extern "C" __global__ void exp_rows_f64(const double* x, long long width, int masked_rows, double* out,
                                        double* shift, double* total) {
    exp_rows(x, width, masked_rows, out, shift, total);
}

extern "C" __global__ void softmax_backward_f32(const float* y, const float* g, long long width, float* grad) {
    softmax_backward(y, g, width, grad);
}

extern "C" __global__ void softmax_backward_f64(const double* y, const double* g, long long width, double* grad) {
    softmax_backward(y, g, width, grad);
}
