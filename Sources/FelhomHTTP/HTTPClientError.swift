import Foundation

/// A failure below HTTP: the connection, TLS, a timeout, or a setting the client refuses.
///
/// An HTTP answer with any status is not an error at this layer; callers (the Proxmox client, the
/// hub client, the mail and Cloudflare clients) turn statuses into their own typed errors. The
/// message never contains a header value, so a bearer token cannot leak through it.
public struct HTTPClientError: Error, Sendable, CustomStringConvertible, Equatable {
    /// A stable error code.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let raw: String
        private init(_ raw: String) { self.raw = raw }
        public var description: String { raw }
        /// The connection could not be made or broke.
        public static let transport = Code("transport")
        /// The server's certificate did not match the pin or the trusted CA.
        public static let tls = Code("tls")
        /// No complete answer within the request timeout.
        public static let timeout = Code("timeout")
        /// The caller passed a value the client refuses to use (bad fingerprint, unreadable CA file).
        public static let invalidArgument = Code("invalidArgument")
        /// The answer was larger than the client accepts (a hostile or broken server).
        public static let tooLarge = Code("tooLarge")
    }

    public var code: Code
    public var message: String
    /// What the client was doing (`GET /path`), for context.
    public var request: String?

    public init(code: Code, message: String, request: String? = nil) {
        self.code = code
        self.message = message
        self.request = request
    }

    public var description: String {
        if let request { return "\(code): \(message) (\(request))" }
        return "\(code): \(message)"
    }
}
