//go:build cgo

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dl.h"

void *star_dlopen(const char *path, int global, char *err, int n) {
	void *h = dlopen(path, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL));
	if (!h && err && n > 0) {
		const char *e = dlerror();
		snprintf(err, n, "%s", e ? e : "dlopen failed");
	}
	return h;
}
void *star_dlsym(void *h, const char *name) { return dlsym(h, name); }
void star_dlclose(void *h) { dlclose(h); }

// A table is an array of function pointers filled by name.
static int fill(void *h, void **slots, const char *const *names, int n) {
	for (int i = 0; i < n; i++) {
		slots[i] = dlsym(h, names[i]);
		if (!slots[i]) return i;
	}
	return -1;
}

// ---- CUDA driver ----
static const char *const cu_names[] = {
	"cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName",
	"cuDeviceGetAttribute", "cuDeviceTotalMem_v2", "cuDevicePrimaryCtxRetain",
	"cuDevicePrimaryCtxRelease_v2", "cuCtxSetCurrent", "cuCtxSynchronize", "cuMemAlloc_v2",
	"cuMemFree_v2", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuMemcpyDtoD_v2", "cuMemsetD8_v2",
	"cuMemGetInfo_v2", "cuModuleLoadData", "cuModuleUnload", "cuModuleGetFunction",
	"cuLaunchKernel", "cuGetErrorString", "cuGetErrorName",
};
#define CU_N (int)(sizeof cu_names / sizeof cu_names[0])
static struct {
	CUresult (*Init)(unsigned);
	CUresult (*DriverGetVersion)(int *);
	CUresult (*DeviceGetCount)(int *);
	CUresult (*DeviceGet)(CUdevice *, int);
	CUresult (*DeviceGetName)(char *, int, CUdevice);
	CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
	CUresult (*DeviceTotalMem)(size_t *, CUdevice);
	CUresult (*PrimaryCtxRetain)(CUcontext *, CUdevice);
	CUresult (*PrimaryCtxRelease)(CUdevice);
	CUresult (*CtxSetCurrent)(CUcontext);
	CUresult (*CtxSynchronize)(void);
	CUresult (*MemAlloc)(CUdeviceptr *, size_t);
	CUresult (*MemFree)(CUdeviceptr);
	CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
	CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
	CUresult (*MemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
	CUresult (*MemsetD8)(CUdeviceptr, unsigned char, size_t);
	CUresult (*MemGetInfo)(size_t *, size_t *);
	CUresult (*ModuleLoadData)(CUmodule *, const void *);
	CUresult (*ModuleUnload)(CUmodule);
	CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
	CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
	                         unsigned, CUstream, void **, void **);
	CUresult (*GetErrorString)(CUresult, const char **);
	CUresult (*GetErrorName)(CUresult, const char **);
} cu;
int star_cu_load(void *h) { return fill(h, (void **)&cu, cu_names, CU_N); }
const char *star_cu_name(int i) { return i >= 0 && i < CU_N ? cu_names[i] : "?"; }

#define CUR(ctx) do { CUresult r_ = cu.CtxSetCurrent(ctx); if (r_) return r_; } while (0)

