import FelhomCore
import Foundation

/// The controller configuration a guest runs with: the default deep-merged with its customer's
/// overrides. It never carries a Cloudflare credential (SPEC §1 rule 6): overrides naming one are
/// refused, and generation drops any such key as a second line of defence.
public enum ControllerConfig {
    /// The defaults every guest starts from: app-level timings only (``ControllerHubSettings``)
    /// and what the guest is. No path, endpoint, credential or fingerprint: those are the guest's
    /// own (its local `/etc/felhom/controller.json`), so a compromised hub cannot redirect it.
    public static func defaults(hubURL: String, guestID: String, customerDomain: String) -> JSONValue {
        [
            "quiesce": ["poll_seconds": 60, "max_seconds": 1800],
            "watchdog": ["interval_seconds": 30],
            "domain": .string(customerDomain),
            "guest": ["id": .string(guestID)],
        ]
    }

    /// Only what the hub may decide (``ControllerHubSettings``), plus the informational keys:
    /// anything else a stored override carries is dropped at generation.
    public static func allowedOnly(_ config: JSONValue) -> JSONValue {
        guard case .object(let o) = config else { return .object([:]) }
        var out: [String: JSONValue] = [:]
        for key in ControllerHubSettings.informational { if let v = o[key] { out[key] = v } }
        for (path, value) in ControllerHubSettings.read(config).values {
            let parts = path.split(separator: ".").map(String.init)
            guard parts.count == 2 else { continue }
            var section: [String: JSONValue] = [:]
            if case .object(let existing)? = out[parts[0]] { section = existing }
            section[parts[1]] = .int(value)
            out[parts[0]] = .object(section)
        }
        return .object(out)
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
        if let finding = ControllerHubSettings.read(overrides).findings.first {
            throw HubError.badRequest(finding.message, path: finding.path)
        }
        if case .object(let o) = overrides, let key = o.keys.sorted().first(where: ControllerHubSettings.informational.contains) {
            throw HubError.badRequest("set by the hub itself from the guest and customer records", path: "$.\(key)")
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
        var config = ControllerConfig.allowedOnly(ControllerConfig.stripped(ControllerConfig.deepMerge(base, overrides)))
        // Which guest this is, for the person holding the file (the agent keys guests `vmid-N`).
        if case .object(var object) = config {
            var guest: [String: JSONValue] = ["id": .string(guestID), "name": .string(row.guestName)]
            if let key = row.idempotencyKey, key.hasPrefix("vmid-"), let vmid = Int64(key.dropFirst(5)) { guest["vmid"] = .int(vmid) }
            object["guest"] = .object(guest)
            config = .object(object)
        }
        return config
    }
}
