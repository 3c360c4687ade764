// The model list, the model page and a revision's files (SPEC section 14.8): what `show` and
// `annotations` say about a revision, for the revisions the caller may read.
import Foundation
import TenPakChunkStore
import TenPakModelStore
import TenPakOptimizer
import TenPakReader

extension WebPages {
    /// Models whose name is an LFS object's (`lfs/<oid>`) are objects, not repositories: listed
    /// by the dashboard's totals, not as models.
    static func isObjectModel(_ name: String) -> Bool {
        name.hasPrefix("lfs/") && HubRepos.isObjectID(String(name.dropFirst(4)))
    }

    /// Readable repositories with their revisions (oldest first), newest repository first.
    func readableModels(_ policy: AccessPolicy, _ principal: Principal) throws -> [(name: String, revisions: [RevisionRecord])] {
        let grouped = Dictionary(grouping: try store.catalog.revisions(model: nil), by: \.model)
        return grouped.filter { !WebPages.isObjectModel($0.key) && policy.canRead(principal, $0.key) }
            .map { (name: $0.key, revisions: $0.value.sorted { $0.rowID < $1.rowID }) }
            .sorted { a, b in
                let x = a.revisions.last, y = b.revisions.last
                return (x?.createdAt ?? 0, x?.rowID ?? 0) > (y?.createdAt ?? 0, y?.rowID ?? 0)
            }
    }

    struct ModelsPage {
        struct Row { let name, href: String, revisions: Int, head, updated, size, base: String }
        let chrome: Chrome
        let query: String
        let models: [Row]
        let hasModels: Bool
        let count: String
        let empty: String
    }

    func modelsPage(query: String, policy: AccessPolicy, principal: Principal) throws -> String {
        let needle = query.trimmingCharacters(in: .whitespaces).lowercased()
        var rows: [ModelsPage.Row] = []
        let matching = try readableModels(policy, principal).filter { needle.isEmpty || $0.name.lowercased().contains(needle) }
        // One catalog query per row: a long list is cut, and the search narrows it.
        for (name, revisions) in matching.prefix(WebPages.listLimit) {
            guard let head = HubRepos.head(of: revisions) else { continue }
            let size = try store.catalog.files(revision: head).reduce(0) { $0 + $1.size }
            rows.append(.init(name: name, href: WebPages.href(repo: name), revisions: revisions.count, head: head.revision,
                              updated: WebPages.date(head.createdAt), size: FigureText.bytes(size),
                              base: baseText(head, policy, principal)))
        }
        let empty = needle.isEmpty ? (principal == .anonymous ? "No model is readable without a token: sign in." : "No model is readable with this token.")
            : "No readable model's name contains “\(query)”."
        return try render("models", ModelsPage(chrome: chrome(needle.isEmpty ? "Models" : "Models matching \(query)", policy, principal), query: query,
                                               models: rows, hasModels: !rows.isEmpty,
                                               count: matching.count > rows.count ? "The newest \(rows.count) of \(matching.count) models; search to find the others."
                                                   : rows.count == 1 ? "1 model." : "\(rows.count) models, newest first.", empty: empty))
    }

    /// The base as a list shows it: its name when readable, else that there is one.
    func baseText(_ r: RevisionRecord, _ policy: AccessPolicy, _ principal: Principal) -> String {
        if r.baseModel.isEmpty { return "-" }
        return policy.canRead(principal, r.baseModel) ? "\(r.baseModel)@\(r.baseRevision)" : "(not readable)"
    }

    struct ModelPage {
        struct Base { let baseName, baseHref, baseReason: String }
        struct Link { let arrow, linkName, linkHref: String }
        struct File { let path, href, size, stored: String, shared, delta, fresh: Int }
        struct Revision { let revision, href, commitID, putAt, revisionBase, revisionSize, revisionStored, revisionRatio: String }
        struct Card { let text: String, truncated: String? }
        let chrome: Chrome
        let name, head, commit, created, treeHref: String
        let size, sizeExact, stored, storedExact, ratio, saved: String
        let shared, delta, fresh: Int
        let base: Base?
        /// The model's head, its base, the base's base, …: what reading it decodes through.
        let chain: [Link]
        let chainEnd: String?
        let baseHidden: Bool
        let noBase: Bool
        let annotations: [AnnotationView]
        let files: [File]
        let revisions: [Revision]
        let card: Card?
    }

