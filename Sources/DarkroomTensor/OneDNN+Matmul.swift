import CDNNL

/// One of the two operands of `OneDNN.gemm`.
enum GEMMOperand {
    /// A strided matrix in the product's data type: element (i, j) at `pointer + i·strides.0 + j·strides.1`.
    case matrix(UnsafeRawPointer, strides: (Int, Int))
    /// A weight W read as the 2-D matrix [shape[0], rest], or as its transpose: converted to the product's type once
    /// and cached on the weight (as B in oneDNN's packed layout; as A in plain row-major order).
    case weight(Weight, transposed: Bool)
}

extension OneDNN {
    /// C[m×n] = alpha · A[m×k] · B[k×n] (+ C when `accumulate`), C Float32 with leading dimension `ldc`, A and B in
    /// `type` (Float32 accumulation). Split over `Parallel.workers` when `parallel` (see `OneDNN`).
    static func gemm(m: Int, n: Int, k: Int, type: DataType, a: GEMMOperand, b: GEMMOperand,
                     c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float = 1, accumulate: Bool = false,
                     parallel: Bool = true) throws(OneDNNError) {
        guard m > 0, n > 0 else { return }
        BLAS.countFlops(2 * Double(m) * Double(n) * Double(k))
        // A weight as A is a plain row-major copy addressed like any matrix.
        var aMatrix: (UnsafeRawPointer, (Int, Int))
        switch a {
        case .matrix(let pointer, let strides): aMatrix = (pointer, strides)
        case .weight(let weight, let transposed):
            let plain = try weight.plainCopy(type: type, transposed: transposed)
            aMatrix = (UnsafeRawPointer(plain.data), (k, 1))
        }
        let threads = openMPThreads
        let workers = threads > 1 || !parallel ? 1 : max(1, Parallel.workers)
        // Split the rows when B is packed (its layout cannot be cut) or taller than wide, else the columns.
        let isPackedB: Bool
        if case .weight = b { isPackedB = true } else { isPackedB = false }
        let splitRows = isPackedB || m >= n
        let length = splitRows ? m : n
        let parts = max(1, min(workers, length / 64))
        let step = (length + parts - 1) / parts
        var failure: OneDNNError?
        let lock = Mutex()
        let pointers = UncheckedSendable((aMatrix, c))
        Parallel.forEachRange(parts, grain: 1) { range in
            for part in range {
                let start = part * step, count = min(step, length - start)
                guard count > 0 else { continue }
                do throws(OneDNNError) {
                    let ((aPointer, aStrides), c) = pointers.value
                    let (pm, pn) = splitRows ? (count, n) : (m, count)
                    let rowOffset = splitRows ? start : 0, columnOffset = splitRows ? 0 : start
                    func key(_ b: MatmulKey.Layout?) -> MatmulKey {
                        MatmulKey(m: pm, n: pn, k: k, a: .init(aStrides), b: b, ldc: ldc, type: type, alpha: alpha,
                                  accumulate: accumulate, threads: threads)
                    }
                    let aPart = aPointer + rowOffset * aStrides.0 * type.bytes, cPart = c + rowOffset * ldc + columnOffset
                    switch b {
                    case .matrix(let pointer, let strides):
                        try MatmulPrimitive.cached(key(.init(strides)))
                            .execute(a: aPart, b: pointer + columnOffset * strides.1 * type.bytes, c: cPart)
                    case .weight(let weight, let transposed):
                        let primitive = try MatmulPrimitive.cached(key(nil))
                        let packed = try weight.packed(for: primitive.weights, type: type, transposed: transposed)
                        try primitive.execute(a: aPart, b: UnsafeRawPointer(packed.data), c: cPart)
                    }
                } catch {
                    lock.withLock { if failure == nil { failure = error } }
                }
            }
        }
        if let failure { throw failure }
    }

    /// The implementation oneDNN chooses for an [m×k]·[k×n] product with packed weights (e.g.
    /// "brg:avx512_core_bf16"), for `darkroom bench kernels`.
    public static func implementation(m: Int, n: Int, k: Int, type: DataType) throws -> String {
        try MatmulPrimitive.cached(MatmulKey(m: m, n: n, k: k, a: .init((k, 1)), b: nil, ldc: n, type: type, alpha: 1,
                                             accumulate: false, threads: openMPThreads)).implementation
    }
}

struct MatmulKey: Hashable {
    struct Layout: Hashable {
        let rowStride: Int, columnStride: Int
        init(_ strides: (Int, Int)) { (rowStride, columnStride) = strides }
    }
    let m: Int, n: Int, k: Int
    let a: Layout
    /// nil: weights in the layout oneDNN chooses.
    let b: Layout?
    let ldc: Int
    let type: OneDNN.DataType
    let alpha: Float
    let accumulate: Bool
    let threads: Int
}

/// A created matmul primitive and the layouts it expects.
final class MatmulPrimitive: @unchecked Sendable {
    let primitive: dnnl_primitive_t
    let source: dnnl_memory_desc_t, weights: dnnl_memory_desc_t, destination: dnnl_memory_desc_t
    let scratchpadBytes: Int
    let implementation: String
    let threads: Int

    nonisolated(unsafe) private static var cache: [MatmulKey: MatmulPrimitive] = [:]
    private static let lock = Mutex()

    static func cached(_ key: MatmulKey) throws(OneDNNError) -> MatmulPrimitive {
        if let found = lock.withLock({ cache[key] }) { return found }
        let made = try MatmulPrimitive(key)
        return lock.withLock {
            if let raced = cache[key] { return raced }
            cache[key] = made
            return made
        }
    }

