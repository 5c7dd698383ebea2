import ArgumentParser
import FelhomCore
import FelhomHTTP
import FelhomHub
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging

@main
struct FelhomHubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "felhom-hub", abstract: "The Felhom hub (operator's control plane).", subcommands: [Serve.self])
}

/// Hub configuration: a JSON file plus `FELHOM_HUB_*` environment overrides.
struct HubConfig: Decodable {
    var listen: String?
    var database: String?
    var operatorKey: Secret?
    var pollIntervalSeconds: Int?
    var checkIntervalSeconds: Int?
    var staleAfterSeconds: Int?
    var downAfterSeconds: Int?
    var backupDeadlineHour: Int?
    var reportRetentionDays: Int?
    var operatorEmail: String?
    var mailFrom: String?
    var smtpHost: String?
    var smtpPort: Int?
    var smtpSecurity: String?
    var smtpUsername: String?
    var smtpPassword: Secret?
    var smtpCAFile: String?
    var smtpFingerprint: String?
    var mailAPIURL: String?
    var mailAPIKey: Secret?
    var secureCookies: Bool?
    var cloudflareAPIToken: Secret?
    var cloudflareAPIURL: String?
    var rateLimitReportsPerMinute: Double?
    var rateLimitReportsBurst: Double?
    var rateLimitEventsPerMinute: Double?
    var rateLimitEventsBurst: Double?
    var maxGuestsPerHost: Int?
    var maxConnections: Int?
    var idleTimeoutSeconds: Int?
    var maxLongPollsPerKey: Int?
    var trustedProxies: String?
    var maxLongPollSeconds: Int?
    var logLevel: String?
    var applyDeadlineSeconds: Int?
    var eventRetentionDays: Int?
    var mailRetentionDays: Int?
    var tlsCertificateFile: String?
    var tlsKeyFile: String?

    enum CodingKeys: String, CodingKey {
        case listen, database
        case operatorKey = "operator_key"
        case pollIntervalSeconds = "poll_interval_seconds"
        case checkIntervalSeconds = "check_interval_seconds"
        case staleAfterSeconds = "stale_after_seconds"
        case downAfterSeconds = "down_after_seconds"
        case backupDeadlineHour = "backup_deadline_hour"
        case reportRetentionDays = "report_retention_days"
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
        case tlsCertificateFile = "tls_certificate_file"
        case tlsKeyFile = "tls_key_file"
    }

    static let loader = ConfigLoader(
        environmentPrefix: "FELHOM_HUB",
        keys: [
            .init("listen"), .init("database"), .init("operator_key"), .init("poll_interval_seconds", .integer),
            .init("check_interval_seconds", .integer), .init("stale_after_seconds", .integer), .init("down_after_seconds", .integer),
            .init("backup_deadline_hour", .integer), .init("report_retention_days", .integer), .init("operator_email"),
            .init("mail_from"), .init("smtp_host"), .init("smtp_port", .integer),
            .init("smtp_security"), .init("smtp_username"), .init("smtp_password"), .init("smtp_ca_file"),
            .init("smtp_fingerprint"), .init("mail_api_url"), .init("mail_api_key"), .init("secure_cookies", .boolean), .init("cloudflare_api_token"), .init("cloudflare_api_url"),
            .init("rate_limit_reports_per_minute", .number), .init("rate_limit_reports_burst", .number),
            .init("rate_limit_events_per_minute", .number), .init("rate_limit_events_burst", .number),
            .init("max_guests_per_host", .integer), .init("max_connections", .integer), .init("idle_timeout_seconds", .integer),
            .init("max_long_polls_per_key", .integer), .init("trusted_proxies"), .init("max_long_poll_seconds", .integer), .init("log_level"), .init("apply_deadline_seconds", .integer), .init("tls_certificate_file"), .init("tls_key_file"),
            .init("event_retention_days", .integer), .init("mail_retention_days", .integer),
        ])

