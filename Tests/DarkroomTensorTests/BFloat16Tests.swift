import DarkroomTensor
import Foundation
import XCTest

/// The bf16 mode's kernels (`Tensor.precision = .bf16`, oneDNN): rounding to bfloat16, and each product against
/// the same product in fp32. Operands rounded to bf16 (8 significant bits, relative error ≤ 2^-9 each) make each
/// term of a sum off by up to about 2^-8 relative; over sums of random-signed terms the output's relative L2
/// error is of that order, so the bound is 1e-2 (2.6 · 2^-8), and at least 1e-5 (the product did run in bf16).
final class BFloat16Tests: XCTestCase {
    override func tearDown() { Tensor.precision = .fp32 }

    func testRoundingToNearestEven() {
        // Bit patterns by IEEE 754 / bfloat16's definition (the top 16 bits of a Float, rounded to nearest even).
        let cases: [(UInt32, UInt16)] = [
            (0x3F80_0000, 0x3F80),  // 1
            (0x3F80_8000, 0x3F80),  // 1 + 2^-8: a tie, to the even 1
            (0x3F81_8000, 0x3F82),  // a tie, to the even neighbour above
            (0x3F80_8001, 0x3F81),  // just above the tie
            (0xBF80_7FFF, 0xBF80),  // just below the tie, negative
            (0x7F7F_FFFF, 0x7F80),  // the largest Float rounds to infinity
            (0x7F80_0000, 0x7F80),  // infinity
            (0x0000_0001, 0x0000),  // the smallest subnormal rounds to zero
            (0x7F80_0001, 0x7FC0),  // a signalling NaN becomes a quiet NaN
            (0xFFC1_2345, 0xFFC1),  // a NaN keeps its sign and top payload bits
        ]
        for (float, expected) in cases {
            XCTAssertEqual(HalfConversion.bfloat16Bits(from: Float(bitPattern: float)), expected, String(float, radix: 16))
        }
    }

    /// The AVX512_BF16 conversion (`CDarkroomSIMD`, vcvtne2ps2bf16) against `bfloat16Bits`: bit for bit on every
    /// normal value, infinity and NaN, at every length from 0 to 80 (whole 32s, a 16, masked tails); subnormals
    /// become zero (the instruction's documented behaviour). Fails where the CPU lacks AVX512_BF16 only if the
    /// Swift loop were wrong, since the shim is then not called.
    func testAVX512BF16ConversionMatchesTheSwiftLoop() {
        let saved = HalfConversion.encodesWithAVX512BF16
        defer { HalfConversion.encodesWithAVX512BF16 = saved }
        var generator = SystemRandomNumberGenerator()
        var values: [UInt32] = [0x3F80_8000, 0x3F81_8000, 0x3F80_8001, 0xBF80_7FFF, 0x7F7F_FFFF, 0x7F80_0000, 0xFF80_0000,
                                0x7FC0_0000, 0xFFC1_2345, 0x7F80_0001, 0x0080_0000, 0x8000_0000, 0]
        values += (0..<4000).map { _ in
            // Every exponent from 2^-126 to 2^127 and both signs, random mantissas.
            UInt32.random(in: 0x0080_0000...0x7F7F_FFFF, using: &generator) | (Bool.random(using: &generator) ? 0x8000_0000 : 0)
        }
        let subnormals: [UInt32] = [0x0000_0001, 0x0001_0000, 0x007F_FFFF, 0x8001_0000]
        for count in Array(0...80) + [values.count] {
            let input = (0..<count).map { Float(bitPattern: (values + subnormals)[$0 % (values.count + subnormals.count)]) }
            var fast = [UInt16](repeating: 0xDEAD, count: count + 1), swift = fast
            HalfConversion.encodesWithAVX512BF16 = true
            HalfConversion.encodeBFloat16Serial(from: input, into: &fast, count: count)
            HalfConversion.encodesWithAVX512BF16 = false
            HalfConversion.encodeBFloat16Serial(from: input, into: &swift, count: count)
            XCTAssertEqual(fast[count], 0xDEAD, "count \(count): wrote past the end")
            for i in 0..<count {
                let bits = input[i].bitPattern
                let expected = input[i].isSubnormal && HalfConversion.cpuConvertsBFloat16
                    ? UInt16(truncatingIfNeeded: bits >> 16) & 0x8000 : swift[i]
                XCTAssertEqual(fast[i], expected, "count \(count), value \(String(bits, radix: 16))")
            }
        }
    }

    func relativeL2(_ x: Tensor, _ reference: Tensor) -> Double {
        let (a, b) = (x.scalars, reference.scalars)
        let difference = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        return (difference / b.reduce(0.0) { $0 + Double($1) * Double($1) }).squareRoot()
    }

