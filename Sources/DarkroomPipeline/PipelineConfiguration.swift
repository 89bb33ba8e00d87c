import DarkroomImageIO
import DarkroomModels
import DarkroomTensor

/// Everything one job needs besides the model and the input images (A1111/diffusers defaults).
/// The CLI and the daemon both build one from a recipe and hand it to `StableDiffusionPipeline.run`.
public struct PipelineConfiguration: Sendable, Equatable {
    /// `upscale`: an upscaler network (or Lanczos) alone, no diffusion (A1111's Extras tab); see `ImageUpscaling`.
    public enum Mode: String, Sendable, CaseIterable { case img2img, inpaint, restore, upscale }
    /// What the masked area starts from (A1111's `inpainting_fill`).
    public enum MaskedContent: String, Sendable, CaseIterable {
        /// The input image (A1111 "original"; diffusers' behaviour).
        case original
        /// The input with the masked area filled from its surroundings before encoding: what removing an
        /// object with a plain checkpoint needs (otherwise the object tends to come back).
        case fill
        /// The masked area of the start latents replaced by fresh noise.
        case latentNoise = "latent_noise"
        /// The masked area of the start latents set to zero.
        case latentNothing = "latent_nothing"
    }
    public enum InpaintArea: String, Sendable, CaseIterable { case whole, masked }
    /// How an input whose sides are not multiples of 8 is made to fit. `pad` and `resize` give back an
    /// image of the input's size; `crop` returns the cropped size.
    public enum SizeHandling: String, Sendable, CaseIterable { case pad, crop, resize }

    public var mode: Mode = .img2img
    public var generation = GenerationSettings()
    /// Images per job; image i uses seed + i.
    public var count = 1
    public var sizeHandling: SizeHandling = .pad
    // Inpainting.
    public var invertMask = false
    /// Gaussian blur of the mask edge in pixels (A1111's default 4); the blurred mask is what pastes back.
    public var maskBlur = 4
    public var inpaintArea: InpaintArea = .whole
    /// Pixels around the mask's bounding box for `inpaintArea: .masked`.
    public var padding = 32
    /// The side the model works at for `inpaintArea: .masked` (the crop is scaled to about this
    /// squared, at its aspect); nil: the model's `defaultResolution` (512, or 768 for v-prediction models (SD 2.x
    /// 768-v); SDXL 1024).
    public var resolution: Int?
    public var pasteBack = true
    public var maskedContent: MaskedContent = .original
    // Restoration.
    /// A grayscale input gives a grayscale output unless this is set.
    public var colorize = false
    /// Find scratches, dust and tears (`ImageOps.detectDefects`: long lines lighter or darker than both sides,
    /// isolated spots, long winding bright ridges) and inpaint them before the img2img pass. Off by default: on
    /// issue 15's evaluation set it finds 83 % of the damage (precision 0.83) and marks at most 0.58 % of a clean
    /// photo, but on held-out photos it marks real structure that looks like damage in every local respect (a star
    /// field's stars, ruled lines and handwriting, brick mortar, grass blades: 1–30 % of such a photo), which the
    /// repaint would redraw (see the README).
    public var repairDefects = false
    /// The contrast, in [0, 1] of the luminance range, a line must have against both of its sides to be a
    /// defect (0.07 ≈ 18 levels; spots need 5/3 of it). Lower finds fainter damage and more detail.
    public var defectThreshold: Float = 0.07
    /// Restoration: 1, or 2 to enlarge twice with A1111's "SD upscale" (`upscaler`, then tiled img2img).
    /// `mode: upscale`: the enlargement factor; 0 is the upscaler model's own scale (4 for Lanczos).
    public var upscale = 1
    /// The upscaler model's name (a file in `Models/ESRGAN/`) for `upscale`; nil: Pillow's Lanczos. The model
    /// itself is passed to `run` loaded.
    public var upscaler: String?
    /// Tile side for the upscale pass (nil: the model resolution, 512, 768 or 1024) and the tiles' overlap.
    public var tileSize: Int?
    public var tileOverlap = 64
    /// Restoration: levels and colour balance before the diffusion pass (`ImageOps.autoColor`). nil: on for colour
    /// photos, off for grayscale ones (whose levels a restoration keeps as they are unless asked).
    public var autoColor: Bool?
    public var autoColorBalance = ImageOps.ColorBalance.whitePatch
    /// Percent of the darkest and of the lightest samples clipped by the levels.
    public var autoColorClip = 0.5