    func modelPage(repo: String, policy: AccessPolicy, principal: Principal) throws -> String {
        let repos = HubRepos(store: store)
        let all = try repos.revisions(repo)
        guard let head = HubRepos.head(of: all) else { throw HubLookupError.repoNotFound(repo) }
        let commit = HubRepos.commitID(head)
        // The figures `tpstore show NAME@REV --json` prints.
        let figures = try store.figures(of: head)
        var base: ModelPage.Base?
        var baseHidden = false
        if !head.baseModel.isEmpty {
            if policy.canRead(principal, head.baseModel) {
                base = .init(baseName: "\(head.baseModel)@\(head.baseRevision)",
                             baseHref: WebPages.href(repo: head.baseModel, tree: head.baseRevision), baseReason: head.baseReason)
            } else {
                baseHidden = true
            }
        }
        let chain = try baseChain(head, policy, principal)
        let files = figures.files.map { f in
            ModelPage.File(path: f.path, href: WebPages.href(repo: repo, resolve: commit, path: f.path), size: FigureText.bytes(f.size),
                           stored: FigureText.bytes(f.storedBytes), shared: f.sharedChunks, delta: f.deltaChunks, fresh: f.freshChunks)
        }
        // `show`'s figures of the newest revisions: bounded by this model's size, whatever the
        // store holds (the dashboard's cache of every revision would cost a pass over the store).
        var shown: [Int64: RevisionFigures] = [head.rowID: figures]
        for r in all.reversed().prefix(WebPages.revisionFiguresLimit) where shown[r.rowID] == nil {
            shown[r.rowID] = try store.figures(of: r)
        }
        let revisions = all.reversed().map { r in
            let f = shown[r.rowID]
            return ModelPage.Revision(revision: r.revision, href: WebPages.href(repo: repo, tree: r.revision), commitID: HubRepos.commitID(r),
                                      putAt: WebPages.date(r.createdAt), revisionBase: baseText(r, policy, principal),
                                      revisionSize: f.map { FigureText.bytes($0.size) } ?? "-", revisionStored: f.map { FigureText.bytes($0.storedBytes) } ?? "-",
                                      revisionRatio: f.map { FigureText.ratio($0.storedBytes, of: $0.size) } ?? "-")
        }
        let page = ModelPage(chrome: chrome(repo, policy, principal), name: repo, head: head.revision, commit: commit,
                             created: WebPages.date(head.createdAt), treeHref: WebPages.href(repo: repo, tree: head.revision),
                             size: FigureText.bytes(figures.size), sizeExact: "\(figures.size)",
                             stored: FigureText.bytes(figures.storedBytes), storedExact: "\(figures.storedBytes)",
                             ratio: FigureText.ratio(figures.storedBytes, of: figures.size),
                             saved: FigureText.percent(figures.size - figures.storedBytes, of: figures.size),
                             shared: figures.sharedChunks, delta: figures.deltaChunks, fresh: figures.freshChunks,
                             base: base, chain: chain.links, chainEnd: chain.end, baseHidden: baseHidden, noBase: head.baseModel.isEmpty,
                             annotations: try annotations(head), files: files, revisions: revisions,
                             card: try modelCard(head))
        return try render("model", page)
    }

    struct AnnotationView {
        struct Method { let name, bits, gpuBytes, error, inBar, gpu, monthly: String }
        struct Recommended { let method, monthly, reason: String, saving: String?, baseline: String }
        let version: String
        let stale: Bool
        let current: String
        let createdAt: String
        let errorMeasure: String
        let recommendation: Recommended?
        let methods: [Method]
        let notes: [String]
    }

    /// The optimizer's annotations of a revision, newest first, as `tpstore annotations` shows them.
    func annotations(_ record: RevisionRecord) throws -> [AnnotationView] {
        try store.catalog.annotations(revision: record).reversed().compactMap { stored in
            // A result this build cannot read (another optimizer's shape) is left out, not a 500.
            guard let a = try? Annotation.decode(stored.result) else { return nil }
            let methods = a.methods.map { m in
                AnnotationView.Method(name: m.method, bits: String(format: "%.3f", m.bitsPerWeight), gpuBytes: FigureText.bytes(m.gpuBytes),
                                      error: String(format: "%.5f%@", m.error, m.errorIsProxy ? "*" : ""), inBar: m.withinErrorBar ? "yes" : "no",
                                      gpu: m.gpu.map { "\($0.count)× \($0.gpu)" } ?? "none fits",
                                      monthly: m.gpu.map { WebPages.dollars($0.dollarsPerMonth, decimals: 0) } ?? "-")
            }
            let recommended = a.recommendation.map { r in
                AnnotationView.Recommended(method: r.method, monthly: WebPages.dollars(r.dollarsPerMonth, decimals: 0), reason: r.reason,
                                           saving: r.savingPerMonth.map { String(format: "%@ (%.0f%%)", WebPages.dollars($0, decimals: 0), r.savingPercent ?? 0) },
                                           baseline: r.baselineDollarsPerMonth.map { WebPages.dollars($0, decimals: 0) } ?? "-")
            }
            return AnnotationView(version: stored.optimizerVersion, stale: stored.optimizerVersion != Optimizer.version, current: Optimizer.version,
                                  createdAt: a.createdAt, errorMeasure: a.errorMeasure + (a.methods.contains(where: \.errorIsProxy) ? "; * marks a weight-only proxy" : ""),
                                  recommendation: recommended, methods: methods, notes: a.notes)
        }
    }

