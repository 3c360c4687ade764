import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore

/// The annotation pass: measures every quantization method on a stored revision's linear
/// weights, prices each on the cheapest GPU that holds it, recommends the cheapest method within
/// the error bar, and records the result in the catalog.
///
/// Nouns: a *linear weight* is a tensor the methods apply to (`isLinearWeight`); every other tensor
/// is *kept* in 16 bit. An *annotation* is keyed by revision, `Optimizer.version` and the
/// parameters (calibration file hash, error bar, pricing table hash): with the same key it is
/// read back, never recomputed.
public final class Optimizer: Sendable {
    /// Bump when a change alters any figure: older annotations then become stale.
    public static let version = "1"
    public static let defaultMaxError = 0.1

    public let store: ModelStore
    public let calibration: CalibrationSet?
    public let maxError: Double
    public let pricing: PricingTable
    public let parameters: AnnotationParameters

    public init(store: ModelStore, calibration: CalibrationSet?, maxError: Double = Optimizer.defaultMaxError,
                pricing: PricingTable = .standard) {
        self.store = store
        self.calibration = calibration
        self.maxError = maxError
        self.pricing = pricing
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let priceHash = (try? encoder.encode(pricing)).map { data in data.withUnsafeBytes { Hashing.sha256($0).hex } } ?? ""
        parameters = AnnotationParameters(calibration: calibration?.sha256, maxError: maxError, prices: priceHash)
    }

    /// 2-D F32/F16/BF16 `*.weight` tensors with both dimensions non-zero, except embeddings and
    /// output heads (names containing `embed`, `lm_head`, `wte`, `wpe`), which bitsandbytes, GPTQ and
    /// AWQ leave in 16 bit. Shapes are [out_features, in_features] as nn.Linear stores them.
    public static func isLinearWeight(_ t: SourceTensor) -> Bool {
        guard t.shape.count == 2, t.shape[0] > 0, t.shape[1] > 0, ["F32", "F16", "BF16"].contains(t.dtype), t.name.hasSuffix(".weight") else {
            return false
        }
        let lower = t.name.lowercased()
        if lower.contains("embed") || lower.contains("lm_head") { return false }
        let parts = lower.split(separator: ".")
        return !parts.contains("wte") && !parts.contains("wpe")
    }

    // MARK: the catalog

    public func existing(_ revision: RevisionRecord) throws -> Annotation? {
        guard let record = try store.catalog.annotation(revision: revision, optimizerVersion: Optimizer.version, parameters: parameters.canonical) else {
            return nil
        }
        return try Annotation.decode(record.result)
    }

    /// Revisions (of one model, or all) without an annotation for this version and these parameters.
    public func pending(model: String? = nil) throws -> (pending: [RevisionRecord], done: [RevisionRecord]) {
        var pending: [RevisionRecord] = [], done: [RevisionRecord] = []
        for r in try store.catalog.revisions(model: model) {
            if try store.catalog.annotation(revision: r, optimizerVersion: Optimizer.version, parameters: parameters.canonical) != nil {
                done.append(r)
            } else {
                pending.append(r)
            }
        }
        return (pending, done)
    }

    public struct Progress: Sendable {
        public let done: Int
        public let total: Int
        public let tensor: String
    }

    /// The revision's annotation: read back when one exists for this key, else computed and
    /// recorded (one catalog transaction, so an interrupted pass leaves nothing half-written).
    public func annotate(_ revision: RevisionRecord, progress: (@Sendable (Progress) -> Void)? = nil) throws -> (annotation: Annotation, computed: Bool) {
        if let found = try existing(revision) { return (found, false) }
        let lock = try store.chunks.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        let source = try StoreTensorSource(store: store, revision: revision)
        let annotation = try Optimizer.annotate(source: source, model: revision.model, revision: revision.revision, calibration: calibration,
                                                maxError: maxError, pricing: pricing, parameters: parameters, progress: progress)
        try store.catalog.putAnnotation(AnnotationRecord(revisionRowID: revision.rowID, optimizerVersion: Optimizer.version,
                                                         parameters: parameters.canonical, createdAt: Int64(Date().timeIntervalSince1970),
                                                         result: try annotation.json()))
        return (annotation, true)
    }

