import FelhomCore
import FelhomHubClient
import Foundation
import Logging

/// The controller's events (`stack_restart_failed`, `storage_disconnected`,
/// `storage_reconnected`, `secrets_rollout_failed`): logged, and posted to the hub with the guest
/// key (`POST /api/v1/events`). Until the hub took an event it waits in
/// `state_dir/events-pending.json`, so neither a hub outage nor a controller restart loses it; it
/// is sent at the next emit or report. At most ``limit`` wait (the oldest go first, said in the
/// log). Delivery is at least once: an answer lost on the way can repeat an event.
public actor ControllerEvents {
    struct Pending: Codable, Equatable {
        var type: String
        var severity: HubEvent.Severity
        var data: [String: String]
        var at: Date
    }

    let stateDir: String
    let hub: HubClient?
    let logger: Logger
    /// The most events kept while the hub is unreachable.
    public let limit: Int
    var failing = false

    public init(stateDir: String, hub: HubClient?, logger: Logger, limit: Int = 200) {
        self.stateDir = stateDir
        self.hub = hub
        self.logger = logger
        self.limit = limit
    }

    var file: String { stateDir + "/events-pending.json" }

    /// Severity the controller asks for (the hub applies its own for known types).
    static func severity(_ type: String) -> HubEvent.Severity {
        type == "storage_reconnected" ? .info : .warning
    }

    /// Logs the event and queues it for the hub, then tries to send what waits.
    public func emit(_ type: String, _ data: [String: String]) async {
        let text = data.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        logger.log(level: Self.severity(type) == .info ? .notice : .error, "event \(type): \(text)")
        guard hub != nil else { return }
        var pending = load()
        pending.append(Pending(type: type, severity: Self.severity(type), data: data, at: Date()))
        if pending.count > limit {
            logger.warning("events: the hub has been unreachable for \(limit) events; dropping the oldest \(pending.count - limit)")
            pending.removeFirst(pending.count - limit)
        }
        save(pending)
        await flush()
    }

    /// Sends waiting events in order; stops at the first failure (kept for the next try).
    public func flush() async {
        guard let hub else { return }
        var pending = load()
        while let first = pending.first {
            do {
                var data = first.data.mapValues { JSONValue.string($0) }
                data["client_at"] = .string(ISO8601DateFormatter().string(from: first.at))
                try await hub.postEvent(type: first.type, severity: first.severity, data: .object(data))
            } catch {
                if !failing { logger.warning("events: cannot post to the hub (\(error)); \(pending.count) kept for later") }
                failing = true
                return
            }
            failing = false
            pending.removeFirst()
            save(pending)
        }
    }

    /// Events waiting for the hub.
    public func waiting() -> Int { load().count }

    func load() -> [Pending] {
        do {
            return try StateFiles.read([Pending].self, from: file) { "pending events file '\(file)' is damaged (\($0))" } ?? []
        } catch {
            logger.error("\(error.message); starting a new one")
            return []
        }
    }

    func save(_ pending: [Pending]) {
        do {
            if pending.isEmpty {
                unlink(file)
            } else {
                try StateFiles.write(pending, to: file, in: stateDir, what: "pending events")
            }
        } catch { logger.error("events: \(error.message)") }
    }
}
