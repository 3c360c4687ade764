import Foundation
import TenPakFormat

/// Order-0 rANS over a byte stream: the entropy coder for byte planes that zstd leaves raw.
///
/// zstd stores a block's literals uncompressed unless Huffman coding saves more than about 1/64 of
/// it, so mantissa planes whose entropy is 7.8–7.9 bits per byte stay at 8. This coder takes every
/// fraction of a bit: one frequency table (256 symbols, 2^12 slots) per stream, four interleaved
/// states. Used by PlaneSet as plane mode 2.
///
/// Payload:
///
///     u8      tableLog (8…12)
///     table   the frequency table (EntropyCore `writeTable`, alphabet 256)
///     varint  R, byte length of the rANS stream
///     R       four u32 final states x0…x3, then 16-bit little-endian words (as in FORMAT.md)
///
/// Byte i of the stream uses state i mod 4; the decoder must end with every state at 2^16 and every
/// word consumed.
enum ByteRANS {
    static let tableLog = 12

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

    /// Encodes `bytes` (non-empty).
    static func encode(_ bytes: UnsafeRawBufferPointer, histogram: Histogram? = nil) -> [UInt8] {
        let n = bytes.count
        precondition(n > 0)
        let src = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let counts = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { counts.deallocate() }
        let histogram = histogram ?? Histogram(bytes)
        histogram.counts.withUnsafeBufferPointer { counts.initialize(from: $0.baseAddress!, count: 256) }
        let log = tableLogFor(count: n, preferred: tableLog)
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
        let capacity = 2 * n + 64
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        defer { buffer.deallocate() }
        var rs = RansSink(buffer, capacity: capacity)
        var ptr = rs.ptr
        var x0 = ransLowerBound, x1 = ransLowerBound, x2 = ransLowerBound, x3 = ransLowerBound
        let tl = UInt32(log)
        var i = n - 1
        while i >= 0 && (i & 3) != 3 {
            let s = enc[Int(src[i])]
            switch i & 3 {
            case 0: ContextDeltaCodec.ransPut(&x0, s, tl, &ptr)
            case 1: ContextDeltaCodec.ransPut(&x1, s, tl, &ptr)
            default: ContextDeltaCodec.ransPut(&x2, s, tl, &ptr)
            }
            i -= 1
        }
        while i >= 3 {
            ContextDeltaCodec.ransPut(&x3, enc[Int(src[i])], tl, &ptr)
            ContextDeltaCodec.ransPut(&x2, enc[Int(src[i &- 1])], tl, &ptr)
            ContextDeltaCodec.ransPut(&x1, enc[Int(src[i &- 2])], tl, &ptr)
            ContextDeltaCodec.ransPut(&x0, enc[Int(src[i &- 3])], tl, &ptr)
            i &-= 4
        }
        rs.ptr = ptr
        rs.flush(x3)
        rs.flush(x2)
        rs.flush(x1)
        rs.flush(x0)
        sink.varint(UInt64(rs.bytes.count))
        sink.append(rs.bytes)
        return sink.bytes
    }

    /// Decodes exactly `output.count` bytes or throws; bounds-safe on any payload.
    static func decode(_ payload: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(EntropyCodecError) {
        let n = output.count
        guard n > 0, let out = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw EntropyCodecError("empty byte stream")
        }
        var src = ByteSource(payload)
        let log = Int(try src.u8())
        guard (minTableLog ... maxTableLog).contains(log) else { throw EntropyCodecError("bad tableLog \(log)") }
        let m = 1 << log
        let freqs = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { freqs.deallocate() }
        try readTable(&src, alphabet: 256, tableLog: log, into: freqs)
        // One entry per slot: symbol (bits 0–7), frequency − 1 (bits 8–19), slot − start (bits
        // 20–31), so a decode step is a single table load. Frequencies are 1…2^12, offsets < 2^12.
        let table = UnsafeMutablePointer<UInt32>.allocate(capacity: m)
        defer { table.deallocate() }
        var start = 0
        for s in 0 ..< 256 {
            let f = Int(freqs[s])
            guard f > 0 else { continue }
            guard start + f <= m else { throw EntropyCodecError("frequency table does not fill its slots") }
            let head = UInt32(s) | UInt32(f - 1) << 8
            // Safe: start + f <= m was checked, so every index is inside the m-entry table.
            for k in 0 ..< f { table[start + k] = head | UInt32(k) << 20 }
            start += f
        }
        guard start == m else { throw EntropyCodecError("frequency table does not fill its slots") }
        let length = try src.varint(max: src.remaining)
        let stream = try src.slice(length)
        guard src.remaining == 0 else { throw EntropyCodecError("trailing bytes after the rANS stream") }
        var x = (UInt32(0), UInt32(0), UInt32(0), UInt32(0))
        var words = try openRans(stream, &x)
        let mask = UInt32(m - 1), tl = UInt32(log)
        @inline(__always) func advance(_ state: UInt32, _ i: Int) -> UInt32 {
            // Safe: the slot is masked to m − 1 and i < n (callers' loop bounds).
            let e = table[Int(state & mask)]
            out[i] = UInt8(truncatingIfNeeded: e)
            return ((e &>> 8) & 0xFFF &+ 1) &* (state &>> tl) &+ (e &>> 20)
        }
        // Fast part: while a group of four can consume at most 8 stream bytes without reaching the
        // end, renormalise without a branch (a data-dependent branch mispredicts about every other
        // byte on a mantissa plane). Same arithmetic and word order as `RansSource.renorm`.
        @inline(__always) func fast(_ state: inout UInt32, _ i: Int, _ rp: inout UnsafePointer<UInt8>) {
            let v = advance(state, i)
            // Safe: the loop condition leaves at least 2 readable bytes at rp for each of the 4 steps.
            let w = UInt32(UInt16(littleEndian: UnsafeRawPointer(rp).loadUnaligned(as: UInt16.self)))
            let need = v < ransLowerBound
            state = need ? (v &<< 16) | w : v
            rp += need ? 2 : 0
        }
        var i = 0
        var rp = words.ptr
        while i &+ 4 <= n, words.end - rp >= 8 {
            fast(&x.0, i, &rp)
            fast(&x.1, i &+ 1, &rp)
            fast(&x.2, i &+ 2, &rp)
            fast(&x.3, i &+ 3, &rp)
            i &+= 4
        }
        words.ptr = rp
        @inline(__always) func step(_ state: inout UInt32, _ i: Int) {
            state = advance(state, i)
            words.renorm(&state)
        }
        while i + 4 <= n {
            step(&x.0, i)
            step(&x.1, i + 1)
            step(&x.2, i + 2)
            step(&x.3, i + 3)
            i += 4
        }
        if i < n { step(&x.0, i); i += 1 }
        if i < n { step(&x.1, i); i += 1 }
        if i < n { step(&x.2, i); i += 1 }
        try closeRans(words, x)
    }
}
