import Foundation
import PostgresNIO
import TenPakChunkStore
import TenPakFormat

/// The distributed catalog: SQLiteCatalog's schema in PostgreSQL.
///
/// Differences from SQLite: BIGSERIAL ids, BYTEA blobs, BIGINT integers, `"offset"` quoted (a
/// reserved word), `ON CONFLICT DO NOTHING` for `INSERT OR IGNORE`, text ordered with
/// `COLLATE "C"` (byte order, like SQLite). Each write (commit, remove, applyCollection,
/// putAnnotation) is one transaction on this catalog's session. One session per catalog object,
/// serialized by the session's lock.
public final class PostgresCatalog: Catalog, @unchecked Sendable {
    // Safe: `session` serializes its queries; transactions hold `transactionLock` so no other
    // thread's statement lands inside one.
    let session: PGSession
    private let transactionLock = NSRecursiveLock()
    public let config: PostgresConfig

    /// 2: the candidate index and sketches (`candidateSchema`); a version-1 schema is upgraded when opened.
    public static let schemaVersion = 2

    /// One row per gc run started: the fence of commits (added after version 1; made on open when missing).
    static let gcRunsSchema = "CREATE TABLE IF NOT EXISTS gc_runs (id BIGSERIAL PRIMARY KEY, started_at BIGINT NOT NULL)"

    /// Every table of the catalog (what a repair moves).
    static let tables = ["meta", "gc_runs", "packs", "chunks", "models", "revisions", "files", "file_chunks", "tensors", "tombstones", "annotations",
                         "tensor_index", "revision_sketches"]

    /// Schema version 2 (SPEC §9, §17): the candidate index, the revisions' sketches, revisions by model.
    static let candidateSchema: [String] = [
        """
        CREATE TABLE IF NOT EXISTS tensor_index (
            signature BIGINT NOT NULL,
            revision_id BIGINT NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
            bytes BIGINT NOT NULL,
            PRIMARY KEY (signature, revision_id))
        """,
        "CREATE INDEX IF NOT EXISTS tensor_index_by_revision ON tensor_index(revision_id)",
        """
        CREATE TABLE IF NOT EXISTS revision_sketches (
            revision_id BIGINT PRIMARY KEY REFERENCES revisions(id) ON DELETE CASCADE,
            sketch BYTEA NOT NULL)
        """,
        "CREATE INDEX IF NOT EXISTS revisions_by_model ON revisions(model_id, id)",
    ]

