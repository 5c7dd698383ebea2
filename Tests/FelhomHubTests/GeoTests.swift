import FelhomCore
import FelhomTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import FelhomHub

/// A local stand-in for Cloudflare's Rulesets API (zone level) that checks each request against
/// the documented shapes: bearer token, JSON bodies, `kind: zone` + phase on ruleset creation,
/// rule fields and actions, 32-hex ids, and Cloudflare's `{success, errors, messages, result}`
/// envelope (404 code 10003 when a zone has no entry point ruleset).
final class FakeCloudflare: Sendable {
    let token = "cf-test-token-abcdef0123456789"
    struct Ruleset: Sendable {
        var id: String
        var rules: [[String: JSONValue]]
    }
    let zones = Mutex<[String: Ruleset]>([:])
    let requests = Mutex<[String]>([])

    static func hex32() -> String { (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() }

    func seedForeignRule(zone: String) {
        zones.withLock {
            $0[zone] = Ruleset(
                id: Self.hex32(),
                rules: [
                    [
                        "id": .string(Self.hex32()), "description": "block bad bots",
                        "expression": "(cf.client.bot)", "action": "block", "enabled": true,
                    ]
                ])
        }
    }

    func rules(_ zone: String) -> [[String: JSONValue]] { zones.withLock { $0[zone]?.rules ?? [] } }

    static func envelope(_ status: HTTPResponse.Status, result: JSONValue = .null, errors: [(Int, String)] = []) -> Response {
        let body: JSONValue = [
            "success": .bool(errors.isEmpty), "messages": [],
            "errors": .array(errors.map { ["code": .int(Int64($0.0)), "message": .string($0.1)] }), "result": result,
        ]
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: body.serialized())))
    }

    static func validateRule(_ j: JSONValue?) -> String? {
        guard let o = j?.objectValue else { return "rule must be an object" }
        let allowed: Set<String> = ["description", "expression", "action", "enabled", "ref", "action_parameters", "logging", "position"]
        if let extra = o.keys.first(where: { !allowed.contains($0) }) { return "unknown rule field '\(extra)'" }
        guard let expr = o["expression"]?.stringValue, !expr.isEmpty else { return "rule.expression is required" }
        guard let action = o["action"]?.stringValue, ["block", "challenge", "managed_challenge", "js_challenge", "log", "skip"].contains(action)
        else {
            return "rule.action is not a valid action"
        }
        if let e = o["enabled"], e.lenientBool == nil || e.stringValue != nil { return "rule.enabled must be a boolean" }
        if expr.contains("ip.src.country"),
            expr.range(of: #"^\(not ip\.src\.country in \{("[A-Z]{2}"( "[A-Z]{2}")*)\}\)$"#, options: .regularExpression) == nil
        {
            return "filter parsing error: \(expr)"
        }
        return nil
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let api = router.group("client/v4/zones/:zone/rulesets")
        @Sendable func guardRequest(_ req: Request, _ ctx: BasicRequestContext, body: Bool) async throws -> (String, JSONValue?)? {
            requests.withLock { $0.append("\(req.method) \(req.uri.path)") }
            guard req.headers[.authorization] == "Bearer \(token)" else { return nil }
            let zone = try ctx.parameters.require("zone")
            guard zone.count == 32 else { return nil }
            if body {
                guard req.headers[.contentType]?.hasPrefix("application/json") == true else { return (zone, nil) }
                let buf = try await req.body.collect(upTo: 1 << 20)
                return (zone, try? JSONValue.parse(Data(buf.readableBytesView)))
            }
            return (zone, nil)
        }
        @Sendable func result(_ rs: Ruleset) -> JSONValue {
            [
                "id": .string(rs.id), "kind": "zone", "phase": "http_request_firewall_custom", "name": "default",
                "rules": .array(rs.rules.map { .object($0) }),
            ]
        }
        let authError = Self.envelope(.forbidden, errors: [(10000, "Authentication error")])
        api.get("phases/http_request_firewall_custom/entrypoint") { req, ctx in
            guard let (zone, _) = try await guardRequest(req, ctx, body: false) else { return authError }
            guard let rs = self.zones.withLock({ $0[zone] }) else {
                return Self.envelope(.notFound, errors: [(10003, "could not find entrypoint ruleset in the http_request_firewall_custom phase")])
            }
            return Self.envelope(.ok, result: result(rs))
        }
        api.post("") { req, ctx in
            guard let (zone, body) = try await guardRequest(req, ctx, body: true) else { return authError }
            guard let b = body, b["kind"] == "zone", b["phase"] == "http_request_firewall_custom", b["name"]?.stringValue != nil,
                let rules = b["rules"]?.arrayValue
            else { return Self.envelope(.badRequest, errors: [(20021, "invalid ruleset: kind, phase, name and rules are required")]) }
            for r in rules { if let e = Self.validateRule(r) { return Self.envelope(.badRequest, errors: [(20020, e)]) } }
            if self.zones.withLock({ $0[zone] != nil }) {
                return Self.envelope(.badRequest, errors: [(20217, "a similar configuration with rules already exists")])
            }
            let rs = Ruleset(
                id: Self.hex32(),
                rules: rules.map {
                    var o = $0.objectValue ?? [:]
                    o["id"] = .string(Self.hex32())
                    return o
                })
            self.zones.withLock { $0[zone] = rs }
            return Self.envelope(.ok, result: result(rs))
        }
        api.post(":ruleset/rules") { req, ctx in
            guard let (zone, body) = try await guardRequest(req, ctx, body: true) else { return authError }
            if let e = Self.validateRule(body) { return Self.envelope(.badRequest, errors: [(20020, e)]) }
            let rsID = try ctx.parameters.require("ruleset")
            guard
                let rs = self.zones.withLock({ z -> Ruleset? in
                    guard var rs = z[zone], rs.id == rsID else { return nil }
                    var o = body?.objectValue ?? [:]
                    o["id"] = .string(Self.hex32())
                    rs.rules.append(o)
                    z[zone] = rs
                    return rs
                })
            else { return Self.envelope(.notFound, errors: [(10006, "could not find ruleset")]) }
            return Self.envelope(.ok, result: result(rs))
        }
        api.patch(":ruleset/rules/:rule") { req, ctx in
            guard let (zone, body) = try await guardRequest(req, ctx, body: true) else { return authError }
            if let e = Self.validateRule(body) { return Self.envelope(.badRequest, errors: [(20020, e)]) }
            let rsID = try ctx.parameters.require("ruleset")
            let ruleID = try ctx.parameters.require("rule")
            guard
                let rs = self.zones.withLock({ z -> Ruleset? in
                    guard var rs = z[zone], rs.id == rsID, let i = rs.rules.firstIndex(where: { $0["id"]?.stringValue == ruleID }) else { return nil }
                    var o = body?.objectValue ?? [:]
                    o["id"] = .string(ruleID)
                    rs.rules[i] = o
                    z[zone] = rs
                    return rs
                })
            else { return Self.envelope(.notFound, errors: [(10007, "could not find rule")]) }
            return Self.envelope(.ok, result: result(rs))
        }
        api.delete(":ruleset/rules/:rule") { req, ctx in
            guard let (zone, _) = try await guardRequest(req, ctx, body: false) else { return authError }
            let rsID = try ctx.parameters.require("ruleset")
            let ruleID = try ctx.parameters.require("rule")
            guard
                let rs = self.zones.withLock({ z -> Ruleset? in
                    guard var rs = z[zone], rs.id == rsID, let i = rs.rules.firstIndex(where: { $0["id"]?.stringValue == ruleID }) else { return nil }
                    rs.rules.remove(at: i)
                    z[zone] = rs
                    return rs
                })
            else { return Self.envelope(.notFound, errors: [(10007, "could not find rule")]) }
            return Self.envelope(.ok, result: result(rs))
        }
        return router
    }
}

