// OpenBLAS's CBLAS interface plus its threading/config extensions (Debian: libopenblas-dev).
#include <cblas.h>
