import DarkroomTensor
import Foundation

/// DPM-Solver++ multistep (Lu et al., 2022) — "DPM++ 2M" and "DPM++ 2M SDE", optionally with Karras sigmas.
///
/// This implementation matches: diffusers `schedulers/scheduling_dpmsolver_multistep.py` (0.42.1),
/// `DPMSolverMultistepScheduler` with `algorithm_type` "dpmsolver++" or "sde-dpmsolver++" and `solver_order`
/// 1 or 2 (recipes `dpmpp_2m`, `dpmpp_2m_karras` force dpmsolver++, `dpmpp_2m_sde`, `dpmpp_2m_sde_karras`
/// sde-dpmsolver++; all order 2 and the Karras flag).
///
/// SDE variant: every step (including the last) draws one standard-normal tensor (`noise()`), as diffusers'
/// `step` calls `randn_tensor(generator=…)` before the update; the pipeline feeds it from the job's torch
/// generator in loop order, so the same seed gives diffusers' noise. Update (first order):
/// x_t = (σ_t/σ_s·e^{−h})·x + α_t(1 − e^{−2h})·D0 + σ_t√(1 − e^{−2h})·z; second order (midpoint) adds
/// ½·α_t(1 − e^{−2h})·D1, (heun) α_t((1 − e^{−2h})/(−2h) + 1)·D1.
///
/// Class defaults used for missing config keys: beta_schedule "linear", beta_start 0.0001,
/// beta_end 0.02, solver_order 2, prediction_type "epsilon", algorithm_type "dpmsolver++",
/// solver_type "midpoint", lower_order_final true, euler_at_final false, use_karras_sigmas false,
/// final_sigmas_type "zero", lambda_min_clipped −∞, timestep_spacing **"linspace"**, steps_offset 0.
/// (`sigma_min`/`sigma_max` are not DPM-Solver keys, but diffusers' `from_config` keeps them in
/// `scheduler.config`, where the Karras conversion finds them; so does this.)
///
/// Schedule, as diffusers: integer timesteps (linspace over `num_inference_steps + 1` points, the last
/// dropped); sigmas by float64 `np.interp` at those integers, or Karras sigmas (float64) whose
/// timesteps are `_sigma_to_t` rounded half-to-even; sigmas cast to float32 with a final 0 (or σ_min).
/// `initNoiseSigma` is 1 and `scaleModelInput` is the identity (the solver works on x_t directly).
///
/// Step: the model output is converted to an x₀ prediction; the first step (and, with
/// `final_sigmas_type` "zero" or fewer than 15 steps with `lower_order_final`, the last) is first
/// order, the others second order with the previous x₀. All coefficients are float32 0-dim torch
/// arithmetic in diffusers (α_t = 1/√(σ²+1), σ_t = σ·α_t, λ = log α − log σ, h, r₀, e^{−h}); they
/// are computed in Float32 in the same order (glibc `logf`/`expf`, like torch's scalar path).
///
/// Limitations:
/// - `algorithm_type` other than "dpmsolver++", "sde-dpmsolver++" (and "deis", which diffusers maps to
///   dpmsolver++) throws; so do solver_order 3, thresholding, learned variance, and exponential/beta/lu-lambda/flow sigmas.
/// - Only the SDE variant calls `noise`.
/// - With a finite `lambda_min_clipped`, λ_t uses correctly rounded float32 logs where torch uses its
///   SIMD log; the clipping index can differ only when λ lands within an ulp of the threshold.
public struct DPMSolverMultistepScheduler: Scheduler {
    public let config: SchedulerConfig
    public private(set) var timesteps: [Float] = []
    /// σ per timestep plus the final σ (float32).
    public private(set) var sigmas: [Float]
    public var initNoiseSigma: Float { 1 }
    public var order: Int { 1 }

    let schedule: NoiseSchedule
    let prediction: PredictionType
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let solverOrder: Int
    let heun: Bool
    /// algorithm_type "sde-dpmsolver++".
    let sde: Bool
    let lowerOrderFinal: Bool
    let eulerAtFinal: Bool
    let finalSigmaIsZero: Bool
    let useKarras: Bool
    let lambdaMinClipped: Double
    let roundsKarrasTimesteps: Bool
    private(set) var stepIndex: Int?
    private(set) var beginIndex: Int?
    /// Converted model outputs (x₀ predictions), oldest first; at most `solverOrder`.
    private var modelOutputs: [Tensor] = []
    private var lowerOrderCount = 0

