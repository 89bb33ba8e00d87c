// libFuzzer target: A1111 prompt syntax and the CLIP tokenizer (tools/fuzz prompt): `parsePromptAttention`
// (`(word:1.3)`, `[word]`, `\(`, `BREAK`), `CLIPTokenizer.weightedChunks` (75-token chunks, comma backtracking,
// SD1 and SD2 padding), `encode` and `tokenize`. The input is the prompt as UTF-8 (invalid bytes become U+FFFD).
import DarkroomTokenizer
import Foundation

private let tokenizer: CLIPTokenizer = {
    do { return try CLIPTokenizer.bundled() } catch { fatalError("fuzz harness: the bundled tokenizer does not load: \(error)") }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let prompt = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    for (_, weight) in parsePromptAttention(prompt) { precondition(!weight.isNaN, "NaN weight for \(prompt.debugDescription)") }
    let sd1 = tokenizer.weightedChunks(prompt, padToken: tokenizer.endToken)
    precondition(sd1.chunks.allSatisfy { $0.count == 77 } && sd1.chunks.count == sd1.weights.count)
    _ = tokenizer.weightedChunks(prompt, padToken: 0, commaPaddingBacklog: 0)
    let ids = tokenizer.encode(prompt)
    precondition(ids.allSatisfy { $0 >= 0 && $0 < tokenizer.vocabularySize })
    _ = tokenizer.tokenize(prompt, padToken: tokenizer.endToken)
    return 0
}
