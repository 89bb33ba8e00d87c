// oneDNN's C API (Debian 12: libdnnl-dev, oneDNN 2.6.3, built with the OpenMP runtime). Debian ships no
// pkg-config file for it, so the module map links `dnnl` directly. Imported by DarkroomTensor only
// (OneDNN.swift): bf16 matrix products with Float32 accumulation.
#include <oneapi/dnnl/dnnl.h>
