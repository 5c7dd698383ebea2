import FelhomCore
import Foundation

/// The host's tunnel connector token on the box: `state_dir/tunnel.env`, mode 0600 in the 0700
/// state directory, one line `TUNNEL_TOKEN=…` — the `EnvironmentFile=` of
/// `felhom-cloudflared.service` (cloudflared reads `TUNNEL_TOKEN` for `tunnel run`). The token
/// comes from the hub (the enrollment answer, then `GET /api/v1/hosts/{id}/tunnel-token`), which
/// the box does not trust: only the connector token's own characters are written, so no hub text
/// can add a line to the service's environment.
public enum TunnelTokenFile {
    public static let name = "tunnel.env"

    /// Why the hub's token text is refused, or nil when it is written as is.
    public static func problem(_ token: String) -> String? {
        guard !token.isEmpty, token.utf8.count <= 4096 else { return "the hub's tunnel token is empty or longer than 4096 bytes" }
        let allowed = token.utf8.allSatisfy { b in
            (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) || (0x30...0x39).contains(b) || [0x2B, 0x2F, 0x3D, 0x2D, 0x5F].contains(b)
        }
        return allowed ? nil : "the hub's tunnel token holds characters a connector token does not have (only A-Z a-z 0-9 + / = - _)"
    }

    /// The stored token, or nil when there is none (or the file is not one this wrote).
    public static func read(stateDir: String) -> String? {
        guard let data = FileManager.default.contents(atPath: stateDir + "/" + name) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        guard text.hasPrefix("TUNNEL_TOKEN="), text.hasSuffix("\n") else { return nil }
        let token = String(text.dropFirst("TUNNEL_TOKEN=".count).dropLast())
        return problem(token) == nil ? token : nil
    }

    /// Writes `token` (atomically, durably, 0600); false when the file already holds it.
    @discardableResult
    public static func store(_ token: String, stateDir: String) throws(ConfigError) -> Bool {
        if let problem = problem(token) { throw ConfigError(code: .invalid, message: problem) }
        if read(stateDir: stateDir) == token { return false }
        let path = stateDir + "/" + name
        do { try DurableFile.write(Array("TUNNEL_TOKEN=\(token)\n".utf8), to: path, mode: 0o600) } catch {
            throw ConfigError(code: .unreadable, message: "cannot write '\(path)': \(error.message)")
        }
        return true
    }
}
