import CTenPakKernels
import TenPakFormat

// Lossless delta codec for float weight chunks against a base chunk.
//
// Per element: pred = base, optionally shrunk towards zero by a per-chunk decay factor
// (weight decay of unused parameters: ft ~= base * (1 - c)); d = target - pred as a
// two's-complement integer of the element width; |d| is split into a token
// (bit length L, sign, the bit below the leading one) coded with static-table rANS whose
// context is (base exponent, bucket of the previous element's L), plus L-2 raw bits.
// See FORMAT.md for the exact byte layout.
//
// Speed notes: the hot loops are generic over the element kind (`DeltaElement`) so each width
// gets its own specialised loop; they use unchecked pointer arithmetic inside a "fast zone"
// where enough input bytes remain for a whole group of four elements, and fall back to the
// bounds-checked readers for the last few elements. Payloads are written with 32 rANS lanes
// (mode 2), whose symbols CTenPakKernels decodes 16 lanes per AVX-512 vector (8 per AVX2 vector) from
// one 32-bit entry per (context, slot); `wideSymbolRun` walks the same tables lane by lane where
// neither runs.
// Four-lane payloads (mode 1, older stores) keep their own decoder, with one table block per context
// (slot -> symbol bytes, then (freq, start) per symbol; FORMAT.md's implementation notes).

public enum ContextDeltaCodec {
    static let magic: UInt8 = 0xD1
    static let modeStored: UInt8 = 0
    /// Coded with four rANS lanes (format version 1; still read, no longer written).
    static let modeCoded: UInt8 = 1
    /// Coded with `wideLanes` rANS lanes, which a vector decoder steps through together.
    static let modeCodedWide: UInt8 = 2
    static let wideLanes = 32
    static let expContexts = 16
    static let buckets = 4
    static let contexts = 64   // expContexts * buckets

    /// Token alphabet: 0 (d == 0), 1 (+1), 2 (-1), then 3 + (L-2)*4 + neg*2 + top for L >= 2.
    @inline(__always) static func alphabet(_ bits: Int) -> Int { 3 + (bits - 1) * 4 }

    /// Lossless: `target` and `base` have equal length, a multiple of layout's width.
    /// Returns a self-contained payload.
    public static func encode(target: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer,
                              layout: FloatLayout) -> [UInt8] {
        _encode(target: target, base: base, layout: layout, tableLog: 10, decay: true)
    }

    /// Tuning entry point (benchmarks, tests): table precision, whether to search the decay
    /// predictor, the number of rANS lanes (`wideLanes`, mode 2; or 4, mode 1 as older stores
    /// hold it), and whether the token pass and rANS coder may use the vector kernels (the same payload either way).
    public static func _encode(target: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer,
                               layout: FloatLayout, tableLog preferredLog: Int, decay: Bool,
                               lanes: Int = 32, vectorKernel: Bool = true) -> [UInt8] {
        precondition(lanes == 4 || lanes == wideLanes, "lanes must be 4 or \(wideLanes)")
        precondition(layout.isEntropyCodable, "layout must be f32, bf16 or f16")
        precondition(target.count == base.count, "target and base must have equal length")
        precondition(target.count % layout.codecWidth == 0, "length must be a multiple of the element width")
        switch layout {
        case .f32: return encodeImpl(ElemF32.self, target: target, base: base, layout: layout, preferredLog: preferredLog, decay: decay, lanes: lanes, vectorKernel: vectorKernel)
        case .bf16: return encodeImpl(ElemBF16.self, target: target, base: base, layout: layout, preferredLog: preferredLog, decay: decay, lanes: lanes, vectorKernel: vectorKernel)
        default: return encodeImpl(ElemF16.self, target: target, base: base, layout: layout, preferredLog: preferredLog, decay: decay, lanes: lanes, vectorKernel: vectorKernel)
        }
    }

    static func encodeImpl<E: DeltaElement>(_: E.Type, target: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer,
                                            layout: FloatLayout, preferredLog: Int, decay: Bool, lanes: Int,
                                            vectorKernel: Bool) -> [UInt8] {
        let n = target.count / E.width
        var sink = ByteSink(capacity: 64)
        sink.u8(magic); sink.u8(layout.rawValue)
        if n == 0 {
            sink.u8(modeStored); sink.varint(0)
            return sink.bytes
        }
        let tp = target.baseAddress!, bp = base.baseAddress!
        let alpha = alphabet(E.bits)
        let tableLog = tableLogFor(count: n, preferred: preferredLog)
        let sShift = E.strideShift
        let stride = 1 << sShift

        // 1. Decay factor.
        let c: UInt32 = decay ? chooseDecay(tp, bp, n: n, layout: layout) : 0
        let c64 = UInt64(c)

        // 2. Context parameters from a sample: exponent window top and length bucket thresholds.
        let (eTop, thr) = contextParameters(E.self, tp, bp, n: n, c: c64)

        // 3. One pass: tokens, raw bits, contexts, histograms.
        let scratch = EncodeScratch(n: n, contexts: contexts, stride: stride, lanes: lanes)
        defer { scratch.free() }
        var et = [UInt8](repeating: 0, count: 256)
        for e in 0..<256 { et[e] = UInt8(min(max(e - eTop + expContexts - 1, 0), expContexts - 1) * buckets) }
        var bucketOfL = [UInt8](repeating: 0, count: 64)
        for l in 0...32 {
            bucketOfL[l] = (l > Int(thr.0) ? 1 : 0) + (l > Int(thr.1) ? 1 : 0) + (l > Int(thr.2) ? 1 : 0)
        }
        var params = tenpak_cd_encode_params(
            element_bytes: UInt32(E.width), mantissa_bits: E.mb, exponent_mask: E.expMask, sign_shift: UInt32(E.bits - 1),
            value_mask: E.mask, exponent_top: Int32(eTop), thresholds: (UInt32(thr.0), UInt32(thr.1), UInt32(thr.2)),
            stride_shift: UInt32(E.strideShift), decay: c64)
        let rawBytes = et.withUnsafeBufferPointer { etp in
            bucketOfL.withUnsafeBufferPointer { blp in
                withUnsafePointer(to: &params) { params in
                    let kernel = vectorKernel && tenpak_vector_encode_available() != 0 ? params : nil
                    return c64 == 0
                        ? tokenPass(E.self, NoDecay.self, tp, bp, n: n, lanes: lanes, c: c64, kernel: kernel, et: etp.baseAddress!,
                                    bucketOfL: blp.baseAddress!, syms: scratch.syms, counts: scratch.counts, raw: scratch.raw)
                        : tokenPass(E.self, WithDecay.self, tp, bp, n: n, lanes: lanes, c: c64, kernel: kernel, et: etp.baseAddress!,
                                    bucketOfL: blp.baseAddress!, syms: scratch.syms, counts: scratch.counts, raw: scratch.raw)
                }
            }
        }

        // 4. Normalised tables.
        let counts = scratch.counts, freqs = scratch.freqs, enc = scratch.enc
        var present: UInt64 = 0
        for cx in 0..<contexts {
            let used = normalizeCounts(counts + cx * stride, alphabet: alpha, tableLog: tableLog, into: freqs + cx * stride)
            if used > 0 {
                present |= 1 << UInt64(cx)
                buildEncodeSymbols(freqs + cx * stride, alphabet: alpha, tableLog: tableLog, into: enc + cx * stride)
            }
        }

        // 5. rANS, backwards, `lanes` interleaved states (element i uses state i mod lanes).
        var rs = RansSink(scratch.rans, capacity: EncodeScratch.ransCapacity(n: n, lanes: lanes))
        let freqStarts = UnsafeMutablePointer<UInt32>.allocate(capacity: contexts * stride)
        defer { freqStarts.deallocate() }
        for cx in 0..<contexts where present & (1 << UInt64(cx)) != 0 {
            buildFreqStarts(freqs + cx * stride, alphabet: alpha, into: freqStarts + cx * stride)
        }
        ransEncode(n: n, lanes: lanes, syms: scratch.syms, enc: enc, tableLog: tableLog, sink: &rs,
                   kernel: vectorKernel ? UnsafePointer(freqStarts) : nil)

        // 6. Assemble.
        sink.u8(lanes == 4 ? modeCoded : modeCodedWide)
        sink.varint(UInt64(n))
        sink.u8(UInt8(tableLog))
        sink.u32(c)
        sink.u8(UInt8(eTop))
        sink.u8(thr.0); sink.u8(thr.1); sink.u8(thr.2)
        for k in 0..<8 { sink.u8(UInt8(truncatingIfNeeded: present >> UInt64(8 * k))) }
        for cx in 0..<contexts where present & (1 << UInt64(cx)) != 0 {
            writeTable(freqs + cx * stride, alphabet: alpha, into: &sink)
        }
        let rb = rs.bytes
        sink.varint(UInt64(rb.count))
        sink.varint(UInt64(rawBytes))
        if sink.bytes.count + rb.count + rawBytes >= target.count + 16 {
            var st = ByteSink(capacity: target.count + 16)
            st.u8(magic); st.u8(layout.rawValue); st.u8(modeStored); st.varint(UInt64(n))
            st.append(target)
            return st.bytes
        }
        sink.bytes.reserveCapacity(sink.bytes.count + rb.count + rawBytes)
        sink.append(rb)
        sink.append(UnsafeRawBufferPointer(start: scratch.raw, count: rawBytes))
        return sink.bytes
    }

