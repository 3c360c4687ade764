import TenPakFormat
import TenPakTestSupport
import XCTest

final class FormatTests: XCTestCase {
    func sampleID(_ seed: UInt64) -> ChunkID {
        var r = TestSupport.Random(seed: seed)
        let bytes = r.bytes(100)
        return bytes.withUnsafeBytes { ChunkID(of: $0) }
    }

    func testFrameHeaderRoundTripWithAndWithoutBase() throws {
        for base in [nil, sampleID(2)] {
            let header = FrameHeader(kind: .chunk, encoding: 3, payloadLength: 1234, rawLength: 1 << 20, elementWidth: 2,
                                     floatLayout: .bf16, id: sampleID(1), base: base, payloadChecksum: 0xDEAD_BEEF)
            let bytes = header.encoded()
            XCTAssertEqual(bytes.count, header.size)
            XCTAssertEqual(bytes.count, base == nil ? 84 : 132)
            let decoded = try bytes.withUnsafeBytes { try FrameHeader.decode($0, where: "test") }
            XCTAssertEqual(decoded, header)
        }
    }

    func testFrameHeaderDetectsEveryFlippedBit() throws {
        let header = FrameHeader(kind: .chunk, encoding: 1, payloadLength: 10, rawLength: 20, elementWidth: 4, floatLayout: .f32,
                                 id: sampleID(3), base: sampleID(4), payloadChecksum: 7)
        let bytes = header.encoded()
        for bit in 0 ..< bytes.count * 8 {
            var damaged = bytes
            damaged[bit / 8] ^= 1 << UInt8(bit % 8)
            XCTAssertThrowsError(try damaged.withUnsafeBytes { try FrameHeader.decode($0, where: "test") }, "bit \(bit)")
        }
    }

    func testTruncatedFrameHeaderThrows() {
        let bytes = FrameHeader(kind: .chunk, encoding: 0, payloadLength: 1, rawLength: 1, elementWidth: 1, floatLayout: .none,
                                id: sampleID(5), base: nil, payloadChecksum: 0).encoded()
        for n in 0 ..< bytes.count {
            XCTAssertThrowsError(try Array(bytes[0 ..< n]).withUnsafeBytes { try FrameHeader.decode($0, where: "test") })
        }
    }

    /// A bundle of frames (SPEC §19.2): parses back to its frames; every truncation, every bit
    /// flipped in a header, payload or the bundle header, and any trailing byte is refused.
    func testFrameBundleParsesAndRefusesEveryTruncationAndFlip() throws {
        let payloads: [[UInt8]] = [Array(0 ..< 200), Array(repeating: 7, count: 90)]
        var frames: [[UInt8]] = []
        for p in payloads {
            let id = p.withUnsafeBytes { ChunkID(of: $0) }
            frames.append(FrameHeader(kind: .chunk, encoding: 0, payloadLength: p.count, rawLength: p.count, elementWidth: 1,
                                      floatLayout: .none, id: id, base: nil, payloadChecksum: Hashing.xxh3_64(p)).encoded() + p)
        }
        let bundle = FrameBundle.header(count: 2) + frames[0] + frames[1]
        let entries = try bundle.withUnsafeBytes { try FrameBundle.parse($0, maxFrames: 2) }
        XCTAssertEqual(entries.map(\.header.payloadLength), [200, 90])
        XCTAssertEqual(entries[1].frameOffset, FrameBundle.headerSize + frames[0].count)
        XCTAssertEqual(Array(bundle[entries[0].payloadOffset ..< entries[0].payloadOffset + 200]), payloads[0])
        XCTAssertThrowsError(try bundle.withUnsafeBytes { try FrameBundle.parse($0, maxFrames: 1) })
        for n in 0 ..< bundle.count {
            XCTAssertThrowsError(try Array(bundle.prefix(n)).withUnsafeBytes { try FrameBundle.parse($0, maxFrames: 2) }, "prefix \(n)")
        }
        XCTAssertThrowsError(try (bundle + [0]).withUnsafeBytes { try FrameBundle.parse($0, maxFrames: 2) })
        for i in 0 ..< bundle.count {
            var damaged = bundle
            damaged[i] ^= 0x10
            XCTAssertThrowsError(try damaged.withUnsafeBytes { try FrameBundle.parse($0, maxFrames: 2) }, "byte \(i)")
        }
    }

