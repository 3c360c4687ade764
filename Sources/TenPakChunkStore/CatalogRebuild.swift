import Foundation
import TenPakFormat

/// A backend's part of `fsck --repair`: where a catalog rebuilt from the packs is built, and how it
/// then replaces the live one. The rebuilt catalog is filled completely before `replaceLive` runs,
/// and the old catalog is kept aside, never deleted.
public protocol CatalogRebuild: Sendable {
    /// An empty catalog beside the live one (whatever an earlier, interrupted rebuild left is dropped).
    func makeEmpty() throws -> any Catalog
    /// Puts the rebuilt catalog in place of the live one; returns a line saying where the old one went.
    /// The catalog `makeEmpty` returned must no longer be in use.
    func replaceLive() throws -> String
}

/// What a repair needs of a store whose catalog may be lost: its packs, its lock and its rebuild.
public struct RepairTarget: Sendable {
    public let packs: any PackStorage
    public let locking: any StoreLocking
    public let rebuild: any CatalogRebuild
    /// The store's name in messages.
    public let place: String
    /// Opens the live catalog, when it still opens: repair fences it before it scans.
    public let openLiveCatalog: @Sendable () throws -> any Catalog

    public init(packs: any PackStorage, locking: any StoreLocking, rebuild: any CatalogRebuild, place: String,
                openLiveCatalog: @escaping @Sendable () throws -> any Catalog) {
        self.packs = packs
        self.locking = locking
        self.rebuild = rebuild
        self.place = place
        self.openLiveCatalog = openLiveCatalog
    }

    /// The local store in `directory`: the new catalog is built as `catalog.db.rebuild`, then
    /// renamed over `catalog.db`; the old one is kept as `catalog.db.damaged-<time>`.
    public static func local(directory: String) throws -> RepairTarget {
        guard FileSystem.exists(directory + "/" + ChunkStore.markerName) else {
            throw StoreError.notAStore(path: directory, reason: "no \(ChunkStore.markerName) marker")
        }
        return RepairTarget(packs: LocalPackDirectory(root: directory), locking: LocalStoreLocking(root: directory),
                            rebuild: SQLiteCatalogRebuild(directory: directory), place: directory,
                            openLiveCatalog: { try SQLCatalog.sqlite(path: directory + "/catalog.db", create: false) })
    }
}

/// The local store's rebuild: a second SQLite file, swapped in by rename.
public struct SQLiteCatalogRebuild: CatalogRebuild {
    public let directory: String
    var live: String { directory + "/catalog.db" }
    var rebuilt: String { directory + "/catalog.db.rebuild" }

    public init(directory: String) { self.directory = directory }

    public func makeEmpty() throws -> any Catalog {
        for suffix in ["", "-wal", "-shm"] { try FileSystem.remove(rebuilt + suffix) }
        return try SQLCatalog.sqlite(path: rebuilt, create: true)
    }

    public func replaceLive() throws -> String {
        // ORDER: the rebuilt catalog is complete and closed (checkpointed) → the old one moves aside → swap.
        let aside = live + ".damaged-\(Int(Date().timeIntervalSince1970))-\(FileSystem.randomHex(bytes: 3))"
        let hadCatalog = FileSystem.exists(live)
        for suffix in ["", "-wal", "-shm"] where FileSystem.exists(live + suffix) {
            try FileSystem.rename(live + suffix, to: aside + suffix)
        }
        try FileSystem.rename(rebuilt, to: live)
        try FileSystem.syncDirectory(directory)
        let pruned = pruneSetAside()
        let note = pruned > 0 ? " (\(pruned) older set-aside catalog\(pruned == 1 ? "" : "s") deleted; the newest \(SQLiteCatalogRebuild.keptAside) are kept)" : ""
        return hadCatalog ? "catalog rebuilt; the previous one is kept as \(aside)\(note)" : "catalog rebuilt (there was none)\(note)"
    }

    /// How many set-aside catalogs a store keeps: enough to look into the last few repairs, and
    /// bounded, so a store repaired again and again does not fill its disk with old catalogs.
    static let keptAside = 3

    /// Deletes set-aside catalogs (with their `-wal`/`-shm`) beyond the newest `keptAside`, by the
    /// time in their name. Best effort: the repair is done whatever happens here.
    private func pruneSetAside() -> Int {
        let prefix = "catalog.db.damaged-"
        guard let names = try? FileSystem.list(directory) else { return 0 }
        // catalog.db.damaged-<unix seconds>-<hex>, the main file of each set-aside catalog.
        let catalogs = names.filter { $0.hasPrefix(prefix) && !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") }
            .compactMap { name -> (time: Int, name: String)? in
                guard let time = Int(name.dropFirst(prefix.count).split(separator: "-").first ?? "") else { return nil }
                return (time, name)
            }
            .sorted { ($0.time, $0.name) > ($1.time, $1.name) }
        var pruned = 0
        for old in catalogs.dropFirst(SQLiteCatalogRebuild.keptAside) {
            for suffix in ["-wal", "-shm", ""] { try? FileSystem.remove(directory + "/" + old.name + suffix) }
            pruned += 1
        }
        return pruned
    }
}
