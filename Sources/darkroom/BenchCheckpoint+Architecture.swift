import Foundation

/// The shapes and configs of one family's random checkpoint for `darkroom bench`: SD 1.5 and SDXL base 1.0. The
/// values are diffusers' published configs for `stable-diffusion-v1-5` and `stable-diffusion-xl-base-1.0`.
extension BenchCheckpoint {
    struct TextEncoderShape {
        /// The diffusers subfolder: `text_encoder`, `text_encoder_2`.
        let folder: String
        let width: Int, layers: Int, heads: Int, inner: Int
        /// `quick_gelu` (OpenAI CLIP ViT-L) or `gelu` (OpenCLIP ViT-bigG).
        let activation: String
        /// `CLIPTextModelWithProjection`'s `text_projection` width (SDXL's second encoder), nil for none.
        let projection: Int?

        static let clipL = TextEncoderShape(folder: "text_encoder", width: 768, layers: 12, heads: 12, inner: 3072,
                                            activation: "quick_gelu", projection: nil)
        static let clipBigG = TextEncoderShape(folder: "text_encoder_2", width: 1280, layers: 32, heads: 20, inner: 5120,
                                               activation: "gelu", projection: 1280)

        var config: [String: Any] {
            var config = BenchCheckpoint.clipLConfig
            config["architectures"] = [projection == nil ? "CLIPTextModel" : "CLIPTextModelWithProjection"]
            config["hidden_act"] = activation
            config["hidden_size"] = width
            config["intermediate_size"] = inner
            config["num_attention_heads"] = heads
            config["num_hidden_layers"] = layers
            config["projection_dim"] = projection ?? 768
            return config
        }
    }

    struct Architecture {
        let name: String, folderName: String
        let unetChannels: [Int], layersPerBlock: Int, context: Int
        /// Transformer blocks per level (0: no attention there); the mid block has the last level's (at least 1).
        let transformerDepth: [Int]
        let linearProjection: Bool
        /// SDXL's added conditioning (`add_embedding`'s input width: pooled text + 6 time ids × 256), nil for none.
        let addedConditioning: (timeEmbedding: Int, input: Int)?
        let textEncoders: [TextEncoderShape]
        let unetConfig: [String: Any], vaeConfig: [String: Any], schedulerConfig: [String: Any], modelIndex: [String: Any]

        static var sd15: Architecture { Architecture(
            name: "SD 1.5", folderName: "sd15-random-fp16", unetChannels: BenchCheckpoint.unetChannels, layersPerBlock: 2,
            context: 768, transformerDepth: [1, 1, 1, 0], linearProjection: false, addedConditioning: nil,
            textEncoders: [.clipL], unetConfig: BenchCheckpoint.sd15UNetConfig, vaeConfig: BenchCheckpoint.vaeConfig,
            schedulerConfig: BenchCheckpoint.sd15SchedulerConfig, modelIndex: BenchCheckpoint.sd15ModelIndex) }

        static var sdxl: Architecture {
            var vae = BenchCheckpoint.vaeConfig
            vae["scaling_factor"] = 0.13025
            vae["sample_size"] = 1024
            vae["force_upcast"] = true
            let unet: [String: Any] = [
                "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
                "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
                "block_out_channels": [320, 640, 1280], "center_input_sample": false, "cross_attention_dim": 2048,
                "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
                "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32, "out_channels": 4,
                "projection_class_embeddings_input_dim": 2816, "sample_size": 128, "transformer_layers_per_block": [1, 2, 10],
                "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": true,
            ]
            let scheduler: [String: Any] = [
                "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "beta_start": 0.00085, "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
                "sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
                "timestep_spacing": "leading", "trained_betas": NSNull(), "use_karras_sigmas": false,
            ]
            let index: [String: Any] = [
                "_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": true,
                "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            ]
            return Architecture(
                name: "SDXL base 1.0", folderName: "sdxl-random-fp16", unetChannels: [320, 640, 1280], layersPerBlock: 2,
                context: 2048, transformerDepth: [0, 2, 10], linearProjection: true,
                addedConditioning: (timeEmbedding: 256, input: 1280 + 6 * 256), textEncoders: [.clipL, .clipBigG],
                unetConfig: unet, vaeConfig: vae, schedulerConfig: scheduler, modelIndex: index)
        }
    }
}
