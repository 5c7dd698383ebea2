import ArgumentParser
import FelhomAgent
import Foundation
import NIOCore

/// `felhom-agent route-proxy`: one route's proxy on its own, for tests and for operators trying a
/// backend's PROXY set-up (docs/routes.md).
struct RouteProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route-proxy",
        abstract: "Relay TCP connections from --listen to --backend, optionally behind a PROXY protocol v2 header.",
        discussion: """
            Runs in the foreground until stopped. With --proxy-protocol v2 every connection to the backend starts with a \
            PROXY v2 header (one write, before any payload) carrying the client's address and the address it connected \
            to, with a CRC32C TLV (--no-crc32c leaves it out) and, with --unique-id, a UNIQUE_ID TLV. Only for a backend \
            set up to expect it (HAProxy accept-proxy, nginx proxy_protocol). Prints 'route-proxy: listening on HOST:PORT' \
            once it accepts connections (--listen with port 0 picks a free port).
            """)
    @Option(name: .long, help: "ADDR:PORT to listen on (IPv6 in brackets: [::]:8443).") var listen: String
    @Option(name: .long, help: "ADDR:PORT of the backend.") var backend: String
    @Option(name: .long, help: "off (default) or v2.") var proxyProtocol: String = "off"
    @Flag(name: .long, help: "With v2: add a PP2_TYPE_UNIQUE_ID TLV per connection.") var uniqueID = false
    @Flag(name: .long, help: "With v2: leave out the PP2_TYPE_CRC32C TLV.") var noCrc32c = false
    @Option(name: .long, help: "Close a connection idle this many seconds (default 3600).") var idleSeconds: Int = 3600
    @Option(name: .long, help: "At most this many connections at once (default 1024).") var maxConnections: Int = 1024

    /// `HOST:PORT` or `[V6]:PORT`.
    static func split(_ text: String, _ option: String) throws -> (String, Int) {
        var host: Substring
        var port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ValidationError("\(option) '\(text)': an IPv6 address goes in brackets: [::1]:8443")
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw ValidationError("\(option) '\(text)' must be ADDR:PORT") }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let p = Int(port), (0...65535).contains(p) else {
            throw ValidationError("\(option) '\(text)' must be ADDR:PORT with a port 0…65535")
        }
        return (String(host), p)
    }

    func run() async throws {
        let (lh, lp) = try Self.split(listen, "--listen")
        let (bh, bp) = try Self.split(backend, "--backend")
        guard bp > 0 else { throw ValidationError("--backend needs a port 1…65535") }
        guard ["off", "v2"].contains(proxyProtocol) else { throw ValidationError("--proxy-protocol must be off or v2") }
        guard idleSeconds > 0, maxConnections > 0 else { throw ValidationError("--idle-seconds and --max-connections must be positive") }
        let proxy = RouteProxy(
            config: .init(
                listenHost: lh, listenPort: lp, backendHost: bh, backendPort: bp, proxyProtocolV2: proxyProtocol == "v2", uniqueID: uniqueID,
                crc32c: !noCrc32c, idleTimeout: .seconds(Int64(idleSeconds)), maxConnections: maxConnections))
        let port: Int
        do { port = try await proxy.start() } catch {
            FileHandle.standardError.write(Data("felhom-agent: route-proxy: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let shown = lh.contains(":") ? "[\(lh)]" : lh
        FileHandle.standardOutput.write(Data("route-proxy: listening on \(shown):\(port) → \(backend) (proxy protocol \(proxyProtocol))\n".utf8))
        while true { try await Task.sleep(for: .seconds(3600)) }
    }
}
