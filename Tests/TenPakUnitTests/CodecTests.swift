@testable import TenPakCodecs
import TenPakFormat
import TenPakTestSupport
import XCTest

/// Every encoding must give back exactly the bytes it was given: random bit patterns, special
/// float values, odd lengths, empty chunks, bases longer and shorter than the chunk.
final class CodecTests: XCTestCase {
    static let elements: [ElementType] = [
        .init(width: 4, layout: .f32), .init(width: 2, layout: .bf16), .init(width: 2, layout: .f16),
        .init(width: 1, layout: .none), .init(width: 8, layout: .none), .init(width: 2, layout: .none), .init(width: 4, layout: .none),
    ]

    /// Weight-like values: normal floats as bit patterns, with NaN, ±Inf, denormals and ±0 mixed in.
    static func weights(_ count: Int, element: ElementType, seed: UInt64) -> [UInt8] {
        var r = TestSupport.Random(seed: seed)
        var out = [UInt8]()
        out.reserveCapacity(count * element.width)
        let specials32: [UInt32] = [0x7FC0_0000, 0x7F80_0000, 0xFF80_0000, 0x0000_0001, 0x8000_0000, 0, 0x7FFF_FFFF, 0x807F_FFFF]
        for i in 0 ..< count {
            let f = Float(r.normal() * 0.05)
            var bits = f.bitPattern
            if i % 97 == 0 { bits = specials32[i / 97 % specials32.count] }
            if i % 1013 == 0 { bits = UInt32(truncatingIfNeeded: r.next()) }
            switch element.width {
            case 4: withUnsafeBytes(of: bits.littleEndian) { out.append(contentsOf: $0) }
            case 2:
                let half = UInt16(truncatingIfNeeded: element.layout == .f16 ? (bits >> 13) & 0xFFFF : bits >> 16)
                withUnsafeBytes(of: half.littleEndian) { out.append(contentsOf: $0) }
            case 8: withUnsafeBytes(of: Double(f).bitPattern.littleEndian) { out.append(contentsOf: $0) }
            default: out.append(UInt8(truncatingIfNeeded: bits >> 24))
            }
        }
        return out
    }

    /// A fine-tune of `base`: most elements nudged in their low bits, some unchanged.
    static func finetune(of base: [UInt8], element: ElementType, seed: UInt64) -> [UInt8] {
        var r = TestSupport.Random(seed: seed)
        var out = base
        var i = 0
        while i + element.width <= out.count {
            if r.next() % 4 != 0 {
                out[i] ^= UInt8(truncatingIfNeeded: r.next() & 0x1F)
                if element.width > 2 { out[i + 1] ^= UInt8(truncatingIfNeeded: r.next() & 0x3) }
            }
            i += element.width
        }
        return out
    }

    func roundTrip(_ raw: [UInt8], element: ElementType, base: [UInt8]?, file: StaticString = #filePath, line: UInt = #line) throws -> EncodedChunk {
        let encoded = raw.withUnsafeBytes { r in
            base.map { b in b.withUnsafeBytes { ChunkCodec.encode(r, element: element, base: $0) } } ?? ChunkCodec.encode(r, element: element)
        }
        XCTAssertLessThanOrEqual(encoded.payload.count, raw.count, "never larger than stored", file: file, line: line)
        var out = [UInt8](repeating: 0xAA, count: raw.count)
        try encoded.payload.withUnsafeBytes { p in
            try out.withUnsafeMutableBytes { o in
                if let base {
                    try base.withUnsafeBytes { try ChunkCodec.decode(p, encoding: encoded.encoding, element: element, base: $0, into: o) }
                } else {
                    try ChunkCodec.decode(p, encoding: encoded.encoding, element: element, base: nil, into: o)
                }
            }
        }
        XCTAssertEqual(out, raw, "\(encoded.encoding) width \(element.width)", file: file, line: line)
        return encoded
    }

    /// Forces one encoding (bypassing the smallest-wins choice) and checks it round-trips.
    func forced(_ encoding: Encoding, _ raw: [UInt8], element: ElementType, base: [UInt8]) throws {
        let payload: [UInt8] = raw.withUnsafeBytes { r in
            base.withUnsafeBytes { b in
                switch encoding {
                case .stored: return Array(r)
                case .zstd: return Zstd.compress(r)
                default: return ChunkCodec.encodeForced(encoding, r, element: element, base: b)
                }
            }
        }
        var out = [UInt8](repeating: 0x55, count: raw.count)
        try payload.withUnsafeBytes { p in
            try out.withUnsafeMutableBytes { o in
                try base.withUnsafeBytes { try ChunkCodec.decode(p, encoding: encoding, element: element, base: $0, into: o) }
            }
        }
        XCTAssertEqual(out, raw, "\(encoding) width \(element.width) length \(raw.count) base \(base.count)")
    }

