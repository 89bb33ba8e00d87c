import DarkroomModels
import DarkroomSchedulers
import DarkroomTensor
import DarkroomTokenizer
import DarkroomWeights
import Foundation

/// The settings of one generation, with A1111/diffusers defaults.
public struct GenerationSettings: Sendable, Equatable {
    public var prompt = ""
    public var negativePrompt = ""
    /// Inference steps before `strength` is applied (diffusers: strength s at N steps runs the last ⌊N·s⌋).
    public var steps = 20
    /// How far the input is noised, in (0, 1]: 1 repaints from (almost) pure noise.
    public var strength = 0.75
    /// Classifier-free guidance scale; ≤ 1 skips the unconditional pass (diffusers' rule).
    public var guidance: Float = 7.5
    /// A recipe sampler name (`schedulerNames`); A1111's default since 1.6 is DPM++ 2M Karras.
    public var sampler = "dpmpp_2m_karras"
    public var seed: UInt64 = 0
    /// DDIM's η.
    public var eta: Float = 0
    /// diffusers' `timestep_spacing` ("leading", "linspace", "trailing"), overriding the scheduler config's;
    /// nil keeps the config's (or the sampler class default). SD-Turbo-style checkpoints want "trailing".
    public var timestepSpacing: String?
    /// "epsilon" or "v_prediction", overriding what the checkpoint states.
    public var prediction: String?
    /// Text-encoder layers to skip at the end (A1111's "Clip skip" − 1).
    public var clipSkip = 0
    /// Tiled VAE encode/decode (diffusers' `enable_vae_tiling`): automatic above `VAETiling.automaticAbove` pixels.
    public var vaeTiling = VAETilingMode.auto
    /// Textual-inversion embeddings a prompt word may name (A1111: the embeddings folder's files).
    public var embeddings: [TextualInversionEmbedding] = []
    /// The matrix products' arithmetic for this run (`Precision`): fp32 keeps diffusers parity; bf16 is
    /// `torch.autocast("cpu", dtype=torch.bfloat16)`'s, about twice as fast where oneDNN has bf16 kernels.
    public var precision = Precision.fp32
    /// SDXL: the prompt for the second text encoder (diffusers `prompt_2`; nil or empty: `prompt`).
    public var prompt2: String?
    /// SDXL: the negative prompt for the second text encoder (diffusers `negative_prompt_2`; nil or empty: `negativePrompt`).
    public var negativePrompt2: String?
    /// SDXL's micro-conditioning (sizes, crop, aesthetic scores).
    public var microConditioning = MicroConditioning()

    public init() {}
}

/// SDXL's micro-conditioning, as diffusers `StableDiffusionXLImg2ImgPipeline.__call__` takes it: the sizes are
/// (height, width) in pixels; nil sizes are the image's own (`original_size or (height, width)`), negative ones
/// the positive ones. Without aesthetic scores (SDXL base) the negative time ids take the *positive* crop, as
/// diffusers' `_get_add_time_ids` does; `negativeCropsCoordsTopLeft` is read only with aesthetic scores (refiner).
public struct MicroConditioning: Sendable, Equatable {
    public var originalSize: [Int]?
    public var cropsCoordsTopLeft = [0, 0]
    public var targetSize: [Int]?
    public var negativeOriginalSize: [Int]?
    public var negativeCropsCoordsTopLeft = [0, 0]
    public var negativeTargetSize: [Int]?
    /// The refiner's `aesthetic_score` / `negative_aesthetic_score` (diffusers' defaults 6 and 2.5).
    public var aestheticScore: Float = 6
    public var negativeAestheticScore: Float = 2.5

    public init() {}
}

/// When the VAE works in tiles.
public enum VAETilingMode: String, Sendable, CaseIterable {
    /// Tiles when a side of the image exceeds `VAETiling.automaticAbove` (1024 px): smaller images give exactly
    /// diffusers' untiled result, larger ones keep memory bounded.
    case auto
    /// Tiles whenever the image is larger than one tile (diffusers with `enable_vae_tiling()`).
    case always
    /// Never tiles (diffusers' default).
    case never
}

