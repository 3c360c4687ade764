// `tpstore serve`: one Hummingbird server routing each request to the file service
// (`RangeService`), the hub API (`HubAPI`), the PUT uploads (`UploadService`) or /metrics, after
// deciding who the caller is and what it may do (`AccessControl`).
//
// Access (SPEC section 14): a repository the caller may not read answers exactly as an absent one
// would (404 `RepoNotFound` with a token, 401 without one, whether or not it exists), so neither
// bytes nor metadata nor existence leak. A caller that may read but not write gets 403 for writes.
// Every request is logged once (method, path without query, status, bytes, time, token name;
// never the token or a signed URL's signature) and counted in /metrics.
import Dispatch
import Foundation
import Hummingbird
import Logging
import NIOCore
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore
import TenPakReader

/// The request context of `tpstore serve`: Hummingbird's, plus the connection (closed after an
/// answer that leaves a body unread, and by the body watchdog).
public struct ServerContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Options of the whole server.
public struct ServerOptions: Sendable {
    /// Who may read and write.
    public var access: AccessControl
    /// Spool, limits and slots of uploads (PUT, hub commits, LFS objects); nil: no writes at all.
    public var uploads: UploadOptions?
    /// Seconds an idle connection (between requests, or with a head half sent) stays open.
    public var connectionIdleTimeout: Int64
    /// What the dashboard's savings are worth.
    public var prices: WebPrices

    public init(access: AccessControl, uploads: UploadOptions?, connectionIdleTimeout: Int64 = 60, prices: WebPrices = WebPrices()) {
        self.access = access
        self.uploads = uploads
        self.connectionIdleTimeout = connectionIdleTimeout
        self.prices = prices
    }
}

/// Routes every request of `tpstore serve`.
public struct HubServer: HTTPResponder {
    public typealias Context = ServerContext
    let reader: StoreReader
    let ranges: RangeService
    let uploads: UploadService?
    let hub: HubAPI?
    /// Xet uploads (section 14.9), on a server that takes writes.
    let xet: XetService?
    /// The read half of the hub API, on every server (on one without writes its upload service is idle).
    let api: HubAPI
    let access: AccessControl
    let metrics: ServerMetrics
    let log: Logger
    /// Pages for browsers (section 14.8).
    let web: WebPages
    /// Revision closures the transfer routes checked frame requests against lately.
    let closures = ClosureCache()
    /// Frame reads of the transfer routes, two at a time (section 19.7).
    let frameReads = WorkGate(width: 2)
    /// File hashers of the pushes in progress (section 19.4).
    let pushes = PushHashers()

    init(reader: StoreReader, options: ServerOptions, xorbs: XorbStore?, metrics: ServerMetrics, log: Logger) {
        self.reader = reader
        self.metrics = metrics
        let ranges = RangeService(reader: reader, pieceSize: 4 << 20, metrics: metrics)
        self.ranges = ranges
        let uploads = options.uploads.map { UploadService(store: reader.store, options: $0) }
        self.uploads = uploads
        let hub = uploads.map { HubAPI(reader: reader, ranges: ranges, uploads: $0) }
        self.hub = hub
        xet = hub.flatMap { hub in xorbs.map { XetService(hub: hub, signer: XetSigner(), xorbs: $0) } }
        api = hub ?? HubAPI(reader: reader, ranges: ranges, uploads: UploadService(store: reader.store, options: UploadOptions(maxConcurrent: 1)))
        access = options.access
        self.log = log
        web = WebPages(reader: reader, prices: options.prices)
    }

    /// What a URL names.
    enum Route {
        case resolve(RangeService.Target)
        case upload(model: String)
        case modelInfo(repo: String, revision: String?)
        case tree(repo: String, revision: String, path: String)
        case preupload(repo: String, revision: String)
        case commit(repo: String, revision: String)
        case createRepo
        case validateYAML
        case lfsBatch(repo: String)
        case lfsObject(repo: String, oid: String, size: Int)
        case lfsVerify(repo: String)
        case lfsLocksVerify(repo: String)
        case xetToken(repo: String)
        case xetCAS(XetRoute)
        case metrics
        case transfer(repo: String, action: TransferService.Action, revision: String?, step: TransferService.ObjectStep?)

