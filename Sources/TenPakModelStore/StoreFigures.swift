// The figures `tpstore show`, `tpstore stats` and the web pages of `tpstore serve` report: one
// implementation here, so a page and the command line cannot disagree about a ratio.
//
// Nouns:
// - revision figures: per file of a revision, its size, the bytes it added to the store and its
//   chunks by kind (shared with an earlier revision, delta against a base, fresh), as `show`.
// - store statistics: the catalog's totals and the ratios derived from them, as `stats`.
// - put timeline: one point per stored revision, in put order: the logical bytes it added and the
//   frame bytes of the chunks no earlier revision references. Summed over every revision these are
//   exactly `stats`' `logicalBytes` and `storedChunkBytes` (each referenced chunk counted once, at
//   the first revision that uses it).
import Foundation
import TenPakChunkStore
import TenPakCodecs
import TenPakFormat

/// One file of a revision as `tpstore show --json` prints it.
public struct FileFigures: Encodable, Sendable {
    public let path: String
    public let size: Int
    public let sha256: String
    /// `safetensors` or `opaque`.
    public let kind: String
    /// Frame bytes of the chunks this file does not share with an earlier revision.
    public let storedBytes: Int
    public let sharedChunks: Int
    public let deltaChunks: Int
    public let freshChunks: Int
    /// Chunks stored by this file per encoding name.
    public let encodings: [String: Int]
}

/// A revision's files and their sums, as `tpstore show` reports them.
public struct RevisionFigures: Sendable {
    public let record: RevisionRecord
    public let files: [FileFigures]

    public var size: Int { files.reduce(0) { $0 + $1.size } }
    public var storedBytes: Int { files.reduce(0) { $0 + $1.storedBytes } }
    public var sharedChunks: Int { files.reduce(0) { $0 + $1.sharedChunks } }
    public var deltaChunks: Int { files.reduce(0) { $0 + $1.deltaChunks } }
    public var freshChunks: Int { files.reduce(0) { $0 + $1.freshChunks } }
    /// Stored bytes over logical bytes (lower is better); nil for a revision of empty files.
    public var storedRatio: Double? { size == 0 ? nil : Double(storedBytes) / Double(size) }
}

/// Store totals and ratios as `tpstore stats --json` prints them.
public struct StoreStatistics: Encodable, Sendable {
    public let models: Int, revisions: Int, files: Int, logicalBytes: Int
    public let chunks: Int, deltaChunks: Int, uniqueRawBytes: Int, storedChunkBytes: Int, packs: Int, packBytes: Int
    /// logical / unique raw, unique raw / stored frames, logical / pack bytes; 0 when the divisor is 0.
    public let dedupRatio: Double, compressionRatio: Double, overallRatio: Double
    /// Per encoding name: `chunks`, `raw`, `stored`.
    public let encodings: [String: [String: Int]]
    /// The catalog's totals these were derived from (not part of the JSON).
    public let totals: CatalogTotals

    enum CodingKeys: String, CodingKey {
        case models, revisions, files, logicalBytes, chunks, deltaChunks, uniqueRawBytes, storedChunkBytes, packs, packBytes
        case dedupRatio, compressionRatio, overallRatio, encodings
    }

    public init(_ t: CatalogTotals) {
        func r(_ a: Int, _ b: Int) -> Double { b == 0 ? 0 : Double(a) / Double(b) }
        models = t.models
        revisions = t.revisions
        files = t.files
        logicalBytes = t.logicalBytes
        chunks = t.chunks
        deltaChunks = t.deltaChunks
        uniqueRawBytes = t.chunkRawBytes
        storedChunkBytes = t.chunkStoredBytes
        packs = t.packs
        packBytes = t.packBytes
        dedupRatio = r(t.logicalBytes, t.chunkRawBytes)
        compressionRatio = r(t.chunkRawBytes, t.chunkStoredBytes)
        overallRatio = r(t.logicalBytes, t.packBytes)
        encodings = Dictionary(uniqueKeysWithValues: t.byEncoding.map { key, value in
            (Encoding.name(of: key), ["chunks": value.count, "raw": value.raw, "stored": value.stored])
        })
        totals = t
    }
}

/// One put: what a stored revision added to the store.
public struct PutPoint: Sendable {
    public let record: RevisionRecord
    /// The sizes of its files.
    public let logicalBytes: Int
    /// Frame bytes of the chunks its files reference that no earlier revision's files reference.
    public let newChunkBytes: Int
}

extension ModelStore {
    /// A revision's files with stored bytes and chunk kinds (`tpstore show`).
    public func figures(of record: RevisionRecord) throws -> RevisionFigures {
        var files: [FileFigures] = []
        for file in try catalog.files(revision: record) {
            let s = try catalog.storedBytes(file: file)
            files.append(FileFigures(path: file.path, size: file.size, sha256: file.sha256.hex,
                                     kind: file.kind == .safetensors ? "safetensors" : "opaque", storedBytes: s.stored,
                                     sharedChunks: s.shared, deltaChunks: s.delta, freshChunks: s.fresh,
                                     encodings: Dictionary(uniqueKeysWithValues: s.encodings.map { (Encoding.name(of: $0.key), $0.value) })))
        }
        return RevisionFigures(record: record, files: files)
    }

    /// Store totals and ratios (`tpstore stats`).
    public func statistics() throws -> StoreStatistics {
        StoreStatistics(try catalog.totals())
    }

    /// Every stored revision in put order (catalog row order) with what it added. Linear in the
    /// chunk references of the whole store. A revision's chunk references never change once it
    /// is stored (gc moves frames, never their lengths), so the answer depends only on which
    /// revisions exist: callers that show it often can cache it by their row ids.
    public func putTimeline() throws -> [PutPoint] {
        var seen = Set<Int64>()
        return try putPoints(try catalog.revisions(model: nil), seen: &seen)
    }

    /// The timeline's points of `records` (in row order), given the chunk row ids the revisions
    /// before them reference (`seen`, updated). Points of revisions put after a known timeline
    /// extend it without reading the earlier revisions again.
    public func putPoints(_ records: [RevisionRecord], seen: inout Set<Int64>) throws -> [PutPoint] {
        var points: [PutPoint] = []
        for record in records.sorted(by: { $0.rowID < $1.rowID }) {
            var logical = 0, added = 0
            for file in try catalog.files(revision: record) {
                logical += file.size
                for chunk in try catalog.fileChunks(file: file) where seen.insert(chunk.location.rowID).inserted {
                    added += chunk.location.frameLength
                }
            }
            points.append(PutPoint(record: record, logicalBytes: logical, newChunkBytes: added))
        }
        return points
    }
}

/// How figures are written for people, shared by the command line and the web pages so both show
/// a ratio with the same digits.
public enum FigureText {
    /// Binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
    public static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// `part / whole` as a percentage with one decimal, `-` for an empty whole.
    public static func percent(_ part: Int, of whole: Int) -> String {
        whole == 0 ? "-" : String(format: "%.1f%%", 100 * Double(part) / Double(whole))
    }

    /// `part / whole` with three decimals (the stored ratio of `show`), `-` for an empty whole.
    public static func ratio(_ part: Int, of whole: Int) -> String {
        whole == 0 ? "-" : String(format: "%.3f", Double(part) / Double(whole))
    }
}
