/// NormalFloat4, exactly as bitsandbytes defines it (`get_4bit_type("nf4")`): 16 values, index
/// order ascending, from the quantiles of N(0, 1) normalised to [−1, 1] with an exact zero.
/// Blockwise use: `Blockwise4BitMatrix.quantize(kind: .nf4, ...)`.
public enum NF4 {
    public static let code: [Float] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ]

    static let zeroIndex: UInt8 = 7

    /// `dQuantizeNF4`'s pivots: midpoints between neighbouring code values (as float32).
    static let pivots: [Float] = (0 ..< 15).map { Float((Double(code[$0]) + Double(code[$0 + 1])) / 2) }

    /// The index of the nearest code value to x (x in [−1, 1]); a value exactly on a pivot goes down.
    @inline(__always)
    static func quantize(_ x: Float) -> UInt8 {
        // Binary search over the 15 pivots: the number of pivots strictly below x.
        var lo = 0, hi = 15
        while lo < hi {
            let mid = (lo + hi) / 2
            if x > pivots[mid] { lo = mid + 1 } else { hi = mid }
        }
        return UInt8(lo)
    }
}
