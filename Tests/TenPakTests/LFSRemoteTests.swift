import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakLFS
import TenPakModelStore
import TenPakTestSupport
import TenPakTransfer
import XCTest

/// Real git and git-lfs with `tpstore lfs-agent --remote` against `tpstore serve --auth` (SPEC
/// §15.5, §19.3 objects routes): a clone of a fine-tune whose base an earlier clone fetched moves
/// about its delta, a push sends only the frames the server lacks, and a server that is down or
/// refuses the token fails the transfer with a clear error and commits nothing.
final class LFSRemoteTests: XCTestCase {
    var root = ""
    var home = ""
    var serverStore = ""
    var authFile = ""
    var url = ""
    var host = ""
    let writeToken = "tp_write_0123456789abcdef"
    let readToken = "tp_read_0123456789abcdef"

    override func setUpWithError() throws {
        root = TestSupport.temporaryDirectory(self, "lfsremote")
        home = root + "/home"
        serverStore = root + "/server"
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["init", "--store", serverStore]).status, 0)
        authFile = root + "/auth.json"
        try TestSupport.write(Array("""
            {"tokens": [{"token": "\(writeToken)", "name": "writer", "read": ["org/*"], "write": ["org/*"]},
                        {"token": "\(readToken)", "name": "reader", "read": ["org/*"]}]}
            """.utf8), to: authFile)
        url = try TestSupport.startServer(self, store: serverStore, extra: ["--auth", authFile])
        host = String(url.dropFirst("http://".count))
        sandbox = try GitSandbox(home: home, environment: [
            "XDG_CACHE_HOME": home + "/.cache", "TPSTORE_DIR": root + "/not-this-store", "TPSTORE_TOKEN": "",
        ])
    }

    var sandbox: GitSandbox?
    var environment: [String: String] { sandbox?.environment ?? [:] }

    @discardableResult
    func git(_ args: [String], cwd: String, env: [String: String] = [:], allowFailure: Bool = false,
             file: StaticString = #filePath, line: UInt = #line) throws -> TestSupport.RunResult {
        guard let sandbox else { throw CancellationError() }
        return try sandbox.git(args, cwd: cwd, env: env, allowFailure: allowFailure, file: file, line: line)
    }

    @discardableResult
    func tp(_ args: [String], cwd: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> TestSupport.RunResult {
        let r = try TestSupport.run(TestSupport.tpstore, args, environment: environment, cwd: cwd)
        XCTAssertEqual(r.status, 0, "tpstore \(args.joined(separator: " ")): \(r.stdout)\n\(r.stderr)", file: file, line: line)
        return r
    }

    func packBytes(_ store: String) throws -> Int {
        let r = try tp(["stats", "--store", store, "--json"])
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        return try XCTUnwrap(json["packBytes"] as? Int)
    }

    /// Body bytes of the transfer routes both ways, from the server's own counters (section 14.6).
    func transferBytes() throws -> Int {
        let r = try TestSupport.curl(self, [url + "/metrics"])
        var total = 0
        for line in String(decoding: r.body, as: UTF8.self).split(separator: "\n")
        where line.hasPrefix("tpstore_http_response_bytes_total{route=\"transfer\"}") || line.hasPrefix("tpstore_http_request_bytes_total{route=\"transfer\"}") {
            total += Int(Double(line.split(separator: " ").last ?? "") ?? 0)
        }
        return total
    }

    /// Three model directories: a base, a fine-tune of it, and another fine-tune (F32, every value
    /// nudged), each `model.safetensors` (LFS) and `config.json` (plain git).
    func makeModels() throws -> [String] {
        let elements = 512 << 10
        var builders = [SafetensorsBuilder(), SafetensorsBuilder(), SafetensorsBuilder()]
        for t in 0 ..< 6 {
            let data = SafetensorsBuilder.f32(elements, seed: UInt64(t + 1))
            builders[0].add("layer.\(t).weight", "F32", [elements / 512, 512], data)
            builders[1].add("layer.\(t).weight", "F32", [elements / 512, 512], SafetensorsBuilder.nudge(data, seed: UInt64(100 + t)))
            builders[2].add("layer.\(t).weight", "F32", [elements / 512, 512], SafetensorsBuilder.nudge(data, seed: UInt64(200 + t)))
        }
        return try ["base", "ft", "ft2"].enumerated().map { i, name in
            let dir = root + "/models/" + name
            try TestSupport.write(builders[i].bytes(), to: dir + "/model.safetensors")
            try TestSupport.write(Array("{\"name\": \"\(name)\"}\n".utf8), to: dir + "/config.json")
            return dir
        }
    }

    /// A work repository holding `model` (safetensors through LFS), committed, with `origin` a new bare repository.
    func commitModel(_ model: String, as name: String) throws -> (work: String, bare: String) {
        let work = root + "/work-" + name, bare = root + "/" + name + ".git"
        try git(["init", "--bare", "-q", bare], cwd: root)
        try git(["init", "-q", work], cwd: root)
        try git(["lfs", "track", "*.safetensors"], cwd: work)
        for file in ["model.safetensors", "config.json"] {
            try TestSupport.write(try TestSupport.read(model + "/" + file), to: work + "/" + file)
        }
        try git(["add", "-A"], cwd: work)
        try git(["commit", "-q", "-m", name], cwd: work)
        try git(["remote", "add", "origin", "file://" + bare], cwd: work)
        return (work, bare)
    }

    /// `git clone -c …` arguments that make git-lfs use the remote agent for `repo`.
    func remoteAgent(_ repo: String, cache: String, server: String? = nil) -> [String] {
        GitLFSConfig.entries(executable: TestSupport.tpstore, remote: (server ?? url) + "/" + repo, cache: cache)
            .flatMap { ["-c", "\($0.key)=\($0.value)"] }
    }

    func assertSame(_ clone: String, _ model: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for name in ["model.safetensors", "config.json"] {
            XCTAssertEqual(try TestSupport.read(clone + "/" + name), try TestSupport.read(model + "/" + name),
                           "\(name) is not bit-identical", file: file, line: line)
        }
    }

    func revisions(_ store: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: store) else { return [] }
        let r = try tp(["ls", "--store", store, "--json"])
        let list = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
        return list.map { "\($0["model"] ?? "")@\($0["revision"] ?? "")" }
    }

    func testCloneOfAFineTuneMovesItsDeltaAndPushSendsOnlyFrames() throws {
        let models = try makeModels()
        let baseOid = Hashing.sha256(try TestSupport.read(models[0] + "/model.safetensors")).hex
        let ft2Oid = Hashing.sha256(try TestSupport.read(models[2] + "/model.safetensors")).hex
        // The server holds org/base and org/ft, uploaded by plain git-lfs through its LFS endpoint
        // (section 14.1): the fine-tune's object is stored as deltas against the base's.
        let base = try commitModel(models[0], as: "base")
        try git(["-c", "lfs.url=http://writer:\(writeToken)@\(host)/org/base.git/info/lfs", "push", "-q", "origin", "main"], cwd: base.work)
        let afterBase = try packBytes(serverStore)
        let ft = try commitModel(models[1], as: "ft")
        try git(["-c", "lfs.url=http://writer:\(writeToken)@\(host)/org/ft.git/info/lfs", "push", "-q", "origin", "main"], cwd: ft.work)
        let ftDelta = try packBytes(serverStore) - afterBase
        let size = try TestSupport.read(models[1] + "/model.safetensors").count
        XCTAssertLessThan(ftDelta, size * 3 / 4, "the server stores the fine-tune as deltas")

        // 1. Clone the base with the remote agent: the cache store fills.
        let cache = root + "/cache"
        let env = ["TPSTORE_TOKEN": readToken]
        try git(["clone", "-q"] + remoteAgent("org/base", cache: cache) + ["file://" + base.bare, root + "/clone-base"], cwd: root, env: env)
        try assertSame(root + "/clone-base", models[0])
        XCTAssertEqual(try revisions(cache), ["lfs/\(baseOid)@\(LFSObjectStore.repositoryRevision("org/base"))"])

        // 2. Clone the fine-tune: only about its delta crosses the wire.
        let before = try transferBytes()
        try git(["clone", "-q"] + remoteAgent("org/ft", cache: cache) + ["file://" + ft.bare, root + "/clone-ft"], cwd: root, env: env)
        let moved = try transferBytes() - before
        try assertSame(root + "/clone-ft", models[1])
        XCTAssertLessThanOrEqual(Double(moved), 1.10 * Double(ftDelta) + 64 * 1024, "clone of the fine-tune moved \(moved) bytes for \(ftDelta) of stored delta")
        XCTAssertGreaterThan(moved, ftDelta / 2, "the delta frames did cross the wire")
        XCTAssertTrue(try git(["lfs", "fsck"], cwd: root + "/clone-ft").stdout.contains("Git LFS fsck OK"))
        XCTAssertEqual(TestSupport.files(under: root + "/clone-ft/.git/lfs/tmp").filter { $0.contains("tpstore") }, [])

        // 3. Push a new fine-tune through the remote agent (installed with `lfs-install --remote`):
        //    it is put into the cache against the base there, and only its delta frames are sent.
        let ft2 = try commitModel(models[2], as: "ft2")
        let install = try tp(["lfs-install", "--remote", url + "/org/ft2", "--cache", cache], cwd: ft2.work)
        XCTAssertTrue(install.stdout.contains("lfs-agent --remote \(url)/org/ft2 --cache \(cache)"), install.stdout)
        XCTAssertEqual(try git(["config", "lfs.customtransfer.tpstore.concurrent"], cwd: ft2.work).stdout, "false\n")
        let cacheBefore = try packBytes(cache), wireBefore = try transferBytes()
        try git(["push", "-q", "origin", "main"], cwd: ft2.work, env: ["TPSTORE_TOKEN": writeToken])
        let pushed = try transferBytes() - wireBefore, ft2Delta = try packBytes(cache) - cacheBefore
        XCTAssertLessThan(ft2Delta, size * 3 / 4, "the cache stored the new fine-tune as deltas against the base")
        XCTAssertLessThanOrEqual(Double(pushed), 1.10 * Double(ft2Delta) + 64 * 1024, "push moved \(pushed) bytes for \(ft2Delta) of delta")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ft2.bare + "/lfs/objects"), "objects went to the server, not the git remote")
        let held = try TestSupport.run(TestSupport.tpstore, ["ls", "--store", serverStore, "--json"]).stdout
        XCTAssertTrue(held.contains(ft2Oid) && held.contains(LFSObjectStore.repositoryRevision("org/ft2")), held)
        // Pushing again moves nothing: the repository holds the object.
        try git(["commit", "-q", "--allow-empty", "-m", "again"], cwd: ft2.work)
        let again = try transferBytes()
        try git(["push", "-q", "origin", "main"], cwd: ft2.work, env: ["TPSTORE_TOKEN": writeToken])
        XCTAssertLessThan(try transferBytes() - again, 64 * 1024)

        // The pushed object reads back bit-exact from an empty cache, and through plain git-lfs.
        try git(["clone", "-q"] + remoteAgent("org/ft2", cache: root + "/cache2") + ["file://" + ft2.bare, root + "/clone-ft2"], cwd: root, env: env)
        try assertSame(root + "/clone-ft2", models[2])
        try git(["-c", "lfs.url=http://reader:\(readToken)@\(host)/org/ft2.git/info/lfs", "clone", "-q", "file://" + ft2.bare, root + "/plain-ft2"], cwd: root)
        try assertSame(root + "/plain-ft2", models[2])
        for store in [cache, root + "/cache2", serverStore] { try tp(["fsck", "--store", store, "--read-data"]) }
    }

    func testServerDownOrWrongTokenFailsClearlyAndCommitsNothing() throws {
        let models = try makeModels()
        let base = try commitModel(models[0], as: "base")
        try git(["-c", "lfs.url=http://writer:\(writeToken)@\(host)/org/base.git/info/lfs", "push", "-q", "origin", "main"], cwd: base.work)
        let cache = root + "/cache"

        // Wrong token, then none: git-lfs reports the server's refusal; the cache holds no revision.
        for (token, words) in [("tp_not_a_token_at_all", "401"), ("", "401")] {
            let r = try git(["clone", "-q"] + remoteAgent("org/base", cache: cache) + ["file://" + base.bare, root + "/clone-\(token.count)"],
                            cwd: root, env: ["TPSTORE_TOKEN": token], allowFailure: true)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(words) && r.stderr.contains("token"), r.stderr)
            XCTAssertEqual(try revisions(cache), [])
        }
        // A token for the repository kept by a git credential helper is used when no other is given.
        try TestSupport.write(Array("http://x:\(readToken)@\(host)\n".utf8), to: home + "/.git-credentials")
        try git(["config", "--global", "credential.helper", "store"], cwd: home)
        try git(["clone", "-q"] + remoteAgent("org/base", cache: cache) + ["file://" + base.bare, root + "/clone-credential"], cwd: root)
        try assertSame(root + "/clone-credential", models[0])
        try git(["config", "--global", "--unset", "credential.helper"], cwd: home)

        // The server is down: a clear error naming it.
        let down = try git(["clone", "-q"] + remoteAgent("org/base", cache: root + "/cache-down", server: "http://127.0.0.1:9")
                           + ["file://" + base.bare, root + "/clone-down"], cwd: root, env: ["TPSTORE_TOKEN": readToken], allowFailure: true)
        XCTAssertNotEqual(down.status, 0)
        XCTAssertTrue(down.stderr.contains("127.0.0.1:9") && down.stderr.contains("502"), down.stderr)
        XCTAssertEqual(try revisions(root + "/cache-down"), [])

        // A push with a read-only token, then to a server that is down: refused, nothing committed there.
        let ft = try commitModel(models[1], as: "ft")
        let ftOid = Hashing.sha256(try TestSupport.read(models[1] + "/model.safetensors")).hex
        try tp(["lfs-install", "--remote", url + "/org/ft", "--cache", cache], cwd: ft.work)
        let refused = try git(["push", "-q", "origin", "main"], cwd: ft.work, env: ["TPSTORE_TOKEN": readToken], allowFailure: true)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("403"), refused.stderr)
        try tp(["lfs-install", "--remote", "http://127.0.0.1:9/org/ft", "--cache", cache], cwd: ft.work)
        let unreachable = try git(["push", "-q", "origin", "main"], cwd: ft.work, env: ["TPSTORE_TOKEN": writeToken], allowFailure: true)
        XCTAssertNotEqual(unreachable.status, 0)
        XCTAssertTrue(unreachable.stderr.contains("502"), unreachable.stderr)
        XCTAssertFalse(try revisions(serverStore).contains { $0.contains(ftOid) }, "nothing of the refused push is committed")
        XCTAssertEqual(try git(["ls-remote", "origin"], cwd: ft.work).stdout, "", "git-lfs stops the push before git sends anything")
        for store in [cache, serverStore] { try tp(["fsck", "--store", store, "--read-data"]) }
    }

    func testObjectRoutesCheckAccessAndTheObject() throws {
        let models = try makeModels()
        try tp(["put", "--store", serverStore, "org/m@v1", models[0]])
        let oid = Hashing.sha256(try TestSupport.read(models[0] + "/model.safetensors")).hex
        let other = String(repeating: "ab", count: 32)
        let prefix = url + "/api/tenpak/v1/org/m/objects/"
        // A file of a commit is an object of its repository: the manifest is that commit's.
        var r = try TestSupport.curl(self, ["-H", "Authorization: Bearer \(readToken)", prefix + oid + "/manifest"])
        XCTAssertEqual(r.status, 200)
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        XCTAssertEqual(manifest["model"] as? String, "org/m")
        XCTAssertEqual(manifest["revision"] as? String, "v1")
        let manifestID = try XCTUnwrap(manifest["manifest"] as? String)
        r = try TestSupport.curl(self, [prefix + oid + "/manifest"])
        XCTAssertEqual(r.status, 401, "anonymous")
        r = try TestSupport.curl(self, ["-H", "Authorization: Bearer \(readToken)", prefix + other + "/manifest"])
        XCTAssertEqual(r.status, 404)
        XCTAssertEqual(r.headers["x-error-code"], "EntryNotFound")
        r = try TestSupport.curl(self, ["-H", "Authorization: Bearer \(readToken)", prefix + "ABC/manifest"])
        XCTAssertEqual(r.status, 404)
        XCTAssertNil(r.headers["x-error-code"], "a malformed route is not a missing object")
        // Frames only of the object's revision.
        let ids = try XCTUnwrap(manifest["chunks"] as? [[String: Any]]).compactMap { $0["id"] as? String }
        r = try TestSupport.curl(self, ["-H", "Authorization: Bearer \(readToken)", "-d", "{\"ids\":[\"\(ids[0])\"]}", prefix + oid + "/frames"])
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(Array(r.body.prefix(4)), Array("TPXB".utf8))
        r = try TestSupport.curl(self, ["-H", "Authorization: Bearer \(readToken)", "-d", "{\"ids\":[\"\(ids[0])\"]}", prefix + other + "/frames"])
        XCTAssertEqual(r.status, 404)
        // Commits: write access, and a manifest that is the object's own.
        let body = "{\"manifest\":\"\(manifestID)\"}"
        r = try TestSupport.curl(self, ["-H", "Authorization: Bearer \(readToken)", "-d", body, prefix + other + "/commit"])
        XCTAssertEqual(r.status, 403)
        r = try TestSupport.curl(self, ["-H", "Authorization: Bearer \(writeToken)", "-d", body, prefix + other + "/commit"])
        XCTAssertEqual(r.status, 400, String(decoding: r.body, as: UTF8.self))
        XCTAssertTrue(String(decoding: r.body, as: UTF8.self).contains("org/m@v1"), String(decoding: r.body, as: UTF8.self))
        r = try TestSupport.curl(self, ["-H", "Authorization: Bearer \(writeToken)", "-d", body, prefix + oid + "/commit"])
        XCTAssertEqual(r.status, 200, "the repository holds the object already")
        XCTAssertEqual(try revisions(serverStore), ["org/m@v1"])

        // Repository URLs the agent takes, and those it refuses.
        XCTAssertEqual(try RemoteLFSObjects.parse(remote: "http://h:8080/org/m.git/info/lfs").repo, "org/m")
        XCTAssertEqual(try RemoteLFSObjects.parse(remote: "http://h:8080/org/m/").server, "http://h:8080")
        for bad in ["http://h:8080", "ftp://h/org/m", "http://u:secret@h/org/m", "http://h/org/m?x=1", "http://h/a/../b"] {
            XCTAssertThrowsError(try RemoteLFSObjects.parse(remote: bad), bad)
        }
    }
}
