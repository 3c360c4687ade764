import Foundation
import TenPakFormat

/// The catalog: which chunks exist and where, and which revisions and files are made of them.
///
/// The catalog is an index over the packs: everything in it except removals can be rebuilt from the
/// packs' frames. Implementations: `SQLiteCatalog` (local). A distributed store implements the same
/// protocol over a database server.
public protocol Catalog: AnyObject, Sendable {
    /// Looks up chunks by identity (XXH3-128 and SHA-256 must both match).
    func findChunks(_ ids: [ChunkID]) throws -> [ChunkID: ChunkLocation]
    func chunk(rowID: Int64) throws -> ChunkLocation?
    /// Several chunks by row id (ids not found are absent from the answer).
    func chunks(rowIDs: [Int64]) throws -> [Int64: ChunkLocation]
    /// Records a finished put in one transaction. Its packs must be durable before this is called.
    func commit(_ commit: RevisionCommit) throws -> RevisionRecord
    /// Records chunks received ahead of the revision that will use them (a transfer's staging,
    /// SPEC §19) in one transaction: their packs must be durable first. Nothing references them
    /// until a revision commit does; gc reclaims them if none ever does.
    func commitChunks(_ commit: ChunkCommit) throws
    /// How many gc runs have started (the fence `RevisionCommit.gcFence` is checked against).
    func gcGeneration() throws -> Int64
    /// Reconnects when the catalog was replaced under this process (by `fsck --repair`); true
    /// when it did. Called through `ChunkStore.reconnectIfCatalogReplaced`.
    func reopenIfReplaced() throws -> Bool
    /// Records that a gc is starting and returns the new generation: above every earlier one and at
    /// least the time in milliseconds, so a rebuilt catalog (which starts a generation of its own)
    /// still fences writers that read a generation from the catalog it replaced. Atomic with respect to
    /// commits: a commit that checked its fence before this either finishes first (and gc sees
    /// it) or is refused.
    func beginCollection() throws -> Int64
    /// The named revision, or the newest revision of the model when `revision` is nil.
    func resolve(model: String, revision: String?) throws -> RevisionRecord
    /// Revisions of one model (or all), oldest first.
    func revisions(model: String?) throws -> [RevisionRecord]
    func files(revision: RevisionRecord) throws -> [FileRecord]
    func fileChunks(file: FileRecord) throws -> [FileChunk]
    func tensors(file: FileRecord) throws -> [TensorRecord]
    /// Revisions by row id (ids not found are absent from the answer).
    func revisions(rowIDs: [Int64]) throws -> [Int64: RevisionRecord]

    // Base choice (SPEC §10): the candidate index and the revisions' content sketches.

    /// Revisions whose indexed tensor signatures cover at least `minimumBytes` of `signatures`'
    /// bytes, most first (newest first among equals), at most `limit`. Indexed: the work follows
    /// the number of matching revisions, not the size of the store.
    func baseCandidates(_ signatures: [TensorSignature.Weighted], minimumBytes: Int, limit: Int) throws -> [BaseCandidate]
    /// The stored sketches of these revisions (revisions without one are absent).
    func sketches(revisionRowIDs: [Int64]) throws -> [Int64: [UInt8]]
    /// Stores (or replaces) a revision's sketch: a missing or damaged one computed again from its
    /// chunks. Fails with `notFound` when the revision is gone.
    func putSketch(revisionRowID: Int64, sketch: [UInt8]) throws
    /// Forgets a revision (its chunks stay until gc finds them unreferenced), recording the sealed
    /// pack that holds its tombstone frame.
    func remove(revision: RevisionRecord, tombstonePack: (name: String, size: Int)) throws
    /// Records a tombstone found in a pack (a catalog rebuild), registering the pack if needed.
    func recordTombstone(_ tombstone: RevisionTombstone, pack: (name: String, size: Int)) throws
    func totals() throws -> CatalogTotals
    /// Stored (frame) bytes of the chunks a revision added to the store and of all it references.
    func storedBytes(file: FileRecord) throws -> (stored: Int, encodings: [UInt8: Int], delta: Int, shared: Int, fresh: Int)

    // Maintenance: fsck and gc.

    /// Problems the database itself reports (empty when healthy).
    func integrityCheck() throws -> [String]
    /// Every pack the catalog knows, with the size recorded when it was sealed, and whether it
    /// holds tombstones (which gc keeps: they stop a catalog rebuild from reviving removed revisions).
    func packs() throws -> [(name: String, size: Int, tombstones: Bool)]
    func allChunks() throws -> [ChunkLocation]
    /// Chunks some revision needs: used by a file or as a manifest, and the bases of those, transitively.
    func liveChunkRowIDs() throws -> Set<Int64>
    /// One transaction: record new packs, point moved chunks at their new frames, forget dead chunks
    /// and dead packs.
    func applyCollection(newPacks: [(name: String, size: Int)], moved: [(rowID: Int64, pack: String, offset: Int)],
                         deadChunks: [Int64], deadPacks: [String]) throws

