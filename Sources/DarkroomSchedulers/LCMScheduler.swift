import DarkroomTensor
import Foundation

/// Latent Consistency Model multistep sampling (Luo et al., 2023): each step maps x_t to the consistency
/// model's denoised estimate, then re-noises it to the next timestep with fresh noise. For LCM checkpoints and
/// LCM-LoRA at 2–8 steps and guidance ≈ 1.
///
/// This implementation matches: diffusers `schedulers/scheduling_lcm.py` (0.42.1), `LCMScheduler`, as
/// `StableDiffusionImg2ImgPipeline` uses it (`set_timesteps(num_inference_steps)` with strength 1, then the
/// pipeline's `get_timesteps` + `set_begin_index`).
///
/// Class defaults used for missing config keys: beta_schedule **"scaled_linear"**, beta_start **0.00085**,
/// beta_end **0.012**, original_inference_steps 50, clip_sample false, clip_sample_range 1.0,
/// set_alpha_to_one true, prediction_type "epsilon", timestep_scaling 10.0.
///
/// Schedule, as diffusers: k = num_train_timesteps // original_inference_steps; the LCM training timesteps
/// are k·i − 1 for i = 1…original_inference_steps; the inference timesteps take `steps` of them (reversed)
/// at indices ⌊linspace(0, original_inference_steps, steps, endpoint=False)⌋. More steps than
/// `original_inference_steps` is refused (diffusers raises ValueError).
///
/// Step (float32, diffusers' operation order): x₀ from the model output and ᾱ_t; c_skip = σ_d²/((10t)² + σ_d²),
/// c_out = 10t/((10t)² + σ_d²)^½ with σ_d = 0.5; denoised = c_out·x₀ + c_skip·x. Every step but the last then
/// draws noise (`noise()`, once) and returns √ᾱ_prev·denoised + √(1 − ᾱ_prev)·noise; the last returns denoised.
/// `addNoise` is DDPM's √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε at the integer timestep.
///
/// Limitations:
/// - `thresholding` and `rescale_betas_zero_snr` throw `unsupported`; custom timesteps are not exposed.
/// - `timestep_spacing` is not read (diffusers' LCMScheduler ignores it too); a recipe's `timestep_spacing`
///   with `lcm` is refused by the pipeline rather than silently ignored.
public struct LCMScheduler: Scheduler {
    public let config: SchedulerConfig
    public private(set) var timesteps: [Float] = []
    public var initNoiseSigma: Float { 1 }
    public var order: Int { 1 }

    let schedule: NoiseSchedule
    let prediction: PredictionType
    let originalSteps: Int
    let timestepScaling: Float
    let clipSample: Bool
    let clipSampleRange: Float
    let finalAlphaCumprod: Float
    private var stepCount = 0
    private var stepIndex: Int?
    private var beginIndex: Int?

    public init(config: SchedulerConfig) throws {
        let name = "LCMScheduler"
        try SchedulerValidation.reject(config.thresholding, "thresholding", name)
        try SchedulerValidation.reject(config.rescaleBetasZeroSnr, "rescale_betas_zero_snr", name)
        var filled = config
        if filled.trainedBetas == nil {
            filled.betaSchedule = filled.betaSchedule ?? "scaled_linear"
            filled.betaStart = filled.betaStart ?? 0.00085
            filled.betaEnd = filled.betaEnd ?? 0.012
        }
        schedule = try NoiseSchedule(config: filled, scheduler: name)
        let original = config.originalInferenceSteps ?? 50
        guard original >= 1, original <= schedule.numTrainTimesteps else {
            throw SchedulerError.invalidConfigValue(key: "original_inference_steps", value: "\(original)",
                                                    expected: "a whole number from 1 to num_train_timesteps (\(schedule.numTrainTimesteps); LCM: 50)")
        }
        let scaling = config.timestepScaling ?? 10
        guard scaling.isFinite, scaling > 0, scaling < 1e6 else {
            throw SchedulerError.invalidConfigValue(key: "timestep_scaling", value: "\(scaling)", expected: "a finite number > 0 (LCM: 10)")
        }
        let range = config.clipSampleRange ?? 1
        guard range.isFinite, range > 0 else {
            throw SchedulerError.invalidConfigValue(key: "clip_sample_range", value: "\(range)", expected: "a finite number > 0")
        }
        self.config = config
        prediction = config.predictionType ?? .epsilon
        originalSteps = original
        timestepScaling = Float(scaling)
        clipSample = config.clipSample ?? false
        clipSampleRange = Float(range)
        finalAlphaCumprod = (config.setAlphaToOne ?? true) ? 1 : schedule.alphasCumprod[0]
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try SchedulerValidation.stepCount(count, schedule)
        let k = schedule.numTrainTimesteps / originalSteps
        // lcm_origin_timesteps = arange(1, original_steps + 1) * k - 1, reversed (strength 1).
        let origin = (1...originalSteps).reversed().map { $0 * k - 1 }
        guard count <= originalSteps, origin.count / count >= 1 else {
            throw SchedulerError.unrunnableSchedule(
                scheduler: "LCMScheduler", steps: count, beginIndex: 0,
                reason: "LCM takes at most original_inference_steps (\(originalSteps)) steps, a subset of its distillation schedule")
        }
        // inference_indices = floor(np.linspace(0, len, num=count, endpoint=False)): i·(len/count) + 0.
        let step = Double(origin.count) / Double(count)
        timesteps = (0..<count).map { i in Float(origin[min(Int((Double(i) * step + 0).rounded(.down)), origin.count - 1)]) }
        stepCount = count
        stepIndex = nil
        beginIndex = nil
    }

