import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTestSupport
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import XCTest

/// `Tests/Fixtures/pipelines/`, written by `tools/reference/make_pipeline_fixtures.py`: whole diffusers
/// 0.42.1 pipeline runs on the small random models of `Tests/Fixtures/models` (`cases.json` holds every
/// setting; `expected.safetensors` the `output_type="np"` images and the start/final latents).
struct PipelineCase {
    let name: String, pipeline: String, model: String, recipe: String
    let prompt: String, negativePrompt: String
    let steps: Int, strength: Double, guidance: Float, seed: UInt64, eta: Float
    let image: String, mask: String?
    let paddingMaskCrop: Int?
    let timestepSpacing: String?

    init(_ json: [String: Any]) throws {
        name = try XCTUnwrap(json["name"] as? String)
        pipeline = try XCTUnwrap(json["pipeline"] as? String)
        model = try XCTUnwrap(json["model"] as? String)
        recipe = try XCTUnwrap(json["recipe"] as? String)
        prompt = try XCTUnwrap(json["prompt"] as? String)
        negativePrompt = (json["negative_prompt"] as? String) ?? ""
        steps = try XCTUnwrap(json["steps"] as? Int)
        strength = try XCTUnwrap(json["strength"] as? Double)
        guidance = Float(try XCTUnwrap(json["guidance"] as? Double))
        seed = UInt64(try XCTUnwrap(json["seed"] as? Int))
        eta = Float((json["eta"] as? Double) ?? 0)
        image = try XCTUnwrap(json["image"] as? String)
        mask = json["mask"] as? String
        paddingMaskCrop = json["padding_mask_crop"] as? Int
        timestepSpacing = json["timestep_spacing"] as? String
    }

    var settings: GenerationSettings {
        var s = GenerationSettings()
        s.prompt = prompt; s.negativePrompt = negativePrompt
        s.steps = steps; s.strength = strength; s.guidance = guidance
        s.sampler = recipe; s.seed = seed; s.eta = eta; s.timestepSpacing = timestepSpacing
        return s
    }
}

enum PipelineFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/pipelines")
    static let modelsRoot = root.deletingLastPathComponent().appendingPathComponent("models")

    /// `samplers/`: issue 12's samplers (image and final latents only; inputs shared with the root's).
    static let samplersRoot = root.appendingPathComponent("samplers")

    static func cases(in folder: URL = root) throws -> [PipelineCase] {
        let data = try Data(contentsOf: folder.appendingPathComponent("cases.json"))
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try XCTUnwrap(json["cases"] as? [[String: Any]]).map(PipelineCase.init)
    }

    static func expected(in folder: URL = root) throws -> SafetensorsFile {
        try SafetensorsFile(url: folder.appendingPathComponent("expected.safetensors"))
    }

    /// `winograd/`: issue 13 part 2's 256 px case, whose planes reach 32×32 (its own inputs).
    static let winogradRoot = root.appendingPathComponent("winograd")

    static func input(_ name: String, in folder: URL = root) throws -> Image {
        try ImageDecoder.decode(fileAt: folder.appendingPathComponent("inputs").appendingPathComponent(name)).image
    }

    nonisolated(unsafe) static var loaded: [String: StableDiffusionPipeline] = [:]

    /// The case's model from its diffusers folder (tokenizer: the bundled one, as the models' own).
    static func pipeline(_ model: String) throws -> StableDiffusionPipeline {
        if let cached = loaded[model] { return cached }
        let models = try StableDiffusionModels.load(modelsRoot.appendingPathComponent(model).appendingPathComponent("diffusers"))
        let pipeline = StableDiffusionPipeline(models: models, tokenizer: try CLIPTokenizer.bundled())
        loaded[model] = pipeline
        return pipeline
    }
}

