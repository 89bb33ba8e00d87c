@testable import DarkroomSchedulers
import DarkroomTensor
import Foundation
import XCTest

/// Config parsing, diffusers' `from_config` defaults per class, errors.
final class SchedulerConfigTests: XCTestCase {
    let sd15JSON = """
    {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
     "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
     "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null,
     "clip_sample": false}
    """

    func testStableDiffusionConstantEqualsTheSD15File() throws {
        XCTAssertEqual(try SchedulerConfig(json: Data(sd15JSON.utf8)), SchedulerConfig.stableDiffusion)
    }

    /// SD 1.5's file has no `timestep_spacing`: each class falls back to its own default.
    func testMissingKeysTakeTheTargetClassDefaults() throws {
        let config = SchedulerConfig.stableDiffusion
        XCTAssertEqual(try DDIMScheduler(config: config).spacing, .leading)
        XCTAssertEqual(try PNDMScheduler(config: config).spacing, .leading)
        XCTAssertEqual(try EulerDiscreteScheduler(config: config).spacing, .linspace)
        XCTAssertEqual(try EulerAncestralDiscreteScheduler(config: config).spacing, .linspace)
        XCTAssertEqual(try LMSDiscreteScheduler(config: config).spacing, .linspace)
        XCTAssertEqual(try DPMSolverMultistepScheduler(config: config).spacing, .linspace)
        XCTAssertEqual(try DDIMScheduler(config: config).prediction, .epsilon)

        // An empty config: DDIM's clip_sample and set_alpha_to_one default to true, PNDM's
        // set_alpha_to_one to false; betas are "linear" 1e-4…0.02.
        var empty = SchedulerConfig()
        let ddim = try DDIMScheduler(config: empty)
        XCTAssertTrue(ddim.clipSample)
        XCTAssertEqual(ddim.finalAlphaCumprod, 1)
        XCTAssertEqual(ddim.stepsOffset, 0)
        empty.skipPrkSteps = true
        let pndm = try PNDMScheduler(config: empty)
        XCTAssertEqual(pndm.finalAlphaCumprod, pndm.schedule.alphasCumprod[0])
        XCTAssertEqual(pndm.schedule.alphasCumprod[0], 1 - 0.0001)
    }

    func testUseDefaultValuesAndNullsCountAsMissing() throws {
        let json = #"{"timestep_spacing": "trailing", "prediction_type": null, "steps_offset": 1, "_use_default_values": ["timestep_spacing"]}"#
        let config = try SchedulerConfig(json: Data(json.utf8))
        XCTAssertNil(config.timestepSpacing)
        XCTAssertNil(config.predictionType)
        XCTAssertEqual(config.stepsOffset, 1)
        XCTAssertEqual(try SchedulerConfig(json: nil), SchedulerConfig())
    }

    func testKeysOfOtherClassesAreIgnored() throws {
        // DDIM-only and DPM-only keys do not affect Euler; LMS has no rescale_betas_zero_snr.
        var config = SchedulerConfig.stableDiffusion
        config.thresholding = true
        config.solverOrder = 3
        config.rescaleBetasZeroSnr = true
        XCTAssertNoThrow(try LMSDiscreteScheduler(config: config))
        config.rescaleBetasZeroSnr = nil
        XCTAssertNoThrow(try EulerDiscreteScheduler(config: config))
        XCTAssertNoThrow(try PNDMScheduler(config: config))
    }

    func testRecipesOverrideTheConfig() throws {
        var config = SchedulerConfig.stableDiffusion
        config.useKarrasSigmas = true
        config.solverOrder = 1
        let euler = try XCTUnwrap(try makeScheduler(name: "euler", config: config) as? EulerDiscreteScheduler)
        XCTAssertFalse(euler.useKarras)
        let dpm = try XCTUnwrap(try makeScheduler(name: "dpmpp_2m", config: config) as? DPMSolverMultistepScheduler)
        XCTAssertFalse(dpm.useKarras)
        XCTAssertEqual(dpm.solverOrder, 2)
        let karras = try XCTUnwrap(try makeScheduler(name: "lms_karras", config: .stableDiffusion) as? LMSDiscreteScheduler)
        XCTAssertTrue(karras.useKarras)
    }

    func testMalformedConfigs() {
        for json in ["not json", "[1, 2]", #"{"steps_offset": "1"}"#, #"{"clip_sample": 0}"#,
                     #"{"prediction_type": "flow_prediction"}"#, #"{"timestep_spacing": "uniform"}"#,
                     #"{"num_train_timesteps": 10.5}"#] {
            XCTAssertThrowsError(try SchedulerConfig(json: Data(json.utf8)), json) { error in
                guard case SchedulerError.invalidConfig = error else { return XCTFail("\(json): \(error)") }
            }
        }
    }

