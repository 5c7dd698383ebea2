import FelhomCore
import FelhomHTTP
import Foundation
import Logging
import NIOSSL

/// The hub's configuration: a JSON file plus `FELHOM_HUB_*` environment overrides.
///
/// Each key is declared once (``CodingKeys``, with its JSON kind in ``kind(of:)``); the loader, the
/// unknown-key check and the environment variable names derive from that list. Defaults live in
/// ``Defaults`` and in the settings types they fill; ``resolve()`` validates everything before the
/// store is opened, so a typo never starts a hub with a default database.
public struct HubConfig: Decodable, Sendable {
    public var listen: String?
    public var database: String?
    public var operatorKey: Secret?
    public var pollIntervalSeconds: Int?
    public var checkIntervalSeconds: Int?
    public var staleAfterSeconds: Int?
    public var downAfterSeconds: Int?
    public var backupDeadlineHour: Int?
    public var reportRetentionDays: Int?
    public var reportHistoryHeartbeatSeconds: Int?
    public var operatorEmail: String?
    public var mailFrom: String?
    public var smtpHost: String?
    public var smtpPort: Int?
    public var smtpSecurity: String?
    public var smtpUsername: String?
    public var smtpPassword: Secret?
    public var smtpCAFile: String?
    public var smtpFingerprint: String?
    public var mailAPIURL: String?
    public var mailAPIKey: Secret?
    public var secureCookies: Bool?
    public var cloudflareAPIToken: Secret?
    public var cloudflareAPIURL: String?
    public var rateLimitReportsPerMinute: Double?
    public var rateLimitReportsBurst: Double?
    public var rateLimitEventsPerMinute: Double?
    public var rateLimitEventsBurst: Double?
    public var maxGuestsPerHost: Int?
    public var maxConnections: Int?
    public var idleTimeoutSeconds: Int?
    public var maxLongPollsPerKey: Int?
    public var trustedProxies: String?
    public var maxLongPollSeconds: Int?
    public var logLevel: String?
    public var applyDeadlineSeconds: Int?
    public var eventRetentionDays: Int?
    public var mailRetentionDays: Int?
    /// A host whose last `backup_completed` is older than this raises `backup_overdue` (default 2).
    public var backupOverdueDays: Int?
    /// A host whose last `restore_test_passed` is older than this raises `restore_test_overdue` (default 8).
    public var restoreTestOverdueDays: Int?
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// A key that may read `/metrics` and nothing else (for a Prometheus scraper; at least 24 characters).
    public var metricsKey: Secret?
    /// Base64 of 32 random bytes: the key guests' secret bundles are encrypted with at rest.
    public var secretsKey: Secret?
    /// Allocatable CPU per physical core (ADR 0012; default 4.0).
    public var cpuOvercommit: Double?
    /// Memory kept for the host itself (default 1024 MiB).
    public var reservedHostMemoryMB: Int?
    /// Memory kept free on top (default 512 MiB).
    public var memorySafetyBufferMB: Int?

    /// An empty configuration: every setting at its default.
    public init() {}

    public enum CodingKeys: String, CodingKey, CaseIterable, Sendable {
        case listen, database
        case operatorKey = "operator_key"
        case pollIntervalSeconds = "poll_interval_seconds"
        case checkIntervalSeconds = "check_interval_seconds"
        case staleAfterSeconds = "stale_after_seconds"
        case downAfterSeconds = "down_after_seconds"
        case backupDeadlineHour = "backup_deadline_hour"
        case reportRetentionDays = "report_retention_days"
        case reportHistoryHeartbeatSeconds = "report_history_heartbeat_seconds"
        case operatorEmail = "operator_email"
        case mailFrom = "mail_from"
        case smtpHost = "smtp_host"
        case smtpPort = "smtp_port"
        case smtpSecurity = "smtp_security"
        case smtpUsername = "smtp_username"
        case smtpPassword = "smtp_password"
        case smtpCAFile = "smtp_ca_file"
        case smtpFingerprint = "smtp_fingerprint"
        case mailAPIURL = "mail_api_url"
        case mailAPIKey = "mail_api_key"
        case secureCookies = "secure_cookies"
        case cloudflareAPIToken = "cloudflare_api_token"
        case cloudflareAPIURL = "cloudflare_api_url"
        case rateLimitReportsPerMinute = "rate_limit_reports_per_minute"
        case rateLimitReportsBurst = "rate_limit_reports_burst"
        case rateLimitEventsPerMinute = "rate_limit_events_per_minute"
        case rateLimitEventsBurst = "rate_limit_events_burst"
        case maxGuestsPerHost = "max_guests_per_host"
        case maxConnections = "max_connections"
        case idleTimeoutSeconds = "idle_timeout_seconds"
        case maxLongPollsPerKey = "max_long_polls_per_key"
        case trustedProxies = "trusted_proxies"
        case maxLongPollSeconds = "max_long_poll_seconds"
        case logLevel = "log_level"
        case applyDeadlineSeconds = "apply_deadline_seconds"
        case eventRetentionDays = "event_retention_days"
        case mailRetentionDays = "mail_retention_days"
        case backupOverdueDays = "backup_overdue_days"
        case restoreTestOverdueDays = "restore_test_overdue_days"
        case tlsCertificateFile = "tls_certificate_file"
        case tlsKeyFile = "tls_key_file"
        case metricsKey = "metrics_key"
        case secretsKey = "secrets_key"
        case cpuOvercommit = "cpu_overcommit"
        case reservedHostMemoryMB = "reserved_host_memory_mb"
        case memorySafetyBufferMB = "memory_safety_buffer_mb"
    }

