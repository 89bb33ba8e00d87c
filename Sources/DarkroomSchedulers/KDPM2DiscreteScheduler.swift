import DarkroomTensor
import Foundation

/// DPM-Solver-2 in σ (Karras et al., 2022, k-diffusion's `sample_dpm_2`): a half step to the geometric mean of
/// σ and σ_next, a second model evaluation there, and the full step with that slope. Two evaluations per step
/// ("DPM2" / "DPM2 Karras" in A1111).
///
/// This implementation matches: diffusers `schedulers/scheduling_k_dpm_2_discrete.py` (0.42.1),
/// `KDPM2DiscreteScheduler` (`order = 2`), optionally `use_karras_sigmas=True` (recipes `dpm2`, `dpm2_karras`).
///
/// Class defaults used for missing config keys: beta_schedule "linear", beta_start **0.00085**,
/// beta_end **0.012**, prediction_type "epsilon", use_karras_sigmas false, timestep_spacing **"linspace"**,
/// steps_offset 0.
///
/// Schedule, as diffusers: N timesteps and σ as `HeunDiscreteScheduler` (Karras timesteps rounded), a final
/// σ = 0; σ_interpol = exp(lerp(log σ_j, log σ_{j−1}, ½)) in float32; both interleaved as
/// `cat([x[:1], x[1:].repeat_interleave(2), x[-1:]])`; the timesteps alternate t_j with the float32
/// `_sigma_to_t` of σ_interpol_{j+1}: 2N − 1 model evaluations, even positions first order.
///
/// Limitations:
/// - `prediction_type` "sample" throws (diffusers raises NotImplementedError); exponential/beta sigmas throw.
public struct KDPM2DiscreteScheduler: Scheduler {
    public let config: SchedulerConfig
    public private(set) var timesteps: [Float] = []
    /// σ and σ_interpol, interleaved as diffusers (float32).
    public private(set) var sigmas: [Float] = []
    public private(set) var sigmasInterpol: [Float] = []
    public var initNoiseSigma: Float { SecondOrderSchedule.initNoiseSigma(sigmas, spacing: spacing) }
    public var order: Int { 2 }

    let schedule: NoiseSchedule
    let prediction: PredictionType
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let useKarras: Bool
    private var stepCount = 0
    private var stepIndex: Int?
    private var beginIndex: Int?
    /// The sample before the half step, between the two evaluations (diffusers' `self.sample`).
    private var pendingSample: Tensor?

    public init(config: SchedulerConfig) throws {
        let name = "KDPM2DiscreteScheduler"
        let settings = try SecondOrderSchedule.Settings(config, scheduler: name, allowsSample: false)
        self.config = config
        (schedule, prediction, spacing) = (settings.schedule, settings.prediction, settings.spacing)
        (stepsOffset, useKarras) = (settings.stepsOffset, settings.useKarras)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try SchedulerValidation.stepCount(count, schedule)
        let (steps, values) = SecondOrderSchedule.base(schedule: schedule, config: config, spacing: spacing, stepsOffset: stepsOffset,
                                                       count: count, useKarras: useKarras, roundKarras: true)
        let s = values.map { Float($0) } + [0]
        // sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp(): entry 0 pairs with the final 0 (NaN, never read).
        let interpol = s.indices.map { j in exp(SecondOrderSchedule.lerpHalf(log(s[j]), log(s[(j + s.count - 1) % s.count]))) }
        sigmas = SecondOrderSchedule.interleavedAll(s)
        sigmasInterpol = SecondOrderSchedule.interleavedAll(interpol)
        let logSigmas = SigmaSchedule.logSigmas(schedule.sigmas)
        let t = steps.map { Float($0) }
        var all = [t[0]]
        for j in 1..<max(count, 1) {
            all.append(SecondOrderSchedule.sigmaToTFloat32(interpol[j], logSigmas: logSigmas))
            all.append(t[j])
        }
        timesteps = all
        stepCount = count
        stepIndex = nil
        beginIndex = nil
        pendingSample = nil
    }

