/// Element-wise arithmetic with NumPy/PyTorch broadcasting.
extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor { broadcast(a, b, { $0 + $1 }, { $0 + $1 }) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { broadcast(a, b, { $0 - $1 }, { $0 - $1 }) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { broadcast(a, b, { $0 * $1 }, { $0 * $1 }) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { broadcast(a, b, { $0 / $1 }, { $0 / $1 }) }

    public static func + (a: Tensor, s: Float) -> Tensor { a.mapElements({ $0 + s }, { $0 + s }) }
    public static func - (a: Tensor, s: Float) -> Tensor { a.mapElements({ $0 - s }, { $0 - s }) }
    public static func * (a: Tensor, s: Float) -> Tensor { a.mapElements({ $0 * s }, { $0 * s }) }
    public static func * (s: Float, a: Tensor) -> Tensor { a * s }
    public static func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }
    public static prefix func - (a: Tensor) -> Tensor { a * -1 }

    /// The broadcast shape of two shapes (PyTorch rules: align right; sizes equal or one of them 1).
    public static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
        let rank = max(a.count, b.count)
        let a = [Int](repeating: 1, count: rank - a.count) + a, b = [Int](repeating: 1, count: rank - b.count) + b
        var out = [Int]()
        for (x, y) in zip(a, b) {
            guard x == y || x == 1 || y == 1 else { return nil }
            out.append(x == 1 ? y : x)
        }
        return out
    }

    @inlinable
    static func broadcast(_ a: Tensor, _ b: Tensor,
                          _ vector: (SIMD16<Float>, SIMD16<Float>) -> SIMD16<Float>,
                          _ scalar: (Float, Float) -> Float) -> Tensor {
        guard let shape = broadcastShape(a.shape, b.shape) else {
            preconditionFailure("cannot broadcast \(a.shape) with \(b.shape)")
        }
        let layout = BroadcastLayout(shape: shape, a: a.shape, b: b.shape)
        var out = Tensor(uninitialized: shape)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { po in
                    apply(layout, pa.baseAddress!, pb.baseAddress!, po.baseAddress!, vector, scalar)
                }
            }
        }
        return out
    }

    /// `a = a + b`, written into `a`'s own storage when `a` already has the broadcast shape and is not shared
    /// (a residual sum into a fresh convolution output): the same values, without a new tensor.
    public static func += (a: inout Tensor, b: Tensor) {
        guard broadcastShape(a.shape, b.shape) == a.shape else { a = a + b; return }
        let layout = BroadcastLayout(shape: a.shape, a: a.shape, b: b.shape)
        b.withUnsafeBufferPointer { pb in
            a.withUnsafeMutableBufferPointer { pa in
                // Each output element is read from the same index of `a` just before it is written.
                apply(layout, UnsafePointer(pa.baseAddress!), pb.baseAddress!, pa.baseAddress!, { $0 + $1 }, { $0 + $1 })
            }
        }
    }

    /// z = f(x, y) over the rows of `layout`.
    @inlinable
    static func apply(_ layout: BroadcastLayout, _ pa: UnsafePointer<Float>, _ pb: UnsafePointer<Float>,
                      _ po: UnsafeMutablePointer<Float>,
                      _ vector: (SIMD16<Float>, SIMD16<Float>) -> SIMD16<Float>, _ scalar: (Float, Float) -> Float) {
        let inner = layout.inner, (sa, sb) = (layout.innerStrideA, layout.innerStrideB)
        Parallel.forEachRange(layout.rows, grain: max(1, 16_384 / max(inner, 1))) { range in
            for row in range {
                let (oa, ob) = layout.offsets(row: row)
                let x = pa + oa, y = pb + ob, z = po + row * inner
                var i = 0
                switch (sa, sb) {
                case (1, 1):
                    while i + 16 <= inner { VectorMath.store(vector(VectorMath.load(x + i), VectorMath.load(y + i)), z + i); i += 16 }
                    while i < inner { z[i] = scalar(x[i], y[i]); i += 1 }
                case (1, 0):
                    let v = SIMD16<Float>(repeating: y[0]), s = y[0]
                    while i + 16 <= inner { VectorMath.store(vector(VectorMath.load(x + i), v), z + i); i += 16 }
                    while i < inner { z[i] = scalar(x[i], s); i += 1 }
                case (0, 1):
                    let v = SIMD16<Float>(repeating: x[0]), s = x[0]
                    while i + 16 <= inner { VectorMath.store(vector(v, VectorMath.load(y + i)), z + i); i += 16 }
                    while i < inner { z[i] = scalar(s, y[i]); i += 1 }
                default:
                    let s = scalar(x[0], y[0])
                    z.initialize(repeating: s, count: inner)
                }
            }
        }
    }
}

/// Output rows of a broadcast: merged dimensions, an innermost run in which each operand has stride
/// 1 or 0, and the outer dimensions' strides per operand.
@usableFromInline
struct BroadcastLayout {
    @usableFromInline var inner = 1, innerStrideA = 1, innerStrideB = 1, rows = 1
    @usableFromInline var outer: [(size: Int, strideA: Int, strideB: Int)] = []

    @usableFromInline
    init(shape: [Int], a: [Int], b: [Int]) {
        func strides(_ s: [Int]) -> [Int] {
            let s = [Int](repeating: 1, count: shape.count - s.count) + s
            var result = [Int](repeating: 0, count: shape.count), step = 1
            for i in stride(from: shape.count - 1, through: 0, by: -1) {
                result[i] = s[i] == 1 && shape[i] != 1 ? 0 : step
                step *= s[i]
            }
            return result
        }
        // Merge adjacent dimensions whose strides compose, innermost first.
        var dims: [(size: Int, strideA: Int, strideB: Int)] = zip(shape, zip(strides(a), strides(b)))
            .map { ($0.0, $0.1.0, $0.1.1) }.filter { $0.0 != 1 }
        var merged: [(size: Int, strideA: Int, strideB: Int)] = []
        while let d = dims.popLast() {
            if var last = merged.last,
               (d.strideA == last.strideA * last.size || (d.strideA == 0 && last.strideA == 0)),
               (d.strideB == last.strideB * last.size || (d.strideB == 0 && last.strideB == 0)) {
                last.size *= d.size
                merged[merged.count - 1] = last
            } else {
                merged.append(d)
            }
        }
        // merged is innermost-first.
        if let innermost = merged.first, innermost.strideA <= 1, innermost.strideB <= 1 {
            inner = innermost.size; innerStrideA = innermost.strideA; innerStrideB = innermost.strideB
            outer = Array(merged.dropFirst())
        } else {
            outer = merged
        }
        rows = outer.reduce(1) { $0 * $1.size }
    }

    @inlinable
    func offsets(row: Int) -> (Int, Int) {
        var rest = row, oa = 0, ob = 0
        for d in outer {
            let i = rest % d.size
            rest /= d.size
            oa += i * d.strideA; ob += i * d.strideB
        }
        return (oa, ob)
    }
}
