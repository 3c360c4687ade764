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

#if canImport(Glibc)
import Glibc
#endif

/// Signs and checks Xet access tokens: `xet1-<hex repo>-<principal>-<expiry>-<HMAC>`, an
/// HMAC-SHA256 under a key made at start over repo, principal, the principal's token digest and
/// expiry. Valid for the CAS routes of that one repository only, for an hour; a restart voids it.
struct XetSigner: Sendable {
    private let key: [UInt8] = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    static let lifetime = 3600

    private func mac(repo: String, principal: String, identity: [UInt8], expires: Int) -> String {
        let message = Array("xet\u{0}\(repo)\u{0}\(principal)\u{0}\(expires)\u{0}".utf8) + identity
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key))).hex
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
        let hexRepo = Array(repo.utf8).hex
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

    /// Lowercase hexadecimal only, as `hex` writes it: one spelling per token and directory name.
    static func unhex(_ text: Substring) -> [UInt8]? {
        guard !text.utf8.contains(where: { (UInt8(ascii: "A") ... UInt8(ascii: "F")).contains($0) }) else { return nil }
        return [UInt8](hex: text)
    }
}

/// Why the xorb directory cannot be used: it is not this user's private directory.
struct XorbDirectoryError: Error, CustomStringConvertible {
    let description: String
}

/// Uploaded xorbs, one directory per repository and uploader
/// (`<spool>/tpstore-xet/<hex of repo>.<owner>/<hash>`, `owner` derived from the token): a xorb
/// counts only for shards of the same uploader, to the repository it was sent to or to another
/// when the uploader may still read the first (the client dedups against xorbs it sent to other
/// repositories before). Nobody's xorb stands in for another's. Kept `retention` seconds after
/// their last use, at most `maxBytes` (allocated on disk) in all: when a xorb would not fit, the
/// least recently used ones older than `minimumAge` that no shard in progress uses (`pin`) make
/// room; 507 when they cannot.
final class XorbStore: @unchecked Sendable {
    // Safe: the `private var`s are read and written under `lock` only; the rest never changes.
    let root: String
    let maxBytes: Int
    private let lock = NSLock()
    /// Allocated bytes of the xorbs on disk: as the last scan measured them, plus the puts since.
    private var stored = 0
    /// Bytes reserved by puts still writing their xorb.
    private var pending = 0
    private var lastSweep = 0
    /// Xorbs (by hash) the shards in progress use, each with how many use it.
    private var pinned: [String: Int] = [:]
    /// Xorbs old enough to evict as of the last scan, least recently used last.
    private var candidates: [Candidate] = []
    struct Candidate {
        let path: String
        let hash: String
        let modified: Int
    }
    static let retention = 24 * 3600
    static let minimumAge = 3600
    static let sweepInterval = 60
    static let evictionScanInterval = 10
    static let directoryName = "tpstore-xet"

    /// Checks the xorb directory in `spool` when there is one (the first xorb makes it, mode 0700):
    /// it must be a real directory (not a symbolic link) owned by this user; group and other
    /// permissions are taken away.
    init(spool: String, maxBytes: Int) throws {
        root = (spool.hasSuffix("/") ? String(spool.dropLast()) : spool) + "/" + XorbStore.directoryName
        self.maxBytes = maxBytes
        try XorbStore.privateDirectory(root, create: false)
    }

    /// Makes `path` (mode 0700) unless it exists, or with `create` false only checks one that
    /// exists; either way an existing one must be a directory this user owns, and loses group and
    /// other permissions.
    static func privateDirectory(_ path: String, create: Bool = true) throws {
        if create, mkdir(path, 0o700) != 0, errno != EEXIST {
            throw StoreError.io(operation: "mkdir (Xet xorbs)", path: path, errno: errno)
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if !create, errno == ENOENT { return }
            throw StoreError.io(operation: "lstat (Xet xorbs)", path: path, errno: errno)
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw XorbDirectoryError(description: "\(path) is not a directory (a symbolic link?): Xet xorbs are kept only in this user's own directory; remove it or choose another --spool-dir")
        }
        guard info.st_uid == geteuid() else {
            throw XorbDirectoryError(description: "\(path) belongs to another user: Xet xorbs are kept only in this user's own directory; remove it or choose another --spool-dir")
        }
        if info.st_mode & 0o077 != 0, chmod(path, 0o700) != 0 {
            throw StoreError.io(operation: "chmod (Xet xorbs)", path: path, errno: errno)
        }
    }

