import FelhomAgent
import FelhomCore
import FelhomHubClient
import FelhomSigning
import FelhomTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import PVESimulator
import Proxmox
import Testing

/// A TCP echo server on 127.0.0.1 (a backend that does not expect a PROXY header).
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.writeAndFlush(data, promise: nil) }
}

func startEcho() async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .childChannelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(EchoHandler()) } }
        .bind(host: "127.0.0.1", port: 0).get()
}

/// A port nothing listens on (bound and released).
func freePort() async throws -> Int {
    let ch = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = ch.localAddress?.port ?? 0
    try await ch.close()
    return port
}

/// Runs blocking socket calls on a Dispatch thread: a test must not hold one of the few
/// cooperative threads for seconds (the other suites' timers would starve).
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// One request through a port: send, read until `expected` bytes came back.
func roundTrip(port: Int, _ text: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard ok == 0 else { throw POSIXError(.ECONNREFUSED) }
    _ = text.withCString { send(fd, $0, strlen($0), 0) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while out.count < text.utf8.count {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        out += buffer[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// Routes from a published desired state to running listeners, through the agent's cycle on the
/// simulator (the guest's address is 127.0.0.1, where an echo backend listens).
@Suite struct RouteManagerTests {
    @Test func publishedRoutesRunAreProbedAndStopWhenRemoved() async throws {
        let echo = try await startEcho()
        let echoPort = try #require(echo.localAddress?.port)
        let guestAtLoopback: (inout SimState) -> Void = { $0.containers[100]?.address = "127.0.0.1" }
        try await withAgentWorld(guestAtLoopback) { w in
            let agent = try await w.agent(routes: .init(listenHost: "127.0.0.1", probeInterval: 0, drain: .milliseconds(200)))
            let web = DesiredState.Guest(vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running)
            let db = DesiredState.Guest(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped)
            let (p1, p2, busyPort) = (try await freePort(), try await freePort(), try await freePort())
            var desired = DesiredState(guests: [web, db])
            desired.routes = [
                .init(id: "echo", guestVMID: 100, listenPort: p1, targetPort: echoPort, proxyProtocol: .v2, backendExpectsProxyProtocol: true),
                .init(id: "stopped", guestVMID: 101, listenPort: p2, targetPort: 80),
            ]
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            try await agent.cycle()
            // The echo backend reads the header as payload: the active probe says so.
            var report = try #require(try await agent.hostReport()?.routes)
            #expect(report.map(\.id) == ["echo", "stopped"])
            #expect(report[0].state == .unhealthy && report[0].reason == "backend_does_not_expect_proxy_protocol", "\(report[0])")
            #expect(report[1].state == .unhealthy && report[1].reason == "guest_not_running")
            let unhealthy = try await w.op.events(hostID: w.hostID, type: "route_unhealthy")
            #expect(Set(unhealthy.compactMap { $0.data["reason"]?.stringValue }) == ["backend_does_not_expect_proxy_protocol", "guest_not_running"])
            // Through the v2 route the echo answers with the header first: proof it is sent.
            let echoed = try await offPool { try roundTrip(port: p1, "ping") }
            #expect(echoed.utf8.starts(with: ProxyHeader.signature))

            // Off: the route restarts, the probe is a connect, bytes go through unchanged.
            desired.routes[0].proxyProtocol = .off
            desired.routes[0].backendExpectsProxyProtocol = false
            // A second route on a port another process holds: unhealthy, the first keeps working.
            let busy = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: busyPort).get()
            desired.routes[1] = .init(id: "busy", guestVMID: 100, listenPort: busyPort, targetPort: echoPort)
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            try await agent.cycle()
            report = try #require(try await agent.hostReport()?.routes)
            #expect(report.first { $0.id == "echo" }?.state == .healthy)
            #expect(report.first { $0.id == "busy" }?.reason == "listen_port_in_use")
            #expect(report.first { $0.id == "stopped" } == nil, "a removed route is gone from the report")
            #expect(try await offPool { try roundTrip(port: p1, "hello, route") } == "hello, route")
            #expect(try await w.op.events(hostID: w.hostID, type: "route_healthy").count == 1)
            try await busy.close()

            // Removed: the listener closes.
            desired.routes = []
            _ = try await w.op.putDesired(hostID: w.hostID, desired)
            _ = try await w.op.publishDesired(hostID: w.hostID)
            try await agent.cycle()
            await #expect(throws: (any Error).self) { try await offPool { try roundTrip(port: p1, "x") } }
            #expect(try await agent.hostReport()?.routes == nil)
        }
        try await echo.close()
    }

    /// A connection that moves no byte is closed after the idle timeout (the proxy's sweep), and
    /// one beyond the connection limit is closed on accept.
    @Test func idleConnectionsCloseAndTheLimitHolds() async throws {
        let echo = try await startEcho()
        let proxy = RouteProxy(
            config: .init(
                listenHost: "127.0.0.1", listenPort: 0, backendHost: "127.0.0.1", backendPort: try #require(echo.localAddress?.port),
                idleTimeout: .seconds(3), maxConnections: 1))
        let port = try await proxy.start()
        func open() -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            var tv = timeval(tv_sec: 8, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            return fd
        }
        let idle = open()
        defer { close(idle) }
        // The first connection is admitted before the second arrives (under load, a fixed sleep
        // was not enough: the idle sweep could close the first one before the second came).
        let admitted = ContinuousClock.now + .seconds(10)
        while proxy.openConnections < 1, ContinuousClock.now < admitted { try await Task.sleep(for: .milliseconds(20)) }
        #expect(proxy.openConnections == 1)
        let extra = open()
        defer { close(extra) }
        func readOne(_ fd: Int32) async throws -> Int {
            try await offPool {
                var byte: UInt8 = 0
                return recv(fd, &byte, 1, 0)
            }
        }
        #expect(try await readOne(extra) == 0, "the second connection is over the limit of 1: closed at once")
        let started = ContinuousClock.now
        #expect(try await readOne(idle) == 0, "closed by the idle sweep, not by the 8 s receive timeout")
        #expect(ContinuousClock.now - started < .seconds(6))
        #expect(proxy.stats.refused == 1)
        await proxy.stop(drain: .milliseconds(100))
        try await echo.close()
    }

    /// A compromised hub cannot open any port on the customer's network: `routes.allowed_ports`.
    @Test func routesOutsideTheBoxsAllowListAreNotOpened() async throws {
        #expect(try PortRanges(parsing: "80, 443,8000-8099").description == "80,443,8000-8099")
        for bad in ["", "0", "70000", "90-80", "80-", "http", "1-2-3"] {
            #expect(throws: PortRanges.ParseError.self, "\(bad)") { try PortRanges(parsing: bad) }
        }
        let echo = try await startEcho()
        let echoPort = try #require(echo.localAddress?.port)
        let (allowed, refused) = (try await freePort(), try await freePort())
        let manager = RouteManager(
            settings: .init(listenHost: "127.0.0.1", probeInterval: 0, drain: .milliseconds(100), allowedPorts: try PortRanges(parsing: "\(allowed)"))
        )
        let events = await manager.apply(
            [
                .init(id: "ok", guestVMID: 100, listenPort: allowed, targetPort: echoPort),
                .init(id: "db", guestVMID: 100, listenPort: refused, targetPort: 5432),
            ],
            addresses: [100: "127.0.0.1"])
        #expect(events.map { $0.data["reason"]?.stringValue } == ["listen_port_not_allowed"])
        let report = await manager.report
        #expect(report.map(\.id) == ["db", "ok"] && report[0].reason == "listen_port_not_allowed" && report[1].state == .unknown)
        #expect(try await offPool { try roundTrip(port: allowed, "through") } == "through")
        #expect(throws: (any Error).self, "nothing listens on the refused port") { try roundTrip(port: refused, "x") }
        await manager.stopAll()
        try await echo.close()
    }

    @Test func theProbesClassifyWhatTheBackendDid() {
        #expect(RouteProbe.classify(proxyProtocol: .v2, passive: .silent, active: .silent).0 == .healthy)
        #expect(
            RouteProbe.classify(proxyProtocol: .v2, passive: .spoke(Array("SSH-2.0-OpenSSH_9.2\r\n".utf8)), active: .silent).1
                == "backend_does_not_expect_proxy_protocol")
        let http400 = RouteProbe.classify(proxyProtocol: .v2, passive: .silent, active: .spoke(Array("HTTP/1.1 400 Bad Request\r\n".utf8)))
        #expect(http400.1 == "backend_does_not_expect_proxy_protocol" && http400.2?.contains("HTTP/1.1 400") == true)
        #expect(RouteProbe.classify(proxyProtocol: .v2, passive: .silent, active: .closed).1 == "backend_does_not_expect_proxy_protocol")
        #expect(RouteProbe.classify(proxyProtocol: .off, passive: nil, active: .connectFailed("refused")).1 == "backend_unreachable")
        #expect(RouteProbe.classify(proxyProtocol: .off, passive: nil, active: .silent).0 == .healthy)
        // With a hello, an answer is expected: only a 400, an echo or a close is the header read as payload.
        let ok = Array("HTTP/1.0 200 OK\r\n".utf8)
        #expect(RouteProbe.classify(proxyProtocol: .v2, passive: .silent, active: .spoke(ok), hello: true).0 == .healthy)
        #expect(RouteProbe.classify(proxyProtocol: .v2, passive: .silent, active: .spoke(ok), hello: false).0 == .unhealthy)
        let bad = RouteProbe.classify(proxyProtocol: .v2, passive: .silent, active: .spoke(Array("HTTP/1.1 400 Bad Request\r\n".utf8)), hello: true)
        #expect(bad.0 == .unhealthy && bad.1 == "backend_does_not_expect_proxy_protocol" && bad.2?.contains("hello") == true)
        #expect(
            RouteProbe.classify(proxyProtocol: .v2, passive: .silent, active: .spoke(ProxyHeader.localV2), hello: true).1
                == "backend_does_not_expect_proxy_protocol")
        #expect(RouteProbe.classify(proxyProtocol: .v2, passive: .silent, active: .closed, hello: true).0 == .unhealthy)
        #expect(RouteProbe.classify(proxyProtocol: .v2, passive: .silent, active: .silent, hello: true).0 == .healthy)
        #expect(!RouteProbe.isHTTP400(Array("HTTP/1.1 4000".utf8)) && RouteProbe.isHTTP400(Array("HTTP/1.0 400 Bad".utf8)))
    }
}
