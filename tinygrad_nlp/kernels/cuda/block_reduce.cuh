// Reductions over one thread block, shared by the row kernels beside the ops
// (layernorm.cu, softmax.cu): each thread brings a value, every thread gets the result.
// The block's threads are a power of two; shared memory holds one T per thread.
#pragma once

// The block's dynamic shared memory (the launch's shared_mem bytes) as an array of T.
template <typename T>
__device__ T* shared_memory() {
    extern __shared__ unsigned char shared_bytes[];
    return reinterpret_cast<T*>(shared_bytes);
}

template <typename T>
__device__ T block_sum(T value, T* shared) {
    shared[threadIdx.x] = value;
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    T total = shared[0];
    __syncthreads();  // every thread has read shared[0] before it is written again
    return total;
}

// The larger of a and b, or NaN if either is NaN (as NumPy's max; fmax would drop it).
template <typename T>
__device__ T nan_max(T a, T b) {
    return (a > b || a != a) ? a : b;
}

template <typename T>
__device__ T block_max(T value, T* shared) {
    shared[threadIdx.x] = value;
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) shared[threadIdx.x] = nan_max(shared[threadIdx.x], shared[threadIdx.x + stride]);
        __syncthreads();
    }
    T best = shared[0];
    __syncthreads();
    return best;
}
