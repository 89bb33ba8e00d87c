import DarkroomTensor

/// What the denoising model predicts (diffusers' `prediction_type`).
public enum PredictionType: String, Sendable, CaseIterable {
    /// The added noise ε (SD 1.x, SD 2.x-base).
    case epsilon
    /// The velocity v = √ᾱ·ε − √(1−ᾱ)·x₀ (SD 2.x 768-v).
    case vPrediction = "v_prediction"
    /// The clean sample x₀.
    case sample
}

/// A diffusion sampler: the timestep schedule and the update rule of the denoising loop.
///
/// Usage, as diffusers' Stable Diffusion pipelines (text-to-image shown; for img2img see
/// `imageToImageStart(steps:strength:)`):
/// ```swift
/// var scheduler = try makeScheduler(name: "dpmpp_2m", config: .stableDiffusion)
/// try scheduler.setTimesteps(25)
/// var latents = noise * scheduler.initNoiseSigma
/// for t in scheduler.timesteps {
///     let eps = unet(scheduler.scaleModelInput(latents, timestep: t), t)
///     latents = scheduler.step(modelOutput: eps, timestep: t, sample: latents, noise: { randn(latents.shape) })
/// }
/// ```
///
/// Schedulers are values; `step` advances the internal state (step index, multistep history), so run
/// one loop per copy. Arithmetic follows diffusers' dtypes: per-element work is Float32 with the same
/// operation order as diffusers' torch code, schedule tables are built in Float64 where diffusers uses
/// NumPy float64 and rounded to Float32 where it casts.
public protocol Scheduler: Sendable {
    /// Timesteps of the denoising loop after `setTimesteps`, as diffusers passes them to the UNet
    /// (DDIM/PNDM/DPM-Solver: integers; Euler/LMS: float32 values that may be fractional).
    var timesteps: [Float] { get }
    /// The standard deviation of the initial noise: text-to-image multiplies the noise by it.
    var initNoiseSigma: Float { get }
    /// diffusers' `scheduler.order`: 2 for the schedulers that evaluate the model twice per step (Heun, DPM2,
    /// DPM2 ancestral), whose `timesteps` hold every evaluation (2·N − 1 entries); 1 for the others. img2img
    /// starts at `imageToImageStart(steps:strength:order:)`, which multiplies by it as diffusers' `get_timesteps`.
    var order: Int { get }
    /// Builds the schedule for `count` inference steps and resets the loop state.
    /// Throws `SchedulerError.invalidStepCount` unless 1 ≤ count ≤ `num_train_timesteps`.
    mutating func setTimesteps(_ count: Int) throws
    /// img2img: diffusers' `set_begin_index` — the loop starts at `timesteps[index]`. Schedulers without
    /// `set_begin_index` in diffusers (DDIM, PNDM) ignore it: they need no index.
    mutating func setBeginIndex(_ index: Int)
    /// The model input for `timestep` (Euler/LMS divide by √(σ²+1); the others return `sample`).
    func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor
    /// One denoising step from `timestep` to the next. `noise` supplies standard-normal noise of the
    /// sample's shape when the algorithm needs it (Euler ancestral: every step, including the last;
    /// DDIM with eta > 0: every step), in the order diffusers draws it.
    mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor, noise: () -> Tensor) -> Tensor
    /// Forward diffusion q(x_t | x_0) at `timestep` (img2img start, inpaint re-noising), as diffusers'
    /// `add_noise`. Sigma-based schedulers use the sigma at the begin index (or the current step index
    /// once the loop runs) when one is set, else the index of `timestep` in `timesteps`, as diffusers.
    func addNoise(original: Tensor, noise: Tensor, timestep: Float) -> Tensor
    /// Checks, before any model evaluation, that the loop over `timesteps[beginIndex...]` after
    /// `setTimesteps` stays inside the training schedule and cannot produce NaN/inf from the schedule
    /// alone: throws `SchedulerError.unrunnableSchedule` where diffusers would raise (a training timestep
    /// out of range: DDIM/PNDM with `steps_offset` 1 at as many steps as training timesteps) or
    /// silently produce NaN (repeated sigmas in a multistep method, e.g. DPM-Solver++ "leading" at 999 steps).
    func checkRunnable(from beginIndex: Int) throws
}

