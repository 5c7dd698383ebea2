import ArgumentParser
import FelhomAgent
import FelhomCore
import Foundation
import Proxmox

/// `felhom-agent bootstrap`: a fresh Proxmox VE host to an enrolled, reporting box (docs/install.md).
struct BootstrapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap",
        abstract:
            "Set up this Proxmox VE host once, as root: the agent's PVE role, user and token, the golden template, the config, enrollment, escrow, systemd units.",
        discussion: """
            Idempotent: a second run changes nothing and says so. A conflict (a FelhomAgent role or a felhom@pve user \
            with other privileges, a used enrollment token, no space for the template) is refused before anything is \
            made; a failure while setting up access removes what that run made. --dry-run prints every command and API \
            call a first run makes, on any machine, without touching anything.
            """)

    @Option(name: .long, help: "The hub's URL (https://…).") var hub: String
    @Option(name: .customLong("enrollment-token"), help: "The one-time token from POST /api/v1/hosts/{id}/enrollment.") var enrollmentToken: String
    @Option(name: .long, help: "This node's name in Proxmox VE (default: the short host name).") var node: String?
    @Flag(name: .customLong("dry-run"), help: "Print every command and API call a first run makes; change nothing.") var dryRun = false
    @Option(name: .customLong("hub-fingerprint"), help: "Pin the hub's certificate by its SHA-256 fingerprint.") var hubFingerprint: String?
    @Option(name: .long, help: "The Debian container template the golden template is made from.")
    var ostemplate = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    @Option(name: .customLong("template-vmid"), help: "The golden template container's id while it is made.") var templateVMID = 9000
    @Option(name: .customLong("template-storage"), help: "Where the golden template's backup is kept.") var templateStorage = "local"
    @Option(name: .customLong("guest-storage"), help: "Where guests' disks go.") var guestStorage = "local-lvm"
    @Option(name: .customLong("backup-storage"), help: "The PBS storage whose key the escrow holds.") var backupStorage = "pbs-felhom"
    @Flag(name: .customLong("no-units"), help: "Do not install the binaries and systemd units.") var noUnits = false

    func run() async throws {
        let nodeName = node ?? String(ProcessInfo.processInfo.hostName.split(separator: ".").first ?? "")
        guard Pattern.whole(nodeName, #"[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"#) else {
            throw ValidationError("--node '\(nodeName)' is not a node name")
        }
        guard hub.hasPrefix("https://") || hub.hasPrefix("http://127.0.0.1") || hub.hasPrefix("http://localhost") else {
            throw ValidationError("--hub must be an https:// URL")
        }
        var options = Bootstrap.Options(hubURL: hub, enrollmentToken: Secret(enrollmentToken), node: nodeName)
        options.hubFingerprint = hubFingerprint
        options.ostemplate = ostemplate
        options.templateVMID = templateVMID
        options.templateStorage = templateStorage
        options.guestStorage = guestStorage
        options.backupStorage = backupStorage
        options.installUnits = !noUnits
        options.agentExecutable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        let bootstrap = Bootstrap(options: options, runner: SubprocessCommandRunner(), say: { print(TerminalText.withoutControls($0)) })
        if dryRun {
            print("felhom-agent bootstrap --dry-run: what a first run does on a fresh Proxmox VE host (nothing is changed)")
            do { for line in try bootstrap.dryRun() { print("  " + line) } } catch { throw ValidationError("\(error)") }
            return
        }
        let outcome: Bootstrap.Outcome
        do throws(Bootstrap.Failure) { outcome = try await bootstrap.run() } catch {
            FileHandle.standardError.write(Data("felhom-agent bootstrap: \(TerminalText.withoutControls(error.message))\n".utf8))
            throw ExitCode(1)
        }
        if !outcome.failed.isEmpty {
            FileHandle.standardError.write(
                Data(
                    "felhom-agent bootstrap: finished with problems:\n\(TerminalText.withoutControls(outcome.failed.joined(separator: "\n")))\n".utf8)
            )
            throw ExitCode(1)
        }
        // (Lines from the run went through `say`; the host id came from the hub.)
        let hostID = TerminalText.withoutControls(outcome.hostID)
        print(
            outcome.changed
                ? "bootstrap: host \(hostID) is set up; felhom-agent.service reports to \(hub)"
                : "bootstrap: nothing to change — host \(hostID) was set up already")
    }
}
