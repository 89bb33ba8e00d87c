import DarkroomTensor

/// A1111's "SD upscale" (`scripts/sd_upscale.py`): enlarge with Lanczos, then run img2img over
/// overlapping tiles at the model's resolution and blend the overlaps with linear ramps, so a large
/// result never needs a large latent and memory stays bounded by one tile.
public struct TileLayout: Sendable, Equatable {
    /// Tile origins along one axis: `size` covered by tiles of `tile` with at least `overlap` shared.
    public static func origins(size: Int, tile: Int, overlap: Int) -> [Int] {
        guard size > tile else { return [0] }
        let count = Int((Double(size - overlap) / Double(tile - overlap)).rounded(.up))
        let step = Double(size - tile) / Double(count - 1)
        return (0..<count).map { Int((Double($0) * step).rounded()) }
    }

    /// Blend weight of position `i` in a tile of length `length` starting at `origin`, within an axis of
    /// `size`: rises linearly over `overlap` at an inner edge, 1 at the image's own edges.
    static func weight(_ i: Int, origin: Int, length: Int, size: Int, overlap: Int) -> Float {
        var w: Float = 1
        if origin > 0, overlap > 0 { w = min(w, Float(i + 1) / Float(overlap + 1)) }
        if origin + length < size, overlap > 0 { w = min(w, Float(length - i) / Float(overlap + 1)) }
        return w
    }
}

extension StableDiffusionPipeline {
    /// img2img over tiles of `tile`×`tile` (sides rounded to the VAE factor) overlapping by `overlap`,
    /// blended: `image` [1, 3, H, W] in [-1, 1] → [1, 3, H, W] in [0, 1]. Every tile uses the same seed,
    /// as A1111's SD upscale does.
    /// `controlNets` gives each tile's units from the tile's input and its box in `image` (nil: none).
    public func tiledImageToImage(_ image: Tensor, settings: GenerationSettings, tile: Int, overlap: Int,
                                  controlNets: ((Tensor, CropBox) throws -> [ControlNetUnit])? = nil,
                                  progress: Progress? = nil) throws -> Tensor {
        let (height, width) = (image.shape[2], image.shape[3])
        let factor = models.vae.config.downscale
        let side = max(factor, tile / factor * factor)
        let tileHeight = min(side, height / factor * factor), tileWidth = min(side, width / factor * factor)
        let overlap = min(overlap, min(tileHeight, tileWidth) / 2)
        var sum = Tensor(zeros: [1, 3, height, width]), weights = Tensor(zeros: [1, 1, height, width])
        for y0 in TileLayout.origins(size: height, tile: tileHeight, overlap: overlap) {
            for x0 in TileLayout.origins(size: width, tile: tileWidth, overlap: overlap) {
                let crop = image.slice(y0..<(y0 + tileHeight), axis: 2).slice(x0..<(x0 + tileWidth), axis: 3)
                let box = CropBox(x1: x0, y1: y0, x2: x0 + tileWidth, y2: y0 + tileHeight)
                let out = try imageToImage(crop, settings: settings, controlNets: try controlNets?(crop, box) ?? [], progress: progress).image
                out.withUnsafeBufferPointer { o in
                    sum.withUnsafeMutableBufferPointer { s in
                        weights.withUnsafeMutableBufferPointer { w in
                            for y in 0..<tileHeight {
                                let wy = TileLayout.weight(y, origin: y0, length: tileHeight, size: height, overlap: overlap)
                                for x in 0..<tileWidth {
                                    let weight = wy * TileLayout.weight(x, origin: x0, length: tileWidth, size: width, overlap: overlap)
                                    let target = (y0 + y) * width + x0 + x
                                    w[target] += weight
                                    for c in 0..<3 { s[c * height * width + target] += weight * o[(c * tileHeight + y) * tileWidth + x] }
                                }
                            }
                        }
                    }
                }
            }
        }
        sum.withUnsafeMutableBufferPointer { s in
            weights.withUnsafeBufferPointer { w in
                for c in 0..<3 { for i in 0..<(height * width) { s[c * height * width + i] /= max(w[i], 1e-12) } }
            }
        }
        return sum
    }
}
