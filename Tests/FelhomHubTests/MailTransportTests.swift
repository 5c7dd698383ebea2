import Crypto
import FelhomCore
import FelhomHTTP
import FelhomTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import FelhomHub

/// A real SMTP server: aiosmtpd (PyPI) run by Peers/smtp_sink.py; every accepted message lands as
/// a JSON file in `dir`.
final class SMTPSink {
    let process = Process()
    let stdin = Pipe()
    let dir: URL
    let port: Int

    static var available: Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import aiosmtpd"]
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    init(_ options: [String] = []) throws {
        dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("felhom-smtp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Peers/smtp_sink.py")
        let out = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, "--dir", dir.path] + options
        process.standardOutput = out
        process.standardInput = stdin
        try process.run()
        var text = ""
        while !text.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard let line = text.split(separator: "\n").first, line.hasPrefix("READY "), let p = Int(line.dropFirst(6)) else {
            process.terminate()
            throw MailError(message: "smtp_sink.py did not start (said '\(text)')")
        }
        port = p
    }

    /// The accepted messages, in order.
    func messages() throws -> [JSONValue] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }.sorted().map {
            try JSONValue.parse(Data(contentsOf: dir.appendingPathComponent($0)))
        }
    }

    func stop() {
        try? stdin.fileHandleForWriting.close()
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: dir)
    }
}

/// A self-signed certificate for 127.0.0.1 made by the openssl command, and its SHA-256 pin.
func makeTestCertificate() throws -> (cert: String, key: String, pin: CertificateFingerprint) {
    let dir = NSTemporaryDirectory() + "felhom-cert-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem",
    ]
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    let pem = try String(contentsOfFile: dir + "/cert.pem", encoding: .utf8)
    let b64 = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
    guard let der = Data(base64Encoded: b64) else { throw MailError(message: "openssl wrote no certificate") }
    return (dir + "/cert.pem", dir + "/key.pem", CertificateFingerprint.of(der: [UInt8](der)))
}

