import DarkroomTensor

/// diffusers' `enable_vae_tiling`: the image (or latent) is cut into overlapping square tiles, each tile runs
/// through the encoder (or decoder) on its own, and the results are cross-faded where they overlap. Memory is
/// bounded by one tile, whatever the image size; the result differs slightly from an untiled pass (each tile's
/// GroupNorm sees only that tile), exactly as diffusers' does.
///
/// Tile sizes follow diffusers: `sampleSize` pixels (its `tile_sample_min_size`, the VAE config's
/// `sample_size`: 512 for SD 1.x, 768 for SD 2.x-v), latent tiles of `sampleSize / downscale`, and an overlap of
/// `overlapFactor` (0.25) of a tile.
public struct VAETiling: Sendable, Equatable {
    public var sampleSize: Int
    public var overlapFactor: Double

    public init(sampleSize: Int = 512, overlapFactor: Double = 0.25) {
        precondition(sampleSize > 0 && overlapFactor >= 0 && overlapFactor < 1, "VAETiling: bad tile size or overlap")
        self.sampleSize = sampleSize
        self.overlapFactor = overlapFactor
    }

    /// Images larger than this (either side, in pixels) are encoded and decoded in tiles when the caller leaves
    /// tiling on automatic. Below it an untiled pass fits in a few GiB, and results stay identical to diffusers'
    /// default (untiled) pipelines; above it (a 2048² scan needs ~10 GiB untiled) tiles keep memory bounded.
    public static let automaticAbove = 1024

    /// Whether a pass over an image of `height`×`width` pixels tiles under this tiling (as diffusers: when a side
    /// is larger than one tile).
    func tiles(height: Int, width: Int) -> Bool { height > sampleSize || width > sampleSize }

    /// Runs `body` on each overlapping tile of `input` [N, C, H, W] and stitches the outputs.
    ///
    /// `inputTile`/`outputTile` are the tile sides before and after `body` (e.g. 512 px → 64 latents when
    /// encoding). Mirrors `_tiled_encode`/`tiled_decode`: tiles start every `inputTile·(1 − overlap)`; each tile is
    /// blended in place with the (already blended) tile above, then the one to its left, over
    /// `outputTile·overlap` rows/columns, then cropped to `outputTile − blend` and concatenated.
    static func run(_ input: Tensor, inputTile: Int, outputTile: Int, overlapFactor: Double,
                    _ body: (Tensor) -> Tensor) -> Tensor {
        let (height, width) = (input.dim(2), input.dim(3))
        let stride = Int(Double(inputTile) * (1 - overlapFactor))
        let blend = Int(Double(outputTile) * overlapFactor)
        let limit = outputTile - blend
        var rows: [[Tensor]] = []
        for top in Swift.stride(from: 0, to: height, by: stride) {
            var row: [Tensor] = []
            for left in Swift.stride(from: 0, to: width, by: stride) {
                let tile = input.slice(top..<min(top + inputTile, height), axis: 2)
                    .slice(left..<min(left + inputTile, width), axis: 3)
                row.append(body(tile))
            }
            rows.append(row)
        }
        var resultRows: [Tensor] = []
        for i in rows.indices {
            var resultRow: [Tensor] = []
            for j in rows[i].indices {
                if i > 0 { blendVertically(above: rows[i - 1][j], into: &rows[i][j], extent: blend) }
                if j > 0 { blendHorizontally(left: rows[i][j - 1], into: &rows[i][j], extent: blend) }
                let tile = rows[i][j]
                resultRow.append(tile.slice(0..<min(limit, tile.dim(2)), axis: 2).slice(0..<min(limit, tile.dim(3)), axis: 3))
            }
            resultRows.append(Tensor.concatenate(resultRow, axis: 3))
        }
        return Tensor.concatenate(resultRows, axis: 2)
    }

    /// diffusers `blend_v`: b[:, :, y] = a[:, :, −e + y]·(1 − y/e) + b[:, :, y]·(y/e) for y < e.
    static func blendVertically(above a: Tensor, into b: inout Tensor, extent: Int) {
        let e = min(a.dim(2), b.dim(2), extent)
        guard e > 0 else { return }
        let (planes, aHeight, bHeight, width) = (b.dim(0) * b.dim(1), a.dim(2), b.dim(2), b.dim(3))
        precondition(a.dim(3) == width && a.dim(0) * a.dim(1) == planes, "blend_v: tiles \(a.shape) and \(b.shape)")
        a.withUnsafeBufferPointer { a in
            b.withUnsafeMutableBufferPointer { b in
                for p in 0..<planes {
                    for y in 0..<e {
                        let (wa, wb) = weights(y, e)
                        let src = a.baseAddress! + (p * aHeight + aHeight - e + y) * width
                        let dst = b.baseAddress! + (p * bHeight + y) * width
                        for x in 0..<width { dst[x] = src[x] * wa + dst[x] * wb }
                    }
                }
            }
        }
    }

    /// diffusers `blend_h`: b[..., x] = a[..., −e + x]·(1 − x/e) + b[..., x]·(x/e) for x < e.
    static func blendHorizontally(left a: Tensor, into b: inout Tensor, extent: Int) {
        let e = min(a.dim(3), b.dim(3), extent)
        guard e > 0 else { return }
        let (rows, aWidth, bWidth) = (b.dim(0) * b.dim(1) * b.dim(2), a.dim(3), b.dim(3))
        precondition(a.dim(2) == b.dim(2) && a.count / aWidth == rows, "blend_h: tiles \(a.shape) and \(b.shape)")
        a.withUnsafeBufferPointer { a in
            b.withUnsafeMutableBufferPointer { b in
                for r in 0..<rows {
                    let src = a.baseAddress! + r * aWidth + aWidth - e, dst = b.baseAddress! + r * bWidth
                    for x in 0..<e {
                        let (wa, wb) = weights(x, e)
                        dst[x] = src[x] * wa + dst[x] * wb
                    }
                }
            }
        }
    }

    /// The cross-fade weights (1 − i/e, i/e), computed in double and rounded once, as torch does with Python
    /// float scalars.
    private static func weights(_ i: Int, _ e: Int) -> (Float, Float) {
        (Float(1 - Double(i) / Double(e)), Float(Double(i) / Double(e)))
    }
}

extension AutoencoderKL {
    /// `encode`, in tiles when `tiling` is given and the image is larger than one tile (diffusers `_tiled_encode`).
    public func encode(_ image: Tensor, tiling: VAETiling?) -> DiagonalGaussianDistribution {
        guard let tiling, tiling.tiles(height: image.dim(2), width: image.dim(3)) else { return encode(image) }
        let moments = VAETiling.run(image, inputTile: tiling.sampleSize, outputTile: tiling.sampleSize / config.downscale,
                                    overlapFactor: tiling.overlapFactor) { quantConv(encoder($0)) }
        return DiagonalGaussianDistribution(moments: moments)
    }

    /// `decode`, in tiles when `tiling` is given and the latent is larger than one latent tile (diffusers
    /// `tiled_decode`).
    public func decode(_ latent: Tensor, tiling: VAETiling?) -> Tensor {
        let latentTile = (tiling?.sampleSize ?? 0) / config.downscale
        guard let tiling, latent.dim(2) > latentTile || latent.dim(3) > latentTile else { return decode(latent) }
        return VAETiling.run(latent, inputTile: latentTile, outputTile: tiling.sampleSize,
                             overlapFactor: tiling.overlapFactor) { decoder(postQuantConv($0)) }
    }
}
