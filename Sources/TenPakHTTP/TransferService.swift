// The chunk-level transfer protocol of `tpstore serve` (SPEC §19): `tpstore pull` reads a
// revision's transfer manifest and the frames it lacks; `tpstore push` asks which chunks the server
// lacks, sends those frames in bundles (each checked and staged by a `ChunkImporter`), then commits
// the revision. The caller's access was checked by `HubServer` (pull: read, push: write).
import Foundation
import Hummingbird
import NIOCore
import TenPakChunkStore
import TenPakFormat
import TenPakLFS
import TenPakModelStore

struct TransferService: Sendable {
    let api: HubAPI
    let closures: ClosureCache
    /// Frame reads running at once (each holds up to a bundle in memory; see `WorkGate`).
    let frameReads: WorkGate
    /// File hashers of pushes in progress: a commit resumes their hashes (section 19.4).
    let pushes: PushHashers
    var store: ModelStore { api.store }

    static let prefix = ["api", "tenpak", "v1"]
    static let bundleType = "application/vnd.tenpak.bundle"
    /// A bundle body: at most `FrameSender.maxBundleBytes` of frames and a header per frame.
    static let bundleLimit = FrameSender.maxBundleBody

    enum Action: String {
        case manifest, frames, missing, chunks, commit
        /// `objects/{oid}/{step}`: an LFS object the repository holds (section 19.3).
        case objects
        var takesRevision: Bool { self == .manifest || self == .frames || self == .commit }
    }

    /// What `objects/{oid}/{step}` does: the pull routes and the commit, for an LFS object.
    enum ObjectStep: String {
        case manifest, frames, commit
    }

    /// `/api/tenpak/v1/{repo}/{action}[/{rev}]` or `/api/tenpak/v1/{repo}/objects/{oid}/{step}`, the
    /// segments after the prefix. A repository is two segments when the third names an action, else
    /// one (as the hub API's routes). For `objects`, `revision` is the oid.
    static func route(_ s: [String]) throws -> (repo: String, action: Action, revision: String?, step: ObjectStep?) {
        guard let split = HubServer.repoSegments(s, before: { Action(rawValue: $0) != nil }) else {
            throw HubFailure(status: .notFound, description: "no such transfer route: /api/tenpak/v1/{repo}/manifest/{rev}, frames/{rev}, missing, chunks, commit/{rev} or objects/{oid}/{step}")
        }
        let repo = try HubServer.validRepo(s[0 ..< split].joined(separator: "/"))
        // Safe: s.count > split (checked by the branch that set it).
        guard let action = Action(rawValue: s[split]) else { throw HubFailure(status: .notFound, description: "no such transfer route") }
        let rest = Array(s[(split + 1)...])
        if action == .objects {
            guard rest.count == 2, HubRepos.isObjectID(rest[0]), let step = ObjectStep(rawValue: rest[1]) else {
                throw HubFailure(status: .notFound, description: "no such transfer route: …/objects/{oid}/manifest, frames or commit, oid 64 lowercase hex digits")
            }
            return (repo, action, rest[0], step)
        }
        guard rest.count == (action.takesRevision ? 1 : 0), rest.allSatisfy({ !$0.isEmpty }) else {
            throw HubFailure(status: .notFound, description: "no such transfer route")
        }
        return (repo, action, rest.first, nil)
    }

    /// The revision that holds LFS object `oid` for `repo` (section 14.1: the repository's copy,
    /// else the newest commit with a file of that SHA-256): 404 `EntryNotFound` if it holds none.
    func objectRecord(repo: String, oid: String) throws -> RevisionRecord {
        guard let located = try api.repos.locateObject(repo: repo, oid: oid) else {
            throw HubFailure(status: .notFound, description: "Entry not found: LFS object \(oid) is not held by \(repo)", code: "EntryNotFound")
        }
        return located.record
    }

