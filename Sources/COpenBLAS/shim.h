// OpenBLAS's CBLAS declarations (Debian: libopenblas-dev), for their types only.
// The library itself is not linked: DarkroomTensor's OpenBLASLibrary dlopens libopenblas.so.0 on first use,
// after choosing the kernel set (OPENBLAS_CORETYPE) that OpenBLAS 0.3.21 cannot detect on newer AMD CPUs.
#include <cblas.h>
#include <dlfcn.h>
