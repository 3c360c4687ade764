import TenPakChunkStore
import TenPakDistributed
import TenPakModelStore

/// Opens a store of either backend from a location, the way the command line names stores: a
/// directory is a local store; a regular file is a distributed store's JSON config (packs in S3,
/// catalog in PostgreSQL; SPEC.md section 17).
///
/// This is the one place where backends are composed: the model store, the reader, the git-lfs
/// agent and the optimizer depend only on the `ChunkStore` seams, so a program that wants a local
/// store links the `TenPak` product and no PostgreSQL driver or HTTP client.
///
///     let store = try StoreLocation.open("/etc/tenpak/hub.json")
public enum StoreLocation {
    /// The chunk store at `location`. With `create`, makes it (a local directory; or the bucket
    /// and the catalog's schema) when missing.
    public static func openChunkStore(_ location: String, create: Bool = false) throws -> ChunkStore {
        if DistributedConfig.isConfigFile(location) {
            return try ChunkStore.openDistributed(config: DistributedConfig.load(path: location), root: location, create: create)
        }
        return try ChunkStore.openLocal(directory: location, create: create)
    }

    /// The model store at `location` (see `openChunkStore`).
    public static func open(_ location: String, create: Bool = false) throws -> ModelStore {
        ModelStore(chunks: try openChunkStore(location, create: create))
    }

    /// The store at `location` as `fsck --repair` needs it: without opening its catalog, which may
    /// be the part that is lost.
    public static func repairTarget(_ location: String) throws -> RepairTarget {
        guard DistributedConfig.isConfigFile(location) else { return try RepairTarget.local(directory: location) }
        return try RepairTarget.distributed(config: DistributedConfig.load(path: location), place: location)
    }
}