    /// `{"ids": ["<96 hex>", …]}`, at most `FrameSender.maxFrames` (or `limit`) of them.
    static func ids(_ body: [UInt8], limit: Int = FrameSender.maxFrames) throws -> [ChunkID] {
        guard let root = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any], let list = root["ids"] as? [Any] else {
            throw HubFailure.bad("expected {\"ids\": [\"<96 hex digits>\", …]}")
        }
        guard list.count <= limit else { throw HubFailure.bad("\(list.count) ids in one request; at most \(limit)") }
        return try list.map {
            guard let text = $0 as? String, let id = ChunkID(hex: text) else { throw HubFailure.bad("an id is not 96 hex digits") }
            return id
        }
    }

    static func errorAnswer(_ error: Error) -> Response {
        if error is HubFailure { return HubServer.error(for: error) }
        return UploadService.error(for: error)
    }

    // MARK: pull (read access)

    /// The revision `{rev}` names, or with `object` the one holding LFS object `{oid}`.
    func record(repo: String, revision: String, object: Bool) throws -> RevisionRecord {
        object ? try objectRecord(repo: repo, oid: revision) : try api.repos.resolve(repo, revision)
    }

    /// Who is pulling: whether they may read a repository, and every one.
    struct Reader: Sendable {
        let canRead: @Sendable (String) -> Bool
        let readsEverything: Bool
    }

    /// The revision's closure, after checking that `reader` may receive every chunk of it: the
    /// chunks of other revisions it holds (bases, transitively) must be file chunks of revisions the
    /// reader may read (`ClosureOwners`), so frames never carry a repository's bytes to a caller who
    /// could not download them (SPEC §19.3 "Access").
    static func closure(_ record: RevisionRecord, repo: String, store: ModelStore, closures: ClosureCache, reader: Reader) throws -> ClosureCache.Entry {
        let entry = try closures.entry(of: record) {
            let manifest = try TransferManifest.make(store: store, record: record)
            return ClosureCache.Entry(ids: Set(manifest.chunkIDs), owners: try ClosureOwners.of(store: store, record: record, manifest: manifest), manifest: try manifest.encoded())
        }
        guard !reader.readsEverything else { return entry }
        // An LFS object (`lfs/<oid>`) is readable through whichever repository holds it, and its
        // copies name their repository only by a hash (14.1): such owners cannot be checked here
        // and are let through (SPEC 19.3 "Access to bases" says what that exposes).
        guard let owners = entry.owners, owners.filter({ !HubRepos.isObjectModel($0) }).allSatisfy(reader.canRead) else {
            throw HubFailure(status: .forbidden, description: "\(repo)@\(record.revision) is stored against chunks of a repository this token cannot read, so its frames cannot be sent; download its files instead (/\(repo)/resolve/\(record.revision)/PATH)")
        }
        return entry
    }

    /// GET manifest/{rev} (or objects/{oid}/manifest): the revision's `TransferManifest` (JSON).
    func manifest(repo: String, revision: String, object: Bool = false, reader: Reader) async -> Response {
        do {
            let bytes = try await RangeService.blocking { [store, closures, self] in
                let record = try self.record(repo: repo, revision: revision, object: object)
                return try TransferService.closure(record, repo: repo, store: store, closures: closures, reader: reader).manifest
            }
            return HubAPI.json(bytes: bytes)
        } catch {
            return TransferService.errorAnswer(error)
        }
    }

    /// POST frames/{rev} `{"ids": […]}`: those frames, verbatim, as one bundle. Every id must be a
    /// chunk the revision needs (so a reader of one repository cannot fetch another's chunks).
    func frames(repo: String, revision: String, object: Bool = false, body: [UInt8], reader: Reader) async -> Response {
        do {
            let ids = try TransferService.ids(body)
            let bundle = try await frameReads.run { [store, closures, self] in try await RangeService.blocking {
                let record = try self.record(repo: repo, revision: revision, object: object)
                let needed = try TransferService.closure(record, repo: repo, store: store, closures: closures, reader: reader).ids
                if let stray = ids.first(where: { !needed.contains($0) }) {
                    throw HubFailure(status: .notFound, description: "chunk \(stray.short) is not part of \(repo)@\(record.revision)")
                }
                return try FrameSender(store: store).bundle(ids)
            } }
            var headers = HTTPFields()
            headers[.contentType] = TransferService.bundleType
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bundle)))
        } catch {
            return TransferService.errorAnswer(error)
        }
    }

    // MARK: push (write access)

    /// POST missing `{"ids": […]}`: `{"missing": […]}`, the ids this store lacks, in request order.
    func missing(body: [UInt8]) async -> Response {
        do {
            let ids = try TransferService.ids(body)
            let missing = try await RangeService.blocking(waits: true) { [store, lane = api.uploads.landings] in
                let importer = try ChunkImporter(store: store, lane: lane)
                defer { importer.close() }
                return try importer.missing(ids)
            }
            return HubAPI.json(["missing": missing.map(\.hex)])
        } catch {
            return TransferService.errorAnswer(error)
        }
    }

    /// POST chunks, a bundle: every frame checked and staged (all or nothing), one put-slot at a time.
    /// A manifest frame in it must be one the caller may commit: of `repo`, or `repo`'s copy of an
    /// LFS object (`lfs/<oid>@` its object revision, 14.1); nothing else it could write elsewhere.
    ///
    /// The bundle is checked in the put slot and written after it (`UploadService.landings`), so the
    /// next bundle is checked while this one's packs are synced and its chunks staged; the answer
    /// waits for the write, so a bundle answered 200 is in the store.
    func chunks(repo: String, body: [UInt8]) async -> Response {
        do {
            let objectRevision = HubRepos.objectRevision(repo: repo)
            let maxBytes = api.uploads.options.maxBytes
            let (importer, report) = try await api.uploads.gate.run { [store, pushes, lane = api.uploads.landings] in
                // It may wait for the bundle before it to land (one landing at a time).
                try await RangeService.blocking(waits: true) {
                    let importer = try ChunkImporter(store: store, lane: lane)
                    do {
                        // The files of this repository's pushes in progress are hashed as their chunks
                        // arrive; a manifest frame staged here starts a push's hasher (the client sends
                        // it first), so the commit need not decode every chunk again.
                        for hasher in pushes.of(repo: repo) { importer.feed(hasher) }
                        importer.hashManifests = { id, manifest in
                            // Bounded by what one upload may hold: past it, the commit hashes (section 19.4).
                            let hasher = FileHasher(store: store, revision: manifest, maxBytes: maxBytes)
                            pushes.start(repo: repo, manifest: id, hasher: hasher)
                            return hasher
                        }
                        let report = try importer.receive(bundle: body, landInBackground: true) { model, revision in
                            model == repo || (HubRepos.isObjectModel(model) && revision == objectRevision)
                        }
                        return (importer, report)
                    } catch {
                        importer.close()
                        throw error
                    }
                }
            }
            try await RangeService.blocking(waits: true) {
                defer { importer.close() }
                try importer.finishLanding()
            }
            return HubAPI.json(["frames": report.frames, "stored": report.stored, "restored": report.restored,
                                "present": report.present, "bytesWritten": report.bytesWritten])
        } catch {
            return TransferService.errorAnswer(error)
        }
    }

    /// POST commit/{rev} `{"manifest": "<96 hex>"}`: commits `repo@rev` from its staged manifest
    /// frame once every file rebuilds to its SHA-256; 201 with a receipt, 409 if it exists.
    ///
    /// With `object` (objects/{oid}/commit), `revision` is the oid and the revision committed is the
    /// repository's copy of that object, `lfs/<oid>@r…` (14.1): its manifest must name it and list
    /// exactly one file, `object`, whose SHA-256 is the oid. 200 with no commit if the repository
    /// already holds the object (as its copy or as a file of a commit).
    func commit(repo: String, revision: String, object: Bool = false, body: [UInt8]) async -> Response {
        do {
            do { try Names.validateRevision(revision) } catch { throw HubFailure.bad("\(error)") }
            let model = object ? HubRepos.objectModel(revision) : repo
            let name = object ? HubRepos.objectRevision(repo: repo) : revision
            let sole = object ? Digest256(hex: revision).map { (path: LFSObjectStore.fileName, sha256: $0) } : nil
            guard let root = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
                  let text = root["manifest"] as? String, let manifest = ChunkID(hex: text) else {
                throw HubFailure.bad("expected {\"manifest\": \"<96 hex digits>\"}")
            }
            if object, try await RangeService.blocking({ [api] in try api.repos.locateObject(repo: repo, oid: revision) }) != nil {
                pushes.take(repo: repo, manifest: manifest)?.cancel()
                return HubAPI.json(["model": model, "revision": name, "files": 1, "alreadyHeld": true])
            }
            let hashed = pushes.take(repo: repo, manifest: manifest)
            let record: RevisionRecord
            do {
                record = try await api.uploads.gate.run { [store, lane = api.uploads.landings] in
                    try await RangeService.blocking {
                        let importer = try ChunkImporter(store: store, lane: lane)
                        defer { importer.close() }
                        return try importer.commit(manifest: manifest, model: model, revision: name, soleFile: sole, hashed: hashed)
                    }
                }
            } catch StoreError.invalidRequest(let reason) {
                // Refused (a chunk missing, say): the client sends what is missing and commits again,
                // and the hasher, which the commit only read, goes on with those bundles.
                if let hashed { pushes.start(repo: repo, manifest: manifest, hasher: hashed) }
                throw StoreError.invalidRequest(reason)
            } catch {
                hashed?.cancel()
                throw error
            }
            let files = try await RangeService.blocking { [store] in try store.catalog.files(revision: record) }
            var response = HubAPI.json(["model": record.model, "revision": record.revision, "commit": HubRepos.commitID(record),
                                        "files": files.count, "bytes": files.reduce(0) { $0 + $1.size }], status: .created)
            if !object { response.headers[.location] = "/\(record.model)/resolve/\(record.revision)/" }
            return response
        } catch {
            return TransferService.errorAnswer(error)
        }
    }
}

