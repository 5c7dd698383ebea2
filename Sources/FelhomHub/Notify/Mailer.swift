import Foundation

/// One outgoing mail.
public struct MailMessage: Sendable, Equatable {
    public var from: String
    public var to: String
    public var subject: String
    public var body: String
    /// Stable per outbox entry: an HTTP mail API that honours `Idempotency-Key` sends a retried
    /// message once even when the first answer was lost.
    public var idempotencyKey: String?

    public init(from: String, to: String, subject: String, body: String, idempotencyKey: String? = nil) {
        self.from = from
        self.to = to
        self.subject = subject
        self.body = body
        self.idempotencyKey = idempotencyKey
    }
}

/// Delivers mail (SMTP, an HTTP mail API, or a fake in tests).
public protocol Mailer: Sendable {
    func send(_ message: MailMessage) async throws
}

/// A delivery failure; the outbox retries it.
public struct MailError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(message: String) { self.message = message }
}
