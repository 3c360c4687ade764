/// bitsandbytes LLM.int8 weights: vector-wise (per output row) absmax quantization to int8.
///
/// As `bitsandbytes.functional.int8_vectorwise_quant`: for row r with absmax mᵣ = max|W[r,:]|,
/// code = round_half_even(W · (127 / mᵣ)) as int8; dequantized W ≈ code · mᵣ · (1/127). The row
/// statistics are float32 (`SCB`). LLM.int8's outlier decomposition concerns activations (inputs
/// with |x| > 6 are multiplied in 16 bit); it does not change the stored weights, and activation
/// quantization is not modelled here (see SPEC.md, "Optimizer").
public struct Int8Matrix: QuantizedMatrix, Equatable {
    public let rows: Int
    public let cols: Int
    public let codes: [Int8]
    /// Per-row absmax (bitsandbytes' `SCB`).
    public let rowAbsmax: [Float]

    public var storageBytes: Int { rows * cols + 4 * rows }

    public static func quantize(_ w: [Float], rows: Int, cols: Int) -> Int8Matrix {
        precondition(w.count == rows * cols)
        var codes = [Int8](repeating: 0, count: w.count)
        var absmax = [Float](repeating: 0, count: rows)
        for r in 0 ..< rows {
            var m: Float = 0
            for c in 0 ..< cols { m = max(m, abs(w[r * cols + c])) }
            absmax[r] = m
            guard m > 0 else { continue }
            let scale: Float = 127 / m
            for c in 0 ..< cols {
                let q = (w[r * cols + c] * scale).rounded(.toNearestOrEven)
                codes[r * cols + c] = Int8(max(-127, min(127, q)))
            }
        }
        return Int8Matrix(rows: rows, cols: cols, codes: codes, rowAbsmax: absmax)
    }

    init(rows: Int, cols: Int, codes: [Int8], rowAbsmax: [Float]) {
        self.rows = rows
        self.cols = cols
        self.codes = codes
        self.rowAbsmax = rowAbsmax
    }

    public func dequantized() -> [Float] {
        // bitsandbytes: A * SCB * 7.874015718698502e-3 (1/127 as float32), in that order.
        let inv127: Float = 7.874015718698502e-3
        var out = [Float](repeating: 0, count: rows * cols)
        for r in 0 ..< rows {
            for c in 0 ..< cols { out[r * cols + c] = Float(codes[r * cols + c]) * rowAbsmax[r] * inv127 }
        }
        return out
    }

    public func serialized() -> [UInt8] {
        var w = PackWriter()
        w.u8(1)
        w.u32(rows)
        w.u32(cols)
        w.raw(codes.map { UInt8(bitPattern: $0) })
        w.f32s(rowAbsmax)
        return w.bytes
    }

    public init(serialized bytes: [UInt8]) throws {
        var r = PackReader(bytes)
        guard try r.u8() == 1 else { throw OptimizerError.invalidInput("not a packed int8 matrix") }
        rows = try r.u32()
        cols = try r.u32()
        codes = try r.raw().map { Int8(bitPattern: $0) }
        rowAbsmax = try r.f32s()
        try r.finish()
        guard codes.count == rows * cols, rowAbsmax.count == rows else { throw OptimizerError.invalidInput("packed int8 matrix sizes disagree") }
    }
}