    /// Encoder policy for eTop and t1...t3 (see FORMAT.md), evaluated on every k-th element.
    static func contextParameters<E: DeltaElement>(_: E.Type, _ tp: UnsafeRawPointer, _ bp: UnsafeRawPointer,
                                                   n: Int, c: UInt64) -> (Int, (UInt8, UInt8, UInt8)) {
        let step = sampleStep(n)
        var expHist = [Int](repeating: 0, count: 256)
        var lenHist = [Int](repeating: 0, count: 33)
        var ns = 0
        expHist.withUnsafeMutableBufferPointer { eh in
            lenHist.withUnsafeMutableBufferPointer { lh in
                var i = 0
                while i < n {
                    let b = E.load(bp, i), t = E.load(tp, i)
                    eh[Int((b >> E.mb) & E.expMask)] &+= 1
                    let d = (t &- E.predict(b, c)) & E.mask
                    lh[Int(E.bitLength(d))] &+= 1
                    ns &+= 1
                    i &+= step
                }
            }
        }
        let expMax = Int(E.expMask)
        var finite = 0
        for e in 0..<expMax { finite += expHist[e] }
        var eTop = 0
        if finite > 0 {
            let want = finite - finite / 1000
            var cum = 0
            for e in 0..<expMax { cum += expHist[e]; if cum >= want { eTop = e; break } }
        }
        var thr: [UInt8] = [0, 0, 0]
        var cum = 0, q = 0
        for l in 0...32 {
            cum += lenHist[l]
            while q < 3 && cum * 4 >= ns * (q + 1) { thr[q] = UInt8(l); q += 1 }
        }
        return (eTop, (thr[0], thr[1], thr[2]))
    }

    /// Sampling stride of the encoder's parameter estimation: every element below 4096 elements,
    /// otherwise about 2048-4096 samples.
    @inline(__always) static func sampleStep(_ n: Int) -> Int { max(1, n / paramSamples) }
    static let decaySamples = 2048
    static let paramSamples = 2048

