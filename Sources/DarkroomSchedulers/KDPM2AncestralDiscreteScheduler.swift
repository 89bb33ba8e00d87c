import DarkroomTensor
import Foundation

/// Ancestral DPM-Solver-2 (k-diffusion's `sample_dpm_2_ancestral`): the DPM2 step goes down to σ_down and
/// fresh noise of standard deviation σ_up is added after each completed step ("DPM2 a" / "DPM2 a Karras").
///
/// This implementation matches: diffusers `schedulers/scheduling_k_dpm_2_ancestral_discrete.py` (0.42.1),
/// `KDPM2AncestralDiscreteScheduler` (`order = 2`), optionally `use_karras_sigmas=True` (recipes `dpm2_a`,
/// `dpm2_a_karras`).
///
/// Class defaults: as `KDPM2DiscreteScheduler`.
///
/// Schedule, as diffusers (float32 torch): σ_next = σ rolled by one with a final 0; σ_up =
/// (σ_next²(σ² − σ_next²)/σ²)^½; σ_down = (σ_next² − σ_up²)^½ (last 0); σ_interpol =
/// exp(lerp(log σ, log σ_down, ½)) with its last two set to 0; all interleaved as KDPM2's; the timesteps
/// alternate t_j with `_sigma_to_t`(σ_interpol_j).
///
/// Noise: `step` calls `noise()` once at every second (completing) evaluation, after the update, as
/// diffusers' `randn_tensor(generator=…)`; the last evaluation (an Euler step to 0) draws none.
///
/// Limitations:
/// - `prediction_type` "sample" throws (diffusers raises NotImplementedError); exponential/beta sigmas throw.
public struct KDPM2AncestralDiscreteScheduler: Scheduler {
    public let config: SchedulerConfig
    public private(set) var timesteps: [Float] = []
    public private(set) var sigmas: [Float] = []
    public private(set) var sigmasInterpol: [Float] = []
    public private(set) var sigmasUp: [Float] = []
    public private(set) var sigmasDown: [Float] = []
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
    private var pendingSample: Tensor?

    public init(config: SchedulerConfig) throws {
        let name = "KDPM2AncestralDiscreteScheduler"
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
        let next = Array(s.dropFirst()) + [0]
        let up = zip(s, next).map { s, n in ((n * n) * (s * s - n * n) / (s * s)).squareRoot() }
        var down = zip(next, up).map { n, u in (n * n - u * u).squareRoot() }
        down[down.count - 1] = 0
        var interpol = zip(s, down).map { s, d in exp(SecondOrderSchedule.lerpHalf(log(s), log(d))) }
        for j in max(interpol.count - 2, 0)..<interpol.count { interpol[j] = 0 }
        sigmas = SecondOrderSchedule.interleavedAll(s)
        sigmasInterpol = SecondOrderSchedule.interleavedAll(interpol)
        sigmasUp = SecondOrderSchedule.interleavedAll(up)
        sigmasDown = SecondOrderSchedule.interleavedAll(down)
        let logSigmas = SigmaSchedule.logSigmas(schedule.sigmas)
        let t = steps.map { Float($0) }
        var all = [t[0]]
        for j in 1..<max(count, 1) {
            all.append(SecondOrderSchedule.sigmaToTFloat32(interpol[j - 1], logSigmas: logSigmas))
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
        let name = "KDPM2AncestralDiscreteScheduler"
        guard beginIndex >= 0, beginIndex < timesteps.count, timesteps.count + 1 < sigmas.count else {
            throw SchedulerError.unrunnableSchedule(scheduler: name, steps: stepCount, beginIndex: beginIndex, reason: "no step to run")
        }
        for k in beginIndex..<timesteps.count {
            if k % 2 == 0 {
                try SecondOrderSchedule.check(divisors: [sigmas[k]], others: [sigmasInterpol[k]],
                                              step: k, steps: stepCount, beginIndex: beginIndex, scheduler: name)
            } else {
                try SecondOrderSchedule.check(divisors: [sigmasInterpol[k - 1]], others: [sigmas[k - 1], sigmasUp[k - 1], sigmasDown[k - 1]],
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
        let sigma = pendingSample == nil ? sigmas[i] : sigmasInterpol[i - 1]
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
            // 2nd evaluation, at σ_interpol: down to σ_down with that slope, then noise of σ_up.
            let sigmaHat = sigmas[i - 1] * (0 + 1), sigmaInterpol = sigmasInterpol[i - 1]
            let sigmaUp = sigmasUp[i - 1], sigmaDown = sigmasDown[i - 1]
            let x0 = predictOriginal(modelOutput, sample, sigma: sigmaInterpol)
            let derivative = Tensor.zipScalars(sample, x0) { x, p in (x - p) / sigmaInterpol }
            let dt = sigmaDown - sigmaHat
            pendingSample = nil
            let previous = Tensor.zipScalars(stored, derivative) { x, d in x + d * dt }
            let z = noise()
            return Tensor.zipScalars(previous, z) { x, n in x + n * sigmaUp }
        }
        // 1st evaluation, at σ: the half step to σ_interpol.
        let sigmaHat = sigmas[i] * (0 + 1), sigmaInterpol = sigmasInterpol[i]
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
