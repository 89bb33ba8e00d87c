/// The one table from the key layouts ESRGAN-family upscaler files come in to Darkroom's canonical upscaler keys,
/// one key at a time (as `LDMKeyMap` does for checkpoints).
///
/// Recognition follows spandrel (`architectures/ESRGAN/__init__.py`, `architectures/Compact/__init__.py`): a layout
/// is known by its marker keys. Canonical names are Real-ESRGAN's (basicsr `RRDBNet`), which read like the
/// architecture: `conv_first`, `body.<i>.rdb<k>.conv<j>`, `conv_body`, `conv_up<u>`, `conv_hr`, `conv_last`; and
/// `body.<n>` for SRVGGNetCompact.
///
/// | layout | markers | renamed |
/// |---|---|---|
/// | Real-ESRGAN | `conv_first`, `body.0.rdb1.conv1`, `conv_body`, `conv_last` | (canonical) |
/// | ESRGAN (old arch: 4x-UltraSharp, …) | `model.0`, `model.1.sub.0.RDB1.conv1.0` | `model.0` → `conv_first`, `model.1.sub.<i>.RDB<k>.conv<j>.0` → `body.<i>.rdb<k>.conv<j>`, `model.1.sub.<nb>` → `conv_body`, `model.<3u>` → `conv_up<u>`, `model.<3n+2>` → `conv_hr`, `model.<3n+4>` → `conv_last` (n upsamplings) |
/// | BSRGAN / RealSR | `conv_first`, `RRDB_trunk.0.RDB1.conv1`, `trunk_conv`, `conv_last` | `RRDB_trunk` → `body`, `RDB<k>` → `rdb<k>`, `trunk_conv` → `conv_body`, `upconv<u>` → `conv_up<u>`, `HRconv` → `conv_hr` |
/// | SRVGGNetCompact | `body.0.weight`, `body.1.weight` | (canonical) |
public enum UpscalerKeyMap {
    public enum Layout: String, Sendable, CaseIterable {
        case realESRGAN = "RRDBNet, Real-ESRGAN layout"
        case esrgan = "RRDBNet, old ESRGAN layout"
        case bsrgan = "RRDBNet, BSRGAN/RealSR layout"
        case compact = "SRVGGNetCompact"
    }

    /// Marker keys of each layout, all of which must be present (spandrel's detection conditions).
    static let markers: [(Layout, [String])] = [
        (.esrgan, ["model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"]),
        (.realESRGAN, ["conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_last.weight"]),
        (.bsrgan, ["conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight", "trunk_conv.weight", "conv_last.weight"]),
        (.compact, ["body.0.weight", "body.1.weight"]),
    ]

    /// Upscaler architectures Darkroom does not run, by marker keys (spandrel's), so the error can name them.
    static let unsupported: [(name: String, markers: [String])] = [
        ("ESRGAN+ (RRDB blocks with 1×1 residual convolutions)", ["model.1.sub.0.RDB1.conv1x1.weight"]),
        ("SPAN", ["block_1.c1_r.sk.weight", "conv_cat.weight"]),
        ("HAT", ["layers.0.residual_group.blocks.0.conv_block.cab.0.weight"]),
        ("SwinIR", ["layers.0.residual_group.blocks.0.norm1.weight"]),
        ("DAT", ["before_RG.1.weight", "layers.0.blocks.0.ffn.fc1.weight"]),
        ("a Stable Diffusion checkpoint", ["model.diffusion_model.input_blocks.0.0.weight"]),
    ]

    /// The layout whose markers are all in `keys`, or nil.
    public static func layout(of keys: Set<String>) -> Layout? {
        markers.first { $0.1.allSatisfy(keys.contains) }?.0
    }

    /// The name of a known architecture Darkroom does not run, when `keys` have its markers.
    public static func unsupportedArchitecture(of keys: Set<String>) -> String? {
        unsupported.first { $0.markers.allSatisfy(keys.contains) }?.name
    }

