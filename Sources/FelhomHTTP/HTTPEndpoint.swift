import Foundation

/// Where an outbound client connects, read from a URL setting: `https://` anywhere, plain
/// `http://` only to a loopback address (a local relay, a test fake). The one place that rule lives.
public struct HTTPEndpoint: Sendable, Equatable {
    public let host: String
    public let port: Int
    public let useTLS: Bool
    /// The URL's path without a trailing slash (`""` for none).
    public let path: String
    public let query: String?

    /// `setting` names the configuration key in error messages (`mail_api_url`, `hub URL`).
    public init(url text: String, setting: String) throws(HTTPClientError) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty,
              scheme == "https" || scheme == "http"
        else { throw HTTPClientError(code: .invalidArgument, message: "\(setting) must be an https:// URL (got '\(text)')") }
        if scheme == "http", !["127.0.0.1", "localhost", "::1"].contains(host) {
            throw HTTPClientError(code: .invalidArgument, message: "\(setting) may use plain http:// only on loopback (got host '\(host)')")
        }
        self.host = host
        useTLS = scheme == "https"
        port = url.port ?? (useTLS ? 443 : 80)
        var p = url.path
        while p.hasSuffix("/") { p.removeLast() }
        path = p
        query = url.query
    }

    /// A transport to this endpoint.
    public func transport(trust: TLSTrust, timeout: Duration) -> NIOHTTPTransport {
        NIOHTTPTransport(host: host, port: port, useTLS: useTLS, trust: trust, requestTimeout: timeout)
    }
}
