import Foundation
import TenPakChunkStore
import TenPakCodecs
import TenPakFormat

/// The base a put is delta-coded against, and why it was chosen.
public struct BaseDecision: Sendable {
    public let revision: RevisionRecord
    public let reason: String
}

/// Finds the stored revision a new upload is most likely a fine-tune of (SPEC §10 "Base choice").
///
/// 1. Candidates: the candidate index gives the revisions sharing at least `minimumSignatureShare`
///    of the bytes of the upload's largest tensors (`TensorSignature`), however many revisions the
///    store holds; at most `candidateLimit` of them, most bytes and newest first.
/// 2. Content sketch: the upload's coarse sketch (`BaseSketch.coarse()`) is compared with every
///    candidate's, which the candidate index returns with it; the `fineComparisons` nearest, and
///    the bases they were stored against (`parents`), are
///    compared again by their full sketches (a candidate without a usable sketch gets it read or
///    made from its chunks, up to `sketchesMadePerPut` per put); of the `shortlist` nearest, those
///    within `confirmMargin` of the nearest go on. Candidates whose sketch is missing, damaged or
///    not comparable are not ranked: the newest `unsketchedSampled` of them go on instead
///    (sampling, as before sketches existed).
/// 3. Confirmation: a few paired chunks are encoded with and without each shortlisted candidate's
///    chunks; it must make them at least `requiredGain` smaller, and the largest saving wins. A
///    same-shape model trained separately fails here.
/// 4. A `base_model` in the model card's front matter adds its newest revision to the shortlist and
///    2 points to its saving: a hint, never proof.
public enum BaseMatcher {
    static let minimumSignatureShare = 0.5
    static let requiredGain = 0.05
    static let samplesPerCandidate = 6
    static let shortlist = 3
    /// Only candidates this close to the nearest (log2 of the RMS ratio: 2^0.25 ≈ 1.19×) are
    /// confirmed: a sibling is about √2 (0.5) farther, while the estimate's own noise over 1,024
    /// samples is a few hundredths; a near tie (a light fine-tune of the base) is left to the encodes.
    static let confirmMargin = 0.25
    static let unsketchedSampled = 2
    static let sketchesMadePerPut = 8
    /// Candidates whose full sketch is read after the coarse ranking. The coarse distance (128
    /// samples) has a noise of about 0.1 (log2) and a sibling is about 0.5 farther than the true
    /// base, so among a thousand siblings the true base ranks near the top; 16 leaves a wide margin
    /// and costs 16 sketch reads instead of a thousand.
    static let fineComparisons = 16
    /// Bounds the work of one choice (index rows read, sketches compared) whatever the store holds.
    static let candidateLimit = 4096
    /// The smallest piece a confirmation encodes: below it a coded size says little about a delta.
    static let minimumSampledBytes = 4096

    /// Whether a confirmation may encode `piece`: a piece of a tensor, at least `minimumSampledBytes` long.
    static func sampleable(_ piece: ChunkPlan.Piece) -> Bool {
        piece.tensor != nil && piece.length >= minimumSampledBytes
    }

    /// The choice, the line saying how it was made, and the chosen revision's index (so the put
    /// does not load it again).
    struct Choice {
        let decision: BaseDecision?
        let note: String
        let index: BaseIndex?
    }