    /// Whether a restoration of `image` corrects its levels and colour first (`autoColor`, or its default).
    public func appliesAutoColor(to image: Image) -> Bool {
        mode == .restore && (autoColor ?? !image.isGrayscale)
    }

    public init() {}

    /// Restoration's defaults where the recipe says nothing: a light img2img pass (strength 0.3) under
    /// prompts that ask for a clean photograph of the same picture.
    public static let restorationPrompt = "a clean, sharp, well exposed photograph, fine detail, natural film grain"
    public static let restorationNegativePrompt = "scratches, dust, stains, tears, cracks, blur, noise, jpeg artifacts, faded, low quality"
    public static let restorationStrength = 0.3
    /// Restoration with a tile ControlNet (the preset): the tile model keeps the photo's structure, so the pass can
    /// clean and sharpen harder, as A1111's SD upscale / Ultimate SD upscale users run tile at 0.4–0.6.
    public static let tileRestorationStrength = 0.5
}

extension StableDiffusionPipeline {
    /// Runs one job: `count` images (seeds seed, seed + 1, …) from `image` (and `mask` for inpainting).
    /// The progress callback receives (image index, step, steps) and may cancel.
    /// `controlNets` steer every pass (see `ControlNetRequest`): each gets its control image made for the image that
    /// pass denoises.
    /// `upscaler` is the loaded model `configuration.upscaler` names (nil: Lanczos).
    /// `upscaler` is the loaded model `configuration.upscaler` names (nil: Lanczos).
    public func run(_ configuration: PipelineConfiguration, image: Image, mask: Image? = nil, upscaler: UpscalerModel? = nil,
                    controlNets: [ControlNetRequest] = [],
                    progress: ((Int, Int, Int) -> Bool)? = nil) throws -> [GenerationResult] {
        if configuration.mode == .upscale {
            return try ImageUpscaling.run(configuration, image: image, model: upscaler, progress: progress)
        }
        if let name = configuration.upscaler, upscaler == nil {
            throw PipelineError.invalidValue(field: "upscaler", value: "'\(name)' (not loaded)", expected: "the loaded model, or no upscaler (Lanczos)")
        }
        try validate(configuration, imageWidth: image.width, imageHeight: image.height)
        // The products' precision is process-wide (the kernels read it); a job sets it for its own run.
        let previousPrecision = Tensor.precision
        Tensor.precision = configuration.generation.precision
        defer { Tensor.precision = previousPrecision }
        let factor = models.vae.config.downscale
        guard image.width >= factor, image.height >= factor else {
            throw PipelineError.imageTooSmall(width: image.width, height: image.height, minimum: factor)
        }
        var input = ImageTensor.tensor(from: image)
        // The mask as painted (binarised for the diffusion) and, with `maskBlur`, blurred (what pastes back).
        var maskTensor: Tensor?, diffusionMask: Tensor?
        if configuration.mode == .inpaint {
            guard let mask else { throw PipelineError.invalidValue(field: "mask", value: "missing", expected: "a mask image for inpaint") }
            guard mask.width == image.width, mask.height == image.height else {
                throw PipelineError.maskSizeMismatch(mask: "mask", maskSize: "\(mask.width)×\(mask.height)",
                                                     imageSize: "\(image.width)×\(image.height)")
            }
            var m = ImageTensor.mask(from: mask)
            if configuration.invertMask { m = m.mapValues { 1 - $0 } }
            diffusionMask = m
            if configuration.maskBlur > 0 {
                // A1111: cv2.GaussianBlur of the 8-bit mask, kernel 2·⌊2.5σ + 0.5⌋ + 1.
                m = try ImageOps.gaussianBlurA1111(mask: PlanarImage8(unitTensor: m), radius: Double(configuration.maskBlur)).unitTensor
            }
            maskTensor = m
        }
        // Make the sides multiples of the VAE factor.
        let (height, width) = (image.height, image.width)
        let fitted = (height: height / factor * factor, width: width / factor * factor)
        let needsFit = fitted.height != height || fitted.width != width
        if needsFit {
            switch configuration.sizeHandling {
            case .pad:
                let padded = (height: (height + factor - 1) / factor * factor, width: (width + factor - 1) / factor * factor)
                input = input.padReplicate(height: padded.height, width: padded.width)
                maskTensor = maskTensor?.padReplicate(height: padded.height, width: padded.width)
                diffusionMask = diffusionMask?.padReplicate(height: padded.height, width: padded.width)
            case .crop:
                input = input.centerCrop(height: fitted.height, width: fitted.width)
                maskTensor = maskTensor?.centerCrop(height: fitted.height, width: fitted.width)
                diffusionMask = diffusionMask?.centerCrop(height: fitted.height, width: fitted.width)
            case .resize:
                // Pillow's Lanczos down to the nearest multiple of 8 (as diffusers' VaeImageProcessor); back up after.
                input = try ImageOps.resizeLanczos(PlanarImage8(imageTensor: input), width: fitted.width, height: fitted.height).imageTensor
                maskTensor = try maskTensor.map {
                    try ImageOps.resizeLanczos(PlanarImage8(unitTensor: $0), width: fitted.width, height: fitted.height).unitTensor
                }
                diffusionMask = try diffusionMask.map {
                    try ImageOps.resizeLanczos(PlanarImage8(unitTensor: $0), width: fitted.width, height: fitted.height).unitTensor
                }
            }
        }
        // Restoration keeps a grayscale photo grayscale (gray PNG/JPEG, or RGB with equal channels).
        let grayOutput = configuration.mode == .restore && !configuration.colorize && image.isGrayscale
        // ControlNets: the users' own control images at the job's size, once; preprocessors run per pass.
        for (i, request) in controlNets.enumerated() where request.preprocessor.needsMask && request.image == nil && configuration.mode != .inpaint {
            throw PipelineError.invalidValue(field: "controlnet[\(i)].module", value: "'\(request.preprocessor.name)'",
                                             expected: "a module that needs no mask outside inpaint mode (the inpaint condition is made from the job's mask)")
        }
        func controlFulls(height: Int, width: Int) throws -> [Tensor?] {
            try controlNets.map { try $0.fullControl(height: height, width: width) }
        }
        func units(_ work: Tensor, mask: Tensor?, fulls: [Tensor?], region: CropBox?) throws -> [ControlNetUnit] {
            try zip(controlNets, fulls).map { request, full in try request.unit(for: work, mask: mask, full: full, region: region) }
        }
        let fulls = try controlFulls(height: input.shape[2], width: input.shape[3])
        // "Only masked": work on the mask's surroundings at the model's resolution, paste back after.
        var region: CropBox?
        let full = input, fullMask = maskTensor
        if configuration.mode == .inpaint, configuration.inpaintArea == .masked, let m = maskTensor, let painted = diffusionMask {
            let side = Double(configuration.resolution ?? models.defaultResolution)
            let aspect = Double(m.shape[3]) / Double(m.shape[2])
            let work = (width: max(factor, Int((side * aspect.squareRoot() / Double(factor)).rounded()) * factor),
                        height: max(factor, Int((side / aspect.squareRoot() / Double(factor)).rounded()) * factor))
            // The region around the blurred mask (A1111), or around the painted one when the blur has spread a
            // tiny mask below one 8-bit level everywhere.
            func cropRegion(_ mask: Tensor) throws -> CropBox? {
                try ImageOps.a1111InpaintRegion(mask: PlanarImage8(unitTensor: mask), padding: configuration.padding,
                                                processingWidth: work.width, processingHeight: work.height)
            }
            if var box = try cropRegion(m) ?? cropRegion(painted) {
                box = CropBox(x1: max(0, box.x1), y1: max(0, box.y1), x2: min(m.shape[3], box.x2), y2: min(m.shape[2], box.y2))
                region = box
                let crop = { (t: Tensor) in t.slice(box.y1..<box.y2, axis: 2).slice(box.x1..<box.x2, axis: 3) }
                input = try ImageOps.resizeLanczos(PlanarImage8(imageTensor: crop(input)), width: work.width, height: work.height).imageTensor
                maskTensor = try ImageOps.resizeLanczos(PlanarImage8(unitTensor: crop(m)), width: work.width, height: work.height).unitTensor
                diffusionMask = try ImageOps.resizeLanczos(PlanarImage8(unitTensor: crop(painted)), width: work.width, height: work.height).unitTensor
            }
        }
        // A faded print's levels and colour, before anything looks at it.
        if configuration.appliesAutoColor(to: image) {
            input = try ImageOps.autoColor(PlanarImage8(imageTensor: input), clip: configuration.autoColorClip,
                                           balance: configuration.autoColorBalance).imageTensor
        }
        var results: [GenerationResult] = []
        for index in 0..<configuration.count {
            var settings = configuration.generation
            settings.seed = configuration.generation.seed &+ UInt64(index)
            let step: Progress? = progress.map { callback in { callback(index, $0, $1) } }
            var result: GenerationResult
            switch configuration.mode {
            case .upscale:
                // Handled at the top of `run`, before any of the diffusion's preparation.
                return try ImageUpscaling.run(configuration, image: image, model: upscaler, progress: progress)
            case .img2img:
                result = try imageToImage(input, settings: settings, controlNets: try units(input, mask: nil, fulls: fulls, region: nil),
                                          progress: step)
            case .restore:
                // A side over 1024 px (twice SD 1.x's resolution): in tiles.
                let isLarge = max(input.shape[2], input.shape[3]) > VAETiling.automaticAbove
                var start = input
                var defects: Tensor?
                if configuration.repairDefects {
                    let found = try ImageOps.detectDefects(PlanarImage8(imageTensor: input), threshold: configuration.defectThreshold)
                    let mask = Tensor(shape: [1, 1, found.height, found.width], scalars: found.pixels)
                    defects = mask
                    if found.pixels.contains(where: { $0 > 0 }) {
                        if isLarge {
                            // Too large for one inpainting pass: the defects are filled from their surroundings
                            // (A1111 fill), and the tiled img2img below repaints them with everything else.
                            start = try Self.startImage(input, mask: mask, maskedContent: .fill)
                        } else {
                            // The defects first: filled from their surroundings, then repainted.
                            var repair = settings
                            repair.strength = 0.75
                            start = ImageTensor.unitRange(try inpaint(input, mask: mask, settings: repair, pasteBack: true,
                                                                      maskedContent: .fill,
                                                                      controlNets: try units(input, mask: nil, fulls: fulls, region: nil),
                                                                      progress: step).image) * 2 - 1
                        }
                    }
                }
                if configuration.upscale > 1 || isLarge {
                    // SD upscale (A1111), or a scan too large for one pass: img2img over overlapping tiles at the
                    // model's resolution, so time grows with the area and memory stays that of one tile.
                    let s = configuration.upscale
                    let enlarged: Tensor
                    if s == 1 {
                        enlarged = start
                    } else if let upscaler {
                        // An upscaler network first (A1111's "SD upscale upscaler"), in tiles of its own.
                        enlarged = try ImageUpscaling.enlarge(ImageTensor.unitRange(start), factor: s, with: upscaler).imageTensor
                    } else {
                        enlarged = try ImageOps.resizeLanczos(PlanarImage8(imageTensor: start), width: start.shape[3] * s,
                                                              height: start.shape[2] * s).imageTensor
                    }
                    let tile = configuration.tileSize ?? models.defaultResolution
                    let enlargedFulls = s == 1 ? fulls : try controlFulls(height: enlarged.shape[2], width: enlarged.shape[3])
                    let image = try tiledImageToImage(enlarged, settings: settings, tile: tile, overlap: configuration.tileOverlap,
                                                      controlNets: controlNets.isEmpty ? nil : { crop, box in
                                                          try units(crop, mask: nil, fulls: enlargedFulls, region: box)
                                                      }, progress: step)
                    result = GenerationResult(image: image, latents: Tensor(zeros: [0]), seed: settings.seed)
                } else {
                    result = try imageToImage(start, settings: settings, controlNets: try units(start, mask: nil, fulls: fulls, region: nil),
                                              progress: step)
                }
                result.defectMask = defects
            case .inpaint:
                guard let maskTensor, let diffusionMask else {
                    throw PipelineError.invalidValue(field: "mask", value: "missing", expected: "a mask image")
                }
                result = try inpaint(input, mask: diffusionMask, pasteMask: maskTensor, settings: settings,
                                     pasteBack: configuration.pasteBack && region == nil,
                                     maskedContent: configuration.maskedContent,
                                     controlNets: try units(input, mask: diffusionMask, fulls: fulls, region: region),
                                     progress: step)
                if let box = region, let fullMask {
                    // Back to the crop's size (Pillow Lanczos), into the full image, composited with the mask.
                    let patch = try ImageOps.resizeLanczos(PlanarImage8(unitTensor: result.image), width: box.width, height: box.height).unitTensor
                    var image = ImageTensor.unitRange(full)
                    image.paste(patch, x: box.x1, y: box.y1)
                    if configuration.pasteBack {
                        image = ImageTensor.unitRange(full) * fullMask.mapValues { 1 - $0 } + image * fullMask
                    }
                    result = GenerationResult(image: image, latents: result.latents, seed: result.seed)
                }
            }
            if needsFit, configuration.sizeHandling == .pad, configuration.upscale > 1, configuration.mode == .restore {
                let s = configuration.upscale
                result = GenerationResult(image: result.image.slice(0..<(height * s), axis: 2).slice(0..<(width * s), axis: 3),
                                          latents: result.latents, seed: result.seed, defectMask: result.defectMask)
            } else if needsFit, configuration.sizeHandling == .pad {
                result = GenerationResult(image: result.image.slice(0..<height, axis: 2).slice(0..<width, axis: 3),
                                          latents: result.latents, seed: result.seed)
            } else if needsFit, configuration.sizeHandling == .resize {
                let scale = configuration.mode == .restore ? configuration.upscale : 1
                let back = try ImageOps.resizeLanczos(PlanarImage8(unitTensor: result.image), width: width * scale, height: height * scale).unitTensor
                result = GenerationResult(image: back, latents: result.latents, seed: result.seed)
            }
            if grayOutput {
                result = GenerationResult(image: result.image.luminanceReplicated(), latents: result.latents, seed: result.seed,
                                          defectMask: result.defectMask)
            }
            results.append(result)
        }
        return results
    }
}

