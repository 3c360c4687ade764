import Foundation
import TenPakChunkStore
import TenPakModelStore

/// A git-lfs standalone custom transfer agent over a TenPak store: reads requests one line at a
/// time, answers each on the output, and keeps going after any per-object or protocol error.
///
///     let agent = LFSAgent(storeDirectory: dir) { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
///     while let line = readLine(), agent.handle(line: line) {}
///
/// One agent serves one session (one git-lfs process may start several agents at once, each its
/// own session; they share the store safely).
public final class LFSAgent {
    public private(set) var state = AgentState.awaitingInit
    /// Where objects live, for messages: the store directory, or the server and cache of the remote mode.
    public let location: String
    private let openObjects: (_ create: Bool) throws -> any LFSObjectBackend
    private var objects: (any LFSObjectBackend)?
    private let output: LFSOutput
    private let downloadDirectoryResolver: () throws -> String
    private var downloadDirectory: String?

    /// An agent over the TenPak store in `storeDirectory`.
    /// - Parameters:
    ///   - storeDirectory: the TenPak store (created on the first upload session if missing).
    ///   - downloadDirectory: where downloaded objects are written; it must be on the same file
    ///     system as git-lfs's object directory, which moves them in. Default: git-lfs's own
    ///     temporary directory of the repository the agent runs in (`GitLFSPaths.temporaryDirectory`).
    ///   - openStore: opens (or with its second argument, creates) the store at a location; by
    ///     default the local store in that directory. The CLI passes one that also opens
    ///     distributed stores.
    ///   - write: takes one response line (no line feed); called from one thread at a time.
    public convenience init(storeDirectory: String, downloadDirectory: @escaping () throws -> String = { try GitLFSPaths.temporaryDirectory() },
                            openStore: @escaping (_ location: String, _ create: Bool) throws -> ModelStore = { try ModelStore.open(directory: $0, create: $1) },
                            write: @escaping @Sendable (String) -> Void) {
        self.init(location: "the TenPak store at \(storeDirectory)", downloadDirectory: downloadDirectory, openObjects: { create in
            do {
                return LFSObjectStore(models: try openStore(storeDirectory, create))
            } catch where create {
                // Several agents of one push may race to create the store: the loser opens the winner's.
                usleep(300_000)
                return LFSObjectStore(models: try openStore(storeDirectory, false))
            }
        }, write: write)
    }

    /// An agent over any object backend (the remote mode passes one reaching a server).
    /// - Parameters:
    ///   - location: where objects live, as messages name it ("the TenPak store at /srv/store").
    ///   - openObjects: opens the backend when `init` arrives; its argument is true for an upload
    ///     session (which may create a missing store). A throw fails the `init` (code 500).
    public init(location: String, downloadDirectory: @escaping () throws -> String = { try GitLFSPaths.temporaryDirectory() },
                openObjects: @escaping (_ create: Bool) throws -> any LFSObjectBackend,
                write: @escaping @Sendable (String) -> Void) {
        self.location = location
        self.openObjects = openObjects
        downloadDirectoryResolver = downloadDirectory
        output = LFSOutput(write: write)
    }

    /// Reads lines until `terminate` or the end of input.
    public func run(readLine: () -> String?) {
        while let line = readLine(), handle(line: line) {}
    }