/// What a run produced: the image in [0, 1] ([1, 3, H, W]) and the latents it was decoded from.
public struct GenerationResult: Sendable {
    public let image: Tensor
    public let latents: Tensor
    public let seed: UInt64
    /// Restoration with `repairDefects`: the defect mask found ([1, 1, H, W], 1 = repaired).
    public var defectMask: Tensor?

    public init(image: Tensor, latents: Tensor, seed: UInt64, defectMask: Tensor? = nil) {
        self.image = image
        self.latents = latents
        self.seed = seed
        self.defectMask = defectMask
    }
}

/// Stable Diffusion img2img and inpainting on loaded models, in diffusers' order of operations and of
/// random draws, so that the same seed gives the same image as diffusers.
///
/// This implementation matches: diffusers `pipeline_stable_diffusion_img2img.py` (0.42.1):
/// 1. check inputs  2. encode prompt  3. preprocess image  4. timesteps for `strength`
/// 5. prepare latents (posterior sample, noise, `add_noise`)  6. denoise  7. decode.
public struct StableDiffusionPipeline: Sendable {
    public let models: StableDiffusionModels
    public let tokenizer: CLIPTokenizer

    public init(models: StableDiffusionModels, tokenizer: CLIPTokenizer) {
        self.models = models
        self.tokenizer = tokenizer
    }

    /// Called after every denoising step with (step, total); return false to cancel.
    public typealias Progress = (Int, Int) -> Bool

    /// img2img: `image` is [1, 3, H, W] in [-1, 1] with H and W multiples of the VAE's factor (8).
    ///
    /// On a 9-channel inpainting model this is inpainting with an all-white mask and no paste-back, as A1111
    /// runs img2img on inpainting models (`processing.py::inpainting_image_conditioning` without a mask:
    /// conditioning mask of ones, masked image = source·(1 − mask) = 0), which is diffusers'
    /// `StableDiffusionInpaintPipeline` with an all-white mask.
    ///
    /// `controlNets` steer the denoising as diffusers' `StableDiffusionControlNetImg2ImgPipeline` (SDXL:
    /// `StableDiffusionXLControlNetImg2ImgPipeline`, the ControlNets getting the UNet's added conditioning; see `ControlNetUnit`).
    public func imageToImage(_ image: Tensor, settings: GenerationSettings, controlNets: [ControlNetUnit] = [],
                             progress: Progress? = nil) throws -> GenerationResult {
        let channels = try checkModelChannels()
        if channels == .inpainting {
            guard image.rank == 4 else {
                throw PipelineError.invalidValue(field: "image", value: "a tensor of shape \(image.shape)", expected: "[1, 3, H, W]")
            }
            let everywhere = Tensor(shape: [1, 1, image.shape[2], image.shape[3]], repeating: 1)
            return try inpaint(image, mask: everywhere, settings: settings, pasteBack: false, controlNets: controlNets, progress: progress)
        }
        // 1.–4. Check inputs, encode the prompt, timesteps for the strength.
        var (embeddings, scheduler, timesteps, added) = try prepare(image, settings: settings, controlNets: controlNets)
        let first = timesteps[0]
        // 5. Prepare latents: sample the posterior, then draw the noise, in diffusers' order.
        var random = TorchRandomSource(seed: settings.seed)
        let tiling = vaeTiling(settings, height: image.shape[2], width: image.shape[3])
        let posterior = models.vae.encode(image, tiling: tiling)
        let initLatents = posterior.sample(noise: Tensor(shape: posterior.mean.shape, scalars: random.normal(shape: posterior.mean.shape)))
            * models.vae.config.scalingFactor
        try Self.requireFinite(initLatents, .vaeEncode)
        let noise = Tensor(shape: initLatents.shape, scalars: random.normal(shape: initLatents.shape))
        var latents = scheduler.addNoise(original: initLatents, noise: noise, timestep: first)
        // 6. Denoise.
        releaseEncoderPages()
        latents = try denoise(latents, timesteps: timesteps, scheduler: &scheduler, embeddings: embeddings, added: added,
                              guidance: settings.guidance > 1 ? settings.guidance : nil, random: &random,
                              controlNets: try prepareControlNets(controlNets), progress: progress)
        // 7. Decode.
        controlNets.forEach { $0.model.dropResidentPages() }
        releaseUNetPages()
        let decoded = models.vae.decode(latents / models.vae.config.scalingFactor, tiling: tiling)
        try Self.requireFinite(decoded, .vaeDecode)
        return GenerationResult(image: ImageTensor.unitRange(decoded), latents: latents, seed: settings.seed)
    }

