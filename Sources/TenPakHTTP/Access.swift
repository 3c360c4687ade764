// Who may read and who may write which repository of `tpstore serve`.
//
// Nouns:
// - `AccessPolicy`: the parsed `--auth FILE` (or the policy implied by the older flags): tokens,
//   each with read and write globs over repository names, and what an anonymous caller may read.
// - `RepoGlob`: one pattern. `*` matches any run of characters but `/`, `**` any run at all,
//   `?` one character but `/`; everything else matches itself.
// - `Principal`: who a request is (anonymous, a known token, or a token no one issued).
// - `AccessControl`: the current policy, swapped whole when the file is re-read (SIGHUP).
//
// Tokens are compared as SHA-256 digests in constant time against every token in the file, so
// neither the position of a mismatch nor which entry matched shows in the timing; the token
// itself is never stored in a form that is logged (entries are named by their `name` or index).
import Crypto
import Foundation
import TenPakFormat

/// A glob over repository names (`org/*`, `public/**`, `*`).
public struct RepoGlob: Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    private let parts: [UInt8]

    public init(_ pattern: String) {
        self.pattern = pattern
        parts = Array(pattern.utf8)
    }

    public var description: String { pattern }

    public func matches(_ name: String) -> Bool {
        RepoGlob.match(parts[...], Array(name.utf8)[...])
    }

    private static func match(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
        guard let first = p.first else { return s.isEmpty }
        let slash = UInt8(ascii: "/")
        if first == UInt8(ascii: "*") {
            let doubled = p.dropFirst().first == UInt8(ascii: "*")
            let rest = doubled ? p.dropFirst(2) : p.dropFirst()
            var i = s.startIndex
            while true {
                if match(rest, s[i...]) { return true }
                guard i < s.endIndex, doubled || s[i] != slash else { return false }
                i += 1
            }
        }
        guard let c = s.first else { return false }
        if first == UInt8(ascii: "?") { return c != slash && match(p.dropFirst(), s.dropFirst()) }
        return first == c && match(p.dropFirst(), s.dropFirst())
    }
}

/// Why a token file was refused at start (or on SIGHUP, when the old policy stays).
public struct AccessPolicyError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// Who may do what. Write access implies read access to the same repositories.
public struct AccessPolicy: Sendable {
    public struct Token: Sendable {
        /// What the access log shows for requests made with it (never the token).
        public let name: String
        let digest: [UInt8]
        public let read: [RepoGlob]
        public let write: [RepoGlob]
    }

    public var tokens: [Token]
    public var anonymousRead: [RepoGlob]
    public var anonymousWrite: [RepoGlob]
    /// True when the policy came from `--auth`: the startup message and SPEC say which mode runs.
    public var fromFile: Bool

    public init(tokens: [Token] = [], anonymousRead: [RepoGlob] = [], anonymousWrite: [RepoGlob] = [], fromFile: Bool = false) {
        self.tokens = tokens
        self.anonymousRead = anonymousRead
        self.anonymousWrite = anonymousWrite
        self.fromFile = fromFile
    }

    /// Without `--auth`: everyone reads everything; with `--allow-uploads` everyone writes too, or
    /// only the bearer of `uploadToken` when one is given.
    public static func open(allowUploads: Bool, uploadToken: String?) -> AccessPolicy {
        let all = [RepoGlob("**")]
        guard allowUploads else { return AccessPolicy(anonymousRead: all) }
        if let uploadToken {
            return AccessPolicy(tokens: [Token(name: "upload-token", digest: AccessPolicy.digest(uploadToken), read: all, write: all)], anonymousRead: all)
        }
        return AccessPolicy(anonymousRead: all, anonymousWrite: all)
    }

    static func digest(_ token: String) -> [UInt8] { Array(SHA256.hash(data: Array(token.utf8))) }

