import FelhomCore
import Foundation

/// A host's desired state as the API shows it.
public struct DesiredView: Codable, Sendable {
    public var hostID: String
    /// The published generation (0 = never published).
    public var generation: Int64
    /// What the agent reconciles towards: the last published spec (`null` before the first publish).
    public var spec: DesiredState?
    public var publishedAt: Timestamp?
    /// The operator's working copy (operator and customer keys only).
    public var draft: DesiredState?
    /// Whether the draft differs from what is published.
    public var unpublishedChanges: Bool
    /// What the save could not check (a host that never reported: capacity unknown); absent when none.
    public var warnings: [String]?

    public init(hostID: String, generation: Int64, spec: DesiredState?, publishedAt: Timestamp?, draft: DesiredState?, unpublishedChanges: Bool) {
        self.hostID = hostID
        self.generation = generation
        self.spec = spec
        self.publishedAt = publishedAt
        self.draft = draft
        self.unpublishedChanges = unpublishedChanges
    }

    enum CodingKeys: String, CodingKey {
        case generation, spec, draft, warnings
        case hostID = "host_id"
        case publishedAt = "published_at"
        case unpublishedChanges = "unpublished_changes"
    }
}

/// `POST /api/v1/hosts/{id}/desired/publish`: the new generation.
public struct Published: Codable, Sendable {
    public var generation: Int64
    public init(generation: Int64) { self.generation = generation }
}

/// How one guest compares with its desired state.
public enum DriftState: String, Codable, Sendable, CaseIterable {
    /// As desired.
    case inSync = "in_sync"
    /// On the box, but some field differs.
    case differs
    /// Desired, not on the box.
    case missing
    /// On the box, not desired (never destroyed by the platform).
    case unexpected
    /// Its configuration could not be read.
    case unknown

    /// Counts as in sync for the host (unexpected guests are shown, not counted).
    public var isSettled: Bool { self == .inSync || self == .unexpected }
}

/// One guest's comparison.
public struct GuestDrift: Codable, Sendable, Equatable {
    public var state: DriftState
    public var vmid: Int
    public var name: String
    public var desiredRunState: String?
    public var actualStatus: String?
    public var differences: [GuestComparison.Difference]

    public init(
        state: DriftState, vmid: Int, name: String, desiredRunState: String?, actualStatus: String?, differences: [GuestComparison.Difference]
    ) {
        self.state = state
        self.vmid = vmid
        self.name = name
        self.desiredRunState = desiredRunState
        self.actualStatus = actualStatus
        self.differences = differences
    }

    enum CodingKeys: String, CodingKey {
        case state, vmid, name, differences
        case desiredRunState = "desired_run_state"
        case actualStatus = "actual_status"
    }
}

/// Desired vs last reported. `in_sync` when every desired guest is as desired; guests the desired
/// state does not list (`unexpected`) are shown but do not count: the platform never removes them.
public struct DriftView: Codable, Sendable {
    public var hostID: String
    public var generation: Int64
    public var reportedAt: Timestamp?
    public var inSync: Bool
    public var guests: [GuestDrift]

    public init(hostID: String, generation: Int64, reportedAt: Timestamp?, inSync: Bool, guests: [GuestDrift]) {
        self.hostID = hostID
        self.generation = generation
        self.reportedAt = reportedAt
        self.inSync = inSync
        self.guests = guests
    }

    enum CodingKeys: String, CodingKey {
        case generation, guests
        case hostID = "host_id"
        case reportedAt = "reported_at"
        case inSync = "in_sync"
    }
}

/// `POST /api/v1/hosts/{id}/requests`: an app-consistent backup or a restore test of one guest now.
public struct NewOperatorRequest: Codable, Sendable, Equatable {
    public var kind: DesiredState.Request.Kind
    public var vmid: Int
    public init(kind: DesiredState.Request.Kind, vmid: Int) {
        self.kind = kind
        self.vmid = vmid
    }
}