    public mutating func setBeginIndex(_ index: Int) { beginIndex = index }

    public func checkRunnable(from beginIndex: Int) throws {
        let name = "KDPM2DiscreteScheduler"
        guard beginIndex >= 0, beginIndex < timesteps.count, timesteps.count + 1 < sigmas.count else {
            throw SchedulerError.unrunnableSchedule(scheduler: name, steps: stepCount, beginIndex: beginIndex, reason: "no step to run")
        }
        for k in beginIndex..<timesteps.count {
            if k % 2 == 0 {
                try SecondOrderSchedule.check(divisors: [sigmas[k]], others: [sigmasInterpol[k + 1], sigmas[k + 1]],
                                              step: k, steps: stepCount, beginIndex: beginIndex, scheduler: name)
            } else {
                try SecondOrderSchedule.check(divisors: [sigmasInterpol[k]], others: [sigmas[k - 1], sigmas[k]],
                                              step: k, steps: stepCount, beginIndex: beginIndex, scheduler: name)
            }
        }
    }

    private func index(for timestep: Float) -> Int {
        let index = stepIndex ?? beginIndex ?? SigmaSchedule.index(of: timestep, in: timesteps) ?? 0
        return min(max(index, pendingSample == nil ? 0 : 1), max(sigmas.count - 2, 0))
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor {
        guard !sigmas.isEmpty else { return sample }
        let i = index(for: timestep)
        let sigma = pendingSample == nil ? sigmas[i] : sigmasInterpol[i]
        let scale = (sigma * sigma + 1).squareRoot()
        return sample.mapScalars { $0 / scale }
    }

    private func predictOriginal(_ modelOutput: Tensor, _ sample: Tensor, sigma: Float) -> Tensor {
        switch prediction {
        case .epsilon, .sample:  // .sample is rejected in init
            return Tensor.zipScalars(sample, modelOutput) { x, e in x - sigma * e }
        case .vPrediction:
            let c = -sigma / (sigma * sigma + 1).squareRoot(), d = sigma * sigma + 1
            return Tensor.zipScalars(modelOutput, sample) { v, x in v * c + x / d }
        }
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor {
        guard sigmas.count >= 2 else { return sample }
        let i = index(for: timestep)
        stepIndex = i + 1
        if let stored = pendingSample {
            // 2nd evaluation, at σ_interpol: the full step from σ with that slope.
            let sigmaHat = sigmas[i - 1] * (0 + 1), sigmaInterpol = sigmasInterpol[i], sigmaNext = sigmas[i]
            let x0 = predictOriginal(modelOutput, sample, sigma: sigmaInterpol)
            let derivative = Tensor.zipScalars(sample, x0) { x, p in (x - p) / sigmaInterpol }
            let dt = sigmaNext - sigmaHat
            pendingSample = nil
            return Tensor.zipScalars(stored, derivative) { x, d in x + d * dt }
        }
        // 1st evaluation, at σ: the half step to σ_interpol.
        let sigmaHat = sigmas[i] * (0 + 1), sigmaInterpol = sigmasInterpol[i + 1]
        let x0 = predictOriginal(modelOutput, sample, sigma: sigmaHat)
        let derivative = Tensor.zipScalars(sample, x0) { x, p in (x - p) / sigmaHat }
        let dt = sigmaInterpol - sigmaHat
        pendingSample = sample
        return Tensor.zipScalars(sample, derivative) { x, d in x + d * dt }
    }

    public func addNoise(original: Tensor, noise: Tensor, timestep: Float) -> Tensor {
        guard !sigmas.isEmpty else { return original }
        let i = beginIndex.map { stepIndex ?? $0 } ?? SigmaSchedule.index(of: timestep, in: timesteps) ?? 0
        let sigma = sigmas[min(max(i, 0), sigmas.count - 1)]
        return Tensor.zipScalars(original, noise) { x, n in x + n * sigma }
    }
}
