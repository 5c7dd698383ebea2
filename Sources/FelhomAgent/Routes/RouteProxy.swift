import FelhomCore
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// One route's L4 proxy (ADR 0009; docs/routes.md): accepts TCP connections on `listen` and
/// relays each, both ways, to `backend` — optionally behind a PROXY v2 header that carries the
/// client's real address.
///
/// - **Back-pressure**: a side is read only while the other side can take the bytes (the
///   channel's write buffer is under its high-water mark), so a slow reader slows the writer and
///   nothing buffers without bound.
/// - **Half-close**: a side that finishes sending is passed on as a shutdown of the other side's
///   output; the connection closes when both directions are done.
/// - **PROXY v2**: the header (``ProxyHeader/encodeV2(source:destination:uniqueID:crc32c:)``) is
///   written to the backend in one write before any payload — the client is not read until it
///   has been queued (HAProxy resets a header split over two writes).
/// - Idle connections close after `idleTimeout`; at most `maxConnections` at once (further
///   clients are closed on accept); IPv4 and IPv6 clients (a `[::]` listener takes both).
public final class RouteProxy: Sendable {
    public struct Config: Sendable {
        /// Where to listen (`0.0.0.0`, `::`, `127.0.0.1`, …) and on which port (0: any free port).
        public var listenHost: String
        public var listenPort: Int
        public var backendHost: String
        public var backendPort: Int
        /// Write a PROXY v2 header in front of every connection.
        public var proxyProtocolV2: Bool
        /// With v2: add a `PP2_TYPE_UNIQUE_ID` TLV (`<idPrefix>-<16 hex digits>`).
        public var uniqueID: Bool
        /// With v2: add a `PP2_TYPE_CRC32C` TLV over the header.
        public var crc32c: Bool
        public var idPrefix: String
        public var idleTimeout: TimeAmount
        public var connectTimeout: TimeAmount
        public var maxConnections: Int

        public init(
            listenHost: String, listenPort: Int, backendHost: String, backendPort: Int, proxyProtocolV2: Bool = false, uniqueID: Bool = false,
            crc32c: Bool = true, idPrefix: String = "felhom", idleTimeout: TimeAmount = .seconds(3600), connectTimeout: TimeAmount = .seconds(5),
            maxConnections: Int = 1024
        ) {
            self.listenHost = listenHost
            self.listenPort = listenPort
            self.backendHost = backendHost
            self.backendPort = backendPort
            self.proxyProtocolV2 = proxyProtocolV2
            self.uniqueID = uniqueID
            self.crc32c = crc32c
            self.idPrefix = idPrefix
            self.idleTimeout = idleTimeout
            self.connectTimeout = connectTimeout
            self.maxConnections = maxConnections
        }
    }

    /// Why a route's listener could not start.
    public struct StartError: Error, Sendable, CustomStringConvertible {
        public enum Code: String, Sendable {
            /// Another process holds the port.
            case listenPortInUse = "listen_port_in_use"
            case listenFailed = "listen_failed"
        }
        public var code: Code
        public var message: String
        public var description: String { "\(code.rawValue): \(message)" }
    }

    public let config: Config
    let group: any EventLoopGroup
    let server = Mutex<(any Channel)?>(nil)
    let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    let counters = Mutex<(accepted: Int, refused: Int, failedBackend: Int)>((0, 0, 0))

    public init(config: Config, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.config = config
        self.group = group
    }

    /// Connections open now.
    public var openConnections: Int { connections.withLock { $0.count } }
    /// Connections accepted, refused at the limit, and failed because the backend could not be reached.
    public var stats: (accepted: Int, refused: Int, failedBackend: Int) { counters.withLock { $0 } }

