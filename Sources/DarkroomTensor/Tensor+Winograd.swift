/// The matrices of one Winograd algorithm F(m×m, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
/// Networks", 2016): each m×m block of output comes from an n×n block of input, n = m + 2, with n² products per
/// channel pair instead of 9m², so a 3×3 stride-1 convolution runs n² GEMMs of [out × in]·[in × tiles].
///
///     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A        g: 3×3 kernel, d: n×n input tile, Y: m×m output tile
///
/// The matrices follow from the interpolation points (Toom-Cook); `tools/reference/winograd_matrices.py` derives
/// them in exact rationals, checks the identity and prints the literals below. Bᵀ and Aᵀ hold dyadic rationals
/// (exact in Float32); G may not (1/3, 1/15), so the kernel transform runs in Double and is rounded once.
///
/// Why the points matter (issue 13, part 2): every transformed product M_ξ carries the GEMM's Float32 rounding,
/// and Aᵀ · A weighs it by up to |a_i|³·|a_j|³ on its way to Y. With 0, ±1, ±2 the largest weight is 8 · 8, and
/// Winograd's error was up to 11× im2col's (RMS) and 45× (max) at SD shapes (`darkroom bench winograd`); with
/// 0, ±1, ½, −2 the large weights sit on one side only, and it is up to 7× (RMS) and 15× (max).
/// F(2×2, 3×3) (0, ±1) weighs every product by at most 1 and is within 2× of im2col, at 2.25× fewer
/// multiplications instead of 4×.
public struct WinogradTransform: Sendable, Equatable, CustomStringConvertible {
    /// A short name for the bench and the logs.
    public let name: String
    /// m: the side of an output tile. An input tile has side m + 2.
    public let outputTile: Int
    /// Whether U = G g Gᵀ is computed in Double and rounded to Float32 once (else in Float32 throughout, as
    /// Darkroom did before issue 13; kept to measure it).
    public let kernelInDouble: Bool
    /// Bᵀ (n × n), G (n × 3) and Aᵀ (m × n), exact (Bᵀ and Aᵀ are exact in Float32 too).
    public let inputTransform: [[Double]], kernelTransform: [[Double]], outputTransform: [[Double]]
    /// Bᵀ and Aᵀ as the non-zero entries of each row, (column, value).
    let bt: [[(Int, Float)]], at: [[(Int, Float)]]
    var g: [[Double]] { kernelTransform }

    init(name: String, kernelInDouble: Bool = true, bt: [[Double]], g: [[Double]], at: [[Double]]) {
        let n = bt.count
        precondition(g.count == n && at.count == n - 2 && bt.allSatisfy { $0.count == n } && at.allSatisfy { $0.count == n })
        func sparse(_ rows: [[Double]]) -> [[(Int, Float)]] {
            rows.map { row in row.enumerated().filter { $0.element != 0 }.map { ($0.offset, Float($0.element)) } }
        }
        self.name = name
        self.outputTile = n - 2
        self.kernelInDouble = kernelInDouble
        self.inputTransform = bt; self.kernelTransform = g; self.outputTransform = at
        self.bt = sparse(bt); self.at = sparse(at)
    }

    var inputTile: Int { outputTile + 2 }
    public var description: String { name }

    public static func == (a: WinogradTransform, b: WinogradTransform) -> Bool {
        a.name == b.name && a.kernelInDouble == b.kernelInDouble
    }

    /// F(4×4, 3×3) with the points 0, 1, −1, ½, −2, ∞; kernel transform in Double. The default.
    public static let f43 = WinogradTransform(
        name: "F(4x4,3x3) 0,±1,1/2,-2",
        bt: [[1, -3.0 / 2, -2, 3.0 / 2, 1, 0],
             [0, 1, -1.0 / 2, -5.0 / 2, -1, 0],
             [0, 1, -5.0 / 2, 1.0 / 2, 1, 0],
             [0, 2, 1, -2, -1, 0],
             [0, 1.0 / 2, -1, -1.0 / 2, 1, 0],
             [0, 1, -3.0 / 2, -2, 3.0 / 2, 1]],
        g: [[1, 0, 0],
            [-1.0 / 3, -1.0 / 3, -1.0 / 3],
            [-1.0 / 3, 1.0 / 3, -1.0 / 3],
            [16.0 / 15, 8.0 / 15, 4.0 / 15],
            [1.0 / 15, -2.0 / 15, 4.0 / 15],
            [0, 0, 1]],
        at: [[1, 1, 1, 1, 1, 0],
             [0, 1, -1, 1.0 / 2, -2, 0],
             [0, 1, 1, 1.0 / 4, 4, 0],
             [0, 1, -1, 1.0 / 8, -8, 1]])

