import FelhomCore
import FelhomHTTP
import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// How the SMTP connection is protected.
public enum SMTPSecurity: String, Sendable, Codable {
    /// Plain SMTP (a local relay on loopback). Never sends credentials.
    case none
    /// `STARTTLS` after the greeting (port 587); refused servers are an error, not a downgrade.
    case starttls
    /// TLS from the first byte (port 465).
    case tls
}

/// Where and how to submit mail over SMTP.
public struct SMTPSettings: Sendable {
    public var host: String
    public var port: Int
    public var security: SMTPSecurity
    public var trust: TLSTrust
    public var username: String?
    public var password: Secret?
    /// The name sent in `EHLO`.
    public var heloName: String
    /// Upper bound for one whole delivery (connect to `QUIT`).
    public var timeout: Duration

    public init(
        host: String, port: Int, security: SMTPSecurity = .starttls, trust: TLSTrust = .systemDefault,
        username: String? = nil, password: Secret? = nil, heloName: String = "felhom-hub", timeout: Duration = .seconds(30)
    ) {
        self.host = host
        self.port = port
        self.security = security
        self.trust = trust
        self.username = username
        self.password = password
        self.heloName = heloName
        self.timeout = timeout
    }
}

/// Delivers mail by SMTP submission (RFC 5321): `EHLO`, optional `STARTTLS` (RFC 3207), `AUTH PLAIN`
/// (RFC 4954), `MAIL FROM`, `RCPT TO`, `DATA` with dot-stuffing, `QUIT`.
///
/// The message is UTF-8 text: the subject is an RFC 2047 encoded word, the body base64, so
/// Hungarian accents survive any relay. Credentials are only sent over TLS and never appear in an
/// error message.
public struct SMTPMailer: Mailer {
    public let settings: SMTPSettings
    /// The TLS context, built once for every message (rebuilt after ten minutes): parsing the
    /// system's trust store for each mail cost thousands of allocations.
    private let contexts = SSLContextCache()

    public init(settings: SMTPSettings) { self.settings = settings }

