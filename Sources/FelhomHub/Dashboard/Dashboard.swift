import FelhomAPI
import FelhomCore
import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore

/// The operator dashboard: server-rendered HTML (Mustache), no JavaScript.
///
/// `POST /login` with the operator key (form field `key`) opens a session: a random id in an
/// HttpOnly, SameSite=Strict cookie (Secure behind TLS), stored only as a hash in the database so
/// every hub replica knows it; each session has a CSRF token that every form posts back.
public enum Dashboard {
    public static let cookieName = "felhom_session"
    static let sessionLifetime: Int64 = 12 * 3600
    /// A session unused this long ends (the operator walked away from the browser).
    static let sessionIdleTimeout: Int64 = 30 * 60
    /// Wrong operator keys allowed at the sign-in form per client (socket address, or the
    /// forwarded address behind a trusted proxy) per window, counted in the database (all
    /// replicas). Beyond it that client waits (429); other clients and the API are not affected.
    static let loginFailuresAllowed = 10
    static let loginWindow: Int64 = 5 * 60

    /// The templates, compiled once, with any that failed to parse (constants of this module: a
    /// test requires none; a page whose template failed answers 500, never a blank 200).
    static let compiled: (library: MustacheLibrary, errors: [String]) = {
        var library = MustacheLibrary()
        var errors: [String] = []
        for (name, text) in DashboardTemplates.all {
            do { try library.register(text, named: name) } catch { errors.append("\(name): \(error)") }
        }
        return (library, errors)
    }()
    static var library: MustacheLibrary { compiled.library }
    /// Templates that did not compile (empty in a correct build).
    public static var templateErrors: [String] { compiled.errors }

    /// The pages, for the test that loads each one.
    public static let pages = ["/", "/hosts/{id}", "/hosts/{id}/desired", "/events", "/signed-ops", "/customers"]

    struct Session: Sendable {
        var csrf: String
    }

