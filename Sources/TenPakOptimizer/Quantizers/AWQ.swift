import Foundation

/// AWQ (Lin et al., 2023) int4, group size 128, with zero points: the per-input-channel scale
/// search of `auto_scale` applied to one linear layer.
///
/// sₓ[j] = mean over calibration inputs of |x_j|. For α = 0, 1/20, …, 19/20: s = max(sₓ^α, 1e-4),
/// normalised by √(max s · min s); W' = W·diag(s) is quantized to nearest (AWQ's
/// `pseudo_quantize_tensor`: group min/max, zero point), Ŵ = Q(W')·diag(1/s), and the loss is
/// ‖W·Xᵀ − Ŵ·Xᵀ‖². The α with the smallest loss wins; α = 0 is s = 1, plain round-to-nearest, so
/// the search can only improve on no scaling. AWQ's weight clipping search is not done.
///
/// For speed the search scores each α on at most `searchSamples` inputs and `searchRows` output
/// rows (evenly spaced); the winner is then checked against α = 0 on every input and row, and the
/// better of the two is kept, so the result is never worse than no scaling on the full measure.
public enum AWQ {
    public static let grid = 20
    public static let searchSamples = 64
    public static let searchRows = 128

    public struct Result: Sendable {
        public let matrix: GroupInt4Matrix
        public let alpha: Double
    }

    /// Per-input-channel mean |x| over n samples of X (n×cols).
    static func activationScale(_ x: [Float], samples n: Int, cols: Int) -> [Float] {
        var s = [Double](repeating: 0, count: cols)
        for i in 0 ..< n {
            for j in 0 ..< cols { s[j] += Double(abs(x[i * cols + j])) }
        }
        return s.map { Float($0 / Double(max(n, 1))) }
    }

    static func scales(_ sx: [Float], alpha: Double) -> [Float] {
        var s = sx.map { max(Float(pow(Double($0), alpha)), 1e-4) }
        let norm = (s.max()! * s.min()!).squareRoot()
        for j in 0 ..< s.count { s[j] /= norm }
        return s
    }

    static func quantize(_ w: [Float], rows: Int, cols: Int, scales s: [Float]) -> GroupInt4Matrix {
        var scaled = w
        for r in 0 ..< rows {
            for j in 0 ..< cols { scaled[r * cols + j] *= s[j] }
        }
        return GroupInt4Matrix.roundToNearest(scaled, rows: rows, cols: cols, includeZero: false, inputScales: s)
    }

    /// Without inputs, α = 0 (no scaling). `fullLoss` gives ‖(W − Ŵ)·Xᵀ‖² over all inputs for a
    /// dequantized Ŵ (the caller's evaluation inputs).
    public static func quantize(_ w: [Float], rows: Int, cols: Int, inputs x: [Float]?, samples n: Int,
                                fullLoss: ([Float]) -> Double) -> Result {
        let plain = quantize(w, rows: rows, cols: cols, scales: [Float](repeating: 1, count: cols))
        guard let x, n > 0, cols > 0, rows > 0 else { return Result(matrix: plain, alpha: 0) }
        let sx = activationScale(x, samples: n, cols: cols)
        // The search subset: evenly spaced rows and samples.
        let rowIndex = stride(from: 0, to: rows, by: max(1, rows / searchRows)).prefix(searchRows).map { $0 }
        let sampleIndex = stride(from: 0, to: n, by: max(1, n / searchSamples)).prefix(searchSamples).map { $0 }
        var ws = [Float](), xs = [Float]()
        ws.reserveCapacity(rowIndex.count * cols)
        xs.reserveCapacity(sampleIndex.count * cols)
        for r in rowIndex { ws.append(contentsOf: w[r * cols ..< (r + 1) * cols]) }
        for i in sampleIndex { xs.append(contentsOf: x[i * cols ..< (i + 1) * cols]) }
        var bestAlpha = 0.0, bestLoss = Double.infinity
        for step in 0 ..< grid {
            let alpha = Double(step) / Double(grid)
            let q = quantize(ws, rows: rowIndex.count, cols: cols, scales: scales(sx, alpha: alpha)).dequantized()
            var e = ws
            for i in 0 ..< e.count { e[i] -= q[i] }
            let loss = LinearAlgebra.productNormSquaredNT(e, rowIndex.count, xs, sampleIndex.count, cols)
            if loss < bestLoss {
                bestLoss = loss
                bestAlpha = alpha
            }
        }
        guard bestAlpha > 0 else { return Result(matrix: plain, alpha: 0) }
        let scaled = quantize(w, rows: rows, cols: cols, scales: scales(sx, alpha: bestAlpha))
        return fullLoss(scaled.dequantized()) <= fullLoss(plain.dequantized())
            ? Result(matrix: scaled, alpha: bestAlpha) : Result(matrix: plain, alpha: 0)
    }
}
