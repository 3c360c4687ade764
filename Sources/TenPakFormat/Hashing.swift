import CTenPakKernels
import CXXHash
import Crypto

/// XXH3 and SHA-256 over byte buffers.
///
/// XXH3-128 addresses chunks (fast, not collision-resistant); SHA-256 confirms identity where a
/// stranger's bytes could be forged to collide (dedup) and checks whole files.
public enum Hashing {
    // Each XXH3 call is followed by VZEROUPPER: libxxhash's dispatch returns from its AVX-512
    // code with the upper register halves dirty, which slows every legacy-SSE instruction after it
    // on the thread (SHA-NI at 0.7 of its speed; see tenpak_kernels.h).
    public static func xxh3_128(_ bytes: UnsafeRawBufferPointer) -> XXH128 {
        let h = XXH3_128bits_dispatch(bytes.baseAddress, bytes.count)
        tenpak_clear_avx_upper()
        return XXH128(high: h.high64, low: h.low64)
    }

    public static func xxh3_64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let h = XXH3_64bits_dispatch(bytes.baseAddress, bytes.count)
        tenpak_clear_avx_upper()
        return h
    }

    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> Digest256 {
        Digest256(SHA256.hash(data: bytes))
    }

    public static func xxh3_128(_ bytes: [UInt8]) -> XXH128 { bytes.withUnsafeBytes { xxh3_128($0) } }
    public static func xxh3_64(_ bytes: [UInt8]) -> UInt64 { bytes.withUnsafeBytes { xxh3_64($0) } }
    public static func sha256(_ bytes: [UInt8]) -> Digest256 { bytes.withUnsafeBytes { sha256($0) } }
}

/// A 128-bit XXH3 value. Serialized big-endian (high word first), as XXH3's canonical form.
public struct XXH128: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public var bytes: [UInt8] { XXH128.canonical(high: high, low: low) }

    static func canonical(high: UInt64, low: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        for i in 0 ..< 8 {
            out[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            out[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        return out
    }

    public init?(bytes: some Collection<UInt8>) {
        self.init(bytes: Array(bytes))
    }

    /// The concrete form the catalog calls for every chunk row it reads: the generic one above is
    /// not specialized across modules, and iterating it cost a tenth of a base choice's time.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0, low: UInt64 = 0
        for i in 0 ..< 8 {
            high = high << 8 | UInt64(bytes[i])
            low = low << 8 | UInt64(bytes[8 + i])
        }
        self.init(high: high, low: low)
    }

    public var description: String { bytes.hex }

    public static func < (a: XXH128, b: XXH128) -> Bool { (a.high, a.low) < (b.high, b.low) }
}

/// A SHA-256 digest as a value type.
public struct Digest256: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        self.bytes = Array(bytes)
    }

    init(_ digest: SHA256.Digest) { bytes = Array(digest) }

    public init?(hex: String) {
        guard hex.utf8.count == 64, let raw = [UInt8](hex: hex) else { return nil }
        bytes = raw
    }

    public var hex: String { bytes.hex }
    public var description: String { hex }
}

/// The identity of a chunk: the XXH3-128 address of its raw bytes plus the SHA-256 that confirms a
/// dedup hit. Two chunks with the same XXH3 but different SHA-256 are different chunks.
public struct ChunkID: Hashable, Sendable, CustomStringConvertible {
    public let xxh: XXH128
    public let sha: Digest256

    public init(xxh: XXH128, sha: Digest256) {
        self.xxh = xxh
        self.sha = sha
    }

    public init(of raw: UnsafeRawBufferPointer) {
        xxh = Hashing.xxh3_128(raw)
        sha = Hashing.sha256(raw)
    }

    /// Size of the serialized form: 16 bytes of XXH3-128 then 32 bytes of SHA-256.
    public static let encodedSize = 48

    public func write(to w: inout ByteWriter) {
        w.append(bytes: xxh.bytes)
        w.append(bytes: sha.bytes)
    }

    public static func read(from r: inout ByteReader) throws -> ChunkID {
        let x = try r.readBytes(16)
        let s = try r.readBytes(32)
        // Safe: both reads returned exactly the requested lengths.
        guard let xxh = XXH128(bytes: x), let sha = Digest256(bytes: s) else {
            throw FormatError.invalid("chunk id has the wrong length")
        }
        return ChunkID(xxh: xxh, sha: sha)
    }

    /// Short form for messages: the first 16 hex digits of the address.
    public var short: String { String(xxh.description.prefix(16)) }

    /// The 96 lowercase hex digits of the serialized form (XXH3-128 canonical, then SHA-256): how
    /// the transfer protocol (SPEC §19) writes an id in JSON.
    public var hex: String { xxh.bytes.hex + sha.hex }

    /// Parses `hex`; nil unless it is exactly 96 hex digits.
    public init?(hex: String) {
        guard hex.utf8.count == 96, let raw = [UInt8](hex: hex), let xxh = XXH128(bytes: raw[0 ..< 16]),
              let sha = Digest256(bytes: raw[16 ..< 48]) else { return nil }
        self.init(xxh: xxh, sha: sha)
    }
    public var description: String { xxh.description }
}
