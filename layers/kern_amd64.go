//go:build amd64 && cgo

package layers

/*
#cgo CFLAGS: -O3 -std=gnu11
#cgo LDFLAGS: -lm
#include "kern.h"
*/
import "C"

import (
	"sync/atomic"
	"unsafe"

	"github.com/star-attn/star/weights"
)

// The SIMD backend of CPU, on amd64 with cgo.
//
// Kernels (kern_amd64.c, kern_impl.h): one C source instantiated per
// vector width under GCC target pragmas, so the binary still runs on any
// x86-64: star_cpu_level (__builtin_cpu_supports, which also checks that
// the OS saves the wide registers) picks AVX-512F (16 lanes, 14x32 register
// tile) or AVX2+FMA+F16C (8 lanes, 6x16 tile); without either, NewCPU
// returns the pure-Go backend.
//
//	MatMul, n > gemvMaxN  packed GEMM: x packed into MR-row panels once,
//	                      weights packed per kc x nc block (transposed and
//	                      widened from F16/BF16 on the fly; no F32 copy of a
//	                      matrix is kept), register-tile microkernel; work
//	                      items are blocks of output columns
//	MatMul, n <= gemvMaxN matrix-vector: weights streamed in their stored
//	                      dtype (BF16 by 16-bit shifts, F16 by vcvtph2ps)
//	                      into FMAs, work items are blocks of rows
//	MatMul, BF16, AMX     where the processor has AMX tiles (and the OS
//	                      grants them): x rounded to bfloat16 into panels
//	                      of 32 rows, blocks of 32x32 outputs accumulated
//	                      in tiles by tdpbf16ps (kern_amx.h)
//	Attention             flash attention per (kv head, block of queries),
//	                      the group's query heads together (see star_attn)
//
// Threads: the CPU's worker pool (pool.go), Threads() goroutines in all,
// each calling C on the work items it claims.

// kernels is one variant of the SIMD kernels in kern_amd64.c.
type kernels struct {
	variant C.int
	name    string
	mr, nr  int  // register tile
	atk     int  // attention key tile
	exact   bool // no product rounds its activations (",exact")
	// Quantized weights take integer dot products (RoundInt8) unless exact.
	gemmI8 bool  // in the GEMM too (VNNI, native or emulated on emu512); else the GEMM on the float kernels
	gemvI8 C.int // the variant of the integer matrix-vector products: variant, STAR_AVXVNNI (256-bit vpdpbusd) or STAR_AVX2 (vpmaddubsw)
	amx    bool  // the GEMM of BF16 weights on AMX tiles (native where the processor and OS allow, or emulated on emu512)
	bf16   bool  // bfloat16 dot products for BF16 weights (native AVX512_BF16, or emulated on emu512)
}

// cpuFeatures is what the processor adds to AVX-512 (C.STAR_FEAT_* bits).
var cpuFeatures = int(C.star_cpu_features())

// rounds reports whether some product of these kernels rounds its
// activations (and an ",exact" choice differs).
func (k *kernels) rounds() bool {
	for _, dt := range weights.DTypes() {
		if k.rounding(dt) != RoundNone {
			return true
		}
	}
	return false
}

// int8Suffix names the integer dot products in MatMulKernel: "vnni"
// (vpdpbusd: AVX512_VNNI, emulated on emu512, or AVX-VNNI's for the
// matrix-vector products alone) or "int8" (vpmaddubsw, the matrix-vector
// products alone).
func (k *kernels) int8Suffix() string {
	if k.gemvI8 == C.STAR_AVX2 {
		return "int8"
	}
	return "vnni"
}

// avxVNNI reports whether the processor has AVX-VNNI (256-bit vpdpbusd).
func avxVNNI() bool { return cpuFeatures&C.STAR_FEAT_AVXVNNI != 0 }

// withMaddubs is k with its integer matrix-vector products on vpmaddubsw
// where they would use AVX-VNNI (nil where they use neither): for tests
// of both on processors with AVX-VNNI.
func (k *kernels) withMaddubs() *kernels {
	if k.gemvI8 != C.STAR_AVX2 && k.gemvI8 != C.STAR_AVXVNNI {
		return nil
	}
	c := *k
	c.gemvI8 = C.STAR_AVX2
	return &c
}

