import CTenPakKernels
import TenPakFormat

// Shared pieces of the TenPak entropy codecs: errors, float layouts, byte/bit I/O,
// static rANS frequency tables (normalisation, serialisation, encoder symbols).
// Swift standard library only.

/// Thrown by the entropy codecs when a payload is malformed, truncated or inconsistent.
public struct EntropyCodecError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "EntropyCodecError: \(message)" }
}

// `FloatLayout` (f32 = 1, bf16 = 2, f16 = 3) is declared elsewhere (TenPakFormat in the main
// package, FloatLayout.swift in the lab); these helpers only read it.
extension FloatLayout {
    /// True for the layouts these codecs handle (f32, bf16, f16).
    var isEntropyCodable: Bool { self == .f32 || self == .bf16 || self == .f16 }
    /// Bytes per element.
    var codecWidth: Int { self == .f32 ? 4 : 2 }
    /// Bits per element.
    var codecBits: Int { self == .f32 ? 32 : 16 }
    /// Number of explicit mantissa bits.
    var mantissaBits: Int { self == .f32 ? 23 : (self == .bf16 ? 7 : 10) }
    /// Number of exponent bits.
    var exponentBits: Int { self == .f16 ? 5 : 8 }
}

// MARK: - rANS constants

let ransLowerBound: UInt32 = 1 << 16   // state lives in [2^16, 2^32)
let maxTableLog = 12
let minTableLog = 8

/// Compile-time rANS table precision for the specialised decode loops (context-delta and
/// ByteRANS).
protocol TableLogK { static var tl: Int { get } }
enum TL8: TableLogK { static var tl: Int { 8 } }
enum TL9: TableLogK { static var tl: Int { 9 } }
enum TL10: TableLogK { static var tl: Int { 10 } }
enum TL11: TableLogK { static var tl: Int { 11 } }
enum TL12: TableLogK { static var tl: Int { 12 } }

// MARK: - Byte output

/// Growable little-endian byte sink used by the encoders.
struct ByteSink {
    var bytes: [UInt8] = []
    init(capacity: Int) { bytes.reserveCapacity(capacity) }
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) {
        bytes.append(UInt8(truncatingIfNeeded: v)); bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v >> 16)); bytes.append(UInt8(truncatingIfNeeded: v >> 24))
    }
    /// LEB128 unsigned varint.
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(truncatingIfNeeded: v) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func append(_ p: UnsafeRawBufferPointer) { bytes.append(contentsOf: p) }
}

/// Bounds-checked little-endian reader over a payload.
struct ByteSource {
    let base: UnsafeRawBufferPointer
    var pos: Int = 0
    init(_ b: UnsafeRawBufferPointer) { base = b }
    var remaining: Int { base.count - pos }
    mutating func u8() throws(EntropyCodecError) -> UInt8 {
        guard pos < base.count else { throw EntropyCodecError("truncated payload") }
        let v = base[pos]; pos += 1; return v
    }
    mutating func u32() throws(EntropyCodecError) -> UInt32 {
        guard base.count - pos >= 4 else { throw EntropyCodecError("truncated payload") }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(base[pos + k]) << (8 * k) }
        pos += 4; return v
    }
    mutating func varint() throws(EntropyCodecError) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try u8()
            if shift == 63 && b > 1 { throw EntropyCodecError("varint overflow") }
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
            if shift > 63 { throw EntropyCodecError("varint overflow") }
        }
    }
    /// Reads a varint that must be <= limit.
    mutating func varint(max limit: Int) throws(EntropyCodecError) -> Int {
        let v = try varint()
        guard v <= UInt64(limit) else { throw EntropyCodecError("field out of range") }
        return Int(v)
    }
    mutating func slice(_ count: Int) throws(EntropyCodecError) -> UnsafeRawBufferPointer {
        guard count >= 0, base.count - pos >= count else { throw EntropyCodecError("truncated payload") }
        let s = UnsafeRawBufferPointer(rebasing: base[pos..<(pos + count)])
        pos += count
        return s
    }
}

// MARK: - Raw bit stream (LSB first)

