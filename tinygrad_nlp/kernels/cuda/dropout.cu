// Inverted dropout on the GPU with the mask drawn inside the kernel, from the counter-based
// generator in philox.cuh, and drawn again, bit for bit, by the backward instead of being
// stored: no mask array (one byte per element) is written or read, and each direction is
// one launch instead of the generic path's three (draw, compare, multiply).
// Computes: docs/backward.md#dropout
//   element i of this launch is element first + i of the global batch's mask (a worker's
//   examples start at first), so an example's mask is the same on any number of workers:
//   keep_i = word ((first + i) mod 4) of philox(counter = ((first + i) / 4, draw), key) >= threshold,
//            threshold = round(p * 2^32), so an element is dropped with probability p
//   forward:  y = keep ? x * scale : 0,   scale = 1 / (1 - p)
//   backward: dL/dx = keep ? g * scale : 0  (the same function of g: this same kernel)
// Each thread handles the (up to) four elements of one Philox call. Launch: any grid of
// one-dimensional blocks; a grid-stride loop covers the calls.

#include "philox.cuh"

template <typename T>
__device__ void apply(const T* x, long long n, unsigned int threshold, T scale, unsigned int k0,
                      unsigned int k1, unsigned int draw, unsigned long long first, T* y) {
    const unsigned long long first_call = first / 4, calls = (first + n + 3) / 4 - first_call;
    for (unsigned long long call = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; call < calls;
         call += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long counter = first_call + call;
        const Philox4 r = philox4x32_10((unsigned int)counter, (unsigned int)(counter >> 32), draw, 0u, k0, k1);
        for (int j = 0; j < 4; ++j) {
            const long long i = (long long)(4 * counter + j - first);  // this launch's element
            if (i >= 0 && i < n) y[i] = r.word[j] >= threshold ? x[i] * scale : (T)0;
        }
    }
}

extern "C" __global__ void dropout_f32(const float* x, long long n, unsigned int threshold, float scale,
                                       unsigned int k0, unsigned int k1, unsigned int draw,
                                       unsigned long long first, float* y) {
    apply(x, n, threshold, scale, k0, k1, draw, first, y);
}

extern "C" __global__ void dropout_f64(const double* x, long long n, unsigned int threshold, double scale,
                                       unsigned int k0, unsigned int k1, unsigned int draw,
                                       unsigned long long first, double* y) {
    apply(x, n, threshold, scale, k0, k1, draw, first, y);
}
