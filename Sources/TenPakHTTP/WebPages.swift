// Web pages for people on `tpstore serve` (SPEC section 14.8): the model list, a model page, a
// revision's files, the store dashboard and a sign-in form, rendered from `WebTemplates`.
//
// Nouns:
// - page: an HTML answer to a browser (`Accept: text/html`) at the hub's conventional URLs (`/`,
//   `/{repo}`, `/{repo}/tree/{rev}`), or at a URL no model can have (`/~/dashboard`, `/~/login`:
//   `~` is not a character of model names). Other clients keep the answers those URLs had.
// - principal: who the browser is, from `Authorization` (Bearer or Basic, as the API) or, on GET
//   and HEAD only, the `tpstore_token` cookie. Never on writes, so another site cannot make a
//   signed-in browser write (no cross-site request forgery through the cookie).
//
// The same rule as the API: a repository the principal may not read is absent (401 anonymous,
// 404 with a token), and lists only name what it may read. Figures come from the functions
// `tpstore show` and `tpstore stats` use (`TenPakModelStore/StoreFigures.swift`).
import Crypto
import Foundation
import Hummingbird
import Mustache
import NIOCore
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore
import TenPakOptimizer
import TenPakReader

/// What the dashboard's money figures are computed at (`--price-storage-gb-month`, `--price-egress-gb`).
public struct WebPrices: Sendable, Equatable {
    /// Dollars per GB (10⁹ bytes) stored for a month.
    public var storagePerGBMonth: Double
    /// Dollars per GB sent out.
    public var egressPerGB: Double

    public init(storagePerGBMonth: Double = 0.023, egressPerGB: Double = 0.09) {
        self.storagePerGBMonth = storagePerGBMonth
        self.egressPerGB = egressPerGB
    }
}

/// The pages of one server.
struct WebPages: Sendable {
    let reader: StoreReader
    let prices: WebPrices
    let cache = DashboardCache()
    var store: ModelStore { reader.store }

    static let cookieName = "tpstore_token"
    /// The model card (README.md) is shown up to this many bytes.
    static let cardLimit = 64 << 10
    /// Models listed at most on `/`.
    static let listLimit = 500
    /// Longest search accepted (a model name is at most 200 bytes).
    static let queryLimit = 200

    enum Page: Equatable {
        case models(query: String)
        case model(repo: String)
        case tree(repo: String, revision: String, directory: String)
        case dashboard
        case login
        case logout
    }

    /// True when a browser asks: `Accept` names `text/html` (curl and huggingface_hub send `*/*`).
    static func wantsHTML(_ accept: String?) -> Bool {
        guard let accept else { return false }
        return accept.split(separator: ",").contains { $0.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() == "text/html" }
    }

    /// The page a URL names, or nil when it is none (the request then takes its ordinary route).
    /// `/~/...` pages answer every client; the others only browsers, on GET and HEAD.
    static func route(_ request: Request) throws -> Page? {
        try route(path: request.uri.path, html: wantsHTML(request.headers[.accept]), read: request.method == .get || request.method == .head,
                  query: request.uri.queryParameters["q"].map(String.init))
    }

    /// `route(_:)` over the parts of a request it reads: its path, whether it asks for HTML,
    /// whether it is a GET or HEAD, and its `q` parameter.
    static func route(path: String, html: Bool, read: Bool, query: String?) throws -> Page? {
        var segments = try RangeService.segments(of: path)
        if segments.first == "~" {
            if segments == ["~", "dashboard"] { return .dashboard }
            if segments == ["~", "login"] { return .login }
            if segments == ["~", "logout"] { return .logout }
            return nil
        }
        guard html, read else { return nil }
        if segments == [""] {
            let query = query ?? ""
            guard query.utf8.count <= queryLimit else { throw HubFailure.bad("the search is longer than \(queryLimit) bytes") }
            return .models(query: query)
        }
        // `/org/model/` is `/org/model`.
        if segments.count > 1, segments.last == "" { segments.removeLast() }
        // `/metrics` and `/api/...` stay the server's own, whoever asks.
        guard let first = segments.first, !segments.contains(""), first != "api", segments != ["metrics"] else { return nil }
        if segments.count <= 2 {
            guard let repo = try? HubServer.validRepo(segments.joined(separator: "/")) else { return nil }
            return .model(repo: repo)
        }
        // As the API: a repository is two segments when the third is the route word.
        let split: Int
        if segments.count >= 4, segments[2] == "tree" { split = 2 } else if segments[1] == "tree" { split = 1 } else { return nil }
        guard let repo = try? HubServer.validRepo(segments[0 ..< split].joined(separator: "/")) else { return nil }
        let revision = segments[split + 1]
        let directory = segments[(split + 2)...].joined(separator: "/")
        if !directory.isEmpty { try HubAPI.validatePath(directory) }
        return .tree(repo: repo, revision: revision, directory: directory)
    }