/// Splits a received RFC 5322 message into headers and decoded text body.
func parseMail(_ data: String) -> (headers: [String: String], body: String) {
    let parts = data.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n\n")
    var headers: [String: String] = [:]
    for line in parts[0].split(separator: "\n") {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    let raw = parts.dropFirst().joined(separator: "\n").replacingOccurrences(of: "\n", with: "")
    let body = String(decoding: Data(base64Encoded: raw) ?? Data(), as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
    return (headers, body)
}

func decodeEncodedWord(_ text: String) -> String {
    guard text.hasPrefix("=?utf-8?B?"), text.hasSuffix("?=") else { return text }
    let b64 = text.dropFirst(10).dropLast(2)
    return String(decoding: Data(base64Encoded: String(b64)) ?? Data(), as: UTF8.self)
}

/// SMTP against aiosmtpd. scripts/test installs it; elsewhere the suite says it is skipped.
@Suite(.enabled(if: SMTPSink.available || ProcessInfo.processInfo.environment["CI"] != nil, "aiosmtpd not installed: pip install aiosmtpd"))
struct SMTPMailerTests {
    let hungarian = MailMessage(
        from: "Felhom <hub@felhom.example>", to: "anna@example.hu", subject: "[felhom] A nappali doboz nem érhető el",
        body: "Kedves Anna!\n.\nA dobozod 60 perce nem jelentkezett. Árvíztűrő tükörfúrógép.\n")

    @Test func plainDeliveryKeepsHungarianTextIntact() async throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let mailer = SMTPMailer(settings: .init(host: "127.0.0.1", port: sink.port, security: .none))
        try await mailer.send(hungarian)
        let got = try sink.messages()
        try #require(got.count == 1)
        #expect(got[0]["mail_from"]?.stringValue == "hub@felhom.example")
        #expect(got[0]["rcpt_tos"] == .array([.string("anna@example.hu")]))
        let (headers, body) = parseMail(got[0]["data"]?.stringValue ?? "")
        #expect(decodeEncodedWord(headers["subject"] ?? "") == hungarian.subject)
        #expect(headers["content-type"] == "text/plain; charset=utf-8")
        #expect(headers["message-id"]?.hasSuffix("@felhom.example>") == true)
        #expect(body == hungarian.body)
    }

    @Test func starttlsWithPinnedCertificateAndAuth() async throws {
        let tls = try makeTestCertificate()
        let sink = try SMTPSink(["--starttls", tls.cert, tls.key, "--auth", "felhom", "s3cret-smtp-pass"])
        defer { sink.stop() }
        let mailer = SMTPMailer(
            settings: .init(
                host: "127.0.0.1", port: sink.port, security: .starttls, trust: .pinnedLeafSHA256(tls.pin),
                username: "felhom", password: Secret("s3cret-smtp-pass")))
        try await mailer.send(hungarian)
        // A second message over the mailer's reused TLS context: a new handshake, the pin checked again.
        try await mailer.send(hungarian)
        let got = try sink.messages()
        try #require(got.count == 2)
        #expect(got.allSatisfy { $0["tls"] == .bool(true) && $0["auth"] == .bool(true) })
    }

    @Test func wrongPasswordFailsWithoutShowingIt() async throws {
        let tls = try makeTestCertificate()
        let sink = try SMTPSink(["--starttls", tls.cert, tls.key, "--auth", "felhom", "right-pass"])
        defer { sink.stop() }
        let mailer = SMTPMailer(
            settings: .init(
                host: "127.0.0.1", port: sink.port, security: .starttls, trust: .pinnedLeafSHA256(tls.pin),
                username: "felhom", password: Secret("wrong-pass-XYZ")))
        let e = await #expect(throws: MailError.self) { try await mailer.send(hungarian) }
        #expect(e?.message.contains("535") == true)
        #expect(e?.message.contains("wrong-pass-XYZ") == false)
        #expect(e?.message.contains(Data("\0felhom\0wrong-pass-XYZ".utf8).base64EncodedString()) == false)
        #expect(try sink.messages().isEmpty)
    }

    @Test func wrongCertificatePinIsRefused() async throws {
        let tls = try makeTestCertificate()
        let other = try makeTestCertificate()
        let sink = try SMTPSink(["--starttls", tls.cert, tls.key])
        defer { sink.stop() }
        let mailer = SMTPMailer(settings: .init(host: "127.0.0.1", port: sink.port, security: .starttls, trust: .pinnedLeafSHA256(other.pin)))
        await #expect(throws: MailError.self) { try await mailer.send(hungarian) }
        // The reused context does not remember a handshake: the wrong pin is refused every time.
        await #expect(throws: MailError.self) { try await mailer.send(hungarian) }
        #expect(try sink.messages().isEmpty)
    }

    @Test func starttlsRequiredButNotOfferedIsAnError() async throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let mailer = SMTPMailer(settings: .init(host: "127.0.0.1", port: sink.port, security: .starttls, trust: .insecureSkipVerification))
        let e = await #expect(throws: MailError.self) { try await mailer.send(hungarian) }
        #expect(e?.message.contains("does not offer STARTTLS") == true)
    }

    @Test func credentialsAreNeverSentInClearText() async throws {
        let sink = try SMTPSink()
        defer { sink.stop() }
        let mailer = SMTPMailer(settings: .init(host: "127.0.0.1", port: sink.port, security: .none, username: "u", password: Secret("p")))
        let e = await #expect(throws: MailError.self) { try await mailer.send(hungarian) }
        #expect(e?.message.contains("clear text") == true)
    }

    @Test func headerInjectionIsNeutralised() throws {
        let text = SMTPMailer.render(
            MailMessage(from: "hub@felhom.example", to: "a@b.hu", subject: "hi\r\nBcc: victim@example.com", body: "x"), date: Date())
        #expect(!text.contains("\r\nBcc:"))
        #expect(throws: MailError.self) { try SMTPMailer.address("a@b.hu>\r\nRCPT TO:<evil@x") }
    }

    @Test(arguments: TestStores.kinds)
    func outboxRetriesThroughTheRealServer(_ kind: HubStore.Kind) async throws {
        let sink = try SMTPSink(["--fail-first", "1"])
        defer { sink.stop() }
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        var n = NotificationSettings()
        n.operatorEmail = "ops@felhom.example"
        n.from = "hub@felhom.example"
        let hub = Hub(store: try await TestStores.open(kind), operatorKey: operatorKey, clock: clock, notifications: n)
        let c = try await hub.createCustomer(
            .init(name: "Kiss Anna", email: "anna@example.hu", domain: "kiss.example.hu", timezone: nil, language: "hu"), by: .operator)
        let (host, _) = try await hub.createHost(customerID: c, name: "nappali", by: .operator)
        _ = try await hub.postEvent(
            .init(type: "backup_failed", severity: .critical, guestID: nil, at: nil, data: nil), by: .host(hostID: host, customerID: c))
        let mailer = SMTPMailer(settings: .init(host: "127.0.0.1", port: sink.port, security: .none))
        let first = try await hub.deliverMail(using: mailer)
        #expect(first.failed == 1)
        #expect(first.sent == 1)
        clock.advance(by: 120)
        let second = try await hub.deliverMail(using: mailer)
        #expect(second.sent == 1 && second.failed == 0)
        let got = try sink.messages().compactMap { $0["rcpt_tos"] }
        #expect(Set(got) == [.array([.string("ops@felhom.example")]), .array([.string("anna@example.hu")])])
        let log = try await hub.store.withDB { db in
            try await db.select().columns("result", "detail").from("notification_log").all().map {
                (try $0.decode(column: "result", as: String.self), try $0.decode(column: "detail", as: String.self))
            }
        }
        #expect(log.filter { $0.0 == "sent" }.count == 2)
        #expect(log.contains { $0.0 == "failed" && $0.1.contains("451") })
        await hub.store.close()
    }
}