    func testChunkIDHexRoundTrip() {
        let id = Array("x".utf8).withUnsafeBytes { ChunkID(of: $0) }
        XCTAssertEqual(id.hex.count, 96)
        XCTAssertEqual(ChunkID(hex: id.hex), id)
        XCTAssertEqual(ChunkID(hex: id.hex.uppercased()), id)
        XCTAssertNil(ChunkID(hex: String(id.hex.dropLast())))
        XCTAssertNil(ChunkID(hex: String(id.hex.dropLast()) + "g"))
    }

    func testManifestRoundTripAndRejectsDamage() throws {
        let manifest = RevisionManifest(
            model: "org/model", revision: "abc123", createdAt: 1_700_000_000, baseModel: "org/base", baseRevision: "r1",
            baseReason: "given", files: [
                .init(path: "model.safetensors", size: 30, sha256: Hashing.sha256([1, 2, 3]), kind: .safetensors,
                      chunks: [.init(rawLength: 10, id: sampleID(6)), .init(rawLength: 20, id: sampleID(7))]),
                .init(path: "empty.bin", size: 0, sha256: Hashing.sha256([]), kind: .opaque, chunks: []),
            ])
        let bytes = try manifest.encoded()
        XCTAssertEqual(try bytes.withUnsafeBytes { try RevisionManifest.decode($0) }, manifest)
        for n in stride(from: 0, to: bytes.count, by: 7) {
            XCTAssertThrowsError(try Array(bytes[0 ..< n]).withUnsafeBytes { try RevisionManifest.decode($0) })
        }
    }

    func testNamesRejectTraversalAndControlCharacters() {
        for bad in ["", "..", "a/../b", "/abs", "a//b", "a\0b", "a\nb", "x\u{7F}", "a/b/c", "a b", String(repeating: "a", count: 201)] {
            XCTAssertThrowsError(try Names.validateModel(bad), bad)
        }
        for good in ["m", "org/model-1.5_b", "Qwen2.5-7B"] { XCTAssertNoThrow(try Names.validateModel(good), good) }
        for bad in ["", "../x", "a/../b", "/etc/passwd", "a\\b", "a\u{1}b", "./a", "a/", "a//b"] {
            XCTAssertThrowsError(try Names.validatePath(bad), bad)
        }
        for good in ["model.safetensors", "sub/dir/notes.txt", ".gitattributes", "a..b"] { XCTAssertNoThrow(try Names.validatePath(good), good) }
        XCTAssertThrowsError(try Names.validateRevision(".hidden"))
        XCTAssertThrowsError(try Names.parseReference("model@"))
        XCTAssertEqual(try Names.parseReference("org/m@r1").revision, "r1")
    }

    func testSafetensorsFixturesParse() throws {
        for name in ["tiny-base/model.safetensors", "tiny-ft/model.safetensors", "tiny-sharded/model-00001-of-00002.safetensors"] {
            let bytes = try TestSupport.read(TestSupport.fixtures + "/models/" + name)
            let header = try parse(bytes)
            XCTAssertFalse(header.tensors.isEmpty)
            // Tensors tile the data region exactly.
            var cursor = 0
            for t in header.tensors {
                XCTAssertEqual(t.dataRange.lowerBound, cursor)
                XCTAssertEqual(t.dataRange.count, t.elementCount * t.dtype.size)
                cursor = t.dataRange.upperBound
            }
            XCTAssertEqual(header.dataStart + cursor, bytes.count)
        }
        let base = try parse(try TestSupport.read(TestSupport.fixtures + "/models/tiny-base/model.safetensors"))
        XCTAssertNotNil(base.tensors.first { $0.dtype.name == "BF16" })
        XCTAssertNotNil(base.tensors.first { $0.shape == [] && $0.elementCount == 1 })
        XCTAssertNotNil(base.tensors.first { $0.elementCount == 0 })
        XCTAssertFalse(base.metadata.isEmpty)
    }

    func testMalformedSafetensorsAreRejected() throws {
        let dir = TestSupport.fixtures + "/malformed"
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".safetensors") }
        XCTAssertGreaterThanOrEqual(names.count, 8)
        for name in names {
            let bytes = try TestSupport.read(dir + "/" + name)
            XCTAssertThrowsError(try parse(bytes), name)
        }
    }

    private func parse(_ bytes: [UInt8]) throws -> SafetensorsHeader {
        guard bytes.count >= 8 else { throw FormatError.invalid("short") }
        let n = try bytes.withUnsafeBytes { try SafetensorsHeader.headerLength(prefix: $0, fileSize: bytes.count) }
        return try Array(bytes[8 ..< 8 + n]).withUnsafeBytes { try SafetensorsHeader.parse(json: $0, fileSize: bytes.count) }
    }
}
