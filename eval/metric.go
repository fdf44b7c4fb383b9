package eval

import (
	"math"
	"regexp"
	"strings"
)

// RULER's metrics (scripts/eval/synthetic/constants.py and evaluate.py).
// A prediction is first cleaned as RULER cleans it: trimmed, every
// control character (U+0000 to U+001F) turned into a line break, trimmed
// again. A reference counts when it occurs in the prediction, ignoring
// case.

var controls = regexp.MustCompile(`[\x00-\x1f]`)

// Clean is RULER's postprocess_pred.
func Clean(pred string) string {
	return strings.TrimSpace(controls.ReplaceAllString(strings.TrimSpace(pred), "\n"))
}

// contains is RULER's `r.lower() in pred.lower()`.
func contains(pred, ref string) bool {
	return strings.Contains(strings.ToLower(pred), strings.ToLower(ref))
}

// MatchAllScore is one prediction's string_match_all: the share of the
// references it contains (0 to 1).
func MatchAllScore(pred string, refs []string) float64 {
	if len(refs) == 0 {
		return 0
	}
	n := 0
	for _, r := range refs {
		if contains(pred, r) {
			n++
		}
	}
	return float64(n) / float64(len(refs))
}

// MatchPartScore is one prediction's string_match_part: 1 if it
// contains any reference.
func MatchPartScore(pred string, refs []string) float64 {
	for _, r := range refs {
		if contains(pred, r) {
			return 1
		}
	}
	return 0
}

// SampleScore is one prediction's score (0 to 1) under metric, after
// RULER's cleaning.
func SampleScore(metric, pred string, refs []string) float64 {
	pred = Clean(pred)
	if metric == MatchPart {
		return MatchPartScore(pred, refs)
	}
	return MatchAllScore(pred, refs)
}

// TaskScore is RULER's task score: the mean of the samples' scores in
// percent, rounded to two decimals as RULER rounds it.
func TaskScore(metric string, preds []string, refs [][]string) float64 {
	if len(preds) == 0 {
		return 0
	}
	var sum float64
	for i, p := range preds {
		sum += SampleScore(metric, p, refs[i])
	}
	return round2(100 * sum / float64(len(preds)))
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }
