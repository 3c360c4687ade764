import Foundation
import TenPakChunkStore
@testable import TenPakDistributed
import TenPakFormat
import TenPakLFS
import TenPakModelStore
import TenPakStoreLocation
import TenPakTestSupport
import XCTest

/// Real git and git-lfs moving a model repository through `tpstore lfs-agent`: push, clone, pull,
/// concurrent agents, and a damaged store. HOME is a temporary directory and the system git config
/// is ignored, so nothing here reads or changes the machine's git setup.
class LFSGitTests: XCTestCase {
    var root = ""
    var home = ""
    var store = ""
    var remote = ""

    override func setUpWithError() throws {
        root = TestSupport.temporaryDirectory(self, "lfsgit")
        home = root + "/home"
        store = root + "/store"
        remote = root + "/remote.git"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: TestSupport.tpstore), "build tpstore first (swift build)")
        sandbox = try GitSandbox(home: home, environment: ["TPSTORE_DIR": root + "/not-this-store"])
        try git(["init", "--bare", "-q", remote], cwd: root)
    }

    var sandbox: GitSandbox?
    var environment: [String: String] { sandbox?.environment ?? [:] }

    @discardableResult
    func git(_ args: [String], cwd: String, env: [String: String] = [:], allowFailure: Bool = false,
             file: StaticString = #filePath, line: UInt = #line) throws -> TestSupport.RunResult {
        guard let sandbox else { throw CancellationError() }
        return try sandbox.git(args, cwd: cwd, env: env, allowFailure: allowFailure, file: file, line: line)
    }

    func tpstore(_ args: [String], cwd: String) throws -> TestSupport.RunResult {
        try TestSupport.run(TestSupport.tpstore, args, environment: environment, cwd: cwd)
    }

    /// `git clone -c ...` lines that configure the agent for one clone.
    var agentConfig: [String] {
        GitLFSConfig.entries(executable: TestSupport.tpstore, storeDirectory: store).flatMap { ["-c", "\($0.key)=\($0.value)"] }
    }

    static func oid(_ path: String) throws -> String { Hashing.sha256(try TestSupport.read(path)).hex }

    func assertSameFiles(_ directory: String, as fixture: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = TestSupport.files(under: fixture)
        let actual = TestSupport.files(under: directory).filter { !$0.hasPrefix(".git/") && $0 != ".gitattributes" }
        XCTAssertEqual(actual, expected, file: file, line: line)
        for path in expected {
            XCTAssertEqual(try TestSupport.read(directory + "/" + path), try TestSupport.read(fixture + "/" + path),
                           "\(path) is not bit-identical", file: file, line: line)
        }
    }

    func copyModel(_ fixture: String, into work: String) throws {
        for path in TestSupport.files(under: fixture) {
            try TestSupport.write(try TestSupport.read(fixture + "/" + path), to: work + "/" + path)
        }
    }

    /// Makes a work repository tracking *.safetensors with LFS, the agent installed by
    /// `tpstore lfs-install`, and `origin` = the bare remote.
    func makeWorkRepository() throws -> String {
        let work = root + "/work"
        try git(["init", "-q", work], cwd: root)
        try git(["lfs", "track", "*.safetensors"], cwd: work)
        let r = try tpstore(["lfs-install", "--store", store], cwd: work)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("lfs.standalonetransferagent tpstore"), r.stdout)
        XCTAssertEqual(try git(["config", "lfs.customtransfer.tpstore.args"], cwd: work).stdout,
                       "lfs-agent --store \(store)\n")
        try git(["remote", "add", "origin", "file://" + remote], cwd: work)
        return work
    }

    func testPushCloneAndPullAModelAndItsFineTuneThroughTheStore() throws {
        let baseDir = TestSupport.fixtures + "/models/tiny-base", ftDir = TestSupport.fixtures + "/models/tiny-ft"
        let baseOid = try Self.oid(baseDir + "/model.safetensors"), ftOid = try Self.oid(ftDir + "/model.safetensors")
        let work = try makeWorkRepository()
        try copyModel(baseDir, into: work)
        try git(["add", "-A"], cwd: work)
        try git(["commit", "-q", "-m", "tiny-base"], cwd: work)
        try git(["push", "-q", "origin", "main"], cwd: work)
        try copyModel(ftDir, into: work)
        try git(["commit", "-q", "-am", "fine-tune"], cwd: work)
        try git(["push", "-q", "origin", "main"], cwd: work)
        XCTAssertFalse(FileManager.default.fileExists(atPath: remote + "/lfs/objects"), "objects went to the store, not the remote")

        // The store holds both objects; the fine-tune as deltas against the base, found automatically.
        let models = try StoreLocation.open(store)
        let ft = try models.catalog.resolve(model: "lfs/" + ftOid, revision: "o")
        XCTAssertEqual(ft.baseModel, "lfs/" + baseOid)
        let show = try tpstore(["show", "--store", store, "--json", "lfs/\(ftOid)@o"], cwd: root)
        let json = try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any]
        let object = try XCTUnwrap((json?["files"] as? [[String: Any]])?.first)
        XCTAssertEqual(object["path"] as? String, "object")
        XCTAssertEqual(object["sha256"] as? String, ftOid)
        XCTAssertGreaterThan(object["deltaChunks"] as? Int ?? 0, 0, show.stdout)
        XCTAssertLessThan(object["storedBytes"] as? Int ?? .max, (object["size"] as? Int ?? 0) * 3 / 4, "the delta must pay: \(show.stdout)")

        // 1. A clone with the agent given on the command line: smudge downloads through it.
        let clone = root + "/clone"
        try git(["clone", "-q"] + agentConfig + ["-c", "lfs.concurrenttransfers=4", "file://" + remote, clone], cwd: root)
        try assertSameFiles(clone, as: ftDir)
        let fsck = try git(["lfs", "fsck"], cwd: clone)
        XCTAssertTrue(fsck.stdout.contains("Git LFS fsck OK"), fsck.stdout + fsck.stderr)
        try git(["checkout", "-q", "HEAD~1"], cwd: clone)
        try assertSameFiles(clone, as: baseDir)

        // 2. Agent configured globally (`lfs-install --global`), clone without smudge, then `git lfs pull`.
        let r = try tpstore(["lfs-install", "--global", "--store", store], cwd: root)
        XCTAssertEqual(r.status, 0, r.stderr)
        let lazy = root + "/lazy"
        try git(["clone", "-q", "file://" + remote, lazy], cwd: root, env: ["GIT_LFS_SKIP_SMUDGE": "1"])
        XCTAssertTrue(String(decoding: try TestSupport.read(lazy + "/model.safetensors"), as: UTF8.self).hasPrefix("version https://git-lfs"))
        try git(["lfs", "pull"], cwd: lazy)
        try assertSameFiles(lazy, as: ftDir)
        XCTAssertTrue(try git(["lfs", "fsck"], cwd: lazy).stdout.contains("Git LFS fsck OK"))
        XCTAssertEqual(TestSupport.files(under: lazy + "/.git/lfs/tmp").filter { $0.contains("tpstore") }, [],
                       "no temporary files of the agent left in .git/lfs/tmp")
    }

    func testConcurrentAgentsOnOneStoreStayCorrect() throws {
        let work = try makeWorkRepository()
        try git(["config", "lfs.concurrenttransfers", "4"], cwd: work)
        try git(["lfs", "track", "*.bin"], cwd: work)
        var random = TestSupport.Random(seed: 0x1F5)
        var expected: [String: [UInt8]] = [:]
        for i in 0 ..< 12 {
            let bytes = random.bytes(40_000 + random.int(0 ..< 200_000))
            expected["blob\(i).bin"] = bytes
            try TestSupport.write(bytes, to: work + "/blob\(i).bin")
        }
        try copyModel(TestSupport.fixtures + "/models/tiny-ft", into: work)
        try git(["add", "-A"], cwd: work)
        try git(["commit", "-q", "-m", "many objects"], cwd: work)
        let push = try git(["push", "origin", "main"], cwd: work, env: ["GIT_TRACE": "1"])
        // git-lfs traces one `exec: sh -c '<tpstore> lfs-agent ...'` per agent process it starts.
        let workers = push.stderr.split(separator: "\n").filter { $0.contains("trace git-lfs: exec: sh") && $0.contains("lfs-agent") }
        XCTAssertGreaterThan(workers.count, 1, "several agent processes: \(workers)")
        let revisions = try StoreLocation.open(store).revisions().filter { $0.model.hasPrefix("lfs/") }
        XCTAssertEqual(revisions.count, 13)

        let clone = root + "/clone"
        try git(["clone", "-q"] + agentConfig + ["-c", "lfs.concurrenttransfers=4", "file://" + remote, clone], cwd: root,
                env: ["GIT_LFS_SKIP_SMUDGE": "1"])
        try git(["lfs", "pull"], cwd: clone)
        for (name, bytes) in expected {
            XCTAssertEqual(try TestSupport.read(clone + "/" + name), bytes, name)
        }
        XCTAssertEqual(try TestSupport.read(clone + "/model.safetensors"),
                       try TestSupport.read(TestSupport.fixtures + "/models/tiny-ft/model.safetensors"))
        XCTAssertTrue(try git(["lfs", "fsck"], cwd: clone).stdout.contains("Git LFS fsck OK"))
    }

    func testDamagedStoreFailsTheDownloadInsteadOfReturningWrongBytes() throws {
        let baseDir = TestSupport.fixtures + "/models/tiny-base"
        let oid = try Self.oid(baseDir + "/model.safetensors")
        let work = try makeWorkRepository()
        try copyModel(baseDir, into: work)
        try git(["add", "-A"], cwd: work)
        try git(["commit", "-q", "-m", "tiny-base"], cwd: work)
        try git(["push", "-q", "origin", "main"], cwd: work)
        try damageBiggestPack()

        let clone = root + "/clone"
        try git(["clone", "-q"] + agentConfig + ["file://" + remote, clone], cwd: root, env: ["GIT_LFS_SKIP_SMUDGE": "1"])
        let pull = try git(["lfs", "pull"], cwd: clone, allowFailure: true)
        XCTAssertNotEqual(pull.status, 0)
        XCTAssertTrue(pull.stderr.contains(oid) && pull.stderr.contains("damaged"), pull.stderr)
        XCTAssertTrue(String(decoding: try TestSupport.read(clone + "/model.safetensors"), as: UTF8.self).hasPrefix("version https://git-lfs"),
                      "the working file stays a pointer")
        XCTAssertFalse(TestSupport.files(under: clone + "/.git/lfs/objects").contains { $0.hasSuffix(oid) }, "no object accepted")
        XCTAssertEqual(TestSupport.files(under: clone + "/.git/lfs/tmp").filter { $0.contains("tpstore") }, [], "no partial download left")
    }

    /// Flips one byte in the middle of the biggest pack: inside some chunk's frame.
    func damageBiggestPack() throws {
        let packs = TestSupport.files(under: store + "/packs").map { store + "/packs/" + $0 }
        let pack = try XCTUnwrap(packs.max { (try? TestSupport.read($0).count) ?? 0 < (try? TestSupport.read($1).count) ?? 0 })
        var bytes = try TestSupport.read(pack)
        bytes[bytes.count / 2] ^= 0x20
        try TestSupport.write(bytes, to: pack)
    }
}

