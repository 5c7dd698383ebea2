import FelhomCore
import Foundation
import Logging
import ServiceLifecycle

/// The quiesce loop as a service: every `quiesce.poll_seconds`, ask the agent whether a backup is
/// due and quiesce if so. On SIGTERM the wait (or the quiesce in flight) ends and the stacks it
/// stopped are started before the service returns.
public struct QuiesceService: Service {
    let quiescer: Quiescer
    let interval: Duration
    let logger: Logger

    public init(quiescer: Quiescer, interval: Duration, logger: Logger) {
        self.quiescer = quiescer
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var failures = 0
            while !Task.isCancelled {
                do {
                    let outcome = try await quiescer.runIfDue()
                    failures = 0
                    switch outcome {
                    case .notDue: break
                    case .done(let volid): logger.info("quiesce: backup done\(volid.map { " (\($0))" } ?? ""); stacks running again")
                    case .failed(let reason): logger.warning("quiesce: \(reason); stacks running again")
                    case .timedOut: logger.warning("quiesce: bound reached; stacks running again while the backup goes on")
                    case .busy: logger.notice("quiesce: another quiesce holds the state directory; skipped")
                    }
                } catch {
                    failures += 1
                    // Said once per streak, not every poll.
                    if failures == 1 { logger.warning("quiesce: \((error as? ControllerError)?.message ?? "\(error)")") }
                }
                try await Task.sleep(for: interval)
            }
        }
    }
}