    /// Handles one request line. Returns false once the session has ended (`terminate`).
    @discardableResult
    public func handle(line: String) -> Bool {
        if line.allSatisfy(\.isWhitespace) { return true }
        let request: LFSRequest
        do {
            request = try LFSRequest.parse(line)
            try state.transition(on: request)
        } catch {
            answer(error, oid: nil)
            return state != .terminated
        }
        switch request {
        case let .initialize(operation, _, _):
            do {
                objects = try openObjects(operation == .upload)
                output.send(.initialized)
            } catch {
                state = .awaitingInit
                output.send(.error(code: LFSErrorCode.storeFailure.rawValue, message: "cannot open \(location): \(error)"))
            }
        case let .upload(oid, size, path):
            let reporter = ProgressReporter(oid: oid.hex, output: output)
            do {
                // Safe: init succeeded (the state machine is in `ready`), so `objects` is set.
                _ = try objects!.upload(oid: oid, size: size, path: path) { reporter.report($0) }
                reporter.finish(size: size)
                output.send(.complete(oid: oid.hex, path: nil))
            } catch {
                answer(error, oid: oid.hex)
            }
        case let .download(oid, size):
            let reporter = ProgressReporter(oid: oid.hex, output: output)
            do {
                let directory = try resolvedDownloadDirectory()
                let path = try objects!.download(oid: oid, size: size, into: directory) { reporter.report($0) }
                reporter.finish(size: size)
                output.send(.complete(oid: oid.hex, path: path))
            } catch {
                answer(error, oid: oid.hex)
            }
        case .terminate:
            return false
        }
        return true
    }

    private func resolvedDownloadDirectory() throws -> String {
        if let downloadDirectory { return downloadDirectory }
        let directory = try downloadDirectoryResolver()
        downloadDirectory = directory
        return directory
    }

    /// An error becomes the object's `complete` when it names an object, else an `error` line.
    private func answer(_ error: Error, oid: String?) {
        let e = error as? LFSProtocolError ?? LFSProtocolError(.storeFailure, "\(error)", oid: oid)
        if let oid = e.oid ?? oid {
            output.send(.failed(oid: oid, code: e.code.rawValue, message: e.message))
        } else {
            output.send(.error(code: e.code.rawValue, message: e.message))
        }
    }
}

/// Serializes response lines: progress arrives from the store's worker threads.
final class LFSOutput: @unchecked Sendable {
    // Safe: `write` is only called while holding `lock`.
    private let lock = NSLock()
    private let write: @Sendable (String) -> Void

    init(write: @escaping @Sendable (String) -> Void) { self.write = write }

    func send(_ response: LFSResponse) {
        lock.lock()
        defer { lock.unlock() }
        write(response.json)
    }
}

/// Turns running byte totals into `progress` lines (bytesSoFar, bytesSinceLast), ending on the
/// object's size as the protocol asks.
final class ProgressReporter: @unchecked Sendable {
    // Safe: `sent` is only touched while holding `lock`.
    private let lock = NSLock()
    private var sent = 0
    let oid: String
    let output: LFSOutput

    init(oid: String, output: LFSOutput) {
        self.oid = oid
        self.output = output
    }

    func report(_ soFar: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard soFar > sent else { return }
        output.send(.progress(oid: oid, bytesSoFar: soFar, bytesSinceLast: soFar - sent))
        sent = soFar
    }

    /// The last line must carry the object's size (also for an object the store already had).
    func finish(size: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard size > sent || sent == 0 else { return }
        output.send(.progress(oid: oid, bytesSoFar: size, bytesSinceLast: size - sent))
        sent = size
    }
}

/// Where git-lfs keeps things in the repository the agent runs in.
public enum GitLFSPaths {
    /// git-lfs's temporary directory: `<lfs storage>/tmp`, where the storage is `lfs.storage` if
    /// set (relative to the git directory) and `<git dir>/lfs` otherwise. Objects written there
    /// can be renamed into `<lfs storage>/objects`. Falls back to the system temporary directory
    /// outside a repository.
    public static func temporaryDirectory(cwd: String? = nil) throws -> String {
        guard let gitDir = git(["rev-parse", "--absolute-git-dir"], cwd: cwd), !gitDir.isEmpty else {
            return NSTemporaryDirectory()
        }
        var storage = gitDir + "/lfs"
        if let configured = git(["config", "--get", "lfs.storage"], cwd: cwd), !configured.isEmpty {
            storage = configured.hasPrefix("/") ? configured : gitDir + "/" + configured
        }
        let directory = storage + "/tmp"
        try FileSystem.makeDirectories(directory)
        return directory
    }

    /// Runs git and returns its first output line, or nil if it failed.
    static func git(_ arguments: [String], cwd: String?) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git"] + arguments
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init)
    }
}
