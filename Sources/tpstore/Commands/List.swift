import ArgumentParser
import Foundation
import TenPakChunkStore
import TenPakModelStore

extension TPStore {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List models and revisions.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Only this model.") var model: String?
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let store = try options.open()
            let revisions = try store.revisions(model: model)
            if json {
                print(try Output.json(revisions.map(RevisionJSON.init)))
                return
            }
            if revisions.isEmpty {
                print(model.map { "no revisions of \($0)" } ?? "the store is empty")
                return
            }
            let rows = revisions.map { r in
                [r.model, r.revision, RevisionJSON.date(r.createdAt), r.baseModel.isEmpty ? "-" : "\(r.baseModel)@\(r.baseRevision)"]
            }
            print(Output.table(["model", "revision", "created", "base"], rows))
        }
    }
}

struct RevisionJSON: Encodable {
    let model: String, revision: String, createdAt: String, base: String?, baseReason: String?

    init(_ r: RevisionRecord) {
        model = r.model
        revision = r.revision
        createdAt = RevisionJSON.date(r.createdAt)
        base = r.baseModel.isEmpty ? nil : "\(r.baseModel)@\(r.baseRevision)"
        baseReason = r.baseReason.isEmpty ? nil : r.baseReason
    }

    static func date(_ seconds: Int64) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}
