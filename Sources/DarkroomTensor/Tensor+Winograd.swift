/// Winograd F(4×4, 3×3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
/// each 4×4 block of output comes from a 6×6 block of input with 36 multiplications per channel pair instead of
/// 144, so a 3×3 stride-1 convolution runs 36 GEMMs of [out × in]·[in × tiles] with 4× fewer FLOPs than im2col.
///
///     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A        g: 3×3 kernel, d: 6×6 input tile, Y: 4×4 output tile
///
/// with the interpolation points 0, ±1, ±2, ∞ (the matrices below). Everything is Float32; the transforms
/// grow values by at most 100× (Bᵀ rows sum to |10|), which costs about one decimal digit against direct
/// convolution — the parity tests keep their 1e-5 bound (see `KernelParityTests.testWinogradConvolution`).
///
/// Layout: the transformed input V is 36 matrices [in × tiles] and the transformed kernel U is 36 matrices
/// [out × in], so the product for position ξ is one GEMM, M_ξ = U_ξ · V_ξ. Tiles run in chunks of whole tile
/// rows sized to stay near the cache; each worker takes a share of output channels through the GEMMs and the
/// output transform, with single-threaded OpenBLAS.
enum WinogradF43 {
    /// `input` [N, C, H, W] convolved with `weight` [K, C, 3, 3] (stride 1, zero padding 1 on every side), plus
    /// `bias` [K], written into `output` [N, K, H, W].
    static func convolve(input x: UnsafePointer<Float>, batch: Int, channels: Int, height: Int, width: Int,
                         weight w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, outChannels: Int,
                         output o: UnsafeMutablePointer<Float>) {
        let tilesX = (width + 3) / 4, tilesY = (height + 3) / 4
        let tileRows = batch * tilesY
        let rowsPerChunk = max(1, min(tileRows, Tensor.winogradChunkBudget / max(1, 36 * (channels + outChannels) * tilesX)))
        let chunkTiles = rowsPerChunk * tilesX
        let geometry = Geometry(channels: channels, outChannels: outChannels, height: height, width: width,
                                tilesX: tilesX, tilesY: tilesY, ld: chunkTiles)

        Tensor.withScratch(count: 36 * outChannels * channels) { u in
            transformKernel(w, outChannels: outChannels, channels: channels, into: u)
            Tensor.withScratch(count: 36 * (channels + outChannels) * chunkTiles) { scratch in
                let v = scratch, m = scratch + 36 * channels * chunkTiles
                var row0 = 0
                while row0 < tileRows {
                    let rows = min(rowsPerChunk, tileRows - row0)
                    // 1. V = Bᵀ d B for every channel and tile of the chunk.
                    Parallel.forEachRange(channels, grain: 1) { range in
                        geometry.transformInput(x, channels: range, tileRows: row0..<(row0 + rows), into: v)
                    }
                    // 2. M_ξ = U_ξ · V_ξ, then 3. Y = Aᵀ M A, per worker over its output channels.
                    let tiles = rows * tilesX
                    BLAS.withThreadCount(1) {
                        Parallel.forEachRange(outChannels, grain: 16) { ks in
                            for xi in 0..<36 {
                                BLAS.sgemm(m: ks.count, n: tiles, k: channels,
                                           a: u + (xi * outChannels + ks.lowerBound) * channels, lda: channels,
                                           b: v + xi * channels * chunkTiles, ldb: chunkTiles,
                                           c: m + (xi * outChannels + ks.lowerBound) * chunkTiles, ldc: chunkTiles)
                            }
                            geometry.transformOutput(m, outChannels: ks, tileRows: row0..<(row0 + rows), bias: bias, into: o)
                        }
                    }
                    row0 += rows
                }
            }
        }
    }

    /// U_ξ[k, c] = (G g Gᵀ)_ξ for every kernel g = weight[k, c], with
    ///
    ///     G = [ 1/4     0     0  ]
    ///         [-1/6  -1/6  -1/6  ]
    ///         [-1/6   1/6  -1/6  ]
    ///         [1/24  1/12   1/6  ]
    ///         [1/24 -1/12   1/6  ]
    ///         [  0     0     1   ]
    static func transformKernel(_ w: UnsafePointer<Float>, outChannels: Int, channels: Int,
                                into u: UnsafeMutablePointer<Float>) {
        Parallel.forEachRange(outChannels, grain: max(1, 4096 / max(channels, 1))) { ks in
            // The nine taps of every channel of one output channel, tap-major, so the loops below run along c.
            let taps = UnsafeMutablePointer<Float>.allocate(capacity: 9 * channels + 6 * 3 * channels)
            defer { taps.deallocate() }
            let rows = taps + 9 * channels  // G g: 6×3 per channel, stored [6·3][c]
            for k in ks {
                let kernel = w + k * channels * 9
                for c in 0..<channels {
                    for t in 0..<9 { taps[t * channels + c] = kernel[c * 9 + t] }
                }
                // (G g)[i, j] for each column j of g.
                for j in 0..<3 {
                    let g0 = taps + j * channels, g1 = taps + (3 + j) * channels, g2 = taps + (6 + j) * channels
                    applyG(g0, g1, g2, out: { i in rows + (i * 3 + j) * channels }, count: channels)
                }
                // ((G g) Gᵀ)[i, j'] for each row i.
                for i in 0..<6 {
                    let r0 = rows + (i * 3) * channels, r1 = rows + (i * 3 + 1) * channels, r2 = rows + (i * 3 + 2) * channels
                    applyG(r0, r1, r2, out: { j in u + ((i * 6 + j) * outChannels + k) * channels }, count: channels)
                }
            }
        }
    }

