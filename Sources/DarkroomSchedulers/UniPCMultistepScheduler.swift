import DarkroomTensor
import Foundation

/// UniPC (Zhao et al., 2023): a multistep predictor (UniP) with a corrector (UniC) that reuses the next
/// model evaluation, so it costs one evaluation per step — "UniPC" in A1111.
///
/// This implementation matches: diffusers `schedulers/scheduling_unipc_multistep.py` (0.42.1),
/// `UniPCMultistepScheduler` with its defaults: `predict_x0=True`, `solver_type="bh2"` (or "bh1"),
/// `solver_order` 1 or 2, `lower_order_final=True`, no `disable_corrector`, no `solver_p`.
///
/// Class defaults used for missing config keys: beta_schedule "linear", beta_start 0.0001,
/// beta_end 0.02, solver_order 2, prediction_type "epsilon", predict_x0 true, solver_type "bh2"
/// ("midpoint", "heun", "logrho" become bh2, as diffusers), lower_order_final true,
/// final_sigmas_type "zero", timestep_spacing **"linspace"**, steps_offset 0.
///
/// Schedule, as `DPMSolverMultistepScheduler` without `lambda_min_clipped`: integer timesteps, σ by float64
/// `np.interp`, cast to float32 with a final 0 (or σ_min). `initNoiseSigma` is 1, `scaleModelInput` the
/// identity, `addNoise` α_t·x + σ_t·ε with α_t = 1/√(σ²+1), σ_t = σ·α_t at the begin/step index.
///
/// Step, as diffusers' `step`: the model output becomes an x₀ prediction m; from the second step on (when a
/// previous sample exists) the corrector UniC refines the sample with m (order of the previous predictor); the
/// predictor UniP then extrapolates to the next σ at order min(solver_order, steps left, steps so far + 1).
/// Coefficients are float32 0-dim torch arithmetic in diffusers (λ = log α − log σ, h, r_k, e^{−h} − 1 via
/// `expm1`, the B(h) and φ_k recursion); they are computed in Float32 in that order (glibc `logf`/`expm1f`).
/// The order-2 corrector solves diffusers' 2×2 system R·ρ = b (`torch.linalg.solve`) by LU with partial
/// pivoting in float32, as LAPACK's `sgesv` does.
///
/// Limitations:
/// - `predict_x0` false, solver_order 3, thresholding, `disable_corrector`, `solver_p`, Karras/exponential/
///   beta/flow sigmas and `rescale_betas_zero_snr` throw `unsupported` (the recipe `unipc` uses none of them).
/// - The 2×2 solve may differ from the LAPACK build torch links in the last bit of ρ (≤ 1e-7 relative).
public struct UniPCMultistepScheduler: Scheduler {
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
    let bh1: Bool
    let lowerOrderFinal: Bool
    let finalSigmaIsZero: Bool
    private var stepIndex: Int?
    private var beginIndex: Int?
    /// Converted model outputs (x₀ predictions), oldest first; at most `solverOrder`.
    private var modelOutputs: [Tensor] = []
    private var lowerOrderCount = 0
    private var lastSample: Tensor?
    private var thisOrder = 1

