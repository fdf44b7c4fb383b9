package weights

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile memory-maps path read-only and returns its bytes and an unmap
// function. An empty file maps to an empty slice.
func mapFile(path string) ([]byte, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open model file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.IsDir() {
		return nil, nil, fmt.Errorf("%s is a directory, expected a file", path)
	}
	size := st.Size()
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	if size != int64(int(size)) {
		return nil, nil, fmt.Errorf("%s: file too large to map (%d bytes)", path, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}

// slice returns data[off:off+n] or an error naming what lies beyond the end.
func slice(data []byte, off, n int64, what string) ([]byte, error) {
	if off < 0 || n < 0 || off > int64(len(data)) || n > int64(len(data))-off {
		return nil, fmt.Errorf("%s: needs bytes [%d, %d) but the file has %d; the file is truncated or its header is corrupt",
			what, off, off+n, len(data))
	}
	return data[off : off+n], nil
}