/// A local fake of a Resend-style mail API that checks each request's shape the way the real API
/// documents it, and remembers idempotency keys.
final class FakeMailAPI: Sendable {
    let key = "re_test_0123456789abcdef"
    let accepted = Mutex<[(idempotencyKey: String?, json: JSONValue)]>([])
    let failNext = Mutex(0)

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.post("/emails") { request, context -> Response in
            func answer(_ status: HTTPResponse.Status, _ json: JSONValue) -> Response {
                Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: json.serialized())))
            }
            guard request.headers[.authorization] == "Bearer \(self.key)" else {
                return answer(.unauthorized, ["statusCode": 401, "name": "missing_api_key", "message": "API key is invalid"])
            }
            guard request.headers[.contentType]?.hasPrefix("application/json") == true else {
                return answer(
                    .unprocessableContent, ["statusCode": 422, "name": "validation_error", "message": "Content-Type must be application/json"])
            }
            let body = try await request.body.collect(upTo: 1 << 20)
            guard let json = try? JSONValue.parse(Data(body.readableBytesView)),
                json["from"]?.stringValue?.contains("@") == true,
                case .array(let to)? = json["to"], !to.isEmpty, to.allSatisfy({ $0.stringValue?.contains("@") == true }),
                json["subject"]?.stringValue != nil, json["text"]?.stringValue != nil || json["html"]?.stringValue != nil
            else {
                return answer(.unprocessableContent, ["statusCode": 422, "name": "validation_error", "message": "missing or invalid field"])
            }
            if self.failNext.withLock({ n in
                defer { n = max(0, n - 1) }
                return n > 0
            }) {
                return answer(.internalServerError, ["statusCode": 500, "name": "internal_server_error", "message": "try again"])
            }
            let idem = request.headers[HTTPField.Name("Idempotency-Key")!]
            let index = self.accepted.withLock { list -> Int in
                if let idem, let i = list.firstIndex(where: { $0.idempotencyKey == idem }) { return i }
                list.append((idem, json))
                return list.count - 1
            }
            return answer(.ok, ["id": .string("msg-\(index)")])
        }
        return router
    }
}

