import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Gives the heap's free pages back to the kernel after a cycle: glibc's `malloc_trim(0)`.
///
/// glibc keeps what a burst of work freed (provisioning 100 guests, a backup's buffers) mapped and
/// resident, and only hands back the top of each heap on its own; `malloc_trim(0)` also releases
/// the free pages in the middle. Measured (docs/performance.md): an agent that provisioned 100
/// guests idled with 5.5 MiB less resident memory after one trim. The function is looked up at
/// run time, so a C library without it (musl) simply skips the trim.
///
/// The trim holds each heap's lock while it walks the free chunks, so it costs in proportion to
/// the heap: nothing worth measuring for the agent's few MiB (its idle CPU figures include it), but
/// in a process with hundreds of MiB of busy, fragmented heap (the whole test suite) it stalled
/// every thread for seconds. It runs once per cycle, never on a hot path, and only in a process
/// that is the agent's own: `felhom-agent run` calls ``enableAfterCycles()``; an agent run inside
/// another program (the test suite) leaves that program's heap alone.
public enum HeapTrim {
    private typealias Trim = @convention(c) (Int) -> Int32

    nonisolated(unsafe) private static let trim: Trim? = {
        #if canImport(Glibc)
            guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "malloc_trim") else { return nil }
            return unsafeBitCast(symbol, to: Trim.self)
        #else
            return nil
        #endif
    }()

    private static let afterCycles = Atomic<Bool>(false)

    /// Trims after every agent cycle from now on (``afterCycle()``): for a process of the agent's own.
    public static func enableAfterCycles() { afterCycles.store(true, ordering: .relaxed) }

    /// Called by the agent's loop after each cycle: trims when ``enableAfterCycles()`` was called.
    public static func afterCycle() {
        if afterCycles.load(ordering: .relaxed) { run() }
    }

    /// Whether this C library can trim (glibc's `malloc_trim` was found).
    public static var available: Bool { trim != nil }

    /// Releases the heap's free pages; `true` when some memory was given back.
    @discardableResult
    public static func run() -> Bool {
        guard let trim else { return false }
        return trim(0) == 1
    }
}