        var kind: String {
            switch self {
            case .transfer: return "transfer"
            case .resolve: return "resolve"
            case .upload: return "upload"
            case .modelInfo, .tree, .preupload, .commit, .createRepo, .validateYAML: return "api"
            case .lfsBatch, .lfsObject, .lfsVerify, .lfsLocksVerify: return "lfs"
            case .xetToken, .xetCAS: return "xet"
            case .metrics: return "metrics"
            }
        }
    }

    /// Where a repository ends in URL segments followed by a route word, as the hub's routes have
    /// it: two segments (`org/name`) when the third is a route word, else one when the second is,
    /// else nil. Every face (API, transfer, pages) splits the same way.
    static func repoSegments(_ s: [String], before isRouteWord: (String) -> Bool) -> Int? {
        if s.count >= 3, isRouteWord(s[2]) { return 2 }
        if s.count >= 2, isRouteWord(s[1]) { return 1 }
        return nil
    }

    static func validRepo(_ repo: String) throws -> String {
        do {
            try Names.validateModel(repo)
        } catch {
            throw HubFailure.bad("invalid repository name \(Names.printable(repo)): \(error)")
        }
        return repo
    }

    static func route(_ method: HTTPRequest.Method, _ path: String) throws -> Route {
        let segments = try RangeService.segments(of: path)
        if segments == ["metrics"] { return .metrics }
        if segments == ["api", "repos", "create"] { return .createRepo }
        if segments == ["api", "validate-yaml"] { return .validateYAML }
        if segments.count >= 2, Array(segments[0 ..< 2]) == XetService.casPrefix {
            return .xetCAS(XetRoute(Array(segments[2...])))
        }
        if segments.count > 3, Array(segments[0 ..< 3]) == TransferService.prefix {
            let (repo, action, revision, step) = try TransferService.route(Array(segments[3...]))
            return .transfer(repo: repo, action: action, revision: revision, step: step)
        }
        if segments.count >= 3, segments[0] == "api", segments[1] == "models" {
            let s = Array(segments[2...])
            let actions: Set<String> = ["revision", "tree", "preupload", "commit", "xet-write-token"]
            let split = repoSegments(s, before: actions.contains) ?? s.count
            let repo = try validRepo(s[0 ..< split].joined(separator: "/"))
            let rest = Array(s[split...])
            guard let action = rest.first else { return .modelInfo(repo: repo, revision: nil) }
            guard rest.count >= 2, !rest[1].isEmpty else { throw HubFailure(status: .notFound, description: "no such API route") }
            let revision = rest[1]
            switch action {
            case "revision" where rest.count == 2: return .modelInfo(repo: repo, revision: revision)
            case "tree":
                let inner = rest[2...].joined(separator: "/")
                if !inner.isEmpty { try HubAPI.validatePath(inner) }
                return .tree(repo: repo, revision: revision, path: inner)
            case "preupload" where rest.count == 2: return .preupload(repo: repo, revision: revision)
            case "commit" where rest.count == 2: return .commit(repo: repo, revision: revision)
            case "xet-write-token" where rest.count == 2: return .xetToken(repo: repo)
            default: throw HubFailure(status: .notFound, description: "no such API route")
            }
        }
        // /{repo}.git/info/lfs/...
        if let git = segments.firstIndex(where: { $0.hasSuffix(".git") }), git <= 1, segments.count > git + 3,
           segments[git + 1] == "info", segments[git + 2] == "lfs" {
            var parts = Array(segments[0 ... git])
            parts[git] = String(parts[git].dropLast(4))
            let repo = try validRepo(parts.joined(separator: "/"))
            let rest = Array(segments[(git + 3)...])
            if rest == ["objects", "batch"] { return .lfsBatch(repo: repo) }
            if rest == ["verify"] { return .lfsVerify(repo: repo) }
            if rest == ["locks", "verify"] { return .lfsLocksVerify(repo: repo) }
            if rest.count == 3, rest[0] == "objects", HubRepos.isObjectID(rest[1]), let size = Int(rest[2]), size >= 0 {
                return .lfsObject(repo: repo, oid: rest[1], size: size)
            }
            throw HubFailure(status: .notFound, description: "no such git-lfs route")
        }
        if method == .put {
            return .upload(model: try UploadService.Target(path: path).model)
        }
        return .resolve(try RangeService.Target(path: path))
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let clock = ContinuousClock()
        let started = clock.now
        let policy = access.policy
        // A browser's cookie counts on reads only: a page of another site can make a browser send
        // it with a POST, never make that POST write.
        let cookie = request.method == .get || request.method == .head ? WebPages.cookieToken(request) : nil
        let principal = policy.principal(token: AccessControl.token(from: request.headers[.authorization]) ?? cookie)
        var kind = "other"
        var response: Response
        do {
            if let page = try WebPages.route(request) {
                kind = "web"
                try await RangeService.blocking { [reader] in try reader.catchUp() }
                let limits = BodyLimits(maxBytes: 4 << 10, idleTimeout: .seconds(30), minimumRate: 0, grace: .seconds(10))
                let channel = context.channel
                response = await web.respond(page, request: request, policy: policy, principal: principal) {
                    try await BodyReader.collect(request.body, limits: limits, channel: channel)
                }
            } else {
                let route = try HubServer.route(request.method, request.uri.path)
                kind = route.kind
                response = try await answer(route, request: request, context: context, policy: policy, principal: principal)
            }
        } catch {
            response = HubServer.error(for: error)
        }
        let status = response.status.code
        let path = request.uri.path
        let method = request.method.rawValue
        var who = policy.name(of: principal)
        if principal == .unknownToken, kind == "xet", let xet, let given = AccessControl.token(from: request.headers[.authorization]),
           let holder = xet.signer.check(given, identity: { policy.identity(of: $0) })?.principal {
            who = policy.name(of: holder) + " (xet)"
        }
        let metrics = self.metrics
        let log = self.log
        let length = response.headers[.contentLength].flatMap { Int($0) } ?? 0
        let received = request.headers[.contentLength].flatMap { Int($0) } ?? 0
        // Logged when the response has been handed over (its body may still stream): one line per request.
        let duration = clock.now - started
        metrics.record(route: kind, status: status, bytesSent: request.method == .head ? 0 : length, bytesReceived: received, duration: duration)
        log.info("\(method) \(Names.printable(path)) \(status) \(length) \(duration.formatted(.units(allowed: [.milliseconds]))) \(who)")
        if kind == "xet", status == 400, let reason = response.headers[.init("X-Error-Message")!] {
            // A refused Xet upload: the client shows only the status, so the reason is logged here.
            log.notice("xet upload refused: \(reason)")
        }
        if response.status.code >= 400, request.method != .get, request.method != .head, received > 0 || request.headers[.transferEncoding] != nil {
            // A refused body may still be arriving: close the connection after the answer instead
            // of reading (and discarding) the rest of it.
            response.headers[.connection] = "close"
            response = HubServer.closingAfter(response, channel: context.channel)
        }
        return response
    }