    /// Adds the dashboard routes. `secureCookies` marks the cookie Secure (set it when the hub is served over TLS).
    public static func register(on router: Router<HubRequestContext>, hub: Hub, secureCookies: Bool = false) {
        router.get("/login") { req, _ in
            if try await session(hub, req) != nil { return redirect("/") }
            return page("login", title: "Sign in", ["failed": false], session: nil)
        }
        router.post("/login") { req, ctx in
            let form = try await formBody(req)
            let key = form["key"] ?? ""
            let now = hub.now
            let client = hub.client(of: req, ctx)
            let recentFailures = try await hub.store.withDB { db in
                try await SessionsTable.recentFailures(client: client, since: now - loginWindow, in: db)
            }
            guard recentFailures < loginFailuresAllowed else {
                var response = page("login", title: "Sign in", ["locked": true], session: nil)
                response.status = .tooManyRequests
                return response
            }
            guard (try? await hub.keys.principal(authorization: "Bearer " + key)) == .operator else {
                try await hub.store.withDB { db in
                    try await SessionsTable.recordFailure(client: client, at: now, forgetBefore: now - loginWindow, in: db)
                }
                var response = page("login", title: "Sign in", ["failed": true], session: nil)
                response.status = .unauthorized
                return response
            }
            let (id, _) = try await createSession(hub)
            var response = redirect("/")
            response.headers[.setCookie] =
                "\(cookieName)=\(id); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(sessionLifetime)" + (secureCookies ? "; Secure" : "")
            return response
        }
        router.post("/logout") { req, _ in
            let form = try await formBody(req)
            if let (id, s) = try await sessionWithID(hub, req), form["csrf"] == s.csrf {
                try await hub.store.withDB { db in try await SessionsTable.delete(idHash: KeyAuthority.hash(id), in: db) }
            }
            var response = redirect("/login")
            response.headers[.setCookie] = "\(cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
            return response
        }
        router.post("/logout-everywhere") { req, _ in
            // Ends every dashboard session of every browser (a lost laptop, a shared screen).
            let form = try await formBody(req)
            guard let (_, s) = try await sessionWithID(hub, req), form["csrf"] == s.csrf else { return redirect("/login") }
            try await hub.store.withDB { db in try await SessionsTable.deleteAll(in: db) }
            var response = redirect("/login")
            response.headers[.setCookie] = "\(cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
            return response
        }
        router.get("/") { req, _ in
            try await signedIn(hub, req) { s in page("fleet", title: "Fleet", ["hosts": try await fleet(hub)], session: s) }
        }
        router.get("/hosts/:id") { req, ctx in
            let id = try ctx.parameters.require("id")
            return try await signedIn(hub, req) { s in
                guard var data = try await hostPage(hub, id) else { return notFound(s, "No host \(id)") }
                data["csrf"] = s.csrf
                return page("host", title: data["name"] as? String ?? id, data, session: s, notice: req.uri.queryParameters.get("notice"))
            }
        }
        router.get("/hosts/:id/desired") { req, ctx in
            let id = try ctx.parameters.require("id")
            return try await signedIn(hub, req) { s in
                guard let data = try await desiredPage(hub, id, error: nil, text: nil, s) else { return notFound(s, "No host \(id)") }
                return page("desired", title: "Desired state", data, session: s, notice: req.uri.queryParameters.get("notice"))
            }
        }
        router.post("/hosts/:id/desired") { req, ctx in
            let id = try ctx.parameters.require("id")
            let form = try await formBody(req)
            return try await signedIn(hub, req, csrf: form["csrf"]) { s in
                let text = form["spec"] ?? ""
                do {
                    _ = try await hub.putDesired(hostID: id, body: Data(text.utf8), by: .operator)
                    return redirect("/hosts/\(id)/desired?notice=Draft%20saved")
                } catch let error as HubError where error.status == .badRequest {
                    guard
                        let data = try await desiredPage(hub, id, error: error.path.map { "\($0): \(error.message)" } ?? error.message, text: text, s)
                    else {
                        return notFound(s, "No host \(id)")
                    }
                    var response = page("desired", title: "Desired state", data, session: s)
                    response.status = .badRequest
                    return response
                }
            }
        }
        router.post("/hosts/:id/desired/publish") { req, ctx in
            let id = try ctx.parameters.require("id")
            let form = try await formBody(req)
            return try await signedIn(hub, req, csrf: form["csrf"]) { s in
                // The editor's text is saved first (the same form posts here): publishing never
                // discards an unsaved edit. A bad edit is shown with its error and nothing is published.
                if let text = form["spec"] {
                    do {
                        _ = try await hub.putDesired(hostID: id, body: Data(text.utf8), by: .operator)
                    } catch let error as HubError where error.status == .badRequest {
                        let message = error.path.map { "\($0): \(error.message)" } ?? error.message
                        guard let data = try await desiredPage(hub, id, error: message + " (nothing was published)", text: text, s) else {
                            return notFound(s, "No host \(id)")
                        }
                        var response = page("desired", title: "Desired state", data, session: s)
                        response.status = .badRequest
                        return response
                    }
                }
                do {
                    let gen = try await hub.publishDesired(hostID: id, by: .operator)
                    return redirect("/hosts/\(id)/desired?notice=Published%20generation%20\(gen)")
                } catch let error as HubError where error.status == .badRequest {
                    return redirect(
                        "/hosts/\(id)/desired?notice=" + (error.message.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""))
                }
            }
        }
        // A backup or restore test now (published with the desired state; the box acts once).
        router.post("/hosts/:id/requests") { req, ctx in
            let id = try ctx.parameters.require("id")
            let form = try await formBody(req)
            return try await signedIn(hub, req, csrf: form["csrf"]) { _ in
                let encode = { (text: String) in text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "" }
                guard let vmid = Int(form["vmid"] ?? ""), let kind = form["kind"].flatMap(DesiredState.Request.Kind.init(rawValue:)) else {
                    return redirect("/hosts/\(id)?notice=" + encode("Give a guest's vmid and what to do"))
                }
                let body = Data(#"{"kind":"\#(kind.rawValue)","vmid":\#(vmid)}"#.utf8)
                do {
                    let r = try await hub.requestNow(hostID: id, body: body, by: .operator)
                    let what = kind == .backup ? "Backup" : "Restore test"
                    return redirect("/hosts/\(id)?notice=" + encode("\(what) of \(vmid) requested (\(r.id)); the box acts on it within seconds"))
                } catch let error as HubError where error.status == .badRequest || error.status == .conflict {
                    return redirect("/hosts/\(id)?notice=" + encode("Not requested: \(error.message)"))
                }
            }
        }
        // The kill switch: block / unblock a host, suspend / resume a customer.
        for (action, blocked) in [("block", true), ("unblock", false)] {
            router.post("/hosts/:id/\(action)") { req, ctx in
                let id = try ctx.parameters.require("id")
                let form = try await formBody(req)
                return try await signedIn(hub, req, csrf: form["csrf"]) { s in
                    _ = try await hub.setHostBlocked(id, blocked: blocked, by: .operator)
                    return redirect("/hosts/\(id)?notice=" + (blocked ? "Host%20blocked" : "Host%20unblocked"))
                }
            }
        }
        for (action, suspended) in [("suspend", true), ("resume", false)] {
            router.post("/customers/:id/\(action)") { req, ctx in
                let id = try ctx.parameters.require("id")
                let form = try await formBody(req)
                return try await signedIn(hub, req, csrf: form["csrf"]) { s in
                    try await hub.setCustomerSuspended(id, suspended: suspended, by: .operator)
                    return redirect("/customers?notice=" + (suspended ? "Customer%20suspended" : "Customer%20resumed"))
                }
            }
        }
        // Withdraw a queued op before its box fetches it.
        router.post("/signed-ops/:id/cancel") { req, ctx in
            let id = try ctx.parameters.require("id")
            let form = try await formBody(req)
            return try await signedIn(hub, req, csrf: form["csrf"]) { _ in
                do { _ = try await hub.cancelSignedOp(id, by: .operator) } catch let error as HubError where error.status == .conflict {
                    return redirect(
                        "/signed-ops?notice=" + (error.message.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "Not%20cancellable"))
                }
                return redirect("/signed-ops?notice=Op%20cancelled")
            }
        }
        router.get("/events") { req, _ in
            try await signedIn(hub, req) { s in
                let query = req.uri.queryParameters
                return page("events", title: "Events", try await eventsPage(hub, hostID: query.get("host_id"), type: query.get("type")), session: s)
            }
        }
        router.get("/signed-ops") { req, _ in
            try await signedIn(hub, req) { s in
                let ops = try await hub.signedOps(hostID: req.uri.queryParameters.get("host_id"), status: nil, by: .operator)
                let now = hub.now
                let rows: [[String: Any]] = ops.map { o in
                    [
                        "ago": ago(o.createdAt, now), "exact": exact(o.createdAt), "status": o.status.rawValue, "cls": statusClass(o.status.rawValue),
                        "customer": o.customerName, "host": o.hostName, "hostID": o.hostID, "summary": o.summary,
                        // Only an op still in flight can expire; a finished one shows when it finished.
                        "expires": !o.status.isOpen
                            ? "—"
                            : o.expiresAt.secondsSince1970 > now ? "in " + span(o.expiresAt.secondsSince1970 - now) : ago(o.expiresAt, now),
                        "cancellable": o.status == .pendingSignature || o.status == .signed, "id": o.id, "csrf": s.csrf,
                        "expiresExact": exact(o.expiresAt),
                        "reason": o.reason ?? "",
                    ]
                }
                return page("signedOps", title: "Signed ops", ["ops": rows], session: s)
            }
        }
        router.get("/customers") { req, _ in
            try await signedIn(hub, req) { s in
                let hosts = try await hub.hosts(by: .operator)
                var quotas: [String: QuotaView] = [:]
                for c in try await hub.customers(by: .operator) { quotas[c.id] = try? await hub.quotas(customerID: c.id, by: .operator) }
                let rows: [[String: Any]] = try await hub.customers(by: .operator).map { c in
                    let q = quotas[c.id]
                    let usage: [[String: Any]] =
                        q.map { q in
                            [
                                ("memory MiB", q.usage.memoryMB, q.maxMemoryMB, "max_memory_mb"),
                                ("guests", q.usage.guests, q.maxGuests, "max_guests"),
                                ("routes", q.usage.routes, q.maxRoutes, "max_routes"),
                                ("IPv4", q.usage.publicIPv4, q.maxPublicIPv4, "max_public_ipv4"),
                            ].map { what, used, limit, field -> [String: Any] in
                                var row: [String: Any] = ["what": what, "used": used, "over": q.exceeded.contains(field)]
                                if let limit { row["limit"] = String(limit) }
                                return row
                            }
                        } ?? []
                    return [
                        "id": c.id, "suspended": c.suspended, "csrf": s.csrf,
                        "name": c.name, "domain": c.domain, "email": c.email, "language": c.language, "timezone": c.timezone,
                        "hosts": hosts.filter { $0.customerID == c.id }.map(\.name).joined(separator: ", "),
                        "types": c.notifyTypes.joined(separator: ", ") + (c.notifyTypesDefault ? " (default)" : ""),
                        "usage": usage,
                    ]
                }
                return page("customers", title: "Customers", ["customers": rows], session: s, notice: req.uri.queryParameters.get("notice"))
            }
        }
    }

    // MARK: - Sessions

    static func randomToken() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
    }

