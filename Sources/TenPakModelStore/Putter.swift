import Foundation
import TenPakChunkStore
import TenPakCodecs
import TenPakFormat

/// One file to store: where it is on disk and its path inside the revision.
public struct PutInput: Sendable {
    public let source: String
    public let path: String
    /// When set, the put fails before its commit point unless the file's SHA-256 is this one (a
    /// content address such as a git-lfs oid is checked on the single read pass the put makes).
    public let expectedSHA256: Digest256?
    public init(source: String, path: String, expectedSHA256: Digest256? = nil) {
        self.source = source
        self.path = path
        self.expectedSHA256 = expectedSHA256
    }
}

/// How the base model of a put is chosen.
public enum BaseChoice: Sendable {
    /// Look among stored revisions (tensor signatures, then sampled content).
    case automatic
    /// Store without a base.
    case none
    /// This model (its newest revision when `revision` is nil).
    case explicit(model: String, revision: String?)
}

/// TransferProgress of a long-running operation, in bytes.
public struct TransferProgress: Sendable {
    public let done: Int
    public let total: Int
    public let file: String
}

/// Something a put did not do as asked or as one might expect, though it stored the revision.
public enum PutWarning: Sendable, Equatable, CustomStringConvertible {
    /// The revision is stored without a base (every chunk fresh or shared); `reason` says why
    /// (`--no-base`, or no stored model is close enough).
    case noBase(reason: String)
    /// A file named `.safetensors` whose content is not valid safetensors: stored as opaque bytes.
    case notSafetensors(path: String, reason: String)

    public var description: String {
        switch self {
        case let .noBase(reason): return "no base: \(reason)"
        case let .notSafetensors(path, reason): return "\(path): \(reason)"
        }
    }
}

/// What a put stored.
public struct PutReport: Sendable {
    public struct File: Sendable {
        public let path: String
        public let size: Int
        public let kind: FileKind
        public var sharedChunks = 0
        public var deltaChunks = 0
        public var freshChunks = 0
        /// Frame bytes this put added for the file.
        public var storedBytes = 0
        /// Chunks this put stored per encoding id (see `Encoding`).
        public var encodings: [UInt8: Int] = [:]
    }

    public let revision: RevisionRecord
    public let files: [File]
    public let base: BaseDecision?
    public let warnings: [PutWarning]
    public var rawBytes: Int { files.reduce(0) { $0 + $1.size } }
    public var storedBytes: Int { files.reduce(0) { $0 + $1.storedBytes } }
    public let seconds: Double
}

/// Stores a set of files as a new revision.
///
/// Order (must, for atomicity): chunk frames and the manifest frame are written to new packs; the
/// packs are fsynced and renamed into place; only then does one catalog transaction record the
/// chunks, files and revision. A put killed before that commit leaves at most unreferenced packs
/// (reclaimed by gc); the revision is not visible.
final class Putter {
    let store: ChunkStore
    let model: String
    let revision: String
    let progress: (@Sendable (TransferProgress) -> Void)?
    /// The gc generation read when the store lock was taken (see `RevisionCommit.gcFence`).
    let gcFence: Int64
    private let writer: FrameWriter
    private var pending: [ChunkID: NewChunk] = [:]
    private var newChunks: [NewChunk] = []
    /// Row ids of the stored chunks this put shares or codes against, as the catalog gave them
    /// after the fence (`RevisionCommit.knownRowIDs`).
    private var knownRowIDs: [ChunkID: Int64] = [:]
    /// Stored chunks this put shares whose frames (and bases' frames) it has checked.
    private var verified = Set<Int64>()
    /// Bytes of input decoded per parallel step: bounded memory, enough to keep both cores busy.
    /// 8 MiB on a local store, 16 MiB where pack reads are remote (each window's base frames are
    /// one round of ranged GETs before its encodes can start).
    let windowBytes: Int

    init(store: ChunkStore, model: String, revision: String, gcFence: Int64, progress: (@Sendable (TransferProgress) -> Void)?) {
        self.store = store
        self.gcFence = gcFence
        self.model = model
        self.revision = revision
        self.progress = progress
        writer = FrameWriter(packs: store.packs)
        windowBytes = store.packs.readsAreRemote ? 16 << 20 : 8 << 20
    }