    public init(config: SchedulerConfig) throws {
        let name = "DPMSolverMultistepScheduler"
        try SchedulerValidation.reject(config.algorithmType, allowed: ["dpmsolver++", "deis", "sde-dpmsolver++"], "algorithm_type", name)
        try SchedulerValidation.reject(config.solverType, allowed: ["midpoint", "heun", "logrho", "bh1", "bh2"], "solver_type", name)
        try SchedulerValidation.reject(config.finalSigmasType, allowed: ["zero", "sigma_min"], "final_sigmas_type", name)
        try SchedulerValidation.reject(config.varianceType, allowed: [], "variance_type", name)
        for (flag, option) in [(config.thresholding, "thresholding"), (config.rescaleBetasZeroSnr, "rescale_betas_zero_snr"),
                               (config.useExponentialSigmas, "use_exponential_sigmas"), (config.useBetaSigmas, "use_beta_sigmas"),
                               (config.useLuLambdas, "use_lu_lambdas"), (config.useFlowSigmas, "use_flow_sigmas")] {
            try SchedulerValidation.reject(flag, option, name)
        }
        let order = config.solverOrder ?? 2
        guard order == 1 || order == 2 else { throw SchedulerError.unsupported(scheduler: name, option: "solver_order \(order)") }
        self.config = config
        schedule = try NoiseSchedule(config: config, scheduler: name)
        prediction = config.predictionType ?? .epsilon
        spacing = config.timestepSpacing ?? .linspace
        stepsOffset = config.stepsOffset ?? 0
        solverOrder = order
        heun = config.solverType == "heun"
        sde = config.algorithmType == "sde-dpmsolver++"
        lowerOrderFinal = config.lowerOrderFinal ?? true
        eulerAtFinal = config.eulerAtFinal ?? false
        finalSigmaIsZero = (config.finalSigmasType ?? "zero") == "zero"
        useKarras = config.useKarrasSigmas ?? false
        lambdaMinClipped = config.lambdaMinClipped ?? -.infinity
        roundsKarrasTimesteps = (config.betaSchedule ?? "linear") != "squaredcos_cap_v2"
        sigmas = schedule.sigmas
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try SchedulerValidation.stepCount(count, schedule)
        let train = schedule.numTrainTimesteps
        let table = schedule.sigmas
        // clipped_idx = searchsorted(flip(lambda_t), lambda_min_clipped)
        var clipped = 0
        if lambdaMinClipped > -.infinity {
            let lambdas = schedule.alphasCumprod.map { ac -> Float in
                Float(log(Double(ac.squareRoot()))) - Float(log(Double((1 - ac).squareRoot())))
            }
            clipped = lambdas.reversed().firstIndex { Double($0) >= lambdaMinClipped } ?? train
        }
        let lastTimestep = train - clipped
        var steps: [Double]
        switch spacing {
        case .linspace:
            steps = Array(NumPy.linspace(0, Double(lastTimestep - 1), count + 1).map(NumPy.round).reversed().dropLast())
        case .leading:
            let ratio = lastTimestep / (count + 1)
            steps = (1...count).reversed().map { Double($0 * ratio + stepsOffset) }
        case .trailing:
            steps = NumPy.arange(Double(lastTimestep), 0, -Double(train) / Double(count)).map { NumPy.round($0) - 1 }
        }
        var values: [Double]
        if useKarras {
            values = SigmaSchedule.karras(sigmaMin: config.sigmaMin ?? Double(table[0]),
                                          sigmaMax: config.sigmaMax ?? Double(table[table.count - 1]), count: count)
            let logSigmas = SigmaSchedule.logSigmas(table)
            steps = values.map { SigmaSchedule.sigmaToT($0, logSigmas: logSigmas) }
            steps = steps.map { roundsKarrasTimesteps ? NumPy.round($0) : $0.rounded(.towardZero) }
        } else {
            values = steps.map { NumPy.interp($0, table) }
        }
        let last: Float = finalSigmaIsZero ? 0 : ((1 - schedule.alphasCumprod[0]) / schedule.alphasCumprod[0]).squareRoot()
        sigmas = values.map { Float($0) } + [last]
        timesteps = steps.map { Float(NoiseSchedule.trainingIndex(Float($0))) }
        stepIndex = nil
        beginIndex = nil
        modelOutputs = []
        lowerOrderCount = 0
    }

    public mutating func setBeginIndex(_ index: Int) { beginIndex = index }

