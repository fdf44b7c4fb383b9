// Package collectivetest is the conformance suite of collective.Comm:
// the checks that every implementation (Local and MPI today, a device
// collective.Comm such as NCCL later) must pass, written against the Comm interface.
// Every rank of a group runs the same table of checks; every check makes
// the same collective calls on every rank whatever it finds, and reports
// what it expected Stats to move by, which Run compares with Stats.
//
// Ranks in separate processes (MPI under mpirun) each call Run; ranks of
// one process (Local) run together with RunGroup.
package collectivetest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/star-attn/star/collective"
)

// Options describe the Comm under test.
type Options struct {
	// ExactFold: reductions are a strict left fold (Local), so even
	// inexact ops must match the in-order fold bitwise. MPI may regroup
	// (still in rank order), which only exact ops survive bitwise.
	ExactFold bool
	// MPIErrors: the Comm is collective.MPI, whose failed MPI calls must
	// return a *collective.Error naming the MPI function, with its text
	// and class.
	MPIErrors bool
	// Logf, if set, logs each check that passes.
	Logf func(format string, args ...any)
}

type confEnv struct {
	c         collective.Comm
	exactFold bool
	isMPI     bool
}

// tally is what a check expects Stats to move by.
type tally struct{ collective.Stats }

func (t *tally) call(bytes int64) {
	t.Calls++
	t.BytesSent += bytes
}

type confCheck struct {
	name string
	run  func(e confEnv, t *tally) error
}

var conformance = []confCheck{
	{"barrier", checkBarrier},
	{"bcast bytes", checkBcastBytes},
	{"bcast f32", checkBcastF32},
	{"gather f32", checkGather},
	{"allgather f32", checkAllgather},
	{"allgather bytes", checkAllgatherBytes},
	{"allreduce affine (elem 2)", checkAllreduceAffine},
	{"allreduce triangular (elem 3)", checkAllreduceTriangular},
	{"allreduce attention merge (elem D+1)", checkAllreduceMerge},
	{"send/recv bytes", checkSendRecv},
	{"isend/irecv ring", checkRing},
	{"argument errors", checkErrors},
	{"barrier again", checkBarrier},
}

// Run runs the suite on one rank of c's group; every rank must call it at
// the same time. It stops at the first failing check and returns its
// error; the caller should then abort the group, since the other ranks
// may be waiting in a collective.
func Run(c collective.Comm, o Options) error {
	e := confEnv{c: c, exactFold: o.ExactFold, isMPI: o.MPIErrors}
	for _, ck := range conformance {
		before := e.c.Stats()
		var want tally
		if err := ck.run(e, &want); err != nil {
			return fmt.Errorf("rank %d/%d: %s: %w", e.c.Rank(), e.c.Size(), ck.name, err)
		}
		after := e.c.Stats()
		got := collective.Stats{BytesSent: after.BytesSent - before.BytesSent, Calls: after.Calls - before.Calls}
		if got != want.Stats {
			return fmt.Errorf("rank %d/%d: %s: stats moved by %+v, want %+v", e.c.Rank(), e.c.Size(), ck.name, got, want.Stats)
		}
		if o.Logf != nil {
			o.Logf("rank %d/%d: %s ok (%+v)", e.c.Rank(), e.c.Size(), ck.name, got)
		}
	}
	return nil
}

// RunGroup runs the suite on every rank of comms, a group in this process,
// each rank in its own goroutine (see RunRanks), and fails t with each
// rank's error. The errors of ranks that only saw the group closed by
// another's failure (collective.ErrClosed) are reported only when no other
// rank failed.
func RunGroup(t *testing.T, comms []collective.Comm, o Options, limit time.Duration) {
	t.Helper()
	errs := RunRanks(t, comms, limit, func(c collective.Comm) error { return Run(c, o) })
	for _, err := range errs {
		if err != nil && !errors.Is(err, collective.ErrClosed) {
			t.Error(err)
		}
	}
	for _, err := range errs {
		if err != nil && errors.Is(err, collective.ErrClosed) && !t.Failed() {
			t.Error(err)
		}
	}
}

