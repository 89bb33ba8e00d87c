/// Finds NaN/inf in stored tensor data without decoding it: a value is non-finite exactly when its exponent
/// field is all ones, so one pass takes the maximum of `bits & exponentMask` (an integer max reduction, which
/// vectorises) and only a tensor that has one is searched for the first index.
enum NonFiniteScan {
    /// The index of the first NaN/inf element of `bytes` stored as `dtype`, nil when all are finite (and for
    /// dtypes without a NaN/inf encoding: integers, bool, F8_E4M3's NaN is checked as all-ones).
    static func firstNonFinite(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> Int? {
        switch dtype {
        case .f16: return scan(bytes, as: UInt16.self, mask: 0x7C00)
        case .bf16: return scan(bytes, as: UInt16.self, mask: 0x7F80)
        case .f32: return scan(bytes, as: UInt32.self, mask: 0x7F80_0000)
        case .f64: return scan(bytes, as: UInt64.self, mask: 0x7FF0_0000_0000_0000)
        default: return nil
        }
    }

    private static func scan<T: FixedWidthInteger & UnsignedInteger>(_ bytes: UnsafeRawBufferPointer, as type: T.Type, mask: T) -> Int? {
        let count = bytes.count / MemoryLayout<T>.size
        guard count > 0, let base = bytes.baseAddress else { return nil }
        var largest: T = 0
        if Int(bitPattern: base) % MemoryLayout<T>.alignment == 0 {
            let values = UnsafeBufferPointer(start: base.assumingMemoryBound(to: T.self), count: count)
            for v in values { largest = max(largest, v & mask) }
            guard largest == mask else { return nil }
            return values.firstIndex { $0 & mask == mask }
        }
        for i in 0..<count { largest = max(largest, bytes.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self) & mask) }
        guard largest == mask else { return nil }
        return (0..<count).first { bytes.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) & mask == mask }
    }
}
