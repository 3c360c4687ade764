import Dispatch
import Foundation
import TenPakChunkStore
import TenPakCodecs
import TenPakFormat

/// What one `ChunkImporter.receive` did.
public struct ReceiveReport: Sendable {
    /// Frames in the bundle; frames written as they came; frames re-stored raw (their delta chain
    /// would be too deep here); frames skipped because the store had the chunk already.
    public var frames = 0
    public var stored = 0
    public var restored = 0
    public var present = 0
    /// Frame bytes written into new packs.
    public var bytesWritten = 0

    public init() {}

    public mutating func add(_ other: ReceiveReport) {
        frames += other.frames
        stored += other.stored
        restored += other.restored
        present += other.present
        bytesWritten += other.bytesWritten
    }
}

/// Lands frames that came from elsewhere (another store, a client, a server) in a store, trusting
/// none of them, and commits the revision they make (SPEC §19.3). The receiving half of `pull`,
/// `push` (server side) and `copy`.
///
/// An importer holds the store lock shared from `init` to `close` (or deinit), and reads the gc
/// fence once: every commit it makes is refused if a gc started since (it cannot while the lock
/// holds, unless the lock was lost).
///
/// - `receive` checks every frame of a bundle (header and payload checksums in the parse; a known
///   kind (chunk or manifest) and encoding; its base in the store or earlier in the same bundle;
///   decoded, its XXH3-128 *and* SHA-256 equal its id) and records the new ones as chunks without a
///   revision (`Catalog.commitChunks`): staged. An interrupted transfer keeps every bundle it
///   finished, so a re-run asks only for the rest (`missing`). Staged chunks nothing uses are gc's.
/// - `commit` decodes the revision's own manifest frame (staged or already present), checks that
///   it names the revision asked for, that every chunk is present with the length it says, and
///   rebuilds every file to check its SHA-256; only then is the revision committed (one catalog
///   transaction, gc-fenced). Tensors are read from each safetensors file's header.
public final class ChunkImporter: @unchecked Sendable {
    // Safe: one caller at a time uses an importer (its mutable state: `hashers`, `own`, `landing`,
    // `hashManifests`); a background landing reads only constants, the store (thread-safe) and the
    // snapshot of the hashers it was given.
    public let store: ModelStore
    /// At most this many decoded bytes per bundle: bounds the memory one bundle can make a
    /// receiver spend (decoded bases kept for later frames, frames re-stored raw).
    public static let maxBundleRaw = 1 << 30
    private var lock: AnyObject?
    let fence: Int64
    /// Decoded bases reused across the frames of one receive (a chain's root is shared).
    private let cache: ChunkCache
    /// Files hashed as their chunks arrive, behind the bundles (`track`, `hashManifests`).
    private var hashers: [FileHasher] = []
    /// Called for each manifest frame a bundle stages (decoded and checked): a hasher of its
    /// files that this bundle and later ones feed (a push's server, which learns the files from the
    /// manifest frame the client sends first), or nil.
    public var hashManifests: ((ChunkID, RevisionManifest) -> FileHasher?)?

    /// `lane`: the landings this importer's background landings take turns with; importers that
    /// share one (a server's pushes, one importer per bundle) check a bundle while the bundle
    /// before it is written. Without one, the importer's own landings take turns with each other.
    public init(store: ModelStore, lane: LandingLane? = nil) throws {
        self.store = store
        self.lane = lane ?? LandingLane()
        cache = ChunkCache(capacity: 64 << 20)
        let lock = try store.chunks.lock(.shared)
        self.lock = lock
        fence = try store.catalog.gcGeneration()
    }

    /// Releases the store lock (also done at deinit), once the file hashing of `track` behind the
    /// bundles (which reads the store) has stopped. Hashers from `feed` or `hashManifests` belong to
    /// the caller and go on.
    public func close() {
        // A landing that failed has deleted its packs; its error was the caller's to ask for.
        _ = try? finishLanding()
        if let own { _ = try? own.drain() }
        lock = nil
    }

    /// The hasher of `track`, which this importer's commit uses.
    private var own: FileHasher?

