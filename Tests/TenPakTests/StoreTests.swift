import Foundation
import TenPakChunkStore
import TenPakFormat
@testable import TenPakModelStore
import TenPakTestSupport
import XCTest

/// put/get/rm through the library on real files, a real SQLite catalog and real pack files.
final class StoreTests: XCTestCase {
    func makeStore() throws -> (ModelStore, String) {
        let dir = TestSupport.temporaryDirectory(self, "store") + "/store"
        return (try ModelStore.open(directory: dir, create: true), dir)
    }

    func assertSameTree(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let left = TestSupport.files(under: a), right = TestSupport.files(under: b)
        XCTAssertEqual(left, right, file: file, line: line)
        for path in left {
            XCTAssertEqual(try TestSupport.read(a + "/" + path), try TestSupport.read(b + "/" + path), path, file: file, line: line)
        }
    }

    func testEveryFixtureRoundTripsBitExact() throws {
        let (store, _) = try makeStore()
        for (name, dir) in [("tiny-base", "models/tiny-base"), ("tiny-ft", "models/tiny-ft"), ("tiny-sharded", "models/tiny-sharded"),
                            ("malformed", "malformed"), ("misc", "misc")] {
            let source = TestSupport.fixtures + "/" + dir
            let report = try store.put(model: name, revision: "r1", paths: [source])
            XCTAssertEqual(report.files.count, TestSupport.files(under: source).count)
            let out = TestSupport.temporaryDirectory(self, "out")
            try store.get(model: name, revision: "r1", to: out)
            try assertSameTree(source, out)
        }
    }

    func testFineTuneIsStoredAgainstItsBase() throws {
        let (store, _) = try makeStore()
        let base = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        XCTAssertNil(base.base)
        let ft = try store.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        XCTAssertEqual(ft.base?.revision.model, "tiny-base", "automatic base detection")
        let weights = try XCTUnwrap(ft.files.first { $0.path == "model.safetensors" })
        XCTAssertGreaterThan(weights.deltaChunks, 0)
        XCTAssertGreaterThan(weights.sharedChunks, 0, "identical tensors dedupe")
        XCTAssertLessThan(weights.storedBytes, base.files.first { $0.path == "model.safetensors" }!.storedBytes * 3 / 4)
        let out = TestSupport.temporaryDirectory(self, "out")
        try store.get(model: "tiny-ft", revision: nil, to: out)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-ft", out)
    }

    func testNoBaseAndExplicitBase() throws {
        let (store, _) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        let none = try store.put(model: "ft-alone", paths: [TestSupport.fixtures + "/models/tiny-ft"], base: .none)
        XCTAssertNil(none.base)
        XCTAssertEqual(none.files.reduce(0) { $0 + $1.deltaChunks }, 0)
        let explicit = try store.put(model: "ft-explicit", paths: [TestSupport.fixtures + "/models/tiny-ft"],
                                     base: .explicit(model: "tiny-base", revision: "v1"))
        XCTAssertEqual(explicit.base?.revision.revision, "v1")
        XCTAssertThrowsError(try store.put(model: "x", paths: [TestSupport.fixtures + "/models/tiny-ft"], base: .explicit(model: "nope", revision: nil)))
    }