@Suite struct HTTPMailAPIMailerTests {
    let message = MailMessage(
        from: "hub@felhom.example", to: "anna@example.hu", subject: "[felhom] Mentés kimaradt", body: "Szia!\n", idempotencyKey: "out-1")

    @Test func sendsResendShapedJSONAndHonoursIdempotency() async throws {
        let fake = FakeMailAPI()
        try await Application(router: fake.router()).test(.live) { client in
            let mailer = HTTPMailAPIMailer(settings: try .init(url: "http://127.0.0.1:\(client.port!)/emails", apiKey: Secret(fake.key)))
            try await mailer.send(message)
            try await mailer.send(message)  // a retry after a lost answer
        }
        let got = fake.accepted.withLock { $0 }
        #expect(got.count == 1)
        #expect(got.first?.json["to"] == .array([.string("anna@example.hu")]))
        #expect(got.first?.json["subject"]?.stringValue == "[felhom] Mentés kimaradt")
        #expect(got.first?.json["text"]?.stringValue == "Szia!\n")
    }

    @Test func wrongKeyIsAClearErrorWithoutTheKey() async throws {
        let fake = FakeMailAPI()
        try await Application(router: fake.router()).test(.live) { client in
            let mailer = HTTPMailAPIMailer(settings: try .init(url: "http://127.0.0.1:\(client.port!)/emails", apiKey: Secret("re_wrong_key_987")))
            let e = await #expect(throws: MailError.self) { try await mailer.send(message) }
            #expect(e?.message.contains("401") == true)
            #expect(e?.message.contains("API key is invalid") == true)
            #expect(e?.message.contains("re_wrong_key_987") == false)
        }
    }

    @Test func settingsRefuseRemotePlainHTTPAndBadURLs() {
        #expect(throws: MailError.self) { try MailAPISettings(url: "http://mail.example.com/emails", apiKey: Secret("k")) }
        #expect(throws: MailError.self) { try MailAPISettings(url: "not a url", apiKey: Secret("k")) }
        #expect(throws: MailError.self) { try MailAPISettings(url: "https://api.resend.com/emails", apiKey: Secret("")) }
        #expect((try? MailAPISettings(url: "https://api.resend.com/emails", apiKey: Secret("k"))) != nil)
    }

    @Test(arguments: TestStores.kinds)
    func outboxRetriesAfterAServerError(_ kind: HubStore.Kind) async throws {
        let fake = FakeMailAPI()
        fake.failNext.withLock { $0 = 1 }
        let clock = ManualClock(start: Date(timeIntervalSince1970: 1_800_000_000))
        var n = NotificationSettings()
        n.operatorEmail = "ops@felhom.example"
        let hub = Hub(store: try await TestStores.open(kind), operatorKey: operatorKey, clock: clock, notifications: n)
        let c = try await hub.createCustomer(
            .init(name: "Kiss Anna", email: "anna@example.hu", domain: "kiss.example.hu", timezone: nil, language: "hu"), by: .operator)
        let (host, _) = try await hub.createHost(customerID: c, name: "nappali", by: .operator)
        _ = try await hub.postEvent(
            .init(type: "backup_failed", severity: .critical, guestID: nil, at: nil, data: nil), by: .host(hostID: host, customerID: c))
        try await Application(router: fake.router()).test(.live) { client in
            let mailer = HTTPMailAPIMailer(settings: try .init(url: "http://127.0.0.1:\(client.port!)/emails", apiKey: Secret(fake.key)))
            let first = try await hub.deliverMail(using: mailer)
            #expect(first.sent == 1 && first.failed == 1)
            clock.advance(by: 120)
            let second = try await hub.deliverMail(using: mailer)
            #expect(second.sent == 1 && second.failed == 0)
        }
        #expect(fake.accepted.withLock { $0.count } == 2)
        await hub.store.close()
    }
}
