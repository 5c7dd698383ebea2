import FelhomCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The hub's JSON API (`Authorization: Bearer KEY`), documented in `openapi.yaml`.
public enum HubAPI {
    /// Largest request body accepted.
    public static let maxBody = 1 << 20

    /// The API routes of a built router (the dashboard's HTML pages are not part of the API document).
    /// Every API route as `METHOD /path` (with `{id}` placeholders), read from the router itself
    /// (not a hand-kept list): the OpenAPI completeness test compares it with the document.
    public static func apiRoutes(of router: Router<HubRequestContext>) -> [String] {
        router.routes.map { r in
            let path = "/" + r.path.components.map { "\($0)" }.joined(separator: "/")  // captures print as {id}
            return "\(r.method.rawValue) \(path)"
        }
        .filter { $0.contains(" /api/") || $0.hasSuffix(" /healthz") || $0.hasSuffix(" /openapi.yaml") || $0.hasSuffix(" /metrics") }
        .sorted()
    }

    public static func router(hub: Hub) -> Router<HubRequestContext> {
        let router = Router(context: HubRequestContext.self)
        let allowed = AllowedMethods()
        // Every request is logged (method, path, status, duration) at debug; headers never (keys).
        router.add(middleware: LogRequestsMiddleware(.debug))
        router.add(middleware: MethodNotAllowedMiddleware(allowed: allowed))
        router.get("/healthz") { _, _ in
            try await hub.store.ping()
            return json(["status": "ok", "store": hub.store.kind.rawValue])
        }
        router.get("/openapi.yaml") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "application/yaml"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.yaml)))
        }
        router.get("/metrics") { req, _ in
            guard try await principal(hub, req) == .operator else { throw HubError.forbidden("read metrics (operator key only)") }
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: try await hub.metrics.render(store: hub.store))))
        }
        let v1 = router.group("api/v1")
        v1.post("customers") { req, ctx in
            let p = try await principal(hub, req)
            let body = try await decode(Hub.NewCustomer.self, req)
            let id = try await hub.createCustomer(body, by: p)
            return json(["id": id], status: .created)
        }
        v1.get("customers") { req, _ in
            let p = try await principal(hub, req)
            return try encode(["customers": try await hub.customers(by: p)])
        }
        v1.get("customers/:id") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(try await hub.customer(try ctx.parameters.require("id"), by: p))
        }
        v1.put("customers/:id/notifications") { req, ctx in
            let p = try await principal(hub, req)
            struct Body: Decodable { var types: [String]? }
            let b = try await decode(Body.self, req)
            return try encode(try await hub.setNotificationTypes(customerID: try ctx.parameters.require("id"), types: b.types, by: p))
        }
        v1.delete("keys/:id") { req, ctx in
            let p = try await principal(hub, req)
            let n = try await hub.revokeKeys(subjectID: try ctx.parameters.require("id"), by: p)
            return try encode(["revoked": n])
        }
        v1.post("customers/:id/keys") { req, ctx in
            let p = try await principal(hub, req)
            let key = try await hub.issueCustomerKey(customerID: try ctx.parameters.require("id"), by: p)
            return json(["api_key": key], status: .created)
        }
        v1.post("hosts") { req, ctx in
            let p = try await principal(hub, req)
            struct Body: Decodable {
                var customerID: String
                var name: String
                enum CodingKeys: String, CodingKey {
                    case name
                    case customerID = "customer_id"
                }
            }
            let b = try await decode(Body.self, req)
            let (id, key) = try await hub.createHost(customerID: b.customerID, name: b.name, by: p)
            return json(["id": id, "api_key": key], status: .created)
        }
        v1.get("hosts") { req, _ in
            let p = try await principal(hub, req)
            return try encode(["hosts": try await hub.hosts(by: p)])
        }
        v1.get("hosts/:id") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(try await hub.host(try ctx.parameters.require("id"), by: p))
        }
        v1.post("hosts/:id/guests") { req, ctx in
            let p = try await principal(hub, req)
            struct Body: Decodable {
                var name: String
                var idempotencyKey: String?
                enum CodingKeys: String, CodingKey {
                    case name
                    case idempotencyKey = "idempotency_key"
                }
            }
            let b = try await decode(Body.self, req)
            let (id, key) = try await hub.createGuest(hostID: try ctx.parameters.require("id"), name: b.name, idempotencyKey: b.idempotencyKey, by: p)
            return json(["id": id, "api_key": key], status: .created)
        }
        for (action, blocked) in [("block", true), ("unblock", false)] {
            v1.post("hosts/:id/\(action)") { req, ctx in
                let p = try await principal(hub, req)
                return try encode(try await hub.setHostBlocked(try ctx.parameters.require("id"), blocked: blocked, by: p))
            }
        }
        for (action, suspended) in [("suspend", true), ("resume", false)] {
            v1.post("customers/:id/\(action)") { req, ctx in
                let p = try await principal(hub, req)
                let id = try ctx.parameters.require("id")
                try await hub.setCustomerSuspended(id, suspended: suspended, by: p)
                return try encode(["id": id, "suspended": suspended ? "true" : "false"])
            }
        }
        v1.get("hosts/:id/desired") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(try await hub.desired(hostID: try ctx.parameters.require("id"), by: p))
        }
        v1.put("hosts/:id/desired") { req, ctx in
            let p = try await principal(hub, req)
            let body = try await collect(req)
            return try encode(try await hub.putDesired(hostID: try ctx.parameters.require("id"), body: body, by: p))
        }
        v1.post("hosts/:id/desired/publish") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(["generation": try await hub.publishDesired(hostID: try ctx.parameters.require("id"), by: p)])
        }
        v1.get("hosts/:id/drift") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(try await hub.drift(hostID: try ctx.parameters.require("id"), by: p))
        }
        v1.post("host-report") { req, _ in
            let p = try await principal(hub, req)
            try hub.admit(.hostReport, by: p)
            let body = try await collect(req)
            return try encode(try await hub.ingestHostReport(body, by: p))
        }
        v1.post("guest-report") { req, _ in
            let p = try await principal(hub, req)
            try hub.admit(.guestReport, by: p)
            let body = try await collect(req)
            return try encode(try await hub.ingestGuestReport(body, by: p))
        }
        v1.get("control") { req, _ in
            let p = try await principal(hub, req)
            let after = try req.uri.queryParameters.get("after_generation").map { s -> Int64 in
                guard let v = Int64(s), v >= 0 else { throw HubError.badRequest("must be a non-negative integer", path: "after_generation") }
                return v
            }
            let wait = try req.uri.queryParameters.get("wait").map { s -> Int in
                guard let v = Int(s), (0...55).contains(v) else { throw HubError.badRequest("must be 0…55 seconds", path: "wait") }
                return v
            } ?? 0
            return try encode(try await hub.control(after: after, wait: wait, by: p))
        }
        v1.post("events") { req, _ in
            let p = try await principal(hub, req)
            try hub.admit(.event, by: p)
            let e = try await decode(Hub.NewEvent.self, req)
            return try encode(try await hub.postEvent(e, by: p), status: .created)
        }
        v1.get("events") { req, _ in
            let p = try await principal(hub, req)
            let q = req.uri.queryParameters
            let since = try q.get("since").map { s -> Date in
                guard let d = try? Date.ISO8601FormatStyle().parse(s) else {
                    throw HubError.badRequest("must be an RFC 3339 time like 2026-01-01T00:00:00Z", path: "since")
                }
                return d
            }
            let limit = try q.get("limit").map { s -> Int in
                guard let v = Int(s), (1...1000).contains(v) else { throw HubError.badRequest("must be 1…1000", path: "limit") }
                return v
            } ?? 100
            let list = try await hub.events(hostID: q.get("host_id"), type: q.get("type"), since: since, limit: limit, by: p)
            return try encode(["events": list])
        }
        v1.put("customers/:id/geo") { req, ctx in
            let p = try await principal(hub, req)
            struct Body: Decodable {
                var zoneID: String?
                var countries: [String]
                enum CodingKeys: String, CodingKey {
                    case countries
                    case zoneID = "zone_id"
                }
            }
            let b = try await decode(Body.self, req)
            let list = try await hub.enableGeo(customerID: try ctx.parameters.require("id"), zoneID: b.zoneID, countries: b.countries, by: p)
            return try encode(["allowed_countries": list])
        }
        v1.delete("customers/:id/geo") { req, ctx in
            let p = try await principal(hub, req)
            _ = try await hub.disableGeo(customerID: try ctx.parameters.require("id"), removeAll: false, by: p)
            return try encode(["enabled": false])
        }
        v1.post("customers/:id/geo/remove-all") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(["removed": try await hub.disableGeo(customerID: try ctx.parameters.require("id"), removeAll: true, by: p)])
        }
        v1.put("customers/:id/config-overrides") { req, ctx in
            let p = try await principal(hub, req)
            let body = try await collect(req)
            guard let json = try? JSONValue.parse(body) else { throw HubError.badRequest("not valid JSON", path: "$") }
            try await hub.setConfigOverrides(customerID: try ctx.parameters.require("id"), overrides: json, by: p)
            return try encode(["saved": true])
        }
        v1.get("guests/:id/config") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(try await hub.controllerConfig(guestID: try ctx.parameters.require("id"), hubURL: publicURL(req), by: p))
        }
        v1.post("customers/:id/passphrase") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(["passphrase": try await hub.newRetrievalPassphrase(customerID: try ctx.parameters.require("id"), by: p)], status: .created)
        }
        v1.put("recovery/:id") { req, ctx in
            let p = try await principal(hub, req)
            try await hub.setDRRecord(hostID: try ctx.parameters.require("id"), try await decode(Hub.DRRecord.self, req), by: p)
            return try encode(try await hub.recovery(hostID: try ctx.parameters.require("id"), by: p))
        }
        v1.get("recovery/:id") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(try await hub.recovery(hostID: try ctx.parameters.require("id"), by: p))
        }
        v1.post("recovery/box") { req, _ in
            let p = try await principal(hub, req)
            struct Body: Decodable {
                var storageManifest: JSONValue
                var pbsFingerprint: String?
                enum CodingKeys: String, CodingKey {
                    case storageManifest = "storage_manifest"
                    case pbsFingerprint = "pbs_fingerprint"
                }
            }
            let b = try await decode(Body.self, req)
            try await hub.reportDRFromBox(storageManifest: b.storageManifest, pbsFingerprint: b.pbsFingerprint, by: p)
            return try encode(["saved": true])
        }
        v1.post("retrieve") { req, ctx in
            struct Body: Decodable {
                var domain: String
                var passphrase: String
                var what: String
            }
            let b = try await decode(Body.self, req)
            return try encode(try await hub.retrieve(domain: b.domain, passphrase: b.passphrase, what: b.what, hubURL: publicURL(req),
                                                     client: hub.client(of: req, ctx)))
        }
        v1.post("hosts/:id/enrollment") { req, ctx in
            let p = try await principal(hub, req)
            struct Body: Decodable {
                var ttlSeconds: Int?
                enum CodingKeys: String, CodingKey { case ttlSeconds = "ttl_seconds" }
            }
            let data = try await collect(req)
            let b = data.isEmpty ? Body() : try decode(Body.self, data)
            return try encode(try await hub.createEnrollmentToken(hostID: try ctx.parameters.require("id"), ttlSeconds: b.ttlSeconds, by: p), status: .created)
        }
        v1.post("enroll") { req, _ in
            struct Body: Decodable { var token: String }
            let b = try await decode(Body.self, req)
            return try encode(try await hub.enroll(token: b.token), status: .created)
        }
        v1.post("operator-keys") { req, _ in
            let p = try await principal(hub, req)
            struct Body: Decodable {
                var publicKey: String
                var role: String?
                var name: String?
                enum CodingKeys: String, CodingKey {
                    case role, name
                    case publicKey = "public_key"
                }
            }
            let b = try await decode(Body.self, req)
            return try encode(try await hub.registerOperatorKey(publicKey: b.publicKey, role: b.role, name: b.name, by: p), status: .created)
        }
        v1.get("operator-keys") { req, _ in
            let p = try await principal(hub, req)
            return try encode(["operator_keys": try await hub.operatorKeys(by: p)])
        }
        v1.post("signed-ops") { req, _ in
            let p = try await principal(hub, req)
            let b = try await decode(Hub.NewSignedOp.self, req)
            return try encode(try await hub.createSignedOp(b, by: p), status: .created)
        }
        v1.get("signed-ops") { req, _ in
            let p = try await principal(hub, req)
            let q = req.uri.queryParameters
            return try encode(["signed_ops": try await hub.signedOps(hostID: q.get("host_id"), status: q.get("status"), by: p)])
        }
        v1.get("signed-ops/next") { req, _ in
            let p = try await principal(hub, req)
            struct Next: Encodable {
                var op: Hub.SignedOpView?
                enum CodingKeys: String, CodingKey { case op }
                func encode(to encoder: Encoder) throws {
                    var c = encoder.container(keyedBy: CodingKeys.self)
                    if let op { try c.encode(op, forKey: .op) } else { try c.encodeNil(forKey: .op) }  // explicit null
                }
            }
            return try encode(Next(op: try await hub.nextSignedOp(by: p)))
        }
        v1.get("signed-ops/:id") { req, ctx in
            let p = try await principal(hub, req)
            return try encode(try await hub.signedOp(try ctx.parameters.require("id"), by: p))
        }
        v1.post("signed-ops/:id/signature") { req, ctx in
            let p = try await principal(hub, req)
            struct Body: Decodable { var signature: String }
            let b = try await decode(Body.self, req)
            return try encode(try await hub.uploadSignature(opID: try ctx.parameters.require("id"), signature: b.signature, by: p))
        }
        v1.post("signed-ops/:id/result") { req, ctx in
            let p = try await principal(hub, req)
            struct Body: Decodable {
                var outcome: String
                var reason: String?
            }
            let b = try await decode(Body.self, req)
            return try encode(try await hub.reportSignedOpResult(opID: try ctx.parameters.require("id"), outcome: b.outcome, reason: b.reason, by: p))
        }
        Dashboard.register(on: router, hub: hub, secureCookies: hub.settings.secureCookies)
        allowed.load(router.routes.map { ($0.path.components.map { "\($0)" }, $0.method) })
        return router
    }

    /// The hub's URL as the caller reached it (for generated configs).
    static func publicURL(_ req: Request) -> String {
        let host = req.head.authority ?? "localhost"
        return "\(req.head.scheme ?? "https")://\(host)"
    }

    static func principal(_ hub: Hub, _ req: Request) async throws -> Principal {
        try await hub.keys.principal(authorization: req.headers[.authorization])
    }

    static func collect(_ req: Request) async throws -> Data {
        do {
            let buf = try await req.body.collect(upTo: maxBody)
            return Data(buf.readableBytesView)
        } catch {
            throw HubError(.contentTooLarge, "too_large", "request body larger than \(maxBody) bytes")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ req: Request) async throws -> T {
        try decode(type, try await collect(req))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .iso8601
        do { return try dec.decode(T.self, from: data) } catch let e as DecodingError {
            throw HubError.badRequest(e.reason, path: e.pathText)
        }
    }

    static func json(_ dict: [String: String], status: HTTPResponse.Status = .ok) -> Response {
        (try? encode(dict, status: status)) ?? Response(status: .internalServerError)
    }

    static func encode<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        enc.dateEncodingStrategy = .iso8601
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try enc.encode(value))))
    }
}
