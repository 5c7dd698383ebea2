import FelhomCore
import FelhomHTTP
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// What the local API asks of the agent's backup side (the `Backup/` module implements it).
public protocol LocalAPIBackend: Sendable {
    /// Whether a backup of `vmid` is due now.
    func backupDue(vmid: Int) async -> Bool
    /// Starts (or, while one runs, answers) the backup of `vmid`.
    func startBackup(vmid: Int) async throws(LocalAPIError) -> BackupRun
    /// The run `id` of `vmid` (only its own runs), or its latest run (`idle` when none).
    func backupStatus(vmid: Int, id: String?) async throws(LocalAPIError) -> BackupRun
}

/// The agent's local API for the controllers in its guests (SPEC §4): HTTPS with the agent's own
/// self-signed certificate (controllers pin its SHA-256), `Authorization: Bearer <guest token>`;
/// a token acts only on its own guest. Bodies are at most 4 KiB, each token at most `perMinute`
/// requests a minute (429 beyond). Errors are `{"error": {"code", "message"}}`; the token is never
/// logged or echoed.
public struct LocalAPIServer: Sendable {
    public struct Settings: Sendable {
        public var listen: String
        public var port: Int
        public var perMinute: Int
        public init(listen: String = "127.0.0.1", port: Int = 8787, perMinute: Int = 600) {
            self.listen = listen
            self.port = port
            self.perMinute = perMinute
        }
    }

    let tokens: LocalTokens
    let backend: any LocalAPIBackend
    let settings: Settings
    let certificate: TLSMaterial
    let limiter: RateLimiter
    let restoreTests: RestoreTests?
    let onSeen: @Sendable (Int) -> Void
    let rollbacks: LocalRollbacks?

    /// `restoreTests` answers `GET /restore-test/status` (idle without it); `onSeen` hears of
    /// every authenticated request (the healer's sign of a live controller).
    public init(
        tokens: LocalTokens, backend: any LocalAPIBackend, certificate: TLSMaterial, settings: Settings = Settings(),
        restoreTests: RestoreTests? = nil, rollbacks: LocalRollbacks? = nil, onSeen: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.onSeen = onSeen
        self.rollbacks = rollbacks
        self.tokens = tokens
        self.backend = backend
        self.restoreTests = restoreTests
        self.certificate = certificate
        self.settings = settings
        limiter = RateLimiter(perMinute: settings.perMinute)
    }

    static let maxBody = 4096

    /// Authenticates the request: the guest its token belongs to, or an error.
    func guest(_ request: Request) throws(LocalAPIError) -> Int {
        let header = request.headers[.authorization] ?? ""
        guard header.hasPrefix("Bearer "), let vmid = tokens.guest(for: String(header.dropFirst(7))) else {
            throw LocalAPIError(.unauthorized, "a guest token is required: Authorization: Bearer <agent.token>")
        }
        onSeen(vmid)
        guard limiter.allow(vmid) else {
            throw LocalAPIError(.tooManyRequests, "too many requests for this guest (at most \(settings.perMinute) a minute)")
        }
        return vmid
    }

    static func json(_ value: some Encodable, _ status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ e: LocalAPIError) -> Response {
        struct Body: Encodable {
            struct Inner: Encodable {
                let code: String
                let message: String
            }
            let error: Inner
        }
        return json(Body(error: .init(code: e.code.rawValue, message: e.message)), HTTPResponse.Status(code: e.httpStatus))
    }

    /// Runs `body` for an authenticated guest; every failure becomes an error body.
    func handle(_ request: Request, _ body: (Int) async throws(LocalAPIError) -> Response) async -> Response {
        do throws(LocalAPIError) {
            if let length = request.headers[.contentLength].flatMap(Int.init), length > Self.maxBody {
                throw LocalAPIError(.tooLarge, "a request body is at most \(Self.maxBody) bytes")
            }
            return try await body(try guest(request))
        } catch { return Self.error(error) }
    }

    /// The routes.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        let server = self
        router.get("/backup/due") { req, _ in
            await server.handle(req) { vmid in Self.json(["due": await server.backend.backupDue(vmid: vmid)]) }
        }
        router.post("/backup") { req, _ in
            await server.handle(req) { vmid throws(LocalAPIError) in Self.json(try await server.backend.startBackup(vmid: vmid), .accepted) }
        }
        router.get("/backup/status") { req, _ in
            await server.handle(req) { vmid throws(LocalAPIError) in
                let id = req.uri.queryParameters.get("id")
                if let id, id.isEmpty || id.utf8.count > 128 { throw LocalAPIError(.badRequest, "id must be 1–128 characters") }
                return Self.json(try await server.backend.backupStatus(vmid: vmid, id: id))
            }
        }
        router.post("/rollback") { req, _ in
            await server.handle(req) { vmid throws(LocalAPIError) in
                guard let rollbacks = server.rollbacks else { throw LocalAPIError(.notFound, "rollbacks are not served by this agent") }
                let body: ByteBuffer
                do { body = try await req.body.collect(upTo: Self.maxBody) } catch {
                    throw LocalAPIError(.tooLarge, "a request body is at most \(Self.maxBody) bytes")
                }
                guard let asked = try? JSONDecoder().decode(RollbackRequest.self, from: Data(buffer: body)) else {
                    throw LocalAPIError(.badRequest, #"the body must be {"blob": "<signed op JSON>", "signature": "<armored SSHSIG>"}"#)
                }
                return Self.json(try await rollbacks.start(vmid: vmid, blob: Array(asked.blob.utf8), signature: asked.signature), .accepted)
            }
        }
        router.get("/rollback/status") { req, _ in
            await server.handle(req) { vmid throws(LocalAPIError) in
                guard let rollbacks = server.rollbacks else { throw LocalAPIError(.notFound, "rollbacks are not served by this agent") }
                guard let id = req.uri.queryParameters.get("id"), !id.isEmpty, id.utf8.count <= 128 else {
                    throw LocalAPIError(.badRequest, "id must be 1–128 characters")
                }
                return Self.json(try rollbacks.status(vmid: vmid, id: id))
            }
        }
        router.get("/restore-test/status") { req, _ in
            await server.handle(req) { vmid in Self.json(server.restoreTests?.statusJSON(vmid: vmid) ?? .object(["status": "idle"])) }
        }
        return router
    }

    /// The Hummingbird application serving HTTPS on `settings.listen:port`.
    public func application(logger: Logger, onServerRunning: @escaping @Sendable (Int?) async -> Void = { _ in }) throws
        -> some ApplicationProtocol
    {
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(certificate.certificatePEM.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(certificate.privateKeyPEM.utf8), format: .pem)))
        return Application(
            router: router(), server: try HTTPServerBuilder.tls(.http1(), tlsConfiguration: tls),
            configuration: .init(address: .hostname(settings.listen, port: settings.port)),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port) }, logger: logger)
    }
}

/// A fixed-window limit per guest.
final class RateLimiter: Sendable {
    let perMinute: Int
    let windows = Mutex<[Int: (start: ContinuousClock.Instant, count: Int)]>([:])
    init(perMinute: Int) { self.perMinute = perMinute }

    func allow(_ vmid: Int) -> Bool {
        guard perMinute > 0 else { return true }
        let now = ContinuousClock.now
        return windows.withLock { all in
            var w = all[vmid] ?? (now, 0)
            if now - w.start >= .seconds(60) { w = (now, 0) }
            w.count += 1
            all[vmid] = w
            return w.count <= perMinute
        }
    }
}
