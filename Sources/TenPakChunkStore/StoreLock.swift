#if canImport(Glibc)
import Glibc
#endif

/// The advisory lock that keeps gc away from puts: puts, gets and removals hold it shared, gc
/// holds it exclusive while it deletes. Released when the process exits, however it exits.
///
/// Writer-preferring, so a store that is never idle cannot starve gc: every acquirer passes a
/// second lock, the gate (`<root>/lock.gate`), on its way in. A shared acquirer holds the gate
/// shared only for the moment it takes `lock`; an exclusive one (gc, repair) takes the gate
/// exclusively first, which turns new shared acquirers away at the gate, then waits for the
/// shared holders already inside to finish, then lets the gate go (those turned away now wait on
/// `lock` until it is done).
public final class StoreLock: @unchecked Sendable {
    // Safe: the descriptor is only closed in deinit.
    private let file: OpenFile

    public enum Mode { case shared, exclusive }

    /// Takes the lock, retrying for up to `timeout` seconds before reporting the store busy.
    public init(root: String, mode: Mode, timeout: Double = 60) throws {
        file = try OpenFile(path: root + "/lock", mode: .readWrite)
        let gate = try OpenFile(path: root + "/lock.gate", mode: .readWrite)
        let busy = StoreError.busy("the store at \(root) is locked \(mode == .shared ? "by a running gc" : "by running puts or reads") after waiting \(Int(timeout)) s")
        var waited = 0.0
        func wait() throws {
            guard waited < timeout else { throw busy }
            usleep(20_000)
            waited += 0.02
        }
        switch mode {
        case .shared:
            while true {
                if try StoreLock.take(gate, LOCK_SH, root: root) {
                    let inside = try StoreLock.take(file, LOCK_SH, root: root)
                    flock(gate.fd, LOCK_UN)
                    if inside { return }
                }
                try wait()
            }
        case .exclusive:
            while try !StoreLock.take(gate, LOCK_EX, root: root) { try wait() }
            // `gate` closes (and so unlocks) when this init returns, whatever happens below.
            while try !StoreLock.take(file, LOCK_EX, root: root) { try wait() }
        }
    }

    /// One non-blocking flock; false when another holder is in the way.
    private static func take(_ file: OpenFile, _ operation: Int32, root: String) throws -> Bool {
        while flock(file.fd, operation | LOCK_NB) != 0 {
            let err = errno
            if err == EINTR { continue }
            guard err == EWOULDBLOCK else { throw StoreError.io(operation: "flock", path: file.path, errno: err) }
            return false
        }
        return true
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
