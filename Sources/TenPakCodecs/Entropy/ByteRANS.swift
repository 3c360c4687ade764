import Foundation
import TenPakFormat

/// Order-0 rANS over a byte stream: the entropy coder for byte planes that zstd leaves raw.
///
/// zstd stores a block's literals uncompressed unless Huffman coding saves more than about 1/64 of
/// it, so mantissa planes whose entropy is 7.8–7.9 bits per byte stay at 8. This coder takes every
/// fraction of a bit: one frequency table (256 symbols, 2^12 slots) per stream, 32 interleaved
/// states (PlaneSet's plane mode 3; four in plane mode 2, as older stores hold it).
///
/// Payload:
///
///     u8      tableLog (8…12)
///     table   the frequency table (EntropyCore `writeTable`, alphabet 256)
///     varint  R, byte length of the rANS stream
///     R       K u32 final states x0…x(K−1), then 16-bit little-endian words (as in FORMAT.md)
///
/// With K lanes (32, or 4 in plane mode 2), byte i of the stream uses state i mod K; the decoder
/// must end with every state at 2^16 and every word consumed.
enum ByteRANS {
    static let tableLog = 12
    /// Lanes of a plane-mode-3 stream (SPEC 8.1): 32, two AVX-512 vectors of 16. Mode 2 has 4.
    static let wideLanes = 32

    /// Byte counts of a stream, and the order-0 entropy estimate of its coded size.
    struct Histogram {
        var counts = [UInt32](repeating: 0, count: 256)
        let total: Int

        init(_ bytes: UnsafeRawBufferPointer) {
            total = bytes.count
            // Four partial tables: a plane that repeats one byte value (exponents) would otherwise
            // make every increment wait for the previous one to be stored.
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 4 * 256) { partial in
                // Safe: `partial` has 4 × 256 entries and every index below is (0…3) × 256 + a byte.
                guard let p = partial.baseAddress, let src = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
                p.initialize(repeating: 0, count: 4 * 256)
                let n = bytes.count
                var i = 0
                while i &+ 4 <= n {
                    p[Int(src[i])] &+= 1
                    p[256 &+ Int(src[i &+ 1])] &+= 1
                    p[512 &+ Int(src[i &+ 2])] &+= 1
                    p[768 &+ Int(src[i &+ 3])] &+= 1
                    i &+= 4
                }
                while i < n { p[Int(src[i])] &+= 1; i &+= 1 }
                counts.withUnsafeMutableBufferPointer { c in
                    for s in 0 ..< 256 { c[s] = p[s] &+ p[256 + s] &+ p[512 + s] &+ p[768 + s] }
                }
            }
        }

        /// Entropy bytes plus about two bytes of table per used symbol: within 1% of what
        /// `encode` produces on 64 KiB or more.
        var estimatedSize: Int {
            var bits = 0.0, used = 0
            let n = Double(total)
            for c in counts where c > 0 {
                bits -= Double(c) * log2(Double(c) / n)
                used += 1
            }
            return Int(bits / 8) + 2 * used + 24
        }
    }

    /// Encodes `bytes` (non-empty). `preferredLog` (8…12) is for tests: decoders accept every
    /// precision, the encoder picks 12 unless the stream is short.
    static func encode(_ bytes: UnsafeRawBufferPointer, histogram: Histogram? = nil, preferredLog: Int = tableLog,
                       lanes: Int = wideLanes, vectorKernel: Bool = true) -> [UInt8] {
        precondition(lanes == 4 || lanes == wideLanes)
        let n = bytes.count
        precondition(n > 0)
        let src = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let counts = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { counts.deallocate() }
        let histogram = histogram ?? Histogram(bytes)
        histogram.counts.withUnsafeBufferPointer { counts.initialize(from: $0.baseAddress!, count: 256) }
        let log = tableLogFor(count: n, preferred: preferredLog)
        let freqs = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { freqs.deallocate() }
        normalizeCounts(counts, alphabet: 256, tableLog: log, into: freqs)
        let enc = UnsafeMutablePointer<EncSymbol>.allocate(capacity: 256)
        defer { enc.deallocate() }
        buildEncodeSymbols(freqs, alphabet: 256, tableLog: log, into: enc)

        var sink = ByteSink(capacity: n / 2 + 1024)
        sink.u8(UInt8(log))
        writeTable(freqs, alphabet: 256, into: &sink)
        // Worst case: every symbol emits one 16-bit word, plus states and slack in front.
        let capacity = 2 * n + 4 * lanes + 32
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        defer { buffer.deallocate() }
        var rs = RansSink(buffer, capacity: capacity)
        let freqStarts = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { freqStarts.deallocate() }
        buildFreqStarts(freqs, alphabet: 256, into: freqStarts)
        ransEncode(n: n, lanes: lanes, syms: src, enc: enc, tableLog: log, sink: &rs, kernel: vectorKernel ? freqStarts : nil)
        sink.varint(UInt64(rs.bytes.count))
        sink.append(rs.bytes)
        return sink.bytes
    }

    /// Decodes exactly `output.count` bytes of a stream of `lanes` lanes or throws; bounds-safe on
    /// any payload. `vectorKernel: false` keeps a wide stream off the vector kernels (tests).
    static func decode(_ payload: UnsafeRawBufferPointer, lanes: Int, into output: UnsafeMutableRawBufferPointer,
                       vectorKernel: Bool = true) throws(EntropyCodecError) {
        var stream = try ByteRANSDecoder(payload, lanes: lanes, into: output)
        defer { stream.free() }
        stream.decodeFast(vectorKernel: vectorKernel)
        try stream.finish()
    }

    /// Decodes two independent four-lane streams (two mode-2 planes) at once. Each stream's four
    /// states form dependency chains whose latency bounds one stream's speed; eight chains in one
    /// loop keep more of the core busy. Same output and checks as two `decode` calls.
    static func decodePair(_ payloadA: UnsafeRawBufferPointer, into outputA: UnsafeMutableRawBufferPointer,
                           _ payloadB: UnsafeRawBufferPointer, into outputB: UnsafeMutableRawBufferPointer) throws(EntropyCodecError) {
        var a = try ByteRANSDecoder(payloadA, lanes: 4, into: outputA)
        defer { a.free() }
        var b = try ByteRANSDecoder(payloadB, lanes: 4, into: outputB)
        defer { b.free() }
        ByteRANSDecoder.decodeFast(&a, &b)
        a.decodeFast(vectorKernel: false)
        try a.finish()
        b.decodeFast(vectorKernel: false)
        try b.finish()
    }
}
