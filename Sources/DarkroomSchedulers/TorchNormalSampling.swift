// Box–Muller on blocks of 16 uniforms, reproducing the float32 arithmetic of PyTorch's AVX2 kernel
// (`NormalFill16<float>` in ATen/native/cpu/DistributionTemplates.h, with `log256_ps` / `sincos256_ps`
// from ATen/native/cpu/avx_mathfun.h) as compiled into the torch 2.x x86-64 wheels.
//
// The operation order and the fused multiply-adds below were read from the machine code of the AVX2
// kernel in libtorch_cpu.so (GCC contracts many of the header's `_mm256_mul_ps` + `_mm256_add_ps` pairs
// into `vfmadd*ps`); every `fma32` marks one such instruction, every plain `*`/`+` a separate one.
// Swift does not contract `a * b + c`, so the plain expressions keep their two roundings.
//
// The fused operations are emulated exactly with Double arithmetic (product exact in Double, sum rounded
// to odd, then rounded to Float), so the result does not depend on the build's target CPU features and
// equals a hardware `vfmadd` bit for bit.

/// Constants of the AVX2 kernel, as the exact float32 bit patterns found in libtorch_cpu.so.
enum TorchAVXConstants {
    static let one: Float = 1.0
    static let twoPi = Float(bitPattern: 0x40c9_0fdb)  // (float)(2.0f * c10::pi<double>)
    static let minusTwo: Float = -2.0

    // log256_ps (Cephes logf)
    static let sqrtHalf = Float(bitPattern: 0x3f35_04f3)
    static let logP: [Float] = [
        Float(bitPattern: 0x3d90_21bb), Float(bitPattern: 0xbdeb_d1b8), Float(bitPattern: 0x3def_251a),
        Float(bitPattern: 0xbdfe_5d4f), Float(bitPattern: 0x3e11_e9bf), Float(bitPattern: 0xbe2a_ae50),
        Float(bitPattern: 0x3e4c_ceac), Float(bitPattern: 0xbe7f_fffc), Float(bitPattern: 0x3eaa_aaaa),
    ]
    static let logQ1 = Float(bitPattern: 0xb95e_8083)  // -2.12194440e-4
    static let logQ2 = Float(bitPattern: 0x3f31_8000)  // 0.693359375

    // sincos256_ps (Cephes sinf/cosf)
    static let fourOverPi = Float(bitPattern: 0x3fa2_f983)
    static let minusDP1 = Float(bitPattern: 0xbf49_0000)  // -0.78515625
    static let minusDP2 = Float(bitPattern: 0xb97d_a000)  // -2.4187564849853515625e-4
    static let minusDP3 = Float(bitPattern: 0xb322_2169)  // -3.77489497744594108e-8
    static let cosP0 = Float(bitPattern: 0x37cc_f5ce)
    static let cosP1 = Float(bitPattern: 0xbab6_061a)
    static let cosP2 = Float(bitPattern: 0x3d2a_aaa5)
    static let sinP0 = Float(bitPattern: 0xb94c_a1f9)
    static let sinP1 = Float(bitPattern: 0x3c08_839e)
    static let sinP2 = Float(bitPattern: 0xbe2a_aaa3)
}

/// Exactly rounded float32 fused multiply-add `a * b + c` (one rounding), computed without FMA hardware.
///
/// The product is exact in Double (24 + 24 bits); the Double sum is made round-to-odd using its exact
/// error (TwoSum), and rounding a round-to-odd value with ≥ 2 extra bits to Float is the correct rounding
/// of the exact sum.
@inline(__always)
public func fma32(_ a: Float, _ b: Float, _ c: Float) -> Float {
    let p = Double(a) * Double(b)
    let cd = Double(c)
    let s = p + cd
    let bb = s - p
    let err = (p - (s - bb)) + (cd - bb)
    if err == 0 { return Float(s) }
    var bits = s.bitPattern
    if (err < 0) != (s < 0) { bits &-= 1 }  // truncate toward zero
    bits |= 1  // sticky bit
    return Float(Double(bitPattern: bits))
}

