import FelhomCore
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

// Test-only helpers shared by the test targets (never linked into an executable).

/// Real system calls with faults injected on demand: short writes, failed writes, failed fsync,
/// failed truncation, failed opens.
public final class FaultyIO: AppendLogIO {
    public init() {}
    public struct Faults {
        /// The next write writes only this many bytes, then the one after fails with EIO.
        public var shortWriteThenFail: Int?
        /// The next write writes only this many bytes and succeeds (a legal short write).
        public var shortWriteOnly: Int?
        public var failNextFsync = false
        public var failTruncate = false
        /// Opens of paths containing this string fail with EACCES.
        public var failOpenContaining: String?
    }
    public let faults = Mutex(Faults())
    let real = POSIXAppendLogIO()

    public func open(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
        if let s = faults.withLock({ $0.failOpenContaining }), path.contains(s) {
            errno = EACCES
            return -1
        }
        return real.open(path, flags, mode)
    }
    public func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        let (short, only) = faults.withLock { f in
            defer {
                if f.shortWriteOnly != nil { f.shortWriteOnly = nil }
            }
            return (f.shortWriteThenFail, f.shortWriteOnly)
        }
        if let short {
            if short > 0 {
                let n = real.write(fd, UnsafeRawBufferPointer(rebasing: bytes[..<min(short, bytes.count)]))
                faults.withLock { $0.shortWriteThenFail = 0 }
                return n
            }
            faults.withLock { $0.shortWriteThenFail = nil }
            errno = EIO
            return -1
        }
        if let only { return real.write(fd, UnsafeRawBufferPointer(rebasing: bytes[..<min(only, bytes.count)])) }
        return real.write(fd, bytes)
    }
    public func fsync(_ fd: Int32) -> Int32 {
        if faults.withLock({ f in
            defer { f.failNextFsync = false }
            return f.failNextFsync
        }) {
            errno = EIO
            return -1
        }
        return real.fsync(fd)
    }
    public func ftruncate(_ fd: Int32, _ length: off_t) -> Int32 {
        if faults.withLock({ $0.failTruncate }) {
            errno = EIO
            return -1
        }
        return real.ftruncate(fd, length)
    }
    public func rename(_ from: String, _ to: String) -> Int32 { real.rename(from, to) }
    public func close(_ fd: Int32) { real.close(fd) }
}
