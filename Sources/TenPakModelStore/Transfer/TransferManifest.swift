import Foundation
import TenPakChunkStore
import TenPakFormat

// Moving a revision between stores by chunk (SPEC §19): `tpstore copy`, `pull` and `push` all
// describe the revision with a `TransferManifest`, read the frames the other side lacks with a
// `FrameSender`, and land them with a `ChunkImporter`.
//
// Nouns:
// - closure: the chunks a revision needs: its files' chunks, their delta bases (transitively) and
//   the manifest chunk, bases before the chunks that use them.
// - transfer manifest: the closure and the files, as JSON; it lists, the manifest frame decides
//   (the importer commits what the revision's own manifest frame says, checked).
// - bundle: frames back to back behind a small header (`FrameBundle`, TenPakFormat).

/// A revision's files and every chunk it needs, as the transfer protocol sends it (SPEC §19.1).
public struct TransferManifest: Codable, Sendable, Equatable {
    public struct File: Codable, Sendable, Equatable {
        public var path: String
        public var size: Int
        /// SHA-256 of the file, 64 lowercase hex digits.
        public var sha256: String
        /// Indices into `chunks`, in file order.
        public var chunks: [Int]
    }

    public struct Chunk: Codable, Sendable, Equatable {
        /// `ChunkID.hex`: 96 hex digits.
        public var id: String
        /// Raw (decoded) length.
        public var length: Int
        /// Frame length (header and payload) as stored at the sender.
        public var frame: Int
        /// Encoding id (SPEC §8).
        public var encoding: Int
        /// The base chunk's id when the frame is a delta; it comes earlier in `chunks`.
        public var base: String?
    }

    public static let currentVersion = 1
    /// Bounds on what a manifest from the network may declare (a revision's manifest frame is at
    /// most 64 MiB, so it names at most 1.4 million chunks; files likewise).
    public static let maxChunks = 1 << 21
    public static let maxFiles = 1 << 20

    public var version: Int
    public var model: String
    public var revision: String
    /// The id of the revision's manifest chunk (also in `chunks`).
    public var manifest: String
    public var files: [File]
    public var chunks: [Chunk]

    /// Logical bytes: the sum of the file sizes.
    public var logicalBytes: Int { files.reduce(0) { $0 + $1.size } }