    private static let integerBT: [[Double]] = [[4, 0, -5, 0, 1, 0],
                                                [0, 4, 4, -1, -1, 0],
                                                [0, 4, -4, -1, 1, 0],
                                                [0, 2, 1, -2, -1, 0],
                                                [0, 2, -1, -2, 1, 0],
                                                [0, 4, 0, -5, 0, 1]]
    private static let integerG: [[Double]] = [[1.0 / 4, 0, 0],
                                               [1.0 / 6, 1.0 / 6, 1.0 / 6],
                                               [-1.0 / 6, 1.0 / 6, -1.0 / 6],
                                               [-1.0 / 24, -1.0 / 12, -1.0 / 6],
                                               [1.0 / 24, -1.0 / 12, 1.0 / 6],
                                               [0, 0, 1]]
    private static let integerAT: [[Double]] = [[1, 1, 1, 1, 1, 0],
                                                [0, 1, -1, 2, -2, 0],
                                                [0, 1, 1, 4, 4, 0],
                                                [0, 1, -1, 8, -8, 1]]

    /// F(4×4, 3×3) with the points 0, ±1, ±2, ∞ (Lavin & Gray's matrices), kernel transform in Float32: what
    /// Darkroom ran before issue 13, part 2.
    public static let f43IntegerFloatKernel = WinogradTransform(
        name: "F(4x4,3x3) 0,±1,±2 U fp32 (before)", kernelInDouble: false, bt: integerBT, g: integerG, at: integerAT)

    /// The same points with the kernel transform in Double.
    public static let f43Integer = WinogradTransform(
        name: "F(4x4,3x3) 0,±1,±2", bt: integerBT, g: integerG, at: integerAT)

    /// F(4×4, 3×3) with the points 0, ±1, ±½, ∞ (the reciprocals of ±2; its error measures the same as ±2's).
    public static let f43Half = WinogradTransform(
        name: "F(4x4,3x3) 0,±1,±1/2",
        bt: [[1.0 / 4, 0, -5.0 / 4, 0, 1, 0],
             [0, 1.0 / 4, 1.0 / 4, -1, -1, 0],
             [0, 1.0 / 4, -1.0 / 4, -1, 1, 0],
             [0, 1.0 / 2, 1, -1.0 / 2, -1, 0],
             [0, 1.0 / 2, -1, -1.0 / 2, 1, 0],
             [0, 1.0 / 4, 0, -5.0 / 4, 0, 1]],
        g: [[4, 0, 0],
            [-2.0 / 3, -2.0 / 3, -2.0 / 3],
            [2.0 / 3, -2.0 / 3, 2.0 / 3],
            [8.0 / 3, 4.0 / 3, 2.0 / 3],
            [-8.0 / 3, 4.0 / 3, -2.0 / 3],
            [0, 0, 1]],
        at: [[1, 1, 1, 1, 1, 0],
             [0, 1, -1, 1.0 / 2, -1.0 / 2, 0],
             [0, 1, 1, 1.0 / 4, 1.0 / 4, 0],
             [0, 1, -1, 1.0 / 8, -1.0 / 8, 1]])

    /// F(2×2, 3×3) with the points 0, ±1, ∞: 16 GEMMs over 2×2 output tiles, 2.25× fewer multiplications.
    public static let f23 = WinogradTransform(
        name: "F(2x2,3x3) 0,±1",
        bt: [[1, 0, -1, 0],
             [0, 1, 1, 0],
             [0, 1, -1, 0],
             [0, 1, 0, -1]],
        g: [[1, 0, 0],
            [1.0 / 2, 1.0 / 2, 1.0 / 2],
            [-1.0 / 2, 1.0 / 2, -1.0 / 2],
            [0, 0, -1]],
        at: [[1, 1, 1, 0],
             [0, 1, -1, 1]])