    func testUnsupportedOptionsThrow() {
        func assertUnsupported(_ body: @autoclosure () throws -> Any, _ message: String, line: UInt = #line) {
            XCTAssertThrowsError(try body(), message, line: line) { error in
                guard case SchedulerError.unsupported = error else { return XCTFail("\(message): \(error)", line: line) }
                XCTAssertFalse("\(error)".isEmpty)
            }
        }
        var config = SchedulerConfig.stableDiffusion
        config.skipPrkSteps = nil  // diffusers' PNDM default: PRK warm-up
        assertUnsupported(try PNDMScheduler(config: config), "PRK")
        config = .stableDiffusion
        config.thresholding = true
        assertUnsupported(try DDIMScheduler(config: config), "thresholding")
        config = .stableDiffusion
        config.solverOrder = 3
        assertUnsupported(try DPMSolverMultistepScheduler(config: config), "order 3")
        config = .stableDiffusion
        config.algorithmType = "sde-dpmsolver"   // sde-dpmsolver++ is supported (dpmpp_2m_sde)
        assertUnsupported(try DPMSolverMultistepScheduler(config: config), "sde")
        config = .stableDiffusion
        config.predictX0 = false
        assertUnsupported(try UniPCMultistepScheduler(config: config), "unipc predict_x0 false")
        config = .stableDiffusion
        config.predictionType = .sample
        assertUnsupported(try makeScheduler(name: "dpm2_a", config: config), "dpm2_a sample")
        config = .stableDiffusion
        config.rescaleBetasZeroSnr = true
        assertUnsupported(try EulerDiscreteScheduler(config: config), "zero snr")
        config = .stableDiffusion
        config.betaSchedule = "sigmoid"
        assertUnsupported(try makeScheduler(name: "euler", config: config), "beta schedule")
        config = .stableDiffusion
        config.predictionType = .sample
        assertUnsupported(try makeScheduler(name: "euler_a", config: config), "euler_a sample")
        assertUnsupported(try makeScheduler(name: "pndm", config: config), "pndm sample")
    }

    func testUnknownSchedulerNameListsTheValidOnes() {
        XCTAssertThrowsError(try makeScheduler(name: "dpmpp_sde", config: .stableDiffusion)) { error in
            XCTAssertEqual(error as? SchedulerError, .unknownScheduler("dpmpp_sde", valid: schedulerNames))
            let text = "\(error)"
            XCTAssertTrue(text.contains("\"dpmpp_sde\""), text)
            for name in schedulerNames { XCTAssertTrue(text.contains(name), text) }
        }
    }

    func testInvalidStepCounts() throws {
        for name in schedulerNames {
            var scheduler = try makeScheduler(name: name, config: .stableDiffusion)
            for count in [0, -3, 1001] {
                XCTAssertThrowsError(try scheduler.setTimesteps(count), "\(name) \(count)") { error in
                    XCTAssertEqual(error as? SchedulerError, .invalidStepCount(count, trainTimesteps: 1000))
                    XCTAssertTrue("\(error)".contains("\(count)"))
                }
            }
            XCTAssertNoThrow(try scheduler.setTimesteps(1), name)
            if name == "lcm" {
                // diffusers: ValueError beyond original_inference_steps (50).
                XCTAssertNoThrow(try scheduler.setTimesteps(50), name)
                XCTAssertThrowsError(try scheduler.setTimesteps(51), name) {
                    guard case .unrunnableSchedule = $0 as? SchedulerError else { return XCTFail("\($0)") }
                }
            } else {
                XCTAssertNoThrow(try scheduler.setTimesteps(1000), name)
            }
        }
    }

    func testImageToImageStartMatchesGetTimesteps() {
        // int(steps * strength) in float64, as Python: 50 * 0.3 = 15.000000000000002, 25 * 0.3 = 7.5.
        XCTAssertEqual(imageToImageStart(steps: 10, strength: 0.3), 7)
        XCTAssertEqual(imageToImageStart(steps: 25, strength: 0.3), 18)
        XCTAssertEqual(imageToImageStart(steps: 50, strength: 0.3), 35)
        XCTAssertEqual(imageToImageStart(steps: 25, strength: 0.6), 10)
        XCTAssertEqual(imageToImageStart(steps: 20, strength: 1.0), 0)
        XCTAssertEqual(imageToImageStart(steps: 20, strength: 1.5), 0)
        XCTAssertEqual(imageToImageStart(steps: 20, strength: 0), 20)
    }

    /// The protocol's no-noise `step` and a text-to-image loop through `any Scheduler`.
    func testLoopThroughExistential() throws {
        for name in schedulerNames where name != "euler_a" {
            var scheduler = try makeScheduler(name: name, config: .stableDiffusion)
            try scheduler.setTimesteps(4)
            var latents = Tensor(shape: [1, 4, 2, 2], repeating: 0.5) * scheduler.initNoiseSigma
            for t in scheduler.timesteps {
                let output = scheduler.scaleModelInput(latents, timestep: t) * 0.1
                latents = scheduler.step(modelOutput: output, timestep: t, sample: latents)
            }
            XCTAssertTrue(latents.scalars.allSatisfy { $0.isFinite }, name)
        }
    }
}

final class GaussKronrodTests: XCTestCase {
    func testPolynomialsAreExact() {
        XCTAssertEqual(GaussKronrod.integrate({ $0 * $0 * $0 }, from: 0, to: 1), 0.25, accuracy: 1e-16)
        let quadratic: (Double) -> Double = { x in 3 * x * x - 2 * x + 1 }
        XCTAssertEqual(GaussKronrod.integrate(quadratic, from: 2, to: -1), -9, accuracy: 1e-13)
    }

    func testSmoothAndSingularIntegrands() {
        XCTAssertEqual(GaussKronrod.integrate(sin, from: 0, to: .pi, relativeTolerance: 1e-12), 2, accuracy: 1e-14)
        // √x has an unbounded derivative at 0: bisection is needed.
        XCTAssertEqual(GaussKronrod.integrate({ $0.squareRoot() }, from: 0, to: 1, relativeTolerance: 1e-10,
                                              absoluteTolerance: 0), 2.0 / 3.0, accuracy: 1e-10)
    }
}
