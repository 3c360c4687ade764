import Foundation
import TenPakChunkStore
import TenPakModelStore
@testable import TenPakOptimizer
import TenPakTestSupport
import XCTest
import TenPakFormat

/// The optimizer: quantizers (round trips, a numpy oracle for bitsandbytes), GPTQ and AWQ against
/// round-to-nearest, pricing, annotations in the catalog and the resumable pass.
final class OptimizerTests: XCTestCase {
    // MARK: helpers

    static func matrix(_ rows: Int, _ cols: Int, seed: UInt64, outliers: Bool = true) -> [Float] {
        var rng = TestSupport.Random(seed: seed)
        var w = (0 ..< rows * cols).map { _ in Float(rng.normal() * 0.05) }
        if outliers {
            for _ in 0 ..< max(1, rows * cols / 500) { w[rng.int(0 ..< w.count)] *= 20 }
        }
        return w
    }

    /// n×cols inputs with rank-8 correlation, noise and a few outlier channels.
    static func correlatedInputs(_ n: Int, _ cols: Int, seed: UInt64) -> [Float] {
        var rng = TestSupport.Random(seed: seed)
        let rank = 8
        let a = (0 ..< rank * cols).map { _ in Float(rng.normal()) }
        var x = [Float](repeating: 0, count: n * cols)
        for i in 0 ..< n {
            let z = (0 ..< rank).map { _ in Float(rng.normal()) }
            for j in 0 ..< cols {
                var v: Float = 0.1 * Float(rng.normal())
                for r in 0 ..< rank { v += z[r] * a[r * cols + j] }
                x[i * cols + j] = j % 37 == 0 ? v * 8 : v
            }
        }
        return x
    }

