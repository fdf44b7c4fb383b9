package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/star-attn/star/internal/shared"
)

// jsonLines decodes stdout's lines into maps.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stdout line is not JSON: %q", l)
		}
		rows = append(rows, m)
	}
	return rows
}

// hasFields fails unless every row has every field.
func hasFields(t *testing.T, rows []map[string]any, fields string) {
	t.Helper()
	for _, r := range rows {
		for _, f := range strings.Fields(fields) {
			if _, ok := r[f]; !ok {
				t.Fatalf("row %v has no %q", r, f)
			}
		}
	}
}

// `eval ppl --json`: one line per setting with the documented fields,
// the exact mode first; Star's ratio to it is 1 with one block and at
// least 1 with small blocks.
func TestEvalPPLContract(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	code, out, errOut := star(t, "eval", "ppl", "--model", model, "--file", "examples/stories.txt", "--context", "128",
		"--continuation", "32", "--max-windows", "4", "--block-size", "32,128", "--json", "--threads", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rows := jsonLines(t, out)
	hasFields(t, rows, "attention block anchor context windows scored_tokens nll nll_ratio")
	if len(rows) != 3 || rows[0]["attention"] != "global" || rows[0]["nll_ratio"] != 1.0 {
		t.Fatalf("rows %v: want global (ratio 1) then two star rows", rows)
	}
	for _, r := range rows {
		if r["context"] != 128.0 || r["windows"] != 4.0 || r["scored_tokens"] != 128.0 {
			t.Fatalf("row %v: want context 128, 4 windows, 128 scored tokens", r)
		}
	}
	if r := rows[2]; r["block"] != 128.0 || r["nll_ratio"] != 1.0 {
		t.Fatalf("one block: %v, want ratio 1", r)
	}
	if r := rows[1]; r["block"] != 32.0 || r["nll_ratio"].(float64) < 1 {
		t.Fatalf("blocks of 32: %v, want ratio >= 1", r)
	}
}

// `eval ruler --json`: one line per task x length x setting with the
// documented fields; --output gets the samples, one predictions file per
// setting, report.json and an SVG plot; a rerun resumes (answers
// nothing again) and reports the same.
func TestEvalRulerContract(t *testing.T) {
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	dir := filepath.Join(t.TempDir(), "out")
	args := []string{"eval", "ruler", "--model", model, "--lengths", "450,512", "--tasks", "niah_single_1,fwe", "--samples", "2",
		"--block-size", "64", "--output", dir, "--json", "--threads", "1"}
	code, out, errOut := star(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rows := jsonLines(t, out)
	hasFields(t, rows, "task length attention block anchor samples accuracy accuracy_pct_of_exact phase1_s ttft_s")
	if len(rows) != 2*2*2 {
		t.Fatalf("%d rows, want 8 (2 tasks x 2 lengths x 2 settings)", len(rows))
	}
	for i, r := range rows {
		wantAtt := []string{"global", "star"}[i%2]
		if r["attention"] != wantAtt || r["samples"] != 2.0 || (wantAtt == "star" && r["block"] != 64.0) {
			t.Fatalf("row %d: %v", i, r)
		}
	}
	for _, f := range []string{"samples.jsonl", "predictions-global.jsonl", "predictions-star-b64-aauto.jsonl", "report.json", "plot.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("--output has no %s: %v", f, err)
		}
	}
	checkSVG(t, filepath.Join(dir, "plot.svg"))
	var rep struct {
		Rows     []map[string]any `json:"rows"`
		Averages []map[string]any `json:"averages"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Rows) != 8 || len(rep.Averages) != 4 {
		t.Fatalf("report.json: %v, %d rows, %d averages", err, len(rep.Rows), len(rep.Averages))
	}
	code, again, errOut := star(t, args...)
	if code != 0 || !strings.Contains(errOut, "0 answered (0 failed), 8 already done") {
		t.Fatalf("rerun: exit %d, want every answer resumed: %s", code, errOut)
	}
	if strip(again) != strip(out) {
		t.Fatalf("the resumed report differs:\n%s\n%s", again, out)
	}
}

// strip drops the timing fields, which a rerun reads back unchanged
// but compares best without.
func strip(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		json.Unmarshal([]byte(l), &m)
		fmt.Fprintf(&b, "%v %v %v %v\n", m["task"], m["length"], m["attention"], m["accuracy"])
	}
	return b.String()
}

// checkSVG fails unless path is a well-formed SVG document with a plot.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("<?xml")) || !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("<path")) {
		t.Fatalf("%s is not an SVG plot: %q", path, clip(b, 200))
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
	}
}

// Under mpirun, ring attention over 2 ranks predicts what global
// attention predicts in one process, and gives the same perplexity.
func TestMPIEvalRingEqualsGlobal(t *testing.T) {
	needMPI(t)
	model := shared.Path(t, "models/stories260K/stories260K.bin")
	dir := t.TempDir()
	ruler := func(out string, att string) []string {
		return []string{"eval", "ruler", "--model", model, "--lengths", "480", "--tasks", "niah_single_1,niah_multikey_2,fwe", "--samples", "2",
			"--attention", att, "--block-size", "64", "--output", out, "--threads", "1"}
	}
	if code, _, errOut := star(t, ruler(filepath.Join(dir, "one"), "global")...); code != 0 {
		t.Fatalf("global in one process: exit %d: %s", code, errOut)
	}
	if code, _, errOut, _ := mpirun(t, mpiLimit, append([]string{"-np", "2"}, ruler(filepath.Join(dir, "two"), "star,ring")...)...); code != 0 {
		t.Fatalf("star,ring under mpirun: exit %d: %s", code, lastLines(errOut, 6))
	}
	g := readJobOutput(t, filepath.Join(dir, "one", "predictions-global.jsonl"))
	r := readJobOutput(t, filepath.Join(dir, "two", "predictions-ring.jsonl"))
	if len(g) != 6 || len(r) != 6 {
		t.Fatalf("%d global and %d ring predictions, want 6 each", len(g), len(r))
	}
	for k, p := range g {
		if fmt.Sprint(p.Tokens) != fmt.Sprint(r[k].Tokens) || p.Error != "" {
			t.Fatalf("%s: ring on 2 ranks %v, global %v %s", k, r[k].Tokens, p.Tokens, p.Error)
		}
	}
	ppl := []string{"eval", "ppl", "--model", model, "--file", "examples/stories.txt", "--context", "128", "--continuation", "32",
		"--max-windows", "3", "--json", "--threads", "1"}
	code, one, errOut := star(t, append(ppl, "--attention", "global")...)
	if code != 0 {
		t.Fatalf("ppl global: %s", errOut)
	}
	code, two, errOut, _ := mpirun(t, mpiLimit, append(append([]string{"-np", "2"}, ppl...), "--attention", "star,ring")...)
	if code != 0 {
		t.Fatalf("ppl star,ring under mpirun: exit %d: %s", code, lastLines(errOut, 6))
	}
	gl, rg := jsonLines(t, one)[0], jsonLines(t, two)[0]
	if rg["attention"] != "ring" || math.Abs(rg["nll"].(float64)-gl["nll"].(float64)) > 1e-5 {
		t.Fatalf("ring NLL %v, global %v", rg["nll"], gl["nll"])
	}
}
