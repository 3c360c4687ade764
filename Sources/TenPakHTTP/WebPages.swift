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
//
// This file routes, answers (ETag, headers, errors as pages) and signs in; the pages are built in
// `WebModelPages.swift` and `WebDashboard.swift`, drawn by `WebTemplates` and `WebChart`.
import Crypto
import Foundation
import Hummingbird
import Mustache
import NIOCore
import TenPakModelStore
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
    /// Revisions of a model page whose figures are shown (the newest; older ones show `-`).
    static let revisionFiguresLimit = 20
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
        guard let split = HubServer.repoSegments(segments, before: { $0 == "tree" }), segments.count > split + 1 else { return nil }
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
