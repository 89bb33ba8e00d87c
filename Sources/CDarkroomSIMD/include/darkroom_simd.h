// Small SIMD shims for what Swift cannot emit (issue 13). Each function has a Swift twin it is tested against
// (Tests/DarkroomTensorTests/BFloat16Tests.swift).
#ifndef DARKROOM_SIMD_H
#define DARKROOM_SIMD_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU (and the OS) runs AVX512_BF16 (vcvtne2ps2bf16), else 0.
int darkroom_has_avx512_bf16(void);

/// dst[i] = bfloat16 bits of src[i], rounded to nearest even, NaN quiet with its sign and top payload bits, by
/// vcvtne2ps2bf16 (32 values an instruction). Like every AVX512_BF16 conversion (and oneDNN's and PyTorch's on
/// these CPUs) it treats subnormal inputs as zero. Call only when darkroom_has_avx512_bf16() is 1.
void darkroom_encode_bf16_avx512(const float *src, uint16_t *dst, size_t count);

#endif