    /// A minimal safetensors writer (F32, U8, I8 tensors).
    static func writeSafetensors(_ tensors: [(name: String, dtype: String, shape: [Int], bytes: [UInt8])], to path: String) throws {
        var header: [String: Any] = [:]
        var offset = 0
        var data: [UInt8] = []
        for t in tensors {
            header[t.name] = ["dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.count]]
            offset += t.bytes.count
            data += t.bytes
        }
        var json = Array(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        while json.count % 8 != 0 { json.append(0x20) }
        var out = withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init)
        out += json + data
        try TestSupport.write(out, to: path)
    }

    static func f32Bytes(_ v: [Float]) -> [UInt8] { v.withUnsafeBytes(Array.init) }

    // MARK: quantizers

    func testEveryQuantizerPacksAndUnpacks() throws {
        for (rows, cols) in [(1, 1), (7, 9), (33, 200), (16, 300)] {
            let w = Self.matrix(rows, cols, seed: UInt64(rows * 1000 + cols))
            let int8 = Int8Matrix.quantize(w, rows: rows, cols: cols)
            XCTAssertEqual(try Int8Matrix(serialized: int8.serialized()), int8)
            XCTAssertEqual(int8.storageBytes, rows * cols + 4 * rows)
            for kind in [Blockwise4BitMatrix.Kind.nf4, .fp4] {
                for dq in [false, true] {
                    let q = Blockwise4BitMatrix.quantize(w, rows: rows, cols: cols, kind: kind, doubleQuantize: dq)
                    let back = try Blockwise4BitMatrix(serialized: q.serialized())
                    XCTAssertEqual(back, q)
                    XCTAssertEqual(back.dequantized(), q.dequantized())
                    XCTAssertEqual(q.codes.count, rows * cols)
                }
            }
            let rtn = GroupInt4Matrix.roundToNearest(w, rows: rows, cols: cols)
            XCTAssertEqual(try GroupInt4Matrix(serialized: rtn.serialized()), rtn)
            let x = Self.correlatedInputs(32, cols, seed: 5)
            let gptq = try XCTUnwrap(GPTQ.quantize(w, rows: rows, cols: cols, hessian: GPTQ.hessian(x, samples: 32, cols: cols)))
            XCTAssertEqual(try GroupInt4Matrix(serialized: gptq.serialized()), gptq)
            let awq = AWQ.quantize(w, rows: rows, cols: cols, inputs: x, samples: 32) { _ in 0 }.matrix
            let awqBack = try GroupInt4Matrix(serialized: awq.serialized())
            XCTAssertEqual(awqBack, awq)
            XCTAssertEqual(awqBack.dequantized(), awq.dequantized())
            // Truncated packs are refused, never misread.
            XCTAssertThrowsError(try GroupInt4Matrix(serialized: Array(gptq.serialized().dropLast())))
            XCTAssertThrowsError(try Blockwise4BitMatrix(serialized: Array(Blockwise4BitMatrix.quantize(w, rows: rows, cols: cols, kind: .nf4, doubleQuantize: true).serialized().dropLast(3))))
        }
        // Bits per weight: NF4 4.5, with double quantization ≈ 4.127; int4 g128 = 4 + 20/128.
        let w = Self.matrix(256, 1024, seed: 1)
        XCTAssertEqual(Blockwise4BitMatrix.quantize(w, rows: 256, cols: 1024, kind: .nf4, doubleQuantize: false).bitsPerWeight, 4.5, accuracy: 1e-9)
        XCTAssertEqual(Blockwise4BitMatrix.quantize(w, rows: 256, cols: 1024, kind: .nf4, doubleQuantize: true).bitsPerWeight, 4.127, accuracy: 0.001)
        XCTAssertEqual(GroupInt4Matrix.roundToNearest(w, rows: 256, cols: 1024).bitsPerWeight, 4 + 20.0 / 128, accuracy: 1e-9)
        XCTAssertEqual(Int8Matrix.quantize(w, rows: 256, cols: 1024).bitsPerWeight, 8 + 32.0 / 1024, accuracy: 1e-9)
    }

    func testNF4CodeIsBitsandbytes() {
        XCTAssertEqual(NF4.code.count, 16)
        XCTAssertEqual(NF4.code[0], -1)
        XCTAssertEqual(NF4.code[7], 0)
        XCTAssertEqual(NF4.code[15], 1)
        XCTAssertEqual(NF4.code[8], 0.07958029955625534)
        XCTAssertEqual(NF4.quantize(1), 15)
        XCTAssertEqual(NF4.quantize(0), 7)
        XCTAssertEqual(NF4.quantize(-1), 0)
        XCTAssertEqual(FP4.code.map { $0 * 12 }, [0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3].map { Float($0) })
        XCTAssertEqual(DynamicMap.signed.count, 256)
        XCTAssertEqual(DynamicMap.signed.last, 1)
    }

    /// NF4, FP4 (with and without double quantization) and int8 against Tools/quant_reference.py.
    func testBitsandbytesQuantizersMatchNumpyReference() throws {
        let python = try XCTUnwrap(TestSupport.python3(), "python3 is required (Tools/setup.sh installs the oracle)")
        let dir = TestSupport.temporaryDirectory(self, "oracle")
        let rows = 96, cols = 200 // 19,200 weights: 300 blocks of 64 (two statistics blocks), odd sizes
        var w = Self.matrix(rows, cols, seed: 42)
        for c in 0 ..< cols { w[5 * cols + c] = 0 } // an all-zero row
        try Self.writeSafetensors([("w", "F32", [rows, cols], Self.f32Bytes(w))], to: dir + "/in.safetensors")
        let r = try TestSupport.run(python, [TestSupport.root + "/Tools/quant_reference.py", dir + "/in.safetensors", dir + "/out.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ref = try SafetensorsFileSource(path: dir + "/out.safetensors")
        func floats(_ name: String) throws -> [Float] { try ref.floats(XCTUnwrap(ref.tensors().first { $0.name == name })) }
        func bytes(_ name: String) throws -> [UInt8] {
            let info = try XCTUnwrap(ref.info(name))
            return try OpenFile(path: dir + "/out.safetensors", mode: .read).read(count: info.dataRange.count, at: ref.header.dataStart + info.dataRange.lowerBound)
        }
        func mismatches(_ a: [UInt8], _ b: [UInt8]) -> Int { zip(a, b).filter { $0 != $1 }.count + abs(a.count - b.count) }
        func assertClose(_ a: [Float], _ b: [Float], _ what: String) {
            XCTAssertEqual(a.count, b.count, what)
            let worst = zip(a, b).map { abs($0 - $1) / max(abs($1), 1e-3) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5, what)
        }

        XCTAssertEqual(try floats("dynamic_map"), DynamicMap.signed)
        let int8 = Int8Matrix.quantize(w, rows: rows, cols: cols)
        XCTAssertEqual(int8.codes.map { UInt8(bitPattern: $0) }, try bytes("int8_codes"))
        XCTAssertEqual(int8.rowAbsmax, try floats("int8_absmax"))
        assertClose(int8.dequantized(), try floats("int8_deq"), "int8")
        for (kind, name) in [(Blockwise4BitMatrix.Kind.nf4, "nf4"), (.fp4, "fp4")] {
            let plain = Blockwise4BitMatrix.quantize(w, rows: rows, cols: cols, kind: kind, doubleQuantize: false)
            // Nearest-value ties are the only allowed difference: at most one in 10,000 codes.
            XCTAssertLessThanOrEqual(mismatches(plain.packed, try bytes("\(name)_packed")), 2, name)
            XCTAssertEqual(plain.absmax, try floats("\(name)_absmax"), name)
            assertClose(plain.dequantized(), try floats("\(name)_deq"), name)
            let dq = Blockwise4BitMatrix.quantize(w, rows: rows, cols: cols, kind: kind, doubleQuantize: true)
            let stats = try XCTUnwrap(dq.doubleQuantized)
            XCTAssertLessThanOrEqual(mismatches(stats.codes, try bytes("\(name)dq_qabsmax")), 0, name + " double quant codes")
            XCTAssertEqual(stats.absmax2, try floats("\(name)dq_absmax2"), name)
            XCTAssertEqual([stats.offset], try floats("\(name)dq_offset"), name)
            assertClose(dq.dequantized(), try floats("\(name)dq_deq"), name + "-dq")
        }
    }

    func testUpperCholeskyOfInverse() throws {
        let n = 23
        let x = Self.correlatedInputs(64, n, seed: 9)
        var h = GPTQ.hessian(x, samples: 64, cols: n)
        for i in 0 ..< n { h[i * n + i] += 0.01 }
        let u = try XCTUnwrap(LinearAlgebra.upperCholeskyOfInverse(h, n))
        // (UᵀU)·H = I
        for i in 0 ..< n {
            for j in 0 ..< n {
                var s: Double = 0
                for k in 0 ..< n {
                    var inv: Double = 0
                    for m in 0 ... min(i, k) { inv += Double(u[m * n + i]) * Double(u[m * n + k]) }
                    s += inv * Double(h[k * n + j])
                }
                XCTAssertEqual(s, i == j ? 1 : 0, accuracy: 2e-3, "(\(i),\(j))")
            }
            for j in 0 ..< i { XCTAssertEqual(u[i * n + j], 0) }
        }
    }

    func testGPTQBeatsRoundToNearestOnCorrelatedInputs() {
        let rows = 64, cols = 256, n = 512
        let w = Self.matrix(rows, cols, seed: 3)
        let x = Self.correlatedInputs(n, cols, seed: 4)
        let m = TensorEvaluator.measure(w, rows: rows, cols: cols, dtype: "F32", inputs: x, samples: n)
        let gptq = m.methods[QuantizationMethod.gptq.rawValue]!.relativeOutputError!
        let rtn = m.methods[QuantizationMethod.rtnInt4.rawValue]!.relativeOutputError!
        XCTAssertLessThan(gptq, rtn * 0.9, "GPTQ \(gptq) vs RTN \(rtn), on held-out inputs")
        XCTAssertEqual(m.fitSamples, 256)
        XCTAssertEqual(m.evaluationSamples, 256)
    }

    func testAWQNeverWorseThanNoScaling() {
        for seed in UInt64(0) ..< 6 {
            let rows = 48, cols = 200, n = 96
            let w = Self.matrix(rows, cols, seed: 100 + seed, outliers: seed % 2 == 0)
            let x = Self.correlatedInputs(n, cols, seed: 200 + seed)
            func loss(_ deq: [Float]) -> Double {
                var e = w
                for i in 0 ..< e.count { e[i] -= deq[i] }
                return LinearAlgebra.productNormSquaredNT(e, rows, x, n, cols)
            }
            let result = AWQ.quantize(w, rows: rows, cols: cols, inputs: x, samples: n, fullLoss: loss)
            let plain = AWQ.quantize(w, rows: rows, cols: cols, scales: [Float](repeating: 1, count: cols))
            XCTAssertLessThanOrEqual(loss(result.matrix.dequantized()), loss(plain.dequantized()), "seed \(seed), α = \(result.alpha)")
        }
    }

    func testLinearAlgebraProductMatchesNaive() {
        let m = 9, n = 7, k = 37
        let a = Self.matrix(m, k, seed: 1, outliers: false), b = Self.matrix(n, k, seed: 2, outliers: false)
        var c = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            LinearAlgebra.productNT(ap.baseAddress!, m, bp.baseAddress!, n, k, into: cp.baseAddress!)
        } } }
        var norm = 0.0
        for i in 0 ..< m {
            for j in 0 ..< n {
                var s: Double = 0
                for p in 0 ..< k { s += Double(a[i * k + p]) * Double(b[j * k + p]) }
                XCTAssertEqual(Double(c[i * n + j]), s, accuracy: 1e-5)
                norm += s * s
            }
        }
        XCTAssertEqual(LinearAlgebra.productNormSquaredNT(a, m, b, n, k), norm, accuracy: norm * 1e-5)
    }

