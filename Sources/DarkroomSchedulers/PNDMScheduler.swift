import DarkroomTensor
import Foundation

/// PNDM in its PLMS form (Liu et al., 2022): a 4th-order linear multistep method on ε, warmed up with
/// lower orders (Stable Diffusion's default scheduler).
///
/// This implementation matches: diffusers `schedulers/scheduling_pndm.py` (0.42.1), `PNDMScheduler`
/// with `skip_prk_steps=True` (`step_plms`).
///
/// Class defaults used for missing config keys: beta_schedule "linear", beta_start 0.0001,
/// beta_end 0.02, skip_prk_steps **false** (→ unsupported, see below), set_alpha_to_one false,
/// prediction_type "epsilon", timestep_spacing **"leading"**, steps_offset 0.
///
/// The schedule repeats one timestep: for N steps diffusers runs N + 1 model evaluations
/// (e.g. leading, 10 steps: 901, 801, 801, 701, …, 1). The second evaluation is the "improved
/// first step" (average of the first two ε, applied to the first sample); `step` follows diffusers'
/// internal counter, not the timestep values.
///
/// Limitations:
/// - Only `skip_prk_steps = true` (PLMS; what every Stable Diffusion config sets). PRK warm-up steps
///   throw `unsupported`, including when the key is missing (diffusers' default is false).
/// - `prediction_type` "sample" is rejected, as in diffusers.
/// - `setBeginIndex` is a no-op (diffusers' PNDM has none). For img2img diffusers slices
///   `timesteps[t_start:]` and the PLMS history starts fresh there; so does this.
public struct PNDMScheduler: Scheduler {
    public let config: SchedulerConfig
    public private(set) var timesteps: [Float] = []
    public var initNoiseSigma: Float { 1 }
    public var order: Int { 1 }

    let schedule: NoiseSchedule
    let prediction: PredictionType
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let finalAlphaCumprod: Float
    private var stepCount: Int?
    /// PLMS state: the last ε outputs (at most 4), the step counter, the sample saved by the first step.
    private var ets: [Tensor] = []
    private var counter = 0
    private var currentSample: Tensor?

    public init(config: SchedulerConfig) throws {
        let name = "PNDMScheduler"
        guard config.skipPrkSteps ?? false else {
            throw SchedulerError.unsupported(scheduler: name, option: "skip_prk_steps false (PRK warm-up); set skip_prk_steps true")
        }
        if config.predictionType == .sample {
            throw SchedulerError.unsupported(scheduler: name, option: "prediction_type \"sample\"")
        }
        self.config = config
        schedule = try NoiseSchedule(config: config, scheduler: name)
        prediction = config.predictionType ?? .epsilon
        spacing = config.timestepSpacing ?? .leading
        stepsOffset = config.stepsOffset ?? 0
        finalAlphaCumprod = (config.setAlphaToOne ?? false) ? 1 : schedule.alphasCumprod[0]
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try SchedulerValidation.stepCount(count, schedule)
        let train = schedule.numTrainTimesteps
        // diffusers' `_timesteps`, ascending.
        let ascending: [Int]
        switch spacing {
        case .linspace:
            ascending = NumPy.linspace(0, Double(train - 1), count).map { Int(NumPy.round($0)) }
        case .leading:
            let ratio = train / count
            ascending = (0..<count).map { $0 * ratio + stepsOffset }
        case .trailing:
            ascending = NumPy.arange(Double(train), 0, -Double(train) / Double(count)).reversed().map { Int(NumPy.round($0)) - 1 }
        }
        // plms: concat(_t[:-1], _t[-2:-1], _t[-1:]) reversed.
        var plms = Array(ascending.dropLast())
        if ascending.count >= 2 { plms.append(ascending[ascending.count - 2]) }
        plms.append(ascending[ascending.count - 1])
        timesteps = plms.reversed().map { Float($0) }
        stepCount = count
        ets = []
        counter = 0
        currentSample = nil
    }

    public mutating func setBeginIndex(_ index: Int) {}

    public func checkRunnable(from beginIndex: Int) throws {
        guard beginIndex >= 0, beginIndex < timesteps.count else {
            throw SchedulerError.unrunnableSchedule(scheduler: "PNDMScheduler", steps: stepCount ?? 0, beginIndex: beginIndex, reason: "no step to run")
        }
        try SchedulerValidation.trainingTimesteps(timesteps[beginIndex...], schedule, scheduler: "PNDMScheduler",
                                                  steps: stepCount ?? 0, beginIndex: beginIndex)
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor {
        // Before `setTimesteps` (a programming error) one step spans the whole schedule.
        let ratio = schedule.numTrainTimesteps / max(stepCount ?? 1, 1)
        var t = NoiseSchedule.trainingIndex(timestep)
        var previous = t - ratio
        if counter != 1 {
            ets = Array(ets.suffix(3))
            ets.append(modelOutput)
        } else {
            previous = t
            t = t + ratio
        }
        var sample = sample
        let output: Tensor
        if ets.count == 1 && counter == 0 {
            output = modelOutput
            currentSample = sample
        } else if ets.count == 1 && counter == 1 {
            output = Tensor.zipScalars(modelOutput, ets[0]) { m, e in (m + e) / 2 }
            sample = currentSample ?? sample
            currentSample = nil
        } else if ets.count == 2 {
            output = Tensor.zipScalars(ets[1], ets[0]) { e1, e2 in (3 * e1 - e2) / 2 }
        } else if ets.count == 3 {
            output = Tensor.zipScalars(ets[2], ets[1], ets[0]) { e1, e2, e3 in (23 * e1 - 16 * e2 + 5 * e3) / 12 }
        } else {
            let (e1, e2, e3, e4) = (ets[3], ets[2], ets[1], ets[0])
            let weighted = Tensor.zipScalars(e1, e2, e3) { a, b, c in 55 * a - 59 * b + 37 * c }
            let oneOver24 = Float(1.0 / 24.0)
            output = Tensor.zipScalars(weighted, e4) { w, d in oneOver24 * (w - 9 * d) }
        }
        let result = previousSample(sample, t, previous, output)
        counter += 1
        return result
    }

    /// Formula (9) of the PNDM paper (diffusers' `_get_prev_sample`).
    private func previousSample(_ sample: Tensor, _ t: Int, _ previous: Int, _ modelOutput: Tensor) -> Tensor {
        let alphaProd = schedule.alphaCumprod(at: t)
        let alphaProdPrev = previous >= 0 ? schedule.alphaCumprod(at: previous) : finalAlphaCumprod
        let betaProd = 1 - alphaProd, betaProdPrev = 1 - alphaProdPrev
        var epsilon = modelOutput
        if prediction == .vPrediction {
            let a = alphaProd.squareRoot(), b = betaProd.squareRoot()
            epsilon = Tensor.zipScalars(modelOutput, sample) { v, x in a * v + b * x }
        }
        let sampleCoefficient = (alphaProdPrev / alphaProd).squareRoot()
        let denominator = alphaProd * betaProdPrev.squareRoot() + (alphaProd * betaProd * alphaProdPrev).squareRoot()
        let difference = alphaProdPrev - alphaProd
        return Tensor.zipScalars(sample, epsilon) { x, e in sampleCoefficient * x - difference * e / denominator }
    }

    public func addNoise(original: Tensor, noise: Tensor, timestep: Float) -> Tensor {
        let alphaProd = schedule.alphaCumprod(at: NoiseSchedule.trainingIndex(timestep))
        let a = alphaProd.squareRoot(), b = (1 - alphaProd).squareRoot()
        return Tensor.zipScalars(original, noise) { x, n in a * x + b * n }
    }
}
