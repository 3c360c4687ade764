// The hub's HTTP API as huggingface_hub and git-lfs use it (SPEC section 14), over a model store.
//
//     GET  /api/models/{repo}[/revision/{rev}][?blobs=True]      model_info / repo_info
//     GET  /api/models/{repo}/tree/{rev}[/{path}][?recursive=1]   list_repo_tree, list_repo_files
//     POST /api/repos/create                                     create_repo
//     POST /api/models/{repo}/preupload/{rev}                    upload mode per file
//     POST /api/models/{repo}/commit/{rev}                       create_commit (NDJSON)
//     POST /{repo}.git/info/lfs/objects/batch                    git-lfs Batch API (basic transfer)
//     PUT|GET /{repo}.git/info/lfs/objects/{oid}/{size}?exp&sig  object upload / download (signed)
//     POST /{repo}.git/info/lfs/verify?exp&sig                   verify after upload (signed)
//
// The router (Server.swift) has already checked that the caller may read (or write) `repo`; the
// LFS object URLs carry their own signature instead, since huggingface_hub PUTs an upload `href`
// without its token (the hub's would point at a bucket).
import Crypto
import Foundation
import Hummingbird
import NIOCore
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore
import TenPakReader

/// Signs and checks the LFS object URLs handed out by the batch API (HMAC-SHA256 under a key made
/// at start, valid for an hour: a restart invalidates them, and the client asks the batch API again).
struct LFSSigner: Sendable {
    // The key's bytes (SymmetricKey is not Sendable): 32 random bytes made at start.
    private let key: [UInt8] = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    static let lifetime = 3600

    func signature(_ operation: String, repo: String, oid: String, size: Int, expires: Int) -> String {
        let message = "\(operation)\u{0}\(repo)\u{0}\(oid)\u{0}\(size)\u{0}\(expires)"
        return HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)).map { String(format: "%02x", $0) }.joined()
    }

    func query(_ operation: String, repo: String, oid: String, size: Int) -> String {
        let expires = Int(Date().timeIntervalSince1970) + LFSSigner.lifetime
        return "exp=\(expires)&sig=\(signature(operation, repo: repo, oid: oid, size: size, expires: expires))"
    }

    func check(_ operation: String, repo: String, oid: String, size: Int, request: Request) -> Bool {
        guard let exp = request.uri.queryParameters["exp"].flatMap({ Int(String($0)) }), exp >= Int(Date().timeIntervalSince1970),
              let given = request.uri.queryParameters["sig"].map(String.init) else { return false }
        let expected = signature(operation, repo: repo, oid: oid, size: size, expires: exp)
        return constantTimeEqual(given.utf8, expected.utf8)
    }
}

/// A request the hub API refuses, with its status (and `X-Error-Code` for huggingface_hub).
struct HubFailure: Error, CustomStringConvertible {
    let status: HTTPResponse.Status
    let description: String
    var code: String?

    static func bad(_ message: String) -> HubFailure { HubFailure(status: .badRequest, description: message) }
}

/// The hub API over one store.
struct HubAPI: Sendable {
    let reader: StoreReader
    let ranges: RangeService
    /// Spool, limits, the put gate and upload slots; shared with the PUT uploads.
    let uploads: UploadService
    let signer = LFSSigner()
    /// Files up to this size are sent inside the commit (preupload answers "regular"); larger
    /// ones go through LFS.
    static let regularLimit = 1 << 20
    /// JSON request bodies (create, preupload, batch, verify).
    static let jsonLimit = 4 << 20
    /// The commit call's NDJSON body (regular files travel in it, base64).
    static let commitLimit = 64 << 20