    static func choose(store: ChunkStore, uploads: [(input: PutInput, plan: ChunkPlan)], hint: String?,
                       sketch: BaseSketch?) throws -> Choice {
        let tensors = uploads.flatMap(\.plan.tensors)
        let totalBytes = tensors.reduce(0) { $0 + ($1.end - $1.begin) }
        guard totalBytes > 0 else { return Choice(decision: nil, note: "the upload has no safetensors tensors", index: nil) }
        // A base is only ever taken on the word of sampled encodes (step 3); an upload with nothing
        // to sample would see every candidate fail there, after a candidate query, a thousand
        // sketch comparisons and three base indexes read: the same answer, told at once.
        guard uploads.contains(where: { $0.plan.pieces.contains(where: sampleable) }) else {
            return Choice(decision: nil, note: "no tensor piece of at least \(minimumSampledBytes) bytes to confirm a base with by sampled encodes", index: nil)
        }
        let catalog = store.catalog
        let wanted = TensorSignature.indexRows(tensors)
        let wantedBytes = wanted.reduce(0) { $0 + $1.bytes }
        let threshold = Int((Double(wantedBytes) * minimumSignatureShare).rounded(.up))
        let candidates = try catalog.baseCandidates(wanted, minimumBytes: max(1, threshold), limit: candidateLimit)
        guard !candidates.isEmpty else {
            return Choice(decision: nil, note: "no stored model has at least \(Int(minimumSignatureShare * 100))% of this upload's tensor bytes under the same names, dtypes and shapes", index: nil)
        }
        var notes: [String] = ["\(candidates.count)\(candidates.count == candidateLimit ? "+" : "") candidate\(candidates.count == 1 ? "" : "s") by tensor signature"]

        // 2. Sketches: every candidate's coarse one (read with it), then the full ones of the nearest
        // and of the newest candidates without a usable coarse sketch; missing or damaged full
        // ones of the latter are made from their chunks (bounded).
        // (A damaged catalog could list a revision twice: the larger figure, never a trap.)
        let matched = Dictionary(candidates.map { ($0.revisionRowID, $0.matchedBytes) }, uniquingKeysWith: max)
        var distances: [Int64: Double] = [:]
        var unsketched: [Int64] = []
        var damaged = 0
        var coarselyCompared = 0
        if let sketch {
            let coarse = sketch.coarse()
            var byCoarse: [(id: Int64, matched: Int, distance: Double)] = []
            byCoarse.reserveCapacity(candidates.count)
            // Without a usable coarse sketch: its full one is read, or made (below). One whose
            // sketch shares no tensor with the upload's is only left unranked: reading or making
            // it again would find the same.
            var lacking: [Int64] = []
            for c in candidates {
                // Compared where the bytes lie (no decoded copy): a thousand of these per put.
                let compared = c.coarseSketch.map { bytes in Result { try coarse.distance(toEncoded: bytes) } }
                guard case let .success(found)? = compared else {
                    lacking.append(c.revisionRowID)
                    unsketched.append(c.revisionRowID)
                    continue
                }
                guard let d = found else {
                    unsketched.append(c.revisionRowID)
                    continue
                }
                byCoarse.append((c.revisionRowID, c.matchedBytes, d.log2RMS))
            }
            coarselyCompared = byCoarse.count
            // Nearest, then most bytes, then newest (as the final ranking); spelled out rather than
            // as a tuple comparison, which costs a generic lookup per call a thousand times over.
            byCoarse.sort { a, b in
                if a.distance != b.distance { return a.distance < b.distance }
                if a.matched != b.matched { return a.matched > b.matched }
                return a.id > b.id
            }
            var fine = byCoarse.prefix(fineComparisons).map { (id: $0.id, distance: $0.distance) }
            // The bases the nearest were stored against are compared in full too: among a thousand
            // siblings the coarse estimate (16 samples a tensor; in BF16 most sampled differences
            // are 0 or one unit in the last place) can rank their common base below the 16th, and
            // the siblings then win; a fine-tune's nearest stored models are its siblings, and
            // theirs is its base.
            let coarseDistance = Dictionary(byCoarse.map { ($0.id, $0.distance) }, uniquingKeysWith: min)
            let parentIDs = try parents(of: fine.map(\.id), catalog: catalog).filter { coarseDistance[$0] != nil }
            fine += parentIDs.map { (id: $0, distance: coarseDistance[$0] ?? 0) }
            if !parentIDs.isEmpty { notes.append("\(parentIDs.count) base\(parentIDs.count == 1 ? "" : "s") of the nearest added") }
            // Newest first: the ones most likely to be near, and an old store converges put by put.
            unsketched.sort(by: >)
            let repairing = Array(lacking.sorted(by: >).prefix(sketchesMadePerPut))
            let stored = try catalog.sketches(revisionRowIDs: fine.map(\.id) + repairing)
            var brokenFull: [Int64] = []
            for (id, coarseDistance) in fine {
                // A full sketch lost or damaged after its coarse one was stored: the coarse
                // estimate still ranks it, and it is remade below within the budget.
                guard let bytes = stored[id], let theirs = try? BaseSketch.decode(bytes) else {
                    damaged += 1
                    brokenFull.append(id)
                    distances[id] = coarseDistance
                    continue
                }
                guard let d = sketch.distance(to: theirs) else {
                    distances[id] = coarseDistance
                    continue
                }
                distances[id] = d.log2RMS
            }
            var made = 0
            let remaking = brokenFull.prefix(max(0, sketchesMadePerPut - repairing.count))
            for id in repairing + remaking {
                var theirs = remaking.contains(id) ? nil : stored[id].flatMap { try? BaseSketch.decode($0) }
                if !remaking.contains(id), stored[id] != nil, theirs == nil { damaged += 1 }
                if theirs == nil {
                    guard let record = try catalog.revisions(rowIDs: [id])[id],
                          let remade = try? remake(store: store, record: record) else { continue }
                    theirs = remade
                    made += 1
                }
                guard let theirs else { continue }
                // Best effort (stores the coarse sketch again too): the revision may be removed
                // meanwhile, and the choice works without it.
                try? catalog.putSketch(revisionRowID: id, sketch: theirs.encoded())
                if let d = sketch.distance(to: theirs) { distances[id] = d.log2RMS }
            }
            unsketched.removeAll { distances[$0] != nil }
            if made > 0 { notes.append("\(made) sketch\(made == 1 ? "" : "es") made from stored chunks") }
            if damaged > 0 { notes.append("\(damaged) damaged sketch\(damaged == 1 ? "" : "es") ignored") }
        } else {
            unsketched = candidates.map(\.revisionRowID).sorted(by: >)
            notes.append("the upload has no float tensors to sketch")
        }
        let ranked = distances.keys.sorted { a, b in
            (distances[a] ?? 0, -(matched[a] ?? 0), -a) < (distances[b] ?? 0, -(matched[b] ?? 0), -b)
        }
        let nearestDistance = ranked.first.flatMap { distances[$0] } ?? 0
        var shortlistIDs = ranked.prefix(shortlist).filter { (distances[$0] ?? 0) <= nearestDistance + confirmMargin }
        if !ranked.isEmpty {
            let nearest = ranked[0], next = ranked.count > 1 ? ranked[1] : nil
            notes.append("\(max(coarselyCompared, ranked.count)) compared by content sketch (\(ranked.count) in full), nearest RMS difference \(format(distances[nearest] ?? 0))"
                         + (next.map { " (next \(format(distances[$0] ?? 0)))" } ?? ""))
        }
        if !unsketched.isEmpty {
            let sampled = unsketched.prefix(unsketchedSampled)
            shortlistIDs += sampled
            notes.append("\(unsketched.count) without a usable sketch, the newest \(sampled.count) sampled")
        }
        var hintedID: Int64?
        if let hint {
            for name in [hint, hint.split(separator: "/").last.map(String.init) ?? hint] {
                if let r = try? catalog.resolve(model: name, revision: nil), matched[r.rowID] != nil {
                    hintedID = r.rowID
                    break
                }
            }
            if let hintedID, !shortlistIDs.contains(hintedID) { shortlistIDs.append(hintedID) }
        }

        // 3. Confirmation by sampled encodes.
        let records = try catalog.revisions(rowIDs: shortlistIDs)
        var noBaseSizes: [SampledPiece: Int] = [:]
        var best: (record: RevisionRecord, index: BaseIndex, score: Double, line: String)?
        var lines: [String] = []
        for id in shortlistIDs {
            guard let record = records[id] else { continue }   // removed meanwhile
            let index = try BaseIndex.load(store, revision: record)
            let name = "\(record.model)@\(record.revision)"
            var matchedBytes = 0, count = 0
            for t in tensors where index.pair(name: t.name, dtype: t.dtype, shape: t.shape) != nil {
                matchedBytes += t.end - t.begin
                count += 1
            }
            guard Double(matchedBytes) / Double(totalBytes) >= minimumSignatureShare else {
                lines.append("\(name): only \(count)/\(tensors.count) tensors pair")
                continue
            }
            let gain = try sampledGain(store: store, uploads: uploads, index: index, noBaseSizes: &noBaseSizes)
            let how = distances[id].map { "sketch RMS difference \(format($0)), " } ?? "no sketch, "
            let line = "\(name): \(count)/\(tensors.count) tensors match, \(how)sampled delta \(percent(1 - gain)) of no-base size"
            lines.append(line)
            guard gain >= requiredGain else { continue }
            let score = gain + (id == hintedID ? 0.02 : 0)
            if best.map({ score > $0.score }) ?? true { best = (record, index, score, line) }
        }
        let how = notes.joined(separator: "; ")
        guard let best else {
            return Choice(decision: nil, note: "candidates share tensor shapes but a delta does not pay (\(how); \(lines.joined(separator: "; ")))", index: nil)
        }
        var reason = "automatic: \(best.line) [\(how); confirmed \(lines.count) by sampled encodes]"
        if let hint { reason += "; model card base_model: \(hint)" }
        return Choice(decision: BaseDecision(revision: best.record, reason: reason), note: reason, index: best.index)
    }

