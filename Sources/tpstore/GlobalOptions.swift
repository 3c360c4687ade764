import ArgumentParser
import Foundation
import TenPakChunkStore
import TenPakModelStore
import TenPakStoreLocation

/// Options every command that touches a store shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store: a directory (local store) or a distributed store's JSON config file (default: $TPSTORE_DIR, else ~/.tpstore).", valueName: "DIR|CONFIG"))
    var store: String?

    var directory: String {
        if let store { return store }
        if let env = ProcessInfo.processInfo.environment["TPSTORE_DIR"], !env.isEmpty { return env }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
        return home + "/.tpstore"
    }

    func open(create: Bool = false) throws -> ModelStore {
        try StoreLocation.open(directory, create: create)
    }
}

/// A `NAME[@REV]` argument.
struct ModelReference: ExpressibleByArgument {
    let model: String
    let revision: String?

    init?(argument: String) {
        guard let parsed = try? Names.parseReference(argument) else { return nil }
        model = parsed.model
        revision = parsed.revision
    }

    var description: String { revision.map { "\(model)@\($0)" } ?? model }
}

import TenPakFormat
