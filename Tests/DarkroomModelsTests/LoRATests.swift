import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomWeights
import Foundation
import XCTest

/// LoRAs against diffusers' `load_lora_weights` + `set_adapters` on the tiny SD 1.x model
/// (tools/reference/make_lora_fixtures.py → Tests/Fixtures/lora/): UNet and text-encoder outputs within
/// 1e-4 of the output's largest magnitude (PEFT computes the update unfused, W x + s·B(A x); Darkroom merges
/// it into W first — the same sum in another rounding order), in both checkpoint layouts.
final class LoRATests: XCTestCase {
    static let folder = ModelFixtures.root.deletingLastPathComponent().appendingPathComponent("lora")
    static let cases: [(name: String, loras: [(String, Float)])] = [
        ("kohya_a", [("kohya_a", 1)]), ("kohya_a_half", [("kohya_a", 0.5)]), ("kohya_b_fp16", [("kohya_b", 1)]),
        ("peft_c", [("peft_c", 1)]), ("peft_c_minus", [("peft_c", -1)]), ("two", [("kohya_a", 0.5), ("peft_c", -1)]),
        // kohya_a with its UNet modules under their LDM names (make_lora_ldm_names_fixture.py): kohya_a's outputs.
        ("kohya_a", [("kohya_a_ldm", 1)]),
    ]

    static func url(_ name: String) -> URL { folder.appendingPathComponent("\(name).safetensors") }

    func testPatchedOutputsMatchDiffusers() throws {
        let expected = try SafetensorsFile(url: Self.folder.appendingPathComponent("expected.safetensors"))
        let sample = try expected.tensor("inputs.sample")
        let twoSamples = Tensor.concatenate([sample, sample], axis: 0)
        let timestep = try expected.tensor("inputs.timestep").scalars[0]
        let ids = try expected.ids("inputs.ids")
        for layout in ModelFixtures.Layout.allCases {
            let base = try ModelFixtures.load("sd1", layout)
            let context = base.textEncoder(ids)
            for c in Self.cases {
                let loras = try c.loras.map { (lora: try LoRA.open(Self.url($0.0), model: base.checkpoint), multiplier: $0.1) }
                let patched = try base.applying(loras)
                assertClose(patched.unet(twoSamples, timesteps: [timestep], context: context),
                            try expected.tensor("\(c.name).unet"), relative: 1e-4, "\(c.name) \(layout) unet")
                assertClose(patched.textEncoder(ids), try expected.tensor("\(c.name).text"), relative: 1e-4, "\(c.name) \(layout) text")
            }
            // LyCORIS LoHa and LoKr: diffusers cannot load them; the reference merges A1111's formulas by hand.
            for (name, multiplier) in [("loha_d", Float(1)), ("lokr_e", 0.7)] {
                let patched = try base.applying([(try LoRA.open(Self.url(name), model: base.checkpoint), multiplier)])
                assertClose(patched.unet(twoSamples, timesteps: [timestep], context: context),
                            try expected.tensor("\(name).unet"), relative: 1e-4, "\(name) \(layout) unet")
            }
            // The receiver keeps the original weights: the base outputs are diffusers' without LoRA.
            assertClose(base.unet(twoSamples, timesteps: [timestep], context: context), try expected.tensor("base.unet"),
                        relative: 1e-4, "\(layout) base unet after patching")
        }
    }

    func testFormatsAreRead() throws {
        let base = try ModelFixtures.load("sd1", .diffusers)
        let a = try LoRA.open(Self.url("kohya_a"), model: base.checkpoint)
        // make_lora_fixtures.py: alpha 2, rank 4 on every layer; the LoCon conv layers patch 3×3 kernels.
        XCTAssertTrue(a.layers.contains { $0.target == "unet.down_blocks.0.resnets.0.conv1.weight" })
        XCTAssertTrue(a.layers.contains { $0.target == "text_encoder.text_model.encoder.layers.1.mlp.fc2.weight" })
        let c = try LoRA.open(Self.url("peft_c"), model: base.checkpoint)
        XCTAssertTrue(c.layers.contains { $0.target == "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.weight" })
    }

