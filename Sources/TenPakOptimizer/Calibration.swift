import Foundation
import TenPakFormat

/// A calibration file: input activation samples per linear layer (SPEC.md, "Calibration file").
///
/// A safetensors file with one tensor per weight, named exactly like the weight, of shape
/// [samples, in_features] (F32, F16 or BF16): row i is the i-th input vector x that the layer
/// multiplies (y = W·x). At most `maxSamples` rows are used.
public struct CalibrationSet: Sendable {
    public static let maxSamples = 1024

    public let path: String
    public let sha256: String
    let file: SafetensorsFileSource

    public init(path: String) throws {
        self.path = path
        file = try SafetensorsFileSource(path: path)
        let handle = try OpenFileHasher.sha256(path: path)
        sha256 = handle
    }

    /// The samples for `weight` (n×cols, row-major, n ≤ maxSamples), nil when the file has none,
    /// or a note explaining why they cannot be used.
    public func inputs(for weight: String, cols: Int) throws -> (x: [Float], samples: Int)? {
        guard let info = file.info(weight) else { return nil }
        guard info.shape.count == 2, info.shape[1] == cols else {
            throw OptimizerError.invalidInput("calibration tensor \(weight) has shape \(info.shape), expected [samples, \(cols)]")
        }
        let t = SourceTensor(file: "", name: weight, dtype: info.dtype.name, shape: info.shape, byteCount: info.dataRange.count)
        var x = try file.floats(t)
        let n = min(info.shape[0], Self.maxSamples)
        if n < info.shape[0] { x.removeSubrange(n * cols ..< x.count) }
        return (x, n)
    }
}

enum OpenFileHasher {
    static func sha256(path: String) throws -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { throw OptimizerError.invalidInput("cannot read \(path)") }
        defer { try? h.close() }
        var sha = StreamingSHA256()
        while true {
            let data = h.readData(ofLength: 4 << 20)
            if data.isEmpty { break }
            data.withUnsafeBytes { sha.update($0) }
        }
        return sha.finalize().hex
    }
}
