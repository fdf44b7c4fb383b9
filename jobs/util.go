package jobs

import "math"

func expSafe(x float64) float64 {
	if x > 700 {
		return math.Inf(1)
	}
	return math.Exp(x)
}
