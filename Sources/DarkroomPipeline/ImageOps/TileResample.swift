import Foundation

// sd-webui-controlnet's `tile_resample` preprocessor (scripts/processor.py, or
// scripts/preprocessor/legacy/processor.py in later versions):
//     img = HWC3(img)
//     if thr_a < 1.1: return img                       # thr_a is the "Down Sampling Rate" slider, 1...8
//     H = int(float(H) / float(thr_a)); W = int(float(W) / float(thr_a))
//     img = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
// The control model then sees this smaller image resized back to the job's size (diffusers' prepare_image:
// PIL Lanczos, `ControlImage.tensor(width:height:)`), i.e. a blurred copy of the input.
// One difference, to stay total: a side that int(side / rate) makes 0 is 1 here, where cv2.resize fails.

extension ImageOps {
    /// The extension's threshold below which `tile_resample` returns its input unchanged.
    public static let tileResampleIdentityBelow = 1.1

    /// The size `tile_resample` produces for a `width`×`height` image: int(side / rate), at least 1
    /// (unchanged below a rate of 1.1).
    public static func tileResampleSize(width: Int, height: Int, downSamplingRate rate: Double) -> (width: Int, height: Int) {
        guard rate >= tileResampleIdentityBelow else { return (width, height) }
        // side / rate ≤ side, so the conversion cannot overflow; `max` keeps at least one pixel.
        return (max(1, Int((Double(width) / rate).rounded(.towardZero))), max(1, Int((Double(height) / rate).rounded(.towardZero))))
    }

    /// sd-webui-controlnet's `tile_resample`: the image made `downSamplingRate` times smaller with
    /// OpenCV's INTER_AREA (`resizeArea`), or returned unchanged when the rate is below 1.1.
    /// The rate must be finite and ≥ 1.
    public static func tileResample(_ image: PlanarImage8, downSamplingRate rate: Double) throws -> PlanarImage8 {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        guard rate.isFinite, rate >= 1 else {
            throw ImageOpsError.invalidArgument("down sampling rate \(rate) (finite, ≥ 1)")
        }
        let size = tileResampleSize(width: image.width, height: image.height, downSamplingRate: rate)
        return try resizeArea(image, width: size.width, height: size.height)
    }
}
