import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore
import TenPakReader
import TenPakTestSupport
import XCTest

/// A process that keeps a store open (a server, an embedder) while other processes rm, gc and
/// repair it: it never returns another chunk's bytes, never reads through stale locations, and
/// never commits into a catalog that was set aside. Also the put-side checks that keep a store
/// from accepting what it cannot hold (issue 12).
final class LongLivedStoreTests: XCTestCase {
    /// A safetensors model of `tensors` F32 tensors of `elements` values each, from `seed`.
    static func model(seed: UInt64, tensors: Int = 3, elements: Int = 300_000) -> [UInt8] {
        var builder = SafetensorsBuilder()
        for t in 0 ..< tensors {
            builder.add("layer.\(t).weight", "F32", [elements], SafetensorsBuilder.f32(elements, seed: seed &* 31 &+ UInt64(t)))
        }
        return builder.bytes()
    }

    func write(_ files: [String: [UInt8]], in directory: String) throws -> String {
        for (path, bytes) in files {
            try FileManager.default.createDirectory(atPath: FileSystem.parentDirectory(directory + "/" + path), withIntermediateDirectories: true)
            try TestSupport.write(bytes, to: directory + "/" + path)
        }
        return directory
    }

    func readAll(_ reader: StoreReader, _ model: String, _ revision: String, _ path: String) throws -> [UInt8] {
        let file = try reader.open(model: model, revision: revision, path: path)
        return try file.read(0 ..< file.size)
    }

