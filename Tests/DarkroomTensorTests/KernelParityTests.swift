import DarkroomTensor
import DarkroomTestSupport
import XCTest

/// Every expected value comes from `tools/reference/make_op_fixtures.py` (PyTorch, float64 math), case
/// named in the test. Tolerance: 1e-5 of the tensor's largest magnitude unless stated — fp32 kernels
/// accumulate in a different order from the float64 reference, nothing more.
final class KernelParityTests: XCTestCase {
    var fx: OpFixtures!
    override func setUpWithError() throws { fx = try OpFixtures() }

    func testLinear() throws {  // case "linear"
        let out = try fx.tensor("linear.x").linear(weight: fx.tensor("linear.weight"), bias: fx.tensor("linear.bias"))
        assertClose(out, try fx.tensor("linear.out"), relative: 1e-5)
    }

    func testBatchedMatmul() throws {  // case "matmul"
        assertClose(try fx.tensor("matmul.a").matmul(fx.tensor("matmul.b")), try fx.tensor("matmul.out"), relative: 1e-5)
    }

    func testMatmulTransposedAndShared() throws {  // case "matmul": Aᵢ·B = Aᵢ·(Bᵀ)ᵀ, and a shared matrix per batch
        let a = try fx.tensor("matmul.a"), b = try fx.tensor("matmul.b"), expected = try fx.tensor("matmul.out")
        let bT = b.permuted([0, 2, 1])
        assertClose(a.matmul(bT, transposeOther: true), expected, relative: 1e-5)
        let first = b.slice(0..<1, axis: 0).reshaped([17, 11])
        assertClose(a.slice(0..<1, axis: 0).matmul(first), expected.slice(0..<1, axis: 0), relative: 1e-5)
    }

    func conv(_ name: String, stride: Int, padding: Padding2D, file: StaticString = #filePath, line: UInt = #line) throws {
        let parameters = try fx.parameters(name)
        XCTAssertEqual(parameters["stride"] as? Int, stride, "fixture stride", file: file, line: line)
        XCTAssertEqual(parameters["padding"] as? [Int], [padding.left, padding.right, padding.top, padding.bottom],
                       "fixture padding", file: file, line: line)
        let out = try fx.tensor("\(name).x").conv2d(weight: fx.tensor("\(name).weight"), bias: fx.tensor("\(name).bias"),
                                                   stride: stride, padding: padding)
        assertClose(out, try fx.tensor("\(name).out"), relative: 1e-5, name, file: file, line: line)
    }

    func testConvolutions() throws {
        try conv("conv1x1", stride: 1, padding: .zero)
        try conv("conv3x3", stride: 1, padding: .uniform(1))
        try conv("conv3x3_cin4", stride: 1, padding: .uniform(1))
        try conv("conv3x3_big", stride: 1, padding: .uniform(1))
        try conv("conv3x3_s2", stride: 2, padding: .uniform(1))
        try conv("conv3x3_s2_pad0101", stride: 2, padding: Padding2D(left: 0, right: 1, top: 0, bottom: 1))
    }

    func testConvolutionsIm2col() throws {  // the same cases, every 3×3 one through im2col
        let saved = Tensor.convolutionAlgorithm
        defer { Tensor.convolutionAlgorithm = saved }
        Tensor.convolutionAlgorithm = .im2col
        try testConvolutions()
    }

    /// Winograd F(4×4, 3×3) on the 3×3 stride-1 cases, whose sizes (13×11, 10×12, 40×36) leave partial tiles
    /// at the right and bottom edges; then in chunks of 2 and 1 tile rows. Same 1e-5 bound as direct convolution:
    /// the transforms cost about one digit of Float32, and the float64 reference leaves room for it.
    func testWinogradConvolution() throws {
        let (savedAlgorithm, savedBudget) = (Tensor.convolutionAlgorithm, Tensor.winogradChunkBudget)
        defer { (Tensor.convolutionAlgorithm, Tensor.winogradChunkBudget) = (savedAlgorithm, savedBudget) }
        Tensor.convolutionAlgorithm = .winograd
        for name in ["conv3x3", "conv3x3_cin4", "conv3x3_big"] { try conv(name, stride: 1, padding: .uniform(1)) }
        for tileRows in [2, 1] {
            Tensor.winogradChunkBudget = 36 * (32 + 32) * 9 * tileRows  // conv3x3_big: 32 → 32 channels, 9 tiles a row
            try conv("conv3x3_big", stride: 1, padding: .uniform(1))
            Tensor.winogradChunkBudget = 36 * (8 + 12) * 3 * tileRows  // conv3x3: 8 → 12 channels, 3 tiles a row, batch 2
            try conv("conv3x3", stride: 1, padding: .uniform(1))
        }
    }

