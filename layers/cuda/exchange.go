package cuda

import (
	"fmt"

	"github.com/star-attn/star/layers"
	"github.com/star-attn/star/nccl"
)

// NCCL merges phase 2's partial attention across ranks on their GPUs
// (layers.Exchanger): each rank packs its (out, lse) rows on the device,
// an NCCL all-gather brings every rank's to every rank, and a kernel
// merges them in rank order, exactly. Only for ranks with a GPU each
// (NCCL refuses two ranks on one device); ranks sharing one merge through
// MPI from the host.
type NCCL struct {
	b          *Backend
	c          *nccl.Comm
	P          int      // ranks
	send, recv nccl.Ptr // [rows, D+1], [P, rows, D+1]
	rows       int      // rows the buffers hold
}

// NewNCCL joins rank of size ranks in the NCCL communicator id (made by
// rank 0 with nccl.NewUniqueID and sent to the others) on b's device.
func (b *Backend) NewNCCL(id nccl.UniqueID, rank, size int) (*NCCL, error) {
	c, err := b.d.NewComm(id, rank, size)
	if err != nil {
		return nil, err
	}
	return &NCCL{b: b, c: c, P: size}, nil
}

// Name is "nccl".
func (x *NCCL) Name() string { return "nccl" }

// Close frees the buffers and destroys the communicator.
func (x *NCCL) Close() error {
	x.free()
	return x.c.Close()
}

func (x *NCCL) free() {
	if x.send != 0 {
		x.b.d.Free(x.send)
		x.b.d.Free(x.recv)
	}
	x.send, x.recv, x.rows = 0, 0, 0
}

// Exchange merges the step's (out, lse) with every other rank's.
func (x *NCCL) Exchange(la layers.Attn) error {
	t, ok := la.(*attn)
	if !ok || t.a.b != x.b {
		return fmt.Errorf("nccl exchange: a %T step is not %s's", la, x.b.Name())
	}
	a, mc := t.a, &x.b.m.Cfg
	rows, D := a.n*mc.NHeads, mc.HeadDim
	if rows > x.rows {
		x.free()
		var err error
		if x.send, err = x.b.alloc(4 * int64(rows) * int64(D+1)); err != nil {
			return fmt.Errorf("nccl exchange buffers: %w", err)
		}
		if x.recv, err = x.b.alloc(4 * int64(x.P) * int64(rows) * int64(D+1)); err != nil {
			x.b.d.Free(x.send)
			x.send = 0
			return fmt.Errorf("nccl exchange buffers: %w", err)
		}
		x.rows = rows
	}
	k := x.b.k
	if err := k.Pack(x.send, a.att, a.lse, rows, D); err != nil {
		return err
	}
	if err := x.c.AllGatherF32(x.send, x.recv, rows*(D+1)); err != nil {
		return err
	}
	return k.MergePacked(a.att, a.lse, x.recv, x.P, rows, D)
}
