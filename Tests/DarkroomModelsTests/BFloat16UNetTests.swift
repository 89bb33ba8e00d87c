import DarkroomModels
import DarkroomTensor
import DarkroomWeights
import Foundation
import DarkroomTestSupport
import XCTest

/// A UNet call in bf16 (`Tensor.precision = .bf16`) against the fp32 reference, beside diffusers' own bf16:
/// `tools/reference/make_bf16_fixtures.py` recorded, on the model fixtures' UNet inputs, diffusers' fp32 output
/// and its output under `torch.autocast("cpu", dtype=torch.bfloat16)` (`<variant>/bf16.safetensors`).
///
/// Both round the products' operands to bf16 and keep norms and softmax in fp32. Autocast also rounds every
/// product's output to bf16 and runs the element-wise ops that follow on bf16 tensors; Darkroom keeps those in
/// fp32. So Darkroom's error should not exceed autocast's: the bound is `factor` = 1.0 of it. Measured
/// (2026-12-03, oneDNN 2.6.3, torch 2.13): Darkroom 0.0071–0.0089 against autocast's 0.0118–0.0168, 0.48–0.66×
/// of it on every case, so the bound leaves room for other summation orders without hiding a regression.
final class BFloat16UNetTests: XCTestCase {
    static let factor = 1.0

    override func tearDown() { Tensor.precision = .fp32 }

    func relativeL2(_ x: Tensor, _ reference: Tensor) -> Double {
        let (a, b) = (x.scalars, reference.scalars)
        let difference = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        return (difference / b.reduce(0.0) { $0 + Double($1) * Double($1) }).squareRoot()
    }

    func check(_ variant: String) throws {
        let unet = try ModelFixtures.load(variant, .diffusers).unet
        let e = try ModelFixtures.expected(variant)
        let reference = try SafetensorsFile(url: ModelFixtures.folder(variant).appendingPathComponent("bf16.safetensors"))
        let context = try e.tensor("unet.context")
        for (sample, t, out, ctx) in [("unet.sample", "unet.t0", "unet.out0", context),
                                      ("unet.sample", "unet.t1", "unet.out1", context),
                                      ("unet.sample_ns", "unet.t_ns", "unet.out_ns", context),
                                      ("unet.sample_odd", "unet.t_odd", "unet.out_odd", context.slice(0..<1, axis: 0))] {
            let fp32 = try reference.tensor("\(out)_fp32")
            let autocastError = relativeL2(try reference.tensor("\(out)_autocast"), fp32)
            Tensor.precision = .bf16
            let ours = relativeL2(unet(try e.tensor(sample), timesteps: try e.tensor(t).scalars, context: ctx), fp32)
            Tensor.precision = .fp32
            let message = "\(variant) \(out): Darkroom bf16 relative L2 error \(ours), diffusers autocast \(autocastError)"
            print(message)
            XCTAssertLessThanOrEqual(ours, Self.factor * autocastError, message)
            XCTAssertGreaterThan(ours, 1e-5, "\(message): the bf16 products ran")
        }
        XCTAssertEqual(Precision.fallbackReasons, [])
    }

    func testSD1() throws { try check("sd1") }
    func testSD2VPrediction() throws { try check("sd2v") }

    /// The fixtures' planes (at most 16 × 16) are mostly below bf16 Winograd's threshold; with it at 1 × 1 every 3 × 3
    /// convolution runs F(2×2, 3×3) with bf16 products, and the whole call must still stay within autocast's error.
    func testBF16WinogradOnEveryPlane() throws {
        let saved = Tensor.bf16WinogradMinimumPlane
        defer { Tensor.bf16WinogradMinimumPlane = saved }
        Tensor.bf16WinogradMinimumPlane = 1
        XCTAssertEqual(Tensor.bf16WinogradTransforms, [.f23])
        try check("sd1")
        try check("sd2v")
    }
}
