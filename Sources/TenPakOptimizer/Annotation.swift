import Foundation
import TenPakChunkStore

/// What the optimizer's result depends on besides the weights and its own version: the key of an
/// annotation, stored as canonical JSON (sorted keys) in `annotations.parameters`.
public struct AnnotationParameters: Codable, Sendable, Hashable {
    /// SHA-256 of the calibration file, or nil without one.
    public var calibration: String?
    /// The error bar for the recommendation.
    public var maxError: Double
    /// SHA-256 of the pricing table's canonical JSON.
    public var prices: String

    public var canonical: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }
}

/// One method over a whole revision.
public struct MethodSummary: Codable, Sendable {
    public var method: String
    /// Over the quantized (linear) weights: stored bits of codes and scales per weight.
    public var bitsPerWeight: Double
    /// The whole model on the GPU: quantized weights plus every other tensor in 16 bit.
    public var gpuBytes: Int
    /// Parameter-weighted means (and maxima) of the per-tensor relative errors.
    public var relativeWeightError: Double
    public var maxRelativeWeightError: Double
    /// Over the tensors that had calibration inputs; nil when none had.
    public var relativeOutputError: Double?
    public var maxRelativeOutputError: Double?
    /// The figure the error bar is applied to: per tensor the output error where calibration
    /// inputs exist, else the weight error (a proxy), parameter-weighted.
    public var error: Double
    public var errorIsProxy: Bool
    public var withinErrorBar: Bool
    /// Cheapest GPU that holds `gpuBytes` plus the runtime overhead; nil when none does.
    public var gpu: PricingTable.Choice?
}

public struct Recommendation: Codable, Sendable {
    public var method: String
    public var dollarsPerMonth: Double
    /// Serving the 16-bit original.
    public var baselineDollarsPerMonth: Double?
    public var savingPerMonth: Double?
    public var savingPercent: Double?
    public var reason: String
}

/// The optimizer's annotation of one revision (stored as JSON in `annotations.result`).
public struct Annotation: Codable, Sendable {
    public var optimizerVersion: String
    public var model: String
    public var revision: String
    public var parameters: AnnotationParameters
    public var createdAt: String
    /// How `error` was measured: on held-out calibration inputs, or weight-only proxies.
    public var errorMeasure: String
    public var calibratedTensors: Int
    /// The 2-D linear weights measured, and their element count.
    public var linearTensors: Int
    public var linearParameters: Int
    /// Every other tensor, kept in 16 bit (integers at their own size).
    public var keptTensors: Int
    public var keptParameters: Int
    public var keptBytes: Int
    public var runtimeOverhead: PricingTable.RuntimeOverhead
    public var methods: [MethodSummary]
    public var recommendation: Recommendation?
    public var tensors: [TensorMeasurement]
    public var notes: [String]
    public var seconds: Double

    public func json(pretty: Bool = false) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    public static func decode(_ text: String) throws -> Annotation {
        try JSONDecoder().decode(Annotation.self, from: Data(text.utf8))
    }
}