    /// The configured mail transport: SMTP, an HTTP mail API, or none (mail stays queued).
    func mailer() throws -> Mailer? {
        if smtpHost != nil, mailAPIURL != nil {
            throw ValidationError("set either smtp_host or mail_api_url, not both")
        }
        if let url = mailAPIURL {
            guard let key = mailAPIKey else { throw ValidationError("mail_api_url is set but mail_api_key is missing") }
            do { return HTTPMailAPIMailer(settings: try MailAPISettings(url: url, apiKey: key)) } catch {
                throw ValidationError("\(error)")
            }
        }
        guard let host = smtpHost else { return nil }
        let securityText = smtpSecurity ?? "starttls"
        guard let security = SMTPSecurity(rawValue: securityText) else {
            throw ValidationError("smtp_security must be none, starttls or tls (got '\(securityText)')")
        }
        if security == .none, !HTTPEndpoint.isLoopback(host) {
            throw ValidationError("smtp_security none (clear text) is allowed only for a relay on loopback (got smtp_host '\(host)')")
        }
        let port = smtpPort ?? (security == .tls ? 465 : security == .starttls ? 587 : 25)
        guard (1...65535).contains(port) else { throw ValidationError("smtp_port must be 1…65535") }
        var trust = TLSTrust.systemDefault
        if let fp = smtpFingerprint {
            do { trust = .pinnedLeafSHA256(try CertificateFingerprint(parsing: fp)) } catch {
                throw ValidationError("smtp_fingerprint: \(error)")
            }
        } else if let ca = smtpCAFile {
            trust = .caFile(ca)
        }
        if (smtpUsername == nil) != (smtpPassword == nil) {
            throw ValidationError("set both smtp_username and smtp_password, or neither")
        }
        if smtpPassword != nil, security == .none {
            throw ValidationError("smtp_password needs smtp_security starttls or tls: credentials are never sent in clear text")
        }
        return SMTPMailer(settings: .init(
            host: host, port: port, security: security, trust: trust, username: smtpUsername, password: smtpPassword))
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the hub API.",
        discussion: "The operator key comes from FELHOM_HUB_OPERATOR_KEY or operator_key in the config file; it is never printed.")

    @Option(help: "Address to listen on (HOST:PORT).") var listen: String?
    @Option(help: "sqlite:PATH (default ./felhom-hub.sqlite) or postgres://USER@HOST:PORT/DB") var database: String?
    @Option(help: "Config file (JSON).") var config: String?

