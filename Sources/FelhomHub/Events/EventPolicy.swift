import FelhomCore
import Foundation

/// Which event types each kind of key may post, with what severity, and which of their data
/// fields may reach a mail. Pure; the one place that decides (SPEC §2 "Events").
///
/// Keys are not trusted: a guest key lives among third-party apps and a host key in a customer's
/// home. So hub-only types (liveness, deadlines, op outcomes, enrollment…) cannot be posted by
/// keys, each source has an allow-list, the severity of a known type is the hub's, and mails carry
/// only whitelisted fields in a safe character set — never raw client text.
public enum EventPolicy {
    /// Types only the hub writes (from ``EventRegistry``).
    public static let hubOnly: Set<String> = Set(EventRegistry.all.filter { $0.postedBy == [.hub] }.map(\.name))

    /// Types a host key may post, with the hub's severity (from ``EventRegistry``).
    public static let hostTypes: [String: HubEvent.Severity] = EventRegistry.types(postedBy: .host)

    /// Types a guest key may post (plus its own `app_*` events, severity its own but never critical).
    public static let guestTypes: [String: HubEvent.Severity] = EventRegistry.types(postedBy: .guest)

    /// Data fields a mail may show for events posted by keys.
    public static let mailFields: Set<String> = [
        "vmid", "guest_id", "storage", "generation", "op", "op_id", "duration_seconds", "local_day", "time_zone", "kind",
        "count", "stack", "disk", "label", "version", "component", "previous_version",
    ]

    /// Largest `data` object accepted, serialized.
    public static let maxDataBytes = 16 * 1024

    /// The severity to store for `type` posted by `source`, or a 400/403 naming what is wrong.
    static func admit(type: String, severity: HubEvent.Severity?, source: HubEvent.Source) throws -> HubEvent.Severity {
        switch source {
        case .hub:
            return severity ?? .info
        case .host:
            if hubOnly.contains(type) { throw HubError(.forbidden, "forbidden", "'\(type)' events are written by the hub only") }
            guard let severity = hostTypes[type] else {
                throw HubError(
                    .forbidden, "forbidden", "a host key may post only: \(hostTypes.keys.sorted().joined(separator: ", "))", path: "$.type")
            }
            return severity
        case .guest:
            if hubOnly.contains(type) { throw HubError(.forbidden, "forbidden", "'\(type)' events are written by the hub only") }
            if let severity = guestTypes[type] { return severity }
            guard type.hasPrefix("app_") else {
                throw HubError(
                    .forbidden, "forbidden",
                    "a guest key may post only \(guestTypes.keys.sorted().joined(separator: ", ")) and its own app_* events", path: "$.type")
            }
            return severity == .critical ? .warning : (severity ?? .info)
        }
    }

    /// The data fields a mail may show: everything for the hub's own events; for events from keys,
    /// whitelisted fields whose values are numbers, booleans or short strings of safe characters.
    public static func mailable(_ e: HubEvent) -> [(String, String)] {
        guard case .object(let o) = e.data else { return [] }
        var out: [(String, String)] = []
        for key in o.keys.sorted() {
            guard e.source == .hub || mailFields.contains(key), let v = o[key] else { continue }
            let text: String
            switch v {
            case .int(let i): text = String(i)
            case .double(let d): text = String(d)
            case .bool(let b): text = b ? "true" : "false"
            case .string(let s) where e.source == .hub: text = TerminalText.escaped(String(s.prefix(200)))
            case .string(let s) where Pattern.whole(s, #"[A-Za-z0-9_.:/ -]{1,64}"#): text = s
            case .array(let a) where e.source == .hub:
                text = TerminalText.escaped(String(a.map { $0.stringValue ?? "?" }.joined(separator: ", ").prefix(200)))
            default: continue
            }
            out.append((key, text))
        }
        return out
    }
}
