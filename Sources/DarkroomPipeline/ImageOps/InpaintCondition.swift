import Foundation

// The control image of ControlNet inpaint models (control_v11p_sd15_inpaint), as diffusers' documentation
// builds it (`make_inpaint_condition`) and as sd-webui-controlnet's `inpaint` / `inpaint_only` do it in
// scripts/hook.py (`hint = c * (1 - m) - m` with m = mask > 0.5):
//     image = np.array(image.convert("RGB")).astype(np.float32) / 255.0
//     image_mask = np.array(image_mask.convert("L")).astype(np.float32) / 255.0
//     image[image_mask > 0.5] = -1.0
// A mask level m is "masked" when Float(m) / 255 > 0.5, i.e. m ≥ 128.

extension ImageOps {
    /// The ControlNet inpaint condition: RGB as level / 255 (Float32), with every channel of the pixels
    /// whose mask level / 255 exceeds 0.5 set to −1. `image` has 1 (replicated to RGB) or 3 channels;
    /// `mask` is one plane of the image's size (white = repaint).
    public static func inpaintCondition(image: PlanarImage8, mask: PlanarImage8) throws -> PlanarImage {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        try checkShape(width: mask.width, height: mask.height, channels: mask.channels, count: mask.pixels.count)
        guard image.channels == 1 || image.channels == 3 else { throw ImageOpsError.unsupportedChannels(image.channels) }
        guard mask.channels == 1 else { throw ImageOpsError.unsupportedChannels(mask.channels) }
        guard mask.width == image.width, mask.height == image.height else { throw ImageOpsError.sizeMismatch }
        let rgb = image.rgb
        let n = image.planeSize
        var out = [Float](repeating: 0, count: 3 * n)
        for c in 0..<3 {
            for i in 0..<n {
                out[c * n + i] = Float(mask.pixels[i]) / 255 > 0.5 ? -1 : Float(rgb.pixels[c * n + i]) / 255
            }
        }
        return PlanarImage(uncheckedWidth: image.width, height: image.height, channels: 3, pixels: out)
    }
}

extension PlanarImage8 {
    /// Three channels: a gray image replicated (PIL's `convert("RGB")`, the extension's HWC3), others unchanged.
    var rgb: PlanarImage8 {
        guard channels == 1 else { return self }
        return PlanarImage8(uncheckedWidth: width, height: height, channels: 3, pixels: pixels + pixels + pixels)
    }
}
