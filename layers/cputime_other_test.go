//go:build !unix

package layers

func cpuSeconds() float64 { return 0 }
