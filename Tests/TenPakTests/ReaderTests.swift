import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore
import TenPakReader
import TenPakTestSupport
import XCTest

/// The random-access reader: every range of every fixture file comes back byte for byte, including
/// a fine-tune stored as deltas against its base.
final class ReaderTests: XCTestCase {
    /// One store with every fixture model, shared by the tests of this class (they only read it).
    nonisolated(unsafe) static var storeDirectory = ""
    static let models = ["tiny-base", "tiny-ft", "tiny-sharded"]

    override class func setUp() {
        super.setUp()
        storeDirectory = NSTemporaryDirectory() + "tenpak-reader-\(UUID().uuidString.prefix(8))"
        do {
            let store = try ModelStore.open(directory: storeDirectory, create: true)
            for model in models {
                _ = try store.put(model: model, revision: "v1", paths: [TestSupport.fixtures + "/models/" + model])
            }
        } catch {
            XCTFail("setting up the store: \(error)")
        }
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(atPath: storeDirectory)
        super.tearDown()
    }

    func makeReader(_ configuration: StoreReader.Configuration = .init()) throws -> StoreReader {
        try StoreReader(directory: ReaderTests.storeDirectory, configuration: configuration)
    }

    /// Every file of every fixture model: (model, path, original bytes).
    func everyFile() throws -> [(model: String, path: String, bytes: [UInt8])] {
        var out: [(String, String, [UInt8])] = []
        for model in ReaderTests.models {
            let dir = TestSupport.fixtures + "/models/" + model
            for path in TestSupport.files(under: dir) { out.append((model, path, try TestSupport.read(dir + "/" + path))) }
        }
        return out
    }

    func testTheFineTuneIsStoredAsDeltas() throws {
        let reader = try makeReader()
        let file = try reader.open(model: "tiny-ft", revision: "v1", path: "model.safetensors")
        let chunks = try reader.store.catalog.fileChunks(file: file.file)
        XCTAssertTrue(chunks.contains { $0.location.baseRowID != nil }, "tiny-ft should have delta chunks against tiny-base")
    }

    func testRandomAndBoundaryRangesEqualTheOriginal() throws {
        let reader = try makeReader(.init(cacheCapacity: 3 << 20))
        var random = TestSupport.Random(seed: 42)
        var checked = 0
        for (model, path, original) in try everyFile() {
            let file = try reader.open(model: model, revision: nil, path: path)
            XCTAssertEqual(file.size, original.count, path)
            XCTAssertEqual(file.sha256, Hashing.sha256(original), path)
            let size = original.count
            var ranges: [Range<Int>] = [0 ..< size, 0 ..< 0, size ..< size, (size / 2) ..< (size / 2)]
            // Across every chunk boundary, tensor boundary and the header's end.
            var cuts = file.chunkOffsets + file.tensors.flatMap { [$0.begin, $0.end] }
            if file.isSafetensors { cuts.append(8) }
            for cut in cuts where cut > 0 && cut < size {
                for (before, after) in [(1, 1), (1, 0), (0, 1), (3, 17), (4096, 4096)] {
                    ranges.append(max(0, cut - before) ..< min(size, cut + after))
                }
            }
            // Inside one chunk, at EOF, and random.
            for (i, start) in file.chunkOffsets.enumerated() {
                let end = i + 1 < file.chunkOffsets.count ? file.chunkOffsets[i + 1] : size
                if end - start > 2 { ranges.append((start + 1) ..< (end - 1)) }
            }
            for k in [1, 2, 7, 4096] where k <= size { ranges.append((size - k) ..< size) }
            for _ in 0 ..< 60 where size > 0 {
                let a = random.int(0 ..< size)
                let n = random.int(0 ..< min(size - a, [16, 5000, 1 << 20][random.int(0 ..< 3)]) + 1)
                ranges.append(a ..< a + n)
            }
            for r in ranges {
                let got = try file.read(offset: r.lowerBound, count: r.count)
                guard got[...] == original[r] else {
                    XCTFail("\(model)/\(path) bytes \(r) differ from the original")
                    return
                }
                checked += 1
            }
            // Past the end and negative: errors, never short reads.
            for (offset, count) in [(size, 1), (max(0, size - 1), 2), (size + 1, 0), (-1, 1), (0, -1), (0, size + 1)] {
                XCTAssertThrowsError(try file.read(offset: offset, count: count), "\(path) \(offset)+\(count)") { error in
                    guard case ReaderError.outOfRange = error else { return XCTFail("\(error)") }
                }
            }
        }
        XCTAssertGreaterThan(checked, 500)
    }

