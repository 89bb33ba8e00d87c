/// Zero padding around a feature map, as `torch.nn.functional.pad`'s (left, right, top, bottom).
public struct Padding2D: Sendable, Equatable {
    public var left: Int, right: Int, top: Int, bottom: Int
    public init(left: Int, right: Int, top: Int, bottom: Int) {
        self.left = left; self.right = right; self.top = top; self.bottom = bottom
    }
    /// The same padding on every side (`nn.Conv2d(padding: p)`).
    public static func uniform(_ p: Int) -> Padding2D { Padding2D(left: p, right: p, top: p, bottom: p) }
    public static let zero = Padding2D.uniform(0)
}

/// How `conv2d` computes a 3×3 stride-1 convolution.
public enum ConvolutionAlgorithm: String, Sendable, CaseIterable {
    /// Winograd where it pays (planes of at least `Tensor.winogradMinimumPlane` outputs): F(2×2, 3×3) below
    /// `Tensor.winogradLargePlane`, `Tensor.winograd` (F(4×4, 3×3)) from there up; else im2col.
    case automatic
    /// Always im2col + GEMM (the direct algorithm).
    case im2col
    /// Winograd (`Tensor.winograd`) for every 3×3 stride-1 convolution with padding 1.
    case winograd
}

extension Tensor {
    /// The algorithm for 3×3 stride-1 convolutions (tests pin one to compare them).
    nonisolated(unsafe) public static var convolutionAlgorithm = ConvolutionAlgorithm.automatic

    /// Smallest output plane (height × width) that `.automatic` runs through Winograd. The transformed kernel is
    /// 4× the weight in Float32, built on every call, so with many channels on a small plane it costs about what
    /// the saved FLOPs gain. Measured on SD 1.5's UNet (`darkroom bench model`, best of 5, three rounds): from
    /// 32×32 up, 3.76–3.81 s a step against 4.08–4.34 s from 64×64 up; from 16×16 up, no faster than 32×32 and
    /// 0.4 GiB more memory.
    nonisolated(unsafe) public static var winogradMinimumPlane = 32 * 32

    /// The Winograd algorithm `.winograd` runs, and `.automatic` from `winogradLargePlane` up (`WinogradTransform`;
    /// tests and the bench pin another to compare them).
    nonisolated(unsafe) public static var winograd = WinogradTransform.f43

    /// Smallest output plane that `.automatic` runs through `winograd` (F(4×4, 3×3)); planes from
    /// `winogradMinimumPlane` up to this run F(2×2, 3×3). At SD resolutions this puts the UNet (latent planes up to
    /// 96×96 at 768 px), where guidance amplifies each step's rounding over the whole loop, on F(2×2, 3×3), whose
    /// error is within 2× of im2col's (F(4×4, 3×3): up to 7× RMS and 15× max; `darkroom bench winograd`), and keeps
    /// the VAE's large planes, whose error reaches the image once, on F(4×4, 3×3), where F(2×2, 3×3) would cost
    /// 1.4–1.6× the time. 0 runs F(4×4, 3×3) on every Winograd plane (Darkroom before issue 13, part 2).
    nonisolated(unsafe) public static var winogradLargePlane = 128 * 128

    /// Winograd runs its tiles in chunks of whole tile rows whose transformed input and product together stay
    /// under this many floats (16 MiB); a single tile row may exceed it.
    nonisolated(unsafe) public static var winogradChunkBudget = 4 << 20

    /// Upper bound of the im2col scratch buffer, in floats (16 MiB). A 3×3 convolution with 128 input
    /// channels at 512×512 would need 1.2 GB untiled; it runs in row tiles of this size instead.
    nonisolated(unsafe) public static var im2colBudget = 4 << 20

