// The store dashboard (SPEC section 14.8): `stats`' totals, the put timeline, savings by model
// and their worth, and the cache of per-revision figures behind them.
import Foundation
import TenPakChunkStore
import TenPakModelStore

extension WebPages {
    struct DashboardPage {
        struct Totals {
            let logical, logicalExact: String, files, revisions, models: Int
            let chunkBytes, chunkBytesExact: String, chunks, deltaChunks: Int
            let packBytes, packBytesExact: String, packs: Int
            let overall, dedup, compression, saved, storageWorth, egressWorth, storagePrice, egressPrice: String
        }
        struct Saving { let name, href: String, revisions: Int, logical, stored, saved, savedPercent, storageWorth, egressWorth: String }
        let chrome: Chrome
        let totals: Totals?
        let chart: WebChart?
        let savings: [Saving]
        let storagePrice, egressPrice: String
    }

    func dashboardPage(policy: AccessPolicy, principal: Principal) throws -> String {
        let revisions = try store.catalog.revisions(model: nil)
        let figures = try cache.figures(store: store, revisions: revisions)
        // Store-wide figures describe every model, so only a principal that may read every model
        // sees them; the others see the models they may read.
        let everything = Set(revisions.map(\.model)).allSatisfy { policy.canRead(principal, $0) }
        var totals: DashboardPage.Totals?
        if everything {
            // The figures `tpstore stats --json` prints.
            let s = try store.statistics()
            let saved = s.logicalBytes - s.packBytes
            totals = .init(logical: FigureText.bytes(s.logicalBytes), logicalExact: "\(s.logicalBytes)", files: s.files, revisions: s.revisions,
                           models: s.models, chunkBytes: FigureText.bytes(s.storedChunkBytes), chunkBytesExact: "\(s.storedChunkBytes)",
                           chunks: s.chunks, deltaChunks: s.deltaChunks, packBytes: FigureText.bytes(s.packBytes), packBytesExact: "\(s.packBytes)",
                           packs: s.packs, overall: String(format: "%.2f", s.overallRatio), dedup: String(format: "%.2f", s.dedupRatio),
                           compression: String(format: "%.2f", s.compressionRatio), saved: FigureText.bytes(saved),
                           storageWorth: money(saved, prices.storagePerGBMonth), egressWorth: money(saved, prices.egressPerGB),
                           storagePrice: WebPages.dollars(prices.storagePerGBMonth, decimals: 4), egressPrice: WebPages.dollars(prices.egressPerGB, decimals: 4))
        }
        let visible = figures.timeline.filter { policy.canRead(principal, $0.record.model) }
        var savings: [DashboardPage.Saving] = []
        for (name, records) in Dictionary(grouping: revisions.filter { !WebPages.isObjectModel($0.model) && policy.canRead(principal, $0.model) }, by: \.model) {
            let logical = records.reduce(0) { $0 + (figures.perRevision[$1.rowID]?.size ?? 0) }
            let stored = records.reduce(0) { $0 + (figures.perRevision[$1.rowID]?.stored ?? 0) }
            savings.append(.init(name: name, href: WebPages.href(repo: name), revisions: records.count, logical: FigureText.bytes(logical),
                                 stored: FigureText.bytes(stored), saved: FigureText.bytes(logical - stored),
                                 savedPercent: FigureText.percent(logical - stored, of: logical),
                                 storageWorth: money(logical - stored, prices.storagePerGBMonth), egressWorth: money(logical - stored, prices.egressPerGB)))
        }
        let order = Dictionary(grouping: revisions, by: \.model).mapValues { rs in
            rs.reduce(0) { $0 + (figures.perRevision[$1.rowID].map { $0.size - $0.stored } ?? 0) }
        }
        savings.sort { (order[$0.name] ?? 0, $1.name) > (order[$1.name] ?? 0, $0.name) }
        return try render("dashboard", DashboardPage(chrome: chrome("Dashboard", policy, principal), totals: totals,
                                                     chart: WebChart(visible), savings: savings,
                                                     storagePrice: WebPages.dollars(prices.storagePerGBMonth, decimals: 4),
                                                     egressPrice: WebPages.dollars(prices.egressPerGB, decimals: 4)))
    }

