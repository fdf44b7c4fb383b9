// A stand-in for the CUDA driver, NVRTC, cuBLASLt and NCCL, for tests on
// machines without a GPU: the same entry points (the ones star declares in
// nccl/dl.h), with device memory in host memory and a kernel launch
// running the kernel's own CUDA C source, compiled for the CPU, under a
// small emulation of CUDA's thread model: the blocks of a grid one after
// another, the threads of a block as fibers that switch only at
// __syncthreads and warp shuffles, so those behave as on a GPU. On x86-64
// a fiber switch is a few instructions (callee-saved registers and the
// stack pointer; no system call, unlike swapcontext's signal mask);
// elsewhere it is ucontext's.
// cuBLASLt's matmul is a plain host GEMM; NCCL runs a single rank.
//
// It cannot show speed, races that need true parallelism or tensor-core
// instructions. Environment: STAR_STANDIN_DEVICES (devices, default 1),
// STAR_STANDIN_MEM (bytes of "device" memory, default 16 GiB),
// STAR_STANDIN_DRIVER (CUDA version reported, default 13000).
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <dlfcn.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <ucontext.h>

struct dim3 { unsigned x, y, z; };
struct dim3 threadIdx, blockIdx, blockDim, gridDim;

typedef void (*star_tramp)(void **);
struct star_kernel { const char *name; star_tramp fn; };
extern const struct star_kernel star_kernels[]; // generated with the kernels

static long envl(const char *k, long def) {
	const char *v = getenv(k);
	return v && *v ? atol(v) : def;
}

// ---------------- CUDA driver ----------------

typedef int CUresult;
enum {
	OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_INITIALIZED = 3, NO_DEVICE = 100,
	INVALID_DEVICE = 101, INVALID_IMAGE = 200, INVALID_CONTEXT = 201, NOT_FOUND = 500, LAUNCH_FAILED = 719,
};

static int inited;
static long long mem_used;

CUresult cuInit(unsigned flags) { (void)flags; inited = 1; return OK; }
CUresult cuDriverGetVersion(int *v) { *v = (int)envl("STAR_STANDIN_DRIVER", 13000); return OK; }
CUresult cuDeviceGetCount(int *n) {
	if (!inited) return NOT_INITIALIZED;
	*n = (int)envl("STAR_STANDIN_DEVICES", 1);
	return OK;
}
CUresult cuDeviceGet(int *d, int o) {
	if (o < 0 || o >= envl("STAR_STANDIN_DEVICES", 1)) return INVALID_DEVICE;
	*d = o;
	return OK;
}
CUresult cuDeviceGetName(char *name, int n, int d) {
	snprintf(name, n, "star stand-in %d (host memory, no GPU)", d);
	return OK;
}
CUresult cuDeviceGetAttribute(int *v, int a, int d) {
	switch (a) {
	case 75: *v = 9; return OK;  // compute capability major
	case 76: *v = 0; return OK;  // minor
	case 33: *v = d; return OK;  // PCI bus: one per device
	default: *v = 0; return OK;
	}
}
static size_t mem_limit(void) { return (size_t)envl("STAR_STANDIN_MEM", 16L << 30); }
CUresult cuDeviceTotalMem_v2(size_t *b, int d) { (void)d; *b = mem_limit(); return OK; }
static int ctx_token[64];      // one primary context per device
static __thread int cur_dev;   // the device of the thread's current context
CUresult cuDevicePrimaryCtxRetain(void **c, int d) {
	if (d < 0 || d >= 64) return INVALID_DEVICE;
	*c = &ctx_token[d];
	return OK;
}
CUresult cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return OK; }
CUresult cuCtxSetCurrent(void *c) {
	if ((int *)c < ctx_token || (int *)c >= ctx_token + 64) return INVALID_CONTEXT;
	cur_dev = (int)((int *)c - ctx_token);
	return OK;
}
CUresult cuCtxSynchronize(void) { return OK; }

