import Foundation
@testable import TenPakChunkStore
@testable import TenPakDistributed
import TenPakFormat
import TenPakTestSupport
import XCTest

/// What every catalog backend must do alike, checked on the catalog alone (no packs: pack names are
/// only names to it). This class runs on SQLite; `PostgresCatalogConformanceTests` runs every test
/// again on PostgreSQL (the servers of `DistributedServices`: a failure there, never a skip).
class CatalogConformanceTests: XCTestCase {
    /// A new, empty catalog of the backend under test.
    func makeCatalog() throws -> SQLCatalog {
        try SQLCatalog.sqlite(path: TestSupport.temporaryDirectory(self, "catalog") + "/catalog.db", create: true)
    }

    // MARK: builders

    /// A chunk id made from `n` (never a real chunk's).
    static func id(_ n: Int, salt: UInt8 = 0) -> ChunkID {
        var sha = [UInt8](repeating: salt, count: 32)
        withUnsafeBytes(of: UInt64(n).littleEndian) { sha.replaceSubrange(0 ..< 8, with: $0) }
        return ChunkID(xxh: XXH128(high: UInt64(n), low: UInt64(salt)), sha: Digest256(bytes: sha)!)
    }

    static func chunk(_ n: Int, pack: String, offset: Int = 0, base: ChunkID? = nil, depth: Int = 0, encoding: UInt8 = 1) -> NewChunk {
        NewChunk(id: id(n), rawLength: 1000 + n, pack: pack, frameOffset: offset, frameLength: 100 + n, encoding: encoding, base: base, depth: depth)
    }

    static let tensors = [
        TensorRecord(name: "embed.weight", dtype: "F32", shape: [300, 1024], begin: 100, end: 100 + 300 * 4096),
        TensorRecord(name: "layer.0.weight", dtype: "BF16", shape: [256, 256], begin: 100 + 300 * 4096, end: 100 + 300 * 4096 + 131_072),
        TensorRecord(name: "scalar", dtype: "F32", shape: [], begin: 0, end: 4),
    ]

    /// A commit of `chunks` (fresh, in `pack`) as one safetensors file using `uses` (default: the
    /// chunks), 1000 bytes each, plus an empty file, with manifest chunk `manifest`.
    static func revision(_ model: String, _ revision: String, pack: String?, chunks: [NewChunk], uses: [ChunkID]? = nil, manifest: Int,
                         fence: Int64? = nil, sketch: [UInt8]? = nil, createdAt: Int64 = 1_700_000_000,
                         tensors: [TensorRecord] = tensors, known: [ChunkID: Int64] = [:]) -> RevisionCommit {
        let manifestChunk = NewChunk(id: id(manifest), rawLength: 64, pack: pack ?? chunks.first?.pack ?? "", frameOffset: 9999,
                                     frameLength: 80, encoding: 0, base: nil, depth: 0)
        let used = uses ?? chunks.map(\.id)
        let sha = Digest256(bytes: [UInt8](repeating: 7, count: 32))!
        let weights = RevisionManifest.File(path: "model.safetensors", size: UInt64(used.count * 1000), sha256: sha, kind: .safetensors,
                                            chunks: used.map { RevisionManifest.ChunkRef(rawLength: 1000, id: $0) })
        let empty = RevisionManifest.File(path: "empty.bin", size: 0, sha256: sha, kind: .opaque, chunks: [])
        let record = RevisionManifest(model: model, revision: revision, createdAt: createdAt, baseReason: "no base", files: [weights, empty])
        return RevisionCommit(manifest: record, manifestChunk: manifestChunk, tensors: ["model.safetensors": tensors],
                              packs: pack.map { [(name: $0, size: 123_456)] } ?? [], chunks: chunks, gcFence: fence, sketch: sketch,
                              knownRowIDs: known)
    }

