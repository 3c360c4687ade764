import Foundation
import TenPakTestSupport
import XCTest

/// The tpstore binary as a user runs it: exit codes, one-line errors, no crash on bad input.
final class CLITests: XCTestCase {
    var store = ""

    override func setUp() {
        store = TestSupport.temporaryDirectory(self, "cli") + "/store"
    }

    func tp(_ args: String..., env: [String: String] = [:]) throws -> TestSupport.RunResult {
        try TestSupport.run(TestSupport.tpstore, args, environment: env)
    }

    func assertCleanFailure(_ r: TestSupport.RunResult, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "stderr: \(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump"), r.stderr, file: file, line: line)
        XCTAssertLessThanOrEqual(r.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage") && !$0.hasPrefix("  See") && !$0.isEmpty }.count, 2,
                                 "a short message, not a dump: \(r.stderr)", file: file, line: line)
    }

    func testPutGetShowStatsLsRmRoundTrip() throws {
        var r = try tp("put", "--store", store, "tiny-base@v1", TestSupport.fixtures + "/models/tiny-base")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("stored tiny-base@v1"))
        r = try tp("put", "tiny-ft", TestSupport.fixtures + "/models/tiny-ft", env: ["TPSTORE_DIR": store])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("base: tiny-base@v1"), r.stdout)
        let revision = try XCTUnwrap(r.stdout.split(separator: "\n").first?.split(separator: "@").last).description
        let out = TestSupport.temporaryDirectory(self, "out")
        r = try tp("get", "--store", store, "tiny-ft@\(revision)", out)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try TestSupport.read(out + "/model.safetensors"), try TestSupport.read(TestSupport.fixtures + "/models/tiny-ft/model.safetensors"))
        r = try tp("show", "--store", store, "tiny-ft", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let show = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let files = try XCTUnwrap(show?["files"] as? [[String: Any]])
        let weights = try XCTUnwrap(files.first { $0["path"] as? String == "model.safetensors" })
        XCTAssertGreaterThan(weights["deltaChunks"] as? Int ?? 0, 0)
        r = try tp("stats", "--store", store, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let stats = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(stats?["revisions"] as? Int, 2)
        r = try tp("ls", "--store", store, "--json")
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [Any])?.count, 2)
        r = try tp("rm", "--store", store, "tiny-base@v1")
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try tp("get", "--store", store, "tiny-ft", TestSupport.temporaryDirectory(self, "out2"))
        XCTAssertEqual(r.status, 0, "a fine-tune stays readable after its base revision is removed: \(r.stderr)")
    }

    func testBadInputGetsOneLineAndNonZeroExit() throws {
        XCTAssertEqual(try tp("init", "--store", store).status, 0)
        assertCleanFailure(try tp("put", "--store", store, "m", "/no/such/file"), mentions: "no such file")
        assertCleanFailure(try tp("put", "--store", store, "../evil", TestSupport.fixtures + "/misc/notes.txt"), mentions: "invalid")
        assertCleanFailure(try tp("get", "--store", store, "nope", TestSupport.temporaryDirectory(self)), mentions: "no model named nope")
        XCTAssertEqual(try tp("put", "--store", store, "m@r1", TestSupport.fixtures + "/misc/notes.txt").status, 0)
        assertCleanFailure(try tp("get", "--store", store, "m@r2", TestSupport.temporaryDirectory(self)), mentions: "no revision r2")
        assertCleanFailure(try tp("put", "--store", store, "m@r1", TestSupport.fixtures + "/misc/notes.txt"), mentions: "already exists")
        assertCleanFailure(try tp("rm", "--store", store, "m"), mentions: "NAME@REV")
        let notStore = TestSupport.temporaryDirectory(self, "plain")
        assertCleanFailure(try tp("ls", "--store", notStore), mentions: "not a TenPak store")
        assertCleanFailure(try tp("put", "--store", store, "m", "--base", "x", "--no-base", TestSupport.fixtures + "/misc/notes.txt"), mentions: "exclude")
    }

    func testPythonSafetensorsLoadsWhatGetReturns() throws {
        let python = try XCTUnwrap(TestSupport.python3(), "python3 is required (Tools/setup.sh installs the oracle)")
        XCTAssertEqual(try tp("put", "--store", store, "tiny-base", TestSupport.fixtures + "/models/tiny-base").status, 0)
        XCTAssertEqual(try tp("put", "--store", store, "tiny-sharded", TestSupport.fixtures + "/models/tiny-sharded").status, 0)
        for (model, dir) in [("tiny-base", "tiny-base"), ("tiny-sharded", "tiny-sharded")] {
            let out = TestSupport.temporaryDirectory(self, "py")
            XCTAssertEqual(try tp("get", "--store", store, model, out).status, 0)
            for file in TestSupport.files(under: out) where file.hasSuffix(".safetensors") {
                let r = try TestSupport.run(python, [TestSupport.root + "/Tools/check_safetensors.py",
                                                     TestSupport.fixtures + "/models/\(dir)/\(file)", out + "/" + file])
                XCTAssertEqual(r.status, 0, "\(file): \(r.stdout) \(r.stderr)")
                XCTAssertTrue(r.stdout.hasPrefix("ok:"))
            }
        }
    }

    /// SIGKILL a put at several moments: the store stays readable, the revision is absent or whole.
    func testKilledPutLeavesTheStoreReadable() throws {
        XCTAssertEqual(try tp("put", "--store", store, "keep@1", TestSupport.fixtures + "/models/tiny-base").status, 0)
        // A 48 MiB file of weight-like bytes takes long enough to be killed mid-way.
        let big = TestSupport.temporaryDirectory(self, "big") + "/model.bin"
        var r = TestSupport.Random(seed: 1)
        var bytes = [UInt8](repeating: 0, count: 48 << 20)
        for i in stride(from: 0, to: bytes.count, by: 8) {
            let v = r.next()
            withUnsafeBytes(of: v & 0x3F3F_FFFF_3F3F_FFFF) { for k in 0 ..< 8 { bytes[i + k] = $0[k] } }
        }
        try TestSupport.write(bytes, to: big)
        for (attempt, delay) in [0.05, 0.2, 0.5, 1.0].enumerated() {
            try TestSupport.killTpstore(["put", "--store", store, "victim@\(attempt)", big], after: delay)
            let out = TestSupport.temporaryDirectory(self, "after")
            let get = try tp("get", "--store", store, "keep@1", out)
            XCTAssertEqual(get.status, 0, get.stderr)
            let victim = try tp("get", "--store", store, "victim@\(attempt)", out + "/victim")
            if victim.status == 0 {
                XCTAssertEqual(try TestSupport.read(out + "/victim/model.bin"), bytes, "a committed revision is whole")
            } else {
                XCTAssertTrue(victim.stderr.contains("no model named victim") || victim.stderr.contains("no revision"), victim.stderr)
            }
        }
        XCTAssertEqual(try tp("put", "--store", store, "after@1", TestSupport.fixtures + "/misc/notes.txt").status, 0, "the store still takes puts")
    }
}
