import ArgumentParser
import FelhomAPI
import FelhomController
import FelhomCore
import Foundation
import Logging
import ServiceLifecycle

/// `felhom-controller`: the in-guest controller (app stacks; more subcommands come with the
/// watchdog, the quiesce loop and reports).
@main
struct FelhomControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "felhom-controller",
        abstract: "The in-guest controller: docker compose app stacks under stacks.dir.",
        version: FelhomVersion.current,
        subcommands: [RunCommand.self, StacksCommand.self, SecretsCommand.self])
}

/// The options every subcommand shares.
struct ConfigOptions: ParsableArguments {
    @Option(help: "Controller config file (JSON; default /etc/felhom/controller.json when it exists). FELHOM_CONTROLLER_* variables override it.")
    var config: String?

    func stacks() throws -> (Stacks, ControllerLocalConfig) {
        let cfg = try runtimeSync { () throws(ControllerError) in try ControllerLocalConfig.load(file: config) }
        return (Stacks(directory: cfg.stacksDir, protectedNames: cfg.protectedStacks, runtime: DockerCompose()), cfg)
    }
}

/// Runs `body`; a ``ControllerError`` becomes a one-line message on stderr and exit status 1.
func runtime<T>(_ body: () async throws(ControllerError) -> T) async throws -> T {
    do { return try await body() } catch {
        FileHandle.standardError.write(Data("felhom-controller: \(error.message)\n".utf8))
        throw ExitCode(1)
    }
}

func runtimeSync<T>(_ body: () throws(ControllerError) -> T) throws -> T {
    do { return try body() } catch {
        FileHandle.standardError.write(Data("felhom-controller: \(error.message)\n".utf8))
        throw ExitCode(1)
    }
}

struct StacksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stacks", abstract: "List and operate the app stacks.",
        subcommands: [List.self, Verb.Deploy.self, Verb.Start.self, Verb.Stop.self, Verb.Restart.self, Verb.Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every stack with its state and services.")
        @OptionGroup var options: ConfigOptions
        @Flag(help: "Print a JSON array of {name, state, protected, services: [{name, state}]}.") var json = false

        func run() async throws {
            let (stacks, _) = try options.stacks()
            let list = try await runtime { () async throws(ControllerError) in try await stacks.list() }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(list), as: UTF8.self))
                return
            }
            if list.isEmpty { print("no stacks under \(stacks.directory)") }
            for s in list {
                let services = s.services.map { "\($0.name)=\($0.state)" }.joined(separator: " ")
                print(
                    "\(s.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(s.state.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0))\(s.protected ? " protected" : "")  \(services)"
                )
            }
        }
    }

    /// The one-stack operations; a stack stopped here stays stopped (the watchdog leaves it).
    enum Verb {
        static func perform(_ verb: String, _ name: String, _ options: ConfigOptions) async throws {
            let (stacks, cfg) = try options.stacks()
            if verb == "deploy" { try await SecretsCommand.syncBeforeDeploy(stacks: stacks, cfg: cfg) }
            try await runtime { () async throws(ControllerError) in
                switch verb {
                case "deploy": try await stacks.deploy(name)
                case "start": try await stacks.start(name)
                case "stop": try await stacks.stop(name)
                case "restart": try await stacks.restart(name)
                default: try await stacks.remove(name)
                }
                // Stopped on purpose (stop, remove) is remembered; deploy and start clear it.
                let onPurpose = verb == "stop" || verb == "remove"
                try await ControllerSettings.update(stateDir: cfg.stateDirectory) {
                    (settings: inout ControllerSettings) async throws(ControllerError) in
                    settings.stoppedStacks.removeAll { $0 == name }
                    if onPurpose { settings.stoppedStacks.append(name) }
                    settings.stoppedStacks.sort()
                }
            }
            print("\(verb) \(name): done")
        }

        struct Deploy: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Validate the stack's compose.yaml, then create and start it (up -d).")
            @OptionGroup var options: ConfigOptions
            @Argument(help: "Stack folder name under stacks.dir.") var name: String
            func run() async throws { try await Verb.perform("deploy", name, options) }
        }
        struct Start: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Start a stack (deploys it if it has no containers).")
            @OptionGroup var options: ConfigOptions
            @Argument(help: "Stack folder name under stacks.dir.") var name: String
            func run() async throws { try await Verb.perform("start", name, options) }
        }
        struct Stop: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Stop a stack; it stays stopped until started again (refused for protected stacks).")
            @OptionGroup var options: ConfigOptions
            @Argument(help: "Stack folder name under stacks.dir.") var name: String
            func run() async throws { try await Verb.perform("stop", name, options) }
        }
        struct Restart: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Restart a stack's containers.")
            @OptionGroup var options: ConfigOptions
            @Argument(help: "Stack folder name under stacks.dir.") var name: String
            func run() async throws { try await Verb.perform("restart", name, options) }
        }
        struct Remove: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Remove a stack's containers and networks; volumes and the folder stay (refused for protected stacks).")
            @OptionGroup var options: ConfigOptions
            @Argument(help: "Stack folder name under stacks.dir.") var name: String
            func run() async throws { try await Verb.perform("remove", name, options) }
        }
    }
}

