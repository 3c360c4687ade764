import CTenPakKernels

/// One order-0 rANS stream (`ByteRANS` payload) being decoded into its output.
///
/// Decoding has two parts: `decodeFast` runs while a group of lanes can consume at most two stream
/// bytes per lane without reaching the end, and renormalises without a branch (a data-dependent
/// branch would mispredict about every other byte on a mantissa plane); `finish` decodes the rest
/// with the bounds-checked reader and checks the final states. Same arithmetic and word order as
/// `RansSource.renorm`, so either part may decode any byte. Four-lane streams (plane mode 2) keep
/// their states in registers; 32-lane streams (plane mode 3) go through the AVX-512 or AVX2 kernel
/// where one runs, else lane by lane here.
///
/// Owns its slot table and lane states: call `free()` exactly once (`defer`), also after a throw
/// from a later step.
struct ByteRANSDecoder {
    /// One entry per slot: symbol (bits 0–7), frequency − 1 (bits 8–19), slot − start (bits
    /// 20–31), so a decode step is a single table load. Frequencies are 1…2^12, offsets < 2^12.
    private let table: UnsafeMutablePointer<UInt32>
    private let mask: UInt32
    private let tableLog: UInt32
    /// Lane states: 4 or 32, stored right after the table (one allocation).
    private let lanes: Int
    private let states: UnsafeMutablePointer<UInt32>
    private var words: RansSource
    private let out: UnsafeMutablePointer<UInt8>
    private let n: Int
    /// Bytes decoded so far (a multiple of four until `finish`).
    private var i = 0

