import ArgumentParser
import Foundation
import TenPakChunkStore
import TenPakModelStore

extension TPStore {
    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "get",
            abstract: "Rebuild a revision's files into a directory, each checked against its SHA-256.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "NAME or NAME@REV (the newest revision when REV is omitted).") var target: ModelReference
        @Argument(help: "Destination directory (created if missing).") var destination: String

        func run() throws {
            let store = try options.open()
            let started = Date()
            let files = try store.get(model: target.model, revision: target.revision, to: destination, progress: Output.progress("get"))
            Output.reportTraffic(store)
            let bytes = files.reduce(0) { $0 + $1.size }
            let seconds = Date().timeIntervalSince(started)
            print("wrote \(files.count) files, \(Output.bytes(bytes)), to \(destination), SHA-256 verified, in \(String(format: "%.2f", seconds)) s (\(String(format: "%.0f", Double(bytes) / max(seconds, 1e-6) / 1e6)) MB/s)")
        }
    }
}
