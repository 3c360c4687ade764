// Xet uploads (SPEC section 14.9): the upload half of the Xet protocol, as huggingface_hub with
// hf_xet speaks it, on the same server.
//
//     GET  /api/models/{repo}/xet-write-token/{rev}   hub token with write access → Xet access token
//     POST /api/xet-cas/v1/xorbs/default/{hash}       a xorb, kept in the caller's repository's scope
//     POST /api/xet-cas/v1/shards                     a shard: each file rebuilt, checked, stored
//     GET  /api/xet-cas/v1/chunks/{prefix}/{hash}     global dedup: always 404 (none offered)
//
// Other CAS routes (v2 shards, reconstructions) answer 404: the client falls back to v1 shards,
// and downloads never come here (the hub API sends no X-Xet-Hash). A file rebuilt from a shard
// becomes the repository's copy of an LFS object through `HubAPI.storeObject`, exactly as a
// basic-transfer upload does, so the commit's `lfsFile` entries find it the same way.
import Crypto
import Foundation
import Hummingbird
import NIOCore
import TenPakChunkStore
import TenPakFormat

/// Signs and checks Xet access tokens: `xet1-<hex repo>-<principal>-<expiry>-<HMAC>`, an
/// HMAC-SHA256 under a key made at start over repo, principal, the principal's token digest and
/// expiry. Valid for the CAS routes of that one repository only, for an hour; a restart voids it.
struct XetSigner: Sendable {
    private let key: [UInt8] = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    static let lifetime = 3600

    private func mac(repo: String, principal: String, identity: [UInt8], expires: Int) -> String {
        let message = Array("xet\u{0}\(repo)\u{0}\(principal)\u{0}\(expires)\u{0}".utf8) + identity
        return HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)).map { String(format: "%02x", $0) }.joined()
    }

    static func code(_ principal: Principal) -> String? {
        switch principal {
        case .anonymous: return "a"
        case let .token(i): return String(i)
        case .unknownToken: return nil
        }
    }

    func token(repo: String, principal: Principal, identity: [UInt8], expires: Int) -> String? {
        guard let code = XetSigner.code(principal) else { return nil }
        let hexRepo = Array(repo.utf8).map { String(format: "%02x", $0) }.joined()
        return "xet1-\(hexRepo)-\(code)-\(expires)-" + mac(repo: repo, principal: code, identity: identity, expires: expires)
    }

    /// The repository and principal a token names, when it is this server's, unexpired and unaltered.
    func check(_ token: String, identity: (Principal) -> [UInt8]) -> (repo: String, principal: Principal)? {
        let parts = token.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "xet1", let expires = Int(parts[3]), expires >= Int(Date().timeIntervalSince1970),
              let repoBytes = XetSigner.unhex(parts[1]), let repo = String(validating: repoBytes, as: UTF8.self) else { return nil }
        let principal: Principal
        if parts[2] == "a" {
            principal = .anonymous
        } else if let i = Int(parts[2]), i >= 0, String(i) == parts[2] {
            principal = .token(i)
        } else {
            return nil
        }
        let expected = mac(repo: repo, principal: String(parts[2]), identity: identity(principal), expires: expires)
        return constantTimeEqual(parts[4].utf8, expected.utf8) ? (repo, principal) : nil
    }

    static func unhex(_ text: Substring) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < digits.count {
            guard let high = hexValue(digits[i]), let low = hexValue(digits[i + 1]) else { return nil }
            out.append(high << 4 | low)
            i += 2
        }
        return out
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30 ... 0x39: return c - 0x30
        case 0x61 ... 0x66: return c - 0x61 + 10
        default: return nil
        }
    }
}

/// Uploaded xorbs, one directory per repository and uploader
/// (`<spool>/tpstore-xet/<hex of repo>.<owner>/<hash>`, `owner` derived from the token): a xorb
/// counts only for shards of the same uploader, to the repository it was sent to or to another
/// when the uploader may still read the first (the client dedups against xorbs it sent to other
/// repositories before). Nobody's xorb stands in for another's. Kept `retention` seconds after
/// their last use, at most `maxBytes` in all.
struct XorbStore: Sendable {
    let root: String
    let maxBytes: Int
    static let retention = 24 * 3600
    static let defaultMaxBytes = 16 << 30
    static let directoryName = "tpstore-xet"

    init(spool: String, maxBytes: Int) {
        root = (spool.hasSuffix("/") ? String(spool.dropLast()) : spool) + "/" + XorbStore.directoryName
        self.maxBytes = maxBytes
    }

