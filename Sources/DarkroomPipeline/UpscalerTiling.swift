import DarkroomModels
import DarkroomTensor

/// How an upscaler network runs over a large image: tiles of `tile`×`tile` input pixels overlapping by at least
/// `overlap`, so memory is that of one tile plus one band of output rows whatever the image's size.
///
/// Seams: in each overlap band, the outer quarter of a tile's output (pixels that saw too little context) gets no
/// weight, the next half fades linearly into its neighbour's, and the inner quarter is the tile's alone. So every
/// pixel with weight was computed with at least `overlap / 4` input pixels of context on each inner side, and
/// neighbours cross-fade where both are reliable. (A1111's `ESRGAN_tile` fades across the whole overlap;
/// ComfyUI's `ImageUpscaleWithModel` feathers it too.) With the default 256 px tiles and 32 px overlap, a 512 px side takes
/// three 192 px tiles (12 % more work per side) and a 4000×3000 scan 18×14 tiles.
public struct UpscalerTiling: Sendable, Equatable {
    /// Tile side, in input pixels.
    public var tile: Int
    /// The smallest overlap of neighbouring tiles, in input pixels.
    public var overlap: Int

    public init(tile: Int = 256, overlap: Int = 32) {
        self.tile = tile
        self.overlap = overlap
    }

    public static let standard = UpscalerTiling()

    /// Tiles along an axis of `size` pixels: their origins and their common length. The count is the fewest tiles
    /// of at most `tile` pixels overlapping by `overlap`; the length is then shrunk to what that count needs, so a
    /// 512 px side takes three 192 px tiles rather than three 256 px ones. Origins and length are multiples of
    /// `grid` (a pixel-unshuffling model's factor, so each tile sees the whole image's unshuffle phase).
    func layout(size: Int, grid: Int) -> (origins: [Int], length: Int) {
        let cells = (size + grid - 1) / grid
        let tileCells = max(1, tile / grid), overlapCells = min(max(0, overlap / grid), tileCells - 1)
        guard cells > tileCells else { return ([0], size) }
        let count = (cells - overlapCells + tileCells - overlapCells - 1) / (tileCells - overlapCells)
        let length = min(tileCells, (cells + (count - 1) * overlapCells + count - 1) / count)
        let origins = TileLayout.origins(size: cells, tile: length, overlap: overlapCells).map { $0 * grid }
        return (origins, min(size, length * grid))
    }

    /// The blend weight of output pixel `j` of a tile starting at input `origin`, `length` input pixels long, on
    /// an axis of `size` input pixels, at `scale`: 0 over the first quarter of the overlap from an inner edge,
    /// then a linear rise over half of it; 1 at the image's own edges.
    func weight(_ j: Int, origin: Int, length: Int, size: Int, scale: Int) -> Float {
        guard overlap >= 4 else { return 1 }
        let u = (Float(j) + 0.5) / Float(scale)       // input pixels from the tile's start
        let quarter = Float(overlap) / 4, half = Float(overlap) / 2
        func ramp(_ d: Float) -> Float { min(1, max(0, (d - quarter) / half)) }
        var w: Float = 1
        if origin > 0 { w = min(w, ramp(u)) }
        if origin + length < size { w = min(w, ramp(Float(length) - u)) }
        return w
    }
}

extension UpscalerModel {
    /// The network over `image` [1, 3, H, W] in [0, 1], in tiles (see `UpscalerTiling`): an 8-bit RGB image of
    /// H·scale × W·scale (round(clamp(x, 0, 1) · 255), as A1111 and spandrel's users save it). `progress`
    /// receives (tiles done, tiles) and may cancel (`PipelineError.cancelled`). Throws `.nonFinite(.upscaler)`
    /// when the network gives NaN or infinity.
    public func upscale(_ image: Tensor, tiling: UpscalerTiling = .standard,
                        progress: ((Int, Int) -> Bool)? = nil) throws -> PlanarImage8 {
        precondition(image.rank == 4 && image.dim(0) == 1 && image.dim(1) == 3, "upscale: [1, 3, H, W] expected, got \(image.shape)")
        let (height, width, s) = (image.dim(2), image.dim(3), scale)
        let (outHeight, outWidth) = (height * s, width * s)
        let grid = minimumSide
        let (rows, tileRows) = tiling.layout(size: height, grid: grid), (columns, tileColumns) = tiling.layout(size: width, grid: grid)
        var pixels = [UInt8](repeating: 0, count: 3 * outHeight * outWidth)
        // A band of output rows [bandTop, bandTop + bandRows): weighted sums (3 planes) and weights.
        let bandRows = tileRows * s
        var sums = [Float](repeating: 0, count: 3 * bandRows * outWidth), weights = [Float](repeating: 0, count: bandRows * outWidth)
        var bandTop = 0
        // Writes the band's rows above `end` (no later tile reaches them) and moves the rest to the top.
        func flush(until end: Int) {
            let done = end - bandTop
            guard done > 0 else { return }
            for c in 0..<3 {
                for y in 0..<done {
                    let source = (c * bandRows + y) * outWidth, target = (c * outHeight + bandTop + y) * outWidth
                    for x in 0..<outWidth {
                        let w = weights[y * outWidth + x]
                        pixels[target + x] = ImageOps.quantize(w > 0 ? sums[source + x] / w : 0)
                    }
                }
                let plane = c * bandRows * outWidth
                for y in 0..<bandRows {
                    let row = plane + y * outWidth
                    if y + done < bandRows {
                        for x in 0..<outWidth { sums[row + x] = sums[row + done * outWidth + x] }
                    } else {
                        for x in 0..<outWidth { sums[row + x] = 0 }
                    }
                }
            }
            for y in 0..<bandRows {
                for x in 0..<outWidth { weights[y * outWidth + x] = y + done < bandRows ? weights[(y + done) * outWidth + x] : 0 }
            }
            bandTop = end
        }
        let total = rows.count * columns.count
        var done = 0
        for y0 in rows {
            flush(until: y0 * s)
            let tileHeight = min(tileRows, height - y0)
            for x0 in columns {
                let tileWidth = min(tileColumns, width - x0)
                let crop = image.slice(y0..<(y0 + tileHeight), axis: 2).slice(x0..<(x0 + tileWidth), axis: 3)
                let out = self(crop)                                                     // [1, 3, tileHeight·s, tileWidth·s]
                guard out.isAllFinite else { throw PipelineError.nonFinite(stage: .upscaler) }
                let (oh, ow) = (tileHeight * s, tileWidth * s)
                let wy = (0..<oh).map { tiling.weight($0, origin: y0, length: tileHeight, size: height, scale: s) }
                let wx = (0..<ow).map { tiling.weight($0, origin: x0, length: tileWidth, size: width, scale: s) }
                out.withUnsafeBufferPointer { o in
                    for y in 0..<oh where wy[y] > 0 {
                        let bandRow = y0 * s + y - bandTop
                        for x in 0..<ow where wx[x] > 0 {
                            let w = wy[y] * wx[x], target = bandRow * outWidth + x0 * s + x
                            weights[target] += w
                            for c in 0..<3 {
                                sums[c * bandRows * outWidth + target] += w * ImageTensor.unitClamp(o[(c * oh + y) * ow + x])
                            }
                        }
                    }
                }
                done += 1
                if let progress, !progress(done, total) { throw PipelineError.cancelled(step: done) }
            }
        }
        flush(until: outHeight)
        return try PlanarImage8(width: outWidth, height: outHeight, channels: 3, pixels: pixels)
    }
}
