import Foundation

/// Everything that can go wrong while loading a CLIP vocabulary. Each case names the file involved.
public enum TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A resource that should be bundled with the library is not there (a packaging problem).
    case missingResource(name: String)
    /// A file could not be read at all.
    case unreadableFile(path: String, reason: String)
    /// A gzip file could not be decompressed.
    case corruptGzip(path: String, reason: String)
    /// `vocab.json` is not a JSON object of token -> integer id.
    case malformedVocabulary(path: String, reason: String)
    /// A merges file (`merges.txt` or the bundled `.txt.gz`) has a bad line, or too few merges.
    case malformedMerges(path: String, line: Int, reason: String)
    /// A token the tokenizer needs (a special token, a byte symbol, a merge's parts or result) is not in the vocabulary.
    case missingToken(path: String, token: String)

    public var description: String {
        switch self {
        case .missingResource(let name):
            return "DarkroomTokenizer resource not found: \(name)"
        case .unreadableFile(let path, let reason):
            return "cannot read tokenizer file \(path): \(reason)"
        case .corruptGzip(let path, let reason):
            return "cannot decompress tokenizer file \(path): \(reason)"
        case .malformedVocabulary(let path, let reason):
            return "malformed tokenizer vocabulary \(path): \(reason)"
        case .malformedMerges(let path, let line, let reason):
            return "malformed tokenizer merges file \(path), line \(line): \(reason)"
        case .missingToken(let path, let token):
            return "tokenizer vocabulary \(path) has no entry for token \(String(reflecting: token))"
        }
    }
}