    /// The manifest of a stored revision (the caller holds the store lock or reads lock-free and
    /// accepts a gc's race: frames are checked when they are read).
    public static func make(store: ModelStore, record: RevisionRecord) throws -> TransferManifest {
        let closure = try RevisionClosure(store: store.chunks, record: record)
        var index: [ChunkID: Int] = [:]
        var chunks: [Chunk] = []
        for location in closure.chunks {
            index[location.id] = chunks.count
            chunks.append(Chunk(id: location.id.hex, length: location.rawLength, frame: location.frameLength,
                                encoding: Int(location.encoding), base: location.baseRowID.flatMap { closure.byRow[$0]?.id.hex }))
        }
        var files: [File] = []
        for (file, fileChunks) in closure.files {
            files.append(File(path: file.path, size: file.size, sha256: file.sha256.hex,
                              chunks: try fileChunks.map { c in
                                  guard let i = index[c.location.id] else {
                                      throw StoreError.corrupt("chunk \(c.location.id.short) of \(file.path) is missing from its revision's closure")
                                  }
                                  return i
                              }))
        }
        return TransferManifest(version: currentVersion, model: record.model, revision: record.revision, manifest: record.manifest.hex,
                                files: files, chunks: chunks)
    }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self))
    }

    /// Parses a manifest from the network and checks it (SPEC §19.1): version, names, ids, lengths
    /// within the frame limits, indices in range, every base earlier in `chunks`, the manifest
    /// chunk present, no id twice. Anything else is `StoreError.invalidRequest`.
    public static func decode(_ bytes: [UInt8]) throws -> TransferManifest {
        let manifest: TransferManifest
        do {
            manifest = try JSONDecoder().decode(TransferManifest.self, from: Data(bytes))
        } catch {
            throw StoreError.invalidRequest("transfer manifest: not the expected JSON (\(error))")
        }
        try manifest.validate()
        return manifest
    }

    func validate() throws {
        func bad(_ message: String) -> StoreError { .invalidRequest("transfer manifest: \(message)") }
        guard version == TransferManifest.currentVersion else {
            throw bad("version \(version); this tpstore speaks version \(TransferManifest.currentVersion)")
        }
        do {
            try Names.validateModel(model)
            try Names.validateRevision(revision)
        } catch {
            throw bad("\(error)")
        }
        guard chunks.count <= TransferManifest.maxChunks, files.count <= TransferManifest.maxFiles else {
            throw bad("\(chunks.count) chunks and \(files.count) files, over the limits (\(TransferManifest.maxChunks), \(TransferManifest.maxFiles))")
        }
        var seen = Set<ChunkID>()
        for (i, c) in chunks.enumerated() {
            guard let id = ChunkID(hex: c.id) else { throw bad("chunk \(i): id is not 96 hex digits") }
            guard seen.insert(id).inserted else { throw bad("chunk \(id.short) is listed twice") }
            guard (0 ... FrameHeader.maxLength).contains(c.length), (84 ... FrameHeader.maxSize + FrameHeader.maxLength).contains(c.frame),
                  (0 ... 255).contains(c.encoding) else {
                throw bad("chunk \(id.short) declares lengths or an encoding out of bounds (raw \(c.length), frame \(c.frame), encoding \(c.encoding))")
            }
            if let base = c.base {
                guard let baseID = ChunkID(hex: base), seen.contains(baseID), baseID != id else {
                    throw bad("chunk \(id.short): its base is not an earlier chunk of the list")
                }
            }
        }
        guard let manifestID = ChunkID(hex: manifest), seen.contains(manifestID) else {
            throw bad("the manifest chunk is not in the chunk list")
        }
        var paths = Set<String>()
        for f in files {
            do { try Names.validatePath(f.path) } catch { throw bad("\(error)") }
            guard paths.insert(f.path).inserted else { throw bad("\(Names.printable(f.path)) is listed twice") }
            guard f.size >= 0, Digest256(hex: f.sha256) != nil, f.chunks.allSatisfy({ chunks.indices.contains($0) }) else {
                throw bad("file \(Names.printable(f.path)): size, SHA-256 or chunk indices out of bounds")
            }
            var total = 0
            for i in f.chunks {
                total += chunks[i].length
                guard total <= f.size else { throw bad("file \(Names.printable(f.path)): its chunks add up past its size") }
            }
            guard total == f.size else { throw bad("file \(Names.printable(f.path)): its chunks add up to \(total) bytes, not \(f.size)") }
        }
    }

    /// The chunk ids, in list order (bases first). Valid after `decode` or `make`.
    public var chunkIDs: [ChunkID] { chunks.compactMap { ChunkID(hex: $0.id) } }

    /// `ids` (a subset of the list) cut into batches, in list order (bases first) except that the
    /// revision's manifest chunk, which has no base, comes first: a push's receiver learns the files
    /// from it and hashes them as their chunks arrive (SPEC §19.4). A batch holds at most `maxFrames`
    /// frames and half of `ChunkImporter.maxBundleRaw` decoded bytes; its frame bytes are at most
    /// `firstBytes` for the first batch, doubling with each batch up to `maxBytes` (a frame longer
    /// than that is a batch of its own): a small first bundle starts the receiver's work early, so
    /// fetching, decoding and hashing overlap from the start instead of after one large bundle.
    public func batches(of ids: [ChunkID], maxBytes: Int, firstBytes: Int? = nil, maxFrames: Int = FrameSender.maxFrames) -> [[ChunkID]] {
        let wanted = Set(ids)
        let manifestID = ChunkID(hex: manifest)
        var ordered: [Chunk] = []
        ordered.reserveCapacity(wanted.count)
        for c in chunks {
            guard let id = ChunkID(hex: c.id), wanted.contains(id) else { continue }
            if id == manifestID { ordered.insert(c, at: 0) } else { ordered.append(c) }
        }
        var batches: [[ChunkID]] = []
        var current: [ChunkID] = []
        var bytes = 0, raw = 0
        var limit = min(max(firstBytes ?? maxBytes, 1), maxBytes)
        for c in ordered {
            // `ordered` holds only entries whose id parsed above.
            guard let id = ChunkID(hex: c.id) else { continue }
            if !current.isEmpty, bytes + c.frame > limit || raw + c.length > ChunkImporter.maxBundleRaw / 2 || current.count >= maxFrames {
                batches.append(current)
                current = []
                bytes = 0
                raw = 0
                limit = min(limit * 2, maxBytes)
            }
            current.append(id)
            bytes += c.frame
            raw += c.length
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }
}