    /// The result of coding one piece in parallel.
    private enum Coded {
        case existing(ChunkLocation)
        case fresh(id: ChunkID, header: FrameHeader, payload: [UInt8], depth: Int)
    }

    func run(inputs: [(input: PutInput, plan: ChunkPlan)], base: BaseDecision?, baseIndex: BaseIndex?,
             warnings: [PutWarning], sketch: [UInt8]? = nil) throws -> PutReport {
        let started = Date()
        let total = inputs.reduce(0) { $0 + $1.plan.size }
        var done = 0
        var manifestFiles: [RevisionManifest.File] = []
        var tensors: [String: [TensorRecord]] = [:]
        var reports: [PutReport.File] = []
        do {
            for (input, plan) in inputs {
                let file = try OpenFile(path: input.source, mode: .read)
                var report = PutReport.File(path: input.path, size: plan.size, kind: plan.kind)
                var refs: [RevisionManifest.ChunkRef] = []
                refs.reserveCapacity(plan.pieces.count)
                let basePairs: [Int: BaseIndex.Tensor] = baseIndex.map { index in
                    var pairs: [Int: BaseIndex.Tensor] = [:]
                    for (i, t) in plan.tensors.enumerated() {
                        if let b = index.pair(name: t.name, dtype: t.dtype, shape: t.shape) { pairs[i] = b }
                    }
                    return pairs
                } ?? [:]
                // Each window is read and hashed (chunk ids and the file's SHA-256 in one pass) while
                // the window before it is encoded: the read and the hashing leave the critical path.
                let source = WindowReader(file: file, pieces: plan.pieces, windowBytes: windowBytes)
                // The first window is small: it is read and hashed before anything else can run.
                var next: HashedWindow? = try source.read(from: 0, upTo: windowBytes / 8)
                while let window = next {
                    next = nil
                    let pieces = window.pieces, ids = window.ids
                    let windowStart = pieces[0].offset
                    let raw = window.bytes
                    // Safe: the window's pieces tile its bytes (WindowReader.read).
                    func slice(_ piece: ChunkPlan.Piece) -> UnsafeRawBufferPointer {
                        UnsafeRawBufferPointer(rebasing: raw[(piece.offset - windowStart) ..< (piece.offset - windowStart + piece.length)])
                    }
                    // 1. One catalog lookup for the window, 2. the new chunks' base frames in shared
                    //    reads, 3. encodes in parallel, with one extra iteration reading and hashing
                    //    the next window. That iteration is the first: it is the longest, and started
                    //    last it would leave one core idle while it finishes alone.
                    let existing = try store.catalog.findChunks(Array(Set(ids)))
                    try verifyShared(Array(existing.values))
                    var bases: [Int: ChunkLocation] = [:]
                    for (i, piece) in pieces.enumerated() where existing[ids[i]] == nil {
                        let paired = piece.tensor.flatMap { basePairs[$0] }.flatMap { t in
                            piece.indexInTensor < t.chunks.count ? t.chunks[piece.indexInTensor] : nil
                        }
                        if let paired, let usable = try usableBase(paired) { bases[i] = usable }
                    }
                    for location in existing.values { knownRowIDs[location.id] = location.rowID }
                    for location in bases.values { knownRowIDs[location.id] = location.rowID }
                    let frames = try FrameBatch.prefetch(Array(bases.values), store: store)
                    let following = WindowSlot()
                    let coded = try parallelMap(pieces.count + 1) { k -> Coded? in
                        guard k > 0 else {
                            if window.end < plan.pieces.count { following.window = try source.read(from: window.end) }
                            return nil
                        }
                        let i = k - 1
                        if let location = existing[ids[i]] { return .existing(location) }
                        return try self.code(slice(pieces[i]), id: ids[i], element: pieces[i].element, base: bases[i], frames: frames)
                    }.dropFirst()
                    next = following.window
                    for (i, piece) in pieces.enumerated() {
                        guard let result = coded[coded.startIndex + i] else { continue }
                        let id: ChunkID
                        switch result {
                        case let .existing(location):
                            id = location.id
                            report.sharedChunks += 1
                        case let .fresh(freshID, header, payload, depth):
                            id = freshID
                            if pending[freshID] != nil {
                                report.sharedChunks += 1
                            } else {
                                let chunk = try writer.append(header: header, payload: payload, depth: depth)
                                pending[freshID] = chunk
                                newChunks.append(chunk)
                                report.storedBytes += chunk.frameLength
                                if header.base != nil { report.deltaChunks += 1 } else { report.freshChunks += 1 }
                                report.encodings[header.encoding, default: 0] += 1
                            }
                        }
                        refs.append(RevisionManifest.ChunkRef(rawLength: UInt32(piece.length), id: id))
                    }
                    done += raw.count
                    progress?(TransferProgress(done: done, total: total, file: input.path))
                }
                let sha = source.sha
                let digest = sha.finalize()
                if let before = plan.sourceIdentity, try file.identity() != before {
                    throw StoreError.invalidRequest("\(input.source) changed while it was being stored; nothing was stored (put it again once it is complete)")
                }
                if let expected = input.expectedSHA256, expected != digest {
                    // Before the manifest and the commit: the revision never becomes visible.
                    throw StoreError.invalidRequest("\(input.path): content SHA-256 is \(digest.hex), expected \(expected.hex); nothing was stored")
                }
                manifestFiles.append(RevisionManifest.File(path: input.path, size: UInt64(plan.size), sha256: digest, kind: plan.kind, chunks: refs))
                if !plan.tensors.isEmpty { tensors[input.path] = plan.tensors }
                reports.append(report)
            }
            let createdAt = Int64(Date().timeIntervalSince1970)
            let manifest = RevisionManifest(model: model, revision: revision, createdAt: createdAt,
                                            baseModel: base?.revision.model ?? "", baseRevision: base?.revision.revision ?? "",
                                            baseReason: base?.reason ?? "", files: manifestFiles)
            let manifestBytes = try manifest.encoded()
            let manifestChunk = try appendManifest(manifestBytes)
            // ORDER: packs durable (fsync, rename, dir fsync) → catalog transaction. A refused
            // commit's packs are deleted; an unanswered one's stay for gc (FrameWriter).
            let record = try writer.commit { sealed in
                try store.catalog.commit(RevisionCommit(manifest: manifest, manifestChunk: manifestChunk, tensors: tensors, packs: sealed,
                                                        chunks: newChunks, gcFence: gcFence, sketch: sketch, knownRowIDs: knownRowIDs))
            }
            return PutReport(revision: record, files: reports, base: base, warnings: warnings,
                             seconds: Date().timeIntervalSince(started))
        } catch {
            // Packs this put wrote are referenced by no catalog row: drop them now, not at gc.
            writer.discard()
            throw error
        }
    }

