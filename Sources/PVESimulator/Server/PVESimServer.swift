import FelhomCore
import FelhomHTTP
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Serves a ``PVESimEngine`` over HTTPS (or plain HTTP) with Proxmox's status lines and headers.
public final class PVESimServer: Sendable {
    public let engine: PVESimEngine
    /// The bound port (useful when started on port 0).
    public let port: Int
    public let host: String
    public let usesTLS: Bool
    private let channel: Channel
    private let serveTask: Task<Void, Never>

    /// Largest request body accepted.
    static let maxBody = 1 << 20

    private init(engine: PVESimEngine, host: String, port: Int, usesTLS: Bool, channel: Channel, serveTask: Task<Void, Never>) {
        self.engine = engine
        self.host = host
        self.port = port
        self.usesTLS = usesTLS
        self.channel = channel
        self.serveTask = serveTask
    }

    /// Binds `host:port` and starts serving; `tls: nil` serves plain HTTP.
    public static func start(engine: PVESimEngine, host: String, port: Int, tls: TLSMaterial?) async throws -> PVESimServer {
        var sslContext: NIOSSLContext?
        if let tls {
            let cert = try NIOSSLCertificate(bytes: Array(tls.certificatePEM.utf8), format: .pem)
            let key = try NIOSSLPrivateKey(bytes: Array(tls.privateKeyPEM.utf8), format: .pem)
            var config = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(cert)], privateKey: .privateKey(key))
            config.minimumTLSVersion = .tlsv12
            sslContext = try NIOSSLContext(configuration: config)
        }
        let ssl = sslContext
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let ssl { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: ssl)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        let boundPort = server.channel.localAddress?.port ?? port
        let serverChannel = server.channel
        let task = Task<Void, Never> {
            _ = try? await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask { await serve(connection, engine: engine) }
                    }
                }
            }
        }
        return PVESimServer(engine: engine, host: host, port: boundPort, usesTLS: tls != nil, channel: serverChannel, serveTask: task)
    }

    /// Stops accepting and closes the listener.
    public func shutdown() async {
        try? await channel.close()
        serveTask.cancel()
    }

    private static func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, engine: PVESimEngine) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body: [UInt8] = []
            var tooLarge = false
            for try await part in inbound {
                switch part {
                case .head(let h):
                    head = h
                    body = []
                    tooLarge = false
                case .body(var b):
                    if body.count + b.readableBytes > maxBody {
                        tooLarge = true
                    } else if let bytes = b.readBytes(length: b.readableBytes) {
                        body += bytes
                    }
                case .end:
                    guard let h = head else { continue }
                    let response: SimResponse
                    if tooLarge {
                        response = .text("request entity too large", status: 413, reason: "Request Entity Too Large")
                    } else {
                        let split = h.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
                        let request = SimRequest(
                            method: h.method.rawValue, path: String(split.first ?? ""), query: split.count > 1 ? String(split[1]) : "",
                            headers: h.headers.map { ($0.name, $0.value) }, body: body)
                        response = await engine.handle(request)
                    }
                    var rh = HTTPResponseHead(
                        version: h.version, status: .custom(code: UInt(response.status), reasonPhrase: response.reason))
                    rh.headers.add(name: "Content-Type", value: response.contentType)
                    rh.headers.add(name: "Content-Length", value: String(response.body.count))
                    rh.headers.add(name: "Server", value: "pve-api-daemon/3.0")
                    rh.headers.add(name: "Cache-Control", value: "max-age=0")
                    rh.headers.add(name: "Pragma", value: "no-cache")
                    rh.headers.add(name: "Expires", value: "Thu, 01 Jan 1970 00:00:00 GMT")
                    let close = !h.isKeepAlive
                    if close { rh.headers.add(name: "Connection", value: "close") }
                    try await outbound.write(.head(rh))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body))))
                    try await outbound.write(.end(nil))
                    head = nil
                    if close { return }
                }
            }
        }
    }
}