    // MARK: the computation

    /// Measures every linear weight of `source` (on all cores, one tensor per core at a time) and
    /// summarises. Independent of the store: the benchmark runs it on files too.
    public static func annotate(source: TensorSource, model: String, revision: String, calibration: CalibrationSet?, maxError: Double,
                                pricing: PricingTable, parameters: AnnotationParameters,
                                progress: (@Sendable (Progress) -> Void)? = nil) throws -> Annotation {
        let started = Date()
        let all = try source.tensors()
        let linear = all.filter(isLinearWeight)
        var keptParameters = 0, keptBytes = 0
        for t in all where !isLinearWeight(t) {
            keptParameters += t.elementCount
            keptBytes += ["F32", "F16", "BF16", "F64"].contains(t.dtype) ? 2 * t.elementCount : t.byteCount
        }
        // Largest first, so the last tensors to finish are small ones.
        let order = linear.indices.sorted { linear[$0].elementCount > linear[$1].elementCount }
        let results = ResultSlots(count: linear.count)
        DispatchQueue.concurrentPerform(iterations: linear.count) { k in
            guard results.firstError == nil else { return }
            let t = linear[order[k]]
            do {
                let w = try source.floats(t)
                var notes: [String] = []
                var inputs: (x: [Float], samples: Int)? = nil
                if let calibration {
                    do { inputs = try calibration.inputs(for: t.name, cols: t.shape[1]) } catch { notes.append("\(error)") }
                }
                var m = TensorEvaluator.measure(w, rows: t.shape[0], cols: t.shape[1], dtype: t.dtype, inputs: inputs?.x,
                                                samples: inputs?.samples ?? 0, file: t.file, name: t.name)
                m.notes = notes + m.notes
                let done = results.set(order[k], m)
                progress?(Progress(done: done, total: linear.count, tensor: t.name))
            } catch {
                results.fail(error)
            }
        }
        if let error = results.firstError { throw error }
        let tensors = results.values()
        return summarize(tensors: tensors, model: model, revision: revision, maxError: maxError, pricing: pricing, parameters: parameters,
                         keptTensors: all.count - linear.count, keptParameters: keptParameters, keptBytes: keptBytes,
                         calibrationGiven: calibration != nil, seconds: Date().timeIntervalSince(started))
    }

