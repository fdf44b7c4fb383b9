package collective

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

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
