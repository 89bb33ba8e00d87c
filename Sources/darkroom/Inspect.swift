import ArgumentParser
import DarkroomModels
import DarkroomWeights
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a checkpoint and print its family, layout, dtypes and architecture.")

    @Argument(help: "A .safetensors checkpoint or a diffusers folder.")
    var checkpoint: String

    @Option(help: "A diffusers folder whose configs describe a single-file checkpoint (as diffusers' from_single_file(config=)).")
    var config: String?

    func run() throws {
        let start = Date()
        let models = try StableDiffusionModels.load(URL(fileURLWithPath: checkpoint), config: config.map { URL(fileURLWithPath: $0) })
        let seconds = Date().timeIntervalSince(start)
        let c = models.checkpoint
        print("checkpoint   \(c.url.path)")
        print("family       \(c.family.rawValue)\(models.unet.config.inChannels == 9 ? " inpainting" : "")")
        print("layout       \(c.layout.rawValue)")
        print("dtypes       \(c.dtypes.sorted { $0.value > $1.value }.map { "\($0.key.rawValue)×\($0.value)" }.joined(separator: ", "))")
        print("prediction   \(models.predictionType ?? "not stated (recipe decides; default epsilon)")")
        let u = models.unet.config
        print("unet         in \(u.inChannels), out \(u.outChannels), layers/block \(u.layersPerBlock), context \(u.contextDim), "
              + "\(u.linearProjection ? "linear" : "conv") projections, time embedding \(u.timeEmbeddingWidth)")
        for (i, level) in u.levels.enumerated() {
            let attention = level.hasAttention ? "\(level.heads) heads × \(level.channels / max(level.heads, 1)), depth \(level.transformerDepth)" : "no attention"
            print("  level \(i)    \(level.channels) channels, \(attention)")
        }
        print("  mid        \(u.middleHeads) heads, depth \(u.middleTransformerDepth)")
        if let added = u.addedConditioning {
            print("  added      text_time: \(added.inputWidth) inputs, \(added.timeEmbedDim) per time id")
        }
        for (index, (encoder, model)) in zip(c.family.textEncoders, [models.textEncoder] + (models.textEncoder2.map { [$0] } ?? [])).enumerated() {
            let t = model.config
            let label = (index == 0 ? "text" : "text \(index + 1)").padding(toLength: 13, withPad: " ", startingAt: 0)
            print("\(label)\(encoder.name) (\(encoder.component)), width \(t.width), \(t.layers) layers, \(t.heads) heads, mlp \(t.intermediateWidth), \(t.activation.rawValue), "
                  + "vocab \(t.vocabularySize), \(t.maxPositions) positions, pad id \(t.padToken)"
                  + (model.projectionWidth.map { ", projection \($0)" } ?? ""))
        }
        let v = models.vae.config
        print("vae          channels \(v.blockChannels), \(v.layersPerBlock) layers/block, latent \(v.latentChannels), "
              + "scale 1/\(v.downscale), scaling factor \(v.scalingFactor)")
        print(String(format: "loaded in    %.2f s", seconds))
    }
}