// Allocations carry their size in a header, for the memory limit.
#ifndef STAR_DROP_cuMemAlloc_v2
CUresult cuMemAlloc_v2(unsigned long long *p, size_t n) {
	long long used = __atomic_add_fetch(&mem_used, (long long)n, __ATOMIC_SEQ_CST);
	if (used > (long long)mem_limit()) {
		__atomic_sub_fetch(&mem_used, (long long)n, __ATOMIC_SEQ_CST);
		return OUT_OF_MEMORY;
	}
	char *b = aligned_alloc(256, 256 + ((n + 255) & ~(size_t)255));
	if (!b) {
		__atomic_sub_fetch(&mem_used, (long long)n, __ATOMIC_SEQ_CST);
		return OUT_OF_MEMORY;
	}
	*(size_t *)b = n;
	*p = (unsigned long long)(uintptr_t)(b + 256);
	return OK;
}
#endif
CUresult cuMemFree_v2(unsigned long long p) {
	if (!p) return OK;
	char *b = (char *)(uintptr_t)p - 256;
	__atomic_sub_fetch(&mem_used, (long long)*(size_t *)b, __ATOMIC_SEQ_CST);
	free(b);
	return OK;
}
CUresult cuMemcpyHtoD_v2(unsigned long long d, const void *s, size_t n) { memcpy((void *)(uintptr_t)d, s, n); return OK; }
CUresult cuMemcpyDtoH_v2(void *d, unsigned long long s, size_t n) { memcpy(d, (void *)(uintptr_t)s, n); return OK; }
CUresult cuMemcpyDtoD_v2(unsigned long long d, unsigned long long s, size_t n) {
	memmove((void *)(uintptr_t)d, (void *)(uintptr_t)s, n);
	return OK;
}
CUresult cuMemsetD8_v2(unsigned long long d, unsigned char v, size_t n) { memset((void *)(uintptr_t)d, v, n); return OK; }
CUresult cuMemGetInfo_v2(size_t *f, size_t *t) {
	*t = mem_limit();
	*f = *t - (size_t)mem_used;
	return OK;
}

static const char module_magic[] = "star-standin-module";
CUresult cuModuleLoadData(void **m, const void *image) {
	if (!image || strncmp((const char *)image, module_magic, sizeof module_magic - 1) != 0) return INVALID_IMAGE;
	*m = (void *)star_kernels;
	return OK;
}
CUresult cuModuleUnload(void *m) { (void)m; return OK; }
CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
	for (const struct star_kernel *k = (const struct star_kernel *)m; k->name; k++) {
		if (strcmp(k->name, name) == 0) {
			*f = (void *)k;
			return OK;
		}
	}
	return NOT_FOUND;
}

// -------- threads of a block as fibers --------

enum { RUN, BARRIER, WARP, DONE };

#if defined(__x86_64__)
// fctx is a suspended fiber: its stack pointer, below which its
// callee-saved registers, MXCSR and x87 control word are pushed.
typedef struct { void *sp; } fctx;
void star_fswitch(fctx *from, fctx *to);
__asm__(".text\n"
        ".globl star_fswitch\n"
        ".type star_fswitch,@function\n"
        "star_fswitch:\n"
        "\tpushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
        "\tsubq $8, %rsp\n\tstmxcsr (%rsp)\n\tfnstcw 4(%rsp)\n"
        "\tmovq %rsp, (%rdi)\n\tmovq (%rsi), %rsp\n"
        "\tldmxcsr (%rsp)\n\tfldcw 4(%rsp)\n\taddq $8, %rsp\n"
        "\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n"
        "\tret\n"
        ".size star_fswitch, .-star_fswitch\n");
#define SWITCH(from, to) star_fswitch(from, to)
#else
typedef ucontext_t fctx;
#define SWITCH(from, to) swapcontext(from, to)
#endif

struct fiber { fctx ctx; int state; unsigned tid; };
static struct fiber *fibers;
static int nfib, cur;
static fctx sched;
static char *stacks;
static size_t stack_size = 128 << 10;
static float xchg[1024];
static star_tramp run_fn;
static void **run_args;

static void set_thread(int i) {
	unsigned t = fibers[i].tid;
	threadIdx.x = t % blockDim.x;
	threadIdx.y = (t / blockDim.x) % blockDim.y;
	threadIdx.z = t / (blockDim.x * blockDim.y);
}

static void fiber_main(void) {
	run_fn(run_args);
	fibers[cur].state = DONE;
#if defined(__x86_64__)
	SWITCH(&fibers[cur].ctx, &sched); // never resumed
	abort();
#endif
	// ucontext: uc_link returns to the scheduler
}

