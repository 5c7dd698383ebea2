import ArgumentParser
import FelhomAgent
import FelhomCore
import Foundation
import PVESimulator
import Proxmox

@main
struct FelhomCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "felhom",
        abstract: "Felhom operator tool.",
        subcommands: [DemoCommand.self, SignCommand.self, PVESimCommand.self, OpCommand.self, JCSCommand.self])
}

/// Parses `HOST:PORT` (`[::1]:8006` for IPv6).
func parseListen(_ text: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
        throw ValidationError("--listen must be HOST:PORT (got '\(text)')")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { throw ValidationError("--listen must be HOST:PORT (got '\(text)')") }
    return (host, port)
}

struct PVESimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pve-sim",
        abstract: "Run a simulated Proxmox VE API (HTTPS) for tests, demos and debugging.",
        discussion: """
            The state (guests, storage content, tasks, tokens) and the self-signed certificate are kept in \
            --state DIR and survive restarts. Without --state everything lives in memory.
            Point curl or proxmoxer at it with one of the printed tokens:
              curl -k -H 'Authorization: PVEAPIToken=felhom@pve!agent=SECRET' https://127.0.0.1:8006/api2/json/nodes
            """)

    @Option(name: .long, help: "Address to listen on (HOST:PORT).") var listen: String = "127.0.0.1:8006"
    @Option(name: .long, help: "State directory (created if missing).") var state: String?
    @Option(name: .long, help: "Seed file (a state JSON document, see --print-default-seed); used when the state dir is empty.")
    var seed: String?
    @Flag(name: .long, help: "Serve plain HTTP instead of HTTPS (debugging only).") var plainHttp = false
    @Flag(name: .long, help: "Print the default seed as JSON and exit.") var printDefaultSeed = false

    func run() async throws {
        if printDefaultSeed {
            print(PVESimulator.defaultSeedJSON())
            return
        }
        let (host, port) = try parseListen(listen)
        var options = PVESimulator.Options()
        options.host = host
        options.port = port
        options.plainHTTP = plainHttp
        options.stateDirectory = state.map { URL(fileURLWithPath: $0) }
        if let seed { options.seed = try PVESimulator.loadSeed(URL(fileURLWithPath: seed)) }
        let sim: PVESimulator.Running
        do {
            sim = try await PVESimulator.start(options)
        } catch {
            throw ValidationError("\(error)")
        }
        let scheme = plainHttp ? "http" : "https"
        var lines = ["felhom pve-sim: Proxmox VE API simulator listening on \(scheme)://\(host):\(sim.port)/api2/json"]
        if let fp = sim.fingerprint { lines.append("certificate SHA-256 fingerprint: \(fp)") }
        if let state { lines.append(sim.resumed ? "state resumed from \(state)" : "state seeded into \(state)") }
        for t in sim.tokens { lines.append("PVEAPIToken=\(t.id)=\(t.secret)") }
        // Unbuffered: scripts wait for these lines while the simulator keeps running.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        while !Task.isCancelled {
            try await Task.sleep(for: .seconds(3600))
        }
    }
}

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Start a simulated Proxmox host and run the agent selftest against it.",
        discussion: "This foundation demo grows into the full life cycle (hub, agent, signed ops) in later releases.")

    @Option(name: .long, help: "Directory for the demo's state (default: a fresh temporary directory).") var dir: String?

    func run() async throws {
        let stateDir = URL(fileURLWithPath: dir ?? NSTemporaryDirectory() + "felhom-demo-\(ProcessInfo.processInfo.processIdentifier)")
        var options = PVESimulator.Options()
        options.port = 0
        options.stateDirectory = stateDir.appendingPathComponent("pve-sim")
        print("== felhom demo ==")
        print("1. Starting a simulated Proxmox VE host (state in \(stateDir.path)) …")
        let sim = try await PVESimulator.start(options)
        guard let fp = sim.fingerprint, let secret = sim.secret(for: SimSeed.agentTokenID) else {
            throw ValidationError("simulator started without TLS or without the agent token")
        }
        print("   listening on https://127.0.0.1:\(sim.port)/api2/json, certificate pinned by fingerprint \(fp.prefix(23))…")

        let env = [
            "FELHOM_AGENT_PVE_HOST": "127.0.0.1", "FELHOM_AGENT_PVE_PORT": String(sim.port), "FELHOM_AGENT_PVE_NODE": "pve1",
            "FELHOM_AGENT_PVE_TOKEN_ID": SimSeed.agentTokenID, "FELHOM_AGENT_PVE_TOKEN_SECRET": secret,
            "FELHOM_AGENT_PVE_FINGERPRINT": fp, "FELHOM_AGENT_SELFTEST_VMID": String(SimSeed.selftestVmid),
        ]
        let cfg = try AgentConfig.load(file: nil, environment: env)
        let client = PVEClient(connection: try cfg.pveConnection())
        let selftest = Selftest(api: client, node: "pve1")
        let target = "simulated pve1 as \(SimSeed.agentTokenID) (FelhomAgent role)"

        print("2. Agent selftest, read mode:")
        let read = await selftest.read(target: target)
        print(read.rendered(), terminator: "")
        print("3. Agent selftest, task mode on scratch guest \(SimSeed.selftestVmid):")
        let task = await selftest.task(vmid: SimSeed.selftestVmid, target: target)
        print(task.rendered(), terminator: "")

        print("4. Least privilege: a read-only (PVEAuditor) token tries to start guest 101 …")
        var refused = false
        if let roSecret = sim.secret(for: SimSeed.auditorTokenID) {
            let ro = PVEClient(connection: try PVEConnection(
                host: "127.0.0.1", port: sim.port, tokenID: SimSeed.auditorTokenID, tokenSecret: Secret(roSecret),
                trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: fp))))
            do {
                _ = try await ro.startContainer(node: "pve1", vmid: 101)
                print("   UNEXPECTED: the start was accepted")
            } catch let e as PVEError where e.code == .forbidden {
                refused = true
                print("   refused as expected: HTTP 403, missing \(e.privilege ?? "?") on \(e.path ?? "?")")
            }
        }
        print("5. A wrong certificate pin is refused before any token is sent …")
        var pinRefused = false
        let wrong = PVEClient(connection: try PVEConnection(
            host: "127.0.0.1", port: sim.port, tokenID: SimSeed.agentTokenID, tokenSecret: Secret(secret),
            trust: .pinnedLeafSHA256(CertificateFingerprint(bytes: Array(repeating: 0xAB, count: 32)))))
        do {
            _ = try await wrong.version()
            print("   UNEXPECTED: connected with a wrong pin")
        } catch let e as PVEError where e.code == .tls {
            pinRefused = true
            print("   refused as expected: \(e.message)")
        }
        await sim.shutdown()
        let ok = read.passed && task.passed && refused && pinRefused
        print(ok ? "demo finished: everything worked." : "demo finished with FAILURES (see above).")
        if !ok { throw ExitCode(1) }
    }
}
