#if canImport(Glibc)
import Glibc
#endif

/// The advisory lock that keeps gc away from puts: puts, gets and removals hold it shared, gc
/// holds it exclusive while it deletes. Released when the process exits, however it exits.
public final class StoreLock: @unchecked Sendable {
    // Safe: the descriptor is only closed in deinit.
    private let file: OpenFile

    public enum Mode { case shared, exclusive }

    /// Takes the lock, retrying for up to `timeout` seconds before reporting the store busy.
    public init(root: String, mode: Mode, timeout: Double = 60) throws {
        file = try OpenFile(path: root + "/lock", mode: .readWrite)
        let operation = (mode == .shared ? LOCK_SH : LOCK_EX) | LOCK_NB
        var waited = 0.0
        while flock(file.fd, operation) != 0 {
            let err = errno
            guard err == EWOULDBLOCK || err == EINTR else { throw StoreError.io(operation: "flock", path: root + "/lock", errno: err) }
            guard waited < timeout else {
                throw StoreError.busy("the store at \(root) is locked \(mode == .shared ? "by a running gc" : "by running puts or reads") after waiting \(Int(timeout)) s")
            }
            usleep(50_000)
            waited += 0.05
        }
    }
}

/// How a store keeps gc away from puts and reads: a shared lock for put/get/rm, an exclusive one
/// for gc. The local store uses `StoreLock` (flock on `<root>/lock`); a distributed store uses a
/// lock every machine sees (PostgreSQL advisory locks). The returned token holds the lock until
/// it is released (deinit).
public protocol StoreLocking: Sendable {
    func acquire(_ mode: StoreLock.Mode, timeout: Double) throws -> AnyObject
}

/// The local store's locking: flock on `<root>/lock`.
public struct LocalStoreLocking: StoreLocking {
    public let root: String
    public init(root: String) { self.root = root }
    public func acquire(_ mode: StoreLock.Mode, timeout: Double) throws -> AnyObject {
        try StoreLock(root: root, mode: mode, timeout: timeout)
    }
}
