import ArgumentParser
import FelhomCore
import FelhomGate
import Foundation

/// `felhom-agent-gate`: the self-update health gate, a small executable that does not link the
/// agent (docs/updates.md). `watch` runs under systemd (felhom-agent-gate.service); `check` looks
/// once; `status` prints the install root's state.
@main
struct GateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "felhom-agent-gate", abstract: "Keeps or reverts a new felhom-agent binary (A/B self-update health gate).",
        version: FelhomVersion.current, subcommands: [Watch.self, Check.self, Status.self])
}

struct RootOptions: ParsableArguments {
    @Option(help: "The agent's A/B install root.") var root = "/opt/felhom/agent"
    @Option(help: "The systemd unit to restart after a revert.") var restartUnit = "felhom-agent.service"
    @Option(help: "Run this shell command after a revert instead of restarting the unit (tests, other supervisors).")
    var restartCommand: String?

    func restart() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", restartCommand ?? "systemctl restart '\(restartUnit)'"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ValidationError("the restart command exited with \(p.terminationStatus)") }
    }

    func checkOnce() throws -> HealthGate.Action {
        let root = UpdateRoot(path: root)
        guard FileManager.default.fileExists(atPath: root.path) else { throw ValidationError("no install root at '\(root.path)'") }
        return try HealthGate.check(root: root, restart: restart)
    }
}

func describe(_ action: HealthGate.Action) -> String? {
    switch action {
    case .idle, .waiting: return nil
    case .committed(let v): return "committed \(v)"
    case .reverted(let v, let slot, let reason): return "reverted \(v) to slot \(slot): \(reason)"
    }
}

func say(_ line: String) {
    FileHandle.standardError.write(Data("felhom-agent-gate: \(line)\n".utf8))
}

extension GateCommand {
    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check every few seconds until stopped.")
        @OptionGroup var options: RootOptions
        @Option(help: "Seconds between checks.") var interval: Double = 5

        func run() throws {
            guard interval > 0 && interval <= 3600 else { throw ValidationError("--interval must be between 0 and 3600 seconds") }
            say("watching \(options.root)")
            while true {
                do {
                    if let line = describe(try options.checkOnce()) { say(line) }
                } catch {
                    say("\(error)")  // keep watching: a transient error must not stop the gate
                }
                Thread.sleep(forTimeInterval: interval)
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Look once: commit, revert or wait; print the verdict.")
        @OptionGroup var options: RootOptions

        func run() throws {
            let action = try options.checkOnce()
            print(describe(action) ?? (action == .idle ? "idle" : "waiting"))
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the install root's slots, gate state and last verdict.")
        @Option(help: "The agent's A/B install root.") var root = "/opt/felhom/agent"

        func run() throws {
            let r = UpdateRoot(path: root)
            print("current: \(r.currentSlot() ?? "(none)")")
            if let s = try r.readState() {
                print("last good: \(s.lastGood), committed version: \(s.committedVersion ?? "(unknown)")")
                if let p = s.pending {
                    print("pending: \(p.version) in slot \(p.slot) since \(RFC3339.format(p.flippedAt)), window \(p.windowSeconds) s")
                }
            } else {
                print("no gate.json (no update has run)")
            }
            if let h = try r.readHealth() { print("health: \(h.version) at \(RFC3339.format(h.at)) (pid \(h.pid))") }
            if let res = try r.readResult() {
                print("last verdict: \(res.outcome.rawValue) \(res.version)\(res.reason.map { ": " + $0 } ?? "")")
            }
        }
    }
}
