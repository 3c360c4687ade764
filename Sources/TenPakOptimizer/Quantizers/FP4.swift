/// bitsandbytes FP4 (E2M1, bias 3), as `get_4bit_type("fp4")` defines it: bit 3 is the sign and
/// bits 0–2 select a magnitude from {0, 0.0625, 8, 12, 4, 6, 2, 3}, all divided by 12 so the largest
/// is 1. Quantization follows `dQuantizeFP4`: the sign of x, then the nearest magnitude of |x|
/// (pivots at the midpoints, ties down). Blockwise use: `Blockwise4BitMatrix.quantize(kind: .fp4, ...)`.
public enum FP4 {
    static let magnitudes: [Float] = [0, 0.0625, 8, 12, 4, 6, 2, 3].map { Float(Double($0) / 12) }

    /// The 16 code values by index.
    public static let code: [Float] = magnitudes + magnitudes.map { -$0 }

    /// Magnitude indices in ascending order of value, and the pivots between them.
    static let ascending: [UInt8] = (0 ..< 8).map(UInt8.init).sorted { magnitudes[Int($0)] < magnitudes[Int($1)] }
    static let pivots: [Float] = (0 ..< 7).map {
        Float((Double(magnitudes[Int(ascending[$0])]) + Double(magnitudes[Int(ascending[$0 + 1])])) / 2)
    }

    @inline(__always)
    static func quantize(_ x: Float) -> UInt8 {
        let sign: UInt8 = x < 0 ? 0b1000 : 0
        let a = abs(x)
        var k = 0
        while k < 7, a > pivots[k] { k += 1 }
        return ascending[k] | sign
    }
}