    /// Hash the files of `manifest` as their chunks arrive (pull and copy know them ahead), so the
    /// commit need not decode again what `receive` decoded (`FileHasher`).
    public func track(_ manifest: TransferManifest) {
        let hasher = FileHasher(store: store, manifest: manifest, cache: cache)
        // A copy tracks one revision after another: the last one's hasher is done with.
        if let own { hashers.removeAll { $0 === own } }
        own = hasher
        feed(hasher)
    }

    /// Feed `hasher` with every bundle this importer receives from now on.
    public func feed(_ hasher: FileHasher) {
        if !hasher.isEmpty { hashers.append(hasher) }
    }

    /// Of `ids`, those the store does not have, in the order given.
    public func missing(_ ids: [ChunkID]) throws -> [ChunkID] {
        try finishLanding()
        // A bundle another importer is landing counts as here once it has landed (or failed).
        lane.wait()
        var have: [ChunkID: ChunkLocation] = [:]
        let step = 4096
        for start in stride(from: 0, to: ids.count, by: step) {
            have.merge(try store.catalog.findChunks(Array(ids[start ..< min(start + step, ids.count)]))) { a, _ in a }
        }
        return ids.filter { have[$0] == nil }
    }

    /// Checks and stages every frame of `bundle` (see the type's doc). With `expected`, the bundle
    /// must hold exactly those frames, each once (a pull takes only what it asked for). All or nothing per
    /// bundle: a bad frame anywhere stores none of it.
    ///
    /// A manifest frame is taken only when `acceptsManifest(model, revision)` holds for the manifest
    /// in it: a writer of one repository cannot stage a manifest naming another, which a catalog
    /// rebuild would then turn into a revision there (SPEC §11, §19.4).
    ///
    /// With `landInBackground` (pull, copy, a server's pushes), the bundle is checked now and written
    /// (frames appended, packs sealed, the catalog transaction, the file hashers fed) on another
    /// thread while the caller fetches and checks the next one: a pull's fsyncs and commits then
    /// overlap its decoding. At most one bundle lands at a time on the importer's lane; the next
    /// `receive`, `missing`, `commit`, `finishLanding` or `close` waits for this importer's, and the
    /// first three throw its error (`receive`, `missing` and `commit` also wait for one of another
    /// importer on the lane). A bundle whose frames or bases are among those landing waits for them
    /// first, and one that starts file hashers (`hashManifests`) lands before this returns.
    public func receive(bundle: [UInt8], expected: Set<ChunkID>? = nil, landInBackground: Bool = false,
                        acceptsManifest: @escaping @Sendable (_ model: String, _ revision: String) -> Bool) throws -> ReceiveReport {
        let prepared = try prepare(bundle: bundle, expected: expected, acceptsManifest: acceptsManifest)
        try finishLanding()
        guard landInBackground, !prepared.startsHashers else {
            lane.wait()
            return try land(prepared, feeding: nil)
        }
        let hashers = self.hashers
        landing = lane.start(ids: prepared.ids) { [self] in try land(prepared, feeding: hashers) }
        return prepared.report
    }

    /// Waits for the bundle landing in the background (`receive(landInBackground:)`), if any, and
    /// throws its error.
    public func finishLanding() throws {
        guard let landing else { return }
        self.landing = nil
        _ = try landing.value()
    }

    /// This importer's bundle landing in the background (its frames' ids are the lane's to know).
    private var landing: Background<ReceiveReport>?
    /// The landings this importer's take turns with (`init(store:lane:)`).
    private let lane: LandingLane

    /// A bundle checked by `prepare` and not yet written: `land` writes it. Holds the bundle and
    /// the decoded chunks the file hashers want.
    private struct PreparedBundle: Sendable {
        /// What landing it will have done (every count is known once it is checked).
        let report: ReceiveReport
        /// Landing it starts file hashers (`hashManifests`): a later bundle's importer must find
        /// them, so such a bundle lands before the next one is checked.
        let startsHashers: Bool
        let bundle: [UInt8]
        /// In the order written: a base before the frames on it.
        let frames: [PreparedFrame]
        let decoded: [ChunkID: [UInt8]]
        let newManifests: [ManifestFrame]
        var ids: Set<ChunkID> { Set(frames.map(\.header.id)) }
    }