    func testEveryEncodingRoundTripsEveryElementTypeAndOddLengths() throws {
        for (e, element) in CodecTests.elements.enumerated() {
            for count in [0, 1, 3, 1000, 4097] {
                let base = CodecTests.weights(count, element: element, seed: UInt64(e * 100 + count))
                var raw = CodecTests.finetune(of: base, element: element, seed: UInt64(count))
                // Odd byte lengths too: a trailing partial element.
                for extra in [0, 1] {
                    if extra == 1 { raw.append(0x42) }
                    for encoding in Encoding.allCases where (encoding != .contextDelta || ContextDelta.supports(element))
                        && (encoding != .floatPlanes || (element.layout != .none && element.width <= 4)) {
                        for baseLength in [base.count, base.count / 2, base.count + 7] {
                            var b = base
                            if baseLength < b.count { b = Array(b[0 ..< baseLength]) } else { b += [UInt8](repeating: 9, count: baseLength - b.count) }
                            try forced(encoding, raw, element: element, base: b)
                        }
                    }
                    _ = try roundTrip(raw, element: element, base: nil)
                    _ = try roundTrip(raw, element: element, base: base)
                }
            }
        }
    }

    func testRandomBitPatternsRoundTrip() throws {
        var r = TestSupport.Random(seed: 99)
        for round in 0 ..< 40 {
            let element = CodecTests.elements[round % CodecTests.elements.count]
            let raw = r.bytes(r.int(0 ..< 20000))
            let base = r.next() % 2 == 0 ? r.bytes(r.int(0 ..< 20000)) : raw.map { $0 ^ UInt8(truncatingIfNeeded: r.next() & 1) }
            _ = try roundTrip(raw, element: element, base: base)
            _ = try roundTrip(raw, element: element, base: nil)
        }
    }

    func testDeltaBeatsNoBaseOnAFineTuneAndNoBaseWinsOnUnrelatedData() throws {
        let element = ElementType(width: 4, layout: .f32)
        let base = CodecTests.weights(65536, element: element, seed: 1)
        let ft = CodecTests.finetune(of: base, element: element, seed: 2)
        let withBase = try roundTrip(ft, element: element, base: base)
        let alone = try roundTrip(ft, element: element, base: nil)
        XCTAssertTrue(withBase.encoding.usesBase)
        XCTAssertLessThan(withBase.payload.count, alone.payload.count * 3 / 4)
        let unrelated = CodecTests.weights(65536, element: element, seed: 3)
        let choice = try roundTrip(unrelated, element: element, base: base)
        XCTAssertFalse(choice.encoding.usesBase, "an unrelated base must not be used (chose \(choice.encoding))")
    }

    /// Floats with a base are not offered xor/sub planes (context-delta codes the same difference
    /// with a finer model); other element types still are.
    func testDeltaCandidatesPerElementType() {
        XCTAssertEqual(ChunkCodec.candidates(element: .init(width: 4, layout: .f32), hasBase: true), [.floatPlanes, .zstdPrefix, .contextDelta])
        XCTAssertEqual(ChunkCodec.candidates(element: .init(width: 2, layout: .bf16), hasBase: true), [.floatPlanes, .zstdPrefix, .contextDelta])
        XCTAssertEqual(ChunkCodec.candidates(element: .init(width: 2, layout: .none), hasBase: true), [.planes, .xorPlanes, .subPlanes, .zstdPrefix])
        XCTAssertEqual(ChunkCodec.candidates(element: .bytes, hasBase: true), [.zstd, .xorPlanes, .zstdPrefix])
        XCTAssertEqual(ChunkCodec.candidates(element: .init(width: 4, layout: .f32), hasBase: false), [.floatPlanes])
    }