    /// What `bytes` are worth at `price` dollars per GB (10⁹ bytes).
    func money(_ bytes: Int, _ price: Double) -> String {
        let value = Double(bytes) / 1e9 * price
        // A small store saves fractions of a cent: say so rather than print a bare $0.00.
        if value != 0, abs(value) < 0.005 { return value > 0 ? "< $0.01" : "> -$0.01" }
        return WebPages.dollars(value, decimals: 2)
    }

    static func dollars(_ value: Double, decimals: Int) -> String {
        // Trailing zeros of a price go (0.0230 → 0.023), two decimals stay for amounts.
        var text = String(format: "%.\(decimals)f", value)
        if decimals > 2 {
            while text.hasSuffix("0"), let dot = text.firstIndex(of: "."), text.distance(from: dot, to: text.endIndex) > 3 { text.removeLast() }
        }
        return (value < 0 ? "-$" : "$") + (value < 0 ? String(text.dropFirst()) : text)
    }
}

/// The dashboard's per-revision figures, kept across requests. A revision's `show` figures and its
/// timeline point depend only on the revisions before it (lower row ids), so revisions put since
/// the last answer extend it; a removal, a gc or a repair (a new gc generation: a rebuilt catalog
/// numbers chunk rows anew) starts over.
final class DashboardCache: @unchecked Sendable {
    struct Figures: Sendable {
        let timeline: [PutPoint]
        /// `show`'s size and stored bytes of every revision, by row id.
        let perRevision: [Int64: (size: Int, stored: Int)]
    }

    private struct State {
        /// Each revision as row id, name and manifest: row ids alone could repeat after
        /// `fsck --repair` rebuilds the catalog in another order.
        var keys: Set<String>
        var generation: Int64
        var lastRowID: Int64
        var figures: Figures
        /// Chunk row ids the timeline's revisions reference.
        var seen: Set<Int64>
    }

    // Safe: `state` is read and replaced only under `lock`.
    private let lock = NSLock()
    private var state: State?
    /// Held while figures are computed: concurrent views of a cold dashboard wait for one
    /// computation instead of each running their own.
    private let computing = NSLock()

    static func key(_ r: RevisionRecord) -> String { "\(r.rowID) \(r.model)@\(r.revision) \(r.manifest)" }

    func figures(store: ModelStore, revisions: [RevisionRecord]) throws -> Figures {
        let keys = Set(revisions.map(DashboardCache.key))
        let generation = try store.catalog.gcGeneration()
        if let hit = lock.withLock({ state.flatMap { $0.generation == generation && $0.keys == keys ? $0.figures : nil } }) { return hit }
        computing.lock()
        defer { computing.unlock() }
        let known = lock.withLock { state.flatMap { $0.generation == generation ? $0 : nil } }
        if let known, known.keys == keys { return known.figures }
        // Extend when every known revision is still there and every new one came after them.
        var base = State(keys: [], generation: generation, lastRowID: 0, figures: Figures(timeline: [], perRevision: [:]), seen: [])
        if let known, known.keys.isSubset(of: keys) {
            let added = revisions.filter { !known.keys.contains(DashboardCache.key($0)) }
            if added.allSatisfy({ $0.rowID > known.lastRowID }) { base = known }
        }
        let added = revisions.filter { !base.keys.contains(DashboardCache.key($0)) }
        var perRevision = base.figures.perRevision
        for record in added {
            let f = try store.figures(of: record)
            perRevision[record.rowID] = (f.size, f.storedBytes)
        }
        var seen = base.seen
        let timeline = base.figures.timeline + (try store.putPoints(added, seen: &seen))
        let next = State(keys: keys, generation: generation, lastRowID: revisions.map(\.rowID).max() ?? 0,
                         figures: Figures(timeline: timeline, perRevision: perRevision), seen: seen)
        lock.withLock { state = next }
        return next.figures
    }
}
