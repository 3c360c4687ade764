import Foundation

/// The methods the optimizer measures, in report order.
public enum QuantizationMethod: String, CaseIterable, Codable, Sendable {
    /// The 16-bit original: float16 for F32 weights, the weights themselves for F16/BF16.
    case fp16 = "16-bit"
    case int8 = "bnb-int8"
    case nf4 = "bnb-nf4"
    case nf4DoubleQuant = "bnb-nf4-dq"
    case fp4 = "bnb-fp4"
    case fp4DoubleQuant = "bnb-fp4-dq"
    /// Round-to-nearest int4 g128 (GPTQ's quantizer without error feedback): the baseline GPTQ and
    /// AWQ are judged against; not recommended by itself.
    case rtnInt4 = "rtn-int4-g128"
    case gptq = "gptq-int4-g128"
    case awq = "awq-int4-g128"

    /// Whether the method uses calibration inputs (without them GPTQ equals RTN and AWQ has s = 1).
    public var usesCalibration: Bool { self == .gptq || self == .awq }
    public var recommendable: Bool { self != .rtnInt4 }
}

/// One method's figures on one tensor.
public struct MethodMeasurement: Codable, Sendable, Equatable {
    /// Bytes of codes and scales on the GPU.
    public var bytes: Int
    /// ‖W − Ŵ‖ / ‖W‖.
    public var relativeWeightError: Double
    /// ‖WX − ŴX‖ / ‖WX‖ on the held-out calibration inputs; nil without calibration.
    public var relativeOutputError: Double?
}

/// Everything measured on one weight matrix.
public struct TensorMeasurement: Codable, Sendable {
    public var file: String
    public var name: String
    public var dtype: String
    public var shape: [Int]
    /// Calibration inputs used to fit (GPTQ's Hessian, AWQ's search) and to evaluate.
    public var fitSamples: Int
    public var evaluationSamples: Int
    public var methods: [String: MethodMeasurement]
    /// AWQ's chosen exponent α (0 = no scaling).
    public var awqAlpha: Double
    public var notes: [String]
    public var seconds: Double
}

/// Measures every method on one matrix.
public enum TensorEvaluator {
    /// `inputs`: calibration samples n×cols, or nil. With n ≥ 2, even samples fit GPTQ and AWQ and
    /// odd ones evaluate every method, so the output error is measured on inputs no method saw.
    public static func measure(_ w: [Float], rows: Int, cols: Int, dtype: String, inputs: [Float]?, samples n: Int,
                               file: String = "", name: String = "") -> TensorMeasurement {
        let started = Date()
        var notes: [String] = []
        var fit: [Float]? = nil, evaluation: [Float]? = nil
        var nFit = 0, nEval = 0
        if let inputs, n > 0 {
            if n >= 2 {
                var f = [Float](), e = [Float]()
                f.reserveCapacity((n + 1) / 2 * cols)
                e.reserveCapacity(n / 2 * cols)
                for i in 0 ..< n {
                    if i % 2 == 0 { f.append(contentsOf: inputs[i * cols ..< (i + 1) * cols]) } else { e.append(contentsOf: inputs[i * cols ..< (i + 1) * cols]) }
                }
                fit = f; evaluation = e
                nFit = (n + 1) / 2; nEval = n / 2
            } else {
                fit = inputs; evaluation = inputs
                nFit = n; nEval = n
                notes.append("one calibration sample: fitted and evaluated on the same input")
            }
        }
        let weightNorm2 = w.reduce(0.0) { $0 + Double($1) * Double($1) }
        let outputNorm2 = evaluation.map { LinearAlgebra.productNormSquaredNT(w, rows, $0, nEval, cols) }

        func errorNorm2(_ deq: [Float], against x: [Float]?, _ nx: Int) -> (weight: Double, output: Double?) {
            var e = w
            var we = 0.0
            for i in 0 ..< e.count {
                e[i] -= deq[i]
                we += Double(e[i]) * Double(e[i])
            }
            return (we, x.map { LinearAlgebra.productNormSquaredNT(e, rows, $0, nx, cols) })
        }
        func record(_ deq: [Float], bytes: Int) -> MethodMeasurement {
            let (we, oe) = errorNorm2(deq, against: evaluation, nEval)
            return MethodMeasurement(bytes: bytes, relativeWeightError: ratio(we, weightNorm2),
                                     relativeOutputError: oe.map { ratio($0, outputNorm2 ?? 0) })
        }

        var methods: [String: MethodMeasurement] = [:]
        // 16-bit reference.
        let sixteen = dtype == "F32" ? w.map { Float(Float16(max(-65504, min(65504, $0)))) } : w
        methods[QuantizationMethod.fp16.rawValue] = record(sixteen, bytes: 2 * rows * cols)
        let int8 = Int8Matrix.quantize(w, rows: rows, cols: cols)
        methods[QuantizationMethod.int8.rawValue] = record(int8.dequantized(), bytes: int8.storageBytes)
        for (method, kind, dq) in [(QuantizationMethod.nf4, Blockwise4BitMatrix.Kind.nf4, false), (.nf4DoubleQuant, .nf4, true),
                                   (.fp4, .fp4, false), (.fp4DoubleQuant, .fp4, true)] {
            let q = Blockwise4BitMatrix.quantize(w, rows: rows, cols: cols, kind: kind, doubleQuantize: dq)
            methods[method.rawValue] = record(q.dequantized(), bytes: q.storageBytes)
        }
        let rtn = GroupInt4Matrix.roundToNearest(w, rows: rows, cols: cols)
        let rtnMeasurement = record(rtn.dequantized(), bytes: rtn.storageBytes)
        methods[QuantizationMethod.rtnInt4.rawValue] = rtnMeasurement

        // GPTQ: needs inputs and a Hessian that fits in memory.
        var gptq: GroupInt4Matrix? = nil
        if let fit {
            if cols <= GPTQ.maxColumns {
                gptq = GPTQ.quantize(w, rows: rows, cols: cols, hessian: GPTQ.hessian(fit, samples: nFit, cols: cols))
                if gptq == nil { notes.append("gptq: Hessian not positive definite after dampening; round-to-nearest used") }
            } else {
                notes.append("gptq: \(cols) inputs exceed the \(GPTQ.maxColumns)-column Hessian limit; round-to-nearest used")
            }
        }
        methods[QuantizationMethod.gptq.rawValue] = gptq.map { record($0.dequantized(), bytes: $0.storageBytes) } ?? rtnMeasurement

        let awq = AWQ.quantize(w, rows: rows, cols: cols, inputs: fit, samples: nFit) { deq in
            errorNorm2(deq, against: fit, nFit).output ?? 0
        }
        methods[QuantizationMethod.awq.rawValue] = record(awq.matrix.dequantized(), bytes: awq.matrix.storageBytes)

        return TensorMeasurement(file: file, name: name, dtype: dtype, shape: [rows, cols], fitSamples: nFit, evaluationSamples: nEval,
                                 methods: methods, awqAlpha: awq.alpha, notes: notes, seconds: Date().timeIntervalSince(started))
    }

    static func ratio(_ num: Double, _ den: Double) -> Double {
        // A zero reference with a non-zero error counts as 100% error (JSON has no infinity).
        den > 0 ? (num / den).squareRoot() : (num > 0 ? 1 : 0)
    }
}
