import Foundation
import TenPakFormat
import TenPakLFS
import TenPakModelStore
import TenPakTestSupport
import XCTest
import TenPakChunkStore

/// The transfer-agent dialogue without git: parsing, event order, answers, and the store behind it.
final class LFSProtocolTests: XCTestCase {
    static let zeroOid = String(repeating: "0", count: 64)

    func testParseRejectsMalformedLinesAndBadOids() {
        let size = #","size":1,"path":"/x"}"#
        let zeroOid = Self.zeroOid
        let cases: [(line: String, code: LFSErrorCode, oid: String?)] = [
            ("not json", .malformedRequest, nil),
            ("[1,2]", .malformedRequest, nil),
            ("\"init\"", .malformedRequest, nil),
            ("{}", .malformedRequest, nil),
            (#"{"event":7}"#, .malformedRequest, nil),
            (#"{"event":"init","operation":"sideways"}"#, .malformedRequest, nil),
            (#"{"event":"fetch"}"#, .unknownEvent, nil),
            (#"{"event":"upload","size":1,"path":"/x"}"#, .malformedRequest, nil),
            (#"{"event":"upload","oid":"\#(String(repeating: "A", count: 64))"\#(size)"#, .badOid, String(repeating: "A", count: 64)),
            (#"{"event":"upload","oid":"abc"\#(size)"#, .badOid, "abc"),
            (#"{"event":"download","oid":"../../../../etc/passwd","size":1}"#, .badOid, "../../../../etc/passwd"),
            (#"{"event":"download","oid":"\#(String(repeating: "g", count: 64))","size":1}"#, .badOid, String(repeating: "g", count: 64)),
            (#"{"event":"download","oid":"\#(zeroOid)"}"#, .malformedRequest, zeroOid),
            (#"{"event":"download","oid":"\#(zeroOid)","size":-1}"#, .malformedRequest, zeroOid),
            (#"{"event":"download","oid":"\#(zeroOid)","size":"12"}"#, .malformedRequest, zeroOid),
            (#"{"event":"download","oid":"\#(zeroOid)","size":1.5}"#, .malformedRequest, zeroOid),
            (#"{"event":"upload","oid":"\#(zeroOid)","size":1}"#, .malformedRequest, zeroOid),
        ]
        for c in cases {
            XCTAssertThrowsError(try LFSRequest.parse(c.line), c.line) { error in
                let e = error as? LFSProtocolError
                XCTAssertEqual(e?.code, c.code, c.line)
                XCTAssertEqual(e?.oid, c.oid, c.line)
            }
        }
        XCTAssertEqual(try LFSRequest.parse(#"{"event":"init","operation":"download","remote":"origin","concurrent":true,"concurrenttransfers":3}"#),
                       .initialize(operation: .download, concurrent: true, concurrentTransfers: 3))
        XCTAssertEqual(try LFSRequest.parse(#"{"event":"download","oid":"\#(Self.zeroOid)","size":21245,"action":null}"#),
                       .download(oid: LFSObjectID(Self.zeroOid)!, size: 21245))
        XCTAssertEqual(try LFSRequest.parse(#"{"event":"terminate"}"#), .terminate)
    }

    func testStateMachineAcceptsOnlyTheProtocolsOrder() throws {
        let oid = LFSObjectID(Self.zeroOid)!
        let up = LFSRequest.upload(oid: oid, size: 0, path: "/x"), down = LFSRequest.download(oid: oid, size: 0)
        let initUp = LFSRequest.initialize(operation: .upload, concurrent: true, concurrentTransfers: 4)
        var state = AgentState.awaitingInit
        XCTAssertThrowsError(try state.transition(on: up))
        XCTAssertThrowsError(try state.transition(on: down))
        XCTAssertEqual(state, .awaitingInit)
        try state.transition(on: initUp)
        XCTAssertEqual(state, .ready(.upload))
        XCTAssertThrowsError(try state.transition(on: initUp), "init twice")
        XCTAssertThrowsError(try state.transition(on: down), "download in an upload session")
        try state.transition(on: up)
        try state.transition(on: up)
        try state.transition(on: .terminate)
        XCTAssertEqual(state, .terminated)
        for request in [up, down, initUp, LFSRequest.terminate] {
            XCTAssertThrowsError(try state.transition(on: request)) { XCTAssertEqual(($0 as? LFSProtocolError)?.code, .outOfOrder) }
        }
        state = .awaitingInit
        try state.transition(on: .terminate)
        XCTAssertEqual(state, .terminated, "terminate after a failed init is fine")
    }

    /// A session driven line by line, collecting the answers.
    final class Session: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        var agent: LFSAgent!

        init(store: String, downloads: String) {
            agent = LFSAgent(storeDirectory: store, downloadDirectory: { downloads }) { [unowned self] line in
                self.lock.lock()
                self.lines.append(line)
                self.lock.unlock()
            }
        }

        /// Sends one line; returns the answers it produced, parsed.
        @discardableResult
        func send(_ line: String) -> [[String: Any]] {
            lock.lock()
            let before = lines.count
            lock.unlock()
            _ = agent.handle(line: line)
            lock.lock()
            defer { lock.unlock() }
            return lines[before...].map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? ["unparsable": $0] }
        }
    }

    static func errorCode(_ answer: [String: Any]?) -> Int? { (answer?["error"] as? [String: Any])?["code"] as? Int }

    func testUploadDownloadSessionAnswersEveryObjectAndSurvivesBadInput() throws {
        let dir = TestSupport.temporaryDirectory(self, "lfsproto")
        let store = dir + "/store", downloads = dir + "/git/lfs/tmp"
        let base = TestSupport.fixtures + "/models/tiny-base/model.safetensors"
        let ft = TestSupport.fixtures + "/models/tiny-ft/model.safetensors"
        let baseOid = Hashing.sha256(try TestSupport.read(base)).hex
        let ftOid = Hashing.sha256(try TestSupport.read(ft)).hex
        let ftSize = try TestSupport.read(ft).count
        let baseSize = try TestSupport.read(base).count

        let up = Session(store: store, downloads: downloads)
        var a = up.send(#"{"event":"upload","oid":"\#(baseOid)","size":\#(baseSize),"path":"\#(base)"}"#)
        XCTAssertEqual(a.count, 1)
        XCTAssertEqual(a.first?["event"] as? String, "complete")
        XCTAssertEqual(a.first?["oid"] as? String, baseOid)
        XCTAssertEqual(Self.errorCode(a.first), LFSErrorCode.outOfOrder.rawValue, "upload before init")
        XCTAssertFalse(FileManager.default.fileExists(atPath: store), "nothing written before init")
        XCTAssertEqual(up.send(#"{"event":"init","operation":"upload","concurrent":true,"concurrenttransfers":4}"#).first?.isEmpty, true)
        XCTAssertEqual(Self.errorCode(up.send("{garbage").first), LFSErrorCode.malformedRequest.rawValue)
        XCTAssertEqual(Self.errorCode(up.send(#"{"event":"init","operation":"upload"}"#).first), LFSErrorCode.outOfOrder.rawValue)
        XCTAssertEqual(Self.errorCode(up.send(#"{"event":"download","oid":"\#(baseOid)","size":1}"#).first), LFSErrorCode.outOfOrder.rawValue)
        XCTAssertEqual(Self.errorCode(up.send(#"{"event":"upload","oid":"../\#(baseOid.dropFirst(3))","size":1,"path":"\#(base)"}"#).first),
                       LFSErrorCode.badOid.rawValue)
        // The content does not hash to the oid it is offered under: refused, nothing stored.
        a = up.send(#"{"event":"upload","oid":"\#(ftOid)","size":\#(baseSize),"path":"\#(base)"}"#)
        XCTAssertEqual(Self.errorCode(a.last), LFSErrorCode.contentMismatch.rawValue, "\(a)")
        XCTAssertEqual(a.last?["oid"] as? String, ftOid)
        let models = try ModelStore.open(directory: store)
        XCTAssertThrowsError(try models.catalog.resolve(model: "lfs/" + ftOid, revision: "o"))
        XCTAssertEqual(Self.errorCode(up.send(#"{"event":"upload","oid":"\#(baseOid)","size":5,"path":"\#(base)"}"#).last),
                       LFSErrorCode.contentMismatch.rawValue, "size mismatch")
        // Good uploads: progress ending on the size, then complete without error.
        for (oid, size, path) in [(baseOid, baseSize, base), (ftOid, ftSize, ft), (baseOid, baseSize, base)] {
            a = up.send(#"{"event":"upload","oid":"\#(oid)","size":\#(size),"path":"\#(path)","action":null}"#)
            XCTAssertEqual(a.last?["event"] as? String, "complete")
            XCTAssertNil(a.last?["error"], "\(a)")
            let progress = a.dropLast()
            XCTAssertFalse(progress.isEmpty)
            XCTAssertTrue(progress.allSatisfy { $0["event"] as? String == "progress" && $0["oid"] as? String == oid })
            XCTAssertEqual(progress.last?["bytesSoFar"] as? Int, size)
            XCTAssertEqual(progress.reduce(0) { $0 + ($1["bytesSinceLast"] as? Int ?? 0) }, size)
        }
        XCTAssertTrue(up.send(#"{"event":"terminate"}"#).isEmpty)
        XCTAssertEqual(up.agent.state, .terminated)
        let ftRecord = try models.catalog.resolve(model: "lfs/" + ftOid, revision: "o")
        XCTAssertEqual(ftRecord.baseModel, "lfs/" + baseOid, "the fine-tune found its base automatically")
        let file = try XCTUnwrap(try models.catalog.files(revision: ftRecord).first)
        XCTAssertEqual(file.path, "object")
        XCTAssertGreaterThan(try models.catalog.storedBytes(file: file).delta, 0)

        let down = Session(store: store, downloads: downloads)
        XCTAssertEqual(down.send(#"{"event":"init","operation":"download","concurrent":false,"concurrenttransfers":1}"#).first?.isEmpty, true)
        XCTAssertEqual(Self.errorCode(down.send(#"{"event":"download","oid":"\#(Self.zeroOid)","size":3}"#).last), LFSErrorCode.notFound.rawValue)
        a = down.send(#"{"event":"download","oid":"\#(ftOid)","size":\#(ftSize),"action":null}"#)
        XCTAssertNil(a.last?["error"], "\(a)")
        let path = try XCTUnwrap(a.last?["path"] as? String)
        XCTAssertTrue(path.hasPrefix(downloads + "/"), path)
        XCTAssertEqual(try TestSupport.read(path), try TestSupport.read(ft))
        XCTAssertEqual(a.dropLast().last?["bytesSoFar"] as? Int, ftSize)
        XCTAssertEqual(TestSupport.files(under: downloads).count, 1, "no partial files left behind")
        XCTAssertFalse(down.agent.handle(line: #"{"event":"terminate"}"#))
    }

    func testInitFailsCleanlyWithoutAStoreToDownloadFrom() throws {
        let dir = TestSupport.temporaryDirectory(self, "lfsnostore")
        let s = Session(store: dir + "/missing", downloads: dir + "/tmp")
        let a = s.send(#"{"event":"init","operation":"download","concurrent":false,"concurrenttransfers":1}"#)
        XCTAssertEqual(Self.errorCode(a.first), LFSErrorCode.storeFailure.rawValue)
        XCTAssertEqual(s.agent.state, .awaitingInit)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/missing"), "a download session never creates a store")
    }

    /// The binary over pipes: garbage in, one JSON answer per line out, exit 0, no crash.
    func testAgentBinaryAnswersGarbageWithProtocolErrors() throws {
        let dir = TestSupport.temporaryDirectory(self, "lfsbin")
        let input = [
            "\u{0}\u{1}binary junk", "{\"event\":", #"{"event":"upload","oid":"zz","size":1,"path":"/etc/passwd"}"#,
            #"{"event":"init","operation":"upload","concurrent":true,"concurrenttransfers":2}"#,
            #"{"event":"upload","oid":"\#(Self.zeroOid)","size":1,"path":"/nonexistent"}"#,
            #"{"event":"upload","oid":"\#(Self.zeroOid)","size":11,"path":"/etc/hostname\u0000x"}"#,
            #"{"event":"nope"}"#, #"{"event":"terminate"}"#, "ignored after terminate",
        ].joined(separator: "\n") + "\n"
        let r = try runWithInput(TestSupport.tpstore, ["lfs-agent", "--store", dir + "/store"], input: input)
        XCTAssertEqual(r.status, 0, r.stderr)
        let answers = r.stdout.split(separator: "\n").map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        XCTAssertEqual(answers.count, 7, r.stdout)
        XCTAssertTrue(answers.allSatisfy { $0 != nil }, r.stdout)
        let codes = answers.map { Self.errorCode($0 ?? [:]) }
        XCTAssertEqual(codes, [400, 400, 422, nil, 400, 400, 501], r.stdout)
        XCTAssertEqual(TestSupport.files(under: dir + "/store").filter { $0.hasPrefix("packs/") }, [], "nothing stored")
    }

    /// git-lfs runs `'<path>' <args>` through `sh -c`: a store path with spaces or quotes must
    /// reach the agent as one argument.
    func testInstallQuotesTheStorePathForTheShell() throws {
        for path in ["/srv/tenpak", "/tmp/my store", "/tmp/it's here", "/tmp/$HOME `x` \\ \"q\""] {
            let args = try XCTUnwrap(GitLFSConfig.entries(executable: "/bin/tpstore", storeDirectory: path).first { $0.key.hasSuffix(".args") }).value
            let r = try TestSupport.run("/bin/sh", ["-c", "printf '%s\\n' " + args])
            XCTAssertEqual(r.stdout, "lfs-agent\n--store\n\(path)\n", args)
        }
        let dir = TestSupport.temporaryDirectory(self, "lfsinstall")
        let r = try TestSupport.run(TestSupport.tpstore, ["lfs-install", "--store", dir + "/store"],
                                    environment: ["HOME": dir, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CEILING_DIRECTORIES": dir], cwd: dir)
        XCTAssertNotEqual(r.status, 0, "outside a repository without --global")
        XCTAssertTrue(r.stderr.contains("--global"), r.stderr)
    }

    func runWithInput(_ executable: String, _ arguments: [String], input: String) throws -> TestSupport.RunResult {
        try TestSupport.run(executable, arguments, input: input)
    }
}
