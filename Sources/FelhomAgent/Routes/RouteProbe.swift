import FelhomCore
import Foundation
import NIOCore
import NIOPosix

/// The health check of one route's backend (ADR 0009 "fail fast"; docs/routes.md):
///
/// - `off`: a TCP connect.
/// - `v2`: first the **passive** probe — connect and send nothing for 0.5 s: a backend that waits
///   for a PROXY header stays silent, so one that speaks first (an SSH or SMTP banner) does not
///   expect it. Then the **active** probe — send the 16-byte PROXY v2 LOCAL header (it carries no
///   address, so it is safe to send) and nothing else: a PROXY receiver consumes it and waits for
///   the client's request; a backend that answers (HTTP 400, an echo of the signature) or closes
///   is reading the header as payload. With the route's `probe_hello`, the hello follows the
///   header in the same write: a PROXY receiver then answers it as a request, and only an answer
///   that is an echo of the signature or an HTTP 400, or a close, means the header was payload.
///
/// ``classify(proxyProtocol:passive:active:hello:)`` is the pure decision; ``probe(host:port:proxyProtocol:hello:group:)`` does the I/O.
public enum RouteProbe {
    /// What one probe connection saw.
    public enum Outcome: Sendable, Equatable {
        case connectFailed(String)
        /// Nothing came back within the wait.
        case silent
        /// The backend sent these (first) bytes.
        case spoke([UInt8])
        /// The backend closed the connection without sending anything.
        case closed
    }

    /// The route's state from the probes' outcomes: `(state, reason, message)`.
    public static func classify(proxyProtocol: DesiredState.Route.ProxyProtocol, passive: Outcome?, active: Outcome, hello: Bool = false) -> (
        RouteStatus.State, String?, String?
    ) {
        if case .connectFailed(let why) = active { return (.unhealthy, "backend_unreachable", why) }
        if case .connectFailed(let why)? = passive { return (.unhealthy, "backend_unreachable", why) }
        guard proxyProtocol == .v2 else { return (.healthy, nil, nil) }
        if case .spoke(let bytes)? = passive {
            return (
                .unhealthy, "backend_does_not_expect_proxy_protocol",
                "the backend spoke first without waiting for a PROXY header: \(printable(bytes))"
            )
        }
        switch active {
        case .silent:
            return (.healthy, nil, nil)
        case .spoke(let bytes):
            let echo = bytes.starts(with: ProxyHeader.signature.prefix(min(bytes.count, 12)))
            if hello && !echo {
                guard isHTTP400(bytes) else { return (.healthy, nil, nil) }
                return (
                    .unhealthy, "backend_does_not_expect_proxy_protocol",
                    "the backend answered the PROXY header and hello with a 400 (it reads the header as payload): \(printable(bytes))"
                )
            }
            return (
                .unhealthy, "backend_does_not_expect_proxy_protocol",
                echo
                    ? "the backend echoed the PROXY header back: it reads it as payload"
                    : "the backend answered the bare PROXY header (a PROXY receiver would wait for the request): \(printable(bytes))"
            )
        case .closed:
            return (.unhealthy, "backend_does_not_expect_proxy_protocol", "the backend closed the connection on the PROXY header")
        case .connectFailed(let why):
            return (.unhealthy, "backend_unreachable", why)
        }
    }

    /// An HTTP status line with status 400 (`HTTP/1.x 400 …`).
    public static func isHTTP400(_ bytes: [UInt8]) -> Bool {
        let line = String(decoding: bytes.prefix(16), as: UTF8.self)
        return line.hasPrefix("HTTP/") && line.split(separator: " ", maxSplits: 2).dropFirst().first == "400"
    }

    /// At most 60 printable characters of what a backend sent (for the operator; escaped).
    static func printable(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes.prefix(60), as: UTF8.self)
        return String(text.unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7F ? Character($0) : "." })
    }

    /// Runs the probes of one route against `host:port`; `hello` (v2 only) follows the LOCAL header.
    public static func probe(
        host: String, port: Int, proxyProtocol: DesiredState.Route.ProxyProtocol, hello: String? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async -> (RouteStatus.State, String?, String?) {
        if proxyProtocol == .off {
            return classify(proxyProtocol: .off, passive: nil, active: await connect(host: host, port: port, send: nil, wait: .zero, group: group))
        }
        let passive = await connect(host: host, port: port, send: nil, wait: .milliseconds(500), group: group)
        if case .spoke = passive { return classify(proxyProtocol: .v2, passive: passive, active: .silent) }
        if case .connectFailed = passive { return classify(proxyProtocol: .v2, passive: passive, active: passive) }
        let active = await connect(host: host, port: port, send: ProxyHeader.localV2 + Array((hello ?? "").utf8), wait: .seconds(1), group: group)
        return classify(proxyProtocol: .v2, passive: passive, active: active, hello: hello != nil)
    }

    /// Connects, sends `send`, and reports what came back within `wait` (with `.zero`, only
    /// whether the connect worked).
    static func connect(host: String, port: Int, send: [UInt8]?, wait: TimeAmount, group: any EventLoopGroup) async -> Outcome {
        let loop = group.next()
        let promise = loop.makePromise(of: Outcome.self)
        let collector = Collector(promise: promise)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop).connectTimeout(.seconds(2))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(collector) }
                }
                .connect(host: host, port: port).get()
        } catch {
            promise.succeed(.connectFailed("cannot connect to \(host) port \(port): \(error)"))
            return (try? await promise.futureResult.get()) ?? .connectFailed("\(error)")
        }
        if wait == .zero {
            loop.execute { collector.finish(.silent) }
        } else {
            if let send { channel.writeAndFlush(channel.allocator.buffer(bytes: send), promise: nil) }
            loop.scheduleTask(in: wait) { collector.finish(nil) }
        }
        let outcome = (try? await promise.futureResult.get()) ?? .closed
        try? await channel.close()
        return outcome
    }

    /// Collects a probe connection's bytes; completes the promise once (on the event loop).
    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<Outcome>
        var bytes: [UInt8] = []
        var done = false

        init(promise: EventLoopPromise<Outcome>) { self.promise = promise }

        /// `nil`: what was seen so far.
        func finish(_ outcome: Outcome?) {
            guard !done else { return }
            done = true
            promise.succeed(outcome ?? (bytes.isEmpty ? .silent : .spoke(bytes)))
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            bytes += buffer.readBytes(length: min(buffer.readableBytes, 256 - bytes.count)) ?? []
            if bytes.count >= 256 { finish(.spoke(bytes)) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            finish(bytes.isEmpty ? .closed : .spoke(bytes))
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            finish(bytes.isEmpty ? .closed : .spoke(bytes))
            context.close(promise: nil)
        }
    }
}