    func testTensorsAndRowsEqualTheOriginalSlices() throws {
        let reader = try makeReader()
        var tensorsChecked = 0
        for (model, path, original) in try everyFile() where path.hasSuffix(".safetensors") {
            let file = try reader.open(model: model, revision: "v1", path: path)
            XCTAssertTrue(file.isSafetensors)
            let expected = try original.withUnsafeBytes { raw in
                let n = try SafetensorsHeader.headerLength(prefix: UnsafeRawBufferPointer(rebasing: raw[0 ..< 8]), fileSize: original.count)
                return try SafetensorsHeader.parse(json: UnsafeRawBufferPointer(rebasing: raw[8 ..< 8 + n]), fileSize: original.count)
            }
            let header = try file.header()
            XCTAssertEqual(header.dataStart, expected.dataStart)
            XCTAssertEqual(header.tensors, expected.tensors)
            XCTAssertEqual(header.metadata, expected.metadata)
            XCTAssertEqual(file.tensors.map(\.name), expected.tensors.map(\.name))
            for t in expected.tensors {
                let record = try file.tensor(named: t.name)
                XCTAssertEqual(record.dtype, t.dtype.name)
                XCTAssertEqual(record.shape, t.shape)
                let absolute = (expected.dataStart + t.dataRange.lowerBound) ..< (expected.dataStart + t.dataRange.upperBound)
                XCTAssertEqual(record.begin ..< record.end, absolute)
                XCTAssertEqual(try file.tensorBytes(named: t.name)[...], original[absolute], "\(model)/\(path) \(t.name)")
                if let rows = t.shape.first, rows >= 3 {
                    let rowBytes = t.dataRange.count / rows
                    XCTAssertEqual(try file.tensorBytes(named: t.name, rows: 1 ..< 3)[...],
                                   original[(absolute.lowerBound + rowBytes) ..< (absolute.lowerBound + 3 * rowBytes)])
                    XCTAssertThrowsError(try file.tensorBytes(named: t.name, rows: 0 ..< rows + 1))
                }
                if t.shape.isEmpty { XCTAssertThrowsError(try file.tensorBytes(named: t.name, rows: 0 ..< 1)) }
                tensorsChecked += 1
            }
            XCTAssertThrowsError(try file.tensor(named: "no.such.tensor")) { error in
                XCTAssertEqual(error as? ReaderError, .noSuchTensor(path: path, name: "no.such.tensor"))
            }
        }
        XCTAssertGreaterThan(tensorsChecked, 60)
        let json = try reader.open(model: "tiny-ft", revision: nil, path: "config.json")
        XCTAssertThrowsError(try json.tensor(named: "x")) { XCTAssertTrue($0 is ReaderError) }
    }

    func testOnlyTheOverlappingChunksAreDecoded() throws {
        let reader = try makeReader()
        let file = try reader.open(model: "tiny-ft", revision: "v1", path: "model.safetensors")
        XCTAssertGreaterThan(file.chunkOffsets.count, 10)
        let t = try file.tensor(named: "encoder.layer.0.intermediate.dense.weight")
        _ = try file.read(offset: t.begin + 100_000, count: 4096)
        XCTAssertEqual(reader.statistics.decodes, 1)
        // The delta chunk and its base chunk, nothing else.
        XCTAssertLessThanOrEqual(reader.cache.usedBytes, 2 << 20 + 16)
        _ = try file.read(offset: t.begin + 200_000, count: 4096)
        XCTAssertEqual(reader.statistics.decodes, 1, "the second read is served from the cache")
        XCTAssertGreaterThanOrEqual(reader.statistics.cacheHits, 1)
    }

