@testable import TenPakFormat
import TenPakTestSupport
import XCTest

/// StreamingSHA256 on both engines (the SHA-NI kernel where the CPU has it, swift-crypto), against
/// FIPS 180-4's vectors and against each other, one stream and two fed the same bytes at once.
/// (`extensions: true` falls back to swift-crypto on a CPU without them: then both runs test it.)
final class SHA256Tests: XCTestCase {
    func digest(_ bytes: [UInt8], extensions: Bool, splits: [Int] = []) -> Digest256 {
        var sha = StreamingSHA256(extensions: extensions)
        var from = 0
        bytes.withUnsafeBytes { all in
            for cut in splits.sorted() + [bytes.count] where cut >= from && cut <= bytes.count {
                sha.update(UnsafeRawBufferPointer(rebasing: all[from ..< cut]))
                from = cut
            }
        }
        return sha.finalize()
    }

    func testStandardVectors() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ]
        for extensions in [true, false] {
            for (message, expected) in vectors {
                XCTAssertEqual(digest(Array(message.utf8), extensions: extensions).hex, expected, "\(message) extensions: \(extensions)")
            }
            // One million "a", fed in uneven pieces.
            let million = [UInt8](repeating: 0x61, count: 1_000_000)
            XCTAssertEqual(digest(million, extensions: extensions, splits: [1, 63, 64, 65, 4097, 999_999]).hex,
                           "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        }
    }

    func testEnginesAgreeOnEveryLengthAndSplit() {
        var random = TestSupport.Random(seed: 256)
        let data = random.bytes(4096)
        for length in Array(0 ... 300) + [511, 512, 513, 1000, 4096] {
            let message = Array(data[0 ..< length])
            let expected = Hashing.sha256(message)
            let splits = (0 ..< 3).map { _ in random.int(0 ..< length + 1) }
            XCTAssertEqual(digest(message, extensions: true, splits: splits), expected, "length \(length) splits \(splits)")
            XCTAssertEqual(digest(message, extensions: false, splits: splits), expected, "length \(length) splits \(splits)")
        }
    }

    /// The put's use: a file's stream continues across chunks while each chunk's stream starts
    /// fresh, both fed the chunk's bytes in one pass. Any offsets, any lengths, either engine.
    func testTwoStreamsFedTheSameBytesEqualTwoSeparateOnes() {
        var random = TestSupport.Random(seed: 257)
        let file = random.bytes(200_000)
        for extensions in [true, false] {
            var fileStream = StreamingSHA256(extensions: extensions)
            var offset = 0
            var chunkLengths = [0, 1, 63, 64, 65, 127, 128, 129, 1000, 4095]
            while offset < file.count {
                let length = chunkLengths.isEmpty ? min(random.int(0 ..< 20_000), file.count - offset) : min(chunkLengths.removeFirst(), file.count - offset)
                let chunk = Array(file[offset ..< offset + length])
                var chunkStream = StreamingSHA256(extensions: extensions)
                chunk.withUnsafeBytes { StreamingSHA256.update(&fileStream, &chunkStream, with: $0) }
                XCTAssertEqual(chunkStream.finalize(), Hashing.sha256(chunk), "chunk at \(offset), \(length) bytes")
                offset += length
            }
            XCTAssertEqual(fileStream.finalize(), Hashing.sha256(file))
        }
    }

    /// Both streams mid-block, at different offsets, fed pieces of every small length.
    func testTwoStreamsBothMidBlock() {
        var random = TestSupport.Random(seed: 259)
        let bytes = random.bytes(50_000)
        for (skipA, skipB) in [(1, 2), (63, 5), (17, 17), (0, 40)] {
            var a = StreamingSHA256(), b = StreamingSHA256()
            a.update(Array(bytes[0 ..< skipA]))
            b.update(Array(bytes[0 ..< skipB]))
            // Each stream: its own prefix (leaving it mid-block), then the same pieces as the other.
            var at = 100, expectedA = Array(bytes[0 ..< skipA]), expectedB = Array(bytes[0 ..< skipB])
            var length = 0
            while at < bytes.count {
                let n = min(length, bytes.count - at)
                let piece = Array(bytes[at ..< at + n])
                piece.withUnsafeBytes { StreamingSHA256.update(&a, &b, with: $0) }
                expectedA += piece
                expectedB += piece
                at += n
                length = length < 200 ? length + 1 : random.int(0 ..< 5000)
            }
            XCTAssertEqual(a.finalize(), Hashing.sha256(expectedA), "skips \(skipA), \(skipB)")
            XCTAssertEqual(b.finalize(), Hashing.sha256(expectedB), "skips \(skipA), \(skipB)")
        }
    }

    func testTwoStreamsOfDifferentEnginesStillAgree() {
        var random = TestSupport.Random(seed: 258)
        let bytes = random.bytes(10_000)
        var a = StreamingSHA256(extensions: true), b = StreamingSHA256(extensions: false)
        a.update(Array(bytes[0 ..< 17]))
        bytes.withUnsafeBytes { StreamingSHA256.update(&a, &b, with: UnsafeRawBufferPointer(rebasing: $0[17...])) }
        XCTAssertEqual(a.finalize(), Hashing.sha256(bytes))
        XCTAssertEqual(b.finalize(), Hashing.sha256(Array(bytes[17...])))
    }
}