    /// The token a browser sends as the `tpstore_token` cookie (percent-encoded, as the sign-in
    /// form sets it).
    static func cookieToken(_ request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == cookieName else { continue }
                let value = parts[1].trimmingCharacters(in: .whitespaces)
                return value.removingPercentEncoding ?? value
            }
        }
        return nil
    }

    // MARK: answers

    func respond(_ page: Page, request: Request, policy: AccessPolicy, principal: Principal, formBody: @escaping @Sendable () async throws -> [UInt8]) async -> Response {
        do {
            switch page {
            case .logout:
                // POST only: a link or an image of another site cannot sign the browser out.
                guard request.method == .post else {
                    throw HubFailure(status: .methodNotAllowed, description: "\(request.method.rawValue) is not allowed here (POST)")
                }
                var headers = HTTPFields()
                headers[.location] = "/"
                headers[.setCookie] = "\(WebPages.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
                headers[.cacheControl] = "no-store"
                return Response(status: .seeOther, headers: headers, body: ResponseBody())
            case .login:
                if request.method == .post { return try await signIn(request: request, policy: policy, body: formBody) }
                guard request.method == .get || request.method == .head else {
                    throw HubFailure(status: .methodNotAllowed, description: "\(request.method.rawValue) is not allowed here (GET, HEAD, POST)")
                }
                return answer(try render("login", LoginPage(chrome: chrome("Sign in", policy, principal))), request: request)
            default:
                guard request.method == .get || request.method == .head else {
                    throw HubFailure(status: .methodNotAllowed, description: "\(request.method.rawValue) is not allowed here (GET, HEAD)")
                }
            }
            let html = try await RangeService.blocking { [self] in try body(page, policy: policy, principal: principal) }
            return answer(html, request: request)
        } catch {
            var response = failure(error, request: request, policy: policy, principal: principal)
            if response.status == .methodNotAllowed {
                response.headers[.allow] = page == .logout ? "POST" : page == .login ? "GET, HEAD, POST" : "GET, HEAD"
            }
            return response
        }
    }

    private func body(_ page: Page, policy: AccessPolicy, principal: Principal) throws -> String {
        // As the API: a token no entry holds is refused everywhere, not taken for anonymous.
        if principal == .unknownToken { throw denied(principal, "") }
        switch page {
        case let .models(query): return try modelsPage(query: query, policy: policy, principal: principal)
        case let .model(repo):
            guard policy.canRead(principal, repo) else { throw denied(principal, repo) }
            return try modelPage(repo: repo, policy: policy, principal: principal)
        case let .tree(repo, revision, directory):
            guard policy.canRead(principal, repo) else { throw denied(principal, repo) }
            return try treePage(repo: repo, revision: revision, directory: directory, policy: policy, principal: principal)
        case .dashboard: return try dashboardPage(policy: policy, principal: principal)
        case .login, .logout: return try render("login", LoginPage(chrome: chrome("Sign in", policy, principal)))
        }
    }

    /// As the API answers an unreadable repository: as if it did not exist.
    private func denied(_ principal: Principal, _ repo: String) -> Error {
        switch principal {
        case .anonymous: return HubFailure(status: .unauthorized, description: "\(repo) is not a repository, or it needs a token: sign in")
        case .unknownToken: return HubFailure(status: .unauthorized, description: "this token is not valid: sign in again")
        case .token: return HubLookupError.repoNotFound(repo)
        }
    }

    /// POST /~/login with `token=…` (a form): a token some entry holds becomes the cookie; any
    /// other answer is 401 and sets nothing.
    private func signIn(request: Request, policy: AccessPolicy, body: @Sendable () async throws -> [UInt8]) async throws -> Response {
        let form = String(decoding: try await body(), as: UTF8.self)
        var token: String?
        for pair in form.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == "token" {
                token = String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
            }
        }
        guard let token = token?.trimmingCharacters(in: .whitespaces), !token.isEmpty else { throw HubFailure.bad("sign in: the form has no token") }
        let principal = policy.principal(token: token)
        guard case .token = principal else {
            throw HubFailure(status: .unauthorized, description: "this token is not valid")
        }
        var headers = HTTPFields()
        headers[.location] = "/"
        // Percent-encoded: a token may hold `;` or `,`, which would end the cookie.
        let value = WebPages.segment(token)
        headers[.setCookie] = "\(WebPages.cookieName)=\(value); Path=/; HttpOnly; SameSite=Strict"
        headers[.cacheControl] = "no-store"
        return Response(status: .seeOther, headers: headers, body: ResponseBody())
    }

    // MARK: pages

    struct Chrome {
        let title: String
        let who: String
        let signIn: Bool
        let signOut: Bool
    }

    func chrome(_ title: String, _ policy: AccessPolicy, _ principal: Principal) -> Chrome {
        // A server without tokens has no one to sign in as.
        let tokens = !policy.tokens.isEmpty
        switch principal {
        case .anonymous: return Chrome(title: title, who: tokens ? "anonymous" : "public server", signIn: tokens, signOut: false)
        case .unknownToken: return Chrome(title: title, who: "unknown token", signIn: tokens, signOut: true)
        case .token: return Chrome(title: title, who: "signed in as \(policy.name(of: principal))", signIn: false, signOut: true)
        }
    }

    /// Models whose name is an LFS object's (`lfs/<oid>`) are objects, not repositories: listed
    /// by the dashboard's totals, not as models.
    static func isObjectModel(_ name: String) -> Bool {
        name.hasPrefix("lfs/") && HubRepos.isObjectID(String(name.dropFirst(4)))
    }

    /// Readable repositories with their revisions (oldest first), newest repository first.
    func readableModels(_ policy: AccessPolicy, _ principal: Principal) throws -> [(name: String, revisions: [RevisionRecord])] {
        let grouped = Dictionary(grouping: try store.catalog.revisions(model: nil), by: \.model)
        return grouped.filter { !WebPages.isObjectModel($0.key) && policy.canRead(principal, $0.key) }
            .map { (name: $0.key, revisions: $0.value.sorted { $0.rowID < $1.rowID }) }
            .sorted { a, b in
                let x = a.revisions.last, y = b.revisions.last
                return (x?.createdAt ?? 0, x?.rowID ?? 0) > (y?.createdAt ?? 0, y?.rowID ?? 0)
            }
    }

    struct ModelsPage {
        struct Row { let name, href: String, revisions: Int, head, updated, size, base: String }
        let chrome: Chrome
        let query: String
        let models: [Row]
        let hasModels: Bool
        let count: String
        let empty: String
    }

    func modelsPage(query: String, policy: AccessPolicy, principal: Principal) throws -> String {
        let needle = query.trimmingCharacters(in: .whitespaces).lowercased()
        var rows: [ModelsPage.Row] = []
        let matching = try readableModels(policy, principal).filter { needle.isEmpty || $0.name.lowercased().contains(needle) }
        // One catalog query per row: a long list is cut, and the search narrows it.
        for (name, revisions) in matching.prefix(WebPages.listLimit) {
            guard let head = HubRepos.head(of: revisions) else { continue }
            let size = try store.catalog.files(revision: head).reduce(0) { $0 + $1.size }
            rows.append(.init(name: name, href: WebPages.href(repo: name), revisions: revisions.count, head: head.revision,
                              updated: WebPages.date(head.createdAt), size: FigureText.bytes(size),
                              base: baseText(head, policy, principal)))
        }
        let empty = needle.isEmpty ? (principal == .anonymous ? "No model is readable without a token: sign in." : "No model is readable with this token.")
            : "No readable model's name contains “\(query)”."
        return try render("models", ModelsPage(chrome: chrome(needle.isEmpty ? "Models" : "Models matching \(query)", policy, principal), query: query,
                                               models: rows, hasModels: !rows.isEmpty,
                                               count: matching.count > rows.count ? "the newest \(rows.count) of \(matching.count) models (search to find the others)"
                                                   : rows.count == 1 ? "1 model" : "\(rows.count) models", empty: empty))
    }

    /// The base as a list shows it: its name when readable, else that there is one.
    func baseText(_ r: RevisionRecord, _ policy: AccessPolicy, _ principal: Principal) -> String {
        if r.baseModel.isEmpty { return "-" }
        return policy.canRead(principal, r.baseModel) ? "\(r.baseModel)@\(r.baseRevision)" : "(not readable)"
    }

    struct ModelPage {
        struct Base { let baseName, baseHref, baseReason: String }
        struct Link { let arrow, linkName, linkHref: String }
        struct File { let path, href, size, stored: String, shared, delta, fresh: Int }
        struct Revision { let revision, href, commitID, putAt, revisionBase, revisionSize, revisionStored, revisionRatio: String }
        struct Card { let text: String, truncated: String? }
        let chrome: Chrome
        let name, head, commit, created, treeHref: String
        let size, sizeExact, stored, storedExact, ratio, saved: String
        let shared, delta, fresh: Int
        let base: Base?
        /// The model's head, its base, the base's base, …: what reading it decodes through.
        let chain: [Link]
        let chainEnd: String?
        let baseHidden: Bool
        let noBase: Bool
        let annotations: [AnnotationView]
        let files: [File]
        let revisions: [Revision]
        let card: Card?
    }

    func modelPage(repo: String, policy: AccessPolicy, principal: Principal) throws -> String {
        let repos = HubRepos(store: store)
        let all = try repos.revisions(repo)
        guard let head = HubRepos.head(of: all) else { throw HubLookupError.repoNotFound(repo) }
        let commit = HubRepos.commitID(head)
        // The figures `tpstore show NAME@REV --json` prints.
        let figures = try store.figures(of: head)
        var base: ModelPage.Base?
        var baseHidden = false
        if !head.baseModel.isEmpty {
            if policy.canRead(principal, head.baseModel) {
                base = .init(baseName: "\(head.baseModel)@\(head.baseRevision)",
                             baseHref: WebPages.href(repo: head.baseModel, tree: head.baseRevision), baseReason: head.baseReason)
            } else {
                baseHidden = true
            }
        }
        let chain = try baseChain(head, policy, principal)
        let files = figures.files.map { f in
            ModelPage.File(path: f.path, href: WebPages.href(repo: repo, resolve: commit, path: f.path), size: FigureText.bytes(f.size),
                           stored: FigureText.bytes(f.storedBytes), shared: f.sharedChunks, delta: f.deltaChunks, fresh: f.freshChunks)
        }
        // Every revision's `show` figures, from the dashboard's cache (computed once per set of revisions).
        let cached = try cache.figures(store: store, revisions: try store.catalog.revisions(model: nil)).perRevision
        let revisions = all.reversed().map { r in
            let f = cached[r.rowID]
            return ModelPage.Revision(revision: r.revision, href: WebPages.href(repo: repo, tree: r.revision), commitID: HubRepos.commitID(r),
                                      putAt: WebPages.date(r.createdAt), revisionBase: baseText(r, policy, principal),
                                      revisionSize: f.map { FigureText.bytes($0.size) } ?? "-", revisionStored: f.map { FigureText.bytes($0.stored) } ?? "-",
                                      revisionRatio: f.map { FigureText.ratio($0.stored, of: $0.size) } ?? "-")
        }
        let page = ModelPage(chrome: chrome(repo, policy, principal), name: repo, head: head.revision, commit: commit,
                             created: WebPages.date(head.createdAt), treeHref: WebPages.href(repo: repo, tree: head.revision),
                             size: FigureText.bytes(figures.size), sizeExact: "\(figures.size)",
                             stored: FigureText.bytes(figures.storedBytes), storedExact: "\(figures.storedBytes)",
                             ratio: FigureText.ratio(figures.storedBytes, of: figures.size),
                             saved: FigureText.percent(figures.size - figures.storedBytes, of: figures.size),
                             shared: figures.sharedChunks, delta: figures.deltaChunks, fresh: figures.freshChunks,
                             base: base, chain: chain.links, chainEnd: chain.end, baseHidden: baseHidden, noBase: head.baseModel.isEmpty,
                             annotations: try annotations(head), files: files, revisions: revisions,
                             card: try modelCard(head))
        return try render("model", page)
    }

    struct AnnotationView {
        struct Method { let name, bits, gpuBytes, error, inBar, gpu, monthly: String }
        struct Recommended { let method, monthly, reason: String, saving: String?, baseline: String }
        let version: String
        let stale: Bool
        let current: String
        let createdAt: String
        let errorMeasure: String
        let recommendation: Recommended?
        let methods: [Method]
        let notes: [String]
    }

    /// The optimizer's annotations of a revision, newest first, as `tpstore annotations` shows them.
    func annotations(_ record: RevisionRecord) throws -> [AnnotationView] {
        try store.catalog.annotations(revision: record).reversed().compactMap { stored in
            // A result this build cannot read (another optimizer's shape) is left out, not a 500.
            guard let a = try? Annotation.decode(stored.result) else { return nil }
            let methods = a.methods.map { m in
                AnnotationView.Method(name: m.method, bits: String(format: "%.3f", m.bitsPerWeight), gpuBytes: FigureText.bytes(m.gpuBytes),
                                      error: String(format: "%.5f%@", m.error, m.errorIsProxy ? "*" : ""), inBar: m.withinErrorBar ? "yes" : "no",
                                      gpu: m.gpu.map { "\($0.count)× \($0.gpu)" } ?? "none fits",
                                      monthly: m.gpu.map { WebPages.dollars($0.dollarsPerMonth, decimals: 0) } ?? "-")
            }
            let recommended = a.recommendation.map { r in
                AnnotationView.Recommended(method: r.method, monthly: WebPages.dollars(r.dollarsPerMonth, decimals: 0), reason: r.reason,
                                           saving: r.savingPerMonth.map { String(format: "%@ (%.0f%%)", WebPages.dollars($0, decimals: 0), r.savingPercent ?? 0) },
                                           baseline: r.baselineDollarsPerMonth.map { WebPages.dollars($0, decimals: 0) } ?? "-")
            }
            return AnnotationView(version: stored.optimizerVersion, stale: stored.optimizerVersion != Optimizer.version, current: Optimizer.version,
                                  createdAt: a.createdAt, errorMeasure: a.errorMeasure + (a.methods.contains(where: \.errorIsProxy) ? "; * marks a weight-only proxy" : ""),
                                  recommendation: recommended, methods: methods, notes: a.notes)
        }
    }

    /// The revision's README.md as text, up to `cardLimit` bytes (cut at a character boundary).
    /// Bases of bases as far as the caller may read them (at most 16 steps; a base revision
    /// removed since keeps its chunks, so the chain says so and stops).
    func baseChain(_ head: RevisionRecord, _ policy: AccessPolicy, _ principal: Principal) throws -> (links: [ModelPage.Link], end: String?) {
        var links: [ModelPage.Link] = []
        var record = head
        var seen: Set<String> = []
        while !record.baseModel.isEmpty, links.count < 16 {
            let name = "\(record.baseModel)@\(record.baseRevision)"
            guard policy.canRead(principal, record.baseModel) else { return (links, (links.isEmpty ? "" : " → ") + "a base this token cannot read") }
            guard seen.insert(name).inserted else { break }
            let next: RevisionRecord
            do {
                next = try store.catalog.resolve(model: record.baseModel, revision: record.baseRevision)
            } catch StoreError.notFound {
                return (links, (links.isEmpty ? "" : " → ") + "\(name) (removed; its chunks stay while they are needed)")
            }
            links.append(.init(arrow: links.isEmpty ? "" : " → ", linkName: name, linkHref: WebPages.href(repo: next.model, tree: next.revision)))
            record = next
        }
        return (links, nil)
    }

    func modelCard(_ record: RevisionRecord) throws -> ModelPage.Card? {
        guard let file = try store.catalog.files(revision: record).first(where: { $0.path == "README.md" }) else { return nil }
        let reader = try self.reader.open(model: record.model, revision: record.revision, path: file.path)
        let bytes = try reader.read(0 ..< min(file.size, WebPages.cardLimit))
        let text = String(decoding: bytes, as: UTF8.self)
        return ModelPage.Card(text: text, truncated: file.size > WebPages.cardLimit ? FigureText.bytes(WebPages.cardLimit) : nil)
    }

    struct TreePage {
        struct File { let path, href, size, stored, sha256: String }
        let chrome: Chrome
        let name, modelHref, revision, commit: String
        let directory: String?
        let count: Int
        let size: String
        let files: [File]
    }

    func treePage(repo: String, revision: String, directory: String, policy: AccessPolicy, principal: Principal) throws -> String {
        let record = try HubRepos(store: store).resolve(repo, revision)
        let commit = HubRepos.commitID(record)
        let figures = try store.figures(of: record)
        let shown = figures.files.filter { directory.isEmpty || $0.path.hasPrefix(directory + "/") }
        if shown.isEmpty { throw HubLookupError.entryNotFound(repo: repo, commit: commit, path: directory) }
        let files = shown.map { f in
            TreePage.File(path: f.path, href: WebPages.href(repo: repo, resolve: commit, path: f.path), size: FigureText.bytes(f.size),
                          stored: FigureText.bytes(f.storedBytes), sha256: f.sha256)
        }
        return try render("tree", TreePage(chrome: chrome("\(repo) at \(record.revision)", policy, principal), name: repo,
                                           modelHref: WebPages.href(repo: repo), revision: record.revision, commit: commit,
                                           directory: directory.isEmpty ? nil : directory, count: files.count,
                                           size: FigureText.bytes(shown.reduce(0) { $0 + $1.size }), files: files))
    }

    // MARK: dashboard

    struct DashboardPage {
        struct Totals {
            let logical, logicalExact: String, files, revisions, models: Int
            let chunkBytes, chunkBytesExact: String, chunks, deltaChunks: Int
            let packBytes, packBytesExact: String, packs: Int
            let overall, dedup, compression, saved, storageWorth, egressWorth, storagePrice, egressPrice: String
        }
        struct Saving { let name, href: String, revisions: Int, logical, stored, saved, savedPercent, storageWorth, egressWorth: String }
        let chrome: Chrome
        let totals: Totals?
        let chart: WebChart?
        let savings: [Saving]
        let storagePrice, egressPrice: String
    }

    func dashboardPage(policy: AccessPolicy, principal: Principal) throws -> String {
        let revisions = try store.catalog.revisions(model: nil)
        let figures = try cache.figures(store: store, revisions: revisions)
        // Store-wide figures describe every model, so only a principal that may read every model
        // sees them; the others see the models they may read.
        let everything = Set(revisions.map(\.model)).allSatisfy { policy.canRead(principal, $0) }
        var totals: DashboardPage.Totals?
        if everything {
            // The figures `tpstore stats --json` prints.
            let s = try store.statistics()
            let saved = s.logicalBytes - s.packBytes
            totals = .init(logical: FigureText.bytes(s.logicalBytes), logicalExact: "\(s.logicalBytes)", files: s.files, revisions: s.revisions,
                           models: s.models, chunkBytes: FigureText.bytes(s.storedChunkBytes), chunkBytesExact: "\(s.storedChunkBytes)",
                           chunks: s.chunks, deltaChunks: s.deltaChunks, packBytes: FigureText.bytes(s.packBytes), packBytesExact: "\(s.packBytes)",
                           packs: s.packs, overall: String(format: "%.2f", s.overallRatio), dedup: String(format: "%.2f", s.dedupRatio),
                           compression: String(format: "%.2f", s.compressionRatio), saved: FigureText.bytes(saved),
                           storageWorth: money(saved, prices.storagePerGBMonth), egressWorth: money(saved, prices.egressPerGB),
                           storagePrice: WebPages.dollars(prices.storagePerGBMonth, decimals: 4), egressPrice: WebPages.dollars(prices.egressPerGB, decimals: 4))
        }
        let visible = figures.timeline.filter { policy.canRead(principal, $0.record.model) }
        var savings: [DashboardPage.Saving] = []
        for (name, records) in Dictionary(grouping: revisions.filter { !WebPages.isObjectModel($0.model) && policy.canRead(principal, $0.model) }, by: \.model) {
            let logical = records.reduce(0) { $0 + (figures.perRevision[$1.rowID]?.size ?? 0) }
            let stored = records.reduce(0) { $0 + (figures.perRevision[$1.rowID]?.stored ?? 0) }
            savings.append(.init(name: name, href: WebPages.href(repo: name), revisions: records.count, logical: FigureText.bytes(logical),
                                 stored: FigureText.bytes(stored), saved: FigureText.bytes(logical - stored),
                                 savedPercent: FigureText.percent(logical - stored, of: logical),
                                 storageWorth: money(logical - stored, prices.storagePerGBMonth), egressWorth: money(logical - stored, prices.egressPerGB)))
        }
        let order = Dictionary(grouping: revisions, by: \.model).mapValues { rs in
            rs.reduce(0) { $0 + (figures.perRevision[$1.rowID].map { $0.size - $0.stored } ?? 0) }
        }
        savings.sort { (order[$0.name] ?? 0, $1.name) > (order[$1.name] ?? 0, $0.name) }
        return try render("dashboard", DashboardPage(chrome: chrome("Dashboard", policy, principal), totals: totals,
                                                     chart: WebChart(visible), savings: savings,
                                                     storagePrice: WebPages.dollars(prices.storagePerGBMonth, decimals: 4),
                                                     egressPrice: WebPages.dollars(prices.egressPerGB, decimals: 4)))
    }

    /// What `bytes` are worth at `price` dollars per GB (10⁹ bytes).
    func money(_ bytes: Int, _ price: Double) -> String {
        let value = Double(bytes) / 1e9 * price
        // A small store saves fractions of a cent: say so rather than print a bare $0.00.
        if value != 0, abs(value) < 0.005 { return value > 0 ? "< $0.01" : "> -$0.01" }
        return WebPages.dollars(value, decimals: 2)
    }

    static func dollars(_ value: Double, decimals: Int) -> String {
        // Trailing zeros of a price go (0.0230 → 0.023), two decimals stay for amounts.
        var text = String(format: "%.\(decimals)f", value)
        if decimals > 2 {
            while text.hasSuffix("0"), let dot = text.firstIndex(of: "."), text.distance(from: dot, to: text.endIndex) > 3 { text.removeLast() }
        }
        return (value < 0 ? "-$" : "$") + (value < 0 ? String(text.dropFirst()) : text)
    }

    // MARK: rendering

    func render(_ template: String, _ object: Any) throws -> String {
        guard let html = WebTemplates.library.render(object, withTemplate: template) else {
            throw HubFailure(status: .internalServerError, description: "the page template \(template) did not parse (a bug: report it)")
        }
        return html
    }

    /// 200 with the page, or 304 when the browser holds it (`If-None-Match` names its ETag).
    func answer(_ html: String, request: Request, status: HTTPResponse.Status = .ok) -> Response {
        let bytes = Array(html.utf8)
        // The ETag is a hash of the page as rendered for this principal: it changes with the
        // catalog and with who asks (Vary, private).
        let tag = "\"" + SHA256.hash(data: bytes).prefix(16).map { String(format: "%02x", $0) }.joined() + "\""
        var headers = WebPages.headers()
        headers[.eTag] = tag
        if status == .ok, WebPages.matches(request.headers[values: .ifNoneMatch], tag) {
            return Response(status: .notModified, headers: headers, body: ResponseBody())
        }
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.contentLength] = "\(bytes.count)"
        return Response(status: status, headers: headers,
                        body: request.method == .head ? ResponseBody() : ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func headers() -> HTTPFields {
        var headers = HTTPFields()
        headers[.cacheControl] = "private, no-cache"
        headers[.vary] = "Accept, Authorization, Cookie"
        // Defence in depth behind the escaping: no script runs, no frame embeds the page.
        headers[.contentSecurityPolicy] = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        headers[.xContentTypeOptions] = "nosniff"
        headers[.init("Referrer-Policy")!] = "same-origin"
        return headers
    }

    /// `If-None-Match: "a", W/"b"` or `*` against our (strong) tag; weak comparison, as RFC 9110
    /// asks for If-None-Match.
    static func matches(_ values: [String], _ tag: String) -> Bool {
        for value in values {
            for item in value.split(separator: ",") {
                var candidate = item.trimmingCharacters(in: .whitespaces)
                if candidate == "*" { return true }
                if candidate.hasPrefix("W/") { candidate.removeFirst(2) }
                if candidate == tag { return true }
            }
        }
        return false
    }

    /// An error as a page, with the status and headers the API would give.
    func failure(_ error: Error, request: Request, policy: AccessPolicy, principal: Principal) -> Response {
        let plain = HubServer.error(for: error)
        let message: String
        switch error {
        case let failure as HubFailure: message = failure.description
        case let lookup as HubLookupError: message = lookup.description
        case let failure as RangeService.Failure: message = failure.message
        default: message = plain.status.code >= 500 ? "the store could not answer: \(plain.status.reasonPhrase)" : "\(error)"
        }
        let html = (try? render("error", ErrorPage(chrome: chrome("\(plain.status.code)", policy, principal),
                                                    status: "\(plain.status.code) \(plain.status.reasonPhrase)", message: message))) ?? ""
        var response = answer(html, request: request, status: plain.status)
        for field in plain.headers where field.name != .contentType && field.name != .contentLength && field.name != .wwwAuthenticate {
            response.headers.append(field)
        }
        if plain.status == .unauthorized {
            // A browser asks for a user name and password; the password is the token.
            response.headers[.wwwAuthenticate] = "Basic realm=\"tpstore\", charset=\"UTF-8\""
        }
        return response
    }

    struct ErrorPage { let chrome: Chrome, status: String, message: String }
    struct LoginPage { let chrome: Chrome }

    // MARK: URLs and dates

    /// Percent-encodes one path segment (names and paths are the uploader's).
    static func segment(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0) ..< Unicode.Scalar(128)))
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    static func href(repo: String) -> String {
        "/" + repo.split(separator: "/").map { segment(String($0)) }.joined(separator: "/")
    }

    static func href(repo: String, tree revision: String) -> String {
        href(repo: repo) + "/tree/" + segment(revision)
    }

    static func href(repo: String, resolve commit: String, path: String) -> String {
        href(repo: repo) + "/resolve/" + segment(commit) + "/" + path.split(separator: "/").map { segment(String($0)) }.joined(separator: "/")
    }

    static func date(_ seconds: Int64) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withFullDate, .withTime, .withColonSeparatorInTime, .withSpaceBetweenDateAndTime]
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds))) + " UTC"
    }
}

