/// GPTQ (Frantar et al., 2022) int4, group size 128, asymmetric, as the reference implementation
/// (`gptq.py`, `fasterquant`) with act_order off and block size 128.
///
/// H = 2/n·XᵀX over the n calibration inputs (columns of X are the layer's input features).
/// Dead inputs (H[i,i] = 0) get H[i,i] = 1 and their weights zeroed; then dampening adds
/// 0.01·mean(diag H) to the diagonal; U is the upper Cholesky factor of H⁻¹. Columns are
/// quantized left to right; each column's error, divided by U[i,i], is spread over the columns to
/// its right in proportion to U[i, j] (within the block at once, past it lazily per block). Group
/// parameters are taken from the (updated) weights when a group starts.
public enum GPTQ {
    public static let dampening: Float = 0.01
    public static let blockSize = 128
    /// Inputs beyond which the cols×cols Hessian is not built and round-to-nearest is used
    /// instead (8192² floats = 256 MiB per concurrent tensor).
    public static let maxColumns = 8192

    /// H = 2/n·XᵀX for X n×cols (row-major).
    public static func hessian(_ x: [Float], samples n: Int, cols: Int) -> [Float] {
        let xt = LinearAlgebra.transpose(x, n, cols)
        var h = [Float](repeating: 0, count: cols * cols)
        xt.withUnsafeBufferPointer { p in
            h.withUnsafeMutableBufferPointer { hp in
                LinearAlgebra.productNT(p.baseAddress!, cols, p.baseAddress!, cols, n, into: hp.baseAddress!)
            }
        }
        let f = 2 / Float(max(n, 1))
        for i in 0 ..< h.count { h[i] *= f }
        return h
    }

    /// Quantizes W (rows×cols, row-major) with Hessian H (cols×cols). Nil when H is not positive
    /// definite even after dampening.
    public static func quantize(_ w: [Float], rows: Int, cols: Int, hessian: [Float]) -> GroupInt4Matrix? {
        precondition(w.count == rows * cols && hessian.count == cols * cols)
        var h = hessian
        var wt = LinearAlgebra.transpose(w, rows, cols) // cols×rows: column i of W is row i here
        var diagonalSum: Float = 0
        for i in 0 ..< cols {
            if h[i * cols + i] == 0 {
                h[i * cols + i] = 1
                for r in 0 ..< rows { wt[i * rows + r] = 0 }
            }
            diagonalSum += h[i * cols + i]
        }
        let damp = dampening * diagonalSum / Float(cols)
        for i in 0 ..< cols { h[i * cols + i] += damp }
        guard let u = LinearAlgebra.upperCholeskyOfInverse(h, cols) else { return nil }
        h = []

        let groups = (cols + GroupInt4Matrix.groupSize - 1) / GroupInt4Matrix.groupSize
        var codesT = [UInt8](repeating: 0, count: cols * rows)
        var scales = [Float16](repeating: 0, count: rows * groups)
        var zeros = [UInt8](repeating: 0, count: rows * groups)
        var errors = [Float](repeating: 0, count: blockSize * rows)
        var groupScale = [Float](repeating: 0, count: rows), groupZero = [Float](repeating: 0, count: rows)

        wt.withUnsafeMutableBufferPointer { wtb in
            u.withUnsafeBufferPointer { ub in
                errors.withUnsafeMutableBufferPointer { eb in
                    let W = wtb.baseAddress!, U = ub.baseAddress!, E = eb.baseAddress!
                    var b0 = 0
                    while b0 < cols {
                        let b1 = min(cols, b0 + blockSize)
                        // Block size equals group size: one group per block, parameters from the
                        // weights as the earlier blocks left them.
                        let g = b0 / GroupInt4Matrix.groupSize
                        for r in 0 ..< rows {
                            var mn = Float.infinity, mx = -Float.infinity
                            for i in b0 ..< b1 {
                                let v = W[i * rows + r]
                                mn = min(mn, v)
                                mx = max(mx, v)
                            }
                            let p = GroupInt4Matrix.parameters(min: mn, max: mx, includeZero: true)
                            groupScale[r] = p.scale
                            groupZero[r] = p.zero
                            scales[r * groups + g] = Float16(p.scale)
                            zeros[r * groups + g] = UInt8(p.zero)
                        }
                        for i in b0 ..< b1 {
                            let d = U[i * cols + i]
                            let row = W + i * rows, err = E + (i - b0) * rows
                            for r in 0 ..< rows {
                                let q = GroupInt4Matrix.code(row[r], scale: groupScale[r], zero: groupZero[r])
                                codesT[i * rows + r] = UInt8(q)
                                let deq = groupScale[r] * (q - groupZero[r])
                                err[r] = (row[r] - deq) / d
                            }
                            for j in i + 1 ..< b1 {
                                LinearAlgebra.axpy(-U[i * cols + j], err, W + j * rows, rows)
                            }
                        }
                        // Lazy batch update of every column right of the block.
                        if b1 < cols {
                            for j in b1 ..< cols {
                                let target = W + j * rows
                                for k in b0 ..< b1 {
                                    let f = U[k * cols + j]
                                    if f != 0 { LinearAlgebra.axpy(-f, E + (k - b0) * rows, target, rows) }
                                }
                            }
                        }
                        b0 = b1
                    }
                }
            }
        }
        var codes = [UInt8](repeating: 0, count: rows * cols)
        for i in 0 ..< cols {
            for r in 0 ..< rows { codes[r * cols + i] = codesT[i * rows + r] }
        }
        return GroupInt4Matrix(rows: rows, cols: cols, codes: codes, scales: scales, zeros: zeros, inputScales: nil)
    }
}
