import ArgumentParser
import TenPakStoreLocation
import TenPakModelStore

extension TPStore {
    struct Copy: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "copy",
            abstract: "Copy every revision from one store to another (local or distributed), bit-exact.",
            discussion: """
                SRC and DEST are store directories or distributed-store config files. Stored frames are \
                copied as they are (not re-encoded; each is decoded and checked against its id on arrival), \
                chunks DEST already has are reused, and revisions DEST already has are skipped. A copy that \
                stops part way resumes where it stopped. DEST is created if missing.
                """)
        @Argument(help: ArgumentHelp("The store to copy from.", valueName: "SRC")) var source: String
        @Argument(help: ArgumentHelp("The store to copy into (created if missing).", valueName: "DEST")) var destination: String

        func run() throws {
            let from = try StoreLocation.open(source)
            let to = try StoreLocation.open(destination, create: true)
            let report = try Copier(source: from, destination: to).run { print($0) }
            print("copied \(report.copiedRevisions.count) revisions (\(report.skippedRevisions.count) already there): "
                + "\(report.copiedFrames) frames copied, \(report.restoredFrames) re-stored, \(report.reusedChunks) chunks reused, "
                + "\(Output.bytes(report.copiedBytes)) written")
        }
    }
}
