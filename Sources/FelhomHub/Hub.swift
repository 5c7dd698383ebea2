import Crypto
import FelhomAPI
import FelhomCore
import Foundation
import Logging
import SQLKit
import Synchronization

/// The hub's core operations, independent of HTTP: customers, hosts, guests, reports, events.
/// Every query goes through ``HubStore``; every authorization decision takes a ``Principal``.
public struct Hub: Sendable {
    /// Hub settings.
    public struct Settings: Sendable {
        /// Poll interval handed to agents.
        public var pollIntervalSeconds = 300
        /// A host report whose state is unchanged (everything but the sampled metrics: time, CPU,
        /// memory and disk use, uptime, load, hardware sensors) adds a history row only this often;
        /// the latest report is always kept. 0: a history row for every report.
        public var reportHistoryHeartbeatSeconds = 900
        /// Longest long-poll wait a client may ask for.
        public var maxLongPollSeconds = 55
        /// Mark the dashboard's session cookie `Secure` (the hub is served over TLS, directly or behind a proxy).
        public var secureCookies = false
        /// Per-key limits (token buckets). Defaults: host reports 12/min (burst 12), guest reports
        /// 12/min (burst 12), events 60/min (burst 120); the operator key is never limited.
        public var rateLimits: [RateLimiter.Kind: RateLimiter.Limit] = [
            .hostReport: .init(perMinute: 12, burst: 12), .guestReport: .init(perMinute: 12, burst: 12),
            .event: .init(perMinute: 60, burst: 120),
        ]
        /// Most guests one host may have on the hub.
        public var maxGuestsPerHost = 500
        /// Most long-polls one host key may hold waiting at once.
        public var maxLongPollsPerKey = 2
        /// Reverse proxies whose `X-Forwarded-For` is believed (their socket IP addresses).
        public var trustedProxies: Set<String> = []
        /// A key that may read `/metrics` only (`metrics_key`); nil: the operator key only.
        public var metricsKey: Secret?
        /// Base64 of the 32-byte key secret bundles are encrypted with at rest (`secrets_key`);
        /// nil: the hub stores no secret bundles.
        public var secretsKey: Secret?
        /// How a host's allocatable CPU and memory are computed (ADR 0012).
        public var capacity = Placement.Policy()
        public init() {}
    }

    public let store: HubStore
    public let keys: KeyAuthority
    public let settings: Settings
    let clock: WallClock
    let generations: GenerationWatch
    /// This process's counters.
    public let metrics: HubMetrics
    /// Mail rules.
    public let notifications: NotificationSettings
    /// Cloudflare geo rules; `nil` when the hub has no Cloudflare token.
    public var geo: CloudflareGeo?
    /// Where the API, store and mail paths log (with request and subject metadata).
    public var logger = Logger(label: "felhom.hub")
    /// Per-key rate limits.
    public let limiter: RateLimiter
    /// Group commit of host reports: many reports share one commit. SQLite: one lane (one
    /// connection). PostgreSQL: ``reportLanes`` lanes, hosts partitioned among them, each batch one
    /// statement; the lanes commit concurrently.
    let reportWriter: GroupCommitLanes<ReportWrite, HostsTable.ReportRecorded?>
    /// PostgreSQL's report lanes: a quarter of the pool's connections, the rest stay free for
    /// long-polls, the dashboard and the checkers.
    static let reportLanes = 4

    public init(
        store: HubStore, operatorKey: String?, settings: Settings = Settings(), clock: WallClock = SystemWallClock(),
        notifications: NotificationSettings = NotificationSettings()
    ) {
        self.notifications = notifications
        self.store = store
        self.keys = KeyAuthority(store: store, operatorKey: operatorKey, metricsKey: settings.metricsKey?.reveal())
        self.settings = settings
        self.clock = clock
        self.generations = GenerationWatch()
        self.limiter = RateLimiter(limits: settings.rateLimits, clock: clock)
        self.metrics = HubMetrics()
        switch store.kind {
        case .sqlite:
            self.reportWriter = GroupCommitLanes(lanes: 1, key: \.hostID) { batch in
                try await store.transaction { db in try await Hub.writeReports(batch, in: db) }
            }
        case .postgres:
            // After a lost connection the batch may have committed: its callers get the error (the
            // agents send again) rather than a second copy of each report.
            self.reportWriter = GroupCommitLanes(
                lanes: Self.reportLanes, key: \.hostID, retryAlone: { ($0 as? StoreError)?.refusedByServer ?? false },
                batch: { batch in try await Hub.writeReports(batch, on: store) })
        }
    }

