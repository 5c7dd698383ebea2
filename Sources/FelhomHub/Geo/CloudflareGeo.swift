import FelhomCore
import FelhomHTTP
import Foundation

/// A Cloudflare API failure: the HTTP status and Cloudflare's own error codes and messages.
/// The token never appears in it.
public struct GeoError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var status: Int?
    public var description: String { status.map { "Cloudflare answered \($0): \(message)" } ?? message }
}

/// Zone custom rules (WAF, phase `http_request_firewall_custom`) through Cloudflare's Rulesets API:
/// enable a geo rule that blocks every country but the listed ones, disable it, or remove every
/// rule felhom manages (description prefix `felhom:`). Rules others made are never touched.
///
/// The API token lives in the hub's configuration only (SPEC §1 rule 6).
public struct CloudflareGeo: Sendable {
    public static let phase = "http_request_firewall_custom"
    public static let geoRuleDescription = "felhom:geo-allow"
    public static let defaultBaseURL = "https://api.cloudflare.com/client/v4"

    let token: Secret
    let transport: any HTTPTransport
    let basePath: String

    public init(token: Secret, baseURL: String = defaultBaseURL, trust: TLSTrust = .systemDefault) throws {
        let endpoint: HTTPEndpoint
        do { endpoint = try HTTPEndpoint(url: baseURL, setting: "cloudflare_api_url") } catch { throw GeoError(message: error.message) }
        guard !token.isEmpty else { throw GeoError(message: "cloudflare_api_token is empty") }
        self.token = token
        transport = endpoint.transport(trust: trust, timeout: .seconds(30))
        basePath = endpoint.path
    }

    /// The WAF expression that lets only `countries` through.
    public static func expression(allowing countries: [String]) -> String {
        "(not ip.src.country in {" + countries.map { "\"\($0)\"" }.joined(separator: " ") + "})"
    }

    /// ISO 3166-1 alpha-2 codes, upper case, unique, at least one.
    public static func validate(countries: [String]) throws -> [String] {
        guard !countries.isEmpty else { throw GeoError(message: "list at least one country (e.g. HU)") }
        var out: [String] = []
        for (i, c) in countries.enumerated() {
            let up = c.uppercased()
            guard up.count == 2, up.allSatisfy({ $0.isASCII && $0.isLetter }) else {
                throw GeoError(message: "countries[\(i)]: '\(c)' is not a two-letter country code")
            }
            if !out.contains(up) { out.append(up) }
        }
        return out
    }

    static func validate(zone: String) throws {
        guard Pattern.whole(zone, "[0-9a-fA-F]{32}") else {
            throw GeoError(message: "a Cloudflare zone id is 32 hex characters (got '\(zone.prefix(40))')")
        }
    }

    /// One rule as Cloudflare returns it.
    public struct Rule: Sendable, Equatable {
        public var id: String
        public var description: String
        public var expression: String
        public var action: String
        public var enabled: Bool
    }

    /// The zone's custom-rules entry point: its id and rules (`nil` when the zone has none yet).
    public func entrypoint(zone: String) async throws -> (id: String, rules: [Rule])? {
        try Self.validate(zone: zone)
        let ruleset = try await call("GET", "/zones/\(PathSegment.encode(zone))/rulesets/phases/\(Self.phase)/entrypoint", allow404: true)
        guard let ruleset, let id = ruleset["id"]?.stringValue else { return nil }
        let rules = (ruleset["rules"]?.arrayValue ?? []).compactMap { j -> Rule? in
            guard let rid = j["id"]?.stringValue else { return nil }
            return Rule(
                id: rid, description: j["description"]?.stringValue ?? "", expression: j["expression"]?.stringValue ?? "",
                action: j["action"]?.stringValue ?? "", enabled: j["enabled"]?.lenientBool ?? true)
        }
        return (id, rules)
    }

    /// Creates or updates felhom's geo rule so only `countries` may reach the zone.
    public func enable(zone: String, countries: [String]) async throws {
        let list = try Self.validate(countries: countries)
        let rule: JSONValue = [
            "description": .string(Self.geoRuleDescription), "expression": .string(Self.expression(allowing: list)),
            "action": "block", "enabled": true,
        ]
        guard let ep = try await entrypoint(zone: zone) else {
            _ = try await call(
                "POST", "/zones/\(PathSegment.encode(zone))/rulesets",
                body: [
                    "name": "default", "kind": "zone", "phase": .string(Self.phase), "rules": [rule],
                ])
            return
        }
        if let existing = ep.rules.first(where: { $0.description == Self.geoRuleDescription }) {
            _ = try await call(
                "PATCH", "/zones/\(PathSegment.encode(zone))/rulesets/\(PathSegment.encode(ep.id))/rules/\(PathSegment.encode(existing.id))",
                body: rule)
        } else {
            _ = try await call("POST", "/zones/\(PathSegment.encode(zone))/rulesets/\(PathSegment.encode(ep.id))/rules", body: rule)
        }
    }

    /// Turns felhom's geo rule off (kept, so enabling again restores the same list). No rule: nothing to do.
    public func disable(zone: String) async throws {
        guard let ep = try await entrypoint(zone: zone),
            let existing = ep.rules.first(where: { $0.description == Self.geoRuleDescription })
        else { return }
        _ = try await call(
            "PATCH", "/zones/\(PathSegment.encode(zone))/rulesets/\(PathSegment.encode(ep.id))/rules/\(PathSegment.encode(existing.id))",
            body: [
                "description": .string(existing.description), "expression": .string(existing.expression), "action": .string(existing.action),
                "enabled": false,
            ])
    }

    /// Deletes every rule felhom manages in the zone; returns how many.
    @discardableResult
    public func removeAll(zone: String) async throws -> Int {
        guard let ep = try await entrypoint(zone: zone) else { return 0 }
        let ours = ep.rules.filter { $0.description.hasPrefix("felhom:") }
        for rule in ours {
            _ = try await call(
                "DELETE", "/zones/\(PathSegment.encode(zone))/rulesets/\(PathSegment.encode(ep.id))/rules/\(PathSegment.encode(rule.id))")
        }
        return ours.count
    }

    /// One API call; unwraps Cloudflare's `{success, errors, result}` envelope.
    func call(_ method: String, _ path: String, body: JSONValue? = nil, allow404: Bool = false) async throws -> JSONValue? {
        var headers = [("Authorization", "Bearer \(token.reveal())")]
        if body != nil { headers.append(("Content-Type", "application/json")) }
        let response: HTTPResponseSpec
        do {
            response = try await transport.send(HTTPRequestSpec(method: method, target: basePath + path, headers: headers, body: body?.serialized()))
        } catch let error as HTTPClientError {
            throw GeoError(message: "cannot reach Cloudflare: \(error.message)")
        }
        if allow404 && response.status == 404 { return nil }
        let json = try? JSONValue.parse(response.body)
        guard (200..<300).contains(response.status), json?["success"]?.lenientBool == true else {
            let errors = (json?["errors"]?.arrayValue ?? []).map { e in
                "\(e["code"]?.lenientInt.map(String.init) ?? "?"): \(e["message"]?.stringValue ?? "")"
            }
            throw GeoError(message: errors.isEmpty ? "\(method) \(path) failed" : errors.joined(separator: "; "), status: response.status)
        }
        return json?["result"]
    }
}