/// Scalar reference of the AVX2 kernel for one lane: `u1raw` from the first half of a block of 16,
/// `u2raw` from the second half; returns (data[j], data[j + 8]) = (r·cos θ, r·sin θ) with mean 0, std 1.
@inline(__always)
func torchBoxMullerLane(_ u1raw: Float, _ u2raw: Float) -> (Float, Float) {
    typealias C = TorchAVXConstants
    let u1 = C.one - u1raw  // [0, 1) -> (0, 1]
    let theta = C.twoPi * u2raw

    // ---- log256_ps(u1); u1 > 0 and normal, so the invalid/denormal guards are no-ops.
    let bits = u1.bitPattern
    var x = Float(bitPattern: (bits & ~0x7f80_0000) | 0x3f00_0000)  // mantissa in [0.5, 1)
    var e = Float(Int32(bitPattern: bits >> 23) &- 127) + C.one
    let small = x < C.sqrtHalf
    let tmp: Float = small ? x : 0
    x = x - C.one
    e = e - (small ? C.one : 0)
    x = x + tmp
    let z = x * x
    var y = fma32(C.logP[0], x, C.logP[1])
    y = fma32(y, x, C.logP[2])
    y = fma32(y, x, C.logP[3])
    y = fma32(y, x, C.logP[4])
    y = fma32(y, x, C.logP[5])
    y = fma32(y, x, C.logP[6])
    y = fma32(y, x, C.logP[7])
    y = fma32(y, x, C.logP[8])
    y = x * y
    y = fma32(y, z, e * C.logQ1)
    y = y - z * 0.5  // vfnmadd(z, 0.5, y): z * 0.5 is exact, so one rounding either way
    x = x + y
    let logU1 = fma32(e, C.logQ2, x)
    let radius = (logU1 * C.minusTwo).squareRoot()

    // ---- sincos256_ps(theta); theta in [0, 2π), so the sign of the argument is +.
    let ax = Float(bitPattern: theta.bitPattern & 0x7fff_ffff)
    let signIn = theta.bitPattern & 0x8000_0000
    var j = Int32(ax * C.fourOverPi)  // cvttps2dq
    j = (j &+ 1) & ~1
    let yf = Float(j)
    let signSin = signIn ^ (UInt32(bitPattern: j & 4) << 29)
    let polyIsCos = (j & 2) == 0  // true: the first polynomial gives sin
    var r = fma32(yf, C.minusDP1, ax)
    r = fma32(C.minusDP2, yf, r)
    r = fma32(yf, C.minusDP3, r)
    let signCos = UInt32(bitPattern: ~(j &- 2) & 4) << 29
    let z2 = r * r
    let half = z2 * 0.5
    var yc = fma32(C.cosP0, z2, C.cosP1)
    yc = fma32(yc, z2, C.cosP2)
    yc = z2 * yc
    yc = fma32(z2, yc, -half)
    yc = yc + C.one
    var ys = fma32(C.sinP0, z2, C.sinP1)
    ys = fma32(ys, z2, C.sinP2)
    ys = z2 * ys
    ys = fma32(r, ys, r)
    let ysin2: Float = polyIsCos ? ys : 0
    let ysin1: Float = polyIsCos ? 0 : yc
    let ycRest = yc - ysin1
    let ysRest = ys - ysin2
    let sinAbs = ysin2 + ysin1
    let cosAbs = ysRest + ycRest
    let sinT = Float(bitPattern: sinAbs.bitPattern ^ signSin)
    let cosT = Float(bitPattern: cosAbs.bitPattern ^ signCos)

    // fma(n, std, mean) with std = 1, mean = 0 is n + 0 (turns -0 into +0, like the kernel).
    let n1 = radius * cosT
    let n2 = radius * sinT
    return (n1 + 0, n2 + 0)
}

/// Applies the kernel in place to one block of 16 uniforms (torch: `normal_fill_16`).
@inline(__always)
public func torchNormalFill16Scalar(_ p: UnsafeMutablePointer<Float>) {
    for k in 0..<8 {
        let (a, b) = torchBoxMullerLane(p[k], p[k + 8])
        p[k] = a
        p[k + 8] = b
    }
}
