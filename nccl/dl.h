// Hand declarations of the few CUDA driver, NVRTC, cuBLASLt and NCCL
// entry points star uses, loaded at run time with dlopen: no CUDA header
// or library is needed to build. Types are declared with the sizes and
// values the CUDA ABI defines.
#ifndef STAR_NCCL_DL_H
#define STAR_NCCL_DL_H

#include <stddef.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;

typedef int nvrtcResult;
typedef void *nvrtcProgram;

typedef int cublasStatus_t;
typedef void *cublasLtHandle_t;
typedef void *cublasLtMatmulDesc_t;
typedef void *cublasLtMatrixLayout_t;

typedef int ncclResult_t;
typedef void *ncclComm_t;
typedef struct { char internal[128]; } ncclUniqueId;

// star_dlopen opens path (RTLD_NOW | RTLD_LOCAL, or RTLD_GLOBAL with
// global set); NULL with the reason in err on failure.
void *star_dlopen(const char *path, int global, char *err, int n);
// star_dlsym looks name up in h (NULL if absent).
void *star_dlsym(void *h, const char *name);
void star_dlclose(void *h);

// Each library's table of entry points, filled by star_*_load: it returns
// -1 when every symbol is there, else the index of the first missing one
// (its name from star_*_name).
int star_cu_load(void *h);
const char *star_cu_name(int i);
int star_nvrtc_load(void *h);
const char *star_nvrtc_name(int i);
int star_lt_load(void *h);
const char *star_lt_name(int i);
int star_nccl_load(void *h);
const char *star_nccl_name(int i);

// CUDA driver. Calls that touch a context make ctx current first: the
// current context belongs to an OS thread, and goroutines move between
// threads.
CUresult star_cuInit(void);
CUresult star_cuDriverGetVersion(int *v);
CUresult star_cuDeviceGetCount(int *n);
CUresult star_cuDeviceGet(CUdevice *d, int ordinal);
CUresult star_cuDeviceGetName(char *name, int n, CUdevice d);
CUresult star_cuDeviceGetAttribute(int *v, int attr, CUdevice d);
CUresult star_cuDeviceTotalMem(size_t *bytes, CUdevice d);
CUresult star_cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice d);
CUresult star_cuDevicePrimaryCtxRelease(CUdevice d);
CUresult star_cuCtxSynchronize(CUcontext ctx);
CUresult star_cuMemAlloc(CUcontext ctx, CUdeviceptr *p, size_t n);
CUresult star_cuMemFree(CUcontext ctx, CUdeviceptr p);
CUresult star_cuMemcpyHtoD(CUcontext ctx, CUdeviceptr dst, const void *src, size_t n);
CUresult star_cuMemcpyDtoH(CUcontext ctx, void *dst, CUdeviceptr src, size_t n);
CUresult star_cuMemcpyDtoD(CUcontext ctx, CUdeviceptr dst, CUdeviceptr src, size_t n);
CUresult star_cuMemsetD8(CUcontext ctx, CUdeviceptr dst, unsigned char v, size_t n);
CUresult star_cuMemGetInfo(CUcontext ctx, size_t *free, size_t *total);
CUresult star_cuModuleLoadData(CUcontext ctx, CUmodule *m, const void *image);
CUresult star_cuModuleUnload(CUcontext ctx, CUmodule m);
CUresult star_cuModuleGetFunction(CUcontext ctx, CUfunction *f, CUmodule m, const char *name);
// star_cuLaunchKernel copies the nargs arguments (sizes[i] bytes each,
// packed one after another in args) into memory of its own and launches.
CUresult star_cuLaunchKernel(CUcontext ctx, CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                             unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                             const void *args, const int *sizes, int nargs);
const char *star_cuErrorString(CUresult r);
const char *star_cuErrorName(CUresult r);

// NVRTC.
nvrtcResult star_nvrtcVersion(int *major, int *minor);
nvrtcResult star_nvrtcCreateProgram(nvrtcProgram *p, const char *src, const char *name);
nvrtcResult star_nvrtcCompileProgram(nvrtcProgram p, int nopts, const char **opts);
nvrtcResult star_nvrtcGetProgramLog(nvrtcProgram p, char **log, size_t *n); // malloc'd
nvrtcResult star_nvrtcGetPTX(nvrtcProgram p, char **out, size_t *n);         // malloc'd
nvrtcResult star_nvrtcGetCUBIN(nvrtcProgram p, char **out, size_t *n);       // malloc'd
nvrtcResult star_nvrtcDestroyProgram(nvrtcProgram *p);
const char *star_nvrtcErrorString(nvrtcResult r);
int star_nvrtc_has_cubin(void);

// cuBLASLt: D[m,n] = op(A)·op(B) in column-major terms, with A, B of
// element type in (CUDA data type) and D of type out, F32 accumulation.
cublasStatus_t star_ltCreate(cublasLtHandle_t *h);
cublasStatus_t star_ltDestroy(cublasLtHandle_t h);
cublasStatus_t star_ltMatmul(CUcontext ctx, cublasLtHandle_t h, int transa, int transb, long m, long n, long k,
                             CUdeviceptr A, int atype, long lda, CUdeviceptr B, int btype, long ldb,
                             CUdeviceptr D, int dtype, long ldd, float alpha, float beta);

// NCCL.
ncclResult_t star_ncclGetVersion(int *v);
ncclResult_t star_ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t star_ncclCommInitRank(CUcontext ctx, ncclComm_t *c, int nranks, ncclUniqueId id, int rank);
ncclResult_t star_ncclCommDestroy(ncclComm_t c);
ncclResult_t star_ncclAllGather(CUcontext ctx, CUdeviceptr send, CUdeviceptr recv, size_t count, int datatype, ncclComm_t c);
const char *star_ncclErrorString(ncclResult_t r);

#endif
