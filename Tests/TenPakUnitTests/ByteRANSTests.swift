@testable import TenPakCodecs
import TenPakTestSupport
import XCTest

final class ByteRANSTests: XCTestCase {
    /// Bytes from a skewed distribution: order-0 entropy well under 8 bits.
    func skewed(_ n: Int, seed: UInt64) -> [UInt8] {
        var r = TestSupport.Random(seed: seed)
        return (0 ..< n).map { _ in UInt8(truncatingIfNeeded: Int(abs(r.normal()) * 40)) }
    }

    /// Decodes a payload of `lanes` lanes every way it can be: a 32-lane stream with the vector
    /// kernels (where this CPU has them, up to VectorKernels.limit) and lane by lane; each result
    /// must equal `data`.
    func assertDecodes(_ payload: [UInt8], lanes: Int, to data: [UInt8], _ label: String,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        for vector in lanes == 4 ? [true] : [true, false] {
            var out = [UInt8](repeating: 0xAA, count: data.count)
            try payload.withUnsafeBytes { p in
                try out.withUnsafeMutableBytes { try ByteRANS.decode(p, lanes: lanes, into: $0, vectorKernel: vector) }
            }
            XCTAssertEqual(out, data, "\(label), \(lanes) lanes, vector \(vector)", file: file, line: line)
        }
    }

    func testRoundTripsAndCompressesNearEntropy() throws {
        for n in [1, 3, 4, 5, 1000, 4099, 262_144] {
            let data = skewed(n, seed: UInt64(n))
            let payload = data.withUnsafeBytes { ByteRANS.encode($0) }
            try assertDecodes(payload, lanes: 32, to: data, "n = \(n)")
            let four = data.withUnsafeBytes { ByteRANS.encode($0, lanes: 4) }
            try assertDecodes(four, lanes: 4, to: data, "n = \(n)")
            if n >= 4099 {
                var counts = [Int](repeating: 0, count: 256)
                for b in data { counts[Int(b)] += 1 }
                let entropy = counts.filter { $0 > 0 }.reduce(0.0) { $0 - Double($1) * log2(Double($1) / Double(n)) } / 8
                XCTAssertLessThan(Double(payload.count), entropy * 1.01 + 400, "n = \(n): \(payload.count) bytes vs entropy \(entropy)")
            }
        }
    }

    /// Every length near the end of the branch-free fast loop, a single-symbol stream (one
    /// frequency of 2^tableLog) and a near-uniform one (a renormalisation nearly every byte).
    func testRoundTripsEdgeDistributionsAndLengths() throws {
        var r = TestSupport.Random(seed: 9)
        for n in Array(1 ... 40) + [1023, 1024, 1025, 65_536, 65_539] {
            for kind in 0 ..< 3 {
                let data: [UInt8] = switch kind {
                case 0: [UInt8](repeating: 0x3F, count: n)
                case 1: r.bytes(n)
                default: skewed(n, seed: UInt64(n) &* 7)
                }
                for lanes in [4, 32] {
                    let payload = data.withUnsafeBytes { ByteRANS.encode($0, lanes: lanes) }
                    try assertDecodes(payload, lanes: lanes, to: data, "n = \(n), kind \(kind)")
                    // The vector encoder (where this CPU has it) writes what the portable one does.
                    let portable = data.withUnsafeBytes { ByteRANS.encode($0, lanes: lanes, vectorKernel: false) }
                    XCTAssertEqual(portable, payload, "n = \(n), kind \(kind), \(lanes) lanes")
                }
            }
        }
    }

    /// Every kernel level this CPU has (AVX2 on an AVX-512 CPU too) encodes and decodes what the
    /// portable loops do.
    func testEveryKernelLevelMatchesThePortableLoops() throws {
        var r = TestSupport.Random(seed: 21)
        let inputs = [skewed(31, seed: 1), skewed(32, seed: 2), skewed(4099, seed: 3), r.bytes(65_539), skewed(262_144, seed: 4),
                      [UInt8](repeating: 7, count: 1000)]
        for level in VectorKernels.available where level > .portable {
            try VectorKernels.with(limit: level) {
                for data in inputs {
                    let payload = data.withUnsafeBytes { ByteRANS.encode($0) }
                    let portable = data.withUnsafeBytes { ByteRANS.encode($0, lanes: 32, vectorKernel: false) }
                    XCTAssertEqual(payload, portable, "\(level), n = \(data.count)")
                    try assertDecodes(payload, lanes: 32, to: data, "\(level), n = \(data.count)")
                }
            }
        }
    }