    func assertStoreError<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line,
                          _ check: (StoreError) -> Bool) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? StoreError else { return XCTFail("not a StoreError: \(error)", file: file, line: line) }
            XCTAssertTrue(check(e), "\(e)", file: file, line: line)
        }
    }

    // MARK: tests

    func testCommitAndReadBackRevisionsFilesChunksAndTensors() throws {
        let catalog = try makeCatalog()
        XCTAssertEqual(try catalog.integrityCheck(), [])
        let base = CatalogConformanceTests.chunk(1, pack: "p1", offset: 0)
        let delta = CatalogConformanceTests.chunk(2, pack: "p1", offset: 500, base: base.id, depth: 1, encoding: 3)
        let record = try catalog.commit(CatalogConformanceTests.revision("org/m", "v1", pack: "p1", chunks: [base, delta], manifest: 100,
                                                                         sketch: [1, 2, 3]))
        XCTAssertEqual(record.model, "org/m")
        XCTAssertEqual(record.revision, "v1")
        XCTAssertEqual(record.createdAt, 1_700_000_000)
        XCTAssertEqual(record.manifest, CatalogConformanceTests.id(100))
        XCTAssertEqual(try catalog.resolve(model: "org/m", revision: "v1"), record)
        XCTAssertEqual(try catalog.resolve(model: "org/m", revision: nil), record)
        XCTAssertEqual(try catalog.revisions(model: "org/m"), [record])
        XCTAssertEqual(try catalog.revisions(model: nil), [record])
        XCTAssertEqual(try catalog.revisions(rowIDs: [record.rowID, record.rowID, 999_999]), [record.rowID: record])

        let files = try catalog.files(revision: record)
        XCTAssertEqual(files.map(\.path), ["empty.bin", "model.safetensors"])
        XCTAssertEqual(files.map(\.kind), [.opaque, .safetensors])
        XCTAssertEqual(files[1].size, 2000)
        let chunks = try catalog.fileChunks(file: files[1])
        XCTAssertEqual(chunks.map(\.offset), [0, 1000])
        XCTAssertEqual(chunks.map(\.location.id), [base.id, delta.id])
        let d = chunks[1].location
        XCTAssertEqual([d.rawLength, d.frameOffset, d.frameLength, d.depth], [1002, 500, 102, 1])
        XCTAssertEqual(d.pack, "p1")
        XCTAssertEqual(d.encoding, 3)
        XCTAssertEqual(d.baseRowID, chunks[0].location.rowID)
        XCTAssertNil(chunks[0].location.baseRowID)
        XCTAssertEqual(try catalog.fileChunks(file: files[0]), [])
        XCTAssertEqual(try catalog.tensors(file: files[1]), CatalogConformanceTests.tensors.sorted { ($0.begin, $0.name) < ($1.begin, $1.name) })
        XCTAssertEqual(try catalog.tensors(file: files[1]).first?.shape, [])

        let found = try catalog.findChunks([base.id, delta.id, CatalogConformanceTests.id(77)])
        XCTAssertEqual(Set(found.keys), [base.id, delta.id])
        XCTAssertEqual(found[delta.id], d)
        XCTAssertEqual(try catalog.chunk(rowID: d.rowID), d)
        XCTAssertNil(try catalog.chunk(rowID: 999_999))
        XCTAssertEqual(try catalog.chunks(rowIDs: [d.rowID, 999_999]), [d.rowID: d])
        XCTAssertEqual(try catalog.sketches(revisionRowIDs: [record.rowID]), [record.rowID: [1, 2, 3]])
        // The manifest is a chunk too, and live; both file chunks are live.
        XCTAssertEqual(try catalog.allChunks().count, 3)
        XCTAssertEqual(try catalog.liveChunkRowIDs().count, 3)
        XCTAssertEqual(try catalog.packs().map(\.name), ["p1"])
        XCTAssertEqual(try catalog.integrityCheck(), [])
    }

    /// A second commit may share chunks with the first and add deltas against them; a chunk already
    /// in the catalog (a concurrent put stored it first) is kept as it is.
    func testSharedChunksAndChunksAlreadyThere() throws {
        let catalog = try makeCatalog()
        let a = CatalogConformanceTests.chunk(1, pack: "p1")
        let first = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p1", chunks: [a], manifest: 100))
        let again = NewChunk(id: a.id, rawLength: a.rawLength, pack: "p2", frameOffset: 7, frameLength: a.frameLength, encoding: a.encoding,
                             base: nil, depth: 0)
        let b = CatalogConformanceTests.chunk(2, pack: "p2", base: a.id, depth: 1)
        let second = try catalog.commit(CatalogConformanceTests.revision("m", "v2", pack: "p2", chunks: [again, b], uses: [a.id, b.id], manifest: 101))
        let location = try XCTUnwrap(try catalog.findChunks([a.id])[a.id])
        XCTAssertEqual(location.pack, "p1", "the row stored first stays")
        let chunks = try catalog.fileChunks(file: try catalog.files(revision: second)[1])
        XCTAssertEqual(chunks.map(\.location.rowID), [location.rowID, try XCTUnwrap(try catalog.findChunks([b.id])[b.id]).rowID])
        XCTAssertEqual(chunks[1].location.baseRowID, location.rowID)
        XCTAssertEqual(try catalog.revisions(model: "m").map(\.revision), ["v1", "v2"])
        XCTAssertEqual(try catalog.resolve(model: "m", revision: nil), second)
        // The older revision is where the shared chunk counts; the newer one adds only its delta.
        let shared = try catalog.storedBytes(file: try catalog.files(revision: second)[1])
        XCTAssertEqual([shared.stored, shared.delta, shared.shared, shared.fresh], [b.frameLength, 1, 1, 0])
        let own = try catalog.storedBytes(file: try catalog.files(revision: first)[1])
        XCTAssertEqual([own.stored, own.delta, own.shared, own.fresh], [a.frameLength, 0, 0, 1])
        XCTAssertEqual(own.encodings, [a.encoding: 1])
    }

    /// Row ids a writer passes for the chunks it shares and codes against are checked against the
    /// rows, never trusted: a wrong or unknown one is looked up by hash instead.
    func testKnownRowIDsAreCheckedNotTrusted() throws {
        let catalog = try makeCatalog()
        let a = CatalogConformanceTests.chunk(1, pack: "p1"), c = CatalogConformanceTests.chunk(3, pack: "p1", offset: 50)
        _ = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p1", chunks: [a, c], manifest: 100))
        let found = try catalog.findChunks([a.id, c.id])
        let rowA = try XCTUnwrap(found[a.id]).rowID, rowC = try XCTUnwrap(found[c.id]).rowID
        let b = CatalogConformanceTests.chunk(2, pack: "p2", base: a.id, depth: 1)
        let d = CatalogConformanceTests.chunk(4, pack: "p2", offset: 60, base: c.id, depth: 1)
        // a's given row is c's, c's is right, and an id the revision does not use names a row that does not exist.
        let known = [a.id: rowC, c.id: rowC, CatalogConformanceTests.id(77): 999_999]
        let second = try catalog.commit(CatalogConformanceTests.revision("m", "v2", pack: "p2", chunks: [b, d], uses: [b.id, c.id, d.id, a.id],
                                                                          manifest: 101, known: known))
        let rows = try catalog.fileChunks(file: try catalog.files(revision: second)[1]).map(\.location)
        XCTAssertEqual(rows.map(\.id), [b.id, c.id, d.id, a.id])
        XCTAssertEqual(rows[1].rowID, rowC)
        XCTAssertEqual(rows[3].rowID, rowA, "a's wrong row id was not used")
        XCTAssertEqual(rows[0].baseRowID, rowA)
        XCTAssertEqual(rows[2].baseRowID, rowC)
    }

    func testRevisionExistsAndNotFoundAreTyped() throws {
        let catalog = try makeCatalog()
        _ = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p1", chunks: [CatalogConformanceTests.chunk(1, pack: "p1")], manifest: 100))
        assertStoreError(try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p2", chunks: [CatalogConformanceTests.chunk(2, pack: "p2")],
                                                                            manifest: 101))) {
            if case .revisionExists(model: "m", revision: "v1") = $0 { return true }
            return false
        }
        // Nothing of the refused commit stayed (one transaction).
        XCTAssertEqual(try catalog.packs().map(\.name), ["p1"])
        XCTAssertTrue(try catalog.findChunks([CatalogConformanceTests.id(2)]).isEmpty)
        assertStoreError(try catalog.resolve(model: "m", revision: "v9")) { $0.missing == .revision(model: "m", revision: "v9") }
        assertStoreError(try catalog.resolve(model: "nobody", revision: nil)) { $0.missing == .model("nobody") }
        // A chunk naming a pack the catalog does not know, or a delta whose base is nowhere.
        assertStoreError(try catalog.commit(CatalogConformanceTests.revision("m", "v2", pack: nil, chunks: [CatalogConformanceTests.chunk(3, pack: "nowhere")],
                                                                            manifest: 102))) {
            if case .invalidRequest = $0 { return true }
            return false
        }
        let orphan = CatalogConformanceTests.chunk(4, pack: "p4", base: CatalogConformanceTests.id(55), depth: 1)
        assertStoreError(try catalog.commit(CatalogConformanceTests.revision("m", "v2", pack: "p4", chunks: [orphan], manifest: 103))) {
            if case .corrupt = $0 { return true }
            return false
        }
        // A file size past what the catalog stores is refused, not trapped on.
        let huge = RevisionManifest(model: "m", revision: "v3", createdAt: 1, files: [
            RevisionManifest.File(path: "huge.bin", size: UInt64.max, sha256: Digest256(bytes: [UInt8](repeating: 1, count: 32))!, kind: .opaque, chunks: []),
        ])
        assertStoreError(try catalog.commit(RevisionCommit(manifest: huge, manifestChunk: CatalogConformanceTests.chunk(5, pack: "p1"), tensors: [:],
                                                           packs: [], chunks: [], gcFence: nil))) {
            if case .invalidRequest = $0 { return true }
            return false
        }
        XCTAssertEqual(try catalog.revisions(model: nil).map(\.revision), ["v1"])
    }

    /// The gc fence: a commit whose writer read a generation before a gc started is refused, typed,
    /// and stores nothing; generations only grow and are at least the time in milliseconds.
    func testFenceRefusesCommitsAfterAGcStarted() throws {
        let catalog = try makeCatalog()
        let before = try catalog.gcGeneration()
        XCTAssertEqual(before, 0)
        let ok = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p1", chunks: [CatalogConformanceTests.chunk(1, pack: "p1")],
                                                                     manifest: 100, fence: before))
        XCTAssertEqual(ok.revision, "v1")
        let started = try catalog.beginCollection()
        XCTAssertGreaterThan(started, Int64(Date().timeIntervalSince1970 * 1000) - 60_000)
        XCTAssertEqual(try catalog.gcGeneration(), started)
        XCTAssertGreaterThan(try catalog.beginCollection(), started)
        assertStoreError(try catalog.commit(CatalogConformanceTests.revision("m", "v2", pack: "p2", chunks: [CatalogConformanceTests.chunk(2, pack: "p2")],
                                                                            manifest: 101, fence: before))) {
            if case .fenced(.revision(model: "m", revision: "v2")) = $0 { return true }
            return false
        }
        assertStoreError(try catalog.commitChunks(ChunkCommit(packs: [(name: "p3", size: 1)], chunks: [CatalogConformanceTests.chunk(3, pack: "p3")],
                                                              gcFence: before))) {
            if case .fenced(.chunks(count: 1)) = $0 { return true }
            return false
        }
        XCTAssertEqual(try catalog.packs().map(\.name), ["p1"])
        // Without a fence (a writer holding the exclusive lock) the commit goes through.
        _ = try catalog.commit(CatalogConformanceTests.revision("m", "v2", pack: "p2", chunks: [CatalogConformanceTests.chunk(2, pack: "p2")], manifest: 101))
    }

    /// Chunks received ahead of their revision (transfer protocol): recorded, unreferenced (so gc's
    /// mark leaves them out) until a revision commit uses them.
    func testCommitChunksThenARevisionUsesThem() throws {
        let catalog = try makeCatalog()
        let a = CatalogConformanceTests.chunk(1, pack: "staged")
        let b = CatalogConformanceTests.chunk(2, pack: "staged", offset: 300, base: a.id, depth: 1)
        try catalog.commitChunks(ChunkCommit(packs: [(name: "staged", size: 4096)], chunks: [a, b], gcFence: try catalog.gcGeneration()))
        XCTAssertEqual(Set(try catalog.findChunks([a.id, b.id]).keys), [a.id, b.id])
        XCTAssertTrue(try catalog.liveChunkRowIDs().isEmpty)
        // The revision commit names no new chunk, only the manifest in a pack of its own.
        let record = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "manifests", chunks: [], uses: [a.id, b.id], manifest: 100))
        XCTAssertEqual(try catalog.fileChunks(file: try catalog.files(revision: record)[1]).map(\.location.pack), ["staged", "staged"])
        XCTAssertEqual(try catalog.liveChunkRowIDs().count, 3)
    }

    func testCandidateIndexAndSketches() throws {
        let catalog = try makeCatalog()
        let record = try catalog.commit(CatalogConformanceTests.revision("base", "v1", pack: "p1", chunks: [CatalogConformanceTests.chunk(1, pack: "p1")],
                                                                         manifest: 100))
        let wanted = TensorSignature.indexRows(CatalogConformanceTests.tensors)
        let all = wanted.reduce(0) { $0 + $1.bytes }
        let found = try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 10)
        XCTAssertEqual(found, [BaseCandidate(revisionRowID: record.rowID, matchedBytes: all)])
        XCTAssertEqual(try catalog.baseCandidates(wanted, minimumBytes: all + 1, limit: 10), [])
        XCTAssertEqual(try catalog.baseCandidates([], minimumBytes: 1, limit: 10), [])
        // Most bytes first, newest first among equals.
        let newer = try catalog.commit(CatalogConformanceTests.revision("base", "v2", pack: "p2", chunks: [CatalogConformanceTests.chunk(2, pack: "p2")],
                                                                        manifest: 101))
        XCTAssertEqual(try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 10).map(\.revisionRowID), [newer.rowID, record.rowID])
        XCTAssertEqual(try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 1).map(\.revisionRowID), [newer.rowID])

        XCTAssertEqual(try catalog.sketches(revisionRowIDs: [record.rowID]), [:])
        try catalog.putSketch(revisionRowID: record.rowID, sketch: [9, 9])
        try catalog.putSketch(revisionRowID: record.rowID, sketch: [4, 5, 6])
        XCTAssertEqual(try catalog.sketches(revisionRowIDs: [record.rowID, newer.rowID]), [record.rowID: [4, 5, 6]])
        // The candidate carries the coarse form of its sketch (none for bytes that are not a sketch).
        XCTAssertEqual(try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 10).map(\.coarseSketch), [nil, nil])
        let sketch = BaseSketch(entries: [BaseSketch.Entry(signature: 5, format: 2, values: (0 ..< 80).map { UInt8($0) })])
        try catalog.putSketch(revisionRowID: newer.rowID, sketch: sketch.encoded())
        let coarse = try XCTUnwrap(try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 1).first?.coarseSketch)
        XCTAssertEqual(try BaseSketch.decode(coarse).entries.first?.values, Array(0 ..< 32), "the first 16 BF16 samples")
        assertStoreError(try catalog.putSketch(revisionRowID: 999_999, sketch: [1])) {
            if case .notFound = $0 { return true }
            return false
        }
        // Removal takes the index rows and the sketch with it.
        try catalog.remove(revision: record, tombstonePack: (name: "t1", size: 10))
        XCTAssertEqual(try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 10).map(\.revisionRowID), [newer.rowID])
        XCTAssertEqual(try catalog.sketches(revisionRowIDs: [record.rowID]), [:])
    }

    /// Revisions of several architectures that match the same bytes come newest first across them
    /// (read one architecture at a time, then merged), and so do those of more architectures than
    /// are read one by one (one sorted statement).
    func testCandidatesOfArchitecturesMatchingEqualBytesComeNewestFirst() throws {
        let catalog = try makeCatalog()
        let shared = Array(CatalogConformanceTests.tensors.prefix(2))
        let wanted = TensorSignature.indexRows(shared)
        let end = shared.map(\.end).max() ?? 0
        func commit(_ i: Int, architecture: Int) throws -> Int64 {
            let extra = TensorRecord(name: "extra.\(architecture)", dtype: "F32", shape: [1], begin: end, end: end + 4)
            return try catalog.commit(CatalogConformanceTests.revision("m\(i)", "v1", pack: "p\(i)", chunks: [CatalogConformanceTests.chunk(i, pack: "p\(i)")],
                                                                       manifest: 1000 + i, tensors: shared + [extra])).rowID
        }
        var rows: [Int64] = []
        for (i, architecture) in [0, 1, 0, 2, 1].enumerated() { rows.append(try commit(i + 1, architecture: architecture)) }
        XCTAssertEqual(try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 10).map(\.revisionRowID), rows.reversed())
        XCTAssertEqual(try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 2).map(\.revisionRowID), Array(rows.reversed().prefix(2)))
        for i in 0 ..< SQLCatalog.architecturesReadOneByOne { rows.append(try commit(10 + i, architecture: 3 + i)) }
        XCTAssertEqual(try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 100).map(\.revisionRowID), rows.reversed())
        XCTAssertEqual(try catalog.baseCandidates(wanted, minimumBytes: 1, limit: 3).map(\.revisionRowID), Array(rows.reversed().prefix(3)))
    }

    /// rm: a tombstone in its pack, the revision gone (and its model with its last revision), its
    /// chunks left for gc; removing it again is `notFound(.removed)`.
    func testRemoveRecordsATombstoneAndForgetsTheRevision() throws {
        let catalog = try makeCatalog()
        let v1 = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p1", chunks: [CatalogConformanceTests.chunk(1, pack: "p1")],
                                                                     manifest: 100))
        let v2 = try catalog.commit(CatalogConformanceTests.revision("m", "v2", pack: "p2", chunks: [], uses: [CatalogConformanceTests.id(1)], manifest: 101))
        try catalog.remove(revision: v1, tombstonePack: (name: "t1", size: 10))
        XCTAssertEqual(try catalog.revisions(model: "m"), [v2])
        XCTAssertEqual(try catalog.packs().filter(\.tombstones).map(\.name), ["t1"])
        assertStoreError(try catalog.remove(revision: v1, tombstonePack: (name: "t2", size: 10))) {
            $0.missing == .removed(model: "m", revision: "v1")
        }
        XCTAssertFalse(try catalog.packs().map(\.name).contains("t2"), "the failed rm's transaction stored nothing")
        try catalog.remove(revision: v2, tombstonePack: (name: "t3", size: 10))
        assertStoreError(try catalog.resolve(model: "m", revision: nil)) { $0.missing == .model("m") }
        XCTAssertEqual(try catalog.totals().models, 0)
        XCTAssertTrue(try catalog.liveChunkRowIDs().isEmpty)
        XCTAssertEqual(try catalog.allChunks().count, 3, "chunks stay until gc")
        // A rebuild records tombstones found in packs (the pack once, however many tombstones).
        let tombstone = RevisionTombstone(model: "m", revision: "v1", manifest: v1.manifest, removedAt: 1_700_000_100)
        try catalog.recordTombstone(tombstone, pack: (name: "t9", size: 10))
        try catalog.recordTombstone(tombstone, pack: (name: "t9", size: 10))
        XCTAssertEqual(try catalog.packs().filter(\.tombstones).map(\.name), ["t1", "t3", "t9"])
        XCTAssertEqual(try catalog.integrityCheck(), [])
    }

    /// gc's rows: mark (live chunks, bases kept transitively), then one transaction that records
    /// new packs, moves survivors, forgets dead chunks (bases of each other included) and dead packs.
    func testGcMarkAndSweepRows() throws {
        let catalog = try makeCatalog()
        let a = CatalogConformanceTests.chunk(1, pack: "p1")
        let b = CatalogConformanceTests.chunk(2, pack: "p1", offset: 100, base: a.id, depth: 1)
        let c = CatalogConformanceTests.chunk(3, pack: "p1", offset: 200, base: b.id, depth: 2)
        let dead1 = CatalogConformanceTests.chunk(4, pack: "p1", offset: 300)
        let dead2 = CatalogConformanceTests.chunk(5, pack: "p1", offset: 400, base: dead1.id, depth: 1)
        try catalog.commitChunks(ChunkCommit(packs: [(name: "p1", size: 1000)], chunks: [a, b, c, dead1, dead2], gcFence: nil))
        let keep = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p2", chunks: [], uses: [c.id], manifest: 100))
        let rows = try catalog.findChunks([a.id, b.id, c.id, dead1.id, dead2.id, keep.manifest])
        let live = try catalog.liveChunkRowIDs()
        XCTAssertEqual(live, Set([a, b, c].compactMap { rows[$0.id]?.rowID } + [try XCTUnwrap(rows[keep.manifest]).rowID]), "c's bases are live through it")
        let deadRows = try [dead2, dead1].map { try XCTUnwrap(rows[$0.id]).rowID }
        let moved = try [a, b, c].enumerated().map { (rowID: try XCTUnwrap(rows[$1.id]).rowID, pack: "repacked", offset: $0 * 10) }
        try catalog.applyCollection(newPacks: [(name: "repacked", size: 30)], moved: moved, deadChunks: deadRows, deadPacks: ["p1"])
        XCTAssertEqual(try catalog.packs().map(\.name), ["p2", "repacked"])
        XCTAssertEqual(try catalog.allChunks().map(\.pack), ["p2", "repacked", "repacked", "repacked"])
        XCTAssertEqual(try catalog.allChunks().filter { $0.pack == "repacked" }.map(\.frameOffset), [0, 10, 20])
        XCTAssertTrue(try catalog.findChunks([dead1.id, dead2.id]).isEmpty)
        let c2 = try XCTUnwrap(try catalog.findChunks([c.id])[c.id])
        XCTAssertEqual(c2.baseRowID, rows[b.id]?.rowID)
        XCTAssertEqual(try catalog.integrityCheck(), [])
    }

    /// gc's survey agrees with the mark computed from every chunk (the live set and `allChunks`):
    /// live bytes per pack (bases kept through chains, a pack with no live frame at 0, tombstone
    /// packs flagged), the dead chunks, and the live chunks of chosen packs in frame order.
    func testCollectionSurveyMatchesTheMarkOverEveryChunk() throws {
        let catalog = try makeCatalog()
        let a = CatalogConformanceTests.chunk(1, pack: "p1")
        let b = CatalogConformanceTests.chunk(2, pack: "p2", offset: 100, base: a.id, depth: 1)
        let c = CatalogConformanceTests.chunk(3, pack: "p1", offset: 200, base: b.id, depth: 2)
        let dead1 = CatalogConformanceTests.chunk(4, pack: "p1", offset: 300)
        let dead2 = CatalogConformanceTests.chunk(5, pack: "p3", offset: 0, base: dead1.id, depth: 1)
        let shared = CatalogConformanceTests.chunk(6, pack: "p2", offset: 50)
        try catalog.commitChunks(ChunkCommit(packs: [(name: "p1", size: 1000), (name: "p2", size: 900), (name: "p3", size: 50)],
                                             chunks: [a, b, c, dead1, dead2, shared], gcFence: nil))
        _ = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p4", chunks: [], uses: [c.id, shared.id], manifest: 100))
        let gone = try catalog.commit(CatalogConformanceTests.revision("m", "v2", pack: "p5", chunks: [], uses: [shared.id], manifest: 101))
        try catalog.remove(revision: gone, tombstonePack: (name: "t1", size: 10))

        let survey = try catalog.collectionSurvey()
        let live = try catalog.liveChunkRowIDs()
        let all = try catalog.allChunks()
        var expected: [String: Int] = [:]
        for chunk in all where live.contains(chunk.rowID) { expected[chunk.pack, default: 0] += chunk.frameLength }
        XCTAssertEqual(survey.packs.map(\.name), try catalog.packs().map(\.name))
        for pack in survey.packs { XCTAssertEqual(pack.liveBytes, expected[pack.name] ?? 0, pack.name) }
        XCTAssertEqual(survey.packs.filter(\.tombstones).map(\.name), ["t1"])
        XCTAssertEqual(survey.packs.first { $0.name == "p3" }?.liveBytes, 0)
        XCTAssertEqual(survey.packs.first { $0.name == "p5" }?.liveBytes, 0, "the removed revision's manifest is dead")
        let deadRows = all.filter { !live.contains($0.rowID) }
        XCTAssertEqual(survey.dead.map(\.rowID), deadRows.map(\.rowID).sorted())
        XCTAssertEqual(survey.dead.map(\.frameLength), deadRows.sorted { $0.rowID < $1.rowID }.map(\.frameLength))
        XCTAssertEqual(Set(deadRows.map(\.id)), [dead1.id, dead2.id, CatalogConformanceTests.id(101)])
        let copied = try catalog.liveChunks(inPacks: ["p2", "p1", "p3"])
        XCTAssertEqual(copied.map(\.id), [a.id, c.id, shared.id, b.id], "p1 then p2, each in frame order; dead ones left out")
        XCTAssertEqual(try catalog.liveChunks(inPacks: []), [])
        // Pages of rows by row id (fsck's reads) cover every chunk once, in row order.
        var paged: [ChunkLocation] = []
        var after: Int64 = 0
        while case let page = try catalog.chunkPage(after: after, limit: 3), let last = page.last {
            XCTAssertLessThanOrEqual(page.count, 3)
            paged += page
            after = last.rowID
        }
        XCTAssertEqual(paged, all.sorted { $0.rowID < $1.rowID })
    }

    /// A catalog with the indexes earlier versions made (the index of chunks by base; not those of
    /// the foreign keys gc's sweep deletes under) is left as it is when opened (opening writes
    /// nothing) and gets this version's indexes from gc's sweep. The index of chunks by base is not
    /// kept (every put of a fine-tune of a popular base would write a leaf of it per new chunk): the
    /// sweep makes it for its own transaction and drops it. The database still refuses to delete a
    /// chunk that a surviving chunk is stored against, and the refused sweep changes nothing.
    func testTheSweepMakesTheIndexesItNeedsAndKeepsNoIndexByBase() throws {
        let catalog = try makeCatalog()
        let connection = catalog.backend
        let keyIndexes = ["revisions_by_manifest", "tombstones_by_pack"]
        func indexes() throws -> [String] { try (keyIndexes + ["chunks_by_base"]).filter { try connection.indexExists($0) } }
        XCTAssertEqual(try indexes(), keyIndexes, "a new catalog")
        for index in keyIndexes { try connection.query("DROP INDEX \(index)") }
        try connection.query("CREATE INDEX chunks_by_base ON chunks(base_id)")
        let reopened = try SQLCatalog(connection: connection, create: false)
        XCTAssertEqual(try indexes(), ["chunks_by_base"], "opening an earlier catalog changes nothing")

        let a = CatalogConformanceTests.chunk(1, pack: "p1")
        let b = CatalogConformanceTests.chunk(2, pack: "p1", offset: 100, base: a.id, depth: 1)
        let dead = CatalogConformanceTests.chunk(3, pack: "p1", offset: 200)
        let deadOnDead = CatalogConformanceTests.chunk(4, pack: "p1", offset: 300, base: dead.id, depth: 1)
        try reopened.commitChunks(ChunkCommit(packs: [(name: "p1", size: 1000)], chunks: [a, b, dead, deadOnDead], gcFence: nil))
        _ = try reopened.commit(CatalogConformanceTests.revision("m", "v1", pack: "p2", chunks: [], uses: [b.id], manifest: 100))
        let rows = try reopened.findChunks([a.id, dead.id, deadOnDead.id])
        let (baseRow, deadRows) = (try XCTUnwrap(rows[a.id]).rowID, try [dead, deadOnDead].map { try XCTUnwrap(rows[$0.id]).rowID })
        // A sweep told (wrongly) that a live chunk's base is dead: refused whole.
        assertStoreError(try reopened.applyCollection(newPacks: [], moved: [], deadChunks: deadRows + [baseRow], deadPacks: [])) {
            if case .catalog = $0 { return true }
            return false
        }
        XCTAssertEqual(Set(try reopened.findChunks([a.id, b.id, dead.id, deadOnDead.id]).keys), [a.id, b.id, dead.id, deadOnDead.id],
                       "the refused sweep deleted nothing")
        XCTAssertEqual(try indexes(), ["chunks_by_base"], "the refused sweep's indexes rolled back with it")
        try reopened.applyCollection(newPacks: [], moved: [], deadChunks: deadRows, deadPacks: [])
        XCTAssertEqual(Set(try reopened.findChunks([a.id, b.id, dead.id, deadOnDead.id]).keys), [a.id, b.id])
        XCTAssertEqual(try indexes(), keyIndexes, "the sweep made the key indexes and dropped the index by base")
        XCTAssertEqual(try reopened.findChunks([b.id])[b.id]?.baseRowID, baseRow)
        XCTAssertEqual(try reopened.integrityCheck(), [])
    }

    func testStatsTotals() throws {
        let catalog = try makeCatalog()
        var t = try catalog.totals()
        XCTAssertEqual([t.models, t.revisions, t.files, t.chunks, t.packs, t.packBytes, t.logicalBytes], [0, 0, 0, 0, 0, 0, 0])
        let a = CatalogConformanceTests.chunk(1, pack: "p1", encoding: 1)
        let b = CatalogConformanceTests.chunk(2, pack: "p1", base: a.id, depth: 1, encoding: 3)
        _ = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p1", chunks: [a, b], manifest: 100))
        _ = try catalog.commit(CatalogConformanceTests.revision("n", "v1", pack: "p2", chunks: [], uses: [a.id], manifest: 101))
        t = try catalog.totals()
        XCTAssertEqual([t.models, t.revisions, t.files, t.packs, t.packBytes, t.logicalBytes, t.deltaChunks], [2, 2, 4, 2, 246_912, 3000, 1])
        XCTAssertEqual([t.chunks, t.chunkRawBytes, t.chunkStoredBytes], [2, 1001 + 1002, 101 + 102])
        XCTAssertEqual(t.byEncoding[1]?.count, 1)
        XCTAssertEqual(t.byEncoding[3]?.stored, 102)
    }

    func testAnnotationsPerRevisionReplacedAndRemovedWithIt() throws {
        let catalog = try makeCatalog()
        let record = try catalog.commit(CatalogConformanceTests.revision("m", "v1", pack: "p1", chunks: [CatalogConformanceTests.chunk(1, pack: "p1")],
                                                                         manifest: 100))
        XCTAssertNil(try catalog.annotation(revision: record, optimizerVersion: "1", parameters: "{}"))
        let first = AnnotationRecord(revisionRowID: record.rowID, optimizerVersion: "1", parameters: "{\"b\":2}", createdAt: 10, result: "{\"x\":1}")
        let other = AnnotationRecord(revisionRowID: record.rowID, optimizerVersion: "1", parameters: "{\"a\":1}", createdAt: 10, result: "{}")
        try catalog.putAnnotation(first)
        try catalog.putAnnotation(other)
        let replaced = AnnotationRecord(revisionRowID: record.rowID, optimizerVersion: "1", parameters: "{\"b\":2}", createdAt: 20, result: "{\"x\":2}")
        try catalog.putAnnotation(replaced)
        XCTAssertEqual(try catalog.annotation(revision: record, optimizerVersion: "1", parameters: "{\"b\":2}"), replaced)
        XCTAssertEqual(try catalog.annotations(revision: record), [other, replaced], "oldest first")
        assertStoreError(try catalog.putAnnotation(AnnotationRecord(revisionRowID: 999_999, optimizerVersion: "1", parameters: "{}", createdAt: 1,
                                                                    result: "{}"))) {
            if case .notFound = $0 { return true }
            return false
        }
        try catalog.remove(revision: record, tombstonePack: (name: "t1", size: 1))
        XCTAssertEqual(try catalog.annotations(revision: record), [])
    }

    /// Names and paths are any UTF-8 (within what `Names` allows), found exactly and listed in byte
    /// order (UTF-8 code point order) on every backend, whatever the database's locale.
    func testUnicodeNamesAndByteOrder() throws {
        let catalog = try makeCatalog()
        let models = ["zeta/m", "Zeta/m", "émile/m", "日本/モデル", "a b/c", "a_b/c", "ab/c", "🙂/m"]
        for (i, model) in models.enumerated() {
            let commit = CatalogConformanceTests.revision(model, "rév-\(i)", pack: "p\(i)", chunks: [CatalogConformanceTests.chunk(i + 1, pack: "p\(i)")],
                                                          manifest: 100 + i)
            _ = try catalog.commit(commit)
            XCTAssertEqual(try catalog.resolve(model: model, revision: "rév-\(i)").model, model)
        }
        let bytewise = models.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        XCTAssertEqual(try catalog.revisions(model: nil).map(\.model), bytewise)
        assertStoreError(try catalog.resolve(model: "zeta/M", revision: nil)) { $0.missing == .model("zeta/M") }
        // File paths and pack names in byte order too.
        let sha = Digest256(bytes: [UInt8](repeating: 1, count: 32))!
        let paths = ["b.bin", "B.bin", "é.bin", "e.bin", "z/ü.txt", "Z.txt"]
        let files = paths.map { RevisionManifest.File(path: $0, size: 0, sha256: sha, kind: .opaque, chunks: []) }
        let manifest = NewChunk(id: CatalogConformanceTests.id(200), rawLength: 1, pack: "Pz", frameOffset: 0, frameLength: 1, encoding: 0,
                                base: nil, depth: 0)
        let record = try catalog.commit(RevisionCommit(manifest: RevisionManifest(model: "paths", revision: "v1", createdAt: 1, files: files),
                                                       manifestChunk: manifest, tensors: [:], packs: [(name: "Pz", size: 1)], chunks: [], gcFence: nil))
        XCTAssertEqual(try catalog.files(revision: record).map(\.path), paths.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        let packs = try catalog.packs().map(\.name)
        XCTAssertEqual(packs, packs.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        XCTAssertEqual(packs.first, "Pz")
    }

    /// Lists longer than one statement carries (over 1000 ids) are split and answered whole.
    func testLargeBatchesOfIDs() throws {
        let catalog = try makeCatalog()
        let count = 2500
        var chunks: [NewChunk] = []
        for n in 1 ... count {
            // Every tenth chunk a delta against the one before: bases across statement boundaries.
            let base = n % 10 == 0 ? CatalogConformanceTests.id(n - 1) : nil
            chunks.append(CatalogConformanceTests.chunk(n, pack: "big", offset: n * 200, base: base, depth: base == nil ? 0 : 1))
        }
        let record = try catalog.commit(CatalogConformanceTests.revision("big", "v1", pack: "big", chunks: chunks, manifest: 100_000))
        let ids = chunks.map(\.id)
        let found = try catalog.findChunks(ids + [CatalogConformanceTests.id(999_999)])
        XCTAssertEqual(found.count, count)
        let file = try catalog.files(revision: record)[1]
        let fileChunks = try catalog.fileChunks(file: file)
        XCTAssertEqual(fileChunks.map(\.location.id), ids)
        XCTAssertEqual(fileChunks.map(\.offset), (0 ..< count).map { $0 * 1000 })
        let rowIDs = fileChunks.map(\.location.rowID)
        XCTAssertEqual(try catalog.chunks(rowIDs: rowIDs).count, count)
        XCTAssertEqual(fileChunks[9].location.baseRowID, rowIDs[8])
        XCTAssertEqual(try catalog.revisions(rowIDs: rowIDs + [record.rowID]).keys.sorted(), [record.rowID])
        XCTAssertEqual(try catalog.sketches(revisionRowIDs: rowIDs).count, 0)
        XCTAssertEqual(try catalog.liveChunkRowIDs().count, count + 1)
        // The sweep of more than one statement's worth of dead chunks.
        try catalog.remove(revision: record, tombstonePack: (name: "t", size: 1))
        try catalog.applyCollection(newPacks: [], moved: [], deadChunks: Array(try catalog.allChunks().map(\.rowID)), deadPacks: ["big"])
        XCTAssertEqual(try catalog.allChunks().count, 0)
        XCTAssertEqual(try catalog.packs().map(\.name), ["t"])
    }
}

extension StoreError {
    /// What a `notFound` is about (nil for any other case).
    var missing: Missing? {
        if case let .notFound(missing) = self { return missing }
        return nil
    }
}

/// SQLite only: the schema a new catalog gets is, byte for byte, the one earlier versions wrote
/// (existing catalogs open as they are), and a version-1 catalog is upgraded in place
/// (`BaseMatchingTests.testVersion1CatalogIsUpgradedInPlace` does it through a store).
final class SQLiteCatalogSchemaTests: XCTestCase {
    func testNewCatalogHasTheShippedSchemaText() throws {
        let path = TestSupport.temporaryDirectory(self, "catalog") + "/catalog.db"
        _ = try SQLCatalog.sqlite(path: path, create: true)
        let db = try SQLiteDatabase(path: path, create: false)
        let dump = try db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid").bind().rows { s in
            "\(s.text(0)) \(s.text(1)) \(s.text(2))\n\(s.isNull(3) ? "None" : s.text(3))\n\n"
        }.joined()
        let golden = String(decoding: try TestSupport.read(TestSupport.root + "/Tests/Golden/catalog-schema-sqlite.txt"), as: UTF8.self)
        XCTAssertEqual(dump, golden)
    }

    /// A write transaction keeps its statement journals in memory (a put's chunk rows would spill
    /// one to a temporary file in a large store), and leaves the connection's default after it,
    /// also when its body throws.
    func testWriteTransactionsKeepStatementJournalsInMemory() throws {
        let db = try SQLiteDatabase(path: TestSupport.temporaryDirectory(self, "catalog") + "/catalog.db", create: true)
        func tempStore() throws -> Int64? { try db.prepare("PRAGMA temp_store").bind().firstRow { $0.int(0) } }
        XCTAssertEqual(try tempStore(), 0)
        XCTAssertEqual(try db.transaction { try tempStore() }, 2)
        XCTAssertEqual(try tempStore(), 0)
        struct Abandoned: Error {}
        XCTAssertThrowsError(try db.transaction { () throws -> Void in throw Abandoned() })
        XCTAssertEqual(try tempStore(), 0)
        // `integrity_check` (fsck) opens SQLite's TEMP database; switching temporary storage then
        // closes it and re-reads the schema, and a write and its read-back still work.
        _ = try db.prepare("PRAGMA integrity_check").bind().rows { $0.text(0) }
        try db.execute("CREATE TABLE t (x INTEGER)")
        XCTAssertEqual(try db.transaction { () throws -> Int64? in
            try db.execute("INSERT INTO t VALUES (7)")
            return try tempStore()
        }, 2)
        XCTAssertEqual(try db.prepare("SELECT x FROM t").bind().firstRow { $0.int(0) }, 7)
        XCTAssertEqual(try tempStore(), 0)
    }

    func testPostgresSchemaIsTheSameTablesWithItsTypes() {
        let sqlite = CatalogSchema(dialect: .sqlite).all, postgres = CatalogSchema(dialect: .postgres).all
        XCTAssertEqual(sqlite.count, postgres.count)
        XCTAssertTrue(postgres.allSatisfy { !$0.contains("WITHOUT ROWID") && !$0.contains("BLOB") && !$0.contains("{") })
        XCTAssertTrue(postgres.contains { $0.contains("\"offset\" BIGINT NOT NULL") })
        XCTAssertTrue(postgres.contains { $0.contains("CREATE TABLE IF NOT EXISTS gc_runs (id BIGSERIAL PRIMARY KEY, started_at BIGINT NOT NULL)") })
    }

    func testPlaceholdersAreNumberedOutsideQuotes() {
        XCTAssertEqual(PostgresSQLConnection.numberPlaceholders("SELECT ?, '?', \"a?\" FROM t WHERE a = ? AND b IN (?, ?)"),
                       "SELECT $1, '?', \"a?\" FROM t WHERE a = $2 AND b IN ($3, $4)")
    }
}

