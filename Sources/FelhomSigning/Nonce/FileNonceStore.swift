import FelhomCore
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A durable nonce store: an ``AppendLog``, one `NONCE EXPIRES_EPOCH` line per nonce, fsync'd
/// before `record` returns, replayed on open. A nonce recorded with an owner (the op's id) is
/// preceded by an `owner:OWNER:NONCE EXPIRES_EPOCH` line, which has the same two-field shape, so an
/// older agent (after a roll-back) reads the log and sees one more nonce it never meets.
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
        /// Who spent a nonce, where recorded.
        var owners: [String: String]
        var lines: Int
    }

    /// The prefix of an owner line's first field.
    static let ownerPrefix = "owner:"

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
        var owners: [String: String] = [:]
        var lines = 0
        do {
            log = try AppendLog(path: path, io: io) { line in
                let parts = String(decoding: line, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, let exp = Int64(parts[1]) else { return false }
                lines += 1
                if parts[0].hasPrefix(Self.ownerPrefix) {
                    let rest = parts[0].dropFirst(Self.ownerPrefix.count)
                    guard let colon = rest.firstIndex(of: ":"), colon != rest.startIndex, rest.index(after: colon) != rest.endIndex else {
                        return false
                    }
                    owners[String(rest[rest.index(after: colon)...])] = String(rest[..<colon])
                    return true
                }
                live[String(parts[0])] = max(live[String(parts[0])] ?? exp, exp)
                return true
            }
        } catch {
            throw NonceStoreError(message: "nonce log: \(error.message)")
        }
        state = Mutex(State(live: live, owners: owners.filter { live[$0.key] != nil }, lines: lines))
    }

    /// Number of nonces currently remembered.
    public var count: Int { state.withLock { $0.live.count } }

    public func record(_ nonce: String, expiresAt: Date, owner: String?) -> NonceOutcome {
        guard !nonce.isEmpty, nonce.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }), !nonce.hasPrefix(Self.ownerPrefix) else {
            return .unavailable("nonce contains whitespace or characters outside printable ASCII")
        }
        let owner = owner.flatMap { Self.isValidOwner($0) ? $0 : nil }
        let now = clock.now()
        let exp = Int64(expiresAt.timeIntervalSince1970.rounded(.up))
        return state.withLock { s -> NonceOutcome in
            if s.live[nonce] != nil { return owner != nil && s.owners[nonce] == owner ? .recorded : .seen }
            // The owner line first: a crash between the two lines leaves the owner of a nonce not
            // recorded, which means nothing (the nonce is recorded when the op is verified again).
            do throws(AppendLogError) {
                if let owner {
                    try log.append(Array("\(Self.ownerPrefix)\(owner):\(nonce) \(exp)".utf8))
                    s.lines += 1
                }
                try log.append(Array("\(nonce) \(exp)".utf8))
            } catch {
                return .unavailable("nonce log: \(error.message)")
            }
            s.live[nonce] = exp
            if let owner { s.owners[nonce] = owner }
            s.lines += 1
            if s.lines > s.live.count + s.owners.count + compactionSlack {
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
        let owners = s.owners.filter { keep[$0.key] != nil }
        let records = keep.sorted { $0.key < $1.key }.flatMap { nonce, exp in
            (owners[nonce].map { [Array("\(Self.ownerPrefix)\($0):\(nonce) \(exp)".utf8)] } ?? []) + [Array("\(nonce) \(exp)".utf8)]
        }
        do throws(AppendLogError) { try log.rewrite(records) } catch {
            // The old log is still the one in use and still holds every nonce.
            return NonceStoreError(message: "compaction: \(error.message)")
        }
        s.live = keep
        s.owners = owners
        s.lines = records.count
        return nil
    }
}

/// The nonce log could not be opened, repaired or compacted.
public struct NonceStoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
