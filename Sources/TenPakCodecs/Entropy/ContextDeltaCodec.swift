import TenPakFormat

// Lossless delta codec for float weight chunks against a base chunk.
//
// Per element: pred = base, optionally shrunk towards zero by a per-chunk decay factor
// (weight decay of unused parameters: ft ~= base * (1 - c)); d = target - pred as a
// two's-complement integer of the element width; |d| is split into a token
// (bit length L, sign, the bit below the leading one) coded with static-table rANS whose
// context is (base exponent, bucket of the previous element's L), plus L-2 raw bits.
// See FORMAT.md for the exact byte layout.

public enum ContextDeltaCodec {
    static let magic: UInt8 = 0xD1
    static let modeStored: UInt8 = 0
    static let modeCoded: UInt8 = 1
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

    /// Tuning entry point (benchmarks): table precision and whether to search the decay predictor.
    public static func _encode(target: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer,
                               layout: FloatLayout, tableLog preferredLog: Int, decay: Bool) -> [UInt8] {
        precondition(layout.isEntropyCodable, "layout must be f32, bf16 or f16")
        precondition(target.count == base.count, "target and base must have equal length")
        precondition(target.count % layout.codecWidth == 0, "length must be a multiple of the element width")
        let width = layout.codecWidth
        let n = target.count / width
        var sink = ByteSink(capacity: 64)
        sink.u8(magic); sink.u8(layout.rawValue)
        if n == 0 {
            sink.u8(modeStored); sink.varint(0)
            return sink.bytes
        }
        let tp = target.baseAddress!, bp = base.baseAddress!
        let bits = layout.codecBits
        let mb = layout.mantissaBits
        let expMask = UInt32((1 << layout.exponentBits) - 1)
        let mask: UInt32 = bits == 32 ? 0xFFFF_FFFF : 0xFFFF
        let alpha = alphabet(bits)
        let tableLog = tableLogFor(count: n, preferred: preferredLog)

        // 1. Decay factor.
        let c: UInt32 = decay ? chooseDecay(tp, bp, n: n, layout: layout) : 0

        // 2. Tokens and raw bits.
        let tokens = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        defer { tokens.deallocate() }
        let rawCap = n * 4 + 16
        let rawBuf = UnsafeMutablePointer<UInt8>.allocate(capacity: rawCap)
        defer { rawBuf.deallocate() }
        var bw = BitWriter(rawBuf)
        let lenHist = UnsafeMutablePointer<Int>.allocate(capacity: 33)
        lenHist.initialize(repeating: 0, count: 33)
        defer { lenHist.deallocate() }
        let expHist = UnsafeMutablePointer<Int>.allocate(capacity: 256)
        expHist.initialize(repeating: 0, count: 256)
        defer { expHist.deallocate() }
        let predictor = DecayPredictor(layout: layout, c: c)
        // Per bit length L: token base, multiplier of the sign, multiplier of the top bit.
        let tokTab = UnsafeMutablePointer<Int>.allocate(capacity: 33 * 3)
        defer { tokTab.deallocate() }
        for l in 0...32 {
            tokTab[l * 3] = l == 0 ? 0 : (l == 1 ? 1 : 3 + (l - 2) * 4)
            tokTab[l * 3 + 1] = l == 0 ? 0 : (l == 1 ? 1 : 2)
            tokTab[l * 3 + 2] = l >= 2 ? 1 : 0
        }
        for i in 0..<n {
            let b = loadElement(bp, i, width)
            let t = loadElement(tp, i, width)
            expHist[Int((b >> UInt32(mb)) & expMask)] &+= 1
            let p = predictor.predict(b)
            let d = (t &- p) & mask
            let neg = d >> UInt32(bits - 1)
            let negMask = 0 &- neg
            let a = ((d ^ negMask) &- negMask) & mask
            let l = 32 &- a.leadingZeroBitCount
            lenHist[l] &+= 1
            let sh = (l &- 2) & ~((l &- 2) >> 63)
            let top = Int((a >> UInt32(sh)) & 1)
            let tok = tokTab[l * 3] &+ Int(neg) &* tokTab[l * 3 + 1] &+ top &* tokTab[l * 3 + 2]
            bw.put(a & ((1 << UInt32(sh)) &- 1), sh)
            tokens[i] = UInt8(tok)
        }
        let rawBytes = bw.finish()

        // 3. Context parameters: exponent window top and previous-length bucket thresholds.
        let expMax = Int(expMask)
        var finite = 0
        for e in 0..<expMax { finite += expHist[e] }
        var eTop = 0
        if finite > 0 {
            let want = finite - finite / 1000
            var cum = 0
            for e in 0..<expMax { cum += expHist[e]; if cum >= want { eTop = e; break } }
        }
        var thr = [UInt8](repeating: 0, count: 3)
        do {
            var cum = 0
            var q = 0
            for l in 0...32 {
                cum += lenHist[l]
                while q < 3 && cum * 4 >= n * (q + 1) { thr[q] = UInt8(l); q += 1 }
            }
        }
        let ectx = makeExpContextTable(eTop: eTop)
        let tokLen = tokenLengths(alpha)
        var bucketOfTok = [UInt8](repeating: 0, count: 256)
        for t in 0..<alpha {
            let l = tokLen[t]
            bucketOfTok[t] = (l > thr[0] ? 1 : 0) + (l > thr[1] ? 1 : 0) + (l > thr[2] ? 1 : 0)
        }

        // 4. Contexts and histograms.
        let ctxs = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        defer { ctxs.deallocate() }
        let counts = UnsafeMutablePointer<UInt32>.allocate(capacity: contexts * 128)
        defer { counts.deallocate() }
        counts.initialize(repeating: 0, count: contexts * 128)
        ectx.withUnsafeBufferPointer { et0 in
            bucketOfTok.withUnsafeBufferPointer { bt0 in
                contextPass(bp, width: width, n: n, mb: UInt32(mb), expMask: expMask,
                            et: et0.baseAddress!, bt: bt0.baseAddress!, tokens: tokens, ctxs: ctxs, counts: counts)
            }
        }

        // 5. Normalised tables.
        let freqs = UnsafeMutablePointer<UInt32>.allocate(capacity: contexts * 128)
        defer { freqs.deallocate() }
        let enc = UnsafeMutablePointer<EncSymbol>.allocate(capacity: contexts * 128)
        defer { enc.deallocate() }
        var present: UInt64 = 0
        for cx in 0..<contexts {
            let used = normalizeCounts(counts + cx * 128, alphabet: alpha, tableLog: tableLog, into: freqs + cx * 128)
            if used > 0 { present |= 1 << UInt64(cx) }
            buildEncodeSymbols(freqs + cx * 128, alphabet: alpha, into: enc + cx * 128)
        }

        // 6. rANS, backwards, 4 interleaved states (element i uses state i & 3).
        let ransCap = 2 * n + 32
        let ransBuf = UnsafeMutablePointer<UInt8>.allocate(capacity: ransCap)
        defer { ransBuf.deallocate() }
        var rs = RansSink(ransBuf, capacity: ransCap)
        var x0 = ransLowerBound, x1 = ransLowerBound, x2 = ransLowerBound, x3 = ransLowerBound
        var i = n - 1
        while i >= 0 && (i & 3) != 3 {
            let s = enc[Int(ctxs[i]) &* 128 &+ Int(tokens[i])]
            switch i & 3 {
            case 0: rs.encode(&x0, s, tableLog)
            case 1: rs.encode(&x1, s, tableLog)
            default: rs.encode(&x2, s, tableLog)
            }
            i -= 1
        }
        while i >= 3 {
            rs.encode(&x3, enc[Int(ctxs[i]) &* 128 &+ Int(tokens[i])], tableLog)
            rs.encode(&x2, enc[Int(ctxs[i - 1]) &* 128 &+ Int(tokens[i - 1])], tableLog)
            rs.encode(&x1, enc[Int(ctxs[i - 2]) &* 128 &+ Int(tokens[i - 2])], tableLog)
            rs.encode(&x0, enc[Int(ctxs[i - 3]) &* 128 &+ Int(tokens[i - 3])], tableLog)
            i -= 4
        }
        rs.flush(x3); rs.flush(x2); rs.flush(x1); rs.flush(x0)

        // 7. Assemble.
        sink.u8(modeCoded)
        sink.varint(UInt64(n))
        sink.u8(UInt8(tableLog))
        sink.u32(c)
        sink.u8(UInt8(eTop))
        sink.u8(thr[0]); sink.u8(thr[1]); sink.u8(thr[2])
        for k in 0..<8 { sink.u8(UInt8(truncatingIfNeeded: present >> UInt64(8 * k))) }
        for cx in 0..<contexts where present & (1 << UInt64(cx)) != 0 {
            writeTable(freqs + cx * 128, alphabet: alpha, into: &sink)
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
        sink.append(rb)
        sink.append(UnsafeRawBufferPointer(start: rawBuf, count: rawBytes))
        return sink.bytes
    }

    /// Writes exactly `output.count` bytes (== target length) or throws; never reads or writes
    /// out of bounds, never traps or allocates unboundedly on corrupt/hostile payloads.
    public static func decode(payload: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer,
                              layout: FloatLayout, output: UnsafeMutableRawBufferPointer) throws(EntropyCodecError) {
        guard layout.isEntropyCodable else { throw EntropyCodecError("layout must be f32, bf16 or f16") }
        let width = layout.codecWidth
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
        guard mode == modeCoded, n > 0 else { throw EntropyCodecError("unknown mode") }
        let tableLog = Int(try src.u8())
        guard tableLog >= minTableLog && tableLog <= maxTableLog else { throw EntropyCodecError("bad table precision") }
        let c = try src.u32()
        let eTop = Int(try src.u8())
        let thr = (try src.u8(), try src.u8(), try src.u8())
        var present: UInt64 = 0
        for k in 0..<8 { present |= UInt64(try src.u8()) << UInt64(8 * k) }
        let bits = layout.codecBits
        let alpha = alphabet(bits)
        let m = 1 << tableLog

        // Decode tables: one per present context plus a neutral table for absent ones.
        let nPresent = present.nonzeroBitCount
        let tables = UnsafeMutablePointer<UInt32>.allocate(capacity: (nPresent + 1) * m)
        defer { tables.deallocate() }
        let freqs = UnsafeMutablePointer<UInt32>.allocate(capacity: 128)
        defer { freqs.deallocate() }
        var ctxOffset = [Int](repeating: nPresent * m, count: contexts)
        do {
            // Neutral table: token 0 with frequency 2^tableLog (state unchanged).
            let neutral = tables + nPresent * m
            for s in 0..<m { neutral[s] = UInt32(m - 1) << 8 | UInt32(s) << 20 }
            var k = 0
            for cx in 0..<contexts where present & (1 << UInt64(cx)) != 0 {
                try readTable(&src, alphabet: alpha, tableLog: tableLog, into: freqs)
                buildDecodeTable(freqs, alphabet: alpha, tableLog: tableLog, into: tables + k * m)
                ctxOffset[cx] = k * m
                k += 1
            }
        }
        let ransLen = try src.varint(max: payload.count)
        let rawLen = try src.varint(max: payload.count)
        let ransBytes = try src.slice(ransLen)
        let rawBytes = try src.slice(rawLen)
        guard src.remaining == 0 else { throw EntropyCodecError("trailing bytes") }

        // Per-token reconstruction data.
        let tokLen = tokenLengths(alpha)
        var tokInfo = [UInt64](repeating: 0, count: 256)   // baseMag | negMask << 32 ... packed below
        var tokRaw = [UInt8](repeating: 0, count: 256)
        var bucketOfTok = [Int](repeating: 0, count: 256)
        for t in 0..<alpha {
            let l = Int(tokLen[t])
            var mag: UInt32 = 0, neg: UInt32 = 0, nraw = 0
            if t == 1 { mag = 1 } else if t == 2 { mag = 1; neg = 1 } else if t >= 3 {
                let k = t - 3
                neg = UInt32((k >> 1) & 1)
                mag = (1 << UInt32(l - 1)) | (UInt32(k & 1) << UInt32(l - 2))
                nraw = l - 2
            }
            tokInfo[t] = UInt64(mag) | (UInt64(neg != 0 ? 0xFFFF_FFFF as UInt32 : 0) << 32)
            tokRaw[t] = UInt8(nraw)
            bucketOfTok[t] = ((UInt8(l) > thr.0 ? 1 : 0) + (UInt8(l) > thr.1 ? 1 : 0) + (UInt8(l) > thr.2 ? 1 : 0))
        }
        let ectx = makeExpContextTable(eTop: eTop)
        // Combined context offset table: [expContext*4 + bucket] -> table offset.
        var x = (UInt32(0), UInt32(0), UInt32(0), UInt32(0))
        var rsrc = try openRans(ransBytes, &x)
        var br = BitReader(rawBytes)
        let predictor = DecayPredictor(layout: layout, c: c)
        let mb = UInt32(layout.mantissaBits)
        let expMask = UInt32((1 << layout.exponentBits) - 1)
        let mask: UInt32 = bits == 32 ? 0xFFFF_FFFF : 0xFFFF
        let bp = base.baseAddress!, op = output.baseAddress!
        let tl = UInt32(tableLog)
        let slotMask = UInt32(m - 1)

        var prev = 0
        _ = prev
        ectx.withUnsafeBufferPointer { et in
        ctxOffset.withUnsafeBufferPointer { co in
        tokInfo.withUnsafeBufferPointer { ti in
        tokRaw.withUnsafeBufferPointer { tr in
        bucketOfTok.withUnsafeBufferPointer { bt in
            decodeLoop(n: n, width: width, bp: bp, op: op, mb: mb, expMask: expMask, mask: mask,
                       et: et.baseAddress!, co: co.baseAddress!, ti: ti.baseAddress!, tr: tr.baseAddress!,
                       bt: bt.baseAddress!, tables: tables, tl: tl, slotMask: slotMask, predictor: predictor,
                       x: &x, rsrc: &rsrc, br: &br, prev: &prev)
        }}}}}
        try closeRans(rsrc, x)
        try br.finish()
    }

    // MARK: hot loops

    static func contextPass(_ bp: UnsafeRawPointer, width: Int, n: Int, mb: UInt32, expMask: UInt32,
                            et: UnsafePointer<Int>, bt: UnsafePointer<UInt8>, tokens: UnsafeMutablePointer<UInt8>,
                            ctxs: UnsafeMutablePointer<UInt8>, counts: UnsafeMutablePointer<UInt32>) {
        var i = 0
        while i < n {
            let b = loadElement(bp, i, width)
            let prev = i >= 4 ? Int(tokens[i &- 4]) : 0
            let cx = et[Int((b >> mb) & expMask)] &+ Int(bt[prev])
            ctxs[i] = UInt8(truncatingIfNeeded: cx)
            let tk = Int(tokens[i])
            counts[cx &* 128 &+ tk] &+= 1
            i &+= 1
        }
    }

    @inline(__always)
    static func decodeStep(_ i: Int, _ xs: inout UInt32, width: Int, bp: UnsafeRawPointer, op: UnsafeMutableRawPointer,
                           mb: UInt32, expMask: UInt32, mask: UInt32,
                           et: UnsafePointer<Int>, co: UnsafePointer<Int>, ti: UnsafePointer<UInt64>,
                           tr: UnsafePointer<UInt8>, bt: UnsafePointer<Int>, tables: UnsafePointer<UInt32>,
                           tl: UInt32, slotMask: UInt32, predictor: DecayPredictor,
                           rsrc: inout RansSource, br: inout BitReader, prev: inout Int) {
        let b = loadElement(bp, i, width)
        let cx = et[Int((b >> mb) & expMask)] &+ bt[prev]
        let entry = tables[co[cx] &+ Int(xs & slotMask)]
        let tok = Int(entry & 0xFF)
        xs = (((entry >> 8) & 0xFFF) &+ 1) &* (xs >> tl) &+ (entry >> 20)
        rsrc.renorm(&xs)
        let info = ti[tok]
        let a = UInt32(truncatingIfNeeded: info) | br.get(Int(tr[tok]))
        let neg = UInt32(truncatingIfNeeded: info >> 32)
        let d = (a ^ neg) &- neg
        storeElement(op, i, width, (predictor.predict(b) &+ d) & mask)
        prev = tok
    }

    static func decodeLoop(n: Int, width: Int, bp: UnsafeRawPointer, op: UnsafeMutableRawPointer,
                           mb: UInt32, expMask: UInt32, mask: UInt32,
                           et: UnsafePointer<Int>, co: UnsafePointer<Int>, ti: UnsafePointer<UInt64>,
                           tr: UnsafePointer<UInt8>, bt: UnsafePointer<Int>, tables: UnsafePointer<UInt32>,
                           tl: UInt32, slotMask: UInt32, predictor: DecayPredictor,
                           x: inout (UInt32, UInt32, UInt32, UInt32), rsrc: inout RansSource,
                           br: inout BitReader, prev: inout Int) {
        var x0 = x.0, x1 = x.1, x2 = x.2, x3 = x.3
        var rs = rsrc, rd = br
        var p0 = 0, p1 = 0, p2 = 0, p3 = 0
        var i = 0
        while i &+ 4 <= n {
            decodeStep(i, &x0, width: width, bp: bp, op: op, mb: mb, expMask: expMask, mask: mask, et: et, co: co, ti: ti, tr: tr, bt: bt, tables: tables, tl: tl, slotMask: slotMask, predictor: predictor, rsrc: &rs, br: &rd, prev: &p0)
            decodeStep(i &+ 1, &x1, width: width, bp: bp, op: op, mb: mb, expMask: expMask, mask: mask, et: et, co: co, ti: ti, tr: tr, bt: bt, tables: tables, tl: tl, slotMask: slotMask, predictor: predictor, rsrc: &rs, br: &rd, prev: &p1)
            decodeStep(i &+ 2, &x2, width: width, bp: bp, op: op, mb: mb, expMask: expMask, mask: mask, et: et, co: co, ti: ti, tr: tr, bt: bt, tables: tables, tl: tl, slotMask: slotMask, predictor: predictor, rsrc: &rs, br: &rd, prev: &p2)
            decodeStep(i &+ 3, &x3, width: width, bp: bp, op: op, mb: mb, expMask: expMask, mask: mask, et: et, co: co, ti: ti, tr: tr, bt: bt, tables: tables, tl: tl, slotMask: slotMask, predictor: predictor, rsrc: &rs, br: &rd, prev: &p3)
            i &+= 4
        }
        if i < n { decodeStep(i, &x0, width: width, bp: bp, op: op, mb: mb, expMask: expMask, mask: mask, et: et, co: co, ti: ti, tr: tr, bt: bt, tables: tables, tl: tl, slotMask: slotMask, predictor: predictor, rsrc: &rs, br: &rd, prev: &p0); i += 1 }
        if i < n { decodeStep(i, &x1, width: width, bp: bp, op: op, mb: mb, expMask: expMask, mask: mask, et: et, co: co, ti: ti, tr: tr, bt: bt, tables: tables, tl: tl, slotMask: slotMask, predictor: predictor, rsrc: &rs, br: &rd, prev: &p1); i += 1 }
        if i < n { decodeStep(i, &x2, width: width, bp: bp, op: op, mb: mb, expMask: expMask, mask: mask, et: et, co: co, ti: ti, tr: tr, bt: bt, tables: tables, tl: tl, slotMask: slotMask, predictor: predictor, rsrc: &rs, br: &rd, prev: &p2); i += 1 }
        x = (x0, x1, x2, x3)
        rsrc = rs; br = rd
    }

    // MARK: helpers

    /// Exponent -> expContext * 4. Context 15 is the exponent window top (eTop and above).
    static func makeExpContextTable(eTop: Int) -> [Int] {
        var t = [Int](repeating: 0, count: 256)
        for e in 0..<256 {
            let v = min(max(e - eTop + expContexts - 1, 0), expContexts - 1)
            t[e] = v * buckets
        }
        return t
    }

    /// Bit length L of |d| for each token.
    static func tokenLengths(_ alpha: Int) -> [UInt8] {
        var r = [UInt8](repeating: 0, count: 256)
        for t in 0..<alpha { r[t] = t == 0 ? 0 : (t < 3 ? 1 : UInt8(2 + (t - 3) / 4)) }
        return r
    }

    /// Estimates the decay factor c (fixed point, 2^-32 units) on a sample and keeps it only if it
    /// shortens the deltas.
    static func chooseDecay(_ tp: UnsafeRawPointer, _ bp: UnsafeRawPointer, n: Int, layout: FloatLayout) -> UInt32 {
        let width = layout.codecWidth
        let bits = layout.codecBits
        let mb = layout.mantissaBits
        let magMask = UInt32((1 << (bits - 1)) - 1)
        let expMax = UInt32((1 << layout.exponentBits) - 1)
        let step = max(1, n / 8192)
        // Histogram of log2(r), r = shrink / significand * 2^32, in 1/8 octave bins.
        var hist = [Int](repeating: 0, count: 256)
        var i = 0
        while i < n {
            let b = loadElement(bp, i, width), t = loadElement(tp, i, width)
            i += step
            if (b ^ t) >> UInt32(bits - 1) != 0 { continue }
            let mbv = b & magMask, mt = t & magMask
            let e = mbv >> UInt32(mb)
            if e == expMax || mt >= mbv { continue }
            let sig = e != 0 ? (mbv & ((1 << UInt32(mb)) - 1)) | (1 << UInt32(mb)) : mbv
            if sig == 0 { continue }
            let r = Double(mbv - mt) / Double(sig) * 4294967296.0
            if r < 1 || r >= 2147483648.0 { continue }
            let bin = Int(log2Approx(r) * 8)
            if bin >= 0 && bin < 256 { hist[bin] += 1 }
        }
        var best = 0
        for k in 1..<256 where hist[k] > hist[best] { best = k }
        if hist[best] < 16 { return 0 }
        // Median of r within the peak bin.
        var rs: [Double] = []
        rs.reserveCapacity(hist[best])
        i = 0
        while i < n {
            let b = loadElement(bp, i, width), t = loadElement(tp, i, width)
            i += step
            if (b ^ t) >> UInt32(bits - 1) != 0 { continue }
            let mbv = b & magMask, mt = t & magMask
            let e = mbv >> UInt32(mb)
            if e == expMax || mt >= mbv { continue }
            let sig = e != 0 ? (mbv & ((1 << UInt32(mb)) - 1)) | (1 << UInt32(mb)) : mbv
            if sig == 0 { continue }
            let r = Double(mbv - mt) / Double(sig) * 4294967296.0
            if r < 1 || r >= 2147483648.0 { continue }
            if Int(log2Approx(r) * 8) == best { rs.append(r) }
        }
        rs.sort()
        let c = UInt32(min(rs[rs.count / 2].rounded(), 2147483647.0))
        // Keep c only if it shortens the total bit length of the sampled deltas by > 2%.
        let mask: UInt32 = bits == 32 ? 0xFFFF_FFFF : 0xFFFF
        let with = DecayPredictor(layout: layout, c: c)
        var costWith = 0, costWithout = 0
        i = 0
        while i < n {
            let b = loadElement(bp, i, width), t = loadElement(tp, i, width)
            i += step
            costWithout += deltaBits((t &- b) & mask, bits)
            costWith += deltaBits((t &- with.predict(b)) & mask, bits)
        }
        return costWith * 50 < costWithout * 49 ? c : 0
    }

    @inline(__always) static func deltaBits(_ d: UInt32, _ bits: Int) -> Int {
        let mask: UInt32 = bits == 32 ? 0xFFFF_FFFF : 0xFFFF
        let neg = d >> UInt32(bits - 1)
        let a = neg != 0 ? (0 &- d) & mask : d
        return 32 - a.leadingZeroBitCount
    }

    /// Approximate log2 for r >= 1 (piecewise linear within an octave; only used for binning).
    @inline(__always) static func log2Approx(_ r: Double) -> Double {
        Double(r.exponent) + (r.significand - 1)
    }
}

/// pred(b) = b shrunk towards zero by round(significand * c / 2^32) units in the last place;
/// identity when c == 0 or b is Inf/NaN.
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