// rounding is how the kernels round activations for weights of dtype dt.
func (k *kernels) rounding(dt weights.DType) Rounding {
	if k.exact {
		return RoundNone
	}
	if dt.Quantized() {
		return RoundInt8
	}
	if dt == weights.BF16 && k.bf16 {
		return RoundBF16 // rows of odd length are computed exactly
	}
	return RoundNone
}

// bf16Default reports whether bfloat16 dot products are on by default:
// where the processor has them (native AVX512_BF16) and runs them faster
// than its FMAs (AMD; measured on an Intel Xeon with AVX512_BF16:
// vdpbf16ps one per two cycles, FMAs two per cycle, so a BF16 GEMM at 0.6
// times the float32 one) or runs the GEMM on AMX tiles (k.amx: Intel
// Xeons since Sapphire Rapids, tdpbf16ps); always on emu512.
func (k *kernels) bf16Default() bool {
	switch k.variant {
	case C.STAR_AVX512:
		return cpuFeatures&C.STAR_FEAT_BF16 != 0 && (cpuFeatures&C.STAR_FEAT_AMD != 0 || k.amx)
	case C.STAR_EMU512:
		return true
	}
	return false
}

// withBF16 is k with bfloat16 dot products, or nil if the variant has
// none on this processor.
func (k *kernels) withBF16() *kernels {
	if k.variant == C.STAR_EMU512 || (k.variant == C.STAR_AVX512 && cpuFeatures&C.STAR_FEAT_BF16 != 0) {
		e := *k
		e.bf16, e.exact = true, false
		return &e
	}
	return nil
}

// amxDefault reports whether the GEMM of BF16 weights runs on AMX tiles
// by default: where the processor has AMX-BF16 and the OS grants the tile
// state; never on emu512 (its tiles are emulated, for tests:
// "emu512,amx"). Quantized weights stay on VNNI: split into two bfloat16
// (exact) they ran on the tiles no faster end to end (0.85B, 512 and 2048
// tokens of prefill, Intel Xeon: 330-500 GFLOP/s of linear layers against
// 410-530), the panels' dequantizing eating the tiles' gain.
func (k *kernels) amxDefault() bool {
	return k.variant == C.STAR_AVX512 && cpuFeatures&C.STAR_FEAT_AMX != 0
}

// withAMX is k with (on) or without the AMX GEMM, with the bfloat16
// default that goes with it, or nil if the variant has no AMX on this
// processor.
func (k *kernels) withAMX(on bool) *kernels {
	e := *k
	e.amx = on
	if on && !(k.variant == C.STAR_EMU512 || k.amxDefault()) {
		return nil
	}
	if !e.exact {
		e.bf16 = e.bf16Default()
	}
	return &e
}

// usesAMX reports whether k's GEMM runs on AMX tiles for weights of dtype
// dt.
func (k *kernels) usesAMX(dt weights.DType) bool {
	return k.amx && k.rounding(dt) == RoundBF16
}

// exactOnly is k without the paths that round activations.
func (k *kernels) exactOnly() *kernels {
	e := *k
	e.exact = true
	return &e
}

// cpuLevel is what the processor runs (0 none, 1 AVX2+FMA+F16C, 2
// AVX-512F), asked once at initialisation and never changed.
var cpuLevel = int(C.star_cpu_level())

// swiGLU is SwiGLU on this variant (vectorised exp); len(h1) > 0.
func (k *kernels) swiGLU(h1, h3 []float32) {
	_ = h3[len(h1)-1]
	C.star_swiglu(k.variant, fptr(h1), fptr(h3), C.long(len(h1)))
}

// kernelVariants lists the variants this CPU runs, best first. emu512 (the
// 16-lane code on AVX2) is listed for tests but never chosen automatically.
func kernelVariants() []string {
	switch cpuLevel {
	case 2:
		return []string{"avx512", "avx2", "emu512"}
	case 1:
		return []string{"avx2", "emu512"}
	}
	return nil
}

