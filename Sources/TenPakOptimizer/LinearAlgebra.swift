/// Dense linear algebra on row-major Float matrices, in plain Swift: the few kernels the
/// quantizers and metrics need (A·Bᵀ products, Cholesky, triangular inverse).
///
/// Everything is dot products or axpys over contiguous rows, written with SIMD8 so the compiler
/// does not need fast-math to vectorize. Pointers never leave the functions that receive them.
enum LinearAlgebra {
    typealias V = SIMD8<Float>

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    /// Σ x[i]·y[i] for i < n.
    @inline(__always)
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        var a0 = V(), a1 = V()
        var i = 0
        while i + 16 <= n {
            a0 += load(x + i) * load(y + i)
            a1 += load(x + i + 8) * load(y + i + 8)
            i += 16
        }
        if i + 8 <= n {
            a0 += load(x + i) * load(y + i)
            i += 8
        }
        var s = (a0 + a1).sum()
        while i < n {
            s += x[i] * y[i]
            i += 1
        }
        return s
    }

    /// y[i] += a·x[i] for i < n.
    @inline(__always)
    static func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let av = V(repeating: a)
        var i = 0
        while i + 8 <= n {
            store(load(y + i) + av * load(x + i), y + i)
            i += 8
        }
        while i < n {
            y[i] += a * x[i]
            i += 1
        }
    }

    /// C = A·Bᵀ for A (m×k) and B (n×k), row-major; C is m×n.
    static func productNT(_ a: UnsafePointer<Float>, _ m: Int, _ b: UnsafePointer<Float>, _ n: Int, _ k: Int,
                          into c: UnsafeMutablePointer<Float>) {
        var i = 0
        while i < m {
            if i + 4 <= m {
                var j = 0
                while j + 2 <= n {
                    tile4x2(a + i * k, b + j * k, k, c + i * n + j, n)
                    j += 2
                }
                if j < n {
                    for r in 0 ..< 4 { c[(i + r) * n + j] = dot(a + (i + r) * k, b + j * k, k) }
                }
                i += 4
            } else {
                for j in 0 ..< n { c[i * n + j] = dot(a + i * k, b + j * k, k) }
                i += 1
            }
        }
    }

    /// Four rows of A against two rows of B: eight dot products sharing their loads. SIMD4
    /// accumulators, so the eight of them and the operands fit x86-64's sixteen SSE registers.
    @inline(__always)
    static func tile4x2(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ k: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        typealias V4 = SIMD4<Float>
        @inline(__always) func ld(_ p: UnsafePointer<Float>) -> V4 { UnsafeRawPointer(p).loadUnaligned(as: V4.self) }
        let a0 = a, a1 = a + k, a2 = a + 2 * k, a3 = a + 3 * k
        let b0 = b, b1 = b + k
        var c00 = V4(), c01 = V4(), c10 = V4(), c11 = V4(), c20 = V4(), c21 = V4(), c30 = V4(), c31 = V4()
        var p = 0
        while p + 4 <= k {
            let x0 = ld(b0 + p), x1 = ld(b1 + p)
            var y = ld(a0 + p)
            c00 += y * x0; c01 += y * x1
            y = ld(a1 + p)
            c10 += y * x0; c11 += y * x1
            y = ld(a2 + p)
            c20 += y * x0; c21 += y * x1
            y = ld(a3 + p)
            c30 += y * x0; c31 += y * x1
            p += 4
        }
        var s00 = c00.sum(), s01 = c01.sum(), s10 = c10.sum(), s11 = c11.sum()
        var s20 = c20.sum(), s21 = c21.sum(), s30 = c30.sum(), s31 = c31.sum()
        while p < k {
            let x0 = b0[p], x1 = b1[p]
            s00 += a0[p] * x0; s01 += a0[p] * x1
            s10 += a1[p] * x0; s11 += a1[p] * x1
            s20 += a2[p] * x0; s21 += a2[p] * x1
            s30 += a3[p] * x0; s31 += a3[p] * x1
            p += 1
        }
        c[0] = s00; c[1] = s01
        c[ldc] = s10; c[ldc + 1] = s11
        c[2 * ldc] = s20; c[2 * ldc + 1] = s21
        c[3 * ldc] = s30; c[3 * ldc + 1] = s31
    }

    /// The dot products of four rows x0…x3 with one row y (length n), sharing the loads of y.
    @inline(__always)
    static func dot4(_ x: UnsafePointer<Float>, _ stride: Int, _ y: UnsafePointer<Float>, _ n: Int) -> SIMD4<Float> {
        typealias V4 = SIMD4<Float>
        @inline(__always) func ld(_ p: UnsafePointer<Float>) -> V4 { UnsafeRawPointer(p).loadUnaligned(as: V4.self) }
        let x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride
        var c0 = V4(), c1 = V4(), c2 = V4(), c3 = V4()
        var p = 0
        while p + 4 <= n {
            let v = ld(y + p)
            c0 += ld(x0 + p) * v; c1 += ld(x1 + p) * v; c2 += ld(x2 + p) * v; c3 += ld(x3 + p) * v
            p += 4
        }
        var s = SIMD4(c0.sum(), c1.sum(), c2.sum(), c3.sum())
        while p < n {
            s += SIMD4(x0[p], x1[p], x2[p], x3[p]) * y[p]
            p += 1
        }
        return s
    }

    /// ‖A·Bᵀ‖²_F for A (m×k) and B (n×k), without materialising the product (rows of A in
    /// blocks of 64).
    static func productNormSquaredNT(_ a: [Float], _ m: Int, _ b: [Float], _ n: Int, _ k: Int) -> Double {
        precondition(a.count >= m * k && b.count >= n * k)
        let block = 64
        var scratch = [Float](repeating: 0, count: block * n)
        var total = 0.0
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    var i = 0
                    while i < m {
                        let rows = min(block, m - i)
                        productNT(ap.baseAddress! + i * k, rows, bp.baseAddress!, n, k, into: sp.baseAddress!)
                        var partial: Float = 0
                        var acc = V()
                        let count = rows * n
                        var p = 0
                        while p + 8 <= count {
                            let v = load(sp.baseAddress! + p)
                            acc += v * v
                            p += 8
                        }
                        partial = acc.sum()
                        while p < count {
                            partial += sp[p] * sp[p]
                            p += 1
                        }
                        total += Double(partial)
                        i += rows
                    }
                }
            }
        }
        return total
    }

    /// Row-major transpose of an m×n matrix.
    static func transpose(_ a: [Float], _ m: Int, _ n: Int) -> [Float] {
        var t = [Float](repeating: 0, count: m * n)
        let tile = 32
        a.withUnsafeBufferPointer { src in
            t.withUnsafeMutableBufferPointer { dst in
                var i0 = 0
                while i0 < m {
                    var j0 = 0
                    while j0 < n {
                        for i in i0 ..< min(i0 + tile, m) {
                            for j in j0 ..< min(j0 + tile, n) { dst[j * m + i] = src[i * n + j] }
                        }
                        j0 += tile
                    }
                    i0 += tile
                }
            }
        }
        return t
    }

    /// In-place Cholesky factorisation A = L·Lᵀ of a symmetric positive definite n×n matrix; the
    /// lower triangle becomes L, the strict upper triangle is zeroed. Returns false when A is not
    /// positive definite.
    static func choleskyLower(_ a: inout [Float], _ n: Int) -> Bool {
        a.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            var i0 = 0
            while i0 < n {
                // Rows i0..<i0+4 together: every earlier row j is loaded once for all four.
                let rows = min(4, n - i0)
                if rows == 4 {
                    for j in 0 ..< i0 {
                        let rj = p + j * n
                        let s = dot4(p + i0 * n, n, rj, j)
                        for r in 0 ..< 4 { p[(i0 + r) * n + j] = (p[(i0 + r) * n + j] - s[r]) / rj[j] }
                    }
                }
                for i in i0 ..< i0 + rows {
                    let ri = p + i * n
                    for j in (rows == 4 ? i0 : 0) ..< i {
                        let rj = p + j * n
                        ri[j] = (ri[j] - dot(ri, rj, j)) / rj[j]
                    }
                    let d = ri[i] - dot(ri, ri, i)
                    guard d > 0, d.isFinite else { return false }
                    ri[i] = d.squareRoot()
                    for j in i + 1 ..< n { ri[j] = 0 }
                }
                i0 += rows
            }
            return true
        }
    }

    /// The inverse of a lower-triangular n×n matrix (also lower triangular), row by row:
    /// row i of X = L⁻¹ is (eᵢ − Σ_{k<i} L[i,k]·X[k,:]) / L[i,i].
    static func invertLower(_ l: [Float], _ n: Int) -> [Float] {
        var x = [Float](repeating: 0, count: n * n)
        l.withUnsafeBufferPointer { lb in
            x.withUnsafeMutableBufferPointer { xb in
                let lp = lb.baseAddress!, xp = xb.baseAddress!
                var i0 = 0
                while i0 < n {
                    let rows = min(4, n - i0)
                    // Contributions of the rows before the block, each loaded once for all four rows.
                    if rows == 4 {
                        let r0 = xp + i0 * n, r1 = r0 + n, r2 = r1 + n, r3 = r2 + n
                        for k in 0 ..< i0 {
                            let f = SIMD4(lp[i0 * n + k], lp[(i0 + 1) * n + k], lp[(i0 + 2) * n + k], lp[(i0 + 3) * n + k])
                            let xk = xp + k * n
                            let f0 = V(repeating: f[0]), f1 = V(repeating: f[1]), f2 = V(repeating: f[2]), f3 = V(repeating: f[3])
                            var j = 0
                            while j + 8 <= k + 1 {
                                let v = load(xk + j)
                                store(load(r0 + j) + f0 * v, r0 + j)
                                store(load(r1 + j) + f1 * v, r1 + j)
                                store(load(r2 + j) + f2 * v, r2 + j)
                                store(load(r3 + j) + f3 * v, r3 + j)
                                j += 8
                            }
                            while j <= k {
                                let v = xk[j]
                                r0[j] += f[0] * v; r1[j] += f[1] * v; r2[j] += f[2] * v; r3[j] += f[3] * v
                                j += 1
                            }
                        }
                    }
                    for i in i0 ..< i0 + rows {
                        let row = xp + i * n
                        for k in (rows == 4 ? i0 : 0) ..< i {
                            let f = lp[i * n + k]
                            if f != 0 { axpy(f, xp + k * n, row, k + 1) }
                        }
                        let inv = 1 / lp[i * n + i]
                        for j in 0 ..< i { row[j] = -row[j] * inv }
                        row[i] = inv
                    }
                    i0 += rows
                }
            }
        }
        return x
    }

    /// The upper-triangular U with Uᵀ·U = H⁻¹ (what GPTQ calls `Hinv`), from a symmetric positive
    /// definite H: with P the reversal permutation, U = P·chol(P·H·P)⁻¹·P. Nil if H is not positive
    /// definite.
    static func upperCholeskyOfInverse(_ h: [Float], _ n: Int) -> [Float]? {
        var r = [Float](repeating: 0, count: n * n)
        for i in 0 ..< n {
            for j in 0 ..< n { r[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] }
        }
        guard choleskyLower(&r, n) else { return nil }
        let x = invertLower(r, n)
        var u = [Float](repeating: 0, count: n * n)
        for i in 0 ..< n {
            for j in i ..< n { u[i * n + j] = x[(n - 1 - i) * n + (n - 1 - j)] }
        }
        return u
    }
}
