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
/// - Idle connections (no byte either way) close within half of `idleTimeout` after it passed; at most `maxConnections` at once (further
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
            /// The backend's host name does not resolve.
            case backendUnresolvable = "backend_unresolvable"
        }
        public var code: Code
        public var message: String
        public var description: String { "\(code.rawValue): \(message)" }
    }

    public let config: Config
    let group: any EventLoopGroup
    let server = Mutex<(any Channel)?>(nil)
    /// The backend, resolved once at start (no resolver hop per connection).
    let backend = Mutex<SocketAddress?>(nil)
    let connections = Mutex<[ObjectIdentifier: (channel: any Channel, activity: Activity)]>([:])
    /// The idle sweep (one repeated task per proxy: a timer per connection costs NIO's scheduler
    /// more than the relaying itself when clients connect for one request each).
    let sweeper = Mutex<RepeatedTask?>(nil)
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
        do {
            let address = try SocketAddress.makeAddressResolvingHost(config.backendHost, port: config.backendPort)
            backend.withLock { $0 = address }
        } catch {
            throw StartError(
                code: .backendUnresolvable, message: "cannot resolve the backend \(config.backendHost) port \(config.backendPort): \(error)")
        }
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
        let every = TimeAmount.nanoseconds(
            max(TimeAmount.seconds(1).nanoseconds, min(config.idleTimeout.nanoseconds / 2, TimeAmount.seconds(30).nanoseconds)))
        let sweep = group.next().scheduleRepeatedTask(initialDelay: every, delay: every) { [self] _ in self.closeIdle() }
        sweeper.withLock { $0 = sweep }
        return channel.localAddress?.port ?? config.listenPort
    }

    /// Stops accepting, lets open connections finish for at most `drain`, then closes the rest.
    public func stop(drain: Duration = .seconds(10)) async {
        let listener = server.withLock { s -> (any Channel)? in
            defer { s = nil }
            return s
        }
        try? await listener?.close()
        sweeper.withLock { $0?.cancel() }
        let deadline = ContinuousClock.now + drain
        while openConnections > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for entry in connections.withLock({ Array($0.values) }) { try? await entry.channel.close() }
    }

    /// Closes connections that moved no byte for `idleTimeout`.
    func closeIdle() {
        let limit = NIODeadline.now().uptimeNanoseconds &- UInt64(max(0, config.idleTimeout.nanoseconds))
        for entry in connections.withLock({ Array($0.values) }) where entry.activity.last < limit {
            entry.channel.close(promise: nil)
        }
    }

    func accept(_ client: any Channel) {
        let id = ObjectIdentifier(client)
        let activity = Activity()
        let admitted = connections.withLock { open -> Bool in
            guard open.count < config.maxConnections else { return false }
            open[id] = (client, activity)
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
        guard let target = backend.withLock({ $0 }) else {
            client.close(promise: nil)
            return
        }
        ClientBootstrap(group: client.eventLoop)
            .connectTimeout(config.connectTimeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: false)
            .connect(to: target)
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
                        let (a, b) = Relay.pair(activity: activity)
                        try client.pipeline.syncOperations.addHandler(a)
                        try backend.pipeline.syncOperations.addHandler(b)
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

/// When a connection last moved a byte (either way), in NIO uptime nanoseconds.
final class Activity: Sendable {
    private let stamp = Atomic<UInt64>(NIODeadline.now().uptimeNanoseconds)
    var last: UInt64 { stamp.load(ordering: .relaxed) }
    func touch() { stamp.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed) }
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
    private let activity: Activity
    private var pendingRead = false
    private var inputClosed = false
    private var outputClosed = false

    init(activity: Activity) { self.activity = activity }

    static func pair(activity: Activity) -> (Relay, Relay) {
        let a = Relay(activity: activity)
        let b = Relay(activity: activity)
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
        activity.touch()
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