// newKernels returns the named variant, or nil if this CPU cannot run it.
func newKernels(name string) *kernels {
	var v C.int
	switch {
	case name == "avx2" && cpuLevel >= 1:
		v = C.STAR_AVX2
	case name == "emu512" && cpuLevel >= 1:
		v = C.STAR_EMU512
	case name == "avx512" && cpuLevel >= 2:
		v = C.STAR_AVX512
	default:
		return nil
	}
	var mr, nr, atk, chunk C.int
	C.star_params(v, &mr, &nr, &atk, &chunk)
	k := &kernels{variant: v, name: name, mr: int(mr), nr: int(nr), atk: int(atk), gemmI8: true, gemvI8: v}
	if v == C.STAR_AVX2 || (v == C.STAR_AVX512 && cpuFeatures&C.STAR_FEAT_VNNI == 0) {
		// Without AVX512_VNNI: the matrix-vector products on 256-bit
		// vectors, AVX-VNNI's vpdpbusd where the processor has it, else
		// vpmaddubsw: 2-6x the float path's rate on quantized weights
		// (BenchmarkMatVec, forced avx2). The integer GEMM's 6x32 tile
		// does not fit AVX2's 16 registers and emulating vpdpbusd in it
		// is slower than the float GEMM: prefill keeps the float kernels.
		k.gemmI8, k.gemvI8 = false, C.STAR_AVX2
		if cpuFeatures&C.STAR_FEAT_AVXVNNI != 0 {
			k.gemvI8 = C.STAR_AVXVNNI
		}
	}
	k.amx = k.amxDefault()
	k.bf16 = k.bf16Default()
	return k
}

func fptr(s []float32) *C.float { return (*C.float)(unsafe.Pointer(unsafe.SliceData(s))) }

// dtypeOf is w's dtype as the C kernels name it (kern.h: the same
// numbers as weights.DType).
func dtypeOf(w *weights.Tensor) C.int { return C.int(w.DType) }

// resources are the task and scratch objects of one pool, reused call to
// call (no allocation in steady state).
type resources struct {
	shared scratch
	tws    []scratch // per thread
	split  scratch   // attention's key splits
	gemm   gemmTask
	attn   attnTask
}

func newResources(threads int) *resources { return &resources{tws: make([]scratch, threads)} }

const (
	phasePackA = iota
	phaseCols
	phaseGemv
	phasePackAI8
	phaseColsI8
	phasePackAAMX
	phaseColsAMX
	phaseGemvI8
	phaseColsBF
	phaseGemvBF
)

// Tiles of the integer GEMM (kern_i8.h): MRI rows of x, NRI columns; of
// the AMX GEMM (kern_amx.h): MRA rows, NRI columns.
const mri, nri, mra = 6, 32, 32

type gemmTask struct {
	k       *kernels
	res     *resources
	phase   int
	nt      int
	x, out  []float32
	w       unsafe.Pointer
	dt      C.int
	M, N, K int
	kc      int       // GEMM: columns per packed panel (whole blocks of a quantized dtype)
	ap      []float32 // packed x (GEMM) or x as the gemv kernel wants it
	// Integer paths: x quantized (gemv: xq, xl, xs; GEMM: panels of
	// panelA bytes in ap) and the bytes of a B panel of NRI columns.
	xq, xc         unsafe.Pointer
	xs, dxn, dx16  []float32
	panelA, panelB int
	next           atomic.Int64
	items          int // work units: x panels, blocks of NR columns or of 4 rows
	chunk          int // units per claim (at most)
}