    /// Token/raw-bit/context pass. Writes per element `ctx << strideShift | token` into `syms`,
    /// counts them (four lane-private histograms, summed into `counts`), and packs the raw bits.
    /// Returns the raw stream length in bytes.
    static func tokenPass<E: DeltaElement, P: PredictMode>(_: E.Type, _: P.Type, _ tp: UnsafeRawPointer, _ bp: UnsafeRawPointer, n: Int, lanes: Int, c: UInt64,
                                           kernel: UnsafePointer<tenpak_cd_encode_params>?,
                                           et: UnsafePointer<UInt8>, bucketOfL: UnsafePointer<UInt8>,
                                           syms: UnsafeMutablePointer<UInt16>, counts: UnsafeMutablePointer<UInt32>,
                                           raw: UnsafeMutablePointer<UInt8>) -> Int {
        // Lane-private histograms avoid store-to-load chains on repeated symbols; small inputs
        // count straight into `counts` (the extra tables would cost more than they save).
        let tsize = contexts << E.strideShift
        let laneTables = n >= 16384
        let lc = UnsafeMutablePointer<UInt32>.allocate(capacity: laneTables ? 3 * tsize : 1)
        defer { lc.deallocate() }
        if laneTables { lc.initialize(repeating: 0, count: 3 * tsize) }
        let c0 = counts
        let c1 = laneTables ? lc : counts, c2 = laneTables ? lc + tsize : counts, c3 = laneTables ? lc + 2 * tsize : counts
        // Branchless bit writer: always stores 8 bytes (raw has >= 8 bytes of slack).
        var wp = raw
        var acc: UInt64 = 0
        var nacc = 0
        // Each lane's previous bucket (a lane's previous element is `lanes` elements back).
        let pbs = UnsafeMutablePointer<Int>.allocate(capacity: lanes)
        defer { pbs.deallocate() }
        pbs.initialize(repeating: 0, count: lanes)
        let laneMask = lanes - 1
        // Per bit length L: raw mask, raw bit count L-2, bucket; token by (L, neg, top).
        let lInfo = UnsafeMutablePointer<UInt64>.allocate(capacity: 33)
        defer { lInfo.deallocate() }
        let tokOf = UnsafeMutablePointer<UInt8>.allocate(capacity: 33 * 4)
        defer { tokOf.deallocate() }
        for l in 0...32 {
            let sh = max(l - 2, 0)
            lInfo[l] = UInt64((UInt32(1) << UInt32(sh)) &- 1) | UInt64(sh) << 32 | UInt64(bucketOfL[l]) << 40
            for k in 0..<4 {
                let neg = k >> 1, top = k & 1
                tokOf[l * 4 + k] = UInt8(l == 0 ? 0 : (l == 1 ? 1 + neg : 4 * l - 5 + 2 * neg + top))
            }
        }
        // Writes the accumulator's whole bytes out (8 bytes stored, `nacc >> 3` of them kept).
        @inline(__always) func writeOut() {
            UnsafeMutableRawPointer(wp).storeBytes(of: acc.littleEndian, as: UInt64.self)
            let nb = nacc &>> 3
            wp += nb
            acc = acc &>> UInt64(truncatingIfNeeded: nb &<< 3)
            nacc &= 7
        }
        // `flush`: write the bit accumulator out after this element. 16-bit elements flush once per
        // four (raw fields of at most 14 bits: 7 pending + 4 * 14 = 63 bits fit), wider ones each time.
        @inline(__always) func one(_ i: Int, _ pb: inout Int, _ cnt: UnsafeMutablePointer<UInt32>, flush: Bool = true) {
            let b = E.load(bp, i), t = E.load(tp, i)
            let d = (t &- (P.decay ? E.predict(b, c) : b)) & E.mask
            let neg = d >> UInt32(E.bits - 1)
            let negMask = 0 &- neg
            let a = ((d ^ negMask) &- negMask) & E.mask
            let l = 32 &- a.leadingZeroBitCount
            let li = lInfo[l]
            let sh = Int(truncatingIfNeeded: (li &>> 32) & 0xFF)
            let top = (a &>> UInt32(truncatingIfNeeded: sh)) & 1
            let tok = Int(tokOf[(l &<< 2) | Int(neg &<< 1 | top)])
            let rv = a & UInt32(truncatingIfNeeded: li)
            acc |= UInt64(rv) &<< UInt64(truncatingIfNeeded: nacc)
            nacc &+= sh
            if flush { writeOut() }
            let cx = Int(et[Int((b >> E.mb) & E.expMask)]) &+ pb
            pb = Int(truncatingIfNeeded: (li &>> 40) & 0xFF)
            let sv = (cx &<< E.strideShift) | tok
            syms[i] = UInt16(truncatingIfNeeded: sv)
            cnt[sv] &+= 1
        }
        var i = 0
        if let kernel, lanes == wideLanes {
            // Whole groups of 32 through the vector kernel (tokens, contexts, raw fields), a block
            // at a time; the counts and the bit packing, which are serial, here.
            let prev = UnsafeMutablePointer<UInt32>.allocate(capacity: wideLanes)
            defer { prev.deallocate() }
            prev.initialize(repeating: 0, count: wideLanes)
            let fields = UnsafeMutablePointer<UInt32>.allocate(capacity: block)
            defer { fields.deallocate() }
            let widths = UnsafeMutablePointer<UInt8>.allocate(capacity: block)
            defer { widths.deallocate() }
            // `flush` as in `one`: 16-bit elements write the accumulator out once per four.
            @inline(__always) func pack(_ k: Int, _ cnt: UnsafeMutablePointer<UInt32>, flush: Bool = true) {
                cnt[Int(syms[i &+ k])] &+= 1
                acc |= UInt64(fields[k]) &<< UInt64(truncatingIfNeeded: nacc)
                nacc &+= Int(widths[k])
                if flush { writeOut() }
            }
            let grouped = E.bits == 16
            while n &- i >= wideLanes {
                // Safe: the kernel reads elements i ..< i + done of both buffers and writes done
                // entries of syms (from i), fields and widths (block entries each).
                let done = tenpak_cd_tokens32(kernel, tp + i &* E.width, bp + i &* E.width, min(block, n &- i),
                                              prev, syms + i, fields, widths)
                if done == 0 { break }
                var k = 0
                while k < done {
                    pack(k, c0, flush: !grouped); pack(k &+ 1, c1, flush: !grouped); pack(k &+ 2, c2, flush: !grouped); pack(k &+ 3, c3)
                    k &+= 4
                }
                i &+= done
            }
            for k in 0..<wideLanes { pbs[k] = Int(prev[k]) }
        }
        let grouped = E.bits == 16
        // Lanes are 4 or a multiple of 4, so the four elements of a step are in four lanes.
        while i &+ 4 <= n {
            one(i, &pbs[i & laneMask], c0, flush: !grouped); one(i &+ 1, &pbs[(i &+ 1) & laneMask], c1, flush: !grouped)
            one(i &+ 2, &pbs[(i &+ 2) & laneMask], c2, flush: !grouped); one(i &+ 3, &pbs[(i &+ 3) & laneMask], c3)
            i &+= 4
        }
        if i < n { one(i, &pbs[i & laneMask], c0); i &+= 1 }
        if i < n { one(i, &pbs[i & laneMask], c1); i &+= 1 }
        if i < n { one(i, &pbs[i & laneMask], c2); i &+= 1 }
        if laneTables { for k in 0..<tsize { counts[k] = c0[k] &+ c1[k] &+ c2[k] &+ c3[k] } }
        return (wp - raw) + (nacc > 0 ? 1 : 0)
    }

    // MARK: decode

    /// Writes exactly `output.count` bytes (== target length) or throws; never reads or writes
    /// out of bounds, never traps or allocates unboundedly on corrupt/hostile payloads.
    public static func decode(payload: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer,
                              layout: FloatLayout, output: UnsafeMutableRawBufferPointer) throws(EntropyCodecError) {
        try decode(payload: payload, base: base, layout: layout, output: output, vectorKernel: true)
    }

    /// `vectorKernel: false` decodes a wide payload with the portable code even where the vector
    /// kernel could run (tests compare the two).
    static func decode(payload: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, layout: FloatLayout,
                       output: UnsafeMutableRawBufferPointer, vectorKernel: Bool) throws(EntropyCodecError) {
        guard layout.isEntropyCodable else { throw EntropyCodecError("layout must be f32, bf16 or f16") }
        let vector = vectorKernel && tenpak_vector_decode_available() != 0
        switch layout {
        case .f32: try decodeImpl(ElemF32.self, payload: payload, base: base, layout: layout, output: output, vector: vector)
        case .bf16: try decodeImpl(ElemBF16.self, payload: payload, base: base, layout: layout, output: output, vector: vector)
        default: try decodeImpl(ElemF16.self, payload: payload, base: base, layout: layout, output: output, vector: vector)
        }
    }

    static func decodeImpl<E: DeltaElement>(_: E.Type, payload: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer,
                                            layout: FloatLayout, output: UnsafeMutableRawBufferPointer,
                                            vector: Bool) throws(EntropyCodecError) {
        let width = E.width
        guard base.count == output.count, output.count % width == 0 else {
            throw EntropyCodecError("base/output length mismatch")
        }
        let n = output.count / width
        var src = ByteSource(payload)
        guard try src.u8() == magic else { throw EntropyCodecError("not a context-delta payload") }
        guard try src.u8() == layout.rawValue else { throw EntropyCodecError("layout mismatch") }
        let mode = try src.u8()
        let count = try src.varint()
        guard count == UInt64(n) else { throw EntropyCodecError("element count mismatch") }
        if mode == modeStored {
            let body = try src.slice(n * width)
            guard src.remaining == 0 else { throw EntropyCodecError("trailing bytes") }
            if n > 0 { output.baseAddress!.copyMemory(from: body.baseAddress!, byteCount: n * width) }
            return
        }
        guard mode == modeCoded || mode == modeCodedWide, n > 0 else { throw EntropyCodecError("unknown mode") }
        let lanes = mode == modeCoded ? 4 : wideLanes
        let tableLog = Int(try src.u8())
        guard tableLog >= minTableLog && tableLog <= maxTableLog else { throw EntropyCodecError("bad table precision") }
        let c = try src.u32()
        let eTop = Int(try src.u8())
        let thr = (try src.u8(), try src.u8(), try src.u8())
        var present: UInt64 = 0
        for k in 0..<8 { present |= UInt64(try src.u8()) << UInt64(8 * k) }

        switch tableLog {
        case 8: try decodeCoded(E.self, TL8.self, &src, n: n, payloadCount: payload.count, c: c, eTop: eTop, thr: thr, present: present, base: base, output: output, lanes: lanes, vector: vector)
        case 9: try decodeCoded(E.self, TL9.self, &src, n: n, payloadCount: payload.count, c: c, eTop: eTop, thr: thr, present: present, base: base, output: output, lanes: lanes, vector: vector)
        case 10: try decodeCoded(E.self, TL10.self, &src, n: n, payloadCount: payload.count, c: c, eTop: eTop, thr: thr, present: present, base: base, output: output, lanes: lanes, vector: vector)
        case 11: try decodeCoded(E.self, TL11.self, &src, n: n, payloadCount: payload.count, c: c, eTop: eTop, thr: thr, present: present, base: base, output: output, lanes: lanes, vector: vector)
        default: try decodeCoded(E.self, TL12.self, &src, n: n, payloadCount: payload.count, c: c, eTop: eTop, thr: thr, present: present, base: base, output: output, lanes: lanes, vector: vector)
        }
    }

