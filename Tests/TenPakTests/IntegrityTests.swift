import Foundation
import TenPakChunkStore
import TenPakFormat
@testable import TenPakModelStore
import TenPakTestSupport
import XCTest

/// fsck, fsck --repair and gc on real stores, with damage injected into real pack and catalog files.
final class IntegrityTests: XCTestCase {
    func makeStore() throws -> (ModelStore, String) {
        let dir = TestSupport.temporaryDirectory(self, "integrity") + "/store"
        let store = try ModelStore.open(directory: dir, create: true)
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        _ = try store.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        return (store, dir)
    }

    func packPaths(_ dir: String) throws -> [String] {
        let packs = LocalPackDirectory(root: dir)
        return try packs.packNames().map { packs.path(of: $0) }
    }

    func assertReadsBack(_ store: ModelStore, _ model: String, _ fixture: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let out = TestSupport.temporaryDirectory(self, "out")
        try store.get(model: model, revision: nil, to: out)
        for path in TestSupport.files(under: TestSupport.fixtures + "/" + fixture) {
            XCTAssertEqual(try TestSupport.read(out + "/" + path), try TestSupport.read(TestSupport.fixtures + "/" + fixture + "/" + path),
                           path, file: file, line: line)
        }
    }

    func testHealthyStoreChecksClean() throws {
        let (store, _) = try makeStore()
        for readData in [false, true] {
            let report = try Checker(store: store, readData: readData).run()
            XCTAssertTrue(report.isHealthy, "\(report.problems)")
            XCTAssertEqual(report.revisions, 2)
            XCTAssertGreaterThan(report.chunks, 20)
        }
    }

    /// Flip one bit at many places in the packs: fsck --read-data reports damage and names the
    /// revision and file; get refuses with an error; no wrong byte is returned.
    func testBitFlipsInPacksAreReportedAndNeverReturned() throws {
        let (_, dir) = try makeStore()
        let paths = try packPaths(dir)
        var r = TestSupport.Random(seed: 5)
        for round in 0 ..< 12 {
            let path = paths[round % paths.count]
            let original = try TestSupport.read(path)
            var damaged = original
            let position = r.int(PackHeader.size ..< original.count)
            damaged[position] ^= UInt8(1 << UInt8(r.int(0 ..< 8)))
            try TestSupport.write(damaged, to: path)
            let store = try ModelStore.open(directory: dir)
            let report = try Checker(store: store, readData: true).run()
            XCTAssertFalse(report.isHealthy, "flip at \(position) of \(path) went unnoticed")
            let damage = report.problems.filter { $0.severity == .damage }.map(\.message)
            XCTAssertTrue(damage.contains { $0.contains("pack ") && $0.contains("offset") }, "\(damage)")
            // Every revision either reads back exactly or fails with an error; never wrong bytes.
            for (model, fixture) in [("tiny-base", "models/tiny-base"), ("tiny-ft", "models/tiny-ft")] {
                let out = TestSupport.temporaryDirectory(self, "out")
                do {
                    try store.get(model: model, revision: nil, to: out)
                    for p in TestSupport.files(under: TestSupport.fixtures + "/" + fixture) {
                        XCTAssertEqual(try TestSupport.read(out + "/" + p), try TestSupport.read(TestSupport.fixtures + "/" + fixture + "/" + p))
                    }
                } catch {
                    guard case StoreError.corrupt = error else { return XCTFail("\(error)") }
                }
            }
            try TestSupport.write(original, to: path)
        }
    }

