import FelhomCore
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// Runs the liveness and backup-deadline checks on an interval, in exactly one hub process.
///
/// On PostgreSQL the replica holding the lease in `leader_leases` is the leader: it renews the
/// lease on each pass; if it dies (or cannot reach the database) the lease runs out after three
/// intervals and another replica takes over (``HubStore/withLeaderLock(key:ttl:_:)``). SQLite is
/// single-process, so that process is always the leader. Each transition is also written
/// conditionally, so a brief overlap of two leaders cannot emit an event twice.
public struct CheckerService: Service {
    public struct Settings: Sendable {
        public var interval: Duration = .seconds(60)
        public var thresholds = Liveness.Thresholds()
        public var backupDeadlineHour = 6
        /// Report history older than this is deleted.
        public var reportRetentionDays = 30
        /// A published generation a reporting box has not applied within this bound raises
        /// `generation_not_applied` (`apply_deadline_seconds`).
        public var applyDeadline: TimeInterval = 900
        /// Events are kept this long (`event_retention_days`).
        public var eventRetentionDays = 90
        /// Sent mail and the send log are kept this long (`mail_retention_days`).
        public var mailRetentionDays = 30
        /// `backup_overdue` after this many days without a completed backup.
        public var backupOverdueDays = 2
        /// `restore_test_overdue` after this many days without a passed restore test.
        public var restoreTestOverdueDays = 8
        public init() {}
    }

    static let leaderLockKey: Int64 = 7_265_482

    let hub: Hub
    let settings: Settings
    let logger: Logger
    /// Delivers queued mail on each pass (leader only, so no mail goes out twice).
    let mailer: Mailer?

    public init(hub: Hub, settings: Settings, logger: Logger, mailer: Mailer? = nil) {
        self.hub = hub
        self.settings = settings
        self.logger = logger
        self.mailer = mailer
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await hub.store.ready()  // the server migrates before it starts
            // The lease outlives three missed passes (at least 3 s): a replica killed -9 is replaced then.
            let ttl = max(3, Int((settings.interval * 3).components.seconds))
            try await hub.store.withLeaderLock(key: Self.leaderLockKey, ttl: ttl) { isLeader in
                let announced = LeaderFlag()
                try await loop(
                    ttl: ttl,
                    isLeader: {
                        let leader: Bool
                        do { leader = try await isLeader() } catch {
                            // A lease that cannot be renewed runs out: say so now instead of
                            // claiming to lead while another replica may take over.
                            if announced.value.withLock({ flag in
                                defer { flag = false }
                                return flag
                            }) {
                                logger.warning(
                                    "cannot renew the checkers' lease (this one stopped leading until the database answers)",
                                    metadata: ["error": "\(error)"])
                            }
                            throw error
                        }
                        let was = announced.value.withLock { flag in
                            defer { flag = leader }
                            return flag
                        }
                        if leader && !was && hub.store.kind == .postgres { logger.info("this hub now runs the checkers (leader)") }
                        if !leader && was { logger.warning("another replica holds the checkers' lease now (this one stopped leading)") }
                        return leader
                    })
            }
        }
    }

    private func loop(ttl: Int, isLeader: () async throws -> Bool) async throws {
        while !Task.isCancelled {
            let started = ContinuousClock.now
            do {
                if try await isLeader() {
                    let live = try await hub.checkLiveness(thresholds: settings.thresholds)
                    let missed =
                        try await hub.checkBackupDeadlines(deadlineHour: settings.backupDeadlineHour)
                        + hub.checkAppliedGenerations(bound: settings.applyDeadline)
                        + hub.checkBackupAges(backupDays: settings.backupOverdueDays, restoreTestDays: settings.restoreTestOverdueDays)
                    try await hub.pruneReports(olderThanDays: settings.reportRetentionDays)
                    try await hub.expireSignedOps()
                    try await hub.pruneHistory(eventDays: settings.eventRetentionDays, mailDays: settings.mailRetentionDays)
                    if let mailer {
                        let (sent, failed) = try await hub.deliverMail(using: mailer)
                        if sent + failed > 0 { logger.info("mail", metadata: ["sent": "\(sent)", "failed": "\(failed)"]) }
                    }
                    for event in live + missed {
                        logger.notice("event", metadata: ["type": "\(event.type)", "host": "\(event.hostID ?? "-")"])
                    }
                }
            } catch {
                logger.error("checker pass failed; retrying next interval", metadata: ["error": "\(error)"])
            }
            let took = ContinuousClock.now - started
            if hub.store.kind == .postgres, took > .seconds(ttl) {
                // The lease may have passed to another replica meanwhile (its writes are conditional,
                // so nothing is emitted twice); a pass this slow is worth knowing about.
                logger.warning(
                    "a checker pass took longer than the lease", metadata: ["seconds": "\(took.components.seconds)", "lease_seconds": "\(ttl)"])
            }
            // Cancellation (graceful shutdown) ends the loop cleanly instead of failing the service.
            do { try await Task.sleep(for: settings.interval) } catch { return }
        }
    }
}
