import Foundation
import TenPakChunkStore
import TenPakFormat
@testable import TenPakHTTP
import TenPakModelStore
import TenPakTestSupport
import XCTest

/// `tpstore serve --auth FILE` as a hub: the real huggingface_hub client (Tools/hub_client_check.py),
/// real git + git-lfs through `lfs.url`, tokens, bad input, and the server-side items of issue 12
/// (slow uploads, spool leftovers, CRLF token files, status before body).
final class HubServerTests: XCTestCase {
    var root = ""
    var store = ""
    var spool = ""
    var authFile = ""
    let writeToken = "hf_write_0123456789abcdef"
    let readToken = "hf_read_0123456789abcdef"

    override func setUpWithError() throws {
        root = TestSupport.temporaryDirectory(self, "hub")
        store = root + "/store"
        spool = root + "/spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["init", "--store", store]).status, 0)
        authFile = root + "/auth.json"
        // CRLF line ends and padded tokens, as a file edited on Windows would have them (issue 12).
        let auth = """
            {"tokens": [{"token": " \(writeToken) ", "name": "writer", "read": ["org/*"], "write": ["org/*"]},\r
                        {"token": "\(readToken)", "read": ["org/*"]}],\r
             "anonymous": {"read": ["public/*"]}}\r

            """
        try TestSupport.write(Array(auth.utf8), to: authFile)
    }

    func server(_ extra: [String] = []) throws -> String {
        try TestSupport.startServer(self, store: store, extra: ["--auth", authFile, "--spool-dir", spool] + extra)
    }