    /// Two four-lane streams decoded together equal each decoded alone, whichever runs out first.
    func testPairDecodeMatchesSingleDecode() throws {
        var r = TestSupport.Random(seed: 21)
        for (na, nb) in [(1, 1), (5, 70_000), (65_536, 65_536), (70_001, 3), (4099, 4096)] {
            let a = skewed(na, seed: UInt64(na)), b = r.bytes(nb)
            let pa = a.withUnsafeBytes { ByteRANS.encode($0, lanes: 4) }, pb = b.withUnsafeBytes { ByteRANS.encode($0, lanes: 4) }
            var oa = [UInt8](repeating: 0, count: na), ob = [UInt8](repeating: 0, count: nb)
            try pa.withUnsafeBytes { x in try pb.withUnsafeBytes { y in
                try oa.withUnsafeMutableBytes { u in try ob.withUnsafeMutableBytes { v in try ByteRANS.decodePair(x, into: u, y, into: v) } }
            } }
            XCTAssertEqual(oa, a, "\(na), \(nb)")
            XCTAssertEqual(ob, b, "\(na), \(nb)")
            // A damaged second stream fails the pair, never the process.
            var damaged = pb
            damaged[damaged.count / 2] ^= 0x10
            XCTAssertThrowsError(try pa.withUnsafeBytes { x in try damaged.withUnsafeBytes { y in
                try oa.withUnsafeMutableBytes { u in try ob.withUnsafeMutableBytes { v in try ByteRANS.decodePair(x, into: u, y, into: v) } }
            } })
        }
    }

    /// The fast loops are specialised per table precision: every precision a payload may carry
    /// decodes, alone (both lane counts) and as a pair, including pairs whose precisions differ.
    func testEveryTablePrecisionDecodesAloneAndInPairs() throws {
        let a = skewed(70_001, seed: 8), b = skewed(70_001, seed: 9)
        for logA in 8 ... 12 {
            for logB in [8, logA, 12] {
                let wide = a.withUnsafeBytes { ByteRANS.encode($0, preferredLog: logA) }
                XCTAssertEqual(wide.first.map(Int.init), logA)
                try assertDecodes(wide, lanes: 32, to: a, "tableLog \(logA) alone")
                let pa = a.withUnsafeBytes { ByteRANS.encode($0, preferredLog: logA, lanes: 4) }
                let pb = b.withUnsafeBytes { ByteRANS.encode($0, preferredLog: logB, lanes: 4) }
                try assertDecodes(pa, lanes: 4, to: a, "tableLog \(logA) alone")
                var oa = [UInt8](repeating: 0, count: a.count), ob = [UInt8](repeating: 0, count: b.count)
                try pa.withUnsafeBytes { x in try pb.withUnsafeBytes { y in
                    try oa.withUnsafeMutableBytes { u in try ob.withUnsafeMutableBytes { v in try ByteRANS.decodePair(x, into: u, y, into: v) } }
                } }
                XCTAssertEqual(oa, a, "tableLog \(logA) with \(logB)")
                XCTAssertEqual(ob, b, "tableLog \(logB) with \(logA)")
            }
        }
    }

    func testDamagedPayloadsThrowNeverCrash() {
        let data = skewed(5000, seed: 1)
        for (lanes, vector) in [(4, true), (32, true), (32, false)] {
            let payload = data.withUnsafeBytes { ByteRANS.encode($0, lanes: lanes) }
            var r = TestSupport.Random(seed: 2)
            var threw = 0
            for _ in 0 ..< 3000 {
                var damaged = payload
                if r.next() % 2 == 0 { damaged[r.int(0 ..< damaged.count)] ^= UInt8(1 << r.int(0 ..< 8)) } else { damaged = Array(damaged.prefix(r.int(0 ..< damaged.count))) }
                var out = [UInt8](repeating: 0, count: data.count)
                do {
                    try damaged.withUnsafeBytes { p in
                        try out.withUnsafeMutableBytes { try ByteRANS.decode(p, lanes: lanes, into: $0, vectorKernel: vector) }
                    }
                } catch { threw += 1 }
            }
            XCTAssertGreaterThan(threw, 1500, "\(lanes) lanes, vector \(vector)")
        }
    }
}
