import FelhomCore
import Foundation

/// The controller configuration a guest runs with: the default deep-merged with its customer's
/// overrides. It never carries a Cloudflare credential (SPEC §1 rule 6): overrides naming one are
/// refused, and generation drops any such key as a second line of defence.
public enum ControllerConfig {
    /// The defaults every guest starts from.
    public static func defaults(hubURL: String, guestID: String, customerDomain: String) -> JSONValue {
        [
            "hub": ["url": .string(hubURL), "guest_id": .string(guestID), "report_interval_seconds": 300],
            "agent": ["url": "https://10.0.0.1:8443", "token_file": "/etc/felhom/agent.token"],
            "stacks": ["dir": "/opt/felhom/stacks", "protected": ["traefik", "cloudflared", "felhom-controller"]],
            "watchdog": ["interval_seconds": 60, "restart_backoff_seconds": 30],
            "backup": ["quiesce_max_seconds": 900, "marker_file": "/var/lib/felhom/quiesce.marker"],
            "secrets": ["dir": "/run/secrets", "bundle": "platform.env", "mode": "0400"],
            "domain": .string(customerDomain),
        ]
    }

    /// Objects merge key by key; any other override value replaces the default.
    public static func deepMerge(_ base: JSONValue, _ override: JSONValue) -> JSONValue {
        guard case .object(var b) = base, case .object(let o) = override else { return override }
        for (k, v) in o { b[k] = b[k].map { deepMerge($0, v) } ?? v }
        return .object(b)
    }

    /// The path of the first key that looks like a Cloudflare credential, if any.
    public static func forbiddenPath(in value: JSONValue, path: String = "$") -> String? {
        switch value {
        case .object(let o):
            for (k, v) in o.sorted(by: { $0.key < $1.key }) {
                let lower = k.lowercased()
                if lower.contains("cloudflare") && (lower.contains("token") || lower.contains("key") || lower.contains("secret")) {
                    return "\(path).\(k)"
                }
                if path.lowercased().contains("cloudflare"), ["token", "api_token", "api_key", "key", "secret"].contains(lower) {
                    return "\(path).\(k)"
                }
                if let p = forbiddenPath(in: v, path: "\(path).\(k)") { return p }
            }
            return nil
        case .array(let a):
            for (i, v) in a.enumerated() { if let p = forbiddenPath(in: v, path: "\(path)[\(i)]") { return p } }
            return nil
        default:
            return nil
        }
    }

    /// Removes every key `forbiddenPath` would name.
    public static func stripped(_ value: JSONValue, underCloudflare: Bool = false) -> JSONValue {
        switch value {
        case .object(let o):
            var out: [String: JSONValue] = [:]
            for (k, v) in o {
                let lower = k.lowercased()
                if lower.contains("cloudflare") && (lower.contains("token") || lower.contains("key") || lower.contains("secret")) { continue }
                if underCloudflare, ["token", "api_token", "api_key", "key", "secret"].contains(lower) { continue }
                out[k] = stripped(v, underCloudflare: underCloudflare || lower.contains("cloudflare"))
            }
            return .object(out)
        case .array(let a): return .array(a.map { stripped($0, underCloudflare: underCloudflare) })
        default: return value
        }
    }
}

extension Hub {
    /// Stores a customer's config overrides (an object; operator only); a Cloudflare credential in it is a 400.
    public func setConfigOverrides(customerID: String, overrides: JSONValue, by principal: Principal) async throws {
        guard principal == .operator else { throw HubError.forbidden("set config overrides (operator only)") }
        guard case .object = overrides else { throw HubError.badRequest("overrides must be a JSON object", path: "$") }
        if let bad = ControllerConfig.forbiddenPath(in: overrides) {
            throw HubError.badRequest("Cloudflare credentials never go into a controller config (they stay on the hub)", path: bad)
        }
        _ = try await customer(customerID, by: principal)
        try await store.withDB { db in
            try await CustomersTable.setConfigOverrides(customerID, json: String(decoding: overrides.serialized(), as: UTF8.self), in: db)
        }
    }

    /// The generated controller config of a guest (operator, or that guest's own key).
    public func controllerConfig(guestID: String, hubURL: String, by principal: Principal) async throws -> JSONValue {
        switch principal {
        case .operator: break
        case .guest(let g, _, _) where g == guestID: break
        default: throw HubError.forbidden("read this guest's config")
        }
        let row = try await store.withDB { db in try await CustomersTable.configSource(ofGuest: guestID, in: db) }
        guard let row else { throw HubError.notFound("guest \(guestID)") }
        let base = ControllerConfig.defaults(hubURL: hubURL, guestID: guestID, customerDomain: row.domain)
        let overrides = row.overrides.flatMap { try? JSONValue.parse($0) } ?? .object([:])
        var config = ControllerConfig.stripped(ControllerConfig.deepMerge(base, overrides))
        // Which guest this is, for the person holding the file (the agent keys guests `vmid-N`).
        if case .object(var object) = config {
            var guest: [String: JSONValue] = ["name": .string(row.guestName)]
            if let key = row.idempotencyKey, key.hasPrefix("vmid-"), let vmid = Int64(key.dropFirst(5)) { guest["vmid"] = .int(vmid) }
            object["guest"] = .object(guest)
            config = .object(object)
        }
        return config
    }
}
