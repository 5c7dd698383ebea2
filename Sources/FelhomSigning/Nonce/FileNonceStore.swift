import FelhomCore
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A durable nonce store: an ``AppendLog``, one `NONCE EXPIRES_EPOCH` line per nonce, fsync'd
/// before `record` returns, replayed on open.
///
/// A torn last line (a crash mid-write) is cut off on open; a malformed line before the last fails
/// closed. A failed append is cut back, so no fragment fuses with the next nonce. The log is
/// compacted when most of it is dead (``AppendLog/rewrite(_:)``: new file, fsync, rename, fsync of
/// the directory). Only nonces whose op expired more than `retention` ago are dropped. Any I/O
/// error makes `record` answer ``NonceOutcome/unavailable(_:)``, which the verifier treats as a
/// replay: nothing runs twice.
public final class FileNonceStore: NonceStore {
    struct State {
        var live: [String: Int64]
        var lines: Int
    }

    public let path: String
    let clock: WallClock
    let retention: TimeInterval
    /// Compact when the log has this many more lines than live entries.
    let compactionSlack: Int
    private let log: AppendLog
    private let state: Mutex<State>

    /// Opens (or creates, mode 0600) the log at `path` and replays it.
    public init(
        path: String, clock: WallClock = SystemWallClock(), retention: TimeInterval = 600, compactionSlack: Int = 4096,
        io: any AppendLogIO = POSIXAppendLogIO()
    ) throws {
        self.path = path
        self.clock = clock
        self.retention = retention
        self.compactionSlack = compactionSlack
        var live: [String: Int64] = [:]
        var lines = 0
        do {
            log = try AppendLog(path: path, io: io) { line in
                let parts = String(decoding: line, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, let exp = Int64(parts[1]) else { return false }
                live[String(parts[0])] = max(live[String(parts[0])] ?? exp, exp)
                lines += 1
                return true
            }
        } catch {
            throw NonceStoreError(message: "nonce log: \(error.message)")
        }
        state = Mutex(State(live: live, lines: lines))
    }

    /// Number of nonces currently remembered.
    public var count: Int { state.withLock { $0.live.count } }

    public func record(_ nonce: String, expiresAt: Date) -> NonceOutcome {
        guard !nonce.isEmpty, nonce.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .unavailable("nonce contains whitespace or characters outside printable ASCII")
        }
        let now = clock.now()
        let exp = Int64(expiresAt.timeIntervalSince1970.rounded(.up))
        return state.withLock { s -> NonceOutcome in
            if s.live[nonce] != nil { return .seen }
            do throws(AppendLogError) { try log.append(Array("\(nonce) \(exp)".utf8)) } catch {
                return .unavailable("nonce log: \(error.message)")
            }
            s.live[nonce] = exp
            s.lines += 1
            if s.lines > s.live.count + compactionSlack {
                compact(&s, now: now)
            }
            return .recorded
        }
    }

    /// Drops nonces expired for longer than `retention` and rewrites the log. Public for operators'
    /// maintenance and tests; `record` calls it on its own when the log has grown.
    public func compact() throws {
        let now = clock.now()
        try state.withLock { s in
            if let e = compact(&s, now: now) { throw e }
        }
    }

    @discardableResult
    private func compact(_ s: inout State, now: Date) -> NonceStoreError? {
        let cutoff = Int64(now.timeIntervalSince1970 - retention)
        let keep = s.live.filter { $0.value >= cutoff }
        let records = keep.sorted { $0.key < $1.key }.map { Array("\($0.key) \($0.value)".utf8) }
        do throws(AppendLogError) { try log.rewrite(records) } catch {
            // The old log is still the one in use and still holds every nonce.
            return NonceStoreError(message: "compaction: \(error.message)")
        }
        s.live = keep
        s.lines = keep.count
        return nil
    }
}

/// The nonce log could not be opened, repaired or compacted.
public struct NonceStoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