    static func createSession(_ hub: Hub) async throws -> (String, Session) {
        let id = randomToken()
        let csrf = randomToken()
        let now = hub.now
        try await hub.store.withDB { db in
            try await SessionsTable.create(
                idHash: KeyAuthority.hash(id), csrf: csrf, now: now, expiresAt: now + sessionLifetime,
                operatorKeyHash: hub.keys.operatorKeyBinding, in: db)
        }
        return (id, Session(csrf: csrf))
    }

    static func sessionWithID(_ hub: Hub, _ req: Request) async throws -> (String, Session)? {
        guard let cookie = req.headers[.cookie] else { return nil }
        var id: String?
        for part in cookie.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0] == cookieName { id = String(kv[1]) }
        }
        guard let id, id.count == 64 else { return nil }
        let now = hub.now
        let binding = hub.keys.operatorKeyBinding
        let row = try await hub.store.withDB { db in
            // Valid: not expired, used within the idle timeout, made with the operator key in force now.
            try await SessionsTable.find(
                idHash: KeyAuthority.hash(id), now: now, idleSince: now - sessionIdleTimeout, operatorKeyHash: binding, in: db)
        }
        guard let row else { return nil }
        if row.lastSeenAt < now - 60 {
            // Keep the session alive while it is used (one write a minute at most).
            try await hub.store.withDB { db in try await SessionsTable.touch(idHash: KeyAuthority.hash(id), at: now, in: db) }
        }
        return (id, Session(csrf: row.csrf))
    }

    static func session(_ hub: Hub, _ req: Request) async throws -> Session? { try await sessionWithID(hub, req)?.1 }

    /// Runs `body` for a signed-in operator; otherwise redirects to /login. With `csrf`, the form's
    /// token must match the session's (403 otherwise).
    static func signedIn(_ hub: Hub, _ req: Request, csrf: String?? = nil, _ body: (Session) async throws -> Response) async throws -> Response {
        guard let session = try await session(hub, req) else { return redirect("/login") }
        if let csrf {
            guard let given = csrf, !given.isEmpty, given == session.csrf else {
                var response = page(
                    "error", title: "Form expired",
                    ["title": "Form expired", "message": "This form is stale or was not sent from the dashboard. Go back, reload and try again."],
                    session: session)
                response.status = .forbidden
                return response
            }
        }
        return try await body(session)
    }

    // MARK: - Rendering

    static func page(_ template: String, title: String, _ data: [String: Any], session: Session?, notice: String? = nil) -> Response {
        guard let body = library.render(data, withTemplate: template) else {
            return Response(status: .internalServerError, body: .init(byteBuffer: ByteBuffer(string: "template \(template) is missing")))
        }
        var layout: [String: Any] = ["title": title, "body": body, "signedIn": session != nil, "csrf": session?.csrf ?? ""]
        if let notice, !notice.isEmpty { layout["notice"] = notice }
        let html = library.render(layout, withTemplate: "layout") ?? ""
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[.contentSecurityPolicy] = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
        headers[.xFrameOptions] = "DENY"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static func notFound(_ s: Session, _ message: String) -> Response {
        var response = page("error", title: "Not found", ["title": "Not found", "message": message], session: s)
        response.status = .notFound
        return response
    }

    static func redirect(_ location: String) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    static func formBody(_ req: Request) async throws -> [String: String] {
        let buf = try await req.body.collect(upTo: 1 << 20)
        let text = String(buffer: buf)
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(kv[0]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            let value = kv.count > 1 ? (String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
            out[key] = value
        }
        return out
    }

    // MARK: - Times

    static func span(_ seconds: Int64) -> String {
        let clamped = max(0, seconds)
        if clamped < 60 { return "\(clamped) s" }
        if clamped < 3600 { return "\(clamped / 60) min" }
        if clamped < 86400 { return "\(clamped / 3600) h \(clamped % 3600 / 60) min" }
        return "\(clamped / 86400) d \(clamped % 86400 / 3600) h"
    }

    static func ago(_ at: Int64, _ now: Int64) -> String { now - at < 5 ? "just now" : span(now - at) + " ago" }
    static func ago(_ at: Timestamp, _ now: Int64) -> String { ago(at.secondsSince1970, now) }
    static func exact(_ at: Timestamp) -> String { exact(at.secondsSince1970) }

    static func exact(_ at: Int64) -> String {
        Date(timeIntervalSince1970: TimeInterval(at)).formatted(
            .iso8601.year().month().day().timeZone(separator: .omitted).time(includingFractionalSeconds: false).timeSeparator(.colon).dateSeparator(
                .dash
            ).dateTimeSeparator(.space)) + " UTC"
    }

    static func livenessClass(_ l: String) -> String {
        switch l {
        case "alive": return "ok"
        case "stale": return "warn"
        case "down": return "bad"
        default: return "muted"
        }
    }

    static func statusClass(_ s: String) -> String {
        switch s {
        case "applied", "in_sync", "info": return "ok"
        case "pending_signature", "signed", "delivered", "differs", "missing", "warning": return "warn"
        case "rejected", "critical": return "bad"
        default: return "muted"
        }
    }
}

extension HTTPField.Name {
    /// `Content-Security-Policy` (a valid field name: the failable initializer's fallback is never taken).
    static let contentSecurityPolicy = HTTPField.Name("Content-Security-Policy") ?? .cacheControl
    /// `X-Frame-Options`.
    static let xFrameOptions = HTTPField.Name("X-Frame-Options") ?? .cacheControl
}
