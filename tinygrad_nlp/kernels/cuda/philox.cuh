// Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011), the counter-based generator cuRAND and PyTorch's CUDA dropout use: four 32-bit
// random words are a pure function of a 128-bit counter and a 64-bit key, so any thread can
// draw the numbers of any position, in any order, and a backward can draw the forward's
// again instead of storing them. Ten rounds of two 32x32 -> 64-bit multiplies; the key is
// bumped by the Weyl constants between rounds. Checked against Random123's known-answer
// vectors on the host (tests/test_kernels.py), so it is marked __host__ as well.
#pragma once

struct Philox4 {
    unsigned int word[4];
};

__host__ __device__ inline Philox4 philox4x32_10(unsigned int c0, unsigned int c1, unsigned int c2,
                                                 unsigned int c3, unsigned int k0, unsigned int k1) {
    const unsigned long long M0 = 0xD2511F53ull, M1 = 0xCD9E8D57ull;
    const unsigned int W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
        const unsigned long long p0 = M0 * c0, p1 = M1 * c2;
        const unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
        const unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += W0;
        k1 += W1;
    }
    Philox4 out = {{c0, c1, c2, c3}};
    return out;
}
