import FelhomCore
import Foundation
import SQLKit

/// The dead-man's switch: report recency is a host's liveness.
public enum Liveness {
    /// Thresholds (SPEC §3: stale after 30 min, down after 60 min).
    public struct Thresholds: Sendable {
        public var staleAfter: TimeInterval = 30 * 60
        public var downAfter: TimeInterval = 60 * 60
        public init() {}
    }

    /// A host's state: `unknown` until its first report, then `alive`, `stale` or `down`.
    public static func state(lastReportAt: Int64?, createdAt: Int64, now: Int64, thresholds: Thresholds) -> String {
        let age = TimeInterval(now - (lastReportAt ?? createdAt))
        if age >= thresholds.downAfter { return "down" }
        if age >= thresholds.staleAfter { return "stale" }
        return lastReportAt == nil ? "unknown" : "alive"
    }

    /// The event a transition emits, if any: only real changes are announced.
    public static func event(from old: String, to new: String) -> (type: String, severity: HubEvent.Severity)? {
        switch (old, new) {
        case (_, "stale") where old != "stale" && old != "down": return ("node_stale", .warning)
        case (_, "down") where old != "down": return ("node_down", .critical)
        case ("stale", "alive"), ("down", "alive"): return ("node_recovered", .info)
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
        let rows = try await store.withDB { db in
            try await db.select().columns("id", "customer_id", "liveness", "last_report_at", "created_at").from("hosts").all()
        }
        var emitted: [HubEvent] = []
        for r in rows {
            let id = try r.decode(column: "id", as: String.self)
            let old = try r.decode(column: "liveness", as: String.self)
            let last = try r.decode(column: "last_report_at", as: Int64?.self)
            let new = Liveness.state(lastReportAt: last, createdAt: try r.decode(column: "created_at", as: Int64.self), now: now, thresholds: thresholds)
            guard new != old else { continue }
            let customer = try r.decode(column: "customer_id", as: String.self)
            let at = clock.now()
            let ev: HubEvent? = try await store.transaction { db in
                let changed = try await db.update("hosts").set("liveness", to: SQLBind(new))
                    .where("id", .equal, SQLBind(id)).where("liveness", .equal, SQLBind(old))
                    .returning("id").all()
                guard !changed.isEmpty, let (type, severity) = Liveness.event(from: old, to: new) else { return nil }
                let ev = HubEvent(id: Ids.make("evt"), at: at, source: .hub, hostID: id, guestID: nil, customerID: customer, type: type,
                                  severity: severity, data: ["from": .string(old), "to": .string(new), "last_report_at": last.map { .int($0) } ?? .null])
                try await record(ev, in: db)
                return ev
            }
            if let ev { emitted.append(ev) }
        }
        return emitted
    }

    /// Inserts an event; with `ignoreDuplicate` an existing id is left alone. Returns whether a row was written.
    @discardableResult
    static func insert(_ ev: HubEvent, in db: any SQLDatabase, ignoreDuplicate: Bool = false) async throws -> Bool {
        let q = db.insert(into: "events").columns("id", "at", "source", "host_id", "guest_id", "customer_id", "type", "severity", "data")
            .values(SQLBind(ev.id), SQLBind(Int64(ev.at.timeIntervalSince1970)), SQLBind(ev.source.rawValue), SQLBind(ev.hostID),
                    SQLBind(ev.guestID), SQLBind(ev.customerID), SQLBind(ev.type), SQLBind(ev.severity.rawValue),
                    SQLBind(ev.data.serializedString()))
        if ignoreDuplicate { return try await !q.ignoringConflicts().returning("id").all().isEmpty }
        try await q.run()
        return true
    }
}
