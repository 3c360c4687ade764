import CTenPakKernels
import Crypto

/// An incremental SHA-256 of a byte stream (a whole file at put and get, a chunk's id at put).
///
/// On CPUs with the SHA extensions the blocks are compressed by TenPak's own SHA-NI kernel, so
/// that two streams fed the same bytes (a chunk's id and its file's hash, SPEC 10) can be
/// compressed side by side with `update(_:_:with:)`: about 1.1 times the cost of one stream
/// instead of two. Elsewhere swift-crypto does the work, stream by stream. Both give SHA-256 as
/// FIPS 180-4 defines it; the tests hold them to each other and to the standard's vectors.
public struct StreamingSHA256 {
    // Exactly one of the two is set. Two optionals rather than an enum with payloads: an update
    // mutates the engine in place (swift-crypto's context object stays uniquely referenced, so
    // it is not copied on every update).
    private var blocks: Blocks?
    private var portable: SHA256?

    /// Whether this CPU has the SHA extensions (checked once per process).
    public static let usesExtensions = tenpak_sha256_ni_available() != 0

    public init() { self.init(extensions: true) }

    /// `extensions: false` picks swift-crypto even where the extensions exist (tests compare the
    /// two); `true` picks them only where the CPU has them.
    init(extensions: Bool) {
        if extensions && Self.usesExtensions { blocks = Blocks() } else { portable = SHA256() }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        if blocks != nil { blocks!.update(bytes) } else { portable!.update(bufferPointer: bytes) }
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// Hashes the same bytes into two streams, in one pass where the extensions allow it.
    public static func update(_ a: inout StreamingSHA256, _ b: inout StreamingSHA256, with bytes: UnsafeRawBufferPointer) {
        guard a.blocks != nil, b.blocks != nil else {
            a.update(bytes)
            b.update(bytes)
            return
        }
        Blocks.update(&a.blocks!, &b.blocks!, with: bytes)
    }

    public func finalize() -> Digest256 {
        if let blocks { return blocks.finalize() }
        // Safe to unwrap: set whenever `blocks` is not.
        return Digest256(portable!.finalize())
    }
}

/// SHA-256 state over the SHA-NI kernel: the chaining value, a partial block and the length.
private struct Blocks {
    var state: SIMD8<UInt32> = [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19]
    var partial = SIMD64<UInt8>()
    var partialCount = 0
    var length: UInt64 = 0

    mutating func compress(_ data: UnsafeRawPointer, blocks: Int) {
        guard blocks > 0 else { return }
        withUnsafeMutablePointer(to: &state) { s in
            // Safe: SIMD8<UInt32> is eight contiguous UInt32; the kernel reads blocks * 64 bytes
            // from `data`, which the callers take from inside their buffers.
            s.withMemoryRebound(to: UInt32.self, capacity: 8) { h in
                tenpak_sha256_ni_blocks(h, data.assumingMemoryBound(to: UInt8.self), blocks)
            }
        }
    }

    /// Tops up a started partial block from the front of `bytes` (compressing it once full);
    /// returns how many bytes it took. Takes nothing when no block is started.
    mutating func fillPartial(from bytes: UnsafeRawBufferPointer) -> Int {
        guard partialCount > 0 else { return 0 }
        let take = min(64 - partialCount, bytes.count)
        for i in 0 ..< take { partial[partialCount + i] = bytes[i] }
        partialCount += take
        if partialCount == 64 {
            var block = partial
            withUnsafeBytes(of: &block) { compress($0.baseAddress!, blocks: 1) }  // Safe: a 64-byte local.
            partialCount = 0
        }
        return take
    }

    /// Keeps the bytes after the last whole block for the next update.
    mutating func keepTail(_ bytes: UnsafeRawBufferPointer, from offset: Int) {
        for i in offset ..< bytes.count { partial[partialCount + i - offset] = bytes[i] }
        partialCount += bytes.count - offset
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        length &+= UInt64(bytes.count)
        let start = fillPartial(from: bytes)
        let whole = (bytes.count - start) / 64
        compress(base + start, blocks: whole)
        keepTail(bytes, from: start + whole * 64)
    }

    static func update(_ a: inout Blocks, _ b: inout Blocks, with bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        a.length &+= UInt64(bytes.count)
        b.length &+= UInt64(bytes.count)
        // Each stream first completes the block it had started; from there both have whole
        // blocks at their own offsets, compressed pairwise as far as both reach.
        let startA = a.fillPartial(from: bytes), startB = b.fillPartial(from: bytes)
        let wholeA = (bytes.count - startA) / 64, wholeB = (bytes.count - startB) / 64
        let paired = min(wholeA, wholeB)
        if paired > 0 {
            withUnsafeMutablePointer(to: &a.state) { sa in
                withUnsafeMutablePointer(to: &b.state) { sb in
                    // Safe: as in `compress`; both ranges end within `bytes`.
                    sa.withMemoryRebound(to: UInt32.self, capacity: 8) { ha in
                        sb.withMemoryRebound(to: UInt32.self, capacity: 8) { hb in
                            tenpak_sha256_ni_blocks_x2(ha, (base + startA).assumingMemoryBound(to: UInt8.self),
                                                       hb, (base + startB).assumingMemoryBound(to: UInt8.self), paired)
                        }
                    }
                }
            }
        }
        a.compress(base + startA + paired * 64, blocks: wholeA - paired)
        b.compress(base + startB + paired * 64, blocks: wholeB - paired)
        a.keepTail(bytes, from: startA + wholeA * 64)
        b.keepTail(bytes, from: startB + wholeB * 64)
    }

    func finalize() -> Digest256 {
        // FIPS 180-4 padding: 0x80, zeros to 56 mod 64, the length in bits big-endian.
        var last = self
        var tail = [UInt8](repeating: 0, count: partialCount < 56 ? 64 : 128)
        for i in 0 ..< partialCount { tail[i] = partial[i] }
        tail[partialCount] = 0x80
        let bits = length &* 8
        for i in 0 ..< 8 { tail[tail.count - 1 - i] = UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i))) }
        tail.withUnsafeBytes { last.compress($0.baseAddress!, blocks: $0.count / 64) }  // Safe: 64 or 128 bytes.
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0 ..< 8 {
            let word = last.state[i]
            for j in 0 ..< 4 { out[4 * i + j] = UInt8(truncatingIfNeeded: word >> (24 - 8 * UInt32(j))) }
        }
        // Safe to unwrap: exactly 32 bytes.
        return Digest256(bytes: out)!
    }
}
