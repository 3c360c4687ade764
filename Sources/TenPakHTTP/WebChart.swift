// The dashboard's chart: cumulative logical bytes and stored chunk bytes after each put, drawn as
// SVG by the server (no script). Only geometry is computed here; the `dashboard` template draws it.
import Foundation
import TenPakChunkStore
import TenPakModelStore

/// Coordinates of the chart in a fixed view box (the SVG scales to the page's width).
struct WebChart {
    struct Dot { let x, logicalY, storedY, label, logical, stored: String }

    // Stored, not computed: the template reads properties by reflection, which sees stored ones only.
    let width = 640, height = 260
    let left = 72, right = 624, top = 28, bottom = 220
    let labelX = 66, topLabelY = 32, dateY = 242
    let legendX = 82, legendX2 = 162, legendY = 6, legendTextX = 96, legendTextX2 = 176, legendTextY = 16

    let logicalPoints: String
    let storedPoints: String
    let dots: [Dot]
    let maxLabel: String
    let firstDate: String
    let lastDate: String
    let puts: Int
    let lastLogical: String
    let lastStored: String
    let lastLogicalExact: Int
    let lastStoredExact: Int

    /// Circles (with a tooltip each) are drawn up to this many puts; beyond, the lines alone.
    static let dotLimit = 200

    /// Nil when there is no put to draw.
    init?(_ points: [PutPoint]) {
        guard let first = points.first, let last = points.last else { return nil }
        var logical = 0, stored = 0
        var sums: [(logical: Int, stored: Int)] = []
        for p in points {
            logical += p.logicalBytes
            stored += p.newChunkBytes
            sums.append((logical, stored))
        }
        let peak = max(1, sums.map { max($0.logical, $0.stored) }.max() ?? 1)
        let (left, right, top, bottom) = (Double(72), Double(624), Double(28), Double(220))
        func x(_ i: Int) -> Double { sums.count == 1 ? (left + right) / 2 : left + Double(i) * (right - left) / Double(sums.count - 1) }
        func y(_ v: Int) -> Double { bottom - Double(v) / Double(peak) * (bottom - top) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        logicalPoints = sums.indices.map { "\(f(x($0))),\(f(y(sums[$0].logical)))" }.joined(separator: " ")
        storedPoints = sums.indices.map { "\(f(x($0))),\(f(y(sums[$0].stored)))" }.joined(separator: " ")
        dots = sums.count > WebChart.dotLimit ? [] : sums.indices.map { i in
            Dot(x: f(x(i)), logicalY: f(y(sums[i].logical)), storedY: f(y(sums[i].stored)),
                label: "\(points[i].record.model)@\(points[i].record.revision)",
                logical: FigureText.bytes(sums[i].logical), stored: FigureText.bytes(sums[i].stored))
        }
        maxLabel = FigureText.bytes(peak)
        firstDate = WebPages.date(first.record.createdAt)
        lastDate = WebPages.date(last.record.createdAt)
        puts = points.count
        lastLogical = FigureText.bytes(logical)
        lastStored = FigureText.bytes(stored)
        lastLogicalExact = logical
        lastStoredExact = stored
    }
}