    private init(_ key: MatmulKey) throws(OneDNNError) {
        let engine = try OneDNN.engine.get()
        threads = key.threads
        var a = try matrixDescriptor(key.m, key.k, key.type, strides: (key.a.rowStride, key.a.columnStride))
        var b = try matrixDescriptor(key.k, key.n, key.type, strides: key.b.map { ($0.rowStride, $0.columnStride) })
        var c = try matrixDescriptor(key.m, key.n, .f32, strides: (key.ldc, 1))
        var desc = dnnl_matmul_desc_t()
        try check(dnnl_matmul_desc_init(&desc, &a, &b, nil, &c), "dnnl_matmul_desc_init")

        var attr: dnnl_primitive_attr_t?
        try check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attr) }
        try check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "dnnl_primitive_attr_set_scratchpad_mode")
        if key.alpha != 1 {
            var alpha = key.alpha
            try check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "dnnl_primitive_attr_set_output_scales")
        }
        if key.accumulate {
            var ops: dnnl_post_ops_t?
            try check(dnnl_post_ops_create(&ops), "dnnl_post_ops_create")
            defer { dnnl_post_ops_destroy(ops) }
            try check(dnnl_post_ops_append_sum(ops, 1), "dnnl_post_ops_append_sum")
            try check(dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops")
        }
        // Blocking is decided for the team size the calling thread will run with.
        OneDNN.setOpenMPThreads(key.threads)
        var pd: dnnl_primitive_desc_t?
        try check(dnnl_primitive_desc_create(&pd, &desc, attr, engine.handle, nil),
                  "dnnl_primitive_desc_create (matmul \(key.m)×\(key.k)×\(key.n) \(key.type))")
        defer { dnnl_primitive_desc_destroy(pd) }
        func query(_ what: dnnl_query_t) -> dnnl_memory_desc_t {
            dnnl_primitive_desc_query_md(pd, what, 0)?.pointee ?? dnnl_memory_desc_t()
        }
        source = query(dnnl_query_src_md)
        weights = query(dnnl_query_weights_md)
        destination = query(dnnl_query_dst_md)
        var scratchpad = query(dnnl_query_scratchpad_md)
        scratchpadBytes = dnnl_memory_desc_get_size(&scratchpad)
        var name: UnsafePointer<CChar>?
        implementation = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success
            ? name.map { String(cString: $0) } ?? "unknown" : "unknown"
        // Without AVX512 oneDNN 2.6 has no bf16 matmul but its reference loops, far slower than fp32: an error, so
        // the caller runs fp32 and says why.
        if key.type == .bf16 && implementation.hasPrefix("ref") {
            throw OneDNNError(call: "bf16 matmul: oneDNN has only its reference implementation (\(implementation)) on this CPU",
                              status: dnnl_unimplemented)
        }
        var made: dnnl_primitive_t?
        try check(dnnl_primitive_create(&made, pd), "dnnl_primitive_create (matmul)")
        guard let made else { throw OneDNNError(call: "dnnl_primitive_create", status: dnnl_runtime_error) }
        primitive = made
    }

    deinit { dnnl_primitive_destroy(primitive) }

    /// Runs the product on the calling thread (with `threads` OpenMP threads), with scratch memory of its own.
    func execute(a: UnsafeRawPointer, b: UnsafeRawPointer, c: UnsafeMutablePointer<Float>) throws(OneDNNError) {
        let engine = try OneDNN.engine.get()
        // At least LargeBlockCache's minimum, so the block is reused: fresh pages for every call (malloc maps
        // blocks of this size anew) had the kernel zeroing pages for a quarter of a bf16 UNet step.
        let scratchFloats = max((scratchpadBytes + 3) / 4, LargeBlockCache.minimumBytes / 4)
        let result: OneDNNError? = Tensor.withScratch(count: scratchFloats) { scratch in
            do throws(OneDNNError) {
                try withMemory(source, UnsafeMutableRawPointer(mutating: a)) { (src) throws(OneDNNError) in
                    try withMemory(weights, UnsafeMutableRawPointer(mutating: b)) { (wei) throws(OneDNNError) in
                        try withMemory(destination, UnsafeMutableRawPointer(c)) { (dst) throws(OneDNNError) in
                            var scratchMD = dnnl_memory_desc_t()
                            let size: [Int64] = [Int64(max(scratchpadBytes, 1))]
                            try check(dnnl_memory_desc_init_by_tag(&scratchMD, 1, size, dnnl_u8, dnnl_a), "dnnl_memory_desc_init_by_tag")
                            try withMemory(scratchMD, UnsafeMutableRawPointer(scratch)) { (pad) throws(OneDNNError) in
                                let args = [dnnl_exec_arg_t(arg: DNNL_ARG_SRC_0, memory: src),
                                            dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS_0, memory: wei),
                                            dnnl_exec_arg_t(arg: DNNL_ARG_DST_0, memory: dst),
                                            dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: pad)]
                                try engine.withStream { (stream) throws(OneDNNError) in
                                    OneDNN.setOpenMPThreads(threads)
                                    try check(dnnl_primitive_execute(primitive, stream, Int32(args.count), args), "dnnl_primitive_execute (matmul)")
                                    try check(dnnl_stream_wait(stream), "dnnl_stream_wait")
                                }
                            }
                        }
                    }
                }
                return nil
            } catch { return error }
        }
        if let result { throw result }
    }
}
