package collective

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// runRanks drives every rank of comms in its own goroutine. A rank whose
// fn fails aborts the group so the others stop waiting; a watchdog aborts
// after limit.
func runRanks(t *testing.T, comms []Comm, limit time.Duration, fn func(c Comm) error) []error {
	t.Helper()
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[r] = fn(c); errs[r] != nil {
				c.Abort(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		comms[0].Abort(99)
		<-done
		t.Fatalf("ranks still running after %v (deadlock?)", limit)
	}
	return errs
}

func TestLocalConformance(t *testing.T) {
	for n := 1; n <= 4; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			errs := runRanks(t, NewLocal(n), 30*time.Second, func(c Comm) error {
				return runConformance(confEnv{c: c, exactFold: true}, nil)
			})
			for _, err := range errs {
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
				}
			}
			for _, err := range errs {
				if err != nil && errors.Is(err, ErrClosed) && !t.Failed() {
					t.Error(err)
				}
			}
		})
	}
}

func TestSingle(t *testing.T) {
	c := Single()
	if c.Rank() != 0 || c.Size() != 1 {
		t.Fatalf("Single: rank %d size %d", c.Rank(), c.Size())
	}
	if err := runConformance(confEnv{c: c, exactFold: true}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestLocalAbortUnblocks(t *testing.T) {
	comms := NewLocal(4)
	got := make(chan error, 3)
	go func() { _, err := comms[0].RecvBytes(1, 0); got <- err }()
	go func() { got <- comms[2].Barrier() }()
	go func() {
		r, err := comms[3].IrecvF32(make([]float32, 8), 1, 0)
		if err == nil {
			err = r.Wait()
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	comms[1].Abort(3)
	for i := 0; i < 3; i++ {
		select {
		case err := <-got:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("blocked call returned %v, want ErrClosed", err)
			}
		case <-time.After(time.Minute): // bounds a hang
			t.Fatal("a blocked call did not return after Abort")
		}
	}
	if err := comms[0].SendBytes([]byte("x"), 1, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("SendBytes after Abort: %v, want ErrClosed", err)
	}
	if err := comms[1].BcastF32(make([]float32, 3), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("BcastF32 after Abort: %v, want ErrClosed", err)
	}
}

// Mismatched collectives fail on every rank instead of hanging or
// silently corrupting.
func TestLocalMismatch(t *testing.T) {
	cases := []struct {
		name string
		fn   func(c Comm) error
	}{
		{"bcast length", func(c Comm) error { return c.Bcast(make([]byte, 16-8*(c.Rank()%2)), 0) }},
		{"bcast root", func(c Comm) error { return c.BcastF32(make([]float32, 4), c.Rank()%2) }},
		{"different collectives", func(c Comm) error {
			if c.Rank() == 1 {
				return c.Barrier()
			}
			return c.Bcast(make([]byte, 4), 0)
		}},
		{"gather recv length", func(c Comm) error { return c.GatherF32(make([]float32, 2), make([]float32, 3), 0) }},
		{"allgather send length", func(c Comm) error {
			return c.AllgatherF32(make([]float32, 1+c.Rank()), make([]float32, 2*(1+c.Rank())))
		}},
		{"allreduce length", func(c Comm) error { return c.AllreduceF32(make([]float32, 2+2*c.Rank()), 2, affineOp) }},
		{"reduce panics", func(c Comm) error {
			return c.AllreduceF32(make([]float32, 2), 2, func(in, inout []float32, elem int) { panic("boom") })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			comms := NewLocal(2)
			errs := make([]error, len(comms))
			runRanks(t, comms, time.Minute, func(c Comm) error {
				errs[c.Rank()] = tc.fn(c) // no abort: the group must stay usable
				return nil
			})
			for r, err := range errs {
				if err == nil || errors.Is(err, ErrClosed) {
					t.Errorf("rank %d: got %v, want a mismatch error", r, err)
				}
			}
			// The group is still usable afterwards.
			errs = runRanks(t, comms, time.Minute, func(c Comm) error { return c.Barrier() })
			for r, err := range errs {
				if err != nil {
					t.Errorf("rank %d: barrier after mismatch: %v", r, err)
				}
			}
		})
	}
}

func TestLocalBadRoot(t *testing.T) {
	c := NewLocal(2)[0]
	if err := c.Bcast(nil, 2); err == nil {
		t.Error("Bcast root 2 of 2: no error")
	}
	if err := c.GatherF32(nil, nil, -1); err == nil {
		t.Error("GatherF32 root -1: no error")
	}
}

// Receives match messages in the order they were posted, not waited on.
func TestLocalIrecvPostingOrder(t *testing.T) {
	comms := NewLocal(2)
	a, b := make([]float32, 1), make([]float32, 1)
	ra, err := comms[1].IrecvF32(a, 0, 7)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := comms[1].IrecvF32(b, 0, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []float32{1, 2} {
		r, err := comms[0].IsendF32([]float32{v}, 1, 7)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rb.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := ra.Wait(); err != nil {
		t.Fatal(err)
	}
	if a[0] != 1 || b[0] != 2 {
		t.Errorf("first posted receive got %v, second %v; want 1, 2", a[0], b[0])
	}
	// A length mismatch is an error.
	r, _ := comms[0].IsendF32([]float32{1, 2, 3}, 1, 8)
	_ = r.Wait()
	rr, _ := comms[1].IrecvF32(make([]float32, 2), 0, 8)
	if err := rr.Wait(); err == nil || !strings.Contains(err.Error(), "3 floats arrived") {
		t.Errorf("IrecvF32 of 3 floats into 2: %v", err)
	}
}

// Sends copy: changing the buffer after SendBytes returns does not change
// the message.
func TestLocalSendCopies(t *testing.T) {
	comms := NewLocal(2)
	buf := []byte("hello")
	if err := comms[0].SendBytes(buf, 1, 0); err != nil {
		t.Fatal(err)
	}
	buf[0] = 'J'
	got, err := comms[1].RecvBytes(0, 0)
	if err != nil || string(got) != "hello" {
		t.Fatalf("RecvBytes = %q, %v", got, err)
	}
}

func TestNewLocalZero(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewLocal(0) did not panic")
		}
	}()
	NewLocal(0)
}

func TestLaunched(t *testing.T) {
	for _, k := range launcherEnv {
		t.Setenv(k, "x") // restores the original on cleanup
		os.Unsetenv(k)
	}
	if Launched() {
		t.Fatal("Launched() true with no launcher variable set")
	}
	for _, k := range launcherEnv {
		os.Setenv(k, "0")
		if !Launched() {
			t.Errorf("Launched() false with %s set", k)
		}
		os.Unsetenv(k)
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Op: "MPI_Gather", Code: 15, Class: 15, Msg: "MPI_ERR_TRUNCATE: message truncated"}
	if got, want := e.Error(), "MPI_Gather: MPI_ERR_TRUNCATE: message truncated"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := (&Error{Op: "MPI_Send", Code: 6}).Error(); got != "MPI_Send: MPI error code 6" {
		t.Errorf("Error() without text = %q", got)
	}
}
