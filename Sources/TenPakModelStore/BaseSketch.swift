import Foundation
import TenPakChunkStore
import TenPakFormat

/// Making and comparing content sketches (the type and its bytes are in TenPakFormat): which
/// elements are sampled, from an upload or from stored chunks, and how far two sketches are.
extension BaseSketch {
    /// Tensors sampled per revision, and elements per tensor: 1,024 values, 2–4 KiB a revision.
    static let tensors = 8
    static let samplesPerTensor = 128

    /// Where the samples of one tensor are.
    struct Probe {
        let tensor: TensorRecord
        let signature: Int64
        let format: UInt8
        let width: Int
        /// The tensor chunk holding the samples (SPEC §7: chunk k covers elements [k·n, (k+1)·n)).
        let chunkIndex: Int
        /// Byte offsets of the samples inside that chunk.
        let offsets: [Int]
    }

    /// (format code, element width) of a float dtype; nil for anything else.
    static func format(ofDtype dtype: String) -> (code: UInt8, width: Int)? {
        switch dtype {
        case "F32": return (1, 4)
        case "BF16": return (2, 2)
        case "F16": return (3, 2)
        default: return nil
        }
    }

    /// The probes for a revision with these tensors: its `tensors` largest float tensors (bytes,
    /// then name; a name repeated across shards counts once).
    static func probes(_ all: [TensorRecord]) -> [Probe] {
        var seen = Set<String>()
        var floats: [(TensorRecord, (code: UInt8, width: Int))] = []
        for t in all where seen.insert(t.name).inserted {
            guard let f = format(ofDtype: t.dtype), t.end - t.begin >= f.width else { continue }
            floats.append((t, f))
        }
        floats.sort { ($0.0.end - $0.0.begin, $1.0.name) > ($1.0.end - $1.0.begin, $0.0.name) }
        return floats.prefix(tensors).map { t, f in
            let w = f.width
            let signature = TensorSignature.exact(name: t.name, dtype: t.dtype, shape: t.shape)
            var random = SplitMix64(seed: UInt64(bitPattern: signature))
            let elements = (t.end - t.begin) / w
            let perChunk = ChunkPlan.tensorChunkBytes / w
            let chunkCount = (elements + perChunk - 1) / perChunk
            let k = Int(random.next() % UInt64(chunkCount))
            let inChunk = min(perChunk, elements - k * perChunk)
            let m = min(samplesPerTensor, inChunk)
            let offsets = (0 ..< m).map { _ in Int(random.next() % UInt64(inChunk)) * w }
            return Probe(tensor: t, signature: signature, format: f.code, width: w, chunkIndex: k, offsets: offsets)
        }
    }

    /// The sketch from each probe's chunk bytes (`chunk(probe)` returns chunk `chunkIndex` of the
    /// probe's tensor, or nil when it cannot be had: that tensor is left out).
    static func make(_ probes: [Probe], chunk: (Probe) throws -> [UInt8]?) rethrows -> BaseSketch? {
        var entries: [Entry] = []
        for probe in probes {
            guard let bytes = try chunk(probe), let last = probe.offsets.max(), last + probe.width <= bytes.count else { continue }
            var values = [UInt8]()
            values.reserveCapacity(probe.offsets.count * probe.width)
            for o in probe.offsets { values.append(contentsOf: bytes[o ..< o + probe.width]) }
            entries.append(Entry(signature: probe.signature, format: probe.format, values: values))
        }
        return entries.isEmpty ? nil : BaseSketch(entries: entries)
    }

    /// The sketch of files about to be stored, read from them (one chunk-sized read per probe).
    static func make(uploads: [(input: PutInput, plan: ChunkPlan)]) throws -> BaseSketch? {
        var source: [TensorRecord: String] = [:]
        for (input, plan) in uploads { for t in plan.tensors where source[t] == nil { source[t] = input.source } }
        return try make(probes(uploads.flatMap(\.plan.tensors))) { probe in
            guard let path = source[probe.tensor] else { return nil }
            let start = probe.tensor.begin + probe.chunkIndex * ChunkPlan.tensorChunkBytes
            let length = min(ChunkPlan.tensorChunkBytes, probe.tensor.end - start)
            return try OpenFile(path: path, mode: .read).read(count: length, at: start)
        }
    }

    /// The sketch of a stored revision, from its chunks (the chunk each probe needs is decoded
    /// and checked against its address like any read).
    static func make(stored index: BaseIndex, tensors: [TensorRecord], store: ChunkStore) throws -> BaseSketch? {
        try make(probes(tensors)) { probe in
            guard let t = index.tensors[probe.tensor.name], t.dtype == probe.tensor.dtype, t.shape == probe.tensor.shape,
                  probe.chunkIndex < t.chunks.count else { return nil }
            return try store.rawBytes(of: t.chunks[probe.chunkIndex])
        }
    }

    // MARK: distance

    /// How far `other` is from `self` as a delta base: the mean over the tensors both sketch (same
    /// name, dtype and shape), weighted by samples, of log2 of the RMS difference of their sampled
    /// values. Lower is nearer; −∞-like (−100) for identical values. nil when they share no tensor.
    public func distance(to other: BaseSketch) -> (log2RMS: Double, samples: Int)? {
        meanLog2RMS { e in
            other.entries.first { $0.signature == e.signature && $0.format == e.format && $0.count == e.count }
                .map { BaseSketch.rmsDifference(e.values, $0.values, format: e.format) }
        }
    }