    // Annotations: derived results about a revision (the optimizer's), removed with it.

    /// The annotation of a revision for one optimizer version and parameter string, if recorded.
    func annotation(revision: RevisionRecord, optimizerVersion: String, parameters: String) throws -> AnnotationRecord?
    /// Every annotation of a revision, oldest first.
    func annotations(revision: RevisionRecord) throws -> [AnnotationRecord]
    /// Records (or replaces) the annotation with the same revision, version and parameters. Fails
    /// with `notFound` when the revision was removed meanwhile.
    func putAnnotation(_ annotation: AnnotationRecord) throws
}

extension Catalog {
    /// A catalog whose tables are swapped in place (PostgreSQL's repair renames tables inside the
    /// live schema) is never replaced under its connections.
    public func reopenIfReplaced() throws -> Bool { false }
}

/// The local catalog: one SQLite database in WAL mode.
///
/// One connection per process, serialized by a lock: SQLite connections are not safe to share
/// between threads, and catalog work is small next to chunk coding.
public final class SQLiteCatalog: Catalog, @unchecked Sendable {
    // Safe: every use of `db` and `identity` happens inside `lock`.
    private var db: SQLiteDatabase
    private var identity: FileIdentity?
    private let lock = NSLock()
    public let path: String

    /// 2: the candidate index and sketches (`candidateSchema`). A version-1 catalog is upgraded in
    /// place when opened; a tpstore that knows only version 1 then refuses it ("upgrade tpstore"),
    /// because its commits would leave revisions out of the index.
    public static let schemaVersion = 2

    static let schema = """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS packs (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS chunks (
        id INTEGER PRIMARY KEY,
        xxh BLOB NOT NULL,
        sha BLOB NOT NULL,
        raw_length INTEGER NOT NULL,
        pack_id INTEGER NOT NULL REFERENCES packs(id),
        frame_offset INTEGER NOT NULL,
        frame_length INTEGER NOT NULL,
        encoding INTEGER NOT NULL,
        base_id INTEGER REFERENCES chunks(id),
        depth INTEGER NOT NULL,
        UNIQUE (xxh, sha));
    CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks(pack_id);
    CREATE INDEX IF NOT EXISTS chunks_by_base ON chunks(base_id);
    CREATE TABLE IF NOT EXISTS models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE IF NOT EXISTS revisions (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id),
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        base_model TEXT NOT NULL,
        base_revision TEXT NOT NULL,
        base_reason TEXT NOT NULL,
        manifest_chunk INTEGER NOT NULL REFERENCES chunks(id),
        UNIQUE (model_id, name));
    CREATE TABLE IF NOT EXISTS files (
        id INTEGER PRIMARY KEY,
        revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        kind INTEGER NOT NULL,
        UNIQUE (revision_id, path));
    CREATE TABLE IF NOT EXISTS file_chunks (
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        chunk_id INTEGER NOT NULL REFERENCES chunks(id),
        PRIMARY KEY (file_id, seq)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS file_chunks_by_chunk ON file_chunks(chunk_id);
    CREATE TABLE IF NOT EXISTS tensors (
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        dtype TEXT NOT NULL,
        shape TEXT NOT NULL,
        begin_offset INTEGER NOT NULL,
        end_offset INTEGER NOT NULL,
        PRIMARY KEY (file_id, name)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS tombstones (
        pack_id INTEGER NOT NULL REFERENCES packs(id),
        model TEXT NOT NULL,
        revision TEXT NOT NULL,
        manifest_xxh BLOB NOT NULL,
        manifest_sha BLOB NOT NULL,
        removed_at INTEGER NOT NULL);
    """ + annotationsSchema + candidateSchema

    /// Added after schema version 1 shipped; created on open when missing (additive, so the schema
    /// version stays 1 and older tpstore binaries simply ignore the table).
    static let annotationsSchema = """

    CREATE TABLE IF NOT EXISTS annotations (
        revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
        optimizer_version TEXT NOT NULL,
        parameters TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (revision_id, optimizer_version, parameters)) WITHOUT ROWID;
    """ + gcRunsSchema

    /// Also added after version 1 shipped: one row per gc run started, the fence of commits.
    static let gcRunsSchema = """

    CREATE TABLE IF NOT EXISTS gc_runs (id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL);
    """

    /// Schema version 2 (SPEC §9): the candidate index (tensor signature → revisions, written by
    /// each commit), each revision's content sketch, and revisions by model in id order (the newest
    /// revision of a model without a sort over all of them).
    static let candidateSchema = """

    CREATE TABLE IF NOT EXISTS tensor_index (
        signature INTEGER NOT NULL,
        revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
        bytes INTEGER NOT NULL,
        PRIMARY KEY (signature, revision_id)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS tensor_index_by_revision ON tensor_index(revision_id);
    CREATE TABLE IF NOT EXISTS revision_sketches (
        revision_id INTEGER PRIMARY KEY REFERENCES revisions(id) ON DELETE CASCADE,
        sketch BLOB NOT NULL);
    CREATE INDEX IF NOT EXISTS revisions_by_model ON revisions(model_id, id);
    """

