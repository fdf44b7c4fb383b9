package collective

import "fmt"

// Error is a failed MPI call: the MPI function, its return code and class,
// and MPI_Error_string's text. Its message reads like
// "MPI_Gather: MPI_ERR_TRUNCATE: message truncated".
type Error struct {
	Op    string // MPI function that failed, e.g. "MPI_Gather"
	Code  int    // MPI return code
	Class int    // MPI_Error_class of Code
	Msg   string // MPI_Error_string(Code)
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("%s: MPI error code %d", e.Op, e.Code)
	}
	return e.Op + ": " + e.Msg
}
