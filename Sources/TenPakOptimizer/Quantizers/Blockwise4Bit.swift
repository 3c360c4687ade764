/// bitsandbytes 4-bit blockwise quantization (NF4 and FP4 share it; see NF4.swift, FP4.swift).
///
/// As `bitsandbytes.functional.quantize_4bit` (blocksize 64): the flattened tensor is cut into
/// blocks of 64 elements; each block's absmax m (float32) is kept, every element x is mapped to
/// the nearest of 16 code values of x·(1/m) (the CUDA kernels' `dQuantizeNF4`/`dQuantizeFP4`
/// decision trees, whose pivots are the midpoints between neighbouring code values, ties to the
/// lower one) and two codes share a byte, the first in the high nibble. Dequantized: code·m.
///
/// With double quantization (`compress_statistics=True`) the absmax values are stored as 8-bit
/// codes: offset = mean(absmax) (float32), then `quantize_blockwise(absmax − offset, blocksize=256)`
/// with the signed dynamic map (`create_dynamic_map`): per block of 256 an absmax2 (float32), each
/// value the nearest of the 256 dynamic-map values of v·(1/absmax2). Dequantized absmax =
/// map[q]·absmax2 + offset.
public struct Blockwise4BitMatrix: QuantizedMatrix, Equatable {
    public enum Kind: UInt8, Sendable { case nf4 = 1, fp4 = 2 }

    public static let blockSize = 64
    public static let statisticsBlockSize = 256

    public let kind: Kind
    public let rows: Int
    public let cols: Int
    /// Two codes per byte, high nibble first.
    public let packed: [UInt8]
    /// Per-block absmax, when not double quantized.
    public let absmax: [Float]?
    /// Per-block absmax as 8-bit codes, when double quantized.
    public let doubleQuantized: DoubleQuantizedStatistics?

    public struct DoubleQuantizedStatistics: Equatable, Sendable {
        public let codes: [UInt8]
        public let absmax2: [Float]
        public let offset: Float
    }

    var count: Int { rows * cols }
    var blocks: Int { (count + Self.blockSize - 1) / Self.blockSize }

    public var storageBytes: Int {
        if let dq = doubleQuantized { return packed.count + dq.codes.count + 4 * dq.absmax2.count + 4 }
        return packed.count + 4 * blocks
    }

    static func codeTable(_ kind: Kind) -> [Float] { kind == .nf4 ? NF4.code : FP4.code }

    public static func quantize(_ w: [Float], rows: Int, cols: Int, kind: Kind, doubleQuantize: Bool) -> Blockwise4BitMatrix {
        precondition(w.count == rows * cols)
        let n = w.count
        let nblocks = (n + blockSize - 1) / blockSize
        var absmax = [Float](repeating: 0, count: nblocks)
        var codes = [UInt8](repeating: 0, count: n)
        let zeroCode: UInt8 = kind == .nf4 ? NF4.zeroIndex : 0
        for b in 0 ..< nblocks {
            let lo = b * blockSize, hi = min(n, lo + blockSize)
            var m: Float = 0
            for i in lo ..< hi { m = max(m, abs(w[i])) }
            absmax[b] = m
            guard m > 0 else {
                for i in lo ..< hi { codes[i] = zeroCode }
                continue
            }
            let inv = 1 / m
            for i in lo ..< hi { codes[i] = kind == .nf4 ? NF4.quantize(w[i] * inv) : FP4.quantize(w[i] * inv) }
        }
        let packed = Nibbles.packHighFirst(codes)
        if doubleQuantize {
            return Blockwise4BitMatrix(kind: kind, rows: rows, cols: cols, packed: packed, absmax: nil,
                                       doubleQuantized: DynamicMap.quantizeStatistics(absmax))
        }
        return Blockwise4BitMatrix(kind: kind, rows: rows, cols: cols, packed: packed, absmax: absmax, doubleQuantized: nil)
    }

    init(kind: Kind, rows: Int, cols: Int, packed: [UInt8], absmax: [Float]?, doubleQuantized: DoubleQuantizedStatistics?) {
        self.kind = kind
        self.rows = rows
        self.cols = cols
        self.packed = packed
        self.absmax = absmax
        self.doubleQuantized = doubleQuantized
    }

    /// The per-block absmax the dequantizer uses (decoded from 8 bits when double quantized).
    public func blockAbsmax() -> [Float] {
        if let absmax { return absmax }
        let dq = doubleQuantized!
        return (0 ..< dq.codes.count).map { i in DynamicMap.signed[Int(dq.codes[i])] * dq.absmax2[i / Self.statisticsBlockSize] + dq.offset }
    }

    public var codes: [UInt8] { Nibbles.unpackHighFirst(packed, count: count) }