    func testConvolutionTilingMatchesUntiled() throws {  // case "conv3x3_big" with a budget of 3 rows, then 1 row, per tile
        let (saved, savedAlgorithm) = (Tensor.im2colBudget, Tensor.convolutionAlgorithm)
        defer { (Tensor.im2colBudget, Tensor.convolutionAlgorithm) = (saved, savedAlgorithm) }
        Tensor.convolutionAlgorithm = .im2col
        for rows in [3, 1] {
            Tensor.im2colBudget = 32 * 9 * 36 * rows
            try conv("conv3x3_big", stride: 1, padding: .uniform(1))
            try conv("conv3x3_s2", stride: 2, padding: .uniform(1))
        }
    }

    func testGroupNorm() throws {  // cases "groupnorm" (eps 1e-6, 8 groups, + fused SiLU) and "groupnorm_eps5"
        let x = try fx.tensor("groupnorm.x"), w = try fx.tensor("groupnorm.weight"), b = try fx.tensor("groupnorm.bias")
        XCTAssertEqual(try fx.parameters("groupnorm")["groups"] as? Int, 8)
        assertClose(x.groupNorm(groups: 8, weight: w, bias: b, epsilon: 1e-6), try fx.tensor("groupnorm.out"), relative: 1e-5)
        assertClose(x.groupNorm(groups: 8, weight: w, bias: b, epsilon: 1e-6, silu: true),
                    try fx.tensor("groupnorm.out_silu"), relative: 1e-5)
        let out = try fx.tensor("groupnorm_eps5.x").groupNorm(
            groups: 32, weight: fx.tensor("groupnorm_eps5.weight"), bias: fx.tensor("groupnorm_eps5.bias"), epsilon: 1e-5)
        assertClose(out, try fx.tensor("groupnorm_eps5.out"), relative: 1e-5)
    }

    func testGroupNormInPlace() throws {  // case "groupnorm" with fused SiLU, written over the input's own storage
        let x = try fx.tensor("groupnorm.x"), w = try fx.tensor("groupnorm.weight"), b = try fx.tensor("groupnorm.bias")
        var shared = x  // shares x's storage: the in-place form must copy first and leave x as it was
        shared.formGroupNorm(groups: 8, weight: w, bias: b, epsilon: 1e-6, silu: true)
        assertClose(shared, try fx.tensor("groupnorm.out_silu"), relative: 1e-5)
        XCTAssertEqual(x.scalars, try fx.tensor("groupnorm.x").scalars)
        var owned = x + 0  // a fresh tensor of its own: written in place, the same bits as the out-of-place form
        owned.formGroupNorm(groups: 8, weight: w, bias: b, epsilon: 1e-6, silu: true)
        XCTAssertEqual(owned.scalars, x.groupNorm(groups: 8, weight: w, bias: b, epsilon: 1e-6, silu: true).scalars)
    }

    func testLayerNorm() throws {  // case "layernorm"
        let out = try fx.tensor("layernorm.x").layerNorm(weight: fx.tensor("layernorm.weight"),
                                                         bias: fx.tensor("layernorm.bias"), epsilon: 1e-5)
        assertClose(out, try fx.tensor("layernorm.out"), relative: 1e-5)
    }

    func testSoftmaxWithLargeLogits() throws {  // case "softmax" (logits ×10)
        assertClose(try fx.tensor("softmax.x").softmax(), try fx.tensor("softmax.out"), relative: 1e-5)
    }

    func testActivations() throws {  // cases "silu", "gelu" (erf form), "quick_gelu", "geglu"
        assertClose(try fx.tensor("silu.x").silu(), try fx.tensor("silu.out"), relative: 1e-5)
        assertClose(try fx.tensor("gelu.x").gelu(), try fx.tensor("gelu.out"), relative: 1e-5)
        assertClose(try fx.tensor("quick_gelu.x").quickGELU(), try fx.tensor("quick_gelu.out"), relative: 1e-5)
        assertClose(try fx.tensor("geglu.x").geglu(), try fx.tensor("geglu.out"), relative: 1e-5)
    }

    func testAttention() throws {  // cases "attention_self" (d 40) and "attention_cross" (d 64), layout [batch·heads, seq, d]
        for name in ["attention_self", "attention_cross"] {
            let out = Tensor.attention(query: try fx.tensor("\(name).q"), key: try fx.tensor("\(name).k"),
                                       value: try fx.tensor("\(name).v"), heads: 1)
            assertClose(out, try fx.tensor("\(name).out"), relative: 1e-5, name)
        }
    }