/// The same git and git-lfs sessions with the agent on a distributed store (packs in SeaweedFS's
/// S3, catalog in PostgreSQL): `--store` names its config file.
final class LFSGitDistributedTests: LFSGitTests {
    override func setUpWithError() throws {
        try super.setUpWithError()
        store = try DistributedServices.makeStoreConfig(self)
    }

    override func testPushCloneAndPullAModelAndItsFineTuneThroughTheStore() throws {
        try super.testPushCloneAndPullAModelAndItsFineTuneThroughTheStore()
    }

    override func testConcurrentAgentsOnOneStoreStayCorrect() throws {
        try super.testConcurrentAgentsOnOneStoreStayCorrect()
    }

    override func testDamagedStoreFailsTheDownloadInsteadOfReturningWrongBytes() throws {
        try super.testDamagedStoreFailsTheDownloadInsteadOfReturningWrongBytes()
    }

    /// The same flip, in the bucket: read the object, change a byte, write it back.
    override func damageBiggestPack() throws {
        let config = try DistributedConfig.load(path: store)
        let s3 = try S3Client(config: config.s3)
        var biggest: (key: String, bytes: [UInt8])?
        for key in try s3.list(prefix: "packs/") {
            let bytes = try XCTUnwrap(try s3.get(key: key))
            if bytes.count > biggest?.bytes.count ?? -1 { biggest = (key, bytes) }
        }
        var (key, bytes) = try XCTUnwrap(biggest)
        bytes[bytes.count / 2] ^= 0x20
        try s3.put(key: key, body: bytes)
    }
}
