import FelhomCore
import FelhomHTTP
import Foundation

/// Starts a simulated Proxmox VE host: state (from a state dir, a seed or the default seed), a TLS
/// certificate (kept in the state dir), and the HTTPS API server.
public enum PVESimulator {
    /// How to start.
    public struct Options: Sendable {
        public var host: String = "127.0.0.1"
        /// 0 picks a free port.
        public var port: Int = 8006
        /// Keeps `state.json`, `cert.pem` and `key.pem`; the state survives restarts. `nil`: memory only.
        public var stateDirectory: URL?
        /// Initial state when the state dir has none (default: ``SimSeed/defaultState(now:)``).
        public var seed: SimState?
        /// Serve plain HTTP (debugging only).
        public var plainHTTP: Bool = false
        /// Use this certificate instead of the self-signed one.
        public var tls: TLSMaterial?
        public var clock: WallClock = SystemWallClock()
        /// A PBS datastore shared with other simulated hosts (``SimPBSDatastore``); nil: each
        /// host keeps its backups to itself.
        public var sharedPBS: SimPBSDatastore?

        public init() {}
    }

    /// A running simulator.
    public struct Running: Sendable {
        public let server: PVESimServer
        public var engine: PVESimEngine { server.engine }
        /// The certificate's SHA-256 fingerprint (`nil` with plain HTTP).
        public let fingerprint: String?
        /// Seeded tokens: token id and secret.
        public let tokens: [(id: String, secret: String)]
        /// Whether the state came from an existing state dir.
        public let resumed: Bool

        public var port: Int { server.port }
        public var host: String { server.host }

        /// The secret of a seeded token.
        public func secret(for tokenID: String) -> String? { tokens.first { $0.id == tokenID }?.secret }

        public func shutdown() async { await server.shutdown() }
    }

    /// Errors starting the simulator.
    public struct StartError: Error, CustomStringConvertible, Sendable {
        public var message: String
        public var description: String { message }
    }

    /// Loads a seed file (a full ``SimState`` JSON document, as `felhom pve-sim --print-default-seed` prints).
    public static func loadSeed(_ url: URL) throws -> SimState {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw StartError(message: "cannot read seed file '\(url.path)'")
        }
        do {
            return try JSONDecoder().decode(SimState.self, from: data)
        } catch let e as DecodingError {
            throw StartError(message: "seed file '\(url.path)': \(e.shortDescription)")
        }
    }

    /// The default seed as pretty JSON (to copy and edit).
    public static func defaultSeedJSON() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        return String(decoding: (try? enc.encode(SimSeed.defaultState())) ?? Data(), as: UTF8.self)
    }

    public static func start(_ options: Options) async throws -> Running {
        var state: SimState
        var resumed = false
        var stateFile: URL?
        var tls = options.tls
        if let dir = options.stateDirectory {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let file = dir.appendingPathComponent("state.json")
            stateFile = file
            if let data = FileManager.default.contents(atPath: file.path) {
                do {
                    state = try JSONDecoder().decode(SimState.self, from: data)
                } catch let e as DecodingError {
                    throw StartError(message: "state file '\(file.path)' is damaged: \(e.shortDescription) (move it away to start fresh)")
                }
                resumed = true
            } else {
                state = options.seed ?? SimSeed.defaultState(now: options.clock.now())
            }
            if tls == nil && !options.plainHTTP {
                tls = try loadOrCreateCertificate(dir: dir, node: state.nodes.first?.name ?? "pve")
            }
        } else {
            state = options.seed ?? SimSeed.defaultState(now: options.clock.now())
            if tls == nil && !options.plainHTTP {
                tls = try TLSMaterial.selfSigned(commonName: state.nodes.first?.name ?? "pve", organization: "Felhom PVE simulator")
            }
        }
        let engine = PVESimEngine(state: state, clock: options.clock, stateFile: stateFile, sharedPBS: options.sharedPBS)
        await engine.setServerFingerprint(options.plainHTTP ? nil : tls?.fingerprint)
        let server: PVESimServer
        do {
            server = try await PVESimServer.start(
                engine: engine, host: options.host, port: options.port, tls: options.plainHTTP ? nil : tls)
        } catch {
            throw StartError(message: "cannot listen on \(options.host):\(options.port): \(error)")
        }
        return Running(
            server: server, fingerprint: options.plainHTTP ? nil : tls?.fingerprint,
            tokens: state.tokens.map { ($0.tokenid, $0.secret) }, resumed: resumed)
    }

    static func loadOrCreateCertificate(dir: URL, node: String) throws -> TLSMaterial {
        let certURL = dir.appendingPathComponent("cert.pem")
        let keyURL = dir.appendingPathComponent("key.pem")
        if let cert = try? String(contentsOf: certURL, encoding: .utf8), let key = try? String(contentsOf: keyURL, encoding: .utf8) {
            return try TLSMaterial(certificatePEM: cert, privateKeyPEM: key)
        }
        let material = try TLSMaterial.selfSigned(commonName: node, organization: "Felhom PVE simulator")
        try Data(material.privateKeyPEM.utf8).write(to: keyURL, options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyURL.path)
        try Data(material.certificatePEM.utf8).write(to: certURL, options: .atomic)
        return material
    }
}
