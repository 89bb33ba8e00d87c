import DarkroomImageIO
import DarkroomModels
import DarkroomTensor

/// Enlarging an image as A1111's upscalers do (`modules/upscaler.py::Upscaler.upscale`): the network runs until
/// the image is at least the target size (at most three passes, each on the previous 8-bit result), then
/// Pillow's Lanczos resizes it to the target; without a network ("lanczos") Lanczos goes straight there.
///
/// Limitations: A1111 rounds the target down to a multiple of 8 (`int(w · scale) // 8 * 8`) for the SD pass that
/// may follow; here the target is exactly the input's sides times `factor`, and the SD pass pads as it does for
/// any input.
public enum ImageUpscaling {
    /// The largest side an intermediate network result may have (8-bit RGB: 768 MiB at 16384²).
    public static let maximumIntermediateSide = 16384

    /// `image` [1, 3, H, W] in [0, 1] enlarged to W·factor × H·factor with `model` (nil: Lanczos alone).
    /// `progress` receives (tiles done, tiles) of each network pass and may cancel.
    public static func enlarge(_ image: Tensor, factor: Int, with model: UpscalerModel?, tiling: UpscalerTiling = .standard,
                               progress: ((Int, Int) -> Bool)? = nil) throws -> PlanarImage8 {
        let (width, height) = (image.dim(3) * factor, image.dim(2) * factor)
        guard let model else { return try ImageOps.resizeLanczos(try PlanarImage8(unitTensor: image), width: width, height: height) }
        var current = try model.upscale(image, tiling: tiling, progress: progress)
        for _ in 1..<passes(from: (image.dim(3), image.dim(2)), factor: factor, scale: model.scale) {
            current = try model.upscale(current.unitTensor, tiling: tiling, progress: progress)
        }
        return try ImageOps.resizeLanczos(current, width: width, height: height)
    }

    /// How many network passes A1111 runs: until both sides reach the target (at most 3; one for a 1× model).
    static func passes(from size: (width: Int, height: Int), factor: Int, scale: Int) -> Int {
        var (w, h, n) = (size.width, size.height, 0)
        repeat {
            (w, h, n) = (w * scale, h * scale, n + 1)
        } while n < 3 && scale > 1 && (w < size.width * factor || h < size.height * factor)
        return n
    }

    /// The enlargement factor of a `mode: upscale` job: the recipe's `upscale`, or the model's own scale
    /// (`upscale` 0), or 4 with Lanczos (A1111 Extras' default "Resize: 4").
    public static func factor(_ configuration: PipelineConfiguration, model: UpscalerModel?) -> Int {
        configuration.upscale > 0 ? configuration.upscale : (model?.scale ?? 4)
    }

    /// Checks a `mode: upscale` job before any compute: the result's and every network pass's sides.
    public static func validate(_ configuration: PipelineConfiguration, model: UpscalerModel?, imageWidth: Int, imageHeight: Int) throws {
        let factor = factor(configuration, model: model)
        guard factor >= 1, factor <= 8 else {
            throw PipelineError.invalidValue(field: "upscale", value: "\(factor)", expected: "a whole number from 1 to 8")
        }
        let limit = StableDiffusionPipeline.maximumImageSide
        guard imageWidth * factor <= limit, imageHeight * factor <= limit else {
            throw PipelineError.invalidValue(field: "image size", value: "\(imageWidth)×\(imageHeight) (upscale \(factor))",
                                             expected: "sides of at most \(limit) pixels after enlargement")
        }
        if let model {
            guard imageWidth >= model.minimumSide, imageHeight >= model.minimumSide else {
                throw PipelineError.imageTooSmall(width: imageWidth, height: imageHeight, minimum: model.minimumSide)
            }
            let n = passes(from: (imageWidth, imageHeight), factor: factor, scale: model.scale)
            var side = max(imageWidth, imageHeight)
            for _ in 0..<n { side *= model.scale }
            guard side <= maximumIntermediateSide else {
                throw PipelineError.invalidValue(field: "image size", value: "\(imageWidth)×\(imageHeight) (\(n) pass(es) of a \(model.scale)× upscaler)",
                                                 expected: "sides of at most \(maximumIntermediateSide) pixels out of the upscaler; choose a smaller 'upscale' or a model of a smaller scale")
            }
        }
    }

    /// A `mode: upscale` job: the upscaler alone, no diffusion, one image. A grayscale photo stays grayscale.
    /// `progress` receives (0, tiles done, tiles).
    public static func run(_ configuration: PipelineConfiguration, image: Image, model: UpscalerModel?,
                           progress: ((Int, Int, Int) -> Bool)? = nil) throws -> [GenerationResult] {
        try validate(configuration, model: model, imageWidth: image.width, imageHeight: image.height)
        let unit = ImageTensor.unitRange(ImageTensor.tensor(from: image))
        let enlarged = try enlarge(unit, factor: factor(configuration, model: model), with: model,
                                   progress: progress.map { callback in { callback(0, $0, $1) } })
        var result = enlarged.unitTensor
        if image.isGrayscale { result = result.luminanceReplicated() }
        return [GenerationResult(image: result, latents: Tensor(zeros: [0]), seed: configuration.generation.seed)]
    }
}
