/// The layers' products with a `Weight`, in the precision `Tensor.precision` chooses. In fp32 these are exactly
/// `weight.withFloat32 { linear(weight: $0, …) }` and `conv2d`; in bf16 they run on oneDNN (see `Precision`), and
/// fall back to fp32 (reported once through `Precision.fallbackHandler`) if oneDNN fails.
extension Tensor {
    /// `torch.nn.functional.linear` with a stored weight [out, in].
    public func linear(weight: Weight, bias: Tensor? = nil) -> Tensor {
        if Tensor.precision == .bf16 {
            do throws(OneDNNError) { return try linearBF16(weight: weight, bias: bias) } catch { Precision.reportFallback(error) }
        }
        return weight.withFloat32 { linear(weight: $0, bias: bias) }
    }

    /// `torch.nn.functional.conv2d` with a stored weight [O, C, kh, kw].
    public func conv2d(weight: Weight, bias: Tensor? = nil, stride: Int = 1, padding: Padding2D = .zero) -> Tensor {
        if Tensor.precision == .bf16, rank == 4, weight.shape.count == 4 {
            let outPlane = Tensor.outputPlane(height: dim(2), width: dim(3), kernel: (weight.shape[2], weight.shape[3]),
                                              stride: stride, padding: padding)
            // Convolutions that Winograd takes run Winograd; with bf16 products for the transforms that allow it.
            if let transform = Tensor.bf16WinogradTransform(kh: weight.shape[2], kw: weight.shape[3], stride: stride,
                                                            padding: padding, outPlane: outPlane),
               Tensor.bf16WinogradTransforms.contains(transform) {
                do throws(OneDNNError) {
                    return try winogradConvolutionBF16(kernel: weight.winogradKernelBFloat16(transform), outChannels: weight.shape[0],
                                                       bias: bias, transform: transform)
                } catch { Precision.reportFallback(error) }
            } else if !Tensor.usesWinograd(kh: weight.shape[2], kw: weight.shape[3], stride: stride, padding: padding,
                                           outPlane: outPlane) {
                do throws(OneDNNError) {
                    return try conv2dBF16(weight: weight, bias: bias, stride: stride, padding: padding)
                } catch { Precision.reportFallback(error) }
            }
        }
        return weight.withFloat32 { conv2d(weight: $0, bias: bias, stride: stride, padding: padding) }
    }

    /// The Winograd algorithms whose products run in bf16 in the bf16 mode (the transforms stay Float32); the others
    /// stay Float32 Winograd there. F(2×2, 3×3) weighs each product's rounding by at most 1 on its way to the
    /// output, so bf16 U and V cost about what bf16 im2col does: relative L2 error 1.4–1.7× bf16 im2col's per
    /// convolution at the UNet's shapes (`darkroom bench winograd`), and a whole UNet call at 512 px stays below
    /// autocast's (`darkroom bench precision-error`). F(4×4, 3×3) weighs it by up to 8 · 8: its bf16 products were
    /// 7× bf16 im2col's error per convolution and made a VAE decode 2× autocast's, while running no faster than
    /// Float32 F(4×4) does.
    nonisolated(unsafe) public static var bf16WinogradTransforms: [WinogradTransform] = [.f23]

    /// Smallest output plane that `.automatic` runs through Winograd in the bf16 mode (`winogradMinimumPlane` is
    /// fp32's). bf16 Winograd kernels are transformed and packed once per weight (`Weight.winogradKernelBFloat16`),
    /// not on every call as fp32's are, so the UNet's 16×16 planes gain from F(2×2, 3×3) too: a guided 512 px SD 1.5
    /// step in five alternating rounds (`bench model --precision bf16 --winograd-smallest-side`, sgemm peak
    /// 186–213 GFLOP/s, 2026-12-04) took a median 4.54 s from 16×16 up against 4.84 s from 32×32 up, for 0.7 GiB
    /// more packed kernels (1.20 TFLOP of products against 1.31). From 8×8 up was no faster (4.48 s; 32 tile rows
    /// per product at batch 2) and held 0.35 GiB more.
    nonisolated(unsafe) public static var bf16WinogradMinimumPlane = 16 * 16

    /// The Winograd algorithm the bf16 mode runs a convolution of this geometry with: as `winogradTransform`, from
    /// `bf16WinogradMinimumPlane` up, and with F(2×2, 3×3) instead of F(4×4, 3×3) on the large planes where this
    /// machine runs that faster (`Precision.bf16OnLargePlanes`).
    static func bf16WinogradTransform(kh: Int, kw: Int, stride: Int, padding: Padding2D, outPlane: Int) -> WinogradTransform? {
        let transform = winogradTransform(kh: kh, kw: kw, stride: stride, padding: padding, outPlane: outPlane,
                                          minimumPlane: bf16WinogradMinimumPlane)
        guard Tensor.convolutionAlgorithm == .automatic, transform == Tensor.winograd, outPlane >= Tensor.winogradLargePlane,
              Precision.bf16OnLargePlanes else { return transform }
        return .f23
    }

