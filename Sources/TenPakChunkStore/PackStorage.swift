import TenPakFormat

/// Where pack files live. Packs are written once, sealed, and then only read or deleted whole.
///
/// Implementations: `LocalPackDirectory` (a directory). A distributed store keeps packs as objects
/// in a bucket behind the same protocol.
public protocol PackStorage: Sendable {
    /// Starts a new pack; it becomes visible under its name only when sealed.
    func createPack() throws -> any PackWriting
    /// Reads `length` bytes at `offset` of a sealed pack.
    func read(pack: String, offset: Int, length: Int) throws -> [UInt8]
    /// Reads exactly `buffer.count` bytes at `offset` of a sealed pack into `buffer` (a reused
    /// buffer: no fresh memory to fault in); throws where the pack is shorter.
    func read(pack: String, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws
    /// Names of every sealed pack.
    func packNames() throws -> [String]
    func size(pack: String) throws -> Int
    func delete(pack: String) throws
    /// Sealed packs gc may delete when no catalog row names them (see the extension).
    func orphanCandidates() throws -> [String]
    /// Closes cached handles, so packs deleted by another process (gc) release their space and
    /// a later read of a deleted pack fails instead of reading the unlinked file.
    func forgetOpenHandles()
    /// Whether a read costs a network round trip (an object store) rather than a page-cache copy.
    /// Streaming reads (get) then take fewer, larger windows, so that each read's latency hides
    /// behind the decoding of the window before it.
    var readsAreRemote: Bool { get }
}

extension PackStorage {
    /// Through `read(pack:offset:length:)` and a copy, for backends whose reads arrive as new
    /// buffers anyway (an object store's response body).
    public func read(pack: String, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        let bytes = try read(pack: pack, offset: offset, length: buffer.count)
        guard bytes.count == buffer.count else {
            throw StoreError.corrupt("pack \(pack): \(bytes.count) bytes at \(offset), expected \(buffer.count)")
        }
        bytes.withUnsafeBytes { if let src = $0.baseAddress, let dst = buffer.baseAddress { dst.copyMemory(from: src, byteCount: $0.count) } }
    }

    /// Sealed packs gc may delete when no catalog row names them: those sealed at least
    /// `orphanGracePeriod` ago. The local store has no grace (its flock exclusion is exact); a
    /// distributed backend overrides this so that a writer cut off from the lock server for a while
    /// does not lose packs it is about to commit.
    public func orphanCandidates() throws -> [String] { try packNames() }

    /// Backends that keep no handles have nothing to forget.
    public func forgetOpenHandles() {}

    public var readsAreRemote: Bool { false }
}

/// A pack being written. After any error it is broken: every later call fails.
public protocol PackWriting: AnyObject {
    var name: String { get }
    /// Bytes written so far, header included.
    var size: Int { get }
    /// Appends bytes and returns the offset they start at.
    func append(_ bytes: UnsafeRawBufferPointer) throws -> Int
    /// Makes the pack durable and visible under its name. Nothing is visible before this returns.
    func seal() throws
    /// Drops an unsealed pack.
    func abandon()
}

/// Packs in a directory: `packs/<first two hex digits>/<name>.pack`, written under `tmp/` first.
public final class LocalPackDirectory: PackStorage, @unchecked Sendable {
    // Safe: `openFiles` is only touched inside `lock`; OpenFile is itself shareable.
    public let root: String
    private let lock = NSLockShim()
    private var openFiles: [String: OpenFile] = [:]

    public init(root: String) {
        self.root = root
    }

    public var packsDirectory: String { root + "/packs" }
    public var tmpDirectory: String { root + "/tmp" }

    public func path(of pack: String) -> String {
        "\(packsDirectory)/\(pack.prefix(2))/\(pack).pack"
    }

    public func createPack() throws -> any PackWriting {
        try LocalPackWriter(directory: self)
    }

    private func file(_ pack: String) throws -> OpenFile {
        try lock.withLock {
            if let f = openFiles[pack] { return f }
            let path = self.path(of: pack)
            guard FileSystem.isRegularFile(path) else {
                throw StoreError.corrupt(Damage(pack: pack, "pack \(pack) is missing (expected at \(path))"))
            }
            let f = try OpenFile(path: path, mode: .read)
            if openFiles.count > 256 { openFiles.removeAll() }
            openFiles[pack] = f
            return f
        }
    }

    public func read(pack: String, offset: Int, length: Int) throws -> [UInt8] {
        try file(pack).read(count: length, at: offset)
    }

    public func read(pack: String, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        if buffer.count > 0 { try file(pack).read(into: buffer, at: offset) }
    }

    public func packNames() throws -> [String] {
        guard FileSystem.isDirectory(packsDirectory) else { return [] }
        var names: [String] = []
        for fan in try FileSystem.list(packsDirectory) where fan.utf8.count == 2 {
            for entry in try FileSystem.list("\(packsDirectory)/\(fan)") where entry.hasSuffix(".pack") {
                names.append(String(entry.dropLast(5)))
            }
        }
        return names.sorted()
    }

    public func size(pack: String) throws -> Int {
        try file(pack).size()
    }

    public func forgetOpenHandles() {
        lock.withLock { openFiles.removeAll() }
    }

