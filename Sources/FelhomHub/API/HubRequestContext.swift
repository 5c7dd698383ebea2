import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The hub's request context: Hummingbird's basics plus the peer's socket address, which decides
/// who "the client" is for per-client limits (retrieval, dashboard sign-in).
public struct HubRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The socket peer (a reverse proxy's address when the hub sits behind one).
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}

extension Hub {
    /// The client a request comes from: the socket peer's IP address, or — only when that peer is
    /// one of `trusted_proxies` — the last address in `X-Forwarded-For` that is not a trusted proxy.
    /// A client cannot pick its own identity by sending the header directly.
    public func client(of req: Request, _ ctx: HubRequestContext) -> String {
        Self.clientAddress(peer: ctx.remoteAddress?.ipAddress, forwardedFor: req.headers[.xForwardedFor], trusted: settings.trustedProxies)
    }

    /// The rule of ``client(of:_:)``, pure: walk `X-Forwarded-For` from the right (the hops the
    /// trusted proxies appended) past every trusted proxy; the first other address is the client.
    static func clientAddress(peer: String?, forwardedFor: String?, trusted: Set<String>) -> String {
        let peer = peer ?? "unknown"
        guard trusted.contains(peer), let header = forwardedFor else { return peer }
        let hops = header.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return hops.last(where: { !trusted.contains($0) }) ?? peer
    }
}

extension HTTPField.Name {
    /// `X-Forwarded-For` (a valid field name, so the failable initializer's fallback is never taken).
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For") ?? .via
}
