import DarkroomPipeline
import DarkroomSchedulers
import DarkroomService
import XCTest

final class RecipeTests: XCTestCase {
    func parse(_ json: String) throws -> Recipe { try Recipe.parse(Data(json.utf8), file: "recipe.json") }

    func problems(_ json: String, file: StaticString = #filePath, line: UInt = #line) -> [RecipeProblem] {
        do { _ = try parse(json); XCTFail("accepted \(json)", file: file, line: line); return [] } catch let error as RecipeError {
            return error.problems
        } catch { XCTFail("\(error)", file: file, line: line); return [] }
    }

    func testDefaultsAreA1111s() throws {
        let recipe = try parse(#"{"mode": "inpaint", "prompt": "a red fox", "mask": "fox.mask.png"}"#)
        let c = recipe.configuration
        XCTAssertEqual(c.mode, .inpaint)
        XCTAssertEqual(c.generation.prompt, "a red fox")
        XCTAssertEqual(c.maskBlur, 4)
        XCTAssertTrue(c.pasteBack)
        XCTAssertEqual(c.maskedContent, .original)
        XCTAssertEqual(c.inpaintArea, .whole)
        XCTAssertEqual(c.count, 1)
        XCTAssertNil(recipe.seed, "no seed: the job draws one and records it")
        XCTAssertEqual(recipe.mask, "fox.mask.png")
    }

    func testRestorationDefaultsApplyOnlyWhereTheRecipeIsSilent() throws {
        let quiet = try parse(#"{"mode": "restore"}"#).configuration
        XCTAssertEqual(quiet.generation.strength, 0.3)
        XCTAssertEqual(quiet.generation.prompt, PipelineConfiguration.restorationPrompt)
        XCTAssertFalse(quiet.colorize)
        let explicit = try parse(#"{"mode": "restore", "prompt": "", "strength": 0.2, "color": true}"#).configuration
        XCTAssertEqual(explicit.generation.prompt, "")
        XCTAssertEqual(explicit.generation.strength, 0.2)
        XCTAssertTrue(explicit.colorize)
    }

    func testEveryFieldIsRead() throws {
        let recipe = try parse("""
            {"mode": "img2img", "prompt": "p", "negative_prompt": "n", "strength": 0.4, "steps": 30, "guidance": 5,
             "sampler": "euler_a", "seed": 18446744073709551615, "count": 3, "prediction": "v_prediction",
             "model": "v2-1_768-ema-pruned", "size": "crop", "clip_skip": 2, "eta": 0.5,
             "vae_tiling": "never"}
            """)
        let g = recipe.configuration.generation
        XCTAssertEqual([g.strength, Double(g.guidance), Double(g.eta)], [0.4, 5, 0.5])
        XCTAssertEqual([g.steps, recipe.configuration.count, g.clipSkip], [30, 3, 1])
        XCTAssertEqual(g.sampler, "euler_a")
        XCTAssertEqual(g.prediction, "v_prediction")
        XCTAssertEqual(recipe.seed, UInt64.max, "seeds are 64-bit")
        XCTAssertEqual(recipe.model, "v2-1_768-ema-pruned")
        XCTAssertEqual(recipe.configuration.sizeHandling, .crop)
        XCTAssertEqual(g.vaeTiling, .never)
        XCTAssertEqual(try parse(#"{"mode": "img2img"}"#).configuration.generation.vaeTiling, .auto)
        XCTAssertEqual(problems(#"{"mode": "img2img", "vae_tiling": true}"#).map(\.field), ["vae_tiling"])
        XCTAssertEqual(try parse(#"{"mode": "img2img", "seed": "9223372036854775808"}"#).seed, 1 << 63, "a seed may be a string")
    }

    func testAllProblemsAtOnceEachNamingItsField() {
        let found = problems("""
            {"mode": "paint", "strenght": 0.5, "steps": 0, "guidance": "high", "sampler": "euler_ancestral",
             "count": 2.5, "paste_back": 1, "mask_blur": -1, "mask": "../../etc/passwd", "model": "/abs/model"}
            """)
        let fields = Set(found.map(\.field))
        XCTAssertEqual(fields, ["mode", "strenght", "steps", "guidance", "sampler", "count", "paste_back", "mask_blur", "mask", "model"])
        XCTAssert(found.first { $0.field == "strenght" }!.message.contains("did you mean 'strength'"))
        XCTAssert(found.first { $0.field == "sampler" }!.message.contains("did you mean 'euler_a'"))
        XCTAssert(found.first { $0.field == "guidance" }!.message.contains("not a string"))
        XCTAssert(found.first { $0.field == "paste_back" }!.message.contains("true or false"))
    }

    func testMalformedAndMissing() {
        XCTAssertEqual(problems("{\"mode\": \"img2img\",").map(\.field), ["(file)"])
        XCTAssertEqual(problems("[1, 2]").map(\.field), ["(file)"])
        XCTAssertEqual(problems("{}").map(\.field), ["mode"])
        XCTAssertEqual(problems(#"{"mode": "img2img", "strength": 1.5}"#).map(\.field), ["strength"])
        XCTAssertEqual(problems(#"{"mode": "img2img", "strength": true}"#).map(\.field), ["strength"])
    }

    func testA1111ParametersText() {
        var c = PipelineConfiguration()
        c.mode = .inpaint
        c.generation.prompt = "a red fox, (snow:1.2)"
        c.generation.negativePrompt = "blurry"
        c.generation.steps = 20; c.generation.sampler = "dpmpp_2m_karras"; c.generation.guidance = 7
        c.generation.strength = 0.75
        let text = A1111Parameters.text(configuration: c, seed: 42, width: 512, height: 768, modelName: "sd15", modelHash: nil)
        XCTAssertEqual(text, """
            a red fox, (snow:1.2)
            Negative prompt: blurry
            Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.0, Seed: 42, Size: 512x768, Model: sd15, Denoising strength: 0.75, Mask blur: 4, Precision: fp32, Version: Darkroom
            """)
    }
}

/// The examples in Recipes/ are valid recipes, and the schema lists exactly the keys the parser knows.
final class ExampleRecipeTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Recipes")

    func testExamplesParse() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path)
            .filter { $0.hasSuffix(".json") && $0 != "recipe.schema.json" }
        XCTAssertGreaterThanOrEqual(names.count, 3)
        for name in names {
            XCTAssertNoThrow(try Recipe.parse(try Data(contentsOf: Self.folder.appendingPathComponent(name)), file: name), name)
        }
    }

    func testSchemaMatchesParser() throws {
        let data = try Data(contentsOf: Self.folder.appendingPathComponent("recipe.schema.json"))
        let schema = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let properties = try XCTUnwrap(schema["properties"] as? [String: Any])
        XCTAssertEqual(Set(properties.keys), Recipe.knownKeys)
        XCTAssertEqual(schema["additionalProperties"] as? Bool, false)
    }
}

extension RecipeTests {
    /// Prompts may hold line breaks and tabs; other control characters (a bell, an escape, NUL) are
    /// refused, naming the field, so `validate` catches them before a job runs.
    func testControlCharactersInPromptsAreRefused() throws {
        XCTAssertEqual(try parse(#"{"mode": "img2img", "prompt": "a cat,\n\tsitting"}"#).configuration.generation.prompt, "a cat,\n\tsitting")
        let bell = problems(#"{"mode": "img2img", "prompt": "a cat\u0007"}"#)
        XCTAssertEqual(bell.map(\.field), ["prompt"])
        XCTAssert(bell[0].message.contains("U+0007"))
        XCTAssertEqual(problems(#"{"mode": "img2img", "negative_prompt": "\u001b[31mred"}"#).map(\.field), ["negative_prompt"])
        XCTAssertEqual(problems(#"{"mode": "img2img", "prompt": "a\u0000b"}"#).map(\.field), ["prompt"])
    }
}

/// A1111's `<lora:…>` tags (extensions-builtin/Lora/extra_networks_lora.py: te = positional[1] or `te=`,
/// default 1; unet = positional[2] or `unet=`, default te) and the `loras` key.
final class LoRARecipeTests: XCTestCase {
    func parse(_ json: String) throws -> Recipe { try Recipe.parse(Data(json.utf8), file: "r.json") }

    func testTagsLeaveThePromptAndBecomeLoRAs() throws {
        let recipe = try parse(#"{"mode": "img2img", "prompt": "a cat <lora:a:0.5>, <lora:b> <lyco:c:0.5:1> <lora:d:te=0.2:unet=0.7>", "loras": [{"name": "e", "weight": -1}, {"name": "f"}]}"#)
        XCTAssertEqual(recipe.configuration.generation.prompt, "a cat ,   ")
        XCTAssertEqual(recipe.writtenPrompt, "a cat <lora:a:0.5>, <lora:b> <lyco:c:0.5:1> <lora:d:te=0.2:unet=0.7>")
        XCTAssertEqual(recipe.loras, [
            LoRAUse(name: "e", weight: -1), LoRAUse(name: "f", weight: 1),
            LoRAUse(name: "a", weight: 0.5), LoRAUse(name: "b", weight: 1),
            LoRAUse(name: "c", textEncoderWeight: 0.5, unetWeight: 1), LoRAUse(name: "d", textEncoderWeight: 0.2, unetWeight: 0.7),
        ])
    }

    func testTextThatIsNoTagStaysText() throws {
        let recipe = try parse(#"{"mode": "img2img", "prompt": "a < b, <lora>, <:x>, <lora:>, 3 <4"}"#)
        XCTAssertEqual(recipe.configuration.generation.prompt, "a < b, <lora>, <:x>, <lora:>, 3 <4")
        XCTAssertEqual(recipe.loras, [])
    }

    func testBadTagsAndEntriesAreNamed() throws {
        for (json, field, text) in [
            (#"{"mode": "img2img", "prompt": "<lora:../x:1>"}"#, "prompt", "file name"),
            (#"{"mode": "img2img", "prompt": "<lora:x:nan>"}"#, "prompt", "numbers"),
            (#"{"mode": "img2img", "prompt": "<lora:x:1e9>"}"#, "prompt", "numbers"),
            (#"{"mode": "img2img", "prompt": "<hypernet:x:1>"}"#, "prompt", "hypernetworks"),
            (#"{"mode": "img2img", "prompt": "<foo:x:1>"}"#, "prompt", "no extra network"),
            (#"{"mode": "img2img", "negative_prompt": "<lora:x:1>"}"#, "negative_prompt", "only in the prompt"),
            (#"{"mode": "img2img", "loras": [{"name": "a/b"}]}"#, "loras[0].name", "file name"),
            (#"{"mode": "img2img", "loras": [{"name": "a", "weight": "1"}]}"#, "loras[0].weight", "number"),
            (#"{"mode": "img2img", "loras": [{"name": "a", "scale": 1}]}"#, "loras[0].scale", "unknown key"),
            (#"{"mode": "img2img", "loras": "a"}"#, "loras", "list"),
        ] {
            XCTAssertThrowsError(try parse(json), json) { error in
                let problems = (error as? RecipeError)?.problems ?? []
                XCTAssertTrue(problems.contains { $0.field == field && $0.message.contains(text) }, "\(json): \(problems)")
            }
        }
    }

    func testLoRAHashesAsA1111WritesThem() {
        var c = PipelineConfiguration()
        c.generation.prompt = "x"
        let pair = A1111Parameters.loraHashes([("detail:v2", "0a29c6a561b7"), ("b,c", "a5bd5902d620")])
        let text = A1111Parameters.text(configuration: c, seed: 1, width: 8, height: 8, modelName: nil, modelHash: nil,
                                        prompt: "x <lora:detail:v2:1>", extra: pair.map { [$0] } ?? [])
        XCTAssertTrue(text.hasPrefix("x <lora:detail:v2:1>\n"), text)
        XCTAssertTrue(text.contains(#"Lora hashes: "detailv2: 0a29c6a561b7, bc: a5bd5902d620""#), text)
    }
}

extension RecipeTests {
    /// Issue 12: `timestep_spacing` overrides the scheduler config; refused naming the field when misspelt or
    /// with `lcm` (whose diffusers scheduler ignores it); the new samplers parse and get A1111's names.
    func testTimestepSpacingAndNewSamplers() throws {
        let turbo = try parse(#"{"mode": "img2img", "sampler": "euler_a", "steps": 1, "guidance": 1, "timestep_spacing": "trailing"}"#)
        XCTAssertEqual(turbo.configuration.generation.timestepSpacing, "trailing")
        XCTAssertNil(try parse(#"{"mode": "img2img"}"#).configuration.generation.timestepSpacing)
        XCTAssertEqual(problems(#"{"mode": "img2img", "timestep_spacing": "sideways"}"#).map(\.field), ["timestep_spacing"])
        XCTAssertEqual(problems(#"{"mode": "img2img", "sampler": "lcm", "timestep_spacing": "trailing"}"#).map(\.field), ["timestep_spacing"])
        let expected = ["dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_karras": "DPM++ 2M SDE Karras", "unipc": "UniPC", "heun": "Heun",
                        "dpm2": "DPM2", "dpm2_karras": "DPM2 Karras", "dpm2_a": "DPM2 a", "dpm2_a_karras": "DPM2 a Karras", "lcm": "LCM"]
        for (name, a1111) in expected {
            XCTAssertEqual(try parse(#"{"mode": "img2img", "sampler": "\#(name)"}"#).configuration.generation.sampler, name)
            XCTAssertEqual(A1111Parameters.samplerNames[name], a1111)
        }
        for name in schedulerNames { XCTAssertNotNil(A1111Parameters.samplerNames[name], name) }
        var c = turbo.configuration
        c.generation.prompt = "a cat"
        let text = A1111Parameters.text(configuration: c, seed: 1, width: 512, height: 512, modelName: nil, modelHash: nil)
        XCTAssert(text.hasSuffix("Steps: 1, Sampler: Euler a, CFG scale: 1.0, Seed: 1, Size: 512x512, Denoising strength: 0.75, Timestep spacing: trailing, Precision: fp32, Version: Darkroom"), text)
    }
}