    /// out(i)[c] = Σ_j G[i, j] · in_j[c] for the six rows of G.
    @inline(__always)
    private static func applyG(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>,
                               out: (Int) -> UnsafeMutablePointer<Float>, count: Int) {
        let o0 = out(0), o1 = out(1), o2 = out(2), o3 = out(3), o4 = out(4), o5 = out(5)
        for n in 0..<count {
            let x = a[n], y = b[n], z = c[n]
            let sumXZ = x + z
            o0[n] = x * 0.25
            o1[n] = (sumXZ + y) * (-1.0 / 6)
            o2[n] = (sumXZ - y) * (-1.0 / 6)
            let p = x * (1.0 / 24) + z * (1.0 / 6), q = y * (1.0 / 12)
            o3[n] = p + q
            o4[n] = p - q
            o5[n] = z
        }
    }

    struct Geometry {
        let channels: Int, outChannels: Int, height: Int, width: Int, tilesX: Int, tilesY: Int
        /// Leading dimension of the V and M matrices: tiles per chunk.
        let ld: Int

        /// V_ξ[c, t] for the tiles of `tileRows` (global tile rows: image · tilesY + tile row), t counted from the
        /// chunk's first tile.
        ///
        ///     Bᵀ = [4   0  -5   0  1  0]
        ///          [0  -4  -4   1  1  0]
        ///          [0   4  -4  -1  1  0]
        ///          [0  -2  -1   2  1  0]
        ///          [0   2  -1  -2  1  0]
        ///          [0   4   0  -5  0  1]
        func transformInput(_ x: UnsafePointer<Float>, channels range: Range<Int>, tileRows: Range<Int>,
                            into v: UnsafeMutablePointer<Float>) {
            // Input rows of one tile row split by column phase: phase p of column t is input column 4t + p - 1.
            let span = tilesX + 1
            let phases = UnsafeMutablePointer<Float>.allocate(capacity: 2 * 6 * 4 * span)
            defer { phases.deallocate() }
            let rowsBT = phases + 6 * 4 * span  // Bᵀ d, still split by phase
            for c in range {
                for g in tileRows {
                    let image = g / tilesY, ty = g % tilesY
                    let plane = x + (image * channels + c) * height * width
                    for r in 0..<6 {
                        let y = 4 * ty + r - 1
                        let dst = phases + r * 4 * span
                        if y < 0 || y >= height {
                            dst.initialize(repeating: 0, count: 4 * span)
                            continue
                        }
                        let src = plane + y * width
                        let (d0, d1, d2, d3) = (dst, dst + span, dst + 2 * span, dst + 3 * span)
                        // Interior tiles read columns 4t − 1 … 4t + 2, all inside the row; the first and the last
                        // ones are cut by the padding.
                        let interior = max(1, min(span, (width + 1) / 4))
                        for t in 1..<interior {
                            let column = src + 4 * t - 1
                            d0[t] = column[0]; d1[t] = column[1]; d2[t] = column[2]; d3[t] = column[3]
                        }
                        func edge(_ t: Int) {
                            for p in 0..<4 {
                                let column = 4 * t + p - 1
                                dst[p * span + t] = column >= 0 && column < width ? src[column] : 0
                            }
                        }
                        edge(0)
                        for t in interior..<span { edge(t) }
                    }
                    // Bᵀ d along the rows, every phase at once (4·span contiguous floats per input row).
                    for i in 0..<6 {
                        let s = { (r: Int) in UnsafePointer(phases + r * 4 * span) }
                        applyBT(s(0), s(1), s(2), s(3), s(4), s(5), row: i, out: rowsBT + i * 4 * span, count: 4 * span)
                    }
                    // (Bᵀ d) B along the columns: column s of a tile is phase s % 4 at t + s / 4.
                    let t0 = (g - tileRows.lowerBound) * tilesX
                    for i in 0..<6 {
                        let p = rowsBT + i * 4 * span
                        for j in 0..<6 {
                            applyBT(p, p + span, p + 2 * span, p + 3 * span, p + 1, p + span + 1, row: j,
                                    out: v + ((i * 6 + j) * channels + c) * ld + t0, count: tilesX)
                        }
                    }
                }
            }
        }

