package jobs

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The command line and batch records share these rules; every float
// setting is tried with NaN, both infinities, negative zero and values
// just out of range.
func TestCheckGeneration(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	cases := []struct {
		name  string
		s     Settings
		field string // "" : accepted
	}{
		{"defaults", Settings{MaxTokens: 256, Temperature: 0, TopP: 1}, ""},
		{"sampling", Settings{MaxTokens: 1, Temperature: 0.7, TopP: 0.9}, ""},
		{"negative zero temperature is greedy", Settings{MaxTokens: 1, Temperature: math.Copysign(0, -1), TopP: 1}, ""},
		{"huge finite temperature", Settings{MaxTokens: 1, Temperature: math.MaxFloat64, TopP: 1}, ""},
		{"tiny top_p", Settings{MaxTokens: 1, TopP: math.SmallestNonzeroFloat64}, ""},
		{"max max_tokens", Settings{MaxTokens: MaxGenTokens, TopP: 1}, ""},
		{"zero max_tokens", Settings{MaxTokens: 0, TopP: 1}, ""},
		{"NaN temperature", Settings{Temperature: nan, TopP: 1}, "temperature"},
		{"+Inf temperature", Settings{Temperature: inf, TopP: 1}, "temperature"},
		{"-Inf temperature", Settings{Temperature: -inf, TopP: 1}, "temperature"},
		{"negative temperature", Settings{Temperature: -0.5, TopP: 1}, "temperature"},
		{"NaN top_p", Settings{TopP: nan}, "top_p"},
		{"+Inf top_p", Settings{TopP: inf}, "top_p"},
		{"-Inf top_p", Settings{TopP: -inf}, "top_p"},
		{"zero top_p", Settings{TopP: 0}, "top_p"},
		{"negative zero top_p", Settings{TopP: math.Copysign(0, -1)}, "top_p"},
		{"top_p above 1", Settings{TopP: math.Nextafter(1, 2)}, "top_p"},
		{"negative max_tokens", Settings{MaxTokens: -1, TopP: 1}, "max_tokens"},
		{"huge max_tokens", Settings{MaxTokens: math.MaxInt64, TopP: 1}, "max_tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckGeneration(c.s)
			if c.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %+v", c.s)
			}
			if err.Field != c.field {
				t.Fatalf("names %q, want %q (%v)", err.Field, c.field, err)
			}
			flag := "--" + strings.ReplaceAll(c.field, "_", "-") + " "
			if !strings.HasPrefix(err.Flag(), flag) || !strings.Contains(err.Error(), `"`+c.field+`"`) {
				t.Fatalf("messages %q / %q do not name %s", err.Flag(), err.Error(), c.field)
			}
		})
	}
}

// Records go through the same checks, in JSON (where NaN and Inf cannot be
// written but 1e999 overflows to Inf) and in MessagePack (where they can).
func TestRecordGenerationSettings(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	json := []struct {
		name, line, field string
	}{
		{"temperature overflows to Inf", `{"context":"a","query":"q","temperature":1e999}`, "temperature"},
		{"top_p overflows to Inf", `{"context":"a","query":"q","top_p":1e999}`, "top_p"},
		{"max_tokens overflows", `{"context":"a","query":"q","max_tokens":1e999}`, "max_tokens"},
		{"max_tokens too large", `{"context":"a","query":"q","max_tokens":16777217}`, "max_tokens"},
		{"negative temperature in a query", `{"context":"a","queries":[{"query":"q","temperature":-1}]}`, "temperature"},
		{"negative zero top_p", `{"context":"a","query":"q","top_p":-0}`, "top_p"},
		{"top_p a string", `{"context":"a","query":"q","top_p":"1"}`, "top_p"},
		{"negative zero temperature", `{"context":"a","query":"q","temperature":-0.0}`, ""},
	}
	for _, c := range json {
		t.Run("jsonl/"+c.name, func(t *testing.T) {
			checkRecordErr(t, readAll(t, c.line+"\n", "jsonl"), c.field)
		})
	}
	mp := []struct {
		name  string
		rec   map[string]any
		field string
	}{
		{"NaN temperature", map[string]any{"context": "a", "query": "q", "temperature": nan}, "temperature"},
		{"Inf temperature", map[string]any{"context": "a", "query": "q", "temperature": inf}, "temperature"},
		{"NaN top_p", map[string]any{"context": "a", "query": "q", "top_p": nan}, "top_p"},
		{"-Inf top_p in a query", map[string]any{"context": "a", "queries": []any{map[string]any{"query": "q", "top_p": -inf}}}, "top_p"},
		{"NaN max_tokens", map[string]any{"context": "a", "query": "q", "max_tokens": nan}, "max_tokens"},
		{"float32 NaN temperature", map[string]any{"context": "a", "query": "q", "temperature": float32(nan)}, "temperature"},
		{"valid", map[string]any{"context": "a", "query": "q", "temperature": 0.5, "top_p": 0.5, "max_tokens": 3}, ""},
	}
	for _, c := range mp {
		t.Run("msgpack/"+c.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := msgpack.NewEncoder(&buf).Encode(c.rec); err != nil {
				t.Fatal(err)
			}
			checkRecordErr(t, readAll(t, buf.String(), "msgpack"), c.field)
		})
	}
}

func checkRecordErr(t *testing.T, recs []*Record, field string) {
	t.Helper()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	err := recs[0].Err
	if field == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), `"`+field+`"`) {
		t.Fatalf("error %v, want one naming %q", err, field)
	}
}
