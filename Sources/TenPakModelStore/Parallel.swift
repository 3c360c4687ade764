import Dispatch

/// Fixed slots that concurrent iterations fill, one slot each.
///
/// `DispatchQueue.concurrentPerform` hands each index to exactly one thread, so no two threads
/// write one slot; the buffer is allocated up front so writes never touch shared array storage.
final class Slots<T>: @unchecked Sendable {
    private let storage: UnsafeMutableBufferPointer<T?>

    init(count: Int) {
        storage = .allocate(capacity: count)
        storage.initialize(repeating: nil)
    }

    deinit {
        storage.baseAddress?.deinitialize(count: storage.count)
        storage.deallocate()
    }

    subscript(index: Int) -> T? {
        get { storage[index] }
        set { storage[index] = newValue }
    }

    var count: Int { storage.count }
}

/// Runs `body(i)` for i in 0..<count on all cores and collects the results in order, or throws
/// the first error (by index). Used by put, get and the reader for independent chunk work.
public func parallelMap<T>(_ count: Int, _ body: (Int) throws -> T) throws -> [T] {
    let slots = Slots<Result<T, Error>>(count: count)
    withoutActuallyEscaping(body) { body in
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: count) { i in
            slots[i] = Result { try body(i) }
        }
    }
    var out: [T] = []
    out.reserveCapacity(count)
    for i in 0 ..< count {
        // Safe: concurrentPerform returns only after every iteration ran.
        out.append(try slots[i]!.get())
    }
    return out
}