    var now: Int64 { Int64(clock.now().timeIntervalSince1970) }

    /// Takes one request of `kind` from the key's bucket, or throws 429 with `Retry-After`.
    /// Called by the routes before they read the body.
    public func admit(_ kind: RateLimiter.Kind, by principal: Principal) throws {
        try limiter.take(kind, for: principal)
    }

    // MARK: - Customers

    public func createCustomer(_ c: NewCustomer, by principal: Principal) async throws -> String {
        guard principal == .operator else { throw HubError.forbidden("create customers") }
        try Validate.text(c.name, "$.name", max: 200)
        guard Pattern.isEmail(c.email) else { throw HubError.badRequest("must be an e-mail address like name@example.hu", path: "$.email") }
        guard Pattern.whole(c.domain, #"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+"#) else {
            throw HubError.badRequest("must be a lower-case domain name like example.hu", path: "$.domain")
        }
        let tz = c.timezone ?? "Europe/Budapest"
        guard TimeZone.knownTimeZoneIdentifiers.contains(tz) else {
            throw HubError.badRequest("unknown time zone '\(tz)'; use an IANA name like Europe/Budapest", path: "$.timezone")
        }
        let lang = c.language ?? "hu"
        guard ["hu", "en"].contains(lang) else { throw HubError.badRequest("must be hu or en", path: "$.language") }
        let id = Ids.make("cus")
        let now = self.now
        do {
            try await store.withDB { db in
                try await CustomersTable.insert(
                    .init(id: id, name: c.name, email: c.email, domain: c.domain, timezone: tz, language: lang, createdAt: now), in: db)
            }
        } catch let error as StoreError where error.code == .conflict {
            // Domains are unique: retrieval and geo rules find the customer by it.
            throw HubError(.conflict, "conflict", "the domain \(c.domain) already belongs to another customer", path: "$.domain")
        }
        return id
    }

    public func issueCustomerKey(customerID: String, by principal: Principal) async throws -> String {
        guard principal == .operator else { throw HubError.forbidden("issue customer keys") }
        guard try await customerExists(customerID) else { throw HubError.notFound("customer \(customerID)") }
        return try await store.transaction { db in try await keys.issue(kind: "customer", subjectID: customerID, customerID: customerID, in: db) }
    }

    func customerExists(_ id: String) async throws -> Bool {
        try await store.withDB { db in try await CustomersTable.exists(id, in: db) }
    }

    // MARK: - Hosts and guests

    public func createHost(customerID: String, name: String, by principal: Principal) async throws -> (id: String, apiKey: String) {
        guard principal == .operator else { throw HubError.forbidden("create hosts") }
        try Validate.text(name, "$.name", max: 100)
        guard try await customerExists(customerID) else {
            throw HubError(.notFound, "not_found", "customer \(customerID) not found", path: "$.customer_id")
        }
        let id = Ids.make("hst")
        let now = self.now
        let key = try await store.transaction { db in
            try await HostsTable.insert(id: id, customerID: customerID, name: name, at: now, in: db)
            return try await keys.issue(kind: "host", subjectID: id, customerID: customerID, in: db)
        }
        return (id, key)
    }

    func hostRow(_ id: String) async throws -> HostView? {
        let now = self.now
        return try await store.withDB { db in try await HostsTable.find(id, now: now, in: db) }
    }

    public func host(_ id: String, by principal: Principal) async throws -> HostView {
        guard let host = try await hostRow(id), principal.canReach(customerID: host.customerID) else { throw HubError.notFound("host \(id)") }
        return host
    }

    public func hosts(by principal: Principal) async throws -> [HostView] {
        if case .guest = principal { throw HubError.forbidden("list hosts") }
        let now = self.now
        return try await store.withDB { db in try await HostsTable.list(customerScope: principal.customerScope, now: now, in: db) }
    }