    /// The UNet is done with this image: its mapped weights (1.7 GB for an fp16 SD 1.5) leave the process's resident
    /// set while the VAE decoder's activations are at their largest, so a job's peak RSS is the larger of the two
    /// phases, not their sum: with `releaseFreedBlocks`, a 512 px job's peak went from 3.68 to 2.85 GiB. The next
    /// image maps them back from the page cache (about 0.1 s of minor faults, measured on its first UNet step).
    /// Whether the UNet's weights are fp32 pages of the checkpoint's mapping (3.4 GB for SD 1.5), which then leave the
    /// resident set half a step at a time: the encoder's (down blocks, mid block) once the UNet is past them, the
    /// decoder's (up blocks) after the step. Each half comes back from the page cache when it runs next, by minor
    /// faults (the kernel maps 64 KiB around each), so the loop holds about half the UNet instead of all of it.
    /// fp16 checkpoints keep theirs (1.7 GB, already half).
    var streamsUNetPages: Bool {
        Self.streamsFP32UNetPages && models.checkpoint.storedType(of: "unet.conv_in.weight") == .f32 && models.unet.isBorrowingWeights
    }

    /// Off: fp32 UNet pages stay resident through the loop (`darkroom bench job --keep-unet-pages`, to measure).
    nonisolated(unsafe) public static var streamsFP32UNetPages = true

    /// The UNet's encoder half (`encoder`: conv_in, time embedding, down blocks, mid block) or the rest leaves the
    /// resident set (`streamsUNetPages`).
    func releaseUNetPages(encoder: Bool) {
        if encoder {
            for prefix in ["unet.conv_in", "unet.time_embedding", "unet.down_blocks", "unet.mid_block"] {
                models.checkpoint.dropResidentPages(prefix: prefix)
            }
        } else {
            for prefix in ["unet.up_blocks", "unet.conv_norm_out", "unet.conv_out"] {
                models.checkpoint.dropResidentPages(prefix: prefix)
            }
        }
    }

    func releaseUNetPages() {
        models.checkpoint.dropResidentPages(prefix: "unet")
        releaseFreedBlocks()
    }

    /// The prompt is encoded and the image's latents drawn: the text encoder's and the VAE's mapped weights leave
    /// the resident set for the denoising loop (the decoder's come back for step 7, from the page cache), and so do
    /// the freed blocks. With an fp32 checkpoint that is 0.8 GB off the loop's footprint.
    func releaseEncoderPages() {
        models.checkpoint.dropResidentPages(prefix: "text_encoder")
        models.checkpoint.dropResidentPages(prefix: "vae")
        releaseFreedBlocks()
    }

    /// Between phases (VAE encoder → UNet → VAE decoder) the freed blocks kept for reuse (`LargeBlockCache`) are
    /// the wrong sizes for the next phase: the encoder's 128–256 MiB activations would sit beside the UNet's
    /// weights for every step. They go back to the system at each boundary.
    func releaseFreedBlocks() {
        LargeBlockCache.shared.releaseAll()
    }

    /// The VAE tiling for an image of `height`×`width` pixels under `settings` (nil: untiled). Tiles are the VAE's
    /// `sample_size` (512 px for SD 1.x), as diffusers'.
    func vaeTiling(_ settings: GenerationSettings, height: Int, width: Int) -> VAETiling? {
        let tiling = VAETiling(sampleSize: models.vae.config.sampleSize)
        switch settings.vaeTiling {
        case .never: return nil
        case .always: return tiling
        case .auto: return max(height, width) > VAETiling.automaticAbove ? tiling : nil
        }
    }