    private struct PreparedFrame: Sendable {
        let header: FrameHeader
        /// Where the payload lies in the bundle, or the decoded bytes a frame re-stored raw is written with.
        let payload: Range<Int>?
        let raw: [UInt8]?
        let depth: Int
    }

    private struct ManifestFrame: Sendable {
        let id: ChunkID
        let manifest: RevisionManifest
    }

    private struct Pending {
        let index: Int
        let header: FrameHeader
        let level: Int
        var depth: Int
    }

    /// The checks of `receive`, nothing written: the frames to write, bases first.
    private func prepare(bundle: [UInt8], expected: Set<ChunkID>?,
                         acceptsManifest: @escaping @Sendable (_ model: String, _ revision: String) -> Bool) throws -> PreparedBundle {
        try bundle.withUnsafeBytes { bytes in
            try prepare(bytes, bundle: bundle, expected: expected, acceptsManifest: acceptsManifest)
        }
    }

    private func prepare(_ bytes: UnsafeRawBufferPointer, bundle: [UInt8], expected: Set<ChunkID>?,
                         acceptsManifest: @escaping @Sendable (String, String) -> Bool) throws -> PreparedBundle {
        let entries: [FrameBundle.Entry]
        do {
            entries = try FrameBundle.parse(bytes, maxFrames: FrameSender.maxFrames)
        } catch let error as FormatError {
            throw StoreError.invalidRequest("frame bundle refused, nothing stored: \(error)")
        }
        var report = ReceiveReport()
        report.frames = entries.count
        if let expected, entries.count != expected.count {
            throw StoreError.invalidRequest("frame bundle refused, nothing stored: it holds \(entries.count) frames, \(expected.count) were asked for")
        }
        let declaredRaw = entries.reduce(0) { $0 + $1.header.rawLength }
        guard declaredRaw <= ChunkImporter.maxBundleRaw else {
            throw StoreError.invalidRequest("frame bundle refused, nothing stored: its frames decode to \(declaredRaw) bytes, over the \(ChunkImporter.maxBundleRaw)-byte limit per bundle")
        }
        func refuse(_ header: FrameHeader, _ why: String) -> StoreError {
            .invalidRequest("frame \(header.id.short) refused, nothing of its bundle stored: \(why)")
        }
        let ids = entries.map(\.header.id)
        let idsAndBases = Set(ids + entries.compactMap(\.header.base))
        // Frames landing in the background are not in the catalog yet: this bundle waits for them
        // if it has one of them, or a frame on one (its own landing's error is thrown here).
        if lane.isLanding(anyOf: idsAndBases) {
            lane.wait()
            try finishLanding()
        }
        let known = try store.catalog.findChunks(Array(idsAndBases))
        // In-bundle order: a base must come before the frames that use it.
        var inBundle: [ChunkID: Int] = [:]
        var pending: [Pending] = []
        for (i, entry) in entries.enumerated() {
            let header = entry.header
            if let expected, !expected.contains(header.id) { throw refuse(header, "it was not asked for") }
            guard inBundle[header.id] == nil else { throw refuse(header, "it appears twice") }
            guard header.kind == .chunk || header.kind == .manifest else { throw refuse(header, "a \(header.kind) frame is not transferred") }
            guard let encoding = Encoding(rawValue: header.encoding) else { throw refuse(header, "unknown encoding \(header.encoding)") }
            guard encoding.usesBase == (header.base != nil) else { throw refuse(header, "encoding \(encoding) and its base flag disagree") }
            guard header.base != header.id else { throw refuse(header, "it names itself as its base") }
            // A manifest is written whole (as a put writes it): a catalog rebuild reads it from its
            // frame alone (SPEC §11), so a delta-coded one would be lost there.
            guard header.kind != .manifest || header.base == nil else { throw refuse(header, "a manifest frame is never delta-coded") }
            if known[header.id] != nil {
                report.present += 1
                inBundle[header.id] = pending.count
                pending.append(Pending(index: i, header: header, level: -1, depth: 0))
                continue
            }
            var level = 0, depth = 0
            if let base = header.base {
                if let at = known[base] {
                    depth = at.depth + 1
                } else if let j = inBundle[base] {
                    // Earlier in the bundle and new here (a present one is in `known`).
                    level = pending[j].level + 1
                    depth = pending[j].depth + 1
                } else {
                    throw refuse(header, "its base \(base.short) is neither in this store nor earlier in the bundle")
                }
            }
            // Recorded only now: a frame cannot be found as its own (or a later frame's) base above.
            inBundle[header.id] = pending.count
            pending.append(Pending(index: i, header: header, level: level, depth: depth))
        }
        // A manifest frame new here starts a hasher of its files when the caller asks for one.
        let startsHashers = hashManifests != nil && pending.contains { $0.level >= 0 && $0.header.kind == .manifest }
        // Decoded bytes kept for the file hashers: what they want, or everything while the files
        // of a manifest in this bundle are not known yet.
        let wanted = hashers.reduce(into: Set<ChunkID>()) { $0.formUnion($1.wanted) }
        let keepAll = startsHashers
        // Bases some frame of this bundle is decoded against, kept decoded for it.
        let neededBases = Set(entries.compactMap { e in e.header.base.flatMap { inBundle[$0] != nil && known[$0] == nil ? $0 : nil } })
        let baseFrames = try FrameBatch.prefetch(Array(Set(entries.compactMap { $0.header.base.flatMap { known[$0] } })), store: store.chunks,
                                                 cache: cache)
        // Stored bases used by more than one frame here go through the decode cache; one used once
        // (a fine-tune's delta against its base's chunk, the common case) is decoded, used and
        // dropped: caching it would only fill the cache, with fresh memory, for nothing.
        var baseUses: [ChunkID: Int] = [:]
        for p in pending where p.level >= 0 { if let base = p.header.base, known[base] != nil { baseUses[base, default: 0] += 1 } }
        var decodedBases: [ChunkID: [UInt8]] = [:]
        var newManifests: [(ChunkID, RevisionManifest)] = []
        var restoredRaw: [Int: [UInt8]] = [:]
        let maxLevel = pending.map(\.level).max() ?? -1
        let chunks = store.chunks
        let cache = self.cache
        for level in 0 ... max(maxLevel, 0) where maxLevel >= 0 {
            let work = pending.indices.filter { pending[$0].level == level }
            let bases = decodedBases
            let results = try parallelMap(work.count) { w -> (keep: [UInt8]?, raw: [UInt8]?, manifest: RevisionManifest?) in
                let p = pending[work[w]]
                let entry = entries[p.index]
                let header = p.header
                // Safe: the parse checked that the payload lies inside `bytes`.
                let payload = UnsafeRawBufferPointer(rebasing: bytes[entry.payloadOffset ..< entry.payloadOffset + header.payloadLength])
                var base: [UInt8]?
                if let baseID = header.base {
                    if let decoded = bases[baseID] {
                        base = decoded
                    } else if let at = known[baseID] {
                        base = try chunks.rawBytes(of: at, cache: baseUses[baseID, default: 0] > 1 ? cache : nil, prefetched: baseFrames)
                    } else {
                        throw refuse(header, "its base \(baseID.short) is missing")
                    }
                }
                // Checked while planning (above); the element width was checked by the header decoder.
                guard let encoding = Encoding(rawValue: header.encoding) else { throw refuse(header, "unknown encoding") }
                let raw: [UInt8]
                do {
                    // Not zeroed first: `decode` writes every byte or throws.
                    raw = try [UInt8](unsafeUninitializedCapacity: header.rawLength) { buffer, initialized in
                        try ChunkCodec.decode(payload, header: header, encoding: encoding, base: base, into: UnsafeMutableRawBufferPointer(buffer))
                        initialized = header.rawLength
                    }
                } catch let error as CodecError {
                    throw refuse(header, "it does not decode (\(error))")
                }
                let actual = raw.withUnsafeBytes { ChunkID(of: $0) }
                guard actual == header.id else {
                    throw refuse(header, "it decodes to bytes whose id is \(actual.short) (XXH3-128 or SHA-256 differs)")
                }
                var named: RevisionManifest?
                if header.kind == .manifest {
                    named = try? raw.withUnsafeBytes { try RevisionManifest.decode($0) }
                    guard let named else { throw refuse(header, "it is a manifest frame but holds no revision manifest") }
                    guard acceptsManifest(named.model, named.revision) else {
                        throw refuse(header, "it is a manifest of \(Names.printable(named.model))@\(Names.printable(named.revision)), which this transfer may not write")
                    }
                }
                let tooDeep = p.depth > ChunkStore.maxDeltaDepth
                let keep = keepAll || wanted.contains(header.id) || neededBases.contains(header.id)
                return (keep ? raw : nil, tooDeep ? raw : nil, named)
            }
            for (w, result) in zip(work, results) {
                if let keep = result.keep { decodedBases[pending[w].header.id] = keep }
                if let raw = result.raw { restoredRaw[w] = raw }
                if let named = result.manifest { newManifests.append((pending[w].header.id, named)) }
            }
            // A frame re-stored raw has depth 0: frames on top of it are one deep.
            for w in work where restoredRaw[w] != nil { pending[w].depth = 0 }
            for j in pending.indices where pending[j].level == level + 1 {
                if let base = pending[j].header.base, let b = inBundle[base] { pending[j].depth = pending[b].depth + 1 }
            }
        }
        var frames: [PreparedFrame] = []
        for (w, p) in pending.enumerated().sorted(by: { ($0.element.level, $0.offset) < ($1.element.level, $1.offset) }) where p.level >= 0 {
            let header: FrameHeader
            if let raw = restoredRaw[w] {
                header = FrameHeader(kind: p.header.kind, encoding: Encoding.stored.rawValue, payloadLength: raw.count, rawLength: raw.count,
                                     elementWidth: p.header.elementWidth, floatLayout: p.header.floatLayout, id: p.header.id, base: nil,
                                     payloadChecksum: Hashing.xxh3_64(raw))
                frames.append(PreparedFrame(header: header, payload: nil, raw: raw, depth: 0))
                report.restored += 1
            } else {
                header = p.header
                let offset = entries[p.index].payloadOffset
                frames.append(PreparedFrame(header: header, payload: offset ..< offset + header.payloadLength, raw: nil, depth: p.depth))
                report.stored += 1
            }
            report.bytesWritten += header.size + header.payloadLength
        }
        // Bases kept only for frames of this bundle are dropped: what remains is for the hashers.
        if !keepAll { decodedBases = decodedBases.filter { wanted.contains($0.key) } }
        return PreparedBundle(report: report, startsHashers: startsHashers, bundle: bundle, frames: frames, decoded: decodedBases,
                              newManifests: newManifests.map { ManifestFrame(id: $0.0, manifest: $0.1) })
    }

