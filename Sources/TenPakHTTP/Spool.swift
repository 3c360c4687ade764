// Request bodies on their way into the store: spool directories and the limits a body must keep.
//
// Nouns:
// - `SpoolDirectory`: `<spool>/tpstore-upload-<random>/` (mode 0700) holding one request's bytes,
//   with a `.lock` file the request holds (flock, exclusive) until it removes the directory. A
//   directory whose lock nobody holds belongs to a server that crashed: `cleanLeftovers` removes it
//   at start (another server sharing the spool keeps its own, since it holds their locks).
// - `BodyLimits`: largest body, and the idle timeout and minimum rate a body must keep.
// - `BodyReader`: reads a request body piece by piece under those limits, with a watchdog that
//   closes the connection of a body that stalls (no piece arrives at all), so an upload slot is
//   never held by a client that stopped sending.
import Foundation
import Hummingbird
import NIOCore
import TenPakChunkStore
import TenPakFormat

#if canImport(Glibc)
import Glibc
#endif

/// One request's spool directory.
final class SpoolDirectory: @unchecked Sendable {
    // Safe: `lockDescriptor` is set in init and closed once, in `remove`, guarded by `lock`.
    let path: String
    private var lockDescriptor: Int32
    private let lock = NSLock()
    static let prefix = "tpstore-upload-"

    init(parent: String) throws {
        path = (parent.hasSuffix("/") ? String(parent.dropLast()) : parent) + "/" + SpoolDirectory.prefix + FileSystem.randomHex(bytes: 8)
        guard mkdir(path, 0o700) == 0 else {
            throw StoreError.io(operation: "mkdir (upload spool)", path: path, errno: errno)
        }
        let fd = open(path + "/.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let failure = errno
            if fd >= 0 { close(fd) }
            try? FileManager.default.removeItem(atPath: path)
            throw StoreError.io(operation: "lock (upload spool)", path: path, errno: failure)
        }
        lockDescriptor = fd
    }

    /// Removes the directory (then lets go of its lock). Safe to call more than once.
    func remove() {
        lock.withLock {
            guard lockDescriptor >= 0 else { return }
            try? FileManager.default.removeItem(atPath: path)
            close(lockDescriptor)
            lockDescriptor = -1
        }
    }

    deinit { remove() }

    /// Removes the spool directories in `parent` that no running server holds: those whose lock
    /// can be taken, and those without a lock file older than a minute (a crash between mkdir and
    /// the lock). Returns how many it removed.
    @discardableResult
    static func cleanLeftovers(parent: String) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return 0 }
        var removed = 0
        for name in names where name.hasPrefix(prefix) {
            let directory = (parent.hasSuffix("/") ? String(parent.dropLast()) : parent) + "/" + name
            let fd = open(directory + "/.lock", O_RDWR | O_CLOEXEC)
            if fd >= 0 {
                defer { close(fd) }
                guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }  // a live request's
            } else if let modified = FileSystem.modificationTime(directory), Int(Date().timeIntervalSince1970) - modified < 60 {
                continue
            }
            if (try? FileManager.default.removeItem(atPath: directory)) != nil { removed += 1 }
        }
        return removed
    }
}

/// What a request body must keep to.
public struct BodyLimits: Sendable {
    /// Largest body, in bytes (413 beyond it).
    public var maxBytes: Int
    /// Longest wait for the next piece of a body before the connection is closed (408).
    public var idleTimeout: Duration
    /// Lowest average rate, in bytes per second, once `grace` has passed (408 below it).
    public var minimumRate: Int
    public var grace: Duration

    public init(maxBytes: Int, idleTimeout: Duration = .seconds(30), minimumRate: Int = 16 << 10, grace: Duration = .seconds(10)) {
        self.maxBytes = maxBytes
        self.idleTimeout = idleTimeout
        self.minimumRate = max(0, minimumRate)
        self.grace = grace
    }
}

/// Why a body was cut off: answered with 408 or 413.
enum BodyFailure: Error, CustomStringConvertible {
    case tooLarge(limit: Int)
    case tooSlow(received: Int, seconds: Double, minimumRate: Int)
    case stalled(seconds: Double)

    var description: String {
        switch self {
        case let .tooLarge(limit): return "the body is larger than this server's limit of \(limit) bytes"
        case let .tooSlow(received, seconds, rate):
            return "the body arrived too slowly (\(received) bytes in \(Int(seconds)) s; this server needs at least \(rate) bytes/s): send it again"
        case let .stalled(seconds): return "no part of the body arrived for \(Int(seconds)) s: send it again"
        }
    }
}

/// Reads a body under `BodyLimits`.
enum BodyReader {
    /// Calls `consume` with each piece in order. A body that stops arriving for `idleTimeout` has
    /// its connection closed by a watchdog (the loop then ends with an error, which this turns into
    /// `BodyFailure.stalled`); one whose average rate falls under the minimum after the grace period
    /// fails with `tooSlow`.
    static func read(_ body: RequestBody, limits: BodyLimits, channel: (any Channel)?,
                     _ consume: (ByteBuffer) async throws -> Void) async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let progress = Progress(start)
        let watchdog = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                if clock.now - progress.last > limits.idleTimeout {
                    progress.stall()
                    channel?.close(promise: nil)
                    return
                }
            }
        }
        defer { watchdog.cancel() }
        var total = 0
        do {
            for try await piece in body {
                total += piece.readableBytes
                guard total <= limits.maxBytes else { throw BodyFailure.tooLarge(limit: limits.maxBytes) }
                progress.advance(clock.now)
                let elapsed = clock.now - start
                if elapsed > limits.grace, limits.minimumRate > 0 {
                    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                    if Double(total) / seconds < Double(limits.minimumRate) {
                        throw BodyFailure.tooSlow(received: total, seconds: seconds, minimumRate: limits.minimumRate)
                    }
                }
                try await consume(piece)
            }
        } catch let failure as BodyFailure {
            throw failure
        } catch {
            if progress.stalled { throw BodyFailure.stalled(seconds: Double(limits.idleTimeout.components.seconds)) }
            throw error
        }
        // The watchdog closed the connection and the body merely ended: it is not complete.
        if progress.stalled { throw BodyFailure.stalled(seconds: Double(limits.idleTimeout.components.seconds)) }
    }

    /// The whole body in memory (JSON and NDJSON requests, frame bundles), at most
    /// `limits.maxBytes`. With `expectedBytes` (the request's Content-Length) the buffer is
    /// reserved once: grown by doubling instead, a bundle of megabytes is copied again at every
    /// step into fresh memory that faults in page by page (SPEC 19.7).
    static func collect(_ body: RequestBody, limits: BodyLimits, channel: (any Channel)?, expectedBytes: Int? = nil) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        if let expectedBytes, expectedBytes > 0 { bytes.reserveCapacity(min(expectedBytes, limits.maxBytes)) }
        try await read(body, limits: limits, channel: channel) { piece in
            piece.withUnsafeReadableBytes { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    private final class Progress: @unchecked Sendable {
        // Safe: every field is read and written under `lock`.
        private let lock = NSLock()
        private var lastValue: ContinuousClock.Instant
        private var stalledValue = false

        init(_ start: ContinuousClock.Instant) { lastValue = start }
        var last: ContinuousClock.Instant { lock.withLock { lastValue } }
        var stalled: Bool { lock.withLock { stalledValue } }
        func advance(_ now: ContinuousClock.Instant) { lock.withLock { lastValue = now } }
        func stall() { lock.withLock { stalledValue = true } }
    }
}