    /// Starts listening; returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] child in
                self.accept(child)
                return child.eventLoop.makeSucceededVoidFuture()
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: config.listenHost, port: config.listenPort).get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw StartError(code: .listenPortInUse, message: "\(config.listenHost) port \(config.listenPort) is already in use")
        } catch {
            throw StartError(code: .listenFailed, message: "cannot listen on \(config.listenHost) port \(config.listenPort): \(error)")
        }
        server.withLock { $0 = channel }
        return channel.localAddress?.port ?? config.listenPort
    }

    /// Stops accepting, lets open connections finish for at most `drain`, then closes the rest.
    public func stop(drain: Duration = .seconds(10)) async {
        let listener = server.withLock { s -> (any Channel)? in
            defer { s = nil }
            return s
        }
        try? await listener?.close()
        let deadline = ContinuousClock.now + drain
        while openConnections > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for channel in connections.withLock({ Array($0.values) }) { try? await channel.close() }
    }

    func accept(_ client: any Channel) {
        let id = ObjectIdentifier(client)
        let admitted = connections.withLock { open -> Bool in
            guard open.count < config.maxConnections else { return false }
            open[id] = client
            return true
        }
        counters.withLock { c in
            if admitted { c.accepted += 1 } else { c.refused += 1 }
        }
        guard admitted else {
            client.close(promise: nil)
            return
        }
        client.closeFuture.whenComplete { [self] _ in _ = self.connections.withLock { $0.removeValue(forKey: id) } }
        let header = config.proxyProtocolV2 ? self.header(for: client) : nil
        let idle = config.idleTimeout
        ClientBootstrap(group: client.eventLoop)
            .connectTimeout(config.connectTimeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: false)
            .connect(host: config.backendHost, port: config.backendPort)
            .whenComplete { [self] result in
                switch result {
                case .failure:
                    self.counters.withLock { $0.failedBackend += 1 }
                    client.close(promise: nil)
                case .success(let backend):
                    client.closeFuture.whenComplete { _ in backend.close(promise: nil) }
                    do {
                        // The header goes first, as one buffer; the client has not been read yet.
                        if let header {
                            backend.write(backend.allocator.buffer(bytes: header), promise: nil)
                        }
                        let (a, b) = Relay.pair()
                        try client.pipeline.syncOperations.addHandlers([IdleStateHandler(allTimeout: idle), a])
                        try backend.pipeline.syncOperations.addHandlers([IdleStateHandler(allTimeout: idle), b])
                        backend.flush()
                        client.setOption(.autoRead, value: true).whenComplete { _ in }
                        backend.setOption(.autoRead, value: true).whenComplete { _ in }
                    } catch {
                        backend.close(promise: nil)
                        client.close(promise: nil)
                    }
                }
            }
    }

    /// The PROXY v2 header for a client: its address, and the address it connected to. A client
    /// that reached an IPv6 listener over IPv4 (`::ffff:a.b.c.d`) is sent as IPv4.
    func header(for client: any Channel) -> [UInt8]? {
        guard let source = Self.endpoint(client.remoteAddress), let destination = Self.endpoint(client.localAddress) else { return nil }
        var id: [UInt8]?
        if config.uniqueID {
            var rng = SystemRandomNumberGenerator()
            id = Array("\(config.idPrefix)-\(String(format: "%016llx", rng.next() as UInt64))".utf8)
        }
        return ProxyHeader.encodeV2(source: source, destination: destination, uniqueID: id, crc32c: config.crc32c)
    }

    static func endpoint(_ address: SocketAddress?) -> ProxyHeader.Endpoint? {
        guard let address, let port = address.port else { return nil }
        switch address {
        case .v4(let a):
            let raw = withUnsafeBytes(of: a.address.sin_addr) { Array($0) }
            return .init(address: raw, port: UInt16(port))
        case .v6(let a):
            var raw = withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
            if raw.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] { raw = Array(raw.suffix(4)) }
            return .init(address: raw, port: UInt16(port))
        default:
            return nil
        }
    }
}

/// One side of a relayed connection; its partner sits in the other channel's pipeline, on the
/// same event loop. Reads are passed on only while the partner can write (back-pressure).
final class Relay: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: Relay?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var inputClosed = false
    private var outputClosed = false

    static func pair() -> (Relay, Relay) {
        let a = Relay()
        let b = Relay()
        a.partner = b
        b.partner = a
        return (a, b)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.partnerWrite(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClose()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, case .inputClosed = e {
            inputClosed = true
            partner?.partnerEndOutput()
            if outputClosed { context.close(promise: nil) }
        } else if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerCanTakeMore() }
        context.fireChannelWritabilityChanged()
    }

    /// The channel asks to read: only while the partner can write what comes.
    func read(context: ChannelHandlerContext) {
        if partner?.canWrite ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }

    // What the partner does to this side.

    private var canWrite: Bool { context?.channel.isWritable ?? false }

    private func partnerWrite(_ buffer: ByteBuffer) {
        context?.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() { context?.flush() }

    private func partnerEndOutput() {
        guard let context, !outputClosed else { return }
        outputClosed = true
        context.flush()
        if inputClosed {
            context.close(promise: nil)
        } else {
            context.close(mode: .output, promise: nil)
        }
    }

    private func partnerClose() { context?.close(promise: nil) }

    private func partnerCanTakeMore() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }
}
