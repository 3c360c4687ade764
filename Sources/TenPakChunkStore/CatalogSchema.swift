import Foundation

/// The catalog's tables (SPEC §9), written once for every database: `{int}` (64-bit integer),
/// `{blob}`, `{rowid}` (an id the database numbers), `{offset}` (the column name `offset`) and
/// `{norowid}` are replaced by the dialect's text (`SQLDialect`).
///
/// The SQLite text rendered here is, byte for byte, the text earlier versions created (SQLite keeps
/// it in `sqlite_master`; `Tests/Golden/catalog-schema-sqlite.txt` pins it), less the index of
/// chunks by base (`baseIndex`) and with `keyIndexes` last; PostgreSQL's is its earlier schema with
/// the same column types. A new column is one edit here (and a migration).
struct CatalogSchema {
    let dialect: SQLDialect

    /// Schema version 1, as first shipped, less the index `baseIndex` names.
    var version1: [String] { render(CatalogSchema.version1) }
    /// Added after version 1 shipped without changing the version: made on open when missing.
    var annotations: [String] { render(CatalogSchema.annotations) }
    var gcRuns: [String] { render(CatalogSchema.gcRuns) }
    /// Versions 2 and 3: the revisions' sketches, revisions by model in id order, the candidate index.
    var candidates: [String] { render(CatalogSchema.candidates) }
    /// Added after version 3 shipped, without changing the version: made by the first gc sweep of a
    /// catalog that lacks them (`SQLCatalog.applyCollection`), or by an open that creates the schema.
    var keyIndexes: [(name: String, statement: String)] {
        CatalogSchema.keyIndexes.map { ($0.name, CatalogSchema.create($0)) }
    }
    /// Everything, in creation order.
    var all: [String] { version1 + annotations + gcRuns + candidates + keyIndexes.map(\.statement) }

    private func render(_ statements: [String]) -> [String] {
        statements.map {
            $0.replacingOccurrences(of: "{int}", with: dialect.integer)
                .replacingOccurrences(of: "{blob}", with: dialect.blob)
                .replacingOccurrences(of: "{rowid}", with: dialect.rowID)
                .replacingOccurrences(of: "{offset}", with: dialect.offsetColumn)
                .replacingOccurrences(of: "{norowid}", with: dialect.withoutRowID)
        }
    }

    static let version1 = [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """
        CREATE TABLE IF NOT EXISTS packs (
            id {rowid},
            name TEXT NOT NULL UNIQUE,
            size {int} NOT NULL,
            created_at {int} NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS chunks (
            id {rowid},
            xxh {blob} NOT NULL,
            sha {blob} NOT NULL,
            raw_length {int} NOT NULL,
            pack_id {int} NOT NULL REFERENCES packs(id),
            frame_offset {int} NOT NULL,
            frame_length {int} NOT NULL,
            encoding INTEGER NOT NULL,
            base_id {int} REFERENCES chunks(id),
            depth INTEGER NOT NULL,
            UNIQUE (xxh, sha))
        """,
        "CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks(pack_id)",
        "CREATE TABLE IF NOT EXISTS models (id {rowid}, name TEXT NOT NULL UNIQUE)",
        """
        CREATE TABLE IF NOT EXISTS revisions (
            id {rowid},
            model_id {int} NOT NULL REFERENCES models(id),
            name TEXT NOT NULL,
            created_at {int} NOT NULL,
            base_model TEXT NOT NULL,
            base_revision TEXT NOT NULL,
            base_reason TEXT NOT NULL,
            manifest_chunk {int} NOT NULL REFERENCES chunks(id),
            UNIQUE (model_id, name))
        """,
        """
        CREATE TABLE IF NOT EXISTS files (
            id {rowid},
            revision_id {int} NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            size {int} NOT NULL,
            sha256 {blob} NOT NULL,
            kind INTEGER NOT NULL,
            UNIQUE (revision_id, path))
        """,
        """
        CREATE TABLE IF NOT EXISTS file_chunks (
            file_id {int} NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            {offset} {int} NOT NULL,
            chunk_id {int} NOT NULL REFERENCES chunks(id),
            PRIMARY KEY (file_id, seq)){norowid}
        """,
        "CREATE INDEX IF NOT EXISTS file_chunks_by_chunk ON file_chunks(chunk_id)",
        """
        CREATE TABLE IF NOT EXISTS tensors (
            file_id {int} NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            dtype TEXT NOT NULL,
            shape TEXT NOT NULL,
            begin_offset {int} NOT NULL,
            end_offset {int} NOT NULL,
            PRIMARY KEY (file_id, name)){norowid}
        """,
        """
        CREATE TABLE IF NOT EXISTS tombstones (
            pack_id {int} NOT NULL REFERENCES packs(id),
            model TEXT NOT NULL,
            revision TEXT NOT NULL,
            manifest_xxh {blob} NOT NULL,
            manifest_sha {blob} NOT NULL,
            removed_at {int} NOT NULL)
        """,
    ]

