import XCTest
@testable import TenPakCodecs
import TenPakFormat

/// Deterministic generator so failures reproduce.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

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
        var out = [UInt8](repeating: 0xA5, count: t.count)
        try out.withUnsafeMutableBytes { op in
            try payload.withUnsafeBytes { pp in
                try b.withUnsafeBytes { bp in try ContextDeltaCodec.decode(payload: pp, base: bp, layout: layout, output: op) }
            }
        }
        XCTAssertEqual(out, t, "round trip mismatch (\(layout), n=\(target.count))", file: file, line: line)
        return payload.count
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
            for n in [0, 1, 2, 3, 4, 5, 7, 63, 100, 257, 1023, 4097, 33_333] {
                let base = randomBits(n, layout, &rng)
                _ = try roundTrip(randomBits(n, layout, &rng), base, layout)          // unrelated base
                _ = try roundTrip(base, base, layout)                                // identical
                _ = try roundTrip(perturbed(base, layout, &rng, spread: 3), base, layout)
                let rb = realisticBase(n, layout, &rng)
                _ = try roundTrip(perturbed(rb, layout, &rng, spread: layout == .f32 ? 2000 : 2), rb, layout)
            }
        }
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
}
