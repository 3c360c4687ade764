import CTenPakKernels

/// The instruction sets the entropy coders' vector kernels (CTenPakKernels) may use. Each entry
/// point picks the widest form this CPU has, up to `limit`; every form writes and reads the same
/// bytes as the portable Swift loops.
public enum VectorKernels {
    public enum Level: Int32, Sendable, CaseIterable, Comparable {
        /// No kernel: the portable loops.
        case portable = 0
        case avx2 = 1
        case avx512 = 2

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    /// The widest level this CPU and OS can run.
    public static var cpuLevel: Level { Level(rawValue: tenpak_cpu_kernel_level()) ?? .portable }

    /// The levels this CPU can run, narrowest first (`.portable` always).
    public static var available: [Level] { Level.allCases.filter { $0 <= cpuLevel } }

    /// The cap on the kernels (`.avx512`, i.e. none, by default). Process-wide: for tests, which
    /// hold every form this CPU has to the portable code, and benchmarks; change it only while no
    /// codec runs.
    public static var limit: Level {
        get { Level(rawValue: tenpak_kernel_limit()) ?? .portable }
        set { tenpak_set_kernel_limit(newValue.rawValue) }
    }

    /// Runs `body` with the kernels capped at `level`, then restores the cap.
    public static func with<T>(limit level: Level, _ body: () throws -> T) rethrows -> T {
        let before = limit
        limit = level
        defer { limit = before }
        return try body()
    }
}
