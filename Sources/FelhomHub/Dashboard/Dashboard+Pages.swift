import FelhomAPI
import FelhomCore
import Foundation

/// What each dashboard page shows, gathered through the store.
extension Dashboard {
    static func fleet(_ hub: Hub) async throws -> [[String: Any]] {
        let hosts = try await hub.hosts(by: .operator)
        let customers = Dictionary(uniqueKeysWithValues: try await hub.customers(by: .operator).map { ($0.id, $0.name) })
        let now = hub.now
        var rows: [[String: Any]] = []
        for host in hosts {
            let (backup, restore, pending) = try await hub.store.withDB { db in
                let lastBackup = try await EventsTable.latest(
                    hostID: host.id, types: ["backup_completed", "backup_failed", "backup_unencrypted"], in: db)
                let lastRestore = try await EventsTable.latest(hostID: host.id, types: ["restore_test_passed", "restore_test_failed"], in: db)
                return (lastBackup, lastRestore, try await SignedOpsTable.openCount(hostID: host.id, in: db))
            }
            let verified = try await hub.store.withDB { db in try await EventsTable.latest(hostID: host.id, types: ["restore_test_passed"], in: db) }
            // Which agent release it runs, and whether its last update failed (docs/updates.md).
            let (report, update) = try await hub.store.withDB { db in
                (
                    try await ReportsTable.latestHostReport(hostID: host.id, in: db),
                    try await EventsTable.latestWithData(hostID: host.id, types: ["update_committed", "update_reverted", "update_refused"], in: db)
                )
            }
            var row: [String: Any] = [
                "id": host.id, "name": host.name, "customer": customers[host.customerID] ?? host.customerID, "liveness": host.liveness.rawValue,
                "livenessClass": livenessClass(host.liveness.rawValue), "pending": pending > 0 ? pending as Any : false,
            ]
            if let at = host.lastReportAt { row["lastReport"] = ["ago": ago(at, now), "exact": exact(at)] }
            if let b = backup {
                row["lastBackup"] = [
                    "label": b.type == "backup_completed" ? "ok" : "FAILED", "cls": b.type == "backup_completed" ? "ok" : "bad",
                    "ago": ago(b.at, now), "exact": exact(b.at),
                ]
            }
            if let r = restore {
                row["lastRestore"] = [
                    "label": r.type == "restore_test_passed" ? "passed" : "FAILED", "cls": r.type == "restore_test_passed" ? "ok" : "bad",
                    "ago": ago(r.at, now), "exact": exact(r.at),
                ]
            }
            if let v = verified { row["verified"] = ["ago": ago(v.at, now), "exact": exact(v.at)] }
            if let body = report?.body, let version = (try? JSONValue.parse(Data(body.utf8)))?["agent_version"]?.stringValue {
                row["agentVersion"] = version
            }
            if let u = update, u.type != "update_committed" {
                row["updateFailed"] = [
                    "version": u.data["version"]?.stringValue ?? "?", "component": u.data["component"]?.stringValue ?? "agent",
                    "label": u.type == "update_reverted" ? "reverted" : "refused", "reason": u.data["reason"]?.stringValue ?? "",
                ]
            }
            rows.append(row)
        }
        return rows
    }

    static func eventRows(_ events: [HubEvent], now: Int64, hostNames: [String: String] = [:]) -> [[String: Any]] {
        events.map { e in
            let at = Int64(e.at.timeIntervalSince1970)
            return [
                "ago": ago(at, now), "exact": exact(at), "type": e.type, "severity": e.severity.rawValue, "cls": statusClass(e.severity.rawValue),
                "source": e.source.rawValue, "host": e.hostID.map { hostNames[$0] ?? $0 } ?? "—",
                "data": e.data == .object([:]) ? "" : String(decoding: e.data.serialized(), as: UTF8.self),
            ]
        }
    }

