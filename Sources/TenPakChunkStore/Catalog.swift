import Foundation
import TenPakFormat

/// The catalog: which chunks exist and where, and which revisions and files are made of them.
///
/// The catalog is an index over the packs: everything in it except removals can be rebuilt from the
/// packs' frames. One implementation, `SQLCatalog`, over a `SQLConnection`: SQLite for a local
/// store, PostgreSQL (TenPakDistributed) for a distributed one.
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
    /// bytes, most first (newest first among equals), at most `limit`, each with its coarse sketch.
    /// Indexed: the work follows the number of matching architectures and revisions, not the size
    /// of the store.
    func baseCandidates(_ signatures: [TensorSignature.Weighted], minimumBytes: Int, limit: Int) throws -> [BaseCandidate]
    /// The stored sketches of these revisions (revisions without one are absent).
    func sketches(revisionRowIDs: [Int64]) throws -> [Int64: [UInt8]]
    /// Stores (or replaces) a revision's sketch, and the coarse sketch derived from it: a missing or
    /// damaged one computed again from its chunks. Fails with `notFound` when the revision is gone.
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
    /// Every chunk, in pack and frame order (memory linear in the store: maintenance reads pages).
    func allChunks() throws -> [ChunkLocation]
    /// Up to `limit` chunks with row ids above `rowID`, in row id order (one index range per page).
    func chunkPage(after rowID: Int64, limit: Int) throws -> [ChunkLocation]
    /// Chunks some revision needs: used by a file or as a manifest, and the bases of those, transitively.
    func liveChunkRowIDs() throws -> Set<Int64>
    /// gc's survey, computed by the database so that its memory does not grow with the store: every
    /// pack with its live (frame) bytes, and the chunks no revision needs (row id, frame length).
    func collectionSurvey() throws -> CollectionSurvey
    /// The live chunks of these packs (gc copies them out), in pack and frame order.
    func liveChunks(inPacks names: [String]) throws -> [ChunkLocation]
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

/// What gc's mark found (`Catalog.collectionSurvey`).
public struct CollectionSurvey: Sendable {
    public struct Pack: Sendable, Equatable {
        public let name: String
        public let size: Int
        public let tombstones: Bool
        public let liveBytes: Int
        public init(name: String, size: Int, tombstones: Bool, liveBytes: Int) {
            self.name = name
            self.size = size
            self.tombstones = tombstones
            self.liveBytes = liveBytes
        }
    }
    public let packs: [Pack]
    public let dead: [(rowID: Int64, frameLength: Int)]
    public init(packs: [Pack], dead: [(rowID: Int64, frameLength: Int)]) {
        self.packs = packs
        self.dead = dead
    }
}
