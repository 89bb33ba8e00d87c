import Foundation

/// OpenAI CLIP's byte-level BPE tokenizer, matching transformers' `CLIPTokenizer` (the tokenizers
/// backend of transformers 5.x) id for id.
///
/// Text cleanup is what transformers does without ftfy: NFC, whitespace collapse, lowercase. There is
/// no ftfy repair and no HTML unescaping ("&amp;" stays three pre-tokens, as in transformers; open_clip's
/// own `SimpleTokenizer` would unescape it). The literal strings `<|startoftext|>` / `<|endoftext|>`
/// in the input (exact case) become the special ids, as transformers' added-token matching does.
///
/// Vocabulary: 49,408 ids — 256 byte symbols, the same 256 ending a word (`</w>`), 48,894 merges,
/// then `<|startoftext|>` (49406) and `<|endoftext|>` (49407).
public struct CLIPTokenizer: Sendable {
    /// `<|startoftext|>` (49406 for CLIP).
    public let startToken: Int
    /// `<|endoftext|>` (49407 for CLIP). SD1 pipelines also pad with it; SD2's tokenizer pads with 0 ("!").
    public let endToken: Int
    /// Number of ids (largest id + 1).
    public let vocabularySize: Int
    /// `,</w>`, used by A1111's comma backtrack (267 for CLIP).
    public let commaToken: Int?

    let model: BPEModel

    public static let bundledMergesResource = "bpe_simple_vocab_16e6.txt.gz"

    private init(model: BPEModel) {
        self.model = model
        startToken = model.startToken
        endToken = model.endToken
        vocabularySize = model.vocabularySize
        commaToken = model.commaToken
    }

    /// SwiftPM names this target's resource bundle `<package>_DarkroomTokenizer.resources` and puts it
    /// beside the executable.
    static let resourceBundleSuffix = "_DarkroomTokenizer.resources"

    /// The bundled merges file: in `$DARKROOM_RESOURCES`, or in the resource bundle beside the executable.
    /// (SwiftPM's generated `Bundle.module` traps when the bundle is missing, so it is not used.)
    static func bundledMergesURL() throws -> URL {
        var searched: [String] = []
        if let override = ProcessInfo.processInfo.environment["DARKROOM_RESOURCES"] {
            let url = URL(fileURLWithPath: override).appendingPathComponent(bundledMergesResource)
            if FileManager.default.fileExists(atPath: url.path) { return url }
            searched.append(url.path)
        }
        let directory = Bundle.main.bundleURL
        let bundles = (try? FileManager.default.contentsOfDirectory(atPath: directory.path))?
            .filter { $0.hasSuffix(resourceBundleSuffix) }.sorted() ?? []
        for bundle in bundles {
            let url = directory.appendingPathComponent(bundle).appendingPathComponent(bundledMergesResource)
            if FileManager.default.fileExists(atPath: url.path) { return url }
            searched.append(url.path)
        }
        searched.append(directory.appendingPathComponent("*" + resourceBundleSuffix).path)
        throw TokenizerError.missingResource(name: "\(bundledMergesResource) (looked in \(searched.joined(separator: ", ")))")
    }

    private static let bundledResult: Result<CLIPTokenizer, TokenizerError> = {
        do {
            let url = try bundledMergesURL()
            return .success(try CLIPTokenizer(openCLIPMergesGzip: url))
        } catch let error as TokenizerError {
            return .failure(error)
        } catch {
            return .failure(.unreadableFile(path: bundledMergesResource, reason: "\(error)"))
        }
    }()

    /// The CLIP tokenizer from the merges file bundled with this library (loaded once per process,
    /// ~35 ms). Needs SwiftPM's `*_DarkroomTokenizer.resources` directory beside the
    /// executable (where `swift build` puts it); without it this throws `.missingResource`.
    public static func bundled() throws -> CLIPTokenizer {
        try bundledResult.get()
    }

    /// A tokenizer from an open_clip-style gzipped merges file (`bpe_simple_vocab_16e6.txt.gz`).
    public init(openCLIPMergesGzip url: URL) throws {
        let data = try VocabularyLoader.readFile(url)
        let source = try VocabularyLoader.openCLIPMerges(gzipData: data, path: url.path)
        self.init(model: try BPEModel(source))
    }