/// The dashboard's per-revision figures, kept across requests. A revision's `show` figures and its
/// timeline point depend only on the revisions before it (lower row ids), so revisions put since
/// the last answer extend it; a removal, a gc or a repair (a new gc generation: a rebuilt catalog
/// numbers chunk rows anew) starts over.
final class DashboardCache: @unchecked Sendable {
    struct Figures: Sendable {
        let timeline: [PutPoint]
        /// `show`'s size and stored bytes of every revision, by row id.
        let perRevision: [Int64: (size: Int, stored: Int)]
    }

    private struct State {
        /// Each revision as row id, name and manifest: row ids alone could repeat after
        /// `fsck --repair` rebuilds the catalog in another order.
        var keys: Set<String>
        var generation: Int64
        var lastRowID: Int64
        var figures: Figures
        /// Chunk row ids the timeline's revisions reference.
        var seen: Set<Int64>
    }

    // Safe: `state` is read and replaced only under `lock`.
    private let lock = NSLock()
    private var state: State?

    static func key(_ r: RevisionRecord) -> String { "\(r.rowID) \(r.model)@\(r.revision) \(r.manifest)" }

    func figures(store: ModelStore, revisions: [RevisionRecord]) throws -> Figures {
        let keys = Set(revisions.map(DashboardCache.key))
        let generation = try store.catalog.gcGeneration()
        let known = lock.withLock { state.flatMap { $0.generation == generation ? $0 : nil } }
        if let known, known.keys == keys { return known.figures }
        // Extend when every known revision is still there and every new one came after them.
        var base = State(keys: [], generation: generation, lastRowID: 0, figures: Figures(timeline: [], perRevision: [:]), seen: [])
        if let known, known.keys.isSubset(of: keys) {
            let added = revisions.filter { !known.keys.contains(DashboardCache.key($0)) }
            if added.allSatisfy({ $0.rowID > known.lastRowID }) { base = known }
        }
        let added = revisions.filter { !base.keys.contains(DashboardCache.key($0)) }
        var perRevision = base.figures.perRevision
        for record in added {
            let f = try store.figures(of: record)
            perRevision[record.rowID] = (f.size, f.storedBytes)
        }
        var seen = base.seen
        let timeline = base.figures.timeline + (try store.putPoints(added, seen: &seen))
        let next = State(keys: keys, generation: generation, lastRowID: revisions.map(\.rowID).max() ?? 0,
                         figures: Figures(timeline: timeline, perRevision: perRevision), seen: seen)
        lock.withLock { state = next }
        return next.figures
    }
}
