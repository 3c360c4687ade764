import ArgumentParser
import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore

extension TPStore {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a revision's files: sizes, stored bytes, chunk kinds, encodings.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "NAME or NAME@REV.") var target: ModelReference
        @Flag(help: "Print JSON.") var json = false

        struct ShowJSON: Encodable {
            let revision: RevisionJSON
            let files: [FileFigures]
            let size: Int, storedBytes: Int
        }

        func run() throws {
            let store = try options.open()
            let record = try store.catalog.resolve(model: target.model, revision: target.revision)
            // The same figures the model page of `tpstore serve` shows (TenPakModelStore/StoreFigures.swift).
            let figures = try store.figures(of: record)
            let files = figures.files
            let size = figures.size, stored = figures.storedBytes
            if json {
                print(try Output.json(ShowJSON(revision: RevisionJSON(record), files: files, size: size, storedBytes: stored)))
                return
            }
            print("\(record.model)@\(record.revision)  created \(RevisionJSON.date(record.createdAt))")
            if !record.baseModel.isEmpty { print("base: \(record.baseModel)@\(record.baseRevision) (\(record.baseReason))") }
            let rows = files.map { f in
                [f.path, Output.bytes(f.size), Output.bytes(f.storedBytes), Output.ratio(f.storedBytes, of: f.size),
                 "\(f.sharedChunks)", "\(f.deltaChunks)", "\(f.freshChunks)",
                 f.encodings.sorted { $0.value > $1.value }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")]
            }
            print(Output.table(["file", "size", "stored", "ratio", "shared", "delta", "fresh", "encodings"], rows))
            print("total: \(Output.bytes(size)), stored \(Output.bytes(stored)) (ratio \(Output.ratio(stored, of: size)), saved \(Output.percent(size - stored, of: size)))")
        }
    }
}
