import TenPakFormat

/// The candidate index: tensor signature → revisions (SPEC §9, §10 "Base choice").
///
/// A *signature* is a 64-bit hash of what decides whether two tensors pair for delta coding (SPEC
/// §10 "Pairing"): the name, the dtype and the shape without its leading dimension (so a fine-tune
/// whose vocabulary grew still finds its base). A collision only adds a candidate that the
/// confirmation step then rejects; it never changes a stored byte.
///
/// Each revision's `indexedTensors` largest tensors (bytes, then name; one per signature) are its
/// *architecture*, named by `architecture(_:)`. The index holds those rows once per architecture
/// (`architecture_index`) and one row per revision naming its architecture
/// (`revision_architectures`), both written in the commit transaction. A put asks for the
/// architectures sharing at least half of the bytes of its own largest tensors (one indexed lookup
/// per signature, a few dozen rows per architecture), then for their revisions (one row each): the
/// cost follows the number of same-architecture candidates, not the size of the store. On a hub,
/// where most revisions share their architecture exactly, that is one row per candidate instead of
/// 32 (schema version 3; version 2 kept 32 rows per revision in `tensor_index`).
public enum TensorSignature {
    /// Tensors indexed per revision. Bounded so that an LLM with thousands of tensors still costs a
    /// few dozen index rows per candidate; the largest tensors carry nearly all the bytes.
    public static let indexedTensors = 32

    /// One index row: a signature and the tensor bytes behind it.
    public struct Weighted: Hashable, Sendable {
        public let signature: Int64
        public let bytes: Int
        public init(signature: Int64, bytes: Int) {
            self.signature = signature
            self.bytes = bytes
        }
    }

    /// The pairing signature of a tensor (name, dtype, shape but its leading dimension).
    public static func of(name: String, dtype: String, shape: [Int]) -> Int64 {
        let key = name + "\u{0}" + dtype + "\u{0}" + shape.dropFirst().map(String.init).joined(separator: ",") + "\u{0}" + String(shape.count)
        return Int64(bitPattern: Hashing.xxh3_64(Array(key.utf8)))
    }

    /// The exact signature (full shape), used to line up sketch entries: two tensors are compared
    /// value by value only when every dimension agrees.
    public static func exact(name: String, dtype: String, shape: [Int]) -> Int64 {
        let key = "exact\u{0}" + name + "\u{0}" + dtype + "\u{0}" + shape.map(String.init).joined(separator: ",")
        return Int64(bitPattern: Hashing.xxh3_64(Array(key.utf8)))
    }

    /// The architecture id of a revision whose index rows are `rows`: the XXH3-64 of its (signature,
    /// bytes) pairs in signature order. Two different sets colliding (2^-64) would merge their rows:
    /// a candidate too many or too few, which costs bytes, never a stored byte's correctness.
    public static func architecture(_ rows: [Weighted]) -> Int64 {
        var key = Array("architecture".utf8)
        for row in rows.sorted(by: { $0.signature < $1.signature }) {
            withUnsafeBytes(of: row.signature.littleEndian) { key.append(contentsOf: $0) }
            withUnsafeBytes(of: Int64(row.bytes).littleEndian) { key.append(contentsOf: $0) }
        }
        return Int64(bitPattern: Hashing.xxh3_64(key))
    }

    /// The rows a revision with these tensors puts into the index: its `indexedTensors` largest,
    /// one per signature (a name repeated across shards counts once, as in base pairing).
    public static func indexRows(_ tensors: [TensorRecord]) -> [Weighted] {
        var seen = Set<Int64>()
        var rows: [(Weighted, String)] = []
        for t in tensors {
            let s = of(name: t.name, dtype: t.dtype, shape: t.shape)
            guard seen.insert(s).inserted else { continue }
            rows.append((Weighted(signature: s, bytes: max(0, t.end - t.begin)), t.name))
        }
        rows.sort { ($0.0.bytes, $1.1) > ($1.0.bytes, $0.1) }
        return rows.prefix(indexedTensors).map(\.0)
    }
}

/// A revision the candidate index returned, with the bytes of the upload's indexed tensors it
/// matches and its coarse sketch (`BaseSketch.coarse()`, encoded; nil when it has no sketch).
public struct BaseCandidate: Hashable, Sendable {
    public let revisionRowID: Int64
    public let matchedBytes: Int
    public let coarseSketch: [UInt8]?
    public init(revisionRowID: Int64, matchedBytes: Int, coarseSketch: [UInt8]? = nil) {
        self.revisionRowID = revisionRowID
        self.matchedBytes = matchedBytes
        self.coarseSketch = coarseSketch
    }
}

extension CatalogSQL {
    /// The candidate query after a dialect's `WITH want(signature, bytes) AS (…)`: the revisions of
    /// the architectures whose index rows cover at least the bound bytes, with their coarse
    /// sketches, most bytes first, newest first among equals. `threshold` and `limit` are the
    /// dialect's placeholders. (CAST: PostgreSQL sums bigints as numeric.) Used when many
    /// architectures match; `candidateArchitectures` and `revisionsOfArchitecture` otherwise.
    public static func baseCandidates(threshold: String, limit: String) -> String {
        """
        SELECT r.revision_id, a.matched, r.coarse_sketch FROM (\(matchedArchitectures(threshold: threshold))) a
        JOIN revision_architectures r ON r.architecture_id = a.architecture_id
        ORDER BY a.matched DESC, r.revision_id DESC LIMIT \(limit)
        """
    }

    /// After `WITH want(signature, bytes) AS (…)`: the architectures covering at least the bound
    /// bytes, most first. A handful of rows; `revisionsOfArchitecture` then reads each one's
    /// revisions in key order, so no sort of thousands of rows (with their sketches) is needed.
    public static func candidateArchitectures(threshold: String) -> String {
        matchedArchitectures(threshold: threshold) + " ORDER BY matched DESC, architecture_id"
    }

    static func matchedArchitectures(threshold: String) -> String {
        """
        SELECT x.architecture_id, CAST(SUM(w.bytes) AS BIGINT) AS matched FROM architecture_index x JOIN want w ON w.signature = x.signature
        GROUP BY x.architecture_id HAVING SUM(w.bytes) >= \(threshold)
        """
    }

    /// One architecture's revisions, newest first, with their coarse sketches: a range of the
    /// primary key read backwards (`architecture` and `limit` are placeholders).
    public static func revisionsOfArchitecture(architecture: String, limit: String) -> String {
        """
        SELECT revision_id, coarse_sketch FROM revision_architectures WHERE architecture_id = \(architecture)
        ORDER BY revision_id DESC LIMIT \(limit)
        """
    }

    /// The stored tensors of a list of revisions (`count` placeholders), for filling the index of a
    /// catalog made before it existed (once, at the upgrade, a batch of revisions at a time).
    public static func tensorsOfRevisions(_ count: Int) -> String {
        """
        SELECT f.revision_id, t.name, t.dtype, t.shape, t.begin_offset, t.end_offset
        FROM tensors t JOIN files f ON f.id = t.file_id WHERE f.revision_id IN (\(SQLCatalog.list(count))) ORDER BY f.revision_id, f.path, t.begin_offset
        """
    }
}