    /// Checks the frames of stored chunks this put is about to share, and of their delta bases:
    /// a revision must never reference a chunk whose pack is gone or whose payload is damaged (it
    /// would commit and then fail every read). Reads the stored frames once per put (ranged and
    /// batched) and checks their header and payload checksums, not their decodes. A failure
    /// refuses the put before anything is committed and says how to get out of it.
    private func verifyShared(_ locations: [ChunkLocation]) throws {
        let unchecked = locations.filter { !verified.contains($0.rowID) }
        guard !unchecked.isEmpty else { return }
        do {
            let frames = try FrameBatch.prefetch(unchecked, store: store)
            for location in unchecked + Array(frames.locations.values) where !verified.contains(location.rowID) {
                guard let bytes = frames.frames[location.rowID] else {
                    throw StoreError.corrupt(Damage(chunk: location.id, pack: location.pack, offset: location.frameOffset, "chunk \(location.id.short): its frame was not read"))
                }
                _ = try store.verifyFrame(bytes, location)
                verified.insert(location.rowID)
            }
        } catch let error as StoreError {
            guard case var .corrupt(damage) = error else { throw error }
            damage.detail = "this put shares a stored chunk that is damaged or missing (\(damage.detail)); nothing was stored: run `tpstore fsck`, then `tpstore fsck --repair` to drop what is lost, and put again"
            throw StoreError.corrupt(damage)
        }
    }

