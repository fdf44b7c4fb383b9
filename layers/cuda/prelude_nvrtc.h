// Prelude of kernels.cu for NVRTC (CUDA's device functions are built in).
#define star_expf(x) expf(x)
#define star_logf(x) logf(x)
#define star_rsqrtf(x) rsqrtf(x)
#define star_fmaxf(a, b) fmaxf(a, b)
#define star_shfl_xor(v, m) __shfl_xor_sync(0xffffffffu, v, m)
#define star_shfl(v, src) __shfl_sync(0xffffffffu, v, src)
#define star_as_float(i) __int_as_float(i)
#define star_as_int(f) __float_as_int(f)
