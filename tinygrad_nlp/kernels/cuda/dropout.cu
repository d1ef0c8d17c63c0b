// Inverted dropout on the GPU with the mask drawn inside the kernel, from the counter-based
// generator in philox.cuh, and drawn again, bit for bit, by the backward instead of being
// stored: no mask array (one byte per element) is written or read, and each direction is
// one launch instead of the generic path's three (draw, compare, multiply).
// Computes: docs/backward.md#dropout
//   keep_i = word (i mod 4) of philox(counter = offset + i / 4, key) >= threshold,
//            threshold = round(p * 2^32), so an element is dropped with probability p
//   forward:  y = keep ? x * scale : 0,   scale = 1 / (1 - p)
//   backward: dL/dx = keep ? g * scale : 0  (the same function of g: this same kernel)
// Each thread handles the four elements of one Philox call. Launch: any grid of
// one-dimensional blocks; a grid-stride loop covers the n / 4 groups.

#include "philox.cuh"

template <typename T>
__device__ void apply(const T* x, long long n, unsigned int threshold, T scale, unsigned int k0,
                      unsigned int k1, unsigned long long offset, T* y) {
    const long long groups = (n + 3) / 4;
    for (long long group = blockIdx.x * (long long)blockDim.x + threadIdx.x; group < groups;
         group += (long long)gridDim.x * blockDim.x) {
        const unsigned long long counter = offset + (unsigned long long)group;
        const Philox4 r = philox4x32_10((unsigned int)counter, (unsigned int)(counter >> 32), 0u, 0u, k0, k1);
        for (int j = 0; j < 4; ++j) {
            const long long i = 4 * group + j;
            if (i < n) y[i] = r.word[j] >= threshold ? x[i] * scale : (T)0;
        }
    }
}

extern "C" __global__ void dropout_f32(const float* x, long long n, unsigned int threshold, float scale,
                                       unsigned int k0, unsigned int k1, unsigned long long offset, float* y) {
    apply(x, n, threshold, scale, k0, k1, offset, y);
}

extern "C" __global__ void dropout_f64(const double* x, long long n, unsigned int threshold, double scale,
                                       unsigned int k0, unsigned int k1, unsigned long long offset, double* y) {
    apply(x, n, threshold, scale, k0, k1, offset, y);
}