    var store: ModelStore { reader.store }
    var repos: HubRepos { HubRepos(store: reader.store) }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok, contentType: String = "application/json") -> Response {
        json(bytes: jsonBytes(object), status: status, contentType: contentType)
    }

    static func jsonBytes(_ object: Any) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8))
    }

    static func json(bytes: [UInt8], status: HTTPResponse.Status = .ok, contentType: String = "application/json") -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func iso8601(_ seconds: Int64) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    // MARK: read

    /// `GET /api/models/{repo}[/revision/{rev}]`.
    func modelInfo(repo: String, revision: String?, blobs: Bool, isPrivate: Bool) async throws -> Response {
        let store = self.store
        let repos = self.repos
        let info: [UInt8] = try await RangeService.blocking {
            let all = try repos.revisions(repo)
            let record = try repos.resolve(repo, revision ?? "main")
            let commit = HubRepos.commitID(record)
            let files = try store.catalog.files(revision: record)
            var parameters: [String: Int] = [:]
            var siblings: [[String: Any]] = []
            for file in files {
                var sibling: [String: Any] = ["rfilename": file.path]
                if blobs {
                    let pointer = GitPointer.blobID(sha256: file.sha256.hex, size: file.size)
                    sibling["size"] = file.size
                    sibling["blobId"] = pointer.id
                    sibling["lfs"] = ["sha256": file.sha256.hex, "size": file.size, "pointerSize": pointer.pointerSize]
                }
                siblings.append(sibling)
                if file.kind == .safetensors {
                    for tensor in try store.catalog.tensors(file: file) {
                        parameters[tensor.dtype, default: 0] += tensor.shape.reduce(1, *)
                    }
                }
            }
            var info: [String: Any] = [
                "_id": commit, "id": repo, "modelId": repo, "sha": commit,
                "lastModified": HubAPI.iso8601(record.createdAt), "createdAt": HubAPI.iso8601(all.first?.createdAt ?? record.createdAt),
                "private": isPrivate, "gated": false, "disabled": false, "downloads": 0, "likes": 0,
                "tags": [String](), "spaces": [String](), "siblings": siblings,
            ]
            if repo.contains("/"), let author = repo.split(separator: "/").first { info["author"] = String(author) }
            if !parameters.isEmpty {
                info["safetensors"] = ["parameters": parameters, "total": parameters.values.reduce(0, +)]
            }
            return HubAPI.jsonBytes(info)
        }
        return HubAPI.json(bytes: info)
    }

    /// `GET /api/models/{repo}/tree/{rev}[/{path}]`: one page holding every entry.
    func tree(repo: String, revision: String, path: String, recursive: Bool) async throws -> Response {
        let store = self.store
        let repos = self.repos
        let entries: [UInt8] = try await RangeService.blocking {
            let record = try repos.resolve(repo, revision)
            let commit = HubRepos.commitID(record)
            let files = try store.catalog.files(revision: record)
            let prefix = path.isEmpty ? "" : path + "/"
            var entries: [[String: Any]] = []
            var directories = Set<String>()
            var found = path.isEmpty
            for file in files {
                if file.path == path {
                    throw HubFailure(status: .badRequest, description: "\(Names.printable(path)) is a file, not a directory")
                }
                guard file.path.hasPrefix(prefix) else { continue }
                found = true
                let rest = file.path.dropFirst(prefix.count)
                let parts = rest.split(separator: "/")
                // Directories between the listed one and the file, as the hub lists them.
                for depth in 1 ..< max(parts.count, 1) where recursive || depth == 1 {
                    let directory = prefix + parts[0 ..< depth].joined(separator: "/")
                    if directories.insert(directory).inserted {
                        let oid = Insecure.SHA1.hash(data: Array("tree\u{0}\(commit)\u{0}\(directory)".utf8)).map { String(format: "%02x", $0) }.joined()
                        entries.append(["type": "directory", "oid": oid, "size": 0, "path": directory])
                    }
                }
                guard recursive || parts.count == 1 else { continue }
                let pointer = GitPointer.blobID(sha256: file.sha256.hex, size: file.size)
                entries.append(["type": "file", "oid": pointer.id, "size": file.size, "path": file.path,
                                "lfs": ["oid": file.sha256.hex, "size": file.size, "pointerSize": pointer.pointerSize]])
            }
            guard found else { throw HubLookupError.entryNotFound(repo: repo, commit: commit, path: path) }
            return HubAPI.jsonBytes(entries)
        }
        return HubAPI.json(bytes: entries)
    }

    // MARK: write

    /// `POST /api/repos/create`: the repository's first commit holds `.gitattributes`, as on the hub,
    /// so an empty repository has a `main` to commit onto. The caller checked write access to `repo`.
    func createRepo(repo: String, endpoint: String) async throws -> Response {
        let store = self.store
        let uploads = self.uploads
        let exists = try await RangeService.blocking { !(try store.catalog.revisions(model: repo)).isEmpty }
        if exists {
            return HubAPI.json(["error": "You already created this model repo", "url": "\(endpoint)/\(repo)"], status: .conflict)
        }
        let slot = try uploads.admit()
        defer { slot.leave() }
        let spool = try SpoolDirectory(parent: uploads.options.spoolDirectory)
        defer { spool.remove() }
        let commit = HubAPI.newCommitID(repo: repo, parent: nil, summary: "initial commit")
        let created: Bool = try await uploads.gate.run {
            try await RangeService.blocking {
                // Checked again inside the gate: two creates of one name make one repository.
                guard try store.catalog.revisions(model: repo).isEmpty else { return false }
                let source = spool.path + "/gitattributes"
                try Array(HubAPI.gitattributes.utf8).withUnsafeBytes { raw in
                    try OpenFile(path: source, mode: .createExclusive).write(raw, at: 0)
                }
                _ = try store.put(model: repo, revision: commit, inputs: [PutInput(source: source, path: ".gitattributes")], base: .none)
                return true
            }
        }
        guard created else {
            return HubAPI.json(["error": "You already created this model repo", "url": "\(endpoint)/\(repo)"], status: .conflict)
        }
        return HubAPI.json(["url": "\(endpoint)/\(repo)", "name": repo, "id": repo])
    }

    /// `POST /api/models/{repo}/preupload/{rev}`: small files go inside the commit, the rest by LFS.
    func preupload(repo: String, body: [UInt8]) async throws -> Response {
        guard let root = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
              let files = root["files"] as? [[String: Any]] else {
            throw HubFailure.bad("preupload: expected {\"files\": [{\"path\", \"size\", \"sample\"}]}")
        }
        var answers: [[String: Any]] = []
        for file in files {
            guard let path = file["path"] as? String, let size = file["size"] as? Int, size >= 0 else {
                throw HubFailure.bad("preupload: every file needs a \"path\" and a non-negative \"size\"")
            }
            try HubAPI.validatePath(path)
            answers.append(["path": path, "uploadMode": size <= HubAPI.regularLimit ? "regular" : "lfs", "shouldIgnore": false])
        }
        return HubAPI.json(["files": answers, "commitOid": NSNull()])
    }

    static func validatePath(_ path: String) throws {
        do {
            try Names.validatePath(path)
        } catch {
            throw HubFailure.bad("invalid path \(Names.printable(path)) in the repository: \(error)")
        }
    }

    /// One operation of a commit.
    enum Operation {
        case regular(path: String, bytes: [UInt8])
        case lfs(path: String, oid: String, size: Int)
        case deleteFile(path: String)
        case deleteFolder(path: String)
    }

    /// Parses the commit call's NDJSON: a header line, then one operation per line.
    static func parseCommit(_ body: [UInt8]) throws -> (summary: String, parent: String?, operations: [Operation]) {
        var lines = body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true).makeIterator()
        func object(_ line: ArraySlice<UInt8>, _ n: Int) throws -> (key: String, value: [String: Any]) {
            guard let item = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any],
                  let key = item["key"] as? String, let value = item["value"] as? [String: Any] else {
                throw HubFailure.bad("commit: line \(n) is not a JSON object {\"key\": …, \"value\": {…}}")
            }
            return (key, value)
        }
        guard let first = lines.next() else { throw HubFailure.bad("commit: the body is empty; expected NDJSON, a header line first") }
        let header = try object(first, 1)
        guard header.key == "header" else { throw HubFailure.bad("commit: the first line must be the header, not \(Names.printable(header.key))") }
        let summary = header.value["summary"] as? String ?? ""
        let parent = header.value["parentCommit"] as? String
        if let parent, !HubRepos.isCommitID(parent) { throw HubFailure.bad("commit: parentCommit must be a 40-hex commit id") }
        var operations: [Operation] = []
        var paths = Set<String>()
        var n = 1
        while let line = lines.next() {
            n += 1
            let (key, value) = try object(line, n)
            guard let path = value["path"] as? String else { throw HubFailure.bad("commit: line \(n) (\(Names.printable(key))) has no path") }
            switch key {
            case "file":
                try validatePath(path)
                guard (value["encoding"] as? String ?? "base64") == "base64", let content = value["content"] as? String,
                      let bytes = Data(base64Encoded: content) else {
                    throw HubFailure.bad("commit: line \(n): file \(Names.printable(path)) needs base64 \"content\"")
                }
                operations.append(.regular(path: path, bytes: Array(bytes)))
            case "lfsFile":
                try validatePath(path)
                guard (value["algo"] as? String ?? "sha256") == "sha256", let oid = value["oid"] as? String, HubRepos.isObjectID(oid),
                      let size = value["size"] as? Int, size >= 0 else {
                    throw HubFailure.bad("commit: line \(n): lfsFile \(Names.printable(path)) needs a sha256 \"oid\" (64 lowercase hex) and a \"size\"")
                }
                operations.append(.lfs(path: path, oid: oid, size: size))
            case "deletedFile":
                try validatePath(path)
                operations.append(.deleteFile(path: path))
            case "deletedFolder":
                let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
                try validatePath(trimmed)
                operations.append(.deleteFolder(path: trimmed))
            default:
                throw HubFailure.bad("commit: line \(n): unknown operation \(Names.printable(key)) (file, lfsFile, deletedFile, deletedFolder)")
            }
            guard paths.insert(path).inserted else { throw HubFailure.bad("commit: \(Names.printable(path)) appears twice") }
        }
        return (summary, parent, operations)
    }

    static func newCommitID(repo: String, parent: String?, summary: String) -> String {
        let text = "tenpak-commit\u{0}\(repo)\u{0}\(parent ?? "")\u{0}\(summary)\u{0}\(Date().timeIntervalSince1970)\u{0}\(FileSystem.randomHex(bytes: 16))"
        return String(SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined().prefix(40))
    }

    /// `POST /api/models/{repo}/commit/main`: the new revision holds the head's files, minus the
    /// deletions, plus the additions; it is stored with the ordinary put (automatic base), so it
    /// appears whole at its commit or not at all.
    func commit(repo: String, revision: String, body: [UInt8], endpoint: String) async throws -> Response {
        guard revision == "main" else {
            throw HubFailure(status: .badRequest, description: "commits go to main: this server has no other branches")
        }
        let parsed = try HubAPI.parseCommit(body)
        let store = self.store
        let repos = self.repos
        let uploads = self.uploads
        let slot = try uploads.admit()
        defer { slot.leave() }
        let spool = try SpoolDirectory(parent: uploads.options.spoolDirectory)
        defer { spool.remove() }
        let commit: String = try await uploads.gate.run {
            try await RangeService.blocking {
                let all = try repos.revisions(repo)
                guard let head = HubRepos.head(of: all) else { throw HubLookupError.repoNotFound(repo) }
                let headCommit = HubRepos.commitID(head)
                if let parent = parsed.parent, parent != headCommit {
                    throw HubFailure(status: .preconditionFailed, description: "parentCommit \(parent) is not the head of main (\(headCommit)): fetch and commit again")
                }
                enum Source { case stored(FileRecord), bytes([UInt8]), object(FileRecord) }
                var files: [String: Source] = [:]
                for file in try store.catalog.files(revision: head) { files[file.path] = .stored(file) }
                for operation in parsed.operations {
                    switch operation {
                    case let .deleteFile(path):
                        guard files.removeValue(forKey: path) != nil else {
                            throw HubFailure(status: .notFound, description: "A file with this name doesn't exist: \(Names.printable(path))", code: "EntryNotFound")
                        }
                    case let .deleteFolder(path):
                        let doomed = files.keys.filter { $0.hasPrefix(path + "/") }
                        guard !doomed.isEmpty else {
                            throw HubFailure(status: .notFound, description: "A folder with this name doesn't exist: \(Names.printable(path))", code: "EntryNotFound")
                        }
                        for path in doomed { files.removeValue(forKey: path) }
                    case let .regular(path, bytes):
                        files[path] = .bytes(bytes)
                    case let .lfs(path, oid, size):
                        guard let located = try repos.locateObject(repo: repo, oid: oid), located.file.size == size else {
                            throw HubFailure.bad("LFS object \(oid) (\(size) bytes) for \(Names.printable(path)) was not uploaded to \(repo): upload it through the LFS batch API first")
                        }
                        files[path] = .object(located.file)
                    }
                }
                guard !files.isEmpty else { throw HubFailure.bad("this commit would leave the repository with no file") }
                // A file and a directory of the same name cannot both exist.
                for path in files.keys {
                    var parent = Substring(path)
                    while let slash = parent.lastIndex(of: "/") {
                        parent = parent[..<slash]
                        if files[String(parent)] != nil { throw HubFailure.bad("\(Names.printable(String(parent))) is both a file and a directory") }
                    }
                }
                try FileSystem.makeDirectories(spool.path + "/files")
                var inputs: [PutInput] = []
                for (index, (path, source)) in files.sorted(by: { $0.key < $1.key }).enumerated() {
                    let target = spool.path + "/files/\(index)"
                    switch source {
                    case let .stored(file), let .object(file):
                        try store.export(file, to: target)
                    case let .bytes(bytes):
                        let out = try OpenFile(path: target, mode: .createExclusive)
                        try bytes.withUnsafeBytes { try out.write($0, at: 0) }
                    }
                    inputs.append(PutInput(source: target, path: path))
                }
                let commit = HubAPI.newCommitID(repo: repo, parent: headCommit, summary: parsed.summary)
                _ = try store.put(model: repo, revision: commit, inputs: inputs, base: .automatic)
                return commit
            }
        }
        return HubAPI.json(["commitUrl": "\(endpoint)/\(repo)/commit/\(commit)", "commitOid": commit, "pullRequestUrl": NSNull(), "success": true])
    }

    static let gitattributes = """
    *.bin filter=lfs diff=lfs merge=lfs -text
    *.ckpt filter=lfs diff=lfs merge=lfs -text
    *.gguf filter=lfs diff=lfs merge=lfs -text
    *.h5 filter=lfs diff=lfs merge=lfs -text
    *.npy filter=lfs diff=lfs merge=lfs -text
    *.onnx filter=lfs diff=lfs merge=lfs -text
    *.pt filter=lfs diff=lfs merge=lfs -text
    *.pth filter=lfs diff=lfs merge=lfs -text
    *.safetensors filter=lfs diff=lfs merge=lfs -text
    *.zst filter=lfs diff=lfs merge=lfs -text

    """

    // MARK: git-lfs

    static let lfsContentType = "application/vnd.git-lfs+json"

    static func lfsError(_ status: HTTPResponse.Status, _ message: String) -> Response {
        var response = json(["message": message], status: status, contentType: lfsContentType)
        if status == .unauthorized { response.headers[.init("LFS-Authenticate")!] = "Basic realm=\"tpstore\"" }
        return response
    }

    /// `POST /{repo}.git/info/lfs/objects/batch`. `mayWrite` says whether the caller may upload
    /// (the router checked read access already).
    func lfsBatch(repo: String, body: [UInt8], mayWrite: Bool, endpoint: String) async throws -> Response {
        guard let root = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
              let operation = root["operation"] as? String, let objects = root["objects"] as? [[String: Any]] else {
            return HubAPI.lfsError(.unprocessableContent, "expected {\"operation\": \"upload\"|\"download\", \"objects\": [{\"oid\", \"size\"}]}")
        }
        guard operation == "upload" || operation == "download" else {
            return HubAPI.lfsError(.unprocessableContent, "operation must be upload or download")
        }
        if let transfers = root["transfers"] as? [String], !transfers.contains("basic") {
            return HubAPI.lfsError(.unprocessableContent, "this server offers the basic transfer only")
        }
        if let algorithm = root["hash_algo"] as? String, algorithm != "sha256" {
            return HubAPI.lfsError(.conflict, "this server stores sha256 objects only")
        }
        if operation == "upload", !mayWrite {
            return HubAPI.lfsError(.forbidden, "this token may read \(repo) but not write to it")
        }
        let repos = self.repos
        let maxBytes = uploads.options.maxBytes
        var answers: [[String: Any]] = []
        for object in objects {
            let oid = object["oid"] as? String ?? ""
            let size = object["size"] as? Int ?? -1
            guard HubRepos.isObjectID(oid), size >= 0 else {
                answers.append(["oid": oid, "size": max(size, 0), "error": ["code": 422, "message": "oid must be 64 lowercase hex digits and size a non-negative integer"]])
                continue
            }
            let located = try await RangeService.blocking { try repos.locateObject(repo: repo, oid: oid) }
            let base = "\(endpoint)/\(repo).git/info/lfs"
            if operation == "download" {
                guard let located, located.file.size == size else {
                    answers.append(["oid": oid, "size": size, "error": ["code": 404, "message": "Object does not exist"]])
                    continue
                }
                let href = "\(base)/objects/\(oid)/\(size)?" + signer.query("download", repo: repo, oid: oid, size: size)
                answers.append(["oid": oid, "size": located.file.size, "authenticated": true,
                                "actions": ["download": ["href": href, "expires_in": LFSSigner.lifetime]]])
            } else if located != nil, located?.file.size == size {
                answers.append(["oid": oid, "size": size, "authenticated": true])  // already here: no actions
            } else if size > maxBytes {
                answers.append(["oid": oid, "size": size, "error": ["code": 422, "message": "the object is larger than this server's limit of \(maxBytes) bytes"]])
            } else {
                let upload = "\(base)/objects/\(oid)/\(size)?" + signer.query("upload", repo: repo, oid: oid, size: size)
                let verify = "\(base)/verify?" + signer.query("verify", repo: repo, oid: oid, size: size)
                answers.append(["oid": oid, "size": size, "authenticated": true,
                                "actions": ["upload": ["href": upload, "expires_in": LFSSigner.lifetime],
                                            "verify": ["href": verify, "expires_in": LFSSigner.lifetime]]])
            }
        }
        return HubAPI.json(["transfer": "basic", "objects": answers, "hash_algo": "sha256"], contentType: HubAPI.lfsContentType)
    }

    /// `PUT /{repo}.git/info/lfs/objects/{oid}/{size}` (signed): the body must be exactly `size`
    /// bytes whose SHA-256 is `oid`; it is then stored as the repository's copy of the object.
    func lfsUpload(repo: String, oid: String, size: Int, request: Request, channel: (any Channel)?) async -> Response {
        guard signer.check("upload", repo: repo, oid: oid, size: size, request: request) else {
            return HubAPI.lfsError(.forbidden, "this upload URL is not valid (expired or altered): ask the batch API again")
        }
        var spoolPath: String?
        do {
            if let length = request.headers[.contentLength].flatMap({ Int($0) }), length != size {
                throw HubFailure.bad("the body is \(length) bytes but the object is \(size) bytes")
            }
            guard size <= uploads.options.maxBytes else { throw BodyFailure.tooLarge(limit: uploads.options.maxBytes) }
            let slot = try uploads.admit()
            defer { slot.leave() }
            let spool = try SpoolDirectory(parent: uploads.options.spoolDirectory)
            spoolPath = spool.path
            defer { spool.remove() }
            let source = spool.path + "/object"
            let out = try OpenFile(path: source, mode: .createExclusive)
            var sha = StreamingSHA256()
            var written = 0
            var limits = uploads.options.limits
            limits.maxBytes = size
            // Hashed as it arrives; written in 1 MiB batches off the async threads.
            var pending: [UInt8] = []
            func flush() async throws {
                let bytes = pending, at = written - pending.count
                try await RangeService.blocking { try bytes.withUnsafeBytes { try out.write($0, at: at) } }
                pending.removeAll(keepingCapacity: true)
            }
            try await BodyReader.read(request.body, limits: limits, channel: channel) { piece in
                piece.withUnsafeReadableBytes { raw in
                    sha.update(raw)
                    pending.append(contentsOf: raw)
                }
                written += piece.readableBytes
                if pending.count >= UploadService.bufferSize { try await flush() }
            }
            try await flush()
            guard written == size else { throw HubFailure.bad("the body ended after \(written) of \(size) bytes: nothing was stored") }
            let digest = sha.finalize().hex
            guard digest == oid else {
                throw HubFailure.bad("the bytes sent have SHA-256 \(digest), not the object id \(oid): nothing was stored")
            }
            try await storeObject(repo: repo, oid: oid, source: source)
            return Response(status: .ok)
        } catch let failure as HubFailure {
            return HubAPI.lfsError(failure.status, failure.description)
        } catch {
            return UploadService.error(for: error, hiding: spoolPath)
        }
    }

    /// Stores the spooled file `source`, whose SHA-256 the caller checked is `oid`, as `repo`'s copy
    /// of that LFS object: what a commit's `lfsFile` entry then finds (`HubRepos.locateObject`).
    /// The one way objects arrive, whether by the LFS basic transfer or rebuilt from a Xet shard.
    func storeObject(repo: String, oid: String, source: String) async throws {
        let store = self.store
        try await uploads.gate.run {
            try await RangeService.blocking {
                let model = HubRepos.objectModel(oid)
                let revision = HubRepos.objectRevision(repo: repo)
                if (try? store.catalog.resolve(model: model, revision: revision)) != nil { return }
                do {
                    _ = try store.put(model: model, revision: revision, inputs: [PutInput(source: source, path: "object")], base: .automatic)
                } catch StoreError.revisionExists {
                    // Stored meanwhile by another upload of the same object: the same bytes.
                }
            }
        }
    }

    /// `GET /{repo}.git/info/lfs/objects/{oid}/{size}` (signed).
    func lfsDownload(repo: String, oid: String, size: Int, request: Request) async -> Response {
        guard signer.check("download", repo: repo, oid: oid, size: size, request: request) else {
            return HubAPI.lfsError(.forbidden, "this download URL is not valid (expired or altered): ask the batch API again")
        }
        let repos = self.repos
        let reader = self.reader
        do {
            let file = try await RangeService.blocking { () -> FileReader in
                guard let located = try repos.locateObject(repo: repo, oid: oid), located.file.size == size else {
                    throw HubFailure(status: .notFound, description: "Object does not exist")
                }
                return try reader.open(model: located.record.model, revision: located.record.revision, path: located.file.path)
            }
            return await ranges.serve(file: file, commit: nil, request: request)
        } catch let failure as HubFailure {
            return HubAPI.lfsError(failure.status, failure.description)
        } catch {
            return RangeService.error(for: error)
        }
    }

    /// `POST /{repo}.git/info/lfs/verify` (signed): 200 when the object is stored with its size.
    func lfsVerify(repo: String, request: Request, body: [UInt8]) async throws -> Response {
        guard let root = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any],
              let oid = root["oid"] as? String, let size = root["size"] as? Int else {
            return HubAPI.lfsError(.unprocessableContent, "expected {\"oid\", \"size\"}")
        }
        guard signer.check("verify", repo: repo, oid: oid, size: size, request: request) else {
            return HubAPI.lfsError(.forbidden, "this verify URL is not valid (expired or altered): ask the batch API again")
        }
        let repos = self.repos
        let located = try await RangeService.blocking { try repos.locateObject(repo: repo, oid: oid) }
        guard let located, located.file.size == size else { return HubAPI.lfsError(.notFound, "Object does not exist") }
        return HubAPI.json(["oid": oid, "size": size], contentType: HubAPI.lfsContentType)
    }
}
