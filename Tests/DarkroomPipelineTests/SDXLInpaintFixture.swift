import DarkroomWeights
import Foundation

/// The 9-channel SDXL inpainting model of `Tests/Fixtures/models/sdxl_inpaint/` (tools/reference/make_sdxl_more_fixtures.py,
/// `inpaint9`), assembled as that script assembles it before taking its references: the sdxl fixture with the overlay's
/// `model_index.json`, `unet/config.json` and 9-channel `conv_in` (diffusers names in the folder's UNet file, LDM names in
/// the single file). Written once per process into a temporary folder.
enum SDXLInpaintFixture {
    static let overlay = PipelineFixtures.modelsRoot.appendingPathComponent("sdxl_inpaint")

    nonisolated(unsafe) private static var assembled: (folder: URL, singleFile: URL)?

    /// (the diffusers folder, the single file).
    static func layouts() throws -> (folder: URL, singleFile: URL) {
        if let assembled { return assembled }
        let base = PipelineFixtures.modelsRoot.appendingPathComponent("sdxl")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-sdxl-inpaint-\(UUID().uuidString)")
        let folder = root.appendingPathComponent("diffusers")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: base.appendingPathComponent("diffusers"), to: folder)
        for name in ["model_index.json", "unet/config.json"] {
            let target = folder.appendingPathComponent(name)
            try FileManager.default.removeItem(at: target)
            try FileManager.default.copyItem(at: overlay.appendingPathComponent("diffusers").appendingPathComponent(name), to: target)
        }
        let patch = try SafetensorsFile(url: overlay.appendingPathComponent("conv_in.safetensors"))
        let unet = folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        try replacing(in: unet, from: patch, keys: ["conv_in.weight", "conv_in.bias"], writeTo: unet)
        let singleFile = root.appendingPathComponent("sdxl_inpaint.safetensors")
        try replacing(in: base.appendingPathComponent("sdxl.safetensors"), from: patch,
                      keys: ["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.input_blocks.0.0.bias"],
                      writeTo: singleFile)
        assembled = (folder, singleFile)
        return (folder, singleFile)
    }

    /// `source`'s tensors, those named in `keys` taken from `patch` instead, written to `target` byte for byte.
    private static func replacing(in source: URL, from patch: SafetensorsFile, keys: Set<String>, writeTo target: URL) throws {
        let file = try SafetensorsFile(url: source)
        var writer = SafetensorsWriter()
        for name in file.tensorNames {
            let from = keys.contains(name) ? patch : file
            let info = try from.info(name)
            try writer.addRaw(name, dtype: info.dtype, shape: info.shape, bytes: try from.withRawBytes(name) { Array($0) })
        }
        try writer.write(to: target, metadata: file.metadata)
    }
}
