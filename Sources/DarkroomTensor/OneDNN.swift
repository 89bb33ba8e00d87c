import CDNNL
import Foundation

/// oneDNN's matrix product (`dnnl_matmul`), for the bf16 mode: bf16 operands, Float32 accumulation and Float32
/// output, on the AVX512-BF16 `brg:avx512_core_bf16` kernels where the CPU has them (oneDNN 2.6.3, Debian 12).
///
/// - Primitives are created once per shape and kept (`MatmulPrimitive.cache`).
/// - Weights are declared `dnnl_format_tag_any`, so oneDNN chooses its packed layout; each weight is converted and
///   reordered into it once (`PackedMatrix`, cached on the `Weight`).
/// - Threads: Debian builds oneDNN on OpenMP, whose team size is a per-thread setting and whose idle workers spin
///   (libgomp's default, about 3 ms after each parallel region) on the cores Darkroom's own loops and OpenBLAS
///   need next. So oneDNN runs single-threaded in the calling thread (`omp_set_num_threads(1)` before each use)
///   and Darkroom splits each product by rows or columns over `Parallel.workers` itself: no OpenMP pool ever
///   starts, and calls made from inside Darkroom's own workers (attention per thread) cannot oversubscribe.
///   `openMPThreads` > 1 instead lets OpenMP split one product (`darkroom bench kernels` compares both).
public enum OneDNN {
    /// Element type of the operands A and B (C is always Float32).
    public enum DataType: String, Sendable { case f32, bf16 }

    /// OpenMP threads inside one product (1: Darkroom splits the product over `Parallel.workers`).
    nonisolated(unsafe) public static var openMPThreads = 1

    /// oneDNN's version, e.g. "2.6.3".
    public static var version: String {
        guard let v = dnnl_version() else { return "unknown" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.patch)"
    }

    /// The CPU engine, or why it could not be made.
    static let engine: Result<Engine, OneDNNError> = {
        do throws(OneDNNError) { return .success(try Engine()) } catch { return .failure(error) }
    }()

    final class Engine: @unchecked Sendable {
        let handle: dnnl_engine_t
        private var streams: [dnnl_stream_t] = []
        private let lock = Mutex()

        init() throws(OneDNNError) {
            var engine: dnnl_engine_t?
            try check(dnnl_engine_create(&engine, dnnl_cpu, 0), "dnnl_engine_create")
            guard let engine else { throw OneDNNError(call: "dnnl_engine_create", status: dnnl_runtime_error) }
            handle = engine
        }

        /// Runs `body` with a stream no other thread uses meanwhile.
        func withStream<R>(_ body: (dnnl_stream_t) throws(OneDNNError) -> R) throws(OneDNNError) -> R {
            var stream = lock.withLock { streams.popLast() }
            if stream == nil {
                try check(dnnl_stream_create(&stream, handle, dnnl_stream_default_flags.rawValue), "dnnl_stream_create")
            }
            guard let stream else { throw OneDNNError(call: "dnnl_stream_create", status: dnnl_runtime_error) }
            defer { lock.withLock { streams.append(stream) } }
            return try body(stream)
        }
    }

    /// Sets the calling thread's OpenMP team size (libgomp's `omp_set_num_threads`, found at run time: it is
    /// oneDNN's dependency, not Darkroom's).
    static func setOpenMPThreads(_ count: Int) {
        setNumThreads?(Int32(max(1, count)))
    }

    private static let setNumThreads: (@convention(c) (Int32) -> Void)? = {
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_set_num_threads")
            .map { unsafeBitCast($0, to: (@convention(c) (Int32) -> Void).self) }
    }()
}

/// A oneDNN call failed: which one, and its status.
public struct OneDNNError: Error, CustomStringConvertible {
    public let call: String
    let status: dnnl_status_t
    public var description: String { "oneDNN: \(call) failed (\(OneDNNError.name(status)))" }

    static func name(_ status: dnnl_status_t) -> String {
        switch status {
        case dnnl_out_of_memory: return "out of memory"
        case dnnl_invalid_arguments: return "invalid arguments"
        case dnnl_unimplemented: return "unimplemented"
        case dnnl_runtime_error: return "runtime error"
        default: return "status \(status.rawValue)"
        }
    }
}

