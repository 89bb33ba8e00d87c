import CDNNL

/// Memory whose pages can leave the process's resident set and come back unchanged on the next access: a
/// read-only file mapping. A weight borrowed from one gives its pages back once a packed copy has replaced it in
/// the products (bf16 mode), so the file's pages and the copy are not resident together.
public protocol ReloadablePages: AnyObject {
    /// Drops the whole pages inside `byteCount` bytes from `pointer` (advisory).
    func releasePages(_ pointer: UnsafeRawPointer, byteCount: Int)
}

/// A weight matrix or convolution kernel kept as the checkpoint stores it, expanded to Float32 only while a
/// kernel uses it.
///
/// A 16-bit checkpoint (F16, or BF16) stays 16-bit in memory, straight from the file's mapping (no copy): an
/// SD 1.5 UNet is 1.7 GB instead of 3.4 GB, and loading it costs nothing up front. Each use converts the tensor
/// into reused scratch memory (`Tensor.withScratch`), exactly (every 16-bit value is a Float), so results are
/// bit-identical to converting everything at load. Float32 weights are used as they are.
public struct Weight: @unchecked Sendable {
    /// How the elements are stored.
    public enum Format: Sendable, Equatable { case float32, float16, bfloat16 }

    public let shape: [Int]
    public let format: Format
    private let tensor: Tensor?
    private let half: UnsafeRawPointer?
    private let owner: AnyObject?
    /// This weight converted for oneDNN's products (bf16 mode), made on first use and kept.
    let packedCache = PackedWeightCache()

    /// A Float32 weight.
    public init(_ tensor: Tensor) {
        shape = tensor.shape
        format = .float32
        self.tensor = tensor
        half = nil
        owner = nil
    }

    /// A 16-bit weight of `shape` at `pointer` (any alignment), in memory that `owner` keeps alive (e.g. a
    /// memory-mapped checkpoint).
    public init(shape: [Int], format: Format, borrowing pointer: UnsafeRawPointer, owner: AnyObject) {
        precondition(format != .float32, "Weight(borrowing:) is for 16-bit formats; wrap Float32 in a Tensor")
        self.shape = shape
        self.format = format
        tensor = nil
        half = pointer
        self.owner = owner
    }

    public var count: Int { Tensor.elementCount(shape) }

    /// Whether the elements are read in place from memory another object owns (a mapped checkpoint), not copied.
    public var isBorrowed: Bool { tensor?.isBorrowed ?? true }

    /// Bytes this weight occupies as stored.
    public var storedBytes: Int { count * (format == .float32 ? 4 : 2) }

    /// The same elements under another shape.
    public func reshaped(_ newShape: [Int]) -> Weight {
        precondition(Tensor.elementCount(newShape) == count, "cannot reshape weight \(shape) to \(newShape)")
        if let tensor { return Weight(tensor.reshaped(newShape)) }
        return Weight(shape: newShape, format: format, borrowing: half!, owner: owner!)
    }

    /// Calls `body` with the weight as a Float32 tensor. For 16-bit weights the tensor lives in scratch memory
    /// that is reused afterwards: it must not escape `body`.
    public func withFloat32<R>(_ body: (Tensor) throws -> R) rethrows -> R {
        if let tensor { return try body(tensor) }
        return try Tensor.withScratch(count: count) { scratch in
            HalfConversion.decode(format == .float16 ? .float16 : .bfloat16, from: half!, into: scratch, count: count)
            return try body(Tensor(shape: shape, borrowing: scratch, owner: Weight.scratchOwner))
        }
    }

    /// The weight as an owned Float32 tensor.
    public var float32: Tensor {
        if let tensor { return tensor }
        return Tensor(shape: shape) { HalfConversion.decode(format == .float16 ? .float16 : .bfloat16,
                                                            from: half!, into: $0.baseAddress!, count: count) }
    }

    /// The weight as the matrix [shape[0], rest] (or its transpose), converted to `type` and reordered into the
    /// layout `descriptor` (a primitive's chosen weights layout), once.
    func packed(for descriptor: dnnl_memory_desc_t, type: OneDNN.DataType, transposed: Bool) throws(OneDNNError) -> PackedMatrix {
        try packedCache.packed(descriptor, content: .matrix(transposed: transposed), source: storeSource(.matrix(transposed: transposed))) { () throws(OneDNNError) in
            try pack(into: descriptor, transposed: transposed)
        }
    }

