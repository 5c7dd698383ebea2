import FelhomCore
import Foundation

/// `POST /api/v1/events`.
public struct NewEvent: Codable, Sendable {
    public var type: String
    public var severity: HubEvent.Severity?
    public var guestID: String?
    /// When it happened, as the poster claims (kept as `client_at`; the hub stamps its own time).
    public var at: Date?
    public var data: JSONValue?

    public init(type: String, severity: HubEvent.Severity? = nil, guestID: String? = nil, at: Date? = nil, data: JSONValue? = nil) {
        self.type = type
        self.severity = severity
        self.guestID = guestID
        self.at = at
        self.data = data
    }

    enum CodingKeys: String, CodingKey {
        case type, severity, at, data
        case guestID = "guest_id"
    }
}

/// `{"events": [...]}`.
public struct EventList: Codable, Sendable {
    public var events: [HubEvent]
    public init(events: [HubEvent]) { self.events = events }
}
