import DarkroomTensor
import Foundation

/// DDIM (Song et al., 2020): deterministic for η = 0, ancestral-like noise for η > 0.
///
/// This implementation matches: diffusers `schedulers/scheduling_ddim.py` (0.42.1), `DDIMScheduler`
/// with `use_clipped_model_output=False`, as `StableDiffusionPipeline` calls it.
///
/// Class defaults used for missing config keys (diffusers' `__init__`): beta_schedule "linear",
/// beta_start 0.0001, beta_end 0.02, clip_sample **true**, clip_sample_range 1.0,
/// set_alpha_to_one **true**, steps_offset 0, prediction_type "epsilon", timestep_spacing **"leading"**.
///
/// Arithmetic: ᾱ values are float32 (`alphas_cumprod`), and every coefficient is a float32 0-dim torch
/// operation in diffusers; both are reproduced in Float32 in the same order.
///
/// Limitations:
/// - `thresholding` (dynamic thresholding) and `rescale_betas_zero_snr` are not supported (throw).
/// - `use_clipped_model_output` is not exposed (diffusers' pipelines leave it false).
/// - `setBeginIndex` is a no-op: diffusers' DDIM has no `set_begin_index`; it needs no step index.
/// - Timesteps are training-timestep integers; `step` accepts any integral `Float` timestep.
public struct DDIMScheduler: Scheduler {
    public let config: SchedulerConfig
    /// DDIM's η: 0 is deterministic DDIM, 1 is DDPM-like. η > 0 calls `noise` once per step.
    public var eta: Float
    public private(set) var timesteps: [Float] = []
    public var initNoiseSigma: Float { 1 }
    public var order: Int { 1 }

    let schedule: NoiseSchedule
    let prediction: PredictionType
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let clipSample: Bool
    let clipSampleRange: Float
    /// ᾱ used after the last step: 1, or ᾱ₀ (`set_alpha_to_one` false).
    let finalAlphaCumprod: Float
    private var stepCount: Int?

    public init(config: SchedulerConfig, eta: Float = 0) throws {
        let name = "DDIMScheduler"
        try SchedulerValidation.reject(config.thresholding, "thresholding", name)
        try SchedulerValidation.reject(config.rescaleBetasZeroSnr, "rescale_betas_zero_snr", name)
        self.config = config
        self.eta = eta
        schedule = try NoiseSchedule(config: config, scheduler: name)
        prediction = config.predictionType ?? .epsilon
        spacing = config.timestepSpacing ?? .leading
        stepsOffset = config.stepsOffset ?? 0
        clipSample = config.clipSample ?? true
        clipSampleRange = Float(config.clipSampleRange ?? 1.0)
        finalAlphaCumprod = (config.setAlphaToOne ?? true) ? 1 : schedule.alphasCumprod[0]
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try SchedulerValidation.stepCount(count, schedule)
        let train = schedule.numTrainTimesteps
        let values: [Double]
        switch spacing {
        case .linspace:
            values = NumPy.linspace(0, Double(train - 1), count).map(NumPy.round).reversed()
        case .leading:
            let ratio = train / count
            values = (0..<count).reversed().map { Double($0 * ratio + stepsOffset) }
        case .trailing:
            values = NumPy.arange(Double(train), 0, -Double(train) / Double(count)).map { NumPy.round($0) - 1 }
        }
        timesteps = values.map { Float(NoiseSchedule.trainingIndex(Float($0))) }
        stepCount = count
    }

    public mutating func setBeginIndex(_ index: Int) {}

    public func checkRunnable(from beginIndex: Int) throws {
        guard beginIndex >= 0, beginIndex < timesteps.count else {
            throw SchedulerError.unrunnableSchedule(scheduler: "DDIMScheduler", steps: stepCount ?? 0, beginIndex: beginIndex, reason: "no step to run")
        }
        try SchedulerValidation.trainingTimesteps(timesteps[beginIndex...], schedule, scheduler: "DDIMScheduler",
                                                  steps: stepCount ?? 0, beginIndex: beginIndex)
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor {
        // Before `setTimesteps` (a programming error) one step spans the whole schedule.
        let stepCount = max(self.stepCount ?? 1, 1)
        let t = NoiseSchedule.trainingIndex(timestep)
        let previous = t - schedule.numTrainTimesteps / stepCount
        let alphaProd = schedule.alphaCumprod(at: t)
        let alphaProdPrev = previous >= 0 ? schedule.alphaCumprod(at: previous) : finalAlphaCumprod
        let betaProd = 1 - alphaProd
        let sqrtAlpha = alphaProd.squareRoot(), sqrtBeta = betaProd.squareRoot()

        // Predicted x₀ and ε.
        var predOriginal: Tensor, predEpsilon: Tensor
        switch prediction {
        case .epsilon:
            predOriginal = Tensor.zipScalars(sample, modelOutput) { x, e in (x - sqrtBeta * e) / sqrtAlpha }
            predEpsilon = modelOutput
        case .sample:
            predOriginal = modelOutput
            predEpsilon = Tensor.zipScalars(sample, modelOutput) { x, x0 in (x - sqrtAlpha * x0) / sqrtBeta }
        case .vPrediction:
            predOriginal = Tensor.zipScalars(sample, modelOutput) { x, v in sqrtAlpha * x - sqrtBeta * v }
            predEpsilon = Tensor.zipScalars(sample, modelOutput) { x, v in sqrtAlpha * v + sqrtBeta * x }
        }
        if clipSample {
            let range = clipSampleRange
            predOriginal = predOriginal.mapScalars { min(max($0, -range), range) }
        }

        // σ_t(η) and the direction pointing to x_t.
        let betaProdPrev = 1 - alphaProdPrev
        let variance = (betaProdPrev / betaProd) * (1 - alphaProd / alphaProdPrev)
        let stdDev = eta * variance.squareRoot()
        let directionCoefficient = (1 - alphaProdPrev - stdDev * stdDev).squareRoot()
        let sqrtAlphaPrev = alphaProdPrev.squareRoot()
        var previousSample = Tensor.zipScalars(predOriginal, predEpsilon) { x0, e in
            sqrtAlphaPrev * x0 + directionCoefficient * e
        }
        if eta > 0 {
            let z = noise()
            previousSample = Tensor.zipScalars(previousSample, z) { x, n in x + stdDev * n }
        }
        return previousSample
    }

    public func addNoise(original: Tensor, noise: Tensor, timestep: Float) -> Tensor {
        let alphaProd = schedule.alphaCumprod(at: NoiseSchedule.trainingIndex(timestep))
        let a = alphaProd.squareRoot(), b = (1 - alphaProd).squareRoot()
        return Tensor.zipScalars(original, noise) { x, n in a * x + b * n }
    }
}
