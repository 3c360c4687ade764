import TenPakChunkStore
import TenPakFormat

/// Whose chunks a revision's transfer closure holds besides its own (SPEC §19.3 "Access").
///
/// A pull receives frames verbatim, so a delta chunk arrives with the chunks it is coded against,
/// transitively. Those bases are other revisions' chunks: usually those of the revision's base (and
/// the base's base), but a chunk shared with another revision (dedup) brings that revision's bases
/// along. A reader may receive a base chunk only if it could read that chunk anyway, as a file
/// chunk of a revision it may read; this names the revisions that cover every foreign chunk.
public enum ClosureOwners {
    /// Bases followed at most (a chain longer than this is not covered).
    static let maxChain = 16

    /// The models along `record`'s chain of bases whose file chunks (and manifests) cover every
    /// chunk of its closure that is not its own, nearest first and only those needed; empty when the
    /// closure is all its own; nil when some chunk is covered by no revision of the chain (a base
    /// removed since, or a chunk shared with a revision outside the chain). `manifest` is the
    /// revision's transfer manifest (`TransferManifest.make`): its closure, already walked.
    public static func of(store: ModelStore, record: RevisionRecord, manifest: TransferManifest) throws -> [String]? {
        var own = Set(manifest.files.flatMap(\.chunks))
        if let i = manifest.chunks.firstIndex(where: { $0.id == manifest.manifest }) { own.insert(i) }
        var foreign = Set(manifest.chunks.indices.filter { !own.contains($0) }.compactMap { ChunkID(hex: manifest.chunks[$0].id) })
        var owners: [String] = []
        var current = record
        var seen: Set<Int64> = [record.rowID]
        while !foreign.isEmpty {
            guard !current.baseModel.isEmpty, owners.count < maxChain else { return nil }
            let base: RevisionRecord
            do {
                base = try store.catalog.resolve(model: current.baseModel, revision: current.baseRevision)
            } catch StoreError.notFound {
                return nil   // a base removed since: its chunks are nobody's to read now
            }
            guard seen.insert(base.rowID).inserted else { return nil }
            let covered = foreign.intersection(try ownChunks(store.chunks, base))
            if !covered.isEmpty, !owners.contains(base.model) { owners.append(base.model) }
            foreign.subtract(covered)
            current = base
        }
        return owners
    }

    /// Ids of a revision's file chunks and its manifest chunk.
    static func ownChunks(_ store: ChunkStore, _ record: RevisionRecord) throws -> Set<ChunkID> {
        var ids: Set<ChunkID> = [record.manifest]
        for file in try store.catalog.files(revision: record) {
            for c in try store.catalog.fileChunks(file: file) { ids.insert(c.location.id) }
        }
        return ids
    }
}