extension Image {
    /// Gray layouts, or RGB(A) whose three channels are equal everywhere.
    public var isGrayscale: Bool {
        switch layout {
        case .gray, .grayAlpha: return true
        case .rgb, .rgba:
            let channels = layout.rawValue
            return samples.withUnsafeBufferPointer { s in
                stride(from: 0, to: s.count, by: channels).allSatisfy { s[$0] == s[$0 + 1] && s[$0] == s[$0 + 2] }
            }
        }
    }
}

extension Tensor {
    /// Copies `patch` [1, C, h, w] into this [1, C, H, W] at (x, y).
    mutating func paste(_ patch: Tensor, x: Int, y: Int) {
        let (c, h, w) = (shape[1], shape[2], shape[3]), (ph, pw) = (patch.shape[2], patch.shape[3])
        patch.withUnsafeBufferPointer { src in
            withUnsafeMutableBufferPointer { dst in
                for channel in 0..<c { for row in 0..<ph {
                    for column in 0..<pw { dst[(channel * h + y + row) * w + x + column] = src[(channel * ph + row) * pw + column] }
                } }
            }
        }
    }

    /// [1, 3, H, W] → the same with every channel set to the luminance 0.299 R + 0.587 G + 0.114 B.
    func luminanceReplicated() -> Tensor {
        let plane = shape[2] * shape[3]
        var out = self
        out.withUnsafeMutableBufferPointer { p in
            for i in 0..<plane {
                let y = 0.299 * p[i] + 0.587 * p[plane + i] + 0.114 * p[2 * plane + i]
                p[i] = y; p[plane + i] = y; p[2 * plane + i] = y
            }
        }
        return out
    }

    /// [N, C, H, W] padded at the right and bottom to `height`×`width` by repeating the edge pixels.
    func padReplicate(height: Int, width: Int) -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        var out = Tensor(zeros: [n, c, height, width])
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for p in 0..<(n * c) {
                    for y in 0..<height {
                        let sy = min(y, h - 1)
                        for x in 0..<width { dst[(p * height + y) * width + x] = src[(p * h + sy) * w + min(x, w - 1)] }
                    }
                }
            }
        }
        return out
    }

    /// The central `height`×`width` region of [N, C, H, W].
    func centerCrop(height: Int, width: Int) -> Tensor {
        let top = (shape[2] - height) / 2, left = (shape[3] - width) / 2
        return slice(top..<(top + height), axis: 2).slice(left..<(left + width), axis: 3)
    }
}
