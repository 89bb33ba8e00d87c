@testable import DarkroomSchedulers
import DarkroomTensor
import Foundation
import XCTest

/// Recipe extremes and absurd configs: every sampler either runs to finite values or throws — never traps.
/// Which combinations diffusers 0.42.1 cannot run was measured with `tools/reference/check_scheduler_extremes.py`
/// (the same loop in diffusers: IndexError or NaN); exactly those must be refused here.
final class ExtremeSettingsTests: XCTestCase {
    /// `Tests/Fixtures/models/sd1/diffusers/scheduler/scheduler_config.json`: SD's values with timestep_spacing "leading".
    static let fixtureJSON = """
    {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
     "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": false, "skip_prk_steps": true,
     "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null}
    """

    /// What `check_scheduler_extremes.py` printed: the (config, sampler, steps, strength) diffusers cannot run.
    static let diffusersFailures: Set<String> = [
        "fixture:ddim:1000:1.0",        // IndexError: alphas_cumprod[1000]
        "fixture:pndm:1000:1.0",        // IndexError
        "fixture:lms:1000:1.0",         // NaN (σ of timesteps 1000 and 999 equal: np.interp clamps)
        "fixture:dpmpp_2m:999:1.0",     // NaN (same)
        "fixture:dpmpp_2m:1000:1.0",    // NaN
        "builtin:ddim:1000:1.0",        // IndexError
        "builtin:pndm:1000:1.0",        // IndexError
        "builtin:dpmpp_2m:1000:1.0",    // NaN (linspace over 1001 points rounds two timesteps to one)
        // Issue 12's samplers (the same script, extended): the SDE variant and UniPC as DPM++ 2M; LCM refuses
        // more steps than its original_inference_steps (50) in set_timesteps (ValueError), at any strength.
        "fixture:dpmpp_2m_sde:999:1.0", "fixture:dpmpp_2m_sde:1000:1.0", "builtin:dpmpp_2m_sde:1000:1.0",
        "fixture:unipc:999:1.0", "fixture:unipc:1000:1.0", "builtin:unipc:1000:1.0",
        "fixture:lcm:999:0.0015", "fixture:lcm:999:1.0", "fixture:lcm:1000:0.0015", "fixture:lcm:1000:1.0",
        "builtin:lcm:999:0.0015", "builtin:lcm:999:1.0", "builtin:lcm:1000:0.0015", "builtin:lcm:1000:1.0",
    ]

    func testEverySamplerAtExtremeStepsRunsOrIsRefusedAsDiffusersIs() throws {
        let configs = [("fixture", try SchedulerConfig(json: Data(Self.fixtureJSON.utf8))), ("builtin", SchedulerConfig.stableDiffusion)]
        var refused: Set<String> = []
        for (configName, config) in configs {
            for name in schedulerNames {
                for steps in [1, 2, 999, 1000, 1001, 1_000_000] {
                    for strength in [0.0015, 1.0] {
                        var scheduler = try makeScheduler(name: name, config: config)
                        let label = "\(configName):\(name):\(steps):\(strength)"
                        if steps > 1000 {
                            XCTAssertThrowsError(try scheduler.setTimesteps(steps), label) {
                                XCTAssertEqual($0 as? SchedulerError, .invalidStepCount(steps, trainTimesteps: 1000), label)
                            }
                            continue
                        }
                        do { try scheduler.setTimesteps(steps) } catch let error as SchedulerError {
                            guard case .unrunnableSchedule = error else { return XCTFail("\(label): \(error)") }
                            refused.insert(label)   // LCM beyond original_inference_steps
                            continue
                        }
                        let start = imageToImageStart(steps: steps, strength: strength, order: scheduler.order)
                        guard start < scheduler.timesteps.count else { continue }   // no step: the pipeline names `strength`
                        do {
                            try scheduler.checkRunnable(from: start)
                        } catch let error as SchedulerError {
                            guard case .unrunnableSchedule(_, let s, let b, _) = error else { return XCTFail("\(label): \(error)") }
                            XCTAssertEqual(s, steps, label); XCTAssertEqual(b, start, label)
                            refused.insert(label)
                            continue
                        }
                        // A deterministic dummy loop: model output 0.1·input, fixed noise.
                        scheduler.setBeginIndex(start)
                        let timesteps = Array(scheduler.timesteps[start...])
                        var x = scheduler.addNoise(original: Tensor(shape: [1, 1, 2, 2], scalars: [0.5, -0.25, 0.125, 1]),
                                                   noise: Tensor(shape: [1, 1, 2, 2], scalars: [1, -1, 0.5, -0.5]), timestep: timesteps[0])
                        for t in timesteps {
                            let output = scheduler.scaleModelInput(x, timestep: t).mapScalars { 0.1 * $0 }
                            x = scheduler.step(modelOutput: output, timestep: t, sample: x) { Tensor(shape: [1, 1, 2, 2], scalars: [0.3, -0.2, 0.1, 0]) }
                        }
                        XCTAssert(x.scalars.allSatisfy(\.isFinite), "\(label): \(x.scalars)")
                    }
                }
            }
        }
        XCTAssertEqual(refused, Self.diffusersFailures)
    }

