import ArgumentParser
import TenPakModelStore

extension TPStore {
    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Remove a revision.",
            discussion: "Chunks other revisions use (including base chunks their deltas need) stay; `gc` reclaims the rest.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "NAME@REV (the revision must be named).") var target: ModelReference

        func validate() throws {
            if target.revision == nil { throw ValidationError("name the revision to remove: NAME@REV (see `tpstore ls \(target.model)`)") }
        }

        func run() throws {
            let store = try options.open()
            // Safe: validate() ensured a revision.
            try store.remove(model: target.model, revision: target.revision!)
            print("removed \(target.model)@\(target.revision!)")
        }
    }
}
