import DarkroomTensor
import DarkroomWeights
import XCTest

/// Asserts equal shapes and max|actual − expected| ≤ `relative` · max|expected|: the error relative to
/// the tensor's scale, so near-zero elements neither hide nor inflate it.
public func assertClose(_ actual: Tensor, _ expected: Tensor, relative: Float, _ message: String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
    let scale = expected.scalars.reduce(0) { max($0, abs($1)) }
    assertWithin(actual, expected, absolute: relative * scale, message, file: file, line: line)
}

/// Asserts equal shapes and max |actual − expected| ≤ `absolute`, element-wise.
public func assertWithin(_ actual: Tensor, _ expected: Tensor, absolute: Float, _ message: String = "",
                         file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "shape " + message, file: file, line: line)
    guard actual.shape == expected.shape else { return }
    let a = actual.scalars, e = expected.scalars
    var worst: Float = 0, at = 0
    for i in e.indices where !(abs(a[i] - e[i]) <= worst) { worst = abs(a[i] - e[i]); at = i }
    XCTAssert(worst <= absolute, "max |Δ| \(worst) at \(at) (got \(a[at]), want \(e[at])) exceeds \(absolute) \(message)",
              file: file, line: line)
}

extension SafetensorsFile {
    /// A stored tensor as a Float32 `Tensor`.
    public func tensor(_ name: String) throws -> Tensor { Tensor(shape: try info(name).shape, scalars: try floats(name)) }

    /// Token ids stored as floats, one row per prompt.
    public func ids(_ name: String) throws -> [[Int]] {
        let t = try tensor(name)
        return (0..<t.shape[0]).map { row in (0..<t.shape[1]).map { Int(t.scalars[row * t.shape[1] + $0]) } }
    }
}