@Suite struct GeoTests {
    let zone = "023e105f4ecef8ad9ca31a8372d0c353"

    @Test func enableUpdateDisableAndRemoveOnlyOurRules() async throws {
        let fake = FakeCloudflare()
        let other = "9f1839b6152d298aca64c4e906b6d074"
        fake.seedForeignRule(zone: other)
        try await Application(router: fake.router()).test(.live) { client in
            let cf = try CloudflareGeo(token: Secret(fake.token), baseURL: "http://127.0.0.1:\(client.port!)/client/v4")
            // No entry point yet: the ruleset is created with our rule.
            try await cf.enable(zone: zone, countries: ["hu", "AT"])
            #expect(fake.rules(zone).map { $0["expression"]?.stringValue } == [#"(not ip.src.country in {"HU" "AT"})"#])
            // Again with another list: the same rule is updated, not duplicated.
            try await cf.enable(zone: zone, countries: ["HU"])
            #expect(fake.rules(zone).count == 1)
            #expect(fake.rules(zone).first?["expression"]?.stringValue == #"(not ip.src.country in {"HU"})"#)
            try await cf.disable(zone: zone)
            #expect(fake.rules(zone).first?["enabled"] == false)
            // Someone else's rule in another zone: our rule is added next to it, and only ours is removed.
            try await cf.enable(zone: other, countries: ["HU"])
            #expect(fake.rules(other).count == 2)
            #expect(try await cf.removeAll(zone: other) == 1)
            #expect(fake.rules(other).map { $0["description"]?.stringValue } == ["block bad bots"])
            #expect(fake.requests.withLock { $0 }.contains { $0.hasPrefix("PATCH") && $0.contains("/rules/") })
        }
    }