    /// A tokenizer from a diffusers/transformers `tokenizer/` folder's `vocab.json` and `merges.txt`.
    public init(vocabJSON: URL, merges: URL) throws {
        let source = try VocabularyLoader.huggingFace(vocabJSON: vocabJSON, merges: merges)
        self.init(model: try BPEModel(source))
    }

    /// A tokenizer from a diffusers `tokenizer/` folder (holding `vocab.json` and `merges.txt`).
    public init(directory: URL) throws {
        try self.init(vocabJSON: directory.appendingPathComponent("vocab.json"),
                      merges: directory.appendingPathComponent("merges.txt"))
    }

    /// Token ids of `text`, without start/end tokens and without truncation.
    public func encode(_ text: String) -> [Int] {
        encode(text, specials: defaultSpecials)
    }

    /// What diffusers' pipelines feed the text encoder: `tokenizer(text, padding: "max_length",
    /// max_length: length, truncation: true)` — start token, the ids truncated to `length - 2`, end
    /// token, then `padToken` up to `length`. (`length` below 2 still gets both special tokens.)
    ///
    /// In transformers the pad token is an added special token, so when `padToken` is not one of the
    /// two CLIP special tokens, its spelling in the raw text is also taken as that token: with SD2's
    /// tokenizer (pad "!", id 0) every "!" in the prompt becomes 0, exactly as diffusers gets it.
    public func tokenize(_ text: String, length: Int = 77, padToken: Int) -> [Int] {
        var specials = defaultSpecials
        if padToken != startToken, padToken != endToken, model.tokens.indices.contains(padToken) {
            let spelling = Array(model.tokens[padToken].utf8)
            if !spelling.isEmpty { specials.append((spelling, padToken)) }
        }
        let ids = encode(text, specials: specials)
        var out: [Int] = [startToken]
        out.reserveCapacity(max(length, 2))
        out.append(contentsOf: ids.prefix(max(0, length - 2)))
        out.append(endToken)
        while out.count < length { out.append(padToken) }
        return out
    }

    /// The vocabulary spelling of an id (byte-level characters, `</w>` ending a word), if it has one.
    public func spelling(of id: Int) -> String? {
        guard model.tokens.indices.contains(id), !model.tokens[id].isEmpty else { return nil }
        return model.tokens[id]
    }

    // MARK: - internals

    private typealias Special = (spelling: [UInt8], id: Int)

    private var defaultSpecials: [Special] {
        [(Array(VocabularyLoader.startOfText.utf8), startToken), (Array(VocabularyLoader.endOfText.utf8), endToken)]
    }

    /// Special tokens are taken out of the raw text first (exact spelling, leftmost, longest first, as
    /// transformers' added-token matching does); the text between them is normalized and BPE-encoded.
    private func encode(_ text: String, specials: [Special]) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        let bytes = Array(text.utf8)
        let firstBytes = Set(specials.compactMap(\.spelling.first))
        var segmentStart = 0
        var i = 0
        let n = bytes.count
        while i < n {
            if firstBytes.contains(bytes[i]), let special = Self.longestSpecial(in: bytes, at: i, specials) {
                encodeSegment(bytes[segmentStart..<i], into: &ids)
                ids.append(special.id)
                i += special.spelling.count
                segmentStart = i
            } else {
                i += 1
            }
        }
        encodeSegment(bytes[segmentStart..<n], into: &ids)
        return ids
    }

    private static func longestSpecial(in bytes: [UInt8], at i: Int, _ specials: [Special]) -> Special? {
        var best: Special? = nil
        for special in specials where special.spelling.count > (best?.spelling.count ?? 0) {
            let literal = special.spelling
            guard i + literal.count <= bytes.count else { continue }
            var same = true
            for k in 0..<literal.count where bytes[i + k] != literal[k] {
                same = false
                break
            }
            if same { best = special }
        }
        return best
    }

    private func encodeSegment(_ bytes: ArraySlice<UInt8>, into ids: inout [Int]) {
        guard !bytes.isEmpty else { return }
        let scalars = PreTokenizer.normalize(bytes)
        PreTokenizer.forEachPreToken(scalars) { word in
            model.encodeWord(word, into: &ids)
        }
    }
}