    /// Who uploaded: 16 hex digits of SHA-256 over the principal's identity (the token's digest,
    /// never the token), so scopes on disk name no token.
    static func owner(_ identity: [UInt8]) -> String {
        Hashing.sha256(Array("tpstore-xet-owner\u{0}".utf8) + identity).hex.prefix(16).lowercased()
    }

    func scope(_ repo: String, owner: String) -> String {
        root + "/" + Array(repo.utf8).map { String(format: "%02x", $0) }.joined() + "." + owner
    }

    /// Stores a xorb unless the scope has it; true when it was new.
    func put(repo: String, owner: String, hash: String, bytes: [UInt8]) throws -> Bool {
        let directory = scope(repo, owner: owner)
        let target = directory + "/" + hash
        if FileManager.default.fileExists(atPath: target) {
            touch(target)
            return false
        }
        let used = sweep()
        guard used + bytes.count <= maxBytes else {
            throw HubFailure(status: HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), description: "this server keeps at most \(maxBytes) bytes of Xet xorbs and holds \(used): upload again later")
        }
        try FileSystem.makeDirectories(directory)
        let temporary = directory + "/.tmp-" + FileSystem.randomHex(bytes: 8)
        do {
            let out = try OpenFile(path: temporary, mode: .createExclusive)
            try bytes.withUnsafeBytes { try out.write($0, at: 0) }
            try FileSystem.rename(temporary, to: target)
        } catch {
            try? FileSystem.remove(temporary)
            throw error
        }
        return true
    }

    /// The xorb `hash` as a shard of `repo` by `owner` may use it: the one that owner sent to
    /// `repo`, else one it sent to a repository `mayRead` allows.
    func load(_ hash: String, repo: String, owner: String, mayRead: (String) -> Bool) throws -> Xorb? {
        var candidates = [scope(repo, owner: owner) + "/" + hash]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            let parts = name.split(separator: ".")
            guard parts.count == 2, parts[1] == owner, let bytes = XetSigner.unhex(parts[0]),
                  let other = String(validating: bytes, as: UTF8.self), other != repo, mayRead(other) else { continue }
            candidates.append(root + "/" + name + "/" + hash)
        }
        for path in candidates where FileManager.default.fileExists(atPath: path) {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            touch(path)
            return try Xorb(Array(data))
        }
        return nil
    }

    func touch(_ path: String) {
        try? FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: path)
    }

    /// Removes xorbs unused for `retention` and temporary files a stopped upload left; returns
    /// the bytes the rest take.
    @discardableResult
    func sweep() -> Int {
        let now = Int(Date().timeIntervalSince1970)
        var used = 0
        for scope in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            let directory = root + "/" + scope
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
                let path = directory + "/" + name
                guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { continue }
                let modified = Int((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)
                let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
                let stale = XetHash.isHashString(name) ? now - modified > XorbStore.retention : now - modified > 60
                if stale {
                    try? FileSystem.remove(path)
                } else {
                    used += size
                }
            }
        }
        return used
    }
}

/// What a CAS URL (after `/api/xet-cas/`) names.
enum XetRoute: Equatable {
    case xorb(hash: String)
    case shard
    case chunk
    case unknown

    init(_ s: [String]) {
        if s.count == 4, s[0] == "v1", s[1] == "xorbs", s[2] == "default", XetHash.isHashString(s[3]) {
            self = .xorb(hash: s[3])
        } else if s == ["v1", "shards"] {
            self = .shard
        } else if s.count == 4, s[0] == "v1", s[1] == "chunks" {
            self = .chunk
        } else {
            self = .unknown
        }
    }
}

/// The Xet routes over one hub API.
struct XetService: Sendable {
    let hub: HubAPI
    let signer: XetSigner
    let xorbs: XorbStore

    static let casPrefix = ["api", "xet-cas"]

    /// `GET /api/models/{repo}/xet-write-token/{rev}`: the router checked write access.
    func writeToken(repo: String, principal: Principal, identity: [UInt8], endpoint: String) async throws -> Response {
        _ = try await RangeService.blocking { [repos = hub.repos] in try repos.revisions(repo) }
        let expires = Int(Date().timeIntervalSince1970) + XetSigner.lifetime
        guard let token = signer.token(repo: repo, principal: principal, identity: identity, expires: expires) else {
            throw HubFailure(status: .unauthorized, description: "Invalid credentials in Authorization header")
        }
        let cas = endpoint + "/" + XetService.casPrefix.joined(separator: "/")
        var response = HubAPI.json(["accessToken": token, "exp": expires, "casUrl": cas])
        response.headers[.init("X-Xet-Cas-Url")!] = cas
        response.headers[.init("X-Xet-Access-Token")!] = token
        response.headers[.init("X-Xet-Token-Expiration")!] = String(expires)
        return response
    }