    public func dequantized() -> [Float] {
        let table = Self.codeTable(kind)
        let m = blockAbsmax()
        let c = codes
        return (0 ..< count).map { i in table[Int(c[i])] * m[i / Self.blockSize] }
    }

    public func serialized() -> [UInt8] {
        var w = PackWriter()
        w.u8(kind.rawValue)
        w.u32(rows)
        w.u32(cols)
        w.raw(packed)
        if let dq = doubleQuantized {
            w.u8(1)
            w.raw(dq.codes)
            w.f32s(dq.absmax2)
            w.f32(dq.offset)
        } else {
            w.u8(0)
            w.f32s(absmax!)
        }
        return w.bytes
    }

    public init(serialized bytes: [UInt8]) throws {
        var r = PackReader(bytes)
        guard let kind = Kind(rawValue: try r.u8()) else { throw OptimizerError.invalidInput("not a packed 4-bit matrix") }
        self.kind = kind
        rows = try r.u32()
        cols = try r.u32()
        packed = try r.raw()
        if try r.u8() == 1 {
            let codes = try r.raw(), absmax2 = try r.f32s(), offset = try r.f32()
            doubleQuantized = DoubleQuantizedStatistics(codes: codes, absmax2: absmax2, offset: offset)
            absmax = nil
        } else {
            absmax = try r.f32s()
            doubleQuantized = nil
        }
        try r.finish()
        let nblocks = (rows * cols + Self.blockSize - 1) / Self.blockSize
        guard packed.count == (rows * cols + 1) / 2, (absmax?.count ?? doubleQuantized!.codes.count) == nblocks,
              doubleQuantized.map({ $0.absmax2.count == ($0.codes.count + Self.statisticsBlockSize - 1) / Self.statisticsBlockSize }) ?? true
        else { throw OptimizerError.invalidInput("packed 4-bit matrix sizes disagree") }
    }
}

/// bitsandbytes' dynamic 8-bit map (`create_dynamic_map(signed=True, max_exponent_bits=7,
/// total_bits=8)`), used to double-quantize absmax statistics.
enum DynamicMap {
    /// The 256 values, ascending. For i in 0..<7, 2^i + 1 boundaries linspace(0.1, 1) give 2^i
    /// means (midpoints), each scaled by 10^(i−6) and taken with both signs; then 0 and 1.
    /// Computed in double and rounded to float32 once.
    static let signed: [Float] = {
        var data: [Double] = []
        for i in 0 ..< 7 {
            let items = (1 << i) + 1
            let boundaries = (0 ..< items).map { 0.1 + 0.9 * Double($0) / Double(items - 1) }
            let scale = pow10(i - 6)
            for k in 0 ..< items - 1 {
                let mean = (boundaries[k] + boundaries[k + 1]) / 2
                data.append(scale * mean)
                data.append(-scale * mean)
            }
        }
        data.append(0)
        data.append(1)
        precondition(data.count == 256)
        return data.sorted().map { Float($0) }
    }()

    static func pow10(_ e: Int) -> Double {
        var v = 1.0
        for _ in 0 ..< abs(e) { v *= 10 }
        return e < 0 ? 1 / v : v
    }

    /// Index of the nearest map value (ties to the lower index).
    static func nearest(_ x: Float) -> UInt8 {
        let map = signed
        var lo = 0, hi = map.count - 1
        // First index with map[i] >= x.
        while lo < hi {
            let mid = (lo + hi) / 2
            if map[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        if lo > 0, abs(x - map[lo - 1]) <= abs(map[lo] - x) { return UInt8(lo - 1) }
        return UInt8(lo)
    }

    static func quantizeStatistics(_ absmax: [Float]) -> Blockwise4BitMatrix.DoubleQuantizedStatistics {
        let offset = absmax.isEmpty ? 0 : Float(absmax.reduce(0.0) { $0 + Double($1) } / Double(absmax.count))
        let block = Blockwise4BitMatrix.statisticsBlockSize
        let nblocks = (absmax.count + block - 1) / block
        var codes = [UInt8](repeating: 0, count: absmax.count)
        var absmax2 = [Float](repeating: 0, count: nblocks)
        let zero = nearest(0)
        for b in 0 ..< nblocks {
            let lo = b * block, hi = min(absmax.count, lo + block)
            var m: Float = 0
            for i in lo ..< hi { m = max(m, abs(absmax[i] - offset)) }
            absmax2[b] = m
            guard m > 0 else {
                for i in lo ..< hi { codes[i] = zero }
                continue
            }
            let inv = 1 / m
            for i in lo ..< hi { codes[i] = nearest((absmax[i] - offset) * inv) }
        }
        return .init(codes: codes, absmax2: absmax2, offset: offset)
    }
}