/// The chunk ids of the last few revisions whose frames were asked for: a pull asks for one bundle
/// at a time, and each must be checked against the revision's closure. A revision is immutable, so
/// its manifest chunk id keys its closure for good (a removed one no longer resolves first).
final class ClosureCache: @unchecked Sendable {
    /// A revision's closure ids, the owners of its foreign chunks (`ClosureOwners`), its manifest JSON.
    struct Entry: Sendable {
        let ids: Set<ChunkID>
        let owners: [String]?
        let manifest: [UInt8]
    }

    // Safe: `entries` is only touched inside `lock`.
    private let lock = NSLock()
    private var entries: [(key: ChunkID, entry: Entry)] = []
    static let capacity = 8

    func entry(of record: RevisionRecord, _ make: () throws -> Entry) throws -> Entry {
        if let hit = lock.withLock({ entries.first { $0.key == record.manifest }?.entry }) { return hit }
        let entry = try make()
        lock.withLock {
            entries.removeAll { $0.key == record.manifest }
            entries.append((record.manifest, entry))
            if entries.count > ClosureCache.capacity { entries.removeFirst() }
        }
        return entry
    }
}

/// The file hashers of pushes in progress (SPEC §19.4), by repository and manifest chunk: started
/// by a bundle that stages a revision's manifest frame, fed by that repository's later bundles,
/// taken by the commit of that manifest. A hasher holds hash states and chunk ids, and at most two
/// bundles' decoded chunks while it catches up. At most `capacity` are kept: the oldest is dropped
/// (an abandoned push), and its commit, if one comes, hashes every file itself.
///
/// A hasher dropped (the oldest past `capacity`, one replaced, or one whose files no bundle has
/// advanced for `idleLimit`: a push given up) is cancelled, so nothing goes on hashing for a
/// commit that will not come.
final class PushHashers: @unchecked Sendable {
    private struct Entry {
        let repo: String
        let manifest: ChunkID
        let hasher: FileHasher
    }

