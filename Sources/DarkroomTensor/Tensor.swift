#if canImport(Glibc)
import Glibc
#endif

/// A dense, contiguous, row-major tensor of `Float` (images and feature maps are NCHW).
///
/// `Tensor` is a value: copies share storage until one of them is written (copy-on-write).
/// Kernels live in `Tensor+*.swift`; they check shapes with `precondition`, because a shape that
/// does not fit is a bug in the caller — checkpoint shapes are validated (and reported as errors)
/// when a model is loaded, long before a kernel sees them.
public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage

    /// A tensor of `shape` with every element `value`.
    public init(zeros shape: [Int]) {
        self.init(shape: shape, repeating: 0)
    }

    public init(shape: [Int], repeating value: Float) {
        let count = Tensor.elementCount(shape)
        self.shape = shape
        self.storage = TensorStorage(count: count)
        storage.pointer.initialize(repeating: value, count: count)
    }

    /// A tensor whose elements are `scalars`, in row-major order; `scalars.count` must equal the shape's element count.
    public init(shape: [Int], scalars: [Float]) {
        let count = Tensor.elementCount(shape)
        precondition(scalars.count == count, "Tensor(shape: \(shape)) needs \(count) scalars, got \(scalars.count)")
        self.shape = shape
        self.storage = TensorStorage(count: count)
        scalars.withUnsafeBufferPointer { storage.pointer.initialize(from: $0.baseAddress!, count: count) }
    }

    /// An uninitialised tensor, for kernels that write every element.
    @usableFromInline
    init(uninitialized shape: [Int]) {
        self.shape = shape
        self.storage = TensorStorage(count: Tensor.elementCount(shape))
    }

    /// A tensor whose elements `initializer` writes, all of them, without zero-filling first.
    public init(shape: [Int], initializingWith initializer: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        self.init(uninitialized: shape)
        try initializer(UnsafeMutableBufferPointer(start: storage.pointer, count: storage.count))
    }

    /// Wraps memory owned by `owner` (e.g. a memory-mapped weights file) without copying.
    /// The memory is read-only from the tensor's point of view: a write copies it first.
    public init(shape: [Int], borrowing pointer: UnsafePointer<Float>, owner: AnyObject) {
        self.shape = shape
        self.storage = TensorStorage(borrowing: pointer, count: Tensor.elementCount(shape), owner: owner)
    }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    /// Whether the elements live in memory another object owns (a mapped file), not in a copy of the tensor's own.
    public var isBorrowed: Bool { storage.isBorrowed }
    public var scalars: [Float] { withUnsafeBufferPointer { Array($0) } }

    /// `shape[i]`, with negative `i` counting from the end.
    public func dim(_ i: Int) -> Int { shape[i < 0 ? shape.count + i : i] }

    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: storage.count))
    }

    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        if !isKnownUniquelyReferenced(&storage) || storage.isBorrowed {
            storage = storage.copy()
        }
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: storage.count))
    }

    /// The same elements under another shape (one dimension may be -1).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().reduce(1) { $1.offset == inferred ? $0 : $0 * $1.element }
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            resolved[inferred] = count / known
        }
        precondition(Tensor.elementCount(resolved) == count, "cannot reshape \(shape) to \(newShape)")
        var result = self
        result.shape = resolved
        return result
    }

    public static func elementCount(_ shape: [Int]) -> Int {
        shape.reduce(1) { precondition($1 >= 0, "negative dimension in \(shape)"); return $0 * $1 }
    }
}

/// Aligned Float storage, owned or borrowed from another object's memory.
@usableFromInline
final class TensorStorage: @unchecked Sendable {
    @usableFromInline let pointer: UnsafeMutablePointer<Float>
    @usableFromInline let count: Int
    @usableFromInline let owner: AnyObject?
    @usableFromInline var isBorrowed: Bool { owner != nil }

    @usableFromInline
    init(count: Int) {
        self.count = count
        self.pointer = TensorStorage.allocate(bytes: max(count, 1) * MemoryLayout<Float>.stride)
            .bindMemory(to: Float.self, capacity: max(count, 1))
        self.owner = nil
    }

    /// Tensors of 4 MiB or more (weights, activations at 512²) are 2 MiB-aligned and marked for
    /// transparent huge pages: first touching fresh memory costs one fault per 2 MiB instead of one per
    /// 4 KiB, which dominated model loading. Smaller ones are 64-byte aligned (a cache line, an AVX-512
    /// register). Both come from `posix_memalign` and go back with `free`, large ones through `LargeBlockCache`.
    static let hugePage = 2 << 20

    static func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        let large = bytes >= LargeBlockCache.minimumBytes
        if large, let reused = LargeBlockCache.shared.take(bytes: bytes) { return reused }
        var raw: UnsafeMutableRawPointer?
        if posix_memalign(&raw, large ? hugePage : 64, bytes) != 0 || raw == nil {
            // Out of memory: as Swift's own allocation does, stop here rather than continue with garbage.
            preconditionFailure("cannot allocate \(bytes) bytes for a tensor")
        }
        if large, let raw { _ = madvise(raw, bytes, MADV_HUGEPAGE) }
        return raw.unsafelyUnwrapped
    }

    static func deallocate(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        if bytes >= LargeBlockCache.minimumBytes { LargeBlockCache.shared.put(pointer, bytes: bytes) } else { free(pointer) }
    }

    init(borrowing pointer: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = UnsafeMutablePointer(mutating: pointer)
        self.count = count
        self.owner = owner
    }

    @usableFromInline
    func copy() -> TensorStorage {
        let copy = TensorStorage(count: count)
        copy.pointer.initialize(from: pointer, count: count)
        return copy
    }

    deinit {
        if owner == nil { TensorStorage.deallocate(pointer, bytes: max(count, 1) * MemoryLayout<Float>.stride) }
    }
}

extension Tensor {
    /// Runs `body` with uninitialised scratch memory for `count` floats (im2col columns, attention scores), from
    /// the same allocator as tensors, so that large scratch blocks are reused rather than faulted in afresh.
    @usableFromInline
    static func withScratch<R>(count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = TensorStorage.allocate(bytes: bytes)
        defer { TensorStorage.deallocate(raw, bytes: bytes) }
        return try body(raw.bindMemory(to: Float.self, capacity: max(count, 1)))
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = withUnsafeBufferPointer { $0.prefix(6).map { String(format: "%.4g", $0) } }
        return "Tensor(\(shape), [\(head.joined(separator: ", "))\(count > 6 ? ", …" : "")])"
    }
}
