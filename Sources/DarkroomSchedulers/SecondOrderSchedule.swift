import DarkroomTensor
import Foundation

/// What diffusers' order-2 discrete schedulers (Heun, KDPM2, KDPM2 ancestral) share: the σ schedule of
/// `set_timesteps` before it is interleaved, the float32 `_sigma_to_t` their interpolated timesteps go
/// through, and the `repeat_interleave` layouts.
enum SecondOrderSchedule {
    /// The config values all three read, validated as diffusers' classes do (exponential and beta sigmas are
    /// not supported; KDPM2's classes also refuse `prediction_type` "sample").
    struct Settings {
        let schedule: NoiseSchedule
        let prediction: PredictionType
        let spacing: TimestepSpacing
        let stepsOffset: Int
        let useKarras: Bool

        init(_ config: SchedulerConfig, scheduler name: String, allowsSample: Bool) throws {
            if !allowsSample, config.predictionType == .sample {
                throw SchedulerError.unsupported(scheduler: name, option: "prediction_type \"sample\"")
            }
            try SchedulerValidation.reject(config.useExponentialSigmas, "use_exponential_sigmas", name)
            try SchedulerValidation.reject(config.useBetaSigmas, "use_beta_sigmas", name)
            schedule = try NoiseSchedule(config: SecondOrderSchedule.withClassDefaults(config), scheduler: name)
            prediction = config.predictionType ?? .epsilon
            spacing = config.timestepSpacing ?? .linspace
            stepsOffset = config.stepsOffset ?? 0
            useKarras = config.useKarrasSigmas ?? false
        }
    }

    /// `init_noise_sigma`: the largest σ, or √(σ²+1) with "leading" spacing.
    static func initNoiseSigma(_ sigmas: [Float], spacing: TimestepSpacing) -> Float {
        let maxSigma = sigmas.max() ?? 0
        return spacing == .leading ? (maxSigma * maxSigma + 1).squareRoot() : maxSigma
    }

    /// Class defaults the three classes share where `NoiseSchedule`'s differ: beta_start 0.00085, beta_end 0.012
    /// (with beta_schedule "linear").
    static func withClassDefaults(_ config: SchedulerConfig) -> SchedulerConfig {
        var filled = config
        filled.betaStart = filled.betaStart ?? 0.00085
        filled.betaEnd = filled.betaEnd ?? 0.012
        return filled
    }

    /// `set_timesteps` up to the concatenation of the final 0: timesteps (float32 linspace/leading/trailing, or
    /// `_sigma_to_t` of the Karras sigmas, rounded when `roundKarras`, float64) and σ (float64 `np.interp`, or
    /// the Karras ramp between the config's `sigma_min`/`sigma_max` or the interpolated ends).
    static func base(schedule: NoiseSchedule, config: SchedulerConfig, spacing: TimestepSpacing, stepsOffset: Int,
                     count: Int, useKarras: Bool, roundKarras: Bool) -> (timesteps: [Double], sigmas: [Double]) {
        let table = schedule.sigmas
        let steps = SigmaSchedule.discreteTimesteps(spacing: spacing, count: count, train: schedule.numTrainTimesteps,
                                                    stepsOffset: stepsOffset).map(Double.init)
        var values = steps.map { NumPy.interp($0, table) }
        guard useKarras else { return (steps, values) }
        values = SigmaSchedule.karras(sigmaMin: config.sigmaMin ?? values[values.count - 1],
                                      sigmaMax: config.sigmaMax ?? values[0], count: count)
        let logSigmas = SigmaSchedule.logSigmas(table)
        let karrasSteps = values.map { SigmaSchedule.sigmaToT($0, logSigmas: logSigmas) }
        return (roundKarras ? karrasSteps.map(NumPy.round) : karrasSteps, values)
    }

    /// diffusers' `_sigma_to_t` called with a float32 σ and the float32 log-sigma table (as KDPM2 does for its
    /// interpolated sigmas): every operation in float32 (w, 1 − w and the blend of the two indices).
    static func sigmaToTFloat32(_ sigma: Float, logSigmas: [Float]) -> Float {
        let logSigma = log(max(sigma, 1e-10))
        guard logSigma.isFinite, logSigmas.count >= 2 else { return .nan }
        var cumulative = 0, best = 0, bestIndex = 0
        for (i, value) in logSigmas.enumerated() {
            if logSigma - value >= 0 { cumulative += 1 }
            if cumulative > best { best = cumulative; bestIndex = i }
        }
        let lowIndex = min(bestIndex, logSigmas.count - 2), highIndex = lowIndex + 1
        let low = logSigmas[lowIndex], high = logSigmas[highIndex]
        let w = min(max((low - logSigma) / (low - high), 0), 1)
        return (1 - w) * Float(lowIndex) + w * Float(highIndex)
    }

    /// `torch.lerp(a, b, 0.5)` on CPU: b − (b − a)·0.5 (the weight is not below 0.5).
    static func lerpHalf(_ a: Float, _ b: Float) -> Float { b - (b - a) * 0.5 }

    /// `cat([x[:1], x[1:].repeat_interleave(2), x[-1:]])` (KDPM2's layout; 2·n entries for n inputs).
    static func interleavedAll(_ x: [Float]) -> [Float] {
        guard let first = x.first, let last = x.last else { return [] }
        return [first] + x.dropFirst().flatMap { [$0, $0] } + [last]
    }

    /// One value per model evaluation of an order-2 scheduler that runs from `beginIndex`, checked: every σ the loop
    /// divides by is finite and > 0 and every other σ it reads finite and ≥ 0.
    static func check(divisors: [Float], others: [Float], step: Int, steps: Int, beginIndex: Int, scheduler: String) throws {
        for value in divisors where !(value.isFinite && value > 0) {
            throw SchedulerError.unrunnableSchedule(scheduler: scheduler, steps: steps, beginIndex: beginIndex,
                                                    reason: "model evaluation \(step) divides by σ = \(value); the noise schedule is degenerate")
        }
        for value in others where !(value.isFinite && value >= 0) {
            throw SchedulerError.unrunnableSchedule(scheduler: scheduler, steps: steps, beginIndex: beginIndex,
                                                    reason: "model evaluation \(step) reads σ = \(value); the noise schedule is degenerate")
        }
    }
}