// fiber_init prepares fiber i to start in fiber_main on its own stack.
static void fiber_init(int i) {
	char *base = stacks + (size_t)i * stack_size;
#if defined(__x86_64__)
	uint64_t *top = (uint64_t *)(base + stack_size); // 16-byte aligned
	uint64_t *sp = top - 9;
	memset(sp, 0, 9 * sizeof *sp);
	// MXCSR default, x87 control word default; then r15 .. rbp; then the
	// return address (fiber_main, entered with rsp = top - 8 as if called)
	((uint32_t *)sp)[0] = 0x1f80;
	((uint16_t *)sp)[2] = 0x037f;
	sp[7] = (uint64_t)(uintptr_t)fiber_main;
	fibers[i].ctx.sp = sp;
#else
	getcontext(&fibers[i].ctx);
	fibers[i].ctx.uc_stack.ss_sp = base;
	fibers[i].ctx.uc_stack.ss_size = stack_size;
	fibers[i].ctx.uc_link = &sched;
	makecontext(&fibers[i].ctx, fiber_main, 0);
#endif
}

void star_syncthreads(void) {
	fibers[cur].state = BARRIER;
	SWITCH(&fibers[cur].ctx, &sched);
}

static void warp_wait(void) {
	fibers[cur].state = WARP;
	SWITCH(&fibers[cur].ctx, &sched);
}

float star_shfl_xor(float v, int m) {
	unsigned t = fibers[cur].tid, base = t & ~31u;
	xchg[t] = v;
	warp_wait();
	float r = xchg[base + ((t & 31u) ^ (unsigned)m)];
	warp_wait();
	return r;
}

float star_shfl(float v, int src) {
	unsigned t = fibers[cur].tid, base = t & ~31u;
	xchg[t] = v;
	warp_wait();
	float r = xchg[base + ((unsigned)src & 31u)];
	warp_wait();
	return r;
}

// run_block runs every thread of the current block to its end; -1 if the
// threads deadlock (a barrier some never reach).
static int run_block(int n) {
	for (int i = 0; i < n; i++) {
		fibers[i].state = RUN;
		fibers[i].tid = (unsigned)i;
		fiber_init(i);
	}
	for (;;) {
		int alive = 0, ran = 0;
		for (int i = 0; i < n; i++) {
			if (fibers[i].state == DONE) continue;
			alive++;
			if (fibers[i].state != RUN) continue;
			cur = i;
			set_thread(i);
			SWITCH(&sched, &fibers[i].ctx);
			ran = 1;
		}
		if (!alive) return 0;
		// a barrier opens once every live thread of the block reached it
		int all = 1;
		for (int i = 0; i < n; i++)
			if (fibers[i].state != DONE && fibers[i].state != BARRIER) all = 0;
		if (all) {
			for (int i = 0; i < n; i++)
				if (fibers[i].state == BARRIER) fibers[i].state = RUN;
			continue;
		}
		// a warp's shuffle proceeds once its live threads all reached it
		int opened = 0;
		for (int w = 0; w * 32 < n; w++) {
			int ok = 1, any = 0;
			for (int i = w * 32; i < n && i < w * 32 + 32; i++) {
				if (fibers[i].state == DONE) continue;
				if (fibers[i].state != WARP) ok = 0;
				any = 1;
			}
			if (ok && any) {
				for (int i = w * 32; i < n && i < w * 32 + 32; i++)
					if (fibers[i].state == WARP) fibers[i].state = RUN;
				opened = 1;
			}
		}
		if (!ran && !opened) return -1;
	}
}

// One launch at a time in the process: the emulation's state (fibers,
// built-in variables, shared arrays) is global, and ranks sharing the
// device may launch from several threads.
static pthread_mutex_t launch_mu = PTHREAD_MUTEX_INITIALIZER;

static CUresult launch(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                       unsigned shmem, void *stream, void **params, void **extra);

CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shmem, void *stream, void **params, void **extra) {
	pthread_mutex_lock(&launch_mu);
	CUresult r = launch(f, gx, gy, gz, bx, by, bz, shmem, stream, params, extra);
	pthread_mutex_unlock(&launch_mu);
	return r;
}