    /// fsck reads the chunk rows a page at a time: with pages of one or two rows (every delta's
    /// base in another page) it finds what one page finds, a damaged base chunk included, and marks
    /// the deltas over it and the files using them as damaged.
    func testFsckFindsTheSameWhateverItsPageSize() throws {
        let (store, dir) = try makeStore()
        let healthy = try Checker(store: store, readData: false, pageRows: 1).run()
        XCTAssertTrue(healthy.isHealthy, "\(healthy.problems)")
        XCTAssertEqual(healthy.chunks, try Checker(store: store, readData: false).run().chunks)
        // Damage a chunk the fine-tune's deltas are coded against: the base's largest frame.
        let local = try ChunkStore.openLocal(directory: dir)
        let base = try store.catalog.files(revision: try store.catalog.resolve(model: "tiny-base", revision: nil))
            .first { $0.path == "model.safetensors" }
        let baseChunks = try store.catalog.fileChunks(file: try XCTUnwrap(base)).map(\.location)
        let deltas = try store.catalog.files(revision: try store.catalog.resolve(model: "tiny-ft", revision: nil))
            .flatMap { try store.catalog.fileChunks(file: $0) }.map(\.location).filter { $0.baseRowID != nil }
        let victim = try XCTUnwrap(baseChunks.filter { c in deltas.contains { $0.baseRowID == c.rowID } }.max { $0.frameLength < $1.frameLength })
        let path = LocalPackDirectory(root: local.root).path(of: victim.pack)
        var bytes = try TestSupport.read(path)
        bytes[victim.frameOffset + victim.frameLength - 1] ^= 0x40
        try TestSupport.write(bytes, to: path)
        let reports = try [1, 2, 65_536].map { try Checker(store: store, readData: false, pageRows: $0).run() }
        let messages = reports.map { Set($0.problems.map(\.message)) }
        XCTAssertEqual(messages[0], messages[2])
        XCTAssertEqual(messages[1], messages[2])
        XCTAssertTrue(messages[2].contains { $0.hasPrefix("tiny-ft@") && $0.contains("is damaged") }, "\(messages[2])")
        XCTAssertTrue(messages[2].contains { $0.hasPrefix("tiny-base@") && $0.contains("is damaged") }, "\(messages[2])")
        XCTAssertEqual(Set(reports.map(\.chunks)).count, 1)
    }