    static let schema: [String] = [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        PostgresCatalog.gcRunsSchema,
        """
        CREATE TABLE IF NOT EXISTS packs (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            size BIGINT NOT NULL,
            created_at BIGINT NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS chunks (
            id BIGSERIAL PRIMARY KEY,
            xxh BYTEA NOT NULL,
            sha BYTEA NOT NULL,
            raw_length BIGINT NOT NULL,
            pack_id BIGINT NOT NULL REFERENCES packs(id),
            frame_offset BIGINT NOT NULL,
            frame_length BIGINT NOT NULL,
            encoding INTEGER NOT NULL,
            base_id BIGINT REFERENCES chunks(id),
            depth INTEGER NOT NULL,
            UNIQUE (xxh, sha))
        """,
        "CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks(pack_id)",
        "CREATE INDEX IF NOT EXISTS chunks_by_base ON chunks(base_id)",
        "CREATE TABLE IF NOT EXISTS models (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        """
        CREATE TABLE IF NOT EXISTS revisions (
            id BIGSERIAL PRIMARY KEY,
            model_id BIGINT NOT NULL REFERENCES models(id),
            name TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            base_model TEXT NOT NULL,
            base_revision TEXT NOT NULL,
            base_reason TEXT NOT NULL,
            manifest_chunk BIGINT NOT NULL REFERENCES chunks(id),
            UNIQUE (model_id, name))
        """,
        """
        CREATE TABLE IF NOT EXISTS files (
            id BIGSERIAL PRIMARY KEY,
            revision_id BIGINT NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            size BIGINT NOT NULL,
            sha256 BYTEA NOT NULL,
            kind INTEGER NOT NULL,
            UNIQUE (revision_id, path))
        """,
        """
        CREATE TABLE IF NOT EXISTS file_chunks (
            file_id BIGINT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            "offset" BIGINT NOT NULL,
            chunk_id BIGINT NOT NULL REFERENCES chunks(id),
            PRIMARY KEY (file_id, seq))
        """,
        "CREATE INDEX IF NOT EXISTS file_chunks_by_chunk ON file_chunks(chunk_id)",
        """
        CREATE TABLE IF NOT EXISTS tensors (
            file_id BIGINT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            dtype TEXT NOT NULL,
            shape TEXT NOT NULL,
            begin_offset BIGINT NOT NULL,
            end_offset BIGINT NOT NULL,
            PRIMARY KEY (file_id, name))
        """,
        """
        CREATE TABLE IF NOT EXISTS tombstones (
            pack_id BIGINT NOT NULL REFERENCES packs(id),
            model TEXT NOT NULL,
            revision TEXT NOT NULL,
            manifest_xxh BYTEA NOT NULL,
            manifest_sha BYTEA NOT NULL,
            removed_at BIGINT NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS annotations (
            revision_id BIGINT NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
            optimizer_version TEXT NOT NULL,
            parameters TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            result TEXT NOT NULL,
            PRIMARY KEY (revision_id, optimizer_version, parameters))
        """,
    ] + PostgresCatalog.candidateSchema

    /// Connects; with `create`, creates the schema when missing (under a transaction-level
    /// advisory lock, so two nodes creating it at once do not collide).
    public init(config: PostgresConfig, create: Bool, roundTrips: Counter? = nil) throws {
        self.config = config
        session = try PGSession(config: config, roundTrips: roundTrips ?? Counter(), reconnects: true)
        let place = "postgres://\(config.host):\(config.port)/\(config.database)"
        if create {
            try transaction {
                try session.query("SELECT pg_advisory_xact_lock($1)", [.int(PostgresStoreLocking.key + 1)])
                for statement in PostgresCatalog.schema { try session.query(statement) }
                try session.query("INSERT INTO meta(key, value) VALUES ('schema_version', $1) ON CONFLICT DO NOTHING",
                                  [.text(String(PostgresCatalog.schemaVersion))])
            }
        }
        let tables = try session.query("SELECT to_regclass('meta') IS NOT NULL, to_regclass('gc_runs') IS NOT NULL").first
        let hasMeta = try tables?.bool(0) ?? false
        if hasMeta, try tables?.bool(1) == false {
            // Under the schema lock, so two nodes opening an older store at once do not collide.
            try transaction {
                try session.query("SELECT pg_advisory_xact_lock($1)", [.int(PostgresStoreLocking.key + 1)])
                try session.query(PostgresCatalog.gcRunsSchema)
            }
        }
        guard hasMeta, let version = try session.query("SELECT value FROM meta WHERE key = 'schema_version'").first?.text(0),
              let number = Int(version) else {
            throw StoreError.notAStore(path: place, reason: "the database has no TenPak schema")
        }
        guard number <= PostgresCatalog.schemaVersion else {
            throw StoreError.invalidRequest("catalog schema version \(number) is newer than this tpstore (\(PostgresCatalog.schemaVersion)): upgrade tpstore")
        }
        if number < 2 { try upgradeToVersion2() }
    }

    /// Version 1 → 2 in one transaction under the schema lock (as SQLiteCatalog's): new tables,
    /// the index filled from the stored tensors, the version. A second node finds it done.
    private func upgradeToVersion2() throws {
        try transaction {
            try session.query("SELECT pg_advisory_xact_lock($1)", [.int(PostgresStoreLocking.key + 1)])
            guard let current = try q("SELECT value FROM meta WHERE key = 'schema_version'").first?.text(0),
                  let number = Int(current), number < 2 else { return }
            for statement in PostgresCatalog.candidateSchema { try q(statement) }
            var byRevision: [Int64: [TensorRecord]] = [:]
            for r in try q(CatalogSQL.tensorsByRevision) {
                byRevision[try r.int(0), default: []].append(
                    TensorRecord(name: try r.text(1), dtype: try r.text(2), shape: TensorRecord.shape(fromText: try r.text(3)),
                                 begin: Int(try r.int(4)), end: Int(try r.int(5))))
            }
            for (revision, tensors) in byRevision { try insertIndexRows(revision: revision, tensors: tensors) }
            try q("UPDATE meta SET value = $1 WHERE key = 'schema_version'", [.text(String(PostgresCatalog.schemaVersion))])
        }
    }

    /// A revision's candidate index rows, in one statement (inside the caller's transaction).
    private func insertIndexRows(revision: Int64, tensors: [TensorRecord]) throws {
        let rows = TensorSignature.indexRows(tensors)
        guard !rows.isEmpty else { return }
        try q("""
            INSERT INTO tensor_index(signature, revision_id, bytes)
            SELECT s, $1, b FROM unnest($2::bigint[], $3::bigint[]) AS w(s, b) ON CONFLICT DO NOTHING
            """, [.int(revision), .text(PostgresCatalog.arrayLiteral(rows.map(\.signature))),
                  .text(PostgresCatalog.arrayLiteral(rows.map { Int64($0.bytes) }))])
    }

    /// PostgreSQL round trips made by this catalog (for benchmarks).
    public var roundTrips: Int { session.roundTrips.count }

    @discardableResult
    private func q(_ sql: String, _ values: [PGValue] = []) throws -> [PostgresRandomAccessRow] {
        do {
            return try session.query(sql, values)
        } catch let error as PGError {
            throw StoreError.catalog(PGSession.describe(error.error))
        }
    }

    /// Runs `body` in one transaction (BEGIN … COMMIT, ROLLBACK on error).
    private func transaction<T>(_ body: () throws -> T) throws -> T {
        transactionLock.lock()
        defer { transactionLock.unlock() }
        try session.begin()
        do {
            let result = try body()
            try session.commit()
            return result
        } catch {
            _ = try? session.rollback()
            if let e = error as? PGError { throw StoreError.catalog(PGSession.describe(e.error)) }
            throw error
        }
    }

    /// Statements outside a transaction still must not interleave with one.
    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        transactionLock.lock()
        defer { transactionLock.unlock() }
        return try body()
    }

    static let chunkColumns = "c.id, c.xxh, c.sha, c.raw_length, p.name, c.frame_offset, c.frame_length, c.encoding::bigint, c.base_id, c.depth::bigint"

    static func location(_ r: PostgresRandomAccessRow, from c: Int = 0) throws -> ChunkLocation {
        guard let xxh = XXH128(bytes: try r.bytes(c + 1)), let sha = Digest256(bytes: try r.bytes(c + 2)) else {
            throw StoreError.corrupt("catalog row for chunk \(try r.int(c)) has a malformed id")
        }
        return ChunkLocation(rowID: try r.int(c), id: ChunkID(xxh: xxh, sha: sha), rawLength: Int(try r.int(c + 3)),
                             pack: try r.text(c + 4), frameOffset: Int(try r.int(c + 5)), frameLength: Int(try r.int(c + 6)),
                             encoding: UInt8(truncatingIfNeeded: try r.int(c + 7)), baseRowID: try r.optionalInt(c + 8),
                             depth: Int(try r.int(c + 9)))
    }

    public func findChunks(_ ids: [ChunkID]) throws -> [ChunkID: ChunkLocation] {
        if ids.isEmpty { return [:] }
        // One round trip for the whole batch.
        let rows = try locked {
            try q("""
                SELECT \(PostgresCatalog.chunkColumns) FROM chunks c JOIN packs p ON p.id = c.pack_id
                JOIN unnest($1::bytea[], $2::bytea[]) AS want(xxh, sha) ON c.xxh = want.xxh AND c.sha = want.sha
                """, [.byteArray(ids.map(\.xxh.bytes)), .byteArray(ids.map(\.sha.bytes))])
        }
        var found: [ChunkID: ChunkLocation] = [:]
        for r in rows {
            let loc = try PostgresCatalog.location(r)
            found[loc.id] = loc
        }
        return found
    }

    public func chunks(rowIDs: [Int64]) throws -> [Int64: ChunkLocation] {
        guard !rowIDs.isEmpty else { return [:] }
        return try locked {
            var found: [Int64: ChunkLocation] = [:]
            for row in try q("SELECT \(PostgresCatalog.chunkColumns) FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE c.id = ANY($1)",
                             [.intArray(Array(Set(rowIDs)))]) {
                let location = try PostgresCatalog.location(row)
                found[location.rowID] = location
            }
            return found
        }
    }

    public func chunk(rowID: Int64) throws -> ChunkLocation? {
        try locked {
            try q("SELECT \(PostgresCatalog.chunkColumns) FROM chunks c JOIN packs p ON p.id = c.pack_id WHERE c.id = $1", [.int(rowID)])
                .first.map { try PostgresCatalog.location($0) }
        }
    }

    public func gcGeneration() throws -> Int64 {
        try locked { try q("SELECT COALESCE(MAX(id), 0) FROM gc_runs").first?.int(0) ?? 0 }
    }

    public func beginCollection() throws -> Int64 {
        try transaction {
            let now = Date().timeIntervalSince1970
            guard let id = try q("INSERT INTO gc_runs(id, started_at) VALUES (GREATEST((SELECT COALESCE(MAX(id), 0) FROM gc_runs) + 1, $1), $2) RETURNING id",
                                 [.int(Int(now * 1000)), .int(Int(now))]).first?.int(0) else {
                throw StoreError.catalog("INSERT INTO gc_runs returned no id")
            }
            return id
        }
    }

    public func commitChunks(_ commit: ChunkCommit) throws {
        try transaction {
            if let fence = commit.gcFence {
                try q("LOCK TABLE gc_runs IN SHARE MODE")
                guard try q("SELECT COALESCE(MAX(id), 0) FROM gc_runs").first?.int(0) == fence else {
                    throw StoreError.fenced(.chunks(count: commit.chunks.count))
                }
            }
            _ = try insertPacksAndChunks(packs: commit.packs, chunks: commit.chunks, alsoLookUp: [])
        }
    }

    /// Inside a transaction: records `packs`, then `chunks` (bases first, in batches). Returns the
    /// row id of any chunk by identity (inserted, already there, or in `alsoLookUp`).
    private func insertPacksAndChunks(packs: [(name: String, size: Int)], chunks: [NewChunk], alsoLookUp: [ChunkID]) throws -> (ChunkID) throws -> Int64 {
        let now = Int64(Date().timeIntervalSince1970)
        var packIDs: [String: Int64] = [:]
        for pack in packs {
            packIDs[pack.name] = try q("INSERT INTO packs(name, size, created_at) VALUES ($1, $2, $3) RETURNING id",
                                       [.text(pack.name), .int(pack.size), .int(now)]).first?.int(0)
        }
        var rowIDs: [ChunkID: Int64] = [:]
        let needed = chunks.compactMap(\.base) + alsoLookUp
        for (id, loc) in try findChunksInTransaction(Array(Set(needed))) { rowIDs[id] = loc }
        func rowID(_ id: ChunkID) throws -> Int64 {
            if let known = rowIDs[id] { return known }
            guard let row = try q("SELECT id FROM chunks WHERE xxh = $1 AND sha = $2", [.bytes(id.xxh.bytes), .bytes(id.sha.bytes)]).first?.int(0) else {
                throw StoreError.corrupt("chunk \(id.short) is referenced but not in the catalog")
            }
            rowIDs[id] = row
            return row
        }
        // Bases come before the chunks that use them: a base is either already in the
        // catalog or earlier in `chunks`. Chunks go in batches, one INSERT each: a batch holds
        // every remaining chunk whose base already has a row.
        for chunk in chunks where packIDs[chunk.pack] == nil {
            if let known = try q("SELECT id FROM packs WHERE name = $1", [.text(chunk.pack)]).first?.int(0) {
                packIDs[chunk.pack] = known
            } else {
                throw StoreError.invalidRequest("chunk \(chunk.id.short) names pack \(chunk.pack), which is not in the catalog")
            }
        }
        var remaining = chunks
        while !remaining.isEmpty {
            let ready = remaining.filter { $0.base == nil || rowIDs[$0.base!] != nil }
            guard !ready.isEmpty else {
                throw StoreError.corrupt("chunk \(remaining[0].id.short) is a delta against \(remaining[0].base!.short), which is not in the catalog")
            }
            remaining.removeAll { $0.base == nil || rowIDs[$0.base!] != nil }
            // A concurrent put may have stored the same chunk first: theirs is kept, ours is
            // garbage for gc (ON CONFLICT DO NOTHING; its row id is looked up below).
            let inserted = try q("""
                INSERT INTO chunks(xxh, sha, raw_length, pack_id, frame_offset, frame_length, encoding, base_id, depth)
                SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                                     $7::integer[], $8::bigint[], $9::integer[])
                ON CONFLICT (xxh, sha) DO NOTHING RETURNING id, xxh, sha
                """, [.byteArray(ready.map(\.id.xxh.bytes)), .byteArray(ready.map(\.id.sha.bytes)),
                      .text(PostgresCatalog.arrayLiteral(ready.map { Int64($0.rawLength) })),
                      .text(PostgresCatalog.arrayLiteral(ready.map { packIDs[$0.pack]! })),
                      .text(PostgresCatalog.arrayLiteral(ready.map { Int64($0.frameOffset) })),
                      .text(PostgresCatalog.arrayLiteral(ready.map { Int64($0.frameLength) })),
                      .text(PostgresCatalog.arrayLiteral(ready.map { Int64($0.encoding) })),
                      .text("{" + ready.map { $0.base.map { String(rowIDs[$0]!) } ?? "NULL" }.joined(separator: ",") + "}"),
                      .text(PostgresCatalog.arrayLiteral(ready.map { Int64($0.depth) }))])
            for r in inserted {
                if let xxh = XXH128(bytes: try r.bytes(1)), let sha = Digest256(bytes: try r.bytes(2)) {
                    rowIDs[ChunkID(xxh: xxh, sha: sha)] = try r.int(0)
                }
            }
            let lost = ready.filter { rowIDs[$0.id] == nil }.map(\.id)
            for (id, row) in try findChunksInTransaction(lost) { rowIDs[id] = row }
        }
        return rowID
    }

    public func commit(_ commit: RevisionCommit) throws -> RevisionRecord {
        try transaction {
            if let fence = commit.gcFence {
                // SHARE conflicts with the ROW EXCLUSIVE lock of gc's INSERT: until this COMMIT, no gc
                // can start; a gc that started before is seen here, and the commit is refused.
                try q("LOCK TABLE gc_runs IN SHARE MODE")
                guard try q("SELECT COALESCE(MAX(id), 0) FROM gc_runs").first?.int(0) == fence else {
                    throw StoreError.fencedCommit(model: commit.model, revision: commit.revision)
                }
            }
            let rowID = try insertPacksAndChunks(packs: commit.packs, chunks: commit.chunks + [commit.manifest],
                                                 alsoLookUp: [commit.manifest.id] + commit.files.flatMap { $0.chunks.map(\.id) })
            try q("INSERT INTO models(name) VALUES ($1) ON CONFLICT (name) DO NOTHING", [.text(commit.model)])
            guard let modelID = try q("SELECT id FROM models WHERE name = $1", [.text(commit.model)]).first?.int(0) else {
                throw StoreError.catalog("model row vanished during commit")
            }
            if try !q("SELECT 1 FROM revisions WHERE model_id = $1 AND name = $2", [.int(modelID), .text(commit.revision)]).isEmpty {
                throw StoreError.revisionAlreadyExists(model: commit.model, revision: commit.revision)
            }
            let revisionID: Int64
            do {
                guard let id = try session.query("""
                    INSERT INTO revisions(model_id, name, created_at, base_model, base_revision, base_reason, manifest_chunk)
                    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
                    """, [.int(modelID), .text(commit.revision), .int(commit.createdAt), .text(commit.baseModel),
                          .text(commit.baseRevision), .text(commit.baseReason), .int(try rowID(commit.manifest.id))]).first?.int(0) else {
                    throw StoreError.catalog("no id for the new revision")
                }
                revisionID = id
            } catch let error as PGError where error.sqlState == "23505" {
                throw StoreError.revisionAlreadyExists(model: commit.model, revision: commit.revision)
            }
            for file in commit.files {
                guard let fileID = try q("INSERT INTO files(revision_id, path, size, sha256, kind) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                                         [.int(revisionID), .text(file.path), .int(file.size), .bytes(file.sha256.bytes),
                                          .int(Int(file.kind.rawValue))]).first?.int(0) else {
                    throw StoreError.catalog("no id for file \(file.path)")
                }
                // One round trip per file for its chunk list and one for its tensors.
                if !file.chunks.isEmpty {
                    let ids = try file.chunks.map { try rowID($0.id) }
                    try q("""
                        INSERT INTO file_chunks(file_id, seq, "offset", chunk_id)
                        SELECT $1, s.seq - 1, s.off, s.chunk FROM unnest($2::bigint[], $3::bigint[]) WITH ORDINALITY AS s(off, chunk, seq)
                        """, [.int(fileID), .text(PostgresCatalog.arrayLiteral(file.chunks.map { Int64($0.offset) })),
                              .text(PostgresCatalog.arrayLiteral(ids))])
                }
                if !file.tensors.isEmpty {
                    try q("""
                        INSERT INTO tensors(file_id, name, dtype, shape, begin_offset, end_offset)
                        SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
                        """, [.int(fileID), .textArray(file.tensors.map(\.name)), .textArray(file.tensors.map(\.dtype)),
                              .textArray(file.tensors.map(\.shapeText)),
                              .text(PostgresCatalog.arrayLiteral(file.tensors.map { Int64($0.begin) })),
                              .text(PostgresCatalog.arrayLiteral(file.tensors.map { Int64($0.end) }))])
                }
            }
            // The candidate index and the sketch are part of the revision: same transaction.
            try insertIndexRows(revision: revisionID, tensors: commit.files.flatMap(\.tensors))
            if let sketch = commit.sketch {
                try q("INSERT INTO revision_sketches(revision_id, sketch) VALUES ($1, $2)", [.int(revisionID), .bytes(sketch)])
            }
            return RevisionRecord(rowID: revisionID, model: commit.model, revision: commit.revision, createdAt: commit.createdAt,
                                  baseModel: commit.baseModel, baseRevision: commit.baseRevision, baseReason: commit.baseReason,
                                  manifest: commit.manifest.id)
        }
    }

    public func revisions(rowIDs: [Int64]) throws -> [Int64: RevisionRecord] {
        guard !rowIDs.isEmpty else { return [:] }
        return try locked {
            var found: [Int64: RevisionRecord] = [:]
            for r in try q("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) WHERE r.id = ANY($1)", [.intArray(Array(Set(rowIDs)))]) {
                let record = try PostgresCatalog.revision(r)
                found[record.rowID] = record
            }
            return found
        }
    }

    public func baseCandidates(_ signatures: [TensorSignature.Weighted], minimumBytes: Int, limit: Int) throws -> [BaseCandidate] {
        let want = Array(Set(signatures))
        guard !want.isEmpty, limit > 0 else { return [] }
        // One round trip: the upload's signatures as two arrays.
        return try locked {
            try q("WITH want(signature, bytes) AS (SELECT * FROM unnest($1::bigint[], $2::bigint[])) "
                  + CatalogSQL.baseCandidates(threshold: "$3", limit: "$4"),
                  [.text(PostgresCatalog.arrayLiteral(want.map(\.signature))), .text(PostgresCatalog.arrayLiteral(want.map { Int64($0.bytes) })),
                   .int(minimumBytes), .int(limit)]).map {
                BaseCandidate(revisionRowID: try $0.int(0), matchedBytes: Int(try $0.int(1)))
            }
        }
    }

    public func sketches(revisionRowIDs: [Int64]) throws -> [Int64: [UInt8]] {
        guard !revisionRowIDs.isEmpty else { return [:] }
        return try locked {
            var found: [Int64: [UInt8]] = [:]
            for r in try q("SELECT revision_id, sketch FROM revision_sketches WHERE revision_id = ANY($1)", [.intArray(Array(Set(revisionRowIDs)))]) {
                found[try r.int(0)] = try r.bytes(1)
            }
            return found
        }
    }

    public func putSketch(revisionRowID: Int64, sketch: [UInt8]) throws {
        try transaction {
            guard try !q("SELECT 1 FROM revisions WHERE id = $1", [.int(revisionRowID)]).isEmpty else {
                throw StoreError.notFound("the revision was removed before its sketch was stored")
            }
            try q("""
                INSERT INTO revision_sketches(revision_id, sketch) VALUES ($1, $2)
                ON CONFLICT (revision_id) DO UPDATE SET sketch = EXCLUDED.sketch
                """, [.int(revisionRowID), .bytes(sketch)])
        }
    }

    /// `{1,2,3}`: a bigint array passed as text and cast in SQL.
    static func arrayLiteral(_ values: [Int64]) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }

    private func findChunksInTransaction(_ ids: [ChunkID]) throws -> [ChunkID: Int64] {
        if ids.isEmpty { return [:] }
        var out: [ChunkID: Int64] = [:]
        for r in try q("""
            SELECT c.id, c.xxh, c.sha FROM chunks c
            JOIN unnest($1::bytea[], $2::bytea[]) AS want(xxh, sha) ON c.xxh = want.xxh AND c.sha = want.sha
            """, [.byteArray(ids.map(\.xxh.bytes)), .byteArray(ids.map(\.sha.bytes))]) {
            if let xxh = XXH128(bytes: try r.bytes(1)), let sha = Digest256(bytes: try r.bytes(2)) {
                out[ChunkID(xxh: xxh, sha: sha)] = try r.int(0)
            }
        }
        return out
    }


    static func revision(_ r: PostgresRandomAccessRow) throws -> RevisionRecord {
        guard let xxh = XXH128(bytes: try r.bytes(7)), let sha = Digest256(bytes: try r.bytes(8)) else {
            throw StoreError.corrupt("catalog row for revision \(try r.int(0)) has a malformed manifest id")
        }
        return RevisionRecord(rowID: try r.int(0), model: try r.text(1), revision: try r.text(2), createdAt: try r.int(3),
                              baseModel: try r.text(4), baseRevision: try r.text(5), baseReason: try r.text(6),
                              manifest: ChunkID(xxh: xxh, sha: sha))
    }

    public func resolve(model: String, revision: String?) throws -> RevisionRecord {
        try locked {
            let found: RevisionRecord?
            if let revision {
                found = try q("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) WHERE m.name = $1 AND r.name = $2",
                              [.text(model), .text(revision)]).first.map { try PostgresCatalog.revision($0) }
            } else {
                found = try q("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) WHERE m.name = $1 ORDER BY r.id DESC LIMIT 1",
                              [.text(model)]).first.map { try PostgresCatalog.revision($0) }
            }
            if let found { return found }
            let modelKnown = try !q("SELECT 1 FROM models m WHERE m.name = $1 AND EXISTS (SELECT 1 FROM revisions r WHERE r.model_id = m.id)",
                                    [.text(model)]).isEmpty
            throw StoreError.unknownRevision(model: model, revision: revision, modelKnown: modelKnown)
        }
    }

    public func revisions(model: String?) throws -> [RevisionRecord] {
        try locked {
            if let model {
                return try q("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) WHERE m.name = $1 ORDER BY r.id",
                             [.text(model)]).map { try PostgresCatalog.revision($0) }
            }
            return try q("SELECT \(CatalogSQL.revisionColumns) FROM \(CatalogSQL.revisionFrom) ORDER BY m.name COLLATE \"C\", r.id")
                .map { try PostgresCatalog.revision($0) }
        }
    }

    public func files(revision: RevisionRecord) throws -> [FileRecord] {
        try locked {
            try q("SELECT id, path, size, sha256, kind::bigint FROM files WHERE revision_id = $1 ORDER BY path COLLATE \"C\"", [.int(revision.rowID)]).map { r in
                guard let sha = Digest256(bytes: try r.bytes(3)), let kind = FileKind(rawValue: UInt8(truncatingIfNeeded: try r.int(4))) else {
                    throw StoreError.corrupt("catalog row for file \(try r.text(1)) is malformed")
                }
                return FileRecord(rowID: try r.int(0), path: try r.text(1), size: Int(try r.int(2)), sha256: sha, kind: kind)
            }
        }
    }

    public func fileChunks(file: FileRecord) throws -> [FileChunk] {
        try locked {
            try q("""
                SELECT fc."offset", \(PostgresCatalog.chunkColumns) FROM file_chunks fc
                JOIN chunks c ON c.id = fc.chunk_id JOIN packs p ON p.id = c.pack_id
                WHERE fc.file_id = $1 ORDER BY fc.seq
                """, [.int(file.rowID)]).map { r in
                FileChunk(offset: Int(try r.int(0)), location: try PostgresCatalog.location(r, from: 1))
            }
        }
    }

    public func tensors(file: FileRecord) throws -> [TensorRecord] {
        try locked {
            try q("SELECT name, dtype, shape, begin_offset, end_offset FROM tensors WHERE file_id = $1 ORDER BY begin_offset, name COLLATE \"C\"",
                  [.int(file.rowID)]).map { r in
                TensorRecord(name: try r.text(0), dtype: try r.text(1), shape: TensorRecord.shape(fromText: try r.text(2)),
                             begin: Int(try r.int(3)), end: Int(try r.int(4)))
            }
        }
    }

    public func remove(revision: RevisionRecord, tombstonePack: (name: String, size: Int)) throws {
        try transaction {
            let now = Int64(Date().timeIntervalSince1970)
            try q("INSERT INTO packs(name, size, created_at) VALUES ($1, $2, $3)", [.text(tombstonePack.name), .int(tombstonePack.size), .int(now)])
            try q("""
                INSERT INTO tombstones(pack_id, model, revision, manifest_xxh, manifest_sha, removed_at)
                VALUES ((SELECT id FROM packs WHERE name = $1), $2, $3, $4, $5, $6)
                """, [.text(tombstonePack.name), .text(revision.model), .text(revision.revision),
                      .bytes(revision.manifest.xxh.bytes), .bytes(revision.manifest.sha.bytes), .int(now)])
            guard try q("DELETE FROM revisions WHERE id = $1 RETURNING id", [.int(revision.rowID)]).count == 1 else {
                throw StoreError.notFound(.removed(model: revision.model, revision: revision.revision))
            }
            try q("DELETE FROM models WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM revisions r WHERE r.model_id = models.id)", [.text(revision.model)])
        }
    }

    public func totals() throws -> CatalogTotals {
        try locked {
            var t = CatalogTotals()
            let one = { (sql: String) throws -> Int in Int(try self.q(sql).first?.int(0) ?? 0) }
            t.models = try one("SELECT count(*) FROM models")
            t.revisions = try one("SELECT count(*) FROM revisions")
            t.files = try one("SELECT count(*) FROM files")
            t.logicalBytes = try one("SELECT coalesce(sum(size), 0)::bigint FROM files")
            t.packs = try one("SELECT count(*) FROM packs")
            t.packBytes = try one("SELECT coalesce(sum(size), 0)::bigint FROM packs")
            t.deltaChunks = try one("SELECT count(*) FROM chunks WHERE base_id IS NOT NULL")
            for r in try q("""
                SELECT encoding::bigint, count(*), sum(raw_length)::bigint, sum(frame_length)::bigint FROM chunks
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
        let rows = try locked {
            try q("""
                SELECT c.frame_length, c.encoding::bigint, c.base_id IS NOT NULL,
                       EXISTS (SELECT 1 FROM file_chunks o JOIN files f ON f.id = o.file_id
                               WHERE o.chunk_id = c.id AND f.revision_id < (SELECT revision_id FROM files WHERE id = $1))
                FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk_id WHERE fc.file_id = $1
                """, [.int(file.rowID)])
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

    // MARK: maintenance

    /// PostgreSQL enforces the foreign keys itself; what is left to check is that every table is there.
    public func integrityCheck() throws -> [String] {
        try locked {
            var problems: [String] = []
            for table in ["meta", "packs", "chunks", "models", "revisions", "files", "file_chunks", "tensors", "tombstones", "annotations",
                          "tensor_index", "revision_sketches"] {
                if try q("SELECT to_regclass($1) IS NOT NULL", [.text(table)]).first?.bool(0) != true {
                    problems.append("table \(table) is missing")
                }
            }
            return problems
        }
    }

    public func packs() throws -> [(name: String, size: Int, tombstones: Bool)] {
        try locked {
            try q("SELECT p.name, p.size, EXISTS (SELECT 1 FROM tombstones t WHERE t.pack_id = p.id) FROM packs p ORDER BY p.name COLLATE \"C\"")
                .map { (try $0.text(0), Int(try $0.int(1)), try $0.bool(2)) }
        }
    }

    public func allChunks() throws -> [ChunkLocation] {
        try locked {
            try q("SELECT \(PostgresCatalog.chunkColumns) FROM chunks c JOIN packs p ON p.id = c.pack_id ORDER BY p.name COLLATE \"C\", c.frame_offset")
                .map { try PostgresCatalog.location($0) }
        }
    }

    public func liveChunkRowIDs() throws -> Set<Int64> {
        try locked {
            Set(try q(CatalogSQL.liveChunks).map { try $0.int(0) })
        }
    }

    public func applyCollection(newPacks: [(name: String, size: Int)], moved: [(rowID: Int64, pack: String, offset: Int)],
                                deadChunks: [Int64], deadPacks: [String]) throws {
        try transaction {
            let now = Int64(Date().timeIntervalSince1970)
            for pack in newPacks {
                try q("INSERT INTO packs(name, size, created_at) VALUES ($1, $2, $3)", [.text(pack.name), .int(pack.size), .int(now)])
            }
            for m in moved {
                try q("UPDATE chunks SET pack_id = (SELECT id FROM packs WHERE name = $1), frame_offset = $2 WHERE id = $3",
                      [.text(m.pack), .int(m.offset), .int(m.rowID)])
            }
            if !deadChunks.isEmpty {
                let list = PostgresCatalog.arrayLiteral(deadChunks)
                // Dead chunks may be bases of other dead chunks: clear those links first.
                try q("UPDATE chunks SET base_id = NULL WHERE id = ANY($1::bigint[])", [.text(list)])
                try q("DELETE FROM chunks WHERE id = ANY($1::bigint[])", [.text(list)])
            }
            for name in deadPacks {
                try q("DELETE FROM packs WHERE name = $1", [.text(name)])
            }
        }
    }

    /// Records a tombstone found in a pack (catalog rebuild only).
    public func recordTombstone(_ tombstone: RevisionTombstone, pack: (name: String, size: Int)) throws {
        try transaction {
            try q("INSERT INTO packs(name, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                  [.text(pack.name), .int(pack.size), .int(tombstone.removedAt)])
            try q("""
                INSERT INTO tombstones(pack_id, model, revision, manifest_xxh, manifest_sha, removed_at)
                VALUES ((SELECT id FROM packs WHERE name = $1), $2, $3, $4, $5, $6)
                """, [.text(pack.name), .text(tombstone.model), .text(tombstone.revision),
                      .bytes(tombstone.manifest.xxh.bytes), .bytes(tombstone.manifest.sha.bytes), .int(tombstone.removedAt)])
        }
    }

    // MARK: annotations

    public func annotation(revision: RevisionRecord, optimizerVersion: String, parameters: String) throws -> AnnotationRecord? {
        try locked {
            try q("""
                SELECT optimizer_version, parameters, created_at, result FROM annotations
                WHERE revision_id = $1 AND optimizer_version = $2 AND parameters = $3
                """, [.int(revision.rowID), .text(optimizerVersion), .text(parameters)]).first.map {
                AnnotationRecord(revisionRowID: revision.rowID, optimizerVersion: try $0.text(0), parameters: try $0.text(1),
                                 createdAt: try $0.int(2), result: try $0.text(3))
            }
        }
    }

    public func annotations(revision: RevisionRecord) throws -> [AnnotationRecord] {
        try locked {
            try q("""
                SELECT optimizer_version, parameters, created_at, result FROM annotations WHERE revision_id = $1
                ORDER BY created_at, optimizer_version COLLATE "C", parameters COLLATE "C"
                """, [.int(revision.rowID)]).map {
                AnnotationRecord(revisionRowID: revision.rowID, optimizerVersion: try $0.text(0), parameters: try $0.text(1),
                                 createdAt: try $0.int(2), result: try $0.text(3))
            }
        }
    }

    public func putAnnotation(_ annotation: AnnotationRecord) throws {
        try transaction {
            guard try !q("SELECT 1 FROM revisions WHERE id = $1", [.int(annotation.revisionRowID)]).isEmpty else {
                throw StoreError.notFound("the revision was removed while it was being annotated")
            }
            try q("""
                INSERT INTO annotations(revision_id, optimizer_version, parameters, created_at, result) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (revision_id, optimizer_version, parameters) DO UPDATE SET created_at = EXCLUDED.created_at, result = EXCLUDED.result
                """, [.int(annotation.revisionRowID), .text(annotation.optimizerVersion), .text(annotation.parameters),
                      .int(annotation.createdAt), .text(annotation.result)])
        }
    }
}
