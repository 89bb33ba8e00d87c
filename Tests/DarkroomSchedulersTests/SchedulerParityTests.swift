@testable import DarkroomSchedulers
import DarkroomTensor
import Foundation
import XCTest

/// Parity with diffusers 0.42.1 (fixtures from `tools/reference/make_scheduler_fixtures.py`).
///
/// Tolerances:
/// - alphas_cumprod, integer timesteps (DDIM, PNDM, DPM-Solver incl. Karras), non-Karras Euler/LMS
///   timesteps: exact.
/// - Fractional Karras timesteps (Euler/LMS/Heun, DPM2's interpolated ones): relative 1e-6 (NumPy's SIMD
///   float32 `log` of the sigma table differs from the correctly rounded one in the last bits). DPM2 a's
///   interpolated timesteps: relative 1e-5 — σ_down = (σ_next² − σ_up²)^½ cancels up to 8 bits in float32, so
///   torch's 1-ulp `** 0.5` differences become ~4e-6 in σ_interpol and ~1e-3 in its timestep (measured worst
///   2.3e-6 relative); the loops through those timesteps still agree within 3e-6.
/// - Sigmas and init_noise_sigma: relative 1e-6 (torch's float32 sqrt is not correctly rounded:
///   ≤ 1 ulp = 1.2e-7 relative).
/// - Final samples of full loops and add_noise outputs: max-norm relative error
///   max|swift − diffusers| / max|diffusers| ≤ 1e-5.
/// - LMS coefficients: the quadrature on diffusers' own sigmas ≤ 1e-12 relative to scipy's `quad`;
///   end to end (our sigmas) ≤ 1e-5.
/// - Against a `--correctly-rounded` fixture (see the generator; `DARKROOM_SCHEDULER_FIXTURES`):
///   every loop except Euler/LMS Karras must be bit-exact.
final class SchedulerParityTests: XCTestCase {
    let fixtures = SchedulerFixtures.shared

    func testAlphasCumprodMatchesDiffusers() throws {
        let configs: [String: SchedulerConfig] = [
            "sd15": try fixtures.config("sd15"),
            "linear_default": try fixtures.config("linear_default"),
            "cosine": try fixtures.config("cosine"),
        ]
        for (name, config) in configs {
            let expected = SchedulerFixtures.floats(fixtures.alphas_cumprod[name]!)
            let actual = try NoiseSchedule(config: config, scheduler: "test").alphasCumprod
            XCTAssertEqual(actual.count, expected.count)
            let mismatches = zip(actual, expected).filter { $0 != $1 }.count
            XCTAssertEqual(mismatches, 0, "\(name): \(mismatches) of \(expected.count) alphas_cumprod differ")
        }
    }

    func testSchedulesMatchDiffusers() throws {
        var worstTimestep = 0.0, worstSigma = 0.0
        for case_ in fixtures.schedules {
            var config = try fixtures.config(case_.config)
            config.timestepSpacing = TimestepSpacing(rawValue: case_.spacing)
            var scheduler = try makeScheduler(name: case_.recipe, config: config)
            try scheduler.setTimesteps(case_.steps)
            let label = "\(case_.recipe) \(case_.spacing) \(case_.steps)"
            let karras = case_.recipe.hasSuffix("karras")
            // Karras timesteps of Euler/LMS/Heun, and DPM2's interpolated timesteps (float32 `_sigma_to_t`).
            let fractional = (karras && !case_.recipe.hasPrefix("dpmpp")) || case_.recipe.hasPrefix("dpm2")
            XCTAssertEqual(scheduler.timesteps.count, case_.timesteps.count, label)
            guard scheduler.timesteps.count == case_.timesteps.count else { continue }
            for (a, b) in zip(scheduler.timesteps, case_.timesteps) {
                if fractional {
                    let error = Double(abs(a - b)) / max(Double(abs(b)), 1)
                    worstTimestep = max(worstTimestep, error)
                    XCTAssertLessThanOrEqual(error, case_.recipe.hasPrefix("dpm2_a") ? 1e-5 : 1e-6, "\(label): timestep \(a) vs \(b)")
                } else {
                    XCTAssertEqual(a, b, "\(label): timesteps \(scheduler.timesteps) vs \(case_.timesteps)")
                }
            }
            XCTAssertEqual(scheduler.initNoiseSigma, case_.init_noise_sigma, accuracy: case_.init_noise_sigma * 1e-6, "\(label): init_noise_sigma")
            if let expected = case_.sigmas {
                let actual = try XCTUnwrap(sigmas(of: scheduler), label)
                XCTAssertEqual(actual.count, expected.count, label)
                for (a, b) in zip(actual, expected) {
                    let error = b == 0 ? Double(abs(a)) : Double(abs(a - b)) / Double(abs(b))
                    worstSigma = max(worstSigma, error)
                    XCTAssertLessThanOrEqual(error, 1e-6, "\(label): sigma \(a) vs \(b)")
                }
            }
        }
        print("schedules: \(fixtures.schedules.count) cases; worst Karras timestep rel error \(worstTimestep), worst sigma rel error \(worstSigma)")
    }

    private func sigmas(of scheduler: any Scheduler) -> [Float]? {
        switch scheduler {
        case let s as EulerDiscreteScheduler: return s.sigmas
        case let s as EulerAncestralDiscreteScheduler: return s.sigmas
        case let s as LMSDiscreteScheduler: return s.sigmas
        case let s as DPMSolverMultistepScheduler: return s.sigmas
        case let s as UniPCMultistepScheduler: return s.sigmas
        case let s as HeunDiscreteScheduler: return s.sigmas
        case let s as KDPM2DiscreteScheduler: return s.sigmas
        case let s as KDPM2AncestralDiscreteScheduler: return s.sigmas
        default: return nil
        }
    }