    /// Output height × width of a convolution (0 when the kernel does not fit).
    static func outputPlane(height: Int, width: Int, kernel: (Int, Int), stride: Int, padding: Padding2D) -> Int {
        let h = (height + padding.top + padding.bottom - kernel.0) / max(stride, 1) + 1
        let w = (width + padding.left + padding.right - kernel.1) / max(stride, 1) + 1
        return max(h, 0) * max(w, 0)
    }

    /// Runs `body` with this tensor's elements rounded to bfloat16, in scratch memory.
    func withBFloat16<R>(_ body: (UnsafePointer<UInt16>) throws(OneDNNError) -> R) throws(OneDNNError) -> R {
        try Tensor.withBFloat16Scratch(count: count) { (half) throws(OneDNNError) in
            withUnsafeBufferPointer { HalfConversion.encodeBFloat16(from: $0.baseAddress!, into: half, count: count) }
            return try body(half)
        }
    }

    /// Runs `body` with uninitialised scratch memory for `count` bfloat16 values.
    static func withBFloat16Scratch<R>(count: Int, _ body: (UnsafeMutablePointer<UInt16>) throws(OneDNNError) -> R) throws(OneDNNError) -> R {
        // At least LargeBlockCache's minimum, so that the block is reused rather than mapped afresh (see
        // MatmulPrimitive.execute).
        let result: Result<R, OneDNNError> = withScratch(count: max((count + 1) / 2, LargeBlockCache.minimumBytes / 4)) { scratch in
            scratch.withMemoryRebound(to: UInt16.self, capacity: max(count, 2)) { half in
                do throws(OneDNNError) { return .success(try body(half)) } catch { return .failure(error) }
            }
        }
        return try result.get()
    }

    func linearBF16(weight: Weight, bias: Tensor?) throws(OneDNNError) -> Tensor {
        precondition(weight.shape.count == 2 && weight.shape[1] == dim(-1), "linear: input \(shape) does not fit weight \(weight.shape)")
        let inFeatures = weight.shape[1], outFeatures = weight.shape[0]
        let rows = count / max(inFeatures, 1)
        var out = Tensor(uninitialized: Array(shape.dropLast()) + [outFeatures])
        if let bias {
            precondition(bias.count == outFeatures, "linear: bias \(bias.shape) does not fit weight \(weight.shape)")
            out.withUnsafeMutableBufferPointer { c in
                bias.withUnsafeBufferPointer { b in
                    for r in 0..<rows { (c.baseAddress! + r * outFeatures).update(from: b.baseAddress!, count: outFeatures) }
                }
            }
        }
        let c = out.withUnsafeMutableBufferPointer { $0.baseAddress! }  // uniquely owned: stays valid below
        try withBFloat16 { (x) throws(OneDNNError) in
            try OneDNN.gemm(m: rows, n: outFeatures, k: inFeatures, type: .bf16,
                            a: .matrix(UnsafeRawPointer(x), strides: (inFeatures, 1)), b: .weight(weight, transposed: true),
                            c: c, ldc: outFeatures, accumulate: bias != nil)
        }
        return out
    }