    func curl(_ args: String...) throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        try TestSupport.curl(self, args)
    }

    func text(_ body: [UInt8]) -> String { String(decoding: body, as: UTF8.self) }

    /// Pack bytes and delta chunks of a store (`tpstore stats --json`).
    func stats(_ path: String? = nil) throws -> (packBytes: Int, deltaChunks: Int) {
        let r = try TestSupport.run(TestSupport.tpstore, ["stats", "--store", path ?? store, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        return (try XCTUnwrap(json["packBytes"] as? Int, r.stdout), try XCTUnwrap(json["deltaChunks"] as? Int, r.stdout))
    }

    func storedBytes() throws -> Int { try stats().packBytes }

    /// What `dir` costs stored with no base, in a store of its own: the yardstick for "stored as deltas".
    func noBaseBytes(_ dir: String) throws -> Int {
        let scratch = TestSupport.temporaryDirectory(self, "nobase") + "/store"
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["init", "--store", scratch]).status, 0)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["put", "--store", scratch, "--no-base", "x", dir]).status, 0)
        return try stats(scratch).packBytes
    }

    /// The Python driver with a private HF_HOME; `xet: false` sets HF_HUB_DISABLE_XET=1 (uploads by
    /// LFS), `xet: true` leaves the client as installed (upload_folder uploads through Xet).
    func driver(_ url: String, _ phase: String, work: String, base: String, ft: String, xet: Bool = false) throws -> [[String: Any]] {
        let py = try XCTUnwrap(TestSupport.python3())
        let check = try TestSupport.run(py, ["-c", "import huggingface_hub"])
        guard check.status == 0 else {
            XCTFail("huggingface_hub is not installed: run Tools/setup.sh")
            throw CancellationError()
        }
        var env = ["HF_HOME": work + "/hf-home", "HF_HUB_DISABLE_TELEMETRY": "1",
                   "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_TOKEN": ""]
        env["HF_HUB_DISABLE_XET"] = xet ? "0" : "1"  // explicit: the caller's environment does not decide
        let r = try TestSupport.run(py, [TestSupport.root + "/Tools/hub_client_check.py", url, writeToken, readToken, base, ft, work, phase],
                                    environment: env)
        XCTAssertEqual(r.status, 0, "phase \(phase): \(r.stdout)\n\(r.stderr)")
        return r.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    // MARK: huggingface_hub

    func testHuggingFaceHubUploadsDownloadsAndRefuses() throws {
        let url = try server()
        let work = TestSupport.temporaryDirectory(self, "hf")
        let base = TestSupport.fixtures + "/models/tiny-base", ft = TestSupport.fixtures + "/models/tiny-ft"
        _ = try driver(url, "upload-base", work: work, base: base, ft: ft)
        let afterBase = try storedBytes()
        _ = try driver(url, "upload-ft", work: work, base: base, ft: ft)
        let growth = try storedBytes() - afterBase
        let alone = try noBaseBytes(ft)
        // The fine-tune went in as deltas against the base the put chose on its own: it costs far
        // less than the same files stored with no base (0.62 of it here; 0.38 of the raw size for
        // the F32 corpus pair, see SPEC section 14).
        XCTAssertLessThan(Double(growth), 0.75 * Double(alone), "the fine-tune grew the store by \(growth); alone it takes \(alone)")
        XCTAssertGreaterThan(try stats().deltaChunks, 0)
        let show = try TestSupport.run(TestSupport.tpstore, ["ls", "--store", store, "org/ft", "--json"])
        XCTAssertEqual(show.status, 0, show.stderr)
        _ = try driver(url, "read", work: work, base: base, ft: ft)
        _ = try driver(url, "commit", work: work, base: base, ft: ft)
        let refused = try driver(url, "refuse", work: work, base: base, ft: ft)
        // Unreadable and absent repositories answer alike, for both callers.
        let codes = refused.compactMap { $0["codes"] as? [Int] }
        XCTAssertEqual(codes, [[401, 401, 401], [200, 404, 404]], "\(refused)")

        // `hf download` (the CLI), by commit, into a directory.
        let state = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: work + "/state.json"))) as? [String: String])
        let hf = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/hf" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        if let hf {
            let out = work + "/cli"
            let r = try TestSupport.run(hf, ["download", "org/base", "--revision", try XCTUnwrap(state["org/base"]), "--local-dir", out],
                                        environment: ["HF_ENDPOINT": url, "HF_TOKEN": readToken, "HF_HOME": work + "/hf-cli", "HF_HUB_DISABLE_XET": "1"])
            XCTAssertEqual(r.status, 0, r.stderr)
            for path in TestSupport.files(under: base) {
                XCTAssertEqual(try TestSupport.read(out + "/" + path), try TestSupport.read(base + "/" + path), path)
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spool), [], "every spool directory is removed")
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["fsck", "--store", store, "--read-data"]).status, 0)

        // The access log names the token, never the token itself; /metrics counts the requests.
        let metrics = try curl(url + "/metrics")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(text(metrics.body).contains("tpstore_http_requests_total{route=\"api\",status=\"2xx\"}"), text(metrics.body))
    }

    /// The real pair (all-MiniLM-L6-v2 and its 105-step fine-tune) in the directory TENPAK_HUB_CORPUS
    /// names, laid out by `Tools/fetch_or_make_corpus.sh DIR` (Tools/test.sh does it). A run without
    /// it fails: it never passes by skipping.
    func testCorpusFineTuneUploadedWithHuggingFaceHubIsStoredAsDeltas() throws {
        guard let corpus = ProcessInfo.processInfo.environment["TENPAK_HUB_CORPUS"] else {
            return XCTFail("set TENPAK_HUB_CORPUS to a directory made by Tools/fetch_or_make_corpus.sh (Tools/test.sh does)")
        }
        let url = try server()
        let work = TestSupport.temporaryDirectory(self, "hf")
        let base = corpus + "/minilm-base", ft = corpus + "/minilm-ft105"
        // As the client comes, Xet on (upload_folder uploads through Xet, SPEC 14.9); the tiny
        // models take the LFS path too (testHuggingFaceHubUploadsDownloadsAndRefuses).
        _ = try driver(url, "upload-base", work: work, base: base, ft: ft, xet: true)
        let afterBase = try storedBytes()
        _ = try driver(url, "upload-ft", work: work, base: base, ft: ft, xet: true)
        let growth = try storedBytes() - afterBase
        let model = try TestSupport.read(ft + "/model.safetensors").count
        XCTAssertLessThan(growth, model / 2, "the fine-tune grew the store by \(growth) of its \(model) bytes")
        _ = try driver(url, "read", work: work, base: base, ft: ft, xet: true)
    }

    // MARK: git-lfs

    func testGitLFSPushAndCloneThroughLFSURL() throws {
        let url = try server()
        let home = root + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let env = ["HOME": home, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "XDG_CONFIG_HOME": home + "/.config"]
        func git(_ args: [String], cwd: String) throws -> TestSupport.RunResult {
            let r = try TestSupport.run("/usr/bin/git", args, environment: env, cwd: cwd)
            XCTAssertEqual(r.status, 0, "git \(args.joined(separator: " ")): \(r.stdout)\n\(r.stderr)")
            if r.status != 0 { throw CancellationError() }
            return r
        }
        _ = try git(["config", "--global", "user.name", "T"], cwd: home)
        _ = try git(["config", "--global", "user.email", "t@tenpak.invalid"], cwd: home)
        _ = try git(["config", "--global", "init.defaultBranch", "main"], cwd: home)
        _ = try git(["lfs", "install", "--skip-repo"], cwd: home)
        let remote = root + "/remote.git"
        _ = try git(["init", "--bare", "-q", remote], cwd: root)
        let host = url.replacingOccurrences(of: "http://", with: "")
        let lfsURL = "http://writer:\(writeToken)@\(host)/org/lfs-model.git/info/lfs"
        let work = root + "/work"
        _ = try git(["init", "-q", work], cwd: root)
        _ = try git(["lfs", "track", "*.safetensors"], cwd: work)
        _ = try git(["config", "-f", ".lfsconfig", "lfs.url", lfsURL], cwd: work)
        _ = try git(["remote", "add", "origin", remote], cwd: work)
        let base = TestSupport.fixtures + "/models/tiny-base", ft = TestSupport.fixtures + "/models/tiny-ft"
        for path in TestSupport.files(under: base) { try TestSupport.write(try TestSupport.read(base + "/" + path), to: work + "/" + path) }
        _ = try git(["add", "-A"], cwd: work)
        _ = try git(["commit", "-q", "-m", "base"], cwd: work)
        _ = try git(["push", "-q", "origin", "main"], cwd: work)
        let afterBase = try storedBytes()
        let model = try TestSupport.read(ft + "/model.safetensors")
        try TestSupport.write(model, to: work + "/model.safetensors")
        _ = try git(["commit", "-q", "-am", "fine-tune"], cwd: work)
        _ = try git(["push", "-q", "origin", "main"], cwd: work)
        let growth = try storedBytes() - afterBase
        let single = root + "/single"
        try TestSupport.write(model, to: single + "/model.safetensors")
        let alone = try noBaseBytes(single)
        XCTAssertLessThan(Double(growth), 0.75 * Double(alone), "the fine-tune object grew the store by \(growth); alone it takes \(alone)")
        XCTAssertGreaterThan(try stats().deltaChunks, 0)

        // A clone gets the fine-tune back bit for bit, through the read token this time.
        let clone = root + "/clone"
        let readURL = "http://reader:\(readToken)@\(host)/org/lfs-model.git/info/lfs"
        _ = try git(["-c", "lfs.url=\(readURL)", "clone", "-q", remote, clone], cwd: root)
        XCTAssertEqual(try TestSupport.read(clone + "/model.safetensors"), model)
        _ = try git(["checkout", "-q", "HEAD~1"], cwd: clone)
        XCTAssertEqual(try TestSupport.read(clone + "/model.safetensors"), try TestSupport.read(base + "/model.safetensors"))

        // The read token cannot push; an unknown token gets nothing.
        let oid = Hashing.sha256(model).hex
        let batch = "{\"operation\":\"upload\",\"transfers\":[\"basic\"],\"objects\":[{\"oid\":\"\(String(repeating: "a", count: 64))\",\"size\":3}]}"
        var r = try curl("-u", "x:\(readToken)", "-H", "Content-Type: application/vnd.git-lfs+json", "-d", batch, url + "/org/lfs-model.git/info/lfs/objects/batch")
        XCTAssertEqual(r.status, 403, text(r.body))
        let download = "{\"operation\":\"download\",\"objects\":[{\"oid\":\"\(oid)\",\"size\":\(model.count)}]}"
        r = try curl("-u", "x:not-a-token-at-all", "-d", download, url + "/org/lfs-model.git/info/lfs/objects/batch")
        XCTAssertEqual(r.status, 401)
        r = try curl("-d", download, url + "/org/lfs-model.git/info/lfs/objects/batch")
        XCTAssertEqual(r.status, 401, "anonymous: asked for credentials")
        XCTAssertNotNil(r.headers["lfs-authenticate"])
        // Another repository does not hand out this one's objects.
        r = try curl("-u", "x:\(writeToken)", "-d", download, url + "/org/other.git/info/lfs/objects/batch")
        XCTAssertEqual(r.status, 200)
        XCTAssertTrue(text(r.body).contains("\"code\":404"), text(r.body))
    }

    // MARK: Xet (SPEC 14.9)

    /// The unmodified client: upload_folder goes through Xet (xet-write-token, xorbs, shards), and
    /// what it stores is what the LFS path stores: bit-exact files, the fine-tune as deltas.
    func testHuggingFaceHubUploadsThroughXet() throws {
        let url = try server()
        let work = TestSupport.temporaryDirectory(self, "hfxet")
        let base = TestSupport.fixtures + "/models/tiny-base", ft = TestSupport.fixtures + "/models/tiny-ft"
        _ = try driver(url, "upload-base", work: work, base: base, ft: ft, xet: true)
        let afterBase = try storedBytes()
        _ = try driver(url, "upload-ft", work: work, base: base, ft: ft, xet: true)
        let growth = try storedBytes() - afterBase
        let alone = try noBaseBytes(ft)
        XCTAssertLessThan(Double(growth), 0.75 * Double(alone), "the fine-tune grew the store by \(growth); alone it takes \(alone)")
        XCTAssertGreaterThan(try stats().deltaChunks, 0)
        // The uploads really went through Xet: xorbs and shards were taken, LFS uploads were not.
        let metrics = text(try curl(url + "/metrics").body)
        func count(_ route: String) -> Int? {
            let prefix = "tpstore_http_requests_total{route=\"\(route)\",status=\"2xx\"} "
            return metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) }
        }
        XCTAssertGreaterThanOrEqual(count("xet") ?? 0, 6, metrics)  // two tokens, xorbs and shards
        XCTAssertEqual(count("lfs"), 0, metrics)
        _ = try driver(url, "read", work: work, base: base, ft: ft, xet: true)
        _ = try driver(url, "commit", work: work, base: base, ft: ft, xet: true)
        let refused = try driver(url, "refuse", work: work, base: base, ft: ft, xet: true)
        XCTAssertEqual(refused.compactMap { $0["codes"] as? [Int] }, [[401, 401, 401], [200, 404, 404]], "\(refused)")
        // Request spool directories are gone; only the kept xorbs remain.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spool), [XorbStore.directoryName])
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["fsck", "--store", store, "--read-data"]).status, 0)
    }

    /// A hash string's raw bytes as shards carry them (each 8-byte word little-endian).
    func xetRaw(_ hex: String) -> [UInt8] {
        let bytes = stride(from: 0, to: 64, by: 2).map { UInt8(hex.dropFirst($0).prefix(2), radix: 16) ?? 0 }
        return (0 ..< 4).flatMap { bytes[$0 * 8 ..< $0 * 8 + 8].reversed() }
    }

    func le(_ value: Int, _ count: Int) -> [UInt8] { (0 ..< count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    /// An LZ4 frame (independent blocks, 64 KiB) holding `blocks`, each a raw LZ4 block or, when
    /// `stored`, bytes kept as they are.
    func lz4Frame(_ blocks: [(bytes: [UInt8], stored: Bool)]) -> [UInt8] {
        var out: [UInt8] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x00]
        for block in blocks {
            out += le(block.bytes.count | (block.stored ? 1 << 31 : 0), 4) + block.bytes
        }
        return out + le(0, 4)
    }

    func xorbChunk(_ scheme: UInt8, _ payload: [UInt8], length: Int) -> [UInt8] {
        [0] + le(payload.count, 3) + [scheme] + le(length, 3) + payload
    }

    /// Four byte planes (bytes 0, 1, 2, 3 mod 4), as byte grouping 4 writes them.
    func group4(_ data: [UInt8]) -> [UInt8] { (0 ..< 4).flatMap { g in stride(from: g, to: data.count, by: 4).map { data[$0] } } }

    func xetShard(files: [(sha256: String?, segments: [(xorb: String, start: Int, end: Int, bytes: Int)])]) -> [UInt8] {
        var out = Array("HFRepoMetaData".utf8) + [0, 85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169]
        out += le(2, 8) + le(200, 8)
        for (i, file) in files.enumerated() {
            out += xetRaw(String(repeating: String(i), count: 64)) + le(file.sha256 == nil ? 0 : 1 << 30, 4) + le(file.segments.count, 4) + le(0, 8)
            for segment in file.segments {
                out += xetRaw(segment.xorb) + le(0, 4) + le(segment.bytes, 4) + le(segment.start, 4) + le(segment.end, 4)
            }
            if let sha = file.sha256 { out += xetRaw(sha) + [UInt8](repeating: 0, count: 16) }
        }
        return out + [UInt8](repeating: 0xFF, count: 32) + le(0, 16)
    }

    /// Hand-made xorbs and shards: the three chunk encodings are accepted and the file committed
    /// reads back exactly; damaged ones are 400 and nothing is committed; tokens are checked.
    func testXetUploadsAreCheckedAndBadOnesStoreNothing() throws {
        // A second writer, on other/*, reads nothing of org/*.
        let auth = """
            {"tokens": [{"token": "\(writeToken)", "name": "writer", "read": ["org/*"], "write": ["org/*"]},
                        {"token": "\(readToken)", "read": ["org/*"]},
                        {"token": "hf_other_0123456789abcdef", "name": "other", "write": ["other/*"]},
                        {"token": "hf_second_0123456789abcdef", "name": "second", "write": ["org/*"]}]}
            """
        try TestSupport.write(Array(auth.utf8), to: authFile)
        let url = try server()
        for (token, repo) in [(writeToken, "x"), ("hf_other_0123456789abcdef", "y")] {
            let r = try curl("-H", "Authorization: Bearer \(token)", "-d", "{\"name\":\"\(repo)\",\"organization\":\"\(repo == "x" ? "org" : "other")\"}", url + "/api/repos/create")
            XCTAssertEqual(r.status, 200, text(r.body))
        }
        func xetToken(_ token: String?, _ repo: String) throws -> (status: Int, token: String?) {
            let r = try TestSupport.curl(self, (token.map { ["-H", "Authorization: Bearer \($0)"] } ?? []) + [url + "/api/models/\(repo)/xet-write-token/main"])
            guard r.status == 200 else { return (r.status, nil) }
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
            XCTAssertEqual(json["casUrl"] as? String, url + "/api/xet-cas")
            XCTAssertNotNil(json["exp"] as? Int)
            return (200, json["accessToken"] as? String)
        }
        // Only a writer gets a Xet token.
        XCTAssertEqual(try xetToken(readToken, "org/x").status, 403)
        XCTAssertEqual(try xetToken(nil, "org/x").status, 401)
        XCTAssertEqual(try xetToken("hf_not_a_token_of_this_server", "org/x").status, 401)
        XCTAssertEqual(try xetToken(writeToken, "other/y").status, 404)
        // The browser cookie counts on GET, but never mints a write credential: 401 with the cookie
        // alone, with or without an Authorization header that holds no token.
        for extra in [[String](), ["-H", "Authorization: Bearer "]] {
            let cookie = try TestSupport.curl(self, extra + ["-H", "Cookie: \(WebPages.cookieName)=\(writeToken)", url + "/api/models/org/x/xet-write-token/main"])
            XCTAssertEqual(cookie.status, 401, text(cookie.body))
            XCTAssertTrue(text(cookie.body).contains("Authorization"), text(cookie.body))
        }
        let xet = try XCTUnwrap(try xetToken(writeToken, "org/x").token)
        let otherXet = try XCTUnwrap(try xetToken("hf_other_0123456789abcdef", "other/y").token)
        let secondXet = try XCTUnwrap(try xetToken("hf_second_0123456789abcdef", "org/x").token)
        let cas = url + "/api/xet-cas/v1"
        var n = 0
        func post(_ path: String, _ body: [UInt8], token: String? = nil) throws -> (status: Int, body: String) {
            n += 1
            let file = root + "/body\(n)"
            try TestSupport.write(body, to: file)
            let r = try curl("-H", "Authorization: Bearer \(token ?? xet)", "--data-binary", "@" + file, cas + path)
            return (r.status, text(r.body))
        }

        // Three chunks: stored bytes, LZ4 with a long overlapping match, byte-grouped LZ4.
        let first = Array("tenpak xet chunk: stored as it is\n".utf8)
        let second = Array("abcdefgh".utf8) + Array(repeating: Array("abcdefgh".utf8), count: 40).flatMap { $0 } + Array("XYZ12".utf8)
        // literals "abcdefgh", a match of 320 bytes at offset 8 (4 + 15 + 255 + 46), then 5 literals.
        let block = [0x8F] + Array("abcdefgh".utf8) + [8, 0, 255, 46] + [0x50] + Array("XYZ12".utf8)
        let third = (0 ..< 1001).map { UInt8(truncatingIfNeeded: $0 * 7 / 3) }
        let xorb = xorbChunk(0, first, length: first.count)
            + xorbChunk(1, lz4Frame([(block, false)]), length: second.count)
            + xorbChunk(2, lz4Frame([(Array(group4(third).prefix(500)), true), (Array(group4(third).dropFirst(500)), true)]), length: third.count)
        let content = first + second + third
        var sha = StreamingSHA256()
        sha.update(content)
        let oid = sha.finalize().hex
        let xorbHash = String(repeating: "a1", count: 32)
        var r = try post("/xorbs/default/\(xorbHash)", xorb)
        XCTAssertEqual(r.status, 200, r.body)
        XCTAssertTrue(r.body.contains("\"was_inserted\":true"), r.body)
        r = try post("/xorbs/default/\(xorbHash)", xorb)
        XCTAssertTrue(r.body.contains("\"was_inserted\":false"), r.body)

        // Damaged xorbs are refused when they arrive.
        let badHash = String(repeating: "b2", count: 32)
        XCTAssertEqual(try post("/xorbs/default/\(badHash)", Array(xorb.dropLast(3))).status, 400)
        XCTAssertEqual(try post("/xorbs/default/\(badHash)", [1] + xorb.dropFirst()).status, 400)  // header version 1
        XCTAssertEqual(try post("/xorbs/default/\(badHash)", [], token: xet).status, 400)
        // A xorb whose LZ4 match reaches before the data passes the header check, not a shard.
        let farMatch = xorbChunk(1, lz4Frame([([0x10, 0x61, 9, 0, 0x10, 0x62], false)]), length: 10)
        let farHash = String(repeating: "c3", count: 32)
        XCTAssertEqual(try post("/xorbs/default/\(farHash)", farMatch).status, 200)
        // Empty chunks (either length 0) and more than 8192 chunks are refused and nothing is kept;
        // 8192 chunks are taken.
        let xetDirectory = spool + "/" + XorbStore.directoryName
        func kept(_ hash: String) -> Bool { TestSupport.files(under: xetDirectory).contains { $0.hasSuffix("/" + hash) } }
        let one = xorbChunk(0, [7], length: 1)
        for (i, bad) in [xorbChunk(0, [], length: 0), one + xorbChunk(1, [], length: 5) + one, xorbChunk(1, [0x10, 0x61], length: 0),
                         Array(repeating: one, count: 8193).flatMap { $0 }].enumerated() {
            let hash = String(repeating: String(format: "e%d", i), count: 32)
            r = try post("/xorbs/default/\(hash)", bad)
            XCTAssertEqual(r.status, 400, "xorb \(i): \(r.body)")
            XCTAssertTrue(r.body.contains(i == 3 ? "more than 8192 chunks" : "is empty"), "xorb \(i): \(r.body)")
            XCTAssertFalse(kept(hash), "xorb \(i) was kept")
        }
        let mostHash = String(repeating: "f5", count: 32)
        XCTAssertEqual(try post("/xorbs/default/\(mostHash)", Array(repeating: one, count: 8192).flatMap { $0 }).status, 200)
        XCTAssertTrue(kept(mostHash))
        // The xorb directory and its scopes are this user's alone (0700), the xorbs 0600.
        var info = stat()
        for directory in [xetDirectory] + (try FileManager.default.contentsOfDirectory(atPath: xetDirectory)).map({ xetDirectory + "/" + $0 }) {
            XCTAssertEqual(lstat(directory, &info), 0)
            XCTAssertEqual(info.st_mode & 0o777, 0o700, directory)
        }
        for file in TestSupport.files(under: xetDirectory) {
            XCTAssertEqual(lstat(xetDirectory + "/" + file, &info), 0)
            XCTAssertEqual(info.st_mode & 0o777, 0o600, file)
        }

        let before = try TestSupport.run(TestSupport.tpstore, ["ls", "--store", store]).stdout
        let commitURL = url + "/api/models/org/x/commit/main"
        func commit() throws -> (status: Int, body: String) {
            let body = "{\"key\":\"header\",\"value\":{\"summary\":\"xet\"}}\n{\"key\":\"lfsFile\",\"value\":{\"path\":\"w.bin\",\"algo\":\"sha256\",\"oid\":\"\(oid)\",\"size\":\(content.count)}}\n"
            let r = try curl("-H", "Authorization: Bearer \(writeToken)", "--data-binary", body, commitURL)
            return (r.status, text(r.body))
        }
        let whole = [(xorb: xorbHash, start: 0, end: 3, bytes: content.count)]
        let shards: [(String, [UInt8], String)] = [
            ("wrong SHA-256", xetShard(files: [(String(repeating: "0", count: 64), whole)]), "the shard says"),
            ("unknown xorb", xetShard(files: [(oid, [(String(repeating: "d4", count: 32), 0, 3, content.count)])]), "did not upload"),
            ("chunks past the xorb", xetShard(files: [(oid, [(xorbHash, 0, 4, content.count)])]), "no chunk 3"),
            ("segment bytes differ", xetShard(files: [(oid, [(xorbHash, 0, 3, content.count - 1)])]), "its chunks hold"),
            ("bad LZ4 match", xetShard(files: [(nil, [(farHash, 0, 1, 10)])]), "reaches back"),
            ("truncated", Array(xetShard(files: [(oid, whole)]).dropLast(40)), "only"),
            ("bad tag", [0] + xetShard(files: [(oid, whole)]).dropFirst(), "bad header tag"),
            ("huge segment count", Array(xetShard(files: [(oid, whole)]).prefix(48 + 36)) + le(1 << 30, 4) + le(0, 8), "cannot hold them"),
            ("good file, then a bad one", xetShard(files: [(oid, whole), (String(repeating: "0", count: 64), whole)]), "file 1"),
        ]
        for (name, shard, reason) in shards {
            r = try post("/shards", shard)
            XCTAssertEqual(r.status, 400, "\(name): \(r.body)")
            XCTAssertTrue(r.body.contains(reason), "\(name): \(r.body)")
            XCTAssertFalse(r.body.contains(spool), "\(name): the answer shows the spool path")
            XCTAssertEqual(try commit().status, 400, "\(name): the commit found the object")
        }
        // Another writer cannot use org/x's xorb (it may not read org/x).
        r = try post("/shards", xetShard(files: [(oid, whole)]), token: otherXet)
        XCTAssertEqual(r.status, 400, r.body)
        XCTAssertTrue(r.body.contains("did not upload to other/y"), r.body)
        // Nor can a second writer of org/x: xorbs count for the token that sent them.
        r = try post("/shards", xetShard(files: [(oid, whole)]), token: secondXet)
        XCTAssertEqual(r.status, 400, r.body)
        XCTAssertTrue(r.body.contains("did not upload to org/x"), r.body)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["ls", "--store", store]).stdout, before, "a refused shard stored something")
        // Hub tokens, altered and absent Xet tokens are refused on the CAS routes.
        XCTAssertEqual(try post("/shards", xetShard(files: [(oid, whole)]), token: writeToken).status, 401)
        XCTAssertEqual(try post("/shards", xetShard(files: [(oid, whole)]), token: xet.replacingOccurrences(of: "-6f72672f78-", with: "-6f72672f79-")).status, 401)
        XCTAssertEqual(try post("/shards", xetShard(files: [(oid, whole)]), token: String(xet.dropLast()) + (xet.hasSuffix("0") ? "1" : "0")).status, 401)
        XCTAssertEqual(try curl("--data-binary", "x", cas + "/shards").status, 401)
        // Global dedup offers nothing.
        XCTAssertEqual(try curl("-H", "Authorization: Bearer \(xet)", cas + "/chunks/default-merkledb/\(xorbHash)").status, 404)

        // The good shard: the file is rebuilt, checked, and the commit that names it reads back exactly.
        r = try post("/shards", xetShard(files: [(oid, whole)]))
        XCTAssertEqual(r.status, 200, r.body)
        XCTAssertEqual(r.body, "{\"result\":1}")
        let committed = try commit()
        XCTAssertEqual(committed.status, 200, committed.body)
        let read = try curl("-H", "Authorization: Bearer \(readToken)", url + "/org/x/resolve/main/w.bin")
        XCTAssertEqual(read.status, 200)
        XCTAssertEqual(read.body, content)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spool), [XorbStore.directoryName])
    }

    /// A xorb directory that is a symbolic link (another user could have placed it in a shared
    /// spool) stops the start with a message naming it; `--xet-space-gib` must be positive.
    func testXorbDirectoryThatIsALinkStopsTheStart() throws {
        let elsewhere = TestSupport.temporaryDirectory(self, "xet-elsewhere")
        XCTAssertEqual(symlink(elsewhere, spool + "/" + XorbStore.directoryName), 0)
        XCTAssertThrowsError(try server()) { error in
            XCTAssertTrue("\(error)".contains(XorbStore.directoryName) && "\(error)".contains("symbolic link"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: elsewhere), [])
        try FileManager.default.removeItem(atPath: spool + "/" + XorbStore.directoryName)
        let r = try TestSupport.run(TestSupport.tpstore, ["serve", "--store", store, "--listen", "127.0.0.1:0", "--auth", authFile, "--xet-space-gib", "0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--xet-space-gib"), r.stderr)
        _ = try server(["--xet-space-gib", "1"])
    }

    // MARK: bad input

    func testBadInputIsRefusedAndStoresNothing() throws {
        let url = try server(["--max-upload-mib", "1"])
        let auth = "Authorization: Bearer \(writeToken)"
        var r = try curl("-H", auth, "-H", "Content-Type: application/json", "-d", "{\"name\":\"bad\",\"organization\":\"org\"}", url + "/api/repos/create")
        XCTAssertEqual(r.status, 200, text(r.body))
        let before = try TestSupport.run(TestSupport.tpstore, ["ls", "--store", store]).stdout
        let commitURL = url + "/api/models/org/bad/commit/main"
        let payloads: [(String, String)] = [
            ("not json", "this is not json\n"),
            ("no header", "{\"key\":\"file\",\"value\":{\"path\":\"a.txt\",\"content\":\"YQ==\",\"encoding\":\"base64\"}}\n"),
            ("dot-dot", "{\"key\":\"header\",\"value\":{\"summary\":\"x\"}}\n{\"key\":\"file\",\"value\":{\"path\":\"../escape.txt\",\"content\":\"YQ==\",\"encoding\":\"base64\"}}\n"),
            ("bad base64", "{\"key\":\"header\",\"value\":{\"summary\":\"x\"}}\n{\"key\":\"file\",\"value\":{\"path\":\"a.txt\",\"content\":\"%%%\",\"encoding\":\"base64\"}}\n"),
            ("unknown op", "{\"key\":\"header\",\"value\":{\"summary\":\"x\"}}\n{\"key\":\"rename\",\"value\":{\"path\":\"a.txt\"}}\n"),
            ("lfs never uploaded", "{\"key\":\"header\",\"value\":{\"summary\":\"x\"}}\n{\"key\":\"lfsFile\",\"value\":{\"path\":\"w.bin\",\"algo\":\"sha256\",\"oid\":\"\(String(repeating: "b", count: 64))\",\"size\":5}}\n"),
            ("delete absent", "{\"key\":\"header\",\"value\":{\"summary\":\"x\"}}\n{\"key\":\"deletedFile\",\"value\":{\"path\":\"absent.txt\"}}\n"),
        ]
        for (name, body) in payloads {
            r = try curl("-H", auth, "-H", "Content-Type: application/x-ndjson", "--data-binary", body, commitURL)
            XCTAssertTrue((400 ..< 500).contains(r.status), "\(name): \(r.status) \(text(r.body))")
            XCTAssertFalse(text(r.body).contains(spool), "\(name): the answer shows the spool path")
        }
        // An LFS upload whose bytes do not match its oid.
        let bytes = Array("hello, hub\n".utf8)
        let wrongOid = String(repeating: "c", count: 64)
        let batch = "{\"operation\":\"upload\",\"transfers\":[\"basic\"],\"objects\":[{\"oid\":\"\(wrongOid)\",\"size\":\(bytes.count)}]}"
        r = try curl("-H", auth, "-d", batch, url + "/org/bad.git/info/lfs/objects/batch")
        XCTAssertEqual(r.status, 200, text(r.body))
        let answer = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        let object = try XCTUnwrap((answer["objects"] as? [[String: Any]])?.first)
        let href = try XCTUnwrap(((object["actions"] as? [String: Any])?["upload"] as? [String: Any])?["href"] as? String)
        let file = root + "/hello.txt"
        try TestSupport.write(bytes, to: file)
        r = try curl("-T", file, href)
        XCTAssertEqual(r.status, 400, text(r.body))
        XCTAssertTrue(text(r.body).contains("not the object id"), text(r.body))
        // A forged or altered href is refused.
        r = try curl("-T", file, href.replacingOccurrences(of: "sig=", with: "sig=0"))
        XCTAssertEqual(r.status, 403)
        // An oversized body (over --max-upload-mib), with and without Content-Length.
        let big = root + "/big.bin"
        try TestSupport.write(Array(repeating: 1, count: (1 << 20) + 1), to: big)
        r = try curl("-H", auth, "-H", "Content-Type: application/x-ndjson", "--data-binary", "@" + big, commitURL)
        XCTAssertEqual(r.status, 413, text(r.body))
        let piped = try TestSupport.run("/bin/bash", ["-c", "cat '\(big)' | curl -s -o /dev/null -w '%{http_code}' -H '\(auth)' -T - '\(url)/org/bad/resolve/r1/big.bin'"])
        XCTAssertEqual(piped.stdout, "413")
        // Bad names and paths in URLs.
        r = try curl(url + "/api/models/org/bad/tree/main/..%2Fx")
        XCTAssertEqual(r.status, 400, text(r.body))
        r = try curl("-H", auth, url + "/api/models/org/b%00d")
        XCTAssertEqual(r.status, 400, text(r.body))

        // Nothing stored, nothing spooled, and the server still serves.
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["ls", "--store", store]).stdout, before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spool), [])
        r = try curl("-H", auth, url + "/api/models/org/bad")
        XCTAssertEqual(r.status, 200, text(r.body))
    }

    func testErrorAnswersDoNotShowTheSpoolPath() throws {
        let url = try server()
        let tar = root + "/clash.tar"
        let py = try XCTUnwrap(TestSupport.python3())
        // A file and a directory of one name: the extractor fails on the spooled path.
        let made = try TestSupport.run(py, ["-c", """
            import io, sys, tarfile
            with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
                for name, data in (('notes.txt', b'hi'), ('notes.txt/inner', b'x')):
                    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
            """, tar])
        XCTAssertEqual(made.status, 0, made.stderr)
        let r = try curl("-T", tar, "-H", "Authorization: Bearer \(writeToken)", url + "/org/clash/revisions/r1")
        XCTAssertEqual(r.status, 400, text(r.body))
        XCTAssertTrue(text(r.body).contains("notes.txt/inner"), text(r.body))
        XCTAssertFalse(text(r.body).contains(spool) || text(r.body).contains("tpstore-upload-"), text(r.body))
    }

    func testTokenFilesThatDoNotParseStopTheStart() throws {
        for (name, content) in [("garbage", "{\"tokens\": [ {\"token\": }"), ("short", "{\"tokens\": [{\"token\": \"abc\"}]}"),
                                ("shape", "[1, 2]"), ("anonymous-write", "{\"anonymous\": {\"write\": [\"*\"]}}")] {
            let path = root + "/\(name).json"
            try TestSupport.write(Array(content.utf8), to: path)
            let r = try TestSupport.run(TestSupport.tpstore, ["serve", "--store", store, "--listen", "127.0.0.1:0", "--auth", path])
            XCTAssertNotEqual(r.status, 0, name)
            XCTAssertTrue(r.stderr.contains("--auth"), "\(name): \(r.stderr)")
        }
        // And the tolerant parts: CRLF and padded tokens (the file of setUp) work.
        let policy = try AccessPolicy.load(path: authFile)
        XCTAssertEqual(policy.principal(token: writeToken), .token(0))
        XCTAssertEqual(policy.principal(token: readToken), .token(1))
        XCTAssertEqual(policy.principal(token: "hf_read_0123456789abcdeX"), .unknownToken)
        XCTAssertTrue(policy.canWrite(.token(0), "org/x"))
        XCTAssertFalse(policy.canWrite(.token(1), "org/x"))
        XCTAssertFalse(policy.canRead(.token(1), "org/x/y"), "* does not cross /")
        XCTAssertTrue(policy.canRead(.anonymous, "public/m"))
        XCTAssertTrue(RepoGlob("**").matches("a/b"))
        XCTAssertEqual(AccessControl.token(from: "Basic " + Data("user:\(readToken)".utf8).base64EncodedString()), readToken)
    }

    /// The access log (stderr) of a server used with tokens in every form names them, never shows them.
    func testAccessLogNeverShowsTokens() throws {
        let log = root + "/serve.log"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestSupport.tpstore)
        process.arguments = ["serve", "--store", store, "--listen", "127.0.0.1:0", "--auth", authFile, "--spool-dir", spool]
        let out = Pipe()
        process.standardOutput = out
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let more = out.fileHandleForReading.availableData
            if more.isEmpty { break }
            line += more
        }
        let url = try XCTUnwrap(String(decoding: line, as: UTF8.self).split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines))
        _ = try curl("-H", "Authorization: Bearer \(writeToken)", "-d", "{\"name\":\"logged\",\"organization\":\"org\"}", url + "/api/repos/create")
        _ = try curl("-u", "user:\(readToken)", url + "/api/models/org/logged")
        _ = try curl("-H", "Authorization: Bearer hf_wrong_token_123456", url + "/api/models/org/logged")
        let batch = "{\"operation\":\"upload\",\"objects\":[{\"oid\":\"\(String(repeating: "d", count: 64))\",\"size\":1}]}"
        let r = try curl("-H", "Authorization: Bearer \(writeToken)", "-d", batch, url + "/org/logged.git/info/lfs/objects/batch")
        let signature = text(r.body).components(separatedBy: "sig=").dropFirst().first.map { String($0.prefix(64)) } ?? "no-signature"
        _ = try curl("-T", TestSupport.fixtures + "/misc/notes.txt", text(r.body).components(separatedBy: "\"href\":\"").dropFirst().first?.components(separatedBy: "\"").first ?? url)
        process.terminate()
        process.waitUntilExit()
        let written = text(try TestSupport.read(log))
        XCTAssertTrue(written.contains("POST /api/repos/create 200"), written)
        XCTAssertTrue(written.contains(" writer") && written.contains("token#1") && written.contains("unknown-token"), written)
        for secret in [writeToken, readToken, "hf_wrong_token_123456", signature] {
            XCTAssertFalse(written.contains(secret), "the log shows \(secret)")
        }
        XCTAssertTrue(written.contains("SIGHUP re-reads"), "the start says which access rules apply: \(written)")
    }

    func testUploadTokenFileWithCRLF() throws {
        let tokenFile = root + "/token"
        try TestSupport.write(Array("s3cret-token \r\n".utf8), to: tokenFile)
        let url = try TestSupport.startServer(self, store: store, extra: ["--allow-uploads", "--spool-dir", spool, "--upload-token-file", tokenFile])
        let r = try curl("-T", TestSupport.fixtures + "/misc/notes.txt", "-H", "Authorization: Bearer s3cret-token", url + "/t/resolve/r1/notes.txt")
        XCTAssertEqual(r.status, 201, text(r.body))
    }

    func testSIGHUPRereadsTheTokenFile() throws {
        let url = try server()
        var r = try curl("-H", "Authorization: Bearer hf_later_0123456789", url + "/api/models/org/x")
        XCTAssertEqual(r.status, 401)
        let fresh = "{\"tokens\": [{\"token\": \"hf_later_0123456789\", \"read\": [\"org/*\"]}]}"
        try TestSupport.write(Array(fresh.utf8), to: authFile)
        let pids = try TestSupport.run("/usr/bin/pgrep", ["-f", "--", "--auth \(authFile)"]).stdout.split(separator: "\n").compactMap { Int32($0) }
        XCTAssertEqual(pids.count, 1)
        for pid in pids { kill(pid, SIGHUP) }
        for _ in 0 ..< 50 {
            r = try curl("-H", "Authorization: Bearer hf_later_0123456789", url + "/api/models/org/x")
            if r.status != 401 { break }
            usleep(100_000)
        }
        XCTAssertEqual(r.status, 404, "the new token reads org/*: org/x is absent")
        r = try curl("-H", "Authorization: Bearer \(writeToken)", url + "/api/models/org/x")
        XCTAssertEqual(r.status, 401, "the old token is gone")
        // A broken file on the next SIGHUP keeps the rules in force.
        try TestSupport.write(Array("{ broken".utf8), to: authFile)
        for pid in pids { kill(pid, SIGHUP) }
        usleep(500_000)
        r = try curl("-H", "Authorization: Bearer hf_later_0123456789", url + "/api/models/org/x")
        XCTAssertEqual(r.status, 404)
    }

    // MARK: issue 12: slow uploads, spool leftovers, errors after the head

    func testSlowUploadsLoseTheirSlots() throws {
        let url = try server(["--upload-idle-timeout", "3", "--upload-min-rate", "1000", "--upload-grace", "2"])
        let port = try XCTUnwrap(url.split(separator: ":").last)
        let py = try XCTUnwrap(TestSupport.python3())
        // Four clients: two send 1 byte/s, two send nothing after the head. All four slots are taken.
        let script = """
            import select, socket, sys, time, threading
            port = int(sys.argv[1]); results = [None] * 4
            def slow(i, trickle):
                s = socket.create_connection(('127.0.0.1', port))
                s.sendall(b'PUT /org/slow/resolve/r%d/w.bin HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer \(writeToken)\\r\\nContent-Length: 1000000\\r\\n\\r\\n' % i)
                start = time.time(); answer = b''
                try:
                    while time.time() - start < 25:
                        if select.select([s], [], [], 1.0)[0]:
                            answer = s.recv(200); break
                        if trickle: s.sendall(b'x')
                except OSError:
                    pass
                results[i] = (answer.split(b'\\r\\n')[0].decode() or 'closed') + ' after %d s' % (time.time() - start)
            ts = [threading.Thread(target=slow, args=(i, i < 2)) for i in range(4)]
            [t.start() for t in ts]; [t.join() for t in ts]
            print('\\n'.join(results))
            """
        let started = Date()
        let slow = Process()
        slow.executableURL = URL(fileURLWithPath: py)
        slow.arguments = ["-c", script, String(port)]
        let out = Pipe()
        slow.standardOutput = out
        try slow.run()
        usleep(1_000_000)
        // Meanwhile the slots are full: a fifth upload is told so (503, Retry-After), not "another tpstore".
        var r = try curl("-T", TestSupport.fixtures + "/misc/notes.txt", "-H", "Authorization: Bearer \(writeToken)", url + "/org/fast/resolve/r1/notes.txt")
        XCTAssertEqual(r.status, 503, text(r.body))
        XCTAssertNotNil(r.headers["retry-after"])
        XCTAssertFalse(text(r.body).contains("another tpstore"), text(r.body))
        slow.waitUntilExit()
        let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        for line in lines.prefix(2) { XCTAssertTrue(line.hasPrefix("HTTP/1.1 408"), String(line)) }
        for line in lines.suffix(2) { XCTAssertTrue(line.hasPrefix("closed") || line.hasPrefix("HTTP/1.1 408"), String(line)) }
        XCTAssertLessThan(Date().timeIntervalSince(started), 20, "the slow clients were cut off within seconds")
        // The slots are free again.
        r = try curl("-T", TestSupport.fixtures + "/misc/notes.txt", "-H", "Authorization: Bearer \(writeToken)", url + "/org/fast/resolve/r1/notes.txt")
        XCTAssertEqual(r.status, 201, text(r.body))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spool), [])
    }

    func testHalfSentRequestsAndCutLFSUploadsLeaveNothing() throws {
        let url = try server(["--connection-idle-timeout", "2"])
        let port = try XCTUnwrap(url.split(separator: ":").last)
        let py = try XCTUnwrap(TestSupport.python3())
        // A request head that never ends: the connection is closed after the idle timeout.
        var r = try TestSupport.run(py, ["-c", """
            import socket, sys, time
            s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); s.settimeout(20)
            s.sendall(b'GET /public/x/resolve/main/a HTTP/1.1\\r\\nHost: x\\r\\nX-Slow:')
            start = time.time()
            print('closed' if s.recv(100) == b'' else 'answered', int(time.time() - start))
            """, String(port)])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("closed"), r.stdout)
        XCTAssertLessThan(Int(r.stdout.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "99") ?? 99, 10, r.stdout)

        // An LFS upload cut off half way: nothing stored, nothing spooled, verify says absent.
        let auth = "Authorization: Bearer \(writeToken)"
        var c = try curl("-H", auth, "-d", "{\"name\":\"cut\",\"organization\":\"org\"}", url + "/api/repos/create")
        XCTAssertEqual(c.status, 200, text(c.body))
        let bytes = Array(repeating: UInt8(3), count: 3 << 20)
        let oid = Hashing.sha256(bytes).hex
        let batch = "{\"operation\":\"upload\",\"objects\":[{\"oid\":\"\(oid)\",\"size\":\(bytes.count)}]}"
        c = try curl("-H", auth, "-d", batch, url + "/org/cut.git/info/lfs/objects/batch")
        let answer = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(c.body)) as? [String: Any])
        let actions = try XCTUnwrap((answer["objects"] as? [[String: Any]])?.first?["actions"] as? [String: Any])
        let href = try XCTUnwrap((actions["upload"] as? [String: Any])?["href"] as? String)
        let verify = try XCTUnwrap((actions["verify"] as? [String: Any])?["href"] as? String)
        let target = try XCTUnwrap(href.split(separator: "/", maxSplits: 3).last)
        r = try TestSupport.run(py, ["-c", """
            import socket, sys
            s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
            s.sendall(b'PUT /' + sys.argv[2].encode() + b' HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 3145728\\r\\n\\r\\n')
            try:
                s.sendall(b'\\x03' * (1 << 20))
            except OSError as e:
                print('server closed first:', e)
            s.close()
            """, String(port), String(target)])
        XCTAssertEqual(r.status, 0, r.stderr)
        var spooled = ["?"]
        for _ in 0 ..< 100 {
            spooled = try FileManager.default.contentsOfDirectory(atPath: spool)
            if spooled.isEmpty { break }
            usleep(100_000)
        }
        XCTAssertEqual(spooled, [])
        c = try curl("-d", "{\"oid\":\"\(oid)\",\"size\":\(bytes.count)}", verify)
        XCTAssertEqual(c.status, 404, text(c.body))
        XCTAssertFalse(try TestSupport.run(TestSupport.tpstore, ["ls", "--store", store]).stdout.contains(oid))
    }

    func testGetWhileGcHoldsTheStoreAnswersWholeWithoutWaiting() throws {
        let source = root + "/w.bin"
        var rng = TestSupport.Random(seed: 9)
        try TestSupport.write(rng.bytes(3 << 20), to: source)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["put", "--store", store, "--no-base", "public/g@v1", source]).status, 0)
        let url = try server(["--cache-mib", "0"])
        // A gc stand-in: the exclusive store lock, held until the read is done. Reads take no store
        // lock (SPEC section 13), so the read must finish, whole, while it is still held.
        let models = try ModelStore.open(directory: store)
        let lock = try models.chunks.lock(.exclusive)
        let out = root + "/got.bin"
        // A read that waited for the lock would time out here (curl -m), the lock is never let go first.
        let r = try withExtendedLifetime(lock) {
            try TestSupport.run("/usr/bin/env", ["curl", "-s", "-m", "60", "-o", out, "-w", "%{http_code}", url + "/public/g/resolve/v1/w.bin"])
        }
        XCTAssertEqual(r.stdout, "200", r.stderr)
        XCTAssertEqual(try TestSupport.read(out), try TestSupport.read(source))
    }

    func testSIGTERMLetsAResponseInFlightFinish() throws {
        let source = root + "/s.bin"
        var rng = TestSupport.Random(seed: 11)
        try TestSupport.write(rng.bytes(6 << 20), to: source)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["put", "--store", store, "--no-base", "public/s@v1", source]).status, 0)
        let url = try server()
        let out = root + "/got.bin"
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        curl.arguments = ["curl", "-s", "--limit-rate", "2M", "-o", out, url + "/public/s/resolve/v1/s.bin"]
        try curl.run()
        usleep(1_000_000)
        let pids = try TestSupport.run("/usr/bin/pgrep", ["-f", "--", "--auth \(authFile)"]).stdout.split(separator: "\n").compactMap { Int32($0) }
        XCTAssertEqual(pids.count, 1)
        for pid in pids { kill(pid, SIGTERM) }
        curl.waitUntilExit()
        XCTAssertEqual(curl.terminationStatus, 0, "the download was cut by the shutdown")
        XCTAssertEqual(try TestSupport.read(out), try TestSupport.read(source))
        // And the server is gone: new connections are refused.
        let after = try TestSupport.run("/usr/bin/env", ["curl", "-s", "-o", "/dev/null", url + "/metrics"])
        XCTAssertNotEqual(after.status, 0)
    }

    func testSpoolLeftoversOfACrashedServerAreRemovedAtStart() throws {
        // What a SIGKILLed server leaves: a spool directory with a lock nobody holds.
        let leftover = spool + "/tpstore-upload-0123456789abcdef"
        try FileManager.default.createDirectory(atPath: leftover + "/files", withIntermediateDirectories: true)
        try TestSupport.write(Array(repeating: 9, count: 4096), to: leftover + "/files/part")
        try TestSupport.write([], to: leftover + "/.lock")
        // A live one of another server sharing the spool: its lock is held, so it stays.
        let live = try SpoolDirectory(parent: spool)
        let unrelated = spool + "/not-ours"
        try TestSupport.write([1], to: unrelated)
        _ = try server()
        XCTAssertFalse(FileManager.default.fileExists(atPath: leftover))
        XCTAssertTrue(FileManager.default.fileExists(atPath: live.path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: unrelated))
        live.remove()
    }

    func testDamagedChunkIsAnErrorBeforeTheHeadOrAClosedConnection() throws {
        // A file of several 1 MiB chunks, stored without a base, then one byte of its first and of
        // its last chunk's payload flipped in the pack.
        let source = root + "/w.bin"
        var rng = TestSupport.Random(seed: 7)
        try TestSupport.write(rng.bytes(5 << 20), to: source)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["put", "--store", store, "--no-base", "public/w@v1", source]).status, 0)
        // No cache: every read decodes from the pack.
        let url = try server(["--cache-mib", "0"])
        var r = try curl(url + "/public/w/resolve/v1/w.bin")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, try TestSupport.read(source))
        let models = try ModelStore.open(directory: store)
        let record = try models.catalog.resolve(model: "public/w", revision: "v1")
        let file = try XCTUnwrap(try models.catalog.files(revision: record).first)
        let last = try XCTUnwrap(try models.catalog.fileChunks(file: file).last).location
        let pack = LocalPackDirectory(root: store).path(of: last.pack)
        var bytes = try TestSupport.read(pack)
        bytes[last.frameOffset + last.frameLength - 5] ^= 0xFF  // inside the last chunk's payload
        try TestSupport.write(bytes, to: pack)
        // A range that starts in the damaged chunk: 500 before any body byte.
        r = try curl("-r", "\((5 << 20) - 10)-", url + "/public/w/resolve/v1/w.bin")
        XCTAssertEqual(r.status, 500, text(r.body))
        // A whole-file GET meets the damage after the head: the connection is closed short of
        // Content-Length, so curl fails (exit 18) instead of trusting a short 200.
        let full = try TestSupport.run("/usr/bin/env", ["curl", "-s", "-o", "/dev/null", url + "/public/w/resolve/v1/w.bin"])
        XCTAssertEqual(full.status, 18, "curl exit \(full.status): a truncated body must be visible")
        // The server keeps serving.
        r = try curl("-r", "0-9", url + "/public/w/resolve/v1/w.bin")
        XCTAssertEqual(r.status, 206)
    }
}