    /// Parses `{"tokens": [{"token": "…", "read": [...], "write": [...], "name": "…"}], "anonymous": {"read": [...]}}`.
    /// Unknown keys are ignored (the file may grow); a missing `tokens` or `anonymous` means none.
    /// Tokens are trimmed of surrounding white space (a file edited on Windows still works).
    public static func parse(_ data: [UInt8], source: String) throws -> AccessPolicy {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(data))
        } catch {
            throw AccessPolicyError(description: "\(source): not valid JSON (\(error.localizedDescription)); expected {\"tokens\": [{\"token\": \"…\", \"read\": [\"org/*\"], \"write\": [\"org/*\"]}], \"anonymous\": {\"read\": [\"public/*\"]}}")
        }
        guard let root = object as? [String: Any] else {
            throw AccessPolicyError(description: "\(source): the top level must be a JSON object with \"tokens\" and \"anonymous\"")
        }
        func globs(_ value: Any?, _ what: String) throws -> [RepoGlob] {
            guard let value else { return [] }
            guard let list = value as? [Any] else { throw AccessPolicyError(description: "\(source): \(what) must be a list of patterns") }
            return try list.map { item in
                guard let text = item as? String, !text.isEmpty, text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                    throw AccessPolicyError(description: "\(source): \(what) holds a pattern that is not a non-empty printable string")
                }
                return RepoGlob(text)
            }
        }
        var tokens: [Token] = []
        var seen = Set<[UInt8]>()
        if let list = root["tokens"] {
            guard let entries = list as? [Any] else { throw AccessPolicyError(description: "\(source): \"tokens\" must be a list") }
            for (i, entry) in entries.enumerated() {
                guard let fields = entry as? [String: Any] else { throw AccessPolicyError(description: "\(source): tokens[\(i)] must be an object") }
                guard let raw = fields["token"] as? String else { throw AccessPolicyError(description: "\(source): tokens[\(i)] has no \"token\" string") }
                let token = raw.trimmingCharacters(in: .whitespacesAndNewlines)
                // Short tokens can be guessed; a token with spaces or control characters cannot be sent in a header.
                guard token.utf8.count >= 8, token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                    throw AccessPolicyError(description: "\(source): tokens[\(i)] must be at least 8 printable characters without spaces")
                }
                let digest = AccessPolicy.digest(token)
                guard seen.insert(digest).inserted else { throw AccessPolicyError(description: "\(source): tokens[\(i)] repeats an earlier token") }
                let name = (fields["name"] as? String).map { Names.printable($0) } ?? "token#\(i)"
                tokens.append(Token(name: name, digest: digest, read: try globs(fields["read"], "tokens[\(i)].read"),
                                    write: try globs(fields["write"], "tokens[\(i)].write")))
            }
        }
        var anonymousRead: [RepoGlob] = []
        if let anonymous = root["anonymous"] {
            guard let fields = anonymous as? [String: Any] else { throw AccessPolicyError(description: "\(source): \"anonymous\" must be an object") }
            anonymousRead = try globs(fields["read"], "anonymous.read")
            if fields["write"] != nil {
                throw AccessPolicyError(description: "\(source): anonymous.write is not supported: writes need a token")
            }
        }
        return AccessPolicy(tokens: tokens, anonymousRead: anonymousRead, fromFile: true)
    }

    public static func load(path: String) throws -> AccessPolicy {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AccessPolicyError(description: "--auth \(path): cannot read the file")
        }
        return try parse(Array(data), source: "--auth \(path)")
    }

    /// The principal a token names: compared with every entry, always all of them.
    func principal(token: String?) -> Principal {
        guard let token else { return .anonymous }
        let given = AccessPolicy.digest(token.trimmingCharacters(in: .whitespaces))
        var found = -1
        for (i, entry) in tokens.enumerated() {
            // Branch-free select: the loop's timing does not depend on which entry matched.
            let match = constantTimeEqual(given, entry.digest)
            found = match ? i : found
        }
        return found >= 0 ? .token(found) : .unknownToken
    }

    func canRead(_ principal: Principal, _ repo: String) -> Bool {
        switch principal {
        case .anonymous: return (anonymousRead + anonymousWrite).contains { $0.matches(repo) }
        case let .token(i): return (tokens[i].read + tokens[i].write).contains { $0.matches(repo) } || anonymousRead.contains { $0.matches(repo) }
        case .unknownToken: return false
        }
    }

    /// True when the principal may read every repository whatever its name (a `**` read pattern).
    func readsEverything(_ principal: Principal) -> Bool {
        let all: [RepoGlob]
        switch principal {
        case .anonymous: all = anonymousRead + anonymousWrite
        case let .token(i): all = tokens[i].read + tokens[i].write + anonymousRead
        case .unknownToken: all = []
        }
        return all.contains { $0.pattern == "**" }
    }

    func canWrite(_ principal: Principal, _ repo: String) -> Bool {
        switch principal {
        case .anonymous: return anonymousWrite.contains { $0.matches(repo) }
        case let .token(i): return tokens[i].write.contains { $0.matches(repo) }
        case .unknownToken: return false
        }
    }

    func name(of principal: Principal) -> String {
        switch principal {
        case .anonymous: return "-"
        case let .token(i): return tokens[i].name
        case .unknownToken: return "unknown-token"
        }
    }

    /// What a Xet access token binds its principal to (SPEC 14.9): the token's digest, so a token
    /// file reload that removes or reorders tokens voids the Xet tokens handed out before it.
    func identity(of principal: Principal) -> [UInt8] {
        switch principal {
        case .anonymous: return Array("anonymous".utf8)
        case let .token(i): return tokens.indices.contains(i) ? tokens[i].digest : []
        case .unknownToken: return []
        }
    }

    /// Whether anyone may write at all (the server answers 405 to writes otherwise).
    public var takesWrites: Bool { !anonymousWrite.isEmpty || tokens.contains { !$0.write.isEmpty } }
}

