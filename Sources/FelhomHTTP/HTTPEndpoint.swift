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
        if scheme == "http", !Self.isLoopback(host) {
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

    /// Whether `host` is this machine (`127.0.0.0/8`, `::1`, `localhost`): the only place
    /// where a clear-text connection (plain HTTP, SMTP without TLS) is allowed.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if h == "localhost" || h == "::1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// A transport to this endpoint.
    public func transport(trust: TLSTrust, timeout: Duration) -> NIOHTTPTransport {
        NIOHTTPTransport(host: host, port: port, useTLS: useTLS, trust: trust, requestTimeout: timeout)
    }
}

/// One path segment of an outbound URL, percent-encoded: an id from a server's answer or a
/// config file (`../`, `?`, `#`, `/`, spaces…) cannot change which resource a request reaches.
public enum PathSegment {
    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    public static func encode(_ s: String) -> String {
        var out = s.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
        // "." and ".." are unreserved yet walk the path: encode them too.
        if out == "." || out == ".." { out = out.replacingOccurrences(of: ".", with: "%2E") }
        return out
    }
}
