import Foundation
import TenPakChunkStore
import TenPakFormat

/// One finding of `fsck`.
public struct CheckProblem: Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable {
        /// Stored data is missing or wrong: some revision cannot be read back.
        case damage
        /// Harmless leftovers (from an interrupted put, say) that gc reclaims.
        case notice
    }

    public let severity: Severity
    public let message: String
    public var description: String { "\(severity.rawValue): \(message)" }
}

/// What `fsck` found.
public struct CheckReport: Sendable {
    public var problems: [CheckProblem] = []
    public var packs = 0
    public var chunks = 0
    public var revisions = 0
    public var files = 0
    public var bytesVerified = 0
    /// Frames whose header and payload checksums were checked (every frame, with or without
    /// `readData`), and their bytes as stored.
    public var framesChecked = 0
    public var frameBytesChecked = 0
    public var isHealthy: Bool { !problems.contains { $0.severity == .damage } }
}

/// Checks the catalog against the packs (`fsck`); with `readData`, also decodes every chunk and
/// re-hashes every file.
///
/// Without `readData` every frame is read and checked: its header (checksum, identity, lengths)
/// and its payload checksum, which catches missing, truncated, misplaced and bit-flipped data at
/// the cost of reading the stored bytes once (not decoding them). With it, every chunk is also
/// decoded through its delta chain and checked against its address, and every file's SHA-256 is
/// recomputed. Runs under the shared store lock, so a gc never moves frames under the check.
public struct Checker {
    let store: ModelStore
    let readData: Bool

    /// Chunk rows read and checked at a time.
    let pageRows: Int

    public init(store: ModelStore, readData: Bool) {
        self.init(store: store, readData: readData, pageRows: 65_536)
    }

    init(store: ModelStore, readData: Bool, pageRows: Int) {
        self.store = store
        self.readData = readData
        self.pageRows = max(1, pageRows)
    }

