//go:build cgo && !nompi

#include "mpi_cgo.h"
#include "_cgo_export.h"

MPI_Comm star_world(void) { return MPI_COMM_WORLD; }
MPI_Datatype star_byte(void) { return MPI_BYTE; }
MPI_Datatype star_float(void) { return MPI_FLOAT; }
MPI_Datatype star_int64(void) { return MPI_INT64_T; }

int star_errors_return(void) {
	return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

int star_allreduce_inplace(void *buf, int count, MPI_Datatype dt, MPI_Op op) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, count, dt, op, MPI_COMM_WORLD);
}

// star_reduce_tramp is the MPI_User_function: it derives the element width
// from the (contiguous MPI_FLOAT) datatype and hands over to Go.
static void star_reduce_tramp(void *in, void *inout, int *len, MPI_Datatype *dt) {
	int bytes = 0;
	if (MPI_Type_size(*dt, &bytes) != MPI_SUCCESS) {
		bytes = 0; // Go side reports the bad element width
	}
	starReduceGo(in, inout, *len, bytes);
}

int star_op_create(MPI_Op *op) {
	return MPI_Op_create(star_reduce_tramp, 0 /* not commutative */, op);
}

int star_local_split(int *rank, int *size) {
	MPI_Comm node;
	int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
	if (rc != MPI_SUCCESS) return rc;
	rc = MPI_Comm_rank(node, rank);
	if (rc == MPI_SUCCESS) rc = MPI_Comm_size(node, size);
	int rc2 = MPI_Comm_free(&node);
	return rc != MPI_SUCCESS ? rc : rc2;
}

int star_comm_dup(MPI_Comm *out) { return MPI_Comm_dup(MPI_COMM_WORLD, out); }

int star_iallreduce_min_int(const int *send, int *recv, MPI_Comm comm, MPI_Request *req) {
	return MPI_Iallreduce(send, recv, 1, MPI_INT, MPI_MIN, comm, req);
}

int star_test(MPI_Request *req, int *flag) { return MPI_Test(req, flag, MPI_STATUS_IGNORE); }

int star_comm_free(MPI_Comm *comm) { return MPI_Comm_free(comm); }