    /// The number of 2× upsampling steps of an old-layout ESRGAN: its `model` sequence is conv, shortcut,
    /// [upsample, conv, activation] × n, conv, activation, conv, so it holds 3n + 5 modules (spandrel `_get_scale`).
    /// nil when the sequence length fits no n.
    public static func esrganUpsamplings(keys: some Sequence<String>) -> Int? {
        var last = -1
        for key in keys where key.hasPrefix("model.") {
            let parts = key.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count >= 3, let i = index(parts[1]) { last = max(last, i) }
        }
        let length = last + 1
        guard length >= 5, (length - 5) % 3 == 0 else { return nil }
        return (length - 5) / 3
    }

    /// The canonical name of `key` in `layout` (nil when no rule matches: a foreign or malformed key).
    /// `upsamplings` is `esrganUpsamplings` for the old ESRGAN layout (unused otherwise).
    public static func canonical(_ key: String, layout: Layout, upsamplings: Int = 0) -> String? {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2, !parts.contains(""), let kind = parts.last, kind == "weight" || kind == "bias" else { return nil }
        let name = parts.dropLast()
        func joined(_ p: [String]) -> String { (p + [kind]).joined(separator: ".") }
        switch layout {
        case .compact:
            guard name.count == 2, name[0] == "body", index(name[1]) != nil else { return nil }
            return key
        case .realESRGAN:
            if name.count == 1, ["conv_first", "conv_body", "conv_hr", "conv_last"].contains(name[0]) { return key }
            if name.count == 1, let u = suffixIndex(name[0], prefix: "conv_up"), u >= 1 { return key }
            return denseBlock(Array(name), trunk: "body", block: "rdb", kind: kind)
        case .bsrgan:
            if name.count == 1 {
                switch name[0] {
                case "conv_first", "conv_last": return key
                case "trunk_conv": return joined(["conv_body"])
                case "HRconv": return joined(["conv_hr"])
                default:
                    if let u = suffixIndex(name[0], prefix: "upconv"), u >= 1 { return joined(["conv_up\(u)"]) }
                    return nil
                }
            }
            return denseBlock(Array(name), trunk: "RRDB_trunk", block: "RDB", kind: kind)
        case .esrgan:
            guard name.first == "model", name.count >= 2, let i = index(name[1]) else { return nil }
            if name.count == 2 {
                if i == 0 { return joined(["conv_first"]) }
                if i % 3 == 0, i / 3 >= 1, i / 3 <= upsamplings { return joined(["conv_up\(i / 3)"]) }
                if i == 3 * upsamplings + 2 { return joined(["conv_hr"]) }
                if i == 3 * upsamplings + 4 { return joined(["conv_last"]) }
                return nil
            }
            // model.1.sub.<i>.RDB<k>.conv<j>.0 (a conv_block: Sequential(conv, activation)), model.1.sub.<nb>
            guard i == 1, name.count >= 4, name[2] == "sub", let block = index(name[3]) else { return nil }
            if name.count == 4 { return joined(["conv_body"]) }
            guard name.count == 7, name[6] == "0" else { return nil }
            return denseBlock(["RRDB_trunk", "\(block)", name[4], name[5]], trunk: "RRDB_trunk", block: "RDB", kind: kind)
        }
    }

    /// `<trunk>.<i>.<block><k>.conv<j>` → `body.<i>.rdb<k>.conv<j>.<kind>`, for k in 1…3 and j in 1…5.
    static func denseBlock(_ name: [String], trunk: String, block: String, kind: String) -> String? {
        guard name.count == 4, name[0] == trunk, let i = index(name[1]),
              let k = suffixIndex(name[2], prefix: block), (1...3).contains(k),
              let j = suffixIndex(name[3], prefix: "conv"), (1...5).contains(j) else { return nil }
        return "body.\(i).rdb\(k).conv\(j).\(kind)"
    }

    /// A block index: digits only, below 10 000 (so index arithmetic never overflows).
    static func index(_ text: some StringProtocol) -> Int? {
        guard !text.isEmpty, text.count <= 4, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(text)
    }

    /// The index after `prefix` in e.g. `conv_up2`, `RDB3`.
    static func suffixIndex(_ text: String, prefix: String) -> Int? {
        guard text.hasPrefix(prefix) else { return nil }
        return index(text.dropFirst(prefix.count))
    }
}
