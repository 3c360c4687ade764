import Foundation
import TenPakFormat

/// The catalog, written once over the `SQLConnection` seam: SQLite for a local store
/// (`SQLCatalog.sqlite`), PostgreSQL for a distributed one (`SQLCatalog.postgres`, TenPakDistributed).
///
/// One connection per catalog object, serialized by `lock` (a SQLite connection is not safe to share
/// between threads, a PostgreSQL session runs one statement at a time, and no statement of another
/// thread may land inside a transaction). Each write (commit, commitChunks, remove,
/// applyCollection, putSketch, putAnnotation, beginCollection, recordTombstone) is one transaction.
/// Lists of any length are split into statements of at most `rowsPerStatement` rows.
public final class SQLCatalog: Catalog, @unchecked Sendable {
    // Safe: `connection` is used only inside `lock`.
    private var connection: any SQLConnection
    private let lock = NSRecursiveLock()
    public let dialect: SQLDialect

    /// 2: the candidate index and sketches; 3: the candidate index by architecture, with coarse
    /// sketches (`CatalogSchema.candidates`). An older catalog is upgraded in place when opened; a
    /// tpstore that knows only an older version then refuses it ("upgrade tpstore"), because its
    /// commits would leave revisions out of the index.
    public static let schemaVersion = 3

    /// Every table of the catalog (what fsck checks is there and a PostgreSQL repair moves).
    public static let tables = ["meta", "gc_runs", "packs", "chunks", "models", "revisions", "files", "file_chunks", "tensors", "tombstones",
                                "annotations", "revision_sketches", "architecture_index", "revision_architectures"]
    /// Tables an upgrade drops (`tensor_index`: version 2): a PostgreSQL repair of a catalog never
    /// upgraded moves them aside with the rest.
    public static let retiredTables = ["tensor_index"]

    /// Most rows one statement carries (bound values stay under both databases' limits too).
    static let rowsPerStatement = 1000

    /// Opens the catalog over `connection`, checking its schema; with `create`, creates the schema
    /// when missing. A catalog of an older schema version is upgraded, one of a newer is refused.
    public init(connection: any SQLConnection, create: Bool) throws {
        self.connection = connection
        dialect = connection.dialect
        try SQLCatalog.prepareSchema(connection, create: create)
    }

    /// The catalog in the SQLite file at `path` (a local store's `catalog.db`).
    public static func sqlite(path: String, create: Bool) throws -> SQLCatalog {
        if !create, !FileSystem.isRegularFile(path) {
            throw StoreError.notAStore(path: FileSystem.parentDirectory(path), reason: "no catalog at \(path)")
        }
        return try SQLCatalog(connection: SQLiteConnection(path: path, create: create), create: create)
    }

    /// The connection (for what a backend counts, such as PostgreSQL's round trips).
    public var backend: any SQLConnection { lock.withLock { connection } }

    // MARK: schema