    /// Writes a bundle `prepare` checked: its frames appended to a new pack, the pack sealed, the
    /// chunks staged in one catalog transaction; then the file hashers are fed. With `feeding`
    /// (a background landing), those hashers are fed and `hashManifests` is not asked.
    private func land(_ prepared: PreparedBundle, feeding: [FileHasher]?) throws -> ReceiveReport {
        // ORDER: frames appended → packs sealed → one catalog transaction (FrameWriter).
        let writer = FrameWriter(packs: store.chunks.packs)
        var newChunks: [NewChunk] = []
        try prepared.bundle.withUnsafeBytes { bytes in
            for frame in prepared.frames {
                if let raw = frame.raw {
                    newChunks.append(try writer.append(header: frame.header, payload: raw, depth: frame.depth))
                } else if let range = frame.payload {
                    // Safe: the parse checked that the payload lies inside the bundle.
                    newChunks.append(try writer.append(header: frame.header, payload: UnsafeRawBufferPointer(rebasing: bytes[range]), depth: frame.depth))
                }
            }
        }
        if newChunks.isEmpty {
            writer.discard()
        } else {
            try writer.commit { sealed in
                try store.catalog.commitChunks(ChunkCommit(packs: sealed, chunks: newChunks, gcFence: fence))
            }
        }
        var hashers = feeding ?? []
        if feeding == nil {
            // ORDER: after the catalog commit above, so a feed finds this bundle's chunks in the store.
            if let hashManifests {
                for frame in prepared.newManifests { if let hasher = hashManifests(frame.id, frame.manifest) { feed(hasher) } }
            }
            hashers = self.hashers
        }
        // Only what the hashers want is handed on: bases and the rest of a bundle that started a
        // hasher (decoded before its files were known) are dropped here, not pinned in a queue.
        if !hashers.isEmpty {
            let wantedNow = hashers.reduce(into: Set<ChunkID>()) { $0.formUnion($1.wanted) }
            let fed = prepared.decoded.filter { wantedNow.contains($0.key) }
            for hasher in hashers { hasher.enqueue(fed) }
        }
        return prepared.report
    }