        /// out[t] = Σ_r Bᵀ[row, r] · d_r[t].
        @inline(__always)
        private func applyBT(_ d0: UnsafePointer<Float>, _ d1: UnsafePointer<Float>, _ d2: UnsafePointer<Float>,
                             _ d3: UnsafePointer<Float>, _ d4: UnsafePointer<Float>, _ d5: UnsafePointer<Float>,
                             row: Int, out: UnsafeMutablePointer<Float>, count: Int) {
            switch row {
            case 0: for t in 0..<count { out[t] = 4 * d0[t] - 5 * d2[t] + d4[t] }
            case 1: for t in 0..<count { out[t] = -4 * (d1[t] + d2[t]) + d3[t] + d4[t] }
            case 2: for t in 0..<count { out[t] = 4 * (d1[t] - d2[t]) - d3[t] + d4[t] }
            case 3: for t in 0..<count { out[t] = 2 * (d3[t] - d1[t]) - d2[t] + d4[t] }
            case 4: for t in 0..<count { out[t] = 2 * (d1[t] - d3[t]) - d2[t] + d4[t] }
            default: for t in 0..<count { out[t] = 4 * d1[t] - 5 * d3[t] + d5[t] }
            }
        }

        /// Y = Aᵀ M A + bias for output channels `ks` of the chunk's tiles, written into `o` [N, K, H, W] (cropped at
        /// the right and bottom edges).
        ///
        ///     Aᵀ = [1  1   1  1   1  0]
        ///          [0  1  -1  2  -2  0]
        ///          [0  1   1  4   4  0]
        ///          [0  1  -1  8  -8  1]
        func transformOutput(_ m: UnsafePointer<Float>, outChannels ks: Range<Int>, tileRows: Range<Int>,
                             bias: UnsafePointer<Float>?, into o: UnsafeMutablePointer<Float>) {
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: (4 * 6 + 4 * 4) * tilesX)
            defer { scratch.deallocate() }
            let columns = scratch, block = scratch + 4 * 6 * tilesX  // Aᵀ M: [4][6][t]; Y: [4][4][t]
            for k in ks {
                let b = bias?[k] ?? 0
                for g in tileRows {
                    let image = g / tilesY, ty = g % tilesY
                    let t0 = (g - tileRows.lowerBound) * tilesX
                    let mk = { (xi: Int) in m + (xi * outChannels + k) * ld + t0 }
                    for j in 0..<6 {
                        for r in 0..<4 {
                            applyAT(mk(j), mk(6 + j), mk(12 + j), mk(18 + j), mk(24 + j), mk(30 + j), row: r,
                                    out: columns + (r * 6 + j) * tilesX, count: tilesX)
                        }
                    }
                    for r in 0..<4 {
                        let z = { (j: Int) in UnsafePointer(columns + (r * 6 + j) * tilesX) }
                        for s in 0..<4 {
                            applyAT(z(0), z(1), z(2), z(3), z(4), z(5), row: s, out: block + (r * 4 + s) * tilesX,
                                    count: tilesX)
                        }
                    }
                    let plane = o + (image * outChannels + k) * height * width
                    for r in 0..<min(4, height - 4 * ty) {
                        let dst = plane + (4 * ty + r) * width
                        let y = block + r * 4 * tilesX
                        let (y0, y1, y2, y3) = (y, y + tilesX, y + 2 * tilesX, y + 3 * tilesX)
                        for t in 0..<(width / 4) {
                            let d = dst + 4 * t
                            d[0] = y0[t] + b; d[1] = y1[t] + b; d[2] = y2[t] + b; d[3] = y3[t] + b
                        }
                        for column in (width / 4 * 4)..<width {
                            dst[column] = y[(column % 4) * tilesX + column / 4] + b
                        }
                    }
                }
            }
        }

        /// out[t] = Σ_i Aᵀ[row, i] · m_i[t].
        @inline(__always)
        private func applyAT(_ m0: UnsafePointer<Float>, _ m1: UnsafePointer<Float>, _ m2: UnsafePointer<Float>,
                             _ m3: UnsafePointer<Float>, _ m4: UnsafePointer<Float>, _ m5: UnsafePointer<Float>,
                             row: Int, out: UnsafeMutablePointer<Float>, count: Int) {
            switch row {
            case 0: for t in 0..<count { out[t] = m0[t] + (m1[t] + m2[t]) + (m3[t] + m4[t]) }
            case 1: for t in 0..<count { out[t] = (m1[t] - m2[t]) + 2 * (m3[t] - m4[t]) }
            case 2: for t in 0..<count { out[t] = (m1[t] + m2[t]) + 4 * (m3[t] + m4[t]) }
            default: for t in 0..<count { out[t] = (m1[t] - m2[t]) + 8 * (m3[t] - m4[t]) + m5[t] }
            }
        }
    }
}