    func testSequentialReadsPrefetchTheNextChunks() throws {
        let reader = try makeReader(.init(cacheCapacity: 64 << 20, prefetchChunks: 2))
        let file = try reader.open(model: "tiny-ft", revision: "v1", path: "model.safetensors")
        let original = try TestSupport.read(TestSupport.fixtures + "/models/tiny-ft/model.safetensors")
        var got: [UInt8] = []
        var at = 0
        while at < file.size {
            let n = min(32 * 1024, file.size - at)
            got += try file.read(offset: at, count: n)
            at += n
        }
        XCTAssertEqual(got, original)
        XCTAssertGreaterThan(reader.statistics.prefetches, 0)
    }

    func testManyThreadsWithASmallCacheReadTheRightBytes() throws {
        for capacity in [0, 1_500_000, 64 << 20] {
            let reader = try makeReader(.init(cacheCapacity: capacity, prefetchChunks: 2, windowChunks: 2))
            let files = try everyFile().filter { $0.bytes.count > 10000 }
            let failures = Counter()
            DispatchQueue.concurrentPerform(iterations: 8) { thread in
                var random = TestSupport.Random(seed: UInt64(thread + 1) * 7919)
                for _ in 0 ..< 12 {
                    let (model, path, original) = files[random.int(0 ..< files.count)]
                    do {
                        let file = try reader.open(model: model, revision: nil, path: path)
                        let a = random.int(0 ..< original.count)
                        let n = random.int(0 ..< min(original.count - a, 300_000) + 1)
                        if try file.read(offset: a, count: n)[...] != original[a ..< a + n] { failures.add() }
                    } catch {
                        failures.add()
                    }
                }
            }
            XCTAssertEqual(failures.value, 0, "cache \(capacity)")
            XCTAssertLessThanOrEqual(reader.cache.usedBytes, capacity)
        }
    }

    func testUnknownNamesAndBadPathsAreClearErrors() throws {
        let reader = try makeReader()
        XCTAssertThrowsError(try reader.open(model: "nope", revision: nil, path: "x")) { error in
            guard case StoreError.notFound(.model("nope")) = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try reader.open(model: "tiny-ft", revision: "v9", path: "config.json")) { error in
            guard case StoreError.notFound(.revision(model: "tiny-ft", revision: "v9")) = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try reader.open(model: "tiny-ft", revision: nil, path: "missing.bin")) { error in
            guard case StoreError.notFound(.file(model: "tiny-ft", revision: _, path: "missing.bin")) = error else { return XCTFail("\(error)") }
        }
        for bad in ["../tiny-base/config.json", "sub/../config.json", "/etc/passwd", "a\\b"] {
            XCTAssertThrowsError(try reader.open(model: "tiny-ft", revision: nil, path: bad)) { error in
                XCTAssertTrue(error is FormatError, "\(bad): \(error)")
            }
        }
        let empty = try reader.open(model: "tiny-base", revision: "v1", path: "empty.bin")
        XCTAssertEqual(empty.size, 0)
        XCTAssertEqual(try empty.read(offset: 0, count: 0), [])
        XCTAssertThrowsError(try empty.read(offset: 0, count: 1))
    }

    func testByteRangeParsing() throws {
        XCTAssertEqual(try ByteRange(parsing: "0-99"), .closed(first: 0, last: 99))
        XCTAssertEqual(try ByteRange(parsing: "5-"), .from(first: 5))
        XCTAssertEqual(try ByteRange(parsing: "-10"), .suffix(length: 10))
        for bad in ["", "-", "a-b", "9-3", "1-2-3", "0x1-2", " - ", "+1-2", "99999999999999999999-"] {
            XCTAssertThrowsError(try ByteRange(parsing: bad), bad) { XCTAssertTrue($0 is ReaderError) }
        }
        XCTAssertEqual(ByteRange.closed(first: 0, last: 99).resolve(size: 50, clampEnd: true), 0 ..< 50)
        XCTAssertNil(ByteRange.closed(first: 0, last: 99).resolve(size: 50, clampEnd: false))
        XCTAssertNil(ByteRange.closed(first: 50, last: 60).resolve(size: 50, clampEnd: true))
        XCTAssertEqual(ByteRange.suffix(length: 80).resolve(size: 50, clampEnd: true), 0 ..< 50)
        XCTAssertNil(ByteRange.suffix(length: 0).resolve(size: 50, clampEnd: true))
        XCTAssertNil(ByteRange.from(first: 0).resolve(size: 0, clampEnd: true))
    }
}

/// A thread-safe failure counter for concurrent test loops.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
