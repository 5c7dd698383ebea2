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
    /// The poster's name for this event (its journal op id, say): posting it again with the same
    /// key records nothing new and answers the event stored the first time, so a poster that did
    /// not hear the answer (killed, or the hub went away) can simply say it again.
    public var idempotencyKey: String?

    public init(
        type: String, severity: HubEvent.Severity? = nil, guestID: String? = nil, at: Date? = nil, data: JSONValue? = nil,
        idempotencyKey: String? = nil
    ) {
        self.type = type
        self.severity = severity
        self.guestID = guestID
        self.at = at
        self.data = data
        self.idempotencyKey = idempotencyKey
    }

    enum CodingKeys: String, CodingKey {
        case type, severity, at, data
        case guestID = "guest_id"
        case idempotencyKey = "idempotency_key"
    }
}

/// `{"events": [...]}`.
public struct EventList: Codable, Sendable {
    public var events: [HubEvent]
    public init(events: [HubEvent]) { self.events = events }
}
