// Package layers is the model math of a Llama-family transformer: plain
// functions on float32 slices, in the spirit of llama2.c's run.c. It does no
// I/O and no communication. Heavy kernels go through the small Compute
// interface so that other backends slot in without touching model code.
package layers

import "github.com/star-attn/star/weights"

// Compute is what a backend provides: the matrix products that dominate a
// forward pass and a way to spread independent work over its threads.
type Compute interface {
	// MatMul computes out[n, w.Rows] = x[n, w.Cols] · wᵀ for a stored
	// weight matrix w [rows=out, cols=in] of any supported dtype.
	MatMul(out, x []float32, w *weights.Tensor, n int)
	// Parallel calls f(lo, hi) on disjoint ranges covering [0, n), using up
	// to Threads() goroutines, and returns when all are done.
	Parallel(n int, f func(lo, hi int))
	// Threads is the number of worker threads.
	Threads() int
	// Name identifies the backend in logs and benchmarks.
	Name() string
}
