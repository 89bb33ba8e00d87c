import DarkroomModels
import DarkroomSchedulers
import DarkroomTensor

extension StableDiffusionPipeline {
    /// Inpainting: repaint where `mask` is white (≥ 0.5 after diffusers' binarisation), keep the rest.
    ///
    /// This implementation matches: diffusers `pipeline_stable_diffusion_inpaint.py` and, for SDXL (the added
    /// conditioning comes from `prepare`), `pipeline_stable_diffusion_xl_inpaint.py` (0.42.1), both paths chosen by
    /// the UNet's input channels:
    /// - 9-channel inpainting models: the UNet sees [latents, mask, masked-image latents];
    /// - 4-channel models: after every step the known region is replaced by the original latents,
    ///   re-noised to the next timestep (`(1 − m)·add_noise(x₀, noise, t_next) + m·latents`).
    /// Random draws in diffusers' order: the init-image posterior (4-channel, or strength < 1), the noise,
    /// then the masked-image posterior.
    ///
    /// - Parameters:
    ///   - image: [1, 3, H, W] in [-1, 1], H and W multiples of 8.
    ///   - mask: [1, 1, H, W] in [0, 1] (`ImageTensor.mask(from:)`); binarised at 0.5 for the diffusion. A mask
    ///     with no pixel ≥ 0.5 but some > 0 (a 1-pixel mask after a resize) is binarised at > 0 instead, and a
    ///     mask whose latent-size nearest sample misses every marked pixel (a mask smaller than the VAE's 8×8
    ///     cells) marks every latent cell it touches — cases where diffusers would repaint nothing.
    ///   - pasteMask: the mask composited for paste-back (A1111: the blurred mask); nil: `mask`.
    ///   - pasteBack: replace every pixel outside the mask by the input's, so nothing outside the mask
    ///     changes colour (A1111 does; diffusers only with `padding_mask_crop`).
    ///   - maskedContent: what the masked area starts from (`.original`: diffusers' behaviour).
    ///   - controlNets: units steering the denoising as diffusers' `StableDiffusionControlNetInpaintPipeline` (SDXL:
    ///     `StableDiffusionXLControlNetInpaintPipeline`; both share this pipeline's latents, mask and blend); the inpaint ControlNet's control image has −1 where the
    ///     mask is set (see `ControlNetUnit`).
    public func inpaint(_ image: Tensor, mask: Tensor, pasteMask: Tensor? = nil, settings: GenerationSettings, pasteBack: Bool = true,
                        maskedContent: PipelineConfiguration.MaskedContent = .original, controlNets: [ControlNetUnit] = [],
                        progress: Progress? = nil) throws -> GenerationResult {
        // 1.–4. Check inputs, encode the prompt, timesteps for the strength.
        var (embeddings, scheduler, timesteps, added) = try prepare(image, settings: settings, controlNets: controlNets)
        let first = timesteps[0]
        let (height, width) = (image.shape[2], image.shape[3])
        let factor = models.vae.config.downscale
        for (name, m) in [("mask", mask), ("paste-back mask", pasteMask ?? mask)] {
            guard m.rank == 4, m.shape[0] == 1, m.shape[1] == 1, m.shape[2] == height, m.shape[3] == width else {
                throw PipelineError.maskSizeMismatch(mask: name, maskSize: m.rank == 4 ? "\(m.shape[3])×\(m.shape[2])" : "\(m.shape)",
                                                     imageSize: "\(width)×\(height)")
            }
        }
        var binary = mask.mapValues { $0 >= 0.5 ? 1 : 0 }
        if !binary.scalars.contains(1) { binary = mask.mapValues { $0 > 0 ? 1 : 0 } }
        guard binary.scalars.contains(1) else { throw PipelineError.emptyMask(mask: "mask") }
        let channels = try checkModelChannels() == .inpainting ? 9 : 4

        let guided = settings.guidance > 1
        let fullStrength = settings.strength == 1

        // 5. Prepare latents, in diffusers' draw order.
        var random = TorchRandomSource(seed: settings.seed)
        let scaling = models.vae.config.scalingFactor
        let latentShape = [1, models.vae.config.latentChannels, height / factor, width / factor]
        func sample(_ posterior: DiagonalGaussianDistribution) -> Tensor {
            posterior.sample(noise: Tensor(shape: posterior.mean.shape, scalars: random.normal(shape: posterior.mean.shape))) * scaling
        }
        // The area to repaint and the area to keep, in pixels and in latents.
        let keep = binary.mapValues { $0 < 0.5 ? 1 : 0 }
        var latentMask = binary.nearestDownsample(by: factor)                      // [1, 1, h, w]
        if !latentMask.scalars.contains(1) { latentMask = binary.maxDownsample(by: factor) }
        let latentKeep = latentMask.mapValues { 1 - $0 }
        let startImage = try Self.startImage(image, mask: mask, maskedContent: maskedContent)
        let tiling = vaeTiling(settings, height: height, width: width)
        var imageLatents = (channels == 4 || !fullStrength) ? sample(models.vae.encode(startImage, tiling: tiling)) : nil
        if let imageLatents { try Self.requireFinite(imageLatents, .vaeEncode) }
        let noise = Tensor(shape: latentShape, scalars: random.normal(shape: latentShape))
        // A1111's latent fills: the masked area of the start latents becomes noise or zero. (Drawn after
        // diffusers' draws, so `.original` keeps diffusers' sequence.)
        if let base = imageLatents, maskedContent == .latentNoise || maskedContent == .latentNothing {
            let replacement = maskedContent == .latentNoise
                ? Tensor(shape: latentShape, scalars: random.normal(shape: latentShape)) : Tensor(zeros: latentShape)
            imageLatents = base * latentKeep + replacement * latentMask
        }
        var latents: Tensor
        if fullStrength {
            latents = noise * scheduler.initNoiseSigma
        } else if let imageLatents {
            latents = scheduler.addNoise(original: imageLatents, noise: noise, timestep: first)
        } else {
            latents = noise
        }
        // The masked image: known pixels kept, the area to repaint set to 0 (mid-grey in [-1, 1]).
        let maskedImageLatents = sample(models.vae.encode(image * keep, tiling: tiling))
        try Self.requireFinite(maskedImageLatents, .vaeEncode)

        // 6. Denoise.
        releaseEncoderPages()
        let cfgCopies = guided ? 2 : 1
        let maskInput = Tensor.concatenate(Array(repeating: latentMask, count: cfgCopies), axis: 0)
        let maskedInput = Tensor.concatenate(Array(repeating: maskedImageLatents, count: cfgCopies), axis: 0)
        latents = try denoise(
            latents, timesteps: timesteps, scheduler: &scheduler, embeddings: embeddings, added: added,
            guidance: guided ? settings.guidance : nil, random: &random, controlNets: try prepareControlNets(controlNets),
            progress: progress,
            prepareInput: { scaled in
                channels == 9 ? Tensor.concatenate([scaled, maskInput, maskedInput], axis: 1) : scaled
            },
            afterStep: { latents, i, scheduler in
                guard channels == 4, let imageLatents else { return latents }
                // diffusers: the original re-noised to the next timestep — sigma-based schedulers take the
                // sigma at their live step index, so this must be the scheduler as stepped — or the clean
                // original after the last step.
                let known = i + 1 < timesteps.count
                    ? scheduler.addNoise(original: imageLatents, noise: noise, timestep: timesteps[i + 1])
                    : imageLatents
                return latentKeep * known + latentMask * latents
            })

        // 7. Decode, then paste the untouched pixels back.
        controlNets.forEach { $0.model.dropResidentPages() }
        releaseUNetPages()
        let decoded = models.vae.decode(latents / scaling, tiling: tiling)
        try Self.requireFinite(decoded, .vaeDecode)
        var output = ImageTensor.unitRange(decoded)
        if pasteBack {
            // Composite with the (possibly blurred) mask, so the edge blends and nothing outside changes.
            let original = ImageTensor.unitRange(image)
            let composite = pasteMask ?? mask
            output = original * composite.mapValues { 1 - $0 } + output * composite
        }
        return GenerationResult(image: output, latents: latents, seed: settings.seed)
    }
}

