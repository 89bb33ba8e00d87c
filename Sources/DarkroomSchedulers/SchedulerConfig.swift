import Foundation

/// How `setTimesteps` spreads the inference steps over the training timesteps (diffusers' `timestep_spacing`).
public enum TimestepSpacing: String, Sendable, CaseIterable {
    case linspace, leading, trailing
}

/// The keys of a diffusers `scheduler_config.json` that these schedulers read.
///
/// Every field is optional: `nil` means "not in the config", and each scheduler then uses its own
/// diffusers class default — exactly what diffusers' `from_config` does (e.g. a missing
/// `timestep_spacing` is "leading" for DDIM/PNDM but "linspace" for Euler, LMS and DPM-Solver; a
/// missing `prediction_type` is "epsilon"; `beta_schedule` defaults to "linear"). Keys a scheduler
/// class does not have are ignored by that class. Keys listed in the file's `_use_default_values`
/// are treated as missing, as diffusers does. Unknown keys are ignored.
public struct SchedulerConfig: Sendable, Equatable {
    public var numTrainTimesteps: Int?
    public var betaStart: Double?
    public var betaEnd: Double?
    /// "linear", "scaled_linear" or "squaredcos_cap_v2".
    public var betaSchedule: String?
    /// Explicit betas (override `betaSchedule`).
    public var trainedBetas: [Double]?
    public var predictionType: PredictionType?
    public var timestepSpacing: TimestepSpacing?
    public var stepsOffset: Int?
    /// DDIM, PNDM: use ᾱ = 1 (instead of ᾱ₀) after the last step.
    public var setAlphaToOne: Bool?
    /// DDIM: clamp the predicted x₀ to ±`clipSampleRange`.
    public var clipSample: Bool?
    public var clipSampleRange: Double?
    /// PNDM: PLMS only (no Runge–Kutta warm-up). Only `true` is supported.
    public var skipPrkSteps: Bool?
    /// Euler, LMS, DPM-Solver: Karras et al. (2022) noise levels.
    public var useKarrasSigmas: Bool?
    /// Euler, DPM-Solver: Karras sigma range overrides. (DPM-Solver reads them too when present,
    /// because diffusers keeps unknown keys in `scheduler.config`.)
    public var sigmaMin: Double?
    public var sigmaMax: Double?
    /// Euler, DPM-Solver: "zero" or "sigma_min".
    public var finalSigmasType: String?
    /// DPM-Solver: "dpmsolver++" only.
    public var algorithmType: String?
    /// DPM-Solver: 1 or 2.
    public var solverOrder: Int?
    /// DPM-Solver: "midpoint" or "heun".
    public var solverType: String?
    public var lowerOrderFinal: Bool?
    public var eulerAtFinal: Bool?
    public var lambdaMinClipped: Double?
    /// LCM: the distillation schedule's step count (class default 50) and the boundary-condition time scale (10).
    public var originalInferenceSteps: Int?
    public var timestepScaling: Double?
    /// UniPC: the data-prediction (x₀) form of the solver. Only `true` (its default) is supported.
    public var predictX0: Bool?

    /// Options diffusers has but this implementation does not; a scheduler whose class has the key
    /// throws `SchedulerError.unsupported` when it is set to a non-default value.
    public var thresholding: Bool?
    public var rescaleBetasZeroSnr: Bool?
    public var useExponentialSigmas: Bool?
    public var useBetaSigmas: Bool?
    public var useLuLambdas: Bool?
    public var useFlowSigmas: Bool?
    public var useDynamicShifting: Bool?
    public var interpolationType: String?
    public var timestepType: String?
    public var varianceType: String?

    /// An empty config: every scheduler uses its diffusers class defaults.
    public init() {}

