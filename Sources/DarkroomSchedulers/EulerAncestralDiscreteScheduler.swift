import DarkroomTensor
import Foundation

/// Ancestral sampling with Euler steps ("Euler a"): each step goes down to σ_down deterministically and
/// adds fresh noise of standard deviation σ_up.
///
/// This implementation matches: diffusers `schedulers/scheduling_euler_ancestral_discrete.py`
/// (0.42.1), `EulerAncestralDiscreteScheduler`.
///
/// Class defaults used for missing config keys: beta_schedule "linear", beta_start 0.0001,
/// beta_end 0.02, prediction_type "epsilon", timestep_spacing **"linspace"**, steps_offset 0.
///
/// Arithmetic as `EulerDiscreteScheduler` (float64 `np.interp`, float32 sigmas/timesteps and steps).
/// σ_up = (σ_to² (σ_from² − σ_to²) / σ_from²)^½ and σ_down = (σ_to² − σ_up²)^½ in float32.
///
/// Noise: `step` calls `noise()` exactly once per step — including the last, where σ_up = 0 — as
/// diffusers draws `randn_tensor` every step. Feed it from the pipeline's generator in loop order.
///
/// Limitations:
/// - `prediction_type` "sample" is rejected (diffusers raises NotImplementedError).
/// - `rescale_betas_zero_snr` throws `unsupported`.
/// - No Karras sigmas (diffusers' class has none either).
public struct EulerAncestralDiscreteScheduler: Scheduler {
    public let config: SchedulerConfig
    public var timesteps: [Float] { state.timesteps }
    /// σ per timestep plus a final 0 (float32).
    public var sigmas: [Float] { state.sigmas }
    public var initNoiseSigma: Float { state.initNoiseSigma }
    public var order: Int { 1 }

    let schedule: NoiseSchedule
    let prediction: PredictionType
    var spacing: TimestepSpacing { state.spacing }
    let stepsOffset: Int
    private(set) var state: SigmaSteps

    public init(config: SchedulerConfig) throws {
        let name = "EulerAncestralDiscreteScheduler"
        if config.predictionType == .sample {
            throw SchedulerError.unsupported(scheduler: name, option: "prediction_type \"sample\"")
        }
        try SchedulerValidation.reject(config.rescaleBetasZeroSnr, "rescale_betas_zero_snr", name)
        self.config = config
        schedule = try NoiseSchedule(config: config, scheduler: name)
        prediction = config.predictionType ?? .epsilon
        stepsOffset = config.stepsOffset ?? 0
        state = SigmaSteps(spacing: config.timestepSpacing ?? .linspace, trainingSigmas: schedule.sigmas)
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try SchedulerValidation.stepCount(count, schedule)
        let steps = SigmaSchedule.discreteTimesteps(spacing: spacing, count: count,
                                                train: schedule.numTrainTimesteps, stepsOffset: stepsOffset)
        let table = schedule.sigmas
        state.reset(timesteps: steps, sigmas: steps.map { Float(NumPy.interp(Double($0), table)) } + [0])
    }

    public mutating func setBeginIndex(_ index: Int) { state.setBeginIndex(index) }

    public func checkRunnable(from beginIndex: Int) throws {
        try state.checkRunnable(from: beginIndex, strictlyDecreasing: false, scheduler: "EulerAncestralDiscreteScheduler")
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor {
        state.scaleModelInput(sample, timestep: timestep)
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor {
        let index = state.index(for: timestep)
        let sigma = sigmas[index]
        let predOriginal: Tensor
        switch prediction {
        case .epsilon, .sample:  // .sample is rejected in init
            predOriginal = Tensor.zipScalars(sample, modelOutput) { x, e in x - sigma * e }
        case .vPrediction:
            let c = -sigma / (sigma * sigma + 1).squareRoot(), d = sigma * sigma + 1
            predOriginal = Tensor.zipScalars(modelOutput, sample) { v, x in v * c + x / d }
        }
        let sigmaFrom = sigma, sigmaTo = sigmas[index + 1]
        let sigmaUp = (sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo) / (sigmaFrom * sigmaFrom)).squareRoot()
        let sigmaDown = (sigmaTo * sigmaTo - sigmaUp * sigmaUp).squareRoot()
        let dt = sigmaDown - sigma
        let deterministic = Tensor.zipScalars(sample, predOriginal) { x, x0 in
            let derivative = (x - x0) / sigma
            return x + derivative * dt
        }
        let z = noise()
        state.advance(past: index)
        return Tensor.zipScalars(deterministic, z) { x, n in x + n * sigmaUp }
    }

    public func addNoise(original: Tensor, noise: Tensor, timestep: Float) -> Tensor {
        state.addNoise(original, noise: noise, timestep: timestep)
    }
}
