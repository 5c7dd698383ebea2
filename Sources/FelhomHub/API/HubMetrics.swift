import Foundation
import Hummingbird
import Prometheus

/// Prometheus metrics of one hub process (`GET /metrics`, operator key).
public final class HubMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let reportsAccepted: Counter
    let reportsRejected: Counter
    let eventsRecorded: Counter
    let requestDuration: DurationHistogram

    public init() {
        func counter(_ name: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "felhom", subsystem: "hub", metricName: name, unitName: "total", helpText: help)
        }
        reportsAccepted = registry.makeCounter(descriptor: counter("reports_accepted", "Host reports stored."))
        reportsRejected = registry.makeCounter(descriptor: counter("reports_rejected", "Host reports refused as invalid."))
        eventsRecorded = registry.makeCounter(descriptor: counter("events_posted", "Events posted through the API."))
        requestDuration = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
                namespace: "felhom", subsystem: "hub", metricName: "http_request_duration", unitName: "seconds",
                helpText: "Time to answer an API request (long-polls included)."),
            buckets: [.milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(500), .seconds(2), .seconds(10), .seconds(60)])
    }

    /// The text exposition, with host counts per liveness state read from the store.
    func render(store: HubStore) async throws -> String {
        let stored = try await store.withDB { db in try await HostsTable.countByLiveness(in: db) }
        var counts: [String: Int64] = ["unknown": 0, "alive": 0, "stale": 0, "down": 0]
        for (state, n) in stored { counts[state] = Int64(n) }
        for (state, n) in counts {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "felhom", subsystem: "hub", metricName: "hosts", unitName: "", helpText: "Hosts by liveness state."),
                labels: [("liveness", state)]
            ).set(n)
        }
        return registry.emitToString()
    }

    /// Counts one answered request by route pattern (`/api/v1/hosts/{id}`, never the id), method
    /// and status class — bounded label values, so a scanner cannot grow the registry.
    func recordRequest(route: String, method: String, status: Int, duration: Duration) {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "felhom", subsystem: "hub", metricName: "http_requests", unitName: "total",
                helpText: "API requests answered, by route pattern, method and status class."),
            labels: [("route", route), ("method", method), ("status", "\(status / 100)xx")]
        ).increment()
        requestDuration.recordNanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}

/// Records every request in ``HubMetrics`` (`felhom_hub_http_requests_total`,
/// `felhom_hub_http_request_duration_seconds`). Unmatched paths count as `unmatched`.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: HubMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            metrics.recordRequest(
                route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: response.status.code,
                duration: ContinuousClock.now - started)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.recordRequest(
                route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: status,
                duration: ContinuousClock.now - started)
            throw error
        }
    }
}
