package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/star-attn/star/jobs"
	"github.com/star-attn/star/rank"
	"github.com/star-attn/star/weights"
	"github.com/star-attn/star/weights/tokenizer"
)

// cmdInspect describes a model and the memory a run needs.
func cmdInspect(c *cli.Context, stdout io.Writer) error {
	t0 := time.Now()
	m, err := loadModel(c, loadOptions{shapeOnly: true})
	if err != nil {
		return err
	}
	defer m.Close()
	ctxN := c.Int("context")
	if ctxN <= 0 {
		ctxN = m.Config.SeqLen
	}
	ranks := c.Int("ranks")
	if ranks <= 0 {
		return fmt.Errorf("--ranks %d must be positive", ranks)
	}
	kv, err := kvDType(c)
	if err != nil {
		return err
	}
	kvt, err := rank.ResolveKVDType(kv, m)
	if err != nil {
		return err
	}
	rep, err := jobs.Inspect(m, ctxN, c.Int("block-size"), c.Int("anchor-size"), ranks, kvt)
	if err != nil {
		return err
	}
	rep.LoadSeconds = time.Since(t0).Seconds()
	if rep.Device, err = inspectDevice(c.String("device")); err != nil {
		return err
	}
	if c.Bool("json") {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		rep.Print(stdout)
	}
	return rep.CheckDevice()
}

// cmdTokenize prints the ids of a text, or the text of ids.
func cmdTokenize(c *cli.Context, stdout io.Writer) error {
	var tok tokenizer.Tokenizer
	switch {
	case c.IsSet("tokenizer"):
		t, err := weights.LoadTokenizer(c.String("tokenizer"))
		if err != nil {
			return err
		}
		tok = t
	default:
		m, err := loadModel(c, loadOptions{})
		if err != nil {
			return err
		}
		defer m.Close()
		if err := needTokenizer(m); err != nil {
			return err
		}
		tok = m.Tokenizer
	}
	var text string
	switch {
	case c.IsSet("text") && c.IsSet("file"):
		return errors.New("give either --text or --file, not both")
	case c.IsSet("text"):
		text = c.String("text")
	case c.IsSet("file"):
		var err error
		if text, err = readText(c.String("file"), "text file", textLimit{}); err != nil {
			return err
		}
	default:
		return errors.New("nothing to tokenize: pass --text TEXT or --file FILE")
	}
	if c.Bool("decode") {
		ids, err := parseIDs(text, tok.VocabSize())
		if err != nil {
			return err
		}
		out := tok.Decode(ids)
		if c.Bool("json") {
			return json.NewEncoder(stdout).Encode(out)
		}
		_, err = fmt.Fprintln(stdout, out)
		return err
	}
	ids, err := tok.Encode(text, c.Bool("bos"))
	if err != nil {
		return err
	}
	// Written as they are formatted: a long text's ids are not built into
	// one string first (as JSON: the same bytes json.Marshal gives).
	sep, open, end := " ", "", "\n"
	if c.Bool("json") {
		sep, open, end = ",", "[", "]\n"
	}
	bw := bufio.NewWriterSize(stdout, 64<<10)
	bw.WriteString(open)
	var num []byte
	for i, id := range ids {
		if i > 0 {
			bw.WriteString(sep)
		}
		num = strconv.AppendInt(num[:0], int64(id), 10)
		bw.Write(num)
	}
	bw.WriteString(end)
	return bw.Flush()
}

// parseIDs reads ids separated by spaces, commas or brackets (a JSON array works).
func parseIDs(s string, vocab int) ([]int, error) {
	f := strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == ',' || r == '\n' || r == '\t' || r == '[' || r == ']' || r == '\r'
	})
	ids := make([]int, 0, len(f))
	for _, x := range f {
		id, err := strconv.Atoi(x)
		if err != nil {
			return nil, fmt.Errorf("--decode: %q is not a token id", x)
		}
		if id < 0 || id >= vocab {
			return nil, fmt.Errorf("--decode: id %d is outside the vocabulary [0, %d)", id, vocab)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
