import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomWeights
import Foundation
import XCTest

/// `Tests/Fixtures/models/<variant>/`, written by `tools/reference/make_model_fixtures.py` (diffusers
/// 0.42.1, transformers 5.24, torch 2.15; float32 references). Weights are rounded to values every
/// stored dtype holds exactly, so the F16 diffusers folder and the F16 (BF16 for sd1_inpaint) single
/// file compute the same numbers; see `Tests/Fixtures/models/README.md`.
enum ModelFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models")

    enum Layout: String, CaseIterable { case diffusers, singleFile }

    static func folder(_ variant: String) -> URL { root.appendingPathComponent(variant) }
    static func diffusers(_ variant: String) -> URL { folder(variant).appendingPathComponent("diffusers") }
    static func singleFile(_ variant: String, suffix: String = "") -> URL {
        folder(variant).appendingPathComponent("\(variant)\(suffix).safetensors")
    }

    /// The variant in `layout`. A tiny single file cannot show its text encoder's head count (real SD
    /// text towers all use 64-channel heads, these use 2), so, as diffusers' `from_single_file(config=)`,
    /// the single file is described by the variant's diffusers folder.
    static func load(_ variant: String, _ layout: Layout, suffix: String = "") throws -> StableDiffusionModels {
        switch layout {
        case .diffusers: return try StableDiffusionModels.load(diffusers(variant))
        case .singleFile: return try StableDiffusionModels.load(singleFile(variant, suffix: suffix), config: diffusers(variant))
        }
    }

    static func expected(_ variant: String) throws -> SafetensorsFile {
        try SafetensorsFile(url: folder(variant).appendingPathComponent("expected.safetensors"))
    }
}