    /// Per-token reconstruction data (decoder).
    struct TokInfo {
        var mag: UInt32 = 0      // 2^(L-1) | top * 2^(L-2) (0 for token 0, 1 for tokens 1, 2)
        var negMask: UInt32 = 0  // 0 or 0xFFFF_FFFF
        var rawMask: UInt32 = 0  // 2^nraw - 1
        var nraw: UInt8 = 0      // L - 2 (0 for L < 2)
        var bucket: UInt8 = 0    // bucket of L for the next element of the lane
        var pad: UInt16 = 0
    }

    /// Decoder table block layout (byte offsets), fixed per element kind, table precision and lane
    /// count: et (256 x UInt32: exponent -> offset of context 4 * expContext) | bucket (128 x
    /// UInt32: token -> offset of its bucket for the lane's next element) | tokInfo (128 x TokInfo)
    /// | the contexts. Four lanes (mode 1): one block per context, sym (2^tableLog x UInt8: slot ->
    /// symbol) then fs (2^strideShift x UInt32: freq | start << 16); offsets are in bytes. Wide
    /// (mode 2): one row per context of 2^tableLog UInt32 slot entries, symbol | freq << 7 |
    /// (slot - start) << 20, so a symbol decodes from one load (one gather for 16 lanes); offsets
    /// count entries. Context offsets are stored scaled, so a symbol decode finds its context from
    /// one add (exponent offset + bucket offset) without shifts.
    @inline(__always) static func offBucket() -> Int { 256 * 4 }
    @inline(__always) static func offTok() -> Int { offBucket() + 128 * 4 }
    @inline(__always) static func offContexts() -> Int { offTok() + 128 * MemoryLayout<TokInfo>.stride }
    @inline(__always) static func contextStride<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type) -> Int {
        (1 << T.tl) + (4 << E.strideShift)
    }

    static func decodeCoded<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type, _ src: inout ByteSource, n: Int,
                                                            payloadCount: Int, c: UInt32, eTop: Int,
                                                            thr: (UInt8, UInt8, UInt8), present: UInt64,
                                                            base: UnsafeRawBufferPointer,
                                                            output: UnsafeMutableRawBufferPointer,
                                                            lanes: Int, vector: Bool) throws(EntropyCodecError) {
        let tableLog = T.tl
        let m = 1 << tableLog
        let alpha = alphabet(E.bits)
        let wide = lanes != 4
        // A context's size in the block, and the unit of the offsets in et and bucket.
        let stride = wide ? m : contextStride(E.self, T.self)
        let blockSize = offContexts() + contexts * (wide ? 4 * m : stride)
        let block = UnsafeMutableRawPointer.allocate(byteCount: blockSize, alignment: 64)
        defer { block.deallocate() }
        // Every byte is written below: the offset tables and token infos here, the contexts in the
        // loop (four lanes: zeroed first, only used symbols get an entry; wide: every slot).
        block.initializeMemory(as: UInt8.self, repeating: 0, count: wide ? offContexts() : blockSize)
        let etP = block.assumingMemoryBound(to: UInt32.self)
        let tokP = (block + offTok()).assumingMemoryBound(to: TokInfo.self)
        let bucketP = (block + offBucket()).assumingMemoryBound(to: UInt32.self)
        let freqs = UnsafeMutablePointer<UInt32>.allocate(capacity: 128)
        defer { freqs.deallocate() }

        // All 64 contexts. An absent context decodes symbol 0 with freq M (state unchanged).
        for cx in 0..<contexts {
            let isPresent = present & (1 << UInt64(cx)) != 0
            if isPresent { try readTable(&src, alphabet: alpha, tableLog: tableLog, into: freqs) }
            if wide {
                let row = (block + offContexts()).assumingMemoryBound(to: UInt32.self) + cx * m
                guard isPresent else {
                    for slot in 0..<m { row[slot] = UInt32(m) << 7 | UInt32(slot) << 20 }
                    continue
                }
                var start = 0
                for s in 0..<alpha {
                    let f = Int(freqs[s])
                    for k in 0..<f { row[start + k] = UInt32(s) | UInt32(f) << 7 | UInt32(k) << 20 }
                    start += f
                }
            } else {
                let st = (block + offContexts() + cx * stride).assumingMemoryBound(to: UInt8.self)
                let fs = (block + offContexts() + cx * stride + m).assumingMemoryBound(to: UInt32.self)
                guard isPresent else {
                    fs[0] = UInt32(m)
                    continue
                }
                var start = 0
                for s in 0..<alpha {
                    let f = Int(freqs[s])
                    if f == 0 { continue }
                    fs[s] = UInt32(f) | UInt32(start) << 16
                    (st + start).initialize(repeating: UInt8(s), count: f)
                    start += f
                }
            }
        }
        let ransLen = try src.varint(max: payloadCount)
        let rawLen = try src.varint(max: payloadCount)
        let ransBytes = try src.slice(ransLen)
        let rawBytes = try src.slice(rawLen)
        guard src.remaining == 0 else { throw EntropyCodecError("trailing bytes") }

        for t in 0..<alpha {
            let l = t == 0 ? 0 : (t < 3 ? 1 : 2 + (t - 3) / 4)
            var info = TokInfo()
            if t == 1 { info.mag = 1 } else if t == 2 { info.mag = 1; info.negMask = 0xFFFF_FFFF } else if t >= 3 {
                let k = t - 3
                info.negMask = (k >> 1) & 1 != 0 ? 0xFFFF_FFFF : 0
                info.mag = (1 << UInt32(l - 1)) | (UInt32(k & 1) << UInt32(l - 2))
                info.nraw = UInt8(l - 2)
                info.rawMask = (1 << UInt32(l - 2)) - 1
            }
            let lb = UInt8(l)
            info.bucket = (lb > thr.0 ? 1 : 0) + (lb > thr.1 ? 1 : 0) + (lb > thr.2 ? 1 : 0)
            tokP[t] = info
            bucketP[t] = UInt32(Int(info.bucket) * stride)
        }
        for e in 0..<256 { etP[e] = UInt32(min(max(e - eTop + expContexts - 1, 0), expContexts - 1) * buckets * stride) }

        var br = BitReader(rawBytes)
        // Lane states, then (wide) each lane's previous bucket offset (the kernel's layout).
        let laneState = UnsafeMutablePointer<UInt32>.allocate(capacity: 2 * wideLanes)
        defer { laneState.deallocate() }
        laneState.initialize(repeating: 0, count: 2 * wideLanes)
        if !wide {
            var rsrc = try openRans(ransBytes, states: laneState, lanes: 4)
            // The four-lane loop keeps its states in registers.
            var x = (laneState[0], laneState[1], laneState[2], laneState[3])
            decodeLoop(E.self, T.self, n: n, bp: base.baseAddress!, op: output.baseAddress!, tab: UnsafeRawPointer(block),
                       c: UInt64(c), x: &x, rsrc: &rsrc, br: &br)
            (laneState[0], laneState[1], laneState[2], laneState[3]) = x
            try closeRans(rsrc, states: laneState, lanes: 4)
        } else {
            var rsrc = try openRans(ransBytes, states: laneState, lanes: wideLanes)
            var params = tenpak_cd_params(
                element_bytes: UInt32(E.width), mantissa_bits: E.mb, exponent_mask: E.expMask, exponent_top: Int32(eTop),
                exponent_stride: UInt32(buckets * m), table_log: UInt32(tableLog),
                thresholds: (UInt32(thr.0), UInt32(thr.1), UInt32(thr.2)), bucket_stride: UInt32(m),
                slots: UnsafePointer((block + offContexts()).assumingMemoryBound(to: UInt32.self)))
            var valueParams = tenpak_cd_value_params(element_bytes: UInt32(E.width), mantissa_bits: E.mb,
                                                     exponent_mask: E.expMask, value_mask: E.mask, decay: UInt64(c))
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: self.block) { symBuf in
                withUnsafePointer(to: &params) { params in
                    withUnsafePointer(to: &valueParams) { values in
                        decodeWideBlocks(E.self, T.self, n: n, bp: base.baseAddress!, op: output.baseAddress!, tab: UnsafeRawPointer(block),
                                         c: UInt64(c), kernel: vector ? params : nil,
                                         values: vector ? values : nil,
                                         x: laneState, pbs: laneState + wideLanes, rsrc: &rsrc, br: &br, syms: symBuf.baseAddress!)
                    }
                }
            }
            try closeRans(rsrc, states: laneState, lanes: wideLanes)
        }
        try br.finish()
    }

    /// Byte offset of element i's context block for a lane whose previous bucket offset is `pb`.
    @inline(__always)
    static func contextOffset<E: DeltaElement>(_: E.Type, _ i: Int, _ pb: Int, bp: UnsafeRawPointer,
                                               tab: UnsafeRawPointer) -> Int {
        let b = E.load(bp, i)
        return Int(tab.load(fromByteOffset: Int((b >> E.mb) & E.expMask) &* 4, as: UInt32.self)) &+ pb
    }

    /// rANS symbol decode for one lane in the context block at `ctx`: returns the symbol, updates
    /// `x` (not renormalised).
    @inline(__always)
    static func ransDecode<T: TableLogK>(_: T.Type, _ x: inout UInt32, _ ctx: UnsafeRawPointer) -> Int {
        let slot = x & UInt32((1 << T.tl) - 1)
        let s = Int(ctx.load(fromByteOffset: Int(slot), as: UInt8.self))
        let fs = ctx.load(fromByteOffset: (1 << T.tl) &+ s &* 4, as: UInt32.self)
        x = (fs & 0xFFFF) &* (x &>> UInt32(T.tl)) &+ slot &- (fs &>> 16)
        return s
    }

    /// Symbol of element i from lane state `x` and the lane's previous bucket offset `pb`: `x` is
    /// left decoded but not renormalised, `pb` becomes this symbol's bucket offset.
    @inline(__always)
    static func laneSym<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type, _ i: Int, _ x: inout UInt32, _ pb: inout Int,
                                                       bp: UnsafeRawPointer, tab: UnsafeRawPointer) -> UInt8 {
        let ctx = tab + offContexts() + contextOffset(E.self, i, pb, bp: bp, tab: tab)
        let s = ransDecode(T.self, &x, ctx)
        pb = Int(tab.load(fromByteOffset: offBucket() &+ s &* 4, as: UInt32.self))
        return UInt8(truncatingIfNeeded: s)
    }

    /// Bounds-checked symbol decode (end of the rANS stream).
    @inline(__always)
    static func safeSym<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type, _ i: Int, _ x: inout UInt32, _ pb: inout Int,
                                                       bp: UnsafeRawPointer, tab: UnsafeRawPointer,
                                                       rsrc: inout RansSource, out: UnsafeMutablePointer<UInt8>) {
        out.pointee = laneSym(E.self, T.self, i, &x, &pb, bp: bp, tab: tab)
        rsrc.renorm(&x)
    }

    static let block = 2048   // elements per symbol block (multiple of 4)

    static func decodeLoop<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type, n: Int, bp: UnsafeRawPointer,
                                                          op: UnsafeMutableRawPointer, tab: UnsafeRawPointer, c: UInt64,
                                                          x: inout (UInt32, UInt32, UInt32, UInt32),
                                                          rsrc: inout RansSource, br: inout BitReader) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: block) { symBuf in
            decodeBlocks(E.self, T.self, n: n, bp: bp, op: op, tab: tab, c: c, x: &x, rsrc: &rsrc, br: &br,
                         syms: symBuf.baseAddress!)
        }
    }

    /// Decodes in blocks: first the symbols of a block (rANS only), then the values (raw bits).
    static func decodeBlocks<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type, n: Int, bp: UnsafeRawPointer,
                                                            op: UnsafeMutableRawPointer, tab: UnsafeRawPointer, c: UInt64,
                                                            x: inout (UInt32, UInt32, UInt32, UInt32),
                                                            rsrc: inout RansSource, br: inout BitReader,
                                                            syms: UnsafeMutablePointer<UInt8>) {
        var lanes = LaneState(x: x)
        var i0 = 0
        while i0 < n {
            let i1 = min(n, i0 &+ block)
            symbolRun(E.self, T.self, i0, i1, bp: bp, tab: tab, lanes: &lanes, rsrc: &rsrc, syms: syms)
            if c == 0 {
                valueRun(E.self, NoDecay.self, i0, i1, bp: bp, op: op, tab: tab, c: c, br: &br, syms: syms)
            } else {
                valueRun(E.self, WithDecay.self, i0, i1, bp: bp, op: op, tab: tab, c: c, br: &br, syms: syms)
            }
            i0 = i1
        }
        x = (lanes.x0, lanes.x1, lanes.x2, lanes.x3)
    }

    /// `decodeBlocks` for a wide payload: lane k's state is x[k], its previous bucket offset pbs[k].
    static func decodeWideBlocks<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type, n: Int, bp: UnsafeRawPointer,
                                                                op: UnsafeMutableRawPointer, tab: UnsafeRawPointer, c: UInt64,
                                                                kernel: UnsafePointer<tenpak_cd_params>?,
                                                                values: UnsafePointer<tenpak_cd_value_params>?,
                                                                x: UnsafeMutablePointer<UInt32>, pbs: UnsafeMutablePointer<UInt32>,
                                                                rsrc: inout RansSource, br: inout BitReader,
                                                                syms: UnsafeMutablePointer<UInt8>) {
        var i0 = 0
        while i0 < n {
            let i1 = min(n, i0 &+ block)
            wideSymbolRun(E.self, T.self, i0, i1, bp: bp, tab: tab, kernel: kernel, x: x, pbs: pbs, rsrc: &rsrc, syms: syms)
            if c == 0 {
                valueRun(E.self, NoDecay.self, i0, i1, bp: bp, op: op, tab: tab, c: c, br: &br, syms: syms, kernel: values)
            } else {
                valueRun(E.self, WithDecay.self, i0, i1, bp: bp, op: op, tab: tab, c: c, br: &br, syms: syms, kernel: values)
            }
            i0 = i1
        }
    }

    /// Symbols of elements i0..<i1 (i0 a multiple of `block`) of a wide payload into
    /// syms[0..<i1-i0]: whole groups of 32 lanes with the AVX-512 or AVX2 kernel where one runs, else (and
    /// for what it leaves) here, then the last elements with bounds checks.
    @inline(never)
    static func wideSymbolRun<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type, _ i0: Int, _ i1: Int, bp: UnsafeRawPointer,
                                                             tab: UnsafeRawPointer, kernel: UnsafePointer<tenpak_cd_params>?,
                                                             x: UnsafeMutablePointer<UInt32>, pbs: UnsafeMutablePointer<UInt32>,
                                                             rsrc: inout RansSource, syms: UnsafeMutablePointer<UInt8>) {
        var i = i0
        if let kernel {
            var stream: UnsafePointer<UInt8>? = rsrc.ptr
            // Safe: i0 ..< i1 lies inside the base; the kernel reads at most 64 stream bytes per group
            // and only while 64 remain before `end`.
            i &+= tenpak_cd_symbols32(kernel, bp, i, i1 &- i, x, pbs, &stream, rsrc.end, syms)
            if let stream { rsrc.ptr = stream }
        }
        // Whole groups (at most 64 stream bytes each). Each lane renormalises right after its step:
        // the words still go in lane order, as if all 32 decoded first, since a step reads none.
        // Without a branch: whether a lane takes a word is data, and a branch on it mispredicts
        // (this loop decoded 30% slower with one).
        var rp = rsrc.ptr
        while i1 &- i >= wideLanes && rsrc.end - rp >= 2 * wideLanes {
            for k in 0 ..< wideLanes {
                var xk = x[k], pb = pbs[k]
                syms[i &+ k &- i0] = wideLaneSym(E.self, T.self, i &+ k, &xk, &pb, tab: tab, bp: bp)
                // Safe: at most 32 words per group and 64 bytes remain.
                let word = UInt32(UInt16(littleEndian: UnsafeRawPointer(rp).loadUnaligned(as: UInt16.self)))
                let need = xk < ransLowerBound
                rp += need ? 2 : 0
                x[k] = need ? (xk &<< 16) | word : xk
                pbs[k] = pb
            }
            i &+= wideLanes
        }
        rsrc.ptr = rp
        while i < i1 {
            let k = i & (wideLanes - 1)
            syms[i &- i0] = wideLaneSym(E.self, T.self, i, &x[k], &pbs[k], tab: tab, bp: bp)
            rsrc.renorm(&x[k])
            i &+= 1
        }
    }

    /// Symbol of element i of a wide payload from its lane's state `x` (left decoded, not
    /// renormalised) and previous bucket offset `pb` (replaced by this symbol's): the scalar form
    /// of the kernel's step.
    @inline(__always)
    static func wideLaneSym<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type, _ i: Int, _ x: inout UInt32, _ pb: inout UInt32,
                                                           tab: UnsafeRawPointer, bp: UnsafeRawPointer) -> UInt8 {
        let b = E.load(bp, i)
        let ctx = tab.load(fromByteOffset: Int((b >> E.mb) & E.expMask) &* 4, as: UInt32.self) &+ pb
        let slot = x & UInt32((1 << T.tl) - 1)
        let entry = tab.load(fromByteOffset: offContexts() &+ Int(ctx &+ slot) &* 4, as: UInt32.self)
        let s = Int(entry & 0x7F)
        x = ((entry &>> 7) & 0x1FFF) &* (x &>> UInt32(T.tl)) &+ (entry &>> 20)
        pb = tab.load(fromByteOffset: offBucket() &+ s &* 4, as: UInt32.self)
        return UInt8(truncatingIfNeeded: s)
    }

    struct LaneState {
        var x0: UInt32, x1: UInt32, x2: UInt32, x3: UInt32
        var p0 = 0, p1 = 0, p2 = 0, p3 = 0
        init(x: (UInt32, UInt32, UInt32, UInt32)) { x0 = x.0; x1 = x.1; x2 = x.2; x3 = x.3 }
    }

    /// Symbols of elements i0..<i1 into syms[0..<i1-i0]. Fast runs: a group of four reads at most
    /// 8 rANS bytes (2 per element, including the speculative 2-byte load).
    @inline(never)
    static func symbolRun<E: DeltaElement, T: TableLogK>(_: E.Type, _: T.Type, _ i0: Int, _ i1: Int, bp: UnsafeRawPointer,
                                                         tab: UnsafeRawPointer, lanes: inout LaneState,
                                                         rsrc: inout RansSource, syms: UnsafeMutablePointer<UInt8>) {
        var x0 = lanes.x0, x1 = lanes.x1, x2 = lanes.x2, x3 = lanes.x3
        var p0 = lanes.p0, p1 = lanes.p1, p2 = lanes.p2, p3 = lanes.p3
        var i = i0
        var rp = rsrc.ptr
        let rEnd = rsrc.end
        while true {
            let groups = min((i1 &- i) >> 2, (rEnd - rp) >> 3)
            if groups <= 0 { break }
            let iEnd = i &+ groups &* 4
            repeat {
                let o = syms + (i &- i0)
                o[0] = laneSym(E.self, T.self, i, &x0, &p0, bp: bp, tab: tab)
                o[1] = laneSym(E.self, T.self, i &+ 1, &x1, &p1, bp: bp, tab: tab)
                o[2] = laneSym(E.self, T.self, i &+ 2, &x2, &p2, bp: bp, tab: tab)
                o[3] = laneSym(E.self, T.self, i &+ 3, &x3, &p3, bp: bp, tab: tab)
                // Renormalise the group: lane k reads the word after those of the lanes before it
                // that renormalise. The offsets come from the four comparisons at once, so no lane
                // waits for the one before it to finish decoding.
                let n0 = x0 < ransLowerBound ? 1 : 0, n1 = x1 < ransLowerBound ? 1 : 0
                let n2 = x2 < ransLowerBound ? 1 : 0, n3 = x3 < ransLowerBound ? 1 : 0
                let q1 = n0, q2 = q1 &+ n1, q3 = q2 &+ n2
                let words = UnsafeRawPointer(rp)
                // Safe: a group reads at most 4 words and `groups` leaves 8 bytes per group.
                let w0 = UInt32(UInt16(littleEndian: words.loadUnaligned(as: UInt16.self)))
                let w1 = UInt32(UInt16(littleEndian: words.loadUnaligned(fromByteOffset: q1 &* 2, as: UInt16.self)))
                let w2 = UInt32(UInt16(littleEndian: words.loadUnaligned(fromByteOffset: q2 &* 2, as: UInt16.self)))
                let w3 = UInt32(UInt16(littleEndian: words.loadUnaligned(fromByteOffset: q3 &* 2, as: UInt16.self)))
                x0 = n0 != 0 ? (x0 &<< 16) | w0 : x0
                x1 = n1 != 0 ? (x1 &<< 16) | w1 : x1
                x2 = n2 != 0 ? (x2 &<< 16) | w2 : x2
                x3 = n3 != 0 ? (x3 &<< 16) | w3 : x3
                rp += (q3 &+ n3) &* 2
                i &+= 4
            } while i < iEnd
        }
        rsrc.ptr = rp
        while i < i1 {
            let o = syms + (i &- i0)
            switch i & 3 {
            case 0: safeSym(E.self, T.self, i, &x0, &p0, bp: bp, tab: tab, rsrc: &rsrc, out: o)
            case 1: safeSym(E.self, T.self, i, &x1, &p1, bp: bp, tab: tab, rsrc: &rsrc, out: o)
            case 2: safeSym(E.self, T.self, i, &x2, &p2, bp: bp, tab: tab, rsrc: &rsrc, out: o)
            default: safeSym(E.self, T.self, i, &x3, &p3, bp: bp, tab: tab, rsrc: &rsrc, out: o)
            }
            i &+= 1
        }
        lanes.x0 = x0; lanes.x1 = x1; lanes.x2 = x2; lanes.x3 = x3
        lanes.p0 = p0; lanes.p1 = p1; lanes.p2 = p2; lanes.p3 = p3
    }

    /// Values of elements i0..<i1 from their symbols and raw bits. Fast runs locate each
    /// element's raw bits by a running bit position instead of shifting one bit buffer: the only
    /// chain from element to element is one add, so the loads, shifts and reconstructions of
    /// neighbouring elements overlap (a shared bit buffer made every element wait for the previous
    /// one's shift and refill). A group of four reads 8 bytes at each element's byte position, so
    /// groups run while four elements' largest raw fields stay 8 bytes inside the stream; the
    /// bounds-checked reader takes the rest. (Differences written to a buffer first and added to
    /// the predictions in a vectorized pass decoded as fast alone and cost a whole get 7% more
    /// CPU: one more pass over memory.)
    @inline(never)
    static func valueRun<E: DeltaElement, P: PredictMode>(_: E.Type, _: P.Type, _ i0: Int, _ i1: Int, bp: UnsafeRawPointer,
                                                          op: UnsafeMutableRawPointer, tab: UnsafeRawPointer, c: UInt64,
                                                          br: inout BitReader, syms: UnsafeMutablePointer<UInt8>,
                                                          kernel: UnsafePointer<tenpak_cd_value_params>? = nil) {
        let tok = tab + offTok()
        @inline(__always) func put(_ i: Int, _ info: TokInfo, _ bits: UInt32) {
            let d = ((info.mag | bits) ^ info.negMask) &- info.negMask
            let b = E.load(bp, i)
            let p = P.decay ? E.predict(b, c) : b
            E.store(op, i, (p &+ d) & E.mask)
        }
        var i = i0
        let streamBytes = br.end - br.start
        if br.overrun == 0, streamBytes >= 8 {
            let raw = UnsafeRawPointer(br.start)
            var pos = br.bitPosition
            if let kernel {
                // Groups of 16 with AVX-512 (where it runs) while their raw fields stay 8 bytes inside the stream.
                var at = pos
                // Safe: elements i ..< i1 lie inside base, output and syms; the kernel reads the
                // stream only below its length.
                i &+= tenpak_cd_values16(kernel, bp + i &* E.width, op + i &* E.width, i1 &- i, syms + (i &- i0),
                                         br.start, streamBytes, &at)
                pos = at
            }
            let groupBits = 4 * (E.bits - 2)
            let lastSafeBit = (streamBytes - 8) * 8     // a load at byte pos >> 3 of 8 bytes fits
            while true {
                let groups = min((i1 &- i) >> 2, (lastSafeBit - pos) / groupBits)
                if groups <= 0 { break }
                let iEnd = i &+ groups &* 4
                repeat {
                    for j in 0..<4 {
                        let info = tok.load(fromByteOffset: Int(syms[i &+ j &- i0]) &* MemoryLayout<TokInfo>.stride, as: TokInfo.self)
                        // Safe: pos + 3 * (W - 2) < lastSafeBit, so bytes [pos >> 3, pos >> 3 + 8) are in the stream.
                        let word = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: pos &>> 3, as: UInt64.self))
                        put(i &+ j, info, UInt32(truncatingIfNeeded: word &>> UInt64(pos & 7)) & info.rawMask)
                        pos &+= Int(info.nraw)
                    }
                    i &+= 4
                } while i < iEnd
            }
            br.seek(toBit: pos)
        }
        while i < i1 {
            let info = tok.load(fromByteOffset: Int(syms[i &- i0]) &* MemoryLayout<TokInfo>.stride, as: TokInfo.self)
            put(i, info, br.get(Int(info.nraw)))
            i &+= 1
        }
    }

    // MARK: helpers

    /// Estimates the decay factor c (fixed point, 2^-32 units) on a sample and keeps it only if it
    /// shortens the deltas.
    static func chooseDecay(_ tp: UnsafeRawPointer, _ bp: UnsafeRawPointer, n: Int, layout: FloatLayout) -> UInt32 {
        switch layout {
        case .f32: return chooseDecay(ElemF32.self, tp, bp, n: n)
        case .bf16: return chooseDecay(ElemBF16.self, tp, bp, n: n)
        default: return chooseDecay(ElemF16.self, tp, bp, n: n)
        }
    }

    static func chooseDecay<E: DeltaElement>(_: E.Type, _ tp: UnsafeRawPointer, _ bp: UnsafeRawPointer, n: Int) -> UInt32 {
        let magMask = E.mask >> 1
        let mant: UInt32 = (1 << E.mb) - 1
        let step = max(1, n / decaySamples)
        // Histogram of log2(r), r = shrink / significand * 2^32, in 1/8 octave bins; the r values
        // and bins of the sample are kept for the median.
        let cap = (n + step - 1) / step
        var hist = [Int](repeating: 0, count: 256)
        var rs = [Double](repeating: 0, count: cap)
        var bins = [UInt8](repeating: 0, count: cap)
        var m = 0
        hist.withUnsafeMutableBufferPointer { h in
        rs.withUnsafeMutableBufferPointer { rp in
        bins.withUnsafeMutableBufferPointer { bnp in
            var i = 0
            while i < n {
                let b = E.load(bp, i), t = E.load(tp, i)
                i &+= step
                if (b ^ t) >> UInt32(E.bits - 1) != 0 { continue }
                let mbv = b & magMask, mt = t & magMask
                let e = mbv >> E.mb
                if e == E.expMask || mt >= mbv { continue }
                let sig = e != 0 ? (mbv & mant) | (mant + 1) : mbv
                if sig == 0 { continue }
                let r = Double(mbv - mt) / Double(sig) * 4294967296.0
                if r < 1 || r >= 2147483648.0 { continue }
                let bin = Int(log2Approx(r) * 8)
                if bin >= 0 && bin < 256 {
                    h[bin] += 1
                    rp[m] = r; bnp[m] = UInt8(bin); m += 1
                }
            }
        }}}
        var best = 0
        for k in 1..<256 where hist[k] > hist[best] { best = k }
        if hist[best] < 16 { return 0 }
        // Median of r within the peak bin.
        var sel: [Double] = []
        sel.reserveCapacity(hist[best])
        for k in 0..<m where Int(bins[k]) == best { sel.append(rs[k]) }
        sel.sort()
        let c = UInt32(min(sel[sel.count / 2].rounded(), 2147483647.0))
        // Keep c only if it shortens the total bit length of the sampled deltas by > 2%.
        let c64 = UInt64(c)
        var costWith = 0, costWithout = 0
        var i = 0
        while i < n {
            let b = E.load(bp, i), t = E.load(tp, i)
            i &+= step
            costWithout &+= E.bitLength((t &- b) & E.mask)
            costWith &+= E.bitLength((t &- E.predict(b, c64)) & E.mask)
        }
        return costWith * 50 < costWithout * 49 ? c : 0
    }

    /// Approximate log2 for r >= 1 (piecewise linear within an octave; only used for binning).
    @inline(__always) static func log2Approx(_ r: Double) -> Double {
        Double(r.exponent) + (r.significand - 1)
    }
}

