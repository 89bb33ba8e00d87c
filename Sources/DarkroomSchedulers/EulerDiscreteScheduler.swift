import DarkroomTensor
import Foundation

/// Euler's method on the probability-flow ODE in σ (Karras et al., 2022, Algorithm 2 without churn).
///
/// This implementation matches: diffusers `schedulers/scheduling_euler_discrete.py` (0.42.1),
/// `EulerDiscreteScheduler` with `s_churn = 0` (the pipeline default), optionally
/// `use_karras_sigmas=True` (recipe `euler_karras`).
///
/// Class defaults used for missing config keys: beta_schedule "linear", beta_start 0.0001,
/// beta_end 0.02, prediction_type "epsilon", interpolation_type "linear", use_karras_sigmas false,
/// sigma_min/sigma_max none, timestep_spacing **"linspace"**, timestep_type "discrete",
/// steps_offset 0, final_sigmas_type "zero".
///
/// Arithmetic, as diffusers: the sigma table is float32 torch; `np.interp` at the (float32) timesteps
/// and the Karras ramp are float64; sigmas are then cast to float32 (with a final 0), and timesteps to
/// float32 — fractional for "linspace" and for Karras (`_sigma_to_t`). Step arithmetic is float32.
/// `initNoiseSigma` is max σ for linspace/trailing and √(max σ² + 1) for leading.
///
/// Step index: as diffusers, the first `scaleModelInput`/`step` call takes the begin index if one was
/// set, else the index of the timestep in `timesteps` (second occurrence when repeated); each `step`
/// advances it. `scaleModelInput` here is non-mutating and computes the same index.
///
/// Limitations:
/// - No stochastic churn (`s_churn`, `s_tmin`, `s_tmax`, `s_noise` are pipeline-only and default off).
/// - `use_exponential_sigmas`, `use_beta_sigmas`, `interpolation_type` "log_linear", `timestep_type`
///   "continuous" and `rescale_betas_zero_snr` throw `unsupported`.
/// - Karras timesteps use the correctly rounded float32 log of the sigma table; NumPy's SIMD float32
///   `log` differs from it by a few ulp for some entries, which moves fractional Karras timesteps by
///   up to ~1e-4 (relative ~1e-6); sigmas are unaffected.
/// - `timestep` must be one of `timesteps` when no begin index is set (diffusers raises otherwise;
///   this traps).
public struct EulerDiscreteScheduler: Scheduler {
    public let config: SchedulerConfig
    public var timesteps: [Float] { state.timesteps }
    /// σ for each entry of `timesteps`, plus the final σ (0 or σ_min): float32, as diffusers' `sigmas`.
    public var sigmas: [Float] { state.sigmas }
    public var initNoiseSigma: Float { state.initNoiseSigma }
    public var order: Int { 1 }

    let schedule: NoiseSchedule
    let prediction: PredictionType
    var spacing: TimestepSpacing { state.spacing }
    let stepsOffset: Int
    let useKarras: Bool
    let finalSigmaIsMin: Bool
    private(set) var state: SigmaSteps

    public init(config: SchedulerConfig) throws {
        let name = "EulerDiscreteScheduler"
        try SchedulerValidation.reject(config.useExponentialSigmas, "use_exponential_sigmas", name)
        try SchedulerValidation.reject(config.rescaleBetasZeroSnr, "rescale_betas_zero_snr", name)
        try SchedulerValidation.reject(config.useBetaSigmas, "use_beta_sigmas", name)
        try SchedulerValidation.reject(config.interpolationType, allowed: ["linear"], "interpolation_type", name)
        try SchedulerValidation.reject(config.timestepType, allowed: ["discrete"], "timestep_type", name)
        try SchedulerValidation.reject(config.finalSigmasType, allowed: ["zero", "sigma_min"], "final_sigmas_type", name)
        self.config = config
        schedule = try NoiseSchedule(config: config, scheduler: name)
        prediction = config.predictionType ?? .epsilon
        stepsOffset = config.stepsOffset ?? 0
        useKarras = config.useKarrasSigmas ?? false
        finalSigmaIsMin = config.finalSigmasType == "sigma_min"
        state = SigmaSteps(spacing: config.timestepSpacing ?? .linspace, trainingSigmas: schedule.sigmas)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try SchedulerValidation.stepCount(count, schedule)
        var steps = SigmaSchedule.discreteTimesteps(spacing: spacing, count: count,
                                                train: schedule.numTrainTimesteps, stepsOffset: stepsOffset)
        let table = schedule.sigmas
        var values = steps.map { NumPy.interp(Double($0), table) }
        if useKarras {
            values = SigmaSchedule.karras(sigmaMin: config.sigmaMin ?? values[values.count - 1],
                                          sigmaMax: config.sigmaMax ?? values[0], count: count)
            let logSigmas = SigmaSchedule.logSigmas(table)
            steps = values.map { Float(SigmaSchedule.sigmaToT($0, logSigmas: logSigmas)) }
        }
        let last: Float = finalSigmaIsMin ? ((1 - schedule.alphasCumprod[0]) / schedule.alphasCumprod[0]).squareRoot() : 0
        state.reset(timesteps: steps, sigmas: values.map { Float($0) } + [last])
    }

    public mutating func setBeginIndex(_ index: Int) { state.setBeginIndex(index) }

    public func checkRunnable(from beginIndex: Int) throws {
        try state.checkRunnable(from: beginIndex, strictlyDecreasing: false, scheduler: "EulerDiscreteScheduler")
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor {
        state.scaleModelInput(sample, timestep: timestep)
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor {
        let index = state.index(for: timestep)
        let sigma = sigmas[index]
        let sigmaHat = sigma * (0 + 1)  // γ = 0 (no churn)
        let predOriginal: Tensor
        switch prediction {
        case .sample:
            predOriginal = modelOutput
        case .epsilon:
            predOriginal = Tensor.zipScalars(sample, modelOutput) { x, e in x - sigmaHat * e }
        case .vPrediction:
            let c = -sigma / (sigma * sigma + 1).squareRoot(), d = sigma * sigma + 1
            predOriginal = Tensor.zipScalars(modelOutput, sample) { v, x in v * c + x / d }
        }
        let dt = sigmas[index + 1] - sigmaHat
        state.advance(past: index)
        return Tensor.zipScalars(sample, predOriginal) { x, x0 in
            let derivative = (x - x0) / sigmaHat
            return x + derivative * dt
        }
    }

    public func addNoise(original: Tensor, noise: Tensor, timestep: Float) -> Tensor {
        state.addNoise(original, noise: noise, timestep: timestep)
    }
}
