import ArgumentParser
import Foundation
import TenPakCodecs
import TenPakDistributed
import TenPakModelStore
import TenPakChunkStore
import TenPakFormat

extension TPStore {
    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "put",
            abstract: "Store files or a model directory as a new revision.",
            discussion: "Without --base or --no-base the base model is found among stored models automatically.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "NAME or NAME@REV (REV defaults to a fresh id, printed).") var target: ModelReference
        @Argument(help: "Files or directories to store.") var paths: [String]
        @Option(help: ArgumentHelp("Delta-code against this stored model.", valueName: "BASE[@REV]")) var base: ModelReference?
        @Flag(help: "Store without a base model.") var noBase = false
        @Flag(help: "Print the report as JSON.") var json = false
        @Flag(help: "Store what symbolic links to regular files inside the directories point to (by default a link is refused; links to directories are never followed).")
        var followLinks = false

        func validate() throws {
            if base != nil, noBase { throw ValidationError("--base and --no-base exclude each other") }
            if paths.isEmpty { throw ValidationError("give at least one file or directory to store") }
        }

        func run() throws {
            let store = try options.open(create: true)
            let choice: BaseChoice = noBase ? .none : base.map { .explicit(model: $0.model, revision: $0.revision) } ?? .automatic
            let report = try store.put(model: target.model, revision: target.revision, paths: paths, followLinks: followLinks, base: choice,
                                       progress: Output.progress("put"))
            // With --json, "no base" is in the output's `base` (null) and `warnings`; stderr stays quiet.
            for warning in report.warnings {
                if json, case .noBase = warning { continue }
                Output.warn(warning.description)
            }
            Output.reportTraffic(store)
            if json {
                print(try Output.json(PutJSON(report)))
                return
            }
            print("stored \(report.revision.model)@\(report.revision.revision)")
            if let base = report.base {
                print("base: \(base.revision.model)@\(base.revision.revision) (\(base.reason))")
            }
            let rows = report.files.map { f in
                [f.path, Output.bytes(f.size), Output.bytes(f.storedBytes), Output.ratio(f.storedBytes, of: f.size),
                 "\(f.sharedChunks)", "\(f.deltaChunks)", "\(f.freshChunks)"]
            }
            print(Output.table(["file", "size", "stored", "ratio", "shared", "delta", "fresh"], rows))
            let raw = report.rawBytes, stored = report.storedBytes
            print("total: \(Output.bytes(raw)) in, \(Output.bytes(stored)) stored (ratio \(Output.ratio(stored, of: raw)), saved \(Output.percent(raw - stored, of: raw))) in \(String(format: "%.2f", report.seconds)) s, \(String(format: "%.0f", Double(raw) / max(report.seconds, 1e-6) / 1e6)) MB/s")
        }
    }
}

struct PutJSON: Encodable {
    struct File: Encodable {
        let path: String, size: Int, kind: String, storedBytes: Int, sharedChunks: Int, deltaChunks: Int, freshChunks: Int
        let encodings: [String: Int]
    }
    let model: String, revision: String, base: String?, baseReason: String?, rawBytes: Int, storedBytes: Int, seconds: Double
    let files: [File]
    let warnings: [String]

    init(_ r: PutReport) {
        model = r.revision.model
        revision = r.revision.revision
        base = r.base.map { "\($0.revision.model)@\($0.revision.revision)" }
        baseReason = r.base?.reason
        rawBytes = r.rawBytes
        storedBytes = r.storedBytes
        seconds = r.seconds
        warnings = r.warnings.map(\.description)
        files = r.files.map { f in
            File(path: f.path, size: f.size, kind: f.kind == .safetensors ? "safetensors" : "opaque", storedBytes: f.storedBytes,
                 sharedChunks: f.sharedChunks, deltaChunks: f.deltaChunks, freshChunks: f.freshChunks,
                 encodings: Dictionary(uniqueKeysWithValues: f.encodings.map { (Encoding.name(of: $0.key), $0.value) }))
        }
    }
}
