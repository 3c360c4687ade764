import Foundation
import TenPakChunkStore
import TenPakFormat

/// What `gc` reclaimed (or, with a dry run, would reclaim).
public struct CollectReport: Sendable {
    public var deadChunks = 0
    public var deadChunkBytes = 0
    public var deletedPacks: [String] = []
    public var repackedPacks: [String] = []
    public var newPacks: [String] = []
    public var orphanPacks: [String] = []
    public var staleTemporaryFiles = 0
    public var reclaimedBytes = 0
    public var dryRun = false
}

/// Mark and sweep over the catalog, then pack deletion and repacking (`gc`).
///
/// Protocol: gc holds the store lock exclusively from mark to sweep, and every put, get and rm
/// holds it shared for its whole run. So no put can deduplicate against a chunk gc is about to
/// delete, and no reader loses a pack mid-read; they wait (up to 60 s, then "busy").
///
/// Steps, in order (each is safe to interrupt):
/// 1. mark: live = chunks used by a file or as a manifest, plus their bases, transitively;
/// 2. plan: a pack with no live frame is deleted; one whose live frames fill less than half of it
///    is repacked; packs holding tombstones are kept;
/// 3. copy the live frames of repacked packs into new packs, re-checking each frame's checksums,
///    and seal them (ORDER: new packs durable → catalog);
/// 4. one catalog transaction moves the copied chunks, forgets dead chunks and emptied packs;
/// 5. delete the emptied packs' files, packs no catalog row names (from interrupted puts), and
///    `tmp/` leftovers. A crash between 4 and 5 leaves unreferenced packs that the next gc deletes.
public struct Collector {
    let store: ModelStore
    /// Repack a pack when its live frames fill less than this share of it.
    public static let repackThreshold = 0.5

    public init(store: ModelStore) {
        self.store = store
    }

    public func run(dryRun: Bool, lockTimeout: Double = 60) throws -> CollectReport {
        let chunkStore = store.chunks
        let catalog = chunkStore.catalog
        let lock = try chunkStore.lock(.exclusive, timeout: lockTimeout)
        defer { withExtendedLifetime(lock) {} }
        var report = CollectReport()
        report.dryRun = dryRun
        // Fence first, then mark: a writer that lost its shared lock and commits after this point
        // is refused (RevisionCommit.gcFence) instead of referencing chunks or packs swept below.
        if !dryRun { _ = try catalog.beginCollection() }

        // The mark and the sums per pack run in the database: gc's memory grows with the dead
        // chunks and the packs, not with every chunk of the store.
        let survey = try catalog.collectionSurvey()
        let dead = survey.dead.map(\.rowID)
        report.deadChunks = dead.count
        report.deadChunkBytes = survey.dead.reduce(0) { $0 + $1.frameLength }
        var emptied: [String] = []
        var repack: [String] = []
        for pack in survey.packs where !pack.tombstones {
            if pack.liveBytes == 0 {
                emptied.append(pack.name)
                report.reclaimedBytes += pack.size
            } else if Double(pack.liveBytes) < Collector.repackThreshold * Double(pack.size) {
                repack.append(pack.name)
                report.reclaimedBytes += pack.size - pack.liveBytes
            }
        }
        let known = Set(survey.packs.map(\.name))
        report.orphanPacks = try chunkStore.packs.orphanCandidates().filter { !known.contains($0) }
        report.deletedPacks = emptied
        report.repackedPacks = repack
        let temporaries = staleTemporaries(root: chunkStore.root)
        report.staleTemporaryFiles = temporaries.count
        if dryRun { return report }

        // Copy live frames out of packs being repacked.
        var moved: [(rowID: Int64, pack: String, offset: Int)] = []
        let writer = FrameWriter(packs: chunkStore.packs)
        // Only the chunks being copied are read (one mark per batch of packs, not per pack).
        for c in try catalog.liveChunks(inPacks: repack) {
            // Re-check before copying: gc must not launder damage into a fresh pack.
            let (header, payload) = try chunkStore.readFrame(c)
            let placed = try writer.append(header: header, payload: payload)
            moved.append((c.rowID, placed.pack, placed.frameOffset))
        }
        // ORDER: new packs durable → catalog → old files deleted.
        let sealed = try writer.commit { sealed in
            try catalog.applyCollection(newPacks: sealed, moved: moved, deadChunks: dead, deadPacks: emptied + repack)
            return sealed
        }
        report.newPacks = sealed.map(\.name)
        for name in emptied + repack + report.orphanPacks {
            try chunkStore.packs.delete(pack: name)
        }
        for path in temporaries { try? FileSystem.remove(path) }
        return report
    }

    /// Partial packs in tmp/: with the exclusive lock held no put is running, so all are leftovers.
    private func staleTemporaries(root: String) -> [String] {
        let tmp = root + "/tmp"
        return ((try? FileSystem.list(tmp)) ?? []).filter { $0.hasSuffix(".partial") }.map { tmp + "/" + $0 }
    }
}
