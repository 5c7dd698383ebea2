import Crypto
import FelhomCore
import Foundation
import Synchronization

/// The outcome events the hub's data-protection checks count on (`backup_completed`,
/// `backup_failed`, `restore_test_passed`, …) until the hub has taken each one.
///
/// Each outcome is posted with an idempotency key made from its journal op, so saying it again
/// records nothing new on the hub. An outcome is remembered here once the hub answered; the
/// agent says again, each cycle (at most ``perPass`` at a time), every outcome of the last
/// ``window`` that its journal holds and this ledger does not — after a start, all of them once.
/// So a kill between the journal's end and the post, or a hub that was away at that moment, no
/// longer loses a `backup_completed` (which became a false `backup_overdue` days later).
public final class OutcomeLedger: Sendable {
    /// How far back finished outcomes are said again.
    public static let window: TimeInterval = 86_400
    /// At most this many outcomes said again per cycle (the hub's per-key event rate limit).
    public static let perPass = 20

    let delivered = Mutex<Set<String>>([])

    public init() {}

    /// Whether the hub has taken the outcome with this key (in this process's life).
    public func isDelivered(_ key: String) -> Bool { delivered.withLock { $0.contains(key) } }

    func markDelivered(_ key: String) { _ = delivered.withLock { $0.insert(key) } }

    /// The idempotency key of a journal op's outcome: `outcome:` and the op id, or its SHA-256
    /// when the id has characters the hub's key pattern does not allow.
    public static func key(op: String) -> String {
        let allowed =
            op.utf8.count <= 100
            && op.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_.:#@-".unicodeScalars.contains($0)) }
        if allowed { return "outcome:" + op }
        return "outcome:" + Hex.encode(SHA256.hash(data: Data(op.utf8)))
    }

    /// Journal ops of `kind` that finished within ``window`` before `now` and whose outcome the
    /// hub has not taken, oldest first, at most ``perPass``.
    func undelivered(_ journal: Journal, kind: String, now: Date) -> [(op: String, entries: [JournalEntry])] {
        journal.allOperations().filter { op, entries in
            guard entries.first?.kind == kind, let end = entries.last, end.isTerminal else { return false }
            return now.timeIntervalSince(end.at) <= Self.window && !isDelivered(Self.key(op: op))
        }
        .sorted { ($0.entries.last?.at ?? .distantPast) < ($1.entries.last?.at ?? .distantPast) }
        .prefix(Self.perPass).map { ($0.op, $0.entries) }
    }
}
