import ArgumentParser

extension TPStore {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "init", abstract: "Create an empty store.")
        @OptionGroup var options: StoreOptions

        func run() throws {
            _ = try options.open(create: true)
            print("store ready at \(options.directory)")
        }
    }
}
