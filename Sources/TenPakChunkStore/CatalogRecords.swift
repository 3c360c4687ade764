import TenPakFormat

/// Where a stored chunk lives and how to decode it.
public struct ChunkLocation: Hashable, Sendable {
    /// The catalog's row id for the chunk; stable for the life of the chunk.
    public let rowID: Int64
    public let id: ChunkID
    public let rawLength: Int
    public let pack: String
    public let frameOffset: Int
    public let frameLength: Int
    public let encoding: UInt8
    /// The chunk this one is a delta against, if any.
    public let baseRowID: Int64?
    /// Delta steps from a chunk stored without a base: 0 for those, 1 for a delta against them, ...
    public let depth: Int

    public init(rowID: Int64, id: ChunkID, rawLength: Int, pack: String, frameOffset: Int, frameLength: Int,
                encoding: UInt8, baseRowID: Int64?, depth: Int) {
        self.rowID = rowID
        self.id = id
        self.rawLength = rawLength
        self.pack = pack
        self.frameOffset = frameOffset
        self.frameLength = frameLength
        self.encoding = encoding
        self.baseRowID = baseRowID
        self.depth = depth
    }
}

/// A chunk written by a put, to be recorded when the put commits.
public struct NewChunk: Sendable {
    public let id: ChunkID
    public let rawLength: Int
    public let pack: String
    public let frameOffset: Int
    public let frameLength: Int
    public let encoding: UInt8
    public let base: ChunkID?
    public let depth: Int

    public init(id: ChunkID, rawLength: Int, pack: String, frameOffset: Int, frameLength: Int, encoding: UInt8,
                base: ChunkID?, depth: Int) {
        self.id = id
        self.rawLength = rawLength
        self.pack = pack
        self.frameOffset = frameOffset
        self.frameLength = frameLength
        self.encoding = encoding
        self.base = base
        self.depth = depth
    }
}

/// A tensor's entry as the catalog keeps it (offsets absolute in the file).
public struct TensorRecord: Hashable, Sendable {
    public let name: String
    public let dtype: String
    public let shape: [Int]
    public let begin: Int
    public let end: Int

    public init(name: String, dtype: String, shape: [Int], begin: Int, end: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.begin = begin
        self.end = end
    }

    /// The shape as the catalog stores it: "d0,d1,..." (empty for a scalar).
    public var shapeText: String { shape.map(String.init).joined(separator: ",") }

    public static func shape(fromText text: String) -> [Int] {
        text.isEmpty ? [] : text.split(separator: ",").compactMap { Int($0) }
    }
}

/// Everything one put (or copy, transfer, repair) records, committed in one transaction: the
/// revision's manifest, which is its one record of its files (name, provenance, and each file's
/// path, size, SHA-256, kind and chunks in order; a chunk's offset in its file is the sum of the raw
/// lengths before it), plus where the manifest frame and the new chunks went and what the catalog
/// keeps beside the files (tensor tables, the content sketch).
public struct RevisionCommit: Sendable {
    /// The revision as its manifest frame stores it.
    public let manifest: RevisionManifest
    /// The manifest's own frame: the revision's row points at it.
    public let manifestChunk: NewChunk
    /// The tensor tables of the manifest's safetensors files, by path (other files have none).
    public let tensors: [String: [TensorRecord]]
    /// Sealed packs this put wrote: name and size.
    public let packs: [(name: String, size: Int)]
    /// Chunks this put stored (bases before the chunks that use them).
    public let chunks: [NewChunk]
    /// The `Catalog.gcGeneration()` the writer read after it took the store lock. The commit is
    /// refused when a gc has started since, which can only happen if the writer lost its lock (a
    /// distributed writer cut off from PostgreSQL): its packs or the chunks it deduplicated
    /// against may be gone. nil: no check (a writer holding the exclusive lock, such as repair).
    public let gcFence: Int64?
    /// The revision's content sketch (`BaseSketch`, SPEC §10), stored with it; nil when the writer
    /// has none (a copy, a repair before its sketch pass): base choice then falls back to sampling.
    public let sketch: [UInt8]?
    /// Row ids of chunks the writer read from the catalog since its fence (the chunks it shares,
    /// its bases). The commit checks each by row id (one revision's chunks lie together in the row
    /// tree) instead of looking it up by content hash (a leaf of the hash index each, at random); one
    /// that does not check out is looked up by hash as if it were not given.
    public let knownRowIDs: [ChunkID: Int64]

    public init(manifest: RevisionManifest, manifestChunk: NewChunk, tensors: [String: [TensorRecord]], packs: [(name: String, size: Int)],
                chunks: [NewChunk], gcFence: Int64?, sketch: [UInt8]? = nil, knownRowIDs: [ChunkID: Int64] = [:]) {
        self.manifest = manifest
        self.manifestChunk = manifestChunk
        self.tensors = tensors
        self.packs = packs
        self.chunks = chunks
        self.gcFence = gcFence
        self.sketch = sketch
        self.knownRowIDs = knownRowIDs
    }

    public var model: String { manifest.model }
    public var revision: String { manifest.revision }
}

/// Chunks recorded without a revision: frames a transfer received ahead of the revision commit
/// that will use them (SPEC §19). Committed like a put's chunks (packs durable first, one
/// transaction, the gc fence checked); until a revision uses them they are garbage to gc.
public struct ChunkCommit: Sendable {
    public let packs: [(name: String, size: Int)]
    /// Bases before the chunks that use them (a base is in the catalog or earlier here).
    public let chunks: [NewChunk]
    /// As `RevisionCommit.gcFence`.
    public let gcFence: Int64?

