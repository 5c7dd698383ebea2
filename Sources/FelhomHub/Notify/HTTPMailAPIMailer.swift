import FelhomCore
import FelhomHTTP
import Foundation

/// Where and how to reach a Resend-style HTTP mail API.
public struct MailAPISettings: Sendable {
    /// The send endpoint, e.g. `https://api.resend.com/emails`.
    public var endpoint: HTTPEndpoint
    public var apiKey: Secret
    public var trust: TLSTrust
    public var timeout: Duration

    /// Checks the URL: `http` is accepted only for a loopback host (a local relay or a test fake).
    public init(url text: String, apiKey: Secret, trust: TLSTrust = .systemDefault, timeout: Duration = .seconds(30)) throws {
        do { endpoint = try HTTPEndpoint(url: text, setting: "mail_api_url") } catch { throw MailError(message: error.message) }
        guard !apiKey.isEmpty else { throw MailError(message: "mail_api_key is empty") }
        self.apiKey = apiKey
        self.trust = trust
        self.timeout = timeout
    }
}

/// Delivers mail through an HTTP mail API in Resend's shape: `POST` JSON
/// `{"from", "to": [..], "subject", "text"}` with `Authorization: Bearer KEY` and an
/// `Idempotency-Key`; a 2xx answer carries `{"id"}`.
///
/// Any other answer is a failure the outbox retries; the error names the status and the API's own
/// `message`, never the key.
public struct HTTPMailAPIMailer: Mailer {
    public let settings: MailAPISettings
    let transport: any HTTPTransport

    public init(settings: MailAPISettings) {
        self.settings = settings
        transport = settings.endpoint.transport(trust: settings.trust, timeout: settings.timeout)
    }

    public func send(_ message: MailMessage) async throws {
        let body: JSONValue = .object([
            "from": .string(message.from), "to": .array([.string(message.to)]),
            "subject": .string(message.subject), "text": .string(message.body),
        ])
        var headers = [("Authorization", "Bearer \(settings.apiKey.reveal())"), ("Content-Type", "application/json")]
        if let key = message.idempotencyKey { headers.append(("Idempotency-Key", key)) }
        let endpoint = settings.endpoint
        var path = endpoint.path.isEmpty ? "/" : endpoint.path
        if let query = endpoint.query { path += "?" + query }
        let destination = "mail API \(endpoint.host)"
        let response: HTTPResponseSpec
        do {
            response = try await transport.send(
                HTTPRequestSpec(method: "POST", target: path, headers: headers, body: body.serialized()))
        } catch let error as HTTPClientError {
            throw MailError(message: "\(destination): \(error.message)")
        }
        guard (200..<300).contains(response.status) else {
            let said =
                (try? JSONValue.parse(response.body))?["message"]?.stringValue
                ?? String(decoding: response.body.prefix(200), as: UTF8.self)
            throw MailError(message: "\(destination) answered \(response.status): \(said)")
        }
        guard (try? JSONValue.parse(response.body))?["id"]?.stringValue != nil else {
            throw MailError(message: "\(destination) answered \(response.status) without a message id")
        }
    }
}
