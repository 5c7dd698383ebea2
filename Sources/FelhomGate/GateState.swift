import Foundation

/// gate.json: what the gate knows about the install root. Written by the agent when it flips to a
/// new slot (``pending``) and by the gate when it commits or reverts.
public struct GateState: Sendable, Equatable, Codable {
    /// The slot that last ran healthy: the gate reverts to it.
    public var lastGood: String
    /// The version in ``lastGood`` (the floor below which the agent refuses a release unless an
    /// operator-signed rollback allows it).
    public var committedVersion: String?
    /// A flip awaiting the gate's verdict.
    public var pending: Pending?

    /// A flip to a new slot, not yet committed.
    public struct Pending: Sendable, Equatable, Codable {
        /// The agent's journal operation (`agent-update-…`), echoed in the result.
        public var op: String
        public var slot: String
        public var version: String
        /// The slot and version to return to.
        public var previous: String
        public var previousVersion: String?
        public var flippedAt: Date
        /// The new agent must be healthy within this many seconds of the flip (default 300).
        public var windowSeconds: Int
        /// … and have stayed up this long after the flip before the gate commits (default 60).
        public var settleSeconds: Int

        public init(
            op: String, slot: String, version: String, previous: String, previousVersion: String?, flippedAt: Date, windowSeconds: Int = 300,
            settleSeconds: Int = 60
        ) {
            self.op = op
            self.slot = slot
            self.version = version
            self.previous = previous
            self.previousVersion = previousVersion
            self.flippedAt = flippedAt
            self.windowSeconds = windowSeconds
            self.settleSeconds = settleSeconds
        }

        enum CodingKeys: String, CodingKey {
            case op, slot, version, previous
            case previousVersion = "previous_version"
            case flippedAt = "flipped_at"
            case windowSeconds = "window_seconds"
            case settleSeconds = "settle_seconds"
        }
    }

    public init(lastGood: String, committedVersion: String?, pending: Pending? = nil) {
        self.lastGood = lastGood
        self.committedVersion = committedVersion
        self.pending = pending
    }

    enum CodingKeys: String, CodingKey {
        case lastGood = "last_good"
        case committedVersion = "committed_version"
        case pending
    }
}

/// health.json: a running agent's word that it is well — written after a cycle in which it
/// reported to the hub and read the Proxmox API.
public struct HealthRecord: Sendable, Equatable, Codable {
    public var version: String
    public var at: Date
    public var pid: Int32

    public init(version: String, at: Date, pid: Int32) {
        self.version = version
        self.at = at
        self.pid = pid
    }
}

/// result.json: the gate's last verdict on a flip, which the agent reports to the hub
/// (`update_committed` or `update_reverted`) and then records as reported in its journal.
public struct GateResult: Sendable, Equatable, Codable {
    public enum Outcome: String, Sendable, Codable { case committed, reverted }
    public var op: String
    public var outcome: Outcome
    public var version: String
    public var previousVersion: String?
    public var reason: String?
    public var at: Date

    public init(op: String, outcome: Outcome, version: String, previousVersion: String?, reason: String?, at: Date) {
        self.op = op
        self.outcome = outcome
        self.version = version
        self.previousVersion = previousVersion
        self.reason = reason
        self.at = at
    }

    enum CodingKeys: String, CodingKey {
        case op, outcome, version, reason, at
        case previousVersion = "previous_version"
    }
}
