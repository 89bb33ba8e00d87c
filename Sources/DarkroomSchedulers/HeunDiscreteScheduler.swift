import DarkroomTensor
import Foundation

/// Heun's method (Karras et al., 2022, Algorithm 1 without churn): an Euler step to the next σ, then a second
/// model evaluation there and the average of the two slopes. Two evaluations per step ("Heun" in A1111).
///
/// This implementation matches: diffusers `schedulers/scheduling_heun_discrete.py` (0.42.1),
/// `HeunDiscreteScheduler` (`order = 2`), optionally `use_karras_sigmas=True`.
///
/// Class defaults used for missing config keys: beta_schedule "linear", beta_start **0.00085**,
/// beta_end **0.012**, prediction_type "epsilon", use_karras_sigmas false, clip_sample false,
/// clip_sample_range 1.0, timestep_spacing **"linspace"**, steps_offset 0.
///
/// Schedule, as diffusers: N timesteps and σ as `EulerDiscreteScheduler` (float64 `np.interp`, float32), a final
/// σ = 0, then interleaved: σ = [σ₀, σ₁, σ₁, …, σ_{N−1}, σ_{N−1}, 0] (2N values) and timesteps
/// [t₀, t₁, t₁, …, t_{N−1}, t_{N−1}] (2N − 1 model evaluations). Even positions are first-order (Euler) steps,
/// odd ones complete the Heun step; the last evaluation is an Euler step to σ = 0. img2img starts at 2·t_start
/// (`imageToImageStart(…, order: 2)`).
///
/// Limitations:
/// - No stochastic churn; exponential/beta sigmas and beta_schedule "exp" throw `unsupported`.
public struct HeunDiscreteScheduler: Scheduler {
    public let config: SchedulerConfig
    public private(set) var timesteps: [Float] = []
    /// σ per model evaluation plus the final 0 (float32, interleaved as diffusers).
    public private(set) var sigmas: [Float] = []
    public var initNoiseSigma: Float { SecondOrderSchedule.initNoiseSigma(sigmas, spacing: spacing) }
    public var order: Int { 2 }

    let schedule: NoiseSchedule
    let prediction: PredictionType
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let useKarras: Bool
    let clipSample: Bool
    let clipSampleRange: Float
    private var stepCount = 0
    private var stepIndex: Int?
    private var beginIndex: Int?
    /// After a first-order evaluation: its slope, step size and sample (diffusers' prev_derivative, dt, sample).
    private var pending: (derivative: Tensor, dt: Float, sample: Tensor)?

    public init(config: SchedulerConfig) throws {
        let name = "HeunDiscreteScheduler"
        let settings = try SecondOrderSchedule.Settings(config, scheduler: name, allowsSample: true)
        let range = config.clipSampleRange ?? 1
        guard range.isFinite, range > 0 else {
            throw SchedulerError.invalidConfigValue(key: "clip_sample_range", value: "\(range)", expected: "a finite number > 0")
        }
        self.config = config
        (schedule, prediction, spacing) = (settings.schedule, settings.prediction, settings.spacing)
        (stepsOffset, useKarras) = (settings.stepsOffset, settings.useKarras)
        clipSample = config.clipSample ?? false
        clipSampleRange = Float(range)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try SchedulerValidation.stepCount(count, schedule)
        let (steps, values) = SecondOrderSchedule.base(schedule: schedule, config: config, spacing: spacing, stepsOffset: stepsOffset,
                                                       count: count, useKarras: useKarras, roundKarras: false)
        let s = values.map { Float($0) } + [0]
        // cat([σ[:1], σ[1:-1].repeat_interleave(2), σ[-1:]]) and cat([t[:1], t[1:].repeat_interleave(2)]).
        sigmas = [s[0]] + s.dropFirst().dropLast().flatMap { [$0, $0] } + [0]
        let t = steps.map { Float($0) }
        timesteps = [t[0]] + t.dropFirst().flatMap { [$0, $0] }
        stepCount = count
        stepIndex = nil
        beginIndex = nil
        pending = nil
    }

    public mutating func setBeginIndex(_ index: Int) { beginIndex = index }

    public func checkRunnable(from beginIndex: Int) throws {
        try SchedulerValidation.runSigmas(sigmas, from: beginIndex, count: timesteps.count, strictlyDecreasing: false,
                                          scheduler: "HeunDiscreteScheduler")
    }

    /// The current evaluation's index (clamped so a call past the end never traps).
    private func index(for timestep: Float) -> Int {
        let index = stepIndex ?? beginIndex ?? SigmaSchedule.index(of: timestep, in: timesteps) ?? 0
        return min(max(index, 0), max(sigmas.count - 2, 0))
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor {
        let sigma = sigmas.isEmpty ? 0 : sigmas[index(for: timestep)]
        let scale = (sigma * sigma + 1).squareRoot()
        return sample.mapScalars { $0 / scale }
    }

    private func predictOriginal(_ modelOutput: Tensor, _ sample: Tensor, sigma: Float) -> Tensor {
        var x0: Tensor
        switch prediction {
        case .epsilon: x0 = Tensor.zipScalars(sample, modelOutput) { x, e in x - sigma * e }
        case .vPrediction:
            let c = -sigma / (sigma * sigma + 1).squareRoot(), d = sigma * sigma + 1
            x0 = Tensor.zipScalars(modelOutput, sample) { v, x in v * c + x / d }
        case .sample: x0 = modelOutput
        }
        if clipSample {
            let range = clipSampleRange
            x0 = x0.mapScalars { min(max($0, -range), range) }
        }
        return x0
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor {
        guard sigmas.count >= 2 else { return sample }
        let i = index(for: timestep)
        stepIndex = i + 1
        if let first = pending {
            // 2nd evaluation at σ_next: average the slopes, step from the stored sample.
            let sigmaNext = sigmas[i]
            let x0 = predictOriginal(modelOutput, sample, sigma: sigmaNext)
            let derivative = Tensor.zipScalars(first.derivative, Tensor.zipScalars(sample, x0) { x, p in (x - p) / sigmaNext }) { a, b in (a + b) / 2 }
            pending = nil
            let dt = first.dt
            return Tensor.zipScalars(first.sample, derivative) { x, d in x + d * dt }
        }
        // 1st evaluation: an Euler step from σ to σ_next.
        let sigmaHat = sigmas[i] * (0 + 1)
        let x0 = predictOriginal(modelOutput, sample, sigma: sigmaHat)
        let derivative = Tensor.zipScalars(sample, x0) { x, p in (x - p) / sigmaHat }
        let dt = sigmas[i + 1] - sigmaHat
        pending = (derivative, dt, sample)
        return Tensor.zipScalars(sample, derivative) { x, d in x + d * dt }
    }

    public func addNoise(original: Tensor, noise: Tensor, timestep: Float) -> Tensor {
        guard !sigmas.isEmpty else { return original }
        let i = beginIndex.map { stepIndex ?? $0 } ?? SigmaSchedule.index(of: timestep, in: timesteps) ?? 0
        let sigma = sigmas[min(max(i, 0), sigmas.count - 1)]
        return Tensor.zipScalars(original, noise) { x, n in x + n * sigma }
    }
}
