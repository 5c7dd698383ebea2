import FelhomAPI
import FelhomCore
import HTTPTypes
import Hummingbird
import NIOCore

/// `/healthz` and `/openapi.yaml` (no key), `/metrics` (operator or metrics key).
enum SystemRoutes {
    static func `public`(_ hub: Hub) -> RouteCollection<HubRequestContext> {
        let routes = RouteCollection(context: HubRequestContext.self)
        routes.get("healthz") { _, _ in
            try await hub.store.ping()
            return try HubAPI.encode(Health(status: "ok", store: hub.store.kind.rawValue, version: FelhomVersion.current))
        }
        // The operator key, or the metrics-only key (`metrics_key`) a Prometheus scraper holds.
        routes.get("metrics") { req, _ in
            if !hub.keys.isMetricsKey(authorization: req.headers[.authorization]) {
                guard try await hub.keys.principal(authorization: req.headers[.authorization]) == .operator else {
                    throw HubError.forbidden("read metrics (operator or metrics key only)")
                }
            }
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(
                status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: try await hub.metrics.render(store: hub.store))))
        }
        routes.get("openapi.yaml") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "application/yaml"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.yaml)))
        }
        return routes
    }

}