    /// `distance(to: BaseSketch.decode(bytes))`, the same figure, read in place (no decoded copy):
    /// base choice compares the upload's coarse sketch with a thousand candidates' per put. Throws
    /// what `decode` throws for damaged bytes.
    public func distance(toEncoded bytes: [UInt8]) throws -> (log2RMS: Double, samples: Int)? {
        try bytes.withUnsafeBytes { raw in
            let theirs = try BaseSketch.entries(ofEncoded: raw)
            return meanLog2RMS { e in
                theirs.first { $0.signature == e.signature && $0.format == e.format && $0.count == e.count }.map { o in
                    e.values.withUnsafeBytes {
                        BaseSketch.rmsDifference($0, UnsafeRawBufferPointer(rebasing: raw[o.offset ..< o.offset + o.count * o.width]), format: e.format)
                    }
                }
            }
        }
    }

    /// The figure both `distance`s give: the mean over this sketch's entries that `rms` pairs with
    /// an entry of the other (nil: not sketched there), weighted by samples, of log2 of the RMS
    /// difference (at least −100: identical values).
    private func meanLog2RMS(_ rms: (Entry) -> Double?) -> (log2RMS: Double, samples: Int)? {
        var sum = 0.0
        var samples = 0
        for e in entries {
            guard let rms = rms(e) else { continue }
            sum += Double(e.count) * max(-100, log2(rms))
            samples += e.count
        }
        return samples == 0 ? nil : (sum / Double(samples), samples)
    }

    /// Root mean square of the differences of two runs of floats of one format. A non-finite value
    /// or difference (NaN, ∞ in a checkpoint) counts as a difference of 1e30: far, never NaN.
    static func rmsDifference(_ a: [UInt8], _ b: [UInt8], format: UInt8) -> Double {
        a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in rmsDifference(pa, pb, format: format) } }
    }

    static func rmsDifference(_ pa: UnsafeRawBufferPointer, _ pb: UnsafeRawBufferPointer, format: UInt8) -> Double {
        let width = format == 1 ? 4 : 2
        let n = min(pa.count, pb.count) / width
        guard n > 0 else { return 0 }
        // Eight lanes of Float at a time, the format decided once outside the loop: base
        // choice compares a sketch with every candidate's, a thousand at a time. A sum that
        // is not finite (a NaN or ∞ in a checkpoint, or an overflow) reads as 1e30: far,
        // never NaN. Float sums of a few hundred squares lose nothing that ranks.
        var lanes = SIMD8<Float>()
        var i = 0
        // Safe: i + 8 <= n (or i < n in the tails), and n elements of `width` bytes fit in
        // both buffers; loadUnaligned tolerates any alignment.
        switch format {
        case 1:
            while i + 8 <= n {
                var x = SIMD8<Float>(), y = SIMD8<Float>()
                for k in 0 ..< 8 {
                    x[k] = Float(bitPattern: UInt32(littleEndian: pa.loadUnaligned(fromByteOffset: 4 * (i + k), as: UInt32.self)))
                    y[k] = Float(bitPattern: UInt32(littleEndian: pb.loadUnaligned(fromByteOffset: 4 * (i + k), as: UInt32.self)))
                }
                let d = x - y
                lanes += d * d
                i += 8
            }
        case 2:
            while i + 8 <= n {
                var x = SIMD8<UInt32>(), y = SIMD8<UInt32>()
                for k in 0 ..< 8 {
                    x[k] = UInt32(UInt16(littleEndian: pa.loadUnaligned(fromByteOffset: 2 * (i + k), as: UInt16.self)))
                    y[k] = UInt32(UInt16(littleEndian: pb.loadUnaligned(fromByteOffset: 2 * (i + k), as: UInt16.self)))
                }
                let d = unsafeBitCast(x &<< 16, to: SIMD8<Float>.self) - unsafeBitCast(y &<< 16, to: SIMD8<Float>.self)
                lanes += d * d
                i += 8
            }
        default:
            break
        }
        var total = Double(lanes.sum())
        for j in i ..< n {
            let x = value(pa, j, format: format), y = value(pb, j, format: format)
            total += (x - y) * (x - y)
        }
        return total.isFinite ? (total / Double(n)).squareRoot() : 1e30
    }

    /// Element `i` of a run of one float format, as a Double.
    @inline(__always)
    static func value(_ p: UnsafeRawBufferPointer, _ i: Int, format: UInt8) -> Double {
        switch format {
        case 1: return Double(Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))))
        case 2: return Double(Float(bitPattern: UInt32(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16))
        default: return halfToDouble(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
    }

    /// IEEE binary16 to Double (subnormals, infinities and NaN included).
    static func halfToDouble(_ h: UInt16) -> Double {
        let sign = h & 0x8000 != 0 ? -1.0 : 1.0
        let exponent = Int((h >> 10) & 0x1F), fraction = Double(h & 0x3FF)
        switch exponent {
        case 0: return sign * fraction * 0x1p-24
        case 31: return fraction == 0 ? sign * .infinity : .nan
        default: return sign * (1 + fraction / 1024) * pow(2, Double(exponent - 15))
        }
    }
}

