#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file descriptor with one owner; closed when the owner goes away.
///
/// Every libc call here retries on EINTR and turns -1 + errno into `StoreError.io` naming the path.
public final class OpenFile: @unchecked Sendable {
    // Safe to share: pread/pwrite on one descriptor from several threads is defined by POSIX and
    // `fd` never changes after init.
    public let fd: Int32
    public let path: String

    public enum Mode { case read, createExclusive, readWrite }

    public init(path: String, mode: Mode) throws {
        let flags: Int32
        switch mode {
        case .read: flags = O_RDONLY | O_CLOEXEC
        case .createExclusive: flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC
        case .readWrite: flags = O_RDWR | O_CREAT | O_CLOEXEC
        }
        let fd = try retrying("open", path) { open(path, flags, 0o644) }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    public func size() throws -> Int {
        try identity().size
    }

    /// What the open file is now (fstat): compared before and after a read to notice a writer.
    public func identity() throws -> FileIdentity {
        var st = stat()
        _ = try retrying("stat", path) { fstat(fd, &st) }
        return FileIdentity(st)
    }

    /// Reads exactly `buffer.count` bytes at `offset`, or throws (a short file is an error).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buffer.count {
            let n = try retrying("read", path) {
                pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            }
            if n == 0 { throw StoreError.corrupt("\(path) ends at \(offset + done), before the \(buffer.count) bytes expected at \(offset)") }
            done += n
        }
    }

    public func read(count: Int, at offset: Int) throws -> [UInt8] {
        // Not zeroed first (a pass over every byte a pack read of frames then overwrites):
        // `read(into:at:)` fills all `count` bytes or throws, and then the array is dropped.
        try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { try read(into: UnsafeMutableRawBufferPointer(buffer), at: offset) }
            initialized = count
        }
    }

    /// Reads up to `buffer.count` bytes; returns how many (0 at end of file).
    public func readSome(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        return try retrying("read", path) { pread(fd, buffer.baseAddress!, buffer.count, off_t(offset)) }
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = try retrying("write", path) {
                pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            }
            done += n
        }
    }

    public func sync() throws {
        _ = try retrying("fsync", path) { fsync(fd) }
    }

    /// fdatasync: the data written so far (and the size needed to read it) made durable, without
    /// the timestamps `sync` writes too.
    public func syncData() throws {
        _ = try retrying("fdatasync", path) { fdatasync(fd) }
    }

    public func truncate(to size: Int) throws {
        _ = try retrying("truncate", path) { ftruncate(fd, off_t(size)) }
    }
}

@discardableResult
func retrying<T: BinaryInteger>(_ operation: String, _ path: String, _ call: () -> T) throws -> T {
    while true {
        let result = call()
        if result >= 0 { return result }
        let err = errno
        if err == EINTR { continue }
        throw StoreError.io(operation: operation, path: path, errno: err)
    }
}

/// The identity and version of a file as stat reports it: the same inode with the same size,
/// modification and change times has not been written to (as far as the file system can tell).
public struct FileIdentity: Equatable, Sendable {
    public let device: UInt64
    public let inode: UInt64
    public let size: Int
    /// st_mtim and st_ctim in nanoseconds.
    public let modified: Int64
    public let changed: Int64

    init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int(st.st_size)
        modified = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        changed = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
    }

    /// Same file (device and inode), whatever its contents.
    public func isSameFile(as other: FileIdentity) -> Bool { device == other.device && inode == other.inode }
}

/// What a directory entry is, without following a symbolic link (lstat).
public enum EntryKind: Equatable, Sendable {
    case regular, directory, symbolicLink, missing
    /// A FIFO, socket or device: named for messages.
    case other(String)
}

/// File system operations on paths.
public enum FileSystem {
    /// The entry at `path` itself (a symbolic link is reported as one, not followed).
    public static func entryKind(_ path: String) -> EntryKind {
        var st = stat()
        guard lstat(path, &st) == 0 else { return .missing }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .regular
        case S_IFDIR: return .directory
        case S_IFLNK: return .symbolicLink
        case S_IFIFO: return .other("a FIFO")
        case S_IFSOCK: return .other("a socket")
        case S_IFCHR: return .other("a character device")
        case S_IFBLK: return .other("a block device")
        default: return .other("of an unknown file type")
        }
    }

    /// The identity of the file `path` names (following links); nil when it does not exist.
    public static func identity(_ path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(st)
    }

    /// Makes the directories of `relative` (a `/`-separated path) under `root`, refusing to go
    /// through a symbolic link or anything that is not a directory: what is written below stays
    /// inside `root` whatever the tree already holds.
    public static func makeDirectories(inside root: String, relative: String) throws {
        var current = root
        for component in relative.split(separator: "/") {
            current += "/" + component
            switch entryKind(current) {
            case .directory: continue
            case .missing:
                if mkdir(current, 0o755) != 0, errno != EEXIST { throw StoreError.io(operation: "mkdir", path: current, errno: errno) }
                // A racing creator may have made something else there: look again.
                guard entryKind(current) == .directory else {
                    throw StoreError.invalidRequest("\(current) changed while it was being created; refusing to write through it")
                }
            case .symbolicLink:
                throw StoreError.invalidRequest("\(current) is a symbolic link; refusing to write through it (remove it or choose another destination)")
            case .regular, .other:
                throw StoreError.invalidRequest("\(current) exists and is not a directory")
            }
        }
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    public static func makeDirectories(_ path: String) throws {
        if isDirectory(path) { return }
        let parent = parentDirectory(path)
        if parent != path, !parent.isEmpty { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0, errno != EEXIST { throw StoreError.io(operation: "mkdir", path: path, errno: errno) }
    }

    public static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// Makes a rename or create in `directory` durable.
    public static func syncDirectory(_ directory: String) throws {
        let fd = try retrying("open", directory) { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        _ = try retrying("fsync", directory) { fsync(fd) }
    }

    public static func rename(_ from: String, to: String) throws {
        _ = try retrying("rename", from) { Glibc.rename(from, to) }
    }

    public static func remove(_ path: String) throws {
        if unlink(path) != 0, errno != ENOENT { throw StoreError.io(operation: "unlink", path: path, errno: errno) }
    }

    /// Names in a directory, without "." and "..".
    public static func list(_ directory: String) throws -> [String] {
        guard let dir = opendir(directory) else { throw StoreError.io(operation: "opendir", path: directory, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { ptr in
                ptr.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func modificationTime(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_mtim.tv_sec)
    }

    /// A random hex string from the system's CSPRNG.
    public static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0 ..< bytes).map { _ in UInt8.random(in: 0 ... 255, using: &generator) }.hex
    }
}

import TenPakFormat