    /// Commits the revision `model@revision` whose manifest chunk is `manifest` (staged or present),
    /// after the checks of the type's doc. `StoreError.revisionExists` if the name is taken,
    /// `invalidRequest` if anything is missing or does not match: nothing is committed then.
    /// With `soleFile`, the manifest must list exactly that one file (path and SHA-256): an LFS
    /// object pushed to a hub repository (section 19.3) is one file named `object` whose SHA-256 is its oid.
    ///
    /// The files are hashed from where `hashed` (or the importer's own hasher of `track`) stopped,
    /// for each file the manifest frame lists with the same path and chunks; from their start if
    /// that hasher failed.
    @discardableResult
    public func commit(manifest manifestID: ChunkID, model: String, revision: String,
                       soleFile: (path: String, sha256: Digest256)? = nil, hashed: FileHasher? = nil) throws -> RevisionRecord {
        try finishLanding()
        lane.wait()
        try Names.validateModel(model)
        try Names.validateRevision(revision)
        if (try? store.catalog.resolve(model: model, revision: revision)) != nil {
            throw StoreError.revisionAlreadyExists(model: model, revision: revision)
        }
        func bad(_ message: String) -> StoreError { .invalidRequest("\(model)@\(revision) not committed: \(message)") }
        guard let at = try store.catalog.findChunks([manifestID])[manifestID] else {
            throw bad("its manifest chunk \(manifestID.short) was not received")
        }
        // Its frame must be a manifest frame stored whole: a catalog rebuild finds revisions by
        // such frames alone (SPEC §11), so any other would be lost on repair.
        let (header, _) = try store.chunks.readFrame(at)
        guard header.kind == .manifest, header.base == nil else {
            throw bad("chunk \(manifestID.short) is not stored as a manifest frame (kind \(header.kind), \(header.base == nil ? "whole" : "delta-coded"))")
        }
        let manifest: RevisionManifest
        do {
            let raw = try store.chunks.rawBytes(of: at)
            manifest = try raw.withUnsafeBytes { try RevisionManifest.decode($0) }
        } catch let error as FormatError {
            throw bad("chunk \(manifestID.short) is not a revision manifest (\(error))")
        }
        guard manifest.model == model, manifest.revision == revision else {
            throw bad("its manifest is that of \(Names.printable(manifest.model))@\(Names.printable(manifest.revision))")
        }
        if let soleFile {
            guard manifest.files.count == 1, let only = manifest.files.first, only.path == soleFile.path, only.sha256 == soleFile.sha256 else {
                throw bad("its manifest must list exactly one file \(soleFile.path) with SHA-256 \(soleFile.sha256.hex)")
            }
        }
        // A file hash that failed behind the bundles (a store read) is redone here from the start.
        let tracked = (try? (hashed ?? own)?.drain()) ?? [:]
        let ids = Array(Set(manifest.files.flatMap { $0.chunks.map(\.id) }))
        var found: [ChunkID: ChunkLocation] = [:]
        for start in stride(from: 0, to: ids.count, by: 4096) {
            found.merge(try store.catalog.findChunks(Array(ids[start ..< min(start + 4096, ids.count)]))) { a, _ in a }
        }
        var paths = Set<String>()
        var tensors: [String: [TensorRecord]] = [:]
        for file in manifest.files {
            do { try Names.validatePath(file.path) } catch { throw bad("\(error)") }
            guard paths.insert(file.path).inserted else { throw bad("\(Names.printable(file.path)) appears twice") }
            var offset = 0
            var fileChunks: [FileChunk] = []
            for ref in file.chunks {
                guard let location = found[ref.id] else { throw bad("chunk \(ref.id.short) of \(Names.printable(file.path)) was not received") }
                guard location.rawLength == Int(ref.rawLength) else {
                    throw bad("chunk \(ref.id.short) of \(Names.printable(file.path)) is \(location.rawLength) bytes, its manifest says \(ref.rawLength)")
                }
                fileChunks.append(FileChunk(offset: offset, location: location))
                offset += location.rawLength
            }
            guard UInt64(offset) == file.size, let size = Int(exactly: file.size) else {
                throw bad("the chunks of \(Names.printable(file.path)) add up to \(offset) bytes, its manifest says \(file.size)")
            }
            // End to end: the file rebuilt from what is now in this store has the SHA-256 the manifest names.
            // Resumed from the hash `receive` fed in file order when the plan matches, else from the start.
            final class Hasher: @unchecked Sendable { var sha = StreamingSHA256() }
            let hasher = Hasher()
            var from = 0
            if let plan = tracked[file.path], plan.ids == file.chunks.map(\.id) {
                hasher.sha = plan.sha
                from = plan.next
            }
            if from < fileChunks.count {
                let base = fileChunks[from].offset
                let rest = fileChunks[from...].map { FileChunk(offset: $0.offset - base, location: $0.location) }
                let record = FileRecord(rowID: -1, path: file.path, size: size - base, sha256: file.sha256, kind: file.kind)
                try FileStream(store: store.chunks, file: record, chunks: rest).forEachWindowBuffer { hasher.sha.update($0) }
            }
            let digest = hasher.sha.finalize()
            guard digest == file.sha256 else {
                throw bad("\(Names.printable(file.path)) rebuilds to SHA-256 \(digest.hex), its manifest says \(file.sha256.hex)")
            }
            if file.kind == .safetensors { tensors[file.path] = try tensorRecords(file.path, size: size, chunks: fileChunks, bad: bad) }
        }
        let manifestChunk = NewChunk(id: at.id, rawLength: at.rawLength, pack: at.pack, frameOffset: at.frameOffset,
                                     frameLength: at.frameLength, encoding: at.encoding, base: nil, depth: at.depth)
        // The manifest names `model@revision` (checked above), so it is the commit's record as it is.
        return try store.catalog.commit(RevisionCommit(manifest: manifest, manifestChunk: manifestChunk, tensors: tensors, packs: [], chunks: [],
                                                       gcFence: fence))
    }