// RunRanks drives every rank of comms (a group in this process) in its own
// goroutine and returns each rank's error. A rank whose fn fails aborts
// the group so the others stop waiting; a watchdog aborts the group and
// fails t after limit.
func RunRanks(t *testing.T, comms []collective.Comm, limit time.Duration, fn func(c collective.Comm) error) []error {
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

// Deterministic test data.

func patByte(seed, i int) byte { return byte(uint32(seed*2654435761+i*40503) >> 13) }

func patBytes(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = patByte(seed, i)
	}
	return b
}

// patF32 includes values a transport must carry bit for bit: NaNs with
// payloads, -0, infinities, subnormals.
func patF32(seed, i int) float32 {
	switch (seed + i) % 11 {
	case 0:
		return math.Float32frombits(0x7fc00000 | uint32(seed*31+i)&0x3fffff)
	case 1:
		return float32(math.Copysign(0, -1))
	case 2:
		return float32(math.Inf(1 - 2*(i%2)))
	case 3:
		return math.Float32frombits(uint32(i%1000 + 1)) // subnormal
	}
	return float32(seed)*1000 + float32(i)*0.25
}

func patF32s(seed, n int) []float32 {
	f := make([]float32, n)
	for i := range f {
		f[i] = patF32(seed, i)
	}
	return f
}

func sameBits(a, b []float32) error {
	if len(a) != len(b) {
		return fmt.Errorf("length %d, want %d", len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return fmt.Errorf("element %d is %v (%#x), want %v (%#x)", i, a[i], math.Float32bits(a[i]), b[i], math.Float32bits(b[i]))
		}
	}
	return nil
}

func roots(size int) []int {
	rs := []int{0}
	if size > 2 {
		rs = append(rs, size/2)
	}
	if size > 1 {
		rs = append(rs, size-1)
	}
	return rs
}

func checkBarrier(e confEnv, t *tally) error {
	t.call(0)
	return e.c.Barrier()
}

func checkBcastBytes(e confEnv, t *tally) error {
	c := e.c
	var errs []error
	for _, n := range []int{0, 1, 7, 4099, 1 << 20} {
		for _, root := range roots(c.Size()) {
			seed := n + root
			buf := bytes.Repeat([]byte{0xEE}, n)
			if c.Rank() == root {
				buf = patBytes(seed, n)
			}
			var sent int64
			if c.Rank() == root {
				sent = int64(n) * int64(c.Size()-1)
			}
			t.call(sent)
			if err := c.Bcast(buf, root); err != nil {
				errs = append(errs, fmt.Errorf("Bcast(%d bytes, root %d): %w", n, root, err))
			} else if !bytes.Equal(buf, patBytes(seed, n)) {
				errs = append(errs, fmt.Errorf("Bcast(%d bytes, root %d): wrong bytes", n, root))
			}
		}
	}
	return errors.Join(errs...)
}

func checkBcastF32(e confEnv, t *tally) error {
	c := e.c
	var errs []error
	for _, n := range []int{0, 1, 1000, 1 << 18} { // 1<<18 floats = 1 MiB
		for _, root := range roots(c.Size()) {
			seed := 3*n + root
			buf := make([]float32, n)
			for i := range buf {
				buf[i] = -1
			}
			if c.Rank() == root {
				buf = patF32s(seed, n)
			}
			var sent int64
			if c.Rank() == root {
				sent = 4 * int64(n) * int64(c.Size()-1)
			}
			t.call(sent)
			if err := c.BcastF32(buf, root); err != nil {
				errs = append(errs, fmt.Errorf("BcastF32(%d, root %d): %w", n, root, err))
			} else if err := sameBits(buf, patF32s(seed, n)); err != nil {
				errs = append(errs, fmt.Errorf("BcastF32(%d, root %d): %w", n, root, err))
			}
		}
	}
	return errors.Join(errs...)
}