/// A stored revision's chunk closure: its files and their chunks, and every chunk it needs (files'
/// chunks, their bases transitively, the manifest), bases before the chunks that use them.
struct RevisionClosure {
    var files: [(FileRecord, [FileChunk])] = []
    /// Depth order (then row id): a base always precedes the chunks that use it.
    var chunks: [ChunkLocation] = []
    var byRow: [Int64: ChunkLocation] = [:]

    init(store: ChunkStore, record: RevisionRecord) throws {
        for file in try store.catalog.files(revision: record) {
            let fileChunks = try store.catalog.fileChunks(file: file)
            files.append((file, fileChunks))
            for c in fileChunks { byRow[c.location.rowID] = c.location }
        }
        guard let manifest = try store.catalog.findChunks([record.manifest])[record.manifest] else {
            throw StoreError.corrupt("the manifest of \(record.model)@\(record.revision) is not in the catalog")
        }
        byRow[manifest.rowID] = manifest
        // Bases, transitively: one catalog query per delta level.
        var frontier = Array(byRow.values)
        while !frontier.isEmpty {
            let missing = Set(frontier.compactMap(\.baseRowID)).filter { byRow[$0] == nil }
            let found = try store.catalog.chunks(rowIDs: Array(missing))
            for row in missing where found[row] == nil {
                throw StoreError.corrupt("a chunk of \(record.model)@\(record.revision) names a base the catalog does not have (row \(row))")
            }
            byRow.merge(found) { first, _ in first }
            frontier = Array(found.values)
        }
        chunks = byRow.values.sorted { ($0.depth, $0.rowID) < ($1.depth, $1.rowID) }
    }
}

/// Reads frames by id, verbatim, into bundles (the sending half of pull, push and copy).
public struct FrameSender: Sendable {
    let store: ChunkStore
    /// At most this many frame bytes per bundle (64 MiB; a larger single frame cannot exist).
    public static let maxBundleBytes = 64 << 20
    /// At most this many frames per bundle (and ids per request).
    public static let maxFrames = 16384
    /// The largest bundle body: `maxBundleBytes` of frames, their headers' worst case, the bundle header.
    public static let maxBundleBody = maxBundleBytes + maxFrames * FrameHeader.maxSize + FrameBundle.headerSize

    public init(store: ModelStore) {
        self.store = store.chunks
    }

    /// The frames of `ids`, in that order, as one bundle: read in shared ranged reads (`FrameBatch`)
    /// and checked on the way (header checksum, id, payload checksum; not decoded). An id the store
    /// lacks is `StoreError.notFound`; more than `maxBundleBytes` of frames is `invalidRequest`.
    ///
    /// Callers without the store lock (the server) may race a gc or repair that moves frames: a
    /// read that fails after the location generation moved on is looked up and read again, up to
    /// two times (as the reader does, SPEC §13).
    public func bundle(_ ids: [ChunkID]) throws -> [UInt8] {
        var attempt = 0
        while true {
            let generation = try store.locationGeneration()
            do {
                return try read(ids)
            } catch {
                attempt += 1
                guard attempt <= 2, try store.locationGeneration() != generation else { throw error }
                try store.reconnectIfCatalogReplaced()
            }
        }
    }

    private func read(_ ids: [ChunkID]) throws -> [UInt8] {
        guard ids.count <= FrameSender.maxFrames else {
            throw StoreError.invalidRequest("\(ids.count) frames asked for at once; at most \(FrameSender.maxFrames)")
        }
        let found = try store.catalog.findChunks(ids)
        var locations: [ChunkLocation] = []
        var total = 0
        for id in ids {
            guard let location = found[id] else { throw StoreError.notFound("chunk \(id.short) is not in this store (removed and collected meanwhile?)") }
            locations.append(location)
            total += location.frameLength
        }
        guard total <= FrameSender.maxBundleBytes || ids.count == 1 else {
            throw StoreError.invalidRequest("\(total) bytes of frames asked for at once; at most \(FrameSender.maxBundleBytes)")
        }
        let frames = try FrameBatch.prefetch(locations, store: store, bases: false)
        var out = FrameBundle.header(count: locations.count)
        out.reserveCapacity(out.count + total)
        for location in locations {
            let bytes = try frames.frames[location.rowID] ?? store.packs.read(pack: location.pack, offset: location.frameOffset, length: location.frameLength)[...]
            _ = try store.verifyFrame(bytes, location)
            out += bytes
        }
        return out
    }
}
