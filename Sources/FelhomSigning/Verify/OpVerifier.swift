import FelhomCore
import Foundation

/// The agent's check of an operator-signed op (SPEC §4), in this order: parse armor → namespace →
/// public key → allow-list by key bytes → signature over the raw received bytes → parse blob →
/// target host → time window → record the nonce, last and durably.
///
/// A bad signature therefore never burns a nonce, and nothing about the blob is trusted before
/// its signature checks out.
public struct OpVerifier: Sendable {
    /// The SSHSIG namespace of Felhom ops.
    public static let namespace = "felhom-op-v1"

    /// Limits on time.
    public struct Policy: Sendable {
        /// Tolerated clock difference between the signer's and the agent's clocks.
        public var clockSkew: TimeInterval = 300
        /// Longest allowed `expires_at - issued_at`.
        public var maxLifetime: TimeInterval = 24 * 3600
        /// Security-key signatures must carry the user-presence flag.
        public var requireUserPresence = true
        public init() {}
    }

    /// A verified op: what to do and who signed it.
    public struct Verified: Sendable {
        public var op: OpBlob
        public var signer: PinnedSigner
        public var signature: SSHSignature
    }

    public let signers: [PinnedSigner]
    public let hostID: String
    public let nonces: NonceStore
    public let clock: WallClock
    public let policy: Policy

    public init(signers: [PinnedSigner], hostID: String, nonces: NonceStore, clock: WallClock = SystemWallClock(), policy: Policy = Policy()) {
        self.signers = signers
        self.hostID = hostID
        self.nonces = nonces
        self.clock = clock
        self.policy = policy
    }

    /// Verifies `blob` and its armored signature, and spends the op's nonce last. `owner` (the
    /// op's id) lets the same op be verified again after a crash: see ``NonceStore``.
    public func verify(blob: [UInt8], signature armored: String, owner: String? = nil) throws(SignatureError) -> Verified {
        // 1–3. Armor, blob structure and key.
        let sig = try SSHSignature(armored: armored)
        // 2. Namespace.
        guard sig.namespace == Self.namespace else {
            throw SignatureError(.namespace, "signature is for namespace '\(sig.namespace)', not '\(Self.namespace)'")
        }
        // 4. Allow-list by key bytes.
        let now = clock.now()
        let signer = try PinnedSigner.match(sig, in: signers, namespace: Self.namespace, now: now)
        // 5. Signature over the raw received bytes.
        try sig.verify(message: blob, requireUserPresence: policy.requireUserPresence)
        // 6. Only now parse what was signed.
        let op: OpBlob
        do { op = try OpBlob(parsing: blob) } catch { throw SignatureError(.malformed, "\(error)") }
        // 7. Target.
        guard op.hostID == hostID else {
            throw SignatureError(.target, "op is for host '\(op.hostID)', this is host '\(hostID)'")
        }
        // 8. Time window.
        try checkTimeWindow(op, now: now)
        // 9. Nonce, last.
        switch nonces.record(op.nonce, expiresAt: op.expiresAt.addingTimeInterval(policy.clockSkew), owner: owner) {
        case .recorded: return Verified(op: op, signer: signer, signature: sig)
        case .seen: throw SignatureError(.replay, "op nonce \(op.nonce) was already used")
        case .unavailable(let why): throw SignatureError(.replay, "cannot confirm the nonce is fresh (\(why)); refusing")
        }
    }

    /// The op's time window, with the clock-skew tolerance. Also checked again before an op
    /// resumed after a crash submits any new step: a resumed op is no more valid than a fresh one.
    public func checkTimeWindow(_ op: OpBlob, now: Date? = nil) throws(SignatureError) {
        let now = now ?? clock.now()
        guard op.expiresAt.timeIntervalSince(op.issuedAt) <= policy.maxLifetime else {
            throw SignatureError(.malformed, "op lifetime exceeds the maximum of \(Int(policy.maxLifetime)) s")
        }
        if now.addingTimeInterval(policy.clockSkew) < op.issuedAt {
            throw SignatureError(.notYetValid, "op is issued for \(op.issuedAt.formatted(.iso8601)), in the future")
        }
        if now.addingTimeInterval(-policy.clockSkew) > op.expiresAt {
            throw SignatureError(.expired, "op expired at \(op.expiresAt.formatted(.iso8601))")
        }
    }
}
