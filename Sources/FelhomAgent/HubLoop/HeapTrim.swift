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

    /// Whether this C library can trim (glibc's `malloc_trim` was found).
    public static var available: Bool { trim != nil }

    /// Releases the heap's free pages; `true` when some memory was given back.
    @discardableResult
    public static func run() -> Bool {
        guard let trim else { return false }
        return trim(0) == 1
    }
}