    /// Steps 1–4 shared by img2img and inpainting: check the settings and the image size, encode the
    /// prompt (negative and positive when guidance > 1), and the scheduler positioned for the strength
    /// (diffusers' `get_timesteps` + `set_begin_index`) with the timesteps to run; for SDXL also the UNet's added
    /// conditioning (negative first, as the embeddings).
    func prepare(_ image: Tensor, settings: GenerationSettings, controlNets: [ControlNetUnit] = [])
        throws -> (Tensor, any Scheduler, [Float], UNetAddedConditioning?) {
        // Everything that can be refused is refused before the text encoder runs.
        var (scheduler, start) = try validate(settings)
        let factor = models.vae.config.downscale
        guard image.rank == 4, image.shape[0] == 1, image.shape[1] == models.vae.config.imageChannels else {
            throw PipelineError.invalidValue(field: "image", value: "a tensor of shape \(image.shape)",
                                             expected: "[1, \(models.vae.config.imageChannels), H, W]")
        }
        guard image.shape[2] >= factor, image.shape[3] >= factor, image.shape[2] % factor == 0, image.shape[3] % factor == 0 else {
            throw PipelineError.invalidValue(field: "image size", value: "\(image.shape[3])×\(image.shape[2])",
                                             expected: "multiples of \(factor) (resize, crop or pad first)")
        }
        try checkControlNets(controlNets, height: image.shape[2], width: image.shape[3])
        let (embeddings, added) = try encodePrompt(settings, height: image.shape[2], width: image.shape[3])
        try Self.requireFinite(embeddings, .textEncoding)
        // `start` is diffusers' t_start · scheduler.order (order-2 samplers list two evaluations per step).
        let timesteps = Array(scheduler.timesteps[min(start, scheduler.timesteps.count)...])
        scheduler.setBeginIndex(start)
        return (embeddings, scheduler, timesteps, added)
    }

    /// Step 2, encode the prompt: SD 1.x/2.x through `PromptEncoder` (A1111 syntax); SDXL as diffusers'
    /// `StableDiffusionXLImg2ImgPipeline` (`SDXLPromptEncoder`: A1111's syntax and `clip_l`/`clip_g` embeddings on both towers),
    /// where an empty negative prompt is diffusers' `negative_prompt=None` (zeros when the checkpoint forces them),
    /// with the added conditioning: the pooled embeddings and the time ids of `addTimeIDs`.
    func encodePrompt(_ settings: GenerationSettings, height: Int, width: Int) throws -> (Tensor, UNetAddedConditioning?) {
        let guided = settings.guidance > 1
        guard models.unet.config.addedConditioning != nil else {
            let embeddings = try PromptEncoder(tokenizer: tokenizer, textEncoder: models.textEncoder, clipSkip: settings.clipSkip,
                                               family: models.checkpoint.family, embeddings: settings.embeddings)
                .encode(prompt: settings.prompt, negativePrompt: settings.negativePrompt, guidance: guided)
            return (embeddings, nil)
        }
        // `StableDiffusionModels.load` only pairs a UNet with added conditioning with text encoders that pool.
        guard let sdxl = models.sdxlPromptEncoder else {
            throw PipelineError.invalidValue(field: "model", value: "a UNet with added conditioning (add_embedding)",
                                             expected: "a text encoder with a text_projection for its pooled embedding")
        }
        let embeddings: SDXLPromptEncoder.EmbeddingTables
        do { embeddings = try sdxl.embeddingTables(settings.embeddings, family: models.checkpoint.family.name) } catch let error as TextualInversionEmbedding.Error {
            throw PipelineError.embedding(error)
        }
        let clipSkip = settings.clipSkip > 0 ? settings.clipSkip : nil
        let (timeIDs, negativeTimeIDs) = try addTimeIDs(settings.microConditioning, height: height, width: width)
        guard guided else {
            let positive = sdxl.encode(settings.prompt, prompt2: settings.prompt2, tokenizer: tokenizer, clipSkip: clipSkip, embeddings: embeddings)
            return (positive.promptEmbeds, UNetAddedConditioning(textEmbeds: positive.pooled, timeIDs: timeIDs))
        }
        let (positive, negative) = sdxl.encodePrompt(settings.prompt, prompt2: settings.prompt2,
                                                     negativePrompt: settings.negativePrompt.isEmpty ? nil : settings.negativePrompt,
                                                     negativePrompt2: settings.negativePrompt2, tokenizer: tokenizer, clipSkip: clipSkip,
                                                     embeddings: embeddings)
        return (Tensor.concatenate([negative.promptEmbeds, positive.promptEmbeds], axis: 0),
                UNetAddedConditioning(textEmbeds: Tensor.concatenate([negative.pooled, positive.pooled], axis: 0),
                                      timeIDs: Tensor.concatenate([negativeTimeIDs, timeIDs], axis: 0)))
    }

