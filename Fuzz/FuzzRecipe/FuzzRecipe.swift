// libFuzzer target: the recipe decoder, `Recipe.parse` (JSON → validated recipe) (tools/fuzz recipe).
// The input is the recipe file's bytes.
import DarkroomService
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    if let recipe = try? Recipe.parse(bytes, file: "fuzz.json") {
        _ = String(describing: recipe)
    }
    return 0
}
