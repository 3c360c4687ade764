import ArgumentParser
import Foundation
import TenPakCodecs
import TenPakChunkStore
import TenPakModelStore

extension TPStore {
    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store totals: dedup and compression ratios.")
        @OptionGroup var options: StoreOptions
        @Flag(help: "Print JSON.") var json = false

        struct StatsJSON: Encodable {
            let models: Int, revisions: Int, files: Int, logicalBytes: Int
            let chunks: Int, deltaChunks: Int, uniqueRawBytes: Int, storedChunkBytes: Int, packs: Int, packBytes: Int
            let dedupRatio: Double, compressionRatio: Double, overallRatio: Double
            let encodings: [String: [String: Int]]
        }

        func run() throws {
            let t = try options.open().catalog.totals()
            func r(_ a: Int, _ b: Int) -> Double { b == 0 ? 0 : Double(a) / Double(b) }
            let s = StatsJSON(models: t.models, revisions: t.revisions, files: t.files, logicalBytes: t.logicalBytes, chunks: t.chunks,
                              deltaChunks: t.deltaChunks, uniqueRawBytes: t.chunkRawBytes, storedChunkBytes: t.chunkStoredBytes,
                              packs: t.packs, packBytes: t.packBytes, dedupRatio: r(t.logicalBytes, t.chunkRawBytes),
                              compressionRatio: r(t.chunkRawBytes, t.chunkStoredBytes), overallRatio: r(t.logicalBytes, t.packBytes),
                              encodings: Dictionary(uniqueKeysWithValues: t.byEncoding.map { key, value in
                                  (Encoding.name(of: key), ["chunks": value.count, "raw": value.raw, "stored": value.stored])
                              }))
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