/// Compile-time switch for the decay prediction (c == 0 skips it; same result).
protocol PredictMode { static var decay: Bool { get } }
enum NoDecay: PredictMode { static var decay: Bool { false } }
enum WithDecay: PredictMode { static var decay: Bool { true } }

/// Per-width constants and accessors; the hot loops are specialised per conforming type.
protocol DeltaElement {
    static var width: Int { get }
    static var bits: Int { get }
    static var mb: UInt32 { get }
    static var expMask: UInt32 { get }
    static var mask: UInt32 { get }
    /// log2 of the per-context symbol stride (>= alphabet).
    static var strideShift: Int { get }
}

extension DeltaElement {
    @inline(__always) static func load(_ p: UnsafeRawPointer, _ i: Int) -> UInt32 {
        if width == 4 {
            return UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self))
        } else {
            return UInt32(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)))
        }
    }
    @inline(__always) static func store(_ p: UnsafeMutableRawPointer, _ i: Int, _ v: UInt32) {
        if width == 4 {
            p.storeBytes(of: v.littleEndian, toByteOffset: i &* 4, as: UInt32.self)
        } else {
            p.storeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian, toByteOffset: i &* 2, as: UInt16.self)
        }
    }
    /// Decay prediction (FORMAT.md); with c == 0 the subtrahend is 0, so no special case.
    @inline(__always) static func predict(_ b: UInt32, _ c: UInt64) -> UInt32 {
        let mag = b & (mask >> 1)
        let e = mag >> mb
        let mant: UInt32 = (1 << mb) &- 1
        let sig = e != 0 ? (mag & mant) | (mant &+ 1) : mag
        let sub = UInt32(truncatingIfNeeded: (UInt64(sig) &* c &+ 0x8000_0000) >> 32)
        return e == expMask ? b : b &- sub
    }
    /// Bit length L of |d| for a W-bit two's-complement delta.
    @inline(__always) static func bitLength(_ d: UInt32) -> Int {
        let neg = d >> UInt32(bits - 1)
        let negMask = 0 &- neg
        let a = ((d ^ negMask) &- negMask) & mask
        return 32 &- a.leadingZeroBitCount
    }
}

