import DarkroomTensor
import Foundation

/// The training noise schedule shared by all schedulers: betas → alphas → ᾱ (`alphas_cumprod`).
///
/// Matches diffusers' constructors bit for bit: betas are torch float32 (`torch.linspace` in float32 —
/// reproduced with its fused multiply-add formula — squared for "scaled_linear"; "squaredcos_cap_v2" in
/// Python float64 then cast), `1 - betas` in float32, and `torch.cumprod`, which on CPU accumulates in
/// float64 and rounds every prefix product to float32.
struct NoiseSchedule: Sendable {
    let numTrainTimesteps: Int
    /// ᾱ_t for t = 0 ..< numTrainTimesteps (float32, as diffusers' `alphas_cumprod`).
    let alphasCumprod: [Float]

    /// Throws for an unknown `beta_schedule`. (Schedulers whose diffusers class has
    /// `rescale_betas_zero_snr` reject it themselves; the others ignore the key, as diffusers.)
    init(config: SchedulerConfig, scheduler: String) throws {
        let count = config.numTrainTimesteps ?? 1000
        guard count >= 2, count <= NoiseSchedule.maxTrainTimesteps else {
            throw SchedulerError.invalidConfigValue(key: "num_train_timesteps", value: "\(count)",
                                                    expected: "a whole number from 2 to \(NoiseSchedule.maxTrainTimesteps) (Stable Diffusion: 1000)")
        }
        let start = config.betaStart ?? 0.0001, end = config.betaEnd ?? 0.02
        for (key, value) in [("beta_start", start), ("beta_end", end)] where !(value > 0 && value < 1) {
            throw SchedulerError.invalidConfigValue(key: key, value: "\(value)", expected: "a number in (0, 1) (Stable Diffusion: 0.00085 and 0.012)")
        }
        if let offset = config.stepsOffset, offset < 0 || offset >= count {
            throw SchedulerError.invalidConfigValue(key: "steps_offset", value: "\(offset)",
                                                    expected: "a whole number from 0 to \(count - 1) (num_train_timesteps − 1; Stable Diffusion: 1)")
        }
        for (key, value) in [("sigma_min", config.sigmaMin), ("sigma_max", config.sigmaMax)] {
            if let value, !(value.isFinite && value > 0) {
                throw SchedulerError.invalidConfigValue(key: key, value: "\(value)", expected: "a finite number > 0")
            }
        }
        let betas: [Float]
        if let trained = config.trainedBetas {
            guard trained.count == count else {
                throw SchedulerError.invalidConfig("trained_betas has \(trained.count) values, num_train_timesteps is \(count)")
            }
            betas = trained.map { Float($0) }
        } else {
            switch config.betaSchedule ?? "linear" {
            case "linear":
                betas = NoiseSchedule.torchLinspace(Float(start), Float(end), count)
            case "scaled_linear":
                betas = NoiseSchedule.torchLinspace(Float(pow(start, 0.5)), Float(pow(end, 0.5)), count).map { $0 * $0 }
            case "squaredcos_cap_v2":
                betas = NoiseSchedule.cosineBetas(count)
            case let other:
                throw SchedulerError.unsupported(scheduler: scheduler, option: "beta_schedule \"\(other)\"")
            }
        }
        if let bad = betas.firstIndex(where: { !($0 > 0 && $0 < 1) }) {
            throw SchedulerError.invalidConfigValue(key: config.trainedBetas == nil ? "beta_schedule" : "trained_betas",
                                                    value: "β[\(bad)] = \(betas[bad])", expected: "every beta in (0, 1)")
        }
        var cumulative = [Float](), product = 1.0
        cumulative.reserveCapacity(count)
        for beta in betas {
            product *= Double(1 - beta)
            cumulative.append(Float(product))
        }
        // ᾱ must stay > 0 in float32, or σ = √((1 − ᾱ)/ᾱ) is infinite (a long schedule of large betas underflows).
        if let bad = cumulative.firstIndex(where: { !($0 > 0) }) {
            throw SchedulerError.invalidConfigValue(key: "num_train_timesteps", value: "\(count)",
                                                    expected: "a schedule whose ᾱ stays above 0 (ᾱ underflows to 0 at t = \(bad) with these betas)")
        }
        numTrainTimesteps = count
        alphasCumprod = cumulative
    }

