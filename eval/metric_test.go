package eval

import "testing"

// RULER's metrics on hand-made predictions: a reference counts when it
// occurs in the cleaned prediction, ignoring case; string_match_all
// scores the share of references found, string_match_part whether any
// is.
func TestMetrics(t *testing.T) {
	cases := []struct {
		name      string
		pred      string
		refs      []string
		all, part float64
	}{
		{"exact", "8924583", []string{"8924583"}, 1, 1},
		{"inside a sentence", " The special magic number is 8924583.", []string{"8924583"}, 1, 1},
		{"missing", "I do not know.", []string{"8924583"}, 0, 0},
		{"two of four", "1111111 and 3333333", []string{"1111111", "2222222", "3333333", "4444444"}, 0.5, 1},
		{"case", "the ANSWER is Ada MOSS", []string{"ada moss"}, 1, 1},
		{"reference case", "ada moss", []string{"Ada Moss"}, 1, 1},
		{"surrounding white space", "  \n\t ABC xyz \n", []string{"abc xyz"}, 1, 1},
		{"control characters become line breaks", "abc\x01xyz", []string{"abc\nxyz"}, 1, 1},
		{"a control character is not a space", "abc\x01xyz", []string{"abc xyz"}, 0, 0},
		{"inner white space matters", "Winter  Gold", []string{"Winter Gold"}, 0, 0},
		{"a reference's own spaces count", "grey granite", []string{" grey granite"}, 0, 0},
		{"part: any alternative", "It was granite.", []string{"grey granite", "granite"}, 0.5, 1},
		{"repeats count once", "AB AB AB", []string{"AB", "CD"}, 0.5, 1},
		{"empty prediction", "", []string{"x"}, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := SampleScore(MatchAll, c.pred, c.refs); got != c.all {
				t.Errorf("string_match_all = %v, want %v", got, c.all)
			}
			if got := SampleScore(MatchPart, c.pred, c.refs); got != c.part {
				t.Errorf("string_match_part = %v, want %v", got, c.part)
			}
		})
	}
}

// A task's score is the mean over its samples in percent, rounded to two
// decimals as RULER rounds it; the tasks use RULER's metric each.
func TestTaskScore(t *testing.T) {
	preds := []string{"a b", "a", "nothing"}
	refs := [][]string{{"a", "b"}, {"a", "b"}, {"a", "b"}}
	if got := TaskScore(MatchAll, preds, refs); got != 50 {
		t.Fatalf("string_match_all over 3 samples = %v, want 50 ((1 + 0.5 + 0) / 3)", got)
	}
	if got := TaskScore(MatchPart, preds, refs); got != 66.67 {
		t.Fatalf("string_match_part over 3 samples = %v, want 66.67", got)
	}
	for _, task := range Tasks {
		want := MatchAll
		if task.kind == "qa" {
			want = MatchPart
		}
		if task.Metric != want {
			t.Errorf("%s scored with %s, RULER uses %s", task.Name, task.Metric, want)
		}
	}
}