CUresult star_cuInit(void) { return cu.Init(0); }
CUresult star_cuDriverGetVersion(int *v) { return cu.DriverGetVersion(v); }
CUresult star_cuDeviceGetCount(int *n) { return cu.DeviceGetCount(n); }
CUresult star_cuDeviceGet(CUdevice *d, int o) { return cu.DeviceGet(d, o); }
CUresult star_cuDeviceGetName(char *name, int n, CUdevice d) { return cu.DeviceGetName(name, n, d); }
CUresult star_cuDeviceGetAttribute(int *v, int a, CUdevice d) { return cu.DeviceGetAttribute(v, a, d); }
CUresult star_cuDeviceTotalMem(size_t *b, CUdevice d) { return cu.DeviceTotalMem(b, d); }
CUresult star_cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) { return cu.PrimaryCtxRetain(c, d); }
CUresult star_cuDevicePrimaryCtxRelease(CUdevice d) { return cu.PrimaryCtxRelease(d); }
CUresult star_cuCtxSynchronize(CUcontext ctx) { CUR(ctx); return cu.CtxSynchronize(); }
CUresult star_cuMemAlloc(CUcontext ctx, CUdeviceptr *p, size_t n) { CUR(ctx); return cu.MemAlloc(p, n); }
CUresult star_cuMemFree(CUcontext ctx, CUdeviceptr p) { CUR(ctx); return cu.MemFree(p); }
CUresult star_cuMemcpyHtoD(CUcontext ctx, CUdeviceptr d, const void *s, size_t n) { CUR(ctx); return cu.MemcpyHtoD(d, s, n); }
CUresult star_cuMemcpyDtoH(CUcontext ctx, void *d, CUdeviceptr s, size_t n) { CUR(ctx); return cu.MemcpyDtoH(d, s, n); }
CUresult star_cuMemcpyDtoD(CUcontext ctx, CUdeviceptr d, CUdeviceptr s, size_t n) { CUR(ctx); return cu.MemcpyDtoD(d, s, n); }
CUresult star_cuMemsetD8(CUcontext ctx, CUdeviceptr d, unsigned char v, size_t n) { CUR(ctx); return cu.MemsetD8(d, v, n); }
CUresult star_cuMemGetInfo(CUcontext ctx, size_t *f, size_t *t) { CUR(ctx); return cu.MemGetInfo(f, t); }
CUresult star_cuModuleLoadData(CUcontext ctx, CUmodule *m, const void *img) { CUR(ctx); return cu.ModuleLoadData(m, img); }
CUresult star_cuModuleUnload(CUcontext ctx, CUmodule m) { CUR(ctx); return cu.ModuleUnload(m); }
CUresult star_cuModuleGetFunction(CUcontext ctx, CUfunction *f, CUmodule m, const char *name) {
	CUR(ctx);
	return cu.ModuleGetFunction(f, m, name);
}

#define MAX_ARGS 32
CUresult star_cuLaunchKernel(CUcontext ctx, CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                             unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                             const void *args, const int *sizes, int nargs) {
	// Each argument in an 8-byte-aligned slot of C memory: the driver
	// reads them through kernelParams during the call.
	uint64_t store[MAX_ARGS];
	void *params[MAX_ARGS];
	if (nargs > MAX_ARGS) return 1; // CUDA_ERROR_INVALID_VALUE
	const char *p = (const char *)args;
	for (int i = 0; i < nargs; i++) {
		if (sizes[i] > 8) return 1;
		store[i] = 0;
		memcpy(&store[i], p, sizes[i]);
		p += sizes[i];
		params[i] = &store[i];
	}
	CUR(ctx);
	return cu.LaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, NULL, params, NULL);
}
const char *star_cuErrorString(CUresult r) {
	const char *s = NULL;
	if (cu.GetErrorString && cu.GetErrorString(r, &s) == 0 && s) return s;
	return "unknown CUDA error";
}
const char *star_cuErrorName(CUresult r) {
	const char *s = NULL;
	if (cu.GetErrorName && cu.GetErrorName(r, &s) == 0 && s) return s;
	return "CUDA_ERROR_UNKNOWN";
}

// ---- NVRTC ----
static const char *const nvrtc_names[] = {
	"nvrtcVersion", "nvrtcCreateProgram", "nvrtcCompileProgram", "nvrtcGetProgramLogSize",
	"nvrtcGetProgramLog", "nvrtcGetPTXSize", "nvrtcGetPTX", "nvrtcDestroyProgram", "nvrtcGetErrorString",
};
#define NVRTC_N (int)(sizeof nvrtc_names / sizeof nvrtc_names[0])
static struct {
	nvrtcResult (*Version)(int *, int *);
	nvrtcResult (*CreateProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *, const char *const *);
	nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char *const *);
	nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t *);
	nvrtcResult (*GetProgramLog)(nvrtcProgram, char *);
	nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t *);
	nvrtcResult (*GetPTX)(nvrtcProgram, char *);
	nvrtcResult (*DestroyProgram)(nvrtcProgram *);
	const char *(*GetErrorString)(nvrtcResult);
} nv;
// optional: CUBIN output (NVRTC 11.1 and later)
static nvrtcResult (*nvGetCUBINSize)(nvrtcProgram, size_t *);
static nvrtcResult (*nvGetCUBIN)(nvrtcProgram, char *);
int star_nvrtc_load(void *h) {
	int r = fill(h, (void **)&nv, nvrtc_names, NVRTC_N);
	nvGetCUBINSize = dlsym(h, "nvrtcGetCUBINSize");
	nvGetCUBIN = dlsym(h, "nvrtcGetCUBIN");
	return r;
}
const char *star_nvrtc_name(int i) { return i >= 0 && i < NVRTC_N ? nvrtc_names[i] : "?"; }
int star_nvrtc_has_cubin(void) { return nvGetCUBINSize && nvGetCUBIN; }

nvrtcResult star_nvrtcVersion(int *a, int *b) { return nv.Version(a, b); }
nvrtcResult star_nvrtcCreateProgram(nvrtcProgram *p, const char *src, const char *name) {
	return nv.CreateProgram(p, src, name, 0, NULL, NULL);
}
nvrtcResult star_nvrtcCompileProgram(nvrtcProgram p, int n, const char **opts) {
	return nv.CompileProgram(p, n, (const char *const *)opts);
}
static nvrtcResult get(nvrtcProgram p, nvrtcResult (*size)(nvrtcProgram, size_t *),
                       nvrtcResult (*data)(nvrtcProgram, char *), char **out, size_t *n) {
	nvrtcResult r = size(p, n);
	if (r) return r;
	*out = malloc(*n + 1);
	if (!*out) return 1; // NVRTC_ERROR_OUT_OF_MEMORY
	r = data(p, *out);
	(*out)[*n] = 0;
	return r;
}
nvrtcResult star_nvrtcGetProgramLog(nvrtcProgram p, char **log, size_t *n) {
	return get(p, nv.GetProgramLogSize, nv.GetProgramLog, log, n);
}
nvrtcResult star_nvrtcGetPTX(nvrtcProgram p, char **out, size_t *n) { return get(p, nv.GetPTXSize, nv.GetPTX, out, n); }
nvrtcResult star_nvrtcGetCUBIN(nvrtcProgram p, char **out, size_t *n) {
	if (!star_nvrtc_has_cubin()) return 7; // NVRTC_ERROR_INVALID_INPUT
	return get(p, nvGetCUBINSize, nvGetCUBIN, out, n);
}
nvrtcResult star_nvrtcDestroyProgram(nvrtcProgram *p) { return nv.DestroyProgram(p); }
const char *star_nvrtcErrorString(nvrtcResult r) {
	const char *s = nv.GetErrorString ? nv.GetErrorString(r) : NULL;
	return s ? s : "unknown NVRTC error";
}

// ---- cuBLASLt ----
static const char *const lt_names[] = {
	"cublasLtCreate", "cublasLtDestroy", "cublasLtMatmulDescCreate", "cublasLtMatmulDescDestroy",
	"cublasLtMatmulDescSetAttribute", "cublasLtMatrixLayoutCreate", "cublasLtMatrixLayoutDestroy",
	"cublasLtMatmul",
};
#define LT_N (int)(sizeof lt_names / sizeof lt_names[0])
static struct {
	cublasStatus_t (*Create)(cublasLtHandle_t *);
	cublasStatus_t (*Destroy)(cublasLtHandle_t);
	cublasStatus_t (*DescCreate)(cublasLtMatmulDesc_t *, int compute, int scale);
	cublasStatus_t (*DescDestroy)(cublasLtMatmulDesc_t);
	cublasStatus_t (*DescSet)(cublasLtMatmulDesc_t, int attr, const void *, size_t);
	cublasStatus_t (*LayoutCreate)(cublasLtMatrixLayout_t *, int type, uint64_t rows, uint64_t cols, int64_t ld);
	cublasStatus_t (*LayoutDestroy)(cublasLtMatrixLayout_t);
	cublasStatus_t (*Matmul)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void *alpha, const void *A,
	                         cublasLtMatrixLayout_t, const void *B, cublasLtMatrixLayout_t, const void *beta,
	                         const void *C, cublasLtMatrixLayout_t, void *D, cublasLtMatrixLayout_t,
	                         const void *algo, void *ws, size_t wsSize, CUstream);
} lt;
int star_lt_load(void *h) { return fill(h, (void **)&lt, lt_names, LT_N); }
const char *star_lt_name(int i) { return i >= 0 && i < LT_N ? lt_names[i] : "?"; }

