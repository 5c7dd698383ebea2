import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import FelhomHTTP

/// A server that answers before it has read the whole request, then closes its side.
///
/// It answers as soon as it has the request's head, stops reading (so the client's writes back up
/// once the socket buffers are full) and half-closes: the client sees the answer and the end of the
/// stream, its channel closes, and its next write fails with "I/O on closed channel". Its read side
/// stays open, so no reset throws the answer away.
private final class AnswerAtTheHead: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var seen: [UInt8] = []
    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        seen += unwrapInboundIn(data).readableBytesView
        guard seen.count >= 4, (0...(seen.count - 4)).contains(where: { seen[$0..<($0 + 4)].elementsEqual([13, 10, 13, 10]) }) else {
            return
        }
        answered = true
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        let answer = "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer)), promise: nil)
        context.close(mode: .output, promise: nil)
    }
}

@Suite struct EarlyAnswerTests {
    /// Found in the agent's random kill soak under load: a request the server had answered failed
    /// with "transport: …: I/O on closed channel" because a write after the answer failed. The
    /// client now reads the answer the server gave.
    @Test func anAnswerSentBeforeTheRequestWasWrittenIsRead() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { $0.pipeline.addHandler(AnswerAtTheHead()) }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let transport = NIOHTTPTransport(host: "127.0.0.1", port: port, useTLS: false, trust: .systemDefault, requestTimeout: .seconds(30))
        // 64 MiB: far more than the loopback socket buffers take while the server does not read.
        let body = Data(repeating: 0x61, count: 64 << 20)
        let answer = try await transport.send(HTTPRequestSpec(method: "PUT", target: "/upload", body: body))
        #expect(answer.status == 413)
        #expect(String(decoding: answer.body, as: UTF8.self) == "too large")
        try await server.close()
    }
}
