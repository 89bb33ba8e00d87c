import DarkroomWeights

/// Why a pipeline run cannot start or did not finish. Each case names the recipe field or file at fault.
public enum PipelineError: Error, CustomStringConvertible, Equatable {
    case invalidValue(field: String, value: String, expected: String)
    case maskSizeMismatch(mask: String, maskSize: String, imageSize: String)
    case emptyMask(mask: String)
    case imageTooSmall(width: Int, height: Int, minimum: Int)
    case cancelled(step: Int)
    /// A phase of the run produced NaN or infinite values (checked after each phase, one vectorised pass).
    case nonFinite(stage: PipelineStage)
    /// The model's scheduler config (`file`: its `scheduler/scheduler_config.json`, or the built-in SD 1.x
    /// config) cannot drive the recipe's sampler; `detail` is the scheduler's own message naming the key.
    case invalidSchedulerConfig(file: String, detail: String)
    /// A textual-inversion embedding the checkpoint cannot take (made for another family); the error names the file.
    case embedding(TextualInversionEmbedding.Error)

    public var description: String {
        switch self {
        case let .invalidValue(field, value, expected):
            return "'\(field)' is \(value); expected \(expected)."
        case let .maskSizeMismatch(mask, maskSize, imageSize):
            return "Mask '\(mask)' is \(maskSize) but the image is \(imageSize); the mask must have the image's size."
        case let .emptyMask(mask):
            return "Mask '\(mask)' is entirely black, so there is nothing to repaint (white marks the area to repaint)."
        case let .imageTooSmall(width, height, minimum):
            return "The image is \(width)×\(height); both sides must be at least \(minimum) pixels."
        case let .cancelled(step):
            return "Cancelled at step \(step)."
        case let .nonFinite(stage):
            return "The \(stage) produced NaN or infinite values, so there is no image to save. Likely causes: \(stage.likelyCauses)."
        case let .invalidSchedulerConfig(file, detail):
            return "Scheduler config '\(file)' cannot be used: \(detail)."
        case let .embedding(error):
            return "\(error)."
        }
    }
}

/// The phases of a run, as `PipelineError.nonFinite` names them.
public enum PipelineStage: Sendable, Equatable, CustomStringConvertible {
    /// The CLIP text encoder (prompt and negative prompt).
    case textEncoding
    /// The VAE encoder (the input image, or inpainting's masked image).
    case vaeEncode
    /// Denoising step `step` (1-based) of `of`.
    case denoising(step: Int, of: Int)
    /// The VAE decoder.
    case vaeDecode
    /// The conditioning embedding of ControlNet unit `unit` (0-based) on its control image.
    case controlNet(unit: Int)
    /// An upscaler network (`upscaler`).
    case upscaler

    public var description: String {
        switch self {
        case .textEncoding: return "text encoder"
        case .vaeEncode: return "VAE encoder"
        case let .denoising(step, total): return "UNet at denoising step \(step) of \(total)"
        case .vaeDecode: return "VAE decoder"
        case let .controlNet(unit): return "ControlNet of unit \(unit)"
        case .upscaler: return "upscaler model"
        }
    }

    /// What usually makes this phase produce NaN/inf, for the error message.
    var likelyCauses: String {
        switch self {
        case .textEncoding:
            return "NaN/inf or corrupted weights in the checkpoint's text encoder (a broken merge or conversion)"
        case .vaeEncode:
            return "NaN/inf or corrupted weights in the checkpoint's VAE encoder"
        case .denoising:
            return "NaN/inf or corrupted UNet weights, an extreme 'guidance' value, or a sampler/steps combination the model's noise schedule cannot run (try another 'sampler' or fewer 'steps')"
        case .vaeDecode:
            return "NaN/inf or corrupted weights in the checkpoint's VAE decoder, or latents out of range after denoising (an extreme 'guidance' value)"
        case .controlNet:
            return "NaN/inf or corrupted weights in the ControlNet file, or a control image with NaN/inf values"
        case .upscaler:
            return "weights that overflow on this image (a broken or wrongly converted upscaler file)"
        }
    }
}