/// Every conformance test again, on PostgreSQL (a fresh database per test).
final class PostgresCatalogConformanceTests: CatalogConformanceTests {
    override func makeCatalog() throws -> SQLCatalog {
        let config = try DistributedConfig.load(path: try DistributedServices.makeStoreConfig(self))
        return try SQLCatalog.postgres(config: config.postgres, create: true)
    }

    override func testCommitAndReadBackRevisionsFilesChunksAndTensors() throws { try super.testCommitAndReadBackRevisionsFilesChunksAndTensors() }
    override func testSharedChunksAndChunksAlreadyThere() throws { try super.testSharedChunksAndChunksAlreadyThere() }
    override func testKnownRowIDsAreCheckedNotTrusted() throws { try super.testKnownRowIDsAreCheckedNotTrusted() }
    override func testRevisionExistsAndNotFoundAreTyped() throws { try super.testRevisionExistsAndNotFoundAreTyped() }
    override func testFenceRefusesCommitsAfterAGcStarted() throws { try super.testFenceRefusesCommitsAfterAGcStarted() }
    override func testCommitChunksThenARevisionUsesThem() throws { try super.testCommitChunksThenARevisionUsesThem() }
    override func testCandidateIndexAndSketches() throws { try super.testCandidateIndexAndSketches() }
    override func testCandidatesOfArchitecturesMatchingEqualBytesComeNewestFirst() throws {
        try super.testCandidatesOfArchitecturesMatchingEqualBytesComeNewestFirst()
    }
    override func testRemoveRecordsATombstoneAndForgetsTheRevision() throws { try super.testRemoveRecordsATombstoneAndForgetsTheRevision() }
    override func testGcMarkAndSweepRows() throws { try super.testGcMarkAndSweepRows() }
    override func testTheSweepMakesTheIndexesItNeedsAndKeepsNoIndexByBase() throws {
        try super.testTheSweepMakesTheIndexesItNeedsAndKeepsNoIndexByBase()
    }
    override func testStatsTotals() throws { try super.testStatsTotals() }
    override func testAnnotationsPerRevisionReplacedAndRemovedWithIt() throws { try super.testAnnotationsPerRevisionReplacedAndRemovedWithIt() }
    override func testUnicodeNamesAndByteOrder() throws { try super.testUnicodeNamesAndByteOrder() }
    override func testLargeBatchesOfIDs() throws { try super.testLargeBatchesOfIDs() }
}