    @Test func errorsAreClearAndNeverShowTheToken() async throws {
        let fake = FakeCloudflare()
        try await Application(router: fake.router()).test(.live) { client in
            let wrong = try CloudflareGeo(token: Secret("cf-wrong-secret-token"), baseURL: "http://127.0.0.1:\(client.port!)/client/v4")
            let e = await #expect(throws: GeoError.self) { try await wrong.enable(zone: zone, countries: ["HU"]) }
            #expect(e?.status == 403 && e?.message.contains("Authentication error") == true)
            #expect(e?.description.contains("cf-wrong-secret-token") == false)
            let cf = try CloudflareGeo(token: Secret(fake.token), baseURL: "http://127.0.0.1:\(client.port!)/client/v4")
            await #expect(throws: GeoError.self) { try await cf.enable(zone: zone, countries: ["Hungary"]) }
            await #expect(throws: GeoError.self) { try await cf.enable(zone: "not-a-zone", countries: ["HU"]) }
            #expect(fake.rules(zone).isEmpty)
        }
        #expect(throws: GeoError.self) { try CloudflareGeo(token: Secret("t"), baseURL: "http://cloudflare.example/client/v4") }
    }

    @Test func hubRoutesRecordEventsAndNeedConfiguration() async throws {
        let fake = FakeCloudflare()
        try await Application(router: fake.router()).test(.live) { cfClient in
            var hub = Hub(store: try await TestStores.open(.sqlite), operatorKey: operatorKey)
            let unconfigured = Application(router: HubAPI.router(hub: hub))
            hub.geo = try CloudflareGeo(token: Secret(fake.token), baseURL: "http://127.0.0.1:\(cfClient.port!)/client/v4")
            let app = Application(router: HubAPI.router(hub: hub))
            let cid = try await hub.createCustomer(
                .init(name: "A", email: "a@example.hu", domain: "a.example.hu", timezone: nil, language: nil), by: .operator)
            try await unconfigured.test(.router) { client in
                let r = try await client.call(
                    .put, "/api/v1/customers/\(cid)/geo", key: operatorKey, body: #"{"zone_id":"\#(zone)","countries":["HU"]}"#)
                #expect(r.status == .conflict && r.json?["error"]?["code"] == "not_configured")
            }
            try await app.test(.router) { client in
                let bad = try await client.call(
                    .put, "/api/v1/customers/\(cid)/geo", key: operatorKey, body: #"{"zone_id":"\#(zone)","countries":["HUN"]}"#)
                #expect(bad.status == .badRequest && bad.json?["error"]?["path"] == "$.countries")
                let noZone = try await client.call(.put, "/api/v1/customers/\(cid)/geo", key: operatorKey, body: #"{"countries":["HU"]}"#)
                #expect(
                    noZone.status == .conflict && noZone.json?["error"]?["path"] == "$.zone_id" && noZone.json?["error"]?["code"] == "zone_unknown")
                let ok = try await client.call(
                    .put, "/api/v1/customers/\(cid)/geo", key: operatorKey, body: #"{"zone_id":"\#(zone)","countries":["HU","AT"]}"#)
                #expect(ok.status == .ok && ok.json?["allowed_countries"] == ["HU", "AT"])
                // The zone is remembered.
                #expect(try await client.call(.put, "/api/v1/customers/\(cid)/geo", key: operatorKey, body: #"{"countries":["HU"]}"#).status == .ok)
                #expect(try await client.call(.delete, "/api/v1/customers/\(cid)/geo", key: operatorKey).status == .ok)
                #expect(fake.rules(zone).first?["enabled"] == false)
                let removed = try await client.call(.post, "/api/v1/customers/\(cid)/geo/remove-all", key: operatorKey)
                #expect(removed.json?["removed"] == 1 && fake.rules(zone).isEmpty)
                let types =
                    try await client.call(.get, "/api/v1/events", key: operatorKey).json?["events"]?.arrayValue?.compactMap {
                        $0["type"]?.stringValue
                    } ?? []
                #expect(Set(types) == ["geo_enabled", "geo_disabled", "geo_removed"])
            }
            await hub.store.close()
        }
    }
}
