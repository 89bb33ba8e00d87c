import DarkroomModels
import DarkroomSchedulers
import DarkroomTensor

extension StableDiffusionPipeline {
    /// The largest image side (after `upscale`) a job may produce: an [1, 3, H, W] Float32 tensor of 8192² is
    /// 805 MB, and every size computation stays far from `Int` overflow.
    public static let maximumImageSide = 8192

    /// Checks a job against the loaded model before any compute, so a recipe that cannot run is refused before
    /// its job claims the worker: every setting's range, the model's channels (UNet input/output vs the VAE's
    /// latents), the scheduler config, and the step count the sampler can run on this model's noise schedule
    /// at this strength (diffusers raises or produces NaN for some, e.g. DDIM or PNDM at 1000 steps with
    /// `steps_offset` 1). `imageWidth`/`imageHeight`, when known, are checked against `maximumImageSide`.
    /// `run` calls it too.
    ///
    /// These are the library's bounds: what the pipeline can compute without trapping or running out of
    /// integer range. A recipe's schema (DarkroomService `Recipe`) is narrower where a wider value serves no
    /// user (`mask_blur` ≤ 64, `upscale` ≤ 2, `tile_overlap` ≤ 256), and a recipe is checked against both.
    ///
    /// - Throws: `PipelineError.invalidValue` naming the recipe field (`steps`, `strength`, `sampler`, …) and
    ///   the allowed range for this model; `.invalidSchedulerConfig` naming the scheduler config file.
    public func validate(_ configuration: PipelineConfiguration, imageWidth: Int? = nil, imageHeight: Int? = nil) throws {
        func refuse(_ field: String, _ value: Any, _ expected: String) -> PipelineError {
            PipelineError.invalidValue(field: field, value: "\(value)", expected: expected)
        }
        guard configuration.count >= 1, configuration.count <= 100 else {
            throw refuse("count", configuration.count, "a whole number from 1 to 100")
        }
        guard configuration.maskBlur >= 0, configuration.maskBlur <= 256 else {
            throw refuse("mask_blur", configuration.maskBlur, "a whole number of pixels from 0 to 256")
        }
        guard configuration.padding >= 0, configuration.padding <= Self.maximumImageSide else {
            throw refuse("padding", configuration.padding, "a whole number of pixels from 0 to \(Self.maximumImageSide)")
        }
        if let resolution = configuration.resolution, resolution < 64 || resolution > 2048 {
            throw refuse("resolution", resolution, "a whole number of pixels from 64 to 2048")
        }
        guard configuration.upscale >= 1, configuration.upscale <= 4 else {
            throw refuse("upscale", configuration.upscale, "1 (no enlargement) to 4")
        }
        if let tile = configuration.tileSize, tile < 64 || tile > 2048 {
            throw refuse("tile_size", tile, "a whole number of pixels from 64 to 2048")
        }
        guard configuration.tileOverlap >= 0, configuration.tileOverlap <= 1024 else {
            throw refuse("tile_overlap", configuration.tileOverlap, "a whole number of pixels from 0 to 1024")
        }
        guard configuration.defectThreshold.isFinite, configuration.defectThreshold > 0, configuration.defectThreshold <= 1 else {
            throw refuse("defect_threshold", configuration.defectThreshold, "a number in (0, 1]")
        }
        if let width = imageWidth, let height = imageHeight {
            let scale = configuration.mode == .restore ? configuration.upscale : 1
            guard width >= 1, height >= 1, width <= Self.maximumImageSide / scale, height <= Self.maximumImageSide / scale else {
                throw refuse("image size", "\(width)×\(height)" + (scale > 1 ? " (upscale \(scale))" : ""),
                             "sides of at most \(Self.maximumImageSide) pixels after enlargement")
            }
        }
        _ = try checkModelChannels()
        _ = try validate(configuration.generation)
        if configuration.mode == .restore, configuration.repairDefects {
            var repair = configuration.generation
            repair.strength = 0.75   // the defect pass of `run`
            _ = try validate(repair)
        }
    }

    /// What the UNet takes besides the noisy latents.
    enum UNetInput: Equatable {
        /// latents only (4 channels for SD).
        case plain
        /// [latents, mask, masked-image latents] (9 channels for SD inpainting models).
        case inpainting
    }