    /// The revisions `ids` were stored against (their bases), other than `ids` themselves, each
    /// once, newest first; a base since removed is left out. One query for the records, one per
    /// distinct base named.
    static func parents(of ids: [Int64], catalog: any Catalog) throws -> [Int64] {
        let records = try catalog.revisions(rowIDs: ids)
        var named = Set<[String]>()
        var found = Set<Int64>()
        for id in ids {
            guard let r = records[id], !r.baseModel.isEmpty, !r.baseRevision.isEmpty,
                  named.insert([r.baseModel, r.baseRevision]).inserted else { continue }
            do {
                found.insert(try catalog.resolve(model: r.baseModel, revision: r.baseRevision).rowID)
            } catch StoreError.notFound {
                continue   // removed since
            }
        }
        return found.subtracting(ids).sorted(by: >)
    }

    /// Makes a stored revision's sketch again from its chunks (for a revision stored before sketches
    /// existed, or whose sketch is damaged); nil when it has no float tensors.
    static func remake(store: ChunkStore, record: RevisionRecord) throws -> BaseSketch? {
        let index = try BaseIndex.load(store, revision: record)
        var tensors: [TensorRecord] = []
        for file in try store.catalog.files(revision: record) where file.kind == .safetensors {
            tensors += try store.catalog.tensors(file: file)
        }
        return try BaseSketch.make(stored: index, tensors: tensors, store: store)
    }