extension StableDiffusionPipeline {
    /// The image whose latents inpainting starts from: the input, or with A1111's "fill" the input with
    /// the masked area painted from its surroundings (A1111 `masking.fill`), so an object under the mask
    /// is gone before encoding and does not come back. [1, 3, H, W] in [-1, 1].
    public static func startImage(_ image: Tensor, mask: Tensor, maskedContent: PipelineConfiguration.MaskedContent) throws -> Tensor {
        guard maskedContent == .fill else { return image }
        return try ImageOps.fillMaskedArea(image: PlanarImage8(imageTensor: image), mask: PlanarImage8(unitTensor: mask)).imageTensor
    }
}

extension Tensor {
    /// Element-wise `transform` (for masks).
    func mapValues(_ transform: (Float) -> Float) -> Tensor {
        var out = self
        out.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = transform(p[i]) } }
        return out
    }

    /// [N, C, H, W] → [N, C, H/f, W/f]: the largest value of each f×f block (for masks smaller than a block).
    func maxDownsample(by f: Int) -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (oh, ow) = (h / f, w / f)
        var out = Tensor(zeros: [n, c, oh, ow])
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for p in 0..<(n * c) {
                    for y in 0..<(oh * f) { for x in 0..<(ow * f) {
                        let o = (p * oh + y / f) * ow + x / f
                        dst[o] = Swift.max(dst[o], src[(p * h + y) * w + x])
                    } }
                }
            }
        }
        return out
    }

    /// [N, C, H, W] → [N, C, H/f, W/f] taking the top-left pixel of each f×f block: exactly what
    /// `F.interpolate(mask, size=(H/f, W/f), mode="nearest")` computes for integer factors.
    func nearestDownsample(by f: Int) -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (oh, ow) = (h / f, w / f)
        var out = Tensor(zeros: [n, c, oh, ow])
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for p in 0..<(n * c) {
                    for y in 0..<oh { for x in 0..<ow { dst[(p * oh + y) * ow + x] = src[(p * h + y * f) * w + x * f] } }
                }
            }
        }
        return out
    }
}
