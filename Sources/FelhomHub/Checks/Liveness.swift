import FelhomAPI
import FelhomCore
import Foundation

/// The dead-man's switch: report recency is a host's liveness.
public enum Liveness {
    /// Thresholds (SPEC §3: stale after 30 min, down after 60 min).
    public struct Thresholds: Sendable {
        public var staleAfter: TimeInterval = 30 * 60
        public var downAfter: TimeInterval = 60 * 60
        public init() {}
    }

    /// A host's state from its report recency.
    public static func state(lastReportAt: Int64?, createdAt: Int64, now: Int64, thresholds: Thresholds) -> LivenessState {
        let age = TimeInterval(now - (lastReportAt ?? createdAt))
        if age >= thresholds.downAfter { return .down }
        if age >= thresholds.staleAfter { return .stale }
        return lastReportAt == nil ? .unknown : .alive
    }

    /// The event a transition emits, if any: only real changes are announced.
    public static func event(from old: LivenessState, to new: LivenessState) -> (type: String, severity: HubEvent.Severity)? {
        switch (old, new) {
        case (.unknown, .stale), (.alive, .stale): return ("node_stale", .warning)
        case (_, .down) where old != .down: return ("node_down", .critical)
        case (.stale, .alive), (.down, .alive): return ("node_recovered", .info)
        default: return nil
        }
    }
}

extension Hub {
    /// One pass of the liveness checker. Each transition is written with a conditional update
    /// (`WHERE liveness = old … RETURNING`), so even two checkers racing emit it once.
    @discardableResult
    public func checkLiveness(thresholds: Liveness.Thresholds = .init()) async throws -> [HubEvent] {
        let now = self.now
        let rows = try await store.withDB { db in try await HostsTable.livenessRows(in: db) }
        var emitted: [HubEvent] = []
        for row in rows {
            let id = row.id
            let old = row.liveness
            let last = row.lastReportAt
            let new = Liveness.state(lastReportAt: last, createdAt: row.createdAt, now: now, thresholds: thresholds)
            guard new != old else { continue }
            let customer = row.customerID
            let at = clock.now()
            let ev: HubEvent? = try await store.transaction { db in
                let changed = try await HostsTable.transitionLiveness(id, from: old, to: new, in: db)
                guard changed, let (type, severity) = Liveness.event(from: old, to: new) else { return nil }
                let ev = HubEvent(
                    id: Ids.make("evt"), at: at, source: .hub, hostID: id, guestID: nil, customerID: customer, type: type,
                    severity: severity,
                    data: ["from": .string(old.rawValue), "to": .string(new.rawValue), "last_report_at": last.map { .int($0) } ?? .null])
                try await record(ev, in: db)
                return ev
            }
            if let ev { emitted.append(ev) }
        }
        return emitted
    }
}
