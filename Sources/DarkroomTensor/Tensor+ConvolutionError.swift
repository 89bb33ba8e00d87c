/// The error of a Float32 3×3 convolution against a float64 direct one (`darkroom bench winograd`, issue 13 part 2).
public struct ConvolutionError: Sendable, CustomStringConvertible {
    /// max |y − y₆₄| / RMS(y₆₄) over the measured outputs.
    public var maxRelative: Double
    /// RMS(y − y₆₄) / RMS(y₆₄).
    public var rmsRelative: Double

    public var description: String { String(format: "max %.2e  rms %.2e", maxRelative, rmsRelative) }

    /// Float64 direct 3×3 stride-1 padding-1 convolution of `input` [N, C, H, W] with `weight` [K, C, 3, 3] and
    /// `bias`, for the output channels `outputChannels` only: [N][outputChannels.count][H·W]. Each output is the
    /// sum over c, i, j of weight · input in Double, in that order: no im2col, no GEMM, no transform.
    public static func referenceFloat64(input: Tensor, weight: Tensor, bias: Tensor?, outputChannels: [Int]) -> [[[Double]]] {
        precondition(input.rank == 4 && weight.rank == 4 && weight.dim(1) == input.dim(1) && weight.dim(2) == 3 && weight.dim(3) == 3)
        let (batch, channels, height, width) = (input.dim(0), input.dim(1), input.dim(2), input.dim(3))
        let w = weight.scalars, b = bias?.scalars
        let planeCount = height * width, tasks = batch * outputChannels.count
        let all = UnsafeMutablePointer<Double>.allocate(capacity: tasks * planeCount)
        defer { all.deallocate() }
        input.withUnsafeBufferPointer { x in
            Parallel.forEach(tasks) { task in
                let n = task / outputChannels.count, k = outputChannels[task % outputChannels.count]
                let acc = all + task * planeCount
                acc.initialize(repeating: b.map { Double($0[k]) } ?? 0, count: planeCount)
                for c in 0..<channels {
                    let plane = (n * channels + c) * planeCount
                    for i in 0..<3 {
                        for j in 0..<3 {
                            let tap = Double(w[((k * channels + c) * 3 + i) * 3 + j])
                            let x0 = max(0, 1 - j), x1 = min(width, width + 1 - j)
                            for y in max(0, 1 - i)..<min(height, height + 1 - i) {
                                let src = plane + (y + i - 1) * width + j - 1, dst = acc + y * width
                                for column in x0..<x1 { dst[column] += tap * Double(x[src + column]) }
                            }
                        }
                    }
                }
            }
        }
        return (0..<batch).map { n in
            (0..<outputChannels.count).map { index in
                Array(UnsafeBufferPointer(start: all + (n * outputChannels.count + index) * planeCount, count: planeCount))
            }
        }
    }

    /// The error of `output` [N, K, H, W] against `reference` (from `referenceFloat64` for `outputChannels`).
    public init(_ output: Tensor, reference: [[[Double]]], outputChannels: [Int]) {
        let (channels, plane) = (output.dim(1), output.dim(2) * output.dim(3))
        let y = output.scalars
        var worst = 0.0, squaredError = 0.0, squared = 0.0, count = 0.0
        for (n, planes) in reference.enumerated() {
            for (index, k) in outputChannels.enumerated() {
                let base = (n * channels + k) * plane
                for (p, want) in planes[index].enumerated() {
                    let error = Double(y[base + p]) - want
                    worst = max(worst, abs(error))
                    squaredError += error * error
                    squared += want * want
                    count += 1
                }
            }
        }
        let scale = (squared / max(count, 1)).squareRoot()
        maxRelative = scale > 0 ? worst / scale : worst
        rmsRelative = scale > 0 ? (squaredError / max(count, 1)).squareRoot() / scale : 0
    }
}
