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
        abstract: "Felhom operator tool.", version: FelhomVersion.current,
        subcommands: [
            DemoCommand.self, SignCommand.self, PVESimCommand.self, OpCommand.self, JCSCommand.self, SecretsCommand.self, EscrowKeyCommand.self,
            SnapshotCommand.self, ReleaseCommand.self, BenchFleetCommand.self,
        ])
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
    @Option(
        name: .long,
        help: ArgumentHelp(
            "A PBS datastore file shared with other simulators (NAME=FILE, e.g. felhom=/tmp/pbs.json).",
            discussion: "Each host's pbs storage with that datastore name keeps its backups there, by namespace."))
    var pbsDatastore: String?

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
        if let pbsDatastore {
            let parts = pbsDatastore.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, parts[1].hasPrefix("/") else {
                throw ValidationError("--pbs-datastore must be NAME=/absolute/file.json, got '\(pbsDatastore)'")
            }
            options.sharedPBS = SimPBSDatastore(name: parts[0], path: URL(fileURLWithPath: parts[1]))
        }
        let sim: PVESimulator.Running
        do {
            sim = try await PVESimulator.start(options)
        } catch {
            throw SimpleError("cannot start the simulator: \(error)")  // runtime (port in use, state dir): exit 1, no usage
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
