import ArgumentParser
import Foundation
import TenPakChunkStore
import TenPakModelStore
import TenPakOptimizer

extension TPStore {
    struct Optimize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "optimize",
            abstract: "Measure quantization methods on a stored revision and record the cheapest within an error bar.",
            discussion: """
            Methods: bitsandbytes int8, NF4 and FP4 (with and without double quantization), GPTQ and AWQ int4 \
            (group 128), against the 16-bit original. With --calibration (a safetensors file of input samples \
            per layer; Tools/make_calibration.py makes one) errors are output errors on held-out inputs; \
            without, weight-only proxies. Results are stored in the catalog; the same parameters are never \
            computed twice. --all annotates every revision that lacks an annotation and resumes after an \
            interruption.
            """)
        @OptionGroup var options: StoreOptions
        @Argument(help: "NAME or NAME@REV (the newest revision without @REV).") var target: ModelReference?
        @Flag(help: "Annotate every stored revision that has no annotation for these parameters.") var all = false
        @Option(help: ArgumentHelp("Calibration inputs (safetensors: one [samples, in_features] tensor per weight).", valueName: "FILE"))
        var calibration: String?
        @Option(help: ArgumentHelp("Error bar for the recommendation (relative error, default \(Optimizer.defaultMaxError)).", valueName: "E"))
        var maxError: Double = Optimizer.defaultMaxError
        @Option(help: ArgumentHelp("Pricing table JSON replacing the built-in one (format: SPEC.md).", valueName: "FILE"))
        var prices: String?
        @Flag(help: "Print JSON (the annotation; with --all, one summary per revision).") var json = false

        func validate() throws {
            if all == (target != nil) { throw ValidationError("give NAME[@REV] or --all (not both)") }
            if !(maxError >= 0) || !maxError.isFinite { throw ValidationError("--max-error must be a non-negative number") }
        }

        func run() throws {
            let store = try options.open()
            let optimizer = Optimizer(store: store, calibration: try calibration.map { try CalibrationSet(path: $0) }, maxError: maxError,
                                      pricing: try prices.map { try PricingTable.load(path: $0) } ?? .standard)
            if let target {
                let record = try store.catalog.resolve(model: target.model, revision: target.revision)
                let (annotation, computed) = try optimizer.annotate(record, progress: Self.progressLine("\(record.model)@\(record.revision)"))
                if json {
                    print(try annotation.json(pretty: true))
                } else {
                    print(computed ? String(format: "annotated %@@%@ in %.1f s", record.model, record.revision, annotation.seconds)
                                   : "\(record.model)@\(record.revision): already annotated with these parameters (not recomputed)")
                    print(AnnotationText.render(annotation))
                }
                return
            }
            let (pending, done) = try optimizer.pending()
            FileHandle.standardError.write(Data("optimize: \(pending.count) revisions to annotate, \(done.count) already annotated\n".utf8))
            var summaries: [[String: String]] = []
            for (i, record) in pending.enumerated() {
                let name = "\(record.model)@\(record.revision)"
                let (annotation, computed) = try optimizer.annotate(record, progress: Self.progressLine("[\(i + 1)/\(pending.count)] \(name)"))
                let line = String(format: "[%d/%d] %@: %@ in %.1f s; recommended %@", i + 1, pending.count, name,
                                  computed ? "annotated" : "already annotated", annotation.seconds, annotation.recommendation?.method ?? "none")
                if json {
                    summaries.append(["revision": name, "recommendation": annotation.recommendation?.method ?? "", "computed": computed ? "yes" : "no"])
                } else {
                    print(line)
                    fflush(nil) // all streams: progress reaches a pipe line by line
                }
            }
            if json { print(try Output.json(summaries)) } else { print("done: \(pending.count) annotated, \(done.count) were already annotated") }
        }

        static func progressLine(_ label: String) -> (@Sendable (Optimizer.Progress) -> Void)? {
            guard Output.stderrIsTTY else { return nil }
            return { p in
                let line = "\r\(label): \(p.done)/\(p.total) tensors (\(p.tensor))\u{1B}[K"
                FileHandle.standardError.write(Data(line.utf8))
                if p.done == p.total { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            }
        }
    }

    struct Annotations: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "annotations", abstract: "Show a revision's optimizer annotations.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "NAME or NAME@REV (the newest revision without @REV).") var target: ModelReference
        @Flag(help: "Print JSON (a list of annotations).") var json = false

        func run() throws {
            let store = try options.open()
            let record = try store.catalog.resolve(model: target.model, revision: target.revision)
            let records = try store.catalog.annotations(revision: record)
            if json {
                // The stored JSON, verbatim, as a list.
                print("[" + records.map(\.result).joined(separator: ",\n") + "]")
                return
            }
            if records.isEmpty {
                print("\(record.model)@\(record.revision) has no annotations (run `tpstore optimize \(record.model)@\(record.revision)`)")
                return
            }
            for (i, r) in records.enumerated() {
                if i > 0 { print("") }
                let a = try Annotation.decode(r.result)
                let stale = r.optimizerVersion != Optimizer.version ? " (stale: optimizer version \(r.optimizerVersion), current \(Optimizer.version))" : ""
                print("annotation \(i + 1) of \(records.count): optimizer \(r.optimizerVersion), \(a.createdAt)\(stale)")
                print("parameters: \(r.parameters)")
                print(AnnotationText.render(a))
            }
        }
    }
}

/// The text form of an annotation.
enum AnnotationText {
    static func render(_ a: Annotation) -> String {
        var lines: [String] = []
        lines.append("\(a.linearTensors) linear weights (\(a.linearParameters) parameters) measured; \(a.keptTensors) other tensors kept in 16 bit (\(Output.bytes(a.keptBytes)))")
        lines.append("error: \(a.errorMeasure); runtime overhead: +\(Int(a.runtimeOverhead.fraction * 100))% of weights + \(a.runtimeOverhead.fixedGiB) GiB")
        let rows = a.methods.map { m in
            [m.method, String(format: "%.3f", m.bitsPerWeight), Output.bytes(m.gpuBytes), String(format: "%.5f", m.relativeWeightError),
             m.relativeOutputError.map { String(format: "%.5f", $0) } ?? "-", String(format: "%.5f%@", m.error, m.errorIsProxy ? "*" : ""),
             m.withinErrorBar ? "yes" : "no", m.gpu.map { "\($0.count)× \($0.gpu)" } ?? "none fits",
             m.gpu.map { String(format: "$%.0f", $0.dollarsPerMonth) } ?? "-"]
        }
        lines.append(Output.table(["method", "bits/w", "GPU bytes", "weight err", "output err", "error", "in bar", "GPU", "$/month"], rows))
        if a.methods.contains(where: \.errorIsProxy) { lines.append("* weight-only proxy for tensors without calibration inputs") }
        if let r = a.recommendation {
            var line = String(format: "recommended: %@ at $%.0f/month", r.method, r.dollarsPerMonth)
            if let s = r.savingPerMonth, let b = r.baselineDollarsPerMonth {
                line += String(format: ", saving $%.0f/month (%.0f%%) against 16-bit at $%.0f/month", s, r.savingPercent ?? 0, b)
            }
            lines.append(line)
        }
        for n in a.notes { lines.append("note: \(n)") }
        return lines.joined(separator: "\n")
    }
}
