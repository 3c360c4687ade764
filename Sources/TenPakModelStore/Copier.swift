import Foundation
import TenPakChunkStore
import TenPakCodecs
import TenPakFormat

/// What `tpstore copy` did.
public struct CopyReport: Sendable {
    public var copiedRevisions: [String] = []
    public var skippedRevisions: [String] = []
    /// Frames copied verbatim, frames re-stored (their delta chain would be too deep at the
    /// destination), and chunks the destination already had.
    public var copiedFrames = 0
    public var restoredFrames = 0
    public var reusedChunks = 0
    public var copiedBytes = 0
}

/// Copies every revision of one store into another (local ↔ distributed, or any pair).
///
/// The transfer protocol without the network (SPEC §19): per revision, its `TransferManifest`
/// lists the chunks it needs, the destination says which it lacks, a `FrameSender` reads those
/// frames as stored (no re-encode) and a `ChunkImporter` lands them: every frame decoded and
/// checked against its id, staged, then the revision committed once its files rebuild to their
/// SHA-256. A delta whose base the destination holds too deep is re-stored raw. A copy that stops
/// part way keeps the frames it staged, so running it again moves only the rest.
///
/// A revision already at the destination with the same files (paths, sizes, SHA-256) is skipped;
/// with other files the copy stops (revisions are immutable).
public struct Copier {
    let source: ModelStore
    let destination: ModelStore

    public init(source: ModelStore, destination: ModelStore) {
        self.source = source
        self.destination = destination
    }

    public func run(progress: ((String) -> Void)? = nil) throws -> CopyReport {
        let sourceLock = try source.chunks.lock(.shared)
        defer { withExtendedLifetime(sourceLock) {} }
        let importer = try ChunkImporter(store: destination)
        defer { importer.close() }
        var report = CopyReport()
        for record in try source.catalog.revisions(model: nil).sorted(by: { $0.rowID < $1.rowID }) {
            let name = "\(record.model)@\(record.revision)"
            if let existing = try? destination.catalog.resolve(model: record.model, revision: record.revision) {
                // Same files (paths, sizes, SHA-256) is the same revision, even when put separately
                // (the manifests then differ in their creation time).
                let sameFiles = try existing.manifest == record.manifest
                    || destination.catalog.files(revision: existing).map { [$0.path, "\($0.size)", $0.sha256.hex] }
                    == source.catalog.files(revision: record).map { [$0.path, "\($0.size)", $0.sha256.hex] }
                guard sameFiles else {
                    throw StoreError.invalidRequest("\(name) exists at the destination with different content; revisions are immutable")
                }
                report.skippedRevisions.append(name)
                progress?("skip \(name) (already there)")
                continue
            }
            let manifest = try TransferManifest.make(store: source, record: record)
            let ids = manifest.chunkIDs
            let missing = try importer.missing(ids)
            report.reusedChunks += ids.count - missing.count
            importer.track(manifest)
            let sender = FrameSender(store: source)
            for batch in manifest.batches(of: missing, maxBytes: FrameSender.maxBundleBytes) {
                let received = try importer.receive(bundle: try sender.bundle(batch), expected: Set(batch), landInBackground: true,
                                                    acceptsManifest: { [model = record.model] m, _ in m == model })
                report.copiedFrames += received.stored
                report.restoredFrames += received.restored
                report.copiedBytes += received.bytesWritten
            }
            try importer.commit(manifest: record.manifest, model: record.model, revision: record.revision)
            report.copiedRevisions.append(name)
            progress?("copied \(name)")
        }
        return report
    }
}