func (g *gemmTask) run(tid int) {
	k := g.k
	switch g.phase {
	case phasePackA:
		g.packRuns((g.M+k.mr-1)/k.mr, func(p0, p1 int) {
			C.star_gemm_packa(k.variant, fptr(g.x), C.long(g.M), C.long(g.K), fptr(g.ap), C.long(p0), C.long(p1))
		})
	case phaseCols: // blocks of NR output columns
		kc := g.kc
		buf := g.res.tws[tid].get(kc*g.chunk*k.nr + k.mr*k.nr)
		bp, tmp := buf[:kc*g.chunk*k.nr], buf[kc*g.chunk*k.nr:]
		g.colRuns(func(b0, b1 int) {
			C.star_gemm_cols(k.variant, fptr(g.ap), C.long(g.M), C.long(g.K), g.w, g.dt, fptr(g.out), C.long(g.N),
				C.long(b0*k.nr), C.long(min(b1*k.nr, g.N)), fptr(bp), fptr(tmp), C.int(kc), C.int(gemmMC))
		})
	case phasePackAI8:
		g.packRuns((g.M+mri-1)/mri, func(p0, p1 int) {
			C.star_gemm_packa_i8(k.variant, g.dt, fptr(g.x), C.long(g.M), C.long(g.K), (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(g.ap))),
				C.long(p0), C.long(p1))
		})
	case phaseColsI8:
		pb := (g.chunk*g.panelB + 3) / 4
		buf := g.res.tws[tid].get(pb + mri*nri)
		bp, tmp := buf[:pb], buf[pb:]
		g.colRuns(func(b0, b1 int) {
			C.star_gemm_cols_i8(k.variant, (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(g.ap))), C.long(g.M), C.long(g.K), g.w, g.dt,
				fptr(g.out), C.long(g.N), C.long(b0*nri), C.long(min(b1*nri, g.N)), (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(bp))),
				fptr(tmp), C.int(g.kc), C.int(gemmMC))
		})
	case phasePackAAMX:
		g.packRuns((g.M+mra-1)/mra, func(p0, p1 int) {
			C.star_gemm_packa_amx(k.variant, fptr(g.x), C.long(g.M), C.long(g.K), (*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(g.ap))),
				C.long(p0), C.long(p1))
		})
	case phaseColsAMX:
		pb := (g.chunk*g.panelB + 1) / 2
		buf := g.res.tws[tid].get(pb + mra*nri)
		bp, ws := buf[:pb], buf[pb:]
		g.colRuns(func(b0, b1 int) {
			C.star_gemm_cols_amx(k.variant, (*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(g.ap))), C.long(g.M), C.long(g.K), (*C.uint16_t)(g.w),
				fptr(g.out), C.long(g.N), C.long(b0*nri), C.long(min(b1*nri, g.N)), (*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(bp))),
				fptr(ws), C.int(g.kc), C.int(gemmMC))
		})
	case phaseGemvI8: // the matrix-vector phases claim their runs in C (one cgo call per thread)
		C.star_gemv_i8_claim(k.gemvI8, g.w, g.dt, C.long(g.K), (*C.int8_t)(g.xq), (*C.int32_t)(g.xc), fptr(g.xs), fptr(g.dxn), fptr(g.dx16), C.long(g.M),
			fptr(g.out), C.long(g.N), g.cursor(), C.long(g.items), C.long(g.nt), C.long(g.chunk))
	case phaseColsBF: // blocks of NR output columns; K/2 words of bfloat16 pairs
		kc2 := g.kc / 2
		buf := g.res.tws[tid].get(kc2*g.chunk*k.nr + k.mr*k.nr)
		bp, tmp := buf[:kc2*g.chunk*k.nr], buf[kc2*g.chunk*k.nr:]
		g.colRuns(func(b0, b1 int) {
			C.star_gemm_cols_bf(k.variant, (*C.uint32_t)(unsafe.Pointer(unsafe.SliceData(g.ap))), C.long(g.M), C.long(g.K/2), g.w,
				fptr(g.out), C.long(g.N), C.long(b0*k.nr), C.long(min(b1*k.nr, g.N)), (*C.uint32_t)(unsafe.Pointer(unsafe.SliceData(bp))),
				fptr(tmp), C.int(kc2), C.int(gemmMC))
		})
	case phaseGemvBF:
		C.star_gemv_bf_claim(k.variant, g.w, C.long(g.K), (*C.uint16_t)(g.xq), C.long(g.M), fptr(g.out), C.long(g.N),
			g.cursor(), C.long(g.items), C.long(g.nt), C.long(g.chunk))
	case phaseGemv: // blocks of 4 rows
		C.star_gemv_claim(k.variant, g.w, g.dt, C.long(g.K), fptr(g.ap), C.long(g.M), fptr(g.out), C.long(g.N),
			g.cursor(), C.long(g.items), C.long(g.nt), C.long(g.chunk))
	}
}