    // MARK: pricing

    func testPricingPicksCheapestGPUThatFits() throws {
        let table = try PricingTable.parse(Data("""
            {"version": 1, "hoursPerMonth": 100, "runtimeOverhead": {"fraction": 0.5, "fixedGiB": 1}, "maxGPUs": 2,
             "gpus": [{"name": "small", "memoryGiB": 8, "dollarsPerHour": 1}, {"name": "big", "memoryGiB": 40, "dollarsPerHour": 3}]}
            """.utf8), source: "test")
        let gib = 1 << 30
        XCTAssertEqual(table.requiredBytes(weightBytes: 2 * gib), 4 * gib)
        XCTAssertEqual(table.cheapest(requiredBytes: 4 * gib)?.gpu, "small")
        XCTAssertEqual(table.cheapest(requiredBytes: 12 * gib)?.count, 2)        // two small ($2) beat one big ($3)
        XCTAssertEqual(table.cheapest(requiredBytes: 20 * gib)?.gpu, "big")      // three small exceed maxGPUs
        XCTAssertEqual(table.cheapest(requiredBytes: 20 * gib)?.dollarsPerMonth, 300)
        XCTAssertNil(table.cheapest(requiredBytes: 100 * gib))
        XCTAssertThrowsError(try PricingTable.parse(Data("{\"version\": 2}".utf8), source: "bad"))
        XCTAssertFalse(PricingTable.standard.gpus.isEmpty)
    }