    /// `torch.nn.functional.conv2d` for `self` [N, C, H, W], weight [O, C, kh, kw], bias [O].
    ///
    /// 1×1 stride-1 convolutions are a single GEMM per image (W[O, C] · X[C, HW]). 3×3 stride-1 ones with
    /// padding 1 run as Winograd (`Tensor.winograd`, see `convolutionAlgorithm`). Others go through
    /// im2col in tiles of output rows, so the scratch stays under `im2colBudget` floats, and one GEMM
    /// per tile writes straight into the output: out[O, tile] = W[O, C·kh·kw] · cols[C·kh·kw, tile].
    public func conv2d(weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Padding2D = .zero) -> Tensor {
        precondition(rank == 4 && weight.rank == 4 && weight.dim(1) == dim(1),
                     "conv2d: input \(shape) does not fit weight \(weight.shape)")
        let (batch, inChannels, height, width) = (shape[0], shape[1], shape[2], shape[3])
        let (outChannels, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let outHeight = (height + padding.top + padding.bottom - kh) / stride + 1
        let outWidth = (width + padding.left + padding.right - kw) / stride + 1
        precondition(outHeight > 0 && outWidth > 0, "conv2d: input \(shape) too small for kernel \(kh)×\(kw)")
        let outPlane = outHeight * outWidth

        if let bias {
            precondition(bias.count == outChannels, "conv2d: bias \(bias.shape) does not fit weight \(weight.shape)")
        }
        if let transform = Tensor.winogradTransform(kh: kh, kw: kw, stride: stride, padding: padding, outPlane: outPlane) {
            return winogradConvolution(weight: weight, bias: bias, transform: transform)
        }
        var out = Tensor(uninitialized: [batch, outChannels, outHeight, outWidth])
        out.withUnsafeMutableBufferPointer { o in
            let o = o.baseAddress!
            // Bias first, then GEMMs accumulate into it (beta = 1).
            if let bias {
                bias.withUnsafeBufferPointer { b in
                    Parallel.forEach(batch * outChannels) { i in
                        (o + i * outPlane).initialize(repeating: b[i % outChannels], count: outPlane)
                    }
                }
            } else {
                o.initialize(repeating: 0, count: batch * outChannels * outPlane)
            }
            withUnsafeBufferPointer { x in
                weight.withUnsafeBufferPointer { w in
                    let x = x.baseAddress!, w = w.baseAddress!
                    let isPointwise = kh == 1 && kw == 1 && stride == 1 && padding == .zero
                    if isPointwise {
                        for n in 0..<batch {
                            BLAS.sgemm(m: outChannels, n: outPlane, k: inChannels,
                                       a: w, lda: inChannels, b: x + n * inChannels * height * width, ldb: outPlane,
                                       beta: 1, c: o + n * outChannels * outPlane, ldc: outPlane)
                        }
                        return
                    }
                    let patch = inChannels * kh * kw
                    let rowsPerTile = max(1, min(outHeight, Tensor.im2colBudget / max(patch * outWidth, 1)))
                    Tensor.withScratch(count: patch * rowsPerTile * outWidth) { cols in
                        let geometry = Im2col(channels: inChannels, height: height, width: width, kh: kh, kw: kw,
                                              stride: stride, padding: padding, outWidth: outWidth)
                        for n in 0..<batch {
                            let image = x + n * inChannels * height * width
                            var row0 = 0
                            while row0 < outHeight {
                                let rows = min(rowsPerTile, outHeight - row0)
                                geometry.fill(cols, from: image, outRows: row0..<(row0 + rows))
                                BLAS.sgemm(m: outChannels, n: rows * outWidth, k: patch,
                                           a: w, lda: patch, b: cols, ldb: rows * outWidth,
                                           beta: 1, c: o + n * outChannels * outPlane + row0 * outWidth, ldc: outPlane)
                                row0 += rows
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

extension Tensor {
    /// The 3×3 stride-1 padding-1 convolution of `self` [N, C, H, W] with `weight` [K, C, 3, 3] through the given
    /// Winograd algorithm, whatever `convolutionAlgorithm` says (`conv2d` calls it; the bench and the error tests
    /// compare the variants with it). Float32 products.
    public func winogradConvolution(weight: Tensor, bias: Tensor? = nil, transform: WinogradTransform) -> Tensor {
        do throws(OneDNNError) {
            return try winogradConvolution(weight: weight, bias: bias, transform: transform, products: .fp32)
        } catch {
            preconditionFailure("Float32 Winograd products run on OpenBLAS; only oneDNN throws: \(error)")
        }
    }

    /// The same with the n² products in `products` precision: `.bf16` rounds the transformed kernel and input to
    /// bfloat16 and multiplies on oneDNN with Float32 accumulation (throws if oneDNN fails).
    public func winogradConvolution(weight: Tensor, bias: Tensor? = nil, transform: WinogradTransform,
                                    products: Precision) throws(OneDNNError) -> Tensor {
        precondition(rank == 4 && weight.rank == 4 && weight.dim(1) == dim(1) && weight.dim(2) == 3 && weight.dim(3) == 3,
                     "winogradConvolution: input \(shape) does not fit weight \(weight.shape)")
        let (batch, inChannels, height, width) = (shape[0], shape[1], shape[2], shape[3])
        let outChannels = weight.shape[0]
        var out = Tensor(uninitialized: [batch, outChannels, height, width])
        let o = out.withUnsafeMutableBufferPointer { $0.baseAddress! }  // uniquely owned: stays valid below
        let x = withUnsafeBufferPointer { $0.baseAddress! }, w = weight.withUnsafeBufferPointer { $0.baseAddress! }
        let b = bias.map { bias in bias.withUnsafeBufferPointer { UnsafePointer($0.baseAddress!) } }
        // Winograd writes every output once, bias included.
        defer { withExtendedLifetime((self, weight, bias)) {} }
        try Winograd.convolve(input: x, batch: batch, channels: inChannels, height: height, width: width, weight: w,
                              bias: b, outChannels: outChannels, transform: transform, products: products, output: o)
        return out
    }

    /// The bf16 Winograd convolution with the kernel already transformed and rounded (`Weight.winogradKernelBFloat16`).
    func winogradConvolutionBF16(kernel: PackedMatrix, outChannels: Int, bias: Tensor?,
                                 transform: WinogradTransform) throws(OneDNNError) -> Tensor {
        precondition(rank == 4, "winogradConvolution: input \(shape) is not [N, C, H, W]")
        let (batch, inChannels, height, width) = (shape[0], shape[1], shape[2], shape[3])
        var out = Tensor(uninitialized: [batch, outChannels, height, width])
        let o = out.withUnsafeMutableBufferPointer { $0.baseAddress! }  // uniquely owned: stays valid below
        let x = withUnsafeBufferPointer { $0.baseAddress! }
        let b = bias.map { bias in bias.withUnsafeBufferPointer { UnsafePointer($0.baseAddress!) } }
        let u = UnsafePointer(kernel.data.bindMemory(to: UInt16.self, capacity: kernel.bytes / 2))
        defer { withExtendedLifetime((self, kernel, bias)) {} }
        try Winograd.convolve(input: x, batch: batch, channels: inChannels, height: height, width: width,
                              kernel: .bf16(u), bias: b, outChannels: outChannels, transform: transform, output: o)
        return out
    }

    /// The Winograd algorithm `conv2d` runs a convolution of this geometry with (`convolutionAlgorithm`), or nil
    /// for im2col / GEMM.
    static func winogradTransform(kh: Int, kw: Int, stride: Int, padding: Padding2D, outPlane: Int,
                                  minimumPlane: Int = Tensor.winogradMinimumPlane) -> WinogradTransform? {
        guard kh == 3 && kw == 3 && stride == 1 && padding == .uniform(1) else { return nil }
        switch Tensor.convolutionAlgorithm {
        case .automatic:
            guard outPlane >= minimumPlane else { return nil }
            return outPlane >= Tensor.winogradLargePlane ? Tensor.winograd : .f23
        case .im2col: return nil
        case .winograd: return Tensor.winograd
        }
    }

    /// Whether `conv2d` runs a convolution of this geometry through Winograd.
    static func usesWinograd(kh: Int, kw: Int, stride: Int, padding: Padding2D, outPlane: Int) -> Bool {
        winogradTransform(kh: kh, kw: kw, stride: stride, padding: padding, outPlane: outPlane) != nil
    }
}

/// The im2col unrolling of one image for a range of output rows: cols[(c, i, j), (y, x)].
struct Im2col {
    let channels: Int, height: Int, width: Int, kh: Int, kw: Int, stride: Int
    let padding: Padding2D, outWidth: Int

    func fill(_ cols: UnsafeMutablePointer<Float>, from image: UnsafePointer<Float>, outRows: Range<Int>) {
        let tileColumns = outRows.count * outWidth
        // One task per (channel, kernel row): each writes kw disjoint rows of `cols`.
        Parallel.forEachRange(channels * kh, grain: max(1, 4096 / max(tileColumns, 1))) { range in
            for task in range {
                let c = task / kh, i = task % kh
                let plane = image + c * height * width
                for j in 0..<kw {
                    var dst = cols + ((c * kh + i) * kw + j) * tileColumns
                    for y in outRows {
                        let sy = y * stride + i - padding.top
                        if sy < 0 || sy >= height {
                            dst.initialize(repeating: 0, count: outWidth)
                            dst += outWidth
                            continue
                        }
                        let src = plane + sy * width
                        let sx0 = j - padding.left
                        if stride == 1 {
                            // Contiguous run, zero-padded at both ends.
                            let first = max(0, -sx0), last = min(outWidth, width - sx0)
                            if first > 0 { dst.initialize(repeating: 0, count: first) }
                            if last > first { (dst + first).initialize(from: src + sx0 + first, count: last - first) }
                            if last < outWidth { (dst + max(last, first)).initialize(repeating: 0, count: outWidth - max(last, first)) }
                        } else {
                            for x in 0..<outWidth {
                                let sx = x * stride + sx0
                                dst[x] = (sx >= 0 && sx < width) ? src[sx] : 0
                            }
                        }
                        dst += outWidth
                    }
                }
            }
        }
    }
}
