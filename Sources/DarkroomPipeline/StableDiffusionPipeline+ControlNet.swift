import DarkroomModels
import DarkroomTensor

/// One ControlNet unit of a generation: a loaded ControlNet (`StableDiffusionModels.loadControlNet`), its control image
/// and how strongly and when it steers.
///
/// The control image is what diffusers' pipelines pass to the ControlNet after their control image processor:
/// [1, 3, H, W] at the generated image's size, in [0, 1] (tile: the image itself; canny: the edge map), or with −1
/// for the masked pixels of the inpaint ControlNet. Preprocessors (tile resample, canny, inpaint) make it; a control
/// image of another size is refused, not resized.
public struct ControlNetUnit: Sendable {
    public var model: ControlNetModel
    public var image: Tensor
    /// diffusers' `controlnet_conditioning_scale` (A1111's "Control Weight").
    public var weight: Float
    /// diffusers' `control_guidance_start` / `control_guidance_end`: the unit steers step i of n only when
    /// i/n ≥ start and (i+1)/n ≤ end (A1111's "Starting/Ending Control Step").
    public var start: Double
    public var end: Double
    /// diffusers' `guess_mode`: with guidance, the ControlNet runs on the conditional half only (the unconditional
    /// half gets no residuals), and its residuals are scaled from 0.1 (first skip) to 1 (mid block).
    public var guessMode: Bool

    public init(model: ControlNetModel, image: Tensor, weight: Float = 1, start: Double = 0, end: Double = 1,
                guessMode: Bool = false) {
        self.model = model
        self.image = image
        self.weight = weight
        self.start = start
        self.end = end
        self.guessMode = guessMode
    }
}

/// A unit checked against the job, with its control image embedded once (the embedding does not depend on the step).
struct PreparedControlNet {
    let unit: ControlNetUnit
    let embedding: Tensor

    /// diffusers' `controlnet_keep[i]`: `1 − (i/n < start or (i+1)/n > end)`, in the pipeline's float64 arithmetic.
    func isActive(step i: Int, of n: Int) -> Bool {
        !(Double(i) / Double(n) < unit.start || Double(i + 1) / Double(n) > unit.end)
    }
}

extension StableDiffusionPipeline {
    /// Checks every unit against the model and an image of `height`×`width` before anything is computed, as diffusers'
    /// `check_inputs`: a control image of the image's size, a finite weight, 0 ≤ start < end ≤ 1, and a ControlNet that
    /// fits this model's UNet (one loaded for another checkpoint is refused).
    func checkControlNets(_ units: [ControlNetUnit], height: Int, width: Int) throws {
        let skips = ControlNetConfig.skipChannels(models.unet.config)
        for (i, unit) in units.enumerated() {
            let field = "controlnet[\(i)]"
            let config = unit.model.config
            guard ControlNetConfig.skipChannels(config.unet) == skips, config.unet.contextDim == models.unet.config.contextDim,
                  config.unet.addedConditioning == models.unet.config.addedConditioning,
                  config.unet.inChannels == models.vae.config.latentChannels,
                  config.embeddingDownscale == models.vae.config.downscale else {
                throw PipelineError.invalidValue(field: "\(field).model", value: "'\(unit.model.source)'",
                                                 expected: "a ControlNet loaded for this model (StableDiffusionModels.loadControlNet)")
            }
            let image = unit.image
            guard image.rank == 4, image.shape[0] == 1, image.shape[1] == config.conditioningChannels,
                  image.shape[2] == height, image.shape[3] == width else {
                throw PipelineError.invalidValue(field: "\(field).image", value: "a tensor of shape \(image.shape)",
                                                 expected: "[1, \(config.conditioningChannels), \(height), \(width)]: the image's size (a control image is not resized)")
            }
            guard unit.weight.isFinite else {
                throw PipelineError.invalidValue(field: "\(field).weight", value: "\(unit.weight)", expected: "a finite number")
            }
            guard unit.start >= 0, unit.end <= 1, unit.start < unit.end else {
                throw PipelineError.invalidValue(field: "\(field).start/end", value: "\(unit.start)…\(unit.end)",
                                                 expected: "0 ≤ start < end ≤ 1")
            }
        }
    }

    /// The units with their control images embedded (one conditioning-embedding pass each per job).
    func prepareControlNets(_ units: [ControlNetUnit]) throws -> [PreparedControlNet] {
        try units.enumerated().map { i, unit in
            let embedding = unit.model.embed(unit.image)
            try Self.requireFinite(embedding, .controlNet(unit: i))
            return PreparedControlNet(unit: unit, embedding: embedding)
        }
    }

    /// The residuals of every unit active at step `i` of `n`, summed (Multi-ControlNet), for the UNet input `scaled`
    /// (the scaled latents, doubled under guidance, before any inpainting channels), `embeddings` and SDXL's `added`
    /// conditioning (negative first under guidance); nil when no unit steers this step. diffusers computes zero residuals for a unit
    /// outside its window or at weight 0, which add nothing: they are skipped here.
    ///
    /// This implementation matches the denoising loop of diffusers `pipeline_controlnet_img2img.py` and
    /// `pipeline_controlnet_inpaint.py`, and for SDXL `pipeline_controlnet_sd_xl_img2img.py` (0.42.1), with guess mode
    /// per unit rather than per call.
    func controlNetResiduals(_ units: [PreparedControlNet], step i: Int, of n: Int, scaled: Tensor, timestep t: Float,
                             embeddings: Tensor, added: UNetAddedConditioning?, guided: Bool) -> ControlNetResiduals? {
        var total: ControlNetResiduals?
        for prepared in units where prepared.unit.weight != 0 && prepared.isActive(step: i, of: n) {
            let unit = prepared.unit
            let residuals: ControlNetResiduals
            if unit.guessMode && guided {
                // The conditional half only (latents, prompt, SDXL's text_embeds and time_ids); zeros for the
                // unconditional half.
                let conditional = added.map {
                    UNetAddedConditioning(textEmbeds: $0.textEmbeds.slice(1..<2, axis: 0), timeIDs: $0.timeIDs.slice(1..<2, axis: 0))
                }
                residuals = unit.model(scaled.slice(1..<2, axis: 0), timesteps: [t], context: embeddings.slice(1..<2, axis: 0),
                                       added: conditional, embedding: prepared.embedding, scale: unit.weight, guessMode: true)
                    .withZerosForUnconditional()
            } else {
                residuals = unit.model(scaled, timesteps: [t], context: embeddings, added: added, embedding: prepared.embedding,
                                       scale: unit.weight, guessMode: unit.guessMode)
            }
            total = total.map { $0 + residuals } ?? residuals
        }
        return total
    }
}