    /// Bases of bases as far as the caller may read them (at most 16 steps; a base revision
    /// removed since keeps its chunks, so the chain says so and stops).
    func baseChain(_ head: RevisionRecord, _ policy: AccessPolicy, _ principal: Principal) throws -> (links: [ModelPage.Link], end: String?) {
        var links: [ModelPage.Link] = []
        var record = head
        var seen: Set<String> = []
        while !record.baseModel.isEmpty, links.count < 16 {
            let name = "\(record.baseModel)@\(record.baseRevision)"
            guard policy.canRead(principal, record.baseModel) else { return (links, (links.isEmpty ? "" : " → ") + "a base this token cannot read") }
            guard seen.insert(name).inserted else { break }
            let next: RevisionRecord
            do {
                next = try store.catalog.resolve(model: record.baseModel, revision: record.baseRevision)
            } catch StoreError.notFound {
                return (links, (links.isEmpty ? "" : " → ") + "\(name) (removed; its chunks stay while they are needed)")
            }
            links.append(.init(arrow: links.isEmpty ? "" : " → ", linkName: name, linkHref: WebPages.href(repo: next.model, tree: next.revision)))
            record = next
        }
        return (links, nil)
    }

    /// The revision's README.md as text, up to `cardLimit` bytes (cut at a character boundary).
    /// A card whose chunks fail their checks is shown as such: the rest of the page (sizes, base,
    /// savings) comes from the catalog and is still right, and fsck is the place for the damage.
    func modelCard(_ record: RevisionRecord) throws -> ModelPage.Card? {
        guard let file = try store.catalog.files(revision: record).first(where: { $0.path == "README.md" }) else { return nil }
        let bytes: [UInt8]
        do {
            let reader = try self.reader.open(model: record.model, revision: record.revision, path: file.path)
            bytes = try reader.read(0 ..< min(file.size, WebPages.cardLimit))
        } catch let error as StoreError {
            guard case .corrupt = error else { throw error }
            return ModelPage.Card(text: "(README.md could not be read: \(error))", truncated: nil)
        }
        let text = String(decoding: bytes, as: UTF8.self)
        return ModelPage.Card(text: text, truncated: file.size > WebPages.cardLimit ? FigureText.bytes(WebPages.cardLimit) : nil)
    }

    struct TreePage {
        struct File { let path, href, size, stored, sha256: String }
        let chrome: Chrome
        let name, modelHref, revision, commit: String
        let directory: String?
        let count: Int
        let size: String
        let files: [File]
    }

    func treePage(repo: String, revision: String, directory: String, policy: AccessPolicy, principal: Principal) throws -> String {
        let record = try HubRepos(store: store).resolve(repo, revision)
        let commit = HubRepos.commitID(record)
        let figures = try store.figures(of: record)
        let shown = figures.files.filter { directory.isEmpty || $0.path.hasPrefix(directory + "/") }
        if shown.isEmpty { throw HubLookupError.entryNotFound(repo: repo, commit: commit, path: directory) }
        let files = shown.map { f in
            TreePage.File(path: f.path, href: WebPages.href(repo: repo, resolve: commit, path: f.path), size: FigureText.bytes(f.size),
                          stored: FigureText.bytes(f.storedBytes), sha256: f.sha256)
        }
        return try render("tree", TreePage(chrome: chrome("\(repo) at \(record.revision)", policy, principal), name: repo,
                                           modelHref: WebPages.href(repo: repo), revision: record.revision, commit: commit,
                                           directory: directory.isEmpty ? nil : directory, count: files.count,
                                           size: FigureText.bytes(shown.reduce(0) { $0 + $1.size }), files: files))
    }
}
