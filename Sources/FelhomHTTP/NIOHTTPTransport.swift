import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// HTTP/1.1 over TLS on SwiftNIO, with the trust modes of ``TLSTrust``.
///
/// async-http-client has no hook to verify a leaf fingerprint, so this small client uses
/// `NIOSSLClientHandler`'s custom verification callback directly. One connection per request:
/// pveproxy closes idle keep-alive connections after 5 s, so pooling buys little and races a lot.
public struct NIOHTTPTransport: HTTPTransport {
    public let host: String
    public let port: Int
    public let useTLS: Bool
    public let trust: TLSTrust
    /// Upper bound for one request (connect + send + full answer).
    public let requestTimeout: Duration
    /// Largest answer body accepted (default 16 MiB): a hostile server cannot exhaust memory.
    public var maxResponseBytes = 16 << 20
    /// Connect to this address instead of resolving `host` (like curl's `--resolve`); the `Host`
    /// header and the TLS server name stay `host`. For S3 virtual-host addressing in tests.
    public var connectAddress: String?
    /// The TLS context, built once and shared by every request of this transport (and its copies).
    private let contexts = SSLContextCache()

    /// The `Host` header this transport sends for `host` and `port` (what a signer must sign).
    public static func hostHeader(host: String, port: Int) -> String {
        isIPAddress(host) && host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public init(host: String, port: Int, useTLS: Bool = true, trust: TLSTrust, requestTimeout: Duration = .seconds(60)) {
        self.host = host
        self.port = port
        self.useTLS = useTLS
        self.trust = trust
        self.requestTimeout = requestTimeout
    }

    public func send(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec {
        let limit = min(request.timeout ?? requestTimeout, requestTimeout)
        return try await withThrowingTaskGroup(of: HTTPResponseSpec.self) { group in
            group.addTask { try await self.perform(request) }
            group.addTask {
                try await Task.sleep(for: limit)
                throw HTTPClientError(
                    code: .timeout, message: "no answer from \(self.host):\(self.port) within \(limit)",
                    request: "\(request.method) \(Self.pathOnly(request.target))")
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else {
                throw HTTPClientError(code: .transport, message: "request was cancelled")
            }
            return first
        }
    }

    static func pathOnly(_ target: String) -> String {
        target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? target
    }

    /// What the TLS layer saw: the peer's leaf fingerprint and any handshake error, which can
    /// surface to the writer only as "I/O on closed channel".
    private final class PeerObservation: Sendable {
        let fingerprint = Mutex<CertificateFingerprint?>(nil)
        let tlsFailure = Mutex<String?>(nil)
        /// The raw reason phrase: Proxmox's error message. NIO's HTTP decoder drops it.
        let reasonPhrase = Mutex<String?>(nil)
    }

    /// Reads the status line of the (single) response on this connection before the HTTP decoder
    /// sees the bytes, keeping the reason phrase verbatim. Bytes pass through unchanged.
    private final class StatusLineSniffer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        let observed: PeerObservation
        var head: [UInt8] = []
        var done = false
        init(_ observed: PeerObservation) { self.observed = observed }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if !done {
                let buf = unwrapInboundIn(data)
                head += buf.readableBytesView.prefix(max(0, 8192 - head.count))
                if let cr = head.firstIndex(of: 0x0D) ?? (head.count >= 8192 ? head.count : nil) {
                    done = true
                    let line = String(decoding: head[..<cr], as: UTF8.self)
                    // "HTTP/1.1 500 CT is locked (disk)"
                    let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
                    if parts.count == 3 { observed.reasonPhrase.withLock { $0 = String(parts[2]) } }
                    head = []
                }
            }
            context.fireChannelRead(data)
        }
    }

    /// Records TLS errors passing through the pipeline, then forwards them.
    private final class TLSErrorRecorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = NIOAny
        let observed: PeerObservation
        init(_ observed: PeerObservation) { self.observed = observed }
        func errorCaught(context: ChannelHandlerContext, error: Error) {
            if error is NIOSSLError || error is BoringSSLError {
                observed.tlsFailure.withLock { $0 = $0 ?? "\(error)" }
            }
            context.fireErrorCaught(error)
        }
    }