    public func run(progress: (@Sendable (TransferProgress) -> Void)? = nil) throws -> CheckReport {
        let chunkStore = store.chunks
        let catalog = chunkStore.catalog
        let lock = try chunkStore.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        var report = CheckReport()
        func damage(_ m: String) { report.problems.append(CheckProblem(severity: .damage, message: m)) }
        func notice(_ m: String) { report.problems.append(CheckProblem(severity: .notice, message: m)) }

        for problem in try catalog.integrityCheck() { damage("catalog: \(problem)") }

        // Packs: every one the catalog names must exist with its recorded size.
        let known = try catalog.packs()
        report.packs = known.count
        let onDisk = Set(try chunkStore.packs.packNames())
        var missingPacks = Set<String>()
        for pack in known {
            if !onDisk.contains(pack.name) {
                missingPacks.insert(pack.name)
                damage("pack \(pack.name) is missing")
            } else if let size = try? chunkStore.packs.size(pack: pack.name), size != pack.size {
                damage("pack \(pack.name) is \(size) bytes, the catalog recorded \(pack.size)")
            }
        }
        for name in onDisk.subtracting(known.map(\.name)).sorted() {
            notice("pack \(name) is not in the catalog (left by an interrupted put or gc; `tpstore gc` removes it)")
        }

        // Chunks: each frame where the catalog says, intact. Read a page of rows at a time (by row
        // id), so fsck's memory does not grow with the store; a page's bases outside it are looked
        // up by row id.
        var damaged = Set<Int64>()
        var total = 0
        var after: Int64 = 0
        while true {
            let page = try catalog.chunkPage(after: after, limit: pageRows)
            guard let last = page.last else { break }
            after = last.rowID
            let inPage = Dictionary(uniqueKeysWithValues: page.map { ($0.rowID, $0) })
            let outside = Set(page.compactMap(\.baseRowID)).filter { inPage[$0] == nil }
            let bases = inPage.merging(try catalog.chunks(rowIDs: Array(outside))) { row, _ in row }
            let verdicts = try parallelMap(page.count) { i -> String? in
                let c = page[i]
                if missingPacks.contains(c.pack) { return "chunk \(c.id.short) (pack \(c.pack) offset \(c.frameOffset)): its pack is missing" }
                if let base = c.baseRowID {
                    guard let b = bases[base] else { return "chunk \(c.id.short) (pack \(c.pack) offset \(c.frameOffset)): its base chunk row \(base) is missing" }
                    if b.depth >= c.depth || c.depth > ChunkStore.maxDeltaDepth {
                        return "chunk \(c.id.short): delta depth \(c.depth) over base depth \(b.depth) breaks the chain bound"
                    }
                }
                do {
                    if readData {
                        // Reads and checks the frame as below, then decodes it through its chain.
                        _ = try chunkStore.rawBytes(of: c)
                        return nil
                    }
                    // Header checksum, identity, frame length and payload checksum.
                    let (header, _) = try chunkStore.readFrame(c)
                    guard header.rawLength == c.rawLength else {
                        return "chunk \(c.id.short) (pack \(c.pack) offset \(c.frameOffset)): the frame there does not match the catalog"
                    }
                    return nil
                } catch {
                    return "chunk \(c.id.short) (pack \(c.pack) offset \(c.frameOffset)): \(error)"
                }
            }
            for (i, verdict) in verdicts.enumerated() {
                if let verdict {
                    damage(verdict)
                    damaged.insert(page[i].rowID)
                }
            }
            report.chunks += page.count
            report.framesChecked += page.count
            report.frameBytesChecked += page.reduce(0) { $0 + $1.frameLength }
            total += page.reduce(0) { $0 + $1.rawLength }
        }
        // A delta over a damaged base cannot be rebuilt either: pass over the rows again while the
        // set grows (at most `maxDeltaDepth` times; never when nothing is damaged).
        var changed = !damaged.isEmpty
        while changed {
            changed = false
            after = 0
            while true {
                let page = try catalog.chunkPage(after: after, limit: pageRows)
                guard let last = page.last else { break }
                after = last.rowID
                for c in page where !damaged.contains(c.rowID) {
                    if let b = c.baseRowID, damaged.contains(b) {
                        damaged.insert(c.rowID)
                        changed = true
                    }
                }
            }
        }
        if readData { report.bytesVerified = total }

        // Revisions and files: chunks tile each file; no file depends on a damaged chunk.
        let revisions = try catalog.revisions(model: nil)
        report.revisions = revisions.count
        var done = 0
        for revision in revisions {
            let name = "\(revision.model)@\(revision.revision)"
            for file in try catalog.files(revision: revision) {
                report.files += 1
                let fileChunks = try catalog.fileChunks(file: file)
                var offset = 0
                var broken = false
                for fc in fileChunks {
                    if fc.offset != offset {
                        damage("\(name) \(file.path): chunk at offset \(fc.offset) does not follow the previous one (expected \(offset))")
                        broken = true
                    }
                    if damaged.contains(fc.location.rowID) {
                        damage("\(name) \(file.path): chunk \(fc.location.id.short) at file offset \(fc.offset) (pack \(fc.location.pack) offset \(fc.location.frameOffset)) is damaged")
                        broken = true
                    }
                    offset = fc.offset + fc.location.rawLength
                }
                if offset != file.size {
                    damage("\(name) \(file.path): chunks cover \(offset) bytes of \(file.size)")
                    broken = true
                }
                if readData, !broken {
                    var sha = StreamingSHA256()
                    do {
                        try FileStream(store: chunkStore, file: file).forEachWindowSync { window in
                            window.withUnsafeBytes { sha.update($0) }
                        }
                        let digest = sha.finalize()
                        if digest != file.sha256 {
                            damage("\(name) \(file.path): rebuilt file has SHA-256 \(digest.hex), expected \(file.sha256.hex)")
                        }
                    } catch {
                        damage("\(name) \(file.path): \(error)")
                    }
                    report.bytesVerified += file.size
                }
                done += file.size
                progress?(TransferProgress(done: done, total: max(done, 1), file: "\(name) \(file.path)"))
            }
        }
        return report
    }
}
