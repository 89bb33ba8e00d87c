import DarkroomTensor

/// Between the pipeline's tensors and the image operations' 8-bit planar images (both channel-major).
extension PlanarImage8 {
    /// From an image tensor [1, C, H, W] in [-1, 1]: round((x / 2 + 0.5) · 255) — exact for 8-bit inputs.
    init(imageTensor t: Tensor) throws {
        try self.init(width: t.shape[3], height: t.shape[2], channels: t.shape[1],
                      pixels: t.scalars.map { UInt8((ImageTensor.unitClamp($0 / 2 + 0.5) * 255).rounded()) })
    }

    /// From a mask or unit-range tensor [1, C, H, W] in [0, 1].
    init(unitTensor t: Tensor) throws {
        try self.init(width: t.shape[3], height: t.shape[2], channels: t.shape[1],
                      pixels: t.scalars.map { UInt8((ImageTensor.unitClamp($0) * 255).rounded()) })
    }

    /// [1, C, H, W] in [-1, 1].
    var imageTensor: Tensor {
        Tensor(shape: [1, channels, height, width], scalars: pixels.map { (Float($0) / 255) * 2 - 1 })
    }

    /// [1, C, H, W] in [0, 1].
    var unitTensor: Tensor {
        Tensor(shape: [1, channels, height, width], scalars: pixels.map { Float($0) / 255 })
    }
}
