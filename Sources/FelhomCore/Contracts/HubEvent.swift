import Foundation

/// Something that happened, as stored and shown by the hub (SPEC §2).
public struct HubEvent: Codable, Sendable, Equatable {
    /// Who emitted it.
    public enum Source: String, Codable, Sendable, CaseIterable { case host, guest, hub }
    public enum Severity: String, Codable, Sendable, CaseIterable { case info, warning, critical }

    /// Known event types (others are accepted and stored as they are).
    public static let knownTypes: Set<String> = [
        "node_stale", "node_down", "node_recovered", "backup_completed", "backup_failed", "db_dump_completed",
        "db_dump_failed", "expected_backup_missed", "restore_test_passed", "restore_test_failed", "op_applied",
        "op_rejected", "memory_limit_exceeded", "quota_exceeded", "update_committed", "update_reverted",
    ]

    public var id: String
    public var at: Date
    public var source: Source
    public var hostID: String?
    public var guestID: String?
    public var customerID: String?
    public var type: String
    public var severity: Severity
    public var data: JSONValue

    public init(
        id: String, at: Date, source: Source, hostID: String?, guestID: String?, customerID: String?, type: String,
        severity: Severity, data: JSONValue
    ) {
        self.id = id
        self.at = at
        self.source = source
        self.hostID = hostID
        self.guestID = guestID
        self.customerID = customerID
        self.type = type
        self.severity = severity
        self.data = data
    }

    enum CodingKeys: String, CodingKey {
        case id, at, source, type, severity, data
        case hostID = "host_id"
        case guestID = "guest_id"
        case customerID = "customer_id"
    }
}