enum ElemF32: DeltaElement {
    static var width: Int { 4 }
    static var bits: Int { 32 }
    static var mb: UInt32 { 23 }
    static var expMask: UInt32 { 0xFF }
    static var mask: UInt32 { 0xFFFF_FFFF }
    static var strideShift: Int { 7 }
}

enum ElemBF16: DeltaElement {
    static var width: Int { 2 }
    static var bits: Int { 16 }
    static var mb: UInt32 { 7 }
    static var expMask: UInt32 { 0xFF }
    static var mask: UInt32 { 0xFFFF }
    static var strideShift: Int { 6 }
}

enum ElemF16: DeltaElement {
    static var width: Int { 2 }
    static var bits: Int { 16 }
    static var mb: UInt32 { 10 }
    static var expMask: UInt32 { 0x1F }
    static var mask: UInt32 { 0xFFFF }
    static var strideShift: Int { 6 }
}

/// Encoder work buffers (one allocation per buffer, freed by `free`).
struct EncodeScratch {
    let syms: UnsafeMutablePointer<UInt16>
    let counts: UnsafeMutablePointer<UInt32>
    let freqs: UnsafeMutablePointer<UInt32>
    let enc: UnsafeMutablePointer<EncSymbol>
    let raw: UnsafeMutablePointer<UInt8>
    let rans: UnsafeMutablePointer<UInt8>
    /// Room for the rANS stream: at most one 16-bit word per element, the final states, and the
    /// slack in front that `ransEncode`'s unconditional store needs.
    static func ransCapacity(n: Int, lanes: Int) -> Int { 2 * n + 4 * lanes + 32 }

