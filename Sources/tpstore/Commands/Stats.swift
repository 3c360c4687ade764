import ArgumentParser
import Foundation
import TenPakCodecs
import TenPakChunkStore
import TenPakModelStore

extension TPStore {
    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stats", abstract: "Store totals: dedup and compression ratios.")
        @OptionGroup var options: StoreOptions
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            // The same figures the dashboard of `tpstore serve` shows (TenPakModelStore/StoreFigures.swift).
            let s = try options.open().statistics()
            let t = s.totals
            if json {
                print(try Output.json(s))
                return
            }
            print("models \(t.models), revisions \(t.revisions), files \(t.files)")
            print("logical bytes (all files of all revisions): \(Output.bytes(t.logicalBytes))")
            print("unique chunks: \(t.chunks) (\(t.deltaChunks) delta), \(Output.bytes(t.chunkRawBytes)) raw, \(Output.bytes(t.chunkStoredBytes)) stored")
            print("packs: \(t.packs), \(Output.bytes(t.packBytes))")
            print(String(format: "dedup %.2fx, compression %.2fx, overall %.2fx (logical / pack bytes)", s.dedupRatio, s.compressionRatio, s.overallRatio))
            let rows = t.byEncoding.sorted { $0.key < $1.key }.map { key, v in
                [Encoding.name(of: key), "\(v.count)", Output.bytes(v.raw), Output.bytes(v.stored), Output.ratio(v.stored, of: v.raw)]
            }
            if !rows.isEmpty { print(Output.table(["encoding", "chunks", "raw", "stored", "ratio"], rows)) }
        }
    }
}