    /// Every variant, for the bench and the tests.
    public static let all: [WinogradTransform] = [.f43IntegerFloatKernel, .f43Integer, .f43Half, .f43, .f23]
}

/// A 3×3 stride-1 padding-1 convolution through a `WinogradTransform`.
///
/// Layout: the transformed input V is n² matrices [in × tiles] and the transformed kernel U is n² matrices
/// [out × in], so the product for position ξ is one GEMM, M_ξ = U_ξ · V_ξ. Tiles run in chunks of whole tile
/// rows sized to stay near the cache; each worker takes a share of output channels through the GEMMs and the
/// output transform, with single-threaded OpenBLAS.
enum Winograd {
    /// `input` [N, C, H, W] convolved with `weight` [K, C, 3, 3] (stride 1, zero padding 1 on every side), plus
    /// `bias` [K], written into `output` [N, K, H, W].
    ///
    /// `products: .bf16` rounds U and V to bfloat16 and runs the n² products on oneDNN with Float32 accumulation
    /// (the transforms stay Float32), as `Precision.bf16` does for im2col; it throws if oneDNN fails, and the caller
    /// runs the convolution again in Float32.
    static func convolve(input x: UnsafePointer<Float>, batch: Int, channels: Int, height: Int, width: Int,
                         weight w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, outChannels: Int,
                         transform: WinogradTransform, products: Precision = .fp32,
                         output o: UnsafeMutablePointer<Float>) throws(OneDNNError) {
        let uCount = transform.inputTile * transform.inputTile * outChannels * channels
        guard products == .bf16 else {
            return Tensor.withScratch(count: uCount) { u in
                transformKernel(w, outChannels: outChannels, channels: channels, transform: transform, into: u)
                // Float32 products run on OpenBLAS, which does not throw.
                try? convolve(input: x, batch: batch, channels: channels, height: height, width: width,
                              kernel: .fp32(UnsafePointer(u)), bias: bias, outChannels: outChannels,
                              transform: transform, output: o)
            }
        }
        try Tensor.withBFloat16Scratch(count: uCount) { (uHalf) throws(OneDNNError) in
            transformKernelBFloat16(w, outChannels: outChannels, channels: channels, transform: transform, into: uHalf)
            try convolve(input: x, batch: batch, channels: channels, height: height, width: width,
                         kernel: .bf16(UnsafePointer(uHalf)), bias: bias, outChannels: outChannels,
                         transform: transform, output: o)
        }
    }

    /// The transformed kernel U (n² matrices [out × in]) a convolution multiplies by: Float32 (products on
    /// OpenBLAS) or rounded to bfloat16 (products on oneDNN).
    enum Kernel {
        case fp32(UnsafePointer<Float>)
        case bf16(UnsafePointer<UInt16>)
    }

    /// U rounded to bfloat16, as the bf16 products use it (`Weight` keeps one per convolution).
    static func transformKernelBFloat16(_ w: UnsafePointer<Float>, outChannels: Int, channels: Int,
                                        transform: WinogradTransform, into uHalf: UnsafeMutablePointer<UInt16>) {
        let count = transform.inputTile * transform.inputTile * outChannels * channels
        Tensor.withScratch(count: count) { u in
            transformKernel(w, outChannels: outChannels, channels: channels, transform: transform, into: u)
            HalfConversion.encodeBFloat16(from: u, into: uHalf, count: count)
        }
    }