    /// Creates a guest and issues its key (shown once).
    ///
    /// With an `idempotencyKey` (the agent sends `vmid-<vmid>`), a repeated request — an agent that
    /// crashed after the hub minted the key and before it stored it — does not create a second
    /// guest with a second, ownerless, valid key: the same guest gets a fresh key and every earlier
    /// key of it is revoked in the same transaction.
    public func createGuest(hostID: String, name: String, idempotencyKey: String? = nil, by principal: Principal) async throws -> (
        id: String, apiKey: String
    ) {
        switch principal {
        case .operator: break
        case .host(let h, _) where h == hostID: break
        default: throw HubError.forbidden("create guests on host \(hostID)")
        }
        try Validate.text(name, "$.name", max: 100)
        if let key = idempotencyKey {
            guard Pattern.whole(key, #"[A-Za-z0-9_.:-]{1,128}"#) else {
                throw HubError.badRequest("must be 1–128 characters of A-Z a-z 0-9 _ . : -", path: "$.idempotency_key")
            }
        }
        guard let host = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
        let now = self.now
        let cap = settings.maxGuestsPerHost
        let result = try await store.transaction { db -> (String, String, Bool) in
            if let key = idempotencyKey, let existing = try await GuestsTable.byIdempotencyKey(hostID: hostID, key: key, in: db) {
                try await KeysTable.revokeAll(subjectID: existing, at: now, in: db)
                try await GuestsTable.rename(existing, to: name, in: db)
                return (existing, try await keys.issue(kind: "guest", subjectID: existing, customerID: host.customerID, in: db), true)
            }
            let count = try await GuestsTable.count(onHost: hostID, in: db)
            guard count < cap else {
                throw HubError(.conflict, "guest_limit", "host \(hostID) already has \(count) guests (the most a host may have is \(cap))")
            }
            let id = Ids.make("gst")
            try await GuestsTable.insert(id: id, hostID: hostID, name: name, at: now, idempotencyKey: idempotencyKey, in: db)
            return (id, try await keys.issue(kind: "guest", subjectID: id, customerID: host.customerID, in: db), false)
        }
        if result.2 { keys.cache.removeAll() }  // the revoked key stops working here at once
        return (result.0, result.1)
    }

    // MARK: - Reports and control

    func envelope(_ h: HostView) async throws -> ControlEnvelope {
        let pending = h.blocked ? false : try await store.withDB { db in try await hasSignedOps(hostID: h.id, in: db) }
        return ControlEnvelope(
            pollIntervalSeconds: settings.pollIntervalSeconds, blocked: h.blocked, desiredGeneration: h.desiredGeneration,
            hasSignedOps: pending)
    }

    /// Decodes a report; a contract violation is counted and answered with 400 naming the path.
    private func checked<R>(_ decode: () throws -> R) throws -> R {
        do { return try decode() } catch let error as ContractError {
            metrics.reportsRejected.increment()
            throw HubError.badRequest(error.message, path: error.path)
        }
    }

    /// Stores a host report (latest, and history when its state changed or the heartbeat is due)
    /// and answers with the control envelope.
    public func ingestHostReport(_ body: Data, by principal: Principal) async throws -> ControlEnvelope {
        guard case .host(let hostID, _) = principal else { throw HubError.forbidden("post host reports (host keys only)") }
        let report = try checked { try HostReport.decode(body) }
        let encoded = report.encoded()
        let item = ReportWrite(
            hostID: hostID, text: String(decoding: encoded, as: UTF8.self), now: self.now, appliedGeneration: report.appliedGeneration,
            stateHash: ReportDigest.state(ofEncoded: encoded),
            heartbeat: Int64(settings.reportHistoryHeartbeatSeconds))
        let written = try await reportWriter.submit(item)
        guard let written else { throw HubError.notFound("host \(hostID)") }
        metrics.reportsAccepted.increment()
        return ControlEnvelope(
            pollIntervalSeconds: settings.pollIntervalSeconds, blocked: written.blocked, desiredGeneration: written.generation,
            hasSignedOps: !written.blocked && written.pendingOps)
    }