/// Who a request is.
enum Principal: Equatable, Sendable {
    case anonymous
    case token(Int)
    case unknownToken
}

/// The current policy, replaced whole on reload.
public final class AccessControl: @unchecked Sendable {
    // Safe: `current` is read and replaced only under `lock`.
    private var current: AccessPolicy
    private let lock = NSLock()

    public init(_ policy: AccessPolicy) { current = policy }

    public var policy: AccessPolicy {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }

    /// The token a request carries: `Authorization: Bearer T` (huggingface_hub) or the password
    /// of `Authorization: Basic` (git-lfs, from the credential helper or the URL).
    static func token(from header: String?) -> String? {
        guard let header else { return nil }
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard let space = trimmed.firstIndex(of: " ") else { return trimmed.isEmpty ? nil : trimmed }
        let scheme = trimmed[..<space].lowercased()
        let value = trimmed[trimmed.index(after: space)...].trimmingCharacters(in: .whitespaces)
        if scheme == "bearer" { return value }
        if scheme == "basic" {
            guard let data = Data(base64Encoded: value), let text = String(data: data, encoding: .utf8),
                  let colon = text.firstIndex(of: ":") else { return value }
            return String(text[text.index(after: colon)...])
        }
        return value
    }
}

import Dispatch
import Logging

extension AccessControl {
    /// Re-reads `path` on every SIGHUP. A file that no longer parses is reported and the policy in
    /// force stays (a typo must not open or close the server). Returns the signal source; keep it.
    public func reloadOnHangup(path: String, logger: Logger) -> DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { [self] in
            do {
                let fresh = try AccessPolicy.load(path: path)
                policy = fresh
                logger.notice("SIGHUP: re-read \(path): \(fresh.tokens.count) tokens")
            } catch {
                logger.error("SIGHUP: kept the access rules in force: \(error)")
            }
        }
        source.resume()
        return source
    }
}

extension RangeServer {
    /// Log lines (access log included) to standard error, one per line. Call once, before serving.
    public static func bootstrapLogging() {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
    }

    /// A logger for the serve command's own messages.
    public static func logger(_ label: String = "tpstore.access") -> Logger { Logger(label: label) }
}

/// Whether two byte sequences are equal, in time that depends only on their lengths (never on
/// where they differ): for secrets (token digests, HMACs). Sequences of different lengths are unequal.
func constantTimeEqual<A: Collection, B: Collection>(_ a: A, _ b: B) -> Bool where A.Element == UInt8, B.Element == UInt8 {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}
