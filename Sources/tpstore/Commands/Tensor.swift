import ArgumentParser
import Foundation
import TenPakChunkStore
import TenPakReader

extension TPStore {
    struct Tensor: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tensor",
            abstract: "Write one tensor's raw bytes (as stored in the safetensors file) to standard output or a file.",
            discussion: "Only the chunks holding the tensor are decoded.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "NAME or NAME@REV (the newest revision when REV is omitted).") var target: ModelReference
        @Argument(help: "The safetensors file's path in the revision.") var path: String
        @Argument(help: "The tensor's name.") var tensor: String
        @Option(name: .shortAndLong, help: ArgumentHelp("Write to FILE instead of standard output.", valueName: "FILE")) var output: String?
        @Option(help: ArgumentHelp("Only rows START-END (END inclusive) of the first dimension.", valueName: "START-END")) var rows: String?

        func validate() throws {
            if let rows {
                guard case .closed = try ByteRange(parsing: rows) else { throw ValidationError("--rows takes START-END") }
            }
        }

        func run() throws {
            let reader = try StoreReader(store: options.open())
            let file = try reader.open(model: target.model, revision: target.revision, path: path)
            var rowRange: Range<Int>?
            if let rows, case let .closed(first, last) = try ByteRange(parsing: rows) { rowRange = first ..< last + 1 }
            let range = try file.byteRange(ofTensor: tensor, rows: rowRange)
            guard let output else {
                try file.stream(range) { try StandardOutput.write($0) }
                return
            }
            let temporary = FileSystem.parentDirectory(output) + "/.tpstore-partial-" + FileSystem.randomHex(bytes: 6)
            let out = try OpenFile(path: temporary, mode: .createExclusive)
            do {
                var at = 0
                try file.stream(range) { piece in
                    try out.write(piece, at: at)
                    at += piece.count
                }
                try FileSystem.rename(temporary, to: output)
            } catch {
                try? FileSystem.remove(temporary)
                throw error
            }
        }
    }
}