    static func hostPage(_ hub: Hub, _ id: String) async throws -> [String: Any]? {
        guard let h = try? await hub.host(id, by: .operator) else { return nil }
        let now = hub.now
        let customer = (try? await hub.customer(h.customerID, by: .operator))?.name ?? h.customerID
        let drift = try await hub.drift(hostID: id, by: .operator)
        var data: [String: Any] = [
            "id": h.id, "name": h.name, "customer": customer, "liveness": h.liveness.rawValue, "livenessClass": livenessClass(h.liveness.rawValue),
            "blocked": h.blocked,
            "generation": drift.generation, "inSync": drift.inSync,
            "applied": h.appliedGeneration.map { String($0) } ?? "none reported",
            "appliedBehind": (h.appliedGeneration ?? 0) < drift.generation,
        ]
        if let at = h.lastReportAt { data["lastReport"] = ["ago": ago(at, now), "exact": exact(at)] }
        data["guests"] = drift.guests.map { g -> [String: Any] in
            [
                "vmid": g.vmid, "name": g.name, "state": g.state.rawValue, "cls": statusClass(g.state.rawValue), "desired": g.desiredRunState ?? "—",
                "actual": g.actualStatus ?? "—",
                "differences": g.differences.map { ["field": $0.field, "desired": $0.desired, "actual": $0.actual] },
            ]
        }
        let body = try await hub.store.withDB { db in try await ReportsTable.latestHostReport(hostID: id, in: db)?.body }
        if let body, let report = try? HostReport.decode(Data(body.utf8)) {
            let gib = { (b: Int64) in String(format: "%.1f GiB", Double(b) / 1_073_741_824) }
            data["metrics"] = [
                "pve": report.host.pveVersion, "kernel": report.host.kernel,
                "memory": "\(gib(report.host.memoryUsed)) of \(gib(report.host.memoryTotal))",
                "disk": "\(gib(report.host.diskUsed)) of \(gib(report.host.diskTotal))", "uptime": span(report.host.uptime),
            ]
        }
        // Capacity (ADR 0012): allocatable next to what the desired state uses, as bars.
        if let cap = try? await hub.hostCapacity(hostID: id, by: .operator) {
            func bar(_ label: String, used: Double, of total: Double?, unit: String) -> [String: Any] {
                let text = { (v: Double) in v == v.rounded() ? String(Int(v)) : String(format: "%.2f", v) }
                guard let total else {
                    return ["label": label, "text": "\(text(used)) \(unit) used; capacity not reported yet", "max": 1, "value": 0]
                }
                return [
                    "label": label, "text": "\(text(used)) of \(text(total)) \(unit)", "max": max(total, used, 0.01), "value": used,
                    "over": used > total + 1e-9,
                ]
            }
            data["capacity"] = [
                bar("CPU (vCPU shares)", used: cap.usage.cpu, of: cap.allocatableCPU, unit: "vCPU"),
                bar("Memory (caps)", used: Double(cap.usage.memoryMB), of: cap.allocatableMemoryMB.map(Double.init), unit: "MiB"),
            ]
        }
        // Data protection: per guest from the latest report; "verified restorable" and the
        // time-to-restore trend from the restore-test events.
        if let body, let report = try? HostReport.decode(Data(body.utf8)) {
            data["hasRoutes"] = !(report.routes ?? []).isEmpty
            data["routes"] = (report.routes ?? []).map { r -> [String: Any] in
                [
                    "id": r.id, "port": r.listenPort, "state": r.state.rawValue,
                    "cls": r.state == .healthy ? "ok" : r.state == .unhealthy ? "bad" : "warn",
                    "reason": [r.reason, r.message].compactMap { $0 }.joined(separator: " — "), "open": r.openConnections,
                    "checked": r.checkedAt.map { ago(Int64($0.timeIntervalSince1970), now) } ?? "—",
                ]
            }
            data["hasVolumeSnapshots"] = !(report.volumeSnapshots ?? []).isEmpty
            data["volumeSnapshots"] = (report.volumeSnapshots ?? []).map { v -> [String: Any] in
                [
                    "vmid": v.guestVMID, "key": v.key, "volume": v.volumeID.isEmpty ? "—" : v.volumeID, "state": v.state.rawValue,
                    "cls": v.state == .protected ? "ok" : v.state == .disabled ? "warn" : "bad",
                    "reason": [v.reason, v.message].compactMap { $0 }.joined(separator: " — "),
                    "last": v.lastSnapshotAt.map { ago(Int64($0.timeIntervalSince1970), now) } ?? "—",
                ]
            }
            let tests = Dictionary(report.restoreTests.map { ($0.vmid, $0) }, uniquingKeysWith: { a, _ in a })
            data["protection"] = report.backups.map { b -> [String: Any] in
                var row: [String: Any] = [
                    "vmid": b.vmid, "consistency": b.consistency ?? "—", "key": b.encrypted.map { String($0.prefix(23)) } ?? "—",
                    "verification": b.verification ?? "—",
                ]
                if let at = b.lastSuccessAt.map({ Int64($0.timeIntervalSince1970) }) {
                    row["backupAgo"] = ago(at, now)
                    row["backupExact"] = exact(at)
                }
                if let reason = b.lastFailureReason, let at = b.lastFailureAt, at > (b.lastSuccessAt ?? .distantPast) {
                    row["failure"] = reason
                    row["failureAgo"] = ago(Int64(at.timeIntervalSince1970), now)
                }
                if let t = tests[b.vmid] {
                    row["restore"] = t.passed ? "passed" : "FAILED"
                    row["restoreCls"] = t.passed ? "ok" : "bad"
                    row["restoreDetail"] =
                        ago(Int64(t.at.timeIntervalSince1970), now)
                        + (t.restoreSeconds.map { String(format: ", restored in %.0f s", $0) } ?? "") + (t.reason.map { " — \($0)" } ?? "")
                }
                return row
            }
        }
        let passed = try await hub.events(hostID: id, type: "restore_test_passed", since: nil, limit: 5, by: .operator)
        if let latest = passed.first {
            let at = Int64(latest.at.timeIntervalSince1970)
            data["verified"] = ["ago": ago(at, now), "exact": exact(at)]
            let trend = passed.compactMap { $0.data["restore_seconds"]?.lenientDouble }.map { String(format: "%.0f s", $0) }
            if !trend.isEmpty { data["trend"] = trend.joined(separator: ", ") }
        }
        data["events"] = eventRows(try await hub.events(hostID: id, type: nil, since: nil, limit: 20, by: .operator), now: now)
        return data
    }

