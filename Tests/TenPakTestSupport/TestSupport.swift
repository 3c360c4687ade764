import Foundation
import TenPakFormat
import XCTest

/// Paths and scratch space shared by the tests.
public enum TestSupport {
    /// The repository root (Tests/TenPakTests/ is two levels below it).
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0 ..< 3 { url.deleteLastPathComponent() }
        return url.path
    }()

    public static let fixtures = root + "/Fixtures"

    /// A fresh empty directory, removed when the test ends.
    public static func temporaryDirectory(_ test: XCTestCase, _ name: String = "t") -> String {
        let path = NSTemporaryDirectory() + "tenpak-\(name)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// How the product words a refused connection: the system's text for ECONNREFUSED and its
    /// number (`TransferClient.reason`). Here rather than in a test file: naming a C library symbol
    /// in a file of the test target changed which clang module owns `struct stat` for its other
    /// files, and `XetStoreTests` then failed to compile (MemberImportVisibility, Swift 6.3).
    public static var connectionRefusedText: String { "\(String(cString: strerror(ECONNREFUSED))) (errno \(ECONNREFUSED))" }

    public static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public static func write(_ bytes: [UInt8], to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// Every regular file under `directory`, as relative paths.
    public static func files(under directory: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: directory) else { return [] }
        var out: [String] = []
        while let p = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: directory + "/" + p, isDirectory: &isDir), !isDir.boolValue { out.append(p) }
        }
        return out.sorted()
    }

    /// Deterministic pseudo-random bytes and numbers, drawn from the format's `SplitMix64`.
    public struct Random {
        var generator: SplitMix64
        public init(seed: UInt64) { generator = SplitMix64(seed: seed) }
        public mutating func next() -> UInt64 { generator.next() }
        public mutating func bytes(_ n: Int) -> [UInt8] { (0 ..< n).map { _ in UInt8(truncatingIfNeeded: next()) } }
        public mutating func int(_ range: Range<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
        public mutating func double() -> Double { Double(next() >> 11) / Double(1 << 53) }
        /// Approximately normal (sum of uniforms).
        public mutating func normal() -> Double { (0 ..< 4).reduce(0.0) { acc, _ in acc + double() } - 2.0 }
    }

    /// The tpstore binary built beside the test bundle.
    public static var tpstore: String {
        let bundle = Bundle.main.bundleURL.deletingLastPathComponent().path
        for candidate in [bundle + "/tpstore", root + "/.build/debug/tpstore"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return root + "/.build/debug/tpstore"
    }

    public struct RunResult {
        public let status: Int32
        /// Standard output exactly as written (binary output such as `tpstore cat` is compared byte for byte).
        public let stdoutBytes: [UInt8]
        public let stderr: String
        public var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
    }

    /// Runs a program to completion and captures its output.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], cwd: String? = nil, input: String? = nil) throws -> RunResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        // With `input`, it is written to the child's standard input, which is then closed.
        let stdin = input.map { _ in Pipe() }
        if let stdin { process.standardInput = stdin }
        try process.run()
        if let stdin, let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        }
        // Drain both pipes concurrently so a chatty child cannot block on a full pipe.
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return RunResult(status: process.terminationStatus, stdoutBytes: Array(outData),
                         stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Starts tpstore with `arguments`, lets it run for `delay` seconds, then SIGKILLs it (crash tests).
    public static func killTpstore(_ arguments: [String], after delay: Double) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tpstore)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: delay)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    public struct ServerDidNotStart: Error, CustomStringConvertible { public let description: String }

    /// A running `tpstore serve --store STORE` on a free loopback port (its base URL), stopped
    /// (SIGTERM, then SIGKILL) at teardown. A server that does not start fails the test.
    public static func startServer(_ test: XCTestCase, store: String, extra: [String] = []) throws -> String {
        try startServerProcess(test, store: store, extra: extra).url
    }

    /// `startServer`, also returning the server's process (to kill it mid-request).
    public static func startServerProcess(_ test: XCTestCase, store: String, extra: [String] = []) throws -> (url: String, process: Process) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tpstore)
        process.arguments = ["serve", "--store", store, "--listen", "127.0.0.1:0"] + extra
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        test.addTeardownBlock {
            guard process.isRunning else { return }
            process.terminate()
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, Date() < deadline { usleep(20000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        nonisolated(unsafe) var line = ""
        let ready = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            var buffer = Data()
            while !buffer.contains(UInt8(ascii: "\n")) {
                let more = out.fileHandleForReading.availableData
                if more.isEmpty { break }
                buffer += more
            }
            line = String(decoding: buffer, as: UTF8.self)
            ready.signal()
        }
        guard ready.wait(timeout: .now() + 30) == .success, let url = line.split(separator: " ").last, line.hasPrefix("listening on http://127.0.0.1:") else {
            if process.isRunning { process.terminate() }
            let stderr = String(decoding: err.fileHandleForReading.availableData, as: UTF8.self)
            throw ServerDidNotStart(description: "tpstore serve did not start: \(line) \(stderr)")
        }
        return (url.trimmingCharacters(in: .whitespacesAndNewlines), process)
    }

    /// curl's status, headers (lowercased names) and body for one request.
    public static func curl(_ test: XCTestCase, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws
        -> (status: Int, headers: [String: String], body: [UInt8]) {
        let dir = temporaryDirectory(test, "curl")
        let r = try run("/usr/bin/env", ["curl", "-s", "--max-time", "60", "-D", dir + "/h", "-o", dir + "/b"] + args)
        XCTAssertEqual(r.status, 0, "curl \(args): \(r.stderr)", file: file, line: line)
        let head = String(decoding: try read(dir + "/h"), as: UTF8.self).split(separator: "\r\n")
        // With a 100-continue exchange the interim response comes first: keep the last block.
        let lastStatus = head.lastIndex { $0.hasPrefix("HTTP/") } ?? head.startIndex
        let status = Int(head[lastStatus].split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for h in head[(lastStatus + 1)...] {
            guard let colon = h.firstIndex(of: ":") else { continue }
            headers[h[..<colon].lowercased()] = h[h.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = FileManager.default.fileExists(atPath: dir + "/b") ? try read(dir + "/b") : []
        return (status, headers, body)
    }

    public static func python3() -> String? {
        // PATH first: the python3 that Tools/setup.sh installed the oracle packages into.
        for p in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map({ "\($0)/python3" }) + ["/usr/bin/python3"]
        where FileManager.default.isExecutableFile(atPath: p) { return p }
        return nil
    }
}

/// Builds safetensors files for tests (header JSON in the given order, data back to back).
public struct SafetensorsBuilder {
    public struct Tensor {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        public let data: [UInt8]
    }

    public var tensors: [Tensor] = []

    public init() {}

    public mutating func add(_ name: String, _ dtype: String, _ shape: [Int], _ data: [UInt8]) {
        tensors.append(Tensor(name: name, dtype: dtype, shape: shape, data: data))
    }

    public func bytes() -> [UInt8] {
        var entries: [String] = []
        var offset = 0
        for t in tensors {
            entries.append("\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + t.data.count)]}")
            offset += t.data.count
        }
        var json = Array("{\(entries.joined(separator: ","))}".utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out += json
        for t in tensors { out += t.data }
        return out
    }

    /// Float32 weight-like values.
    public static func f32(_ count: Int, seed: UInt64, scale: Double = 0.05) -> [UInt8] {
        var r = TestSupport.Random(seed: seed)
        var out = [UInt8]()
        out.reserveCapacity(count * 4)
        for _ in 0 ..< count { withUnsafeBytes(of: Float(r.normal() * scale).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    /// A fine-tune of F32 data: each value times (1 + ~1e-3 noise).
    public static func nudge(_ data: [UInt8], seed: UInt64) -> [UInt8] {
        var r = TestSupport.Random(seed: seed)
        var out = data
        for i in stride(from: 0, to: data.count - 3, by: 4) {
            let v = Float(bitPattern: UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24)
            let w = v * Float(1 + r.normal() * 1e-3)
            withUnsafeBytes(of: w.bitPattern.littleEndian) { for k in 0 ..< 4 { out[i + k] = $0[k] } }
        }
        return out
    }
}

/// True for the first caller only (thread-safe): "do this once" inside callbacks.
public final class OnceFlag: @unchecked Sendable {
    public init() {}

    // Safe: `taken` is touched only inside `lock`.
    private var taken = false
    private let lock = NSLock()

    public func claim() -> Bool {
        lock.withLock {
            defer { taken = true }
            return !taken
        }
    }
}

/// git and git-lfs cut off from the machine's configuration: HOME is a scratch directory whose
/// global config holds a user, `main` as the default branch and git-lfs's filters; the system config
/// is ignored and nothing prompts. Shared by every test that runs real git.
public struct GitSandbox {
    public let home: String
    public let environment: [String: String]

    public init(home: String, environment extra: [String: String] = [:]) throws {
        self.home = home
        environment = ["HOME": home, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "XDG_CONFIG_HOME": home + "/.config",
                       "GIT_LFS_SKIP_SMUDGE": "0"].merging(extra) { $1 }
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try git(["config", "--global", "user.name", "TenPak Test"], cwd: home)
        try git(["config", "--global", "user.email", "test@tenpak.invalid"], cwd: home)
        try git(["config", "--global", "init.defaultBranch", "main"], cwd: home)
        try git(["lfs", "install", "--skip-repo"], cwd: home)
    }

    /// Runs git; fails the test (with its output) unless it exits 0 or `allowFailure`.
    @discardableResult
    public func git(_ args: [String], cwd: String, env: [String: String] = [:], allowFailure: Bool = false,
                    file: StaticString = #filePath, line: UInt = #line) throws -> TestSupport.RunResult {
        let r = try TestSupport.run("/usr/bin/git", args, environment: environment.merging(env) { $1 }, cwd: cwd)
        if !allowFailure, r.status != 0 {
            XCTFail("git \(args.joined(separator: " ")) exited \(r.status)\n\(r.stdout)\n\(r.stderr)", file: file, line: line)
            throw CancellationError()
        }
        return r
    }
}