    func testAttentionChunkedAndPackedHeads() throws {
        // Same case "attention_self", but (a) 7 query rows per chunk and (b) the 4 heads packed into
        // one [1, 300, 4·40] tensor, as diffusers' Attention holds them before head_to_batch_dim.
        let saved = Tensor.attentionScoreBudget
        defer { Tensor.attentionScoreBudget = saved }
        Tensor.attentionScoreBudget = 7 * 300
        let q = try fx.tensor("attention_self.q"), k = try fx.tensor("attention_self.k"), v = try fx.tensor("attention_self.v")
        let expected = try fx.tensor("attention_self.out")
        assertClose(Tensor.attention(query: q, key: k, value: v, heads: 1), expected, relative: 1e-5, "chunked")
        func pack(_ t: Tensor) -> Tensor { t.reshaped([1, 4, 300, 40]).permuted([0, 2, 1, 3]).reshaped([1, 300, 160]) }
        let packed = Tensor.attention(query: pack(q), key: pack(k), value: pack(v), heads: 4)
        assertClose(packed, pack(expected), relative: 1e-5, "packed heads")
    }

    func testUpsampleNearest() throws {  // case "upsample_nearest2x": exact copies
        XCTAssertEqual(try fx.tensor("upsample_nearest2x.x").upsampleNearest2x().scalars, try fx.tensor("upsample_nearest2x.out").scalars)
    }

    func testPermute() throws {  // case "permute" (0, 2, 3, 1): exact
        let out = try fx.tensor("permute.x").permuted([0, 2, 3, 1])
        XCTAssertEqual(out.shape, [2, 4, 5, 3])
        XCTAssertEqual(out.scalars, try fx.tensor("permute.out").scalars)
    }

    func testBroadcasting() throws {  // cases "broadcast_add", "broadcast_mul", "bias_add_lastdim": one rounding each
        assertClose(try fx.tensor("broadcast_add.a") + fx.tensor("broadcast_add.b"), try fx.tensor("broadcast_add.out"), relative: 1e-6)
        assertClose(try fx.tensor("broadcast_mul.a") * fx.tensor("broadcast_mul.b"), try fx.tensor("broadcast_mul.out"), relative: 1e-6)
        assertClose(try fx.tensor("bias_add_lastdim.a") + fx.tensor("bias_add_lastdim.b"), try fx.tensor("bias_add_lastdim.out"), relative: 1e-6)
        // b + a broadcasts the other way round to the same values.
        assertClose(try fx.tensor("broadcast_add.b") + fx.tensor("broadcast_add.a"), try fx.tensor("broadcast_add.out"), relative: 1e-6)
    }

    func testAddAssign() throws {  // cases "broadcast_add" and "bias_add_lastdim": += in place where a keeps its shape
        let a = try fx.tensor("bias_add_lastdim.a"), b = try fx.tensor("bias_add_lastdim.b")
        var sum = a  // shares a's storage: copied before the sum, a unchanged
        sum += b
        assertClose(sum, try fx.tensor("bias_add_lastdim.out"), relative: 1e-6)
        XCTAssertEqual(a.scalars, try fx.tensor("bias_add_lastdim.a").scalars)
        XCTAssertEqual(sum.scalars, (a + b).scalars)
        // When the sum is larger than the left side (broadcast), += makes a new tensor of the broadcast shape.
        let small = try fx.tensor("broadcast_add.b"), large = try fx.tensor("broadcast_add.a")
        var grown = small
        grown += large
        XCTAssertEqual(grown.shape, try fx.tensor("broadcast_add.out").shape)
        assertClose(grown, try fx.tensor("broadcast_add.out"), relative: 1e-6)
        var itself = a + 0
        itself += itself  // the same storage on both sides
        assertClose(itself, a * 2, relative: 0)
    }

    func testTimestepEmbedding() throws {
        // diffusers get_timestep_embedding computes in float32; both use float32 sin/cos of arguments up
        // to 999 rad, where one ulp of the argument is 6e-5 — hence 1e-4 here rather than 1e-5.
        let t = try fx.tensor("timestep_embedding.t").scalars
        assertClose(Tensor.timestepEmbedding(t, dimension: 32, flipSinToCos: true, downscaleFrequencyShift: 0),
                    try fx.tensor("timestep_embedding.out"), relative: 1e-4)
        let t2 = try fx.tensor("timestep_embedding_noflip.t").scalars
        assertClose(Tensor.timestepEmbedding(t2, dimension: 32, flipSinToCos: false, downscaleFrequencyShift: 1),
                    try fx.tensor("timestep_embedding_noflip.out"), relative: 1e-4)
    }

    func testConcatenateSliceChunkRoundTrip() throws {  // case "conv3x3_big.x": exact copies
        let x = try fx.tensor("conv3x3_big.x")
        let parts = x.chunked(4, axis: 1)
        XCTAssertEqual(parts.map(\.shape), Array(repeating: [1, 8, 40, 36], count: 4))
        XCTAssertEqual(Tensor.concatenate(parts, axis: 1).scalars, x.scalars)
        let rows = [x.slice(0..<13, axis: 2), x.slice(13..<40, axis: 2)]
        XCTAssertEqual(Tensor.concatenate(rows, axis: -2).scalars, x.scalars)
    }
}