    static let annotations = [
        """
        CREATE TABLE IF NOT EXISTS annotations (
            revision_id {int} NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
            optimizer_version TEXT NOT NULL,
            parameters TEXT NOT NULL,
            created_at {int} NOT NULL,
            result TEXT NOT NULL,
            PRIMARY KEY (revision_id, optimizer_version, parameters)){norowid}
        """,
    ]

    /// The index of delta chunks by their base, which only a sweep that deletes chunks needs (the
    /// database looks for chunks naming each deleted one as their base: the foreign key). gc's
    /// sweep makes it for its transaction and drops it there, so it is not kept: kept, every put of
    /// a fine-tune of a popular base writes one of its leaves per new chunk (the base chunk's
    /// dependents are one run of the index each), which made a put in a store of 10^4 revisions
    /// write 121 pages more than in a store of one (SPEC §9, §10). Version 1 kept it under this
    /// name: the first sweep of such a catalog reuses and drops it.
    static let baseIndex = (name: "chunks_by_base", on: "chunks(base_id)")

    /// The statement that makes `index` when it is missing.
    static func create(_ index: (name: String, on: String)) -> String { "CREATE INDEX IF NOT EXISTS \(index.name) ON \(index.on)" }

    /// Indexes of foreign keys that gc's sweep deletes under: deleting a chunk or a pack makes the
    /// database look for rows naming it, a scan of the table per deleted row without an index (a
    /// sweep of 14,140 chunks in a store of 10^4 revisions spent about 19 of its 23–25 s scanning
    /// `revisions` for manifests; SPEC §9). Both grow at their end: a revision's manifest chunk
    /// and a tombstone's pack are the newest rows.
    static let keyIndexes: [(name: String, on: String)] = [
        ("revisions_by_manifest", "revisions(manifest_chunk)"),
        ("tombstones_by_pack", "tombstones(pack_id)"),
    ]

    /// One row per gc run started: the fence of commits (SPEC §11).
    static let gcRuns = ["CREATE TABLE IF NOT EXISTS gc_runs (id {rowid}, started_at {int} NOT NULL)"]

    /// Version 2 (sketches, revisions by model) and 3 (the candidate index by architecture; version
    /// 2's `tensor_index`, 32 rows per revision, is dropped by the upgrade).
    static let candidates = [
        """
        CREATE TABLE IF NOT EXISTS revision_sketches (
            revision_id {int} PRIMARY KEY REFERENCES revisions(id) ON DELETE CASCADE,
            sketch {blob} NOT NULL)
        """,
        "CREATE INDEX IF NOT EXISTS revisions_by_model ON revisions(model_id, id)",
        """
        CREATE TABLE IF NOT EXISTS architecture_index (
            signature {int} NOT NULL,
            architecture_id {int} NOT NULL,
            bytes {int} NOT NULL,
            PRIMARY KEY (signature, architecture_id)){norowid}
        """,
        """
        CREATE TABLE IF NOT EXISTS revision_architectures (
            architecture_id {int} NOT NULL,
            revision_id {int} NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
            coarse_sketch {blob},
            PRIMARY KEY (architecture_id, revision_id)){norowid}
        """,
        "CREATE INDEX IF NOT EXISTS revision_architectures_by_revision ON revision_architectures(revision_id)",
    ]
}