    /// Opens (and with `create`, creates) the catalog at `path`.
    public init(path: String, create: Bool) throws {
        if !create, !FileSystem.isRegularFile(path) {
            throw StoreError.notAStore(path: FileSystem.parentDirectory(path), reason: "no catalog at \(path)")
        }
        self.path = path
        (db, identity) = try SQLiteCatalog.connect(path: path, create: create)
    }

    /// One connection to the catalog at `path`, its schema checked (and created or upgraded), and
    /// the identity of the file it opened.
    private static func connect(path: String, create: Bool) throws -> (SQLiteDatabase, FileIdentity?) {
        // Only `create` may make the file: a reconnect that raced a repair's rename must fail,
        // not leave an empty database where the rebuilt one is about to go.
        let db = try SQLiteDatabase(path: path, create: create)
        // Read right after the open: if the file is swapped later, the two differ.
        let identity = FileSystem.identity(path)
        try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        if create {
            try db.transaction {
                try db.execute(SQLiteCatalog.schema)
                try db.prepare("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)")
                    .bind(.text(String(SQLiteCatalog.schemaVersion))).run()
            }
        }
        let version = try db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").firstRow { $0.text(0) }
        guard let version, let number = Int(version) else {
            throw StoreError.notAStore(path: FileSystem.parentDirectory(path), reason: "\(path) has no TenPak schema")
        }
        guard number <= SQLiteCatalog.schemaVersion else {
            throw StoreError.invalidRequest("catalog schema version \(number) is newer than this tpstore (\(SQLiteCatalog.schemaVersion)): upgrade tpstore")
        }
        // Stores made before the annotations table existed get it now (a no-op when present).
        if try db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'annotations'").firstRow({ _ in true }) == nil {
            try db.execute(SQLiteCatalog.annotationsSchema)
        }
        if try db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gc_runs'").firstRow({ _ in true }) == nil {
            try db.execute(SQLiteCatalog.gcRunsSchema)
        }
        if number < 2 { try upgradeToVersion2(db) }
        return (db, identity)
    }

    /// Reopens the connection when `catalog.db` is no longer the file it opened (`fsck --repair`
    /// renamed a rebuilt catalog over it), so a long-lived process (`tpstore serve`) reads and
    /// commits into the live catalog instead of the one set aside. One `stat`; returns true when
    /// it reopened. Writers call it with the store lock held, so no repair is running; a reader
    /// calls it without, and then may catch the moment between a repair's two renames, when there
    /// is no `catalog.db`: it keeps its connection (to the old catalog, still whole) until the next look.
    public func reopenIfReplaced() throws -> Bool {
        try locked {
            guard let now = FileSystem.identity(path) else { return false }
            if let identity, identity.isSameFile(as: now) { return false }
            // The old connection must close without a checkpoint: that would delete
            // `catalog.db-wal` by name, which is now the new catalog's WAL.
            db.skipCheckpointOnClose()
            (db, identity) = try SQLiteCatalog.connect(path: path, create: false)
            return true
        }
    }

    /// Version 1 → 2 in place, in one transaction: the new tables, the index filled from the
    /// tensors already stored (linear in the store, once), then the version. Sketches of these
    /// revisions are made later (base choice computes a missing one from the revision's chunks;
    /// `fsck --repair` makes all of them). Two processes upgrading at once queue on the write lock;
    /// the second finds the work done.
    private static func upgradeToVersion2(_ db: SQLiteDatabase) throws {
        try db.transaction {
            let current = try db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").firstRow { $0.text(0) }
            guard let current, let number = Int(current), number < 2 else { return }
            try db.execute(SQLiteCatalog.candidateSchema)
            var byRevision: [Int64: [TensorRecord]] = [:]
            for (revision, tensor) in try db.prepare(CatalogSQL.tensorsByRevision).bind().rows({ s in
                (s.int(0), TensorRecord(name: s.text(1), dtype: s.text(2), shape: TensorRecord.shape(fromText: s.text(3)),
                                        begin: Int(s.int(4)), end: Int(s.int(5))))
            }) {
                byRevision[revision, default: []].append(tensor)
            }
            let insert = try db.prepare("INSERT OR IGNORE INTO tensor_index(signature, revision_id, bytes) VALUES (?, ?, ?)")
            for (revision, tensors) in byRevision {
                for row in TensorSignature.indexRows(tensors) {
                    try insert.bind(.int(row.signature), .int(revision), .int(row.bytes)).run()
                }
            }
            try db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").bind(.text(String(SQLiteCatalog.schemaVersion))).run()
        }
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    static let chunkColumns = "c.id, c.xxh, c.sha, c.raw_length, p.name, c.frame_offset, c.frame_length, c.encoding, c.base_id, c.depth"

    static func location(_ s: Statement, from column: Int32 = 0) throws -> ChunkLocation {
        guard let xxh = XXH128(bytes: s.blob(column + 1)), let sha = Digest256(bytes: s.blob(column + 2)) else {
            throw StoreError.corrupt("catalog row for chunk \(s.int(column)) has a malformed id")
        }
        return ChunkLocation(rowID: s.int(column), id: ChunkID(xxh: xxh, sha: sha), rawLength: Int(s.int(column + 3)),
                             pack: s.text(column + 4), frameOffset: Int(s.int(column + 5)), frameLength: Int(s.int(column + 6)),
                             encoding: UInt8(truncatingIfNeeded: s.int(column + 7)),
                             baseRowID: s.isNull(column + 8) ? nil : s.int(column + 8), depth: Int(s.int(column + 9)))
    }

    public func findChunks(_ ids: [ChunkID]) throws -> [ChunkID: ChunkLocation] {
        try locked {
            let stmt = try db.prepare("SELECT \(SQLiteCatalog.chunkColumns) FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE c.xxh = ? AND c.sha = ?")
            var found: [ChunkID: ChunkLocation] = [:]
            for id in ids {
                if let loc = try stmt.bind(.blob(id.xxh.bytes), .blob(id.sha.bytes)).firstRow({ try SQLiteCatalog.location($0) }) {
                    found[id] = loc
                }
            }
            return found
        }
    }

    public func chunks(rowIDs: [Int64]) throws -> [Int64: ChunkLocation] {
        try locked {
            let find = try db.prepare("SELECT \(SQLiteCatalog.chunkColumns) FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE c.id = ?")
            var found: [Int64: ChunkLocation] = [:]
            for id in Set(rowIDs) {
                if let location = try find.bind(.int(id)).firstRow({ try SQLiteCatalog.location($0) }) { found[id] = location }
            }
            return found
        }
    }

    public func chunk(rowID: Int64) throws -> ChunkLocation? {
        try locked {
            try db.prepare("SELECT \(SQLiteCatalog.chunkColumns) FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE c.id = ?")
                .bind(.int(rowID)).firstRow { try SQLiteCatalog.location($0) }
        }
    }

    public func commit(_ commit: RevisionCommit) throws -> RevisionRecord {
        try locked {
            try db.transaction {
                // BEGIN IMMEDIATE serializes this with gc's beginCollection: the check holds to COMMIT.
                if let fence = commit.gcFence, try generation() != fence {
                    throw StoreError.fencedCommit(model: commit.model, revision: commit.revision)
                }
                let rowID = try insertPacksAndChunks(packs: commit.packs, chunks: commit.chunks + [commit.manifest])
                try db.prepare("INSERT OR IGNORE INTO models(name) VALUES (?)").bind(.text(commit.model)).run()
                guard let modelID = try db.prepare("SELECT id FROM models WHERE name = ?").bind(.text(commit.model)).firstRow({ $0.int(0) }) else {
                    throw StoreError.catalog("model row vanished during commit")
                }
                if try db.prepare("SELECT 1 FROM revisions WHERE model_id = ? AND name = ?")
                    .bind(.int(modelID), .text(commit.revision)).firstRow({ _ in true }) != nil {
                    throw StoreError.revisionAlreadyExists(model: commit.model, revision: commit.revision)
                }
                try db.prepare("""
                    INSERT INTO revisions(model_id, name, created_at, base_model, base_revision, base_reason, manifest_chunk)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """).bind(.int(modelID), .text(commit.revision), .int(commit.createdAt), .text(commit.baseModel),
                              .text(commit.baseRevision), .text(commit.baseReason), .int(try rowID(commit.manifest.id))).run()
                let revisionID = db.lastInsertRowID
                let insertFile = try db.prepare("INSERT INTO files(revision_id, path, size, sha256, kind) VALUES (?, ?, ?, ?, ?)")
                let insertFileChunk = try db.prepare("INSERT INTO file_chunks(file_id, seq, offset, chunk_id) VALUES (?, ?, ?, ?)")
                let insertTensor = try db.prepare("INSERT INTO tensors(file_id, name, dtype, shape, begin_offset, end_offset) VALUES (?, ?, ?, ?, ?, ?)")
                for file in commit.files {
                    try insertFile.bind(.int(revisionID), .text(file.path), .int(file.size), .blob(file.sha256.bytes), .int(Int(file.kind.rawValue))).run()
                    let fileID = db.lastInsertRowID
                    for (seq, chunk) in file.chunks.enumerated() {
                        try insertFileChunk.bind(.int(fileID), .int(seq), .int(chunk.offset), .int(try rowID(chunk.id))).run()
                    }
                    for t in file.tensors {
                        try insertTensor.bind(.int(fileID), .text(t.name), .text(t.dtype), .text(t.shapeText),
                                              .int(t.begin), .int(t.end)).run()
                    }
                }
                // The candidate index and the sketch are part of the revision: same transaction.
                let insertIndex = try db.prepare("INSERT OR IGNORE INTO tensor_index(signature, revision_id, bytes) VALUES (?, ?, ?)")
                for row in TensorSignature.indexRows(commit.files.flatMap(\.tensors)) {
                    try insertIndex.bind(.int(row.signature), .int(revisionID), .int(row.bytes)).run()
                }
                if let sketch = commit.sketch {
                    try db.prepare("INSERT INTO revision_sketches(revision_id, sketch) VALUES (?, ?)").bind(.int(revisionID), .blob(sketch)).run()
                }
                return RevisionRecord(rowID: revisionID, model: commit.model, revision: commit.revision, createdAt: commit.createdAt,
                                      baseModel: commit.baseModel, baseRevision: commit.baseRevision, baseReason: commit.baseReason,
                                      manifest: commit.manifest.id)
            }
        }
    }

    public func commitChunks(_ commit: ChunkCommit) throws {
        try locked {
            try db.transaction {
                if let fence = commit.gcFence, try generation() != fence {
                    throw StoreError.fenced(.chunks(count: commit.chunks.count))
                }
                _ = try insertPacksAndChunks(packs: commit.packs, chunks: commit.chunks)
            }
        }
    }

    /// Inside a transaction: records `packs`, then `chunks` (bases before the chunks that use them:
    /// a base is either already in the catalog or earlier in `chunks`). Returns the row id of any
    /// chunk by identity (those inserted and those already there).
    private func insertPacksAndChunks(packs: [(name: String, size: Int)], chunks: [NewChunk]) throws -> (ChunkID) throws -> Int64 {
        let now = Int64(Date().timeIntervalSince1970)
        let insertPack = try db.prepare("INSERT INTO packs(name, size, created_at) VALUES (?, ?, ?)")
        var packIDs: [String: Int64] = [:]
        for pack in packs {
            try insertPack.bind(.text(pack.name), .int(pack.size), .int(now)).run()
            packIDs[pack.name] = db.lastInsertRowID
        }
        let findChunk = try db.prepare("SELECT id FROM chunks WHERE xxh = ? AND sha = ?")
        let insertChunk = try db.prepare("""
            INSERT OR IGNORE INTO chunks(xxh, sha, raw_length, pack_id, frame_offset, frame_length, encoding, base_id, depth)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        var rowIDs: [ChunkID: Int64] = [:]
        func rowID(_ id: ChunkID) throws -> Int64 {
            if let known = rowIDs[id] { return known }
            guard let row = try findChunk.bind(.blob(id.xxh.bytes), .blob(id.sha.bytes)).firstRow({ $0.int(0) }) else {
                throw StoreError.corrupt("chunk \(id.short) is referenced but not in the catalog")
            }
            rowIDs[id] = row
            return row
        }
        let findPack = try db.prepare("SELECT id FROM packs WHERE name = ?")
        for chunk in chunks {
            if packIDs[chunk.pack] == nil, let known = try findPack.bind(.text(chunk.pack)).firstRow({ $0.int(0) }) {
                packIDs[chunk.pack] = known
            }
            guard let packID = packIDs[chunk.pack] else {
                throw StoreError.invalidRequest("chunk \(chunk.id.short) names pack \(chunk.pack), which is not in the catalog")
            }
            let base = try chunk.base.map { try rowID($0) }
            try insertChunk.bind(.blob(chunk.id.xxh.bytes), .blob(chunk.id.sha.bytes), .int(chunk.rawLength), .int(packID),
                                 .int(chunk.frameOffset), .int(chunk.frameLength), .int(Int(chunk.encoding)),
                                 .optionalInt(base), .int(chunk.depth)).run()
            // A concurrent put may have stored the same chunk first: theirs is kept, ours is garbage for gc.
        }
        return rowID
    }

    public func gcGeneration() throws -> Int64 {
        try locked { try generation() }
    }

    private func generation() throws -> Int64 {
        try db.prepare("SELECT COALESCE(MAX(id), 0) FROM gc_runs").firstRow { $0.int(0) } ?? 0
    }

    public func beginCollection() throws -> Int64 {
        try locked {
            try db.transaction {
                let now = Date().timeIntervalSince1970
                try db.prepare("INSERT INTO gc_runs(id, started_at) VALUES (max((SELECT COALESCE(MAX(id), 0) FROM gc_runs) + 1, ?), ?)")
                    .bind(.int(Int(now * 1000)), .int(Int(now))).run()
                return db.lastInsertRowID
            }
        }
    }


    static func revision(_ s: Statement) throws -> RevisionRecord {
        guard let xxh = XXH128(bytes: s.blob(7)), let sha = Digest256(bytes: s.blob(8)) else {
            throw StoreError.corrupt("catalog row for revision \(s.int(0)) has a malformed manifest id")
        }
        return RevisionRecord(rowID: s.int(0), model: s.text(1), revision: s.text(2), createdAt: s.int(3), baseModel: s.text(4),
                              baseRevision: s.text(5), baseReason: s.text(6), manifest: ChunkID(xxh: xxh, sha: sha))
    }

    public func resolve(model: String, revision: String?) throws -> RevisionRecord {
        try locked {
            let found: RevisionRecord?
            if let revision {
                found = try db.prepare("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) WHERE m.name = ? AND r.name = ?")
                    .bind(.text(model), .text(revision)).firstRow { try SQLiteCatalog.revision($0) }
            } else {
                found = try db.prepare("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) WHERE m.name = ? ORDER BY r.id DESC LIMIT 1")
                    .bind(.text(model)).firstRow { try SQLiteCatalog.revision($0) }
            }
            if let found { return found }
            let modelKnown = try db.prepare("SELECT 1 FROM models m WHERE m.name = ? AND EXISTS (SELECT 1 FROM revisions r WHERE r.model_id = m.id)")
                .bind(.text(model)).firstRow { _ in true } != nil
            throw StoreError.unknownRevision(model: model, revision: revision, modelKnown: modelKnown)
        }
    }

    public func revisions(model: String?) throws -> [RevisionRecord] {
        try locked {
            if let model {
                return try db.prepare("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) WHERE m.name = ? ORDER BY r.id")
                    .bind(.text(model)).rows { try SQLiteCatalog.revision($0) }
            }
            return try db.prepare("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) ORDER BY m.name, r.id")
                .bind().rows { try SQLiteCatalog.revision($0) }
        }
    }

    public func revisions(rowIDs: [Int64]) throws -> [Int64: RevisionRecord] {
        try locked {
            let find = try db.prepare("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) WHERE r.id = ?")
            var found: [Int64: RevisionRecord] = [:]
            for id in Set(rowIDs) {
                if let record = try find.bind(.int(id)).firstRow({ try SQLiteCatalog.revision($0) }) { found[id] = record }
            }
            return found
        }
    }

    public func baseCandidates(_ signatures: [TensorSignature.Weighted], minimumBytes: Int, limit: Int) throws -> [BaseCandidate] {
        let want = Array(Set(signatures))
        guard !want.isEmpty, limit > 0 else { return [] }
        return try locked {
            let values = Array(repeating: "(?, ?)", count: want.count).joined(separator: ", ")
            let sql = "WITH want(signature, bytes) AS (VALUES \(values)) " + CatalogSQL.baseCandidates(threshold: "?", limit: "?")
            var bound: [SQLValue] = []
            for w in want { bound += [.int(w.signature), .int(w.bytes)] }
            bound += [.int(minimumBytes), .int(limit)]
            return try db.prepare(sql).bind(bound).rows { BaseCandidate(revisionRowID: $0.int(0), matchedBytes: Int($0.int(1))) }
        }
    }

    public func sketches(revisionRowIDs: [Int64]) throws -> [Int64: [UInt8]] {
        try locked {
            let find = try db.prepare("SELECT sketch FROM revision_sketches WHERE revision_id = ?")
            var found: [Int64: [UInt8]] = [:]
            for id in Set(revisionRowIDs) {
                if let sketch = try find.bind(.int(id)).firstRow({ $0.blob(0) }) { found[id] = sketch }
            }
            return found
        }
    }

    public func putSketch(revisionRowID: Int64, sketch: [UInt8]) throws {
        try locked {
            try db.transaction {
                guard try db.prepare("SELECT 1 FROM revisions WHERE id = ?").bind(.int(revisionRowID)).firstRow({ _ in true }) != nil else {
                    throw StoreError.notFound("the revision was removed before its sketch was stored")
                }
                try db.prepare("INSERT OR REPLACE INTO revision_sketches(revision_id, sketch) VALUES (?, ?)")
                    .bind(.int(revisionRowID), .blob(sketch)).run()
            }
        }
    }

    public func files(revision: RevisionRecord) throws -> [FileRecord] {
        try locked {
            try db.prepare("SELECT id, path, size, sha256, kind FROM files WHERE revision_id = ? ORDER BY path")
                .bind(.int(revision.rowID)).rows { s in
                    guard let sha = Digest256(bytes: s.blob(3)), let kind = FileKind(rawValue: UInt8(truncatingIfNeeded: s.int(4))) else {
                        throw StoreError.corrupt("catalog row for file \(s.text(1)) is malformed")
                    }
                    return FileRecord(rowID: s.int(0), path: s.text(1), size: Int(s.int(2)), sha256: sha, kind: kind)
                }
        }
    }

    public func fileChunks(file: FileRecord) throws -> [FileChunk] {
        try locked {
            try db.prepare("""
                SELECT fc.offset, \(SQLiteCatalog.chunkColumns) FROM file_chunks fc
                JOIN chunks c ON c.id = fc.chunk_id JOIN packs p ON p.id = c.pack_id
                WHERE fc.file_id = ? ORDER BY fc.seq
                """).bind(.int(file.rowID)).rows { s in
                FileChunk(offset: Int(s.int(0)), location: try SQLiteCatalog.location(s, from: 1))
            }
        }
    }

    public func tensors(file: FileRecord) throws -> [TensorRecord] {
        try locked {
            try db.prepare("SELECT name, dtype, shape, begin_offset, end_offset FROM tensors WHERE file_id = ? ORDER BY begin_offset, name")
                .bind(.int(file.rowID)).rows { s in
                    TensorRecord(name: s.text(0), dtype: s.text(1), shape: TensorRecord.shape(fromText: s.text(2)),
                                 begin: Int(s.int(3)), end: Int(s.int(4)))
                }
        }
    }

    public func remove(revision: RevisionRecord, tombstonePack: (name: String, size: Int)) throws {
        try locked {
            try db.transaction {
                let now = Int64(Date().timeIntervalSince1970)
                try db.prepare("INSERT INTO packs(name, size, created_at) VALUES (?, ?, ?)")
                    .bind(.text(tombstonePack.name), .int(tombstonePack.size), .int(now)).run()
                try db.prepare("""
                    INSERT INTO tombstones(pack_id, model, revision, manifest_xxh, manifest_sha, removed_at)
                    VALUES ((SELECT id FROM packs WHERE name = ?), ?, ?, ?, ?, ?)
                    """).bind(.text(tombstonePack.name), .text(revision.model), .text(revision.revision),
                              .blob(revision.manifest.xxh.bytes), .blob(revision.manifest.sha.bytes), .int(now)).run()
                try db.prepare("DELETE FROM revisions WHERE id = ?").bind(.int(revision.rowID)).run()
                guard db.changes == 1 else {
                    throw StoreError.notFound(.removed(model: revision.model, revision: revision.revision))
                }
                try db.prepare("DELETE FROM models WHERE name = ? AND NOT EXISTS (SELECT 1 FROM revisions r WHERE r.model_id = models.id)")
                    .bind(.text(revision.model)).run()
            }
        }
    }

    public func totals() throws -> CatalogTotals {
        try locked {
            var t = CatalogTotals()
            let one = { (sql: String) throws -> Int in Int(try self.db.prepare(sql).bind().firstRow { $0.int(0) } ?? 0) }
            t.models = try one("SELECT count(*) FROM models")
            t.revisions = try one("SELECT count(*) FROM revisions")
            t.files = try one("SELECT count(*) FROM files")
            t.logicalBytes = try one("SELECT coalesce(sum(size), 0) FROM files")
            t.packs = try one("SELECT count(*) FROM packs")
            t.packBytes = try one("SELECT coalesce(sum(size), 0) FROM packs")
            t.deltaChunks = try one("SELECT count(*) FROM chunks WHERE base_id IS NOT NULL")
            for row in try db.prepare("SELECT encoding, count(*), sum(raw_length), sum(frame_length) FROM chunks WHERE id IN (SELECT chunk_id FROM file_chunks) GROUP BY encoding")
                .bind().rows({ ($0.int(0), $0.int(1), $0.int(2), $0.int(3)) }) {
                t.byEncoding[UInt8(truncatingIfNeeded: row.0)] = (Int(row.1), Int(row.2), Int(row.3))
                t.chunks += Int(row.1)
                t.chunkRawBytes += Int(row.2)
                t.chunkStoredBytes += Int(row.3)
            }
            return t
        }
    }

    /// Records a tombstone found in a pack (catalog rebuild only).
    public func recordTombstone(_ tombstone: RevisionTombstone, pack: (name: String, size: Int)) throws {
        try locked {
            try db.transaction {
                try db.prepare("INSERT OR IGNORE INTO packs(name, size, created_at) VALUES (?, ?, ?)")
                    .bind(.text(pack.name), .int(pack.size), .int(tombstone.removedAt)).run()
                try db.prepare("""
                    INSERT INTO tombstones(pack_id, model, revision, manifest_xxh, manifest_sha, removed_at)
                    VALUES ((SELECT id FROM packs WHERE name = ?), ?, ?, ?, ?, ?)
                    """).bind(.text(pack.name), .text(tombstone.model), .text(tombstone.revision),
                              .blob(tombstone.manifest.xxh.bytes), .blob(tombstone.manifest.sha.bytes), .int(tombstone.removedAt)).run()
            }
        }
    }

    public func integrityCheck() throws -> [String] {
        try locked {
            let rows = try db.prepare("PRAGMA integrity_check").bind().rows { $0.text(0) }
            let fk = try db.prepare("PRAGMA foreign_key_check").bind().rows { "foreign key: table \($0.text(0)) row \($0.int(1)) references missing \($0.text(2))" }
            return rows.filter { $0 != "ok" } + fk
        }
    }

    public func packs() throws -> [(name: String, size: Int, tombstones: Bool)] {
        try locked {
            try db.prepare("SELECT p.name, p.size, EXISTS (SELECT 1 FROM tombstones t WHERE t.pack_id = p.id) FROM packs p ORDER BY p.name")
                .bind().rows { ($0.text(0), Int($0.int(1)), $0.int(2) != 0) }
        }
    }

    public func allChunks() throws -> [ChunkLocation] {
        try locked {
            try db.prepare("SELECT \(SQLiteCatalog.chunkColumns) FROM chunks c JOIN packs p ON p.id = c.pack_id ORDER BY p.name, c.frame_offset")
                .bind().rows { try SQLiteCatalog.location($0) }
        }
    }

    public func liveChunkRowIDs() throws -> Set<Int64> {
        try locked {
            Set(try db.prepare(CatalogSQL.liveChunks).bind().rows { $0.int(0) })
        }
    }

    public func applyCollection(newPacks: [(name: String, size: Int)], moved: [(rowID: Int64, pack: String, offset: Int)],
                                deadChunks: [Int64], deadPacks: [String]) throws {
        try locked {
            try db.transaction {
                let now = Int64(Date().timeIntervalSince1970)
                let insertPack = try db.prepare("INSERT INTO packs(name, size, created_at) VALUES (?, ?, ?)")
                for pack in newPacks { try insertPack.bind(.text(pack.name), .int(pack.size), .int(now)).run() }
                let move = try db.prepare("UPDATE chunks SET pack_id = (SELECT id FROM packs WHERE name = ?), frame_offset = ? WHERE id = ?")
                for m in moved { try move.bind(.text(m.pack), .int(m.offset), .int(m.rowID)).run() }
                // Dead chunks may be bases of other dead chunks: clear those links first.
                let unlink = try db.prepare("UPDATE chunks SET base_id = NULL WHERE id = ?")
                for id in deadChunks { try unlink.bind(.int(id)).run() }
                let delete = try db.prepare("DELETE FROM chunks WHERE id = ?")
                for id in deadChunks { try delete.bind(.int(id)).run() }
                let deletePack = try db.prepare("DELETE FROM packs WHERE name = ?")
                for name in deadPacks {
                    try deletePack.bind(.text(name)).run()
                }
            }
        }
    }

    public func storedBytes(file: FileRecord) throws -> (stored: Int, encodings: [UInt8: Int], delta: Int, shared: Int, fresh: Int) {
        try locked {
            // A chunk is "shared" when a file of an earlier revision references it, "delta"
            // when it is stored against a base, otherwise "fresh".
            let rows = try db.prepare("""
                SELECT c.frame_length, c.encoding, c.base_id IS NOT NULL,
                       EXISTS (SELECT 1 FROM file_chunks o JOIN files f ON f.id = o.file_id
                               WHERE o.chunk_id = c.id AND f.revision_id < (SELECT revision_id FROM files WHERE id = ?))
                FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk_id WHERE fc.file_id = ?
                """).bind(.int(file.rowID), .int(file.rowID)).rows { s in
                (Int(s.int(0)), UInt8(truncatingIfNeeded: s.int(1)), s.int(2) != 0, s.int(3) != 0)
            }
            var stored = 0, delta = 0, shared = 0, fresh = 0
            var encodings: [UInt8: Int] = [:]
            for (length, encoding, isDelta, isShared) in rows {
                if isShared { shared += 1; continue }
                stored += length
                encodings[encoding, default: 0] += 1
                if isDelta { delta += 1 } else { fresh += 1 }
            }
            return (stored, encodings, delta, shared, fresh)
        }
    }

    // MARK: annotations

    public func annotation(revision: RevisionRecord, optimizerVersion: String, parameters: String) throws -> AnnotationRecord? {
        try locked {
            try db.prepare("""
                SELECT optimizer_version, parameters, created_at, result FROM annotations
                WHERE revision_id = ? AND optimizer_version = ? AND parameters = ?
                """).bind(.int(revision.rowID), .text(optimizerVersion), .text(parameters)).firstRow {
                AnnotationRecord(revisionRowID: revision.rowID, optimizerVersion: $0.text(0), parameters: $0.text(1),
                                 createdAt: $0.int(2), result: $0.text(3))
            }
        }
    }

    public func annotations(revision: RevisionRecord) throws -> [AnnotationRecord] {
        try locked {
            try db.prepare("SELECT optimizer_version, parameters, created_at, result FROM annotations WHERE revision_id = ? ORDER BY created_at, optimizer_version, parameters")
                .bind(.int(revision.rowID)).rows {
                    AnnotationRecord(revisionRowID: revision.rowID, optimizerVersion: $0.text(0), parameters: $0.text(1),
                                     createdAt: $0.int(2), result: $0.text(3))
                }
        }
    }

    public func putAnnotation(_ annotation: AnnotationRecord) throws {
        try locked {
            try db.transaction {
                guard try db.prepare("SELECT 1 FROM revisions WHERE id = ?").bind(.int(annotation.revisionRowID)).firstRow({ _ in true }) != nil else {
                    throw StoreError.notFound("the revision was removed while it was being annotated")
                }
                try db.prepare("""
                    INSERT OR REPLACE INTO annotations(revision_id, optimizer_version, parameters, created_at, result)
                    VALUES (?, ?, ?, ?, ?)
                    """).bind(.int(annotation.revisionRowID), .text(annotation.optimizerVersion), .text(annotation.parameters),
                              .int(annotation.createdAt), .text(annotation.result)).run()
            }
        }
    }
}