    private func perform(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec {
        let observed = PeerObservation()
        let sslContext: NIOSSLContext?
        if useTLS {
            sslContext = try makeSSLContext()
        } else {
            sslContext = nil
        }
        let trust = self.trust
        let host = self.host
        let maxResponseBytes = self.maxResponseBytes
        let requestName = "\(request.method) \(Self.pathOnly(request.target))"

        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(host: connectAddress ?? host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let sslContext {
                            let handler = try trust.makeClientHandler(context: sslContext, host: host) { got in
                                observed.fingerprint.withLock { $0 = got }
                            }
                            try channel.pipeline.syncOperations.addHandler(handler)
                            try channel.pipeline.syncOperations.addHandler(TLSErrorRecorder(observed))
                        }
                        try channel.pipeline.syncOperations.addHandler(StatusLineSniffer(observed))
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                            wrappingChannelSynchronously: channel)
                    }
                }
        } catch let e as NIOSSLError {
            // Under load the handshake can fail before the connect future completes.
            throw tlsError(e, observed: observed, request: requestName)
        } catch let e as BoringSSLError {
            throw tlsError(e, observed: observed, request: requestName)
        } catch {
            throw HTTPClientError(code: .transport, message: "cannot connect to \(host):\(port): \(error)", request: requestName)
        }

        do {
            return try await channel.executeThenClose { inbound, outbound in
                var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: request.target)
                head.headers.add(name: "Host", value: Self.hostHeader(host: host, port: port))
                head.headers.add(name: "Connection", value: "close")
                head.headers.add(name: "Accept", value: "application/json")
                for (k, v) in request.headers { head.headers.add(name: k, value: v) }
                if let body = request.body {
                    head.headers.add(name: "Content-Length", value: String(body.count))
                }
                // A server may answer and close before it has read the whole request (an early 413
                // or 401), or answer the moment the last byte arrives and close before the client's
                // own end-of-request reaches the channel (seen under load: "I/O on closed channel"
                // on a request the server had answered). Either way its answer is already in the
                // inbound stream: a failed write is kept and the answer read; the write's error is
                // thrown only when no complete answer came. The last bytes and the end of the
                // request go in one write, so the request is complete on the wire with nothing left
                // to fail after it.
                var writeFailure: (any Error)?
                do {
                    if let body = request.body, !body.isEmpty {
                        try await outbound.write(.head(head))
                        // In 256 KiB pieces, each written when the socket takes it: an 8 MiB upload
                        // part is not copied whole into another buffer.
                        var offset = body.startIndex
                        while offset < body.endIndex {
                            let end = min(offset + (256 << 10), body.endIndex)
                            let piece = HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body[offset..<end])))
                            if end == body.endIndex {
                                try await outbound.write(contentsOf: [piece, .end(nil)])
                            } else {
                                try await outbound.write(piece)
                            }
                            offset = end
                        }
                    } else {
                        try await outbound.write(contentsOf: [.head(head), .end(nil)])
                    }
                } catch {
                    writeFailure = error
                }

                var status = 0
                var reason = ""
                var headers: [(String, String)] = []
                var body = ByteBuffer()
                var answer = inbound.makeAsyncIterator()
                while true {
                    let next: HTTPClientResponsePart?
                    do {
                        next = try await answer.next()
                    } catch {
                        // The connection broke: when the request could not be sent, that says more.
                        throw writeFailure ?? error
                    }
                    guard let part = next else { break }
                    switch part {
                    case .head(let h):
                        status = Int(h.status.code)
                        reason = observed.reasonPhrase.withLock { $0 } ?? h.status.reasonPhrase
                        headers = h.headers.map { ($0.name, $0.value) }
                        if let length = h.headers.first(name: "content-length").flatMap(Int.init), length > 0, length <= maxResponseBytes {
                            body.reserveCapacity(length)  // one allocation, not a doubling series
                        }
                    case .body(var b):
                        if let sink = request.responseSink, (200..<300).contains(status) {
                            try b.withUnsafeReadableBytes { try sink($0) }
                            continue
                        }
                        guard body.readableBytes + b.readableBytes <= maxResponseBytes else {
                            throw HTTPClientError(
                                code: .tooLarge, message: "the answer is larger than \(maxResponseBytes) bytes", request: requestName)
                        }
                        body.writeBuffer(&b)
                    case .end:
                        return HTTPResponseSpec(status: status, reason: reason, headers: headers, body: Data(body.readableBytesView))
                    }
                }
                if !useTLS && status == 0 {
                    // A TLS listener closes (or sends an alert) when it is spoken to in plain HTTP.
                    throw HTTPClientError(
                        code: .transport,
                        message:
                            "\(host):\(port) closed the connection without an HTTP answer: if it serves HTTPS (TLS), use an https:// URL",
                        request: requestName)
                }
                if let writeFailure, status == 0 { throw writeFailure }
                throw HTTPClientError(code: .transport, message: "connection closed before the answer was complete", request: requestName)
            }
        } catch let e as HTTPClientError {
            throw e
        } catch let e as NIOSSLError {
            throw tlsError(e, observed: observed, request: requestName)
        } catch let e as BoringSSLError {
            throw tlsError(e, observed: observed, request: requestName)
        } catch {
            if observed.tlsFailure.withLock({ $0 }) != nil {
                throw tlsError(error, observed: observed, request: requestName)
            }
            throw HTTPClientError(code: .transport, message: "\(host):\(port): \(error)", request: requestName)
        }
    }

    private func tlsError(_ error: Error, observed: PeerObservation, request: String) -> HTTPClientError {
        switch trust {
        case .pinnedLeafSHA256(let pin):
            if let got = observed.fingerprint.withLock({ $0 }), got != pin {
                return HTTPClientError(
                    code: .tls,
                    message: "server certificate fingerprint \(got) does not match the pinned \(pin)", request: request)
            }
        default: break
        }
        let cause = observed.tlsFailure.withLock { $0 } ?? "\(error)"
        if cause.contains("WRONG_VERSION_NUMBER") || cause.contains("HTTP_REQUEST") || cause.contains("PACKET_LENGTH_TOO_LONG") {
            // The first bytes back were not a TLS record: the peer speaks plain HTTP.
            return HTTPClientError(
                code: .tls,
                message: "\(host):\(port) answered in plain HTTP, not TLS: use an http:// URL for a plain listener, or enable TLS on the server",
                request: request)
        }
        return HTTPClientError(code: .tls, message: "TLS handshake with \(host):\(port) failed: \(cause)", request: request)
    }

    private func makeSSLContext() throws -> NIOSSLContext { try contexts.context(for: trust) }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}

/// One transport's TLS client context. Building one parses the trust store (the system bundle is
/// about 150 certificates): per request that was thousands of allocations and, in a long-running
/// agent, megabytes of heap the allocator kept. The context is immutable once built and safe to
/// share across connections; it is rebuilt after ``maxAge`` so a rotated CA file or an updated
/// system bundle is picked up without a restart.
public final class SSLContextCache: Sendable {
    /// How long a built context is used before the trust is read again.
    public static let maxAge: Duration = .seconds(600)
    private let cached = Mutex<(context: NIOSSLContext, built: ContinuousClock.Instant)?>(nil)

    public init() {}

    /// The context for `trust`, built on first use and again once it is ``maxAge`` old.
    public func context(for trust: TLSTrust) throws -> NIOSSLContext {
        let now = ContinuousClock.now
        if let hit = cached.withLock({ $0 }), now - hit.built < Self.maxAge { return hit.context }
        let fresh = try trust.makeSSLContext()
        cached.withLock { $0 = (fresh, now) }
        return fresh
    }
}