    public func checkRunnable(from beginIndex: Int) throws {
        try SchedulerValidation.runSigmas(sigmas, from: beginIndex, count: timesteps.count, strictlyDecreasing: true,
                                          scheduler: "DPMSolverMultistepScheduler")
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor { sample }

    /// diffusers' DPM `index_for_timestep`: second occurrence if repeated, the last index if absent.
    private func index(of timestep: Float) -> Int {
        SigmaSchedule.index(of: timestep, in: timesteps) ?? (timesteps.count - 1)
    }

    /// (α_t, σ_t) for the VP parameterisation of σ: α = 1/√(σ²+1), σ_t = σ·α (float32).
    private static func alphaSigma(_ sigma: Float) -> (alpha: Float, sigma: Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }

    private static func lambda(_ pair: (alpha: Float, sigma: Float)) -> Float { log(pair.alpha) - log(pair.sigma) }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor {
        let count = timesteps.count
        // Clamped so that a step past the end (a programming error) repeats the last one instead of trapping.
        let i = min(max(stepIndex ?? beginIndex ?? index(of: timestep), 0), max(sigmas.count - 2, 0))
        let lowerOrderFinalStep = i == count - 1 && (eulerAtFinal || (lowerOrderFinal && count < 15) || finalSigmaIsZero)
        let lowerOrderSecondStep = i == count - 2 && lowerOrderFinal && count < 15
        _ = lowerOrderSecondStep  // only matters for solver_order 3

        // convert_model_output: the x₀ prediction.
        let (alphaS0, sigmaS0) = Self.alphaSigma(sigmas[i])
        let x0: Tensor
        switch prediction {
        case .epsilon:
            x0 = Tensor.zipScalars(sample, modelOutput) { x, e in (x - sigmaS0 * e) / alphaS0 }
        case .sample:
            x0 = modelOutput
        case .vPrediction:
            x0 = Tensor.zipScalars(sample, modelOutput) { x, v in alphaS0 * x - sigmaS0 * v }
        }
        modelOutputs.append(x0)
        if modelOutputs.count > solverOrder { modelOutputs.removeFirst() }

        // The SDE variant draws its noise for every step, before the update (diffusers' order).
        let z = sde ? noise() : nil
        let result: Tensor
        let target = Self.alphaSigma(sigmas[i + 1]), current = (alpha: alphaS0, sigma: sigmaS0)
        let lambdaT = Self.lambda(target), lambdaS0 = Self.lambda(current)
        let h = lambdaT - lambdaS0
        let ratio = target.sigma / current.sigma
        let c0 = target.alpha * (exp(-h) - 1)
        let firstOrder = solverOrder == 1 || lowerOrderCount < 1 || lowerOrderFinalStep
        var d1: Tensor?
        if !firstOrder {
            let previous = Self.alphaSigma(sigmas[max(i - 1, 0)])
            let h0 = lambdaS0 - Self.lambda(previous)
            let r0 = h0 / h
            let inverseR0 = 1 / r0
            let m1 = modelOutputs[modelOutputs.count - 2]
            d1 = Tensor.zipScalars(x0, m1) { a, b in inverseR0 * (a - b) }
        }
        if let z {
            // sde-dpmsolver++: (σ_t/σ_s·e^{−h})·x + α_t(1 − e^{−2h})·D0 [+ c1·D1] + σ_t√(1 − e^{−2h})·z
            let cx = target.sigma / current.sigma * exp(-h)
            let cd = target.alpha * (1 - exp(-2.0 * h))
            let cz = target.sigma * (1.0 - exp(-2 * h)).squareRoot()
            if let d1 {
                let c1 = heun ? target.alpha * ((1.0 - exp(-2.0 * h)) / (-2.0 * h) + 1.0) : 0.5 * cd
                let partial = Tensor.zipScalars(sample, x0, d1) { x, d0, d1 in cx * x + cd * d0 + c1 * d1 }
                result = Tensor.zipScalars(partial, z) { p, n in p + cz * n }
            } else {
                let partial = Tensor.zipScalars(sample, x0) { x, d0 in cx * x + cd * d0 }
                result = Tensor.zipScalars(partial, z) { p, n in p + cz * n }
            }
        } else if let d1 {
            if heun {
                // x_t = (σ_t/σ_s0)·x − α_t(e^{−h} − 1)·D0 + α_t((e^{−h} − 1)/h + 1)·D1
                let c1 = target.alpha * ((exp(-h) - 1) / h + 1)
                result = Tensor.zipScalars(sample, x0, d1) { x, d0, d1 in ratio * x - c0 * d0 + c1 * d1 }
            } else {
                // midpoint: x_t = (σ_t/σ_s0)·x − α_t(e^{−h} − 1)·D0 − ½·α_t(e^{−h} − 1)·D1
                let c1 = 0.5 * c0
                result = Tensor.zipScalars(sample, x0, d1) { x, d0, d1 in ratio * x - c0 * d0 - c1 * d1 }
            }
        } else {
            // x_t = (σ_t/σ_s)·x − α_t(e^{−h} − 1)·x₀
            result = Tensor.zipScalars(sample, x0) { x, d in ratio * x - c0 * d }
        }
        if lowerOrderCount < solverOrder { lowerOrderCount += 1 }
        stepIndex = i + 1
        return result
    }

    public func addNoise(original: Tensor, noise: Tensor, timestep: Float) -> Tensor {
        let i = beginIndex.map { stepIndex ?? $0 } ?? index(of: timestep)
        let (alpha, sigma) = Self.alphaSigma(sigmas[min(max(i, 0), sigmas.count - 1)])
        return Tensor.zipScalars(original, noise) { x, n in alpha * x + sigma * n }
    }
}
