import FelhomCore
import Foundation

/// Backup deadlines: by a configured local time, every host must have reported a backup (or
/// db-dump) outcome since local midnight in its customer's time zone.
public enum BackupDeadlines {
    /// Events that count as "the backup ran" (success or failure).
    public static let outcomeTypes = ["backup_completed", "backup_failed", "db_dump_completed", "db_dump_failed"]

    /// Local midnight and the deadline of the day containing `now` in `timeZone`.
    public static func window(now: Date, timeZone: TimeZone, deadlineHour: Int, deadlineMinute: Int = 0) -> (
        midnight: Date, deadline: Date, day: String
    ) {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = timeZone
        let midnight = cal.startOfDay(for: now)
        let deadline = cal.date(bySettingHour: deadlineHour, minute: deadlineMinute, second: 0, of: midnight) ?? midnight
        let parts = cal.dateComponents([.year, .month, .day], from: now)
        return (midnight, deadline, String(format: "%04d-%02d-%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0))
    }
}

extension Hub {
    /// One pass of the deadline checker: emits `expected_backup_missed` at most once per host and
    /// local day (the event id is derived from host and day, so a second checker's insert is ignored).
    @discardableResult
    public func checkBackupDeadlines(deadlineHour: Int = 6) async throws -> [HubEvent] {
        let now = clock.now()
        let hosts = try await store.withDB { db in try await HostsTable.withTimeZones(in: db) }
        var emitted: [HubEvent] = []
        for host in hosts {
            let hostID = host.id
            guard let tz = TimeZone(identifier: host.timezone) ?? TimeZone(identifier: "Europe/Budapest") else { continue }
            let (midnight, deadline, day) = BackupDeadlines.window(now: now, timeZone: tz, deadlineHour: deadlineHour)
            guard now >= deadline, host.createdAt < Int64(midnight.timeIntervalSince1970) else { continue }
            let since = Int64(midnight.timeIntervalSince1970)
            let ran = try await store.withDB { db in
                // Only a host whose published desired state names a backup storage owes a backup:
                // without a policy nothing is scheduled, and a daily alarm would only be noise.
                guard let (spec, _, _) = try await publishedSpec(hostID, in: db), spec.storagePolicy.backupStorage != nil else { return true }
                return try await EventsTable.exists(hostID: hostID, types: BackupDeadlines.outcomeTypes, since: since, in: db)
            }
            guard !ran else { continue }
            let ev = HubEvent(
                id: "evt_missed_\(hostID)_\(day)", at: now, source: .hub, hostID: hostID, guestID: nil,
                customerID: host.customerID, type: "expected_backup_missed",
                severity: .warning, data: ["local_day": .string(day), "time_zone": .string(tz.identifier)])
            if try await store.transaction({ db in try await record(ev, in: db, ignoreDuplicate: true) }) { emitted.append(ev) }
        }
        return emitted
    }

    /// One pass of the applied-generation check: a box that keeps reporting but has not applied a
    /// published generation within `bound` seconds is stuck — one `generation_not_applied` per
    /// host and generation (the event id is derived from both, so a second checker's insert is ignored).
    @discardableResult
    public func checkAppliedGenerations(bound: TimeInterval = 900) async throws -> [HubEvent] {
        let now = clock.now()
        let cutoff = Int64(now.timeIntervalSince1970 - bound)
        let stuck = try await store.withDB { db in try await HostsTable.unappliedGenerations(publishedBefore: cutoff, in: db) }
        var emitted: [HubEvent] = []
        for host in stuck {
            let ev = HubEvent(
                id: "evt_unapplied_\(host.id)_\(host.desired)", at: now, source: .hub, hostID: host.id, guestID: nil, customerID: host.customerID,
                type: "generation_not_applied", severity: .warning,
                data: [
                    "generation": .int(host.desired), "applied_generation": host.applied.map { .int($0) } ?? .null,
                    "published_at": .int(host.publishedAt),
                ])
            if try await store.transaction({ db in try await record(ev, in: db, ignoreDuplicate: true) }) { emitted.append(ev) }
        }
        return emitted
    }
}