    /// The same with U already transformed (`kernel`).
    static func convolve(input x: UnsafePointer<Float>, batch: Int, channels: Int, height: Int, width: Int,
                         kernel: Kernel, bias: UnsafePointer<Float>?, outChannels: Int, transform: WinogradTransform,
                         output o: UnsafeMutablePointer<Float>) throws(OneDNNError) {
        let m = transform.outputTile, n = transform.inputTile, nn = n * n
        let tilesX = (width + m - 1) / m, tilesY = (height + m - 1) / m
        let tileRows = batch * tilesY
        let rowsPerChunk = max(1, min(tileRows, Tensor.winogradChunkBudget / max(1, nn * (channels + outChannels) * tilesX)))
        let chunkTiles = rowsPerChunk * tilesX
        let geometry = Geometry(transform: transform, channels: channels, outChannels: outChannels, height: height,
                                width: width, tilesX: tilesX, tilesY: tilesY, ld: chunkTiles)
        var failure: OneDNNError?
        let lock = Mutex()
        let (u, uHalf): (UnsafePointer<Float>?, UnsafePointer<UInt16>?)
        switch kernel {
        case .fp32(let pointer): (u, uHalf) = (pointer, nil)
        case .bf16(let pointer): (u, uHalf) = (nil, pointer)
        }
        let products: Precision = uHalf == nil ? .fp32 : .bf16
        // bf16: each chunk's V rounded, after the scratch's Float32 V and M.
        let halves = products == .bf16 ? nn * channels * chunkTiles : 0

        // bf16 rounds V as each row of tiles is made, without a Float32 V, where rows are long (the VAE's planes:
        // encode 5 % and decode 3 % faster); short rows (the UNet's 8–32 tiles) are rounded per channel range.
        let roundsRows = products == .bf16 && tilesX >= 64
        let floatsOfV = roundsRows ? 0 : nn * channels * chunkTiles
        Tensor.withScratch(count: floatsOfV + nn * outChannels * chunkTiles + (halves + 1) / 2) { scratch in
            let v = scratch, mm = scratch + floatsOfV
            let vHalf = UnsafeMutableRawPointer(mm + nn * outChannels * chunkTiles)
                .bindMemory(to: UInt16.self, capacity: max(halves, 1))
            var row0 = 0
            while row0 < tileRows && failure == nil {
                let rows = min(rowsPerChunk, tileRows - row0)
                // 1. V = Bᵀ d B for every channel and tile of the chunk.
                Parallel.forEachRange(channels, grain: 1) { range in
                    geometry.transformInput(x, channels: range, tileRows: row0..<(row0 + rows),
                                            into: roundsRows ? .bfloat16(vHalf) : .float32(v))
                    if products == .bf16 && !roundsRows {
                        for xi in 0..<nn {
                            let offset = (xi * channels + range.lowerBound) * chunkTiles
                            HalfConversion.encodeBFloat16Serial(from: v + offset, into: vHalf + offset, count: range.count * chunkTiles)
                        }
                    }
                }
                // 2. M_ξ = U_ξ · V_ξ, then 3. Y = Aᵀ M A, per worker over its output channels.
                let tiles = rows * tilesX
                BLAS.withThreadCount(1) {
                    Parallel.forEachRange(outChannels, grain: 16) { ks in
                        for xi in 0..<nn {
                            let uOffset = (xi * outChannels + ks.lowerBound) * channels, vOffset = xi * channels * chunkTiles
                            let product = mm + (xi * outChannels + ks.lowerBound) * chunkTiles
                            guard let uHalf else {
                                BLAS.sgemm(m: ks.count, n: tiles, k: channels, a: u! + uOffset, lda: channels,
                                           b: v + vOffset, ldb: chunkTiles, c: product, ldc: chunkTiles)
                                continue
                            }
                            do throws(OneDNNError) {
                                try OneDNN.gemm(m: ks.count, n: tiles, k: channels, type: .bf16,
                                                a: .matrix(UnsafeRawPointer(uHalf + uOffset), strides: (channels, 1)),
                                                b: .matrix(UnsafeRawPointer(vHalf + vOffset), strides: (chunkTiles, 1)),
                                                c: product, ldc: chunkTiles, parallel: false)
                            } catch {
                                lock.withLock { if failure == nil { failure = error } }
                                return
                            }
                        }
                        geometry.transformOutput(mm, outChannels: ks, tileRows: row0..<(row0 + rows), bias: bias, into: o)
                    }
                }
                row0 += rows
            }
        }
        if let failure { throw failure }
    }

