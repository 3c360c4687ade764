// `tpstore pull` and `tpstore push`: the client half of the transfer protocol (SPEC §19), over
// async-http-client. Kept out of the core product `TenPak` (which links no HTTP client): the
// protocol's data structures and checks (`TransferManifest`, `FrameSender`, `ChunkImporter`) are
// the model store's; this target only moves their bytes.
import AsyncHTTPClient
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TenPakChunkStore
import TenPakFormat
import TenPakLFS
import TenPakModelStore

/// Why a transfer failed on the network side (store errors are `StoreError`).
public enum TransferError: Error, CustomStringConvertible {
    /// The server answered with an error status; `message` is its text.
    case refused(status: Int, message: String, what: String)
    /// The server could not be reached, or the connection broke before the answer was complete.
    case connection(what: String, reason: String)
    /// The server's answer is not what the protocol says (bad JSON, a bundle that does not parse, frames not asked for).
    case protocolViolation(what: String, reason: String)
    /// The server does not have a route of the protocol (an older `tpstore serve`): `feature` names it.
    case unsupported(what: String, feature: String)

    public var description: String {
        switch self {
        case let .refused(status, message, what):
            let hint: String
            switch status {
            case 401: hint = " (a token is needed: --token or TPSTORE_TOKEN)"
            case 403: hint = " (the token may not write there)"
            default: hint = ""
            }
            return "\(what): HTTP \(status): \(message.trimmingCharacters(in: .whitespacesAndNewlines))\(hint)"
        case let .connection(what, reason):
            return "\(what): \(reason); nothing half-done was kept: run the same command again, it resumes where it stopped"
        case let .protocolViolation(what, reason):
            return "\(what): the server's answer breaks the transfer protocol: \(reason); nothing of it was stored"
        case let .unsupported(what, feature):
            return "\(what): the server does not speak \(feature) (an older tpstore serve): upgrade it"
        }
    }
}

/// What a pull or push did (the summary line and `--json`).
public struct TransferSummary: Codable, Sendable {
    public var direction: String
    public var model: String
    public var revision: String
    public var files = 0
    /// Sum of the revision's file sizes.
    public var logicalBytes = 0
    /// Bytes of request and response bodies on the wire (both directions).
    public var bytesMoved = 0
    /// Chunks the revision needs, and of those the ones the receiving side already had.
    public var chunks = 0
    public var chunksPresent = 0
    public var framesMoved = 0
    public var seconds = 0.0
    /// The receiving side had the revision already (same manifest): nothing was moved.
    public var alreadyThere = false
}

/// A transfer server (`tpstore serve`) at `baseURL`, with an optional bearer token.
public final class TransferClient: @unchecked Sendable {
    // Safe: `http` is used through its thread-safe API; `moved` only inside `lock`.
    private let http: HTTPClient
    private let base: String
    private let token: String?
    private let lock = NSLock()
    private var moved = 0
    /// Frame bytes per bundle asked for or sent, at most: large enough to amortize a round trip,
    /// small enough that one lost bundle costs little and that the bundles in flight and their
    /// decoded bytes stay small (fresh memory is paid in page faults). `TPSTORE_TRANSFER_BUNDLE_MIB`
    /// (1–64) overrides it. The first bundle is `firstBundleBytes` (or less), the next ones double
    /// up to this, so the receiver starts decoding and hashing early (`TransferManifest.batches`).
    public static let defaultBundleBytes = 8 << 20
    public static let firstBundleBytes = 1 << 20
    /// Bundles asked for ahead of the one being checked and staged: they hide a round trip and the
    /// server's read while the client decodes.
    static let fetchesAhead = 2
    /// Bundles a push has on the wire at once (the server checks them one at a time).
    static let sendsAhead = 3
    let bundleBytes: Int
    static let deadline: TimeAmount = .seconds(600)