/// Bounds-safe forward bit reader. Reading past the end yields zero bits and is
/// reported by `finish`.
struct BitReader {
    let start: UnsafePointer<UInt8>
    let end: UnsafePointer<UInt8>
    var ptr: UnsafePointer<UInt8>
    var buf: UInt64 = 0
    var cnt: Int = 0
    var overrun: Int = 0
    init(_ s: UnsafeRawBufferPointer) {
        if let b = s.baseAddress, s.count > 0 {
            let p = b.assumingMemoryBound(to: UInt8.self)
            start = p; ptr = p; end = p + s.count
        } else {
            // A one-byte dummy region that is never dereferenced (count 0).
            let p = UnsafePointer<UInt8>(bitPattern: 0x10)!
            start = p; ptr = p; end = p
        }
    }
    @inline(__always) mutating func refill() {
        if end - ptr >= 8 {
            buf |= UInt64(littleEndian: UnsafeRawPointer(ptr).loadUnaligned(as: UInt64.self)) &<< UInt64(cnt)
            ptr += (63 &- cnt) >> 3
            cnt |= 56
        } else {
            slowRefill()
        }
    }
    @inline(never) mutating func slowRefill() {
        while cnt <= 56 {
            if ptr < end { buf |= UInt64(ptr.pointee) &<< UInt64(cnt); ptr += 1 } else { overrun += 1 }
            cnt += 8
        }
    }
    /// Bits consumed so far (meaningful while `overrun == 0`).
    var bitPosition: Int { (ptr - start) * 8 - cnt }
    /// Continues reading at bit `position` (0 <= position <= 8 * byte length): the position
    /// decoders that locate each value themselves hand back for the bounds-checked tail and
    /// `finish`.
    mutating func seek(toBit position: Int) {
        ptr = start + (position >> 3)
        buf = 0
        cnt = 0
        overrun = 0
        _ = get(position & 7)
    }
    /// Reads `n` bits, n <= 32.
    @inline(__always) mutating func get(_ n: Int) -> UInt32 {
        if cnt < n { refill() }
        let v = UInt32(truncatingIfNeeded: buf & ((1 &<< UInt64(n)) &- 1))
        buf = buf &>> UInt64(n)
        cnt &-= n
        return v
    }
    /// Throws unless exactly all bytes were consumed and the padding bits are zero.
    func finish() throws(EntropyCodecError) {
        let consumedBits = ((ptr - start) + overrun) * 8 - cnt
        let total = (end - start) * 8
        guard overrun == 0 || consumedBits <= total else { throw EntropyCodecError("raw bit stream overrun") }
        guard (consumedBits + 7) / 8 == (end - start) else { throw EntropyCodecError("raw bit stream length mismatch") }
        // Unread bits still buffered (padding) must be zero.
        let padBits = total - consumedBits
        if padBits > 0 && padBits <= cnt {
            guard buf & ((1 << UInt64(padBits)) - 1) == 0 else { throw EntropyCodecError("nonzero padding bits") }
        }
    }
}

// MARK: - Frequency tables

/// Frequencies of one context, normalised to sum to 2^tableLog (every used symbol >= 1).
/// `counts` has `alphabet` entries; result written into `freqs`. Returns number of used symbols.
@discardableResult
func normalizeCounts(_ counts: UnsafePointer<UInt32>, alphabet: Int, tableLog: Int,
                     into freqs: UnsafeMutablePointer<UInt32>) -> Int {
    var total: UInt64 = 0
    var used = 0
    for s in 0..<alphabet { total += UInt64(counts[s]); if counts[s] > 0 { used += 1 } }
    let m = Int64(1) << Int64(tableLog)
    for s in 0..<alphabet { freqs[s] = 0 }
    if total == 0 { return 0 }
    var sum: Int64 = 0
    var best = 0
    var bestCount: UInt32 = 0
    for s in 0..<alphabet where counts[s] > 0 {
        var f = Int64((UInt64(counts[s]) * UInt64(m) + total / 2) / total)
        if f < 1 { f = 1 }
        freqs[s] = UInt32(f)
        sum += f
        if counts[s] > bestCount { bestCount = counts[s]; best = s }
    }
    var diff = m - sum
    if diff > 0 {
        freqs[best] += UInt32(diff)
    } else {
        // Take slots away, largest frequencies first, never below 1.
        while diff < 0 {
            var maxS = 0
            var maxF: UInt32 = 0
            for s in 0..<alphabet where freqs[s] > maxF { maxF = freqs[s]; maxS = s }
            let take = min(Int64(maxF) - 1, -diff, Int64(maxF) / 8 + 1)
            freqs[maxS] -= UInt32(take)
            diff += take
        }
    }
    return used
}

/// Serialises one context's normalised table: varint nsym, then per symbol varint gap
/// (symbol - previous symbol - 1, previous starts at -1) and, except for the last
/// symbol, varint (freq - 1). The last frequency is implied (2^tableLog - sum).
func writeTable(_ freqs: UnsafePointer<UInt32>, alphabet: Int, into sink: inout ByteSink) {
    var syms = 0
    for s in 0..<alphabet where freqs[s] > 0 { syms += 1 }
    sink.varint(UInt64(syms))
    var prev = -1
    var seen = 0
    for s in 0..<alphabet where freqs[s] > 0 {
        sink.varint(UInt64(s - prev - 1))
        seen += 1
        if seen < syms { sink.varint(UInt64(freqs[s] - 1)) }
        prev = s
    }
}

