import Foundation

/// AUTOMATIC1111 prompt-attention syntax, with the semantics of A1111's
/// `modules/prompt_parser.py::parse_prompt_attention` (re-implemented here, not copied):
///
/// - `(text)` multiplies the weight of `text` by 1.1, `[text]` divides it by 1.1; nesting multiplies.
/// - `(text:1.3)` sets an explicit multiplier (`:number)` closes the innermost open round bracket).
/// - `\(` `\)` `\[` `\]` `\\` are literal characters; any other lone backslash is dropped.
/// - A `)` or `]` with nothing open, and a `:number)` with no open round bracket, are literal text.
/// - Brackets still open at the end apply (×1.1 or ÷1.1) from where they opened to the end.
/// - `BREAK` (uppercase, as a whole word, with surrounding whitespace removed) becomes the marker
///   `("BREAK", -1)`. Like A1111, the marker's weight is scaled by enclosing brackets too, and then no
///   longer counts as a marker (`(a BREAK b)` gives `("BREAK", -1.1)`, tokenized as the word "break").
/// - Adjacent pieces with the same weight are merged; an empty prompt gives `[("", 1.0)]`.
///
/// One deliberate difference: A1111 raises an exception for a `:number)` whose number Python cannot
/// parse (`(x:1.2.3)`, `(x:.)`); here such a `:...)` is kept as literal text.
public func parsePromptAttention(_ text: String) -> [(text: String, weight: Float)] {
    PromptAttention.parse(text).map { (text: $0.text, weight: Float($0.weight)) }
}

enum PromptAttention {
    static let roundMultiplier = 1.1
    static let squareMultiplier = 1 / 1.1
    static let breakMarker = "BREAK"

    /// The parse with weights in Double, exactly as Python's float arithmetic computes them.
    static func parse(_ text: String) -> [(text: String, weight: Double)] {
        let s = Array(text.unicodeScalars)
        let n = s.count
        var res: [(text: String.UnicodeScalarView, weight: Double)] = []
        var openRound: [Int] = []
        var openSquare: [Int] = []

        func scale(from start: Int, by factor: Double) {
            var k = start
            while k < res.count {
                res[k].weight *= factor
                k += 1
            }
        }
        func appendText(_ range: Range<Int>) {
            // Plain text: split on BREAK, inserting the marker between the parts.
            for (index, part) in splitOnBreak(s, range).enumerated() {
                if index > 0 { res.append((String.UnicodeScalarView(breakMarker.unicodeScalars), -1)) }
                res.append((String.UnicodeScalarView(s[part]), 1.0))
            }
        }

        var i = 0
        while i < n {
            let c = s[i]
            switch c {
            case "\\":
                if i + 1 < n, isSyntax(s[i + 1]), s[i + 1] != ":" {
                    res.append((String.UnicodeScalarView([s[i + 1]]), 1.0))
                    i += 2
                } else {
                    res.append((String.UnicodeScalarView(), 1.0))  // a lone backslash is dropped
                    i += 1
                }
            case "(":
                openRound.append(res.count)
                i += 1
            case "[":
                openSquare.append(res.count)
                i += 1
            case ":":
                if let (end, number) = explicitWeight(s, at: i) {
                    // `:number)`: an explicit weight for the innermost "(", else literal text.
                    if let value = number, let start = openRound.popLast() {
                        scale(from: start, by: value)
                    } else {
                        appendText(i..<end)
                    }
                    i = end
                } else {
                    appendText(i..<(i + 1))
                    i += 1
                }
            case ")":
                if let start = openRound.popLast() {
                    scale(from: start, by: roundMultiplier)
                } else {
                    appendText(i..<(i + 1))
                }
                i += 1
            case "]":
                if let start = openSquare.popLast() {
                    scale(from: start, by: squareMultiplier)
                } else {
                    appendText(i..<(i + 1))
                }
                i += 1
            default:
                var end = i + 1
                while end < n, !isSyntax(s[end]) { end += 1 }
                appendText(i..<end)
                i = end
            }
        }
        for start in openRound { scale(from: start, by: roundMultiplier) }
        for start in openSquare { scale(from: start, by: squareMultiplier) }

        if res.isEmpty { return [(text: "", weight: 1.0)] }
        var merged: [(text: String.UnicodeScalarView, weight: Double)] = [res[0]]
        for item in res.dropFirst() {
            if item.weight == merged[merged.count - 1].weight {
                merged[merged.count - 1].text.append(contentsOf: item.text)
            } else {
                merged.append(item)
            }
        }
        return merged.map { (text: String($0.text), weight: $0.weight) }
    }

