import ArgumentParser
import Foundation
import TenPakReader

extension TPStore {
    struct Cat: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cat",
            abstract: "Write a stored file, or a byte range of it, to standard output.",
            discussion: "Only the chunks overlapping the range are decoded. --range START-END includes END, as in HTTP; START- reads to the end, -N the last N bytes.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "NAME or NAME@REV (the newest revision when REV is omitted).") var target: ModelReference
        @Argument(help: "The file's path in the revision.") var path: String
        @Option(help: ArgumentHelp("Bytes START-END (END inclusive), START- or -N.", valueName: "START-END")) var range: String?
        @Option(name: .customLong("cache-mib"), help: "Decoded-chunk cache size in MiB.") var cacheMiB = 256

        func validate() throws {
            if let range { _ = try ByteRange(parsing: range) }
            guard cacheMiB >= 0 else { throw ValidationError("--cache-mib must be 0 or more") }
        }

        func run() throws {
            let reader = try StoreReader(store: options.open(), configuration: .init(cacheCapacity: cacheMiB << 20))
            let file = try reader.open(model: target.model, revision: target.revision, path: path)
            var bytes = 0 ..< file.size
            if let range {
                guard let resolved = try ByteRange(parsing: range).resolve(size: file.size, clampEnd: false) else {
                    throw ReaderError.outOfRange("range \(range) is outside \(path), which has \(file.size) bytes")
                }
                bytes = resolved
            }
            try file.stream(bytes) { try StandardOutput.write($0) }
        }
    }
}

/// Unbuffered writes to file descriptor 1, retried until every byte is out.
enum StandardOutput {
    static func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Foundation.write(1, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw ValidationError("writing to standard output: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }
}