    // Safe: `entries` is only touched inside `lock`.
    private let lock = NSLock()
    private var entries: [Entry] = []
    static let capacity = 16
    static let idleLimit = Duration.seconds(900)

    func start(repo: String, manifest: ChunkID, hasher: FileHasher) {
        let dropped: [FileHasher] = lock.withLock {
            var dropped = expire()
            entries.removeAll { entry in
                let same = entry.repo == repo && entry.manifest == manifest && entry.hasher !== hasher
                if same { dropped.append(entry.hasher) }
                return same || entry.hasher === hasher
            }
            entries.append(Entry(repo: repo, manifest: manifest, hasher: hasher))
            if entries.count > PushHashers.capacity { dropped.append(entries.removeFirst().hasher) }
            return dropped
        }
        for hasher in dropped { hasher.cancel() }
    }

    func of(repo: String) -> [FileHasher] {
        let (dropped, found): ([FileHasher], [FileHasher]) = lock.withLock {
            let dropped = expire()
            return (dropped, entries.filter { $0.repo == repo }.map(\.hasher))
        }
        for hasher in dropped { hasher.cancel() }
        return found
    }

    func take(repo: String, manifest: ChunkID) -> FileHasher? {
        lock.withLock {
            guard let i = entries.firstIndex(where: { $0.repo == repo && $0.manifest == manifest }) else { return nil }
            return entries.remove(at: i).hasher
        }
    }

    /// Removes the entries whose hashers have not advanced for `idleLimit` (called under `lock`);
    /// the caller cancels them.
    private func expire() -> [FileHasher] {
        let cutoff = ContinuousClock.now - PushHashers.idleLimit
        let old = entries.filter { $0.hasher.lastProgress < cutoff }.map(\.hasher)
        if !old.isEmpty { entries.removeAll { $0.hasher.lastProgress < cutoff } }
        return old
    }
}