    /// The characters that end a plain-text run: `\ ( ) [ ] :`.
    @inline(__always) private static func isSyntax(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "\\", "(", ")", "[", "]", ":": return true
        default: return false
        }
    }

    /// At `i` (a ":"), the regex `:([+-]?[.\d]+)\)`: returns the end index and the number Python's
    /// `float()` would give (nil where Python would raise), or nil if the pattern does not match.
    private static func explicitWeight(_ s: [Unicode.Scalar], at i: Int) -> (Int, Double?)? {
        var j = i + 1
        var literal = ""
        if j < s.count, s[j] == "+" || s[j] == "-" {
            literal.unicodeScalars.append(s[j])
            j += 1
        }
        let bodyStart = j
        var dots = 0
        var digits = 0
        while j < s.count {
            if s[j] == "." {
                dots += 1
                literal.append(".")
            } else if s[j].properties.generalCategory == .decimalNumber,
                      let value = s[j].properties.numericValue, value >= 0, value <= 9 {
                // Python's \d and float() accept any Unicode decimal digit.
                digits += 1
                literal.append(String(Int(value)))
            } else {
                break
            }
            j += 1
        }
        guard j > bodyStart, j < s.count, s[j] == ")" else { return nil }
        guard digits > 0, dots <= 1 else { return (j + 1, nil) }
        if literal.hasSuffix(".") { literal += "0" }
        if literal.hasPrefix(".") { literal = "0" + literal }
        if literal.hasPrefix("+.") || literal.hasPrefix("-.") {
            literal.insert("0", at: literal.index(after: literal.startIndex))
        }
        return (j + 1, Double(literal))
    }

    /// Python's `re.split(r"\s*\bBREAK\b\s*", text)` over `s[range]`: the ranges between matches.
    private static func splitOnBreak(_ s: [Unicode.Scalar], _ range: Range<Int>) -> [Range<Int>] {
        let word = Array(breakMarker.unicodeScalars)
        var parts: [Range<Int>] = []
        var partStart = range.lowerBound
        var j = range.lowerBound
        while j + word.count <= range.upperBound {
            var hit = true
            for k in 0..<word.count where s[j + k] != word[k] { hit = false; break }
            // \b on both sides: the neighbours (inside the searched text) are not word characters.
            if hit, j > range.lowerBound, isPythonWordCharacter(s[j - 1]) { hit = false }
            let after = j + word.count
            if hit, after < range.upperBound, isPythonWordCharacter(s[after]) { hit = false }
            if !hit {
                j += 1
                continue
            }
            var matchStart = j
            while matchStart > partStart, isPythonWhitespace(s[matchStart - 1]) { matchStart -= 1 }
            var matchEnd = after
            while matchEnd < range.upperBound, isPythonWhitespace(s[matchEnd]) { matchEnd += 1 }
            parts.append(partStart..<matchStart)
            partStart = matchEnd
            j = matchEnd
        }
        parts.append(partStart..<range.upperBound)
        return parts
    }

    /// Python's `\w` for str patterns: letters, numerics (Numeric_Type set) and "_".
    static func isPythonWordCharacter(_ c: Unicode.Scalar) -> Bool {
        if c == "_" { return true }
        if c.value < 0x80 {
            return (0x30...0x39).contains(c.value) || (0x41...0x5A).contains(c.value) || (0x61...0x7A).contains(c.value)
        }
        let p = c.properties
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
             .decimalNumber, .letterNumber, .otherNumber:
            return true
        default:
            return p.numericType != nil
        }
    }

    /// Python's `\s` for str patterns (`str.isspace`): White_Space plus U+001C...U+001F.
    static func isPythonWhitespace(_ c: Unicode.Scalar) -> Bool {
        if (0x1C...0x1F).contains(c.value) { return true }
        return c.properties.isWhitespace
    }
}
