import ArgumentParser
import TenPakStoreLocation
import TenPakDistributed
import Foundation
import TenPakModelStore

extension TPStore {
    struct Fsck: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fsck",
            abstract: "Check the catalog against the packs; exit non-zero on damage.",
            discussion: "Without --read-data every frame header is checked; with it every chunk is decoded and every file re-hashed.")
        @OptionGroup var options: StoreOptions
        @Flag(help: "Decode every chunk and check every file's SHA-256.") var readData = false
        @Flag(help: "Rebuild a lost or damaged catalog from the packs' frames.") var repair = false
        @Flag(help: "Print JSON.") var json = false

        struct ReportJSON: Encodable {
            let healthy: Bool, packs: Int, chunks: Int, revisions: Int, files: Int, bytesVerified: Int, frameBytesChecked: Int
            let damage: [String], notices: [String]
        }

        func run() throws {
            if repair {
                let report = try Repairer(target: StoreLocation.repairTarget(options.directory)).run()
                for line in report.lines { print(line) }
                if !report.unrecoverable.isEmpty {
                    for line in report.unrecoverable { FileHandle.standardError.write(Data("tpstore: not recovered: \(line)\n".utf8)) }
                    throw ExitCode(1)
                }
                return
            }
            let store = try options.open()
            let report = try Checker(store: store, readData: readData).run()
            if json {
                print(try Output.json(ReportJSON(healthy: report.isHealthy, packs: report.packs, chunks: report.chunks, revisions: report.revisions,
                                                 files: report.files, bytesVerified: report.bytesVerified, frameBytesChecked: report.frameBytesChecked,
                                                 damage: report.problems.filter { $0.severity == .damage }.map(\.message),
                                                 notices: report.problems.filter { $0.severity == .notice }.map(\.message))))
            } else {
                for problem in report.problems { print(problem) }
                print("checked \(report.packs) packs, \(report.chunks) chunks, \(report.revisions) revisions, \(report.files) files" +
                      ", every frame's checksums (\(Output.bytes(report.frameBytesChecked)) read)" +
                      (readData ? ", \(Output.bytes(report.bytesVerified)) decoded and verified"
                                : "; not checked: decodes and file SHA-256s (--read-data checks them)"))
                print(report.isHealthy ? "no damage found" : "DAMAGE FOUND: \(report.problems.filter { $0.severity == .damage }.count) problems")
            }
            if !report.isHealthy { throw ExitCode(1) }
        }
    }

    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Reclaim chunks no revision needs; repack mostly-garbage packs.",
            discussion: "Puts, gets and removals wait while gc holds the store lock.")
        @OptionGroup var options: StoreOptions
        @Flag(help: "Report what would be reclaimed without changing anything.") var dryRun = false

        func run() throws {
            let report = try Collector(store: try options.open()).run(dryRun: dryRun)
            let verb = dryRun ? "would reclaim" : "reclaimed"
            print("\(verb) \(report.deadChunks) chunks (\(Output.bytes(report.deadChunkBytes))), \(Output.bytes(report.reclaimedBytes)) of packs")
            print("packs: \(report.deletedPacks.count) deleted, \(report.repackedPacks.count) repacked into \(dryRun ? "new packs" : "\(report.newPacks.count) new"), \(report.orphanPacks.count) unreferenced removed, \(report.staleTemporaryFiles) stale temporary files")
        }
    }
}
