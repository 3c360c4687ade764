import Foundation

/// A revision's content sketch: the bit patterns of a few hundred float elements at fixed
/// pseudo-random places of its largest float tensors (SPEC §10 "Base choice").
///
/// The places depend only on the tensor (name, dtype, shape), so an upload and every stored revision
/// of the same architecture sample the same elements. Two revisions' sketches then estimate how
/// costly a delta between them is: per tensor, the root mean square of the differences of the
/// sampled values; a delta's coded size grows with the log of that spread (its entropy), so the
/// distance is the mean over tensors, weighted by samples, of log2 RMS. A fine-tune is nearest its
/// own parent; a sibling (the same base, another run) is farther, by its own update (about √2 the
/// spread: half a bit per element); an unrelated model is far.
///
/// Why not the mean bit length of the differences: a sibling's difference is the difference of two
/// updates, which often nearly cancel; its mean log magnitude is then *lower* than the true base's
/// while its spread, and its coded size, is larger (measured: the wrong base 11% bigger).
///
/// Per tensor, the samples lie in one chunk of it (chosen by the tensor's hash), so that making the
/// sketch of a stored revision decodes at most `tensors` chunks. The sketch only ranks candidates:
/// the nearest are confirmed by encoding real chunks, and a missing or damaged sketch means the
/// candidate is sampled the old way. It never decides a stored byte.
///
/// Encoding (version 1), little-endian:
///
///     "TPSK"  u8 version 1  u8 entry count E
///     E times: i64 exact signature (`TensorSignature.exact`), u8 float format (1 F32, 2 BF16,
///              3 F16: the frame header's float layout codes), u16 sample count M,
///              M × element width bytes: the sampled elements' bit patterns
///     u64 XXH3-64 (seed 0) of every byte before it
public struct BaseSketch: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let signature: Int64
        /// 1 F32, 2 BF16, 3 F16.
        public let format: UInt8
        public var width: Int { format == 1 ? 4 : 2 }
        /// `count` little-endian bit patterns of `width` bytes.
        public let values: [UInt8]
        public var count: Int { values.count / width }
        public init(signature: Int64, format: UInt8, values: [UInt8]) {
            self.signature = signature
            self.format = format
            self.values = values
        }
    }

    public let entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    public static let version: UInt8 = 1
    static let magic: [UInt8] = Array("TPSK".utf8)

    /// Samples per entry in the coarse sketch (`coarse()`).
    public static let coarseSamples = 16

    /// The coarse sketch: each entry's first `coarseSamples` samples, in the same encoding. The
    /// samples lie at pseudo-random places, so their first few are a random subset: a noisier
    /// estimate of the same distance, an eighth of the bytes. Base choice ranks every candidate by
    /// it and reads the full sketch of the nearest few only (SPEC §10 "Base choice").
    public func coarse() -> BaseSketch {
        BaseSketch(entries: entries.map { e in
            Entry(signature: e.signature, format: e.format, values: Array(e.values.prefix(BaseSketch.coarseSamples * e.width)))
        })
    }

    // MARK: bytes

    public func encoded() -> [UInt8] {
        var out = BaseSketch.magic + [BaseSketch.version, UInt8(entries.count)]
        for e in entries {
            withUnsafeBytes(of: e.signature.littleEndian) { out.append(contentsOf: $0) }
            out.append(e.format)
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
        try bytes.withUnsafeBytes { raw in
            BaseSketch(entries: try entries(ofEncoded: raw).map { e in
                Entry(signature: e.signature, format: e.format, values: Array(raw[e.offset ..< e.offset + e.count * e.width]))
            })
        }
    }

    /// Where an encoded entry's values are, read in place by `entries(ofEncoded:)`.
    public struct EncodedEntry: Sendable {
        public let signature: Int64
        public let format: UInt8
        public let count: Int
        /// Offset of the first value in the encoded bytes.
        public let offset: Int
        public var width: Int { format == 1 ? 4 : 2 }
    }

    /// The entries of an encoded sketch, checked as `decode` checks them, without copying their
    /// values (base choice compares a thousand coarse sketches per put).
    public static func entries(ofEncoded raw: UnsafeRawBufferPointer) throws -> [EncodedEntry] {
        guard raw.count >= 14, raw[0] == magic[0], raw[1] == magic[1], raw[2] == magic[2], raw[3] == magic[3] else {
            throw Unreadable(description: "not a sketch (\(raw.count) bytes, no TPSK magic)")
        }
        let body = raw.count - 8
        // Safe: body + 8 == raw.count, and every later read is checked against `body` first.
        let stored = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: body, as: UInt64.self))
        guard Hashing.xxh3_64(UnsafeRawBufferPointer(rebasing: raw[0 ..< body])) == stored else {
            throw Unreadable(description: "sketch checksum mismatch")
        }
        guard raw[4] == version else { throw Unreadable(description: "sketch version \(raw[4]) is not \(version)") }
        var entries: [EncodedEntry] = []
        entries.reserveCapacity(Int(raw[5]))
        var p = 6
        for _ in 0 ..< Int(raw[5]) {
            guard p + 11 <= body else { throw Unreadable(description: "sketch entry runs past its end") }
            let signature = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: p, as: Int64.self))
            let format = raw[p + 8]
            let count = Int(raw[p + 9]) | Int(raw[p + 10]) << 8
            p += 11
            let width = format == 1 ? 4 : 2
            guard (1 ... 3).contains(format), p + count * width <= body else {
                throw Unreadable(description: "sketch entry of format \(format) × \(count) does not fit")
            }
            entries.append(EncodedEntry(signature: signature, format: format, count: count, offset: p))
            p += count * width
        }
        guard p == body else { throw Unreadable(description: "sketch has \(body - p) stray bytes") }
        return entries
    }
}
