// Layer norm over the last axis on the GPU: one thread block per row, the row's sums
// reduced in shared memory, so a row's forward (or backward) is one kernel launch
// instead of the generic path's eight or so.
// Computes: docs/backward.md#layer-norm
//   forward:  mean, rstd = 1 / sqrt(var + eps), y = (x - mean) * rstd * w + b
//   backward: dL/dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * w
// The weight and bias gradients (sums over rows) are left to the caller.
// Launch: grid (n_rows), block (threads: a power of two, at most 1024),
// dynamic shared memory threads * sizeof(T).

#include "block_reduce.cuh"

template <typename T>
__device__ void forward(const T* x, const T* weight, const T* bias, long long width, T eps,
                        T* y, T* mean, T* rstd) {
    T* shared = shared_memory<T>();
    const long long row = blockIdx.x;
    const T* xr = x + row * width;
    T* yr = y + row * width;
    T sum = 0;
    for (long long i = threadIdx.x; i < width; i += blockDim.x) sum += xr[i];
    const T mu = block_sum(sum, shared) / (T)width;
    T squares = 0;  // the variance from centred values, as the CPU computes it
    for (long long i = threadIdx.x; i < width; i += blockDim.x) {
        const T centred = xr[i] - mu;
        squares += centred * centred;
    }
    const T r = (T)1 / sqrt(block_sum(squares, shared) / (T)width + eps);
    for (long long i = threadIdx.x; i < width; i += blockDim.x) yr[i] = (xr[i] - mu) * r * weight[i] + bias[i];
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = r;
    }
}

template <typename T>
__device__ void backward(const T* g, const T* x, const T* weight, const T* mean, const T* rstd,
                         long long width, T* grad_x) {
    T* shared = shared_memory<T>();
    const long long row = blockIdx.x;
    const T* gr = g + row * width;
    const T* xr = x + row * width;
    T* out = grad_x + row * width;
    const T mu = mean[row], r = rstd[row];
    T dxhat_sum = 0, dxhat_xhat_sum = 0;
    for (long long i = threadIdx.x; i < width; i += blockDim.x) {
        const T dxhat = gr[i] * weight[i];
        dxhat_sum += dxhat;
        dxhat_xhat_sum += dxhat * (xr[i] - mu) * r;
    }
    const T mean_dxhat = block_sum(dxhat_sum, shared) / (T)width;
    const T mean_dxhat_xhat = block_sum(dxhat_xhat_sum, shared) / (T)width;
    for (long long i = threadIdx.x; i < width; i += blockDim.x) {
        const T xhat = (xr[i] - mu) * r;
        out[i] = r * (gr[i] * weight[i] - mean_dxhat - xhat * mean_dxhat_xhat);
    }
}

extern "C" __global__ void layer_norm_forward_f32(const float* x, const float* weight, const float* bias,
                                                  long long width, float eps, float* y, float* mean, float* rstd) {
    forward(x, weight, bias, width, eps, y, mean, rstd);
}

extern "C" __global__ void layer_norm_forward_f64(const double* x, const double* weight, const double* bias,
                                                  long long width, double eps, double* y, double* mean,
                                                  double* rstd) {
    forward(x, weight, bias, width, eps, y, mean, rstd);
}

extern "C" __global__ void layer_norm_backward_f32(const float* g, const float* x, const float* weight,
                                                   const float* mean, const float* rstd, long long width,
                                                   float* grad_x) {
    backward(g, x, weight, mean, rstd, width, grad_x);
}

extern "C" __global__ void layer_norm_backward_f64(const double* g, const double* x, const double* weight,
                                                   const double* mean, const double* rstd, long long width,
                                                   double* grad_x) {
    backward(g, x, weight, mean, rstd, width, grad_x);
}
