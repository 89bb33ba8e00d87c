extension Tensor {
    /// `torch.cat` along `axis`.
    public static func concatenate(_ parts: [Tensor], axis: Int) -> Tensor {
        precondition(!parts.isEmpty, "concatenate: no tensors")
        let first = parts[0]
        let axis = axis < 0 ? first.rank + axis : axis
        for p in parts {
            precondition(p.rank == first.rank && (0..<first.rank).allSatisfy { $0 == axis || p.shape[$0] == first.shape[$0] },
                         "concatenate: \(p.shape) does not fit \(first.shape) along axis \(axis)")
        }
        let outer = first.shape[..<axis].reduce(1, *), inner = first.shape[(axis + 1)...].reduce(1, *)
        var shape = first.shape
        shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
        var out = Tensor(uninitialized: shape)
        out.withUnsafeMutableBufferPointer { o in
            var offset = 0
            let rowLength = shape[axis] * inner
            for p in parts {
                let block = p.shape[axis] * inner
                p.withUnsafeBufferPointer { src in
                    for i in 0..<outer {
                        (o.baseAddress! + i * rowLength + offset).initialize(from: src.baseAddress! + i * block, count: block)
                    }
                }
                offset += block
            }
        }
        return out
    }

    /// `narrow`: elements `range` along `axis`, copied into a new contiguous tensor.
    public func slice(_ range: Range<Int>, axis: Int) -> Tensor {
        let axis = axis < 0 ? rank + axis : axis
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[axis], "slice \(range) out of \(shape) on axis \(axis)")
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        var newShape = shape
        newShape[axis] = range.count
        var out = Tensor(uninitialized: newShape)
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<outer {
                    (o.baseAddress! + i * range.count * inner)
                        .initialize(from: src.baseAddress! + (i * shape[axis] + range.lowerBound) * inner, count: range.count * inner)
                }
            }
        }
        return out
    }

    /// `torch.chunk` into `parts` equal pieces along `axis`.
    public func chunked(_ parts: Int, axis: Int) -> [Tensor] {
        let size = dim(axis) / parts
        precondition(size * parts == dim(axis), "chunk: \(shape) axis \(axis) does not split into \(parts)")
        return (0..<parts).map { slice(($0 * size)..<(($0 + 1) * size), axis: axis) }
    }

    /// `permute(order).contiguous()`.
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "permute: \(order) is not a permutation of \(rank) axes")
        let newShape = order.map { shape[$0] }
        var strides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
        let srcStrides = order.map { strides[$0] }
        var out = Tensor(uninitialized: newShape)
        guard count > 0 else { return out }
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { o in
                // Walk the output in order; the innermost axis is a strided gather.
                let inner = newShape[rank - 1], innerStride = srcStrides[rank - 1]
                let outerCount = count / max(inner, 1)
                Parallel.forEachRange(outerCount, grain: max(1, 16_384 / max(inner, 1))) { range in
                    for row in range {
                        var rest = row, base = 0
                        for axis in stride(from: rank - 2, through: 0, by: -1) {
                            base += (rest % newShape[axis]) * srcStrides[axis]
                            rest /= newShape[axis]
                        }
                        let dst = o.baseAddress! + row * inner
                        for i in 0..<inner { dst[i] = src[base + i * innerStride] }
                    }
                }
            }
        }
        return out
    }

    /// Nearest-neighbour 2× upsampling of [N, C, H, W] (`F.interpolate(scale_factor=2, mode="nearest")`).
    public func upsampleNearest2x() -> Tensor {
        precondition(rank == 4, "upsampleNearest2x: NCHW expected, got \(shape)")
        let (planes, height, width) = (shape[0] * shape[1], shape[2], shape[3])
        var out = Tensor(uninitialized: [shape[0], shape[1], height * 2, width * 2])
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { o in
                let src = src.baseAddress!, o = o.baseAddress!
                Parallel.forEach(planes) { p in
                    for y in 0..<height {
                        let s = src + (p * height + y) * width
                        let d = o + (p * height * 2 + y * 2) * width * 2
                        for x in 0..<width { d[2 * x] = s[x]; d[2 * x + 1] = s[x] }
                        (d + width * 2).initialize(from: d, count: width * 2)
                    }
                }
            }
        }
        return out
    }
}

extension Tensor {
    /// Nearest-neighbour resize of [N, C, H, W] to `height`×`width`, as `F.interpolate(size=…, mode="nearest")`:
    /// source index ⌊dst · in/out⌋ (the UNet uses it when a skip connection's size is odd).
    public func upsampleNearest(height: Int, width: Int) -> Tensor {
        precondition(rank == 4, "upsampleNearest: NCHW expected, got \(shape)")
        let (planes, inHeight, inWidth) = (shape[0] * shape[1], shape[2], shape[3])
        if height == inHeight * 2 && width == inWidth * 2 { return upsampleNearest2x() }
        let scaleY = Float(inHeight) / Float(height), scaleX = Float(inWidth) / Float(width)
        let columns = (0..<width).map { min(inWidth - 1, Int((Float($0) * scaleX).rounded(.down))) }
        var out = Tensor(uninitialized: [shape[0], shape[1], height, width])
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { o in
                let src = src.baseAddress!, o = o.baseAddress!
                Parallel.forEach(planes) { p in
                    for y in 0..<height {
                        let sy = min(inHeight - 1, Int((Float(y) * scaleY).rounded(.down)))
                        let s = src + (p * inHeight + sy) * inWidth, d = o + (p * height + y) * width
                        for x in 0..<width { d[x] = s[columns[x]] }
                    }
                }
            }
        }
        return out
    }
}