/// `felhom-controller run`: recover what a crash left, then the watchdog and the quiesce loop as
/// services until SIGTERM (stacks stopped for a quiesce are started before it exits).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run the watchdog and the quiesce loop until SIGTERM.")
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        var logger = Logger(label: "felhom.controller")
        logger.logLevel = .info
        let (stacks, loaded) = try options.stacks()
        var cfg = loaded
        let log: @Sendable (String) -> Void = { [logger] in logger.info("\($0)") }
        let hub = try runtimeSync { () throws(ControllerError) in try cfg.hubClient() }
        if let hub, let guestID = cfg.hub?.guestID {
            // App-level timings from the hub; everything else stays local (warned about, ignored).
            do {
                for warning in cfg.adopt(hubConfig: try await hub.controllerConfig(guestID: guestID)) { logger.warning("\(warning)") }
            } catch {
                logger.warning("cannot read this guest's config from the hub (\(error)); using the local settings")
            }
        }
        let settled = cfg
        let recovered = try await runtime { () async throws(ControllerError) in
            try await Quiescer.recover(stacks: stacks, stateDir: settled.stateDirectory, log: log)
        }
        if !recovered.isEmpty { logger.notice("recovered an interrupted quiesce: started \(recovered.joined(separator: ", "))") }
        let events = ControllerEvents(stateDir: settled.stateDirectory, hub: hub, logger: logger)
        let emit: @Sendable (String, [String: String]) async -> Void = { await events.emit($0, $1) }
        let watchdog = Watchdog(
            stacks: stacks, stateDir: settled.stateDirectory, settings: .init(interval: .seconds(settled.watchdogIntervalSeconds)), event: emit,
            log: log)
        var services: [any Service] = [WatchdogService(watchdog: watchdog, logger: logger)]
        if settled.quiesceEnabled {
            let agent = try runtimeSync { () throws(ControllerError) in try settled.agentClient() }
            let quiescer = Quiescer(
                stacks: stacks, agent: agent, stateDir: settled.stateDirectory,
                settings: .init(pollInterval: .seconds(settled.quiescePollSeconds), maxQuiesce: .seconds(settled.quiesceMaxSeconds)), log: log)
            services.append(QuiesceService(quiescer: quiescer, interval: .seconds(settled.quiescePollSeconds), logger: logger))
        } else {
            logger.notice("quiescing is off (no agent.url, or quiesce.enabled false): backups of this guest are not app-consistent")
        }
        if let hub {
            services.append(
                GuestReportService(
                    reporter: GuestReporter(stacks: stacks, stateDir: settled.stateDirectory), hub: hub, events: events, logger: logger))
            if let guestID = settled.hub?.guestID {
                let sync = SecretsSync(
                    stacks: stacks, writer: SecretsWriter(directory: settled.secretsDir), stateDir: settled.stateDirectory,
                    healthTimeout: .seconds(settled.secretsHealthTimeoutSeconds), event: emit, log: log)
                services.append(
                    SecretsService(sync: sync, hub: hub, guestID: guestID, interval: .seconds(settled.secretsPollSeconds), logger: logger))
            } else {
                logger.notice("no hub.guest_id: secret bundles are not fetched from the hub")
            }
        } else {
            logger.notice("no hub.url: running without reporting to the hub")
        }
        logger.info("felhom-controller \(FelhomVersion.current) running: stacks.dir \(settled.stacksDir), state_dir \(settled.stateDirectory)")
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

