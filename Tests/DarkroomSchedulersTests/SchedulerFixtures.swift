@testable import DarkroomSchedulers
import DarkroomTensor
import Foundation

/// `Tests/Fixtures/schedulers/schedulers.json`, written by `tools/reference/make_scheduler_fixtures.py`
/// (diffusers 0.42.1, torch 2.15, numpy 2.4; tensors are base64 little-endian float32).
struct SchedulerFixtures: Decodable {
    struct Loop: Decodable {
        let recipe: String
        let config: String
        let steps: Int
        let strength: Double
        let eta: Float
        let begin_index: Int
        let timesteps: [Float]
        let init_noise_sigma: Float
        let noise_draws: Int
        let noised: String?
        let final: String
        /// A `timestep_spacing` override of the config (issue 12's trailing-spacing loops).
        let spacing: String?
    }

    struct Schedule: Decodable {
        let recipe: String
        let config: String
        let spacing: String
        let steps: Int
        let timesteps: [Float]
        let sigmas: [Float]?
        let init_noise_sigma: Float
    }

    struct LMS: Decodable {
        let recipe: String
        let config: String
        let steps: Int
        let coefficients: [[Double]]
        let sigmas: [Float]
    }

    /// Written with `--correctly-rounded` (torch's float32 sqrt/log/exp replaced by correctly rounded ones).
    let correctly_rounded: Bool
    let shape: [Int]
    let configs: [String: String]
    let x0: String
    let noise: String
    let step_noise: [String]
    let alphas_cumprod: [String: String]
    let loops: [Loop]
    let schedules: [Schedule]
    let lms: [LMS]

    /// The committed fixture, or `$DARKROOM_SCHEDULER_FIXTURES` (e.g. a `--correctly-rounded` one).
    static let url = ProcessInfo.processInfo.environment["DARKROOM_SCHEDULER_FIXTURES"].map { URL(fileURLWithPath: $0) }
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/schedulers/schedulers.json")

    static let shared: SchedulerFixtures = {
        do {
            return try JSONDecoder().decode(SchedulerFixtures.self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot read \(url.path): \(error)")
        }
    }()

    static func floats(_ base64: String) -> [Float] {
        guard let data = Data(base64Encoded: base64) else { fatalError("bad base64 in fixture") }
        return data.withUnsafeBytes { raw in
            (0..<data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    func tensor(_ base64: String) -> Tensor { Tensor(shape: shape, scalars: Self.floats(base64)) }

    func config(_ name: String) throws -> SchedulerConfig {
        guard let text = configs[name] else { fatalError("no config \(name)") }
        return try SchedulerConfig(json: Data(text.utf8))
    }
}

/// The fixture's dummy model: model(x, t) = x · 0.1 + float32(t) · 1e-3, element-wise in float32.
func dummyModel(_ x: Tensor, _ t: Float) -> Tensor {
    let offset = t * Float(1e-3)
    let scale = Float(0.1)
    return Tensor(shape: x.shape, scalars: x.scalars.map { $0 * scale + offset })
}

/// Max-norm relative error max|a − b| / max|b|, and the max absolute error.
func relativeError(_ a: [Float], _ b: [Float]) -> (relative: Double, absolute: Double) {
    precondition(a.count == b.count)
    var maxDiff = 0.0, maxRef = 0.0
    for (x, y) in zip(a, b) {
        maxDiff = max(maxDiff, abs(Double(x) - Double(y)))
        maxRef = max(maxRef, abs(Double(y)))
    }
    return (maxRef > 0 ? maxDiff / maxRef : maxDiff, maxDiff)
}
