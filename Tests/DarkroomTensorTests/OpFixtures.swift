import DarkroomTensor
import DarkroomWeights
import Foundation
import XCTest

/// `Tests/Fixtures/ops/ops.safetensors`, written by `tools/reference/make_op_fixtures.py` (PyTorch,
/// computed in float64, stored as float32). Tensors are named `<case>.<role>`; each case's parameters
/// are a JSON string in the file's metadata under the case name.
struct OpFixtures {
    static let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/ops/ops.safetensors")

    let file: SafetensorsFile

    init() throws { file = try SafetensorsFile(url: Self.url) }

    func tensor(_ name: String) throws -> Tensor {
        Tensor(shape: try file.info(name).shape, scalars: try file.floats(name))
    }

    func parameters(_ testCase: String) throws -> [String: Any] {
        let json = try XCTUnwrap(file.metadata[testCase], "no metadata for case \(testCase)")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }
}

/// Asserts equal shapes and max|actual − expected| ≤ `relative` · max|expected|: the error relative
/// to the tensor's scale, so near-zero elements neither hide nor inflate it.
func assertClose(_ actual: Tensor, _ expected: Tensor, relative: Float, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "shape " + message, file: file, line: line)
    guard actual.shape == expected.shape else { return }
    let a = actual.scalars, e = expected.scalars
    let scale = e.reduce(0) { max($0, abs($1)) }
    var worst: Float = 0, at = 0
    for i in e.indices where !(abs(a[i] - e[i]) <= worst) { worst = abs(a[i] - e[i]); at = i }
    XCTAssert(worst <= relative * scale,
              "max |Δ| \(worst) at \(at) (got \(a[at]), want \(e[at])) exceeds \(relative) × \(scale) \(message)",
              file: file, line: line)
}
