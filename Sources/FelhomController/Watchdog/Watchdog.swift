import FelhomCore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Keeps deployed stacks running: each pass starts every stack that should run and does not.
///
/// "Should run" = deployed (it has containers) and not stopped on purpose (`stopped_stacks` in the
/// settings, set by `felhom-controller stacks stop`), not stopped by a disconnected disk, and not
/// held by a quiesce in progress (the marker's stacks). A stack stopped by anything else — a crash,
/// `docker stop` — is started again. After a failed start the stack waits (backoff doubling from
/// one interval up to an hour); after `failuresBeforeEvent` failures in a row, one
/// `stack_restart_failed` event is emitted (and again only after it recovered).
public final class Watchdog: Sendable {
    public struct Settings: Sendable {
        public var interval: Duration
        public var failuresBeforeEvent: Int
        public var maxBackoff: Duration
        public init(interval: Duration = .seconds(30), failuresBeforeEvent: Int = 5, maxBackoff: Duration = .seconds(3600)) {
            self.interval = interval
            self.failuresBeforeEvent = failuresBeforeEvent
            self.maxBackoff = maxBackoff
        }
    }

    /// What one pass did to a stack.
    public enum Action: Sendable, Equatable {
        case started
        case startFailed(String)
        case waiting
    }

    struct Failing {
        var count: Int
        var retryAt: ContinuousClock.Instant
        var reported: Bool
    }

    let stacks: Stacks
    let stateDir: String
    let settings: Settings
    let probe: any StorageProbe
    let event: @Sendable (String, [String: String]) async -> Void
    let log: @Sendable (String) -> Void
    let failing = Mutex<[String: Failing]>([:])
    /// Starts done by the watchdog, per stack (reported as part of each stack's restarts).
    public let restarts: StackRestarts
    let saidOtherDisk = Mutex<Set<String>>([])

    public init(
        stacks: Stacks, stateDir: String, settings: Settings = Settings(), probe: any StorageProbe = FindmntProbe(),
        event: @escaping @Sendable (String, [String: String]) async -> Void = { _, _ in }, log: @escaping @Sendable (String) -> Void = { _ in },
        restarts: StackRestarts = StackRestarts()
    ) {
        self.restarts = restarts
        self.stacks = stacks
        self.stateDir = stateDir
        self.settings = settings
        self.probe = probe
        self.event = event
        self.log = log
    }

    /// Storage paths first: a disk that vanished stops the stacks whose bind mounts live on it and
    /// records them (`stopped_by_disconnect`); the same disk (same filesystem UUID) coming back
    /// starts exactly those stacks again. Another filesystem mounted there is not trusted: its
    /// stacks stay stopped and it is said once.
    public func checkStorage(now: Date = Date()) async throws(ControllerError) {
        try await ControllerSettings.update(stateDir: stateDir) { (saved: inout ControllerSettings) async throws(ControllerError) in
            try await checkStorage(&saved, now: now)
        }
    }

    private func checkStorage(_ saved: inout ControllerSettings, now: Date) async throws(ControllerError) {
        for i in saved.storagePaths.indices where saved.storagePaths[i].decommissionedAt == nil {
            let path = saved.storagePaths[i].path
            let seen = await probe.mountIdentity(path)
            let known = saved.storagePaths[i].filesystemUUID
            if saved.storagePaths[i].disconnectedAt == nil {
                if let seen, known == nil {
                    saved.storagePaths[i].filesystemUUID = seen  // first sight: remember the disk
                    continue
                }
                guard seen == nil || seen != known else { continue }
                // Disconnected (or replaced under our feet): stop what uses it.
                var affected: [String] = []
                for status in try await stacks.list() where status.state != .notDeployed {
                    let sources = (try? await stacks.bindSources(status.name)) ?? []
                    guard sources.contains(where: { $0 == path || $0.hasPrefix(path.hasSuffix("/") ? path : path + "/") }) else { continue }
                    if status.protected {
                        log("storage: \(status.name) uses \(path) but is protected; left running")
                        continue
                    }
                    if status.state != .stopped {
                        do { try await stacks.stop(status.name) } catch { log("storage: cannot stop \(status.name): \(error.message)") }
                    }
                    affected.append(status.name)
                }
                saved.storagePaths[i].disconnectedAt = now
                saved.stoppedByDisconnect[path] = affected
                log("storage: \(path) disconnected; stopped \(affected.isEmpty ? "nothing" : affected.joined(separator: ", "))")
                await event("storage_disconnected", ["path": path, "stacks": affected.joined(separator: ",")])
            } else if let seen {
                guard known == nil || seen == known else {
                    if saidOtherDisk.withLock({ $0.insert(path).inserted }) {
                        log(
                            "storage: another filesystem (\(seen)) is mounted at \(path), not the disk it had (\(known ?? "?")); its stacks stay stopped"
                        )
                    }
                    continue
                }
                let toStart = saved.stoppedByDisconnect[path] ?? []
                for name in toStart {
                    do { try await stacks.start(name) } catch { log("storage: cannot start \(name) again: \(error.message)") }
                }
                saved.stoppedByDisconnect[path] = nil
                saved.storagePaths[i].disconnectedAt = nil
                saidOtherDisk.withLock { _ = $0.remove(path) }
                log("storage: \(path) is back; started \(toStart.isEmpty ? "nothing" : toStart.joined(separator: ", "))")
                await event("storage_reconnected", ["path": path, "stacks": toStart.joined(separator: ",")])
            }
        }
    }