    /// How an environment override of `key` is typed.
    static func kind(of key: CodingKeys) -> ConfigLoader.ConfigKey.Kind {
        switch key {
        case .pollIntervalSeconds, .checkIntervalSeconds, .staleAfterSeconds, .downAfterSeconds, .backupDeadlineHour, .reportRetentionDays,
            .reportHistoryHeartbeatSeconds,
            .smtpPort, .maxGuestsPerHost, .maxConnections, .idleTimeoutSeconds, .maxLongPollsPerKey, .maxLongPollSeconds,
            .applyDeadlineSeconds, .eventRetentionDays, .mailRetentionDays, .backupOverdueDays, .restoreTestOverdueDays,
            .reservedHostMemoryMB, .memorySafetyBufferMB:
            return .integer
        case .rateLimitReportsPerMinute, .rateLimitReportsBurst, .rateLimitEventsPerMinute, .rateLimitEventsBurst, .cpuOvercommit:
            return .number
        case .secureCookies:
            return .boolean
        default:
            return .string
        }
    }

    /// The loader: every key above, overridable as `FELHOM_HUB_<KEY>`.
    public static let loader = ConfigLoader(
        environmentPrefix: "FELHOM_HUB", keys: CodingKeys.allCases.map { .init($0.rawValue, kind(of: $0)) })

    /// Reads `file` (optional) and the environment.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> HubConfig {
        try loader.load(HubConfig.self, file: file, environment: environment)
    }

    /// Defaults of settings that are not fields of a settings type.
    public enum Defaults {
        public static let listen = "127.0.0.1:8443"
        public static let database = "sqlite:./felhom-hub.sqlite"
        public static let logLevel = Logger.Level.info
        /// A 10,000-box fleet's long-polls and reports (raise LimitNOFILE to match).
        public static let maxConnections = 20_000
        public static let idleTimeoutSeconds = 60
        public static let smtpSecurity = SMTPSecurity.starttls
    }
}

/// A validated hub configuration: everything ``buildApplication(config:dependencies:)`` needs.
public struct ResolvedHubConfig: Sendable {
    public var host: String
    public var port: Int
    public var databaseURL: String
    public var operatorKey: String
    public var logLevel: Logger.Level
    public var settings: Hub.Settings
    public var checks: CheckerService.Settings
    public var notifications: NotificationSettings
    public var mailer: Mailer?
    public var geo: CloudflareGeo?
    public var tls: TLSConfiguration?
    public var idleTimeoutSeconds: Int
    public var maxConnections: Int
}

extension HubConfig {
    /// A configuration error naming the setting (the message never holds a secret's value).
    private func invalid(_ message: String) -> ConfigError { ConfigError(code: .invalid, message: message) }

