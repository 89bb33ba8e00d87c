import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTestSupport
import XCTest

/// Issue 13, part 2: a guided img2img case whose convolutions run through Winograd by default, against diffusers
/// 0.42.1 fp32 (`Tests/Fixtures/pipelines/winograd/`, written by `tools/reference/make_winograd_pipeline_fixture.py`):
/// the tiny SD 2.x v-prediction model at 256 px, LMS, 10 steps at strength 0.75 (7 UNet calls), guidance 7.5,
/// seed 1234. The 32×32 latent puts the UNet's first level (32 channels, 32×32) and every VAE level (256 … 32 px)
/// on planes of at least `Tensor.winogradMinimumPlane`.
final class WinogradParityTests: XCTestCase {
    /// The decoded image on the default fp32 path must be within 1e-3 of diffusers' everywhere, the bound of the
    /// other pipeline tests (issue 13's requirement is 2/255). Also prints the same case with im2col, with what
    /// Darkroom ran before (F(4×4, 3×3), points 0, ±1, ±2, kernel transform in Float32, on every plane from 32×32),
    /// and with either F(4×4) or F(2×2) on every plane. On this tiny model (32 channels, weights of 2 significant
    /// bits) all of them measure 5.1–5.8e-5 (0.013–0.015/255): its 32-channel sums round too little, and its 7 steps
    /// amplify too little, to tell the algorithms apart at this level. The kernel-level tests
    /// (`WinogradErrorTests`) and `darkroom bench winograd` do.
    func testGuidedImageToImageOnWinogradPlanes() throws {
        let folder = PipelineFixtures.winogradRoot
        let expected = try PipelineFixtures.expected(in: folder)
        let cases = try PipelineFixtures.cases(in: folder)
        XCTAssertEqual(cases.map(\.name), ["i2i_sd2v_lms_256"])
        let c = try XCTUnwrap(cases.first)
        XCTAssertEqual(c.recipe, "lms"); XCTAssertEqual(c.guidance, 7.5); XCTAssertEqual(c.strength, 0.75)
        let pipeline = try PipelineFixtures.pipeline(c.model)
        let image = ImageTensor.tensor(from: try PipelineFixtures.input(c.image, in: folder))
        let want = try expected.tensor("\(c.name).image")
        XCTAssertEqual(want.shape, [256, 256, 3])

        let saved = (Tensor.convolutionAlgorithm, Tensor.winograd, Tensor.winogradLargePlane)
        defer { (Tensor.convolutionAlgorithm, Tensor.winograd, Tensor.winogradLargePlane) = saved }
        func run(_ algorithm: ConvolutionAlgorithm, _ transform: WinogradTransform = .f43,
                 largePlane: Int = saved.2) throws -> (Tensor, Float) {
            (Tensor.convolutionAlgorithm, Tensor.winograd, Tensor.winogradLargePlane) = (algorithm, transform, largePlane)
            let got = try pipeline.imageToImage(image, settings: c.settings).image.permuted([0, 2, 3, 1]).reshaped(want.shape)
            return (got, zip(got.scalars, want.scalars).map { abs($0 - $1) }.max() ?? .infinity)
        }
        func report(_ label: String, _ worst: Float) { print(String(format: "  %@: max |Δ| %.2e = %.3f/255", label, worst, worst * 255)) }
        XCTAssertEqual(saved.1, .f43)
        let (got, worst) = try run(.automatic)
        assertWithin(got, want, absolute: 1e-3, c.name)
        report("default (F(2x2) below 128x128, F(4x4) 0,±1,1/2,-2 from there)", worst)
        // The default path did take Winograd: im2col everywhere gives a different image.
        let (im2col, im2colWorst) = try run(.im2col)
        XCTAssertNotEqual(im2col.scalars, got.scalars)
        report("im2col", im2colWorst)
        report("F(4x4) 0,±1,±2, U in fp32, on every plane from 32x32 (before)",
               try run(.automatic, .f43IntegerFloatKernel, largePlane: 0).1)
        report("F(4x4) 0,±1,1/2,-2 on every plane from 32x32", try run(.automatic, .f43, largePlane: 0).1)
        report("F(2x2) on every plane from 32x32", try run(.automatic, .f23, largePlane: .max).1)
    }
}
