import Foundation
import Synchronization

/// What recording a nonce found.
public enum NonceOutcome: Sendable, Equatable {
    /// First time seen, now recorded (durably, for the file store); or recorded before by the
    /// same owner (the same op verified again after a crash).
    case recorded
    /// Seen before.
    case seen
    /// The store could not tell or could not record; the caller must treat the nonce as seen.
    case unavailable(String)
}

/// Remembers op nonces so a signed op runs once. Recording is the last step of verification.
public protocol NonceStore: Sendable {
    /// Records `nonce` unless already present. The nonce may be forgotten once `expiresAt` is past
    /// (plus the verifier's clock skew): an expired op is refused before its nonce is looked at.
    ///
    /// `owner` names what spends the nonce (the agent passes the op's id). A nonce already recorded
    /// for the same owner answers ``NonceOutcome/recorded`` again: an op verified, then killed
    /// before it journaled anything, is verified again on restart and resumes instead of being
    /// refused as a replay of itself. Another owner, or none, gets ``NonceOutcome/seen``.
    func record(_ nonce: String, expiresAt: Date, owner: String?) -> NonceOutcome
}

extension NonceStore {
    /// Records `nonce` with no owner: any second record is ``NonceOutcome/seen``.
    public func record(_ nonce: String, expiresAt: Date) -> NonceOutcome { record(nonce, expiresAt: expiresAt, owner: nil) }

    /// Whether `owner` may name a nonce's spender: 1–128 of `[A-Za-z0-9_.-]` (an op id; anything
    /// else, which a hub could send, is recorded without an owner).
    public static func isValidOwner(_ owner: String) -> Bool {
        (1...128).contains(owner.utf8.count)
            && owner.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || $0 == 0x2E || $0 == 0x2D
            }
    }
}

/// A nonce store in memory (tests, and the hub's early check). Forgets on restart.
public final class InMemoryNonceStore: NonceStore {
    private let entries = Mutex<[String: (expiresAt: Date, owner: String?)]>([:])
    public init() {}

    public func record(_ nonce: String, expiresAt: Date, owner: String?) -> NonceOutcome {
        let owner = owner.flatMap { Self.isValidOwner($0) ? $0 : nil }
        return entries.withLock { e in
            if let earlier = e[nonce] { return owner != nil && earlier.owner == owner ? .recorded : .seen }
            e[nonce] = (expiresAt, owner)
            return .recorded
        }
    }
}