    /// Checks every setting and fills in defaults. Throws a ``ConfigError`` naming the key.
    public func resolve() throws -> ResolvedHubConfig {
        let listenText = listen ?? Defaults.listen
        guard let colon = listenText.lastIndex(of: ":"), let port = Int(listenText[listenText.index(after: colon)...]), (0...65535).contains(port)
        else {
            throw invalid("listen must be HOST:PORT (got '\(listenText)')")
        }
        guard let key = operatorKey?.reveal(), key.count >= 24 else {
            throw invalid("set FELHOM_HUB_OPERATOR_KEY (at least 24 characters) or operator_key in the config file")
        }
        // log_level: trace, debug (every request), info (default), notice, warning, error, critical.
        let level: Logger.Level
        if let text = logLevel {
            guard let parsed = Logger.Level(rawValue: text) else {
                throw invalid("log_level must be one of trace, debug, info, notice, warning, error, critical (got '\(text)')")
            }
            level = parsed
        } else {
            level = Defaults.logLevel
        }
        var settings = Hub.Settings()
        if let factor = cpuOvercommit {
            guard factor.isFinite, factor >= 0.1, factor <= 64 else { throw invalid("cpu_overcommit must be 0.1…64 (got \(factor))") }
            settings.capacity.cpuOvercommit = factor
        }
        if let mb = reservedHostMemoryMB {
            guard mb >= 0 else { throw invalid("reserved_host_memory_mb must not be negative") }
            settings.capacity.reservedHostMemoryMB = mb
        }
        if let mb = memorySafetyBufferMB {
            guard mb >= 0 else { throw invalid("memory_safety_buffer_mb must not be negative") }
            settings.capacity.memorySafetyBufferMB = mb
        }
        if let seconds = pollIntervalSeconds {
            guard seconds >= 1 else { throw invalid("poll_interval_seconds must be at least 1") }
            settings.pollIntervalSeconds = seconds
        }
        if let seconds = reportHistoryHeartbeatSeconds {
            guard (0...86400).contains(seconds) else { throw invalid("report_history_heartbeat_seconds must be 0…86400 (0: every report)") }
            settings.reportHistoryHeartbeatSeconds = seconds
        }
        // TLS: terminated by the hub itself (certificate and key files), or by a reverse proxy in
        // front (listed in trusted_proxies, comma-separated addresses). Either way dashboard cookies
        // are Secure unless secure_cookies says otherwise.
        var tls: TLSConfiguration?
        switch (tlsCertificateFile, tlsKeyFile) {
        case (nil, nil): break
        case (let cert?, let keyFile?):
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
                tls = TLSConfiguration.makeServerConfiguration(
                    certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem)))
            } catch {
                throw invalid("tls_certificate_file '\(cert)' / tls_key_file '\(keyFile)': cannot load them as PEM (\(error))")
            }
        default: throw invalid("set both tls_certificate_file and tls_key_file, or neither")
        }
        if let metrics = metricsKey?.reveal() {
            guard metrics.count >= 24, metrics != key else {
                throw invalid("metrics_key must be at least 24 characters and differ from operator_key")
            }
            settings.metricsKey = metricsKey
        }
        if let text = secretsKey?.reveal() {
            guard let bytes = Data(base64Encoded: text), bytes.count == 32 else {
                throw invalid("secrets_key must be base64 of 32 random bytes (openssl rand -base64 32)")
            }
            settings.secretsKey = Secret(text)
        }
        settings.trustedProxies = Set(
            (trustedProxies ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        settings.secureCookies = secureCookies ?? (tls != nil || !settings.trustedProxies.isEmpty)
        // Per-key limits (0 per minute turns a limit off, e.g. for load tests).
        func limit(_ perMinute: Double?, _ burst: Double?, _ base: RateLimiter.Limit?, _ name: String) throws -> RateLimiter.Limit {
            var result = base ?? .off
            if let perMinute { result.perMinute = perMinute }
            if let burst { result.burst = burst }
            guard result.perMinute >= 0, result.burst >= 0 else { throw invalid("rate_limit_\(name)_* must not be negative") }
            return result
        }
        let reports = try limit(rateLimitReportsPerMinute, rateLimitReportsBurst, settings.rateLimits[.hostReport], "reports")
        settings.rateLimits[.hostReport] = reports
        settings.rateLimits[.guestReport] = reports
        settings.rateLimits[.event] = try limit(rateLimitEventsPerMinute, rateLimitEventsBurst, settings.rateLimits[.event], "events")
        if let seconds = maxLongPollSeconds {
            guard (1...55).contains(seconds) else { throw invalid("max_long_poll_seconds must be 1…55") }
            settings.maxLongPollSeconds = seconds
        }
        if let count = maxLongPollsPerKey {
            guard count >= 1 else { throw invalid("max_long_polls_per_key must be at least 1") }
            settings.maxLongPollsPerKey = count
        }
        // Slow clients: an idle (or slowly sending) connection is closed after idle_timeout_seconds
        // (a long-poll in progress is not idle); at most max_connections are open at once.
        let connections = maxConnections ?? Defaults.maxConnections
        let idle = idleTimeoutSeconds ?? Defaults.idleTimeoutSeconds
        guard connections >= 1, idle >= 1 else { throw invalid("max_connections and idle_timeout_seconds must be at least 1") }
        if let count = maxGuestsPerHost {
            guard count >= 1 else { throw invalid("max_guests_per_host must be at least 1") }
            settings.maxGuestsPerHost = count
        }
        var mail = NotificationSettings()
        mail.operatorEmail = operatorEmail
        if let from = mailFrom { mail.from = from }
        var checks = CheckerService.Settings()
        if let seconds = checkIntervalSeconds { checks.interval = .seconds(max(1, seconds)) }
        if let seconds = staleAfterSeconds { checks.thresholds.staleAfter = TimeInterval(seconds) }
        if let seconds = downAfterSeconds { checks.thresholds.downAfter = TimeInterval(seconds) }
        if let hour = backupDeadlineHour {
            guard (0...23).contains(hour) else { throw invalid("backup_deadline_hour must be 0…23") }
            checks.backupDeadlineHour = hour
        }
        for (name, value) in [
            ("report_retention_days", reportRetentionDays), ("event_retention_days", eventRetentionDays), ("mail_retention_days", mailRetentionDays),
        ] {
            if let days = value, days < 1 { throw invalid("\(name) must be at least 1") }
        }
        if let days = reportRetentionDays { checks.reportRetentionDays = days }
        if let days = eventRetentionDays { checks.eventRetentionDays = days }
        if let days = mailRetentionDays { checks.mailRetentionDays = days }
        for (name, value) in [("backup_overdue_days", backupOverdueDays), ("restore_test_overdue_days", restoreTestOverdueDays)] {
            if let days = value, !(1...365).contains(days) { throw invalid("\(name) must be 1…365") }
        }
        if let days = backupOverdueDays { checks.backupOverdueDays = days }
        if let days = restoreTestOverdueDays { checks.restoreTestOverdueDays = days }
        if let seconds = applyDeadlineSeconds {
            guard seconds >= 60 else { throw invalid("apply_deadline_seconds must be at least 60") }
            checks.applyDeadline = TimeInterval(seconds)
        }
        guard checks.thresholds.downAfter > checks.thresholds.staleAfter else {
            throw invalid("down_after_seconds must be larger than stale_after_seconds")
        }
        var geo: CloudflareGeo?
        if let token = cloudflareAPIToken {
            do { geo = try CloudflareGeo(token: token, baseURL: cloudflareAPIURL ?? CloudflareGeo.defaultBaseURL) } catch {
                throw invalid("cloudflare_api_token / cloudflare_api_url: \(error)")
            }
        }
        return ResolvedHubConfig(
            host: String(listenText[..<colon]), port: port, databaseURL: database ?? Defaults.database, operatorKey: key, logLevel: level,
            settings: settings, checks: checks, notifications: mail, mailer: try mailer(), geo: geo, tls: tls,
            idleTimeoutSeconds: idle, maxConnections: connections)
    }

    /// The configured mail transport: SMTP, an HTTP mail API, or none (mail stays queued).
    func mailer() throws -> Mailer? {
        if smtpHost != nil, mailAPIURL != nil {
            throw invalid("set either smtp_host or mail_api_url, not both")
        }
        if let url = mailAPIURL {
            guard let key = mailAPIKey else { throw invalid("mail_api_url is set but mail_api_key is missing") }
            do { return HTTPMailAPIMailer(settings: try MailAPISettings(url: url, apiKey: key)) } catch {
                throw invalid("mail_api_url: \(error)")
            }
        }
        guard let host = smtpHost else { return nil }
        let securityText = smtpSecurity ?? Defaults.smtpSecurity.rawValue
        guard let security = SMTPSecurity(rawValue: securityText) else {
            throw invalid("smtp_security must be none, starttls or tls (got '\(securityText)')")
        }
        if security == .none, !HTTPEndpoint.isLoopback(host) {
            throw invalid("smtp_security none (clear text) is allowed only for a relay on loopback (got smtp_host '\(host)')")
        }
        let port = smtpPort ?? (security == .tls ? 465 : security == .starttls ? 587 : 25)
        guard (1...65535).contains(port) else { throw invalid("smtp_port must be 1…65535") }
        var trust = TLSTrust.systemDefault
        if let fingerprint = smtpFingerprint {
            do { trust = .pinnedLeafSHA256(try CertificateFingerprint(parsing: fingerprint)) } catch {
                throw invalid("smtp_fingerprint: \(error)")
            }
        } else if let caFile = smtpCAFile {
            trust = .caFile(caFile)
        }
        if (smtpUsername == nil) != (smtpPassword == nil) {
            throw invalid("set both smtp_username and smtp_password, or neither")
        }
        if smtpPassword != nil, security == .none {
            throw invalid("smtp_password needs smtp_security starttls or tls: credentials are never sent in clear text")
        }
        return SMTPMailer(
            settings: .init(
                host: host, port: port, security: security, trust: trust, username: smtpUsername, password: smtpPassword))
    }
}