    private func appendManifest(_ bytes: [UInt8]) throws -> NewChunk {
        guard bytes.count <= FrameHeader.maxLength else {
            throw StoreError.invalidRequest("the revision's manifest is \(bytes.count) bytes, over the \(FrameHeader.maxLength >> 20) MiB frame limit; nothing was stored: put the files as several revisions")
        }
        let id = bytes.withUnsafeBytes { ChunkID(of: $0) }
        let packed = bytes.withUnsafeBytes { Zstd.compress($0) }
        guard packed.count <= FrameHeader.maxLength else {
            throw StoreError.invalidRequest("the revision's manifest compresses to \(packed.count) bytes, over the \(FrameHeader.maxLength >> 20) MiB frame limit; nothing was stored: put the files as several revisions")
        }
        let header = FrameHeader(kind: .manifest, encoding: Encoding.zstd.rawValue, payloadLength: packed.count, rawLength: bytes.count,
                                 elementWidth: 1, floatLayout: .none, id: id, base: nil, payloadChecksum: Hashing.xxh3_64(packed))
        return try writer.append(header: header, payload: packed)
    }

    /// The chunk a new chunk may be a delta against: `paired`, or (to keep chains short) the first
    /// chunk down its base chain below the depth limit; nil when there is none.
    private func usableBase(_ paired: ChunkLocation) throws -> ChunkLocation? {
        var candidate = paired
        while candidate.depth >= ChunkStore.maxDeltaDepth, let next = candidate.baseRowID, let loc = try store.catalog.chunk(rowID: next) {
            candidate = loc
        }
        return candidate.depth < ChunkStore.maxDeltaDepth ? candidate : nil
    }

    /// Encodes a new piece (against its base chunk when it has one) and checks that the encoding
    /// decodes back to the same bytes before it is kept.
    private func code(_ raw: UnsafeRawBufferPointer, id: ChunkID, element: ElementType, base: ChunkLocation?,
                      frames: PrefetchedFrames) throws -> Coded {
        let reference = base
        let baseBytes = try base.map { try store.rawBytes(of: $0, prefetched: frames) }
        let encoded: EncodedChunk
        if let baseBytes {
            encoded = baseBytes.withUnsafeBytes { ChunkCodec.encode(raw, element: element, base: $0) }
        } else {
            encoded = ChunkCodec.encode(raw, element: element)
        }
        let usesBase = encoded.encoding.usesBase
        // Verify before publishing: a codec bug must fail the put, never store wrong bytes.
        guard raw.count > 0 else {
            let header = FrameHeader(kind: .chunk, encoding: Encoding.stored.rawValue, payloadLength: 0, rawLength: 0, elementWidth: UInt8(element.width),
                                     floatLayout: element.layout, id: id, base: nil, payloadChecksum: Hashing.xxh3_64([]))
            return .fresh(id: id, header: header, payload: [], depth: 0)
        }
        // Not zero-filled first: a decode that returns has written every byte (ChunkCodec.decode).
        let check = try [UInt8](unsafeUninitializedCapacity: raw.count) { buffer, initialized in
            let out = UnsafeMutableRawBufferPointer(buffer)
            try encoded.payload.withUnsafeBytes { p in
                if usesBase, let baseBytes {
                    try baseBytes.withUnsafeBytes { try ChunkCodec.decode(p, encoding: encoded.encoding, element: element, base: $0, into: out) }
                } else {
                    try ChunkCodec.decode(p, encoding: encoded.encoding, element: element, base: nil, into: out)
                }
            }
            initialized = raw.count
        }
        guard check.withUnsafeBytes({ memcmp($0.baseAddress!, raw.baseAddress!, raw.count) == 0 }) else {
            throw StoreError.corrupt("encoding \(encoded.encoding) of chunk \(id.short) does not decode to its input (a tpstore bug; nothing was stored)")
        }
        let header = FrameHeader(kind: .chunk, encoding: encoded.encoding.rawValue, payloadLength: encoded.payload.count,
                                 rawLength: raw.count, elementWidth: UInt8(element.width), floatLayout: element.layout, id: id,
                                 base: usesBase ? reference?.id : nil, payloadChecksum: Hashing.xxh3_64(encoded.payload))
        return .fresh(id: id, header: header, payload: encoded.payload, depth: usesBase ? (reference?.depth ?? 0) + 1 : 0)
    }
}