    /// The largest `num_train_timesteps` accepted (diffusers has no limit; SD uses 1000). Keeps every schedule
    /// table small and every index computation far from `Int` overflow.
    static let maxTrainTimesteps = 100_000

    /// ᾱ at training timestep `t`, clamped into the table (never traps; `checkRunnable` refuses out-of-range
    /// timesteps before a loop runs, so the clamp changes nothing in a checked run).
    func alphaCumprod(at t: Int) -> Float { alphasCumprod[min(max(t, 0), alphasCumprod.count - 1)] }

    /// `Int(timestep)` for a schedule timestep, without trapping on NaN/inf or out-of-range values.
    static func trainingIndex(_ timestep: Float) -> Int {
        guard timestep.isFinite else { return 0 }
        return Int(min(max(timestep, -1e9), 1e9))
    }

    /// diffusers' sigma table σ_t = ((1 − ᾱ_t) / ᾱ_t)^½ in float32, indexed by training timestep.
    ///
    /// Uses IEEE (correctly rounded) `sqrt`. torch's float32 `sqrt`/`** 0.5` on x86 CPUs (its MKL/VML
    /// path) is not correctly rounded: about 1 in 6 results is 1 ulp off, so diffusers' tables differ
    /// from this one by ≤ 1 ulp in ~19% of entries (machine-dependent on the torch side). The same
    /// holds for every `** 0.5` in diffusers' step arithmetic.
    var sigmas: [Float] { alphasCumprod.map { ((1 - $0) / $0).squareRoot() } }

    /// `torch.linspace(start, end, steps, dtype=float32)` on CPU: step = (end − start)/(steps − 1) in
    /// float32; the first half is fma(step, i, start), the second half fma(−step, steps−1−i, end).
    static func torchLinspace(_ start: Float, _ end: Float, _ steps: Int) -> [Float] {
        if steps == 1 { return [start] }
        let step = (end - start) / Float(steps - 1)
        let halfway = steps / 2
        return (0..<steps).map { i in
            i < halfway ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(steps - 1 - i))
        }
    }

    /// diffusers' `betas_for_alpha_bar(…, "cosine")` (Python float64, capped at 0.999, cast to float32).
    static func cosineBetas(_ count: Int) -> [Float] {
        func alphaBar(_ t: Double) -> Double {
            let c = cos((t + 0.008) / 1.008 * Double.pi / 2)
            return c * c
        }
        return (0..<count).map { i in
            let t1 = Double(i) / Double(count), t2 = Double(i + 1) / Double(count)
            return Float(min(1 - alphaBar(t2) / alphaBar(t1), 0.999))
        }
    }
}

/// NumPy float64 routines as diffusers calls them, reproduced exactly.
enum NumPy {
    /// `np.round`: half to even.
    static func round(_ x: Double) -> Double { x.rounded(.toNearestOrEven) }

    /// `np.linspace(start, stop, num)` (endpoint=True): start + i·step with step = (stop − start)/(num − 1),
    /// and the last value set to `stop`.
    static func linspace(_ start: Double, _ stop: Double, _ num: Int) -> [Double] {
        guard num > 1 else { return num == 1 ? [start] : [] }
        let step = (stop - start) / Double(num - 1)
        var values = (0..<num).map { Double($0) * step + start }
        values[num - 1] = stop
        return values
    }

    /// `np.arange(start, stop, step)` for floats: length ⌈(stop − start)/step⌉, values start + i·δ where
    /// δ = (start + step) − start (NumPy's fill uses the difference of the first two elements).
    static func arange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
        let ratio = ((stop - start) / step).rounded(.up)
        guard ratio.isFinite, ratio < 1e9 else { return [] }
        let length = max(0, Int(ratio))
        guard length > 0 else { return [] }
        let second = start + step
        let delta = second - start
        return (0..<length).map { i in i == 0 ? start : (i == 1 ? second : start + Double(i) * delta) }
    }

    /// `np.interp(x, np.arange(len(fp)), fp)` with float32 `fp` promoted to float64.
    static func interp(_ x: Double, _ fp: [Float]) -> Double {
        let last = fp.count - 1
        if x.isNaN { return x }
        if x <= 0 { return Double(fp[0]) }
        if x >= Double(last) { return Double(fp[last]) }
        let j = Int(x.rounded(.down))
        if x == Double(j) { return Double(fp[j]) }
        let slope = (Double(fp[j + 1]) - Double(fp[j])) / 1.0
        return slope * (x - Double(j)) + Double(fp[j])
    }
}

