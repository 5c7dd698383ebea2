import ArgumentParser
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
        subcommands: [RunCommand.self, StacksCommand.self])
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
        let watchdog = Watchdog(
            stacks: stacks, stateDir: settled.stateDirectory, settings: .init(interval: .seconds(settled.watchdogIntervalSeconds)),
            event: { [logger] type, data in
                logger.error("event \(type): \(data.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
            },
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
            services.append(GuestReportService(reporter: GuestReporter(stacks: stacks, stateDir: settled.stateDirectory), hub: hub, logger: logger))
        } else {
            logger.notice("no hub.url: running without reporting to the hub")
        }
        logger.info("felhom-controller \(FelhomVersion.current) running: stacks.dir \(settled.stacksDir), state_dir \(settled.stateDirectory)")
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}