@inline(__always)
func check(_ status: dnnl_status_t, _ call: @autoclosure () -> String) throws(OneDNNError) {
    if status != dnnl_success { throw OneDNNError(call: call(), status: status) }
}

extension OneDNN.DataType {
    var dnnl: dnnl_data_type_t { self == .f32 ? dnnl_f32 : dnnl_bf16 }
    var bytes: Int { self == .f32 ? 4 : 2 }
}

/// A memory descriptor of a strided 2-D matrix, or `dnnl_format_tag_any`.
func matrixDescriptor(_ rows: Int, _ columns: Int, _ type: OneDNN.DataType,
                      strides: (Int, Int)?) throws(OneDNNError) -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    let dims: [Int64] = [Int64(rows), Int64(columns)]
    if let strides {
        let s: [Int64] = [Int64(strides.0), Int64(strides.1)]
        try check(dnnl_memory_desc_init_by_strides(&md, 2, dims, type.dnnl, s), "dnnl_memory_desc_init_by_strides")
    } else {
        try check(dnnl_memory_desc_init_by_tag(&md, 2, dims, type.dnnl, dnnl_format_tag_any), "dnnl_memory_desc_init_by_tag")
    }
    return md
}

/// A matrix in memory oneDNN described (a weight converted and reordered into a primitive's chosen layout, or a
/// plain bf16 copy), owned here.
final class PackedMatrix: @unchecked Sendable {
    var descriptor: dnnl_memory_desc_t
    let data: UnsafeMutableRawPointer
    let bytes: Int
    /// What keeps borrowed `data` alive (a `PackedWeightStore`'s mapping); nil: `data` is this object's own.
    private let owner: AnyObject?

    /// `source` [rows, columns] (Float32, with `strides`) converted and reordered into `target`.
    init(source: UnsafePointer<Float>, rows: Int, columns: Int, strides: (Int, Int),
         target: dnnl_memory_desc_t) throws(OneDNNError) {
        let engine = try OneDNN.engine.get()
        descriptor = target
        bytes = dnnl_memory_desc_get_size(&descriptor)
        data = try PackedMatrix.allocate(bytes: bytes)
        owner = nil
        do {
            var sourceMD = try matrixDescriptor(rows, columns, .f32, strides: strides)
            OneDNN.setOpenMPThreads(OneDNN.openMPThreads)
            var pd: dnnl_primitive_desc_t?
            try check(dnnl_reorder_primitive_desc_create(&pd, &sourceMD, engine.handle, &descriptor, engine.handle, nil),
                      "dnnl_reorder_primitive_desc_create")
            defer { dnnl_primitive_desc_destroy(pd) }
            var reorder: dnnl_primitive_t?
            try check(dnnl_primitive_create(&reorder, pd), "dnnl_primitive_create (reorder)")
            defer { dnnl_primitive_destroy(reorder) }
            try withMemory(sourceMD, UnsafeMutableRawPointer(mutating: source)) { (from) throws(OneDNNError) in
                try withMemory(descriptor, data) { (to) throws(OneDNNError) in
                    let args = [dnnl_exec_arg_t(arg: DNNL_ARG_SRC_0, memory: from), dnnl_exec_arg_t(arg: DNNL_ARG_DST_0, memory: to)]
                    try engine.withStream { (stream) throws(OneDNNError) in
                        try check(dnnl_primitive_execute(reorder, stream, 2, args), "dnnl_primitive_execute (reorder)")
                        try check(dnnl_stream_wait(stream), "dnnl_stream_wait")
                    }
                }
            }
        } catch {
            free(data)
            throw error
        }
    }

    /// `descriptor`'s memory, written by `fill`.
    init(descriptor: dnnl_memory_desc_t, fill: (UnsafeMutableRawPointer) -> Void) throws(OneDNNError) {
        self.descriptor = descriptor
        bytes = dnnl_memory_desc_get_size(&self.descriptor)
        data = try PackedMatrix.allocate(bytes: bytes)
        owner = nil
        fill(data)
    }