    /// One host report to store.
    struct ReportWrite: Sendable {
        var hostID: String
        var text: String
        var now: Int64
        var appliedGeneration: Int64?
        /// ``ReportDigest/state(ofEncoded:)`` of the report.
        var stateHash: String
        /// `report_history_heartbeat_seconds`.
        var heartbeat: Int64
    }

    /// PostgreSQL: a batch of reports (each host once) in one statement, committed on its own;
    /// answers in the batch's order, `nil` for a host that does not exist.
    static func writeReports(_ batch: [ReportWrite], on store: HubStore) async throws -> [HostsTable.ReportRecorded?] {
        var out = [HostsTable.ReportRecorded?](repeating: nil, count: batch.count)
        for row in try await store.executePrepared(ReportsTable.HostReportBatchWrite(reports: batch)) {
            guard (1...Int64(batch.count)).contains(row.position) else {
                throw StoreError(code: .unavailable, message: "a report batch answered position \(row.position) of \(batch.count)")
            }
            out[Int(row.position) - 1] = row.recorded
        }
        return out
    }

    /// A batch of reports inside the caller's transaction (SQLite's group commit): each host row
    /// in order (so a host twice in a batch sees its own first report), then the history rows due
    /// and the latest reports in one multi-row statement each. `nil` for a host that does not
    /// exist. A blocked host (or one of a suspended customer) is still seen alive, but its report is
    /// not stored and it is told only that it is blocked.
    static func writeReports(_ batch: [ReportWrite], in db: any SQLDatabase) async throws -> [HostsTable.ReportRecorded?] {
        var out: [HostsTable.ReportRecorded?] = []
        var history: [ReportsTable.HostReportRow] = []
        var latest: [ReportsTable.HostReportRow] = []
        for w in batch {
            let host = try await HostsTable.recordReport(
                hostID: w.hostID, at: w.now, appliedGeneration: w.appliedGeneration, stateHash: w.stateHash, heartbeat: w.heartbeat, in: db)
            out.append(host)
            guard let host, !host.blocked else { continue }
            let row = ReportsTable.HostReportRow(hostID: w.hostID, at: w.now, body: w.text)
            if host.historyDue { history.append(row) }
            latest.removeAll { $0.hostID == w.hostID }  // the later report of a host wins
            latest.append(row)
        }
        try await ReportsTable.insertHostReports(history: history, latest: latest, in: db)
        return out
    }

    /// Stores a guest (controller) report and answers with its host's control envelope.
    public func ingestGuestReport(_ body: Data, by principal: Principal) async throws -> ControlEnvelope {
        guard case .guest(let guestID, let hostID, _) = principal else { throw HubError.forbidden("post guest reports (guest keys only)") }
        let report = try checked { try GuestReport.decode(body) }
        let text = String(decoding: report.encoded(), as: UTF8.self)
        let now = self.now
        try await store.transaction { db in try await ReportsTable.insertGuestReport(guestID: guestID, body: text, at: now, in: db) }
        metrics.reportsAccepted.increment()
        guard let host = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
        return try await envelope(host)
    }

    /// Deletes report history older than `days` (the latest report per host and guest is kept apart).
    @discardableResult
    public func pruneReports(olderThanDays days: Int) async throws -> Int {
        let cutoff = now - Int64(days) * 86_400
        return try await store.withDB { db in try await ReportsTable.pruneHistory(olderThan: cutoff, in: db) }
    }

    /// Deletes what only needs to be kept for a while, so no table grows without bound: events older
    /// than `eventDays`, sent mail and the send log older than `mailDays` (pending mail is never
    /// dropped), retrieval attempts and sign-in failures older than a day, expired dashboard
    /// sessions. Returns rows deleted per table.
    @discardableResult
    public func pruneHistory(eventDays: Int, mailDays: Int) async throws -> [String: Int] {
        let now = self.now
        let events = now - Int64(eventDays) * 86_400
        let mail = now - Int64(mailDays) * 86_400
        let day = now - 86_400
        return try await store.withDB { db in try await RetentionTable.prune(events: events, mail: mail, attempts: day, now: now, in: db) }
    }