    public init(url: String, token: String?) throws {
        var trimmed = url
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let parsed = URL(string: trimmed), parsed.scheme == "http" || parsed.scheme == "https", parsed.host?.isEmpty == false else {
            throw StoreError.invalidRequest("\(Names.printable(url)) is not a server URL like http://host:port")
        }
        base = trimmed
        let mib = ProcessInfo.processInfo.environment["TPSTORE_TRANSFER_BUNDLE_MIB"].flatMap { Int($0) }
        bundleBytes = mib.map { min(max($0, 1), FrameSender.maxBundleBytes >> 20) << 20 } ?? TransferClient.defaultBundleBytes
        self.token = token?.trimmingCharacters(in: .whitespacesAndNewlines)
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(300))
        // A refused connection fails the request at once, as curl and git do: by default the pool
        // retried it with backoff until the 10 s connect limit, so a wrong port or a server that is
        // down cost 10 s before the error. A transfer interrupted so resumes by being run again.
        configuration.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    deinit {
        try? http.syncShutdown()
    }

    /// Bytes of bodies sent and received so far.
    public var bytesMoved: Int { lock.withLock { moved } }

    static func path(_ repo: String, _ action: String, _ revision: String? = nil) -> String {
        let escape = { (s: String) in s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? s }
        var path = "/api/tenpak/v1/" + repo.split(separator: "/").map { escape(String($0)) }.joined(separator: "/") + "/" + action
        if let revision { path += "/" + escape(revision) }
        return path
    }

    /// `…/{repo}/objects/{oid}/{step}` (section 19.3).
    static func objectPath(_ repo: String, _ oid: String, _ step: String) -> String {
        path(repo, "objects") + "/" + oid + "/" + step
    }

    /// One request; the body of a 2xx answer (at most `limit` bytes), or a typed error. `errorCode`
    /// is the answer's `X-Error-Code` (what a 404 was: `RepoNotFound`, `EntryNotFound`, …).
    func request(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json",
                 limit: Int = 64 << 20, accept: Set<Int> = [200, 201]) throws -> (status: Int, body: [UInt8], errorCode: String?) {
        let what = "\(method.rawValue) \(base)\(path)"
        var headers = HTTPHeaders()
        if let token, !token.isEmpty { headers.add(name: "Authorization", value: "Bearer \(token)") }
        if body != nil { headers.add(name: "Content-Type", value: contentType) }
        let request: HTTPClient.Request
        do {
            request = try HTTPClient.Request(url: base + path, method: method, headers: headers, body: body.map { .bytes($0) })
        } catch {
            throw StoreError.invalidRequest("\(what): \(error)")
        }
        let response: BodyCollector.Response
        do {
            // Safe: never called on an event-loop thread (the CLI's threads and Dispatch's).
            response = try http.execute(request: request, delegate: BodyCollector(limit: limit),
                                        deadline: .now() + TransferClient.deadline).wait()
        } catch let error as BodyCollector.TooLarge {
            throw TransferError.protocolViolation(what: what, reason: "the answer is larger than \(error.limit) bytes")
        } catch {
            throw TransferError.connection(what: what, reason: TransferClient.reason(error))
        }
        let bytes = response.body
        lock.withLock { moved += bytes.count + (body?.count ?? 0) }
        guard accept.contains(response.status) else {
            throw TransferError.refused(status: response.status, message: String(decoding: bytes.prefix(500), as: UTF8.self), what: what)
        }
        return (response.status, bytes, response.headers.first(name: "X-Error-Code"))
    }

