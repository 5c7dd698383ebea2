import ArgumentParser
import FelhomAgent
import FelhomCore
import Foundation
import Logging
import Proxmox
import ServiceLifecycle

@main
struct FelhomAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "felhom-agent",
        abstract: "The Felhom host agent (runs on each Proxmox VE host).",
        version: FelhomVersion.current,
        subcommands: [
            RunCommand.self, SelftestCommand.self, CheckCommand.self, LocalAPICommand.self, EscrowCommand.self, RecoverCommand.self,
            RouteProxyCommand.self, SnapshotCommand.self, BootstrapCommand.self,
        ])
}

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract:
            "Check a new box before the first run: hub, TLS, key or token, Proxmox token and privileges, golden template, signers_file, state_dir.",
        discussion: "Changes nothing (the enrollment token is not used). Exit status 1 when a check fails.")

    @Option(name: .long, help: "Agent config file (JSON).") var config: String?

    func run() async throws {
        let cfg: AgentConfig
        do { cfg = try AgentConfig.load(file: config) } catch { throw ValidationError("\(error)") }
        let items = await AgentCheck.run(config: cfg)
        print(AgentCheck.rendered(items), terminator: "")
        if items.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }
}

struct SelftestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check a live Proxmox host through the agent's client.",
        discussion: """
            read: every read the agent relies on (version, nodes, node status, containers, configs, storage, backups).
            task: reversible changes on the scratch guest (selftest.vmid): config round trip and snapshot → rollback → delete.
            hub: the link to the hub: enrollment, TLS (pin or CA), a report's round trip, a held long poll, clock skew.
            Configuration: JSON file plus FELHOM_AGENT_* environment variables (e.g. FELHOM_AGENT_PVE_TOKEN_SECRET).
            """)

    enum Mode: String, ExpressibleByArgument, CaseIterable { case read, task, hub }

    @Argument(help: "read, task or hub") var mode: Mode
    @Option(name: .long, help: "Agent config file (JSON).") var config: String?
    @Option(name: .long, help: "Scratch guest for task mode (overrides selftest.vmid).") var vmid: Int?

    func run() async throws {
        let cfg: AgentConfig
        let connection: PVEConnection
        do {
            cfg = try AgentConfig.load(file: config)
            connection = try cfg.pveConnection()
        } catch {
            throw ValidationError("\(error)")
        }
        let client = PVEClient(connection: connection)
        if mode == .hub {
            let report = await HubSelftest(config: cfg, pve: client).run()
            print(report.rendered(), terminator: "")
            if !report.passed { throw ExitCode(1) }
            return
        }
        let selftest = Selftest(api: client, node: cfg.pve.node)
        let target = "\(connection.baseURL) as \(connection.tokenID), node \(cfg.pve.node)"
        let report: Selftest.Report
        switch mode {
        case .read:
            report = await selftest.read(target: target)
        case .hub:
            return
        case .task:
            guard let v = vmid ?? cfg.selftest?.vmid else {
                throw ValidationError("task mode needs a scratch guest: --vmid N or selftest.vmid in the config")
            }
            report = await selftest.task(vmid: v, target: target)
        }
        print(report.rendered(), terminator: "")
        if !report.passed { throw ExitCode(1) }
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent: report to the hub, reconcile guests, apply signed ops.",
        discussion: """
            Configuration: JSON file plus FELHOM_AGENT_* environment variables. On first start with \
            hub.enrollment_token the agent enrolls and keeps its host key in state_dir/host.json. \
            Stops cleanly on SIGTERM or SIGINT (work in flight finishes; the journal covers a hard kill).
            """)

    @Option(name: .long, help: "Agent config file (JSON).") var config: String?
    @Flag(help: "Resume what a crash left in flight, run one cycle, and exit.") var once = false

    func run() async throws {
        var logger = Logger(label: "felhom.agent")
        logger.logLevel = .info
        let cfg: AgentConfig
        do { cfg = try AgentConfig.load(file: config) } catch { throw ValidationError("\(error)") }
        let agent: Agent
        do { agent = try await Agent.make(config: cfg, logger: logger) } catch {
            // A runtime failure (hub unreachable, token refused, state_dir in use): exit 1, no usage text.
            FileHandle.standardError.write(Data("felhom-agent: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if once {
            await agent.resumeInFlight()
            do { try await agent.cycle() } catch {
                FileHandle.standardError.write(Data("felhom-agent: \(error)\n".utf8))
                throw ExitCode(1)
            }
            await agent.backups?.drain()  // a backup the cycle started ends before the process does
            await agent.restoreTests?.drain()
            await agent.snapshots?.wait()  // so is a volume snapshot run
            return
        }
        // SIGHUP rereads signers_file at once (it is also reread before each signed op).
        signal(SIGHUP, SIG_IGN)
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hup.setEventHandler {
            logger.notice("SIGHUP: rereading signers_file")
            agent.reloadSigners()
        }
        hup.resume()
        defer { hup.cancel() }
        // This process is the agent's own: what a cycle freed goes back to the kernel after it.
        HeapTrim.enableAfterCycles()
        var services: [any Service] = [agent]
        if let api = cfg.localAPI {
            guard let backups = agent.backups else {
                FileHandle.standardError.write(
                    Data("felhom-agent: local_api needs the backup section (backup.key_file or backup.key_fingerprint)\n".utf8))
                throw ExitCode(1)
            }
            let listen = api.listen ?? "127.0.0.1"
            let port = api.port ?? 8787
            let stateDir = cfg.stateDir ?? "/var/lib/felhom-agent"
            do {
                let cert = try LocalAPIFiles.certificate(stateDir: stateDir, names: [listen])
                let server = LocalAPIServer(
                    tokens: try agent.localTokens ?? LocalAPIFiles.tokens(stateDir: stateDir), backend: backups, certificate: cert,
                    settings: .init(listen: listen, port: port, perMinute: max(0, api.rateLimitPerMinute ?? 600)), restoreTests: agent.restoreTests,
                    rollbacks: agent.localRollbacks, onSeen: { [healer = agent.healer] vmid in healer?.seen(vmid: vmid) })
                services.append(try server.application(logger: logger))
                logger.notice("local API on https://\(listen):\(port); controllers pin agent.fingerprint \(cert.fingerprint)")
            } catch {
                FileHandle.standardError.write(Data("felhom-agent: cannot start the local API: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

/// `felhom-agent local-api token VMID`: a new local API token for a guest's controller (the old one
/// stops working), printed with the agent URL and certificate fingerprint for the guest's
/// controller.json — until provisioning writes them into the guest itself.
struct LocalAPICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local-api", abstract: "Manage the controllers' local API.", subcommands: [Token.self])

    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a guest's local API token (replacing any earlier one) and print the controller's agent.* settings.")
        @Option(name: .long, help: "Agent config file (JSON).") var config: String?
        @Argument(help: "The guest's vmid.") var vmid: Int

        func validate() throws {
            guard (100...999_999_999).contains(vmid) else { throw ValidationError("VMID must be 100–999999999") }
        }

        func run() async throws {
            let cfg: AgentConfig
            do { cfg = try AgentConfig.load(file: config) } catch { throw ValidationError("\(error)") }
            let stateDir = cfg.stateDir ?? "/var/lib/felhom-agent"
            let listen = cfg.localAPI?.listen ?? "127.0.0.1"
            do {
                let cert = try LocalAPIFiles.certificate(stateDir: stateDir, names: [listen])
                let token = try LocalAPIFiles.tokens(stateDir: stateDir).issue(vmid: vmid)
                let settings: [String: String] = [
                    "agent.url": "https://\(listen):\(cfg.localAPI?.port ?? 8787)", "agent.fingerprint": cert.fingerprint,
                    "agent.token": token.reveal(),
                ]
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                print(String(decoding: try encoder.encode(settings), as: UTF8.self))
            } catch {
                FileHandle.standardError.write(Data("felhom-agent: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

/// `felhom-agent escrow init|drill`: the box's zero-knowledge escrow of its PBS key (docs/agent.md).
struct EscrowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "escrow", abstract: "The backup key's escrow: set it up on the box, or run the drill now.", subcommands: [Init.self, Drill.self])

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Make the PBS encryption key on this box (or use backup.key_file), give it to the PBS storage, and leave the hub a copy wrapped under a new recovery code.",
            discussion: """
                Idempotent: run again, it keeps the key and the hub's copy (no new code). The recovery code is shown \
                once, here, on the box's console — or written once to --sheet FILE (root only) for a printed recovery \
                sheet. It never goes to the hub. --rotate makes a new code (the old one stops working).
                """)
        @Option(name: .long, help: "Agent config file (JSON).") var config: String?
        @Flag(name: .long, help: "Wrap the key under a new recovery code (the old code stops opening the hub's copy).") var rotate = false
        @Option(name: .long, help: "Write the new recovery code to this file (created, mode 0400) instead of the console.") var sheet: String?

        func run() async throws {
            let cfg: AgentConfig
            do { cfg = try AgentConfig.load(file: config) } catch { throw ValidationError("\(error)") }
            if let sheet, FileManager.default.fileExists(atPath: sheet) {
                throw ValidationError("--sheet '\(sheet)' exists already: a recovery sheet is written once, never over another")
            }
            do {
                let keeper = try await Agent.escrowKeeper(config: cfg, logger: Logger(label: "felhom.agent"))
                let outcome = try await keeper.initialize(rotate: rotate)
                print("escrow: PBS key \(outcome.fingerprint) (\(outcome.keyCreated ? "made now on this box" : "from \(cfg.backup?.keyFile ?? "")"))")
                if outcome.storageConfigured { print("escrow: storage \(cfg.escrow?.storage ?? "pbs-felhom") now encrypts backups with it") }
                if let operatorKey = outcome.operatorKey {
                    // The operator-managed tier: no recovery code; the operator's escrow key opens the hub's copy.
                    print(
                        outcome.wrappedNow
                            ? "escrow: operator-managed tier: the hub holds the key wrapped to operator escrow key \(operatorKey) (no recovery code)"
                            : "escrow: operator-managed tier: the hub holds the wrapped key already (operator escrow key \(operatorKey))")
                    return
                }
                guard let code = outcome.code else {
                    print("escrow: the hub holds the wrapped key already; its recovery code was shown when it was made (--rotate makes a new one)")
                    return
                }
                if let sheet {
                    let fd = open(sheet, O_WRONLY | O_CREAT | O_EXCL, 0o400)
                    guard fd >= 0 else { throw ValidationError("cannot create --sheet '\(sheet)'") }
                    let text = Array("Felhom recovery code\n\n    \(code.printed)\n".utf8)
                    let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                    fsync(fd)
                    close(fd)
                    guard written == text.count else { throw ValidationError("cannot write --sheet '\(sheet)'") }
                    print("escrow: the recovery code is in \(sheet) (mode 0400) and nowhere else — print it for the customer, then delete the file")
                } else {
                    print(
                        """

                        The hub holds the backup key wrapped under this recovery code. Write it down now:
                        it is shown only this once and never leaves this box.

                            \(code.printed)

                        Without it, the backups of a lost box cannot be decrypted.
                        """)
                }
            } catch let error as EscrowError {
                FileHandle.standardError.write(Data("felhom-agent: \(error)\n".utf8))
                throw ExitCode(1)
            } catch let error as ValidationError {
                throw error
            } catch {
                FileHandle.standardError.write(Data("felhom-agent: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Drill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the escrow drill now: the hub's copy must open to the key this box backs up with.",
            discussion: "Reports escrow_verified or escrow_drill_failed to the hub; exit status 1 when it fails.")
        @Option(name: .long, help: "Agent config file (JSON).") var config: String?

        func run() async throws {
            let cfg: AgentConfig
            do { cfg = try AgentConfig.load(file: config) } catch { throw ValidationError("\(error)") }
            do {
                let keeper = try await Agent.escrowKeeper(config: cfg, logger: Logger(label: "felhom.agent"))
                let boxKey = try cfg.backupSettings()?.boxKey ?? ""
                let r = await keeper.drill(boxKey: boxKey)
                try? await keeper.hub.postEvent(type: r.type, severity: r.severity, data: .object(r.data))
                if r.type == "escrow_verified" {
                    print("escrow drill: verified — the hub's copy opens to key \(boxKey)")
                } else {
                    FileHandle.standardError.write(
                        Data(
                            "felhom-agent: escrow drill FAILED (\(r.data["reason"]?.stringValue ?? "?")): \(r.data["message"]?.stringValue ?? "")\n"
                                .utf8))
                    throw ExitCode(1)
                }
            } catch let error as ExitCode {
                throw error
            } catch {
                FileHandle.standardError.write(Data("felhom-agent: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

extension RecoverCommand {
    /// Prints the per-guest result; exit status 3 when not everything came back.
    static func show(_ report: DisasterRecovery.Report) throws {
        print("recover: backups decrypt with key \(report.keyFingerprint)")
        for g in report.guests {
            var line = "  \(g.vmid) \(TerminalText.escaped(g.name)): \(g.status.rawValue)"
            if let v = g.volid { line += " from \(v)" }
            if let why = g.reason { line += " — \(why)" }
            print(line)
            for m in g.notRestored { print("      \(m.key) \(m.path): not restored — \(m.reason)") }
        }
        if !report.complete {
            print("recover: NOT everything came back (listed above); the hub was told (dr_incomplete)")
            throw ExitCode(3)
        }
        print("recover: every guest came back; start the agent service now")
    }
}

/// `felhom-agent recover`: rebuild a lost box on this one from its backups (docs/operator-guide.md
/// "a box is lost: recover it").
struct RecoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Restore a lost box's guests on this box from its encrypted backups, with the customer's recovery code.",
        discussion: """
            Run it on the replacement box BEFORE starting the agent service (which would provision the desired guests \
            empty): set hub.enrollment_token to a token the operator made for the lost host, backup.key_file, and the \
            PBS storage (escrow.storage, default pbs-felhom) pointing at the lost box's namespace. The code is read from \
            --code-file or asked for on the terminal; it is never an argument (process lists show arguments). Run again \
            after an interruption: finished guests are not restored twice. Exit status 0: everything came back; 3: some \
            guests or volumes did not (listed); 1: nothing was changed.
            """)
    @Option(name: .long, help: "Agent config file (JSON).") var config: String?
    @Option(name: .long, help: "A file holding the recovery code (else it is asked for on the terminal).") var codeFile: String?
    @Option(
        name: .long,
        help: "The operator escrow private key file (operator-managed tier: the box's key was wrapped to the operator, not to a code).")
    var operatorKey: String?

    func run() async throws {
        let cfg: AgentConfig
        do { cfg = try AgentConfig.load(file: config) } catch { throw ValidationError("\(error)") }
        if operatorKey != nil && codeFile != nil { throw ValidationError("give --code-file or --operator-key, not both") }
        let logger = Logger(label: "felhom.agent")
        if let operatorKey {
            guard let text = try? String(contentsOfFile: operatorKey, encoding: .utf8) else {
                throw ValidationError("cannot read --operator-key '\(operatorKey)'")
            }
            do {
                let key = try OperatorEscrowKey.parsePrivate(text)
                let dr = try await Agent.disasterRecovery(config: cfg, logger: logger)
                try Self.show(try await dr.run(opening: .operatorKey(key)))
            } catch let error as ExitCode {
                throw error
            } catch {
                FileHandle.standardError.write(Data("felhom-agent: recover: \(error)\n".utf8))
                throw ExitCode(1)
            }
            return
        }
        let typed: String
        if let codeFile {
            guard let text = try? String(contentsOfFile: codeFile, encoding: .utf8) else {
                throw ValidationError("cannot read --code-file '\(codeFile)'")
            }
            typed = text
        } else {
            print("Recovery code (from the recovery sheet): ", terminator: "")
            typed = readLine(strippingNewline: true) ?? ""
        }
        do {
            let code = try RecoveryCode(parsing: typed)
            let dr = try await Agent.disasterRecovery(config: cfg, logger: logger)
            try Self.show(try await dr.run(code: code))
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("felhom-agent: recover: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