    /// diffusers `StableDiffusionXLImg2ImgPipeline._get_add_time_ids` for an image of `height`×`width` pixels:
    /// (original size, crop top-left, target size), or with aesthetic scores (the refiner's
    /// `requires_aesthetics_score`) (original size, crop top-left, score); each [1, n]. Their count must fill the
    /// UNet's `add_embedding` beside the pooled embedding, else the recipe's model is refused, as diffusers does.
    func addTimeIDs(_ micro: MicroConditioning, height: Int, width: Int) throws -> (positive: Tensor, negative: Tensor) {
        for (name, value) in [("original_size", micro.originalSize), ("target_size", micro.targetSize),
                              ("negative_original_size", micro.negativeOriginalSize), ("negative_target_size", micro.negativeTargetSize),
                              ("crops_coords_top_left", micro.cropsCoordsTopLeft), ("negative_crops_coords_top_left", micro.negativeCropsCoordsTopLeft)] {
            if let value, value.count != 2 {
                throw PipelineError.invalidValue(field: name, value: "\(value)", expected: "two numbers (height, width) or (top, left)")
            }
        }
        let original = micro.originalSize ?? [height, width], target = micro.targetSize ?? [height, width]
        let negativeOriginal = micro.negativeOriginalSize ?? original, negativeTarget = micro.negativeTargetSize ?? target
        let positive: [Float], negative: [Float]
        if models.requiresAestheticsScore {
            positive = (original + micro.cropsCoordsTopLeft).map(Float.init) + [micro.aestheticScore]
            negative = (negativeOriginal + micro.negativeCropsCoordsTopLeft).map(Float.init) + [micro.negativeAestheticScore]
        } else {
            positive = (original + micro.cropsCoordsTopLeft + target).map(Float.init)
            negative = (negativeOriginal + micro.cropsCoordsTopLeft + negativeTarget).map(Float.init)
        }
        if let dims = models.unet.config.addedConditioning, let pooled = models.textEncoder2?.projectionWidth ?? models.textEncoder.projectionWidth,
           positive.count * dims.timeEmbedDim + pooled != dims.inputWidth {
            throw PipelineError.invalidValue(
                field: "model", value: "a UNet whose add_embedding takes \(dims.inputWidth) inputs",
                expected: "\(pooled) (pooled text) + \(positive.count) time ids × \(dims.timeEmbedDim) = \(pooled + positive.count * dims.timeEmbedDim)\(models.requiresAestheticsScore ? " (with an aesthetic score)" : " (original size, crop, target size)")")
        }
        return (Tensor(shape: [1, positive.count], scalars: positive), Tensor(shape: [1, negative.count], scalars: negative))
    }