func checkGather(e confEnv, t *tally) error {
	c := e.c
	var errs []error
	for _, k := range []int{0, 1, 333} {
		for _, root := range roots(c.Size()) {
			send := patF32s(100*c.Rank()+k, k)
			var recv []float32
			if c.Rank() == root {
				recv = make([]float32, k*c.Size())
			}
			t.call(4 * int64(k))
			if err := c.GatherF32(send, recv, root); err != nil {
				errs = append(errs, fmt.Errorf("GatherF32(%d, root %d): %w", k, root, err))
				continue
			}
			if c.Rank() != root {
				continue
			}
			for r := 0; r < c.Size(); r++ {
				if err := sameBits(recv[r*k:(r+1)*k], patF32s(100*r+k, k)); err != nil {
					errs = append(errs, fmt.Errorf("GatherF32(%d, root %d) part of rank %d: %w", k, root, r, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func checkAllgather(e confEnv, t *tally) error {
	c := e.c
	var errs []error
	for _, k := range []int{0, 1, 1000} {
		send := patF32s(7*c.Rank()+k, k)
		recv := make([]float32, k*c.Size())
		t.call(4 * int64(k))
		if err := c.AllgatherF32(send, recv); err != nil {
			errs = append(errs, fmt.Errorf("AllgatherF32(%d): %w", k, err))
			continue
		}
		for r := 0; r < c.Size(); r++ {
			if err := sameBits(recv[r*k:(r+1)*k], patF32s(7*r+k, k)); err != nil {
				errs = append(errs, fmt.Errorf("AllgatherF32(%d) part of rank %d: %w", k, r, err))
			}
		}
	}
	return errors.Join(errs...)
}

// gatherLen gives rank r of size a message length: rank 0 empty, the last
// rank large, others small and uneven.
func gatherLen(r, size int) int {
	switch {
	case r == 0:
		return 0
	case r == size-1:
		return 100000 + r
	}
	return (r * 7919) % 13
}

func checkAllgatherBytes(e confEnv, t *tally) error {
	c := e.c
	var errs []error
	for round, lenOf := range []func(r int) int{
		func(r int) int { return gatherLen(r, c.Size()) },
		func(int) int { return 0 },
		func(r int) int { return 1 + r },
	} {
		send := patBytes(50*round+c.Rank(), lenOf(c.Rank()))
		t.call(int64(len(send)))
		got, err := c.AllgatherBytes(send)
		if err != nil {
			errs = append(errs, fmt.Errorf("AllgatherBytes round %d: %w", round, err))
			continue
		}
		if len(got) != c.Size() {
			errs = append(errs, fmt.Errorf("AllgatherBytes round %d: %d parts, want %d", round, len(got), c.Size()))
			continue
		}
		for r, g := range got {
			if want := patBytes(50*round+r, lenOf(r)); !bytes.Equal(g, want) {
				errs = append(errs, fmt.Errorf("AllgatherBytes round %d: part of rank %d has %d bytes, want %d (or differs)", round, r, len(g), len(want)))
			}
		}
		// Appending to one part must not clobber the next.
		for r := range got {
			got[r] = append(got[r], 0xAB, 0xCD)
		}
		for r, g := range got {
			want := append(patBytes(50*round+r, lenOf(r)), 0xAB, 0xCD)
			if !bytes.Equal(g, want) {
				errs = append(errs, fmt.Errorf("AllgatherBytes round %d: appending to the parts clobbered part %d", round, r))
			}
		}
	}
	return errors.Join(errs...)
}

// Reductions. Each op is non-commutative (or at least order-sensitive in
// rounding); the reference is the in-order fold acc = x0 ⊕ x1 ⊕ ... with
// op(in=acc, inout=x_r).

// AffineOp composes maps x -> a*x + b, lower rank applied first:
// (a1,b1) ⊕ (a2,b2) = (a2*a1, a2*b1 + b2). Exact for small integers.
func AffineOp(in, inout []float32, elem int) {
	for i := 0; i+1 < len(in); i += 2 {
		a1, b1, a2, b2 := in[i], in[i+1], inout[i], inout[i+1]
		inout[i], inout[i+1] = a2*a1, a2*b1+b2
	}
}

// TriOp multiplies upper-triangular 2x2 matrices [[a,b],[0,c]] stored as
// (a,b,c): lower M1, higher M2 -> M2*M1. Exact for small integers.
func TriOp(in, inout []float32, elem int) {
	for i := 0; i+2 < len(in); i += 3 {
		a1, b1, c1 := in[i], in[i+1], in[i+2]
		a2, b2, c2 := inout[i], inout[i+1], inout[i+2]
		inout[i], inout[i+1], inout[i+2] = a2*a1, a2*b1+b2*c1, c2*c1
	}
}

// MergeOp merges partial attention outputs: each element is D values
// followed by their log-sum-exp weight; -Inf weight means empty. It is a
// fixture shaped like star's merge (layers.MergePackedInto), not that
// merge: collective knows no models.
func MergeOp(in, inout []float32, elem int) {
	d := elem - 1
	for i := 0; i+elem <= len(in); i += elem {
		l1, l2 := float64(in[i+d]), float64(inout[i+d])
		if math.IsInf(l1, -1) {
			continue
		}
		if math.IsInf(l2, -1) {
			copy(inout[i:i+elem], in[i:i+elem])
			continue
		}
		m := math.Max(l1, l2)
		w1, w2 := math.Exp(l1-m), math.Exp(l2-m)
		s := w1 + w2
		for j := 0; j < d; j++ {
			inout[i+j] = float32((float64(in[i+j])*w1 + float64(inout[i+j])*w2) / s)
		}
		inout[i+d] = float32(m + math.Log(s))
	}
}

func inOrderFold(parts [][]float32, elem int, op collective.ReduceFunc) []float32 {
	acc := append([]float32{}, parts[0]...)
	for _, p := range parts[1:] {
		x := append([]float32{}, p...)
		op(acc, x, elem)
		acc = x
	}
	return acc
}

// checkedOp wraps op to record a wrong elem or uneven run lengths.
func checkedOp(op collective.ReduceFunc, elem int, bad *error) collective.ReduceFunc {
	return func(in, inout []float32, e int) {
		if e != elem || len(in) != len(inout) || len(in)%elem != 0 {
			if *bad == nil {
				*bad = fmt.Errorf("ReduceFunc called with elem %d (want %d), runs of %d and %d floats", e, elem, len(in), len(inout))
			}
			return
		}
		op(in, inout, e)
	}
}

func checkAllreduce(e confEnv, t *tally, elem int, op collective.ReduceFunc, data func(r, n int) []float32, exact bool) error {
	c := e.c
	var errs []error
	for _, n := range []int{0, 1, 3, 1000, 100000} { // elements
		parts := make([][]float32, c.Size())
		for r := range parts {
			parts[r] = data(r, n)
		}
		want := inOrderFold(parts, elem, op)
		buf := append([]float32{}, parts[c.Rank()]...)
		var bad error
		t.call(4 * int64(len(buf)))
		if err := c.AllreduceF32(buf, elem, checkedOp(op, elem, &bad)); err != nil {
			errs = append(errs, fmt.Errorf("AllreduceF32(%d x %d): %w", n, elem, err))
			continue
		}
		if bad != nil {
			errs = append(errs, fmt.Errorf("AllreduceF32(%d x %d): %w", n, elem, bad))
		}
		if exact || e.exactFold {
			if err := sameBits(buf, want); err != nil {
				errs = append(errs, fmt.Errorf("AllreduceF32(%d x %d) differs from the in-order fold: %w", n, elem, err))
			}
			continue
		}
		for i := range buf {
			// Inputs are O(1): regrouping costs absolute, not relative, error.
			if d := math.Abs(float64(buf[i] - want[i])); d > 1e-5+1e-5*math.Abs(float64(want[i])) || math.IsNaN(float64(buf[i])) {
				errs = append(errs, fmt.Errorf("AllreduceF32(%d x %d) element %d is %v, in-order fold gives %v", n, elem, i, buf[i], want[i]))
				break
			}
		}
	}
	return errors.Join(errs...)
}

func checkAllreduceAffine(e confEnv, t *tally) error {
	return checkAllreduce(e, t, 2, AffineOp, func(r, n int) []float32 {
		x := make([]float32, 2*n)
		for i := 0; i < n; i++ {
			x[2*i] = float32(1 + (r+i)%3)
			x[2*i+1] = float32((r*5+i)%7 - 3)
		}
		return x
	}, true)
}

func checkAllreduceTriangular(e confEnv, t *tally) error {
	return checkAllreduce(e, t, 3, TriOp, func(r, n int) []float32 {
		x := make([]float32, 3*n)
		for i := 0; i < n; i++ {
			x[3*i] = float32(1 + (r+i)%2)
			x[3*i+1] = float32((r*3+i)%3 - 1)
			x[3*i+2] = float32(1 + (r+2*i)%2)
		}
		return x
	}, true)
}

const mergeD = 4

func checkAllreduceMerge(e confEnv, t *tally) error {
	elem := mergeD + 1
	return checkAllreduce(e, t, elem, MergeOp, func(r, n int) []float32 {
		x := make([]float32, elem*n)
		for i := 0; i < n; i++ {
			for j := 0; j < mergeD; j++ {
				x[elem*i+j] = float32(math.Sin(float64(r*131+i*7+j))) * 3
			}
			if (r+i)%5 == 4 {
				x[elem*i+mergeD] = float32(math.Inf(-1)) // this rank saw nothing
			} else {
				x[elem*i+mergeD] = float32(math.Cos(float64(r*17+i))) * 10
			}
		}
		return x
	}, false)
}

// checkSendRecv exchanges messages between pairs (0,1), (2,3), ...; a rank
// without a partner talks to itself with small (eager) messages.
func checkSendRecv(e confEnv, t *tally) error {
	c := e.c
	partner := c.Rank() ^ 1
	sizes := []int{0, 13, 1 << 20}
	if partner >= c.Size() {
		partner = c.Rank()
		sizes = []int{0, 13} // a blocking send to self must be eager to complete
	}
	var errs []error
	send := func(n, tag int) {
		t.call(int64(n))
		if err := c.SendBytes(patBytes(1000*c.Rank()+n+tag, n), partner, tag); err != nil {
			errs = append(errs, fmt.Errorf("SendBytes(%d bytes to %d tag %d): %w", n, partner, tag, err))
		}
	}
	recv := func(n, tag int) {
		t.call(0)
		got, err := c.RecvBytes(partner, tag)
		if err != nil {
			errs = append(errs, fmt.Errorf("RecvBytes(from %d tag %d): %w", partner, tag, err))
		} else if want := patBytes(1000*partner+n+tag, n); !bytes.Equal(got, want) {
			errs = append(errs, fmt.Errorf("RecvBytes(from %d tag %d): %d bytes, want %d (or differ)", partner, tag, len(got), n))
		}
	}
	first := c.Rank() <= partner // sends first
	for _, n := range sizes {
		if first {
			send(n, 5)
			recv(n, 5)
		} else {
			recv(n, 5)
			send(n, 5)
		}
	}
	// Tags select messages; one tag stays in order. Small messages only, so
	// the sends complete before the receiver asks for them.
	if first {
		send(10, 1)
		send(20, 2)
		send(30, 1)
	}
	if !first || partner == c.Rank() {
		recv(20, 2)
		recv(10, 1)
		recv(30, 1)
	}
	if !first && partner != c.Rank() {
		send(11, 3)
	} else if partner != c.Rank() {
		recv(11, 3)
	}
	return errors.Join(errs...)
}

// checkRing: every rank sends to rank+1 and receives from rank-1 at once,
// with multi-MB buffers, sends posted before receives: only non-blocking
// calls get through without deadlock.
func checkRing(e confEnv, t *tally) error {
	c := e.c
	next, prev := (c.Rank()+1)%c.Size(), (c.Rank()+c.Size()-1)%c.Size()
	type xfer struct {
		tag, n int
		send   []float32
		recv   []float32
	}
	xs := []*xfer{{tag: 100, n: 1 << 20}, {tag: 101, n: 1000}, {tag: 102, n: 0}, {tag: 103, n: 3 << 19}}
	var reqs []collective.Request
	var errs []error
	for _, x := range xs {
		x.send = patF32s(10*c.Rank()+x.tag, x.n)
		x.recv = make([]float32, x.n)
		t.call(4 * int64(x.n))
		r, err := c.IsendF32(x.send, next, x.tag)
		if err != nil {
			return fmt.Errorf("IsendF32(%d to %d tag %d): %w", x.n, next, x.tag, err)
		}
		reqs = append(reqs, r)
	}
	for _, x := range xs {
		t.call(0)
		r, err := c.IrecvF32(x.recv, prev, x.tag)
		if err != nil {
			return fmt.Errorf("IrecvF32(%d from %d tag %d): %w", x.n, prev, x.tag, err)
		}
		reqs = append(reqs, r)
	}
	for i, r := range reqs {
		if err := r.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("Wait #%d: %w", i, err))
		}
	}
	for _, x := range xs {
		if err := sameBits(x.recv, patF32s(10*prev+x.tag, x.n)); err != nil {
			errs = append(errs, fmt.Errorf("ring tag %d from %d: %w", x.tag, prev, err))
		}
	}
	return errors.Join(errs...)
}

// checkErrors: calls that must fail on this rank alone, without hanging or
// crashing, and without touching the other ranks.
func checkErrors(e confEnv, t *tally) error {
	c := e.c
	bad := c.Size() + 3
	var errs []error
	expectErr := func(what string, err error, mpiOp string) {
		t.call(0)
		switch {
		case err == nil:
			errs = append(errs, fmt.Errorf("%s: no error", what))
		case mpiOp != "" && e.isMPI:
			var me *collective.Error
			if !errors.As(err, &me) || me.Op != mpiOp {
				errs = append(errs, fmt.Errorf("%s: error %q is not an MPI error from %s", what, err, mpiOp))
			}
		}
	}
	_, err := c.RecvBytes(bad, 0)
	expectErr(fmt.Sprintf("RecvBytes(from %d)", bad), err, "MPI_Mprobe")
	_, err = c.IrecvF32(make([]float32, 4), bad, 0)
	expectErr(fmt.Sprintf("IrecvF32(from %d)", bad), err, "MPI_Irecv")
	expectErr("SendBytes(to -1)", c.SendBytes([]byte("x"), -1, 0), "")
	expectErr("RecvBytes(tag -1)", func() error { _, err := c.RecvBytes(0, -1); return err }(), "")
	expectErr("AllreduceF32(5 floats, elem 2)", c.AllreduceF32(make([]float32, 5), 2, AffineOp), "")
	expectErr("AllreduceF32(elem 0)", c.AllreduceF32(make([]float32, 4), 0, AffineOp), "")
	expectErr("AllreduceF32(nil op)", c.AllreduceF32(make([]float32, 4), 2, nil), "")
	if e.isMPI {
		var me *collective.Error
		_, err := c.RecvBytes(bad, 0)
		t.call(0)
		if errors.As(err, &me) && (me.Msg == "" || me.Class == 0) {
			errs = append(errs, fmt.Errorf("MPI error lacks text or class: %#v", me))
		}
	}
	return errors.Join(errs...)
}