    /// A copy laid out as `descriptor` at `pointer`, in memory `owner` keeps (read only).
    init(descriptor: dnnl_memory_desc_t, borrowing pointer: UnsafeRawPointer, owner: AnyObject) {
        self.descriptor = descriptor
        bytes = dnnl_memory_desc_get_size(&self.descriptor)
        data = UnsafeMutableRawPointer(mutating: pointer)
        self.owner = owner
    }

    /// Large ones on transparent huge pages, as large tensors (TensorStorage): packing an SD 1.5 UNet's 1.7 GB
    /// faults it in 2 MiB at a time instead of 4 KiB.
    private static func allocate(bytes: Int) throws(OneDNNError) -> UnsafeMutableRawPointer {
        let large = bytes >= LargeBlockCache.minimumBytes
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, large ? 2 << 20 : 64, max(bytes, 64)) == 0, let raw else {
            throw OneDNNError(call: "allocating \(bytes) bytes for a packed weight", status: dnnl_out_of_memory)
        }
        if large { _ = madvise(raw, bytes, MADV_HUGEPAGE) }
        return raw
    }

    deinit { if owner == nil { free(data) } }
}

/// Runs `body` with a oneDNN memory object over `pointer`, laid out as `md`.
func withMemory<R>(_ md: dnnl_memory_desc_t, _ pointer: UnsafeMutableRawPointer?,
                   _ body: (dnnl_memory_t) throws(OneDNNError) -> R) throws(OneDNNError) -> R {
    let engine = try OneDNN.engine.get()
    var md = md
    var memory: dnnl_memory_t?
    try check(dnnl_memory_create(&memory, &md, engine.handle, pointer), "dnnl_memory_create")
    guard let memory else { throw OneDNNError(call: "dnnl_memory_create", status: dnnl_runtime_error) }
    defer { dnnl_memory_destroy(memory) }
    return try body(memory)
}

/// Weights converted for oneDNN, one entry per layout a primitive asked for (usually one). Lives on a `Weight`.
final class PackedWeightCache: @unchecked Sendable {
    /// What an entry holds: the weight's matrix [rows, rest] or its transpose, or a Winograd transformed kernel.
    enum Content: Equatable {
        case matrix(transposed: Bool)
        case winogradKernel(WinogradTransform)

        /// The name a `PackedWeightStore` files it under.
        var name: String {
            switch self {
            case .matrix(let transposed): return transposed ? "matrix transposed" : "matrix"
            case .winogradKernel(let transform): return "winograd \(transform.name)\(transform.kernelInDouble ? "" : " fp32 U")"
            }
        }
    }

    private let lock = Mutex()
    private var entries: [(content: Content, matrix: PackedMatrix)] = []

    /// The entry of `content` laid out as `descriptor`: from this cache, else from the checkpoint's store of packed
    /// copies (`source`: the store, and where the weight's bytes lie in its file), else made by `make` (and
    /// recorded in the store).
    func packed(_ descriptor: dnnl_memory_desc_t, content: Content,
                source: @autoclosure () -> (store: PackedWeightStore, key: PackedWeightStore.Key)?,
                make: () throws(OneDNNError) -> PackedMatrix) throws(OneDNNError) -> PackedMatrix {
        var wanted = descriptor
        // Made under the lock: the parts of one split product ask at the same time, and must share one copy.
        let result: Result<PackedMatrix, OneDNNError> = lock.withLock {
            if let found = entries.first(where: {
                $0.content == content && dnnl_memory_desc_equal(&$0.matrix.descriptor, &wanted) != 0
            }) { return .success(found.matrix) }
            // Only on a miss here (the first use of this layout): where the weight lies in its file.
            let source = source()
            if let source, let stored = source.store.lookup(source.key, descriptor: descriptor) {
                entries.append((content, stored))
                return .success(stored)
            }
            do throws(OneDNNError) {
                let made = try make()
                entries.append((content, made))
                if let source { source.store.record(source.key, made) }
                return .success(made)
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Bytes held.
    var bytes: Int { lock.withLock { entries.reduce(0) { $0 + $1.matrix.bytes } } }
}