    func random(_ shape: [Int]) -> Tensor {
        var generator = SystemRandomNumberGenerator()
        return Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &generator) })
    }

    func assertBF16(_ bf16: Tensor, _ fp32: Tensor, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(bf16.shape, fp32.shape, message, file: file, line: line)
        let error = relativeL2(bf16, fp32)
        XCTAssert(error < 1e-2 && error > 1e-5, "\(message): relative L2 error \(error)", file: file, line: line)
        XCTAssertEqual(Precision.fallbackReasons, [], message, file: file, line: line)
    }

    func testLinear() {
        for (rows, inFeatures, outFeatures) in [(7, 33, 17), (300, 320, 640), (2, 768, 1280)] {
            let x = random([1, rows, inFeatures]), w = random([outFeatures, inFeatures]), b = random([outFeatures])
            let fp32 = x.linear(weight: w, bias: b)
            XCTAssertEqual(x.linear(weight: Weight(w), bias: b).scalars, fp32.scalars, "fp32 with a Weight is the fp32 path")
            Tensor.precision = .bf16
            let weight = Weight(w)
            assertBF16(x.linear(weight: weight, bias: b), fp32, "linear \(rows)x\(inFeatures)x\(outFeatures)")
            let packed = weight.packedBytes
            XCTAssertGreaterThanOrEqual(packed, inFeatures * outFeatures * 2, "the weight is kept in bf16")
            assertBF16(x.linear(weight: weight, bias: nil), x.linear(weight: w, bias: nil), "no bias")
            XCTAssertEqual(weight.packedBytes, packed, "converted once, reused")
            Tensor.precision = .fp32
        }
    }

    func testConvolution() {
        // (channels in, out, size, kernel, stride, padding): 3×3 as the UNet's, 1×1, a strided downsampler.
        for (c, o, size, k, stride, padding) in [(8, 16, 9, 3, 1, 1), (32, 24, 16, 1, 1, 0), (16, 16, 11, 3, 2, 1)] {
            let x = random([2, c, size, size]), w = random([o, c, k, k]), b = random([o])
            let fp32 = x.conv2d(weight: w, bias: b, stride: stride, padding: .uniform(padding))
            Tensor.precision = .bf16
            assertBF16(x.conv2d(weight: Weight(w), bias: b, stride: stride, padding: .uniform(padding)), fp32,
                       "conv \(c)->\(o) \(k)x\(k) /\(stride) @ \(size)")
            Tensor.precision = .fp32
        }
    }

    func testWinogradKernelIsTransformedOnceAndMatchesThePerCallPath() {
        // A plane that the automatic policy runs through bf16 F(2×2, 3×3) (32×32 and more, below 128).
        let x = random([2, 24, 40, 36]), w = random([16, 24, 3, 3]), b = random([16])
        let transform = WinogradTransform.f23
        XCTAssertTrue(Tensor.bf16WinogradTransforms.contains(transform))
        let perCall = try? x.winogradConvolution(weight: w, bias: b, transform: transform, products: .bf16)
        Tensor.precision = .bf16
        let weight = Weight(w)
        let first = x.conv2d(weight: weight, bias: b, padding: .uniform(1))
        let kept = weight.packedBytes
        XCTAssertEqual(kept, 16 * 16 * 24 * 2, "U: 16 matrices [16 × 24] in bf16, kept on the weight")
        let second = x.conv2d(weight: weight, bias: b, padding: .uniform(1))
        XCTAssertEqual(weight.packedBytes, kept, "transformed once, reused")
        XCTAssertEqual(first.scalars, perCall?.scalars, "the kept U is the one each call made before")
        XCTAssertEqual(second.scalars, first.scalars)
        Tensor.precision = .fp32
        assertBF16(first, x.conv2d(weight: w, bias: b, padding: .uniform(1)), "bf16 F(2x2) against fp32")
    }

    /// Large planes (from `Tensor.winogradLargePlane`, the VAE's) in the bf16 mode: bf16 F(2×2, 3×3) when
    /// `Precision.bf16OnLargePlanes` says so, else Float32 F(4×4, 3×3) as the fp32 mode runs them; the measured
    /// default picks one of the two.
    func testLargePlanesRunTheChosenConvolution() {
        defer { Precision.bf16OnLargePlanesSetting = nil }
        let side = Int(Double(Tensor.winogradLargePlane).squareRoot().rounded(.up))
        let x = random([1, 8, side, side + 3]), w = random([12, 8, 3, 3]), b = random([12])
        let bf16F23 = try? x.winogradConvolution(weight: w, bias: b, transform: .f23, products: .bf16)
        let fp32 = x.conv2d(weight: w, bias: b, padding: .uniform(1))
        XCTAssertEqual(fp32.scalars, x.winogradConvolution(weight: w, bias: b, transform: Tensor.winograd).scalars,
                       "fp32 runs F(4x4) on a \(side)x\(side + 3) plane")
        Tensor.precision = .bf16
        Precision.bf16OnLargePlanesSetting = true
        let chosenBF16 = x.conv2d(weight: Weight(w), bias: b, padding: .uniform(1))
        XCTAssertEqual(chosenBF16.scalars, bf16F23?.scalars, "bf16 F(2x2) when chosen")
        Precision.bf16OnLargePlanesSetting = false
        XCTAssertEqual(x.conv2d(weight: Weight(w), bias: b, padding: .uniform(1)).scalars, fp32.scalars, "fp32 F(4x4) when not")
        Precision.bf16OnLargePlanesSetting = nil
        let measured = x.conv2d(weight: Weight(w), bias: b, padding: .uniform(1)).scalars
        XCTAssert(measured == fp32.scalars || measured == bf16F23?.scalars, "the measurement picks one of the two")
        let measurement = LargePlaneMeasurement.shared
        XCTAssert(measurement.fp32Seconds > 0 && measurement.bf16Seconds > 0, "\(measurement)")
        Tensor.precision = .fp32
        assertBF16(chosenBF16, fp32, "bf16 F(2x2) against fp32 on a large plane")
    }

    func testAttentionBothPaths() {
        let savedWorkers = Parallel.workers
        defer { Parallel.workers = savedWorkers }
        for (tokens, keys, heads, d) in [(77, 77, 2, 8), (1100, 1100, 2, 40), (1100, 77, 2, 40)] {
            let q = random([2, tokens, heads * d]), k = random([2, keys, heads * d]), v = random([2, keys, heads * d])
            for workers in [1, 2] {  // chunked, and per thread above 1M scores
                Parallel.workers = workers
                let fp32 = Tensor.attention(query: q, key: k, value: v, heads: heads)
                Tensor.precision = .bf16
                let bf16 = Tensor.attention(query: q, key: k, value: v, heads: heads)
                assertBF16(bf16, fp32, "attention \(tokens)x\(keys), \(workers) workers")
                // 1100 keys with 40-wide heads run e^S·V with V padded to 48 columns: the same sums as unpadded.
                Tensor.attentionPadsValues = false
                let unpadded = Tensor.attention(query: q, key: k, value: v, heads: heads)
                Tensor.attentionPadsValues = true
                Tensor.precision = .fp32
                XCTAssertLessThan(relativeL2(bf16, unpadded), 1e-6, "attention \(tokens)x\(keys), \(workers) workers, padded V")
            }
        }
    }

    /// The bf16 attention's softmax numerators (`VectorMath.expForBFloat16` and its row): e^(x − max) within 1e-5 of
    /// libm's exp in Double (a polynomial's 2.7e-6 and Float32's rounding of x·log₂e), so that rounding to bfloat16
    /// gives the correctly rounded value or its neighbour, and 1 / Σ e^(x − max) within 1e-5 of the Double sum's.
    func testSoftmaxNumeratorsForBF16() {
        var generator = SystemRandomNumberGenerator()
        for width in [77, 4096, 4103] {  // a tail only, whole vectors only, both
            var scores = (0..<width).map { _ in Float.random(in: -12...12, using: &generator) }
            scores[width / 3] = -.infinity  // a masked key
            scores[width / 2] = scores.max()! - 95  // below expf's range
            let rowMax = Double(scores.max()!)
            let exact = scores.map { Foundation.exp(Double($0) - rowMax) }
            var row = scores, rounded = [UInt16](repeating: 0, count: width)
            let scale = row.withUnsafeMutableBufferPointer { r in
                rounded.withUnsafeMutableBufferPointer { Tensor.exponentiateRow(r.baseAddress!, width, roundedInto: $0.baseAddress!) }
            }
            XCTAssertEqual(Double(scale) * exact.reduce(0, +), 1, accuracy: 1e-5, "width \(width)")
            for i in 0..<width {
                if exact[i] < 1e-37 {
                    XCTAssertLessThan(row[i], 2e-38, "width \(width), key \(i): \(scores[i])")
                    continue
                }
                XCTAssertEqual(Double(row[i]) / exact[i], 1, accuracy: 1e-5, "width \(width), key \(i): \(scores[i])")
                let correctlyRounded = Int(HalfConversion.bfloat16Bits(from: Float(exact[i])))
                XCTAssertLessThanOrEqual(abs(Int(rounded[i]) - correctlyRounded), 1, "width \(width), key \(i)")
            }
        }
    }
}
