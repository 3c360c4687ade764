import Dispatch

/// Starts work that blocks (file or network I/O, a wait for other work) on a thread of its own.
///
/// Not on Dispatch's global queue: it is as wide as the machine has cores (two here), and on Linux
/// it adds a thread for a worker blocked in a read or a wait only after a delay, so blocking work
/// there holds back whatever is queued behind it. Measured: a push's bundles went out one at a time
/// though the client keeps three in flight (the next pack read waited behind two blocked uploads;
/// SPEC 19.7). A serial queue of its own targets Dispatch's overcommitting pool, which starts a
/// thread when none is free (up to a limit of its own).
public func startBlocking(_ work: @escaping @Sendable () -> Void) {
    DispatchQueue(label: "tenpak.blocking").async(execute: work)
}

/// Work started on another thread now, whose result is collected later (`value()` blocks until it
/// is ready). For overlapping I/O with computation, such as reading the next window's frames while
/// this one decodes.
public final class Background<T>: @unchecked Sendable {
    // Safe: `result` is written once before `done` is signalled and read only after waiting on it.
    private var result: Result<T, Error>?
    private let done = DispatchSemaphore(value: 0)

    public init(_ body: @escaping @Sendable () throws -> T) {
        startBlocking { [self] in
            result = Result { try body() }
            done.signal()
        }
    }

    public func value() throws -> T {
        done.wait()
        done.signal() // a second call does not block
        // Safe: set before the signal this waited for.
        return try result!.get()
    }
}