    /// Full denoising loops, as StableDiffusion(Img2Img)Pipeline runs them.
    func testLoopsMatchDiffusers() throws {
        let x0 = fixtures.tensor(fixtures.x0), noise = fixtures.tensor(fixtures.noise)
        let stepNoise = fixtures.step_noise.map { fixtures.tensor($0) }
        var worst: [String: Double] = [:], worstNoised = 0.0, bitExact = 0
        for case_ in fixtures.loops {
            let label = "\(case_.recipe) \(case_.config) steps \(case_.steps) strength \(case_.strength) eta \(case_.eta) \(case_.spacing ?? "")"
            var config = try fixtures.config(case_.config)
            if let spacing = case_.spacing { config.timestepSpacing = TimestepSpacing(rawValue: spacing) }
            var scheduler = try makeScheduler(name: case_.recipe, config: config, eta: case_.eta)
            try scheduler.setTimesteps(case_.steps)
            XCTAssertEqual(scheduler.timesteps.count, case_.timesteps.count, label)
            let fractional = (case_.recipe.hasSuffix("karras") && !case_.recipe.hasPrefix("dpmpp")) || case_.recipe.hasPrefix("dpm2")
            if !fractional {
                XCTAssertEqual(scheduler.timesteps, case_.timesteps, label)
            }
            XCTAssertEqual(scheduler.initNoiseSigma, case_.init_noise_sigma, accuracy: case_.init_noise_sigma * 1e-6, label)
            // diffusers' get_timesteps: t_start · scheduler.order (2 for Heun and DPM2).
            let start = imageToImageStart(steps: case_.steps, strength: case_.strength, order: scheduler.order)
            XCTAssertEqual(start, case_.begin_index, label)
            let timesteps = Array(scheduler.timesteps[start...])
            scheduler.setBeginIndex(start)
            var latents: Tensor
            if case_.strength >= 1 {
                latents = noise * scheduler.initNoiseSigma
            } else {
                latents = scheduler.addNoise(original: x0, noise: noise, timestep: timesteps[0])
                let error = relativeError(latents.scalars, SchedulerFixtures.floats(try XCTUnwrap(case_.noised)))
                worstNoised = max(worstNoised, error.relative)
                XCTAssertLessThanOrEqual(error.relative, 1e-5, "\(label): add_noise")
            }
            var draws = 0
            for t in timesteps {
                let input = scheduler.scaleModelInput(latents, timestep: t)
                let output = dummyModel(input, t)
                latents = scheduler.step(modelOutput: output, timestep: t, sample: latents, noise: {
                    defer { draws += 1 }
                    return stepNoise[draws]
                })
            }
            XCTAssertEqual(draws, case_.noise_draws, "\(label): noise draws")
            let expected = SchedulerFixtures.floats(case_.final)
            let error = relativeError(latents.scalars, expected)
            if latents.scalars == expected { bitExact += 1 }
            if fixtures.correctly_rounded && !fractional && !["unipc", "heun", "lcm", "dpm2", "dpm2_a"].contains(case_.recipe) {
                XCTAssertEqual(latents.scalars, expected, "\(label): not bit-exact against correctly rounded diffusers")
            }
            worst[case_.recipe] = max(worst[case_.recipe] ?? 0, error.relative)
            XCTAssertLessThanOrEqual(error.relative, 1e-5, "\(label): final sample (abs \(error.absolute))")
        }
        print("loops: \(fixtures.loops.count) cases, \(bitExact) bit-exact; worst add_noise rel error \(worstNoised)")
        for (recipe, value) in worst.sorted(by: { $0.key < $1.key }) { print("  \(recipe): worst final rel error \(value)") }
    }

    func testLMSCoefficientsMatchScipyQuad() throws {
        var worstQuadrature = 0.0, worstEndToEnd = 0.0, count = 0
        for case_ in fixtures.lms {
            var scheduler = try XCTUnwrap(makeScheduler(name: case_.recipe, config: try fixtures.config(case_.config)) as? LMSDiscreteScheduler)
            try scheduler.setTimesteps(case_.steps)
            for (i, row) in case_.coefficients.enumerated() {
                for (k, expected) in row.enumerated() {
                    let label = "\(case_.recipe) \(case_.steps) step \(i) coefficient \(k)"
                    // The quadrature alone: diffusers' sigmas in, scipy's quad result expected.
                    let quadrature = LMSDiscreteScheduler.lmsCoefficient(sigmas: case_.sigmas, order: row.count, index: i, currentOrder: k)
                    let quadratureError = abs(quadrature - expected) / abs(expected)
                    worstQuadrature = max(worstQuadrature, quadratureError)
                    XCTAssertLessThanOrEqual(quadratureError, 1e-12, "\(label): \(quadrature) vs \(expected)")
                    // End to end, on this implementation's sigmas.
                    let actual = scheduler.lmsCoefficient(order: row.count, index: i, currentOrder: k)
                    let error = abs(actual - expected) / abs(expected)
                    worstEndToEnd = max(worstEndToEnd, error)
                    XCTAssertLessThanOrEqual(error, 1e-5, "\(label): \(actual) vs \(expected)")
                    count += 1
                }
            }
        }
        print("LMS: \(count) coefficients; quadrature vs scipy.integrate.quad worst rel error \(worstQuadrature); end to end \(worstEndToEnd)")
    }
}