/// Helpers for the sigma-parameterised schedulers (Euler, Euler ancestral, LMS, DPM-Solver).
enum SigmaSchedule {
    /// The timesteps of a discrete sigma scheduler (Euler, Euler a, LMS) for `count` steps: diffusers'
    /// `timestep_spacing` "linspace" (float, may be fractional), "leading" (+ steps_offset) or "trailing".
    static func discreteTimesteps(spacing: TimestepSpacing, count: Int, train: Int, stepsOffset: Int) -> [Float] {
        switch spacing {
        case .linspace:
            return NumPy.linspace(0, Double(train - 1), count).reversed().map { Float($0) }
        case .leading:
            let ratio = train / count
            return (0..<count).reversed().map { Float($0 * ratio) + Float(stepsOffset) }
        case .trailing:
            return NumPy.arange(Double(train), 0, -Double(train) / Double(count)).map { Float(NumPy.round($0)) - 1 }
        }
    }

    /// Karras et al. (2022) noise levels, diffusers' `_convert_to_karras` (float64, ρ = 7).
    static func karras(sigmaMin: Double, sigmaMax: Double, count: Int) -> [Double] {
        let rho = 7.0
        let minInvRho = pow(sigmaMin, 1 / rho), maxInvRho = pow(sigmaMax, 1 / rho)
        return NumPy.linspace(0, 1, count).map { pow(maxInvRho + $0 * (minInvRho - maxInvRho), rho) }
    }

    /// diffusers' `_sigma_to_t`: the (fractional) training timestep whose log-sigma interpolates to
    /// log σ. `logSigmas` is the float32 log of the sigma table; NumPy's promotion rules are kept
    /// (log σ and the distances in float64, the bracket width `low − high` in float32).
    static func sigmaToT(_ sigma: Double, logSigmas: [Float]) -> Double {
        let logSigma = log(max(sigma, 1e-10))
        // argmax of cumsum(dists >= 0): the last index with dists >= 0 (0 if none), clipped to n − 2.
        var cumulative = 0, best = 0, bestIndex = 0
        for (i, value) in logSigmas.enumerated() {
            if logSigma - Double(value) >= 0 { cumulative += 1 }
            if cumulative > best { best = cumulative; bestIndex = i }
        }
        let lowIndex = min(bestIndex, logSigmas.count - 2), highIndex = lowIndex + 1
        let low = logSigmas[lowIndex], high = logSigmas[highIndex]
        var w = (Double(low) - logSigma) / Double(low - high)
        w = min(max(w, 0), 1)
        return (1 - w) * Double(lowIndex) + w * Double(highIndex)
    }

    /// The float32 log-sigma table (`np.log` of diffusers' float32 sigmas). Computed as the correctly
    /// rounded float32 log; NumPy's SIMD float32 log can differ in the last bits (see Limitations in
    /// the Euler/LMS files).
    static func logSigmas(_ sigmas: [Float]) -> [Float] { sigmas.map { Float(log(Double($0))) } }

    /// diffusers' `index_for_timestep` for Euler/LMS: the first index of `timestep` in `schedule`,
    /// or the second when it occurs more than once. `nil` if absent (diffusers raises there).
    static func index(of timestep: Float, in schedule: [Float]) -> Int? {
        var found: [Int] = []
        for (i, t) in schedule.enumerated() where t == timestep {
            found.append(i)
            if found.count == 2 { break }
        }
        return found.count > 1 ? found[1] : found.first
    }
}

/// Shared checks.
enum SchedulerValidation {
    /// DDIM/PNDM: every timestep the loop runs must be a training timestep (diffusers indexes
    /// `alphas_cumprod[t]` and raises IndexError past the end).
    static func trainingTimesteps(_ timesteps: ArraySlice<Float>, _ schedule: NoiseSchedule, scheduler: String,
                                  steps: Int, beginIndex: Int) throws {
        if let bad = timesteps.first(where: { !($0 >= 0 && $0 < Float(schedule.numTrainTimesteps)) }) {
            throw SchedulerError.unrunnableSchedule(
                scheduler: scheduler, steps: steps, beginIndex: beginIndex,
                reason: "timestep \(bad) is outside the \(schedule.numTrainTimesteps) training timesteps (0…\(schedule.numTrainTimesteps - 1)); steps_offset pushes the last step past the end")
        }
    }

