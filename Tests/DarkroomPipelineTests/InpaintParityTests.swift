import DarkroomPipeline
import DarkroomTensor
import DarkroomTestSupport
import XCTest

/// Inpainting against diffusers' StableDiffusionInpaintPipeline (cases `inp9_*`: the 9-channel
/// inpainting model; `inp4_*`: a plain 4-channel model, blended after every step), strengths 1.0 and
/// 0.75, Euler and PNDM, square and non-square. diffusers pastes nothing back (without
/// `padding_mask_crop`), so the comparison runs with `pasteBack: false`; 1e-3 as for img2img.
final class InpaintParityTests: XCTestCase {
    func testNineAndFourChannelCases() throws {
        let expected = try PipelineFixtures.expected()
        let cases = try PipelineFixtures.cases().filter { $0.pipeline == "inpaint" && $0.paddingMaskCrop == nil }
        XCTAssertEqual(cases.count, 7)
        for c in cases {
            let pipeline = try PipelineFixtures.pipeline(c.model)
            let image = ImageTensor.tensor(from: try PipelineFixtures.input(c.image))
            let mask = ImageTensor.mask(from: try PipelineFixtures.input(try XCTUnwrap(c.mask)))
            let result = try pipeline.inpaint(image, mask: mask, settings: c.settings, pasteBack: false)
            let want = try expected.tensor("\(c.name).image")
            assertWithin(result.image.permuted([0, 2, 3, 1]).reshaped(want.shape), want, absolute: 1e-3, c.name)
        }
    }

    /// With paste-back (the default) every pixel outside the mask is the input's, exactly.
    func testPasteBackKeepsEveryUnmaskedPixel() throws {
        let c = try XCTUnwrap(try PipelineFixtures.cases().first { $0.name == "inp4_euler_s075" })
        let input = try PipelineFixtures.input(c.image)
        let mask = ImageTensor.mask(from: try PipelineFixtures.input(try XCTUnwrap(c.mask)))
        let result = try PipelineFixtures.pipeline(c.model).inpaint(ImageTensor.tensor(from: input), mask: mask, settings: c.settings)
        let output = try ImageTensor.image(fromUnitRange: result.image)
        let m = mask.scalars
        var changedInside = 0
        for i in 0..<(input.width * input.height) {
            for channel in 0..<3 {
                let (a, b) = (output.samples[i * 3 + channel], input.samples[i * 3 + channel])
                if m[i] < 0.5 { XCTAssertEqual(a, b, "pixel \(i) outside the mask changed") } else if a != b { changedInside += 1 }
            }
        }
        XCTAssertGreaterThan(changedInside, 1000, "the masked area was repainted")
    }

    func testBadMasksNameTheProblem() throws {
        let pipeline = try PipelineFixtures.pipeline("sd1_inpaint")
        let image = ImageTensor.tensor(from: try PipelineFixtures.input("photo.png"))
        let wrongSize = ImageTensor.mask(from: try PipelineFixtures.input("mask_ns.png"))
        XCTAssertThrowsError(try pipeline.inpaint(image, mask: wrongSize, settings: GenerationSettings())) {
            XCTAssertEqual($0 as? PipelineError, .maskSizeMismatch(mask: "mask", maskSize: "64×48", imageSize: "64×64"))
        }
        let black = Tensor(zeros: [1, 1, 64, 64])
        XCTAssertThrowsError(try pipeline.inpaint(image, mask: black, settings: GenerationSettings())) {
            XCTAssertEqual($0 as? PipelineError, .emptyMask(mask: "mask"))
        }
    }
}