/// Parses a table written by `writeTable` into `freqs` (alphabet entries, zero-filled first).
func readTable(_ src: inout ByteSource, alphabet: Int, tableLog: Int,
               into freqs: UnsafeMutablePointer<UInt32>) throws(EntropyCodecError) {
    let m = 1 << tableLog
    for s in 0..<alphabet { freqs[s] = 0 }
    let syms = try src.varint(max: alphabet)
    guard syms >= 1 else { throw EntropyCodecError("empty frequency table") }
    var sym = -1
    var sum = 0
    for k in 0..<syms {
        sym += 1 + (try src.varint(max: alphabet))
        guard sym < alphabet else { throw EntropyCodecError("symbol out of range") }
        if k < syms - 1 {
            let f = 1 + (try src.varint(max: m - 1))
            sum += f
            guard sum < m else { throw EntropyCodecError("frequencies exceed table size") }
            freqs[sym] = UInt32(f)
        } else {
            freqs[sym] = UInt32(m - sum)
        }
    }
}

/// Encoder-side per symbol data (reciprocal form, after ryg_rans): renormalisation bound
/// f * 2^(32 - tableLog), `rcp` = ceil(2^64 / f), `cmpl` = M - f, `bias` = start (start + M - 1
/// when f == 1, where rcp = 2^64 - 1). With q = (x * rcp) >> 64 (exact x / f for x < 2^32 and
/// f <= 2^12, since x * (rcp * f - 2^64) < 2^44 < 2^64), x' = x + bias + q * cmpl
/// = (x / f) * M + x mod f + start.
struct EncSymbol {
    var xMax: UInt64 = 0
    var rcp: UInt64 = 0
    var bias: UInt32 = 0
    var cmpl: UInt32 = 0
}

/// Per symbol f | start << 16 (the vector encoder's table; f <= 2^12, start < 2^12).
func buildFreqStarts(_ freqs: UnsafePointer<UInt32>, alphabet: Int, into table: UnsafeMutablePointer<UInt32>) {
    var start: UInt32 = 0
    for s in 0..<alphabet {
        table[s] = freqs[s] | start << 16
        start += freqs[s]
    }
}

func buildEncodeSymbols(_ freqs: UnsafePointer<UInt32>, alphabet: Int, tableLog: Int,
                        into syms: UnsafeMutablePointer<EncSymbol>) {
    var start: UInt32 = 0
    let m = UInt32(1) << UInt32(tableLog)
    for s in 0..<alphabet {
        let f = freqs[s]
        var e = EncSymbol()
        if f > 0 {
            e.xMax = UInt64(f) << UInt64(32 - tableLog)
            e.cmpl = m - f
            if f == 1 {
                e.rcp = UInt64.max
                e.bias = start + m - 1
            } else {
                // ceil(2^64 / f) = floor((2^64 - 1) / f) + 1 for f not a power of two, else 2^64 / f.
                let q = UInt64.max / UInt64(f)
                e.rcp = q + 1
                e.bias = start
            }
        }
        syms[s] = e
        start += f
    }
}

/// Backward rANS output buffer (16-bit little-endian words), filled from the end.
struct RansSink {
    let base: UnsafeMutablePointer<UInt8>
    let end: UnsafeMutablePointer<UInt8>
    var ptr: UnsafeMutablePointer<UInt8>
    init(_ b: UnsafeMutablePointer<UInt8>, capacity: Int) { base = b; end = b + capacity; ptr = b + capacity }
    mutating func flush(_ x: UInt32) {
        ptr -= 4
        UnsafeMutableRawPointer(ptr).storeBytes(of: x.littleEndian, as: UInt32.self)
    }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: ptr, count: end - ptr) }
}

