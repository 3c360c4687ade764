import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore
import TenPakTestSupport
import XCTest

/// `tpstore pull` / `push` against `tpstore serve --auth`, and `copy`, through the chunk-level
/// transfer protocol (SPEC §19): only the chunks the other side lacks move, the result is
/// bit-exact, tokens decide who moves what, forged input stores nothing, interrupted transfers
/// resume.
final class TransferTests: XCTestCase {
    var root = ""
    var serverStore = ""
    var authFile = ""
    let writeToken = "tp_write_0123456789abcdef"
    let readToken = "tp_read_0123456789abcdef"
    let otherToken = "tp_other_0123456789abcdef"

    override func setUpWithError() throws {
        root = TestSupport.temporaryDirectory(self, "transfer")
        serverStore = root + "/server"
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["init", "--store", serverStore]).status, 0)
        authFile = root + "/auth.json"
        let auth = """
            {"tokens": [{"token": "\(writeToken)", "name": "writer", "read": ["org/*"], "write": ["org/*"]},
                        {"token": "\(readToken)", "name": "reader", "read": ["org/*"]},
                        {"token": "\(otherToken)", "name": "other", "read": ["other/*"], "write": ["other/*"]}]}
            """
        try TestSupport.write(Array(auth.utf8), to: authFile)
    }

    // MARK: helpers

    @discardableResult
    func tp(_ args: [String], env: [String: String] = [:], ok: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws -> TestSupport.RunResult {
        let r = try TestSupport.run(TestSupport.tpstore, args, environment: env)
        if ok { XCTAssertEqual(r.status, 0, "tpstore \(args.joined(separator: " ")): \(r.stdout)\n\(r.stderr)", file: file, line: line) }
        return r
    }

    func server(_ extra: [String] = []) throws -> String {
        try TestSupport.startServer(self, store: serverStore, extra: ["--auth", authFile] + extra)
    }

    func packBytes(_ store: String) throws -> Int {
        let r = try tp(["stats", "--store", store, "--json"])
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        return try XCTUnwrap(json["packBytes"] as? Int)
    }

    func summary(_ r: TestSupport.RunResult) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout + r.stderr)
    }

    func fsck(_ store: String, file: StaticString = #filePath, line: UInt = #line) throws {
        try tp(["fsck", "--store", store, "--read-data"], file: file, line: line)
    }

    /// A base and a fine-tune of it (F32 weights, every value nudged by ~1e-3 relative): `tensors`
    /// tensors of `elements` floats each, a config file beside them.
    func makePair(tensors: Int = 6, elements: Int = 512 << 10) throws -> (base: String, ft: String) {
        let base = root + "/base", ft = root + "/ft"
        var b = SafetensorsBuilder(), f = SafetensorsBuilder()
        for t in 0 ..< tensors {
            let data = SafetensorsBuilder.f32(elements, seed: UInt64(t + 1))
            b.add("layer.\(t).weight", "F32", [elements / 512, 512], data)
            f.add("layer.\(t).weight", "F32", [elements / 512, 512], SafetensorsBuilder.nudge(data, seed: UInt64(100 + t)))
        }
        for (dir, builder) in [(base, b), (ft, f)] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try TestSupport.write(builder.bytes(), to: dir + "/model.safetensors")
            try TestSupport.write(Array("{\"hidden\": 512}\n".utf8), to: dir + "/config.json")
        }
        return (base, ft)
    }

    func assertSameFiles(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let left = TestSupport.files(under: a), right = TestSupport.files(under: b)
        XCTAssertEqual(left, right, file: file, line: line)
        for name in left {
            XCTAssertEqual(try TestSupport.read(a + "/" + name), try TestSupport.read(b + "/" + name), "\(name) differs", file: file, line: line)
        }
    }

    func curl(_ args: String...) throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        try TestSupport.curl(self, args)
    }

    // MARK: hashing files as bundles arrive

    /// A sending store holding a small pair, the fine-tune (`org/ft@main`) stored as deltas on the
    /// base (`org/base@main`): the pair's directories, the store, the fine-tune's record and its
    /// transfer manifest.
    func senderOfAFineTune() throws -> (base: String, ft: String, sender: ModelStore, record: RevisionRecord, manifest: TransferManifest) {
        let (base, ft) = try makePair(tensors: 4, elements: 256 << 10)
        let sender = try ModelStore.open(directory: root + "/sender", create: true)
        _ = try sender.put(model: "org/base", revision: "main", paths: [base + "/model.safetensors", base + "/config.json"], base: .none)
        _ = try sender.put(model: "org/ft", revision: "main", paths: [ft + "/model.safetensors", ft + "/config.json"],
                           base: .explicit(model: "org/base", revision: "main"))
        let record = try sender.catalog.resolve(model: "org/ft", revision: "main")
        return (base, ft, sender, record, try TransferManifest.make(store: sender, record: record))
    }

    /// An empty receiving store whose pack seals fail or wait on demand, and the fine-tune's closure
    /// (the base's chunks and the deltas on them) in two bundles: the frames without a base, then the
    /// deltas on them, which must wait for the first bundle to land (a base must be in the store or
    /// the same bundle).
    func receiverWithTwoBundles(from sender: ModelStore, _ manifest: TransferManifest) throws
        -> (local: ChunkStore, packs: FaultyPacks, store: ModelStore, batches: [[ChunkID]], bundles: [[UInt8]]) {
        let local = try ChunkStore.openLocal(directory: root + "/receiver", create: true)
        let packs = FaultyPacks(local.packs)
        let store = ModelStore(chunks: ChunkStore(packs: packs, catalog: local.catalog, root: local.root, locking: local.locking))
        let all = try FrameSender(store: sender).bundle(manifest.chunkIDs)
        let headers = try all.withUnsafeBytes { try FrameBundle.parse($0, maxFrames: FrameSender.maxFrames) }.map(\.header)
        let batches = [headers.filter { $0.base == nil }.map(\.id), headers.filter { $0.base != nil }.map(\.id)]
        XCTAssertFalse(batches[1].isEmpty, "the fine-tune is stored as deltas")
        XCTAssertTrue(headers.allSatisfy { $0.base.map(Set(batches[0]).contains) ?? true })
        return (local, packs, store, batches, try batches.map { try FrameSender(store: sender).bundle($0) })
    }

    /// Bundles landing in the background (a pull's): a bundle with a frame on one still landing
    /// waits for it, and the revision commits bit-exact; a landing that fails is thrown by the
    /// next call, stores nothing, and a re-run moves only what is missing.
    func testBundlesLandingInTheBackgroundWaitForTheirBasesAndReportFailures() throws {
        let (_, ft, sender, record, manifest) = try senderOfAFineTune()
        let (local, packs, store, batches, bundles) = try receiverWithTwoBundles(from: sender, manifest)

        // A landing that fails: the next call throws its error and its chunks are not staged.
        do {
            let importer = try ChunkImporter(store: store)
            defer { importer.close() }
            importer.track(manifest)
            packs.failingSeals = true
            let report = try importer.receive(bundle: bundles[0], expected: Set(batches[0]), landInBackground: true) { m, _ in m == "org/ft" }
            XCTAssertEqual(report.stored + report.restored, batches[0].count)
            XCTAssertThrowsError(try importer.finishLanding()) { XCTAssertTrue($0 is FaultyPacks.Fault, "\($0)") }
            packs.failingSeals = false
            XCTAssertEqual(try importer.missing(batches[0]), batches[0], "nothing of the failed bundle was staged")
        }
        XCTAssertEqual(try local.packs.packNames(), [], "the failed landing's pack was dropped")

        let importer = try ChunkImporter(store: store)
        defer { importer.close() }
        importer.track(manifest)
        for (batch, bundle) in zip(batches, bundles) {
            _ = try importer.receive(bundle: bundle, expected: Set(batch), landInBackground: true) { m, _ in m == "org/ft" }
        }
        try importer.commit(manifest: record.manifest, model: "org/ft", revision: "main")
        XCTAssertEqual(try importer.missing(manifest.chunkIDs), [])
        _ = try store.get(model: "org/ft", revision: "main", to: root + "/got")
        try assertSameFiles(root + "/got", ft)
    }

    /// A server's pushes: one importer per bundle, all on one `LandingLane`. A bundle is checked
    /// while the one before it is still being written, and one holding deltas on frames of that
    /// bundle waits for it to land instead of refusing them (their base is in neither the store nor
    /// their own bundle until then); the revision then commits bit-exact.
    func testImportersOnOneLaneWaitForBasesStillLanding() throws {
        let (_, ft, sender, record, manifest) = try senderOfAFineTune()
        let (local, packs, store, batches, bundles) = try receiverWithTwoBundles(from: sender, manifest)
        let lane = LandingLane()

        packs.holdingSeals = true
        let first = try ChunkImporter(store: store, lane: lane)
        _ = try first.receive(bundle: bundles[0], landInBackground: true) { m, _ in m == "org/ft" }
        let second = Background { () -> ReceiveReport in
            let importer = try ChunkImporter(store: store, lane: lane)
            defer { importer.close() }
            let report = try importer.receive(bundle: bundles[1], landInBackground: true) { m, _ in m == "org/ft" }
            try importer.finishLanding()
            return report
        }
        // The first bundle's write is held at its seal: the second must be waiting for it.
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(try local.packs.packNames(), [], "nothing is written while the seal is held")
        packs.holdingSeals = false
        try first.finishLanding()
        first.close()
        let report = try second.value()
        XCTAssertEqual(report.stored + report.restored, batches[1].count)

        let committer = try ChunkImporter(store: store, lane: lane)
        defer { committer.close() }
        try committer.commit(manifest: record.manifest, model: "org/ft", revision: "main")
        _ = try store.get(model: "org/ft", revision: "main", to: root + "/got")
        try assertSameFiles(root + "/got", ft)
    }

    /// Lands the fine-tune's missing frames in a store holding the base the way a push's server does:
    /// one importer per bundle, the manifest frame first (it starts a `FileHasher`), the others fed
    /// to that hasher; the commit then finds every file hashed. A hasher of another revision's files
    /// (same path, other chunks) is not used: the commit hashes that file itself.
    func testAPushsServerHashesFilesAsBundlesArriveAndUsesOnlyAMatchingHash() throws {
        let (base, ft, sender, record, manifest) = try senderOfAFineTune()
        func receiver(_ name: String) throws -> (ModelStore, [[ChunkID]]) {
            let store = try ModelStore.open(directory: root + "/" + name, create: true)
            _ = try store.put(model: "org/base", revision: "main", paths: [base + "/model.safetensors", base + "/config.json"], base: .none)
            let importer = try ChunkImporter(store: store)
            defer { importer.close() }
            let batches = manifest.batches(of: try importer.missing(manifest.chunkIDs), maxBytes: 256 << 10, firstBytes: 32 << 10)
            return (store, batches)
        }
        let (store, batches) = try receiver("receiver")
        XCTAssertGreaterThan(batches.count, 2)
        XCTAssertEqual(batches.first?.first, record.manifest, "the manifest frame goes first")
        var started: FileHasher?
        for batch in batches {
            let importer = try ChunkImporter(store: store)
            if let started { importer.feed(started) }
            importer.hashManifests = { _, revision in
                started = FileHasher(store: store, revision: revision)
                return started
            }
            _ = try importer.receive(bundle: try FrameSender(store: sender).bundle(batch)) { model, _ in model == "org/ft" }
            importer.close()
        }
        let hasher = try XCTUnwrap(started, "the manifest frame started a hasher")
        let hashed = try hasher.drain()
        XCTAssertEqual(Set(hashed.keys), ["model.safetensors", "config.json"])
        for (path, file) in hashed { XCTAssertEqual(file.next, file.ids.count, "\(path) was hashed as its chunks arrived") }
        let importer = try ChunkImporter(store: store)
        defer { importer.close() }
        try importer.commit(manifest: record.manifest, model: "org/ft", revision: "main", hashed: hasher)
        _ = try store.get(model: "org/ft", revision: "main", to: root + "/got")
        try assertSameFiles(root + "/got", ft)

        // A hasher of the base's files names the same paths with other chunks: it is not used.
        let (other, otherBatches) = try receiver("other")
        let wrong = FileHasher(store: other, manifest: try TransferManifest.make(store: other, record: try other.catalog.resolve(model: "org/base", revision: "main")))
        wrong.enqueue([:])
        for batch in otherBatches {
            let importer = try ChunkImporter(store: other)
            _ = try importer.receive(bundle: try FrameSender(store: sender).bundle(batch)) { model, _ in model == "org/ft" }
            importer.close()
        }
        XCTAssertTrue(try wrong.drain().values.allSatisfy { $0.next == $0.ids.count }, "the base's files are all present there")
        let second = try ChunkImporter(store: other)
        defer { second.close() }
        try second.commit(manifest: record.manifest, model: "org/ft", revision: "main", hashed: wrong)
        _ = try other.get(model: "org/ft", revision: "main", to: root + "/got-other")
        try assertSameFiles(root + "/got-other", ft)

        // A hasher past its byte budget, or cancelled (an abandoned push), stops: its commit
        // hashes every file itself, and the result is the same.
        for (name, budget, cancel) in [("budget", 4096, false), ("cancelled", Int.max, true)] {
            let (store, batches) = try receiver(name)
            var hasher: FileHasher?
            for batch in batches {
                let importer = try ChunkImporter(store: store)
                if let hasher { importer.feed(hasher) }
                importer.hashManifests = { _, revision in
                    hasher = FileHasher(store: store, revision: revision, maxBytes: budget)
                    if cancel { hasher?.cancel() }
                    return hasher
                }
                _ = try importer.receive(bundle: try FrameSender(store: sender).bundle(batch)) { model, _ in model == "org/ft" }
                importer.close()
            }
            let stopped = try XCTUnwrap(hasher)
            XCTAssertThrowsError(try stopped.drain(), name) { error in
                switch error as? FileHasher.Stopped {
                case .cancelled?: XCTAssertTrue(cancel, name)
                case .overBudget(let maxBytes)?: XCTAssertEqual(maxBytes, budget, name)
                case nil: XCTFail("\(name): \(error)")
                }
            }
            let importer = try ChunkImporter(store: store)
            try importer.commit(manifest: record.manifest, model: "org/ft", revision: "main", hashed: stopped)
            importer.close()
            _ = try store.get(model: "org/ft", revision: "main", to: root + "/got-" + name)
            try assertSameFiles(root + "/got-" + name, ft)
        }
    }

    // MARK: pull and push

    func testPullMovesOnlyTheFineTunesDeltaAndIsBitExact() throws {
        let (base, ft) = try makePair()
        try tp(["put", "--store", serverStore, "org/m@base", base])
        let afterBase = try packBytes(serverStore)
        try tp(["put", "--store", serverStore, "--base", "org/m@base", "org/m@ft", ft])
        let deltaBytes = try packBytes(serverStore) - afterBase
        let url = try server()
        let client = root + "/client"

        let first = try summary(try tp(["pull", "--store", client, url, "org/m@base", "--token", writeToken, "--json"]))
        XCTAssertEqual(first["alreadyThere"] as? Bool, false)
        let logical = try XCTUnwrap(first["logicalBytes"] as? Int)
        XCTAssertGreaterThan(try XCTUnwrap(first["bytesMoved"] as? Int), logical / 2, "a base pulled into an empty store moves about its stored size")

        // The fine-tune, its base already local: about its delta crosses the wire (target ≤ 1.10×).
        let second = try summary(try tp(["pull", "--store", client, url, "org/m@ft", "--json"], env: ["TPSTORE_TOKEN": readToken]))
        let moved = try XCTUnwrap(second["bytesMoved"] as? Int)
        XCTAssertLessThanOrEqual(Double(moved), 1.10 * Double(deltaBytes), "moved \(moved) bytes for \(deltaBytes) bytes of stored delta")
        XCTAssertGreaterThan(try XCTUnwrap(second["chunksPresent"] as? Int), 0)
        XCTAssertLessThan(deltaBytes, logical / 2, "the fine-tune is stored as deltas on the server")

        try tp(["get", "--store", client, "org/m@ft", root + "/got-ft"])
        try assertSameFiles(ft, root + "/got-ft")
        try tp(["get", "--store", client, "org/m@base", root + "/got-base"])
        try assertSameFiles(base, root + "/got-base")
        // Stored as deltas locally too (frames are kept as they came).
        XCTAssertLessThan(try packBytes(client), afterBase + deltaBytes + deltaBytes / 5)

        // Again: nothing moves but the manifest.
        let again = try summary(try tp(["pull", "--store", client, url, "org/m@ft", "--token", readToken, "--json"]))
        XCTAssertEqual(again["alreadyThere"] as? Bool, true)
        XCTAssertLessThan(try XCTUnwrap(again["bytesMoved"] as? Int), 64 << 10)
        // The summary line.
        let line = try tp(["pull", "--store", client, url, "org/m@ft", "--token", readToken]).stdout
        XCTAssertTrue(line.contains("logical") && line.contains("moved") && line.contains(" s "), line)
        try fsck(client)
        try fsck(serverStore)
    }

    func testPushMovesOnlyTheDeltaAndTheServerChecksEveryFile() throws {
        let (base, ft) = try makePair()
        try tp(["put", "--store", serverStore, "org/m@base", base])
        let url = try server()
        // The client stored the same base on its own (another put: same chunks, another manifest).
        let client = root + "/client"
        try tp(["put", "--store", client, "org/m@base", base])
        let clientBase = try packBytes(client)
        try tp(["put", "--store", client, "--base", "org/m@base", "org/m@ft", ft])
        let deltaBytes = try packBytes(client) - clientBase

        let pushed = try summary(try tp(["push", "--store", client, url, "org/m@ft", "--token", writeToken, "--json"]))
        let moved = try XCTUnwrap(pushed["bytesMoved"] as? Int)
        XCTAssertLessThanOrEqual(Double(moved), 1.10 * Double(deltaBytes), "moved \(moved) bytes for \(deltaBytes) bytes of stored delta")
        XCTAssertEqual(pushed["alreadyThere"] as? Bool, false)

        // Served bit-exact, and the server stored deltas (it kept the frames as they came).
        let r = try curl("-H", "Authorization: Bearer \(readToken)", url + "/org/m/resolve/ft/model.safetensors")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, try TestSupport.read(ft + "/model.safetensors"))
        // Tensors were read from the pushed header: the tensor command works on the server store.
        let tensor = try tp(["tensor", "--store", serverStore, "org/m@ft", "model.safetensors", "layer.0.weight", "-o", root + "/t0"])
        XCTAssertEqual(tensor.status, 0)

        // Pushed again: already there.
        let again = try summary(try tp(["push", "--store", client, url, "org/m@ft", "--token", writeToken, "--json"]))
        XCTAssertEqual(again["alreadyThere"] as? Bool, true)

        // Another revision under the taken name: a clear error, nothing committed.
        let third = root + "/third"
        try tp(["put", "--store", third, "org/m@ft", base + "/config.json"])
        let before = try tp(["ls", "--store", serverStore, "org/m"]).stdout
        let refused = try tp(["push", "--store", third, url, "org/m@ft", "--token", writeToken], ok: false)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("already exists"), refused.stderr)
        XCTAssertEqual(try tp(["ls", "--store", serverStore, "org/m"]).stdout, before)
        try fsck(client)
        try fsck(serverStore)
    }

    /// A bundle the server never got (its answer came from elsewhere: here a proxy; in life a gc
    /// that collected staged chunks before the commit): the commit is refused for a chunk not
    /// received, the client asks once more which chunks the server lacks, sends them, commits.
    func testPushAsksAgainWhatTheServerLacksWhenTheCommitFindsAChunkMissing() throws {
        let (base, ft) = try makePair(tensors: 2)
        try tp(["put", "--store", serverStore, "org/m@base", base])
        let url = try server()
        let client = root + "/client"
        try tp(["put", "--store", client, "org/m@base", base])
        try tp(["put", "--store", client, "--base", "org/m@base", "org/m@ft", ft])
        let (port, process) = try liar(url, mode: "swallow")
        defer { process.terminate(); process.waitUntilExit() }
        try tp(["push", "--store", client, "http://127.0.0.1:\(port)", "org/m@ft", "--token", writeToken])
        let r = try curl("-H", "Authorization: Bearer \(readToken)", url + "/org/m/resolve/ft/model.safetensors")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, try TestSupport.read(ft + "/model.safetensors"))
        try fsck(serverStore)
    }

    /// A fine-tune pushed to a server without its base: its closure brings the base's chunks, and
    /// its deltas come in later bundles than their bases. With two bundles on the wire at once, a
    /// bundle whose frames need a base in a bundle still in flight waits for it (the server takes
    /// bases only from its store or the same bundle), so small bundles still all land.
    func testAPushWhoseLaterBundlesNeedEarlierOnesLandsWithBundlesInFlight() throws {
        let (base, ft) = try makePair()
        let url = try server()
        let client = root + "/client"
        try tp(["put", "--store", client, "org/m@base", base])
        try tp(["put", "--store", client, "--base", "org/m@base", "org/m@ft", ft])
        let pushed = try summary(try tp(["push", "--store", client, url, "org/m@ft", "--token", writeToken, "--json"],
                                        env: ["TPSTORE_TRANSFER_BUNDLE_MIB": "1"]))
        XCTAssertGreaterThan(try XCTUnwrap(pushed["framesMoved"] as? Int), 8)
        let r = try curl("-H", "Authorization: Bearer \(readToken)", url + "/org/m/resolve/ft/model.safetensors")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, try TestSupport.read(ft + "/model.safetensors"))
        try fsck(serverStore)
    }

    func testTokensDecideWhoPullsAndPushes() throws {
        let (base, _) = try makePair(tensors: 2, elements: 64 << 10)
        try tp(["put", "--store", serverStore, "org/m@base", base])
        try tp(["put", "--store", serverStore, "other/x@v1", base + "/config.json"])
        let url = try server()
        let client = root + "/client"
        let anonymous = try tp(["pull", "--store", client, url, "org/m@base"], ok: false)
        XCTAssertNotEqual(anonymous.status, 0)
        XCTAssertTrue(anonymous.stderr.contains("401"), anonymous.stderr)
        let stranger = try tp(["pull", "--store", client, url, "org/m@base", "--token", otherToken], ok: false)
        XCTAssertNotEqual(stranger.status, 0)
        XCTAssertTrue(stranger.stderr.contains("404"), stranger.stderr)
        let unknown = try tp(["pull", "--store", client, url, "org/m@base", "--token", "not_a_known_token"], ok: false)
        XCTAssertTrue(unknown.stderr.contains("401"), unknown.stderr)

        // A reader pulls, but cannot push.
        try tp(["pull", "--store", client, url, "org/m@base", "--token", readToken])
        try tp(["put", "--store", client, "org/m@v2", base + "/config.json"])
        let push = try tp(["push", "--store", client, url, "org/m@v2", "--token", readToken], ok: false)
        XCTAssertTrue(push.stderr.contains("403"), push.stderr)
        XCTAssertFalse(try tp(["ls", "--store", serverStore, "org/m"]).stdout.contains("v2"))

        // The frames of another repository cannot be fetched through one the token reads.
        let theirs = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try curl(
            "-H", "Authorization: Bearer \(otherToken)", url + "/api/tenpak/v1/other/x/manifest/v1").body)) as? [String: Any])
        // Their manifest chunk (it names their model, so no other revision shares it).
        let id = try XCTUnwrap(theirs["manifest"] as? String)
        let stray = try curl("-H", "Authorization: Bearer \(readToken)", "-d", "{\"ids\":[\"\(id)\"]}", url + "/api/tenpak/v1/org/m/frames/base")
        XCTAssertEqual(stray.status, 404)
        let wrongRepo = try curl("-H", "Authorization: Bearer \(readToken)", "-d", "{\"ids\":[\"\(id)\"]}", url + "/api/tenpak/v1/other/x/frames/v1")
        XCTAssertEqual(wrongRepo.status, 404)
    }

    func testAFineTuneOfABaseTheReaderCannotReadIsNotSentAsFrames() throws {
        let (base, ft) = try makePair(tensors: 2, elements: 64 << 10)
        try tp(["put", "--store", serverStore, "secret/base@v1", base])
        try tp(["put", "--store", serverStore, "org/ft@v1", ft, "--base", "secret/base@v1"])
        try tp(["put", "--store", serverStore, "org/own@v1", base])
        let url = try server()
        // Its delta frames would need the private base's chunks: the reader gets a 403 naming the way
        // that works (its files, rebuilt by the server), and no frame of the base.
        let client = root + "/client"
        let refused = try tp(["pull", "--store", client, url, "org/ft@v1", "--token", readToken], ok: false)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("403") && refused.stderr.contains("cannot read"), refused.stderr)
        let manifest = try curl("-H", "Authorization: Bearer \(readToken)", url + "/api/tenpak/v1/org/ft/manifest/v1")
        XCTAssertEqual(manifest.status, 403)
        XCTAssertFalse(String(decoding: manifest.body, as: UTF8.self).contains("secret"), "the answer does not name the base")
        let file = try curl("-H", "Authorization: Bearer \(readToken)", url + "/org/ft/resolve/v1/model.safetensors")
        XCTAssertEqual(file.status, 200)
        XCTAssertEqual(file.body, try TestSupport.read(ft + "/model.safetensors"))
        // A revision whose closure is its own (the same bytes as the private base, stored apart from
        // it as shared chunks) pulls.
        try tp(["pull", "--store", client, url, "org/own@v1", "--token", readToken])
        // Naming a base the writer cannot read is refused like reading it.
        let put = try curl("-X", "PUT", "-H", "Authorization: Bearer \(writeToken)", "--data-binary", "@" + ft + "/model.safetensors",
                           url + "/org/ft2/resolve/v1/model.safetensors?base=secret/base@v1")
        XCTAssertEqual(put.status, 404, String(decoding: put.body, as: UTF8.self))
        XCTAssertFalse(try tp(["ls", "--store", serverStore]).stdout.contains("org/ft2"))
    }

    // MARK: bad input

    /// One frame of `raw` stored as-is, claiming `id`.
    func storedFrame(_ raw: [UInt8], id: ChunkID? = nil, rawLength: Int? = nil, kind: FrameKind = .chunk) -> [UInt8] {
        let header = FrameHeader(kind: kind, encoding: 0, payloadLength: raw.count, rawLength: rawLength ?? raw.count, elementWidth: 1,
                                 floatLayout: .none, id: id ?? raw.withUnsafeBytes { ChunkID(of: $0) }, base: nil,
                                 payloadChecksum: Hashing.xxh3_64(raw))
        return header.encoded() + raw
    }

    func bundle(_ frames: [[UInt8]], count: Int? = nil) -> [UInt8] {
        FrameBundle.header(count: count ?? frames.count) + frames.flatMap { $0 }
    }

    func post(_ url: String, _ path: String, _ body: [UInt8], token: String? = nil) throws -> (status: Int, text: String) {
        let file = TestSupport.temporaryDirectory(self, "body") + "/b"
        try TestSupport.write(body, to: file)
        let r = try curl("-H", "Authorization: Bearer \(token ?? writeToken)", "--data-binary", "@" + file, url + path)
        return (r.status, String(decoding: r.body, as: UTF8.self))
    }

    func testForgedFramesAndBadRequestsStoreNothing() throws {
        let (base, _) = try makePair(tensors: 2, elements: 64 << 10)
        try tp(["put", "--store", serverStore, "org/m@base", base])
        let url = try server()
        let before = try packBytes(serverStore)
        let listing = try tp(["ls", "--store", serverStore]).stdout
        let chunks = "/api/tenpak/v1/org/m/chunks"
        let raw = Array((0 ..< 5000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let good = storedFrame(raw)
        let otherID = Array("other bytes".utf8).withUnsafeBytes { ChunkID(of: $0) }

        let cases: [(String, [UInt8], String)] = [
            ("forged id", bundle([good, storedFrame(raw, id: otherID)]), "decodes to bytes whose id"),
            ("forged SHA-256 only", bundle([storedFrame(raw, id: ChunkID(xxh: Hashing.xxh3_128(raw), sha: otherID.sha))]), "XXH3-128 or SHA-256"),
            ("absurd raw length", bundle([storedFrame(raw, rawLength: Int(UInt32.max))]), "over the"),
            ("payload past the end", Array(bundle([good]).dropLast(10)), "truncated"),
            ("count past the end", bundle([good], count: 1000), "frames"),
            ("bytes after the last frame", bundle([good]) + [1, 2, 3], "after its last frame"),
            ("not a bundle", Array("hello".utf8), "bundle"),
            ("a tombstone", bundle([storedFrame(raw, kind: .tombstone)]), "not transferred"),
        ]
        for (name, body, message) in cases {
            let r = try post(url, chunks, body)
            XCTAssertEqual(r.status, 400, "\(name): \(r.text)")
            XCTAssertTrue(r.text.contains(message), "\(name): \(r.text)")
        }
        // A delta whose base is on neither side.
        let missingBase = FrameHeader(kind: .chunk, encoding: 3, payloadLength: raw.count, rawLength: raw.count, elementWidth: 1,
                                      floatLayout: .none, id: raw.withUnsafeBytes { ChunkID(of: $0) }, base: otherID,
                                      payloadChecksum: Hashing.xxh3_64(raw))
        let noBase = try post(url, chunks, bundle([missingBase.encoded() + raw]))
        XCTAssertEqual(noBase.status, 400)
        XCTAssertTrue(noBase.text.contains("neither in this store nor earlier"), noBase.text)
        // A delta naming itself as its base (this once took the server down: the requests below
        // would then fail to connect).
        let ownID = raw.withUnsafeBytes { ChunkID(of: $0) }
        let selfBased = FrameHeader(kind: .chunk, encoding: 3, payloadLength: raw.count, rawLength: raw.count, elementWidth: 1,
                                    floatLayout: .none, id: ownID, base: ownID, payloadChecksum: Hashing.xxh3_64(raw))
        let loop = try post(url, chunks, bundle([selfBased.encoded() + raw]))
        XCTAssertEqual(loop.status, 400, loop.text)
        XCTAssertTrue(loop.text.contains("names itself as its base"), loop.text)
        // Manifests: only whole ones, and only of the repository written to (a catalog rebuild would
        // otherwise make a revision of another's out of a staged frame).
        let theirs = try RevisionManifest(model: "other/x", revision: "v1", createdAt: 0, files: []).encoded()
        let foreign = try post(url, chunks, bundle([storedFrame(theirs, kind: .manifest)]))
        XCTAssertEqual(foreign.status, 400, foreign.text)
        XCTAssertTrue(foreign.text.contains("is a manifest of other/x@v1, which this transfer may not write"), foreign.text)
        let deltaManifest = FrameHeader(kind: .manifest, encoding: 3, payloadLength: raw.count, rawLength: raw.count, elementWidth: 1,
                                        floatLayout: .none, id: ownID, base: otherID, payloadChecksum: Hashing.xxh3_64(raw))
        let coded = try post(url, chunks, bundle([deltaManifest.encoded() + raw]))
        XCTAssertEqual(coded.status, 400, coded.text)
        XCTAssertTrue(coded.text.contains("never delta-coded"), coded.text)
        // A frame on top of a forged one is refused with it: nothing of that bundle is kept.
        XCTAssertEqual(try packBytes(serverStore), before)

        // Commits of what is not there, or is no manifest.
        let commit = "/api/tenpak/v1/org/m/commit/v9"
        XCTAssertEqual(try post(url, commit, Array("{\"manifest\":\"\(otherID.hex)\"}".utf8)).status, 400)
        XCTAssertEqual(try post(url, commit, Array("{\"manifest\":\"zz\"}".utf8)).status, 400)
        XCTAssertEqual(try post(url, commit, Array("not json".utf8)).status, 400)
        let staged = try post(url, chunks, bundle([good]))
        XCTAssertEqual(staged.status, 200, staged.text)
        let notManifest = try post(url, commit, Array("{\"manifest\":\"\(raw.withUnsafeBytes { ChunkID(of: $0) }.hex)\"}".utf8))
        XCTAssertEqual(notManifest.status, 400)
        XCTAssertTrue(notManifest.text.contains("not stored as a manifest frame"), notManifest.text)
        // A manifest's bytes staged as an ordinary chunk: it decodes, but a rebuild would never see it.
        let ours = try RevisionManifest(model: "org/m", revision: "v9", createdAt: 0, files: []).encoded()
        XCTAssertEqual(try post(url, chunks, bundle([storedFrame(ours)])).status, 200)
        let disguised = try post(url, commit, Array("{\"manifest\":\"\(ours.withUnsafeBytes { ChunkID(of: $0) }.hex)\"}".utf8))
        XCTAssertEqual(disguised.status, 400, disguised.text)
        XCTAssertTrue(disguised.text.contains("not stored as a manifest frame"), disguised.text)
        // A reader may not stage; unknown routes are 404.
        XCTAssertEqual(try post(url, chunks, bundle([good]), token: readToken).status, 403)
        XCTAssertEqual(try post(url, "/api/tenpak/v1/org/m/bogus", []).status, 404)
        XCTAssertEqual(try post(url, "/api/tenpak/v1/org/m/missing", Array("{\"ids\":[\"12\"]}".utf8)).status, 400)

        XCTAssertEqual(try tp(["ls", "--store", serverStore]).stdout, listing)
        try fsck(serverStore)
        // The staged frame nothing committed is gc's.
        XCTAssertGreaterThan(try packBytes(serverStore), before)
        try tp(["gc", "--store", serverStore])
        XCTAssertEqual(try packBytes(serverStore), before)
        try fsck(serverStore)
    }

    // MARK: interruptions

    /// Runs tpstore with `args` until `stop` is true (polled), then SIGKILLs `victim` (the process
    /// itself when nil); returns tpstore's exit status.
    func run(_ args: [String], env: [String: String], killing victim: Int32?, when stop: () -> Bool) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestSupport.tpstore)
        process.arguments = args
        process.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning, !stop(), Date() < deadline { usleep(2000) }
        kill(victim ?? process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return process.terminationStatus
    }

    func packCount(_ store: String) -> Int {
        TestSupport.files(under: store + "/packs").count
    }

    func testPullResumesAfterTheServerIsKilledAndPushAfterTheClientIs() throws {
        let base = try makeModel("big1", seed: 500)
        try tp(["put", "--store", serverStore, "--no-base", "org/big@v1", base])
        let (url, serverProcess) = try TestSupport.startServerProcess(self, store: serverStore, extra: ["--auth", authFile])
        let client = root + "/client"
        try tp(["init", "--store", client])
        // One-MiB bundles: many round trips, each kept as it lands.
        let env = ["TPSTORE_TRANSFER_BUNDLE_MIB": "1", "TPSTORE_TOKEN": writeToken]
        let status = try run(["pull", "--store", client, url, "org/big@v1"], env: env, killing: serverProcess.processIdentifier) { packCount(client) >= 2 }
        XCTAssertNotEqual(status, 0, "the pull must fail once its server is gone")
        XCTAssertTrue(try tp(["ls", "--store", client]).stdout.contains("org/big") == false)
        try fsck(client)
        let staged = packCount(client)
        // Its port now refuses connections: said in the system's words, with the way out, whether
        // the host is an address or a name (NIO reports the two differently), at once (the client
        // does not retry a refused connection).
        XCTAssertTrue(url.hasPrefix("http://127.0.0.1:"), url)
        for dead in [url, url.replacingOccurrences(of: "127.0.0.1", with: "localhost")] {
            let refused = try tp(["pull", "--store", client, dead, "org/big@v1"], env: env, ok: false)
            XCTAssertNotEqual(refused.status, 0)
            XCTAssertTrue(refused.stderr.contains(TestSupport.connectionRefusedText)
                          && refused.stderr.contains("run the same command again") && !refused.stderr.contains("error set"), refused.stderr)
        }
        XCTAssertEqual(packCount(client), staged, "a refused connection stores nothing")
        XCTAssertGreaterThan(staged, 0)

        // The server comes back (on another port): the pull resumes and moves only the rest.
        let url2 = try server()
        let resumed = try summary(try tp(["pull", "--store", client, url2, "org/big@v1", "--json"], env: env))
        XCTAssertGreaterThan(try XCTUnwrap(resumed["chunksPresent"] as? Int), 0)
        try tp(["get", "--store", client, "org/big@v1", root + "/got"])
        try assertSameFiles(base, root + "/got")
        try fsck(client)

        // A push killed mid-way: the server keeps the bundles that landed; the re-run sends the rest.
        let fresh = try makeModel("big3", seed: 900)
        try tp(["put", "--store", client, "--no-base", "org/big@v3", fresh])
        let serverPacks = packCount(serverStore)
        let pushStatus = try run(["push", "--store", client, url2, "org/big@v3"], env: env, killing: nil) { packCount(serverStore) >= serverPacks + 2 }
        XCTAssertNotEqual(pushStatus, 0)
        XCTAssertFalse(try tp(["ls", "--store", serverStore, "org/big"]).stdout.contains("v3"))
        let pushed = try summary(try tp(["push", "--store", client, url2, "org/big@v3", "--json"], env: env))
        XCTAssertGreaterThan(try XCTUnwrap(pushed["chunksPresent"] as? Int), 1)
        let r = try curl("-H", "Authorization: Bearer \(readToken)", url2 + "/org/big/resolve/v3/model.safetensors")
        XCTAssertEqual(r.body, try TestSupport.read(fresh + "/model.safetensors"))
        try fsck(serverStore)
        try fsck(client)
    }

    /// A gc that repacks the pack a pull is reading from (lock-free on the server) does not fail it.
    func testPullBesideAGcThatRepacksItsFramesCompletes() throws {
        let model = try makeModel("m1", seed: 800)
        // v1 = the model plus 40 MiB of junk in one pack; v2 = the model alone (every chunk shared).
        let junk = root + "/junk"
        try FileManager.default.createDirectory(atPath: junk, withIntermediateDirectories: true)
        try TestSupport.write(Array(try XCTUnwrap(FileHandle(forReadingAtPath: "/dev/urandom")).readData(ofLength: 40 << 20)), to: junk + "/junk.bin")
        try tp(["put", "--store", serverStore, "--no-base", "org/m@v1", model + "/model.safetensors", junk + "/junk.bin"])
        try tp(["put", "--store", serverStore, "--no-base", "org/m@v2", model + "/model.safetensors"])
        try tp(["rm", "--store", serverStore, "org/m@v1"])
        let url = try server()
        let client = root + "/client"
        try tp(["init", "--store", client])
        let pull = Process()
        pull.executableURL = URL(fileURLWithPath: TestSupport.tpstore)
        pull.arguments = ["pull", "--store", client, url, "org/m@v2", "--token", readToken]
        pull.environment = ProcessInfo.processInfo.environment.merging(["TPSTORE_TRANSFER_BUNDLE_MIB": "1"]) { $1 }
        let err = Pipe()
        pull.standardError = err
        pull.standardOutput = FileHandle.nullDevice
        try pull.run()
        let gc = try tp(["gc", "--store", serverStore])
        XCTAssertTrue(gc.stdout.contains("repack"), gc.stdout)
        pull.waitUntilExit()
        XCTAssertEqual(pull.terminationStatus, 0, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        try tp(["get", "--store", client, "org/m@v2", root + "/got"])
        XCTAssertEqual(try TestSupport.read(root + "/got/model.safetensors"), try TestSupport.read(model + "/model.safetensors"))
        try fsck(client)
        try fsck(serverStore)
    }

    /// A model of 4 random F32 tensors of 4 MiB each (16 one-MiB bundles), and a config file.
    /// A server whose frame answers are cut short (the head promises more than the body holds) or
    /// lack a frame asked for: the pull fails with a clear error, stores no revision and
    /// keeps the store clean; through the honest server it then completes.
    func testTruncatedOrWrongAnswersFailThePullAndStoreNothing() throws {
        let base = try makeModel("m1", seed: 700)
        try tp(["put", "--store", serverStore, "--no-base", "org/m@v1", base])
        try tp(["put", "--store", serverStore, "--no-base", "org/m@v2", root + "/m1/config.json"])
        let url = try server()
        let client = root + "/client"
        try tp(["init", "--store", client])
        for mode in ["truncate", "drop"] {
            let (port, process) = try liar(url, mode: mode)
            defer { process.terminate(); process.waitUntilExit() }
            let r = try tp(["pull", "--store", client, "http://127.0.0.1:\(port)", "org/m@v1", "--token", readToken], ok: false)
            XCTAssertNotEqual(r.status, 0, mode)
            XCTAssertTrue(mode == "truncate" ? r.stderr.contains("run the same command again") : r.stderr.contains("breaks the transfer protocol"),
                          "\(mode): \(r.stderr)")
            XCTAssertEqual(try tp(["ls", "--store", client]).stdout.contains("org/m"), false, mode)
            XCTAssertEqual(packCount(client), 0, "\(mode): the refused first bundle left nothing")
            try fsck(client)
        }
        try tp(["pull", "--store", client, url, "org/m@v1", "--token", readToken])
        try tp(["get", "--store", client, "org/m@v1", root + "/got"])
        try assertSameFiles(base, root + "/got")
    }

    /// A proxy in front of the server at `url` that misbehaves as `mode` says: `truncate` cuts a
    /// `frames` answer in half and closes the connection, `drop` asks the server for one frame
    /// fewer than the client did, `swallow` answers the first `chunks` bundle without passing it on.
    func liar(_ url: String, mode: String) throws -> (port: String, process: Process) {
        let py = try XCTUnwrap(TestSupport.python3())
        let script = root + "/liar.py"
        try TestSupport.write(Array("""
            import http.server, sys, urllib.request
            upstream, mode = sys.argv[1], sys.argv[2]
            swallowed = []
            class H(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def relay(self, body=None, path=None):
                    req = urllib.request.Request(upstream + (path or self.path), data=body, method=self.command,
                                                 headers={k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")})
                    try:
                        r = urllib.request.urlopen(req); status, data = r.status, r.read()
                    except urllib.error.HTTPError as e:
                        status, data = e.code, e.read()
                    return status, data
                def do_GET(self):
                    status, data = self.relay()
                    self.send_response(status); self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
                def do_POST(self):
                    body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    path = self.path
                    if path.endswith("/chunks") and mode == "swallow" and not swallowed:
                        # The first bundle is answered as staged but never reaches the server.
                        swallowed.append(path); data = b'{"frames":0}'
                        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
                        return
                    if "/frames/" in path and mode == "drop":
                        import json; ids = json.loads(body)["ids"]; body = json.dumps({"ids": ids[1:]}).encode()
                    status, data = self.relay(body, path)
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if "/frames/" in self.path and mode == "truncate":
                        self.wfile.write(data[: len(data) // 2]); self.wfile.flush(); self.close_connection = True
                        self.connection.shutdown(2)
                    else:
                        self.wfile.write(data)
                def log_message(self, *a): pass
            s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
            print(s.server_address[1], flush=True)
            s.serve_forever()
            """.utf8), to: script)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: py)
        process.arguments = [script, url, mode]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let port = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return (port, process)
    }

    func makeModel(_ name: String, seed: UInt64) throws -> String {
        let dir = root + "/" + name
        var b = SafetensorsBuilder()
        for t in 0 ..< 4 { b.add("w.\(t)", "F32", [2048, 512], SafetensorsBuilder.f32(1 << 20, seed: seed + UInt64(t))) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try TestSupport.write(b.bytes(), to: dir + "/model.safetensors")
        try TestSupport.write(Array("{\"seed\": \(seed)}\n".utf8), to: dir + "/config.json")
        return dir
    }

    // MARK: copy shares the importer

    func testCopyMovesEveryRevisionBitExactAndSkipsWhatIsThere() throws {
        let (base, ft) = try makePair(tensors: 3, elements: 256 << 10)
        let source = root + "/source", destination = root + "/destination"
        try tp(["put", "--store", source, "org/m@base", base])
        try tp(["put", "--store", source, "--base", "org/m@base", "org/m@ft", ft])
        let out = try tp(["copy", source, destination]).stdout
        XCTAssertTrue(out.contains("copied 2 revisions"), out)
        try tp(["get", "--store", destination, "org/m@ft", root + "/got"])
        try assertSameFiles(ft, root + "/got")
        XCTAssertLessThanOrEqual(try packBytes(destination), try packBytes(source))
        let again = try tp(["copy", source, destination]).stdout
        XCTAssertTrue(again.contains("copied 0 revisions (2 already there)"), again)
        try fsck(destination)
    }
}