    /// The control envelope, at once if the host's generation is past `after`, else after waiting
    /// (at most `wait` seconds) for it to move.
    ///
    /// A key may hold at most `maxLongPollsPerKey` waiting polls (more answer 429). Waiting costs no
    /// query: a publish, a signature or a block in this process wakes the host's polls at once, and
    /// one shared watcher (one query a second for all waiting hosts together) wakes them for
    /// changes made by another replica.
    public func control(after: Int64?, wait: Int, by principal: Principal) async throws -> ControlEnvelope {
        guard case .host(let hostID, _) = principal else { throw HubError.forbidden("poll control (host keys only)") }
        let deadline = ContinuousClock.now + .seconds(min(max(wait, 0), settings.maxLongPollSeconds))
        var slot = false
        defer { if slot { generations.releaseSlot(hostID) } }
        while true {
            // Taken before the row is read: a notify between the read and the park is not lost.
            let epoch = generations.epoch(hostID)
            guard let host = try await hostRow(hostID) else { throw HubError.notFound("host \(hostID)") }
            let env = try await envelope(host)
            if after.map({ host.desiredGeneration > $0 }) ?? true || env.blocked || ContinuousClock.now >= deadline { return env }
            if env.hasSignedOps {
                let now = self.now
                if try await store.withDB({ db in try await SignedOpsTable.hasUndelivered(hostID: hostID, now: now, in: db) }) { return env }
            }
            if !slot {
                guard generations.takeSlot(hostID, max: settings.maxLongPollsPerKey) else {
                    throw HubError.tooManyRequests(retryAfter: 1, what: "concurrent long-polls (at most \(settings.maxLongPollsPerKey))")
                }
                slot = true
                generations.startWatching(store: store) { [self] ids in try await self.controlFingerprints(hostIDs: ids) }
            }
            await generations.wait(hostID: hostID, upTo: deadline - ContinuousClock.now, since: epoch)
        }
    }

    /// What a waiting poll cares about, per host (generation, blocked, pending signed ops), in one query.
    func controlFingerprints(hostIDs: [String]) async throws -> [String: String] {
        guard !hostIDs.isEmpty else { return [:] }
        let now = self.now
        return try await store.withDB { db in try await HostsTable.controlFingerprints(hostIDs: hostIDs, now: now, in: db) }
    }

    /// Bumps a host's desired generation and wakes its long-polls (used by desired-state publishing).
    public func bumpGeneration(hostID: String) async throws -> Int64 {
        let gen = try await store.transaction { db in
            guard let generation = try await HostsTable.bumpGeneration(hostID: hostID, in: db) else { throw HubError.notFound("host \(hostID)") }
            return generation
        }
        generations.notify(hostID: hostID)
        return gen
    }

    // MARK: - Events