// packRuns calls f on runs of g.chunk units (panels of x) of [0, total),
// claimed from g.next (claimRun), until none is left.
func (g *gemmTask) packRuns(total int, f func(p0, p1 int)) {
	for {
		p0, p1, ok := claimRun(&g.next, total, g.chunk)
		if !ok {
			return
		}
		f(p0, p1)
	}
}

// colRuns calls f on runs of [0, g.items) (blocks of output columns),
// claimed from g.next (claimGuided, at most g.chunk), until none is left.
func (g *gemmTask) colRuns(f func(b0, b1 int)) {
	for {
		b0, b1, ok := claimGuided(&g.next, g.items, g.nt, 1, g.chunk)
		if !ok {
			return
		}
		f(b0, b1)
	}
}

// cursor is g.next for C's claim loops (claim_guided in kern_amd64.c, the
// twin of claimGuided), which update it with the same atomic operations.
func (g *gemmTask) cursor() *C.longlong { return (*C.longlong)(unsafe.Pointer(&g.next)) }

// runOn runs the task's current phase on nt threads of pool p (nil: on
// the caller).
func (g *gemmTask) runOn(p *workerPool, nt int) {
	g.next.Store(0)
	g.nt = nt
	if p == nil {
		runInline(g)
	} else {
		p.run(nt, g)
	}
}

// claimRun takes the next run of chunk units of [0, total) from the
// shared cursor next (the last run shorter).
func claimRun(next *atomic.Int64, total, chunk int) (lo, hi int, ok bool) {
	lo = int(next.Add(1)-1) * chunk
	if lo >= total {
		return 0, 0, false
	}
	return lo, min(lo+chunk, total), true
}

// claimGuided takes the next run of units of [0, total) from the shared
// cursor next: about the remaining units / (2 nt), within [minU, maxU], so
// that runs shrink toward the end and the threads finish together even
// when one of them has been slowed down.
func claimGuided(next *atomic.Int64, total, nt, minU, maxU int) (lo, hi int, ok bool) {
	for {
		cur := int(next.Load())
		if cur >= total {
			return 0, 0, false
		}
		n := min(maxU, max(minU, (total-cur)/(2*nt)))
		hi := min(cur+n, total)
		if next.CompareAndSwap(int64(cur), int64(hi)) {
			return cur, hi, true
		}
	}
}

// matMul computes out[n, rows] = x[n, cols] . w^T with nt threads of pool
// p (nil: on the caller). The caller owns res.
func (k *kernels) matMul(res *resources, p *workerPool, nt int, out, x []float32, w *weights.Tensor, n int) {
	rows, cols := w.Rows(), w.Cols()
	_ = out[n*rows-1]
	_ = x[n*cols-1]
	if int64(len(w.Data)) < w.Bytes() {
		panic("layers: MatMul: weight " + w.Name + " is shorter than its shape")
	}
	g := &res.gemm
	*g = gemmTask{k: k, res: res, x: x, out: out, w: unsafe.Pointer(unsafe.SliceData(w.Data)), dt: dtypeOf(w),
		M: n, N: rows, K: cols}
	run := func(nt int) { g.runOn(p, nt) }
	if r := k.rounding(w.DType); r == RoundInt8 && (n <= gemvMaxN || k.gemmI8) {
		k.matMulI8(g, res, p, n, rows, cols, nt)
	} else if r == RoundBF16 && cols%2 == 0 {
		k.matMulBF(g, res, p, n, rows, cols, nt)
	} else if n <= gemvMaxN {
		g.phase = phaseGemv
		g.ap = x[:n*cols]
		if g.dt == C.STAR_BF16 {
			g.ap = res.shared.get(n * cols)
			C.star_pack_x(k.variant, g.dt, fptr(x), C.long(n), C.long(cols), fptr(g.ap))
		}
		g.items = (rows + 3) / 4 // blocks of 4 rows, claimed in runs of up to chunk
		g.chunk = max(4, g.items/(4*nt))
		run(min(nt, (g.items+3)/4))
	} else {
		panels := (n + k.mr - 1) / k.mr
		g.ap = res.shared.get(panels * k.mr * cols)
		g.phase = phasePackA
		g.chunk = max(1, panels/(4*nt))
		if n*cols < 1<<16 {
			run(1)
		} else {
			run(min(nt, panels))
		}
		g.phase = phaseCols
		be := w.DType.BlockElems()
		g.kc = min((gemmKC+be-1)/be*be, cols) // cols is whole blocks
		g.items = (rows + k.nr - 1) / k.nr    // blocks of NR columns, claimed in runs of up to chunk
		g.chunk = max(1, gemmNC/k.nr)
		run(min(nt, g.items))
	}
	g.x, g.out, g.ap, g.w, g.xq, g.xc, g.xs, g.dxn, g.dx16 = nil, nil, nil, nil, nil, nil, nil, nil, nil
}

