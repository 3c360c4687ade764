import Foundation
import TenPakTestSupport
import XCTest

/// `tpstore cat`, `tpstore tensor` and `tpstore serve` through the binary, as a user runs them.
final class ReadCommandTests: XCTestCase {
    var store = ""
    let ft = TestSupport.fixtures + "/models/tiny-ft"

    override func setUpWithError() throws {
        store = TestSupport.temporaryDirectory(self, "read") + "/store"
        for (name, dir) in [("tiny-base@v1", "tiny-base"), ("org/tiny-ft@v1", "tiny-ft")] {
            let r = try TestSupport.run(TestSupport.tpstore, ["put", "--store", store, name, TestSupport.fixtures + "/models/" + dir])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
    }

    /// Runs tpstore and returns its exit status, stdout as bytes and stderr as text.
    func tp(_ args: String...) throws -> (status: Int32, stdout: [UInt8], stderr: String) {
        let r = try TestSupport.run(TestSupport.tpstore, args)
        return (r.status, r.stdoutBytes, r.stderr)
    }

    func assertOneLineFailure(_ r: (status: Int32, stdout: [UInt8], stderr: String), mentions: String,
                              file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage") && !$0.hasPrefix("  See") && !$0.isEmpty }.count, 1,
                       "one line: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stdout.isEmpty, file: file, line: line)
    }

    func testCatAndTensorMatchTheOriginal() throws {
        let original = try TestSupport.read(ft + "/model.safetensors")
        var r = try tp("cat", "--store", store, "org/tiny-ft", "model.safetensors")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, original)
        for (range, slice) in [("0-7", 0 ..< 8), ("100-199", 100 ..< 200), ("1048570-1048600", 1_048_570 ..< 1_048_601),
                               ("\(original.count - 5)-", (original.count - 5) ..< original.count), ("=-3", (original.count - 3) ..< original.count),
                               ("\(original.count - 1)-\(original.count - 1)", (original.count - 1) ..< original.count)] {
            // "--range=-3": a value starting with '-' must be attached, or it reads as an option.
            r = range.hasPrefix("=") ? try tp("cat", "--store", store, "org/tiny-ft@v1", "model.safetensors", "--range" + range)
                : try tp("cat", "--store", store, "org/tiny-ft@v1", "model.safetensors", "--range", range)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(r.stdout[...], original[slice], range)
        }
        r = try tp("cat", "--store", store, "org/tiny-ft", "sub/dir/notes.txt")
        XCTAssertEqual(r.stdout, try TestSupport.read(ft + "/sub/dir/notes.txt"))

        // tensor: to stdout, to a file, rows.
        let name = "encoder.layer.0.intermediate.dense.weight"
        let py = try XCTUnwrap(TestSupport.python3())
        let offsets = try TestSupport.run(py, ["-c", """
            import json,sys; b=open(sys.argv[1],'rb').read(); n=int.from_bytes(b[:8],'little'); h=json.loads(b[8:8+n]); \
            o=h[sys.argv[2]]['data_offsets']; print(8+n+o[0], 8+n+o[1])
            """, ft + "/model.safetensors", name]).stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(offsets.count, 2)
        let slice = original[offsets[0] ..< offsets[1]]
        r = try tp("tensor", "--store", store, "org/tiny-ft", "model.safetensors", name)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout[...], slice)
        let out = TestSupport.temporaryDirectory(self, "tensor") + "/w.bin"
        r = try tp("tensor", "--store", store, "org/tiny-ft@v1", "model.safetensors", name, "-o", out)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try TestSupport.read(out)[...], slice)
        r = try tp("tensor", "--store", store, "org/tiny-ft", "model.safetensors", name, "--rows", "1-2")
        XCTAssertEqual(r.stdout[...], original[(offsets[0] + 52429 * 4) ..< (offsets[0] + 3 * 52429 * 4)])
    }

    func testBadReadRequestsGetOneLineAndNonZeroExit() throws {
        let size = try TestSupport.read(ft + "/model.safetensors").count
        assertOneLineFailure(try tp("cat", "--store", store, "org/tiny-ft", "model.safetensors", "--range", "\(size)-\(size + 10)"), mentions: "outside")
        assertOneLineFailure(try tp("cat", "--store", store, "org/tiny-ft", "model.safetensors", "--range", "0-\(size)"), mentions: "outside")
        assertOneLineFailure(try tp("cat", "--store", store, "org/tiny-ft", "model.safetensors", "--range", "9-3"), mentions: "malformed range")
        assertOneLineFailure(try tp("cat", "--store", store, "org/tiny-ft", "model.safetensors", "--range", "abc"), mentions: "malformed range")
        assertOneLineFailure(try tp("cat", "--store", store, "org/tiny-ft", "../tiny-base/config.json"), mentions: "invalid path")
        assertOneLineFailure(try tp("cat", "--store", store, "org/tiny-ft", "nope.bin"), mentions: "has no file nope.bin")
        assertOneLineFailure(try tp("cat", "--store", store, "nobody", "x"), mentions: "no model named nobody")
        assertOneLineFailure(try tp("cat", "--store", store, "org/tiny-ft@v2", "config.json"), mentions: "no revision v2")
        assertOneLineFailure(try tp("tensor", "--store", store, "org/tiny-ft", "model.safetensors", "no.such"), mentions: "no tensor named no.such")
        assertOneLineFailure(try tp("tensor", "--store", store, "org/tiny-ft", "config.json", "x"), mentions: "not stored as a safetensors file")
        assertOneLineFailure(try tp("tensor", "--store", store, "org/tiny-ft", "model.safetensors", "logit_scale", "--rows", "0-0"), mentions: "scalar")
    }

    // MARK: serve

    func startServer() throws -> String {
        try TestSupport.startServer(self, store: store, extra: ["--cache-mib", "8"])
    }

    func curl(_ args: String...) throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        try TestSupport.curl(self, args)
    }

    func testServeAnswersRangeRequests() throws {
        let base = try startServer()
        let original = try TestSupport.read(ft + "/model.safetensors")
        let sha = try XCTUnwrap(TestSupport.run("/usr/bin/env", ["sha256sum", ft + "/model.safetensors"]).stdout.split(separator: " ").first)
        let url = base + "/org/tiny-ft/resolve/main/model.safetensors"

        var r = try curl(url)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, original)
        XCTAssertEqual(r.headers["content-length"], "\(original.count)")
        XCTAssertEqual(r.headers["accept-ranges"], "bytes")
        XCTAssertEqual(r.headers["etag"], "\"\(sha)\"")
        XCTAssertEqual(r.headers["x-tenpak-revision"], "v1")

        r = try curl("-r", "1048570-1048600", base + "/org/tiny-ft/resolve/v1/model.safetensors")
        XCTAssertEqual(r.status, 206)
        XCTAssertEqual(r.body[...], original[1_048_570 ..< 1_048_601])
        XCTAssertEqual(r.headers["content-range"], "bytes 1048570-1048600/\(original.count)")
        XCTAssertEqual(r.headers["content-length"], "31")
        r = try curl("-r", "-10", url)
        XCTAssertEqual(r.body[...], original[(original.count - 10)...])
        r = try curl("-r", "\(original.count - 2)-\(original.count + 100)", url)
        XCTAssertEqual(r.status, 206)
        XCTAssertEqual(r.body[...], original[(original.count - 2)...])

        r = try curl("-I", url)
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers["content-length"], "\(original.count)")
        r = try curl("-I", "-H", "Range: bytes=0-99", url)
        XCTAssertEqual(r.status, 206)
        XCTAssertEqual(r.headers["content-length"], "100")

        // A one-segment model name and a nested path.
        r = try curl(base + "/tiny-base/resolve/v1/sub/dir/notes.txt")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, try TestSupport.read(TestSupport.fixtures + "/models/tiny-base/sub/dir/notes.txt"))

        // Errors: status and a one-line body.
        r = try curl("-r", "\(original.count)-", url)
        XCTAssertEqual(r.status, 416)
        XCTAssertEqual(r.headers["content-range"], "bytes */\(original.count)")
        for bad in ["bytes=abc", "bytes=9-3", "lines=0-1", "bytes=--1"] {
            r = try curl("-H", "Range: \(bad)", url)
            XCTAssertEqual(r.status, 400, bad)
            XCTAssertTrue(String(decoding: r.body, as: UTF8.self).contains("malformed"), bad)
        }
        for (path, status) in [("/org/nobody/resolve/main/model.safetensors", 404), ("/org/tiny-ft/resolve/v9/model.safetensors", 404),
                               ("/org/tiny-ft/resolve/v1/nope.bin", 404), ("/org/tiny-ft/nothing", 404),
                               ("/org/tiny-ft/resolve/v1/sub/../../tiny-base/config.json", 400),
                               ("/org/tiny-ft/resolve/v1/%2e%2e/config.json", 400), ("/org/tiny-ft/resolve/v1/a%5Cb", 400),
                               ("/org/tiny-ft/resolve/v1/%2Fetc%2Fpasswd", 400)] {
            r = try curl("--path-as-is", base + path)
            XCTAssertEqual(r.status, status, path)
            let text = String(decoding: r.body, as: UTF8.self)
            XCTAssertEqual(text.filter { $0 == "\n" }.count, 1, "\(path): one line: \(text)")
        }
        r = try curl("-X", "POST", url)
        XCTAssertEqual(r.status, 405)
    }

    func testPythonClientAndConcurrentReaders() throws {
        let python = try XCTUnwrap(TestSupport.python3(), "python3 is required (Tools/setup.sh installs the oracle)")
        let base = try startServer()
        let client = TestSupport.root + "/Tools/http_range_client.py"
        let url = base + "/org/tiny-ft/resolve/main/model.safetensors"
        var r = try TestSupport.run(python, [client, "tensor", url, ft + "/model.safetensors"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("ok:"), r.stdout)
        r = try TestSupport.run(python, [client, "tensor", url, ft + "/model.safetensors", "embeddings.word_embeddings.weight"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        r = try TestSupport.run(python, [client, "concurrent", url, ft + "/model.safetensors", "8", "20"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        // Readers of two models at once share the cache (and the base chunks).
        let group = DispatchGroup()
        let failures = Counter()
        for (model, dir) in [("org/tiny-ft", "tiny-ft"), ("tiny-base", "tiny-base")] {
            group.enter()
            DispatchQueue.global().async {
                defer { group.leave() }
                let u = base + "/\(model)/resolve/v1/model.safetensors"
                let result = try? TestSupport.run(python, [client, "concurrent", u, TestSupport.fixtures + "/models/\(dir)/model.safetensors", "4", "15"])
                if result?.status != 0 { failures.add() }
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(failures.value, 0)
    }
}
