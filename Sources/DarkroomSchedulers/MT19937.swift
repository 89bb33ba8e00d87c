// MT19937 as used by PyTorch's CPU generator (at::mt19937, ATen/core/MT19937RNGEngine.h):
// the reference Matsumoto–Nishimura generator seeded with `init_genrand`. PyTorch stores a 64-bit seed
// but initialises the state from its low 32 bits only, so seeds s and s + 2^32 give the same stream.

/// The 32-bit Mersenne Twister, bit-compatible with PyTorch's CPU generator engine.
public struct MT19937: Sendable {
    static let n = 624
    static let m = 397

    private var state: [UInt32]
    private var index: Int

    /// Seeds like `torch.Generator("cpu").manual_seed(seed)`: only `seed & 0xffffffff` is used.
    public init(seed: UInt64) {
        var s = [UInt32](repeating: 0, count: Self.n)
        s[0] = UInt32(truncatingIfNeeded: seed)
        for j in 1..<Self.n {
            let prev = s[j - 1]
            s[j] = 1_812_433_253 &* (prev ^ (prev >> 30)) &+ UInt32(j)
        }
        state = s
        index = Self.n  // the first draw regenerates the state (torch: left_ = 1)
    }

    /// Next tempered 32-bit output (torch: `CPUGeneratorImpl::random()`).
    @inline(__always)
    public mutating func next() -> UInt32 {
        if index >= Self.n { regenerate() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// Next 64-bit output (torch: `CPUGeneratorImpl::random64()`): the first 32-bit draw is the high half.
    @inline(__always)
    public mutating func next64() -> UInt64 {
        let hi = UInt64(next())
        let lo = UInt64(next())
        return (hi << 32) | lo
    }

    /// Fills `buffer` with consecutive 32-bit outputs (same sequence as repeated `next()`).
    public mutating func fill(_ buffer: UnsafeMutableBufferPointer<UInt32>) {
        var i = 0
        let count = buffer.count
        while i < count {
            if index >= Self.n { regenerate() }
            let take = min(Self.n - index, count - i)
            state.withUnsafeBufferPointer { st in
                for k in 0..<take {
                    var y = st[index + k]
                    y ^= y >> 11
                    y ^= (y << 7) & 0x9d2c_5680
                    y ^= (y << 15) & 0xefc6_0000
                    y ^= y >> 18
                    buffer[i + k] = y
                }
            }
            index += take
            i += take
        }
    }

    private mutating func regenerate() {
        state.withUnsafeMutableBufferPointer { st in
            @inline(__always) func twist(_ u: UInt32, _ v: UInt32) -> UInt32 {
                let mixed = (u & 0x8000_0000) | (v & 0x7fff_ffff)
                return (mixed >> 1) ^ ((v & 1) != 0 ? 0x9908_b0df : 0)
            }
            let n = Self.n, m = Self.m
            for k in 0..<(n - m) {
                st[k] = st[k + m] ^ twist(st[k], st[k + 1])
            }
            for k in (n - m)..<(n - 1) {
                st[k] = st[k + m - n] ^ twist(st[k], st[k + 1])
            }
            st[n - 1] = st[m - 1] ^ twist(st[n - 1], st[0])
        }
        index = 0
    }
}
