// libFuzzer target: LDM → diffusers key conversion (`LDMKeyMap.canonical`), one key at a time and as a set
// (tools/fuzz keymap).
//
// The input is UTF-8 text, one key per line. A line may end in `=d0,d1,…` to give that key a shape
// (otherwise it has none), e.g. `first_stage_model.encoder.mid.attn_1.q.weight=512,512,1,1`.
// Each key is converted alone, then the whole set together; every entry of the result must name a key of the
// input, and its transform must fit the shape it was given (as `Checkpoint.open` checks).
import DarkroomWeights
import Foundation

private func parse(_ line: Substring) -> (key: String, shape: [Int]?) {
    guard let equals = line.lastIndex(of: "=") else { return (String(line), nil) }
    let dims = line[line.index(after: equals)...].split(separator: ",", omittingEmptySubsequences: false)
    let shape = dims.compactMap { Int($0) }.filter { (0...1 << 20).contains($0) }
    return (String(line[..<equals]), shape.count == dims.count && shape.count <= 8 ? shape : nil)
}

private func check(_ keys: [String], _ shapes: [String: [Int]]) {
    let map = LDMKeyMap.canonical(from: keys, shapes: { shapes[$0] })
    let input = Set(keys)
    for (canonical, entry) in map {
        precondition(input.contains(entry.original), "\(canonical) maps to \(entry.original), which is not an input key")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).prefix(4096).map(parse)
    var shapes: [String: [Int]] = [:]
    for (key, shape) in lines { if let shape { shapes[key] = shape } }
    for (key, _) in lines { check([key], shapes) }
    check(lines.map(\.key), shapes)
    return 0
}
