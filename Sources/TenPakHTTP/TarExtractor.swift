// Streaming extraction of an uploaded tar archive into a spool directory: bytes go in as they
// arrive, files come out, and at most one 512-byte header (or one pax record set) is buffered.
//
// Accepted: POSIX ustar, pax (`x` records `path` and `size`; `g` ignored) and GNU (`L` long names,
// base-256 sizes) archives, as `tar`, Python's `tarfile` and git produce. Regular files become
// files, directories are implied by paths; links and device nodes are refused, as are paths that
// `Names.validatePath` refuses (absolute, `..`, control characters) and a path given twice.
import Foundation
import TenPakChunkStore
import TenPakFormat

/// A tar archive that cannot be taken: `kind` is what a program decides by, the message names the
/// entry and what is wrong with it.
public struct TarError: Error, CustomStringConvertible, Sendable {
    /// What is wrong with the archive.
    public enum Kind: Sendable, Equatable {
        /// Not a tar archive at all: too short, a header checksum or number field that is not tar's.
        case notATar
        /// The body ends early: inside an entry, or without the end marker.
        case truncated
        /// Something other than zero blocks after the end marker.
        case dataAfterEnd
        /// No regular file in the archive.
        case empty
        /// A pax or GNU record that is malformed or over the size accepted.
        case badMetadata
        /// A header number field that is empty or too large.
        case badNumber(field: String)
        /// An entry refused by itself: a link or device, a path `Names.validatePath` refuses, a
        /// path given twice, a directory with data, a file where a directory is needed.
        case refusedEntry(path: String)
    }

    public let kind: Kind
    public let description: String
    init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// Feeds a tar stream into files under `directory`. Use from one thread at a time.
public final class TarExtractor {
    /// The files written so far: their path inside the archive and where they are on disk.
    public private(set) var files: [(path: String, location: String)] = []
    public let directory: String

    private enum State {
        /// Waiting for a 512-byte header block.
        case header
        /// Copying `remaining` bytes of a regular file.
        case file(OpenFile, written: Int, remaining: Int, padding: Int)
        /// Collecting the data of a pax (`x`/`g`) or GNU long-name (`L`/`K`) entry.
        case metadata(type: UInt8, collected: [UInt8], remaining: Int, padding: Int)
        /// Skipping `remaining` bytes (the padding after an entry's data).
        case skip(remaining: Int)
        /// Two zero blocks (or one, then the end of the stream) were seen: the archive is over.
        case end
    }

    private var state = State.header
    private var block: [UInt8] = []
    private var zeroBlocks = 0
    private var paths = Set<String>()
    /// Overrides for the next entry, from a pax `x` record or a GNU `L` entry.
    private var nextPath: String?
    private var nextSize: Int?
    private var entries = 0

    static let blockSize = 512
    /// Largest pax header or GNU long name accepted (they hold a path, not data).
    static let maxMetadata = 1 << 20

    public init(directory: String) {
        self.directory = directory
        block.reserveCapacity(TarExtractor.blockSize)
    }