    public func postEvent(_ e: NewEvent, by principal: Principal) async throws -> HubEvent {
        let source: HubEvent.Source
        let hostID: String?
        let guestID: String?
        let customerID: String?
        switch principal {
        case .host(let h, let c):
            source = .host
            hostID = h
            guestID = e.guestID
            customerID = c
        case .guest(let g, let h, let c):
            source = .guest
            hostID = h
            guestID = g
            customerID = c
        case .operator:
            source = .hub
            hostID = nil
            guestID = e.guestID
            customerID = nil
        case .customer:
            throw HubError.forbidden("post events")
        }
        guard Pattern.whole(e.type, #"[a-z][a-z0-9_]{1,63}"#) else {
            throw HubError.badRequest("must be a lower-case snake_case event type", path: "$.type")
        }
        let severity = try EventPolicy.admit(type: e.type, severity: e.severity, source: source)
        if let guest = guestID, !Pattern.whole(guest, #"[A-Za-z0-9_-]{1,64}"#) {
            throw HubError.badRequest("must be 1–64 characters of [A-Za-z0-9_-]", path: "$.guest_id")
        }
        var data: [String: JSONValue] = [:]
        if case .object(let o)? = e.data { data = o } else if e.data != nil { throw HubError.badRequest("must be an object", path: "$.data") }
        guard JSONValue.object(data).serialized().count <= EventPolicy.maxDataBytes else {
            throw HubError(.contentTooLarge, "too_large", "event data larger than \(EventPolicy.maxDataBytes) bytes", path: "$.data")
        }
        // The hub's receive time is the event's time (checks depend on it); a client's claim is kept as data.
        if let claimed = e.at, source != .hub { data["client_at"] = .string(claimed.formatted(.iso8601)) }
        let at = source == .hub ? (e.at ?? clock.now()) : clock.now()
        var id = Ids.make("evt")
        if let key = e.idempotencyKey {
            guard Pattern.whole(key, #"[A-Za-z0-9_.:#@-]{1,128}"#) else {
                throw HubError.badRequest("must be 1–128 characters of [A-Za-z0-9_.:#@-]", path: "$.idempotency_key")
            }
            id = Self.idempotentEventID(poster: principal, key: key)
        }
        let ev = HubEvent(
            id: id, at: at, source: source, hostID: hostID, guestID: guestID,
            customerID: customerID, type: e.type, severity: severity, data: .object(data))
        guard e.idempotencyKey != nil else {
            try await insertEvent(ev)
            metrics.eventsRecorded.increment()
            return ev
        }
        // Said before: the first one stands (no second row, no second mail).
        let stored = try await store.transaction { db -> HubEvent? in
            if try await record(ev, in: db, ignoreDuplicate: true) { return nil }
            return try await EventsTable.get(ev.id, in: db)
        }
        if let stored { return stored }
        metrics.eventsRecorded.increment()
        return ev
    }

    /// The id of an event posted with an idempotency key: the same poster and key give the same
    /// id, and no other poster's key can (the key is scoped to the principal that posts it).
    static func idempotentEventID(poster: Principal, key: String) -> String {
        let scope: String
        switch poster {
        case .host(let h, _): scope = "host:" + h
        case .guest(let g, let h, _): scope = "guest:" + h + "/" + g
        case .operator: scope = "operator"
        case .customer(let c): scope = "customer:" + c
        }
        let digest = SHA256.hash(data: Data((scope + "\n" + key).utf8))
        return "evt_k" + Hex.encode(digest.prefix(16))
    }

    func insertEvent(_ ev: HubEvent) async throws {
        _ = try await store.transaction { db in try await record(ev, in: db) }
    }

    public func events(hostID: String?, type: String?, since: Date?, limit: Int, by principal: Principal) async throws -> [HubEvent] {
        if case .guest = principal { throw HubError.forbidden("list events") }
        var hostFilter = hostID
        if case .host(let own, _) = principal {
            // A host key sees its own host's events only (not its customer's other boxes).
            if let asked = hostID, asked != own { return [] }
            hostFilter = own
        }
        let hostID = hostFilter
        let sinceEpoch = since.map { Int64($0.timeIntervalSince1970) }
        return try await store.withDB { db in
            try await EventsTable.list(
                customerScope: principal.customerScope, hostID: hostID, type: type, since: sinceEpoch, limit: min(max(limit, 1), 1000), in: db)
        }
    }
}

/// Input checks shared by the handlers.
enum Validate {
    static func text(_ s: String, _ path: String, max: Int) throws {
        let trimmed = s.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw HubError.badRequest("must not be empty", path: path) }
        guard s.count <= max else { throw HubError.badRequest("must be at most \(max) characters", path: path) }
        guard !s.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw HubError.badRequest("must not contain control characters", path: path)
        }
    }
}

/// Wakes a host's long-polls: at once for changes made in this process (`notify`), and through
/// one shared watcher for changes another replica made: while anything waits, it runs one query a
/// second for all waiting hosts together and wakes those whose state moved.
///
/// No wake-up is lost between a poll's read of the host and its park: the poll takes the host's
/// ``epoch(_:)`` before reading, and a park whose epoch has moved returns at once. The watcher
/// keeps what it saw of each host across polls and wakes a host it sees for the first time, so a
/// change another replica made just before the first look is not missed either (at worst one
/// extra read).
final class GenerationWatch: Sendable {
    private struct State {
        var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
        /// Notifications per host so far (only hosts ever notified are listed).
        var epochs: [String: UInt64] = [:]
        /// Waits whose timer fired before they were parked: parking them returns at once.
        var abandoned: Set<UUID> = []
        /// Waits whose park ran, parked or returning at once (until cleaned up).
        var parked: Set<UUID> = []
        /// Long-polls holding a slot, per host key.
        var slots: [String: Int] = [:]
        var watching = false
    }
    private let state = Mutex(State())

