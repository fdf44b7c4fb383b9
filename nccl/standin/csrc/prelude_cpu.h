// Prelude of the device kernels for the stand-in (nccl/standin): CUDA C
// compiled as C++ for the CPU. Threads are fibers that the stand-in
// switches only at __syncthreads and warp shuffles; threadIdx and the
// other built-ins are globals it sets before resuming each one. __shared__
// arrays are statics: a block runs alone.
#include <math.h>
#include <string.h>
struct dim3 { unsigned x, y, z; };
extern "C" dim3 threadIdx, blockIdx, blockDim, gridDim;
extern "C" void star_syncthreads(void);
extern "C" float star_shfl_xor(float v, int m);
extern "C" float star_shfl(float v, int src);
#define __global__
#define __device__ static
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() star_syncthreads()
static inline float star_expf(float x) { return expf(x); }
static inline float star_logf(float x) { return logf(x); }
static inline float star_rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float star_fmaxf(float a, float b) { return fmaxf(a, b); }
static inline float star_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline int star_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
