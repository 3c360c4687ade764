import Foundation

/// GPU types and prices, and the runtime overhead that sizing adds to the weights.
///
/// The default table is embedded (`PricingTable.defaultJSON`); `--prices FILE` replaces it with a
/// file of the same format (SPEC.md, "Pricing table").
public struct PricingTable: Codable, Sendable, Equatable {
    public struct GPU: Codable, Sendable, Equatable {
        public var name: String
        public var memoryGiB: Double
        public var dollarsPerHour: Double
    }

    /// Memory a served model needs beyond its weights: `fraction` of the weight bytes (activations,
    /// KV cache, allocator slack) plus `fixedGiB` (CUDA context, kernels, framework).
    public struct RuntimeOverhead: Codable, Sendable, Equatable {
        public var fraction: Double
        public var fixedGiB: Double
    }

    public var version: Int
    public var note: String?
    public var hoursPerMonth: Double
    public var runtimeOverhead: RuntimeOverhead
    /// Most GPUs of one type a model may be split over (tensor parallel).
    public var maxGPUs: Int
    public var gpus: [GPU]

    public static let defaultJSON = """
    {
      "version": 1,
      "note": "Illustrative on-demand prices for one GPU (USD, 2025 list prices of common clouds); pass --prices to use your own.",
      "hoursPerMonth": 730,
      "runtimeOverhead": {"fraction": 0.2, "fixedGiB": 1.0},
      "maxGPUs": 8,
      "gpus": [
        {"name": "NVIDIA T4 16GB", "memoryGiB": 16, "dollarsPerHour": 0.35},
        {"name": "NVIDIA L4 24GB", "memoryGiB": 24, "dollarsPerHour": 0.71},
        {"name": "NVIDIA A10G 24GB", "memoryGiB": 24, "dollarsPerHour": 1.01},
        {"name": "NVIDIA L40S 48GB", "memoryGiB": 48, "dollarsPerHour": 1.86},
        {"name": "NVIDIA A100 40GB", "memoryGiB": 40, "dollarsPerHour": 3.67},
        {"name": "NVIDIA A100 80GB", "memoryGiB": 80, "dollarsPerHour": 4.10},
        {"name": "NVIDIA H100 80GB", "memoryGiB": 80, "dollarsPerHour": 6.98}
      ]
    }
    """

    public static let standard: PricingTable = try! PricingTable.parse(Data(defaultJSON.utf8), source: "the embedded table")

    public static func parse(_ data: Data, source: String) throws -> PricingTable {
        let table: PricingTable
        do {
            table = try JSONDecoder().decode(PricingTable.self, from: data)
        } catch {
            throw OptimizerError.invalidInput("\(source) is not a pricing table (see SPEC.md, \"Pricing table\"): \(error)")
        }
        guard table.version == 1 else { throw OptimizerError.invalidInput("\(source): pricing table version \(table.version) is not 1") }
        guard !table.gpus.isEmpty, table.maxGPUs >= 1, table.hoursPerMonth > 0,
              table.gpus.allSatisfy({ $0.memoryGiB > 0 && $0.dollarsPerHour >= 0 }),
              table.runtimeOverhead.fraction >= 0, table.runtimeOverhead.fixedGiB >= 0
        else { throw OptimizerError.invalidInput("\(source): a pricing table needs GPUs with positive memory, non-negative prices and overheads, maxGPUs ≥ 1") }
        return table
    }

    public static func load(path: String) throws -> PricingTable {
        guard let data = FileManager.default.contents(atPath: path) else { throw OptimizerError.invalidInput("cannot read pricing table \(path)") }
        return try parse(data, source: path)
    }

    /// Bytes a model with `weightBytes` of weights needs on the GPU(s).
    public func requiredBytes(weightBytes: Int) -> Int {
        Int((Double(weightBytes) * (1 + runtimeOverhead.fraction) + runtimeOverhead.fixedGiB * 1_073_741_824).rounded(.up))
    }

    public struct Choice: Codable, Sendable, Equatable {
        public var gpu: String
        public var count: Int
        public var memoryGiB: Double
        public var dollarsPerHour: Double
        public var dollarsPerMonth: Double
    }

    /// The cheapest GPU type and count (≤ maxGPUs) whose memory holds `requiredBytes`; ties go to
    /// the earlier entry of the table. Nil when nothing fits.
    public func cheapest(requiredBytes: Int) -> Choice? {
        var best: Choice?
        for gpu in gpus {
            let count = Int((Double(requiredBytes) / (gpu.memoryGiB * 1_073_741_824)).rounded(.up))
            let n = max(1, count)
            guard n <= maxGPUs else { continue }
            let hourly = Double(n) * gpu.dollarsPerHour
            if best == nil || hourly < best!.dollarsPerHour {
                best = Choice(gpu: gpu.name, count: n, memoryGiB: gpu.memoryGiB, dollarsPerHour: hourly, dollarsPerMonth: hourly * hoursPerMonth)
            }
        }
        return best
    }
}