    /// `POST .../v1/xorbs/default/{hash}`: the chunk headers are checked here, the chunks when a
    /// shard uses them (the xorb's hash is BLAKE3-based, which this server does not compute).
    func uploadXorb(repo: String, owner: String, hash: String, body: [UInt8]) async throws -> Response {
        do {
            _ = try Xorb(body)
        } catch let error as XetFormatError {
            throw HubFailure.bad("xorb \(hash): \(error.description): nothing was kept")
        }
        let xorbs = self.xorbs
        let inserted = try await RangeService.blocking { try xorbs.put(repo: repo, owner: owner, hash: hash, bytes: body) }
        return HubAPI.json(["was_inserted": inserted])
    }

    /// `POST .../v1/shards`: every file of the shard rebuilt from its xorbs into the spool and its
    /// SHA-256 checked, all before any is stored; then each is stored as an LFS object of `repo`.
    func uploadShard(repo: String, owner: String, body: [UInt8], mayRead: @escaping @Sendable (String) -> Bool) async throws -> Response {
        let shard: XetShard
        do {
            shard = try XetShard(body)
        } catch let error as XetFormatError {
            throw HubFailure.bad("\(error.description): nothing was stored")
        }
        let uploads = hub.uploads
        let slot = try uploads.admit()
        defer { slot.leave() }
        let spool = try SpoolDirectory(parent: uploads.options.spoolDirectory)
        defer { spool.remove() }
        let repos = hub.repos
        let xorbs = self.xorbs
        let maxBytes = uploads.options.maxBytes
        let rebuilt: [(oid: String, source: String)] = try await RangeService.blocking {
            try FileSystem.makeDirectories(spool.path + "/files")
            var rebuilt: [(oid: String, source: String)] = []
            var total = 0
            var current: (hash: String, xorb: Xorb)?
            for (index, file) in shard.files.enumerated() {
                if let sha = file.sha256, let located = try repos.locateObject(repo: repo, oid: sha), located.file.size == file.size {
                    continue  // already this repository's: nothing to rebuild
                }
                total += file.size
                guard total <= maxBytes else { throw BodyFailure.tooLarge(limit: maxBytes) }
                let source = spool.path + "/files/\(index)"
                let out = try OpenFile(path: source, mode: .createExclusive)
                var sha = StreamingSHA256()
                var written = 0
                for (s, segment) in file.segments.enumerated() {
                    if current?.hash != segment.xorb {
                        guard let xorb = try xorbs.load(segment.xorb, repo: repo, owner: owner, mayRead: mayRead) else {
                            throw HubFailure.bad("shard: file \(index) uses xorb \(segment.xorb), which this token did not upload to \(repo) (or to a repository it may read): nothing was stored")
                        }
                        current = (segment.xorb, xorb)
                    }
                    guard let xorb = current?.xorb else { continue }
                    var bytes = 0
                    for c in segment.chunkStart ..< segment.chunkEnd {
                        let chunk: [UInt8]
                        do {
                            chunk = try xorb.chunk(c)
                        } catch let error as XetFormatError {
                            throw HubFailure.bad("xorb \(segment.xorb): \(error.description): nothing was stored")
                        }
                        bytes += chunk.count
                        guard bytes <= segment.bytes else { break }
                        sha.update(chunk)
                        try chunk.withUnsafeBytes { try out.write($0, at: written) }
                        written += chunk.count
                    }
                    guard bytes == segment.bytes else {
                        throw HubFailure.bad("shard: file \(index) segment \(s) says \(segment.bytes) bytes, its chunks hold \(bytes): nothing was stored")
                    }
                }
                let digest = sha.finalize().hex
                if let expected = file.sha256, expected != digest {
                    throw HubFailure.bad("shard: file \(index) rebuilt from its xorbs has SHA-256 \(digest), the shard says \(expected): nothing was stored")
                }
                rebuilt.append((digest, source))
            }
            return rebuilt
        }
        for file in rebuilt {
            try await hub.storeObject(repo: repo, oid: file.oid, source: file.source)
        }
        return HubAPI.json(["result": 1])
    }
}
