import ArgumentParser
import Foundation
import TenPakChunkStore
import TenPakModelStore
import TenPakTransfer

/// What `pull` and `push` share: the server, the token, `--json`.
struct TransferOptions: ParsableArguments {
    @Argument(help: ArgumentHelp("The server: the URL of a `tpstore serve`, e.g. http://hub:8080.", valueName: "URL")) var url: String
    @Argument(help: "NAME or NAME@REV (pull: main when REV is omitted; push: the newest revision).") var target: ModelReference
    @Option(help: ArgumentHelp("Bearer token (default: $TPSTORE_TOKEN).", valueName: "TOKEN")) var token: String?
    @Flag(help: "Print the summary as JSON.") var json = false

    var resolvedToken: String? {
        if let token { return token }
        if let env = ProcessInfo.processInfo.environment["TPSTORE_TOKEN"], !env.isEmpty { return env }
        return nil
    }

    /// A progress line on a TTY (bundles done of all), nothing otherwise.
    func progress(_ verb: String) -> ((Int, Int) -> Void)? {
        guard !json, Output.stderrIsTTY else { return nil }
        return { done, total in
            FileHandle.standardError.write(Data("\r\(verb) \(target): bundle \(done)/\(total)\u{1B}[K".utf8))
            if done == total { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        }
    }

    func report(_ summary: TransferSummary) throws {
        if json {
            print(try Output.json(summary))
            return
        }
        let rate = Double(summary.logicalBytes) / max(summary.seconds, 1e-6) / 1e6
        let what = summary.alreadyThere ? "already there" : "\(summary.framesMoved) frames moved, \(summary.chunksPresent) of \(summary.chunks) chunks already present"
        print("\(summary.direction) \(summary.model)@\(summary.revision): \(summary.files) files, \(Output.bytes(summary.logicalBytes)) logical, "
            + "\(Output.bytes(summary.bytesMoved)) moved (\(Output.ratio(summary.bytesMoved, of: summary.logicalBytes)) of logical), "
            + "\(what), SHA-256 verified, in \(String(format: "%.2f", summary.seconds)) s (\(String(format: "%.0f", rate)) MB/s logical)")
    }
}

extension TPStore {
    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pull",
            abstract: "Fetch a revision from a `tpstore serve` into the local store, moving only the chunks the store lacks.",
            discussion: """
                Every frame is checked against its id as it arrives and kept (a re-run after an interruption \
                moves only the rest); the revision is committed once every file rebuilds to its SHA-256. \
                The local store is created if missing.
                """)
        @OptionGroup var options: StoreOptions
        @OptionGroup var transfer: TransferOptions

        func run() throws {
            let store = try options.open(create: true)
            let client = try TransferClient(url: transfer.url, token: transfer.resolvedToken)
            let summary = try client.pull(model: transfer.target.model, revision: transfer.target.revision, into: store,
                                          progress: transfer.progress("pull"))
            try transfer.report(summary)
        }
    }

    struct Push: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "push",
            abstract: "Send a revision of the local store to a `tpstore serve`, moving only the chunks the server lacks.",
            discussion: """
                The server checks every frame against its id, keeps what arrived (a re-run after an \
                interruption sends only the rest), and commits the revision once every file rebuilds to \
                its SHA-256. Needs a token with write access to the model.
                """)
        @OptionGroup var options: StoreOptions
        @OptionGroup var transfer: TransferOptions

        func run() throws {
            let store = try options.open()
            let client = try TransferClient(url: transfer.url, token: transfer.resolvedToken)
            let summary = try client.push(model: transfer.target.model, revision: transfer.target.revision, from: store,
                                          progress: transfer.progress("push"))
            try transfer.report(summary)
        }
    }
}