/// `felhom-controller secrets …`: the guest's secret bundles from the hub (docs/controller.md).
struct SecretsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secrets", abstract: "Write the hub's secret bundles into secrets.dir; choose a stack's secrets group.",
        subcommands: [Sync.self, Group.self])

    /// The hub's bundles for this guest (`hub.url`, `hub.key`, `hub.guest_id`).
    static func fetch(_ cfg: ControllerLocalConfig) async throws(ControllerError) -> [SecretBundleView] {
        guard let hub = try cfg.hubClient(), let guestID = cfg.hub?.guestID else {
            throw ControllerError(.config, "secret bundles come from the hub: set hub.url, hub.key and hub.guest_id")
        }
        do { return try await hub.secretBundles(guestID: guestID) } catch {
            throw ControllerError(.hub, "cannot read this guest's secret bundles from the hub: \(error)")
        }
    }

    static func sync(_ stacks: Stacks, _ cfg: ControllerLocalConfig) -> SecretsSync {
        SecretsSync(
            stacks: stacks, writer: SecretsWriter(directory: cfg.secretsDir), stateDir: cfg.stateDirectory,
            healthTimeout: .seconds(cfg.secretsHealthTimeoutSeconds), log: { print($0) })
    }

    /// Before a deploy: the stack's secrets files must exist with the latest values. Without a hub
    /// the files already there are used; an unreachable hub is a warning, not a failed deploy.
    static func syncBeforeDeploy(stacks: Stacks, cfg: ControllerLocalConfig) async throws {
        guard cfg.hub?.url != nil, cfg.hub?.guestID != nil else { return }
        do {
            let outcome = try await sync(stacks, cfg).apply(try await fetch(cfg))
            for (bundle, why) in outcome.refused.sorted(by: { $0.key < $1.key }) {
                FileHandle.standardError.write(Data("felhom-controller: warning: bundle \(bundle): \(why)\n".utf8))
            }
        } catch {
            FileHandle.standardError.write(
                Data("felhom-controller: warning: \(error.message); deploying with the secrets files already present\n".utf8))
        }
    }

    struct Sync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the hub's bundles now; restart the stacks using a changed bundle one at a time, each healthy before the next.")
        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let (stacks, cfg) = try options.stacks()
            let outcome = try await runtime { () async throws(ControllerError) in
                let sync = SecretsCommand.sync(stacks, cfg)
                _ = try await sync.resume()
                return try await sync.apply(try await SecretsCommand.fetch(cfg))
            }
            print(
                "secrets: \(outcome.written.isEmpty ? "no bundle changed" : "wrote " + outcome.written.joined(separator: ", "))"
                    + (outcome.restarted.isEmpty ? "" : "; restarted " + outcome.restarted.joined(separator: ", ")))
            if let failed = outcome.failed {
                FileHandle.standardError.write(Data("felhom-controller: the rollout stopped at \(failed): it did not come back healthy\n".utf8))
                throw ExitCode(1)
            }
            if !outcome.refused.isEmpty {
                for (bundle, why) in outcome.refused.sorted(by: { $0.key < $1.key }) {
                    FileHandle.standardError.write(Data("felhom-controller: bundle \(TerminalText.escaped(bundle)): \(why)\n".utf8))
                }
                throw ExitCode(1)
            }
        }
    }

    struct Group: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let a stack's apps read its secrets files through GROUP (0440 root:GROUP instead of 0400 root:root).",
            discussion: "Opt-in per stack (ADR 0010). --none goes back to 0400. Applied at the next sync.")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "Stack folder name under stacks.dir.") var stack: String
        @Argument(help: "An existing group in this guest.") var group: String?
        @Flag(help: "Remove the stack's group: its bundles go back to 0400 root:root.") var none = false

        func validate() throws {
            if none == (group != nil) { throw ValidationError("give a GROUP or --none") }
        }

        func run() async throws {
            let (stacks, cfg) = try options.stacks()
            try await runtime { () async throws(ControllerError) in
                guard try stacks.names().contains(stack) else {
                    throw ControllerError(.unknownStack, "no stack '\(TerminalText.escaped(stack))' under \(stacks.directory)")
                }
                if let group { _ = try SecretsWriter.groupID(group) }
                try await ControllerSettings.update(stateDir: cfg.stateDirectory) {
                    (settings: inout ControllerSettings) async throws(ControllerError) in
                    settings.secretsGroups[stack] = group
                }
            }
            print(
                group.map { "secrets: \(stack) reads its bundles through group \($0) (0440) from the next sync" }
                    ?? "secrets: \(stack) back to 0400 root:root from the next sync")
        }
    }
}