    func testAbsurdConfigValuesNameTheirKey() throws {
        func key(_ json: String) -> String? {
            do {
                _ = try makeScheduler(name: "ddim", config: try SchedulerConfig(json: Data(json.utf8)))
                return nil
            } catch let SchedulerError.invalidConfigValue(key, _, _) {
                return key
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(key(#"{"num_train_timesteps": 100000000000}"#), "num_train_timesteps")
        XCTAssertEqual(key(#"{"num_train_timesteps": 0}"#), "num_train_timesteps")
        XCTAssertEqual(key(#"{"num_train_timesteps": -5}"#), "num_train_timesteps")
        XCTAssertEqual(key(#"{"beta_start": 0}"#), "beta_start")
        XCTAssertEqual(key(#"{"beta_end": 1.5}"#), "beta_end")
        XCTAssertEqual(key(#"{"beta_start": -0.1, "beta_schedule": "scaled_linear"}"#), "beta_start")
        XCTAssertEqual(key(#"{"num_train_timesteps": 2, "trained_betas": [0.5, 1.0]}"#), "trained_betas")
        XCTAssertEqual(key(#"{"num_train_timesteps": 2, "trained_betas": [0.5, -0.1]}"#), "trained_betas")
        XCTAssertEqual(key(#"{"steps_offset": 1000}"#), "steps_offset")
        XCTAssertEqual(key(#"{"steps_offset": -1}"#), "steps_offset")
        XCTAssertEqual(key(#"{"steps_offset": 1000000000000}"#), "steps_offset")
        XCTAssertEqual(key(#"{"sigma_max": -1}"#), "sigma_max")
        // 100000 steps of β = 0.5: ᾱ underflows to 0 in float32 (σ would be infinite).
        XCTAssertEqual(key(#"{"num_train_timesteps": 100000, "beta_start": 0.5, "beta_end": 0.5}"#), "num_train_timesteps")
        XCTAssertThrowsError(try makeScheduler(name: "ddim", config: try SchedulerConfig(json: Data(#"{"beta_schedule": "cubic"}"#.utf8)))) {
            XCTAssertEqual($0 as? SchedulerError, .unsupported(scheduler: "DDIMScheduler", option: "beta_schedule \"cubic\""))
        }
        XCTAssertThrowsError(try SchedulerConfig(json: Data(#"{"timestep_spacing": "sideways"}"#.utf8))) {
            guard case .invalidConfig(let message)? = $0 as? SchedulerError else { return XCTFail("\($0)") }
            XCTAssert(message.contains("timestep_spacing"))
        }
        // A valid but unusual config still builds and runs: 2 training timesteps, 2 steps.
        var tiny = try makeScheduler(name: "dpmpp_2m", config: try SchedulerConfig(json: Data(#"{"num_train_timesteps": 2}"#.utf8)))
        try tiny.setTimesteps(2)
        try tiny.checkRunnable(from: 0)
    }

    /// `imageToImageStart` clamps instead of trapping on strengths the pipeline would refuse anyway.
    func testImageToImageStartNeverTraps() {
        XCTAssertEqual(imageToImageStart(steps: 20, strength: 0.75), 5)     // diffusers get_timesteps: 20 − int(15.0)
        XCTAssertEqual(imageToImageStart(steps: 20, strength: .nan), 20)
        XCTAssertEqual(imageToImageStart(steps: 20, strength: .infinity), 0)
        XCTAssertEqual(imageToImageStart(steps: Int.max, strength: 1), 0)
        XCTAssertEqual(imageToImageStart(steps: 0, strength: 1), 0)
        // Order-2 samplers: diffusers' t_start · scheduler.order.
        XCTAssertEqual(imageToImageStart(steps: 20, strength: 0.75, order: 2), 10)
        XCTAssertEqual(imageToImageStart(steps: 20, strength: .nan, order: 2), 40)
        XCTAssertEqual(imageToImageStart(steps: Int.max, strength: 0, order: 2), Int.max)
    }

    /// Calls the pipeline never makes (step before setTimesteps, a timestep off the schedule) do not trap.
    func testMisuseDoesNotTrap() throws {
        let sample = Tensor(shape: [1, 1, 1, 2], scalars: [0.5, -0.5])
        var ddim = try makeScheduler(name: "ddim", config: .stableDiffusion)
        _ = ddim.step(modelOutput: sample, timestep: 5000, sample: sample)
        _ = ddim.addNoise(original: sample, noise: sample, timestep: .nan)
        var euler = try makeScheduler(name: "euler", config: .stableDiffusion)
        try euler.setTimesteps(4)
        _ = euler.addNoise(original: sample, noise: sample, timestep: 123.456)
        for _ in 0..<6 { _ = euler.step(modelOutput: sample, timestep: 0, sample: sample) }
        var dpm = try makeScheduler(name: "dpmpp_2m", config: .stableDiffusion)
        try dpm.setTimesteps(3)
        for _ in 0..<5 { _ = dpm.step(modelOutput: sample, timestep: 0, sample: sample) }
        for name in ["dpmpp_2m_sde", "unipc", "heun", "dpm2", "dpm2_a_karras", "lcm"] {
            var scheduler = try makeScheduler(name: name, config: .stableDiffusion)
            _ = scheduler.step(modelOutput: sample, timestep: 0, sample: sample)        // before setTimesteps
            _ = scheduler.scaleModelInput(sample, timestep: 3)
            _ = scheduler.addNoise(original: sample, noise: sample, timestep: .nan)
            try scheduler.setTimesteps(3)
            _ = scheduler.addNoise(original: sample, noise: sample, timestep: 123.456)
            for _ in 0..<8 { _ = scheduler.step(modelOutput: sample, timestep: 0, sample: sample) }
            XCTAssertThrowsError(try scheduler.checkRunnable(from: 99), name)
        }
    }
}