    func testDedupWithinAcrossFilesAndAcrossModels() throws {
        let (store, _) = try makeStore()
        let first = try store.put(model: "a", revision: "1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        XCTAssertGreaterThan(first.storedBytes, 0)
        let again = try store.put(model: "b", revision: "1", paths: [TestSupport.fixtures + "/models/tiny-base"], base: .none)
        XCTAssertEqual(again.storedBytes, 0, "an identical model stores no new chunk bytes")
        XCTAssertEqual(again.files.reduce(0) { $0 + $1.freshChunks + $1.deltaChunks }, 0)
        // Content-defined chunks: a region repeated inside one file dedupes, and an edited copy
        // (bytes changed, 100 inserted near the start) shares most chunks with the original.
        var r = TestSupport.Random(seed: 17)
        let region = r.bytes(1 << 20)
        let original = r.bytes(512 << 10) + region + r.bytes(256 << 10) + region + r.bytes(300_000)
        var edited = original
        edited.insert(contentsOf: r.bytes(100), at: 5000)
        for i in 2_000_000 ..< 2_000_010 { edited[i] ^= 0xFF }
        let dir = TestSupport.temporaryDirectory(self, "cdc")
        try TestSupport.write(original, to: dir + "/original.bin")
        try TestSupport.write(edited, to: dir + "/edited.bin")
        let one = try store.put(model: "cdc", revision: "1", paths: [dir + "/original.bin"])
        XCTAssertGreaterThan(one.files[0].sharedChunks, 5, "repeats within one file dedupe")
        XCTAssertLessThan(one.storedBytes, original.count - (1 << 20) + (200 << 10))
        let two = try store.put(model: "cdc", revision: "2", paths: [dir + "/edited.bin"])
        let chunks = two.files[0].sharedChunks + two.files[0].freshChunks
        XCTAssertGreaterThan(two.files[0].sharedChunks * 10, chunks * 8, "most chunks realign after an insertion")
        XCTAssertLessThan(two.storedBytes, 1 << 20)
        for (rev, bytes) in [("1", original), ("2", edited)] {
            let out = TestSupport.temporaryDirectory(self, "out")
            try store.get(model: "cdc", revision: rev, to: out)
            XCTAssertEqual(try TestSupport.read(out + "/" + (rev == "1" ? "original.bin" : "edited.bin")), bytes)
        }
    }

    func testMalformedSafetensorsAreStoredOpaqueWithAWarning() throws {
        let (store, _) = try makeStore()
        let report = try store.put(model: "bad", paths: [TestSupport.fixtures + "/malformed"])
        XCTAssertTrue(report.files.allSatisfy { $0.kind == .opaque })
        XCTAssertEqual(Set(report.warnings.compactMap { warning -> String? in
            if case let .notSafetensors(path, _) = warning { return path }
            return nil
        }), Set(report.files.map(\.path)))
    }

    func testRemoveKeepsFineTuneReadableAndRejectsUnknowns() throws {
        let (store, _) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        _ = try store.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        try store.remove(model: "tiny-base", revision: "v1")
        XCTAssertThrowsError(try store.get(model: "tiny-base", revision: "v1", to: TestSupport.temporaryDirectory(self)))
        let out = TestSupport.temporaryDirectory(self, "out")
        try store.get(model: "tiny-ft", revision: "v1", to: out)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-ft", out)
        XCTAssertThrowsError(try store.remove(model: "tiny-base", revision: "v1"))
        XCTAssertThrowsError(try store.get(model: "nope", revision: nil, to: out))
        XCTAssertThrowsError(try store.get(model: "tiny-ft", revision: "nope", to: out))
    }

    func testRevisionsAreImmutableAndNamesValidated() throws {
        let (store, _) = try makeStore()
        _ = try store.put(model: "m", revision: "r", paths: [TestSupport.fixtures + "/misc/notes.txt"])
        XCTAssertThrowsError(try store.put(model: "m", revision: "r", paths: [TestSupport.fixtures + "/misc/notes.txt"])) { error in
            guard case StoreError.revisionExists(model: "m", revision: "r") = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try store.put(model: "../m", paths: [TestSupport.fixtures + "/misc/notes.txt"]))
        XCTAssertThrowsError(try store.put(model: "m", revision: "a/b", paths: [TestSupport.fixtures + "/misc/notes.txt"]))
        XCTAssertThrowsError(try store.put(model: "m", paths: ["/nonexistent/path"])) { error in
            guard case StoreError.notFound(.localPath("/nonexistent/path")) = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try store.revisions(model: "m").count, 1)
    }

    func testOpeningANonStoreFails() throws {
        let dir = TestSupport.temporaryDirectory(self, "plain")
        try TestSupport.write([1, 2, 3], to: dir + "/file")
        XCTAssertThrowsError(try ModelStore.open(directory: dir)) { error in
            guard case StoreError.notAStore(path: dir, _) = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try ModelStore.open(directory: dir, create: true), "refuses to make a store in a non-empty directory")
        XCTAssertThrowsError(try ModelStore.open(directory: dir + "/missing"))
    }

    func testDamagedPackIsReportedNotReturned() throws {
        let (store, dir) = try makeStore()
        _ = try store.put(model: "m", revision: "1", paths: [TestSupport.fixtures + "/models/tiny-base/model.safetensors"], base: .none)
        let packs = LocalPackDirectory(root: dir)
        for name in try packs.packNames() {
            let path = packs.path(of: name)
            var bytes = try TestSupport.read(path)
            bytes[bytes.count / 2] ^= 0x10
            try TestSupport.write(bytes, to: path)
        }
        let reopened = try ModelStore.open(directory: dir)
        let out = TestSupport.temporaryDirectory(self, "out")
        XCTAssertThrowsError(try reopened.get(model: "m", revision: "1", to: out)) { error in
            // The flipped byte is in a chunk frame: the damage names its chunk and pack.
            guard case let StoreError.corrupt(damage) = error else { return XCTFail("\(error)") }
            XCTAssertNotNil(damage.chunk, "\(damage)")
            XCTAssertNotNil(damage.pack, "\(damage)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/model.safetensors"), "no partial or wrong file is left")
    }

    func testFineTuneOfAFineTuneStaysWithinTheDepthBound() throws {
        let (store, _) = try makeStore()
        let dir = TestSupport.temporaryDirectory(self, "gen")
        var current = try TestSupport.read(TestSupport.fixtures + "/models/tiny-base/model.safetensors")
        let header = try current.withUnsafeBytes { try SafetensorsHeader.headerLength(prefix: $0, fileSize: current.count) } + 8
        var r = TestSupport.Random(seed: 42)
        for generation in 0 ..< 5 {
            try TestSupport.write(current, to: dir + "/g\(generation)/model.safetensors")
            _ = try store.put(model: "gen\(generation)", revision: "1", paths: [dir + "/g\(generation)"])
            // Next generation: nudge low mantissa bits of 1 in 3 data bytes.
            for i in stride(from: header, to: current.count, by: 3) { current[i] ^= UInt8(truncatingIfNeeded: r.next() & 3) }
        }
        for generation in 0 ..< 5 {
            let out = TestSupport.temporaryDirectory(self, "out")
            try store.get(model: "gen\(generation)", revision: "1", to: out)
            XCTAssertEqual(try TestSupport.read(out + "/model.safetensors"), try TestSupport.read(dir + "/g\(generation)/model.safetensors"))
        }
        let catalog = try SQLCatalog.sqlite(path: store.chunks.root + "/catalog.db", create: false)
        for revision in try catalog.revisions(model: nil) {
            for file in try catalog.files(revision: revision) {
                for chunk in try catalog.fileChunks(file: file) {
                    XCTAssertLessThanOrEqual(chunk.location.depth, ChunkStore.maxDeltaDepth)
                }
            }
        }
    }

    /// A put whose pack append fails (in the first window, and in the last) throws that error,
    /// commits nothing and leaves no pack behind; the store is healthy and the same put then
    /// succeeds.
    func testPutWhoseAppendFailsStoresNothing() throws {
        let (healthy, dir) = try makeStore()
        _ = try healthy.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        let local = try ChunkStore.openLocal(directory: dir)
        let packsBefore = try local.packs.packNames()
        // 40 MiB of bytes that do not compress or dedupe: content-defined chunks, three windows.
        var rng = SplitMix64(seed: 11)
        let big = (0 ..< (40 << 20) / 8).flatMap { _ in withUnsafeBytes(of: rng.next()) { Array($0) } }
        let source = TestSupport.temporaryDirectory(self, "in") + "/opaque.bin"
        try TestSupport.write(big, to: source)
        // How many appends the put makes (one per chunk frame, then the manifest), on a store of its own.
        let counting = FaultyPacks(try ChunkStore.openLocal(directory: dir + "-count", create: true).packs)
        let counted = try ChunkStore.openLocal(directory: dir + "-count")
        _ = try ModelStore(chunks: ChunkStore(packs: counting, catalog: counted.catalog, root: counted.root, locking: counted.locking))
            .put(model: "opaque", revision: "v1", paths: [source], base: .none)
        let appends = counting.appends
        XCTAssertGreaterThan(appends, 100)
        for failAt in [1, appends - 2] {
            let packs = FaultyPacks(local.packs, failAppendAt: failAt)
            let store = ModelStore(chunks: ChunkStore(packs: packs, catalog: local.catalog, root: local.root, locking: local.locking))
            XCTAssertThrowsError(try store.put(model: "opaque", revision: "v1", paths: [source], base: .none)) { error in
                XCTAssertTrue(error is FaultyPacks.Fault, "append \(failAt): \(error)")
            }
            XCTAssertGreaterThanOrEqual(packs.appends, failAt)
            XCTAssertThrowsError(try local.catalog.resolve(model: "opaque", revision: "v1"))
            XCTAssertEqual(try local.packs.packNames(), packsBefore, "append \(failAt): no pack left behind")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/tmp"), [], "append \(failAt)")
        }
        XCTAssertTrue(try Checker(store: try ModelStore.open(directory: dir), readData: true).run().isHealthy)
        _ = try healthy.put(model: "opaque", revision: "v1", paths: [source], base: .none)
        let out = TestSupport.temporaryDirectory(self, "out")
        try healthy.get(model: "opaque", revision: "v1", to: out)
        XCTAssertEqual(try TestSupport.read(out + "/opaque.bin"), big)
    }

    /// How get and the reader group frames into reads: neighbours in one pack merge, gaps and the
    /// span limit split, packs never mix, a frame is read once however often it is asked for.
    func testFrameBatchPlansFewContiguousReads() {
        let id = ChunkID(xxh: Hashing.xxh3_128([1]), sha: Hashing.sha256([1]))
        func frame(_ row: Int64, _ pack: String, _ offset: Int, _ length: Int) -> ChunkLocation {
            ChunkLocation(rowID: row, id: id, rawLength: length, pack: pack, frameOffset: offset, frameLength: length, encoding: 0, baseRowID: nil, depth: 0)
        }
        let frames = [frame(3, "a", 300, 100), frame(1, "a", 16, 100), frame(2, "a", 116, 100), frame(2, "a", 116, 100),
                      frame(4, "a", 1000, 50), frame(5, "b", 16, 10), frame(6, "a", 1050, 5000)]
        let spans = FrameBatch.plan(frames, maxGap: 100, maxSpan: 4000)
        XCTAssertEqual(spans.map { "\($0.pack)@\($0.offset)+\($0.length):\($0.frames.map(\.rowID))" },
                       ["a@16+384:[1, 2, 3]", "a@1000+50:[4]", "a@1050+5000:[6]", "b@16+10:[5]"])
        // Every frame lies inside its span.
        for span in spans {
            for f in span.frames {
                XCTAssertTrue(f.frameOffset >= span.offset && f.frameOffset + f.frameLength <= span.offset + span.length)
            }
        }
        XCTAssertEqual(FrameBatch.plan([]), [])
    }

    /// Span reads into pooled arrays give the same frames as plain reads, land in the arrays given
    /// back, and never in one still referenced elsewhere (copied on write instead).
    func testPrefetchIntoReusedSpanArrays() throws {
        let (store, _) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        _ = try store.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        let revision = try store.catalog.resolve(model: "tiny-ft", revision: "v1")
        let file = try XCTUnwrap(try store.catalog.files(revision: revision).first { $0.path == "model.safetensors" })
        let locations = try store.catalog.fileChunks(file: file).map(\.location)
        let plain = try FrameBatch.prefetch(locations, store: store.chunks)
        XCTAssertFalse(plain.locations.isEmpty, "the fine-tune's delta chunks bring their bases")
        XCTAssertTrue(plain.spans.isEmpty, "no pool, nothing to give back")
        func assertSameFrames(_ frames: PrefetchedFrames, line: UInt = #line) {
            XCTAssertEqual(frames.frames.count, plain.frames.count, line: line)
            for (row, bytes) in plain.frames { XCTAssertEqual(frames.frames[row].map(Array.init), Array(bytes), line: line) }
        }
        func addresses(_ arrays: [[UInt8]]) -> Set<UInt> { Set(arrays.map { $0.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } }) }

        let pool = SpanBuffers()
        var spans: [[UInt8]] = []
        do {
            let pooled = try FrameBatch.prefetch(locations, store: store.chunks, buffers: pool)
            assertSameFrames(pooled)
            spans = pooled.spans
        }
        let first = addresses(spans)
        pool.give(&spans)
        XCTAssertTrue(spans.isEmpty)
        var held: [[UInt8]] = []
        do {
            let reused = try FrameBatch.prefetch(locations, store: store.chunks, buffers: pool)
            assertSameFrames(reused)
            XCTAssertEqual(addresses(reused.spans), first, "read into the arrays given back")
            spans = reused.spans
            held = reused.spans
        }
        pool.give(&spans)
        let copied = try FrameBatch.prefetch(locations, store: store.chunks, buffers: pool)
        assertSameFrames(copied)
        XCTAssertTrue(addresses(copied.spans).isDisjoint(with: addresses(held)), "arrays still held are copied, not overwritten")
    }
}