    // MARK: the store

    func testAnnotationsAreStoredPerRevisionAndNotRecomputed() throws {
        let dir = TestSupport.temporaryDirectory(self, "opt")
        let store = try ModelStore.open(directory: dir + "/store", create: true)
        let v1 = try store.put(model: "tiny", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"], base: .none).revision
        let optimizer = Optimizer(store: store, calibration: nil)
        let (first, computed) = try optimizer.annotate(v1)
        XCTAssertTrue(computed)
        // 48×48 key (F16), query (BF16), value (F32), pooler (F32) and the 5×52429 intermediate
        // weight; embeddings, 1-D, integer and empty tensors are kept.
        XCTAssertEqual(Set(first.tensors.map(\.name)), ["encoder.layer.0.attention.self.key.weight", "encoder.layer.0.attention.self.query.weight",
                                                          "encoder.layer.0.attention.self.value.weight", "encoder.layer.0.intermediate.dense.weight",
                                                          "pooler.dense.weight"])
        XCTAssertTrue(first.methods.allSatisfy { $0.errorIsProxy && $0.relativeOutputError == nil })
        // A BF16 or F16 original is its own 16-bit reference.
        let query = try XCTUnwrap(first.tensors.first { $0.name.hasSuffix("query.weight") })
        XCTAssertEqual(query.methods[QuantizationMethod.fp16.rawValue]?.relativeWeightError, 0)
        let bits = Dictionary(uniqueKeysWithValues: first.methods.map { ($0.method, $0.bitsPerWeight) })
        XCTAssertLessThan(bits["bnb-nf4-dq"]!, bits["bnb-nf4"]!)
        XCTAssertLessThan(bits["bnb-nf4"]!, bits["bnb-int8"]!)
        XCTAssertNotNil(first.recommendation)

        let (again, recomputed) = try optimizer.annotate(v1)
        XCTAssertFalse(recomputed)
        XCTAssertEqual(again.createdAt, first.createdAt)
        // Other parameters are another annotation; a new revision has none until the pass runs.
        let strict = Optimizer(store: store, calibration: nil, maxError: 0.001)
        XCTAssertNil(try strict.existing(v1))
        XCTAssertTrue(try strict.annotate(v1).computed)
        XCTAssertEqual(try store.catalog.annotations(revision: v1).count, 2)
        let v2 = try store.put(model: "tiny", revision: "v2", paths: [TestSupport.fixtures + "/models/tiny-base"], base: .none).revision
        XCTAssertEqual(try store.catalog.annotations(revision: v2).count, 0)
        XCTAssertEqual(try optimizer.pending().pending.map(\.revision), ["v2"])
        // Removing a revision removes its annotations.
        try store.remove(model: "tiny", revision: "v1")
        XCTAssertEqual(try optimizer.pending().done.count, 0)
    }

    func testCalibratedAnnotationMeasuresOutputError() throws {
        let python = try XCTUnwrap(TestSupport.python3(), "python3 is required")
        let dir = TestSupport.temporaryDirectory(self, "optcal")
        let r = try TestSupport.run(python, [TestSupport.root + "/Tools/make_calibration.py", TestSupport.fixtures + "/models/tiny-base",
                                             dir + "/calib.safetensors", "--samples", "16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let store = try ModelStore.open(directory: dir + "/store", create: true)
        let v1 = try store.put(model: "tiny", revision: "v1", paths: [TestSupport.fixtures + "/models/tiny-base"], base: .none).revision
        let annotation = try Optimizer(store: store, calibration: CalibrationSet(path: dir + "/calib.safetensors")).annotate(v1).annotation
        XCTAssertEqual(annotation.calibratedTensors, annotation.linearTensors)
        for m in annotation.methods {
            XCTAssertFalse(m.errorIsProxy)
            XCTAssertNotNil(m.relativeOutputError)
        }
        XCTAssertEqual(annotation.tensors.first?.fitSamples, 8)
        XCTAssertEqual(annotation.parameters.calibration?.count, 64)
    }
}

/// `tpstore optimize` and `tpstore annotations` as a user runs them.
final class OptimizeCLITests: XCTestCase {
    func tp(_ args: [String]) throws -> TestSupport.RunResult { try TestSupport.run(TestSupport.tpstore, args) }

    func testOptimizeThenAnnotations() throws {
        let store = TestSupport.temporaryDirectory(self, "optcli") + "/store"
        XCTAssertEqual(try tp(["put", "--store", store, "tiny@v1", TestSupport.fixtures + "/models/tiny-base"]).status, 0)
        var r = try tp(["annotations", "--store", store, "tiny"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("no annotations"), r.stdout)
        r = try tp(["optimize", "--store", store, "tiny@v1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("annotated tiny@v1"), r.stdout)
        XCTAssertTrue(r.stdout.contains("recommended:"), r.stdout)
        r = try tp(["optimize", "--store", store, "tiny"])
        XCTAssertTrue(r.stdout.contains("already annotated"), r.stdout)
        r = try tp(["annotations", "--store", store, "tiny@v1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let list = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        XCTAssertEqual(list.count, 1)
        XCTAssertEqual((list[0]["methods"] as? [Any])?.count, QuantizationMethod.allCases.count)
        r = try tp(["annotations", "--store", store, "tiny@v1"])
        XCTAssertTrue(r.stdout.contains("bnb-nf4-dq") && r.stdout.contains("gptq-int4-g128"), r.stdout)
        // Bad input: one line, non-zero exit.
        r = try tp(["optimize", "--store", store, "tiny", "--prices", "/no/such/prices.json"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("pricing table"), r.stderr)
        r = try tp(["optimize", "--store", store])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--all"), r.stderr)
    }

    /// SIGKILL `optimize --all` once it has finished a revision; the re-run skips what was recorded.
    func testOptimizeAllResumesAfterSIGKILL() throws {
        let store = TestSupport.temporaryDirectory(self, "optkill") + "/store"
        let revisions = ["a@v1", "a@v2", "b@v1", "c@v1", "d@v1"]
        for name in revisions {
            XCTAssertEqual(try tp(["put", "--store", store, "--no-base", name, TestSupport.fixtures + "/models/tiny-base"]).status, 0)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestSupport.tpstore)
        process.arguments = ["optimize", "--all", "--store", store]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var seen = ""
        while !seen.contains("[1/") {
            let data = out.fileHandleForReading.availableData
            if data.isEmpty { break }
            seen += String(decoding: data, as: UTF8.self)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertTrue(seen.contains("[1/5]"), "the pass finished a revision before the kill: \(seen)")

        var r = try tp(["optimize", "--all", "--store", store])
        XCTAssertEqual(r.status, 0, r.stderr)
        let counts = try XCTUnwrap(r.stderr.firstMatch(of: /(\d+) revisions to annotate, (\d+) already annotated/))
        let (todo, done) = (Int(counts.1)!, Int(counts.2)!)
        XCTAssertGreaterThanOrEqual(done, 1, r.stderr)
        XCTAssertEqual(todo + done, revisions.count)
        r = try tp(["optimize", "--all", "--store", store])
        XCTAssertTrue(r.stderr.contains("0 revisions to annotate, 5 already annotated"), r.stderr)
        for name in revisions {
            let a = try tp(["annotations", "--store", store, name, "--json"])
            XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(a.stdout.utf8)) as? [Any])?.count, 1, name)
        }
        XCTAssertEqual(try tp(["fsck", "--store", store]).status, 0)
    }
}