    /// This 3×3 kernel [out, in, 3, 3] through `transform`'s kernel transform and rounded to bfloat16: U, the n²
    /// matrices [out × in] of the bf16 Winograd products, made once (it was remade on every call: 2–4 % of a bf16
    /// UNet step). The weight's own pages then leave the resident set, as after packing.
    func winogradKernelBFloat16(_ transform: WinogradTransform) throws(OneDNNError) -> PackedMatrix {
        precondition(shape.count == 4 && shape[2] == 3 && shape[3] == 3, "winogradKernelBFloat16: weight \(shape) is not 3×3")
        let (outChannels, channels) = (shape[0], shape[1])
        let nn = transform.inputTile * transform.inputTile
        let descriptor = try matrixDescriptor(nn * outChannels, channels, .bf16, strides: (channels, 1))
        return try packedCache.packed(descriptor, content: .winogradKernel(transform),
                                      source: storeSource(.winogradKernel(transform))) { () throws(OneDNNError) in
            defer { releaseSourcePages() }
            return try PackedMatrix(descriptor: descriptor) { data in
                withFloat32 { w in
                    w.withUnsafeBufferPointer { w in
                        Winograd.transformKernelBFloat16(w.baseAddress!, outChannels: outChannels, channels: channels,
                                                         transform: transform, into: data.bindMemory(to: UInt16.self, capacity: nn * outChannels * channels))
                    }
                }
            }
        }
    }

    /// The weight as the plain row-major matrix [shape[0], rest] (or its transpose) in `type`, once.
    func plainCopy(type: OneDNN.DataType, transposed: Bool) throws(OneDNNError) -> PackedMatrix {
        let rows = shape.first ?? 1, columns = count / max(rows, 1)
        let (r, c) = transposed ? (columns, rows) : (rows, columns)
        let descriptor = try matrixDescriptor(r, c, type, strides: (c, 1))
        return try packed(for: descriptor, type: type, transposed: transposed)
    }

    /// Where packed copies of this weight are kept between processes: the store of the checkpoint file its bytes
    /// are borrowed from, if it has one (never for a weight of its own, such as a LoRA-patched one).
    private func storeSource(_ content: PackedWeightCache.Content) -> (store: PackedWeightStore, key: PackedWeightStore.Key)? {
        let found: (store: PackedWeightStore, offset: Int)?
        if let half, let source = owner as? PackedWeightSource {
            found = source.packedWeightStore(for: half)
        } else if let tensor, let source = tensor.storage.owner as? PackedWeightSource {
            found = source.packedWeightStore(for: UnsafeRawPointer(tensor.storage.pointer))
        } else {
            found = nil
        }
        return found.map { ($0.store, PackedWeightStore.Key(offset: $0.offset, bytes: storedBytes, content: content.name)) }
    }

    /// The pages this weight's elements occupy in a file mapping go back to the page cache (no effect on copies).
    func releaseSourcePages() {
        if let half, let source = owner as? ReloadablePages {
            source.releasePages(half, byteCount: storedBytes)
        } else if let tensor, let source = tensor.storage.owner as? ReloadablePages {
            source.releasePages(UnsafeRawPointer(tensor.storage.pointer), byteCount: storedBytes)
        }
    }

    private func pack(into descriptor: dnnl_memory_desc_t, transposed: Bool) throws(OneDNNError) -> PackedMatrix {
        defer { releaseSourcePages() }
        let rows = shape.first ?? 1, columns = count / max(rows, 1)
        let result: Result<PackedMatrix, OneDNNError> = withFloat32 { tensor in
            tensor.withUnsafeBufferPointer { w in
                do throws(OneDNNError) {
                    return .success(transposed
                        ? try PackedMatrix(source: w.baseAddress!, rows: columns, columns: rows, strides: (1, columns), target: descriptor)
                        : try PackedMatrix(source: w.baseAddress!, rows: rows, columns: columns, strides: (columns, 1), target: descriptor))
                } catch { return .failure(error) }
            }
        }
        return try result.get()
    }

    /// Bytes of oneDNN copies this weight holds (bf16 mode).
    public var packedBytes: Int { packedCache.bytes }

    private final class ScratchOwner: Sendable {}
    private static let scratchOwner = ScratchOwner()
}