    /// Takes the next bytes of the archive.
    public func feed(_ bytes: UnsafeRawBufferPointer) throws {
        var at = 0
        while at < bytes.count {
            switch state {
            case .end:
                return // What follows the end marker (record padding) is ignored.
            case .header:
                let n = min(TarExtractor.blockSize - block.count, bytes.count - at)
                block.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[at ..< at + n]))
                at += n
                if block.count == TarExtractor.blockSize {
                    try headerComplete()
                    block.removeAll(keepingCapacity: true)
                }
            case let .file(file, written, remaining, padding):
                let n = min(remaining, bytes.count - at)
                try file.write(UnsafeRawBufferPointer(rebasing: bytes[at ..< at + n]), at: written)
                at += n
                state = remaining == n ? .skip(remaining: padding) : .file(file, written: written + n, remaining: remaining - n, padding: padding)
            case .metadata(let type, var collected, let remaining, let padding):
                let n = min(remaining, bytes.count - at)
                collected.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[at ..< at + n]))
                at += n
                if remaining == n {
                    try metadataComplete(type: type, collected)
                    state = .skip(remaining: padding)
                } else {
                    state = .metadata(type: type, collected: collected, remaining: remaining - n, padding: padding)
                }
            case let .skip(remaining):
                let n = min(remaining, bytes.count - at)
                at += n
                state = remaining == n ? .header : .skip(remaining: remaining - n)
            }
            if case .skip(0) = state { state = .header }
        }
    }

    /// The stream ended: checks the archive was whole and returns the files it held.
    public func finish() throws -> [(path: String, location: String)] {
        switch state {
        case .end:
            break
        case .header where block.isEmpty && zeroBlocks == 1:
            break // One end block: accepted, as GNU tar does.
        case .header where block.isEmpty && zeroBlocks == 0 && entries > 0:
            throw TarError(.truncated, "the tar archive has no end marker (two zero blocks): was the upload cut short?")
        case .header where entries == 0:
            throw TarError(.notATar, "not a tar archive (the body is shorter than one 512-byte header)")
        default:
            throw TarError(.truncated, "the tar archive ends in the middle of an entry: the upload was cut short")
        }
        guard !files.isEmpty else { throw TarError(.empty, "the tar archive holds no regular file") }
        return files
    }

    // MARK: headers

    private func headerComplete() throws {
        if block.allSatisfy({ $0 == 0 }) {
            zeroBlocks += 1
            if zeroBlocks == 2 { state = .end }
            return
        }
        guard zeroBlocks == 0 else { throw TarError(.dataAfterEnd, "the tar archive has data after a zero block") }
        entries += 1
        try verifyChecksum()
        let type = block[156]
        let size: Int
        let takesOverrides = [0, UInt8(ascii: "0"), UInt8(ascii: "7"), UInt8(ascii: "5")].contains(type)
        if let override = nextSize, takesOverrides {
            size = override
        } else {
            size = try TarExtractor.number(block[124 ..< 136], field: "size", base256: true)
        }
        let padding = (TarExtractor.blockSize - size % TarExtractor.blockSize) % TarExtractor.blockSize
        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
            guard size <= TarExtractor.maxMetadata else {
                throw TarError(.badMetadata, "a tar metadata entry of \(size) bytes is larger than the \(TarExtractor.maxMetadata) accepted")
            }
            state = size == 0 ? .skip(remaining: padding) : .metadata(type: type, collected: [], remaining: size, padding: padding)
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
            let path = try takePath()
            let location = directory + "/" + path
            let file: OpenFile
            do {
                try FileSystem.makeDirectories(FileSystem.parentDirectory(location))
                file = try OpenFile(path: location, mode: .createExclusive)
            } catch {
                throw TarError(.refusedEntry(path: path), "tar entry \(Names.printable(path)) clashes with another entry (a file where a directory is needed, or the reverse): \(error)")
            }
            files.append((path, location))
            state = size == 0 ? .skip(remaining: padding) : .file(file, written: 0, remaining: size, padding: padding)
        case UInt8(ascii: "5"):
            let directoryPath = try takePath(directory: true)
            guard size == 0 else { throw TarError(.refusedEntry(path: directoryPath), "a tar directory entry claims \(size) bytes of data") }
            state = .skip(remaining: padding)
        default:
            let name = (try? takePath(directory: true)) ?? "?"
            let kind = [UInt8(ascii: "1"): "a hard link", UInt8(ascii: "2"): "a symbolic link", UInt8(ascii: "3"): "a device",
                        UInt8(ascii: "4"): "a device", UInt8(ascii: "6"): "a FIFO"][type] ?? "of unknown type \(type)"
            throw TarError(.refusedEntry(path: name), "tar entry \(Names.printable(name)) is \(kind); only regular files and directories can be uploaded")
        }
    }

    /// The entry's path (pax or GNU override, else ustar prefix + name), checked and made unique.
    private func takePath(directory isDirectory: Bool = false) throws -> String {
        defer { nextPath = nil; nextSize = nil }
        var path: String
        if let nextPath {
            path = nextPath
        } else {
            let name = TarExtractor.string(block[0 ..< 100])
            let magic = Array(block[257 ..< 263])
            let prefix = magic == Array("ustar\0".utf8) ? TarExtractor.string(block[345 ..< 500]) : ""
            path = prefix.isEmpty ? name : prefix + "/" + name
        }
        while path.hasPrefix("./") { path.removeFirst(2) }
        while path.hasSuffix("/") { path.removeLast() }
        if isDirectory { return path }
        do {
            try Names.validatePath(path)
        } catch {
            throw TarError(.refusedEntry(path: path), "tar entry \(Names.printable(path)): \(error)")
        }
        guard paths.insert(path).inserted else { throw TarError(.refusedEntry(path: path), "tar entry \(Names.printable(path)) appears twice") }
        return path
    }

    private func verifyChecksum() throws {
        let stored = try TarExtractor.number(block[148 ..< 156], field: "checksum")
        var sum = 0
        for (i, byte) in block.enumerated() { sum += (148 ..< 156).contains(i) ? 32 : Int(byte) }
        guard sum == stored else {
            throw TarError(.notATar, "not a tar archive (header checksum \(stored) differs from the computed \(sum))")
        }
    }

    private func metadataComplete(type: UInt8, _ data: [UInt8]) throws {
        switch type {
        case UInt8(ascii: "x"):
            for (key, value) in try TarExtractor.paxRecords(data) {
                if key == "path" { nextPath = value }
                if key == "size" {
                    guard let n = Int(value), n >= 0 else { throw TarError(.badMetadata, "tar pax record size=\(Names.printable(value)) is not a size") }
                    nextSize = n
                }
            }
        case UInt8(ascii: "L"):
            nextPath = TarExtractor.string(data[...])
        default:
            break // `g` (global pax) and `K` (long link name) do not change a regular file.
        }
    }

    /// `LENGTH KEY=VALUE\n` records.
    static func paxRecords(_ data: [UInt8]) throws -> [(String, String)] {
        var records: [(String, String)] = []
        var at = 0
        while at < data.count {
            guard let space = data[at...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: data[at ..< space], as: UTF8.self)), length > space - at, length <= data.count - at,
                  data[at + length - 1] == UInt8(ascii: "\n"),
                  let equals = data[(space + 1) ..< (at + length)].firstIndex(of: UInt8(ascii: "="))
            else { throw TarError(.badMetadata, "malformed pax header record in the tar archive") }
            records.append((String(decoding: data[(space + 1) ..< equals], as: UTF8.self),
                            String(decoding: data[(equals + 1) ..< (at + length - 1)], as: UTF8.self)))
            at += length
        }
        return records
    }

    /// A NUL-terminated field.
    static func string(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// An octal field (spaces and NULs around it allowed), or, with `base256` (the size field),
    /// GNU's base-256 form (high bit set). Never traps: values past `Int.max` are refused.
    static func number(_ field: ArraySlice<UInt8>, field name: String, base256: Bool = false) throws -> Int {
        guard let first = field.first else { throw TarError(.badNumber(field: name), "tar header field \(name) is empty") }
        if first & 0x80 != 0 {
            guard base256, first == 0x80 else {
                throw TarError(.notATar, "not a tar archive (header field \(name) is not an octal number)")
            }
            var value = 0
            for byte in field.dropFirst() {
                let (shifted, overflow) = value.multipliedReportingOverflow(by: 256)
                guard !overflow else { throw TarError(.badNumber(field: name), "tar header field \(name) holds a number too large") }
                value = shifted | Int(byte)
            }
            return value
        }
        let digits = field.drop { $0 == 32 || $0 == 0 }.prefix { $0 >= 48 && $0 <= 55 }
        let rest = field.drop { $0 == 32 || $0 == 0 }.dropFirst(digits.count)
        guard rest.allSatisfy({ $0 == 32 || $0 == 0 }) else {
            throw TarError(.notATar, "not a tar archive (header field \(name) is not an octal number)")
        }
        // At most 12 octal digits (36 bits): no overflow.
        return digits.reduce(0) { $0 * 8 + Int($1 - 48) }
    }
}
