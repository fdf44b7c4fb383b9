package jobs

import "sync"

// Stop is a one-time request to end a job early (a signal), safe to use
// from any goroutine. The zero value is not usable: call NewStop. A nil
// *Stop never stops.
type Stop struct {
	once sync.Once
	c    chan struct{}
	mu   sync.Mutex
	why  string
}

// NewStop returns a Stop not yet requested.
func NewStop() *Stop { return &Stop{c: make(chan struct{})} }

// Request asks the job to stop; why (e.g. "SIGTERM") is kept from the
// first request.
func (s *Stop) Request(why string) {
	s.once.Do(func() {
		s.mu.Lock()
		s.why = why
		s.mu.Unlock()
		close(s.c)
	})
}

// Requested reports whether Request was called.
func (s *Stop) Requested() bool {
	if s == nil {
		return false
	}
	select {
	case <-s.c:
		return true
	default:
		return false
	}
}

// Done is closed once Request is called (nil for a nil Stop: never).
func (s *Stop) Done() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.c
}

// Reason is what the first Request said ("" before).
func (s *Stop) Reason() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why
}