    init(n: Int, contexts: Int, stride: Int, lanes: Int) {
        syms = .allocate(capacity: n)
        counts = .allocate(capacity: contexts * stride)
        counts.initialize(repeating: 0, count: contexts * stride)
        freqs = .allocate(capacity: contexts * stride)
        enc = .allocate(capacity: contexts * stride)   // filled per present context only
        raw = .allocate(capacity: n * 4 + 16)
        rans = .allocate(capacity: Self.ransCapacity(n: n, lanes: lanes))
    }
    func free() {
        syms.deallocate(); counts.deallocate(); freqs.deallocate(); enc.deallocate()
        raw.deallocate(); rans.deallocate()
    }
}

/// pred(b) = b shrunk towards zero by round(significand * c / 2^32) units in the last place;
/// identity when c == 0 or b is Inf/NaN. Straightforward reference of `DeltaElement.predict`
/// (the hot loops use the latter; tests check the former's invariants).
struct DecayPredictor {
    let c: UInt64
    let mb: UInt32
    let magMask: UInt32
    let mantMask: UInt32
    let expMax: UInt32
    init(layout: FloatLayout, c: UInt32) {
        self.c = UInt64(c)
        mb = UInt32(layout.mantissaBits)
        magMask = UInt32((1 << (layout.codecBits - 1)) - 1)
        mantMask = UInt32((1 << layout.mantissaBits) - 1)
        expMax = UInt32((1 << layout.exponentBits) - 1)
    }
    @inline(__always) func predict(_ b: UInt32) -> UInt32 {
        if c == 0 { return b }
        let mag = b & magMask
        let e = mag >> mb
        if e == expMax { return b }
        let sig = e != 0 ? (mag & mantMask) | (mantMask &+ 1) : mag
        let sub = UInt32(truncatingIfNeeded: (UInt64(sig) &* c &+ 0x8000_0000) >> 32)
        return b &- sub
    }
}