    static func desiredPage(_ hub: Hub, _ id: String, error: String?, text: String?, _ s: Session) async throws -> [String: Any]? {
        guard let host = try? await hub.host(id, by: .operator) else { return nil }
        let desired = try await hub.desired(hostID: id, by: .operator)
        var spec = text
        if spec == nil, let draft = desired.draft {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            spec = String(decoding: (try? enc.encode(draft)) ?? Data(), as: UTF8.self)
        }
        var data: [String: Any] = [
            "id": id, "name": host.name, "generation": desired.generation, "unpublished": desired.unpublishedChanges, "csrf": s.csrf,
            "spec": spec ?? #"{"guests": []}"#,
        ]
        if let error { data["error"] = error }
        return data
    }

    static func eventsPage(_ hub: Hub, hostID: String?, type: String?) async throws -> [String: Any] {
        let hosts = try await hub.hosts(by: .operator)
        let names = Dictionary(uniqueKeysWithValues: hosts.map { ($0.id, $0.name) })
        let host = hostID.flatMap { $0.isEmpty ? nil : $0 }
        let kind = type.flatMap { $0.isEmpty ? nil : $0 }
        let events = try await hub.events(hostID: host, type: kind, since: nil, limit: 200, by: .operator)
        return [
            "events": eventRows(events, now: hub.now, hostNames: names), "type": kind ?? "",
            "hostOptions": hosts.map { ["id": $0.id, "name": $0.name, "selected": $0.id == host] as [String: Any] },
        ]
    }
}