    /// im2col (or nothing, for 1×1 stride-1) then one bf16 product per tile: out[O, tile] = W[O, C·kh·kw] · cols.
    func conv2dBF16(weight: Weight, bias: Tensor?, stride: Int, padding: Padding2D) throws(OneDNNError) -> Tensor {
        precondition(rank == 4 && weight.shape.count == 4 && weight.shape[1] == dim(1),
                     "conv2d: input \(shape) does not fit weight \(weight.shape)")
        let (batch, inChannels, height, width) = (shape[0], shape[1], shape[2], shape[3])
        let (outChannels, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let outHeight = (height + padding.top + padding.bottom - kh) / stride + 1
        let outWidth = (width + padding.left + padding.right - kw) / stride + 1
        precondition(outHeight > 0 && outWidth > 0, "conv2d: input \(shape) too small for kernel \(kh)×\(kw)")
        let outPlane = outHeight * outWidth
        var out = Tensor(uninitialized: [batch, outChannels, outHeight, outWidth])
        let o = out.withUnsafeMutableBufferPointer { $0.baseAddress! }  // uniquely owned: stays valid below
        if let bias {
            precondition(bias.count == outChannels, "conv2d: bias \(bias.shape) does not fit weight \(weight.shape)")
            bias.withUnsafeBufferPointer { b in
                Parallel.forEach(batch * outChannels) { i in (o + i * outPlane).initialize(repeating: b[i % outChannels], count: outPlane) }
            }
        } else {
            o.initialize(repeating: 0, count: batch * outChannels * outPlane)
        }
        if kh == 1 && kw == 1 && stride == 1 && padding == .zero {
            try withBFloat16 { (x) throws(OneDNNError) in
                for n in 0..<batch {
                    try OneDNN.gemm(m: outChannels, n: outPlane, k: inChannels, type: .bf16, a: .weight(weight, transposed: false),
                                    b: .matrix(UnsafeRawPointer(x + n * inChannels * outPlane), strides: (outPlane, 1)),
                                    c: o + n * outChannels * outPlane, ldc: outPlane, accumulate: true)
                }
            }
            return out
        }
        let patch = inChannels * kh * kw
        let rowsPerTile = max(1, min(outHeight, Tensor.im2colBudget / max(patch * outWidth, 1)))
        let geometry = Im2col(channels: inChannels, height: height, width: width, kh: kh, kw: kw,
                              stride: stride, padding: padding, outWidth: outWidth)
        try Tensor.withBFloat16Scratch(count: patch * rowsPerTile * outWidth) { (half) throws(OneDNNError) in
            let result: OneDNNError? = Tensor.withScratch(count: patch * rowsPerTile * outWidth) { cols in
                withUnsafeBufferPointer { x in
                    do throws(OneDNNError) {
                        for n in 0..<batch {
                            let image = x.baseAddress! + n * inChannels * height * width
                            var row0 = 0
                            while row0 < outHeight {
                                let rows = min(rowsPerTile, outHeight - row0)
                                geometry.fill(cols, from: image, outRows: row0..<(row0 + rows))
                                HalfConversion.encodeBFloat16(from: cols, into: half, count: patch * rows * outWidth)
                                try OneDNN.gemm(m: outChannels, n: rows * outWidth, k: patch, type: .bf16,
                                                a: .weight(weight, transposed: false),
                                                b: .matrix(UnsafeRawPointer(half), strides: (rows * outWidth, 1)),
                                                c: o + n * outChannels * outPlane + row0 * outWidth, ldc: outPlane,
                                                accumulate: true)
                                row0 += rows
                            }
                        }
                        return nil
                    } catch { return error }
                }
            }
            if let result { throw result }
        }
        return out
    }
}

extension OneDNN {
    /// `a` [..., M, K] · `weight` [K, N] in `type` on oneDNN (Float32 out), the weight packed once: what
    /// `darkroom bench kernels` times against OpenBLAS's sgemm.
    public static func matmul(_ a: Tensor, _ weight: Weight, type: DataType) throws -> Tensor {
        precondition(weight.shape.count == 2 && a.dim(-1) == weight.shape[0], "matmul: \(a.shape) × \(weight.shape)")
        let k = weight.shape[0], n = weight.shape[1], m = a.count / max(k, 1)
        var out = Tensor(uninitialized: Array(a.shape.dropLast()) + [n])
        let c = out.withUnsafeMutableBufferPointer { $0.baseAddress! }
        if type == .f32 {
            let x = a.withUnsafeBufferPointer { $0.baseAddress! }  // `a` outlives the call
            try gemm(m: m, n: n, k: k, type: .f32, a: .matrix(UnsafeRawPointer(x), strides: (k, 1)),
                     b: .weight(weight, transposed: false), c: c, ldc: n)
            withExtendedLifetime(a) {}
        } else {
            try a.withBFloat16 { (x) throws(OneDNNError) in
                try gemm(m: m, n: n, k: k, type: .bf16, a: .matrix(UnsafeRawPointer(x), strides: (k, 1)),
                         b: .weight(weight, transposed: false), c: c, ldc: n)
            }
        }
        return out
    }

    /// `a` [M, K] · `b` [K, N], both activations (converted to `type` per call, nothing cached): attention's
    /// products, for `darkroom bench kernels`.
    public static func matmul(_ a: Tensor, _ b: Tensor, type: DataType) throws -> Tensor {
        precondition(a.rank == 2 && b.rank == 2 && a.dim(1) == b.dim(0), "matmul: \(a.shape) × \(b.shape)")
        let (m, k, n) = (a.dim(0), a.dim(1), b.dim(1))
        var out = Tensor(uninitialized: [m, n])
        let c = out.withUnsafeMutableBufferPointer { $0.baseAddress! }
        if type == .f32 {
            let x = a.withUnsafeBufferPointer { $0.baseAddress! }, y = b.withUnsafeBufferPointer { $0.baseAddress! }
            try gemm(m: m, n: n, k: k, type: .f32, a: .matrix(UnsafeRawPointer(x), strides: (k, 1)),
                     b: .matrix(UnsafeRawPointer(y), strides: (n, 1)), c: c, ldc: n)
            withExtendedLifetime((a, b)) {}
        } else {
            try a.withBFloat16 { (x) throws(OneDNNError) in
                try b.withBFloat16 { (y) throws(OneDNNError) in
                    try gemm(m: m, n: n, k: k, type: .bf16, a: .matrix(UnsafeRawPointer(x), strides: (k, 1)),
                             b: .matrix(UnsafeRawPointer(y), strides: (n, 1)), c: c, ldc: n)
                }
            }
        }
        return out
    }
}