    /// zstd-prefix is ranked beside context-delta only where the sample lies mostly in runs
    /// identical to the base: there it still wins (a reset row), elsewhere it is not tried.
    func testZstdPrefixRankedOnlyWhereRunsMatchTheBase() throws {
        let element = ElementType(width: 4, layout: .f32)
        let base = CodecTests.weights(131_072, element: element, seed: 31)
        let ft = CodecTests.finetune(of: base, element: element, seed: 32)
        XCTAssertEqual(ChunkCodec.identicalRunShare(base, base, width: 4), 1)
        XCTAssertLessThan(ChunkCodec.identicalRunShare(ft, base, width: 4), ChunkCodec.zstdPrefixMinIdenticalShare)
        XCTAssertEqual(ChunkCodec.identicalRunShare(base, Array(base[0 ..< base.count / 2]), width: 4), 0.5, "past the base's end counts as different")
        let all: [Encoding] = [.floatPlanes, .zstdPrefix, .contextDelta]
        func ranked(_ raw: [UInt8]) -> [Encoding] {
            raw.withUnsafeBytes { r in base.withUnsafeBytes { b in
                let (sampleRaw, sampleBase) = ChunkCodec.sample(r, base: b, width: 4)
                return ChunkCodec.rankedCandidates(all, sampleRaw: sampleRaw, sampleBase: sampleBase, width: 4)
            } }
        }
        XCTAssertEqual(ranked(ft), [.floatPlanes, .contextDelta], "a fine-tune's sample does not run zstd-prefix")
        XCTAssertEqual(try roundTrip(ft, element: element, base: base).encoding, .contextDelta)

        // Equal to the base but for 64 KiB set to zero, in the middle slice the sample reads.
        var reset = base
        let middle = reset.count / 2
        for i in middle ..< middle + 65536 { reset[i] = 0 }
        XCTAssertGreaterThanOrEqual(ChunkCodec.identicalRunShare(reset, base, width: 4), ChunkCodec.zstdPrefixMinIdenticalShare)
        XCTAssertEqual(ranked(reset), all)
        XCTAssertEqual(try roundTrip(reset, element: element, base: base).encoding, .zstdPrefix)
    }

    func testIdenticalToBaseIsTiny() throws {
        let element = ElementType(width: 2, layout: .bf16)
        let base = CodecTests.weights(100_000, element: element, seed: 5)
        let encoded = try roundTrip(base, element: element, base: base)
        XCTAssertLessThan(encoded.payload.count, 1000)
    }

    func testDamagedPayloadsThrowOrDecodeDifferentlyButNeverCrash() throws {
        let element = ElementType(width: 4, layout: .f32)
        let base = CodecTests.weights(4096, element: element, seed: 7)
        let raw = CodecTests.finetune(of: base, element: element, seed: 8)
        var r = TestSupport.Random(seed: 11)
        for encoding in Encoding.allCases where encoding != .stored {
            let payload: [UInt8] = raw.withUnsafeBytes { rr in
                base.withUnsafeBytes { ChunkCodec.encodeForced(encoding, rr, element: element, base: $0) }
            }
            for _ in 0 ..< 300 {
                var damaged = payload
                switch r.next() % 3 {
                case 0: damaged[r.int(0 ..< damaged.count)] ^= UInt8(truncatingIfNeeded: r.next() | 1)
                case 1: damaged = Array(damaged[0 ..< r.int(0 ..< damaged.count)])
                default: damaged = r.bytes(r.int(0 ..< 200))
                }
                var out = [UInt8](repeating: 0, count: raw.count)
                // Either an error or some output; the frame's checksums catch the latter in the store.
                _ = try? damaged.withUnsafeBytes { p in
                    try out.withUnsafeMutableBytes { o in
                        try base.withUnsafeBytes { try ChunkCodec.decode(p, encoding: encoding, element: element, base: $0, into: o) }
                    }
                }
            }
        }
    }