    init() {}

    func notify(hostID: String) {
        let woken = state.withLock { s in
            s.epochs[hostID, default: 0] &+= 1
            return s.waiters.removeValue(forKey: hostID) ?? [:]
        }
        for (_, c) in woken { c.resume() }
    }

    /// The host's notification count: pass it to ``wait(hostID:upTo:since:)`` after reading the host.
    func epoch(_ hostID: String) -> UInt64 { state.withLock { $0.epochs[hostID] ?? 0 } }

    /// Takes one of the host key's long-poll slots; false when it already holds `max`.
    func takeSlot(_ hostID: String, max: Int) -> Bool {
        state.withLock { s in
            guard s.slots[hostID, default: 0] < max else { return false }
            s.slots[hostID, default: 0] += 1
            return true
        }
    }

    func releaseSlot(_ hostID: String) {
        state.withLock { s in
            s.slots[hostID, default: 1] -= 1
            if s.slots[hostID] == 0 { s.slots[hostID] = nil }
        }
    }

    /// Starts the shared watcher unless it runs; it stops by itself when nothing waits.
    func startWatching(store: HubStore, fingerprints: @escaping @Sendable ([String]) async throws -> [String: String]) {
        let start = state.withLock { s -> Bool in
            guard !s.watching else { return false }
            s.watching = true
            return true
        }
        guard start else { return }
        Task { [self] in
            var last: [String: String] = [:]
            while true {
                let hosts = state.withLock { s -> [String]? in
                    let ids = Array(s.slots.keys)
                    if ids.isEmpty { s.watching = false }
                    return ids.isEmpty ? nil : ids
                }
                guard let hosts else { return }
                if let now = try? await fingerprints(hosts) {
                    for (id, fp) in now where last[id] != fp { notify(hostID: id) }
                    last.merge(now) { _, new in new }
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Returns when the host is notified or `timeout` passes, whichever is first; at once if it
    /// was notified since `epoch` (taken with ``epoch(_:)``).
    func wait(hostID: String, upTo timeout: Duration, since epoch: UInt64? = nil) async {
        guard timeout > .zero else { return }
        let id = UUID()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.park(hostID: hostID, id: id, since: epoch) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            self.cancel(hostID: hostID, id: id)
        }
    }

    /// Number of parked waits (for tests).
    var parkedCount: Int { state.withLock { $0.waiters.values.reduce(0) { $0 + $1.count } } }

    /// Ids the watch still holds for waits (parked, or marked to return at once): zero once every
    /// wait has returned (for tests; anything left is memory that grows with every poll).
    var bookkeepingCount: Int {
        state.withLock { s in s.waiters.values.reduce(0) { $0 + $1.count } + s.abandoned.count + s.parked.count }
    }

    private func park(hostID: String, id: UUID, since epoch: UInt64?) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.abandoned.remove(id) != nil { return true }
                // `parked` says this park ran, so ``cancel(hostID:id:)`` does not mark it abandoned
                // (an id nobody would remove: memory that grew with every such poll).
                s.parked.insert(id)
                if let epoch, s.epochs[hostID] ?? 0 != epoch { return true }  // notified since the host was read
                s.waiters[hostID, default: [:]][id] = c
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    private func cancel(hostID: String, id: UUID) {
        let continuation = state.withLock { s -> CheckedContinuation<Void, Never>? in
            let wasParked = s.parked.remove(id) != nil
            if let continuation = s.waiters[hostID]?.removeValue(forKey: id) {
                if s.waiters[hostID]?.isEmpty == true { s.waiters[hostID] = nil }
                return continuation
            }
            // The timer won before `park` ran: make the late park return immediately.
            if !wasParked { s.abandoned.insert(id) }
            return nil
        }
        continuation?.resume()
    }
}
