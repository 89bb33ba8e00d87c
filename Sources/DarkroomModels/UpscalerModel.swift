import DarkroomTensor
import DarkroomWeights
import Foundation

/// An upscaler network loaded from a file in `Models/ESRGAN/` (A1111's folder): its architecture detected from
/// the keys and its sizes from the shapes, as spandrel's `ModelLoader` does.
public struct UpscalerModel: Sendable {
    public enum Network: Sendable {
        case rrdbNet(RRDBNet)
        case compact(SRVGGNetCompact)
    }

    public let network: Network
    /// The file, and the key layout it was stored in.
    public let checkpoint: Checkpoint
    public let layout: UpscalerKeyMap.Layout

    /// How many times larger the output's sides are than the input's.
    public var scale: Int {
        switch network {
        case .rrdbNet(let model): return model.config.scale
        case .compact(let model): return model.config.scale
        }
    }

    /// A short description for logs and reports: "RRDBNet 4× (64 features, 23 blocks)".
    public var summary: String {
        switch network {
        case .rrdbNet(let m):
            let c = m.config
            return "RRDBNet \(c.scale)× (\(c.features) features, \(c.blocks) blocks, growth \(c.growth)\(c.unshuffle > 1 ? ", pixel unshuffle \(c.unshuffle)" : ""))"
        case .compact(let m):
            return "SRVGGNetCompact \(m.config.scale)× (\(m.config.features) features, \(m.config.convolutions) convolutions)"
        }
    }

    /// Loads `url` (see `Checkpoint.openUpscaler` for what is refused and how). Every tensor is read, and so
    /// checked for NaN/inf, before this returns.
    public static func load(_ url: URL) throws -> UpscalerModel {
        let (checkpoint, layout) = try Checkpoint.openUpscaler(url)
        let w = WeightScope(checkpoint)
        let network: Network = layout == .compact ? .compact(try SRVGGNetCompact(w)) : .rrdbNet(try RRDBNet(w))
        checkpoint.saveScanRecords()
        return UpscalerModel(network: network, checkpoint: checkpoint, layout: layout)
    }

    /// [N, 3, H, W] in [0, 1] → [N, 3, H·scale, W·scale] (not clamped).
    public func callAsFunction(_ image: Tensor) -> Tensor {
        switch network {
        case .rrdbNet(let model): return model(image)
        case .compact(let model): return model(image)
        }
    }

    /// The smallest input side the network takes (a pixel-unshuffled input pads by reflection, which needs
    /// sides above the padding).
    public var minimumSide: Int {
        if case .rrdbNet(let m) = network, m.config.unshuffle > 1 { return m.config.unshuffle }
        return 1
    }
}
