package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DataFile is a RULER data file prepared elsewhere (Star Attention's
// ruler/data/prepare.py, or RULER's with the context and query split):
// JSON Lines with input_context, input_query and outputs, as the batch
// reader reads them, for one task.
type DataFile struct {
	Task Task
	Path string
}

// ParseDataFile reads a --data argument: TASK=FILE, or FILE in a folder
// named after its task (RULER writes TASK/validation.jsonl), or a file
// named TASK.jsonl.
func ParseDataFile(arg string) (DataFile, error) {
	name, path, ok := strings.Cut(arg, "=")
	if !ok {
		path = arg
		name = filepath.Base(filepath.Dir(path))
		if _, known := FindTask(name); !known {
			name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		}
	}
	t, known := FindTask(name)
	if !known {
		return DataFile{}, fmt.Errorf("--data %s: cannot tell its task from %q: give it as TASK=FILE with TASK one of %s", arg, name, strings.Join(TaskNames(), ", "))
	}
	return DataFile{Task: t, Path: path}, nil
}

// dataRecord is what a RULER data line must hold.
type dataRecord struct {
	Index        json.RawMessage `json:"index"`
	Context      *string         `json:"input_context"`
	Query        *string         `json:"input_query"`
	Outputs      []string        `json:"outputs"`
	Length       int             `json:"length"`
	AnswerPrefix string          `json:"answer_prefix"`
}

// chatText is a chat template written out as text: documents are always
// encoded as plain text, so such a file would reach the model as
// characters, not control tokens.
var chatText = []string{"<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>"}

// Read reads every sample of the file; the first line with a missing or
// mistyped field is refused, naming the line and the field. measure
// gives a sample's length in tokens when the file does not say it.
func (d DataFile) Read(measure func(*Sample) (int, error)) ([]*Sample, error) {
	f, err := os.Open(d.Path)
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	defer f.Close()
	var out []*Sample
	br := bufio.NewReaderSize(f, 1<<20)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			s, perr := d.sample(b, line, measure)
			if perr != nil {
				return nil, fmt.Errorf("--data %s line %d: %v", d.Path, line, perr)
			}
			out = append(out, s)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("--data %s: %w", d.Path, err)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--data %s holds no samples", d.Path)
	}
	length := 0
	for _, s := range out {
		length = max(length, s.Tokens)
	}
	for _, s := range out { // one group: the file's longest sample names its length
		s.Length = length
	}
	return out, nil
}

func (d DataFile) sample(b []byte, line int, measure func(*Sample) (int, error)) (*Sample, error) {
	var r dataRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("not a RULER record (JSON with input_context, input_query, outputs): %v", err)
	}
	switch {
	case r.Context == nil:
		return nil, fmt.Errorf(`missing "input_context"`)
	case r.Query == nil:
		return nil, fmt.Errorf(`missing "input_query"`)
	case len(r.Outputs) == 0:
		return nil, fmt.Errorf(`missing "outputs" (the references: an array of strings)`)
	case strings.TrimSpace(*r.Query) == "" || strings.TrimSpace(*r.Context) == "":
		return nil, fmt.Errorf(`empty "input_context" or "input_query"`)
	}
	for _, c := range chatText {
		if strings.Contains(*r.Context, c) || strings.Contains(*r.Query, c) {
			return nil, fmt.Errorf("the prompt spells the chat template's %s as text (prepared with a chat template?): star encodes documents as plain text; prepare the data with the base template and pass --chat", c)
		}
	}
	id := fmt.Sprint(line)
	if len(r.Index) > 0 {
		id = strings.Trim(string(r.Index), `"`)
	}
	s := &Sample{ID: fmt.Sprintf("%s/data/%s", d.Task.Name, id), Task: d.Task.Name, Context: *r.Context,
		Queries: []Query{{*r.Query, r.AnswerPrefix}}, MaxTokens: d.Task.Gen, Outputs: r.Outputs, Tokens: r.Length}
	if measure != nil { // in this model's tokens (the file's length is its own tokenizer's)
		n, err := measure(s)
		if err != nil {
			return nil, err
		}
		s.Tokens = n
	}
	return s, nil
}
