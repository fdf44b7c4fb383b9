// kern_i8.h on emu512's 16 lanes held as two AVX2 halves (e16 and ie16,
// kern_amd64.c), included by kern_amd64.c once per instantiation that uses
// them: emu512 (the whole file) and avx2 and avxvnni (the matrix-vector
// products alone). The includer defines SFX, the dot products IDPBUSD,
// IDPBUSD7 and IDPBUSDQ8 (see kern_i8.h), and STAR_I8_GEMV_ONLY for the
// matrix-vector products alone; kern_i8.h releases all of them.

#define VL 16
#define MRI 6
#define V e16
#define VZERO e16_zero
#define VLOAD e16_load
#define VSTORE e16_store
#define VBCAST e16_bcast
#define VSET1 e16_set1
#define VFMA e16_fma
#define VMUL e16_mul
#define VADD e16_add
#define VHSUM e16_hsum
#define IV ie16
#define IZERO ie16_zero
#define ILOAD ie16_load
#define IBCAST4 ie16_bcast4
#define ICVT ie16_cvt
#define IJOIN ie16_join
#define VPERM8 e16_perm8
#define IAND ie16_and
#define IOR ie16_or
#define ISET1B ie16_set1b
#define ISRL16 ie16_srl16
#define ISLL16 ie16_sll16
#define IBCAST32 ie16_bcast32
#define ISRLV16H ie16_srlv16h
#define IHEAD4 ie16_head4
#define ISHUFB ie16_shufb
#define IU8F ie16_u8f_lane
#define IF16P4 ie16_f16p4
#define VLO8(v) ((v).a)
#define VHI8(v) ((v).b)
#define IADD32 ie16_add32
#define ISEL128 ie16_sel128
#define VPERM16 e16_perm16
#define VF16X4 e16_f16x4
#define VBCAST4F e16_bcast4f
#include "kern_i8.h" // releases all of the above, and the includer's SFX, dot products and STAR_I8_GEMV_ONLY