    /// Parses the header and table of `payload`; the output must be non-empty.
    init(_ payload: UnsafeRawBufferPointer, lanes: Int, into output: UnsafeMutableRawBufferPointer) throws(EntropyCodecError) {
        precondition(lanes == 4 || lanes == ByteRANS.wideLanes)
        n = output.count
        self.lanes = lanes
        guard n > 0, let out = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw EntropyCodecError("empty byte stream")
        }
        self.out = out
        var src = ByteSource(payload)
        let log = Int(try src.u8())
        guard (minTableLog ... maxTableLog).contains(log) else { throw EntropyCodecError("bad tableLog \(log)") }
        let m = 1 << log
        mask = UInt32(m - 1)
        tableLog = UInt32(log)
        let freqs = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { freqs.deallocate() }
        try readTable(&src, alphabet: 256, tableLog: log, into: freqs)
        let table = UnsafeMutablePointer<UInt32>.allocate(capacity: m + lanes)
        let states = table + m
        states.initialize(repeating: 0, count: lanes)
        do throws(EntropyCodecError) {
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
            words = try openRans(stream, states: states, lanes: lanes)
        } catch {
            table.deallocate()
            throw error
        }
        self.table = table
        self.states = states
    }

    func free() { table.deallocate() }

    /// Decodes byte `i` with `state` and returns the state before renormalisation.
    @inline(__always)
    private static func advance(_ state: UInt32, _ i: Int, _ table: UnsafeMutablePointer<UInt32>, _ mask: UInt32, _ tl: UInt32,
                                _ out: UnsafeMutablePointer<UInt8>) -> UInt32 {
        // Safe: the slot is masked to the table's size and callers keep i < n.
        let e = table[Int(state & mask)]
        out[i] = UInt8(truncatingIfNeeded: e)
        return ((e &>> 8) & 0xFFF &+ 1) &* (state &>> tl) &+ (e &>> 20)
    }

    /// Branch-free renormalisation; `rp` must have 2 readable bytes.
    @inline(__always)
    private static func renorm(_ v: UInt32, _ rp: inout UnsafePointer<UInt8>) -> UInt32 {
        // Safe: callers guarantee 2 readable bytes at rp (see `safeGroups`).
        let w = UInt32(UInt16(littleEndian: UnsafeRawPointer(rp).loadUnaligned(as: UInt16.self)))
        let need = v < ransLowerBound
        rp += need ? 2 : 0
        return need ? (v &<< 16) | w : v
    }

    /// `advance` with the table precision a compile-time constant (`T`): the mask and the shift
    /// are immediates, which keeps the fast loops' registers for their states.
    @inline(__always)
    private static func advance<T: TableLogK>(_: T.Type, _ state: UInt32, _ table: UnsafeMutablePointer<UInt32>,
                                              _ out: UnsafeMutablePointer<UInt8>) -> UInt32 {
        // Safe: the slot is masked to the table's 2^T.tl entries; callers keep `out` inside the output.
        let e = table[Int(state & UInt32((1 << T.tl) - 1))]
        out.pointee = UInt8(truncatingIfNeeded: e)
        return ((e &>> 8) & 0xFFF &+ 1) &* (state &>> UInt32(T.tl)) &+ (e &>> 20)
    }

    /// Whole groups of four bytes that may be decoded without a bounds check: at most 8 stream
    /// bytes per group (one 16-bit word per byte), none past the end of the output.
    private var safeGroups: Int { min((n &- i) >> 2, (words.end - words.ptr) >> 3) }

    /// The fast part of one stream: a wide stream's whole groups through the vector kernel first
    /// (with `vectorKernel`, where one runs), then the scalar loop of its lane count.
    mutating func decodeFast(vectorKernel: Bool) {
        if lanes != 4, vectorKernel, tenpak_vector_decode_available() != 0 {
            var stream: UnsafePointer<UInt8>? = words.ptr
            // Safe: the kernel writes below out + n and reads only while 64 stream bytes remain.
            i &+= tenpak_rans8_decode32(table, tableLog, states, &stream, words.end, out + i, n &- i)
            if let stream { words.ptr = stream }
        }
        switch tableLog {
        case 8: decodeFast(TL8.self)
        case 9: decodeFast(TL9.self)
        case 10: decodeFast(TL10.self)
        case 11: decodeFast(TL11.self)
        default: decodeFast(TL12.self)
        }
    }

    /// Whole groups of 32 lanes, each needing at most 64 stream bytes. Each lane renormalises right
    /// after its step: the words still go in lane order, as if all lanes decoded first, since a step
    /// reads none.
    private mutating func decodeFastWide<T: TableLogK>(_: T.Type) {
        let table = table, states = states, lanes = ByteRANS.wideLanes
        var rp = words.ptr
        while n &- i >= lanes && words.end - rp >= 2 * lanes {
            let o = out + i
            for k in 0 ..< lanes { states[k] = Self.renorm(Self.advance(T.self, states[k], table, o + k), &rp) }
            i &+= lanes
        }
        words.ptr = rp
    }

    private mutating func decodeFast<T: TableLogK>(_: T.Type) {
        if lanes != 4 {
            decodeFastWide(T.self)
            return
        }
        let table = table, out = out
        var s0 = states[0], s1 = states[1], s2 = states[2], s3 = states[3]
        while true {
            let groups = safeGroups
            if groups <= 0 { break }
            var rp = words.ptr, o = out + i
            let oEnd = o + groups &* 4
            repeat {
                s0 = Self.renorm(Self.advance(T.self, s0, table, o), &rp)
                s1 = Self.renorm(Self.advance(T.self, s1, table, o + 1), &rp)
                s2 = Self.renorm(Self.advance(T.self, s2, table, o + 2), &rp)
                s3 = Self.renorm(Self.advance(T.self, s3, table, o + 3), &rp)
                o += 4
            } while o < oEnd
            i &+= groups &* 4
            words.ptr = rp
        }
        (states[0], states[1], states[2], states[3]) = (s0, s1, s2, s3)
    }

    /// The fast part of two streams, interleaved, while both have room; each then continues alone.
    /// Interleaved only when both are at the same byte with the same table precision (two planes of
    /// one chunk are); otherwise this leaves both to their own `decodeFast`.
    static func decodeFast(_ a: inout ByteRANSDecoder, _ b: inout ByteRANSDecoder) {
        guard a.lanes == 4, b.lanes == 4, a.tableLog == b.tableLog, a.i == b.i else { return }
        switch a.tableLog {
        case 8: decodeFast(TL8.self, &a, &b)
        case 9: decodeFast(TL9.self, &a, &b)
        case 10: decodeFast(TL10.self, &a, &b)
        case 11: decodeFast(TL11.self, &a, &b)
        default: decodeFast(TL12.self, &a, &b)
        }
    }

    private static func decodeFast<T: TableLogK>(_: T.Type, _ a: inout ByteRANSDecoder, _ b: inout ByteRANSDecoder) {
        let ta = a.table, tb = b.table
        var a0 = a.states[0], a1 = a.states[1], a2 = a.states[2], a3 = a.states[3]
        var b0 = b.states[0], b1 = b.states[1], b2 = b.states[2], b3 = b.states[3]
        // a.i == b.i throughout: one offset serves both outputs.
        while true {
            let groups = min(a.safeGroups, b.safeGroups)
            if groups <= 0 { break }
            var ra = a.words.ptr, rb = b.words.ptr
            let oa = a.out + a.i, ob = b.out + b.i
            var k = 0
            let kEnd = groups &* 4
            repeat {
                a0 = renorm(advance(T.self, a0, ta, oa + k), &ra)
                b0 = renorm(advance(T.self, b0, tb, ob + k), &rb)
                a1 = renorm(advance(T.self, a1, ta, oa + (k &+ 1)), &ra)
                b1 = renorm(advance(T.self, b1, tb, ob + (k &+ 1)), &rb)
                a2 = renorm(advance(T.self, a2, ta, oa + (k &+ 2)), &ra)
                b2 = renorm(advance(T.self, b2, tb, ob + (k &+ 2)), &rb)
                a3 = renorm(advance(T.self, a3, ta, oa + (k &+ 3)), &ra)
                b3 = renorm(advance(T.self, b3, tb, ob + (k &+ 3)), &rb)
                k &+= 4
            } while k < kEnd
            a.i &+= kEnd
            b.i &+= kEnd
            a.words.ptr = ra
            b.words.ptr = rb
        }
        (a.states[0], a.states[1], a.states[2], a.states[3]) = (a0, a1, a2, a3)
        (b.states[0], b.states[1], b.states[2], b.states[3]) = (b0, b1, b2, b3)
    }

    /// The rest, bounds-checked, then the end checks: every state back at 2^16, every word read.
    mutating func finish() throws(EntropyCodecError) {
        let table = table, mask = mask, tl = tableLog, out = out, n = n, states = states
        let laneMask = lanes - 1
        var words = words, i = i
        while i < n {
            let k = i & laneMask
            states[k] = Self.advance(states[k], i, table, mask, tl, out)
            words.renorm(&states[k])
            i += 1
        }
        self.i = i
        self.words = words
        try closeRans(words, states: states, lanes: lanes)
    }
}
