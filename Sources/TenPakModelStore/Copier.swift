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
/// Frames are copied as they are stored (no decode and re-encode), each checked on the way
/// (`readFrame` verifies header, identity and payload checksums). Chunks the destination already
/// has, by identity, are reused. A delta whose base the destination already holds at a depth
/// that would make the chain too deep is re-stored raw (`stored` encoding) instead.
///
/// Per revision, the usual put order holds: new packs sealed → one catalog commit. A revision
/// already at the destination with the same files (paths, sizes, SHA-256) is skipped; with other
/// files the copy stops (revisions are immutable).
public struct Copier {
    let source: ModelStore
    let destination: ModelStore
    /// Chunks whose frames are read ahead together.
    static let batchChunks = 32

    public init(source: ModelStore, destination: ModelStore) {
        self.source = source
        self.destination = destination
    }

    public func run(progress: ((String) -> Void)? = nil) throws -> CopyReport {
        let sourceLock = try source.chunks.lock(.shared)
        let destinationLock = try destination.chunks.lock(.shared)
        defer { withExtendedLifetime((sourceLock, destinationLock)) {} }
        let fence = try destination.catalog.gcGeneration()
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
            try copy(record, fence: fence, report: &report)
            report.copiedRevisions.append(name)
            progress?("copied \(name)")
        }
        return report
    }

    private func copy(_ record: RevisionRecord, fence: Int64, report: inout CopyReport) throws {
        let src = source.chunks, dst = destination.chunks
        let files = try src.catalog.files(revision: record)
        var fileChunks: [(FileRecord, [FileChunk])] = []
        var needed: [Int64: ChunkLocation] = [:]
        for file in files {
            let chunks = try src.catalog.fileChunks(file: file)
            fileChunks.append((file, chunks))
            for c in chunks { needed[c.location.rowID] = c.location }
        }
        guard let manifest = try src.catalog.findChunks([record.manifest])[record.manifest] else {
            throw StoreError.corrupt("the manifest of \(record.model)@\(record.revision) is not in the source catalog")
        }
        // Bases, transitively: one catalog query per delta level.
        var frontier = Array(needed.values)
        while !frontier.isEmpty {
            let missing = Set(frontier.compactMap(\.baseRowID)).filter { needed[$0] == nil }
            let found = try src.catalog.chunks(rowIDs: Array(missing))
            for c in frontier {
                guard let row = c.baseRowID, needed[row] == nil else { continue }
                guard let base = found[row] else {
                    throw StoreError.corrupt("chunk \(c.id.short) names a base the source catalog does not have")
                }
                needed[row] = base
            }
            frontier = Array(found.values)
        }
        let all = Array(needed.values) + [manifest]
        let present = try dst.catalog.findChunks(all.map(\.id))
        // Bases before the chunks that use them: source depth orders them.
        let missing = all.filter { present[$0.id] == nil }.sorted { ($0.depth, $0.rowID) < ($1.depth, $1.rowID) }
        report.reusedChunks += all.count - missing.count

        let writer = FrameWriter(packs: dst.packs)
        var depthAt: [ChunkID: Int] = present.mapValues(\.depth)
        var newChunks: [NewChunk] = []
        var newManifest: NewChunk?
        var frames = PrefetchedFrames()
        for (i, c) in missing.enumerated() {
            if i % Copier.batchChunks == 0 {
                // The next batch's frames in shared reads (bases are in `missing` themselves).
                frames = try FrameBatch.prefetch(Array(missing[i ..< min(i + Copier.batchChunks, missing.count)]), store: src, bases: false)
            }
            var (header, payload) = try frames.frames[c.rowID].map { try src.checkFrame($0, c) } ?? src.readFrame(c)
            var depth = 0
            if let base = header.base {
                guard let baseDepth = depthAt[base] else {
                    throw StoreError.corrupt("chunk \(c.id.short): its base \(base.short) was not copied first")
                }
                depth = baseDepth + 1
                if depth > ChunkStore.maxDeltaDepth {
                    // Re-store raw: the destination's base sits deeper than the source's did.
                    let raw = try src.rawBytes(of: c)
                    header = FrameHeader(kind: header.kind, encoding: Encoding.stored.rawValue, payloadLength: raw.count,
                                         rawLength: raw.count, elementWidth: header.elementWidth, floatLayout: header.floatLayout,
                                         id: header.id, base: nil, payloadChecksum: Hashing.xxh3_64(raw))
                    payload = raw
                    depth = 0
                    report.restoredFrames += 1
                } else {
                    report.copiedFrames += 1
                }
            } else {
                report.copiedFrames += 1
            }
            let chunk = try writer.append(header: header, payload: payload, depth: depth)
            report.copiedBytes += chunk.frameLength
            depthAt[header.id] = depth
            if c.id == manifest.id, c.rowID == manifest.rowID { newManifest = chunk } else { newChunks.append(chunk) }
        }
        let manifestChunk: NewChunk
        if let newManifest {
            manifestChunk = newManifest
        } else if let at = present[manifest.id] {
            manifestChunk = NewChunk(id: at.id, rawLength: at.rawLength, pack: at.pack, frameOffset: at.frameOffset,
                                     frameLength: at.frameLength, encoding: at.encoding, base: nil, depth: at.depth)
        } else {
            throw StoreError.corrupt("the manifest of \(record.model)@\(record.revision) was neither copied nor found at the destination")
        }
        var commitFiles: [RevisionCommit.File] = []
        for (file, chunks) in fileChunks {
            commitFiles.append(RevisionCommit.File(path: file.path, size: file.size, sha256: file.sha256, kind: file.kind,
                                                   chunks: chunks.map { (offset: $0.offset, id: $0.location.id) },
                                                   tensors: try src.catalog.tensors(file: file)))
        }
        // ORDER: packs sealed (durable, visible) → catalog commit; a refused commit's packs go now,
        // an unanswered one's are left to gc (FrameWriter).
        _ = try writer.commit { sealed in
            try dst.catalog.commit(RevisionCommit(
                model: record.model, revision: record.revision, createdAt: record.createdAt, baseModel: record.baseModel,
                baseRevision: record.baseRevision, baseReason: record.baseReason, packs: sealed, chunks: newChunks,
                manifest: manifestChunk, files: commitFiles, gcFence: fence))
        }
    }
}
