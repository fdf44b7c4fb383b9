//go:build !(cgo && (linux || darwin || freebsd))

package benchref

func Available() bool                        { return false }
func Config() string                         { return "" }
func SetThreads(n int)                       {}
func SgemmNT(c, a, b []float32, m, n, k int) { panic("benchref: OpenBLAS is not available") }
