import DarkroomTensor

// diffusers' ControlNet pipelines turn a control image into the model's input with `prepare_image`:
//     control_image_processor = VaeImageProcessor(vae_scale_factor=8, do_convert_rgb=True, do_normalize=False)
//     image = control_image_processor.preprocess(image, height=height, width=width)
// preprocess rounds width and height down to multiples of 8 (get_default_height_width), then
//  * a PIL image (our `.levels`) is resized with PIL's LANCZOS when its size differs, made RGB and scaled
//    to level / 255 — no normalisation to [-1, 1];
//  * a tensor (our `.values`, the inpaint condition) is resized with torch.nn.functional.interpolate's
//    default mode, "nearest": source index = min(floor(dst · Float(in) / Float(out)), in − 1), with
//    torch's exact shortcuts for out = in and out = 2·in.
// The result is [1, 3, H, W] Float32; the pipeline repeats it for the batch and classifier-free guidance.

extension ControlImage {
    /// The control image as the ControlNet's input [1, 3, H, W], as diffusers' `prepare_image` makes it for a
    /// `width`×`height` job (both rounded down to multiples of 8, as diffusers does): `.levels` in [0, 1]
    /// after a Pillow-exact Lanczos resize, `.values` (in [-1, 1]) after a torch-exact nearest resize.
    public func tensor(width: Int, height: Int) throws -> Tensor {
        let w = width - width % 8, h = height - height % 8
        guard w > 0, h > 0, w <= 1 << 16, h <= 1 << 16 else {
            throw PipelineError.invalidValue(field: "control image size", value: "\(width)x\(height)",
                                             expected: "at least 8x8 and at most 65536 on a side (sizes are rounded down to multiples of 8)")
        }
        switch self {
        case let .levels(image):
            guard image.channels == 1 || image.channels == 3 else { throw ImageOpsError.unsupportedChannels(image.channels) }
            let resized = try ImageOps.resizeLanczos(image.rgb, width: w, height: h)
            return resized.unitTensor
        case let .values(image):
            try ImageOps.checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
            let xs = Self.torchNearestIndices(inSize: image.width, outSize: w)
            let ys = Self.torchNearestIndices(inSize: image.height, outSize: h)
            let inPlane = image.width * image.height
            var out = [Float](repeating: 0, count: image.channels * w * h)
            for c in 0..<image.channels {
                for y in 0..<h {
                    let src = c * inPlane + ys[y] * image.width, dst = (c * h + y) * w
                    for x in 0..<w { out[dst + x] = image.pixels[src + xs[x]] }
                }
            }
            return Tensor(shape: [1, image.channels, h, w], scalars: out)
        }
    }

    /// torch's `nearest_idx` (aten/src/ATen/native/UpSample.h) for `interpolate(size=…)`, mode "nearest".
    static func torchNearestIndices(inSize: Int, outSize: Int) -> [Int] {
        if outSize == inSize { return Array(0..<outSize) }
        if outSize == 2 * inSize { return (0..<outSize).map { $0 >> 1 } }
        let scale = Float(inSize) / Float(outSize)
        return (0..<outSize).map { min(Int((Float($0) * scale).rounded(.down)), inSize - 1) }
    }
}

extension ControlPreprocessor {
    /// The pipeline's entry point: runs the preprocessor on the job's input image (the [1, 3, H, W] tensor in
    /// [-1, 1] the VAE gets, at the job's size) and its mask ([1, 1, H, W] in [0, 1], for `inpaint` and
    /// `inpaint_only`), and returns the ControlNet's input [1, 3, height, width] (`ControlImage.tensor`).
    public func controlTensor(image: Tensor, mask: Tensor? = nil, width: Int, height: Int) throws -> Tensor {
        guard image.rank == 4, image.shape[0] == 1, image.shape[1] == 3 || image.shape[1] == 1 else {
            throw PipelineError.invalidValue(field: "image", value: "a tensor of shape \(image.shape)", expected: "[1, 3, H, W]")
        }
        var maskLevels: PlanarImage8?
        if needsMask, let mask {
            guard mask.rank == 4, mask.shape == [1, 1, image.shape[2], image.shape[3]] else {
                throw PipelineError.invalidValue(field: "mask", value: "a tensor of shape \(mask.shape)",
                                                 expected: "[1, 1, \(image.shape[2]), \(image.shape[3])]")
            }
            maskLevels = try PlanarImage8(unitTensor: mask)
        }
        return try apply(to: PlanarImage8(imageTensor: image), mask: maskLevels).tensor(width: width, height: height)
    }
}