// matMulBF is matMul with bfloat16 dot products (RoundBF16) for a BF16
// weight with rows of even length: x rounded to bfloat16, then
// matrix-vector (n <= gemvMaxN) or the bfloat16 GEMM (x packed as pairs).
func (k *kernels) matMulBF(g *gemmTask, res *resources, p *workerPool, n, rows, cols, nt int) {
	run := func(nt int) { g.runOn(p, nt) }
	if n <= gemvMaxN {
		xb := res.shared.get(n * cols / 2)
		C.star_to_bf16(fptr(g.x), C.long(n*cols), (*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(xb))))
		g.phase = phaseGemvBF
		g.xq = unsafe.Pointer(unsafe.SliceData(xb))
		g.items = (rows + 3) / 4
		g.chunk = max(4, g.items/(4*nt))
		run(min(nt, (g.items+3)/4))
		return
	}
	if k.amx {
		k.matMulAMX(g, res, p, n, cols, nt)
		return
	}
	panels := (n + k.mr - 1) / k.mr
	buf := res.shared.get(n*cols/2 + panels*k.mr*cols/2)
	xb, ap := buf[:n*cols/2], buf[n*cols/2:]
	C.star_to_bf16(fptr(g.x), C.long(n*cols), (*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(xb))))
	g.x, g.K, g.ap = xb, cols/2, ap // pack the pairs as floats of cols/2 columns
	g.phase = phasePackA
	g.chunk = max(1, panels/(4*nt))
	run(min(nt, panels))
	g.K = cols
	g.kc = min(gemmKC+gemmKC%2, cols) // whole pairs
	g.phase = phaseColsBF
	g.items = (rows + k.nr - 1) / k.nr
	g.chunk = max(1, gemmNC/k.nr)
	run(min(nt, g.items))
}

