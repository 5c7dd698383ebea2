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
        subcommands: [RunCommand.self, StacksCommand.self, SecretsCommand.self, StorageCommand.self])
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
        let restarts = StackRestarts()
        let watchdog = Watchdog(
            stacks: stacks, stateDir: settled.stateDirectory, settings: .init(interval: .seconds(settled.watchdogIntervalSeconds)), event: emit,
            log: log, restarts: restarts)
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
                    reporter: GuestReporter(stacks: stacks, stateDir: settled.stateDirectory, restarts: restarts), hub: hub, events: events,
                    logger: logger))
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

/// `felhom-controller storage …`: the guest's storage paths in `state_dir/settings.json` (the
/// watchdog stops the stacks using a path whose disk vanishes, and starts them when it is back).
struct StorageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage", abstract: "Register and list the guest's storage paths (disks apps keep data on).",
        subcommands: [List.self, Add.self, Decommission.self, Remove.self])

    static func change(_ options: ConfigOptions, _ body: @escaping (inout ControllerSettings) throws(ControllerError) -> Void) async throws {
        let (_, cfg) = try options.stacks()
        try await runtime { () async throws(ControllerError) in
            try await ControllerSettings.update(stateDir: cfg.stateDirectory) { (s: inout ControllerSettings) async throws(ControllerError) in
                try body(&s)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The storage paths and their state.")
        @OptionGroup var options: ConfigOptions
        @Flag(help: "Print the settings' storage_paths as JSON.") var json = false

        func run() async throws {
            let (_, cfg) = try options.stacks()
            let settings = try runtimeSync { () throws(ControllerError) in try ControllerSettings.load(stateDir: cfg.stateDirectory) }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                encoder.dateEncodingStrategy = .iso8601
                print(String(decoding: try encoder.encode(settings.storagePaths), as: UTF8.self))
                return
            }
            if settings.storagePaths.isEmpty { print("no storage paths (add one with: felhom-controller storage add PATH --label LABEL)") }
            for p in settings.storagePaths {
                let state =
                    p.decommissionedAt != nil
                    ? "decommissioned" + (p.migratedTo.map { " (migrated to \($0))" } ?? "") : p.disconnectedAt != nil ? "DISCONNECTED" : "attached"
                let stopped = settings.stoppedByDisconnect[p.path].map { $0.isEmpty ? "" : "  stopped: " + $0.joined(separator: ", ") } ?? ""
                print(
                    "\(p.path)  \(TerminalText.escaped(p.label))  \(state)\(p.isDefault ? "  default" : "")\(p.schedulable ? "" : "  unschedulable")  uuid \(p.filesystemUUID ?? "?")\(stopped)"
                )
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a mounted path; the filesystem mounted there now is the one recognised when it comes back.")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "An absolute path where a disk is mounted (e.g. /mnt/media).") var path: String
        @Option(help: "A label people recognise (e.g. \"USB disk 2 TB\").") var label: String
        @Flag(name: .customLong("default"), help: "The default place for new app data (clears the flag on the others).") var isDefault = false
        @Flag(help: "Do not place new apps here.") var unschedulable = false

        func validate() throws {
            guard path.hasPrefix("/"), !path.split(separator: "/").contains("..") else { throw ValidationError("PATH must be absolute, without ..") }
            guard !label.isEmpty, label.count <= 80 else { throw ValidationError("--label must be 1–80 characters") }
        }

        func run() async throws {
            let clean = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: clean, isDirectory: &isDir), isDir.boolValue else {
                FileHandle.standardError.write(Data("felhom-controller: \(clean) is not a directory here; mount the disk first\n".utf8))
                throw ExitCode(1)
            }
            let identity = await FindmntProbe().mountIdentity(clean)
            try await StorageCommand.change(options) { (s: inout ControllerSettings) throws(ControllerError) in
                if isDefault { for i in s.storagePaths.indices where s.storagePaths[i].path != clean { s.storagePaths[i].isDefault = false } }
                var entry =
                    s.storagePaths.first { $0.path == clean }
                    ?? .init(path: clean, label: label, isDefault: isDefault, schedulable: !unschedulable, filesystemUUID: identity)
                entry.label = label
                if isDefault { entry.isDefault = true }  // re-adding without --default keeps the flag
                entry.schedulable = !unschedulable
                if entry.filesystemUUID == nil { entry.filesystemUUID = identity }
                s.storagePaths.removeAll { $0.path == clean }
                s.storagePaths.append(entry)
                s.storagePaths.sort { $0.path < $1.path }
            }
            print(
                "storage: \(clean) registered as \"\(label)\""
                    + (identity.map { " (filesystem \($0))" } ?? " (nothing mounted there yet: the first disk seen is remembered)"))
        }
    }

    struct Decommission: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Mark a path decommissioned (no longer watched or offered); its data is not touched.")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "A registered storage path.") var path: String
        @Option(name: .customLong("migrated-to"), help: "Where its data went.") var migratedTo: String?

        func run() async throws {
            try await StorageCommand.change(options) { (s: inout ControllerSettings) throws(ControllerError) in
                guard let i = s.storagePaths.firstIndex(where: { $0.path == path }) else {
                    throw ControllerError(.config, "no storage path '\(TerminalText.escaped(path))' (see: felhom-controller storage list)")
                }
                s.storagePaths[i].decommissionedAt = Date()
                s.storagePaths[i].migratedTo = migratedTo
                s.storagePaths[i].isDefault = false
                s.storagePaths[i].schedulable = false
            }
            print("storage: \(path) decommissioned" + (migratedTo.map { ", migrated to \($0)" } ?? ""))
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget a path (refused while stacks it stopped are waiting for its disk).")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "A registered storage path.") var path: String

        func run() async throws {
            try await StorageCommand.change(options) { (s: inout ControllerSettings) throws(ControllerError) in
                guard s.storagePaths.contains(where: { $0.path == path }) else {
                    throw ControllerError(.config, "no storage path '\(TerminalText.escaped(path))' (see: felhom-controller storage list)")
                }
                if let waiting = s.stoppedByDisconnect[path], !waiting.isEmpty {
                    throw ControllerError(
                        .config, "\(path) has stacks waiting for its disk (\(waiting.joined(separator: ", "))): reconnect it or start them first")
                }
                s.storagePaths.removeAll { $0.path == path }
                s.stoppedByDisconnect[path] = nil
            }
            print("storage: \(path) forgotten")
        }
    }
}