/// Codes `n` symbols backwards into `rs`, symbol i with state i mod `lanes` (4 or a multiple of 4,
/// a power of two), then prepends the final states so that they read x0, x1, ... from the front.
/// `rs` needs room for one 16-bit word per symbol, the states, and 32 bytes of slack in front.
/// With `kernel` (per symbol f | start << 16) and 32 lanes, whole groups of 32 go through the
/// vector kernel where one runs (AVX-512 or AVX2): the same words and states.
func ransEncode<S: FixedWidthInteger & UnsignedInteger>(n: Int, lanes: Int, syms: UnsafePointer<S>, enc: UnsafePointer<EncSymbol>,
                                                       tableLog: Int, sink rs: inout RansSink,
                                                       kernel: UnsafePointer<UInt32>? = nil) {
    let x = UnsafeMutablePointer<UInt32>.allocate(capacity: lanes)
    defer { x.deallocate() }
    x.initialize(repeating: ransLowerBound, count: lanes)
    var ptr = rs.ptr
    let tl = UInt32(tableLog)
    let laneMask = lanes - 1
    var i = n - 1
    if let kernel, lanes == 32, n >= 32, tenpak_vector_encode_available() != 0 {
        // The top symbols up to a whole group here, then every whole group below in the kernel.
        while (i + 1) & 31 != 0 {
            ransPut(&x[i & laneMask], enc[Int(syms[i])], tl, &ptr)
            i -= 1
        }
        var sink: UnsafeMutablePointer<UInt8>? = ptr
        // Safe: symbols 0 ... i are inside `syms`; the sink has a word's room per symbol below ptr.
        let done = tenpak_rans_encode32(kernel, tl, syms, UInt32(MemoryLayout<S>.size), i + 1, x, &sink)
        if let sink { ptr = sink }
        i -= done
    }
    while i >= 0 && (i & 3) != 3 {
        ransPut(&x[i & laneMask], enc[Int(syms[i])], tl, &ptr)
        i -= 1
    }
    // Four lanes a step, each step's states in locals (four independent chains).
    while i >= 3 {
        let l = (i &- 3) & laneMask
        var x3 = x[l &+ 3], x2 = x[l &+ 2], x1 = x[l &+ 1], x0 = x[l]
        ransPut(&x3, enc[Int(syms[i])], tl, &ptr)
        ransPut(&x2, enc[Int(syms[i &- 1])], tl, &ptr)
        ransPut(&x1, enc[Int(syms[i &- 2])], tl, &ptr)
        ransPut(&x0, enc[Int(syms[i &- 3])], tl, &ptr)
        x[l &+ 3] = x3; x[l &+ 2] = x2; x[l &+ 1] = x1; x[l] = x0
        i &-= 4
    }
    rs.ptr = ptr
    for k in stride(from: lanes - 1, through: 0, by: -1) { rs.flush(x[k]) }
}

/// One rANS encode step; the division uses a 64-bit reciprocal (exact, see `EncSymbol`).
@inline(__always)
func ransPut(_ x: inout UInt32, _ s: EncSymbol, _ tl: UInt32, _ ptr: inout UnsafeMutablePointer<UInt8>) {
    // Branchless renormalisation: the word is always stored below ptr (the buffer has
    // >= 32 bytes of slack in front), ptr only moves when it is emitted.
    var v = x
    let need = UInt64(v) >= s.xMax
    UnsafeMutableRawPointer(ptr - 2).storeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian, as: UInt16.self)
    ptr -= need ? 2 : 0
    v = need ? v &>> 16 : v
    let q = UInt32(truncatingIfNeeded: UInt64(v).multipliedFullWidth(by: s.rcp).high)
    x = v &+ s.bias &+ q &* s.cmpl
}

/// Forward rANS word reader over the stream after the lanes' initial states (`openRans`).
struct RansSource {
    var ptr: UnsafePointer<UInt8>
    let end: UnsafePointer<UInt8>
    var underflow = false
    @inline(__always) mutating func renorm(_ x: inout UInt32) {
        if x < ransLowerBound {
            if end - ptr >= 2 {
                x = (x &<< 16) | UInt32(ptr[0]) | (UInt32(ptr[1]) << 8)
                ptr += 2
            } else {
                underflow = true
                x = x &<< 16
            }
        }
    }
}

/// Reads `lanes` initial rANS states into `states` and returns a word source for the rest.
func openRans(_ s: UnsafeRawBufferPointer, states: UnsafeMutablePointer<UInt32>, lanes: Int) throws(EntropyCodecError) -> RansSource {
    guard s.count >= 4 * lanes, (s.count - 4 * lanes) % 2 == 0, let b = s.baseAddress else {
        throw EntropyCodecError("bad rANS stream length")
    }
    for k in 0 ..< lanes {
        states[k] = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))
        guard states[k] >= ransLowerBound else { throw EntropyCodecError("bad rANS initial state") }
    }
    let p = b.assumingMemoryBound(to: UInt8.self)
    return RansSource(ptr: p + 4 * lanes, end: p + s.count)
}

func closeRans(_ src: RansSource, states: UnsafePointer<UInt32>, lanes: Int) throws(EntropyCodecError) {
    guard !src.underflow, src.ptr == src.end else { throw EntropyCodecError("rANS stream length mismatch") }
    for k in 0 ..< lanes where states[k] != ransLowerBound { throw EntropyCodecError("rANS final state mismatch") }
}

/// Chooses the table precision for `n` coded symbols.
func tableLogFor(count n: Int, preferred: Int) -> Int {
    if n >= 1 << 15 { return preferred }
    if n >= 1 << 12 { return min(preferred, 10) }
    return min(preferred, 8)
}
