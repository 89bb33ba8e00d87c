import Foundation

/// Adaptive Gauss–Kronrod quadrature (QUADPACK's 21-point rule, as in `scipy.integrate.quad`).
///
/// Each interval is integrated with the 21-point Kronrod rule; the error estimate is QUADPACK's
/// (from the embedded 10-point Gauss rule). While the summed error estimate exceeds
/// max(absoluteTolerance, relativeTolerance·|result|), the interval with the largest error is bisected.
/// The rule is exact for polynomials of degree ≤ 31, so for LMS's Lagrange basis polynomials (degree
/// ≤ 3) the first pass is accepted — with the same nodes, weights and summation order as QUADPACK's
/// `dqk21`, the result equals scipy's. (No ε-algorithm extrapolation: QUADPACK's `dqagse` only needs
/// it for singular integrands.)
enum GaussKronrod {
    /// Kronrod nodes on [−1, 1], descending; odd indices (0-based) are the 10-point Gauss nodes.
    static let nodes: [Double] = [
        0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
        0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
        0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
        0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
        0.294392862701460198131126603103866, 0.148874338981631210884826001129720,
        0,
    ]
    static let kronrodWeights: [Double] = [
        0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
        0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
        0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
        0.123491976262065851077600525452458, 0.134709217311473325928054001771707,
        0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
        0.149445554002916905664936468389821,
    ]
    /// 10-point Gauss weights for nodes[1], nodes[3], …, nodes[9].
    static let gaussWeights: [Double] = [
        0.066671344308688137593568809893332, 0.149451349150580593145776339657697,
        0.219086362515982043995534934228163, 0.269266719309996355091226921569469,
        0.295524224714752870173892994651338,
    ]

    /// QUADPACK `dqk21` on [a, b]: the Kronrod estimate and its error estimate.
    static func rule21(_ f: (Double) -> Double, _ a: Double, _ b: Double) -> (result: Double, error: Double) {
        let epsilon = Double.ulpOfOne, underflow = Double.leastNormalMagnitude
        let center = 0.5 * (a + b), halfLength = 0.5 * (b - a), absHalfLength = abs(halfLength)
        var gauss = 0.0
        let fc = f(center)
        var kronrod = kronrodWeights[10] * fc
        var resultAbs = abs(kronrod)
        var fv1 = [Double](repeating: 0, count: 10), fv2 = [Double](repeating: 0, count: 10)
        for j in 0..<5 {  // Gauss nodes (QUADPACK's jtw = 2j)
            let k = 2 * j + 1
            let x = halfLength * nodes[k]
            let f1 = f(center - x), f2 = f(center + x)
            fv1[k] = f1; fv2[k] = f2
            let sum = f1 + f2
            gauss += gaussWeights[j] * sum
            kronrod += kronrodWeights[k] * sum
            resultAbs += kronrodWeights[k] * (abs(f1) + abs(f2))
        }
        for j in 0..<5 {  // Kronrod-only nodes (jtwm1 = 2j − 1)
            let k = 2 * j
            let x = halfLength * nodes[k]
            let f1 = f(center - x), f2 = f(center + x)
            fv1[k] = f1; fv2[k] = f2
            let sum = f1 + f2
            kronrod += kronrodWeights[k] * sum
            resultAbs += kronrodWeights[k] * (abs(f1) + abs(f2))
        }
        let mean = kronrod * 0.5
        var resultAsc = kronrodWeights[10] * abs(fc - mean)
        for j in 0..<10 { resultAsc += kronrodWeights[j] * (abs(fv1[j] - mean) + abs(fv2[j] - mean)) }
        let result = kronrod * halfLength
        resultAbs *= absHalfLength
        resultAsc *= absHalfLength
        var error = abs((kronrod - gauss) * halfLength)
        if resultAsc != 0 && error != 0 { error = resultAsc * min(1, pow(200 * error / resultAsc, 1.5)) }
        if resultAbs > underflow / (50 * epsilon) { error = max(epsilon * 50 * resultAbs, error) }
        return (result, error)
    }

    /// ∫_a^b f with scipy's default absolute tolerance 1.49e-8 and the given relative tolerance.
    static func integrate(_ f: (Double) -> Double, from a: Double, to b: Double,
                          relativeTolerance: Double = 1e-4, absoluteTolerance: Double = 1.49e-8,
                          maxIntervals: Int = 50) -> Double {
        var intervals = [(a: a, b: b, value: 0.0, error: 0.0)]
        let first = rule21(f, a, b)
        intervals[0].value = first.result
        intervals[0].error = first.error
        while intervals.count < maxIntervals {
            let total = intervals.reduce(0) { $0 + $1.value }
            let error = intervals.reduce(0) { $0 + $1.error }
            if error <= max(absoluteTolerance, relativeTolerance * abs(total)) { break }
            let worst = intervals.indices.max { intervals[$0].error < intervals[$1].error }!
            let (lo, hi) = (intervals[worst].a, intervals[worst].b)
            let mid = 0.5 * (lo + hi)
            let left = rule21(f, lo, mid), right = rule21(f, mid, hi)
            intervals[worst] = (lo, mid, left.result, left.error)
            intervals.append((mid, hi, right.result, right.error))
        }
        return intervals.count == 1 ? intervals[0].value : intervals.reduce(0) { $0 + $1.value }
    }
}