    /// Sigma schedulers: the σ of every step the loop runs must be finite and > 0 (Euler divides by it), and
    /// with `strictlyDecreasing` (multistep methods: LMS, DPM-Solver) no two consecutive run σ may be equal,
    /// or the step sizes h = 0 divide by zero (diffusers then produces NaN).
    static func runSigmas(_ sigmas: [Float], from beginIndex: Int, count: Int, strictlyDecreasing: Bool,
                          scheduler: String) throws {
        guard beginIndex >= 0, beginIndex < count, count < sigmas.count else {
            throw SchedulerError.unrunnableSchedule(scheduler: scheduler, steps: count, beginIndex: beginIndex,
                                                    reason: "no step to run")
        }
        for i in beginIndex..<count {
            guard sigmas[i].isFinite, sigmas[i] > 0, sigmas[i + 1].isFinite, sigmas[i + 1] >= 0 else {
                throw SchedulerError.unrunnableSchedule(scheduler: scheduler, steps: count, beginIndex: beginIndex,
                                                        reason: "σ of step \(i) is \(sigmas[i]) (next \(sigmas[i + 1])); the noise schedule is degenerate")
            }
            if strictlyDecreasing, i + 1 < count, !(sigmas[i + 1] < sigmas[i]) {
                throw SchedulerError.unrunnableSchedule(
                    scheduler: scheduler, steps: count, beginIndex: beginIndex,
                    reason: "steps \(i) and \(i + 1) have the same noise level σ = \(sigmas[i]) (more steps than the schedule has distinct timesteps), which makes this multistep method divide by zero")
            }
        }
    }

    static func stepCount(_ count: Int, _ schedule: NoiseSchedule) throws {
        guard count >= 1, count <= schedule.numTrainTimesteps else {
            throw SchedulerError.invalidStepCount(count, trainTimesteps: schedule.numTrainTimesteps)
        }
    }

    static func reject(_ flag: Bool?, _ option: String, _ scheduler: String) throws {
        if flag == true { throw SchedulerError.unsupported(scheduler: scheduler, option: option) }
    }

    static func reject(_ value: String?, allowed: [String], _ option: String, _ scheduler: String) throws {
        if let value, !allowed.contains(value) {
            throw SchedulerError.unsupported(scheduler: scheduler, option: "\(option) \"\(value)\"")
        }
    }
}

/// Element-wise float32 kernels with a caller-given expression, so each scheduler can keep diffusers'
/// exact operation order (`a * b + c` is two roundings in torch; Swift does not contract to FMA).
extension Tensor {
    func mapScalars(_ f: (Float) -> Float) -> Tensor {
        let out = withUnsafeBufferPointer { a in
            [Float](unsafeUninitializedCapacity: a.count) { buffer, initialized in
                for i in 0..<a.count { buffer[i] = f(a[i]) }
                initialized = a.count
            }
        }
        return Tensor(shape: shape, scalars: out)
    }

    static func zipScalars(_ x: Tensor, _ y: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        precondition(x.shape == y.shape, "shape mismatch: \(x.shape) vs \(y.shape)")
        let out = x.withUnsafeBufferPointer { a in
            y.withUnsafeBufferPointer { b in
                [Float](unsafeUninitializedCapacity: a.count) { buffer, initialized in
                    for i in 0..<a.count { buffer[i] = f(a[i], b[i]) }
                    initialized = a.count
                }
            }
        }
        return Tensor(shape: x.shape, scalars: out)
    }

    static func zipScalars(_ x: Tensor, _ y: Tensor, _ z: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
        precondition(x.shape == y.shape && x.shape == z.shape, "shape mismatch: \(x.shape), \(y.shape), \(z.shape)")
        let out = x.withUnsafeBufferPointer { a in
            y.withUnsafeBufferPointer { b in
                z.withUnsafeBufferPointer { c in
                    [Float](unsafeUninitializedCapacity: a.count) { buffer, initialized in
                        for i in 0..<a.count { buffer[i] = f(a[i], b[i], c[i]) }
                        initialized = a.count
                    }
                }
            }
        }
        return Tensor(shape: x.shape, scalars: out)
    }
}
