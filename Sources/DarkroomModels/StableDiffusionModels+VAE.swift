import DarkroomWeights
import Foundation

extension StableDiffusionModels {
    /// These models with the VAE of `url` (a standalone VAE file or diffusers `vae/` folder; see
    /// `Checkpoint.openVAE`), as diffusers' `from_pretrained(…, vae=AutoencoderKL…)` and A1111's VAE setting.
    /// Sizes come from the VAE's tensors; the scaling factor from its `config.json` when it has one, else the
    /// checkpoint's (A1111 keeps the model's). The VAE must have the UNet's latent channels.
    public func replacingVAE(with url: URL) throws -> StableDiffusionModels {
        let source = try Checkpoint.openVAE(url)
        var config = try VAEConfig.detect(from: WeightScope(source, prefix: "vae"))
        config.scalingFactor = vae.config.scalingFactor
        config.sampleSize = vae.config.sampleSize
        let configURL = url.appendingPathComponent("config.json")
        if FileManager.default.fileExists(atPath: configURL.path), let json = try Checkpoint.jsonObject(configURL),
           let factor = json["scaling_factor"] as? Double {
            guard factor.isFinite, factor > 0 else {
                throw WeightsError.invalidConfig(path: configURL.path, detail: "scaling_factor is \(factor); it must be a finite number > 0")
            }
            config.scalingFactor = Float(factor)
        }
        guard config.latentChannels == vae.config.latentChannels else {
            throw WeightsError.incompatibleComponents(
                source: url.path,
                detail: "the VAE has \(config.latentChannels) latent channels (post_quant_conv.weight) but the checkpoint's UNet works on \(vae.config.latentChannels); it belongs to another model family")
        }
        var models = self
        models.vae = try AutoencoderKL(WeightScope(source, prefix: "vae"), config: config)
        source.saveScanRecords()
        return models
    }
}