    /// Paths of deleted pack files of the store in `directory` this process still holds open
    /// (other tests' stores in the same process are not this test's business).
    func openDeletedPacks(in directory: String) -> [String] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0) }
            .filter { $0.hasPrefix(directory + "/") && $0.contains(".pack") && $0.hasSuffix("(deleted)") }
    }

    // MARK: the reader across gc and repair

    func testTheCacheNeverServesTheBytesOfAChunkWhoseRowWasReused() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        let reader = StoreReader(store: store, configuration: .init(cacheCapacity: 64 << 20))
        let x = Self.model(seed: 1), y = Self.model(seed: 2)
        _ = try store.put(model: "m/x", revision: "v1", paths: [try write(["model.safetensors": x], in: TestSupport.temporaryDirectory(self, "x"))], base: .none)
        XCTAssertEqual(try readAll(reader, "m/x", "v1", "model.safetensors"), x)
        let xRows = Set(try store.catalog.fileChunks(file: try reader.open(model: "m/x", revision: "v1", path: "model.safetensors").file).map(\.location.rowID))

        // Another process removes X and collects it; then Y is put, reusing X's freed row ids.
        let other = try ModelStore.open(directory: dir)
        try other.remove(model: "m/x", revision: "v1")
        _ = try Collector(store: other).run(dryRun: false)
        _ = try other.put(model: "m/y", revision: "v1", paths: [try write(["model.safetensors": y], in: TestSupport.temporaryDirectory(self, "y"))], base: .none)
        let yRows = Set(try other.catalog.fileChunks(file: try other.catalog.files(revision: try other.catalog.resolve(model: "m/y", revision: "v1"))[0]).map(\.location.rowID))
        XCTAssertFalse(xRows.isDisjoint(with: yRows), "the scenario needs Y to reuse X's row ids")

        XCTAssertEqual(try readAll(reader, "m/y", "v1", "model.safetensors"), y)
        XCTAssertThrowsError(try reader.open(model: "m/x", revision: "v1", path: "model.safetensors"))
    }

    func testAFileOpenedBeforeAGcRepackReadsExactlyAfterItAndDeletedPacksAreLetGo() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        let reader = StoreReader(store: store, configuration: .init(cacheCapacity: 0, prefetchChunks: 0))
        let keep = Self.model(seed: 3, tensors: 1), drop = Self.model(seed: 4, tensors: 4)
        // One pack holding both files; the second revision shares only `keep`.
        _ = try store.put(model: "m/a", revision: "v1", paths: [try write(["keep.safetensors": keep, "drop.safetensors": drop],
                                                                          in: TestSupport.temporaryDirectory(self, "a"))], base: .none)
        _ = try store.put(model: "m/b", revision: "v1", paths: [try write(["keep.safetensors": keep], in: TestSupport.temporaryDirectory(self, "b"))], base: .none)
        let file = try reader.open(model: "m/b", revision: "v1", path: "keep.safetensors")
        XCTAssertEqual(try file.read(offset: 0, count: 16), Array(keep[0 ..< 16]))

        let other = try ModelStore.open(directory: dir)
        try other.remove(model: "m/a", revision: "v1")
        let report = try Collector(store: other).run(dryRun: false)
        XCTAssertFalse(report.repackedPacks.isEmpty, "the scenario needs a repack")

        XCTAssertEqual(try file.read(0 ..< file.size), keep)
        XCTAssertEqual(try readAll(reader, "m/b", "v1", "keep.safetensors"), keep)
        XCTAssertEqual(openDeletedPacks(in: dir), [])
    }

    /// Readers take no store lock: while another opening removes, repacks and re-puts, a reader
    /// thread keeps reading one live file, and every read returns exactly its bytes.
    func testReadsBesideRepeatedGcRepacksAreExact() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        let reader = StoreReader(store: store, configuration: .init(cacheCapacity: 1 << 20, prefetchChunks: 0))
        let keep = Self.model(seed: 12, tensors: 1), drop = Self.model(seed: 13, tensors: 4)
        let both = try write(["keep.safetensors": keep, "drop.safetensors": drop], in: TestSupport.temporaryDirectory(self, "a"))
        _ = try store.put(model: "m/a", revision: "v0", paths: [both], base: .none)
        _ = try store.put(model: "m/b", revision: "v1", paths: [try write(["keep.safetensors": keep], in: TestSupport.temporaryDirectory(self, "b"))], base: .none)

        final class Tally: @unchecked Sendable {
            let lock = NSLock()
            var reads = 0, wrong = 0
            var failures: [String] = []
            var done = false
        }
        let tally = Tally()
        let finished = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            var random = TestSupport.Random(seed: 99)
            while !tally.lock.withLock({ tally.done }) {
                let start = random.int(0 ..< keep.count), count = random.int(1 ..< min(3 << 20, keep.count - start + 1))
                do {
                    let file = try reader.open(model: "m/b", revision: "v1", path: "keep.safetensors")
                    let bytes = try file.read(offset: start, count: count)
                    tally.lock.withLock {
                        tally.reads += 1
                        if bytes != Array(keep[start ..< start + count]) { tally.wrong += 1 }
                    }
                } catch {
                    tally.lock.withLock { tally.failures.append("\(error)") }
                }
            }
            finished.signal()
        }
        let other = try ModelStore.open(directory: dir)
        var repacks = 0
        for round in 0 ..< 4 {
            try other.remove(model: "m/a", revision: "v\(round)")
            repacks += try Collector(store: other).run(dryRun: false, lockTimeout: 10).repackedPacks.count
            _ = try other.put(model: "m/a", revision: "v\(round + 1)", paths: [both], base: .none)
        }
        tally.lock.withLock { tally.done = true }
        finished.wait()
        XCTAssertGreaterThan(repacks, 0, "the scenario needs repacks")
        XCTAssertGreaterThan(tally.reads, 0)
        XCTAssertEqual(tally.wrong, 0)
        XCTAssertEqual(tally.failures, [])
    }

    /// A store that is never idle (two holders of the shared lock whose holds overlap, so one is
    /// always held) still lets gc in: the exclusive lock turns new shared holders away at the gate.
    func testANeverIdleStoreCannotStarveGc() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        final class Flag: @unchecked Sendable {
            let lock = NSLock()
            var stop = false
            var holds = 0
        }
        let flag = Flag()
        let group = DispatchGroup()
        for worker in 0 ..< 2 {
            DispatchQueue.global().async(group: group) {
                usleep(UInt32(worker) * 50_000)
                while !flag.lock.withLock({ flag.stop }) {
                    guard let token = try? store.chunks.lock(.shared, timeout: 30) else { continue }
                    flag.lock.withLock { flag.holds += 1 }
                    usleep(100_000)
                    withExtendedLifetime(token) {}
                }
            }
        }
        usleep(300_000)
        var holdsWhileExclusive = 0
        do {
            let exclusive = try store.chunks.lock(.exclusive, timeout: 20)
            holdsWhileExclusive = flag.lock.withLock { flag.holds }
            usleep(300_000)
            XCTAssertEqual(flag.lock.withLock { flag.holds }, holdsWhileExclusive, "no shared hold begins while gc holds the lock")
            withExtendedLifetime(exclusive) {}
        }
        usleep(500_000)
        flag.lock.withLock { flag.stop = true }
        group.wait()
        XCTAssertGreaterThan(flag.holds, holdsWhileExclusive, "readers go on once gc is done")
    }

    func testAProcessThatKeepsTheStoreOpenWritesIntoTheRepairedCatalog() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        let reader = StoreReader(store: store)
        let one = Self.model(seed: 5), two = Self.model(seed: 6)
        _ = try store.put(model: "m/a", revision: "v1", paths: [try write(["model.safetensors": one], in: TestSupport.temporaryDirectory(self, "1"))])
        XCTAssertEqual(try readAll(reader, "m/a", "v1", "model.safetensors"), one)

        _ = try Repairer(directory: dir).run()
        _ = try store.put(model: "m/a", revision: "v2", paths: [try write(["model.safetensors": two], in: TestSupport.temporaryDirectory(self, "2"))])

        // A fresh opening (another process) sees what the long-lived one wrote after the repair.
        let fresh = try ModelStore.open(directory: dir)
        XCTAssertEqual(try fresh.revisions(model: "m/a").map(\.revision).sorted(), ["v1", "v2"])
        XCTAssertEqual(try readAll(reader, "m/a", "v1", "model.safetensors"), one)
        XCTAssertEqual(try readAll(reader, "m/a", "v2", "model.safetensors"), two)
        // gc from elsewhere keeps the post-repair revision's packs, and the store is whole.
        _ = try Collector(store: fresh).run(dryRun: false)
        let check = try Checker(store: try ModelStore.open(directory: dir), readData: true).run()
        XCTAssertTrue(check.isHealthy, "\(check.problems)")
        XCTAssertEqual(try readAll(StoreReader(store: fresh), "m/a", "v2", "model.safetensors"), two)
    }

    // MARK: what a put refuses

    func testAManifestOverTheFrameLimitIsRefusedBeforeAnythingIsStored() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        let source = TestSupport.temporaryDirectory(self, "src") + "/empty"
        try TestSupport.write([], to: source)
        // 17,000 files under 4,000-byte paths: a manifest of about 69 MB, over the 64 MiB limit.
        let stem = String(repeating: "d", count: 3_990)
        let inputs = (0 ..< 17_000).map { PutInput(source: source, path: "\(stem)/\($0)") }
        XCTAssertThrowsError(try store.put(model: "m/many", revision: "v1", inputs: inputs)) { error in
            guard case StoreError.invalidRequest = error else { return XCTFail("expected invalidRequest, got \(error)") }
        }
        XCTAssertEqual(try store.revisions(), [])
        XCTAssertEqual(try store.chunks.packs.packNames(), [])
    }

    /// A new store holding one model, `m/a@v1`, put without a base from the directory returned.
    func storeWithOneModel(seed: UInt64) throws -> (dir: String, store: ModelStore, source: String) {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        let src = try write(["model.safetensors": Self.model(seed: seed)], in: TestSupport.temporaryDirectory(self, "src"))
        _ = try store.put(model: "m/a", revision: "v1", paths: [src], base: .none)
        return (dir, store, src)
    }

    func testSharingAChunkWhosePackIsMissingIsRefused() throws {
        let (dir, store, src) = try storeWithOneModel(seed: 7)
        for pack in try store.chunks.packs.packNames() { try FileSystem.remove(LocalPackDirectory(root: dir).path(of: pack)) }

        XCTAssertThrowsError(try ModelStore.open(directory: dir).put(model: "m/a", revision: "v2", paths: [src], base: .none)) { error in
            guard case StoreError.corrupt = error else { return XCTFail("expected corrupt, got \(error)") }
        }
        XCTAssertEqual(try store.revisions(model: "m/a").map(\.revision), ["v1"])
    }

    func testSharingAChunkWithAFlippedPayloadByteIsRefusedAndPlainFsckFindsIt() throws {
        let (dir, store, src) = try storeWithOneModel(seed: 8)
        XCTAssertTrue(try Checker(store: store, readData: false).run().isHealthy)

        // Flip one byte in the middle of the payload of the file's largest chunk.
        let record = try store.catalog.resolve(model: "m/a", revision: "v1")
        let chunk = try store.catalog.fileChunks(file: try store.catalog.files(revision: record)[0]).map(\.location).max { $0.frameLength < $1.frameLength }
        let location = try XCTUnwrap(chunk)
        let packPath = LocalPackDirectory(root: dir).path(of: location.pack)
        var pack = try TestSupport.read(packPath)
        pack[location.frameOffset + location.frameLength - location.frameLength / 3] ^= 0x10
        try TestSupport.write(pack, to: packPath)

        let fresh = try ModelStore.open(directory: dir)
        let check = try Checker(store: fresh, readData: false).run()
        XCTAssertFalse(check.isHealthy, "plain fsck must check payload checksums")
        XCTAssertGreaterThan(check.frameBytesChecked, 0)
        XCTAssertThrowsError(try fresh.put(model: "m/a", revision: "v2", paths: [src], base: .none)) { error in
            guard case StoreError.corrupt = error else { return XCTFail("expected corrupt, got \(error)") }
        }
        XCTAssertEqual(try fresh.revisions(model: "m/a").map(\.revision), ["v1"])
    }

    func testPutNeverLeavesTheTreeItWasGiven() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        let outside = TestSupport.temporaryDirectory(self, "outside")
        try TestSupport.write(Array("secret".utf8), to: outside + "/secret.txt")

        let linked = TestSupport.temporaryDirectory(self, "linked")
        try TestSupport.write(Array("{}".utf8), to: linked + "/config.json")
        try FileManager.default.createSymbolicLink(atPath: linked + "/leak.txt", withDestinationPath: outside + "/secret.txt")
        XCTAssertThrowsError(try store.put(model: "m/a", paths: [linked])) { error in
            guard case StoreError.invalidRequest = error else { return XCTFail("expected invalidRequest, got \(error)") }
        }
        // Asked for, a link to a regular file stores what it points to.
        let report = try store.put(model: "m/a", revision: "v1", paths: [linked], followLinks: true)
        XCTAssertEqual(report.files.map(\.path), ["config.json", "leak.txt"])

        // Two links to the directory itself: refused at once, followed or not (never a loop).
        let looping = TestSupport.temporaryDirectory(self, "loop")
        try TestSupport.write([1, 2, 3], to: looping + "/x.bin")
        try FileManager.default.createSymbolicLink(atPath: looping + "/a", withDestinationPath: ".")
        try FileManager.default.createSymbolicLink(atPath: looping + "/b", withDestinationPath: ".")
        for follow in [false, true] {
            XCTAssertThrowsError(try store.put(model: "m/loop", paths: [looping], followLinks: follow)) { error in
                guard case StoreError.invalidRequest = error else { return XCTFail("expected invalidRequest, got \(error)") }
            }
        }

        let fifo = TestSupport.temporaryDirectory(self, "fifo")
        try TestSupport.write([1], to: fifo + "/x.bin")
        XCTAssertEqual(mkfifo(fifo + "/pipe", 0o644), 0)
        XCTAssertThrowsError(try store.put(model: "m/fifo", paths: [fifo], followLinks: true)) { error in
            guard case StoreError.invalidRequest = error else { return XCTFail("expected invalidRequest, got \(error)") }
        }
        XCTAssertEqual(try store.revisions().map(\.model), ["m/a"])
    }

    func testGetNeverWritesThroughALinkInTheDestination() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        let src = try write(["sub/model.bin": [1, 2, 3, 4], "top.bin": [5]], in: TestSupport.temporaryDirectory(self, "src"))
        _ = try store.put(model: "m/a", revision: "v1", paths: [src])
        let outside = TestSupport.temporaryDirectory(self, "outside")
        let destination = TestSupport.temporaryDirectory(self, "out")
        try FileManager.default.createSymbolicLink(atPath: destination + "/sub", withDestinationPath: outside)
        XCTAssertThrowsError(try store.get(model: "m/a", revision: "v1", to: destination)) { error in
            guard case StoreError.invalidRequest = error else { return XCTFail("expected invalidRequest, got \(error)") }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outside), [])
    }

    func testAFileWrittenToDuringItsPutIsRefused() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        let store = try ModelStore.open(directory: dir, create: true)
        let src = try write(["model.safetensors": Self.model(seed: 9)], in: TestSupport.temporaryDirectory(self, "src"))
        let once = OnceFlag()
        XCTAssertThrowsError(try store.put(model: "m/a", revision: "v1", paths: [src], progress: { _ in
            guard once.claim(), let handle = FileHandle(forWritingAtPath: src + "/model.safetensors") else { return }
            handle.seekToEndOfFile()
            handle.write(Data([0, 1, 2, 3]))
            try? handle.close()
        })) { error in
            guard case StoreError.invalidRequest = error else { return XCTFail("expected invalidRequest, got \(error)") }
        }
        XCTAssertEqual(try store.revisions(), [])
    }

    // MARK: the same through a running server

    /// While one `tpstore serve` keeps running: put X, read X, rm X, gc, put Y → Y's bytes.
    func testARunningServerServesTheNewRevisionAfterRmGcPut() throws {
        let dir = TestSupport.temporaryDirectory(self, "store")
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["init", "--store", dir]).status, 0)
        let x = Self.model(seed: 10), y = Self.model(seed: 11)
        let xDir = try write(["model.safetensors": x], in: TestSupport.temporaryDirectory(self, "x"))
        let yDir = try write(["model.safetensors": y], in: TestSupport.temporaryDirectory(self, "y"))
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["put", "--store", dir, "--no-base", "m/x@v1", xDir]).status, 0)
        let url = try TestSupport.startServer(self, store: dir, extra: ["--cache-mib", "64"])
        let first = try TestSupport.curl(self, [url + "/m/x/resolve/v1/model.safetensors"])
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(first.body, x)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["rm", "--store", dir, "m/x@v1"]).status, 0)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["gc", "--store", dir]).status, 0)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["put", "--store", dir, "--no-base", "m/y@v1", yDir]).status, 0)
        let ranged = try TestSupport.curl(self, ["-H", "Range: bytes=100-200000", url + "/m/y/resolve/v1/model.safetensors"])
        XCTAssertEqual(ranged.status, 206)
        XCTAssertEqual(ranged.body, Array(y[100 ... 200_000]))
        let whole = try TestSupport.curl(self, [url + "/m/y/resolve/v1/model.safetensors"])
        XCTAssertEqual(whole.status, 200)
        XCTAssertEqual(whole.body, y)
        XCTAssertEqual(try TestSupport.curl(self, [url + "/m/x/resolve/v1/model.safetensors"]).status, 404)
    }
}
