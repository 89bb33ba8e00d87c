/// Element types of the safetensors format, spelled as in the header's `"dtype"` field.
///
/// The first ten cases are the ones Darkroom works with. `U16`/`U32`/`U64` and the two
/// 8-bit float formats are also recognised so that a checkpoint which happens to contain
/// such a tensor (fp8 checkpoints, index buffers) still opens; their bytes are available
/// through `withRawBytes`, and the fp8 ones also convert through `floats`.
/// Sub-byte formats (`F4`, `F6_*`) and complex types are rejected as unknown.
public enum DType: String, Sendable, CaseIterable {
    case f64 = "F64"
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u8 = "U8"
    case bool = "BOOL"
    case u64 = "U64"
    case u32 = "U32"
    case u16 = "U16"
    /// 8-bit float, 4 exponent bits, 3 mantissa bits, finite-only ("fn": no infinities,
    /// S.1111.111 is NaN) — PyTorch's `float8_e4m3fn`.
    case f8e4m3 = "F8_E4M3"
    /// 8-bit float, 5 exponent bits, 2 mantissa bits (IEEE-like, the top byte of an F16).
    case f8e5m2 = "F8_E5M2"

    /// Size of one element in bytes.
    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        }
    }

    /// True for the dtypes `SafetensorsFile.floats` converts to `Float`.
    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2: return true
        case .i64, .i32, .i16, .i8, .u8, .bool, .u64, .u32, .u16: return false
        }
    }
}