    func testForeignLoRAIsRefusedNamingItsKeys() throws {
        let base = try ModelFixtures.load("sd1", .diffusers)
        XCTAssertThrowsError(try LoRA.open(Self.url("foreign"), model: base.checkpoint)) { error in
            guard case WeightsError.loraUnmatchedKeys(_, let modules, _)? = error as? WeightsError else {
                return XCTFail("\(error)")
            }
            // Its UNet module has an SD 1.x name (LDM `input_blocks.4.1…attn2.to_k`, at SDXL's 2048-wide context); its
            // second text encoder's has none, which is what tells another family apart before shapes are compared.
            XCTAssertEqual(modules, ["lora_te2_text_model_encoder_layers_0_self_attn_q_proj"])
            XCTAssertTrue("\(error)".contains("another model family"), "\(error)")
        }
    }

    /// Hand-made hostile LoRAs: each is refused at open (or at merge, for values) with an error naming the
    /// module or key and the problem, never a trap.
    func testHostileLoRAsAreRefused() throws {
        let base = try ModelFixtures.load("sd1", .diffusers)
        let q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"   // a [32, 32] weight
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-lora-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func file(_ tensors: [(String, [Int], Float)]) throws -> URL {
            var writer = SafetensorsWriter()
            for (name, shape, value) in tensors {
                try writer.add(name, shape: shape, floats: [Float](repeating: value, count: shape.reduce(1, *)))
            }
            let url = folder.appendingPathComponent("\(UUID().uuidString.prefix(8)).safetensors")
            try writer.write(to: url)
            return url
        }
        let cases: [(tensors: [(String, [Int], Float)], expected: String)] = [
            ([("\(q).lora_down.weight", [4, 768], 0.1), ("\(q).lora_up.weight", [32, 4], 0.1)], "the down/A factor has shape [4, 768]"),
            ([("\(q).lora_down.weight", [4, 32], 0.1), ("\(q).lora_up.weight", [320, 4], 0.1)], "the up/B factor has shape [320, 4]"),
            ([("\(q).lora_down.weight", [4, 32], 0.1)], "up/B partner is missing"),
            ([("\(q).lora_down.weight", [4, 32], 0.1), ("\(q).lora_up.weight", [32, 4], 0.1), ("\(q).alpha", [2], 1)], "alpha must be one finite number"),
            ([("\(q).lora_down.weight", [4, 32], 0.1), ("\(q).lora_up.weight", [32, 4], 0.1), ("\(q).lora_mid.weight", [4, 4, 3, 3], 0.1)], "Tucker"),
            ([("\(q).lora_down.weight", [4, 32], 0.1), ("\(q).lora_up.weight", [32, 4], 0.1), ("\(q).dora_scale", [32, 1], 1)], "DoRA"),
            ([("\(q).hada_w1_a", [32, 2], 0.1), ("\(q).hada_w1_b", [2, 32], 0.1)], "form no complete"),
            ([("\(q).something_else", [4], 0.1)], "no LoRA, LoHa, LoKr or full-weight rule"),
            ([], "holds no tensors"),
        ]
        for (index, c) in cases.enumerated() {
            XCTAssertThrowsError(try LoRA.open(try file(c.tensors), model: base.checkpoint), "case \(index)") { error in
                XCTAssertTrue("\(error)".contains(c.expected), "case \(index): \(error)")
            }
        }
        // Non-finite values are found when the update is computed, naming the tensor.
        let nan = try LoRA.open(try file([("\(q).lora_down.weight", [4, 32], .nan), ("\(q).lora_up.weight", [32, 4], 0.1)]), model: base.checkpoint)
        XCTAssertThrowsError(try base.applying([(nan, 1)])) { error in
            XCTAssertTrue("\(error)".contains("lora_down.weight") && "\(error)".contains("nan"), "\(error)")
        }
        // Multiplier 0 patches nothing: the same models come back.
        let zero = try base.applying([(try LoRA.open(Self.url("kohya_a"), model: base.checkpoint), 0)])
        XCTAssertEqual(zero.unet(Tensor(shape: [1, 4, 8, 8], repeating: 0.1), timesteps: [1], context: Tensor(shape: [1, 77, 4], repeating: 0.1)).scalars,
                       base.unet(Tensor(shape: [1, 4, 8, 8], repeating: 0.1), timesteps: [1], context: Tensor(shape: [1, 77, 4], repeating: 0.1)).scalars)
    }
}