extension Scheduler {
    /// `step` for algorithms that draw no noise (all but Euler ancestral and DDIM with eta > 0).
    public mutating func step(modelOutput: Tensor, timestep: Float, sample: Tensor) -> Tensor {
        // A scheduler that draws noise gets zeros here (a programming error, not an input error: the pipeline
        // always passes `noise:`); never a trap.
        step(modelOutput: modelOutput, timestep: timestep, sample: sample, noise: { Tensor(zeros: sample.shape) })
    }
}

/// Errors from building or configuring a scheduler.
public enum SchedulerError: Error, CustomStringConvertible, Equatable {
    /// A recipe name that `makeScheduler` does not know.
    case unknownScheduler(String, valid: [String])
    /// `setTimesteps` with a step count outside 1…num_train_timesteps.
    case invalidStepCount(Int, trainTimesteps: Int)
    /// The scheduler config cannot be read (not JSON, wrong value type, unknown enum value).
    case invalidConfig(String)
    /// A config option (valid in diffusers) that this implementation does not support.
    case unsupported(scheduler: String, option: String)
    /// A config value outside what any schedule can use (`key` is the scheduler_config.json key).
    case invalidConfigValue(key: String, value: String, expected: String)
    /// The schedule for `steps` inference steps cannot run from `beginIndex` (see `Scheduler.checkRunnable`).
    case unrunnableSchedule(scheduler: String, steps: Int, beginIndex: Int, reason: String)

    public var description: String {
        switch self {
        case let .unknownScheduler(name, valid):
            return "unknown scheduler \"\(name)\"; valid names: \(valid.joined(separator: ", "))"
        case let .invalidStepCount(count, trainTimesteps):
            return "invalid number of inference steps \(count): must be between 1 and \(trainTimesteps) (num_train_timesteps)"
        case let .invalidConfig(message):
            return "invalid scheduler config: \(message)"
        case let .unsupported(scheduler, option):
            return "\(scheduler) does not support \(option)"
        case let .invalidConfigValue(key, value, expected):
            return "invalid scheduler config: \(key) is \(value); expected \(expected)"
        case let .unrunnableSchedule(scheduler, steps, beginIndex, reason):
            return "\(scheduler) cannot run \(steps) steps from step \(beginIndex): \(reason)"
        }
    }
}

/// Recipe names accepted by `makeScheduler`.
public let schedulerNames: [String] = [
    "ddim", "pndm", "lms", "lms_karras", "euler", "euler_karras", "euler_a", "dpmpp_2m", "dpmpp_2m_karras",
    "dpmpp_2m_sde", "dpmpp_2m_sde_karras", "unipc", "heun", "dpm2", "dpm2_karras", "dpm2_a", "dpm2_a_karras", "lcm",
]

/// Whether the recipe sampler's diffusers class reads `timestep_spacing` (every one but `lcm`: LCMScheduler
/// has the config key, but its `set_timesteps` ignores it and always takes its own LCM schedule).
public func schedulerReadsTimestepSpacing(_ name: String) -> Bool {
    schedulerNames.contains(name) && name != "lcm"
}

