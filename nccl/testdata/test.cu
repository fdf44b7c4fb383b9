// Kernels that exercise the CUDA thread model the stand-in emulates.
// Prelude: ../../layers/cuda/prelude_*.h (the same as star's kernels).

// test_axpy: y[i] += a * x[i]. grid (ceil(n/128)), block (128).
extern "C" __global__ void test_axpy(float *y, const float *x, float a, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) y[i] += a * x[i];
}

// test_warp_sum: out[w] = sum of the 32 values of warp w (shuffles).
// grid (1), block (n: a multiple of 32).
extern "C" __global__ void test_warp_sum(float *out, const float *x) {
	float v = x[threadIdx.x];
	for (int o = 16; o > 0; o >>= 1) v += star_shfl_xor(v, o);
	if (threadIdx.x % 32 == 0) out[threadIdx.x / 32] = v;
}

// test_reverse: each block reverses its 128 values through shared memory
// (needs a barrier between the writes and the reads).
// grid (blocks), block (128).
extern "C" __global__ void test_reverse(float *x) {
	__shared__ float s[128];
	float *b = x + blockIdx.x * 128;
	s[threadIdx.x] = b[threadIdx.x];
	__syncthreads();
	b[threadIdx.x] = s[127 - threadIdx.x];
}

// test_broadcast: every lane gets lane src's value (star_shfl).
// grid (1), block (32).
extern "C" __global__ void test_broadcast(float *out, const float *x, int src) {
	out[threadIdx.x] = star_shfl(x[threadIdx.x], src);
}
