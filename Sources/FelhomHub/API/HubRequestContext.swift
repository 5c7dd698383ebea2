import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The hub's request context: Hummingbird's basics, the peer's socket address (who "the client"
/// is for per-client limits: retrieval, dashboard sign-in) and, once ``AuthenticateMiddleware``
/// has run, who is calling.
public struct HubRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The socket peer (a reverse proxy's address when the hub sits behind one).
    public let remoteAddress: SocketAddress?
    /// Set by ``AuthenticateMiddleware`` from `Authorization: Bearer KEY`.
    public var principal: Principal?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}

/// The context of every authenticated API route: the principal is known (no handler looks at
/// the `Authorization` header itself).
public struct AuthenticatedContext: ChildRequestContext {
    public typealias ParentContext = HubRequestContext
    public var coreContext: CoreRequestContextStorage
    /// Who is calling; every authorization decision in ``Hub`` takes it.
    public let principal: Principal
    public let remoteAddress: SocketAddress?

    public init(context: HubRequestContext) throws {
        guard let principal = context.principal else { throw HubError.unauthorized }
        self.coreContext = context.coreContext
        self.principal = principal
        self.remoteAddress = context.remoteAddress
    }
}

/// Resolves the bearer key to a ``Principal`` (401 when missing, unknown or revoked; 403 for a
/// suspended customer's keys) and tags the request's log lines with who it is — never the key.
struct AuthenticateMiddleware: RouterMiddleware {
    typealias Context = HubRequestContext
    let keys: KeyAuthority

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let principal = try await keys.principal(authorization: request.headers[.authorization])
        context.principal = principal
        context.logger[metadataKey: "principal"] = "\(principal.logDescription)"
        return try await next(request, context)
    }
}

extension Principal {
    /// `operator`, `customer:cus_…`, `host:hst_…`, `guest:gst_…` (ids, never keys).
    public var logDescription: String {
        switch self {
        case .operator: return "operator"
        case .customer(let customerID): return "customer:\(customerID)"
        case .host(let hostID, _): return "host:\(hostID)"
        case .guest(let guestID, _, _): return "guest:\(guestID)"
        }
    }
}

extension Hub {
    /// The client a request comes from: the socket peer's IP address, or — only when that peer is
    /// one of `trusted_proxies` — the last address in `X-Forwarded-For` that is not a trusted proxy.
    /// A client cannot pick its own identity by sending the header directly.
    public func client(of req: Request, _ ctx: some RemoteAddressRequestContext) -> String {
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