    /// Reads a diffusers `scheduler_config.json`. `nil` gives the empty config (all class defaults).
    /// JSON `null` counts as missing. Throws `SchedulerError.invalidConfig` for malformed JSON, a value
    /// of the wrong type, or an unknown `prediction_type` / `timestep_spacing`.
    public init(json: Data?) throws {
        self.init()
        guard let json else { return }
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: json)
        } catch {
            throw SchedulerError.invalidConfig("not JSON: \(error)")
        }
        guard case var .object(dict) = root else { throw SchedulerError.invalidConfig("not a JSON object") }
        if case let .array(defaults)? = dict["_use_default_values"] {
            for case let .string(key) in defaults { dict.removeValue(forKey: key) }
        }
        let reader = Reader(dict: dict)
        numTrainTimesteps = try reader.int("num_train_timesteps")
        betaStart = try reader.double("beta_start")
        betaEnd = try reader.double("beta_end")
        betaSchedule = try reader.string("beta_schedule")
        trainedBetas = try reader.doubles("trained_betas")
        if let value = try reader.string("prediction_type") {
            guard let type = PredictionType(rawValue: value) else {
                throw SchedulerError.invalidConfig("prediction_type \"\(value)\" (supported: epsilon, v_prediction, sample)")
            }
            predictionType = type
        }
        if let value = try reader.string("timestep_spacing") {
            guard let spacing = TimestepSpacing(rawValue: value) else {
                throw SchedulerError.invalidConfig("timestep_spacing \"\(value)\" (supported: linspace, leading, trailing)")
            }
            timestepSpacing = spacing
        }
        stepsOffset = try reader.int("steps_offset")
        setAlphaToOne = try reader.bool("set_alpha_to_one")
        clipSample = try reader.bool("clip_sample")
        clipSampleRange = try reader.double("clip_sample_range")
        skipPrkSteps = try reader.bool("skip_prk_steps")
        useKarrasSigmas = try reader.bool("use_karras_sigmas")
        sigmaMin = try reader.double("sigma_min")
        sigmaMax = try reader.double("sigma_max")
        finalSigmasType = try reader.string("final_sigmas_type")
        algorithmType = try reader.string("algorithm_type")
        solverOrder = try reader.int("solver_order")
        solverType = try reader.string("solver_type")
        lowerOrderFinal = try reader.bool("lower_order_final")
        eulerAtFinal = try reader.bool("euler_at_final")
        lambdaMinClipped = try reader.double("lambda_min_clipped")
        originalInferenceSteps = try reader.int("original_inference_steps")
        timestepScaling = try reader.double("timestep_scaling")
        predictX0 = try reader.bool("predict_x0")
        thresholding = try reader.bool("thresholding")
        rescaleBetasZeroSnr = try reader.bool("rescale_betas_zero_snr")
        useExponentialSigmas = try reader.bool("use_exponential_sigmas")
        useBetaSigmas = try reader.bool("use_beta_sigmas")
        useLuLambdas = try reader.bool("use_lu_lambdas")
        useFlowSigmas = try reader.bool("use_flow_sigmas")
        useDynamicShifting = try reader.bool("use_dynamic_shifting")
        interpolationType = try reader.string("interpolation_type")
        timestepType = try reader.string("timestep_type")
        varianceType = try reader.string("variance_type")
    }

    /// Stable Diffusion 1.x's `scheduler/scheduler_config.json` (PNDMScheduler; scaled_linear betas
    /// 0.00085…0.012, 1000 training steps, steps_offset 1, skip_prk_steps, set_alpha_to_one false,
    /// clip_sample false; no `timestep_spacing` or `prediction_type`, so class defaults apply).
    public static let stableDiffusion: SchedulerConfig = {
        var config = SchedulerConfig()
        config.numTrainTimesteps = 1000
        config.betaStart = 0.00085
        config.betaEnd = 0.012
        config.betaSchedule = "scaled_linear"
        config.stepsOffset = 1
        config.skipPrkSteps = true
        config.setAlphaToOne = false
        config.clipSample = false
        return config
    }()

    /// A parsed JSON value (JSONDecoder keeps booleans and numbers apart, unlike JSONSerialization).
    private enum JSONValue: Decodable {
        case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() { self = .null }
            else if let value = try? container.decode(Bool.self) { self = .bool(value) }
            else if let value = try? container.decode(Double.self) { self = .number(value) }
            else if let value = try? container.decode(String.self) { self = .string(value) }
            else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
            else { self = .object(try container.decode([String: JSONValue].self)) }
        }
    }

    private struct Reader {
        let dict: [String: JSONValue]

        private func value(_ key: String) -> JSONValue? {
            guard let value = dict[key] else { return nil }
            if case .null = value { return nil }
            return value
        }

        private func number(_ key: String, _ value: JSONValue) throws -> Double {
            guard case let .number(number) = value else { throw SchedulerError.invalidConfig("\(key) must be a number") }
            return number
        }

        func double(_ key: String) throws -> Double? {
            guard let value = value(key) else { return nil }
            return try number(key, value)
        }

        func int(_ key: String) throws -> Int? {
            guard let value = value(key) else { return nil }
            let d = try number(key, value)
            guard d.rounded() == d, abs(d) < 1e15 else { throw SchedulerError.invalidConfig("\(key) must be an integer") }
            return Int(d)
        }

        func bool(_ key: String) throws -> Bool? {
            guard let value = value(key) else { return nil }
            guard case let .bool(flag) = value else { throw SchedulerError.invalidConfig("\(key) must be true or false") }
            return flag
        }

        func string(_ key: String) throws -> String? {
            guard let value = value(key) else { return nil }
            guard case let .string(string) = value else { throw SchedulerError.invalidConfig("\(key) must be a string") }
            return string
        }

        func doubles(_ key: String) throws -> [Double]? {
            guard let value = value(key) else { return nil }
            guard case let .array(array) = value else { throw SchedulerError.invalidConfig("\(key) must be an array of numbers") }
            return try array.map { try number(key, $0) }
        }
    }
}
