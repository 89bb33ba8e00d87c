import Foundation

/// Text normalization and the CLIP pre-tokenizer, as transformers' `CLIPTokenizer` (tokenizers
/// backend) does it, without ftfy:
///
/// 1. NFC, then every whitespace run becomes one space (only a separator below, so no code here),
///    then per-character full lowercase mapping
///    (no context-sensitive rules: "Σ" at a word end becomes "σ", not "ς"; "İ" becomes "i̇").
/// 2. Split into pre-tokens with the regex
///    `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
///    keeping only the matches (whitespace in between is dropped). Implemented here as a hand-written
///    scanner over Unicode scalars: at each position the alternatives are tried in regex order.
///    `\s` is the Unicode White_Space property, `\p{L}` / `\p{N}` the general categories L* / N*.
/// 3. transformers then runs its ByteLevel pre-tokenizer with the GPT-2 split regex over each piece.
///    That changes nothing for the pieces above except a special-token spelling, which it cuts in three.
enum PreTokenizer {
    enum CharClass { case space, letter, number, other }

    @inline(__always) static func classify(_ s: Unicode.Scalar) -> CharClass {
        let v = s.value
        if v < 0x80 {
            switch v {
            case 0x61...0x7A, 0x41...0x5A: return .letter
            case 0x30...0x39: return .number
            case 0x09...0x0D, 0x20: return .space
            default: return .other
            }
        }
        let p = s.properties
        if p.isWhitespace { return .space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return isNewerThanReference(p) ? .other : .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return isNewerThanReference(p) ? .other : .number
        default:
            return .other
        }
    }

    /// The reference's regex engine (Oniguruma, in tokenizers) knows Unicode 16: letters and digits
    /// assigned later are unassigned (\p{Cn}) there, so "other" here. (Its lowercasing is Rust's, whose
    /// tables are as new as the Swift standard library's; no cut-off is needed there.)
    static let referenceUnicodeMajor = 16

    @inline(__always) static func isNewerThanReference(_ p: Unicode.Scalar.Properties) -> Bool {
        guard let age = p.age else { return true }
        return age.major > referenceUnicodeMajor
    }

