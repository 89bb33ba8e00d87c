// SIMD8 version of `torchBoxMullerLane` (TorchNormalSampling.swift): the same operations, lane-wise, in the
// same order. `torchNormalFill16` uses it; the scalar version is the readable reference and is
// cross-checked against this one in the tests.

fileprivate typealias F8 = SIMD8<Float>
fileprivate typealias U8 = SIMD8<UInt32>
fileprivate typealias I8 = SIMD8<Int32>
fileprivate typealias D8 = SIMD8<Double>

@inline(__always) private func bits(_ v: F8) -> U8 { unsafeBitCast(v, to: U8.self) }
@inline(__always) private func float(_ v: U8) -> F8 { unsafeBitCast(v, to: F8.self) }

@inline(__always) private func widen(_ v: F8) -> D8 {
    D8(lowHalf: SIMD4<Double>(Double(v[0]), Double(v[1]), Double(v[2]), Double(v[3])),
       highHalf: SIMD4<Double>(Double(v[4]), Double(v[5]), Double(v[6]), Double(v[7])))
}

@inline(__always) private func narrow(_ v: D8) -> F8 {
    F8(Float(v[0]), Float(v[1]), Float(v[2]), Float(v[3]), Float(v[4]), Float(v[5]), Float(v[6]), Float(v[7]))
}

/// Lane-wise `fma32`: exactly rounded float32 `a * b + c`.
@inline(__always)
fileprivate func fma32(_ a: F8, _ b: F8, _ c: F8) -> F8 {
    let p = widen(a) * widen(b)
    let cd = widen(c)
    let s = p + cd
    let bb = s - p
    let err = (p - (s - bb)) + (cd - bb)
    var sb = unsafeBitCast(s, to: SIMD8<UInt64>.self)
    let zero = D8(repeating: 0)
    let inexact = err .!= zero
    let towardZero = inexact .& ((err .< zero) .!= (s .< zero))  // exact sum is closer to zero than s
    sb &-= SIMD8<UInt64>(repeating: 0).replacing(with: 1, where: towardZero)
    sb |= SIMD8<UInt64>(repeating: 0).replacing(with: 1, where: inexact)
    return narrow(unsafeBitCast(sb, to: D8.self))
}

@inline(__always)
public func torchNormalFill16SIMD(_ p: UnsafeMutablePointer<Float>) {
    typealias C = TorchAVXConstants
    let raw = UnsafeMutableRawPointer(p)
    let d1 = raw.loadUnaligned(as: F8.self)
    let d2 = raw.loadUnaligned(fromByteOffset: 32, as: F8.self)
    let one = F8(repeating: 1)
    let zeroF = F8(repeating: 0)

    let u1 = one - d1
    let theta = C.twoPi * d2

    // log256_ps(u1)
    let ub = bits(u1)
    var x = float((ub & U8(repeating: ~0x7f80_0000)) | U8(repeating: 0x3f00_0000))
    let exponent = unsafeBitCast(ub &>> 23, to: I8.self) &- 127
    var e = F8(exponent) + one
    let small = x .< C.sqrtHalf
    let tmp = zeroF.replacing(with: x, where: small)
    x = x - one
    e = e - zeroF.replacing(with: one, where: small)
    x = x + tmp
    let z = x * x
    var y = fma32(F8(repeating: C.logP[0]), x, F8(repeating: C.logP[1]))
    y = fma32(y, x, F8(repeating: C.logP[2]))
    y = fma32(y, x, F8(repeating: C.logP[3]))
    y = fma32(y, x, F8(repeating: C.logP[4]))
    y = fma32(y, x, F8(repeating: C.logP[5]))
    y = fma32(y, x, F8(repeating: C.logP[6]))
    y = fma32(y, x, F8(repeating: C.logP[7]))
    y = fma32(y, x, F8(repeating: C.logP[8]))
    y = x * y
    y = fma32(y, z, e * C.logQ1)
    y = y - z * 0.5
    x = x + y
    let logU1 = fma32(e, F8(repeating: C.logQ2), x)
    let radius = (logU1 * C.minusTwo).squareRoot()

    // sincos256_ps(theta)
    let tb = bits(theta)
    let ax = float(tb & U8(repeating: 0x7fff_ffff))
    let signIn = tb & U8(repeating: 0x8000_0000)
    var j = I8(ax * C.fourOverPi, rounding: .towardZero)
    j = (j &+ 1) & I8(repeating: ~1)
    let yf = F8(j)
    let ju = unsafeBitCast(j, to: U8.self)
    let signSin = signIn ^ ((ju & U8(repeating: 4)) &<< 29)
    let polyIsCos = (ju & U8(repeating: 2)) .== U8(repeating: 0)
    var r = fma32(yf, F8(repeating: C.minusDP1), ax)
    r = fma32(F8(repeating: C.minusDP2), yf, r)
    r = fma32(yf, F8(repeating: C.minusDP3), r)
    let signCos = (~(ju &- 2) & U8(repeating: 4)) &<< 29
    let z2 = r * r
    let half = z2 * 0.5
    var yc = fma32(F8(repeating: C.cosP0), z2, F8(repeating: C.cosP1))
    yc = fma32(yc, z2, F8(repeating: C.cosP2))
    yc = z2 * yc
    yc = fma32(z2, yc, -half)
    yc = yc + one
    var ys = fma32(F8(repeating: C.sinP0), z2, F8(repeating: C.sinP1))
    ys = fma32(ys, z2, F8(repeating: C.sinP2))
    ys = z2 * ys
    ys = fma32(r, ys, r)
    let ysin2 = zeroF.replacing(with: ys, where: polyIsCos)
    let ysin1 = yc.replacing(with: zeroF, where: polyIsCos)
    let ycRest = yc - ysin1
    let ysRest = ys - ysin2
    let sinT = float(bits(ysin2 + ysin1) ^ signSin)
    let cosT = float(bits(ysRest + ycRest) ^ signCos)

    raw.storeBytes(of: radius * cosT + zeroF, as: F8.self)
    raw.storeBytes(of: radius * sinT + zeroF, toByteOffset: 32, as: F8.self)
}