    public init(packs: [(name: String, size: Int)], chunks: [NewChunk], gcFence: Int64?) {
        self.packs = packs
        self.chunks = chunks
        self.gcFence = gcFence
    }
}

/// A revision as the catalog lists it: its row, its name and provenance (as in its manifest), and
/// the id of its manifest chunk, where its files are recorded in full. Files are read separately
/// (`Catalog.files`), so listing revisions never loads them.
public struct RevisionRecord: Hashable, Sendable {
    public let rowID: Int64
    public let model: String
    public let revision: String
    public let createdAt: Int64
    public let baseModel: String
    public let baseRevision: String
    public let baseReason: String
    public let manifest: ChunkID

    public init(rowID: Int64, model: String, revision: String, createdAt: Int64, baseModel: String, baseRevision: String,
                baseReason: String, manifest: ChunkID) {
        self.rowID = rowID
        self.model = model
        self.revision = revision
        self.createdAt = createdAt
        self.baseModel = baseModel
        self.baseRevision = baseRevision
        self.baseReason = baseReason
        self.manifest = manifest
    }
}

public struct FileRecord: Hashable, Sendable {
    public let rowID: Int64
    public let path: String
    public let size: Int
    public let sha256: Digest256
    public let kind: FileKind

    public init(rowID: Int64, path: String, size: Int, sha256: Digest256, kind: FileKind) {
        self.rowID = rowID
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.kind = kind
    }
}

/// A file's chunk: its offset in the file and where the chunk lives.
public struct FileChunk: Hashable, Sendable {
    public let offset: Int
    public let location: ChunkLocation

    public init(offset: Int, location: ChunkLocation) {
        self.offset = offset
        self.location = location
    }
}

/// Store totals.
public struct CatalogTotals: Sendable {
    public var models = 0
    public var revisions = 0
    public var files = 0
    /// Sum of the sizes of every file of every revision.
    public var logicalBytes = 0
    /// Distinct chunks and their raw and stored (frame) bytes.
    public var chunks = 0
    public var chunkRawBytes = 0
    public var chunkStoredBytes = 0
    public var deltaChunks = 0
    public var packs = 0
    public var packBytes = 0
    /// Stored chunks per encoding id: (count, raw bytes, stored bytes).
    public var byEncoding: [UInt8: (count: Int, raw: Int, stored: Int)] = [:]

    public init() {}
}

/// A derived result recorded about a revision (see SPEC.md, "Annotations"): keyed by the revision,
/// the version of the program that made it and a canonical string of its parameters.
public struct AnnotationRecord: Hashable, Sendable {
    public let revisionRowID: Int64
    public let optimizerVersion: String
    /// Canonical JSON of the parameters (sorted keys), so equal parameters give equal strings.
    public let parameters: String
    public let createdAt: Int64
    /// The result, JSON.
    public let result: String

    public init(revisionRowID: Int64, optimizerVersion: String, parameters: String, createdAt: Int64, result: String) {
        self.revisionRowID = revisionRowID
        self.optimizerVersion = optimizerVersion
        self.parameters = parameters
        self.createdAt = createdAt
        self.result = result
    }
}

/// SQL text both catalog backends run as is (plain SQL that SQLite and PostgreSQL read alike).
public enum CatalogSQL {
    /// Columns of a `RevisionRecord`, over `revisionFrom`.
    public static let revisionColumns = "r.id, m.name, r.name, r.created_at, r.base_model, r.base_revision, r.base_reason, c.xxh, c.sha"
    public static let revisionFrom = "revisions r JOIN models m ON m.id = r.model_id JOIN chunks c ON c.id = r.manifest_chunk"
    /// gc's mark: chunks used by a file or as a manifest, and their bases, transitively.
    static let liveCTE = """
        WITH RECURSIVE live(id) AS (
            SELECT chunk_id FROM file_chunks
            UNION SELECT manifest_chunk FROM revisions
            UNION SELECT c.base_id FROM chunks c JOIN live ON c.id = live.id WHERE c.base_id IS NOT NULL)
        """
    public static let liveChunks = liveCTE + "\nSELECT id FROM live"
    /// Every pack with its live frame bytes (gc's plan), summed by the database (cast: PostgreSQL
    /// sums BIGINT as NUMERIC).
    public static let packsWithLiveBytes = liveCTE + """

        SELECT p.name, p.size, EXISTS (SELECT 1 FROM tombstones t WHERE t.pack_id = p.id), COALESCE(l.bytes, 0)
        FROM packs p LEFT JOIN (SELECT c.pack_id AS pack_id, CAST(SUM(c.frame_length) AS BIGINT) AS bytes
                                FROM chunks c JOIN live ON live.id = c.id GROUP BY c.pack_id) l ON l.pack_id = p.id
        """
    /// Chunks no revision needs: an anti-join against the live set (NOT IN over a large subquery
    /// is quadratic on PostgreSQL once it outgrows work_mem).
    public static let deadChunks = liveCTE + """

        SELECT c.id, c.frame_length FROM chunks c LEFT JOIN live ON live.id = c.id WHERE live.id IS NULL ORDER BY c.id
        """
}