    /// Unicode NFC. Foundation's (and the standard library's) normalizers on Linux do not put
    /// combining marks back in canonical order after expanding a decomposition (e.g. U+0F73 ->
    /// U+0F71 U+0F72 after a mark of class 233), which Rust's normalizer does. So: NFD, then our own
    /// canonical ordering (a stable sort of each run of non-starters by combining class), then NFC,
    /// which finds nothing left to reorder and only composes.
    static func canonicalNFC(_ text: String) -> String {
        let nfd = text.decomposedStringWithCanonicalMapping
        var scalars = Array(nfd.unicodeScalars)
        var reordered = false
        var i = 0
        while i < scalars.count {
            if scalars[i].properties.canonicalCombiningClass.rawValue == 0 {
                i += 1
                continue
            }
            var j = i + 1
            var sorted = true
            while j < scalars.count {
                let ccc = scalars[j].properties.canonicalCombiningClass.rawValue
                if ccc == 0 { break }
                if ccc < scalars[j - 1].properties.canonicalCombiningClass.rawValue { sorted = false }
                j += 1
            }
            if !sorted {
                // Insertion sort: stable, and runs of marks are short.
                for k in (i + 1)..<j {
                    let mark = scalars[k]
                    let ccc = mark.properties.canonicalCombiningClass.rawValue
                    var m = k
                    while m > i && scalars[m - 1].properties.canonicalCombiningClass.rawValue > ccc {
                        scalars[m] = scalars[m - 1]
                        m -= 1
                    }
                    scalars[m] = mark
                }
                reordered = true
            }
            i = j
        }
        if !reordered { return nfd.precomposedStringWithCanonicalMapping }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view).precomposedStringWithCanonicalMapping
    }

    /// NFC + lowercase of a piece of text that holds no special token. (Whitespace needs no
    /// rewriting: the scanner drops it whatever it is.)
    static func normalize(_ bytes: ArraySlice<UInt8>) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(bytes.count)
        if !bytes.contains(where: { $0 >= 0x80 }) {
            // ASCII is already NFC; lowercasing is A-Z only.
            for b in bytes {
                out.append(Unicode.Scalar((0x41...0x5A).contains(b) ? b | 0x20 : b))
            }
            return out
        }
        let text = String(decoding: bytes, as: UTF8.self)
        for s in canonicalNFC(text).unicodeScalars {
            if s.value < 0x80 {
                let b = UInt8(truncatingIfNeeded: s.value)
                out.append(Unicode.Scalar((0x41...0x5A).contains(b) ? b | 0x20 : b))
            } else if s.properties.changesWhenLowercased {
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            } else {
                out.append(s)
            }
        }
        return out
    }

    private static let startLiteral = Array("<|startoftext|>".unicodeScalars)
    private static let endLiteral = Array("<|endoftext|>".unicodeScalars)

    @inline(__always) private static func hasLiteral(_ scalars: [Unicode.Scalar], at i: Int, _ literal: [Unicode.Scalar]) -> Bool {
        guard i + literal.count <= scalars.count else { return false }
        for k in 0..<literal.count where scalars[i + k] != literal[k] { return false }
        return true
    }

    /// Length of `'s|'t|'re|'ve|'m|'ll|'d` at `i` (which holds an apostrophe), if one is there.
    @inline(__always) private static func contractionLength(_ scalars: [Unicode.Scalar], at i: Int) -> Int? {
        guard i + 1 < scalars.count else { return nil }
        switch scalars[i + 1] {
        case "s", "t", "m", "d":
            return 2
        case "r", "v":
            return i + 2 < scalars.count && scalars[i + 2] == "e" ? 3 : nil
        case "l":
            return i + 2 < scalars.count && scalars[i + 2] == "l" ? 3 : nil
        default:
            return nil
        }
    }

    /// Calls `body` with the UTF-8 bytes of each pre-token of normalized text, in order.
    static func forEachPreToken(_ scalars: [Unicode.Scalar], _ body: ([UInt8]) -> Void) {
        var word: [UInt8] = []
        word.reserveCapacity(32)
        let n = scalars.count
        var i = 0
        while i < n {
            let s = scalars[i]
            let cls = classify(s)
            if cls == .space {
                i += 1
                continue
            }
            if s == "<", let literal = hasLiteral(scalars, at: i, startLiteral) ? startLiteral
                : hasLiteral(scalars, at: i, endLiteral) ? endLiteral : nil {
                // The regex keeps "<|endoftext|>" (here: lowercased from other spellings) as one
                // piece, but the ByteLevel pre-tokenizer that follows re-splits every piece with the
                // GPT-2 regex, which cuts it into "<|", "endoftext", "|>". (Exact-case special
                // tokens never get here: they are taken out of the raw text first.)
                let count = literal.count
                for (a, b) in [(0, 2), (2, count - 2), (count - 2, count)] {
                    word.removeAll(keepingCapacity: true)
                    for k in (i + a)..<(i + b) { appendUTF8(scalars[k], to: &word) }
                    body(word)
                }
                i += count
                continue
            }
            var end = i + 1
            if s == "'", let length = contractionLength(scalars, at: i) {
                end = i + length
            } else {
                switch cls {
                case .letter:
                    while end < n && classify(scalars[end]) == .letter { end += 1 }
                case .number:
                    break  // one digit per pre-token
                case .other:
                    while end < n && classify(scalars[end]) == .other { end += 1 }
                case .space:
                    break
                }
            }
            word.removeAll(keepingCapacity: true)
            for k in i..<end { appendUTF8(scalars[k], to: &word) }
            body(word)
            i = end
        }
    }

    @inline(__always) static func appendUTF8(_ s: Unicode.Scalar, to bytes: inout [UInt8]) {
        let v = s.value
        switch v {
        case 0..<0x80:
            bytes.append(UInt8(v))
        case 0x80..<0x800:
            bytes.append(UInt8(0xC0 | (v >> 6)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        case 0x800..<0x10000:
            bytes.append(UInt8(0xE0 | (v >> 12)))
            bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        default:
            bytes.append(UInt8(0xF0 | (v >> 18)))
            bytes.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        }
    }
}