    public func send(_ message: MailMessage) async throws {
        let settings = settings
        let sslContext = settings.security == .none ? nil : try contexts.context(for: settings.trust)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await Self.deliver(message, settings: settings, sslContext: sslContext) }
            group.addTask {
                try await Task.sleep(for: settings.timeout)
                throw MailError(message: "SMTP \(settings.host):\(settings.port): no completion within \(settings.timeout)")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private static func deliver(_ message: MailMessage, settings: SMTPSettings, sslContext: NIOSSLContext?) async throws {
        if settings.password != nil, settings.security == .none {
            throw MailError(message: "SMTP credentials are configured but security is 'none': refusing to send them in clear text")
        }
        let destination = "SMTP \(settings.host):\(settings.port)"
        let implicitTLS = settings.security == .tls
        let trust = settings.trust
        let host = settings.host
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(host: settings.host, port: settings.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if implicitTLS, let sslContext {
                            try channel.pipeline.syncOperations.addHandler(
                                trust.makeClientHandler(context: sslContext, host: host))
                        }
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw MailError(message: "\(destination): cannot connect: \(error)")
        }
        let rawChannel = channel.channel
        do {
            try await channel.executeThenClose { inbound, outbound in
                var session = SMTPSession(lines: SMTPLineReader(inbound.makeAsyncIterator()), outbound: outbound)
                try await session.expect(220, after: "connect")
                var ehlo = try await session.command("EHLO \(settings.heloName)", expect: 250)
                if settings.security == .starttls {
                    guard ehlo.contains(where: { $0.uppercased().hasPrefix("STARTTLS") }) else {
                        throw MailError(message: "\(destination) does not offer STARTTLS")
                    }
                    _ = try await session.command("STARTTLS", expect: 220)
                    guard session.lines.bufferedByteCount == 0 else {
                        throw MailError(message: "\(destination) sent data after STARTTLS before the handshake (refused)")
                    }
                    guard let sslContext else { throw MailError(message: "internal: no TLS context") }
                    try await rawChannel.eventLoop.submit {
                        try rawChannel.pipeline.syncOperations.addHandler(
                            trust.makeClientHandler(context: sslContext, host: host), position: .first)
                    }.get()
                    ehlo = try await session.command("EHLO \(settings.heloName)", expect: 250)
                }
                if let user = settings.username, let password = settings.password {
                    var plain = Data([0])
                    plain.append(Data(user.utf8))
                    plain.append(0)
                    plain.append(Data(password.reveal().utf8))
                    _ = try await session.command(
                        "AUTH PLAIN " + plain.base64EncodedString(), expect: 235, display: "AUTH PLAIN (credentials hidden)")
                }
                _ = try await session.command("MAIL FROM:<\(try Self.address(message.from))>", expect: 250)
                _ = try await session.command("RCPT TO:<\(try Self.address(message.to))>", expect: 250)
                _ = try await session.command("DATA", expect: 354)
                try await session.write(Self.dotStuffed(Self.render(message, date: Date())) + ".\r\n")
                try await session.expect(250, after: "message data")
                _ = try? await session.command("QUIT", expect: 221)
            }
        } catch let error as MailError {
            throw MailError(message: error.message.hasPrefix("SMTP ") ? error.message : "\(destination): \(error.message)")
        } catch {
            throw MailError(message: "\(destination): \(error)")
        }
    }

    /// Only a plain address may go into an SMTP path: no angle brackets, spaces or line breaks.
    static func address(_ text: String) throws -> String {
        var addr = text.trimmingCharacters(in: .whitespaces)
        if let lt = addr.lastIndex(of: "<"), addr.hasSuffix(">") {
            addr = String(addr[addr.index(after: lt)..<addr.index(before: addr.endIndex)])
        }
        guard addr.contains("@"), !addr.contains(where: { $0 == "<" || $0 == ">" || $0.isWhitespace || $0.isNewline }) else {
            throw MailError(message: "'\(text)' is not a mail address")
        }
        return addr
    }

    /// The message in RFC 5322 form, CRLF line ends, dot-stuffed, ending in CRLF.
    static func render(_ m: MailMessage, date: Date) -> String {
        let fmt = DateFormatter()
        fmt.locale = Locale(identifier: "en_US_POSIX")
        fmt.timeZone = TimeZone(identifier: "UTC")
        fmt.dateFormat = "EEE, dd MMM yyyy HH:mm:ss +0000"
        let domain = (try? address(m.from)).flatMap { $0.split(separator: "@").last.map(String.init) } ?? "felhom.invalid"
        let body = Data(m.body.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n").utf8)
            .base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        let headers = [
            "From: \(headerSafe(m.from))",
            "To: \(headerSafe(m.to))",
            "Subject: \(encodedWord(m.subject))",
            "Date: \(fmt.string(from: date))",
            "Message-ID: <\(UUID().uuidString.lowercased())@\(domain)>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
        ]
        return headers.joined(separator: "\r\n") + "\r\n\r\n" + body + "\r\n"
    }

    /// RFC 5321 §4.5.2: a line that starts with "." gets a second one, so it cannot end DATA.
    static func dotStuffed(_ text: String) -> String {
        text.components(separatedBy: "\r\n").map { $0.hasPrefix(".") ? "." + $0 : $0 }.joined(separator: "\r\n")
    }

    /// RFC 2047 `=?utf-8?B?…?=` when the text is not plain ASCII, else the text itself.
    static func encodedWord(_ text: String) -> String {
        let clean = headerSafe(text)
        if clean.unicodeScalars.allSatisfy({ $0.isASCII }) { return clean }
        return "=?utf-8?B?" + Data(clean.utf8).base64EncodedString() + "?="
    }

    /// Header values never carry a line break (header injection).
    static func headerSafe(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}

/// Splits the inbound byte stream into CRLF-terminated lines.
struct SMTPLineReader {
    var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    var buffer: [UInt8] = []

    init(_ iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator) { self.iterator = iterator }

    var bufferedByteCount: Int { buffer.count }

    mutating func nextLine() async throws -> String {
        while true {
            if let lf = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(buffer[..<lf])
                buffer.removeSubrange(...lf)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            guard buffer.count < 64 * 1024 else { throw MailError(message: "reply line too long") }
            guard var chunk = try await iterator.next() else {
                throw MailError(message: "server closed the connection")
            }
            buffer.append(contentsOf: chunk.readBytes(length: chunk.readableBytes) ?? [])
        }
    }
}

/// One SMTP conversation: commands and their (possibly multi-line) replies.
struct SMTPSession {
    var lines: SMTPLineReader
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>

    /// Reads one reply (`250-a`, `250-b`, `250 c`) and returns its code and texts.
    mutating func reply() async throws -> (code: Int, texts: [String]) {
        var texts: [String] = []
        while true {
            let line = try await lines.nextLine()
            guard line.count >= 3, let code = Int(line.prefix(3)) else {
                throw MailError(message: "malformed reply '\(line.prefix(80))'")
            }
            texts.append(String(line.dropFirst(4)))
            if line.count == 3 || line[line.index(line.startIndex, offsetBy: 3)] == " " { return (code, texts) }
        }
    }

    mutating func expect(_ code: Int, after what: String) async throws {
        let reply = try await reply()
        guard reply.code == code else {
            throw MailError(message: "after \(what) the server answered \(reply.code) \(reply.texts.last ?? "")")
        }
    }

    mutating func write(_ text: String) async throws {
        try await outbound.write(ByteBuffer(string: text))
    }

    /// Sends a command and checks the reply code; `display` replaces the command in errors.
    mutating func command(_ line: String, expect code: Int, display: String? = nil) async throws -> [String] {
        try await write(line + "\r\n")
        let reply = try await reply()
        guard reply.code == code else {
            let shown = display ?? String(line.prefix(60))
            throw MailError(message: "'\(shown)' was answered \(reply.code) \(reply.texts.last ?? "")")
        }
        return reply.texts
    }
}