    static func summarize(tensors: [TensorMeasurement], model: String, revision: String, maxError: Double, pricing: PricingTable,
                          parameters: AnnotationParameters, keptTensors: Int, keptParameters: Int, keptBytes: Int,
                          calibrationGiven: Bool, seconds: Double) -> Annotation {
        let linearParameters = tensors.reduce(0) { $0 + $1.shape[0] * $1.shape[1] }
        let calibrated = tensors.filter { $0.evaluationSamples > 0 }
        var summaries: [MethodSummary] = []
        for method in QuantizationMethod.allCases {
            var bytes = 0, we = 0.0, weMax = 0.0, oe = 0.0, oeMax = 0.0, oeWeight = 0, err = 0.0
            for t in tensors {
                let m = t.methods[method.rawValue]!
                let n = Double(t.shape[0] * t.shape[1])
                bytes += m.bytes
                we += n * m.relativeWeightError
                weMax = max(weMax, m.relativeWeightError)
                if let o = m.relativeOutputError {
                    oe += n * o
                    oeMax = max(oeMax, o)
                    oeWeight += t.shape[0] * t.shape[1]
                }
                err += n * (m.relativeOutputError ?? m.relativeWeightError)
            }
            let p = Double(max(linearParameters, 1))
            let gpuBytes = bytes + keptBytes
            let error = err / p
            summaries.append(MethodSummary(
                method: method.rawValue, bitsPerWeight: linearParameters == 0 ? 0 : Double(bytes * 8) / Double(linearParameters),
                gpuBytes: gpuBytes, relativeWeightError: we / p, maxRelativeWeightError: weMax,
                relativeOutputError: oeWeight > 0 ? oe / Double(oeWeight) : nil, maxRelativeOutputError: oeWeight > 0 ? oeMax : nil,
                error: error, errorIsProxy: calibrated.count < tensors.count, withinErrorBar: error <= maxError,
                gpu: pricing.cheapest(requiredBytes: pricing.requiredBytes(weightBytes: gpuBytes))))
        }
        var notes: [String] = []
        if !calibrationGiven {
            notes.append("no calibration file: errors are weight-only proxies ‖W−Ŵ‖/‖W‖ (the output error on white-noise inputs); GPTQ reduces to round-to-nearest and AWQ to no scaling")
        } else if calibrated.count < tensors.count {
            notes.append("\(tensors.count - calibrated.count) of \(tensors.count) linear weights had no calibration inputs: their errors are weight-only proxies")
        }
        if tensors.isEmpty { notes.append("no linear weights: nothing to quantize") }
        let errorMeasure = calibrated.isEmpty ? "relative weight error (proxy, no calibration inputs)"
            : calibrated.count == tensors.count ? "relative output error on held-out calibration inputs"
            : "relative output error where calibration inputs exist, weight error (proxy) elsewhere"
        let baseline = summaries.first { $0.method == QuantizationMethod.fp16.rawValue }?.gpu
        let candidates = summaries.filter { s in
            s.withinErrorBar && s.gpu != nil && QuantizationMethod(rawValue: s.method)!.recommendable
        }
        // Cheapest; at equal price the more accurate, then the smaller.
        let best = candidates.min { a, b in
            (a.gpu!.dollarsPerMonth, a.error, a.gpuBytes) < (b.gpu!.dollarsPerMonth, b.error, b.gpuBytes)
        }
        var recommendation: Recommendation?
        if let best, let gpu = best.gpu {
            let saving = baseline.map { $0.dollarsPerMonth - gpu.dollarsPerMonth }
            let percent = baseline.flatMap { $0.dollarsPerMonth > 0 ? 100 * ($0.dollarsPerMonth - gpu.dollarsPerMonth) / $0.dollarsPerMonth : nil }
            recommendation = Recommendation(
                method: best.method, dollarsPerMonth: gpu.dollarsPerMonth, baselineDollarsPerMonth: baseline?.dollarsPerMonth,
                savingPerMonth: saving, savingPercent: percent,
                reason: String(format: "cheapest within the error bar %.3g: %@ (error %.4f) on %d× %@", maxError, best.method, best.error, gpu.count, gpu.gpu))
        } else {
            notes.append(summaries.contains { $0.gpu != nil } ? "no method is within the error bar \(maxError)" : "no GPU in the pricing table holds this model")
        }
        let formatter = ISO8601DateFormatter()
        return Annotation(optimizerVersion: version, model: model, revision: revision, parameters: parameters,
                          createdAt: formatter.string(from: Date()), errorMeasure: errorMeasure, calibratedTensors: calibrated.count,
                          linearTensors: tensors.count, linearParameters: linearParameters, keptTensors: keptTensors,
                          keptParameters: keptParameters, keptBytes: keptBytes, runtimeOverhead: pricing.runtimeOverhead,
                          methods: summaries, recommendation: recommendation,
                          tensors: tensors.sorted { ($0.file, $0.name) < ($1.file, $1.name) }, notes: notes, seconds: seconds)
    }
}

/// One slot per tensor, filled from `concurrentPerform`'s threads.
final class ResultSlots: @unchecked Sendable {
    // Safe: every access holds `lock`.
    private var slots: [TensorMeasurement?]
    private var error: Error?
    private var filled = 0
    private let lock = NSLock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    /// Stores a result; returns how many are filled.
    func set(_ i: Int, _ m: TensorMeasurement) -> Int {
        lock.lock(); defer { lock.unlock() }
        slots[i] = m
        filled += 1
        return filled
    }

    func fail(_ e: Error) {
        lock.lock(); defer { lock.unlock() }
        if error == nil { error = e }
    }

    var firstError: Error? {
        lock.lock(); defer { lock.unlock() }
        return error
    }

    func values() -> [TensorMeasurement] {
        lock.lock(); defer { lock.unlock() }
        return slots.compactMap { $0 }
    }
}