    func run() async throws {
        let cfg: HubConfig
        do { cfg = try HubConfig.loader.load(HubConfig.self, file: config) } catch { throw ValidationError("\(error)") }
        let listenText = listen ?? cfg.listen ?? "127.0.0.1:8443"
        guard let colon = listenText.lastIndex(of: ":"), let port = Int(listenText[listenText.index(after: colon)...]) else {
            throw ValidationError("--listen must be HOST:PORT (got '\(listenText)')")
        }
        let host = String(listenText[..<colon])
        guard let operatorKey = cfg.operatorKey?.reveal(), operatorKey.count >= 24 else {
            throw ValidationError("set FELHOM_HUB_OPERATOR_KEY (at least 24 characters) or operator_key in the config file")
        }
        var logger = Logger(label: "felhom.hub")
        // log_level: trace, debug (every request), info (default), notice, warning, error, critical.
        guard let level = Logger.Level(rawValue: cfg.logLevel ?? "info") else {
            throw ValidationError("log_level must be one of trace, debug, info, notice, warning, error, critical (got '\(cfg.logLevel ?? "")')")
        }
        logger.logLevel = level
        let url = database ?? cfg.database ?? "sqlite:./felhom-hub.sqlite"
        var settings = Hub.Settings()
        if let p = cfg.pollIntervalSeconds { settings.pollIntervalSeconds = p }
        // TLS: terminated by the hub itself (certificate and key files), or by a reverse proxy in
        // front (listed in trusted_proxies, comma-separated addresses). Either way dashboard cookies
        // are Secure unless secure_cookies says otherwise.
        var tls: TLSConfiguration?
        switch (cfg.tlsCertificateFile, cfg.tlsKeyFile) {
        case (nil, nil): break
        case (let cert?, let key?):
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
                tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            } catch {
                throw ValidationError("tls_certificate_file '\(cert)' / tls_key_file '\(key)': cannot load them as PEM (\(error))")
            }
        default: throw ValidationError("set both tls_certificate_file and tls_key_file, or neither")
        }
        settings.trustedProxies = Set((cfg.trustedProxies ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        settings.secureCookies = cfg.secureCookies ?? (tls != nil || !settings.trustedProxies.isEmpty)
        // Per-key limits (0 per minute turns a limit off, e.g. for load tests).
        func limit(_ perMinute: Double?, _ burst: Double?, _ base: RateLimiter.Limit?, _ name: String) throws -> RateLimiter.Limit {
            var l = base ?? .off
            if let perMinute { l.perMinute = perMinute }
            if let burst { l.burst = burst }
            guard l.perMinute >= 0, l.burst >= 0 else { throw ValidationError("rate_limit_\(name)_* must not be negative") }
            return l
        }
        let reports = try limit(cfg.rateLimitReportsPerMinute, cfg.rateLimitReportsBurst, settings.rateLimits[.hostReport], "reports")
        settings.rateLimits[.hostReport] = reports
        settings.rateLimits[.guestReport] = reports
        settings.rateLimits[.event] = try limit(cfg.rateLimitEventsPerMinute, cfg.rateLimitEventsBurst, settings.rateLimits[.event], "events")
        if let m = cfg.maxLongPollSeconds {
            guard (1...55).contains(m) else { throw ValidationError("max_long_poll_seconds must be 1…55") }
            settings.maxLongPollSeconds = m
        }
        if let m = cfg.maxLongPollsPerKey {
            guard m >= 1 else { throw ValidationError("max_long_polls_per_key must be at least 1") }
            settings.maxLongPollsPerKey = m
        }
        // Slow clients: an idle (or slowly sending) connection is closed after idle_timeout_seconds
        // (a long-poll in progress is not idle); at most max_connections are open at once (20,000 by
        // default: a 10,000-box fleet's long-polls and reports; raise LimitNOFILE to match).
        let maxConnections = cfg.maxConnections ?? 20_000
        let idleTimeout = cfg.idleTimeoutSeconds ?? 60
        guard maxConnections >= 1, idleTimeout >= 1 else { throw ValidationError("max_connections and idle_timeout_seconds must be at least 1") }
        if let m = cfg.maxGuestsPerHost {
            guard m >= 1 else { throw ValidationError("max_guests_per_host must be at least 1") }
            settings.maxGuestsPerHost = m
        }
        var mail = NotificationSettings()
        mail.operatorEmail = cfg.operatorEmail
        if let f = cfg.mailFrom { mail.from = f }
        let mailer = try cfg.mailer()
        if mailer == nil { logger.warning("no mail transport configured (smtp_host or mail_api_url): notifications stay queued in the outbox") }
        var checks = CheckerService.Settings()
        if let s = cfg.checkIntervalSeconds { checks.interval = .seconds(max(1, s)) }
        if let s = cfg.staleAfterSeconds { checks.thresholds.staleAfter = TimeInterval(s) }
        if let s = cfg.downAfterSeconds { checks.thresholds.downAfter = TimeInterval(s) }
        if let h = cfg.backupDeadlineHour {
            guard (0...23).contains(h) else { throw ValidationError("backup_deadline_hour must be 0…23") }
            checks.backupDeadlineHour = h
        }
        if let d = cfg.reportRetentionDays {
            guard d >= 1 else { throw ValidationError("report_retention_days must be at least 1") }
            checks.reportRetentionDays = d
        }
        for (name, value) in [("event_retention_days", cfg.eventRetentionDays), ("mail_retention_days", cfg.mailRetentionDays)] {
            if let v = value, v < 1 { throw ValidationError("\(name) must be at least 1") }
        }
        if let d = cfg.eventRetentionDays { checks.eventRetentionDays = d }
        if let a = cfg.applyDeadlineSeconds {
            guard a >= 60 else { throw ValidationError("apply_deadline_seconds must be at least 60") }
            checks.applyDeadline = TimeInterval(a)
        }
        if let d = cfg.mailRetentionDays { checks.mailRetentionDays = d }
        guard checks.thresholds.downAfter > checks.thresholds.staleAfter else {
            throw ValidationError("down_after_seconds must be larger than stale_after_seconds")
        }
        var geo: CloudflareGeo?
        if let token = cfg.cloudflareAPIToken {
            do { geo = try CloudflareGeo(token: token, baseURL: cfg.cloudflareAPIURL ?? CloudflareGeo.defaultBaseURL) } catch {
                throw ValidationError("\(error)")
            }
        }
        // Opened after the settings are checked, and closed on every way out from here on.
        let store: HubStore
        do { store = try await HubStore.open(url: url, logger: logger) } catch { throw ValidationError("\(error)") }
        do {
            try await serve(store: store, settings: settings, checks: checks, geo: geo, mail: mail, mailer: mailer, cfg: cfg, operatorKey: operatorKey,
                            logger: logger, tls: tls, host: host, port: port, idleTimeout: idleTimeout, maxConnections: maxConnections)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
        logger.info("felhom-hub stopped")
    }

    private func serve(store: HubStore, settings: Hub.Settings, checks: CheckerService.Settings, geo: CloudflareGeo?, mail: NotificationSettings, mailer: Mailer?,
                       cfg: HubConfig, operatorKey: String,
                       logger: Logger, tls: TLSConfiguration?, host: String, port: Int, idleTimeout: Int, maxConnections: Int) async throws {
        var hub = Hub(store: store, operatorKey: operatorKey, settings: settings, notifications: mail)
        hub.geo = geo
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .seconds(Int64(idleTimeout))))
        let app = Application(
            router: HubAPI.router(hub: hub),
            server: try tls.map { try HTTPServerBuilder.tls(http1, tlsConfiguration: $0) } ?? http1,
            configuration: .init(
                address: .hostname(host, port: port), serverName: "felhom-hub",
                availableConnectionsDelegate: MaximumAvailableConnections(maxConnections)),
            services: [CheckerService(hub: hub, settings: checks, logger: logger, mailer: mailer)], logger: logger)
        logger.info("felhom-hub listening", metadata: [
            "address": "\(host):\(port)", "store": "\(store.kind.rawValue)", "tls": "\(tls != nil ? "hub" : settings.trustedProxies.isEmpty ? "none" : "proxy")",
        ])
        do {
            try await app.runService()
        } catch {
            logger.error("felhom-hub stopped: \(error)")
            throw error
        }
    }
}
