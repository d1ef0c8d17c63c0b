// The embedding backward on the GPU: a deterministic scatter-add of gradient rows.
// Computes: docs/backward.md#embedding (dL/dW = scatter-add of the upstream rows by id).
//
// The host sorts the token ids (stably) and finds the segments of equal ids:
// segment s covers positions starts[s] .. ends[s]-1 of the sorted order, and
// order[j] is the row of `values` at sorted position j. One thread per
// (segment, column) sums its segment in order. There are no atomics, so the sum
// (and its rounding) never depends on how the threads were scheduled.
//
// values: (N, width) gradient rows; sums: (n_segments, width), one row per distinct id.

template <typename T>
__device__ void segment_sum(const T* values, const long long* order, const long long* starts,
                            const long long* ends, long long n_segments, long long width, T* sums) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_segments * width) return;
    long long segment = i / width, column = i % width;
    T total = 0;
    for (long long j = starts[segment]; j < ends[segment]; ++j) total += values[order[j] * width + column];
    sums[i] = total;
}

extern "C" __global__ void segment_sum_f32(const float* values, const long long* order, const long long* starts,
                                           const long long* ends, long long n_segments, long long width,
                                           float* sums) {
    segment_sum(values, order, starts, ends, n_segments, width, sums);
}

extern "C" __global__ void segment_sum_f64(const double* values, const long long* order, const long long* starts,
                                           const long long* ends, long long n_segments, long long width,
                                           double* sums) {
    segment_sum(values, order, starts, ends, n_segments, width, sums);
}