    func testTruncatedAndMissingPacksAreReported() throws {
        let (_, dir) = try makeStore()
        let paths = try packPaths(dir)
        let victim = try XCTUnwrap(paths.max { try! TestSupport.read($0).count < TestSupport.read($1).count })
        let bytes = try TestSupport.read(victim)
        try TestSupport.write(Array(bytes[0 ..< bytes.count / 2]), to: victim)
        var report = try Checker(store: try ModelStore.open(directory: dir), readData: false).run()
        XCTAssertFalse(report.isHealthy)
        XCTAssertTrue(report.problems.contains { $0.message.contains("bytes, the catalog recorded") }, "\(report.problems)")
        try FileManager.default.removeItem(atPath: victim)
        report = try Checker(store: try ModelStore.open(directory: dir), readData: false).run()
        XCTAssertTrue(report.problems.contains { $0.message.contains("is missing") }, "\(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.message.contains("tiny-") && $0.message.contains("model.safetensors") }, "names the file")
    }

    func testRepairRebuildsALostCatalogAndKeepsRemovalsRemoved() throws {
        let (store, dir) = try makeStore()
        _ = try store.put(model: "misc", revision: "1", paths: [TestSupport.fixtures + "/misc"])
        try store.remove(model: "misc", revision: "1")
        try FileManager.default.removeItem(atPath: dir + "/catalog.db")
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: dir + "/catalog.db" + suffix) }
        let repair = try Repairer(directory: dir).run()
        XCTAssertTrue(repair.unrecoverable.isEmpty, "\(repair.unrecoverable)")
        let rebuilt = try ModelStore.open(directory: dir)
        XCTAssertEqual(Set(try rebuilt.revisions().map { "\($0.model)@\($0.revision)" }), ["tiny-base@v1", "tiny-ft@v1"])
        try assertReadsBack(rebuilt, "tiny-ft", "models/tiny-ft")
        try assertReadsBack(rebuilt, "tiny-base", "models/tiny-base")
        XCTAssertTrue(try Checker(store: rebuilt, readData: true).run().isHealthy)
        XCTAssertEqual(try rebuilt.catalog.resolve(model: "tiny-ft", revision: "v1").baseModel, "tiny-base")
    }

    func testRepeatedRepairsKeepOnlyTheNewestSetAsideCatalogs() throws {
        let (_, dir) = try makeStore()
        for _ in 0 ..< 5 {
            XCTAssertTrue(try Repairer(directory: dir).run().unrecoverable.isEmpty)
        }
        let aside = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("catalog.db.damaged-") }
        XCTAssertEqual(aside.filter { !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") }.count, 3, "\(aside)")
        try assertReadsBack(try ModelStore.open(directory: dir), "tiny-ft", "models/tiny-ft")
    }

    func testRepairAfterCatalogCorruption() throws {
        let (store, dir) = try makeStore()
        _ = store
        // Overwrite the middle of the database file: SQLite sees a malformed database.
        let path = dir + "/catalog.db"
        var bytes = try TestSupport.read(path)
        for i in stride(from: 0, to: bytes.count, by: 97) { bytes[i] = 0xFF }
        try TestSupport.write(bytes, to: path)
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        let report = try Repairer(directory: dir).run()
        XCTAssertTrue(report.unrecoverable.isEmpty, "\(report.unrecoverable)")
        try assertReadsBack(try ModelStore.open(directory: dir), "tiny-ft", "models/tiny-ft")
    }

    func testGCReclaimsGarbageButKeepsBasesOfDeltas() throws {
        let (store, dir) = try makeStore()
        _ = try store.put(model: "misc", revision: "1", paths: [TestSupport.fixtures + "/misc"])
        try store.remove(model: "misc", revision: "1")
        try store.remove(model: "tiny-base", revision: "v1")
        let before = try packPaths(dir).reduce(0) { $0 + (try TestSupport.read($1).count) }
        let dry = try Collector(store: store).run(dryRun: true)
        XCTAssertGreaterThan(dry.deadChunks, 0)
        XCTAssertEqual(try packPaths(dir).reduce(0) { $0 + (try TestSupport.read($1).count) }, before, "a dry run changes nothing")
        let report = try Collector(store: store).run(dryRun: false)
        XCTAssertEqual(report.deadChunks, dry.deadChunks)
        let after = try packPaths(dir).reduce(0) { $0 + (try TestSupport.read($1).count) }
        XCTAssertLessThan(after, before)
        try assertReadsBack(store, "tiny-ft", "models/tiny-ft")
        XCTAssertTrue(try Checker(store: store, readData: true).run().isHealthy)
        // A second gc finds nothing.
        XCTAssertEqual(try Collector(store: store).run(dryRun: false).deadChunks, 0)
        // A rebuilt catalog does not bring the removed revisions back.
        try FileManager.default.removeItem(atPath: dir + "/catalog.db")
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: dir + "/catalog.db" + suffix) }
        _ = try Repairer(directory: dir).run()
        XCTAssertEqual(try ModelStore.open(directory: dir).revisions().map(\.model), ["tiny-ft"])
    }

    /// A gc that starts while a put runs (possible only when the put lost its lock) fences the put:
    /// its commit is refused, nothing of it is visible, and a second try stores it.
    func testCommitIsRefusedWhenAGCStartedDuringThePut() throws {
        let (store, _) = try makeStore()
        let before = try store.catalog.gcGeneration()
        let fenced = OnceFlag()
        XCTAssertThrowsError(try store.put(model: "misc", revision: "1", paths: [TestSupport.fixtures + "/misc"], progress: { _ in
            // Stands in for a gc on a node that no longer sees this writer's lock.
            if fenced.claim() { _ = try? store.catalog.beginCollection() }
        })) { error in
            guard case StoreError.fenced = error else { return XCTFail("expected .fenced, got \(error)") }
        }
        let fence = try store.catalog.gcGeneration()
        XCTAssertGreaterThan(fence, before)
        XCTAssertThrowsError(try store.catalog.resolve(model: "misc", revision: "1"))
        XCTAssertTrue(try Checker(store: store, readData: true).run().isHealthy)
        _ = try store.put(model: "misc", revision: "1", paths: [TestSupport.fixtures + "/misc"])
        try assertReadsBack(store, "misc", "misc")
        // gc itself advances the generation; a dry run does not.
        _ = try Collector(store: store).run(dryRun: true)
        XCTAssertEqual(try store.catalog.gcGeneration(), fence)
        _ = try Collector(store: store).run(dryRun: false)
        XCTAssertGreaterThan(try store.catalog.gcGeneration(), fence)
    }

    /// Four writers, gc and readers as separate processes on one store: each succeeds or fails with a
    /// message, and afterwards fsck is clean and every committed revision reads back bit-exact.
    func testConcurrentWritersGCAndReaders() throws {
        let dir = TestSupport.temporaryDirectory(self, "concurrent") + "/store"
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["put", "--store", dir, "seed@1", TestSupport.fixtures + "/models/tiny-base"]).status, 0)
        let sources = ["models/tiny-base", "models/tiny-ft", "models/tiny-sharded", "misc"]
        var processes: [(Process, Pipe, String?)] = []
        func start(_ args: [String], expect source: String?) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: TestSupport.tpstore)
            p.arguments = args
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            processes.append((p, err, source))
        }
        for round in 0 ..< 2 {
            for (i, source) in sources.enumerated() {
                try start(["put", "--store", dir, "w\(i)@\(round)", TestSupport.fixtures + "/" + source], expect: source)
            }
            try start(["gc", "--store", dir], expect: nil)
            for r in 0 ..< 2 {
                try start(["get", "--store", dir, "seed@1", TestSupport.temporaryDirectory(self, "reader\(r)")], expect: nil)
            }
        }
        for (p, err, _) in processes {
            p.waitUntilExit()
            let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            if p.terminationStatus != 0 {
                XCTAssertTrue(message.contains("busy") || message.contains("locked"), "a failure must be a clean busy message: \(message)")
            }
        }
        let store = try ModelStore.open(directory: dir)
        XCTAssertTrue(try Checker(store: store, readData: true).run().isHealthy)
        for revision in try store.revisions() where revision.model.hasPrefix("w") {
            let index = Int(revision.model.dropFirst())!
            let out = TestSupport.temporaryDirectory(self, "check")
            try store.get(model: revision.model, revision: revision.revision, to: out)
            for path in TestSupport.files(under: TestSupport.fixtures + "/" + sources[index]) {
                XCTAssertEqual(try TestSupport.read(out + "/" + path), try TestSupport.read(TestSupport.fixtures + "/" + sources[index] + "/" + path))
            }
        }
        XCTAssertGreaterThanOrEqual(try store.revisions().count, 5)
    }

    /// A put that fills the disk fails with a clear error and leaves the store as it was. Uses a
    /// real 3 MiB tmpfs (mounting needs root, which CI has).
    func testDiskFullDuringPutLeavesTheStoreIntact() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
        let mountPoint = TestSupport.temporaryDirectory(self, "smallfs")
        let mount = try TestSupport.run("/bin/mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mountPoint])
        XCTAssertEqual(mount.status, 0, "mount: \(mount.stderr)")
        defer { _ = try? TestSupport.run("/bin/umount", [mountPoint]) }
        let dir = mountPoint + "/store"
        var r = try TestSupport.run(TestSupport.tpstore, ["put", "--store", dir, "a@1", TestSupport.fixtures + "/models/tiny-base"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var random = TestSupport.Random(seed: 9)
        let big = TestSupport.temporaryDirectory(self, "big") + "/big.bin"
        try TestSupport.write(random.bytes(6 << 20), to: big)
        r = try TestSupport.run(TestSupport.tpstore, ["put", "--store", dir, "b@1", big])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("No space left on device"), r.stderr)
        XCTAssertEqual(try FileSystem.list(dir + "/tmp"), [], "the partial pack is removed")
        let store = try ModelStore.open(directory: dir)
        XCTAssertTrue(try Checker(store: store, readData: true).run().isHealthy)
        XCTAssertEqual(try store.revisions().map(\.model), ["a"])
        try assertReadsBack(store, "a", "models/tiny-base")
    }
}
