// Small C helpers for the MPI transport (declarations only: mpi_reduce.go
// uses //export, so its preamble may not hold definitions).
#ifndef STAR_COLLECTIVE_MPI_CGO_H
#define STAR_COLLECTIVE_MPI_CGO_H

#include <mpi.h>

// Handles that OpenMPI defines as addresses of globals, which cgo cannot
// always use as Go constants.
MPI_Comm star_world(void);
MPI_Datatype star_byte(void);
MPI_Datatype star_float(void);
MPI_Datatype star_int64(void);

// star_errors_return sets MPI_ERRORS_RETURN on MPI_COMM_WORLD.
int star_errors_return(void);

// star_allreduce_inplace is MPI_Allreduce(MPI_IN_PLACE, buf, ...) on
// MPI_COMM_WORLD.
int star_allreduce_inplace(void *buf, int count, MPI_Datatype dt, MPI_Op op);

// star_op_create creates the non-commutative user op whose function calls
// the Go side (starReduceGo).
int star_op_create(MPI_Op *op);

// star_local_split reports this rank's rank and size on its shared-memory
// node (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED).
int star_local_split(int *rank, int *size);

// Heartbeat rounds (collective/watchdog.go) on a communicator of their
// own: a duplicate of MPI_COMM_WORLD, a non-blocking MIN-allreduce of one
// int, and its test.
int star_comm_dup(MPI_Comm *out);
int star_iallreduce_min_int(const int *send, int *recv, MPI_Comm comm, MPI_Request *req);
int star_test(MPI_Request *req, int *flag);
int star_comm_free(MPI_Comm *comm);

#endif