    /// The tensor table of a safetensors file, from its header (decoded from its first chunks).
    private func tensorRecords(_ path: String, size: Int, chunks: [FileChunk], bad: (String) -> StoreError) throws -> [TensorRecord] {
        var next = chunks.makeIterator()
        do {
            return try TensorRecord.fromSafetensorsHeader(fileSize: size) {
                try next.next().map { try store.chunks.rawBytes(of: $0.location, cache: cache) }
            }
        } catch let error as FormatError {
            throw bad("\(Names.printable(path)) is marked safetensors but its header is not valid (\(error))")
        }
    }
}

/// Bundles landing in the background, one at a time, for the importers that share the lane: a
/// server makes one importer per pushed bundle, and with a shared lane it checks (decodes) the next
/// bundle while the one before is written (SPEC §19.5). A bundle with a frame still landing, or a
/// frame on one, waits for that landing before it is checked (`ChunkImporter.prepare`).
///
/// A landing's error is its importer's (`finishLanding`); the lane only says when it is over.
public final class LandingLane: @unchecked Sendable {
    // Safe: `current` is touched only inside `lock`.
    private let lock = NSLock()
    private var current: (ids: Set<ChunkID>, task: Background<ReceiveReport>)?

    public init() {}

    /// Whether the landing in progress writes one of `ids`.
    func isLanding(anyOf ids: Set<ChunkID>) -> Bool {
        lock.withLock { current.map { !$0.ids.isDisjoint(with: ids) } ?? false }
    }

    /// Waits until no landing is in progress.
    func wait() {
        while let task = lock.withLock({ current?.task }) {
            _ = try? task.value()
            lock.withLock { if current?.task === task { current = nil } }
        }
    }

    /// Starts `work` (the landing of `ids`) in the background once no other landing is in progress.
    func start(ids: Set<ChunkID>, _ work: @escaping @Sendable () throws -> ReceiveReport) -> Background<ReceiveReport> {
        while true {
            wait()
            let started: Background<ReceiveReport>? = lock.withLock {
                guard current == nil else { return nil }
                let task = Background(work)
                current = (ids, task)
                return task
            }
            if let started { return started }
        }
    }
}