    private static func prepareSchema(_ c: any SQLConnection, create: Bool) throws {
        let schema = CatalogSchema(dialect: c.dialect)
        do {
            if create {
                try c.transaction {
                    try c.lockSchema()
                    for statement in schema.all { try c.query(statement) }
                    try c.query("INSERT INTO meta(key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                                [.text(String(SQLCatalog.schemaVersion))])
                }
            }
            guard try c.tableExists("meta"), let version = try c.query("SELECT value FROM meta WHERE key = 'schema_version'").first?.text(0),
                  let number = Int(version) else {
                throw StoreError.notAStore(path: c.place, reason: "its catalog database has no TenPak schema")
            }
            guard number <= SQLCatalog.schemaVersion else {
                throw StoreError.invalidRequest("catalog schema version \(number) is newer than this tpstore (\(SQLCatalog.schemaVersion)): upgrade tpstore")
            }
            // Catalogs made before these tables existed get them now (additive, so the version stayed).
            if try !c.tableExists("annotations") || !c.tableExists("gc_runs") {
                try c.transaction {
                    try c.lockSchema()
                    for statement in schema.annotations + schema.gcRuns { try c.query(statement) }
                }
            }
            if number < 3 { try upgradeToVersion3(c) }
        } catch let violation as SQLUniqueViolation {
            throw StoreError.catalog(violation.message)
        }
    }

    /// Version 1 or 2 → 3 in place, in one transaction under the schema lock: the new tables, the
    /// index filled from the tensors already stored and the coarse sketches from the sketches already
    /// stored (linear in the store, once), version 2's `tensor_index` dropped, then the version.
    /// Sketches missing (a version-1 catalog has none) are made later (base choice computes a
    /// missing one from the revision's chunks; `fsck --repair` makes all of them). A second process
    /// finds the work done.
    private static func upgradeToVersion3(_ c: any SQLConnection) throws {
        try c.transaction {
            try c.lockSchema()
            guard let current = try c.query("SELECT value FROM meta WHERE key = 'schema_version'").first?.text(0),
                  let number = Int(current), number < 3 else { return }
            // A process of the old version still running must not commit a revision between the
            // list below and the drop of its table: its revision would be missing from the index.
            try c.lockRevisions()
            for statement in CatalogSchema(dialect: c.dialect).candidates { try c.query(statement) }
            // 128 revisions at a time, so memory follows the batch (a model of thousands of tensors
            // makes a batch hundreds of thousands of rows), not the store.
            let revisions = try c.query("SELECT id FROM revisions ORDER BY id").map { try $0.int(0) }
            for batch in stride(from: 0, to: revisions.count, by: 128).map({ revisions[$0 ..< min($0 + 128, revisions.count)] }) {
                let ids = batch.map { SQLValue.int($0) }
                var byRevision: [Int64: [TensorRecord]] = [:]
                for r in try c.query(CatalogSQL.tensorsOfRevisions(batch.count), ids) {
                    byRevision[try r.int(0), default: []].append(
                        TensorRecord(name: try r.text(1), dtype: try r.text(2), shape: TensorRecord.shape(fromText: try r.text(3)),
                                     begin: Int(try r.int(4)), end: Int(try r.int(5))))
                }
                var sketches: [Int64: [UInt8]] = [:]
                for r in try c.query("SELECT revision_id, sketch FROM revision_sketches WHERE revision_id IN (\(list(batch.count)))", ids) {
                    sketches[try r.int(0)] = try r.blob(1)
                }
                for (revision, tensors) in byRevision {
                    try insertIndexRows(c, revision: revision, tensors: tensors, sketch: sketches[revision])
                }
            }
            try c.query("DROP TABLE IF EXISTS tensor_index")
            try c.query("UPDATE meta SET value = ? WHERE key = 'schema_version'", [.text(String(SQLCatalog.schemaVersion))])
        }
    }

    /// A revision's candidate index rows (inside the caller's transaction): its architecture's rows
    /// unless another revision wrote them already, and the row naming its architecture, with the
    /// coarse form of `sketch`. A revision without tensors has none (it is no one's candidate).
    private static func insertIndexRows(_ c: any SQLConnection, revision: Int64, tensors: [TensorRecord], sketch: [UInt8]?) throws {
        let rows = TensorSignature.indexRows(tensors)
        guard let first = rows.first else { return }
        let architecture = TensorSignature.architecture(rows)
        // A commit writes all rows of an architecture or none, so one row tells.
        if try c.query("SELECT 1 FROM architecture_index WHERE signature = ? AND architecture_id = ?", [.int(first.signature), .int(architecture)]).isEmpty {
            for batch in batches(rows, width: 3, dialect: c.dialect) {
                try c.query("INSERT INTO architecture_index(signature, architecture_id, bytes) VALUES \(tuples(batch.count, width: 3)) ON CONFLICT DO NOTHING",
                            batch.flatMap { [.int($0.signature), .int(architecture), .int($0.bytes)] })
            }
        }
        try c.query("INSERT INTO revision_architectures(architecture_id, revision_id, coarse_sketch) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    [.int(architecture), .int(revision), coarseSketch(of: sketch).map { .blob($0) } ?? .null])
    }

    /// The coarse sketch stored beside a revision's index row: derived from its full sketch, so the
    /// two never disagree; nil when there is none or it does not decode (base choice then treats the
    /// revision as one without a usable sketch).
    static func coarseSketch(of sketch: [UInt8]?) -> [UInt8]? {
        guard let sketch, let decoded = try? BaseSketch.decode(sketch) else { return nil }
        return decoded.coarse().encoded()
    }

    /// Reconnects when the catalog was replaced under this process (SQLite: `fsck --repair` renamed
    /// a rebuilt catalog over `catalog.db`), so a long-lived process (`tpstore serve`) reads and
    /// commits into the live catalog instead of the one set aside. Writers call it with the store
    /// lock held, so no repair is running; a reader calls it without, and then may catch the moment
    /// between a repair's two renames, when there is no `catalog.db`: it keeps its connection (to the
    /// old catalog, still whole) until the next look.
    public func reopenIfReplaced() throws -> Bool {
        try locked {
            guard let fresh = try connection.replacement() else { return false }
            try SQLCatalog.prepareSchema(fresh, create: false)
            connection = fresh
            return true
        }
    }

    // MARK: statements

    /// Serializes use of the connection; a unique violation nobody expected is a catalog error.
    private func locked<T>(_ body: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        do {
            return try body()
        } catch let violation as SQLUniqueViolation {
            throw StoreError.catalog(violation.message)
        }
    }

    /// `body` in one transaction.
    private func write<T>(_ body: () throws -> T) throws -> T {
        try locked { try connection.transaction(body) }
    }

    @discardableResult
    private func q(_ sql: String, _ values: [SQLValue] = []) throws -> [SQLRow] {
        try connection.query(sql, values)
    }

    /// `rows` groups of `width` placeholders: `(?, ?), (?, ?)`.
    static func tuples(_ rows: Int, width: Int) -> String {
        let one = "(" + Array(repeating: "?", count: width).joined(separator: ", ") + ")"
        return Array(repeating: one, count: rows).joined(separator: ", ")
    }

    /// `count` placeholders for an IN list.
    static func list(_ count: Int) -> String { Array(repeating: "?", count: count).joined(separator: ", ") }

    /// `items` in slices that each fit one statement of `width` values per item.
    static func batches<T>(_ items: [T], width: Int, dialect: SQLDialect) -> [ArraySlice<T>] {
        let size = max(1, min(rowsPerStatement, dialect.maxBindings / max(1, width)))
        return stride(from: 0, to: items.count, by: size).map { items[$0 ..< min($0 + size, items.count)] }
    }

    private func batches<T>(_ items: [T], width: Int) -> [ArraySlice<T>] {
        SQLCatalog.batches(items, width: width, dialect: dialect)
    }

    /// Text ordered by its bytes on every database.
    private func bytewise(_ expression: String) -> String { expression + dialect.byteOrder }

    static let chunkColumns = "c.id, c.xxh, c.sha, c.raw_length, p.name, c.frame_offset, c.frame_length, c.encoding, c.base_id, c.depth"
    static let chunkFrom = "chunks c JOIN packs p ON p.id = c.pack_id"

    /// Chunks by identity, `count` of them: the wanted ids as a table joined to the unique index.
    /// (CROSS JOIN: SQLite then reads the short list first and the index once per id, whatever it
    /// guesses about the tables' sizes; PostgreSQL plans it as the inner join it is.)
    static func chunksByID(_ count: Int, columns: String = chunkColumns) -> String {
        """
        WITH want(xxh, sha) AS (VALUES \(tuples(count, width: 2)))
        SELECT \(columns) FROM want w CROSS JOIN chunks c JOIN packs p ON p.id = c.pack_id WHERE c.xxh = w.xxh AND c.sha = w.sha
        """
    }

    static func location(_ r: SQLRow, from column: Int = 0) throws -> ChunkLocation {
        guard let xxh = XXH128(bytes: try r.blob(column + 1)), let sha = Digest256(bytes: try r.blob(column + 2)) else {
            throw StoreError.corrupt("catalog row for chunk \(try r.int(column)) has a malformed id")
        }
        return ChunkLocation(rowID: try r.int(column), id: ChunkID(xxh: xxh, sha: sha), rawLength: Int(try r.int(column + 3)),
                             pack: try r.text(column + 4), frameOffset: Int(try r.int(column + 5)), frameLength: Int(try r.int(column + 6)),
                             encoding: UInt8(truncatingIfNeeded: try r.int(column + 7)),
                             baseRowID: try r.optionalInt(column + 8), depth: Int(try r.int(column + 9)))
    }

    static func revision(_ r: SQLRow) throws -> RevisionRecord {
        guard let xxh = XXH128(bytes: try r.blob(7)), let sha = Digest256(bytes: try r.blob(8)) else {
            throw StoreError.corrupt("catalog row for revision \(try r.int(0)) has a malformed manifest id")
        }
        return RevisionRecord(rowID: try r.int(0), model: try r.text(1), revision: try r.text(2), createdAt: try r.int(3),
                              baseModel: try r.text(4), baseRevision: try r.text(5), baseReason: try r.text(6),
                              manifest: ChunkID(xxh: xxh, sha: sha))
    }

    static let revisionSelect = "SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom)"

    // MARK: chunks

    public func findChunks(_ ids: [ChunkID]) throws -> [ChunkID: ChunkLocation] {
        try locked {
            var found: [ChunkID: ChunkLocation] = [:]
            for batch in batches(Array(Set(ids)), width: 2) {
                for r in try q(SQLCatalog.chunksByID(batch.count), batch.flatMap { [.blob($0.xxh.bytes), .blob($0.sha.bytes)] }) {
                    let location = try SQLCatalog.location(r)
                    found[location.id] = location
                }
            }
            return found
        }
    }

    public func chunks(rowIDs: [Int64]) throws -> [Int64: ChunkLocation] {
        try locked {
            var found: [Int64: ChunkLocation] = [:]
            for batch in batches(Array(Set(rowIDs)), width: 1) {
                for r in try q("SELECT \(SQLCatalog.chunkColumns) FROM \(SQLCatalog.chunkFrom) WHERE c.id IN (\(SQLCatalog.list(batch.count)))",
                               batch.map { .int($0) }) {
                    let location = try SQLCatalog.location(r)
                    found[location.rowID] = location
                }
            }
            return found
        }
    }

    public func chunk(rowID: Int64) throws -> ChunkLocation? {
        try chunks(rowIDs: [rowID])[rowID]
    }

    /// Row ids of chunks by identity (inside the caller's lock or transaction).
    private func chunkRowIDs(_ ids: [ChunkID]) throws -> [ChunkID: Int64] {
        var found: [ChunkID: Int64] = [:]
        for batch in batches(Array(Set(ids)), width: 2) {
            for r in try q(SQLCatalog.chunksByID(batch.count, columns: "c.id, c.xxh, c.sha"), batch.flatMap { [.blob($0.xxh.bytes), .blob($0.sha.bytes)] }) {
                if let xxh = XXH128(bytes: try r.blob(1)), let sha = Digest256(bytes: try r.blob(2)) {
                    found[ChunkID(xxh: xxh, sha: sha)] = try r.int(0)
                }
            }
        }
        return found
    }

    /// Those of `known` whose row holds the chunk named (inside the caller's transaction).
    private func checkedRowIDs(_ known: [ChunkID: Int64]) throws -> [ChunkID: Int64] {
        let rows = try chunks(rowIDs: Array(known.values))
        return known.filter { id, row in rows[row]?.id == id }
    }

    // MARK: commits and the gc fence

    public func commit(_ commit: RevisionCommit) throws -> RevisionRecord {
        try write {
            if let fence = commit.gcFence {
                // Until this transaction ends no gc can start; a gc that started before is seen here.
                try connection.lockFence()
                guard try generation() == fence else { throw StoreError.fencedCommit(model: commit.model, revision: commit.revision) }
            }
            let manifest = commit.manifest
            let rowID = try insertPacksAndChunks(packs: commit.packs, chunks: commit.chunks + [commit.manifestChunk],
                                                 alsoLookUp: [commit.manifestChunk.id] + manifest.files.flatMap { $0.chunks.map(\.id) },
                                                 knownRowIDs: commit.knownRowIDs)
            try q("INSERT INTO models(name) VALUES (?) ON CONFLICT (name) DO NOTHING", [.text(commit.model)])
            guard let modelID = try q("SELECT id FROM models WHERE name = ?", [.text(commit.model)]).first?.int(0) else {
                throw StoreError.catalog("model row vanished during commit")
            }
            if try !q("SELECT 1 FROM revisions WHERE model_id = ? AND name = ?", [.int(modelID), .text(commit.revision)]).isEmpty {
                throw StoreError.revisionAlreadyExists(model: commit.model, revision: commit.revision)
            }
            let revisionID: Int64
            do {
                // A concurrent commit of the same name on another node can pass the check above
                // (PostgreSQL); the unique constraint then decides.
                guard let id = try q("""
                    INSERT INTO revisions(model_id, name, created_at, base_model, base_revision, base_reason, manifest_chunk)
                    VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id
                    """, [.int(modelID), .text(commit.revision), .int(manifest.createdAt), .text(manifest.baseModel),
                          .text(manifest.baseRevision), .text(manifest.baseReason), .int(try rowID(commit.manifestChunk.id))]).first?.int(0) else {
                    throw StoreError.catalog("no id for the new revision")
                }
                revisionID = id
            } catch is SQLUniqueViolation {
                throw StoreError.revisionAlreadyExists(model: commit.model, revision: commit.revision)
            }
            for file in manifest.files {
                guard let size = Int64(exactly: file.size) else {
                    throw StoreError.invalidRequest("\(commit.model)@\(commit.revision): file \(Names.printable(file.path)) declares \(file.size) bytes")
                }
                guard let fileID = try q("INSERT INTO files(revision_id, path, size, sha256, kind) VALUES (?, ?, ?, ?, ?) RETURNING id",
                                         [.int(revisionID), .text(file.path), .int(size), .blob(file.sha256.bytes),
                                          .int(Int(file.kind.rawValue))]).first?.int(0) else {
                    throw StoreError.catalog("no id for file \(file.path)")
                }
                // A chunk's offset is the sum of the raw lengths before it (the manifest's rule).
                var rows: [[SQLValue]] = []
                var offset: Int64 = 0
                for (seq, chunk) in file.chunks.enumerated() {
                    rows.append([.int(fileID), .int(seq), .int(offset), .int(try rowID(chunk.id))])
                    offset += Int64(chunk.rawLength)
                }
                for batch in batches(rows, width: 4) {
                    try q("INSERT INTO file_chunks(file_id, seq, \(dialect.offsetColumn), chunk_id) VALUES \(SQLCatalog.tuples(batch.count, width: 4))",
                          batch.flatMap { $0 })
                }
                for batch in batches(commit.tensors[file.path] ?? [], width: 6) {
                    try q("INSERT INTO tensors(file_id, name, dtype, shape, begin_offset, end_offset) VALUES \(SQLCatalog.tuples(batch.count, width: 6))",
                          batch.flatMap { [.int(fileID), .text($0.name), .text($0.dtype), .text($0.shapeText), .int($0.begin), .int($0.end)] })
                }
            }
            // The candidate index and the sketch are part of the revision: same transaction.
            try SQLCatalog.insertIndexRows(connection, revision: revisionID, tensors: manifest.files.flatMap { commit.tensors[$0.path] ?? [] },
                                           sketch: commit.sketch)
            if let sketch = commit.sketch {
                try q("INSERT INTO revision_sketches(revision_id, sketch) VALUES (?, ?)", [.int(revisionID), .blob(sketch)])
            }
            return RevisionRecord(rowID: revisionID, model: manifest.model, revision: manifest.revision, createdAt: manifest.createdAt,
                                  baseModel: manifest.baseModel, baseRevision: manifest.baseRevision, baseReason: manifest.baseReason,
                                  manifest: commit.manifestChunk.id)
        }
    }

    public func commitChunks(_ commit: ChunkCommit) throws {
        try write {
            if let fence = commit.gcFence {
                try connection.lockFence()
                guard try generation() == fence else { throw StoreError.fenced(.chunks(count: commit.chunks.count)) }
            }
            _ = try insertPacksAndChunks(packs: commit.packs, chunks: commit.chunks, alsoLookUp: [], knownRowIDs: [:])
        }
    }

    /// Inside a transaction: records `packs`, then `chunks` (bases before the chunks that use them:
    /// a base is either already in the catalog or earlier in `chunks`), in statements of many rows:
    /// each round holds every remaining chunk whose base already has a row. Returns the row id of
    /// any chunk by identity (inserted, already there, or in `alsoLookUp`). `knownRowIDs` are
    /// checked by row id, not looked up by hash (`RevisionCommit.knownRowIDs`); chunks being inserted
    /// get theirs from the insert.
    private func insertPacksAndChunks(packs: [(name: String, size: Int)], chunks: [NewChunk], alsoLookUp: [ChunkID],
                                      knownRowIDs: [ChunkID: Int64]) throws -> (ChunkID) throws -> Int64 {
        let now = Int64(Date().timeIntervalSince1970)
        var packIDs: [String: Int64] = [:]
        for pack in packs {
            packIDs[pack.name] = try q("INSERT INTO packs(name, size, created_at) VALUES (?, ?, ?) RETURNING id",
                                       [.text(pack.name), .int(pack.size), .int(now)]).first?.int(0)
        }
        for chunk in chunks where packIDs[chunk.pack] == nil {
            guard let known = try q("SELECT id FROM packs WHERE name = ?", [.text(chunk.pack)]).first?.int(0) else {
                throw StoreError.invalidRequest("chunk \(chunk.id.short) names pack \(chunk.pack), which is not in the catalog")
            }
            packIDs[chunk.pack] = known
        }
        var rowIDs = try checkedRowIDs(knownRowIDs)
        let inserting = Set(chunks.map(\.id))
        let lookUp = (chunks.compactMap(\.base) + alsoLookUp).filter { rowIDs[$0] == nil && !inserting.contains($0) }
        rowIDs.merge(try chunkRowIDs(lookUp)) { checked, _ in checked }
        var remaining: [NewChunk] = []
        var seen: Set<ChunkID> = []
        for chunk in chunks where seen.insert(chunk.id).inserted { remaining.append(chunk) }
        while !remaining.isEmpty {
            let isReady = { (chunk: NewChunk) in chunk.base.map { rowIDs[$0] != nil } ?? true }
            let ready = remaining.filter(isReady)
            if ready.isEmpty, let stuck = remaining.first {
                throw StoreError.corrupt("chunk \(stuck.id.short) is a delta against \(stuck.base?.short ?? "?"), which is not in the catalog")
            }
            remaining.removeAll(where: isReady)
            for batch in batches(ready, width: 9) {
                var values: [SQLValue] = []
                values.reserveCapacity(batch.count * 9)
                for chunk in batch {
                    values += [.blob(chunk.id.xxh.bytes), .blob(chunk.id.sha.bytes), .int(chunk.rawLength), .int(packIDs[chunk.pack] ?? 0),
                               .int(chunk.frameOffset), .int(chunk.frameLength), .int(Int(chunk.encoding)),
                               .optionalInt(chunk.base.flatMap { rowIDs[$0] }), .int(chunk.depth)]
                }
                // A concurrent put may have stored the same chunk first: theirs is kept, ours is
                // garbage for gc (DO NOTHING returns no row for it; its row id is looked up below).
                for r in try q("""
                    INSERT INTO chunks(xxh, sha, raw_length, pack_id, frame_offset, frame_length, encoding, base_id, depth)
                    VALUES \(SQLCatalog.tuples(batch.count, width: 9)) ON CONFLICT (xxh, sha) DO NOTHING RETURNING id, xxh, sha
                    """, values) {
                    if let xxh = XXH128(bytes: try r.blob(1)), let sha = Digest256(bytes: try r.blob(2)) {
                        rowIDs[ChunkID(xxh: xxh, sha: sha)] = try r.int(0)
                    }
                }
            }
            for (id, row) in try chunkRowIDs(ready.filter { rowIDs[$0.id] == nil }.map(\.id)) { rowIDs[id] = row }
        }
        let known = rowIDs
        return { id in
            guard let row = known[id] else { throw StoreError.corrupt("chunk \(id.short) is referenced but not in the catalog") }
            return row
        }
    }

    public func gcGeneration() throws -> Int64 {
        try locked { try generation() }
    }

    private func generation() throws -> Int64 {
        try q("SELECT COALESCE(MAX(id), 0) FROM gc_runs").first?.int(0) ?? 0
    }

    public func beginCollection() throws -> Int64 {
        try write {
            let now = Date().timeIntervalSince1970
            // The next generation: above every earlier one and at least the time in milliseconds.
            guard let id = try q("""
                INSERT INTO gc_runs(id, started_at)
                SELECT CASE WHEN COALESCE(MAX(id), 0) + 1 > ? THEN COALESCE(MAX(id), 0) + 1 ELSE ? END, ? FROM gc_runs RETURNING id
                """, [.int(Int(now * 1000)), .int(Int(now * 1000)), .int(Int(now))]).first?.int(0) else {
                throw StoreError.catalog("INSERT INTO gc_runs returned no id")
            }
            return id
        }
    }

    // MARK: revisions

    public func resolve(model: String, revision: String?) throws -> RevisionRecord {
        try locked {
            let found: RevisionRecord?
            if let revision {
                found = try q(SQLCatalog.revisionSelect + " WHERE m.name = ? AND r.name = ?", [.text(model), .text(revision)])
                    .first.map(SQLCatalog.revision)
            } else {
                found = try q(SQLCatalog.revisionSelect + " WHERE m.name = ? ORDER BY r.id DESC LIMIT 1", [.text(model)])
                    .first.map(SQLCatalog.revision)
            }
            if let found { return found }
            let modelKnown = try !q("SELECT 1 FROM models m WHERE m.name = ? AND EXISTS (SELECT 1 FROM revisions r WHERE r.model_id = m.id)",
                                    [.text(model)]).isEmpty
            throw StoreError.unknownRevision(model: model, revision: revision, modelKnown: modelKnown)
        }
    }

    public func revisions(model: String?) throws -> [RevisionRecord] {
        try locked {
            if let model {
                return try q(SQLCatalog.revisionSelect + " WHERE m.name = ? ORDER BY r.id", [.text(model)]).map(SQLCatalog.revision)
            }
            return try q(SQLCatalog.revisionSelect + " ORDER BY \(bytewise("m.name")), r.id").map(SQLCatalog.revision)
        }
    }

    public func revisions(rowIDs: [Int64]) throws -> [Int64: RevisionRecord] {
        try locked {
            var found: [Int64: RevisionRecord] = [:]
            for batch in batches(Array(Set(rowIDs)), width: 1) {
                for r in try q(SQLCatalog.revisionSelect + " WHERE r.id IN (\(SQLCatalog.list(batch.count)))", batch.map { .int($0) }) {
                    let record = try SQLCatalog.revision(r)
                    found[record.rowID] = record
                }
            }
            return found
        }
    }

    public func files(revision: RevisionRecord) throws -> [FileRecord] {
        try locked {
            try q("SELECT id, path, size, sha256, kind FROM files WHERE revision_id = ? ORDER BY \(bytewise("path"))", [.int(revision.rowID)]).map { r in
                guard let sha = Digest256(bytes: try r.blob(3)), let kind = FileKind(rawValue: UInt8(truncatingIfNeeded: try r.int(4))) else {
                    throw StoreError.corrupt("catalog row for file \(try r.text(1)) is malformed")
                }
                return FileRecord(rowID: try r.int(0), path: try r.text(1), size: Int(try r.int(2)), sha256: sha, kind: kind)
            }
        }
    }

    public func fileChunks(file: FileRecord) throws -> [FileChunk] {
        try locked {
            try q("""
                SELECT fc.\(dialect.offsetColumn), \(SQLCatalog.chunkColumns) FROM file_chunks fc
                JOIN chunks c ON c.id = fc.chunk_id JOIN packs p ON p.id = c.pack_id
                WHERE fc.file_id = ? ORDER BY fc.seq
                """, [.int(file.rowID)]).map { r in
                FileChunk(offset: Int(try r.int(0)), location: try SQLCatalog.location(r, from: 1))
            }
        }
    }

    public func tensors(file: FileRecord) throws -> [TensorRecord] {
        try locked {
            try q("SELECT name, dtype, shape, begin_offset, end_offset FROM tensors WHERE file_id = ? ORDER BY begin_offset, \(bytewise("name"))",
                  [.int(file.rowID)]).map { r in
                TensorRecord(name: try r.text(0), dtype: try r.text(1), shape: TensorRecord.shape(fromText: try r.text(2)),
                             begin: Int(try r.int(3)), end: Int(try r.int(4)))
            }
        }
    }

    public func remove(revision: RevisionRecord, tombstonePack: (name: String, size: Int)) throws {
        try write {
            let now = Int64(Date().timeIntervalSince1970)
            try q("INSERT INTO packs(name, size, created_at) VALUES (?, ?, ?)", [.text(tombstonePack.name), .int(tombstonePack.size), .int(now)])
            try insertTombstone(pack: tombstonePack.name, model: revision.model, revision: revision.revision, manifest: revision.manifest, removedAt: now)
            guard try q("DELETE FROM revisions WHERE id = ? RETURNING id", [.int(revision.rowID)]).count == 1 else {
                throw StoreError.notFound(.removed(model: revision.model, revision: revision.revision))
            }
            try q("DELETE FROM models WHERE name = ? AND NOT EXISTS (SELECT 1 FROM revisions r WHERE r.model_id = models.id)", [.text(revision.model)])
        }
    }

    /// Records a tombstone found in a pack (catalog rebuild only).
    public func recordTombstone(_ tombstone: RevisionTombstone, pack: (name: String, size: Int)) throws {
        try write {
            try q("INSERT INTO packs(name, size, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                  [.text(pack.name), .int(pack.size), .int(tombstone.removedAt)])
            try insertTombstone(pack: pack.name, model: tombstone.model, revision: tombstone.revision, manifest: tombstone.manifest,
                                removedAt: tombstone.removedAt)
        }
    }

    private func insertTombstone(pack: String, model: String, revision: String, manifest: ChunkID, removedAt: Int64) throws {
        try q("""
            INSERT INTO tombstones(pack_id, model, revision, manifest_xxh, manifest_sha, removed_at)
            VALUES ((SELECT id FROM packs WHERE name = ?), ?, ?, ?, ?, ?)
            """, [.text(pack), .text(model), .text(revision), .blob(manifest.xxh.bytes), .blob(manifest.sha.bytes), .int(removedAt)])
    }

    // MARK: base choice

    /// Architectures past which `baseCandidates` reads them all in one sorted statement instead of
    /// one statement each (bounds the round trips when many stale or partial architectures match).
    static let architecturesReadOneByOne = 16

    public func baseCandidates(_ signatures: [TensorSignature.Weighted], minimumBytes: Int, limit: Int) throws -> [BaseCandidate] {
        // One statement for the architectures (the sum is over the whole list); an upload indexes at
        // most `TensorSignature.indexedTensors` per file, far below the databases' bound values.
        let want = Array(Set(signatures).prefix(dialect.maxBindings / 2 - 2))
        guard !want.isEmpty, limit > 0 else { return [] }
        let withWant = "WITH want(signature, bytes) AS (VALUES \(SQLCatalog.tuples(want.count, width: 2))) "
        let wanted: [SQLValue] = want.flatMap { [.int($0.signature), .int($0.bytes)] }
        return try locked {
            let architectures = try q(withWant + CatalogSQL.candidateArchitectures(threshold: "?"), wanted + [.int(minimumBytes)]).map {
                (id: try $0.int(0), matched: Int(try $0.int(1)))
            }
            guard architectures.count <= SQLCatalog.architecturesReadOneByOne else {
                return try q(withWant + CatalogSQL.baseCandidates(threshold: "?", limit: "?"), wanted + [.int(minimumBytes), .int(limit)]).map {
                    BaseCandidate(revisionRowID: try $0.int(0), matchedBytes: Int(try $0.int(1)), coarseSketch: try $0.optionalBlob(2))
                }
            }
            // Each architecture's revisions come newest first from its key range; architectures
            // matching the same bytes are merged newest first: the order of the one sorted
            // statement (most bytes, then newest), without sorting every row and its sketch.
            var found: [BaseCandidate] = []
            var i = 0
            while i < architectures.count, found.count < limit {
                let matched = architectures[i].matched
                var group: [BaseCandidate] = []
                while i < architectures.count, architectures[i].matched == matched {
                    group += try q(CatalogSQL.revisionsOfArchitecture(architecture: "?", limit: "?"), [.int(architectures[i].id), .int(limit - found.count)]).map {
                        BaseCandidate(revisionRowID: try $0.int(0), matchedBytes: matched, coarseSketch: try $0.optionalBlob(1))
                    }
                    i += 1
                }
                if group.count > 1 { group.sort { $0.revisionRowID > $1.revisionRowID } }
                found += group.prefix(limit - found.count)
            }
            return found
        }
    }

    public func sketches(revisionRowIDs: [Int64]) throws -> [Int64: [UInt8]] {
        try locked {
            var found: [Int64: [UInt8]] = [:]
            for batch in batches(Array(Set(revisionRowIDs)), width: 1) {
                for r in try q("SELECT revision_id, sketch FROM revision_sketches WHERE revision_id IN (\(SQLCatalog.list(batch.count)))",
                               batch.map { .int($0) }) {
                    found[try r.int(0)] = try r.blob(1)
                }
            }
            return found
        }
    }

    public func putSketch(revisionRowID: Int64, sketch: [UInt8]) throws {
        try write {
            guard try !q("SELECT 1 FROM revisions WHERE id = ?", [.int(revisionRowID)]).isEmpty else {
                throw StoreError.notFound("the revision was removed before its sketch was stored")
            }
            try q("""
                INSERT INTO revision_sketches(revision_id, sketch) VALUES (?, ?)
                ON CONFLICT (revision_id) DO UPDATE SET sketch = excluded.sketch
                """, [.int(revisionRowID), .blob(sketch)])
            try q("UPDATE revision_architectures SET coarse_sketch = ? WHERE revision_id = ?",
                  [SQLCatalog.coarseSketch(of: sketch).map { .blob($0) } ?? .null, .int(revisionRowID)])
        }
    }

    // MARK: stats

    public func totals() throws -> CatalogTotals {
        try locked {
            var t = CatalogTotals()
            let one = { (sql: String) throws -> Int in Int(try self.q(sql).first?.int(0) ?? 0) }
            t.models = try one("SELECT count(*) FROM models")
            t.revisions = try one("SELECT count(*) FROM revisions")
            t.files = try one("SELECT count(*) FROM files")
            // CAST: PostgreSQL sums bigints as numeric.
            t.logicalBytes = try one("SELECT CAST(coalesce(sum(size), 0) AS BIGINT) FROM files")
            t.packs = try one("SELECT count(*) FROM packs")
            t.packBytes = try one("SELECT CAST(coalesce(sum(size), 0) AS BIGINT) FROM packs")
            t.deltaChunks = try one("SELECT count(*) FROM chunks WHERE base_id IS NOT NULL")
            for r in try q("""
                SELECT encoding, count(*), CAST(sum(raw_length) AS BIGINT), CAST(sum(frame_length) AS BIGINT) FROM chunks
                WHERE id IN (SELECT chunk_id FROM file_chunks) GROUP BY encoding
                """) {
                let (e, n, raw, stored) = (try r.int(0), Int(try r.int(1)), Int(try r.int(2)), Int(try r.int(3)))
                t.byEncoding[UInt8(truncatingIfNeeded: e)] = (n, raw, stored)
                t.chunks += n
                t.chunkRawBytes += raw
                t.chunkStoredBytes += stored
            }
            return t
        }
    }

    public func storedBytes(file: FileRecord) throws -> (stored: Int, encodings: [UInt8: Int], delta: Int, shared: Int, fresh: Int) {
        // A chunk is "shared" when a file of an earlier revision references it, "delta" when it is
        // stored against a base, otherwise "fresh".
        let rows = try locked {
            try q("""
                SELECT c.frame_length, c.encoding, c.base_id IS NOT NULL,
                       EXISTS (SELECT 1 FROM file_chunks o JOIN files f ON f.id = o.file_id
                               WHERE o.chunk_id = c.id AND f.revision_id < (SELECT revision_id FROM files WHERE id = ?))
                FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk_id WHERE fc.file_id = ?
                """, [.int(file.rowID), .int(file.rowID)])
        }
        var stored = 0, delta = 0, shared = 0, fresh = 0
        var encodings: [UInt8: Int] = [:]
        for r in rows {
            if try r.bool(3) { shared += 1; continue }
            stored += Int(try r.int(0))
            encodings[UInt8(truncatingIfNeeded: try r.int(1)), default: 0] += 1
            if try r.bool(2) { delta += 1 } else { fresh += 1 }
        }
        return (stored, encodings, delta, shared, fresh)
    }

    // MARK: maintenance: fsck and gc

    public func integrityCheck() throws -> [String] {
        try locked {
            var problems: [String] = []
            for table in SQLCatalog.tables where try !connection.tableExists(table) { problems.append("table \(table) is missing") }
            return problems + (try connection.integrityProblems(tables: SQLCatalog.tables))
        }
    }

    public func packs() throws -> [(name: String, size: Int, tombstones: Bool)] {
        try locked {
            try q("SELECT p.name, p.size, EXISTS (SELECT 1 FROM tombstones t WHERE t.pack_id = p.id) FROM packs p ORDER BY \(bytewise("p.name"))")
                .map { (try $0.text(0), Int(try $0.int(1)), try $0.bool(2)) }
        }
    }

    public func allChunks() throws -> [ChunkLocation] {
        try locked {
            try q("SELECT \(SQLCatalog.chunkColumns) FROM \(SQLCatalog.chunkFrom) ORDER BY \(bytewise("p.name")), c.frame_offset")
                .map { try SQLCatalog.location($0) }
        }
    }

    public func chunkPage(after rowID: Int64, limit: Int) throws -> [ChunkLocation] {
        try locked {
            try q("SELECT \(SQLCatalog.chunkColumns) FROM \(SQLCatalog.chunkFrom) WHERE c.id > ? ORDER BY c.id LIMIT ?",
                  [.int(rowID), .int(Int64(limit))]).map { try SQLCatalog.location($0) }
        }
    }

    public func liveChunkRowIDs() throws -> Set<Int64> {
        try locked { Set(try q(CatalogSQL.liveChunks).map { try $0.int(0) }) }
    }

    public func collectionSurvey() throws -> CollectionSurvey {
        // No transaction: gc holds the store lock exclusively, so no put or rm changes the catalog
        // between the two queries.
        try locked {
            let packs = try q(CatalogSQL.packsWithLiveBytes + " ORDER BY \(bytewise("p.name"))").map {
                CollectionSurvey.Pack(name: try $0.text(0), size: Int(try $0.int(1)), tombstones: try $0.bool(2), liveBytes: Int(try $0.int(3)))
            }
            let dead = try q(CatalogSQL.deadChunks).map { (rowID: try $0.int(0), frameLength: Int(try $0.int(1))) }
            return CollectionSurvey(packs: packs, dead: dead)
        }
    }

    public func liveChunks(inPacks names: [String]) throws -> [ChunkLocation] {
        try locked {
            var out: [ChunkLocation] = []
            for batch in batches(names, width: 1) {
                out += try q(CatalogSQL.liveCTE + """

                    SELECT \(SQLCatalog.chunkColumns) FROM \(SQLCatalog.chunkFrom) JOIN live ON live.id = c.id
                    WHERE p.name IN (\(SQLCatalog.list(batch.count)))
                    """, batch.map { .text($0) }).map { try SQLCatalog.location($0) }
            }
            return out.sorted { $0.pack == $1.pack ? $0.frameOffset < $1.frameOffset : $0.pack.utf8.lexicographicallyPrecedes($1.pack.utf8) }
        }
    }

    public func applyCollection(newPacks: [(name: String, size: Int)], moved: [(rowID: Int64, pack: String, offset: Int)],
                                deadChunks: [Int64], deadPacks: [String]) throws {
        try write {
            // The indexes this transaction's deletes look through (the foreign keys naming a deleted
            // chunk or pack, SPEC §9), made first, before any row changes: PostgreSQL does not let a
            // transaction use an index it built over rows it had already updated in place (HOT
            // updates: the index is marked `indcheckxmin`, and each deleted row would be a scan).
            // The key indexes are kept (a catalog from before them gets them here, not on open,
            // which writes nothing); the index of chunks by base is dropped at the end.
            for index in CatalogSchema(dialect: dialect).keyIndexes where try !connection.indexExists(index.name) {
                try q(index.statement)
            }
            if !deadChunks.isEmpty { try q(CatalogSchema.create(CatalogSchema.baseIndex)) }
            let now = Int64(Date().timeIntervalSince1970)
            for pack in newPacks {
                try q("INSERT INTO packs(name, size, created_at) VALUES (?, ?, ?)", [.text(pack.name), .int(pack.size), .int(now)])
            }
            for m in moved {
                try q("UPDATE chunks SET pack_id = (SELECT id FROM packs WHERE name = ?), frame_offset = ? WHERE id = ?",
                      [.text(m.pack), .int(m.offset), .int(m.rowID)])
            }
            // Dead chunks may be bases of other dead chunks: clear every such link before any delete.
            let dead = batches(deadChunks, width: 1)
            for batch in dead {
                try q("UPDATE chunks SET base_id = NULL WHERE id IN (\(SQLCatalog.list(batch.count))) AND base_id IS NOT NULL", batch.map { .int($0) })
            }
            // The database still refuses to delete a chunk another one names as its base (the
            // foreign key); it finds such chunks through the index of chunks by base made above.
            for batch in dead {
                try q("DELETE FROM chunks WHERE id IN (\(SQLCatalog.list(batch.count)))", batch.map { .int($0) })
            }
            for batch in batches(deadPacks, width: 1) {
                try q("DELETE FROM packs WHERE name IN (\(SQLCatalog.list(batch.count)))", batch.map { .text($0) })
            }
            // Not kept for puts to update (`CatalogSchema.baseIndex`); last, because on PostgreSQL
            // dropping it locks `chunks` against readers until the commit.
            try q("DROP INDEX IF EXISTS \(CatalogSchema.baseIndex.name)")
        }
    }

    // MARK: annotations

    public func annotation(revision: RevisionRecord, optimizerVersion: String, parameters: String) throws -> AnnotationRecord? {
        try locked {
            try q("""
                SELECT optimizer_version, parameters, created_at, result FROM annotations
                WHERE revision_id = ? AND optimizer_version = ? AND parameters = ?
                """, [.int(revision.rowID), .text(optimizerVersion), .text(parameters)]).first.map {
                AnnotationRecord(revisionRowID: revision.rowID, optimizerVersion: try $0.text(0), parameters: try $0.text(1),
                                 createdAt: try $0.int(2), result: try $0.text(3))
            }
        }
    }

    public func annotations(revision: RevisionRecord) throws -> [AnnotationRecord] {
        try locked {
            try q("""
                SELECT optimizer_version, parameters, created_at, result FROM annotations WHERE revision_id = ?
                ORDER BY created_at, \(bytewise("optimizer_version")), \(bytewise("parameters"))
                """, [.int(revision.rowID)]).map {
                AnnotationRecord(revisionRowID: revision.rowID, optimizerVersion: try $0.text(0), parameters: try $0.text(1),
                                 createdAt: try $0.int(2), result: try $0.text(3))
            }
        }
    }

    public func putAnnotation(_ annotation: AnnotationRecord) throws {
        try write {
            guard try !q("SELECT 1 FROM revisions WHERE id = ?", [.int(annotation.revisionRowID)]).isEmpty else {
                throw StoreError.notFound("the revision was removed while it was being annotated")
            }
            try q("""
                INSERT INTO annotations(revision_id, optimizer_version, parameters, created_at, result) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (revision_id, optimizer_version, parameters) DO UPDATE SET created_at = excluded.created_at, result = excluded.result
                """, [.int(annotation.revisionRowID), .text(annotation.optimizerVersion), .text(annotation.parameters),
                      .int(annotation.createdAt), .text(annotation.result)])
        }
    }
}
