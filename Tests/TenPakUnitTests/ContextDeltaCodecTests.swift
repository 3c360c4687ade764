import TenPakTestSupport
import XCTest
@testable import TenPakCodecs
import TenPakFormat


final class ContextDeltaCodecTests: XCTestCase {
    private func bytes(_ v: [UInt32], _ layout: FloatLayout) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(v.count * layout.codecWidth)
        for x in v {
            out.append(UInt8(truncatingIfNeeded: x)); out.append(UInt8(truncatingIfNeeded: x >> 8))
            if layout.codecWidth == 4 { out.append(UInt8(truncatingIfNeeded: x >> 16)); out.append(UInt8(truncatingIfNeeded: x >> 24)) }
        }
        return out
    }

    private func special(_ layout: FloatLayout) -> [UInt32] {
        switch layout {
        case .f32: return [0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0x7F80_0001, 0xFFFF_FFFF,
                           0x0000_0001, 0x8000_0001, 0x007F_FFFF, 0x3F80_0000, 0xBF80_0000, 0x7F7F_FFFF]
        case .bf16: return [0, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFFF, 0x0001, 0x8001, 0x007F, 0x3F80, 0xBF80]
        default: return [0, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF, 0x0001, 0x8001, 0x03FF, 0x3C00, 0xBC00]
        }
    }

    private func randomBits(_ n: Int, _ layout: FloatLayout, _ rng: inout SplitMix64) -> [UInt32] {
        let sp = special(layout)
        let mask: UInt32 = layout.codecWidth == 4 ? 0xFFFF_FFFF : 0xFFFF
        return (0..<n).map { _ in
            UInt32.random(in: 0..<8, using: &rng) == 0 ? sp.randomElement(using: &rng)! : UInt32.random(in: 0...mask, using: &rng)
        }
    }

    /// Fine-tune-like target: base moved by a few ulps (plus decay towards zero), some random outliers.
    private func perturbed(_ base: [UInt32], _ layout: FloatLayout, _ rng: inout SplitMix64, spread: Int) -> [UInt32] {
        let mask: UInt32 = layout.codecWidth == 4 ? 0xFFFF_FFFF : 0xFFFF
        return base.map { b in
            let r = UInt32.random(in: 0..<100, using: &rng)
            if r == 0 { return UInt32.random(in: 0...mask, using: &rng) }
            let d = Int64.random(in: -Int64(spread)...Int64(spread), using: &rng)
            let decay = layout.codecWidth == 4 ? Int64((b & 0x7F_FFFF) >> 15) : 0
            return UInt32(truncatingIfNeeded: Int64(b) + d - decay) & mask
        }
    }

    private func roundTrip(_ target: [UInt32], _ base: [UInt32], _ layout: FloatLayout, file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let t = bytes(target, layout), b = bytes(base, layout)
        let payload = t.withUnsafeBytes { tp in b.withUnsafeBytes { bp in ContextDeltaCodec.encode(target: tp, base: bp, layout: layout) } }
        // The encoder's vector kernels (where this CPU has them, up to VectorKernels.limit) write the
        // same payload as the portable loops.
        let portable = t.withUnsafeBytes { tp in b.withUnsafeBytes { bp in
            ContextDeltaCodec._encode(target: tp, base: bp, layout: layout, tableLog: 10, decay: true, vectorKernel: false) } }
        XCTAssertEqual(portable, payload, "encoders differ (\(layout), n=\(target.count))", file: file, line: line)
        // Payloads as older stores hold them: four lanes (mode 1).
        let legacy = t.withUnsafeBytes { tp in b.withUnsafeBytes { bp in
            ContextDeltaCodec._encode(target: tp, base: bp, layout: layout, tableLog: 10, decay: true, lanes: 4) } }
        // The vector kernels (where this CPU has them) and the portable decoder, and the legacy payload.
        for (p, vector, label) in [(payload, true, "wide, vector"), (payload, false, "wide, portable"), (legacy, true, "four lanes")] {
            let out = try decode(p, b, layout, count: t.count, vector: vector)
            XCTAssertEqual(out, t, "round trip mismatch (\(layout), n=\(target.count), \(label))", file: file, line: line)
        }
        return payload.count
    }

    private func decode(_ payload: [UInt8], _ base: [UInt8], _ layout: FloatLayout, count: Int, vector: Bool) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xA5, count: count)
        try out.withUnsafeMutableBytes { op in
            try payload.withUnsafeBytes { pp in
                try base.withUnsafeBytes { bp in
                    try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op, vectorKernel: vector)
                }
            }
        }
        return out
    }

    /// Coded payloads are written with the wide lanes (mode 2), older ones (mode 1) stay readable,
    /// and the wide form costs about what the four-lane one did: its context looks 32 elements back
    /// instead of 4, and it starts with 32 states instead of 4.
    func testWideAndFourLanePayloads() throws {
        var rng = SplitMix64(seed: 11)
        for layout in [FloatLayout.f32, .bf16, .f16] {
            let n = 40_000
            let base = realisticBase(n, layout, &rng)
            let t = bytes(perturbed(base, layout, &rng, spread: layout == .f32 ? 3000 : 2), layout), b = bytes(base, layout)
            let wide = t.withUnsafeBytes { tp in b.withUnsafeBytes { bp in ContextDeltaCodec.encode(target: tp, base: bp, layout: layout) } }
            let four = t.withUnsafeBytes { tp in b.withUnsafeBytes { bp in
                ContextDeltaCodec._encode(target: tp, base: bp, layout: layout, tableLog: 10, decay: true, lanes: 4) } }
            XCTAssertEqual(wide[2], ContextDeltaCodec.modeCodedWide, "\(layout)")
            XCTAssertEqual(four[2], ContextDeltaCodec.modeCoded, "\(layout)")
            XCTAssertLessThan(Double(wide.count), Double(four.count) * 1.01 + 128, "\(layout): \(wide.count) vs \(four.count)")
            for vector in [true, false] {
                XCTAssertEqual(try decode(wide, b, layout, count: t.count, vector: vector), t, "\(layout)")
            }
            XCTAssertEqual(try decode(four, b, layout, count: t.count, vector: true), t, "\(layout)")
        }
    }

    private func realisticBase(_ n: Int, _ layout: FloatLayout, _ rng: inout SplitMix64) -> [UInt32] {
        (0..<n).map { _ in
            let f = Float(Double.random(in: -0.2...0.2, using: &rng))
            switch layout {
            case .f32: return f.bitPattern
            case .bf16: return f.bitPattern >> 16
            default:
                // Build an F16 pattern from an exponent/mantissa pair in the usual weight range.
                let e = UInt32.random(in: 5...14, using: &rng), m = UInt32.random(in: 0..<1024, using: &rng)
                return (UInt32.random(in: 0...1, using: &rng) << 15) | (e << 10) | m
            }
        }
    }

    func testLengthsAndLayouts() throws {
        var rng = SplitMix64(seed: 1)
        for layout in [FloatLayout.f32, .bf16, .f16] {
            for n in [0, 1, 2, 3, 4, 5, 7, 63, 100, 257, 1023, 2047, 2048, 2049, 4097, 6143, 33_333] {
                let base = randomBits(n, layout, &rng)
                _ = try roundTrip(randomBits(n, layout, &rng), base, layout)          // unrelated base
                _ = try roundTrip(base, base, layout)                                // identical
                _ = try roundTrip(perturbed(base, layout, &rng, spread: 3), base, layout)
                let rb = realisticBase(n, layout, &rng)
                _ = try roundTrip(perturbed(rb, layout, &rng, spread: layout == .f32 ? 2000 : 2), rb, layout)
            }
        }
    }

    /// The default run above uses the widest kernels this CPU has; the narrower ones (AVX2 on an
    /// AVX-512 CPU) must write and read the same payloads as the portable loops too, since other
    /// machines run them.
    func testEveryKernelLevelMatchesThePortableLoops() throws {
        let widest = VectorKernels.limit
        for level in VectorKernels.available where level > .portable {
            try VectorKernels.with(limit: level) {
                var rng = SplitMix64(seed: 11)
                for layout in [FloatLayout.f32, .bf16, .f16] {
                    for n in [31, 32, 33, 1000, 4097, 70_001] {
                        let base = realisticBase(n, layout, &rng)
                        _ = try roundTrip(perturbed(base, layout, &rng, spread: layout == .f32 ? 3000 : 2), base, layout)
                        _ = try roundTrip(randomBits(n, layout, &rng), base, layout)
                        // Decay towards zero: the kernels' predictor.
                        let decayed = base.map { b -> UInt32 in
                            layout == .f32 ? b &- ((b & 0x7F_FFFF) >> 12) : b &- ((b & 0x7F) >> 5)
                        }
                        _ = try roundTrip(decayed, base, layout)
                    }
                }
            }
        }
        XCTAssertEqual(VectorKernels.limit, widest, "the cap is restored")
    }

    func testOneMiBChunks() throws {
        var rng = SplitMix64(seed: 2)
        for layout in [FloatLayout.f32, .bf16, .f16] {
            let n = (1 << 20) / layout.codecWidth
            let base = realisticBase(n, layout, &rng)
            let target = perturbed(base, layout, &rng, spread: layout == .f32 ? 5000 : 1)
            let size = try roundTrip(target, base, layout)
            XCTAssertLessThan(size, 1 << 20)
            let same = try roundTrip(base, base, layout)
            XCTAssertLessThan(same, 2048, "identical chunk should cost only the header")
            let unrelated = try roundTrip(randomBits(n, layout, &rng), base, layout)
            XCTAssertLessThanOrEqual(unrelated, (1 << 20) + 16, "never much larger than raw")
        }
    }

    func testSpecialValuesEverywhere() throws {
        for layout in [FloatLayout.f32, .bf16, .f16] {
            let sp = special(layout)
            var base: [UInt32] = [], target: [UInt32] = []
            for a in sp { for b in sp { base.append(a); target.append(b) } }
            _ = try roundTrip(target, base, layout)
            _ = try roundTrip(base, target, layout)
        }
    }

    /// The decoder's fast loops stop short of the end of the rANS and raw-bit streams and hand over
    /// to bounds-checked ones mid-block, at a bit position inside a byte: heavy elements (long raw
    /// fields) bunched at the end, at the start or in the middle of a chunk move where that happens.
    func testFastLoopsHandOverAnywhere() throws {
        var rng = SplitMix64(seed: 7)
        for layout in [FloatLayout.f32, .bf16, .f16] {
            for n in [9, 64, 2051, 4099, 6150] {
                let base = realisticBase(n, layout, &rng)
                let light = perturbed(base, layout, &rng, spread: 1)
                let heavy = randomBits(n, layout, &rng)
                for k in [0, 1, 3, n / 3, n / 2, n - 17, n - 5, n - 1, n] where k >= 0 && k <= n {
                    _ = try roundTrip(Array(light[0..<k] + heavy[k...]), base, layout)   // heavy tail
                    _ = try roundTrip(Array(heavy[0..<k] + light[k...]), base, layout)   // heavy head
                    let m = min(n, k + 11)
                    _ = try roundTrip(Array(light[0..<k] + heavy[k..<m] + light[m...]), base, layout)
                }
            }
        }
    }

    /// A raw-bit stream shorter than its symbols need (its length field and its end both cut) throws;
    /// the fast value loop must stop before the end to find that out.
    func testShortRawBitsThrow() throws {
        var rng = SplitMix64(seed: 8)
        for layout in [FloatLayout.f32, .bf16] {
            let n = 5000
            let base = realisticBase(n, layout, &rng)
            let target = perturbed(base, layout, &rng, spread: layout == .f32 ? 3000 : 2)
            let t = bytes(target, layout), b = bytes(base, layout)
            let p = t.withUnsafeBytes { tp in b.withUnsafeBytes { bp in ContextDeltaCodec.encode(target: tp, base: bp, layout: layout) } }
            let fields = try XCTUnwrap(streamLengths(p), "no R, B fields found")
            var out = [UInt8](repeating: 0, count: t.count)
            // The fields found are the real ones: rewritten uncut, the payload still decodes.
            var same = Array(p[0..<fields.at])
            appendVarint(UInt64(fields.ransLength), to: &same)
            appendVarint(UInt64(fields.rawLength), to: &same)
            same += p[fields.streams...]
            try out.withUnsafeMutableBytes { op in try same.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
                try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op) } } }
            XCTAssertEqual(out, t)
            for cut in [1, 2, 7, 8, 9, 16, 100, 1000] where cut <= fields.rawLength {
                var q = Array(p[0..<fields.at])
                appendVarint(UInt64(fields.ransLength), to: &q)
                appendVarint(UInt64(fields.rawLength - cut), to: &q)
                q += p[fields.streams ..< (p.count - cut)]
                XCTAssertThrowsError(try out.withUnsafeMutableBytes { op in try q.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
                    try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op) } } }, "cut \(cut)")
            }
        }
    }

    /// Where a coded payload's `varint R, varint B` fields sit: the offset `at` whose two varints
    /// are followed by exactly R + B bytes to the end.
    private func streamLengths(_ p: [UInt8]) -> (at: Int, streams: Int, ransLength: Int, rawLength: Int)? {
        func varint(_ j: inout Int) -> Int? {
            var v = 0, shift = 0
            while j < p.count, shift < 63 {
                let byte = p[j]; j += 1
                v |= Int(byte & 0x7F) << shift
                if byte < 0x80 { return v }
                shift += 7
            }
            return nil
        }
        for at in stride(from: p.count - 2, through: 0, by: -1) {
            var j = at
            guard let r = varint(&j), let b = varint(&j), r >= 16, j + r + b == p.count else { continue }
            return (at, j, r, b)
        }
        return nil
    }

    private func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 { out.append(UInt8(truncatingIfNeeded: v) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }

    func testDecayPredictorNeverCrossesSign() {
        for layout in [FloatLayout.f32, .bf16, .f16] {
            let p = DecayPredictor(layout: layout, c: 0xFFFF_FFFF)
            let mask: UInt32 = layout.codecWidth == 4 ? 0xFFFF_FFFF : 0xFFFF
            let sign: UInt32 = layout.codecWidth == 4 ? 0x8000_0000 : 0x8000
            var rng = SplitMix64(seed: 3)
            for _ in 0..<100_000 {
                let b = UInt32.random(in: 0...mask, using: &rng)
                let q = p.predict(b)
                XCTAssertEqual(q & sign, b & sign)
                XCTAssertLessThanOrEqual(q & ~sign & mask, b & ~sign & mask)
            }
        }
    }

    func testWrongParametersThrow() throws {
        let t = bytes([1, 2, 3, 4], .f32), b = bytes([1, 2, 3, 5], .f32)
        let payload = t.withUnsafeBytes { tp in b.withUnsafeBytes { bp in ContextDeltaCodec.encode(target: tp, base: bp, layout: .f32) } }
        var out = [UInt8](repeating: 0, count: 16)
        var small = [UInt8](repeating: 0, count: 12)
        let b12 = Array(b[0..<12])
        XCTAssertThrowsError(try out.withUnsafeMutableBytes { op in try payload.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
            try ContextDeltaCodec.decode(payload: pp, base: bp, layout: .bf16, output: op) } } })
        XCTAssertThrowsError(try small.withUnsafeMutableBytes { op in try payload.withUnsafeBytes { pp in try b12.withUnsafeBytes { bp in
            try ContextDeltaCodec.decode(payload: pp, base: bp, layout: .f32, output: op) } } })
        XCTAssertThrowsError(try out.withUnsafeMutableBytes { op in try b.withUnsafeBytes { bp in
            try ContextDeltaCodec.decode(payload: UnsafeRawBufferPointer(start: nil, count: 0), base: bp, layout: .f32, output: op) } })
        XCTAssertThrowsError(try out.withUnsafeMutableBytes { op in try payload.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
            try ContextDeltaCodec.decode(payload: pp, base: bp, layout: .none, output: op) } } })
    }

    /// Truncations must throw; random corruptions must throw or decode, never crash.
    func testCorruptPayloads() throws {
        var rng = SplitMix64(seed: 4)
        var payloads: [(FloatLayout, [UInt8], [UInt8], Int)] = []
        for layout in [FloatLayout.f32, .bf16, .f16] {
            for n in [1, 5, 64, 300] {
                let base = realisticBase(n, layout, &rng)
                let target = perturbed(base, layout, &rng, spread: layout == .f32 ? 3000 : 2)
                let t = bytes(target, layout), b = bytes(base, layout)
                let p = t.withUnsafeBytes { tp in b.withUnsafeBytes { bp in ContextDeltaCodec.encode(target: tp, base: bp, layout: layout) } }
                payloads.append((layout, p, b, t.count))
            }
        }
        var thrown = 0, decoded = 0
        for (layout, p, b, count) in payloads {
            var out = [UInt8](repeating: 0, count: count)
            // Every truncation throws.
            for cut in 0..<p.count {
                let q = Array(p[0..<cut])
                XCTAssertThrowsError(try out.withUnsafeMutableBytes { op in try q.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
                    try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op) } } }, "truncated to \(cut)")
            }
            // Appended garbage throws.
            let longer = p + [0]
            XCTAssertThrowsError(try out.withUnsafeMutableBytes { op in try longer.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
                try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op) } } })
        }
        let iterations = 200_000
        for k in 0..<iterations {
            let (layout, p, b, count) = payloads[k % payloads.count]
            var q = p
            let flips = Int.random(in: 1...4, using: &rng)
            for _ in 0..<flips {
                let pos = Int.random(in: 0..<q.count, using: &rng)
                if Bool.random(using: &rng) { q[pos] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng) } else { q[pos] = UInt8.random(in: 0...255, using: &rng) }
            }
            if k % 7 == 0 { q = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
            var out = [UInt8](repeating: 0, count: count)
            do {
                try out.withUnsafeMutableBytes { op in try q.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
                    try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op) } } }
                decoded += 1
            } catch {
                thrown += 1
            }
        }
        XCTAssertEqual(thrown + decoded, iterations)
        XCTAssertGreaterThan(thrown, iterations / 2, "most corruptions should be detected")
        print("corruptions: \(thrown) threw, \(decoded) decoded without error")
    }

    /// The encoder's reciprocal division (EncSymbol) is exact for every frequency and state.
    func testReciprocalDivisionExact() {
        var rng = SplitMix64(seed: 5)
        for tableLog in 8...12 {
            let m = UInt32(1) << UInt32(tableLog)
            var freqs = [UInt32](repeating: 0, count: 4)
            for f in 1...m {
                // One symbol of frequency f at start m - f (rest filler) so every f is covered.
                freqs[0] = m - f; freqs[1] = f; freqs[2] = 0; freqs[3] = 0
                if f == m { freqs[0] = 0 }
                var syms = [EncSymbol](repeating: EncSymbol(), count: 4)
                freqs.withUnsafeBufferPointer { fp in
                    syms.withUnsafeMutableBufferPointer { sp in
                        buildEncodeSymbols(fp.baseAddress!, alphabet: 4, tableLog: tableLog, into: sp.baseAddress!)
                    }
                }
                let sym = syms[1]
                let start = freqs[0]
                let xMax = UInt64(f) << UInt64(32 - tableLog)
                XCTAssertEqual(sym.xMax, xMax)
                let hi = UInt32(min(xMax - 1, 0xFFFF_FFFF))
                var xs: [UInt32] = [ransLowerBound, hi, hi &- 1, ransLowerBound + 1]
                for _ in 0..<8 { xs.append(UInt32.random(in: ransLowerBound...hi, using: &rng)) }
                for x in xs {
                    let q = UInt32(truncatingIfNeeded: UInt64(x).multipliedFullWidth(by: sym.rcp).high)
                    let got = x &+ sym.bias &+ q &* sym.cmpl
                    let want = (x / f) * m + x % f + start
                    XCTAssertEqual(got, want, "tableLog \(tableLog) f \(f) x \(x)")
                }
            }
        }
    }

    /// Every table precision the decoder accepts round-trips, and its payloads survive corruption.
    func testAllTableLogsAndLargeCorruptions() throws {
        var rng = SplitMix64(seed: 6)
        for layout in [FloatLayout.f32, .bf16, .f16] {
            let n = 33_000
            let base = realisticBase(n, layout, &rng)
            let target = perturbed(base, layout, &rng, spread: layout == .f32 ? 3000 : 2)
            let t = bytes(target, layout), b = bytes(base, layout)
            for tableLog in 8...12 {
                for decay in [false, true] {
                    let p = t.withUnsafeBytes { tp in b.withUnsafeBytes { bp in
                        ContextDeltaCodec._encode(target: tp, base: bp, layout: layout, tableLog: tableLog, decay: decay) } }
                    var out = [UInt8](repeating: 0, count: t.count)
                    try out.withUnsafeMutableBytes { op in try p.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
                        try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op) } } }
                    XCTAssertEqual(out, t, "\(layout) tableLog \(tableLog)")
                    if decay { continue }
                    for _ in 0..<12 {
                        let cut = Int.random(in: 0..<p.count, using: &rng)
                        let q = Array(p[0..<cut])
                        XCTAssertThrowsError(try out.withUnsafeMutableBytes { op in try q.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
                            try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op) } } })
                    }
                    for _ in 0..<24 {
                        var q = p
                        for _ in 0..<Int.random(in: 1...3, using: &rng) {
                            let pos = Int.random(in: 0..<q.count, using: &rng)
                            q[pos] ^= UInt8.random(in: 1...255, using: &rng)
                        }
                        for vector in [true, false] {
                            _ = try? out.withUnsafeMutableBytes { op in try q.withUnsafeBytes { pp in try b.withUnsafeBytes { bp in
                                try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op, vectorKernel: vector) } } }
                        }
                    }
                }
            }
        }
    }

    /// The specialised predictor used by the hot loops equals the reference DecayPredictor.
    func testSpecialisedPredictorMatchesReference() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<20_000 {
            let c = UInt32.random(in: 0..<8, using: &rng) == 0 ? 0 : UInt32.random(in: 0...UInt32.max, using: &rng)
            let b32 = UInt32.random(in: 0...UInt32.max, using: &rng), b16 = b32 & 0xFFFF
            XCTAssertEqual(ElemF32.predict(b32, UInt64(c)), DecayPredictor(layout: .f32, c: c).predict(b32))
            XCTAssertEqual(ElemBF16.predict(b16, UInt64(c)), DecayPredictor(layout: .bf16, c: c).predict(b16))
            XCTAssertEqual(ElemF16.predict(b16, UInt64(c)), DecayPredictor(layout: .f16, c: c).predict(b16))
        }
    }
}