    public init(config: SchedulerConfig) throws {
        let name = "UniPCMultistepScheduler"
        try SchedulerValidation.reject(config.solverType, allowed: ["bh1", "bh2", "midpoint", "heun", "logrho"], "solver_type", name)
        try SchedulerValidation.reject(config.finalSigmasType, allowed: ["zero", "sigma_min"], "final_sigmas_type", name)
        if config.predictX0 == false { throw SchedulerError.unsupported(scheduler: name, option: "predict_x0 false") }
        for (flag, option) in [(config.thresholding, "thresholding"), (config.rescaleBetasZeroSnr, "rescale_betas_zero_snr"),
                               (config.useKarrasSigmas, "use_karras_sigmas"), (config.useExponentialSigmas, "use_exponential_sigmas"),
                               (config.useBetaSigmas, "use_beta_sigmas"), (config.useFlowSigmas, "use_flow_sigmas"),
                               (config.useDynamicShifting, "use_dynamic_shifting")] {
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
        bh1 = config.solverType == "bh1"
        lowerOrderFinal = config.lowerOrderFinal ?? true
        finalSigmaIsZero = (config.finalSigmasType ?? "zero") == "zero"
        sigmas = schedule.sigmas
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try SchedulerValidation.stepCount(count, schedule)
        let train = schedule.numTrainTimesteps
        let steps: [Double]
        switch spacing {
        case .linspace:
            steps = Array(NumPy.linspace(0, Double(train - 1), count + 1).map(NumPy.round).reversed().dropLast())
        case .leading:
            let ratio = train / (count + 1)
            steps = (1...count).reversed().map { Double($0 * ratio + stepsOffset) }
        case .trailing:
            steps = NumPy.arange(Double(train), 0, -Double(train) / Double(count)).map { NumPy.round($0) - 1 }
        }
        let table = schedule.sigmas
        let last: Float = finalSigmaIsZero ? 0 : ((1 - schedule.alphasCumprod[0]) / schedule.alphasCumprod[0]).squareRoot()
        sigmas = steps.map { Float(NumPy.interp($0, table)) } + [last]
        timesteps = steps.map { Float(NoiseSchedule.trainingIndex(Float($0))) }
        stepIndex = nil
        beginIndex = nil
        modelOutputs = []
        lowerOrderCount = 0
        lastSample = nil
        thisOrder = 1
    }

    public mutating func setBeginIndex(_ index: Int) { beginIndex = index }

    public func checkRunnable(from beginIndex: Int) throws {
        try SchedulerValidation.runSigmas(sigmas, from: beginIndex, count: timesteps.count, strictlyDecreasing: true,
                                          scheduler: "UniPCMultistepScheduler")
    }

    public func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor { sample }

    /// diffusers' UniPC `index_for_timestep`: second occurrence if repeated, the last index if absent.
    private func index(of timestep: Float) -> Int {
        SigmaSchedule.index(of: timestep, in: timesteps) ?? (timesteps.count - 1)
    }

    private static func alphaSigma(_ sigma: Float) -> (alpha: Float, sigma: Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }

    private static func lambda(_ sigma: Float) -> Float {
        let (alpha, sigmaT) = alphaSigma(sigma)
        return log(alpha) - log(sigmaT)
    }

    /// diffusers' b vector: h·φ_k(h)·k!/B(h) for k = 1…order (float32, its recursion order).
    private func bVector(hh: Float, order: Int) -> (hPhi1: Float, bh: Float, b: [Float]) {
        let hPhi1 = expm1(hh)
        var hPhiK = hPhi1 / hh - 1
        var factorial: Float = 1
        let bh = bh1 ? hh : expm1(hh)
        var b: [Float] = []
        for i in 1...order {
            b.append(hPhiK * factorial / bh)
            factorial *= Float(i + 1)
            hPhiK = hPhiK / hh - 1 / factorial
        }
        return (hPhi1, bh, b)
    }

    /// UniP: the predictor from σ[i] to σ[i+1] with the last `order` x₀ predictions.
    private func predict(sample x: Tensor, index i: Int, order: Int) -> Tensor {
        let m0 = modelOutputs[modelOutputs.count - 1]
        let (alphaT, sigmaT) = Self.alphaSigma(sigmas[i + 1])
        let (_, sigmaS0) = Self.alphaSigma(sigmas[i])
        let lambdaT = Self.lambda(sigmas[i + 1]), lambdaS0 = Self.lambda(sigmas[i])
        let h = lambdaT - lambdaS0
        let (hPhi1, bh, _) = bVector(hh: -h, order: order)
        let ratio = sigmaT / sigmaS0, c0 = alphaT * hPhi1, cb = alphaT * bh
        let base = Tensor.zipScalars(x, m0) { x, m in ratio * x - c0 * m }
        guard order == 2, modelOutputs.count >= 2, i >= 1 else { return base }
        // rk = (λ_{s1} − λ_{s0})/h, D1 = (m1 − m0)/rk; ρ_p = 0.5 for order 2.
        let rk = (Self.lambda(sigmas[i - 1]) - lambdaS0) / h
        let m1 = modelOutputs[modelOutputs.count - 2]
        let d1 = Tensor.zipScalars(m1, m0) { a, b in (a - b) / rk }
        let rho: Float = 0.5
        return Tensor.zipScalars(base, d1) { x, d in x - cb * (rho * d) }
    }

    /// UniC: corrects the sample at σ[i] (reached from σ[i−1]) with this step's x₀ prediction `mt`.
    private func correct(modelOutput mt: Tensor, lastSample x: Tensor, index i: Int, order: Int) -> Tensor {
        let m0 = modelOutputs[modelOutputs.count - 1]
        let (alphaT, sigmaT) = Self.alphaSigma(sigmas[i])
        let (_, sigmaS0) = Self.alphaSigma(sigmas[i - 1])
        let lambdaT = Self.lambda(sigmas[i]), lambdaS0 = Self.lambda(sigmas[i - 1])
        let h = lambdaT - lambdaS0
        let (hPhi1, bh, b) = bVector(hh: -h, order: order)
        let ratio = sigmaT / sigmaS0, c0 = alphaT * hPhi1, cb = alphaT * bh
        let base = Tensor.zipScalars(x, m0) { x, m in ratio * x - c0 * m }
        if order == 1 || modelOutputs.count < 2 || i < 2 {
            let rho: Float = 0.5
            return Tensor.zipScalars(base, Tensor.zipScalars(mt, m0) { a, b in a - b }) { x, d in x - cb * (0 + rho * d) }
        }
        // rk = (λ_{s1} − λ_{s0})/h; R = [[1, 1], [rk, 1]]; ρ_c = solve(R, b).
        let rk = (Self.lambda(sigmas[i - 2]) - lambdaS0) / h
        let m1 = modelOutputs[modelOutputs.count - 2]
        let d1 = Tensor.zipScalars(m1, m0) { a, b in (a - b) / rk }
        let rho = Self.solve2x2(a11: 1, a12: 1, a21: rk, a22: 1, b1: b[0], b2: b[1])
        let correction = Tensor.zipScalars(d1, mt, m0) { d, t, m in rho.0 * d + rho.1 * (t - m) }
        return Tensor.zipScalars(base, correction) { x, c in x - cb * c }
    }

    /// LAPACK `sgesv` on a 2×2 system in float32: LU with partial pivoting (reciprocal pivot scaling, as
    /// `sgetrf2`), then forward and back substitution (`sgetrs`).
    static func solve2x2(a11: Float, a12: Float, a21: Float, a22: Float, b1: Float, b2: Float) -> (Float, Float) {
        var (r1, r2, c1, c2) = ((a11, a12), (a21, a22), b1, b2)
        if abs(a21) > abs(a11) { swap(&r1, &r2); swap(&c1, &c2) }
        let l = r2.0 * (1 / r1.0)
        let u22 = r2.1 - l * r1.1
        let y2 = c2 - l * c1
        let x2 = y2 / u22
        let x1 = (c1 - x2 * r1.1) / r1.0
        return (x1, x2)
    }

    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor {
        let count = timesteps.count
        let i = min(max(stepIndex ?? beginIndex ?? index(of: timestep), 0), max(sigmas.count - 2, 0))
        // convert_model_output: the x₀ prediction (predict_x0).
        let (alphaT, sigmaT) = Self.alphaSigma(sigmas[i])
        let converted: Tensor
        switch prediction {
        case .epsilon: converted = Tensor.zipScalars(sample, modelOutput) { x, e in (x - sigmaT * e) / alphaT }
        case .sample: converted = modelOutput
        case .vPrediction: converted = Tensor.zipScalars(sample, modelOutput) { x, v in alphaT * x - sigmaT * v }
        }
        var sample = sample
        if i > 0, let last = lastSample, !modelOutputs.isEmpty {
            sample = correct(modelOutput: converted, lastSample: last, index: i, order: thisOrder)
        }
        modelOutputs.append(converted)
        if modelOutputs.count > solverOrder { modelOutputs.removeFirst() }
        let order = lowerOrderFinal ? min(solverOrder, count - i) : solverOrder
        thisOrder = max(1, min(order, lowerOrderCount + 1))
        lastSample = sample
        let result = predict(sample: sample, index: i, order: thisOrder)
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