// matMulI8 is matMul with integer dot products (RoundInt8) for a
// quantized weight: x rounded to int8 per block of 32, then
// matrix-vector (n <= gemvMaxN) or the integer GEMM.
func (k *kernels) matMulI8(g *gemmTask, res *resources, p *workerPool, n, rows, cols, nt int) {
	run := func(nt int) { g.runOn(p, nt) }
	if n <= gemvMaxN {
		kp := (cols + 63) &^ 63
		q, b, b16 := n*kp/4, n*(kp/32+8), n*(kp/16+8) // floats of xq (and of xc); of xs (and dxn); of dx16
		buf := res.shared.get(2*q + 2*b + b16)
		xq, xc, xs, dxn, dx16 := buf[:q], buf[q:2*q], buf[2*q:2*q+b], buf[2*q+b:2*q+2*b], buf[2*q+2*b:]
		C.star_quant_x(g.dt, fptr(g.x), C.long(n), C.long(cols), (*C.int8_t)(unsafe.Pointer(unsafe.SliceData(xq))),
			(*C.int32_t)(unsafe.Pointer(unsafe.SliceData(xc))), fptr(xs), fptr(dxn), fptr(dx16))
		g.phase = phaseGemvI8
		g.xq, g.xc, g.xs, g.dxn, g.dx16 = unsafe.Pointer(unsafe.SliceData(xq)), unsafe.Pointer(unsafe.SliceData(xc)), xs, dxn, dx16
		g.items = (rows + 3) / 4
		g.chunk = max(4, g.items/(4*nt))
		run(min(nt, (g.items+3)/4))
		return
	}
	blk := 32 // weights per block
	if g.dt >= C.STAR_Q4_K {
		blk = 256
	}
	g.kc = min((gemmKC+blk-1)/blk*blk, cols)
	grp := 32
	if g.dt == C.STAR_Q6_K {
		grp = 16
	}
	// kern_i8.h's panel_a_bytes and panel_b_bytes
	g.panelA, g.panelB = cols*mri+8*(cols/grp)*mri, g.kc*nri+8*(g.kc/grp)*nri
	panels := (n + mri - 1) / mri
	g.ap = res.shared.get((panels*g.panelA + 3) / 4)
	g.phase = phasePackAI8
	g.chunk = max(1, panels/(4*nt))
	run(min(nt, panels))
	g.phase = phaseColsI8
	g.items = (rows + nri - 1) / nri
	g.chunk = max(1, gemmNC/nri)
	run(min(nt, g.items))
}

// matMulAMX is the GEMM on AMX tiles (kern_amx.h) for BF16 weights: x
// rounded to bfloat16 into panels of mra rows, then blocks of nri output
// columns.
func (k *kernels) matMulAMX(g *gemmTask, res *resources, p *workerPool, n, cols, nt int) {
	run := func(nt int) { g.runOn(p, nt) }
	// B panels of 2·gemmKC columns (512 by default, 32 KiB per 32 columns),
	// a multiple of 32
	kp := (cols + 31) &^ 31
	g.kc = min((2*gemmKC+31)/32*32, kp)
	g.panelB = g.kc * nri // bfloat16 per B panel
	panels := (n + mra - 1) / mra
	g.ap = res.shared.get((panels*int(C.star_panel_a_amx_elems(C.long(cols))) + 1) / 2)
	g.phase = phasePackAAMX
	g.chunk = max(1, panels/(4*nt))
	run(min(nt, panels))
	g.phase = phaseColsAMX
	g.items = (g.N + nri - 1) / nri
	g.chunk = max(1, gemmNC/nri)
	run(min(nt, g.items))
}

type attnTask struct {
	k                    *kernels
	res                  *resources
	q, out, lse          []float32
	kp, vp               unsafe.Pointer
	dt                   C.int
	khs, kts, vhs, vts   int
	nq, nk, H, HKV, D    int
	causal               C.int
	qb, nqb, items, wsSz int
	ns, ks               int       // key splits and keys per split
	pout, plse           []float32 // the splits' partial attentions: [ns][nq*H*D], [ns][nq*H]
	next                 atomic.Int64
}

func (a *attnTask) run(tid int) {
	ws := a.res.tws[tid].get(a.wsSz)
	for {
		it := int(a.next.Add(1) - 1)
		if it >= a.items {
			return
		}
		s := it % a.ns
		it /= a.ns
		// the longest (latest, under a causal mask) query blocks first
		qblk, kh := a.nqb-1-it/a.HKV, it%a.HKV
		i0 := qblk * a.qb
		i1 := min(i0+a.qb, a.nq)
		kb, ke := s*a.ks, min((s+1)*a.ks, a.nk)
		out, lse := a.out, a.lse
		if a.ns > 1 {
			out, lse = a.pout[s*a.nq*a.H*a.D:], a.plse[s*a.nq*a.H:]
		}
		C.star_attn(a.k.variant, fptr(a.q), a.kp, a.vp, a.dt, C.long(a.khs), C.long(a.kts), C.long(a.vhs), C.long(a.vts),
			fptr(out), fptr(lse), C.long(a.nq), C.long(a.nk), C.long(a.H), C.long(a.HKV), C.long(a.D), a.causal,
			C.long(i0), C.long(i1), C.long(kh), C.long(kb), C.long(ke), fptr(ws))
	}
}