    /// The answer, written, then the connection closed.
    static func closingAfter(_ response: Response, channel: any Channel) -> Response {
        var response = response
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            try await body.write(writer)
            channel.close(promise: nil)
        }
        return response
    }

    func denied(_ principal: Principal, repo: String, lfs: Bool = false) -> Error {
        switch principal {
        case .anonymous:
            return HubFailure(status: .unauthorized, description: "Repository Not Found for \(repo), or it needs a token: send Authorization: Bearer TOKEN", code: lfs ? nil : "RepoNotFound")
        case .unknownToken:
            return HubFailure(status: .unauthorized, description: "Invalid credentials in Authorization header")
        case .token:
            return HubLookupError.repoNotFound(repo)
        }
    }

    private func answer(_ route: Route, request: Request, context: Context, policy: AccessPolicy, principal: Principal) async throws -> Response {
        let method = request.method
        let endpoint = HubServer.endpoint(request)
        // Every route reads the catalog, some without going through `StoreReader.open`: a catalog
        // that `fsck --repair` swapped in since the last request is picked up first.
        try await RangeService.blocking { [reader] in try reader.catchUp() }
        func mayRead(_ repo: String) throws {
            guard policy.canRead(principal, repo) else { throw denied(principal, repo: repo) }
        }
        func mayWrite(_ repo: String) throws -> HubAPI {
            guard let hub else {
                throw HubFailure(status: .methodNotAllowed, description: "this server takes no uploads: start it with --auth FILE (tokens with write access) or --allow-uploads")
            }
            guard policy.canWrite(principal, repo) else {
                if principal == .unknownToken || !policy.canRead(principal, repo) { throw denied(principal, repo: repo) }
                if principal == .anonymous {
                    throw HubFailure(status: .unauthorized, description: "writing to \(repo) needs a token with write access: send Authorization: Bearer TOKEN")
                }
                throw HubFailure(status: .forbidden, description: "this token may read \(repo) but not write to it")
            }
            return hub
        }
        func only(_ methods: [HTTPRequest.Method]) throws {
            guard methods.contains(method) else {
                throw HubFailure(status: .methodNotAllowed, description: "\(method.rawValue) is not allowed here (\(methods.map(\.rawValue).joined(separator: ", ")))")
            }
        }
        let jsonLimits = BodyLimits(maxBytes: HubAPI.jsonLimit, idleTimeout: uploads?.options.idleTimeout ?? .seconds(30),
                                    minimumRate: 0, grace: .seconds(10))
        switch route {
        case .metrics:
            try only([.get])
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers,
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.exposition(reader: reader, uploadsInUse: uploads?.admitted.inUse ?? 0))))
        case let .resolve(target):
            guard method == .get || method == .head else {
                var response = RangeService.error(.methodNotAllowed, uploads == nil
                    ? "only GET and HEAD are supported (this server takes no uploads: start it with --auth FILE or --allow-uploads)"
                    : "only GET, HEAD and PUT are supported here")
                response.headers[.allow] = uploads == nil ? "GET, HEAD" : "GET, HEAD, PUT"
                return response
            }
            try mayRead(target.model)
            return await ranges.respond(to: request, target: target)
        case let .upload(model):
            guard let uploads else {
                var response = RangeService.error(.methodNotAllowed, "only GET and HEAD are supported (this server takes no uploads: start it with --auth FILE or --allow-uploads)")
                response.headers[.allow] = "GET, HEAD"
                return response
            }
            do {
                _ = try mayWrite(model)
            } catch let failure as HubFailure where failure.status == .unauthorized {
                var response = RangeService.error(.unauthorized, uploads.options.token != nil && principal == .anonymous ? "uploads need an Authorization: Bearer token" : failure.description)
                response.headers[.wwwAuthenticate] = "Bearer"
                return response
            }
            // A named base must be one the caller may read: its name in the answer (and its chunks
            // under the upload) would otherwise tell a writer about a repository hidden from them.
            if case let .explicit(base, _)? = try? UploadService.baseChoice(request.uri.queryParameters["base"].map(String.init)) {
                try mayRead(base)
            }
            return await uploads.respond(to: request, channel: context.channel)
        case let .modelInfo(repo, revision):
            try only([.get])
            try mayRead(repo)
            let blobs = request.uri.queryParameters["blobs"].map { ["true", "1", "True"].contains(String($0)) } ?? false
            return try await api.modelInfo(repo: repo, revision: revision, blobs: blobs, isPrivate: !policy.canRead(.anonymous, repo))
        case let .tree(repo, revision, path):
            try only([.get])
            try mayRead(repo)
            let recursive = request.uri.queryParameters["recursive"].map { ["true", "1", "True"].contains(String($0)) } ?? false
            return try await api.tree(repo: repo, revision: revision, path: path, recursive: recursive)
        case .createRepo:
            try only([.post])
            guard hub != nil else {
                throw HubFailure(status: .methodNotAllowed, description: "this server takes no uploads: start it with --auth FILE (tokens with write access) or --allow-uploads")
            }
            let body = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
            guard let root = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any], let name = root["name"] as? String else {
                throw HubFailure.bad("create: expected {\"name\": …, \"organization\": …}")
            }
            if let type = root["type"] as? String, type != "model" {
                throw HubFailure.bad("this server holds model repositories only, not \(Names.printable(type))")
            }
            let organization = root["organization"] as? String
            let repo = try HubServer.validRepo(organization.map { "\($0)/\(name)" } ?? name)
            let api = try mayWrite(repo)
            return try await api.createRepo(repo: repo, endpoint: endpoint)
        case .validateYAML:
            // upload_folder asks before it uploads a README.md; the model card is stored as it is
            // (its front matter only hints at a base, section 10), so there is nothing to refuse.
            try only([.post])
            _ = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
            return HubAPI.json(["errors": [Any](), "warnings": [Any]()])
        case let .preupload(repo, _):
            try only([.post])
            let api = try mayWrite(repo)
            let body = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
            _ = try await RangeService.blocking { [repos = api.repos] in try repos.revisions(repo) }
            return try await api.preupload(repo: repo, body: body)
        case let .commit(repo, revision):
            try only([.post])
            let api = try mayWrite(repo)
            var limits = jsonLimits
            limits.maxBytes = min(HubAPI.commitLimit, api.uploads.options.maxBytes)
            let body = try await BodyReader.collect(request.body, limits: limits, channel: context.channel)
            return try await api.commit(repo: repo, revision: revision, body: body, endpoint: endpoint)
        case let .transfer(repo, action, revision, step):
            let reader = TransferService.Reader(canRead: { policy.canRead(principal, $0) }, readsEverything: policy.readsEverything(principal))
            switch action {
            case .objects:
                guard let oid = revision, let step else { throw HubFailure(status: .notFound, description: "no such transfer route") }
                switch step {
                case .manifest, .frames:
                    try only([step == .manifest ? .get : .post])
                    try mayRead(repo)
                    let service = TransferService(api: api, closures: closures, frameReads: frameReads, pushes: pushes)
                    if step == .manifest { return await service.manifest(repo: repo, revision: oid, object: true, reader: reader) }
                    let body = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
                    return await service.frames(repo: repo, revision: oid, object: true, body: body, reader: reader)
                case .commit:
                    try only([.post])
                    // The small JSON body is read before the write check (below, `missing`).
                    let body = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
                    let service = TransferService(api: try mayWrite(repo), closures: closures, frameReads: frameReads, pushes: pushes)
                    return await service.commit(repo: repo, revision: oid, object: true, body: body)
                }
            case .manifest, .frames:
                try only([action == .manifest ? .get : .post])
                try mayRead(repo)
                guard let revision else { throw HubFailure(status: .notFound, description: "no such transfer route") }
                let service = TransferService(api: api, closures: closures, frameReads: frameReads, pushes: pushes)
                if action == .manifest { return await service.manifest(repo: repo, revision: revision, reader: reader) }
                let body = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
                return await service.frames(repo: repo, revision: revision, body: body, reader: reader)
            case .missing:
                try only([.post])
                // The small JSON body is read before the write check: a 403 answered while the
                // client still uploads reached it as a broken upload (AsyncHTTPClient's
                // bodyLengthMismatch), not as the 403. A bundle (`chunks`) is refused unread.
                let body = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
                let service = TransferService(api: try mayWrite(repo), closures: closures, frameReads: frameReads, pushes: pushes)
                return await service.missing(body: body)
            case .chunks:
                try only([.post])
                let hub = try mayWrite(repo)
                var limits = hub.uploads.options.limits
                limits.maxBytes = min(limits.maxBytes, TransferService.bundleLimit)
                let length = request.headers[.contentLength].flatMap { Int($0) }
                if let length, length > limits.maxBytes { throw BodyFailure.tooLarge(limit: limits.maxBytes) }
                let slot = try hub.uploads.admit()
                defer { slot.leave() }
                let body = try await BodyReader.collect(request.body, limits: limits, channel: context.channel, expectedBytes: length)
                return await TransferService(api: hub, closures: closures, frameReads: frameReads, pushes: pushes).chunks(repo: repo, body: body)
            case .commit:
                try only([.post])
                // The small JSON body is read before the write check (above, `missing`).
                let body = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
                let service = TransferService(api: try mayWrite(repo), closures: closures, frameReads: frameReads, pushes: pushes)
                guard let revision else { throw HubFailure(status: .notFound, description: "no such transfer route") }
                return await service.commit(repo: repo, revision: revision, body: body)
            }
        case let .lfsBatch(repo):
            try only([.post])
            guard policy.canRead(principal, repo) else { throw lfsDenied(principal, repo: repo) }
            let body = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
            return try await api.lfsBatch(repo: repo, body: body, mayWrite: hub != nil && policy.canWrite(principal, repo), endpoint: endpoint)
        case let .lfsObject(repo, oid, size):
            // Signed URLs: the batch API checked the caller when it handed them out.
            if method == .put {
                guard let hub else { throw HubFailure(status: .methodNotAllowed, description: "this server takes no uploads") }
                return await hub.lfsUpload(repo: repo, oid: oid, size: size, request: request, channel: context.channel)
            }
            try only([.get, .head])
            return await api.lfsDownload(repo: repo, oid: oid, size: size, request: request)
        case let .lfsLocksVerify(repo):
            // git-lfs asks before every push; this server has no locks, so none are anyone's.
            try only([.post])
            guard policy.canRead(principal, repo) else { throw lfsDenied(principal, repo: repo) }
            return HubAPI.json(["ours": [Any](), "theirs": [Any]()], contentType: HubAPI.lfsContentType)
        case let .xetToken(repo):
            try only([.get])
            // A write credential: minted for the token in the Authorization header only, never for
            // the browser cookie (which counts on GET), so a page of another site cannot have one made.
            guard AccessControl.token(from: request.headers[.authorization]) != nil || policy.canWrite(.anonymous, repo) else {
                throw HubFailure(status: .unauthorized, description: "a Xet write token needs a token with write access in the Authorization header (Authorization: Bearer TOKEN); the browser cookie does not count")
            }
            _ = try mayWrite(repo)
            guard let xet else {
                throw HubFailure(status: .methodNotAllowed, description: "this server takes no uploads")
            }
            return try await xet.writeToken(repo: repo, principal: principal, identity: policy.identity(of: principal), endpoint: endpoint)
        case let .xetCAS(route):
            guard let xet else { throw HubFailure(status: .methodNotAllowed, description: "this server takes no uploads") }
            // The Xet access token, not a hub token: it names one repository and who asked for it.
            guard let given = AccessControl.token(from: request.headers[.authorization]),
                  let (repo, holder) = xet.signer.check(given, identity: { policy.identity(of: $0) }) else {
                throw HubFailure(status: .unauthorized, description: "the CAS routes need a Xet access token from /api/models/{repo}/xet-write-token/{rev}: this one is missing, expired or altered")
            }
            guard policy.canWrite(holder, repo) else {
                throw HubFailure(status: .forbidden, description: "the token this Xet access token was made for may no longer write to \(repo)")
            }
            let owner = XorbStore.owner(policy.identity(of: holder))
            /// A POSTed xorb or shard of at most `maxBytes`, handled within an upload slot taken
            /// before its body is collected (no body is collected beyond the upload slots).
            func upload(maxBytes: Int, _ handle: ([UInt8]) async throws -> Response) async throws -> Response {
                try only([.post])
                var limits = xet.hub.uploads.options.limits
                limits.maxBytes = min(limits.maxBytes, maxBytes)
                if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limits.maxBytes { throw BodyFailure.tooLarge(limit: limits.maxBytes) }
                let slot = try xet.hub.uploads.admit()
                defer { slot.leave() }
                return try await handle(try await BodyReader.collect(request.body, limits: limits, channel: context.channel))
            }
            switch route {
            case .chunk:
                try only([.get])
                throw HubFailure(status: .notFound, description: "this server offers no global dedup")
            case let .xorb(hash):
                return try await upload(maxBytes: Xorb.maxBytes) { try await xet.uploadXorb(repo: repo, owner: owner, hash: hash, body: $0) }
            case .shard:
                return try await upload(maxBytes: XetShard.maxBytes) {
                    try await xet.uploadShard(repo: repo, owner: owner, body: $0, mayRead: { policy.canRead(holder, $0) })
                }
            case .unknown:
                throw HubFailure(status: .notFound, description: "no such CAS route on this server (it takes Xet uploads: v1 xorbs and shards)")
            }
        case let .lfsVerify(repo):
            try only([.post])
            guard let hub else { throw HubFailure(status: .methodNotAllowed, description: "this server takes no uploads") }
            let body = try await BodyReader.collect(request.body, limits: jsonLimits, channel: context.channel)
            return try await hub.lfsVerify(repo: repo, request: request, body: body)
        }
    }

    /// git-lfs asks for credentials only after a 401, so an anonymous caller gets one (with
    /// `LFS-Authenticate`); a token that may not read the repository gets 404, as if absent.
    func lfsDenied(_ principal: Principal, repo: String) -> Error {
        if case .token = principal { return HubFailure(status: .notFound, description: "Repository not found") }
        return HubFailure(status: .unauthorized, description: "credentials needed for \(repo)")
    }

    /// `http://HOST` as the client addressed this server (for hrefs and URLs in answers).
    static func endpoint(_ request: Request) -> String {
        let host = request.head.authority ?? "localhost"
        let safe = host.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "\"") }
        return "http://" + (safe ? host : "localhost")
    }

    static func error(for error: Error) -> Response {
        switch error {
        case let failure as HubFailure:
            var response = RangeService.error(failure.status, failure.description)
            if let code = failure.code { response.headers[.init("X-Error-Code")!] = code }
            response.headers[.init("X-Error-Message")!] = String(failure.description.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7F }.map(Character.init).prefix(200))
            if failure.status == .unauthorized {
                response.headers[.wwwAuthenticate] = "Bearer realm=\"tpstore\""
                response.headers[.init("LFS-Authenticate")!] = "Basic realm=\"tpstore\""
            }
            if failure.status == .methodNotAllowed { response.headers[.allow] = "GET, HEAD" }
            return response
        case is UploadSlotsFull, is BodyFailure:
            return UploadService.error(for: error)
        default:
            return RangeService.error(for: error)
        }
    }
}