    /// U_ξ[k, c] = (G g Gᵀ)_ξ for every kernel g = weight[k, c], in Double (or Float32 for
    /// `kernelInDouble == false`), rounded to Float32 once.
    static func transformKernel(_ w: UnsafePointer<Float>, outChannels: Int, channels: Int,
                                transform: WinogradTransform, into u: UnsafeMutablePointer<Float>) {
        if transform.kernelInDouble {
            transformKernel(w, outChannels: outChannels, channels: channels, g: transform.g, into: u, as: Double.self)
        } else {
            transformKernel(w, outChannels: outChannels, channels: channels, g: transform.g, into: u, as: Float.self)
        }
    }

    private static func transformKernel<T: BinaryFloatingPoint>(
        _ w: UnsafePointer<Float>, outChannels: Int, channels: Int, g: [[Double]],
        into u: UnsafeMutablePointer<Float>, as: T.Type) {
        let n = g.count
        let gt: [[T]] = g.map { $0.map { T($0) } }
        Parallel.forEachRange(outChannels, grain: max(1, 4096 / max(channels, 1))) { ks in
            // The nine taps of every channel of one output channel, tap-major, so the loops below run along c.
            let taps = UnsafeMutablePointer<T>.allocate(capacity: 9 * channels + n * 3 * channels)
            defer { taps.deallocate() }
            let rows = taps + 9 * channels  // G g: n×3 per channel, stored [n·3][c]
            for k in ks {
                let kernel = w + k * channels * 9
                for c in 0..<channels {
                    for t in 0..<9 { taps[t * channels + c] = T(kernel[c * 9 + t]) }
                }
                // (G g)[i, j] = Σ_a G[i, a] g[a, j].
                for i in 0..<n {
                    let (g0, g1, g2) = (gt[i][0], gt[i][1], gt[i][2])
                    for j in 0..<3 {
                        let a0 = taps + j * channels, a1 = taps + (3 + j) * channels, a2 = taps + (6 + j) * channels
                        let dst = rows + (i * 3 + j) * channels
                        for c in 0..<channels { dst[c] = g0 * a0[c] + g1 * a1[c] + g2 * a2[c] }
                    }
                }
                // U[i, j] = Σ_b (G g)[i, b] G[j, b].
                for i in 0..<n {
                    let r0 = rows + (i * 3) * channels, r1 = rows + (i * 3 + 1) * channels, r2 = rows + (i * 3 + 2) * channels
                    for j in 0..<n {
                        let (g0, g1, g2) = (gt[j][0], gt[j][1], gt[j][2])
                        let dst = u + ((i * n + j) * outChannels + k) * channels
                        for c in 0..<channels { dst[c] = Float(r0[c] * g0 + r1[c] * g1 + r2[c] * g2) }
                    }
                }
            }
        }
    }

    /// out[t] = Σ_(i, a) a · source(i)[t] over the non-zero terms of one row of Bᵀ or Aᵀ, summed left to right in
    /// one pass (the coefficients are dyadic, so each product is exact and only the sums round).
    @inline(__always)
    static func combine(_ terms: [(Int, Float)], _ source: (Int) -> UnsafePointer<Float>,
                        out: UnsafeMutablePointer<Float>, count: Int) {
        func term(_ k: Int) -> (Float, UnsafePointer<Float>) { (terms[k].1, source(terms[k].0)) }
        switch terms.count {
        case 1:
            let (a0, s0) = term(0)
            for t in 0..<count { out[t] = a0 * s0[t] }
        case 2:
            let (a0, s0) = term(0), (a1, s1) = term(1)
            for t in 0..<count { out[t] = a0 * s0[t] + a1 * s1[t] }
        case 3:
            let (a0, s0) = term(0), (a1, s1) = term(1), (a2, s2) = term(2)
            for t in 0..<count { out[t] = a0 * s0[t] + a1 * s1[t] + a2 * s2[t] }
        case 4:
            let (a0, s0) = term(0), (a1, s1) = term(1), (a2, s2) = term(2), (a3, s3) = term(3)
            for t in 0..<count { out[t] = a0 * s0[t] + a1 * s1[t] + a2 * s2[t] + a3 * s3[t] }
        case 5:
            let (a0, s0) = term(0), (a1, s1) = term(1), (a2, s2) = term(2), (a3, s3) = term(3), (a4, s4) = term(4)
            for t in 0..<count { out[t] = a0 * s0[t] + a1 * s1[t] + a2 * s2[t] + a3 * s3[t] + a4 * s4[t] }
        default:
            let (a0, s0) = term(0), (a1, s1) = term(1), (a2, s2) = term(2), (a3, s3) = term(3), (a4, s4) = term(4)
            for t in 0..<count { out[t] = a0 * s0[t] + a1 * s1[t] + a2 * s2[t] + a3 * s3[t] + a4 * s4[t] }
            for k in 5..<terms.count {
                let (a, s) = term(k)
                for t in 0..<count { out[t] += a * s[t] }
            }
        }
    }

