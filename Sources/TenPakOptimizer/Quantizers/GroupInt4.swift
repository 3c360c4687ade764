/// Asymmetric int4 with one (scale, zero) per output row and group of 128 input columns: the
/// storage of GPTQ and AWQ checkpoints, and plain round-to-nearest (RTN) as their baseline.
///
/// Group parameters from the group's min and max (GPTQ's `Quantizer.find_params`, sym=False:
/// the range always includes 0; AWQ's `pseudo_quantize_tensor`: it need not):
/// scale = (max − min)/15 stored as float16, zero = round(−min/scale) clamped to 0…15,
/// q = clamp(round(w/scale) + zero, 0, 15), dequantized scale·(q − zero). Codes are packed two per
/// byte, low nibble first (the order of GPTQ's int32 words). AWQ also divides column j by its input
/// scale sⱼ (`inputScales`), which a real deployment folds into the previous operation.
public struct GroupInt4Matrix: QuantizedMatrix, Equatable {
    public static let groupSize = 128

    public let rows: Int
    public let cols: Int
    /// Codes row-major, two per byte, low nibble first.
    public let packed: [UInt8]
    /// Per (row, group), row-major.
    public let scales: [Float16]
    public let zeros: [UInt8]
    /// AWQ's per-input-channel scales (dequantized column j is divided by them), or nil.
    public let inputScales: [Float]?

    public var groups: Int { (cols + Self.groupSize - 1) / Self.groupSize }

    /// Codes, float16 scales and 4-bit zeros (packed). AWQ's input scales are folded into the
    /// previous operation and cost nothing here.
    public var storageBytes: Int { packed.count + 2 * scales.count + (zeros.count + 1) / 2 }

    /// Parameters of one group from its min and max.
    @inline(__always)
    static func parameters(min lo: Float, max hi: Float, includeZero: Bool) -> (scale: Float, zero: Float) {
        var lo = lo, hi = hi
        if includeZero {
            lo = Swift.min(lo, 0)
            hi = Swift.max(hi, 0)
            if lo == 0, hi == 0 { lo = -1; hi = 1 }
        }
        var scale = Swift.max(hi - lo, includeZero ? 0 : 1e-5) / 15
        scale = Float(Float16(scale))
        if scale == 0 { scale = Float(Float16.leastNonzeroMagnitude) }
        let zero = Swift.min(15, Swift.max(0, (-lo / scale).rounded(.toNearestOrEven)))
        return (scale, zero)
    }

    @inline(__always)
    static func code(_ w: Float, scale: Float, zero: Float) -> Float {
        Swift.min(15, Swift.max(0, (w / scale).rounded(.toNearestOrEven) + zero))
    }

    /// Round-to-nearest of every group (GPTQ's quantizer when `includeZero`, AWQ's otherwise).
    public static func roundToNearest(_ w: [Float], rows: Int, cols: Int, includeZero: Bool = true,
                                      inputScales: [Float]? = nil) -> GroupInt4Matrix {
        precondition(w.count == rows * cols)
        let groups = (cols + groupSize - 1) / groupSize
        var codes = [UInt8](repeating: 0, count: rows * cols)
        var scales = [Float16](repeating: 0, count: rows * groups)
        var zeros = [UInt8](repeating: 0, count: rows * groups)
        for r in 0 ..< rows {
            for g in 0 ..< groups {
                let lo = g * groupSize, hi = Swift.min(cols, lo + groupSize)
                var mn = Float.infinity, mx = -Float.infinity
                for c in lo ..< hi {
                    let v = w[r * cols + c]
                    mn = Swift.min(mn, v)
                    mx = Swift.max(mx, v)
                }
                let p = parameters(min: mn, max: mx, includeZero: includeZero)
                scales[r * groups + g] = Float16(p.scale)
                zeros[r * groups + g] = UInt8(p.zero)
                for c in lo ..< hi { codes[r * cols + c] = UInt8(code(w[r * cols + c], scale: p.scale, zero: p.zero)) }
            }
        }
        return GroupInt4Matrix(rows: rows, cols: cols, codes: codes, scales: scales, zeros: zeros, inputScales: inputScales)
    }

    init(rows: Int, cols: Int, codes: [UInt8], scales: [Float16], zeros: [UInt8], inputScales: [Float]?) {
        self.rows = rows
        self.cols = cols
        packed = Nibbles.packLowFirst(codes)
        self.scales = scales
        self.zeros = zeros
        self.inputScales = inputScales
    }

    public var codes: [UInt8] { Nibbles.unpackLowFirst(packed, count: rows * cols) }

    public func dequantized() -> [Float] {
        let c = codes
        let groups = self.groups
        // Float16 → Float once per group (a library call on CPUs without F16C).
        let scale = scales.map { Float($0) }
        var out = [Float](repeating: 0, count: rows * cols)
        for r in 0 ..< rows {
            for j in 0 ..< cols {
                let g = r * groups + j / Self.groupSize
                var v = scale[g] * (Float(c[r * cols + j]) - Float(zeros[g]))
                if let s = inputScales { v /= s[j] }
                out[r * cols + j] = v
            }
        }
        return out
    }

    public func serialized() -> [UInt8] {
        var w = PackWriter()
        w.u8(3)
        w.u32(rows)
        w.u32(cols)
        w.raw(packed)
        w.f16s(scales)
        w.raw(Nibbles.packLowFirst(zeros))
        w.f32s(inputScales ?? [])
        return w.bytes
    }

    public init(serialized bytes: [UInt8]) throws {
        var r = PackReader(bytes)
        guard try r.u8() == 3 else { throw OptimizerError.invalidInput("not a packed group-int4 matrix") }
        rows = try r.u32()
        cols = try r.u32()
        packed = try r.raw()
        scales = try r.f16s()
        let groups = (cols + Self.groupSize - 1) / Self.groupSize
        zeros = Nibbles.unpackLowFirst(try r.raw(), count: min(scales.count, rows * groups))
        let s = try r.f32s()
        inputScales = s.isEmpty ? nil : s
        try r.finish()
        guard packed.count == (rows * cols + 1) / 2, scales.count == rows * groups, (inputScales?.count ?? cols) == cols else {
            throw OptimizerError.invalidInput("packed group-int4 matrix sizes disagree")
        }
    }
}