    public mutating func setBeginIndex(_ index: Int) { beginIndex = index }

    public func checkRunnable(from beginIndex: Int) throws {
        guard beginIndex >= 0, beginIndex < timesteps.count else {
            throw SchedulerError.unrunnableSchedule(scheduler: "LCMScheduler", steps: stepCount, beginIndex: beginIndex, reason: "no step to run")
        }
        try SchedulerValidation.trainingTimesteps(timesteps[beginIndex...], schedule, scheduler: "LCMScheduler",
                                                  steps: stepCount, beginIndex: beginIndex)
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor { sample }

    /// diffusers' LCM `index_for_timestep`: the second occurrence when repeated; the nearest one when absent
    /// (diffusers raises; the pipeline always sets a begin index).
    private func index(of timestep: Float) -> Int {
        if let found = SigmaSchedule.index(of: timestep, in: timesteps) { return found }
        return timesteps.indices.min { abs(timesteps[$0] - timestep) < abs(timesteps[$1] - timestep) } ?? 0
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor {
        // 1. The current and previous step's timesteps (the last step "goes" to its own timestep).
        let i = max(stepIndex ?? beginIndex ?? index(of: timestep), 0)
        let t = NoiseSchedule.trainingIndex(timestep)
        let previous = i + 1 < timesteps.count ? NoiseSchedule.trainingIndex(timesteps[i + 1]) : t
        // 2. ᾱ and β̄ (float32 0-dim tensors in diffusers).
        let alphaProd = schedule.alphaCumprod(at: t)
        let alphaProdPrev = previous >= 0 ? schedule.alphaCumprod(at: previous) : finalAlphaCumprod
        let betaProd = 1 - alphaProd, betaProdPrev = 1 - alphaProdPrev
        // 3. Boundary-condition scalings: timestep · timestep_scaling in float32, σ_data = 0.5.
        let scaled = Float(t) * timestepScaling
        let cSkip = 0.25 / (scaled * scaled + 0.25)
        let cOut = scaled / (scaled * scaled + 0.25).squareRoot()
        // 4. The predicted x₀.
        let sqrtAlpha = alphaProd.squareRoot(), sqrtBeta = betaProd.squareRoot()
        var predOriginal: Tensor
        switch prediction {
        case .epsilon: predOriginal = Tensor.zipScalars(sample, modelOutput) { x, e in (x - sqrtBeta * e) / sqrtAlpha }
        case .sample: predOriginal = modelOutput
        case .vPrediction: predOriginal = Tensor.zipScalars(sample, modelOutput) { x, v in sqrtAlpha * x - sqrtBeta * v }
        }
        // 5. Clip.
        if clipSample {
            let range = clipSampleRange
            predOriginal = predOriginal.mapScalars { min(max($0, -range), range) }
        }
        // 6. The denoised sample: c_out·x₀ + c_skip·x.
        let denoised = Tensor.zipScalars(predOriginal, sample) { x0, x in cOut * x0 + cSkip * x }
        // 7. Re-noise to the previous timestep with fresh noise, except after the last step.
        stepIndex = i + 1
        guard i != stepCount - 1 else { return denoised }
        let z = noise()
        let a = alphaProdPrev.squareRoot(), b = betaProdPrev.squareRoot()
        return Tensor.zipScalars(denoised, z) { d, n in a * d + b * n }
    }

    public func addNoise(original: Tensor, noise: Tensor, timestep: Float) -> Tensor {
        let alphaProd = schedule.alphaCumprod(at: NoiseSchedule.trainingIndex(timestep))
        let a = alphaProd.squareRoot(), b = (1 - alphaProd).squareRoot()
        return Tensor.zipScalars(original, noise) { x, n in a * x + b * n }
    }
}