    /// The denoising loop shared by img2img and inpainting. `prepareInput` lets inpainting append the
    /// mask and masked-image latents (9-channel models); `afterStep` (latents, step, the scheduler as
    /// stepped) lets it blend the known region back (4-channel models). `controlNets` add their residuals to
    /// the UNet's (they see the scaled latents without the inpainting channels, as in diffusers).
    func denoise(_ latents: Tensor, timesteps: [Float], scheduler: inout any Scheduler, embeddings: Tensor,
                 added: UNetAddedConditioning? = nil, guidance: Float?, random: inout TorchRandomSource, controlNets: [PreparedControlNet] = [],
                 progress: Progress?,
                 prepareInput: (Tensor) -> Tensor = { $0 },
                 afterStep: (Tensor, Int, any Scheduler) -> Tensor = { latents, _, _ in latents }) throws -> Tensor {
        var latents = latents
        for (i, t) in timesteps.enumerated() {
            let doubled = guidance == nil ? latents : Tensor.concatenate([latents, latents], axis: 0)
            let scaled = scheduler.scaleModelInput(doubled, timestep: t)
            let residuals = controlNetResiduals(controlNets, step: i, of: timesteps.count, scaled: scaled, timestep: t,
                                                embeddings: embeddings, added: added, guided: guidance != nil)
            var prediction = models.unet(prepareInput(scaled), timesteps: [t], context: embeddings, added: added, residuals: residuals,
                                         afterEncoder: streamsUNetPages ? { releaseUNetPages(encoder: true) } : nil)
            if streamsUNetPages { releaseUNetPages(encoder: false) }
            if let guidance {
                let halves = prediction.chunked(2, axis: 0)
                prediction = halves[0] + (halves[1] - halves[0]) * guidance
            }
            let shape = latents.shape
            latents = scheduler.step(modelOutput: prediction, timestep: t, sample: latents) {
                Tensor(shape: shape, scalars: random.normal(shape: shape))
            }
            latents = afterStep(latents, i, scheduler)
            try Self.requireFinite(latents, .denoising(step: i + 1, of: timesteps.count))
            if let progress, !progress(i + 1, timesteps.count) { throw PipelineError.cancelled(step: i + 1) }
        }
        return latents
    }

    func check(_ settings: GenerationSettings) throws {
        guard settings.strength > 0, settings.strength <= 1 else {
            throw PipelineError.invalidValue(field: "strength", value: "\(settings.strength)", expected: "a number in (0, 1]")
        }
        guard settings.steps >= 1, settings.steps <= 1000 else {
            throw PipelineError.invalidValue(field: "steps", value: "\(settings.steps)", expected: "a whole number from 1 to 1000")
        }
        guard settings.guidance.isFinite, settings.guidance >= 0 else {
            throw PipelineError.invalidValue(field: "guidance", value: "\(settings.guidance)", expected: "a number ≥ 0")
        }
        guard settings.eta.isFinite, settings.eta >= 0 else {
            throw PipelineError.invalidValue(field: "eta", value: "\(settings.eta)", expected: "a number ≥ 0 (0: deterministic DDIM)")
        }
        guard schedulerNames.contains(settings.sampler) else {
            throw PipelineError.invalidValue(field: "sampler", value: "'\(settings.sampler)'",
                                             expected: "one of \(schedulerNames.joined(separator: ", "))")
        }
    }

    /// The recipe's sampler from the checkpoint's scheduler config (diffusers folders) or SD's default
    /// config, with the prediction type the recipe or checkpoint states.
    /// Scheduler config errors become `PipelineError.invalidSchedulerConfig` naming the config file.
    func makeScheduler(_ settings: GenerationSettings) throws -> any Scheduler {
        let file = models.schedulerConfigPath ?? "built-in Stable Diffusion 1.x scheduler config"
        do {
            var config = try models.schedulerConfig.map { try SchedulerConfig(json: $0) } ?? .stableDiffusion
            if let name = settings.prediction ?? models.predictionType {
                guard let type = PredictionType(rawValue: name) else {
                    throw PipelineError.invalidValue(field: "prediction", value: "'\(name)'", expected: "epsilon or v_prediction")
                }
                config.predictionType = type
            }
            if let spacing = settings.timestepSpacing {
                guard let value = TimestepSpacing(rawValue: spacing) else {
                    throw PipelineError.invalidValue(field: "timestep_spacing", value: "'\(spacing)'", expected: "leading, linspace or trailing")
                }
                guard schedulerReadsTimestepSpacing(settings.sampler) else {
                    throw PipelineError.invalidValue(field: "timestep_spacing", value: "'\(spacing)'",
                                                     expected: "no timestep_spacing with sampler '\(settings.sampler)' (its diffusers scheduler has its own fixed schedule)")
                }
                config.timestepSpacing = value
            }
            return try DarkroomSchedulers.makeScheduler(name: settings.sampler, config: config, eta: settings.eta)
        } catch let error as SchedulerError {
            throw PipelineError.invalidSchedulerConfig(file: file, detail: error.description)
        }
    }
}