/// The `tpstore serve` server: `HubServer` on one address until SIGINT or SIGTERM.
public enum RangeServer {
    /// Serves until SIGINT/SIGTERM (graceful: running responses finish). `onListening` gets the
    /// bound host and port (the real port when `port` is 0). With `uploads`, PUT stores revisions.
    public static func run(reader: StoreReader, uploads: UploadOptions? = nil, host: String, port: Int,
                           onListening: @escaping @Sendable (String, Int) -> Void) async throws {
        let access = AccessControl(.open(allowUploads: uploads != nil, uploadToken: uploads?.token))
        try await run(reader: reader, options: ServerOptions(access: access, uploads: uploads), host: host, port: port, onListening: onListening)
    }

    public static func run(reader: StoreReader, options: ServerOptions, host: String, port: Int,
                           logger: Logger = Logger(label: "tpstore.access"),
                           onListening: @escaping @Sendable (String, Int) -> Void) async throws {
        if let spool = options.uploads?.spoolDirectory {
            let removed = SpoolDirectory.cleanLeftovers(parent: spool)
            if removed > 0 { logger.notice("removed \(removed) spool director\(removed == 1 ? "y" : "ies") left by a server that stopped mid-upload") }
        }
        // Xet xorbs (SPEC 14.9): a private directory in the spool, or no start; half-written ones
        // and those past their retention go now.
        let xorbs = try options.uploads.map { try XorbStore(spool: $0.spoolDirectory, maxBytes: $0.xetSpaceBytes) }
        xorbs?.sweep()
        let metrics = ServerMetrics()
        let service = HubServer(reader: reader, options: options, xorbs: xorbs, metrics: metrics, log: logger)
        let app = Application(
            responder: service,
            server: .http1(configuration: .init(idleTimeout: .seconds(options.connectionIdleTimeout))),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "tpstore"),
            onServerRunning: { channel in
                onListening(host, channel.localAddress?.port ?? port)
            },
            logger: Logger(label: "tpstore.server")
        )
        try await app.runService()
    }
}
