import Prometheus

/// Prometheus metrics of one hub process (`GET /metrics`, operator key).
public final class HubMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let reportsAccepted: Counter
    let reportsRejected: Counter
    let eventsRecorded: Counter

    public init() {
        reportsAccepted = registry.makeCounter(name: "felhom_hub_reports_accepted_total", help: "Host reports stored.")
        reportsRejected = registry.makeCounter(name: "felhom_hub_reports_rejected_total", help: "Host reports refused as invalid.")
        eventsRecorded = registry.makeCounter(name: "felhom_hub_events_posted_total", help: "Events posted through the API.")
    }

    /// The text exposition, with host counts per liveness state read from the store.
    func render(store: HubStore) async throws -> String {
        let stored = try await store.withDB { db in try await HostsTable.countByLiveness(in: db) }
        var counts: [String: Int64] = ["unknown": 0, "alive": 0, "stale": 0, "down": 0]
        for (state, n) in stored { counts[state] = Int64(n) }
        for (state, n) in counts {
            registry.makeGauge(name: "felhom_hub_hosts", labels: [("liveness", state)], help: "Hosts by liveness state.").set(n)
        }
        return registry.emitToString()
    }
}