    /// Who uploaded: 16 hex digits of SHA-256 over the principal's identity (the token's digest,
    /// never the token), so scopes on disk name no token.
    static func owner(_ identity: [UInt8]) -> String {
        Hashing.sha256(Array("tpstore-xet-owner\u{0}".utf8) + identity).hex.prefix(16).lowercased()
    }

    func scope(_ repo: String, owner: String) -> String {
        root + "/" + Array(repo.utf8).hex + "." + owner
    }

    /// Whether `path` is a directory (not a link to one) this user owns: the only kind a scan lists,
    /// so a link planted where the xorbs go never leads a sweep to delete files elsewhere.
    static func isOwnDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR && info.st_uid == geteuid()
    }

    /// A regular file's size and allocated bytes (`st_blocks` × 512), not following links.
    static func regularFile(_ path: String) -> (size: Int, allocated: Int, modified: Int)? {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return (Int(info.st_size), Int(info.st_blocks) * 512, Int(info.st_mtim.tv_sec))
    }

    /// What a xorb of `count` bytes is counted as taking until a scan measures it: whole 4 KiB blocks.
    static func estimate(_ count: Int) -> Int { charge((count + 4095) / 4096 * 4096) }

    /// What a xorb taking `allocated` bytes counts against `maxBytes`: at least 64 KiB, so the
    /// space allows at most `maxBytes` / 64 KiB files (a flood of tiny xorbs is bounded in count,
    /// and so is the scan that lists them). xet-core's xorbs are megabytes.
    static func charge(_ allocated: Int) -> Int { max(allocated, minimumCharge) }
    static let minimumCharge = 64 << 10

    /// Stores a xorb unless the scope has it (a file of another size there is replaced); true when it was written.
    func put(repo: String, owner: String, hash: String, bytes: [UInt8]) throws -> Bool {
        let directory = scope(repo, owner: owner)
        let target = directory + "/" + hash
        // Checked and touched under the lock, where eviction checks the age: a xorb found here is
        // not evicted before the shard that needs it comes (if the touch fails, it is written again).
        let held = lock.withLock {
            guard let existing = XorbStore.regularFile(target), existing.size == bytes.count else { return false }
            return touch(target)
        }
        if held { return false }
        let needed = XorbStore.estimate(bytes.count)
        try reserve(needed)
        let temporary = directory + "/.tmp-" + FileSystem.randomHex(bytes: 8)
        do {
            try XorbStore.privateDirectory(root)
            try XorbStore.privateDirectory(directory)
            let out = try OpenFile(path: temporary, mode: .createExclusive)
            guard fchmod(out.fd, 0o600) == 0 else { throw StoreError.io(operation: "fchmod (Xet xorb)", path: temporary, errno: errno) }
            try bytes.withUnsafeBytes { try out.write($0, at: 0) }
            try out.sync()
            // Renamed under the lock: a scan sees the xorb either pending or stored, never both.
            try lock.withLock {
                let replaced = XorbStore.regularFile(target).map { XorbStore.charge($0.allocated) } ?? 0
                try FileSystem.rename(temporary, to: target)
                pending -= needed
                stored = max(0, stored - replaced) + needed
            }
        } catch {
            try? FileSystem.remove(temporary)
            lock.withLock { pending -= needed }
            throw error
        }
        // The xorb is in place; a lost directory entry after a crash only costs a re-upload.
        try? FileSystem.syncDirectory(directory)
        return true
    }

    /// Makes room for `bytes` more and counts them as pending: sweeps when the last sweep is older
    /// than `sweepInterval`; when they do not fit, evicts the least recently used xorbs older than
    /// `minimumAge` that no shard in progress uses (candidates listed by a scan at most every
    /// `evictionScanInterval` seconds, so a full store costs no scan per put); 507 when that is not enough.
    private func reserve(_ bytes: Int) throws {
        try lock.withLock {
            let now = Int(Date().timeIntervalSince1970)
            if now - lastSweep >= XorbStore.sweepInterval { rescan(now: now) }
            if stored + pending + bytes > maxBytes, candidates.isEmpty, now - lastSweep >= XorbStore.evictionScanInterval {
                rescan(now: now)
            }
            while stored + pending + bytes > maxBytes, let candidate = candidates.popLast() {
                // Checked again: it may have been used (touched), replaced or removed since the scan.
                guard pinned[candidate.hash] == nil, let file = XorbStore.regularFile(candidate.path),
                      now - file.modified >= XorbStore.minimumAge else { continue }
                if (try? FileSystem.remove(candidate.path)) != nil { stored = max(0, stored - XorbStore.charge(file.allocated)) }
            }
            guard stored + pending + bytes <= maxBytes else {
                throw HubFailure(status: HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"),
                                 description: "this server keeps at most \(maxBytes) bytes of Xet xorbs and holds \(stored + pending), all used within the last \(XorbStore.minimumAge / 60) minutes or by shards in progress: upload again later")
            }
            pending += bytes
        }
    }

    /// Keeps the xorbs `hashes` (in any scope) from eviction and the retention sweep until `unpin`:
    /// a shard in progress uses them.
    func pin(_ hashes: Set<String>) {
        lock.withLock { for hash in hashes { pinned[hash, default: 0] += 1 } }
    }

    func unpin(_ hashes: Set<String>) {
        lock.withLock {
            for hash in hashes {
                let count = (pinned[hash] ?? 1) - 1
                pinned[hash] = count > 0 ? count : nil
            }
        }
    }

    /// The directories a shard of `repo` by `owner` may take xorbs from: the one that owner sent
    /// to `repo` first, then those it sent to repositories `mayRead` allows. Listed once per shard.
    func scopes(repo: String, owner: String, mayRead: (String) -> Bool) -> [String] {
        var scopes = [scope(repo, owner: owner)]
        guard XorbStore.isOwnDirectory(root) else { return scopes }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            let parts = name.split(separator: ".")
            guard parts.count == 2, parts[1] == owner, let bytes = XetSigner.unhex(parts[0]),
                  let other = String(validating: bytes, as: UTF8.self), other != repo, mayRead(other) else { continue }
            guard XorbStore.isOwnDirectory(root + "/" + name) else { continue }
            scopes.append(root + "/" + name)
        }
        return scopes
    }

    /// The xorb `hash` from the first of `scopes` that holds it (a regular file, parsed; touched then).
    func load(_ hash: String, scopes: [String]) throws -> Xorb? {
        for directory in scopes {
            let path = directory + "/" + hash
            guard let file = XorbStore.regularFile(path), file.size <= Xorb.maxBytes else { continue }
            let input = try OpenFile(path: path, mode: .read)
            let xorb = try Xorb(try input.read(count: file.size, at: 0))
            touch(path)
            return xorb
        }
        return nil
    }

    /// Marks the xorb at `path` used now; whether it could.
    @discardableResult
    func touch(_ path: String) -> Bool {
        (try? FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: path)) != nil
    }

    /// Under `lock`: removes xorbs unused for `retention` (unless pinned) and temporary files a
    /// stopped upload left; sets `stored` to what the rest take and lists the eviction candidates.
    private func rescan(now: Int) {
        var total = 0
        var evictable: [Candidate] = []
        lastSweep = now
        // Nothing is listed, let alone removed, through a link or in another user's directory.
        guard XorbStore.isOwnDirectory(root) else {
            stored = 0
            candidates = []
            return
        }
        for scope in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            let directory = root + "/" + scope
            guard XorbStore.isOwnDirectory(directory) else { continue }
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
                let path = directory + "/" + name
                guard let file = XorbStore.regularFile(path) else { continue }
                let isXorb = XetHash.isHashString(name)
                let age = now - file.modified
                if isXorb, pinned[name] != nil {
                    total += XorbStore.charge(file.allocated)
                } else if age > (isXorb ? XorbStore.retention : 60) {
                    try? FileSystem.remove(path)
                } else if isXorb {
                    total += XorbStore.charge(file.allocated)
                    if age >= XorbStore.minimumAge { evictable.append(Candidate(path: path, hash: name, modified: file.modified)) }
                }
            }
        }
        stored = total
        // Newest first: `popLast` takes the least recently used.
        candidates = evictable.sorted { $0.modified > $1.modified }
    }

    /// A sweep now (at start): returns the bytes the kept xorbs take.
    @discardableResult
    func sweep() -> Int {
        lock.withLock {
            rescan(now: Int(Date().timeIntervalSince1970))
            return stored
        }
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

    /// Bytes an unprivileged writer may still take on the file system holding `path`.
    static func freeBytes(_ path: String) -> Int? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        let (product, overflow) = Int(clamping: info.f_bavail).multipliedReportingOverflow(by: Int(clamping: info.f_frsize))
        return overflow ? Int.max : product
    }

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

    /// `POST .../v1/shards` (the caller holds an upload slot): every file of the shard rebuilt from
    /// its xorbs into the spool and its SHA-256 checked, all before any is stored; then each is
    /// stored as an LFS object of `repo`. Each distinct file is rebuilt once, and each xorb read
    /// once per shard: segments are written in place, grouped by xorb.
    func uploadShard(repo: String, owner: String, body: [UInt8], mayRead: @escaping @Sendable (String) -> Bool) async throws -> Response {
        let xorbs = self.xorbs
        // Parsed on a blocking thread (a 64 MiB shard holds over a million segments), and its xorbs
        // pinned at once: none is evicted or swept from here until the answer.
        let (shard, used): (XetShard, Set<String>) = try await RangeService.blocking {
            let shard: XetShard
            do {
                shard = try XetShard(body)
            } catch let error as XetFormatError {
                throw HubFailure.bad("\(error.description): nothing was stored")
            }
            let used = Set(shard.files.lazy.flatMap { $0.segments.lazy.map(\.xorb) })
            xorbs.pin(used)
            return (shard, used)
        }
        defer { xorbs.unpin(used) }
        let uploads = hub.uploads
        let spool = try SpoolDirectory(parent: uploads.options.spoolDirectory)
        defer { spool.remove() }
        let repos = hub.repos
        let maxBytes = uploads.options.maxBytes
        let rebuilt: [(oid: String, source: String)] = try await RangeService.blocking {
            // The files to rebuild: those the repository does not hold, each content once.
            var wanted: [(index: Int, file: XetShard.File)] = []
            var seen = Set<String>()
            for (index, file) in shard.files.enumerated() {
                guard seen.insert(file.sha256 ?? "xet:" + file.hash).inserted else { continue }
                if let sha = file.sha256, let located = try repos.locateObject(repo: repo, oid: sha), located.file.size == file.size {
                    continue  // already this repository's: nothing to rebuild
                }
                wanted.append((index, file))
            }
            let total = wanted.reduce(0) { $0 + $1.file.size }
            guard total <= maxBytes else { throw BodyFailure.tooLarge(limit: maxBytes) }
            if let free = XetService.freeBytes(spool.path), total > free {
                throw HubFailure(status: HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"),
                                 description: "the shard's files take \(total) bytes, this server's spool has \(free) free: nothing was stored")
            }
            try FileSystem.makeDirectories(spool.path + "/files")
            // Each xorb's segments, in order of first use, with where their bytes go. The files are
            // made now and opened again per xorb (a shard may name more files than descriptors).
            var outputs: [String] = []
            var uses: [String: [(file: Int, segment: Int, offset: Int)]] = [:]
            var order: [String] = []
            for (w, item) in wanted.enumerated() {
                let path = spool.path + "/files/\(item.index)"
                _ = try OpenFile(path: path, mode: .createExclusive)
                outputs.append(path)
                var offset = 0
                for (s, segment) in item.file.segments.enumerated() {
                    if uses[segment.xorb] == nil { order.append(segment.xorb) }
                    uses[segment.xorb, default: []].append((w, s, offset))
                    offset += segment.bytes
                }
            }
            let scopes = xorbs.scopes(repo: repo, owner: owner, mayRead: mayRead)
            for hash in order {
                let refs = uses[hash] ?? []  // in file order: each file is opened once per xorb
                let xorb: Xorb?
                do {
                    xorb = try xorbs.load(hash, scopes: scopes)
                } catch let error as XetFormatError {
                    throw HubFailure.bad("xorb \(hash): \(error.description): nothing was stored")
                }
                guard let xorb else {
                    let index = refs.first.map { wanted[$0.file].index } ?? 0
                    throw HubFailure.bad("shard: file \(index) uses xorb \(hash), which this token did not upload to \(repo) (or to a repository it may read): nothing was stored")
                }
                var out: (file: Int, handle: OpenFile)?
                for ref in refs {
                    if out?.file != ref.file { out = (ref.file, try OpenFile(path: outputs[ref.file], mode: .readWrite)) }
                    guard let handle = out?.handle else { continue }
                    let segment = wanted[ref.file].file.segments[ref.segment]
                    // Chunks are never empty, so this loop turns at most `segment.bytes` + 1 times.
                    var bytes = 0
                    for c in segment.chunkStart ..< segment.chunkEnd {
                        let chunk: [UInt8]
                        do {
                            chunk = try xorb.chunk(c)
                        } catch let error as XetFormatError {
                            throw HubFailure.bad("xorb \(hash): \(error.description): nothing was stored")
                        }
                        guard bytes + chunk.count <= segment.bytes else { bytes += chunk.count; break }
                        try chunk.withUnsafeBytes { try handle.write($0, at: ref.offset + bytes) }
                        bytes += chunk.count
                    }
                    guard bytes == segment.bytes else {
                        throw HubFailure.bad("shard: file \(wanted[ref.file].index) segment \(ref.segment) says \(segment.bytes) bytes, its chunks hold \(bytes): nothing was stored")
                    }
                }
            }
            // Each file's SHA-256, read back.
            var rebuilt: [(oid: String, source: String)] = []
            for (w, item) in wanted.enumerated() {
                var sha = StreamingSHA256()
                var offset = 0
                let size = item.file.size
                let input = try OpenFile(path: outputs[w], mode: .read)
                while offset < size {
                    let piece = try input.read(count: min(4 << 20, size - offset), at: offset)
                    guard !piece.isEmpty else { throw StoreError.io(operation: "read (Xet rebuilt file)", path: outputs[w], errno: EIO) }
                    sha.update(piece)
                    offset += piece.count
                }
                let digest = sha.finalize().hex
                if let expected = item.file.sha256, expected != digest {
                    throw HubFailure.bad("shard: file \(item.index) rebuilt from its xorbs has SHA-256 \(digest), the shard says \(expected): nothing was stored")
                }
                rebuilt.append((digest, outputs[w]))
            }
            return rebuilt
        }
        // Stored one by one: a failure part-way leaves the earlier files stored as LFS objects of
        // this repository, which is harmless (content-addressed, checked; SPEC 14.9).
        for file in rebuilt {
            try await hub.storeObject(repo: repo, oid: file.oid, source: file.source)
        }
        return HubAPI.json(["result": 1])
    }
}
