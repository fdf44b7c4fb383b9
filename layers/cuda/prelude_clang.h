// Prelude of kernels.cu for clang's CUDA front end without a CUDA SDK
// (-nocudainc -nocudalib): a compile check in CI. It declares what NVRTC
// predefines, with the NVVM builtins for the math (approximations: this
// build is only compiled, never run).
#include <__clang_cuda_builtin_vars.h>
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __syncthreads() __nvvm_bar_sync(0)
__device__ __forceinline__ float star_expf(float x) { return __nvvm_ex2_approx_f(x * 1.4426950408889634f); }
__device__ __forceinline__ float star_logf(float x) { return __nvvm_lg2_approx_f(x) * 0.6931471805599453f; }
__device__ __forceinline__ float star_rsqrtf(float x) { return __nvvm_rsqrt_approx_f(x); }
__device__ __forceinline__ float star_fmaxf(float a, float b) { return __nvvm_fmax_f(a, b); }
__device__ __forceinline__ float star_shfl_xor(float v, int m) { return __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, m, 0x1f); }
__device__ __forceinline__ float star_shfl(float v, int src) { return __nvvm_shfl_sync_idx_f32(0xffffffffu, v, src, 0x1f); }
__device__ __forceinline__ float star_as_float(int i) { return __builtin_bit_cast(float, i); }
__device__ __forceinline__ int star_as_int(float f) { return __builtin_bit_cast(int, f); }