    /// A sketch distance (log2 of an RMS difference) as the RMS difference itself.
    static func format(_ log2RMS: Double) -> String { log2RMS <= -100 ? "0" : String(format: "%.2e", pow(2, log2RMS)) }

    /// A piece of an upload that a confirmation encodes: its file and offset.
    struct SampledPiece: Hashable {
        let source: String
        let offset: Int
    }

    /// 1 − (delta-coded bytes / no-base bytes) over a few paired chunks. `noBaseSizes` carries the
    /// no-base sizes from one candidate to the next: candidates of one architecture pair the same
    /// pieces, so the same pieces are sampled, and a piece's no-base encode does not depend on the
    /// candidate (of the encodes of three candidates confirmed, a third are then not run).
    static func sampledGain(store: ChunkStore, uploads: [(input: PutInput, plan: ChunkPlan)], index: BaseIndex,
                            noBaseSizes: inout [SampledPiece: Int]) throws -> Double {
        var pairs: [(source: String, piece: ChunkPlan.Piece, base: ChunkLocation)] = []
        for (input, plan) in uploads {
            for piece in plan.pieces {
                guard sampleable(piece), let t = piece.tensor else { continue }
                let tensor = plan.tensors[t]
                if let b = index.pair(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape), piece.indexInTensor < b.chunks.count {
                    pairs.append((input.source, piece, b.chunks[piece.indexInTensor]))
                }
            }
        }
        guard !pairs.isEmpty else { return 0 }
        let step = max(1, pairs.count / samplesPerCandidate)
        // Against the chunk the put would really use: a candidate stored as a delta of a delta
        // lends its own base chunk instead (SPEC §8.5), which is farther from the upload.
        let sample = try stride(from: step / 2, to: pairs.count, by: step).prefix(samplesPerCandidate).compactMap { i in
            try usableBase(pairs[i].base, catalog: store.catalog).map { (pairs[i].source, pairs[i].piece, $0) }
        }
        guard !sample.isEmpty else { return 0 }
        let known = noBaseSizes
        let sizes = try parallelMap(sample.count) { i -> (Int, Int) in
            let (source, piece, base) = sample[i]
            let raw = try OpenFile(path: source, mode: .read).read(count: piece.length, at: piece.offset)
            let baseBytes = try store.rawBytes(of: base)
            return raw.withUnsafeBytes { r in
                let alone = known[SampledPiece(source: source, offset: piece.offset)] ?? ChunkCodec.encode(r, element: piece.element).payload.count
                let delta = baseBytes.withUnsafeBytes { ChunkCodec.encode(r, element: piece.element, base: $0).payload.count }
                return (alone, delta)
            }
        }
        for (i, size) in sizes.enumerated() { noBaseSizes[SampledPiece(source: sample[i].0, offset: sample[i].1.offset)] = size.0 }
        let alone = sizes.reduce(0) { $0 + $1.0 }, delta = sizes.reduce(0) { $0 + $1.1 }
        return alone == 0 ? 0 : 1 - Double(delta) / Double(alone)
    }

    /// The chunk a put codes against for `paired`: it, or the first chunk down its base chain below
    /// the depth limit (as `Putter` does); nil when there is none.
    static func usableBase(_ paired: ChunkLocation, catalog: any Catalog) throws -> ChunkLocation? {
        var candidate = paired
        while candidate.depth >= ChunkStore.maxDeltaDepth, let next = candidate.baseRowID, let location = try catalog.chunk(rowID: next) {
            candidate = location
        }
        return candidate.depth < ChunkStore.maxDeltaDepth ? candidate : nil
    }

    static func percent(_ x: Double) -> String { "\(Int((x * 100).rounded()))%" }

    /// `base_model:` from a model card's YAML front matter (a string or the first list item).
    static func hint(fromModelCard text: String) -> String? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard lines.first == "---" else { return nil }
        for (i, line) in lines.enumerated().dropFirst() {
            if line == "---" { break }
            guard line.hasPrefix("base_model:") else { continue }
            var value = line.dropFirst("base_model:".count).trimmingCharacters(in: .whitespaces)
            if value.isEmpty, i + 1 < lines.count, lines[i + 1].hasPrefix("- ") {
                value = String(lines[i + 1].dropFirst(2)).trimmingCharacters(in: .whitespaces)
            }
            value = value.trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            return value.isEmpty ? nil : value
        }
        return nil
    }
}

import Foundation