    func json(_ bytes: [UInt8], what: String) throws -> [String: Any] {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
            throw TransferError.protocolViolation(what: what, reason: "not a JSON object")
        }
        return object
    }

    static func idsBody(_ ids: [ChunkID]) -> [UInt8] {
        Array("{\"ids\":[\(ids.map { "\"\($0.hex)\"" }.joined(separator: ","))]}".utf8)
    }

    /// The server's transfer manifest of `model@revision` (nil revision: `main`); nil if the
    /// server has no such revision (404) and `absentIsNil`.
    func manifest(model: String, revision: String?, absentIsNil: Bool = false) throws -> TransferManifest? {
        let path = TransferClient.path(model, "manifest", revision ?? "main")
        let answer = try request(.GET, path, accept: absentIsNil ? [200, 404] : [200])
        if answer.status == 404 { return nil }
        let manifest: TransferManifest
        do {
            manifest = try TransferManifest.decode(answer.body)
        } catch {
            throw TransferError.protocolViolation(what: "GET \(base)\(path)", reason: "\(error)")
        }
        // A revision asked for by name must come back under that name (`main` and commit ids name others).
        let byName = revision.map { $0 != "main" && !($0.utf8.count == 40 && $0.utf8.allSatisfy { (0x30 ... 0x39).contains($0) || (0x61 ... 0x66).contains($0) }) } ?? false
        guard manifest.model == model, !byName || manifest.revision == revision else {
            throw TransferError.protocolViolation(what: "GET \(base)\(path)", reason: "it describes \(manifest.model)@\(manifest.revision)")
        }
        return manifest
    }

    /// The transfer manifest of the revision that holds LFS object `oid` for `repo` (the
    /// repository's copy `lfs/<oid>@r…`, or a commit of it); nil if the repository does not hold it.
    func objectManifest(repo: String, oid: String) throws -> TransferManifest? {
        let path = TransferClient.objectPath(repo, oid, "manifest")
        let what = "GET \(base)\(path)"
        let answer = try request(.GET, path, accept: [200, 404])
        if answer.status == 404 {
            switch answer.errorCode {
            case "EntryNotFound": return nil
            case "RepoNotFound", "RevisionNotFound":
                throw TransferError.refused(status: 404, message: String(decoding: answer.body.prefix(500), as: UTF8.self), what: what)
            default: throw TransferError.unsupported(what: what, feature: "the LFS object routes of transfer protocol 1 (objects/{oid}/…)")
            }
        }
        let manifest: TransferManifest
        do {
            manifest = try TransferManifest.decode(answer.body)
        } catch {
            throw TransferError.protocolViolation(what: what, reason: "\(error)")
        }
        guard manifest.model == repo || manifest.model == "lfs/" + oid, manifest.files.contains(where: { $0.sha256 == oid }) else {
            throw TransferError.protocolViolation(what: what, reason: "it describes \(manifest.model)@\(manifest.revision), which has no file of SHA-256 \(oid)")
        }
        return manifest
    }

    // MARK: pull

    /// Pulls `model@revision` (nil: `main`) into `store`: only the frames the store lacks, each
    /// checked and staged as it arrives, then the revision committed once every file rebuilds to
    /// its SHA-256. Re-running after an interruption moves only what had not arrived.
    public func pull(model: String, revision: String?, into store: ModelStore, progress: ((Int, Int) -> Void)? = nil) throws -> TransferSummary {
        let started = DispatchTime.now()
        try Names.validateModel(model)
        if let revision { try Names.validateRevision(revision) }
        // Without absentIsNil a missing manifest throws, so this guard never fails.
        guard let manifest = try self.manifest(model: model, revision: revision) else { throw StoreError.notFound("\(model)@\(revision ?? "main")") }
        return try pull(manifest, framesPath: TransferClient.path(model, "frames", manifest.revision), into: store, started: started, progress: progress)
    }

    /// Pulls the revision that holds LFS object `oid` for repository `repo` into `store` (the remote
    /// git-lfs agent's cache), as `pull` does, and returns the path of the object's file in it. A
    /// repository's own copy of the object (`lfs/<oid>@r…`, 14.1) is one file; a commit holding it
    /// comes whole. `StoreError.notFound` if the repository does not hold the object.
    public func pullObject(repo: String, oid: String, into store: ModelStore,
                           progress: ((Int, Int) -> Void)? = nil) throws -> (summary: TransferSummary, path: String) {
        let started = DispatchTime.now()
        try Names.validateModel(repo)
        guard let manifest = try objectManifest(repo: repo, oid: oid) else {
            throw StoreError.notFound(.file(model: repo, revision: "LFS", path: oid))
        }
        // `objectManifest` checked that a file has this SHA-256.
        guard let file = manifest.files.first(where: { $0.sha256 == oid }) else { throw StoreError.invalidRequest("object \(oid)") }
        let summary = try pull(manifest, framesPath: TransferClient.objectPath(repo, oid, "frames"), into: store, started: started, progress: progress)
        return (summary, file.path)
    }

    /// Moves the frames of `manifest` that `store` lacks (asked for at `framesPath`), then commits.
    private func pull(_ manifest: TransferManifest, framesPath: String, into store: ModelStore, started: DispatchTime,
                      progress: ((Int, Int) -> Void)?) throws -> TransferSummary {
        var summary = TransferSummary(direction: "pull", model: manifest.model, revision: manifest.revision)
        summary.files = manifest.files.count
        summary.logicalBytes = manifest.logicalBytes
        summary.chunks = manifest.chunks.count
        // `decode` checked that the manifest id is 96 hex digits.
        guard let manifestID = ChunkID(hex: manifest.manifest) else { throw StoreError.invalidRequest("manifest id") }
        let importer = try ChunkImporter(store: store)
        defer { importer.close() }
        if let existing = try? store.catalog.resolve(model: manifest.model, revision: manifest.revision) {
            guard existing.manifest == manifestID else { throw StoreError.revisionAlreadyExists(model: manifest.model, revision: manifest.revision) }
            summary.alreadyThere = true
            summary.chunksPresent = summary.chunks
            summary.bytesMoved = bytesMoved
            summary.seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            return summary
        }
        let missing = try importer.missing(manifest.chunkIDs)
        summary.chunksPresent = summary.chunks - missing.count
        importer.track(manifest)
        let batches = manifest.batches(of: missing, maxBytes: bundleBytes, firstBytes: TransferClient.firstBundleBytes)
        // The next bundles are fetched while the current one is checked and stored.
        var fetches: [Background<[UInt8]>] = []
        var launched = 0
        func fetchAhead() {
            while launched < batches.count, fetches.count < TransferClient.fetchesAhead {
                let batch = batches[launched]
                fetches.append(Background { [self] in
                    try request(.POST, framesPath, body: TransferClient.idsBody(batch), limit: FrameSender.maxBundleBody).body
                })
                launched += 1
            }
        }
        // On a failure the fetches still running are left to end on their own: they only download
        // (nothing of the store is read or written outside this loop), and waiting for one a stalled
        // server holds would delay the error by the read timeout.
        fetchAhead()
        var done = 0
        for batch in batches {
            // `fetchAhead` launched every batch up to `done + fetchesAhead`.
            guard !fetches.isEmpty else { break }
            let pending = fetches.removeFirst()
            fetchAhead()
            let bundle = try pending.value()
            do {
                // Lands (fsync, catalog commit) while the next bundle is checked.
                _ = try importer.receive(bundle: bundle, expected: Set(batch), landInBackground: true,
                                         acceptsManifest: { [model = manifest.model] m, _ in m == model })
            } catch StoreError.invalidRequest(let reason) {
                throw TransferError.protocolViolation(what: "POST \(base)\(framesPath)", reason: reason)
            }
            summary.framesMoved += batch.count
            done += 1
            progress?(done, batches.count)
        }
        try importer.commit(manifest: manifestID, model: manifest.model, revision: manifest.revision)
        summary.bytesMoved = bytesMoved
        summary.seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        return summary
    }

    // MARK: push

    /// Pushes `model@revision` (nil: the newest) from `store`: done at once if the server has that
    /// revision (refused if under another manifest); else asks which chunks the server lacks,
    /// sends those frames in bundles (each staged there as it arrives), then commits.
    public func push(model: String, revision: String?, from store: ModelStore, progress: ((Int, Int) -> Void)? = nil) throws -> TransferSummary {
        let started = DispatchTime.now()
        let lock = try store.chunks.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        let record = try store.catalog.resolve(model: model, revision: revision)
        let manifest = try TransferManifest.make(store: store, record: record)
        var summary = TransferSummary(direction: "push", model: record.model, revision: record.revision)
        // Whether the server has the revision, and which chunks it lacks, asked at once when one
        // `missing` request covers the revision: a round trip less before the first bundle (on a
        // WAN link, its latency). Its answer is used only if the push goes on. A larger revision
        // asks after the check, so that pushing one the server has costs one request, not many.
        let ids = manifest.chunkIDs
        let early = ids.count <= FrameSender.maxFrames ? Background { [self] in try missing(ids, repo: record.model) } : nil
        // On a failed check, a `missing` still running is left to end on its own: it only talks
        // to the server (no store is read or written), as a failed pull's fetches do.
        if let remote = try self.manifest(model: record.model, revision: record.revision, absentIsNil: true), remote.revision == record.revision {
            guard remote.manifest == record.manifest.hex else { throw StoreError.revisionAlreadyExists(model: record.model, revision: record.revision) }
            // Waited for, so that its bytes are in the summary's count.
            _ = try? early?.value()
            return finishedAlreadyThere(&summary, manifest, started)
        }
        return try send(manifest, of: record, from: store, repo: record.model, summary: summary, lacking: early,
                        commitPath: TransferClient.path(record.model, "commit", record.revision), started: started, progress: progress)
    }

    /// Pushes LFS object `oid` to repository `repo` from `store` (the remote git-lfs agent's cache,
    /// which holds it as the repository's copy, `lfs/<oid>@r…`, 14.1): only the frames the server
    /// lacks, then `objects/{oid}/commit`. Done at once if the repository holds the object already.
    public func pushObject(repo: String, oid: String, from store: ModelStore, progress: ((Int, Int) -> Void)? = nil) throws -> TransferSummary {
        let started = DispatchTime.now()
        let lock = try store.chunks.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        let record = try store.catalog.resolve(model: LFSObjectStore.modelPrefix + oid, revision: LFSObjectStore.repositoryRevision(repo))
        let manifest = try TransferManifest.make(store: store, record: record)
        var summary = TransferSummary(direction: "push", model: record.model, revision: record.revision)
        // The object's presence first, on its own: an object the repository holds (a git-lfs
        // re-push, the common case here) is done with nothing sent.
        if try objectManifest(repo: repo, oid: oid) != nil { return finishedAlreadyThere(&summary, manifest, started) }
        return try send(manifest, of: record, from: store, repo: repo, summary: summary,
                        commitPath: TransferClient.objectPath(repo, oid, "commit"),
                        // 200: the repository held the object by the time of the commit; 409: another
                        // push committed its copy (`lfs/<oid>@r…` of this repository) meanwhile.
                        // Either way the repository now holds these bytes.
                        commitAnswers: [200, 201, 409], started: started, progress: progress)
    }

    private func finishedAlreadyThere(_ summary: inout TransferSummary, _ manifest: TransferManifest, _ started: DispatchTime) -> TransferSummary {
        summary.files = manifest.files.count
        summary.logicalBytes = manifest.logicalBytes
        summary.chunks = manifest.chunks.count
        summary.alreadyThere = true
        summary.chunksPresent = summary.chunks
        summary.bytesMoved = bytesMoved
        summary.seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        return summary
    }

    /// `missing` (unless the caller asked already: `lacking`) and `chunks` through `repo` (write
    /// access), then the commit at `commitPath`; the caller holds `store`'s shared lock.
    private func send(_ manifest: TransferManifest, of record: RevisionRecord, from store: ModelStore, repo: String, summary: TransferSummary,
                      lacking: Background<[ChunkID]>? = nil, commitPath: String, commitAnswers: Set<Int> = [201], started: DispatchTime,
                      progress: ((Int, Int) -> Void)?) throws -> TransferSummary {
        var summary = summary
        summary.files = manifest.files.count
        summary.logicalBytes = manifest.logicalBytes
        summary.chunks = manifest.chunks.count
        let missing = try lacking?.value() ?? self.missing(manifest.chunkIDs, repo: repo)
        summary.chunksPresent = summary.chunks - missing.count
        summary.framesMoved += try sendFrames(missing, of: manifest, from: store, repo: repo, progress: progress)
        let commitBody = Array("{\"manifest\":\"\(record.manifest.hex)\"}".utf8)
        do {
            _ = try request(.POST, commitPath, body: commitBody, accept: commitAnswers)
        } catch let error as TransferError {
            // A chunk the server had, or was sent, may be gone by the commit (a gc collected it as
            // staged, or a bundle's answer was lost): ask once more which chunks it lacks, send
            // those and commit again (SPEC 19.6). Nothing lacking: the refusal stands.
            guard case .refused(400, _, _) = error else { throw error }
            let stillLacking = try self.missing(manifest.chunkIDs, repo: repo)
            guard !stillLacking.isEmpty else { throw error }
            summary.framesMoved += try sendFrames(stillLacking, of: manifest, from: store, repo: repo, progress: progress)
            _ = try request(.POST, commitPath, body: commitBody, accept: commitAnswers)
        }
        summary.bytesMoved = bytesMoved
        summary.seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        return summary
    }

    /// A request's failure in the words a user acts on: the system's text for an errno (NIO's own
    /// for a refused connection reads "connection reset (error set): …"), the client's time limits
    /// by name, anything else as it describes itself.
    static func reason(_ error: Error) -> String {
        // Linux: an IOError always carries an errno (other domains are Windows'), so reading it is safe.
        if let io = error as? IOError { return "\(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode))" }
        // A host given by name is connected to through NIO's resolver, which wraps the failures.
        if let failed = error as? NIOConnectionError {
            if let dns = failed.dnsAError ?? failed.dnsAAAAError { return "cannot resolve \(failed.host): \(reason(dns))" }
            if let last = failed.connectionErrors.last { return reason(last.error) }
        }
        switch error as? HTTPClientError {
        case .connectTimeout?: return "no connection within the time limit"
        case .readTimeout?: return "the server sent nothing within the time limit"
        case .deadlineExceeded?: return "no answer within \(TransferClient.deadline.nanoseconds / 1_000_000_000) s"
        case .remoteConnectionClosed?: return "the server closed the connection before its answer"
        default: return "\(error)"
        }
    }

    /// Of `ids`, those the server lacks (`POST missing` through `repo`, 16,384 ids a request).
    private func missing(_ ids: [ChunkID], repo: String) throws -> [ChunkID] {
        let missingPath = TransferClient.path(repo, "missing")
        var missing: [ChunkID] = []
        for start in stride(from: 0, to: ids.count, by: FrameSender.maxFrames) {
            let asked = Array(ids[start ..< min(start + FrameSender.maxFrames, ids.count)])
            let answer = try json(try request(.POST, missingPath, body: TransferClient.idsBody(asked)).body, what: "POST \(base)\(missingPath)")
            let askedSet = Set(asked)
            guard let list = answer["missing"] as? [String] else {
                throw TransferError.protocolViolation(what: "POST \(base)\(missingPath)", reason: "no \"missing\" list")
            }
            for text in list {
                guard let id = ChunkID(hex: text), askedSet.contains(id) else {
                    throw TransferError.protocolViolation(what: "POST \(base)\(missingPath)", reason: "it names a chunk that was not asked about")
                }
                missing.append(id)
            }
        }
        return missing
    }

    /// Sends the frames of `ids` in bundles (`POST chunks` through `repo`), the number of frames
    /// sent. The next bundle is read from the packs while the current ones are on the wire, and up
    /// to `sendsAhead` bundles are on the wire at once, so one is uploaded while the server checks
    /// the one before. A bundle with a frame delta-coded against a frame of a bundle still in flight
    /// waits for it (the server takes a base only from its store or the same bundle, 19.4); one
    /// refused for want of an upload slot (503) is sent again once the bundle before it is answered.
    private func sendFrames(_ ids: [ChunkID], of manifest: TransferManifest, from store: ModelStore, repo: String,
                            progress: ((Int, Int) -> Void)?) throws -> Int {
        let sender = FrameSender(store: store)
        let batches = manifest.batches(of: ids, maxBytes: bundleBytes, firstBytes: TransferClient.firstBundleBytes)
        let chunksPath = TransferClient.path(repo, "chunks")
        var baseOf: [ChunkID: ChunkID] = [:]
        for c in manifest.chunks { if let id = ChunkID(hex: c.id), let base = c.base.flatMap({ ChunkID(hex: $0) }) { baseOf[id] = base } }
        func read(_ i: Int) -> Background<[UInt8]> {
            let batch = batches[i]
            return Background { try sender.bundle(batch) }
        }
        var next = batches.isEmpty ? nil : read(0)
        var inFlight: [(ids: Set<ChunkID>, request: Background<Void>)] = []
        // On a failure, the pack read and the uploads still running finish before the caller
        // releases the store's lock or reports the push failed: none lands after that.
        defer {
            _ = try? next?.value()
            for flight in inFlight { _ = try? flight.request.value() }
        }
        var sent = 0, done = 0
        func answered() throws {
            let first = inFlight.removeFirst()
            try first.request.value()
            sent += first.ids.count
            done += 1
            progress?(done, batches.count)
        }
        for (i, batch) in batches.enumerated() {
            guard let pending = next else { break }
            let bundle = try pending.value()
            next = i + 1 < batches.count ? read(i + 1) : nil
            if batch.contains(where: { id in baseOf[id].map { base in inFlight.contains { $0.ids.contains(base) } } ?? false }) {
                while !inFlight.isEmpty { try answered() }
            }
            while inFlight.count >= TransferClient.sendsAhead { try answered() }
            let before = inFlight.last?.request
            inFlight.append((Set(batch), Background { [self] in
                do {
                    _ = try request(.POST, chunksPath, body: bundle, contentType: "application/vnd.tenpak.bundle")
                } catch TransferError.refused(503, _, _) {
                    try before?.value()
                    _ = try request(.POST, chunksPath, body: bundle, contentType: "application/vnd.tenpak.bundle")
                }
            }))
        }
        while !inFlight.isEmpty { try answered() }
        return sent
    }
}


