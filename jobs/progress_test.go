package jobs

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/star-attn/star/rank"
)

// A run's phase 1 tells the log how far it is (star and global).
func TestPhase1ProgressInRun(t *testing.T) {
	for _, att := range []string{"star", "global"} {
		e := loadEngine(t, storiesModels[0].path, 0)
		var log bytes.Buffer
		e.Log, e.ProgressEvery = &log, time.Nanosecond
		ctx := make([]int, 300)
		for i := range ctx {
			ctx[i] = 1 + i%400
		}
		s := Settings{Settings: rank.Settings{Attention: rank.Attention(att), BlockSize: 100}, MaxTokens: 2}
		if att == "global" {
			s.Chunk = 50
		}
		if _, err := e.Generate(Tokens{Context: ctx, Query: []int{1, 2}}, s, nil); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log.String(), "star: phase 1: ") || !strings.Contains(log.String(), "% on rank 0") {
			t.Fatalf("%s: no progress lines in the log: %q", att, log.String())
		}
	}
}