// Key splits (flash-decoding): when the (kv head, query block) items are
// too few to keep every thread busy on a long key run, as in decoding
// (one query block), each item's keys are cut into splits, each its own
// work item with its own partial attention, merged exactly afterwards. The
// choice depends only on the shapes, never on the thread count, so a
// result has the same bits on any number of threads.
const (
	splitItems    = 64      // split while the items are fewer than this
	splitMinKeys  = 512     // keys per split, at least
	maxSplits     = 16      // splits at most (mergeRow keeps 16 parts on the stack)
	splitMaxFloat = 1 << 20 // partials at most (floats)
)

// keySplits is the split count and keys per split (a multiple of atk) of
// nk keys for items (kv head, query block) items of nq queries.
func keySplits(items, nk, nq, H, D, atk int) (ns, ks int) {
	ns = 1
	if items < splitItems && nk >= 2*splitMinKeys {
		ns = min(maxSplits, (splitItems+items-1)/items, nk/splitMinKeys, splitMaxFloat/(nq*H*(D+1)))
	}
	if ns <= 1 {
		return 1, max(nk, 1)
	}
	ks = ((nk+ns-1)/ns + atk - 1) / atk * atk
	return (nk + ks - 1) / ks, ks
}

func kvCDType(dt weights.DType) C.int {
	switch dt {
	case weights.F16:
		return C.STAR_F16
	case weights.BF16:
		return C.STAR_BF16
	}
	return C.STAR_F32
}

func spanPtr(sp *KVSpan) unsafe.Pointer {
	if sp.DType == weights.F32 {
		return unsafe.Pointer(unsafe.SliceData(sp.F))
	}
	return unsafe.Pointer(unsafe.SliceData(sp.H))
}

// attention is AttentionKV on the SIMD kernels; work items are (kv head,
// block of queries, key split), each covering all query heads of the kv
// head.
func (k *kernels) attention(res *resources, p *workerPool, nt int, out, lse, q []float32, kk, v KVSpan, nq, nk int, s AttnShape, causal bool) {
	H, HKV, D := s.H, s.HKV, s.D
	G := H / HKV
	_ = out[nq*H*D-1]
	_ = lse[nq*H-1]
	_ = q[nq*H*D-1]
	a := &res.attn
	*a = attnTask{k: k, res: res, q: q, out: out, lse: lse, nq: nq, nk: nk, H: H, HKV: HKV, D: D,
		dt: kvCDType(kk.DType), khs: kk.HeadStride, kts: kk.TokStride, vhs: v.HeadStride, vts: v.TokStride}
	if nk > 0 {
		a.kp, a.vp = spanPtr(&kk), spanPtr(&v)
	} else {
		a.kp, a.vp = unsafe.Pointer(unsafe.SliceData(q)), unsafe.Pointer(unsafe.SliceData(q)) // no key is read
	}
	if causal {
		a.causal = 1
	}
	a.qb = max(1, 4*k.mr/G)
	a.nqb = (nq + a.qb - 1) / a.qb
	a.ns, a.ks = keySplits(a.nqb*HKV, nk, nq, H, D, k.atk)
	a.items = a.nqb * HKV * a.ns
	a.wsSz = int(C.star_attn_ws(k.variant, C.long(min(a.qb, nq)*G), C.long(D)))
	if a.ns > 1 {
		buf := res.split.get(a.ns * nq * H * (D + 1))
		a.pout, a.plse = buf[:a.ns*nq*H*D], buf[a.ns*nq*H*D:]
	}
	if p == nil {
		runInline(a)
	} else {
		p.run(min(nt, a.items), a)
	}
	if a.ns > 1 {
		mergeSplits(out, lse, a.pout, a.plse, a.ns, nq*H, D)
	}
	a.q, a.out, a.lse, a.pout, a.plse, a.kp, a.vp = nil, nil, nil, nil, nil, nil, nil
}
