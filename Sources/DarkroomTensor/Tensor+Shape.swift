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

extension Tensor {
    /// `torch.nn.functional.pixel_shuffle`: [N, C·r², H, W] → [N, C, H·r, W·r], with
    /// out[n, c, y·r + i, x·r + j] = in[n, c·r² + i·r + j, y, x].
    public func pixelShuffle(_ r: Int) -> Tensor {
        precondition(rank == 4 && r >= 1 && dim(1) % (r * r) == 0, "pixelShuffle(\(r)): \(shape)")
        let (n, channels, height, width) = (dim(0), dim(1) / (r * r), dim(2), dim(3))
        var out = Tensor(uninitialized: [n, channels, height * r, width * r])
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let src = src.baseAddress!, dst = dst.baseAddress!
                Parallel.forEach(n * channels) { plane in
                    let outPlane = dst + plane * height * r * width * r
                    for i in 0..<r { for j in 0..<r {
                        let inPlane = src + (plane * r * r + i * r + j) * height * width
                        for y in 0..<height {
                            let row = outPlane + (y * r + i) * width * r + j, s = inPlane + y * width
                            for x in 0..<width { row[x * r] = s[x] }
                        }
                    } }
                }
            }
        }
        return out
    }

    /// `torch.nn.functional.pixel_unshuffle`: [N, C, H·r, W·r] → [N, C·r², H, W], the inverse of `pixelShuffle`.
    public func pixelUnshuffle(_ r: Int) -> Tensor {
        precondition(rank == 4 && r >= 1 && dim(2) % r == 0 && dim(3) % r == 0, "pixelUnshuffle(\(r)): \(shape)")
        let (n, channels, height, width) = (dim(0), dim(1), dim(2) / r, dim(3) / r)
        var out = Tensor(uninitialized: [n, channels * r * r, height, width])
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let src = src.baseAddress!, dst = dst.baseAddress!
                Parallel.forEach(n * channels) { plane in
                    let inPlane = src + plane * height * r * width * r
                    for i in 0..<r { for j in 0..<r {
                        let outPlane = dst + (plane * r * r + i * r + j) * height * width
                        for y in 0..<height {
                            let row = inPlane + (y * r + i) * width * r + j, d = outPlane + y * width
                            for x in 0..<width { d[x] = row[x * r] }
                        }
                    } }
                }
            }
        }
        return out
    }

    /// `torch.nn.functional.pad(x, (0, right, 0, bottom), mode="reflect")` on [N, C, H, W]: the mirror image
    /// without repeating the edge (index H − 1 + k reads H − 1 − k); each pad must be smaller than its side.
    public func padReflect(right: Int, bottom: Int) -> Tensor {
        precondition(rank == 4 && right >= 0 && bottom >= 0 && right < dim(3) && bottom < dim(2),
                     "padReflect(right: \(right), bottom: \(bottom)): \(shape)")
        if right == 0 && bottom == 0 { return self }
        let (planes, height, width) = (dim(0) * dim(1), dim(2), dim(3))
        let (outHeight, outWidth) = (height + bottom, width + right)
        var out = Tensor(uninitialized: [dim(0), dim(1), outHeight, outWidth])
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let src = src.baseAddress!, dst = dst.baseAddress!
                Parallel.forEach(planes) { p in
                    for y in 0..<outHeight {
                        let sy = y < height ? y : 2 * (height - 1) - y
                        let s = src + (p * height + sy) * width, d = dst + (p * outHeight + y) * outWidth
                        d.initialize(from: s, count: width)
                        for x in width..<outWidth { d[x] = s[2 * (width - 1) - x] }
                    }
                }
            }
        }
        return out
    }
}
