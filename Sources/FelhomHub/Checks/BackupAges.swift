import FelhomCore
import Foundation

extension Hub {
    /// Dead-man checks on data protection (issue 14), like report recency: a host whose published
    /// desired state names a backup storage and whose last `backup_completed` is older than
    /// `backupDays` (or that never had one, counted from its creation) gets one `backup_overdue`;
    /// one whose last `restore_test_passed` is older than `restoreTestDays` gets one
    /// `restore_test_overdue`. Once per transition: the event id is derived from the host and the
    /// time of the last success, so a later success re-arms it and a second checker's insert is
    /// ignored. A host that is not reporting (stale or down) is skipped: its silence is already the
    /// alarm, and the others would only be noise.
    @discardableResult
    public func checkBackupAges(backupDays: Int = 2, restoreTestDays: Int = 8) async throws -> [HubEvent] {
        let now = clock.now()
        let nowEpoch = Int64(now.timeIntervalSince1970)
        let hosts = try await store.withDB { db in try await HostsTable.livenessRows(in: db) }
        var emitted: [HubEvent] = []
        for host in hosts where host.liveness == .alive {
            let checks: [(type: String, success: String, days: Int)] = [
                ("backup_overdue", "backup_completed", backupDays), ("restore_test_overdue", "restore_test_passed", restoreTestDays),
            ]
            let (owes, lasts) = try await store.withDB { db -> (Bool, [Int64?]) in
                guard let (spec, _, _) = try await publishedSpec(host.id, in: db), spec.storagePolicy.backupStorage != nil,
                    spec.guests.contains(where: { $0.backup && !$0.ephemeral })
                else { return (false, []) }
                var lasts: [Int64?] = []
                for c in checks { lasts.append(try await EventsTable.latest(hostID: host.id, types: [c.success], in: db)?.at) }
                return (true, lasts)
            }
            guard owes else { continue }
            for (c, last) in zip(checks, lasts) {
                let since = last ?? host.createdAt
                guard nowEpoch - since > Int64(c.days) * 86_400 else { continue }
                var data: [String: JSONValue] = ["days": .int(Int64(c.days))]
                data["last_at"] = last.map { .string(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval($0)))) } ?? "never"
                let ev = HubEvent(
                    id: "evt_\(c.type)_\(host.id)_\(since)", at: now, source: .hub, hostID: host.id, guestID: nil, customerID: host.customerID,
                    type: c.type, severity: .warning, data: .object(data))
                if try await store.transaction({ db in try await record(ev, in: db, ignoreDuplicate: true) }) { emitted.append(ev) }
            }
        }
        return emitted
    }
}