    /// A PlaneSet codes a plane only where that pays: the exponent plane of weights with rANS, the
    /// near-random mantissa planes stored (coding one would save under 2% of it and cost a rANS
    /// pass on every read), and a long run with zstd.
    func testPlaneSetCodesOnlyPlanesWhereCodingPays() throws {
        // A 1 MiB F32 chunk: at this length the top mantissa plane's rANS estimate, table
        // included, is under its size (about 99.8%), so only the near-random rule stores it.
        let n = 256 * 1024
        var raw = Self.weights(n, element: .init(width: 4, layout: .f32), seed: 21)
        // Sign-rotated as float-planes does, so plane 3 is the exponent byte.
        raw.withUnsafeMutableBytes { SignRotation.apply($0, width: 4) }
        let payload = raw.withUnsafeBytes { PlaneSet.encode($0, width: 4, level: 3) }
        var modes: [UInt8] = []
        var at = 1
        for _ in 0 ..< 4 {
            modes.append(payload[at])
            let length = Int(payload[at + 1]) | Int(payload[at + 2]) << 8 | Int(payload[at + 3]) << 16 | Int(payload[at + 4]) << 24
            at += 5 + length
        }
        XCTAssertEqual(at, payload.count)
        XCTAssertEqual(modes, [0, 0, 0, 3], "mantissa planes stored, the exponent plane rANS-coded (32 lanes)")
        var back = [UInt8](repeating: 0, count: raw.count)
        try back.withUnsafeMutableBytes { o in try payload.withUnsafeBytes { try PlaneSet.decode($0, width: 4, into: o) } }
        XCTAssertEqual(back, raw)

        // The same plane set as older stores hold it: the exponent plane in mode 2 (four lanes).
        var split = [UInt8](repeating: 0, count: raw.count)
        raw.withUnsafeBytes { r in split.withUnsafeMutableBytes { BytePlanes.split(r, width: 4, into: $0) } }
        let fourLanes = split[3 * n ..< 4 * n].withUnsafeBytes { ByteRANS.encode($0, lanes: 4) }
        var start = 1
        for _ in 0 ..< 3 {
            start += 5 + (Int(payload[start + 1]) | Int(payload[start + 2]) << 8 | Int(payload[start + 3]) << 16 | Int(payload[start + 4]) << 24)
        }
        var older = Array(payload[0 ..< start]) + [2]
        withUnsafeBytes(of: UInt32(fourLanes.count).littleEndian) { older += $0 }
        older += fourLanes
        back = [UInt8](repeating: 0, count: raw.count)
        try back.withUnsafeMutableBytes { o in try older.withUnsafeBytes { try PlaneSet.decode($0, width: 4, into: o) } }
        XCTAssertEqual(back, raw, "a mode-2 plane decodes")

        let runs = [UInt8](repeating: 7, count: 8192) + (0 ..< 8192).map { UInt8(truncatingIfNeeded: $0 % 3) }
        let packed = runs.withUnsafeBytes { PlaneSet.encode($0, width: 1, level: 3) }
        XCTAssertEqual(packed[1], 1, "repeats go to zstd")
    }

    /// The vectorized split and join (16 elements at a time) against the definition, element by
    /// element, on lengths around the vector step and with tail bytes.
    func testBytePlanesMatchTheirDefinition() {
        var r = TestSupport.Random(seed: 11)
        for width in [2, 4, 8] {
            for elements in [0, 1, 15, 16, 17, 31, 32, 33, 100, 4096 + 5] {
                for tail in [0, 1, width - 1] where tail < width {
                    let count = elements * width + tail
                    let a = r.bytes(count)
                    var expected = [UInt8](repeating: 0, count: count)
                    for i in 0 ..< elements { for k in 0 ..< width { expected[k * elements + i] = a[width * i + k] } }
                    for t in elements * width ..< count { expected[t] = a[t] }
                    var planes = [UInt8](repeating: 0, count: count), back = planes
                    planes.withUnsafeMutableBytes { p in a.withUnsafeBytes { BytePlanes.split($0, width: width, into: p) } }
                    XCTAssertEqual(planes, expected, "split width \(width), \(elements) elements + \(tail)")
                    back.withUnsafeMutableBytes { o in planes.withUnsafeBytes { BytePlanes.join($0, width: width, into: o) } }
                    XCTAssertEqual(back, a, "join width \(width), \(elements) elements + \(tail)")
                    // The fused join of float-planes: the join, then the sign rotation undone.
                    var rotated = a
                    rotated.withUnsafeMutableBytes { SignRotation.undo($0, width: width) }
                    back.withUnsafeMutableBytes { o in planes.withUnsafeBytes { BytePlanes.join($0, width: width, into: o, rotatingRight: true) } }
                    XCTAssertEqual(back, width == 8 ? a : rotated, "rotating join width \(width), \(elements) elements + \(tail)")
                }
            }
        }
    }

    func testBytePlanesAndDeltasInvert() {
        var r = TestSupport.Random(seed: 3)
        for width in [1, 2, 4, 8] {
            for count in [0, 1, 7, 64, 1001] {
                let a = r.bytes(count), b = r.bytes(count)
                var planes = [UInt8](repeating: 0, count: count), back = planes, delta = planes, restored = planes
                planes.withUnsafeMutableBytes { p in a.withUnsafeBytes { BytePlanes.split($0, width: width, into: p) } }
                back.withUnsafeMutableBytes { o in planes.withUnsafeBytes { BytePlanes.join($0, width: width, into: o) } }
                XCTAssertEqual(back, a)
                delta.withUnsafeMutableBytes { d in a.withUnsafeBytes { x in b.withUnsafeBytes { BitDelta.subtract(x, $0, width: width, into: d) } } }
                restored.withUnsafeMutableBytes { o in delta.withUnsafeBytes { d in b.withUnsafeBytes { BitDelta.add(d, $0, width: width, into: o) } } }
                XCTAssertEqual(restored, a)
            }
        }
    }
}
