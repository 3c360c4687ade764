// The git-lfs agent's remote mode (SPEC §15.5): objects live on a `tpstore serve`, reached through
// the transfer protocol, and pass through a local cache store. Composed here, at the edge, so that
// `TenPakLFS` (in the core product) links no HTTP client: the agent only sees `LFSObjectBackend`.
import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakLFS
import TenPakModelStore

/// LFS objects of one hub repository on a server, through a cache store.
///
/// - download: the cache's copy if it has one (exported and checked against the oid), else the
///   revision holding the object is pulled into the cache (only the frames the cache lacks: a
///   fine-tune whose base was fetched before costs about its delta) and the object is exported.
/// - upload: the object is put into the cache as the repository's copy (`lfs/<oid>@r…`, so it is
///   delta-coded against a base found there), then pushed: only the frames the server lacks, then
///   `objects/{oid}/commit`. Nothing is committed on the server unless every frame arrived.
public struct RemoteLFSObjects: LFSObjectBackend {
    public let client: TransferClient
    /// The server (`http://host:port`) and the repository (`org/name`) the objects belong to.
    public let server: String
    public let repo: String
    public let cache: ModelStore

    var objects: LFSObjectStore { LFSObjectStore(models: cache, revision: LFSObjectStore.repositoryRevision(repo)) }

    public init(remote: String, token: String?, cache: ModelStore) throws {
        (server, repo) = try RemoteLFSObjects.parse(remote: remote)
        client = try TransferClient(url: server, token: token)
        self.cache = cache
    }

    /// Splits a repository URL, `http://host:port/org/name` (the hub's page of the repository; a
    /// trailing `/`, `.git` or `.git/info/lfs` is dropped, so the `lfs.url` of 14 works too), into
    /// the server and the repository name. `StoreError.invalidRequest` if it names no repository.
    public static func parse(remote url: String) throws -> (server: String, repo: String) {
        var text = url
        for suffix in ["/", "/info/lfs", "/", ".git"] where text.hasSuffix(suffix) { text.removeLast(suffix.count) }
        guard let parsed = URLComponents(string: text), parsed.scheme == "http" || parsed.scheme == "https",
              let host = parsed.host, !host.isEmpty, parsed.query == nil, parsed.fragment == nil,
              parsed.user == nil, parsed.password == nil
        else {
            throw StoreError.invalidRequest("\(Names.printable(url)) is not a repository URL like http://host:port/org/name (no user, token or query in it)")
        }
        let repo = parsed.path.split(separator: "/").joined(separator: "/")
        do { try Names.validateModel(repo) } catch {
            throw StoreError.invalidRequest("\(Names.printable(url)) does not name a repository (http://host:port/org/name): \(error)")
        }
        var server = parsed
        server.path = ""
        // Safe: a URL that parsed with a scheme and host and lost only its path still has a string.
        return (server.string ?? text, repo)
    }

    public func upload(oid: LFSObjectID, size: Int, path: String, progress: @escaping @Sendable (Int) -> Void) throws -> LFSObjectStore.UploadOutcome {
        let outcome = try objects.upload(oid: oid, size: size, path: path, progress: progress)
        do {
            _ = try client.pushObject(repo: repo, oid: oid.hex, from: cache)
        } catch {
            throw RemoteLFSObjects.answer(error, oid: oid, doing: "upload to \(server)/\(repo)")
        }
        return outcome
    }

    public func download(oid: LFSObjectID, size: Int?, into directory: String, progress: @escaping @Sendable (Int) -> Void) throws -> String {
        do {
            let lock = try cache.chunks.lock(.shared)
            defer { withExtendedLifetime(lock) {} }
            if let file = try objects.storedObject(oid) {
                return try LFSObjectStore.export(file, of: cache, oid: oid, size: size, into: directory, progress: progress)
            }
        }
        let pulled: (summary: TransferSummary, path: String)
        do {
            pulled = try client.pullObject(repo: repo, oid: oid.hex, into: cache)
        } catch {
            throw RemoteLFSObjects.answer(error, oid: oid, doing: "download from \(server)/\(repo)")
        }
        let lock = try cache.chunks.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        let record = try cache.catalog.resolve(model: pulled.summary.model, revision: pulled.summary.revision)
        guard let file = try cache.catalog.files(revision: record).first(where: { $0.path == pulled.path }) else {
            throw LFSProtocolError(.storeFailure, "download \(oid): \(pulled.path) is not in the cache's \(record.model)@\(record.revision) just pulled (a tpstore bug)", oid: oid.hex)
        }
        return try LFSObjectStore.export(file, of: cache, oid: oid, size: size, into: directory, progress: progress)
    }

    /// A transfer's failure as the agent answers it: the HTTP status where the server gave one.
    static func answer(_ error: Error, oid: LFSObjectID, doing: String) -> LFSProtocolError {
        switch error {
        case let e as LFSProtocolError:
            return e
        case let TransferError.refused(status, _, _):
            let code: LFSErrorCode
            switch status {
            case 401: code = .unauthorized
            case 403: code = .forbidden
            case 404: code = .notFound
            default: code = .remoteFailure
            }
            return LFSProtocolError(code, "\(doing): \(error)", oid: oid.hex)
        case is TransferError:
            return LFSProtocolError(.remoteFailure, "\(doing): \(error)", oid: oid.hex)
        case StoreError.notFound:
            return LFSProtocolError(.notFound, "\(doing): the repository does not hold object \(oid) (\(error))", oid: oid.hex)
        default:
            return LFSProtocolError(.storeFailure, "\(doing): \(error)", oid: oid.hex)
        }
    }
}