/// Collects an answer's body straight into one array, sized from `Content-Length` when the server
/// sends it: a 16 MiB bundle is copied once from the socket's buffers, where `ResponseAccumulator`
/// grows a `ByteBuffer` by doubling (copying it again at each step) and the caller then copies it
/// out into an array (SPEC 19.6: bundles are the bulk of a pull's bytes).
final class BodyCollector: HTTPClientResponseDelegate, @unchecked Sendable {
    // Safe: `status`, `headers` and `body` are touched only inside `lock` (AsyncHTTPClient calls
    // the delegate from its event loop, one call at a time; the lock makes that not matter).
    typealias Response = (status: Int, headers: HTTPHeaders, body: [UInt8])
    struct TooLarge: Error { let limit: Int }

    private let lock = NSLock()
    private let limit: Int
    private var status = 0
    private var headers = HTTPHeaders()
    private var body: [UInt8] = []

    init(limit: Int) { self.limit = limit }

    func didReceiveHead(task: HTTPClient.Task<Response>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        let announced = head.headers.first(name: "Content-Length").flatMap { Int($0) }
        if let announced, announced > limit { return task.eventLoop.makeFailedFuture(TooLarge(limit: limit)) }
        lock.withLock {
            status = Int(head.status.code)
            headers = head.headers
            // A declared length within the limit (checked above) sizes the array once.
            if let announced, announced > 0 { body.reserveCapacity(announced) }
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Response>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        let fits: Bool = lock.withLock {
            guard body.count + buffer.readableBytes <= limit else { return false }
            buffer.withUnsafeReadableBytes { body.append(contentsOf: $0) }
            return true
        }
        return fits ? task.eventLoop.makeSucceededVoidFuture() : task.eventLoop.makeFailedFuture(TooLarge(limit: limit))
    }

    func didFinishRequest(task: HTTPClient.Task<Response>) throws -> Response {
        lock.withLock { (status, headers, body) }
    }
}
