import DarkroomTensor
import DarkroomTestSupport
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

    func tensor(_ name: String) throws -> Tensor { try file.tensor(name) }

    func parameters(_ testCase: String) throws -> [String: Any] {
        let json = try XCTUnwrap(file.metadata[testCase], "no metadata for case \(testCase)")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }
}