    /// d[p · stride + t] = source[m · t + p] for p < m and t in `tiles`: a row of input split by column phase. The
    /// sides Winograd runs (2 and 4) are spelt out, so the compiler loads m·16 contiguous floats and deinterleaves
    /// them in registers instead of gathering one float at a time.
    @inline(__always)
    static func splitPhases(_ source: UnsafePointer<Float>, m: Int, into d: UnsafeMutablePointer<Float>, stride: Int,
                            tiles: Range<Int>) {
        switch m {
        case 4:
            let (d0, d1, d2, d3) = (d, d + stride, d + 2 &* stride, d + 3 &* stride)
            for t in tiles {
                let s = source + 4 &* t
                (d0[t], d1[t], d2[t], d3[t]) = (s[0], s[1], s[2], s[3])
            }
        case 2:
            let (d0, d1) = (d, d + stride)
            for t in tiles {
                let s = source + 2 &* t
                (d0[t], d1[t]) = (s[0], s[1])
            }
        default:
            for p in 0..<m {
                let dp = d + p &* stride, column = source + p
                for t in tiles { dp[t] = column[m &* t] }
            }
        }
    }

    /// The reverse for the output: d[m · t + s] = y[s · stride + t] + b for s < m and t < `tiles`.
    @inline(__always)
    static func mergePhases(_ y: UnsafePointer<Float>, stride: Int, m: Int, adding b: Float,
                            into d: UnsafeMutablePointer<Float>, tiles: Int) {
        switch m {
        case 4:
            let (y0, y1, y2, y3) = (y, y + stride, y + 2 &* stride, y + 3 &* stride)
            for t in 0..<tiles {
                let o = d + 4 &* t
                (o[0], o[1], o[2], o[3]) = (y0[t] + b, y1[t] + b, y2[t] + b, y3[t] + b)
            }
        case 2:
            let (y0, y1) = (y, y + stride)
            for t in 0..<tiles {
                let o = d + 2 &* t
                (o[0], o[1]) = (y0[t] + b, y1[t] + b)
            }
        default:
            for s in 0..<m {
                let ys = y + s &* stride
                for t in 0..<tiles { d[m &* t + s] = ys[t] + b }
            }
        }
    }

    struct Geometry {
        let transform: WinogradTransform
        let channels: Int, outChannels: Int, height: Int, width: Int, tilesX: Int, tilesY: Int
        /// Leading dimension of the V and M matrices: tiles per chunk.
        let ld: Int

        /// Where `transformInput` writes V: Float32, or rounded to bfloat16 as each row of tiles is made.
        enum Destination {
            case float32(UnsafeMutablePointer<Float>)
            case bfloat16(UnsafeMutablePointer<UInt16>)
        }

