import FelhomAPI
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

    /// The hub's router: system routes, the API's route collections (each area in `Routes/`), the
    /// dashboard. Authenticated collections run on ``AuthenticatedContext``.
    public static func router(hub: Hub) -> Router<HubRequestContext> {
        let router = Router(context: HubRequestContext.self)
        let allowed = AllowedMethods()
        // Every request is logged (method, path, status, duration) at debug; headers never (keys).
        router.add(middleware: LogRequestsMiddleware(.debug))
        router.add(middleware: RequestMetricsMiddleware(metrics: hub.metrics))
        router.add(middleware: MethodNotAllowedMiddleware(allowed: allowed))
        router.addRoutes(SystemRoutes.public(hub))
        router.addRoutes(EnrollmentRoutes.anonymous(hub), atPath: "api/v1")
        router.addRoutes(RecoveryRoutes.anonymous(hub), atPath: "api/v1")
        let authenticated = router.group().add(middleware: AuthenticateMiddleware(keys: hub.keys)).group(context: AuthenticatedContext.self)
        for collection in [
            CustomerRoutes.collection(hub), HostRoutes.collection(hub), DesiredRoutes.collection(hub), ReportRoutes.collection(hub),
            EventRoutes.collection(hub), GeoRoutes.collection(hub), RecoveryRoutes.collection(hub), EnrollmentRoutes.collection(hub),
            SignedOpRoutes.collection(hub), ReleaseRoutes.collection(hub),
        ] {
            authenticated.addRoutes(collection, atPath: "api/v1")
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
        do { return try APICoding.decoder().decode(T.self, from: data) } catch let error as DecodingError {
            throw HubError.badRequest(error.reason, path: error.pathText)
        }
    }

    /// Decodes a body whose schema is closed (`additionalProperties: false`): a key outside
    /// `keys` is a 400 naming it.
    static func decodeClosed<T: Decodable>(_ type: T.Type, _ data: Data, keys: Set<String>) throws -> T {
        if let doc = try? JSONValue.parse(data), let extra = doc.objectValue?.keys.sorted().first(where: { !keys.contains($0) }) {
            throw HubError.badRequest("unknown key", path: "$.\(extra)")
        }
        return try decode(type, data)
    }

    /// A JSON answer in the API's one coding (``APICoding``).
    static func encode<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let enc = APICoding.encoder()
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try enc.encode(value))))
    }
}