    /// One pass over every stack; returns what was done, by stack (stacks left alone are absent).
    public func pass() async throws(ControllerError) -> [String: Action] {
        try await checkStorage()
        let saved = try ControllerSettings.load(stateDir: stateDir)
        let quiescing = Set((try QuiesceMarker.read(stateDir: stateDir))?.stacks ?? [])
        let leaveAlone = Set(saved.stoppedStacks).union(saved.stoppedByDisconnect.values.flatMap { $0 }).union(quiescing)
        var out: [String: Action] = [:]
        for status in try await candidates() where !leaveAlone.contains(status.name) {
            guard status.state == .stopped || status.state == .partial else {
                failing.withLock { _ = $0.removeValue(forKey: status.name) }
                continue
            }
            let now = ContinuousClock.now
            if let f = failing.withLock({ $0[status.name] }), now < f.retryAt {
                out[status.name] = .waiting
                continue
            }
            do {
                try await stacks.start(status.name)
                restarts.count(status.name)
                failing.withLock { _ = $0.removeValue(forKey: status.name) }
                log("watchdog: \(status.name) was \(status.state.rawValue); started")
                out[status.name] = .started
            } catch {
                out[status.name] = .startFailed(error.message)
                let (count, report) = failing.withLock { all -> (Int, Bool) in
                    var f = all[status.name] ?? Failing(count: 0, retryAt: now, reported: false)
                    f.count += 1
                    let backoff = min(settings.maxBackoff, settings.interval * (1 << min(f.count - 1, 16)))
                    f.retryAt = now + backoff
                    let report = f.count >= settings.failuresBeforeEvent && !f.reported
                    if report { f.reported = true }
                    all[status.name] = f
                    return (f.count, report)
                }
                log("watchdog: cannot start \(status.name) (attempt \(count)): \(error.message)")
                if report {
                    await event("stack_restart_failed", ["stack": status.name, "count": "\(count)", "reason": String(error.message.prefix(300))])
                }
            }
        }
        return out
    }

    /// The stacks a pass must look at. With one `compose ls` the stacks whose every container runs
    /// are skipped (and their failure streak ends) without a status call each; the others, and
    /// every stack when the runtime cannot list all at once, get their full status.
    func candidates() async throws(ControllerError) -> [StackStatus] {
        guard let statuses = try await stacks.runtime.projectStatuses() else { return try await stacks.list() }
        var out: [StackStatus] = []
        for name in try stacks.names() {
            guard let project = Stacks.projectName(folder: name), let status = statuses[project] else { continue }  // not deployed
            if status.hasPrefix("running(") && !status.contains(",") {
                failing.withLock { _ = $0.removeValue(forKey: name) }
                continue
            }
            out.append(try await stacks.status(name))
        }
        return out
    }
}

/// How many times the watchdog started each stack since the controller started (shared with the
/// reporter, which adds Docker's own restart counts).
public final class StackRestarts: Sendable {
    let counts = Mutex<[String: Int]>([:])
    public init() {}
    func count(_ stack: String) { counts.withLock { $0[stack, default: 0] += 1 } }
    /// Starts of `stack` so far.
    public func of(_ stack: String) -> Int { counts.withLock { $0[stack] ?? 0 } }
}

/// The watchdog as a service: a pass every interval until SIGTERM.
public struct WatchdogService: Service {
    let watchdog: Watchdog
    let logger: Logger
    public init(watchdog: Watchdog, logger: Logger) {
        self.watchdog = watchdog
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var lastError: String?
            while !Task.isCancelled {
                do {
                    _ = try await watchdog.pass()
                    lastError = nil
                } catch {
                    let message = (error as? ControllerError)?.message ?? "\(error)"
                    if lastError != message { logger.warning("watchdog: \(message)") }
                    lastError = message
                }
                try await Task.sleep(for: watchdog.settings.interval)
            }
        }
    }
}
