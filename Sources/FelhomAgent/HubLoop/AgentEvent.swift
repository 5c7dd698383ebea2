import FelhomCore

/// An event the agent tells the hub about (the healer, the storage manifest and the escrow drill
/// produce them; ``Agent/post(_:)`` sends them).
public struct AgentEvent: Sendable, Equatable {
    public var type: String
    public var severity: HubEvent.Severity
    public var data: [String: JSONValue]

    public init(type: String, severity: HubEvent.Severity, data: [String: JSONValue]) {
        self.type = type
        self.severity = severity
        self.data = data
    }
}

extension Agent {
    /// Sends one event to the hub; a failure is logged, never thrown (the cycle goes on).
    func post(_ event: AgentEvent) async {
        do { try await hub.postEvent(type: event.type, severity: event.severity, data: .object(event.data)) } catch {
            logger.warning("cannot post \(event.type) to the hub: \(error)")
        }
    }
}