    public func delete(pack: String) throws {
        lock.withLock { _ = openFiles.removeValue(forKey: pack) }
        try FileSystem.remove(path(of: pack))
        try FileSystem.syncDirectory(FileSystem.parentDirectory(path(of: pack)))
    }
}

/// Writes one pack: buffered appends to `tmp/<name>.pack.partial`, then fsync, rename into
/// `packs/`, and fsync of the directory, in that order (ORDER: data fsync → rename → dir fsync).
///
/// A full buffer (8 MiB) is written and made durable (fdatasync) on a thread of its own while the
/// caller fills the other buffer, so neither the kernel's copy into the page cache nor the disk
/// holds up the caller, and the seal's fsync waits for the last buffer instead of the whole pack.
/// Measured on this machine (corpus F32 fine-tune, a 33 MB pack): the seal's fsync of a whole pack
/// had kept the put idle 35–50 ms, and its pwrites took 6% of the put's CPU time, all of it on the
/// put's one sequential thread. A failed background write or sync fails the next append or the
/// seal: Linux reports a writeback error to one sync call only, so it is kept here rather than left
/// for the seal's fsync to see.
final class LocalPackWriter: PackWriting {
    let name: String
    private let directory: LocalPackDirectory
    private let tmpPath: String
    private let file: OpenFile
    private var buffer: [UInt8] = []
    /// Bytes handed to `writes` (written, or being written, at their offsets).
    private var flushed = 0
    private var broken: Error?
    private var finished = false
    private let writes = BackgroundWrites()
    private static let flushThreshold = 8 << 20
    private static let bufferCapacity = flushThreshold + (1 << 20)

    init(directory: LocalPackDirectory) throws {
        self.directory = directory
        name = FileSystem.randomHex(bytes: 16)
        try FileSystem.makeDirectories(directory.tmpDirectory)
        tmpPath = "\(directory.tmpDirectory)/\(name).pack.partial"
        file = try OpenFile(path: tmpPath, mode: .createExclusive)
        buffer.reserveCapacity(LocalPackWriter.bufferCapacity)
        buffer.append(contentsOf: PackHeader.encoded())
    }

    deinit {
        if !finished { abandon() }
    }

    var size: Int { flushed + buffer.count }

    func append(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        if let broken { throw broken }
        let offset = size
        buffer.append(contentsOf: bytes)
        if buffer.count >= LocalPackWriter.flushThreshold { try flush() }
        return offset
    }

    /// Hands the buffer to the background writes and goes on with the one the write before it
    /// gave back (waiting for that write: one buffer in flight at most).
    private func flush() throws {
        do {
            var full = try writes.finish()
            if full.capacity < LocalPackWriter.bufferCapacity { full.reserveCapacity(LocalPackWriter.bufferCapacity) }
            swap(&buffer, &full)
            let offset = flushed
            flushed += full.count
            writes.start(file, consume full, at: offset)
        } catch {
            broken = error
            throw error
        }
    }

    func seal() throws {
        if let broken { throw broken }
        do {
            _ = try writes.finish()
            try buffer.withUnsafeBytes { try file.write($0, at: flushed) }
            flushed += buffer.count
            buffer = []
            try file.sync()
            let final = directory.path(of: name)
            let fanDirectory = FileSystem.parentDirectory(final)
            try FileSystem.makeDirectories(fanDirectory)
            try FileSystem.rename(tmpPath, to: final)
            try FileSystem.syncDirectory(fanDirectory)
            finished = true
        } catch {
            broken = error
            throw error
        }
    }

    func abandon() {
        finished = true
        try? FileSystem.remove(tmpPath)
    }
}

/// Writes of one file, each followed by an fdatasync, in order on a thread of their own. `finish`
/// waits for them, throws the first failure, and gives back the last write's buffer, emptied, for
/// reuse (a fresh 8 MiB buffer costs page faults on every page).
final class BackgroundWrites: @unchecked Sendable {
    // Safe: `failure` and `spare` are only touched under `lock`; the queue runs one write at a time.
    private let queue = DispatchQueue(label: "tenpak.pack.write")
    private let lock = NSLockShim()
    private var failure: Error?
    private var spare: [UInt8] = []

    /// The closure's box owns the bytes alone, so emptying them keeps their memory.
    private final class Bytes: @unchecked Sendable {
        var bytes: [UInt8]
        init(_ bytes: consuming [UInt8]) { self.bytes = bytes }
    }

    func start(_ file: OpenFile, _ bytes: consuming [UInt8], at offset: Int) {
        start(Bytes(bytes)) { try file.write($0, at: offset); try file.syncData() }
    }

    /// `write` with the bytes, on the queue; for tests, any failing write.
    func start(_ bytes: consuming [UInt8], _ write: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) {
        start(Bytes(bytes), write)
    }

    private func start(_ box: Bytes, _ write: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) {
        queue.async { [self] in
            do {
                try box.bytes.withUnsafeBytes { try write($0) }
            } catch {
                lock.withLock { if failure == nil { failure = error } }
            }
            box.bytes.removeAll(keepingCapacity: true)
            lock.withLock { swap(&spare, &box.bytes) }
        }
    }

    func finish() throws -> [UInt8] {
        queue.sync {}
        return try lock.withLock {
            if let failure { throw failure }
            var bytes: [UInt8] = []
            swap(&bytes, &spare)
            return bytes
        }
    }
}

import Foundation

/// NSLock with a closure helper (NSLock.withLock is not on every Foundation this builds with).
final class NSLockShim: @unchecked Sendable {
    private let lock = NSLock()
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