        /// V_ξ[c, t] for the tiles of `tileRows` (global tile rows: image · tilesY + tile row), t counted from the
        /// chunk's first tile.
        func transformInput(_ x: UnsafePointer<Float>, channels range: Range<Int>, tileRows: Range<Int>,
                            into destination: Destination) {
            let m = transform.outputTile, n = transform.inputTile
            // Input rows of one tile row split by column phase: phase p of column t is input column m·t + p − 1.
            let span = tilesX + 1
            let phases = UnsafeMutablePointer<Float>.allocate(capacity: 2 * n * m * span + tilesX)
            defer { phases.deallocate() }
            let rowsBT = phases + n * m * span  // Bᵀ d, still split by phase
            let rowOfV = rowsBT + n * m * span  // one row of V before rounding (bfloat16 destination)
            // Interior tiles read columns m·t − 1 … m·t + m − 2, all inside the row; the first and the last ones are
            // cut by the padding.
            let interior = max(1, min(span, (width + 1) / m))
            for c in range {
                for g in tileRows {
                    let image = g / tilesY, ty = g % tilesY
                    let plane = x + (image * channels + c) * height * width
                    for r in 0..<n {
                        let y = m * ty + r - 1
                        let dst = phases + r * m * span
                        if y < 0 || y >= height {
                            dst.initialize(repeating: 0, count: m * span)
                            continue
                        }
                        let src = plane + y * width
                        Winograd.splitPhases(src - 1, m: m, into: dst, stride: span, tiles: 1..<interior)
                        func edge(_ t: Int) {
                            for p in 0..<m {
                                let column = m * t + p - 1
                                dst[p * span + t] = column >= 0 && column < width ? src[column] : 0
                            }
                        }
                        edge(0)
                        for t in interior..<span { edge(t) }
                    }
                    // Bᵀ d along the rows, every phase at once (m·span contiguous floats per input row).
                    for i in 0..<n {
                        Winograd.combine(transform.bt[i], { UnsafePointer(phases + $0 * m * span) },
                                         out: rowsBT + i * m * span, count: m * span)
                    }
                    // (Bᵀ d) B along the columns: column s of a tile is phase s % m at t + s / m.
                    let t0 = (g - tileRows.lowerBound) * tilesX
                    for i in 0..<n {
                        let p = UnsafePointer(rowsBT + i * m * span)
                        for j in 0..<n {
                            let offset = ((i * n + j) * channels + c) * ld + t0
                            switch destination {
                            case .float32(let v):
                                Winograd.combine(transform.bt[j], { s in p + (s % m) * span + s / m }, out: v + offset, count: tilesX)
                            case .bfloat16(let vHalf):
                                Winograd.combine(transform.bt[j], { s in p + (s % m) * span + s / m }, out: rowOfV, count: tilesX)
                                HalfConversion.encodeBFloat16Serial(from: rowOfV, into: vHalf + offset, count: tilesX)
                            }
                        }
                    }
                }
            }
        }

        /// Y = Aᵀ M A + bias for output channels `ks` of the chunk's tiles, written into `o` [N, K, H, W] (cropped at
        /// the right and bottom edges).
        func transformOutput(_ mm: UnsafePointer<Float>, outChannels ks: Range<Int>, tileRows: Range<Int>,
                             bias: UnsafePointer<Float>?, into o: UnsafeMutablePointer<Float>) {
            let m = transform.outputTile, n = transform.inputTile
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: (m * n + m * m) * tilesX)
            defer { scratch.deallocate() }
            let columns = scratch, block = scratch + m * n * tilesX  // Aᵀ M: [m][n][t]; Y: [m][m][t]
            for k in ks {
                let b = bias?[k] ?? 0
                for g in tileRows {
                    let image = g / tilesY, ty = g % tilesY
                    let t0 = (g - tileRows.lowerBound) * tilesX
                    for j in 0..<n {
                        for r in 0..<m {
                            Winograd.combine(transform.at[r], { i in mm + ((i * n + j) * outChannels + k) * ld + t0 },
                                             out: columns + (r * n + j) * tilesX, count: tilesX)
                        }
                    }
                    for r in 0..<m {
                        let z = UnsafePointer(columns + r * n * tilesX)
                        for s in 0..<m {
                            Winograd.combine(transform.at[s], { j in z + j * tilesX },
                                             out: block + (r * m + s) * tilesX, count: tilesX)
                        }
                    }
                    let plane = o + (image * outChannels + k) * height * width
                    for r in 0..<min(m, height - m * ty) {
                        let dst = plane + (m * ty + r) * width
                        let y = block + r * m * tilesX
                        Winograd.mergePhases(y, stride: tilesX, m: m, adding: b, into: dst, tiles: width / m)
                        for column in (width / m * m)..<width {
                            dst[column] = y[(column % m) * tilesX + column / m] + b
                        }
                    }
                }
            }
        }
    }
}