/// Builds a scheduler by recipe name from a (diffusers) scheduler config, as
/// `XxxScheduler.from_config(config, **recipe_overrides)`: keys the target class does not have are
/// ignored, missing keys take the target class's own default.
///
/// | name | diffusers class | overrides |
/// |---|---|---|
/// | `ddim` | DDIMScheduler | — (`eta` is a step parameter) |
/// | `pndm` | PNDMScheduler (PLMS) | — |
/// | `lms`, `lms_karras` | LMSDiscreteScheduler | use_karras_sigmas false / true |
/// | `euler`, `euler_karras` | EulerDiscreteScheduler | use_karras_sigmas false / true |
/// | `euler_a` | EulerAncestralDiscreteScheduler | — |
/// | `dpmpp_2m`, `dpmpp_2m_karras` | DPMSolverMultistepScheduler | algorithm_type dpmsolver++, solver_order 2, use_karras_sigmas false / true |
/// | `dpmpp_2m_sde`, `dpmpp_2m_sde_karras` | DPMSolverMultistepScheduler | algorithm_type sde-dpmsolver++, solver_order 2, use_karras_sigmas false / true |
/// | `unipc` | UniPCMultistepScheduler | solver_order 2, solver_type bh2, predict_x0 (its defaults), use_karras_sigmas false |
/// | `heun` | HeunDiscreteScheduler (order 2) | use_karras_sigmas false |
/// | `dpm2`, `dpm2_karras` | KDPM2DiscreteScheduler (order 2) | use_karras_sigmas false / true |
/// | `dpm2_a`, `dpm2_a_karras` | KDPM2AncestralDiscreteScheduler (order 2) | use_karras_sigmas false / true |
/// | `lcm` | LCMScheduler | — (`original_inference_steps`, `timestep_scaling` from the config) |
///
/// - Parameter eta: DDIM's η (0: deterministic DDIM; > 0 draws noise each step). Ignored by the others.
/// - Throws: `SchedulerError.unknownScheduler` (naming the valid names), `.unsupported`.
public func makeScheduler(name: String, config: SchedulerConfig, eta: Float = 0) throws -> any Scheduler {
    var config = config
    switch name {
    case "ddim":
        return try DDIMScheduler(config: config, eta: eta)
    case "pndm":
        return try PNDMScheduler(config: config)
    case "lms", "lms_karras":
        config.useKarrasSigmas = name == "lms_karras"
        return try LMSDiscreteScheduler(config: config)
    case "euler", "euler_karras":
        config.useKarrasSigmas = name == "euler_karras"
        return try EulerDiscreteScheduler(config: config)
    case "euler_a":
        return try EulerAncestralDiscreteScheduler(config: config)
    case "dpmpp_2m", "dpmpp_2m_karras":
        config.algorithmType = "dpmsolver++"
        config.solverOrder = 2
        config.useKarrasSigmas = name == "dpmpp_2m_karras"
        return try DPMSolverMultistepScheduler(config: config)
    case "dpmpp_2m_sde", "dpmpp_2m_sde_karras":
        config.algorithmType = "sde-dpmsolver++"
        config.solverOrder = 2
        config.useKarrasSigmas = name == "dpmpp_2m_sde_karras"
        return try DPMSolverMultistepScheduler(config: config)
    case "unipc":
        config.useKarrasSigmas = false
        return try UniPCMultistepScheduler(config: config)
    case "heun":
        config.useKarrasSigmas = false
        return try HeunDiscreteScheduler(config: config)
    case "dpm2", "dpm2_karras":
        config.useKarrasSigmas = name == "dpm2_karras"
        return try KDPM2DiscreteScheduler(config: config)
    case "dpm2_a", "dpm2_a_karras":
        config.useKarrasSigmas = name == "dpm2_a_karras"
        return try KDPM2AncestralDiscreteScheduler(config: config)
    case "lcm":
        return try LCMScheduler(config: config)
    default:
        throw SchedulerError.unknownScheduler(name, valid: schedulerNames)
    }
}

/// img2img: the index into `timesteps` of the first model evaluation for `strength` (diffusers'
/// `StableDiffusionImg2ImgPipeline.get_timesteps` / `StableDiffusionInpaintPipeline.get_timesteps`:
/// `t_start = steps - min(int(steps * strength), steps)`, clamped at 0, times `scheduler.order`). Run
/// `timesteps[start...]`, call `setBeginIndex(start)`, and noise the image latent with
/// `addNoise(original:noise:timestep: timesteps[start])`. `order` is the scheduler's `order` (2 for Heun and
/// DPM2, whose `timesteps` hold two entries per step after the first).
/// Never traps: a non-finite or out-of-range product is clamped to 0…steps (the pipeline refuses such
/// strengths before it gets here), and `order` outside 1…2 counts as 1.
public func imageToImageStart(steps: Int, strength: Double, order: Int = 1) -> Int {
    guard steps > 0 else { return 0 }
    let product = (Double(steps) * strength).rounded(.towardZero)
    let initTimestep = product.isNaN ? 0 : (product >= Double(steps) ? steps : max(0, Int(product)))
    let start = max(steps - initTimestep, 0)
    return order == 2 && start <= Int.max / 2 ? start * 2 : start
}
