import TenPakChunkStore
import TenPakCodecs
import TenPakFormat

/// The base a put is delta-coded against, and why it was chosen.
public struct BaseDecision: Sendable {
    public let revision: RevisionRecord
    public let reason: String
}

/// Finds the stored revision a new upload is most likely a fine-tune of.
///
/// 1. Signature: the share of the upload's tensor bytes whose name, dtype and shape (or shape but
///    for the leading dimension) match a candidate's tensors, across all shards. Below
///    `minimumSignatureShare` a candidate is out.
/// 2. Content: a few paired chunks are encoded with and without the candidate's chunks as base;
///    the candidate must make them at least `requiredGain` smaller. A same-shape model trained
///    separately fails here.
/// 3. A `base_model` in the model card's front matter breaks ties; it is a hint, never proof.
public enum BaseMatcher {
    static let minimumSignatureShare = 0.5
    static let requiredGain = 0.05
    static let samplesPerCandidate = 6
    static let maxCandidatesSampled = 4

    struct Candidate {
        let index: BaseIndex
        let share: Double
        let matched: Int
        let total: Int
    }

    static func choose(store: ChunkStore, uploads: [(input: PutInput, plan: ChunkPlan)], excluding model: String,
                       hint: String?) throws -> (decision: BaseDecision?, note: String) {
        let tensors = uploads.flatMap { upload in upload.plan.tensors.map { (upload, $0) } }
        let totalBytes = tensors.reduce(0) { $0 + ($1.1.end - $1.1.begin) }
        guard totalBytes > 0 else { return (nil, "no base: the upload has no safetensors tensors") }
        var candidates: [Candidate] = []
        for revision in try store.catalog.revisions(model: nil) {
            let index = try BaseIndex.load(store, revision: revision)
            guard !index.tensors.isEmpty else { continue }
            var matched = 0, count = 0
            for (_, t) in tensors where index.pair(name: t.name, dtype: t.dtype, shape: t.shape) != nil {
                matched += t.end - t.begin
                count += 1
            }
            let share = Double(matched) / Double(totalBytes)
            if share >= minimumSignatureShare {
                candidates.append(Candidate(index: index, share: share, matched: count, total: tensors.count))
            }
        }
        guard !candidates.isEmpty else {
            return (nil, "no base: no stored model has at least \(Int(minimumSignatureShare * 100))% of this upload's tensor bytes under the same names, dtypes and shapes")
        }
        // Newest first among equals, so a chain of fine-tunes picks its latest ancestor.
        candidates.sort { ($0.share, $0.index.revision.rowID) > ($1.share, $1.index.revision.rowID) }
        var best: (Candidate, Double)?
        var notes: [String] = []
        for candidate in candidates.prefix(maxCandidatesSampled) {
            let gain = try sampledGain(store: store, uploads: uploads, index: candidate.index)
            let name = "\(candidate.index.revision.model)@\(candidate.index.revision.revision)"
            notes.append("\(name): \(candidate.matched)/\(candidate.total) tensors match, sampled delta \(percent(1 - gain)) of no-base size")
            guard gain >= requiredGain else { continue }
            let hinted = hint.map { h in h == candidate.index.revision.model || h.hasSuffix("/" + candidate.index.revision.model) } ?? false
            let score = gain + (hinted ? 0.02 : 0)
            if best == nil || score > best!.1 { best = (candidate, score) }
        }
        guard let (chosen, _) = best else {
            return (nil, "no base: candidates share tensor shapes but a delta does not pay (\(notes.joined(separator: "; ")))")
        }
        var reason = notes.first { $0.hasPrefix("\(chosen.index.revision.model)@\(chosen.index.revision.revision):") } ?? ""
        if let hint { reason += "; model card base_model: \(hint)" }
        return (BaseDecision(revision: chosen.index.revision, reason: "automatic: " + reason), reason)
    }

    /// 1 − (delta-coded bytes / no-base bytes) over a few paired chunks.
    static func sampledGain(store: ChunkStore, uploads: [(input: PutInput, plan: ChunkPlan)], index: BaseIndex) throws -> Double {
        var pairs: [(source: String, piece: ChunkPlan.Piece, base: ChunkLocation)] = []
        for (input, plan) in uploads {
            for piece in plan.pieces {
                guard let t = piece.tensor, piece.length >= 4096 else { continue }
                let tensor = plan.tensors[t]
                if let b = index.pair(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape), piece.indexInTensor < b.chunks.count {
                    pairs.append((input.source, piece, b.chunks[piece.indexInTensor]))
                }
            }
        }
        guard !pairs.isEmpty else { return 0 }
        let step = max(1, pairs.count / samplesPerCandidate)
        let sample = stride(from: step / 2, to: pairs.count, by: step).prefix(samplesPerCandidate).map { pairs[$0] }
        let sizes = try parallelMap(sample.count) { i -> (Int, Int) in
            let (source, piece, base) = sample[i]
            let raw = try OpenFile(path: source, mode: .read).read(count: piece.length, at: piece.offset)
            let baseBytes = try store.rawBytes(of: base)
            return raw.withUnsafeBytes { r in
                let alone = ChunkCodec.encode(r, element: piece.element).payload.count
                let delta = baseBytes.withUnsafeBytes { ChunkCodec.encode(r, element: piece.element, base: $0).payload.count }
                return (alone, delta)
            }
        }
        let alone = sizes.reduce(0) { $0 + $1.0 }, delta = sizes.reduce(0) { $0 + $1.1 }
        return alone == 0 ? 0 : 1 - Double(delta) / Double(alone)
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