enum { CUBLAS_COMPUTE_32F = 68, CUDA_R_32F = 0, DESC_TRANSA = 3, DESC_TRANSB = 4 };

cublasStatus_t star_ltCreate(cublasLtHandle_t *h) { return lt.Create(h); }
cublasStatus_t star_ltDestroy(cublasLtHandle_t h) { return lt.Destroy(h); }
cublasStatus_t star_ltMatmul(CUcontext ctx, cublasLtHandle_t h, int transa, int transb, long m, long n, long k,
                             CUdeviceptr A, int atype, long lda, CUdeviceptr B, int btype, long ldb,
                             CUdeviceptr D, int dtype, long ldd, float alpha, float beta) {
	CUresult cr = cu.CtxSetCurrent(ctx);
	if (cr) return 14; // CUBLAS_STATUS_INTERNAL_ERROR
	cublasLtMatmulDesc_t desc = NULL;
	cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
	cublasStatus_t s = lt.DescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
	int ta = transa, tb = transb;
	if (!s) s = lt.DescSet(desc, DESC_TRANSA, &ta, sizeof ta);
	if (!s) s = lt.DescSet(desc, DESC_TRANSB, &tb, sizeof tb);
	// stored shapes: op(A) is m x k, op(B) is k x n, D is m x n
	if (!s) s = lt.LayoutCreate(&la, atype, ta ? k : m, ta ? m : k, lda);
	if (!s) s = lt.LayoutCreate(&lb, btype, tb ? n : k, tb ? k : n, ldb);
	if (!s) s = lt.LayoutCreate(&ld, dtype, m, n, ldd);
	if (!s) s = lt.Matmul(h, desc, &alpha, (const void *)A, la, (const void *)B, lb, &beta, (const void *)D, ld,
	                      (void *)D, ld, NULL, NULL, 0, NULL);
	if (la) lt.LayoutDestroy(la);
	if (lb) lt.LayoutDestroy(lb);
	if (ld) lt.LayoutDestroy(ld);
	if (desc) lt.DescDestroy(desc);
	return s;
}

// ---- NCCL ----
static const char *const nccl_names[] = {
	"ncclGetVersion", "ncclGetUniqueId", "ncclCommInitRank", "ncclCommDestroy", "ncclAllGather",
	"ncclGetErrorString",
};
#define NCCL_N (int)(sizeof nccl_names / sizeof nccl_names[0])
static struct {
	ncclResult_t (*GetVersion)(int *);
	ncclResult_t (*GetUniqueId)(ncclUniqueId *);
	ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
	ncclResult_t (*CommDestroy)(ncclComm_t);
	ncclResult_t (*AllGather)(const void *, void *, size_t, int, ncclComm_t, CUstream);
	const char *(*GetErrorString)(ncclResult_t);
} nc;
int star_nccl_load(void *h) { return fill(h, (void **)&nc, nccl_names, NCCL_N); }
const char *star_nccl_name(int i) { return i >= 0 && i < NCCL_N ? nccl_names[i] : "?"; }

ncclResult_t star_ncclGetVersion(int *v) { return nc.GetVersion(v); }
ncclResult_t star_ncclGetUniqueId(ncclUniqueId *id) { return nc.GetUniqueId(id); }
ncclResult_t star_ncclCommInitRank(CUcontext ctx, ncclComm_t *c, int nranks, ncclUniqueId id, int rank) {
	if (cu.CtxSetCurrent(ctx)) return 1; // ncclUnhandledCudaError
	return nc.CommInitRank(c, nranks, id, rank);
}
ncclResult_t star_ncclCommDestroy(ncclComm_t c) { return nc.CommDestroy(c); }
ncclResult_t star_ncclAllGather(CUcontext ctx, CUdeviceptr send, CUdeviceptr recv, size_t count, int dt, ncclComm_t c) {
	if (cu.CtxSetCurrent(ctx)) return 1;
	ncclResult_t r = nc.AllGather((const void *)send, (void *)recv, count, dt, c, NULL);
	if (r) return r;
	return cu.CtxSynchronize() ? 1 : 0;
}
const char *star_ncclErrorString(ncclResult_t r) {
	const char *s = nc.GetErrorString ? nc.GetErrorString(r) : NULL;
	return s ? s : "unknown NCCL error";
}