/// A window of a file, read and hashed: the pieces `start ..< end` of its plan, their bytes and ids.
private struct HashedWindow {
    let pieces: [ChunkPlan.Piece]
    let end: Int
    /// Inside one of the WindowReader's two buffers: valid until the reader reads the window after
    /// the next one (see WindowReader for why the put never does that too early).
    let bytes: UnsafeRawBufferPointer
    let ids: [ChunkID]
}

/// Reads a file's windows (about `windowBytes` of whole pieces each) in order into two
/// alternating buffers, and hashes each byte once for both of its hashes: its chunk's id and the
/// file's SHA-256 (`StreamingSHA256.update(_:_:with:)`, SPEC 10).
///
/// The put reads window n+1 inside window n's parallel step, and window n+2 only inside window
/// n+1's, after window n's step has returned and its results own their payloads: so the buffer
/// window n+2 overwrites (window n's) is no longer read. Used by one thread at a time.
private final class WindowReader {
    private let file: OpenFile
    private let pieces: [ChunkPlan.Piece]
    private let windowBytes: Int
    private var buffers: [UnsafeMutableRawBufferPointer] = []
    private var slot = 0
    /// The file's SHA-256 over the windows read so far.
    private(set) var sha = StreamingSHA256()

    init(file: OpenFile, pieces: [ChunkPlan.Piece], windowBytes: Int) {
        self.file = file
        self.pieces = pieces
        self.windowBytes = windowBytes
    }

    deinit { for buffer in buffers { buffer.deallocate() } }

    /// The window of pieces from `start` on (`limit` bytes of whole pieces, at least one piece);
    /// `start` must follow the previous window's end.
    func read(from start: Int, upTo limit: Int? = nil) throws -> HashedWindow? {
        guard start < pieces.count else { return nil }
        let limit = min(limit ?? windowBytes, windowBytes)
        var end = start + 1
        var bytes = pieces[start].length
        while end < pieces.count, bytes + pieces[end].length <= limit {
            bytes += pieces[end].length
            end += 1
        }
        // One buffer per slot for the whole file, grown when a window needs more (a single piece
        // may exceed the window size): a fresh one per window costs a page fault per 4 KiB.
        if buffers.count < 2 { buffers.append(.allocate(byteCount: max(bytes, windowBytes), alignment: 64)) }
        if buffers[slot].count < bytes {
            buffers[slot].deallocate()
            buffers[slot] = .allocate(byteCount: bytes, alignment: 64)
        }
        // Safe: the slot's buffer holds at least `bytes` bytes (just checked).
        let target = UnsafeMutableRawBufferPointer(rebasing: buffers[slot][0 ..< bytes])
        try file.read(into: target, at: pieces[start].offset)
        let buffer = UnsafeRawBufferPointer(target)
        slot = 1 - slot
        let window = Array(pieces[start ..< end])
        let windowStart = window[0].offset
        // Safe: a plan's pieces are contiguous (each starts where the one before ends), so the
        // window's pieces tile [0, bytes) of the buffer.
        func chunk(_ k: Int) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: buffer[(window[k].offset - windowStart) ..< (window[k].offset - windowStart + window[k].length)])
        }
        let ids: [ChunkID]
        if StreamingSHA256.usesExtensions {
            // One pass per byte for both hashes, in order (the file's hash is sequential).
            var out: [ChunkID] = []
            out.reserveCapacity(window.count)
            for k in window.indices {
                var chunkSHA = StreamingSHA256()
                StreamingSHA256.update(&sha, &chunkSHA, with: chunk(k))
                out.append(ChunkID(xxh: Hashing.xxh3_128(chunk(k)), sha: chunkSHA.finalize()))
            }
            ids = out
        } else {
            // Without the extensions the pair costs two passes: the ids on every core, then the
            // file's hash here.
            ids = try parallelMap(window.count) { k in ChunkID(of: chunk(k)) }
            sha.update(buffer)
        }
        return HashedWindow(pieces: window, end: end, bytes: buffer, ids: ids)
    }
}

/// Carries the next window out of the parallel step: iteration 0 sets it, the caller reads it
/// after `parallelMap` returned (which orders the two).
private final class WindowSlot: @unchecked Sendable {
    var window: HashedWindow?
}
