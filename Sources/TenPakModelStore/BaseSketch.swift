import TenPakChunkStore
import TenPakFormat

/// A revision's content sketch: the bit patterns of a few hundred float elements at fixed
/// pseudo-random places of its largest float tensors (SPEC §10 "Base choice").
///
/// The places depend only on the tensor (name, dtype, shape), so an upload and every stored revision
/// of the same architecture sample the same elements. Two revisions' sketches then estimate how
/// many bits per element a delta between them costs: for each sampled element, the bit length of
/// the difference of the two bit patterns read as ordered integers (the quantity the subtraction
/// and context-delta encodings pay for). A fine-tune is nearest its own parent; a sibling (the same
/// base, another run) is farther, by its own update; an unrelated model is far.
///
/// Per tensor, the samples lie in one chunk of it (chosen by the tensor's hash), so that making the
/// sketch of a stored revision decodes at most `tensors` chunks. The sketch only ranks candidates:
/// the nearest are confirmed by encoding real chunks, and a missing or damaged sketch means the
/// candidate is sampled the old way. It never decides a stored byte.
///
/// Encoding (version 1), little-endian:
///
///     "TPSK"  u8 version 1  u8 entry count E
///     E times: i64 exact signature (`TensorSignature.exact`), u8 element width (2 or 4),
///              u16 sample count M, M × width bytes: the sampled elements' bit patterns
///     u64 XXH3-64 (seed 0) of every byte before it
public struct BaseSketch: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let signature: Int64
        public let width: Int
        /// `count` little-endian bit patterns of `width` bytes.
        public let values: [UInt8]
        public var count: Int { values.count / width }
    }

    public let entries: [Entry]

    /// Tensors sampled per revision, and elements per tensor: 1,024 values, 2–4 KiB a revision.
    static let tensors = 8
    static let samplesPerTensor = 128
    static let version: UInt8 = 1
    static let magic: [UInt8] = Array("TPSK".utf8)

    /// Where the samples of one tensor are.
    struct Probe {
        let tensor: TensorRecord
        let signature: Int64
        let width: Int
        /// The tensor chunk holding the samples (SPEC §7: chunk k covers elements [k·n, (k+1)·n)).
        let chunkIndex: Int
        /// Byte offsets of the samples inside that chunk.
        let offsets: [Int]
    }

    static func width(ofDtype dtype: String) -> Int? {
        switch dtype {
        case "F32": return 4
        case "BF16", "F16": return 2
        default: return nil
        }
    }

    /// The probes for a revision with these tensors: its `tensors` largest float tensors (bytes,
    /// then name; a name repeated across shards counts once).
    static func probes(_ all: [TensorRecord]) -> [Probe] {
        var seen = Set<String>()
        var floats: [(TensorRecord, Int)] = []
        for t in all where seen.insert(t.name).inserted {
            guard let w = width(ofDtype: t.dtype), t.end - t.begin >= w else { continue }
            floats.append((t, w))
        }
        floats.sort { ($0.0.end - $0.0.begin, $1.0.name) > ($1.0.end - $1.0.begin, $0.0.name) }
        return floats.prefix(tensors).map { t, w in
            let signature = TensorSignature.exact(name: t.name, dtype: t.dtype, shape: t.shape)
            var random = SplitMix64(seed: UInt64(bitPattern: signature))
            let elements = (t.end - t.begin) / w
            let perChunk = ChunkPlan.tensorChunkBytes / w
            let chunkCount = (elements + perChunk - 1) / perChunk
            let k = Int(random.next() % UInt64(chunkCount))
            let inChunk = min(perChunk, elements - k * perChunk)
            let m = min(samplesPerTensor, inChunk)
            let offsets = (0 ..< m).map { _ in Int(random.next() % UInt64(inChunk)) * w }
            return Probe(tensor: t, signature: signature, width: w, chunkIndex: k, offsets: offsets)
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
            entries.append(Entry(signature: probe.signature, width: probe.width, values: values))
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

    // MARK: bytes

    public func encoded() -> [UInt8] {
        var out = BaseSketch.magic + [BaseSketch.version, UInt8(entries.count)]
        for e in entries {
            withUnsafeBytes(of: e.signature.littleEndian) { out.append(contentsOf: $0) }
            out.append(UInt8(e.width))
            withUnsafeBytes(of: UInt16(e.count).littleEndian) { out.append(contentsOf: $0) }
            out += e.values
        }
        withUnsafeBytes(of: Hashing.xxh3_64(out).littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// Why a stored sketch was not used.
    public struct Unreadable: Error, CustomStringConvertible {
        public let description: String
    }

    /// Decodes and checks a stored sketch (checksum first, then every length against the bytes there).
    public static func decode(_ bytes: [UInt8]) throws -> BaseSketch {
        guard bytes.count >= 14, Array(bytes[0 ..< 4]) == magic else { throw Unreadable(description: "not a sketch (\(bytes.count) bytes, no TPSK magic)") }
        let body = bytes.count - 8
        let stored = bytes[body...].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard Hashing.xxh3_64(Array(bytes[0 ..< body])) == stored else { throw Unreadable(description: "sketch checksum mismatch") }
        guard bytes[4] == version else { throw Unreadable(description: "sketch version \(bytes[4]) is not \(version)") }
        var entries: [Entry] = []
        var p = 6
        for _ in 0 ..< Int(bytes[5]) {
            guard p + 11 <= body else { throw Unreadable(description: "sketch entry runs past its end") }
            let signature = Int64(bitPattern: bytes[p ..< p + 8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
            let width = Int(bytes[p + 8])
            let count = Int(bytes[p + 9]) | Int(bytes[p + 10]) << 8
            p += 11
            guard width == 2 || width == 4, p + count * width <= body else { throw Unreadable(description: "sketch entry of width \(width) × \(count) does not fit") }
            entries.append(Entry(signature: signature, width: width, values: Array(bytes[p ..< p + count * width])))
            p += count * width
        }
        guard p == body else { throw Unreadable(description: "sketch has \(body - p) stray bytes") }
        return BaseSketch(entries: entries)
    }

    // MARK: distance

    /// Mean bits per sampled element of a delta from `other` to `self`, over the entries both have
    /// (same tensor, dtype and shape); nil when they share none.
    public func distance(to other: BaseSketch) -> (bitsPerElement: Double, samples: Int)? {
        var bits = 0, samples = 0
        for e in entries {
            guard let o = other.entries.first(where: { $0.signature == e.signature && $0.width == e.width && $0.count == e.count }) else { continue }
            bits += BaseSketch.deltaBits(e.values, o.values, width: e.width)
            samples += e.count
        }
        return samples == 0 ? nil : (Double(bits) / Double(samples), samples)
    }

    /// Σ bit length of |ord(a) − ord(b)|, where ord reads a float's sign-magnitude bit pattern as a
    /// signed integer (so neighbouring floats are neighbouring integers). Straight loops over the
    /// elements, which the compiler vectorizes.
    static func deltaBits(_ a: [UInt8], _ b: [UInt8], width: Int) -> Int {
        a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                var total = 0
                if width == 2 {
                    // Safe: both buffers hold count × 2 bytes (checked by the caller's count match);
                    // loadUnaligned tolerates any alignment.
                    for i in 0 ..< pa.count / 2 {
                        let x = UInt16(littleEndian: pa.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                        let y = UInt16(littleEndian: pb.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                        let ox = x & 0x8000 != 0 ? -Int32(x & 0x7FFF) : Int32(x)
                        let oy = y & 0x8000 != 0 ? -Int32(y & 0x7FFF) : Int32(y)
                        total += 32 - (ox - oy).magnitude.leadingZeroBitCount
                    }
                } else {
                    for i in 0 ..< pa.count / 4 {
                        let x = UInt32(littleEndian: pa.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                        let y = UInt32(littleEndian: pb.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                        let ox = x & 0x8000_0000 != 0 ? -Int64(x & 0x7FFF_FFFF) : Int64(x)
                        let oy = y & 0x8000_0000 != 0 ? -Int64(y & 0x7FFF_FFFF) : Int64(y)
                        total += 64 - (ox - oy).magnitude.leadingZeroBitCount
                    }
                }
                return total
            }
        }
    }
}

/// SplitMix64: the sketch's positions must be the same on every machine and in every version.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