static CUresult launch(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                       unsigned shmem, void *stream, void **params, void **extra) {
	(void)shmem, (void)stream, (void)extra;
	int n = (int)(bx * by * bz);
	if (!f || n <= 0 || n > 1024 || gx == 0 || gy == 0 || gz == 0) return INVALID_VALUE;
	if (!stacks) {
		stacks = mmap(NULL, 1024 * stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		fibers = calloc(1024, sizeof *fibers);
		if (stacks == MAP_FAILED || !fibers) return OUT_OF_MEMORY;
	}
	run_fn = ((const struct star_kernel *)f)->fn;
	run_args = params;
	gridDim = (struct dim3){gx, gy, gz};
	blockDim = (struct dim3){bx, by, bz};
	nfib = n;
	for (unsigned z = 0; z < gz; z++)
		for (unsigned y = 0; y < gy; y++)
			for (unsigned x = 0; x < gx; x++) {
				blockIdx = (struct dim3){x, y, z};
				if (run_block(n) != 0) {
					fprintf(stderr, "star stand-in: kernel %s deadlocked in block (%u,%u,%u): threads wait at different barriers\n",
					        ((const struct star_kernel *)f)->name, x, y, z);
					return LAUNCH_FAILED;
				}
			}
	return OK;
}

static const struct { int code; const char *name, *msg; } cu_errors[] = {
	{OK, "CUDA_SUCCESS", "no error"},
	{INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	{OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	{NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	{INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	{INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	{INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	{NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	{LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
};
CUresult cuGetErrorString(CUresult r, const char **s) {
	for (size_t i = 0; i < sizeof cu_errors / sizeof cu_errors[0]; i++)
		if (cu_errors[i].code == r) { *s = cu_errors[i].msg; return OK; }
	return INVALID_VALUE;
}
CUresult cuGetErrorName(CUresult r, const char **s) {
	for (size_t i = 0; i < sizeof cu_errors / sizeof cu_errors[0]; i++)
		if (cu_errors[i].code == r) { *s = cu_errors[i].name; return OK; }
	return INVALID_VALUE;
}

// ---------------- NVRTC ----------------
// "Compiling" checks that the kernels the source names are the ones built
// into this stand-in, and yields a module image naming this stand-in.

struct prog { char *src; };
int nvrtcVersion(int *a, int *b) { *a = 13; *b = 0; return 0; }
int nvrtcCreateProgram(struct prog **p, const char *src, const char *name, int nh, const char *const *h,
                       const char *const *hn) {
	(void)name, (void)nh, (void)h, (void)hn;
	*p = calloc(1, sizeof **p);
	(*p)->src = strdup(src);
	return 0;
}
static const char *missing;
int nvrtcCompileProgram(struct prog *p, int n, const char *const *opts) {
	(void)n, (void)opts;
	missing = NULL;
	for (const char *s = p->src; (s = strstr(s, "extern \"C\" __global__ void ")) != NULL;) {
		s += strlen("extern \"C\" __global__ void ");
		int found = 0;
		for (const struct star_kernel *k = star_kernels; k->name; k++)
			if (strncmp(s, k->name, strlen(k->name)) == 0 && s[strlen(k->name)] == '(') found = 1;
		if (!found) { missing = s; return 6; } // NVRTC_ERROR_COMPILATION
	}
	return 0;
}
int nvrtcGetProgramLogSize(struct prog *p, size_t *n) {
	(void)p;
	*n = missing ? 200 : 1;
	return 0;
}
int nvrtcGetProgramLog(struct prog *p, char *log) {
	(void)p;
	if (missing) snprintf(log, 200, "star stand-in: kernel %.60s is not built into this stand-in: rebuild it", missing);
	else log[0] = 0;
	return 0;
}
static int image(char *out) { strcpy(out, module_magic); return 0; }
int nvrtcGetPTXSize(struct prog *p, size_t *n) { (void)p; *n = sizeof module_magic; return 0; }
int nvrtcGetPTX(struct prog *p, char *out) { (void)p; return image(out); }
int nvrtcGetCUBINSize(struct prog *p, size_t *n) { (void)p; *n = sizeof module_magic; return 0; }
int nvrtcGetCUBIN(struct prog *p, char *out) { (void)p; return image(out); }
int nvrtcDestroyProgram(struct prog **p) {
	if (*p) { free((*p)->src); free(*p); *p = NULL; }
	return 0;
}
const char *nvrtcGetErrorString(int r) { return r == 6 ? "NVRTC_ERROR_COMPILATION" : r ? "NVRTC_ERROR" : "NVRTC_SUCCESS"; }

// ---------------- cuBLASLt ----------------

struct ltdesc { int ta, tb; };
struct ltlayout { int type; uint64_t rows, cols; int64_t ld; };
int cublasLtCreate(void **h) { *h = malloc(1); return 0; }
int cublasLtDestroy(void *h) { free(h); return 0; }
int cublasLtMatmulDescCreate(struct ltdesc **d, int compute, int scale) {
	if (compute != 68 || scale != 0) return 15; // only F32 compute and scale: CUBLAS_STATUS_NOT_SUPPORTED
	*d = calloc(1, sizeof **d);
	return 0;
}
int cublasLtMatmulDescDestroy(struct ltdesc *d) { free(d); return 0; }
int cublasLtMatmulDescSetAttribute(struct ltdesc *d, int attr, const void *v, size_t n) {
	if (n != sizeof(int)) return 7;
	if (attr == 3) d->ta = *(const int *)v;
	else if (attr == 4) d->tb = *(const int *)v;
	return 0;
}
int cublasLtMatrixLayoutCreate(struct ltlayout **l, int type, uint64_t rows, uint64_t cols, int64_t ld) {
	if (type != 0 && type != 2 && type != 14) return 15;
	if (ld < (int64_t)rows) return 7;
	*l = malloc(sizeof **l);
	**l = (struct ltlayout){type, rows, cols, ld};
	return 0;
}
int cublasLtMatrixLayoutDestroy(struct ltlayout *l) { free(l); return 0; }

static float h2f(uint16_t h) {
	uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
	if (e == 0) { float f = ldexpf((float)m, -24); return s ? -f : f; }
	u = e == 31 ? (s | 0x7f800000u | (m << 13)) : (s | ((e + 112) << 23) | (m << 13));
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static float elem(const void *p, int type, uint64_t i) {
	if (type == 0) return ((const float *)p)[i];
	uint16_t h = ((const uint16_t *)p)[i];
	if (type == 2) return h2f(h);
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

int cublasLtMatmul(void *h, struct ltdesc *d, const float *alpha, const void *A, struct ltlayout *la, const void *B,
                   struct ltlayout *lb, const float *beta, const void *C, struct ltlayout *lc, void *D,
                   struct ltlayout *ld, const void *algo, void *ws, size_t wss, void *stream) {
	(void)h, (void)algo, (void)ws, (void)wss, (void)stream, (void)lc;
	uint64_t m = ld->rows, n = ld->cols, k = d->ta ? la->rows : la->cols;
	if ((d->ta ? la->cols : la->rows) != m || (d->tb ? lb->cols : lb->rows) != k || (d->tb ? lb->rows : lb->cols) != n)
		return 7; // CUBLAS_STATUS_INVALID_VALUE: shapes disagree
	if (ld->type != 0) return 15;
	for (uint64_t j = 0; j < n; j++)
		for (uint64_t i = 0; i < m; i++) {
			double s = 0;
			for (uint64_t p = 0; p < k; p++) {
				float a = d->ta ? elem(A, la->type, p + i * la->ld) : elem(A, la->type, i + p * la->ld);
				float b = d->tb ? elem(B, lb->type, j + p * lb->ld) : elem(B, lb->type, p + j * lb->ld);
				s += (double)a * b;
			}
			float *out = (float *)D + i + j * ld->ld;
			float c = *beta != 0 ? ((const float *)C)[i + j * ld->ld] : 0;
			*out = (float)(*alpha * s + *beta * c);
		}
	return 0;
}

// ---------------- NCCL ----------------

typedef struct { char internal[128]; } ncclUniqueId;
int ncclGetVersion(int *v) { *v = 22700; return 0; }
int ncclGetUniqueId(ncclUniqueId *id) {
	memset(id, 0, sizeof *id);
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	snprintf(id->internal, sizeof id->internal, "star-standin-%d-%ld%09ld", (int)getpid(), (long)t.tv_sec, t.tv_nsec);
	return 0;
}

// Several ranks (processes) meet through files in a folder:
// STAR_STANDIN_NCCL_DIR, else "nccl" beside this library (the tests
// remove the stand-in's folder). A rank writes its part of an all-gather
// to <id>-<seq>-<rank> (renamed into place whole) and reads the others'.
// Like NCCL, two ranks on one device are refused (Duplicate GPU detected).
// A rank waits STAR_STANDIN_NCCL_TIMEOUT seconds (default 60) for the others.
struct ncomm { int nranks, rank; long seq; char id[128], dir[3072]; };

static void nccl_dir(char *out, size_t n) {
	const char *e = getenv("STAR_STANDIN_NCCL_DIR");
	if (e && *e) {
		snprintf(out, n, "%s", e);
	} else {
		Dl_info i;
		char lib[3000] = ".";
		if (dladdr((void *)ncclGetVersion, &i) && i.dli_fname) snprintf(lib, sizeof lib, "%s", i.dli_fname);
		char *slash = strrchr(lib, '/');
		if (slash) *slash = 0; else snprintf(lib, sizeof lib, ".");
		snprintf(out, n, "%s/nccl", lib);
	}
	mkdir(out, 0755);
}

static void part_path(char *out, size_t n, struct ncomm *c, const char *what, int rank) {
	snprintf(out, n, "%s/%s-%s-%d", c->dir, c->id, what, rank);
}

static int put_file(const char *path, const void *b, size_t n) {
	char tmp[3400];
	snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f) return -1;
	size_t w = fwrite(b, 1, n, f);
	if (fclose(f) != 0 || w != n) return -1;
	return rename(tmp, path);
}

// get_file waits for path and reads n bytes of it; -1 after the timeout.
static int get_file(const char *path, void *b, size_t n) {
	double limit = (double)envl("STAR_STANDIN_NCCL_TIMEOUT", 60);
	struct timespec t0, now, nap = {0, 100000};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		FILE *f = fopen(path, "rb");
		if (f) {
			size_t r = fread(b, 1, n, f);
			fclose(f);
			return r == n ? 0 : -1;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec) > limit) return -1;
		nanosleep(&nap, NULL);
	}
}

int ncclCommInitRank(struct ncomm **c, int nranks, ncclUniqueId id, int rank) {
	if (nranks < 1 || rank < 0 || rank >= nranks) return 4; // ncclInvalidArgument
	struct ncomm *m = calloc(1, sizeof *m);
	if (!m) return 1;
	m->nranks = nranks;
	m->rank = rank;
	snprintf(m->id, sizeof m->id, "%s", id.internal);
	if (nranks > 1) {
		nccl_dir(m->dir, sizeof m->dir);
		char p[3400];
		int dev = cur_dev, other;
		part_path(p, sizeof p, m, "dev", rank);
		if (put_file(p, &dev, sizeof dev) != 0) { free(m); return 2; }
		for (int r = 0; r < nranks; r++) {
			if (r == rank) continue;
			part_path(p, sizeof p, m, "dev", r);
			if (get_file(p, &other, sizeof other) != 0) { free(m); return 2; } // ncclSystemError
			if (other == dev) { free(m); return 5; }                          // Duplicate GPU detected
		}
	}
	*c = m;
	return 0;
}

int ncclCommDestroy(struct ncomm *c) {
	if (c->nranks > 1) { // every rank read the device files at init; the previous part too
		char p[3400], w[32];
		part_path(p, sizeof p, c, "dev", c->rank);
		remove(p);
		snprintf(w, sizeof w, "%ld", c->seq - 1);
		part_path(p, sizeof p, c, w, c->rank);
		remove(p);
	}
	free(c);
	return 0;
}

int ncclAllGather(const void *s, void *r, size_t count, int dt, struct ncomm *c, void *stream) {
	(void)stream;
	static const int size[] = {1, 1, 4, 4, 8, 8, 2, 4, 8, 2};
	if (dt < 0 || dt > 9) return 4; // ncclInvalidArgument
	size_t n = count * (size_t)size[dt];
	if (c->nranks == 1) {
		memmove(r, s, n);
		return 0;
	}
	char p[3400], w[32];
	c->seq++;
	snprintf(w, sizeof w, "%ld", c->seq);
	part_path(p, sizeof p, c, w, c->rank);
	if (put_file(p, s, n) != 0) return 2;
	for (int j = 0; j < c->nranks; j++) {
		char *dst = (char *)r + (size_t)j * n;
		if (j == c->rank) {
			memmove(dst, s, n);
			continue;
		}
		part_path(p, sizeof p, c, w, j);
		if (get_file(p, dst, n) != 0) return 2;
	}
	// every rank has read this rank's part of two all-gathers ago
	snprintf(w, sizeof w, "%ld", c->seq - 2);
	part_path(p, sizeof p, c, w, c->rank);
	remove(p);
	return 0;
}
const char *ncclGetErrorString(int r) {
	switch (r) {
	case 0: return "no error";
	case 4: return "invalid argument";
	case 2: return "system error (the stand-in: the other ranks did not come within STAR_STANDIN_NCCL_TIMEOUT)";
	case 5: return "invalid usage (the stand-in: Duplicate GPU detected, two ranks on one device)";
	default: return "unhandled error";
	}
}
