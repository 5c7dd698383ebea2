import Foundation
import Synchronization

/// What recording a nonce found.
public enum NonceOutcome: Sendable, Equatable {
    /// First time seen; now recorded (durably, for the file store).
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
    func record(_ nonce: String, expiresAt: Date) -> NonceOutcome
}

/// A nonce store in memory (tests, and the hub's early check). Forgets on restart.
public final class InMemoryNonceStore: NonceStore {
    private let entries = Mutex<[String: Date]>([:])
    public init() {}

    public func record(_ nonce: String, expiresAt: Date) -> NonceOutcome {
        entries.withLock { e in
            if e[nonce] != nil { return .seen }
            e[nonce] = expiresAt
            return .recorded
        }
    }
}