    /// The UNet's input and output channels against the VAE's latent channels: any other layout is an error
    /// (the convolutions would otherwise meet tensors of the wrong width).
    func checkModelChannels() throws -> UNetInput {
        let latent = models.vae.config.latentChannels
        let unet = models.unet.config
        guard unet.outChannels == latent else {
            throw PipelineError.invalidValue(field: "model", value: "a UNet with \(unet.outChannels) output channels and a VAE with \(latent) latent channels",
                                             expected: "a UNet that predicts the VAE's \(latent) latent channels")
        }
        switch unet.inChannels {
        case latent: return .plain
        case 2 * latent + 1: return .inpainting
        default:
            throw PipelineError.invalidValue(field: "model", value: "a UNet with \(unet.inChannels) input channels",
                                             expected: "\(latent) (plain) or \(2 * latent + 1) (inpainting) for a VAE with \(latent) latent channels")
        }
    }

    /// `check(settings)`, then the scheduler for the settings with its schedule set and checked to run from
    /// the strength's first step; returns it with that begin index. Throws naming `steps` (with the largest
    /// step count this sampler can run on this model at this strength) or `strength`.
    func validate(_ settings: GenerationSettings) throws -> (any Scheduler, Int) {
        try check(settings)
        var scheduler = try makeScheduler(settings)
        if let start = try runnableStart(&scheduler, steps: settings.steps, strength: settings.strength) { return (scheduler, start) }
        // Find the largest step count that runs (usually one or two below the request), for the message.
        var probe = try makeScheduler(settings)
        var largest: Int?
        for candidate in stride(from: settings.steps - 1, through: max(1, settings.steps - 64), by: -1) {
            if (try? runnableStart(&probe, steps: candidate, strength: settings.strength)) ?? nil != nil { largest = candidate; break }
        }
        let strength = settings.strength == 1 ? "" : " at strength \(settings.strength)"
        throw PipelineError.invalidValue(
            field: "steps", value: "\(settings.steps)",
            expected: largest.map { "a whole number from 1 to \($0) for sampler '\(settings.sampler)' with this model's noise schedule\(strength)" }
                ?? "fewer steps, or another sampler: '\(settings.sampler)' cannot run \(settings.steps) steps on this model's noise schedule\(strength)")
    }

    /// Sets `steps` and returns the strength's begin index when the sampler can run from there; nil when the
    /// schedule cannot run (`steps` is the field to blame). Throws naming `strength` when no step would run.
    private func runnableStart(_ scheduler: inout any Scheduler, steps: Int, strength: Double) throws -> Int? {
        do { try scheduler.setTimesteps(steps) } catch let error as SchedulerError {
            if case .invalidStepCount = error { return nil }
            if case .unrunnableSchedule = error { return nil }   // e.g. LCM beyond original_inference_steps
            throw PipelineError.invalidSchedulerConfig(file: models.schedulerConfigPath ?? "built-in Stable Diffusion 1.x scheduler config",
                                                       detail: error.description)
        }
        let start = imageToImageStart(steps: steps, strength: strength, order: scheduler.order)
        guard start < scheduler.timesteps.count else {
            throw PipelineError.invalidValue(field: "strength", value: "\(strength)",
                                             expected: "large enough that at least one of the \(steps) steps runs (strength × steps ≥ 1)")
        }
        do { try scheduler.checkRunnable(from: start) } catch is SchedulerError { return nil }
        return start
    }
}

extension StableDiffusionPipeline {
    /// Throws `PipelineError.nonFinite(stage)` if `tensor` holds a NaN or an infinity: one pass over the
    /// float bits (the largest exponent field is all ones only for NaN/inf), which vectorises.
    static func requireFinite(_ tensor: Tensor, _ stage: PipelineStage) throws {
        guard tensor.isAllFinite else { throw PipelineError.nonFinite(stage: stage) }
    }
}

extension Tensor {
    /// True when no element is NaN or ±inf.
    var isAllFinite: Bool {
        withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: UInt32.self) { bits in
                var largest: UInt32 = 0
                for b in bits { largest = Swift.max(largest, b & 0x7F80_0000) }
                return largest != 0x7F80_0000
            }
        }
    }
}
